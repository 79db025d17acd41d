/*
 * collector.c — `tlsgate-collector`, the agent on every host: reads the host's facts (layered
 * .reg exports through the regfile view, or a JSON facts file), builds its readiness report and
 * serves the cached report over HTTPS with mutual TLS (server.c) until stopped. On Windows the
 * facts can also come from the live registry (winreg.c through regview_open_native).
 *
 * Everything runs on one libuv loop: the server, a refresh timer (every --interval seconds,
 * jittered ±10% from a per-process seed so a fleet restarted at once does not refresh in step),
 * the signals (POSIX: SIGHUP refreshes now, SIGTERM/SIGINT stop; Windows console: Ctrl+C,
 * Ctrl+Break and closing the console stop) and one uv_async_t through which another thread (a
 * Windows service's control handler) asks to stop or refresh (collector.h). A refresh that fails
 * keeps the last good report and says why in /v1/health. Reading the inputs happens on the loop:
 * they are local files or registry keys of at most a few MiB, and doing it inline keeps the
 * collector's own work on one thread.
 *
 * Start-up is strict: anything wrong with the inputs, the certificate, the key or the CA stops
 * the collector before it listens (exit 3, naming the file), because a collector that serves a
 * wrong identity or a half-read report is worse than one that is down.
 *
 * Exit codes follow the CLI contract: 0 stopped by a signal, 2 usage, 3 bad input, 4 system.
 */
#include <errno.h>
#include <getopt.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <jansson.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <uv.h>

#include "certstore.h"
#include "cfgutil.h"
#include "collector.h"
#include "enroll.h"
#include "facts.h"
#include "iissum.h"
#include "keyacl.h"
#include "platform.h"
#include "regview.h"
#include "report.h"
#include "server.h"
#ifdef _WIN32
#include "winfw.h"
#include "winlog.h"
#include "winservice.h"
#endif

#define EXIT_USAGE 2
#define EXIT_INPUT 3
#define EXIT_SYSTEM 4

#define DEFAULT_INTERVAL 900
#define MAX_INTERVAL (7 * 86400)
#define MAX_REGFILES 64
#define CONFIG_MAX_BYTES (64 * 1024)
#define DEFAULT_CLIENT_CN "tlsgate-orchestrator"
#define ERR_SIZE 1024
#define DEFAULT_CERT_WARN_DAYS 14
#define MAX_CERT_WARN_DAYS 365
#ifndef TLSGATE_VERSION
#define TLSGATE_VERSION "unknown"
#endif

/* Where the facts come from; the name is the report's `source`. */
enum source { SOURCE_REGFILE, SOURCE_FACTS, SOURCE_REGISTRY };
static const char *const source_names[] = {"regfile", "facts", "registry"};

/* The config's "enroll" object (load_enroll_config): where and how this collector gets its
 * certificate from a tlsgate orchestrator. Unset (url NULL) when the identity comes from files
 * issued by another PKI. */
struct enroll_options {
    char *url;             /* https://NAME:PORT of `tlsgate enroll serve` */
    char *site;            /* the site code the secret belongs to */
    char *secret_file;     /* the site's enrollment secret (needed for the first enrollment only) */
    double renew_fraction; /* renew once this much of the lifetime has passed; 0 = default */
};

struct options {
    char *listen;
    char *cert, *key, *ca;
    char *regfiles[MAX_REGFILES];
    size_t nregfiles;
    char *facts;
    bool registry;      /* --registry (Windows): the live registry */
    enum source source; /* set once the options are complete */
    char *host;
    long interval; /* 0 = not given */
    char *client_cn;
    char *orchestrators[CFG_ALLOW_MAX]; /* config "orchestrators": who may connect at all */
    size_t norchestrators;
    long cert_warn_days; /* config "cert_warn_days"; 0 = the default */
    char *cert_store;    /* config "certificate": {"store": ...} (Windows), not cert/key */
    /* config: the server's deadlines and caps (server.h); 0 = the server's default */
    long handshake_timeout_ms, request_timeout_ms, connection_limit, per_ip_limit;
    struct enroll_options enroll;
    /* config "evidence": the IIS log summary at /v1/evidence (iissum.h); off unless given */
    bool evidence;
    char *iis_logs; /* the folder; NULL: the Windows default (evidence_default_dir) */
    long max_clients, window_days;
    bool enroll_command; /* `tlsgate-collector enroll`: enroll once and exit */
};

#ifdef _WIN32
#define NSIGNALS 3 /* SIGINT (Ctrl+C), SIGBREAK (Ctrl+Break), SIGHUP (console closed): stop */
static const int stop_signals[NSIGNALS] = {SIGINT, SIGBREAK, SIGHUP};
#else
#define NSIGNALS 3 /* SIGTERM, SIGINT: stop; SIGHUP: refresh */
static const int stop_signals[NSIGNALS] = {SIGTERM, SIGINT, 0};
#endif

struct collector {
    uv_loop_t loop;
    uv_timer_t refresh;
    uv_signal_t signals[NSIGNALS];
    uv_async_t control; /* collector_request_stop / _refresh from other threads */
    uv_timer_t expiry;  /* daily: is our own certificate about to expire? */
    struct server *server;
    struct options opt;
    char *host;   /* the identity served (from the certificate or --host) */
    uint64_t rng; /* xorshift64 state for the jitter */
    bool stopping;
    /* Renewal (enrollment only): a timer that wakes at the renew point, the job on libuv's
     * thread pool while a request is in flight, and the last failure (kept in /v1/health until
     * a renewal succeeds). */
    uv_timer_t renew;
    struct renew_job *renew_job;
    unsigned renew_failures;
    char renew_error[SERVER_ERROR_MAX_BYTES];
    /* The IIS log summary (config "evidence"): scanned on libuv's thread pool with each
     * refresh, one scan at a time; evidence_stop ends a scan early at stop. */
    struct iissum *iissum;
    struct evidence_job *evidence_job;
    volatile int evidence_stop;
};

/* ---- logging: one sink for every line (collector.h) ---- */

#define LOG_LINE_MAX 2048

static void default_sink(int level, const char *line, void *arg)
{
    (void)arg;
    if (level <= COLLECTOR_LOG_INFO)
        fprintf(stderr, "tlsgate-collector: %s\n", line);
}

static void (*log_sink)(int, const char *, void *) = default_sink;
static void *log_arg;

void collector_set_log_sink(void (*sink)(int level, const char *line, void *arg), void *arg)
{
    log_sink = sink ? sink : default_sink;
    log_arg = sink ? arg : NULL;
}

static void vlog_line(int level, const char *fmt, va_list ap)
{
    char line[LOG_LINE_MAX];
    vsnprintf(line, sizeof(line), fmt, ap);
    size_t n = strlen(line);
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        line[--n] = '\0';
    log_sink(level, line, log_arg);
}

static void log_line(int level, const char *fmt, ...) PLATFORM_PRINTF(2, 3);
static void log_line(int level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vlog_line(level, fmt, ap);
    va_end(ap);
}

/* Start and stop: a console shows them already (the "serving" line on stdout, the exit), and
 * scripts expect a clean stop to leave stderr empty; a service's log needs them. */
#define log_lifecycle(...)                                                                         \
    do {                                                                                           \
        if (log_sink != default_sink)                                                              \
            log_line(COLLECTOR_LOG_INFO, __VA_ARGS__);                                             \
    } while (0)

/* The server's (and libmicrohttpd's) lines. */
static void on_server_log(void *arg, int level, const char *line)
{
    (void)arg;
    log_line(level, "%s", line);
}

/* An error: the collector stops, or what it was asked failed. */
static void fail(const char *fmt, ...) PLATFORM_PRINTF(1, 2);
static void fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vlog_line(COLLECTOR_LOG_ERROR, fmt, ap);
    va_end(ap);
}

static void usage(FILE *f)
{
    fputs("usage: tlsgate-collector --listen ADDR:PORT --cert FILE --key FILE --ca FILE\n"
#ifdef _WIN32
          "                         [--registry | --regfile FILE... | --facts FILE]\n"
#else
          "                         (--regfile FILE... | --facts FILE)\n"
#endif
          "                         [--host FQDN] [--interval SECONDS] [--client-cn NAME]\n"
          "                         [--config FILE]\n"
          "       tlsgate-collector enroll --config FILE [--host FQDN]\n"
          "\n"
          "Serves this host's TLS 1.2 readiness report over HTTPS (TLS 1.2/1.3) with mutual TLS:\n"
          "  GET /v1/readiness   the cached report (JSON)\n"
          "  GET /v1/health      {status, host, last_refresh, last_error, report_bytes}\n"
          "  GET /v1/evidence    the IIS log summary (config \"evidence\", else 404)\n"
          "Only a client certificate signed by --ca, issued for TLS client authentication and\n"
          "with CN equal to --client-cn (default " DEFAULT_CLIENT_CN ") may read.\n"
          "\n"
          "  --listen ADDR:PORT  numeric address to bind: 127.0.0.1:8443, [::1]:8443,\n"
          "                      0.0.0.0:8443; port 0 picks a free port (printed on stdout)\n"
          "  --cert FILE         this host's certificate (PEM); --key FILE its unencrypted key\n"
          "  --ca FILE           the fleet CA (PEM) that signs the orchestrator's certificate\n"
#ifdef _WIN32
          "  --registry          read this machine's registry (HKLM, the 64-bit view and the\n"
          "                      32-bit Wow6432Node view, also from the 32-bit exe); the default\n"
          "                      when neither --regfile nor --facts is given\n"
#endif
          "  --regfile FILE      a .reg export (UTF-16LE or REGEDIT4); repeat to layer, in order\n"
          "  --facts FILE        a JSON facts file instead of .reg exports\n"
          "  --host FQDN         the host name reported; defaults to the certificate's first\n"
          "                      dNSName (else its CN) and must match the certificate\n"
          "  --interval SECONDS  refresh period, jittered by +-10% (default 900)\n"
          "  --client-cn NAME    the CN a client certificate must carry (default " DEFAULT_CLIENT_CN
          ")\n"
          "  --config FILE       JSON object with the same names (\"listen\", \"cert\", \"key\",\n"
          "                      \"ca\", \"regfile\": [..], \"facts\", \"host\", \"interval\",\n"
          "                      \"client_cn\", \"firewall_allow\": [addresses] for\n"
          "                      `service install`); the command line wins; paths in the\n"
          "                      file are relative to the file's folder\n"
#ifdef _WIN32
          "                      (default: %ProgramData%\\tlsgate\\collector.json, when it\n"
          "                      exists)\n"
#endif
          "                      \"orchestrators\": [addresses] (config only): only these\n"
          "                      may connect (others are closed at accept) and they have\n"
          "                      reserved connection slots; \"cert_warn_days\" (config only,\n"
          "                      default 14): /v1/health says degraded this long before the\n"
          "                      certificate expires; \"handshake_timeout_ms\" (100-60000,\n"
          "                      default 5000), \"request_timeout_ms\" (100-300000, default\n"
          "                      10000), \"connection_limit\" (1-1024, default 64),\n"
          "                      \"per_ip_limit\" (1-1024, default 16) (config only)\n"
#ifdef _WIN32
          "                      \"certificate\": {\"store\": \"LocalMachine\\\\My\"} (config\n"
          "                      only) instead of cert and key: the store's certificate for\n"
          "                      this host (SAN, serverAuth, valid, its key usable), key\n"
          "                      never exported\n"
#endif
          "                      \"evidence\" (config only, off when absent):\n"
          "                      {\"iis_logs\": FOLDER, \"max_clients\": 10000,\n"
          "                      \"window_days\": 30}: summarise the IIS W3C logs\n"
          "                      (W3SVC*/u_ex*.log, read incrementally) per client address,\n"
          "                      port, protocol and day, at most max_clients rows\n"
#ifdef _WIN32
          "                      (iis_logs default: %SystemDrive%\\inetpub\\logs\\LogFiles)\n"
#endif
          "                      \"enroll\" (config only): {\"url\": \"https://NAME:PORT\",\n"
          "                      \"site\": \"S01\", \"secret_file\": FILE, \"renew_fraction\":\n"
          "                      0.5}: the certificate comes from the orchestrator's\n"
          "                      enrollment; at start without --cert's file the collector\n"
          "                      makes its key (--key, mode 0600), asks with the site secret,\n"
          "                      waits while a person must approve, then serves; it renews\n"
          "                      over mutual TLS once renew_fraction of the lifetime passed\n"
          "  enroll              enroll once and exit: 0 issued (or a certificate is there),\n"
          "                      1 pending (a person must `tlsgate enroll approve ID`),\n"
          "                      3 refused (the server's reason) or bad input, 4 unreachable\n"
          "  --version           the version\n"
          "  -h, --help          this text\n"
          "\n"
#ifdef _WIN32
          "Ctrl+C, Ctrl+Break or closing the console stop.\n"
          "As a Windows service: tlsgate-collector service --help.\n"
#else
          "Signals: SIGHUP re-reads the inputs and the certificate and key now (a bad new\n"
          "pair keeps the old one); SIGTERM/SIGINT stop.\n"
#endif
          "Exit: 0 stopped, 2 usage, 3 bad input (facts, .reg, certificate, key, CA, config),\n"
          "4 system error (cannot listen).\n",
          f);
}

/* ---- files ---- */

/* Reads a whole file of at most `cap` bytes, NUL-terminated. 0, -E2BIG or -errno. */
static int read_capped(const char *path, size_t cap, char **out, size_t *len)
{
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
        return -EISDIR;
    FILE *f = fopen(path, "rb");
    if (!f)
        return -errno;
    char *buf = malloc(cap + 2);
    if (!buf) {
        fclose(f);
        return -ENOMEM;
    }
    size_t n = fread(buf, 1, cap + 1, f);
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        return -EIO;
    }
    if (n > cap) {
        free(buf);
        return -E2BIG;
    }
    buf[n] = '\0';
    *out = buf;
    if (len)
        *len = n;
    return 0;
}

/* ---- options and the config file ---- */

static int set_string(char **slot, const char *v)
{
    free(*slot);
    *slot = strdup(v);
    return *slot ? 0 : -ENOMEM;
}

static int parse_interval(const char *s, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < 1 || v > MAX_INTERVAL)
        return -EINVAL;
    *out = v;
    return 0;
}

/* FILE:LINE:COL of a top-level key in the config text (its first quoted occurrence), for the
 * messages of the keys below; FILE alone when it cannot be found. */
static void key_position(const char *path, const char *text, const char *key, char *out,
                         size_t size)
{
    char quoted[80];
    snprintf(quoted, sizeof(quoted), "\"%s\"", key);
    const char *at = text ? strstr(text, quoted) : NULL;
    if (!at) {
        snprintf(out, size, "%s", path);
        return;
    }
    int line = 1, col = 1;
    for (const char *p = text; p < at; p++, col++)
        if (*p == '\n') {
            line++;
            col = 0;
        }
    snprintf(out, size, "%s:%d:%d", path, line, col);
}

/* Bounds of the server keys (issue 19): a deadline below 100 ms would close honest handshakes
 * on a busy host; above these, a stranger holds a slot too long. */
static const struct {
    const char *key;
    long min, max;
    size_t offset;
} server_keys[] = {
    {"handshake_timeout_ms", 100, 60000, offsetof(struct options, handshake_timeout_ms)},
    {"request_timeout_ms", 100, 300000, offsetof(struct options, request_timeout_ms)},
    {"connection_limit", 1, 1024, offsetof(struct options, connection_limit)},
    {"per_ip_limit", 1, 1024, offsetof(struct options, per_ip_limit)},
};

/* The keys of issue 12 (the certificate store) and 19 (deadlines, caps). 1 when `k` is none of
 * them, 0 when taken, EXIT_* with a message (FILE:LINE:COL). */
static int load_config_identity_keys(const char *path, const char *text, const char *k, json_t *v,
                                     struct options *o)
{
    char at[600];
    for (size_t i = 0; i < sizeof(server_keys) / sizeof(server_keys[0]); i++) {
        if (strcmp(k, server_keys[i].key) != 0)
            continue;
        if (!json_is_integer(v) || json_integer_value(v) < server_keys[i].min ||
            json_integer_value(v) > server_keys[i].max) {
            key_position(path, text, k, at, sizeof(at));
            fail("%s: %s: must be an integer from %ld to %ld", at, k, server_keys[i].min,
                 server_keys[i].max);
            return EXIT_INPUT;
        }
        *(long *)((char *)o + server_keys[i].offset) = (long)json_integer_value(v);
        return 0;
    }
    if (strcmp(k, "certificate") != 0)
        return 1;
    key_position(path, text, k, at, sizeof(at));
    json_t *store = json_object_get(v, "store");
    if (!json_is_object(v) || json_object_size(v) != 1 || !json_is_string(store) ||
        certstore_check_name(json_string_value(store)) < 0) {
        fail("%s: certificate: must be {\"store\": \"LocalMachine\\\\My\"} (LocalMachine\\NAME "
             "or CurrentUser\\NAME)",
             at);
        return EXIT_INPUT;
    }
#ifndef _WIN32
    fail("%s: certificate: a Windows certificate store exists only in the Windows build; give "
         "\"cert\" and \"key\" files",
         at);
    return EXIT_INPUT;
#else
    if (!o->cert_store && set_string(&o->cert_store, json_string_value(store)) < 0)
        return EXIT_SYSTEM;
    return 0;
#endif
}

/* ---- enrollment: config (issue 12) ---- */

/* The config's "enroll" object: {"url", "site", "secret_file", "renew_fraction"}. url and site
 * are required; secret_file is needed for the first enrollment (a renewal uses the current
 * certificate), relative to the config's folder. 0 or EXIT_* with a message. */
static int load_enroll_config(const char *path, json_t *v, struct enroll_options *e)
{
    if (!json_is_object(v)) {
        fail("%s: enroll: must be an object {\"url\", \"site\", \"secret_file\", "
             "\"renew_fraction\"}",
             path);
        return EXIT_INPUT;
    }
    const char *k;
    json_t *item;
    json_object_foreach(v, k, item)
    {
        char **slot = strcmp(k, "url") == 0           ? &e->url
                      : strcmp(k, "site") == 0        ? &e->site
                      : strcmp(k, "secret_file") == 0 ? &e->secret_file
                                                      : NULL;
        if (slot) {
            if (!json_is_string(item) || !json_string_value(item)[0]) {
                fail("%s: enroll.%s: must be a non-empty string", path, k);
                return EXIT_INPUT;
            }
            free(*slot);
            *slot = slot == &e->secret_file ? cfg_resolve(path, json_string_value(item))
                                            : strdup(json_string_value(item));
            if (!*slot)
                return EXIT_SYSTEM;
        } else if (strcmp(k, "renew_fraction") == 0) {
            double f = json_is_number(item) ? json_number_value(item) : -1;
            if (!(f >= 0.05 && f <= 0.95)) {
                fail("%s: enroll.renew_fraction: must be a number from 0.05 to 0.95 (the part "
                     "of the certificate's lifetime after which it is renewed)",
                     path);
                return EXIT_INPUT;
            }
            e->renew_fraction = f;
        } else {
            fail("%s: enroll: unknown key \"%s\" (known: url, site, secret_file, "
                 "renew_fraction)",
                 path, k);
            return EXIT_INPUT;
        }
    }
    char err[ERR_SIZE];
    struct enroll_url u;
    if (!e->url || !e->site) {
        fail("%s: enroll: \"%s\" is required", path, !e->url ? "url" : "site");
        return EXIT_INPUT;
    }
    if (enroll_url_parse(e->url, &u, err, sizeof(err)) < 0) {
        fail("%s: enroll.url: %s", path, err);
        return EXIT_INPUT;
    }
    if (strlen(e->site) != 3) {
        fail("%s: enroll.site: '%s' is not a three-character site code", path, e->site);
        return EXIT_INPUT;
    }
    if (!e->renew_fraction)
        e->renew_fraction = ENROLL_RENEW_FRACTION;
    return 0;
}

static void enroll_options_release(struct enroll_options *e)
{
    free(e->url);
    free(e->site);
    free(e->secret_file);
    memset(e, 0, sizeof(*e));
}

/* Fills every option not already set from the JSON config file; a source kind given on the
 * command line replaces the config's source entirely. A relative path in the file (cert, key,
 * ca, facts, regfile) is relative to the file's folder (cfgutil.h): a Windows service runs in
 * System32. 0 or EXIT_* with a message. */
/* The config's "evidence" object: {"iis_logs": DIR, "max_clients": N, "window_days": D}. */
static int load_evidence_config(const char *path, json_t *v, struct options *o)
{
    if (!json_is_object(v)) {
        fail("%s: evidence: must be an object {\"iis_logs\": FOLDER, \"max_clients\": N, "
             "\"window_days\": D}",
             path);
        return EXIT_INPUT;
    }
    const char *k;
    json_t *item;
    json_object_foreach(v, k, item)
    {
        if (strcmp(k, "iis_logs") == 0) {
            if (!json_is_string(item) || !json_string_length(item)) {
                fail("%s: evidence.iis_logs: must be a folder name", path);
                return EXIT_INPUT;
            }
            free(o->iis_logs);
            if (!(o->iis_logs = cfg_resolve(path, json_string_value(item))))
                return EXIT_SYSTEM;
        } else if (strcmp(k, "max_clients") == 0 || strcmp(k, "window_days") == 0) {
            bool rows = k[0] == 'm';
            long max = rows ? IISSUM_MAX_ROWS_LIMIT : IISSUM_WINDOW_DAYS_LIMIT;
            if (!json_is_integer(item) || json_integer_value(item) < 1 ||
                json_integer_value(item) > max) {
                fail("%s: evidence.%s: must be an integer from 1 to %ld", path, k, max);
                return EXIT_INPUT;
            }
            *(rows ? &o->max_clients : &o->window_days) = (long)json_integer_value(item);
        } else {
            fail("%s: evidence: unknown key \"%s\" (known: iis_logs, max_clients, window_days)",
                 path, k);
            return EXIT_INPUT;
        }
    }
#ifndef _WIN32
    if (!o->iis_logs) {
        fail("%s: evidence.iis_logs: the IIS log folder is required", path);
        return EXIT_INPUT;
    }
#endif
    o->evidence = true;
    return 0;
}

static int load_config(const char *path, struct options *o)
{
    bool cli_source = o->nregfiles > 0 || o->facts || o->registry;
    char *text = NULL;
    size_t len = 0;
    int rc = read_capped(path, CONFIG_MAX_BYTES, &text, &len);
    if (rc < 0) {
        fail("%s: %s", path,
             rc == -E2BIG    ? "config over 65536 bytes"
             : rc == -EISDIR ? "a folder, not a config file"
                             : strerror(-rc));
        return EXIT_INPUT;
    }
    json_error_t je;
    /* A NUL byte ends what jansson reads ("end of file expected near end of file"): name it. */
    const char *nul = memchr(text, '\0', len);
    if (nul) {
        int line = 1, col = 1;
        for (const char *p = text; p < nul; p++, col++)
            if (*p == '\n') {
                line++;
                col = 0;
            }
        fail("%s:%d:%d: a NUL byte: not a JSON text file", path, line, col);
        free(text);
        return EXIT_INPUT;
    }
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        free(text);
        /* FILE:LINE:COL, both from 1, whatever jansson has for position (-1 or 0 when it has
         * none, e.g. an empty file). */
        fail("%s:%d:%d: %s", path, je.line > 0 ? je.line : 1, je.column > 0 ? je.column : 1,
             je.text);
        return EXIT_INPUT;
    }
    int ret = 0;
    if (!json_is_object(root)) {
        fail("%s: the config must be a JSON object", path);
        ret = EXIT_INPUT;
        goto out;
    }
    const char *k;
    json_t *v;
    json_object_foreach(root, k, v)
    {
        int mine = load_config_identity_keys(path, text, k, v, o);
        if (mine != 1) {
            if (mine == 0)
                continue;
            ret = mine;
            goto out;
        }
        char **slot = strcmp(k, "listen") == 0      ? &o->listen
                      : strcmp(k, "cert") == 0      ? &o->cert
                      : strcmp(k, "key") == 0       ? &o->key
                      : strcmp(k, "ca") == 0        ? &o->ca
                      : strcmp(k, "facts") == 0     ? &o->facts
                      : strcmp(k, "host") == 0      ? &o->host
                      : strcmp(k, "client_cn") == 0 ? &o->client_cn
                                                    : NULL;
        if (slot) {
            if (!json_is_string(v)) {
                fail("%s: %s: must be a string", path, k);
                ret = EXIT_INPUT;
                goto out;
            }
            if (slot == &o->facts && cli_source)
                continue;
            bool is_path =
                slot == &o->cert || slot == &o->key || slot == &o->ca || slot == &o->facts;
            if (!*slot) {
                *slot = is_path ? cfg_resolve(path, json_string_value(v))
                                : strdup(json_string_value(v));
                if (!*slot) {
                    ret = EXIT_SYSTEM;
                    goto out;
                }
            }
        } else if (strcmp(k, "interval") == 0) {
            if (!json_is_integer(v) || json_integer_value(v) < 1 ||
                json_integer_value(v) > MAX_INTERVAL) {
                fail("%s: interval: must be an integer from 1 to %d seconds", path, MAX_INTERVAL);
                ret = EXIT_INPUT;
                goto out;
            }
            if (!o->interval)
                o->interval = (long)json_integer_value(v);
        } else if (strcmp(k, "regfile") == 0) {
            json_t *list = json_is_string(v) ? json_pack("[O]", v) : json_incref(v);
            size_t i;
            json_t *item;
            if (!json_is_array(list) || json_array_size(list) > MAX_REGFILES) {
                fail("%s: regfile: must be a string or an array of at most %d strings", path,
                     MAX_REGFILES);
                json_decref(list);
                ret = EXIT_INPUT;
                goto out;
            }
            json_array_foreach(list, i, item)
            {
                if (!json_is_string(item)) {
                    fail("%s: regfile[%zu]: must be a string", path, i);
                    json_decref(list);
                    ret = EXIT_INPUT;
                    goto out;
                }
            }
            if (!cli_source) {
                json_array_foreach(list, i, item)
                {
                    o->regfiles[o->nregfiles] = cfg_resolve(path, json_string_value(item));
                    if (!o->regfiles[o->nregfiles++]) {
                        json_decref(list);
                        ret = EXIT_SYSTEM;
                        goto out;
                    }
                }
            }
            json_decref(list);
        } else if (strcmp(k, "orchestrators") == 0) {
            char why[128];
            if (cfg_check_address_list(v, "orchestrators", why, sizeof(why))) {
                fail("%s: %s", path, why);
                ret = EXIT_INPUT;
                goto out;
            }
            size_t i;
            json_t *item;
            json_array_foreach(v, i, item)
            {
                o->orchestrators[o->norchestrators] = strdup(json_string_value(item));
                if (!o->orchestrators[o->norchestrators++]) {
                    ret = EXIT_SYSTEM;
                    goto out;
                }
            }
        } else if (strcmp(k, "cert_warn_days") == 0) {
            if (!json_is_integer(v) || json_integer_value(v) < 1 ||
                json_integer_value(v) > MAX_CERT_WARN_DAYS) {
                fail("%s: cert_warn_days: must be an integer from 1 to %d", path,
                     MAX_CERT_WARN_DAYS);
                ret = EXIT_INPUT;
                goto out;
            }
            o->cert_warn_days = (long)json_integer_value(v);
        } else if (strcmp(k, "enroll") == 0) {
            ret = load_enroll_config(path, v, &o->enroll);
            if (ret)
                goto out;
        } else if (strcmp(k, "evidence") == 0) {
            ret = load_evidence_config(path, v, o);
            if (ret)
                goto out;
        } else if (strcmp(k, "firewall_allow") == 0) {
            /* Read by `service install` (the Windows Firewall rule); checked here too, so a
             * config that the installer would refuse never runs either. */
            char why[128];
            if (cfg_check_address_list(v, "firewall_allow", why, sizeof(why))) {
                fail("%s: %s", path, why);
                ret = EXIT_INPUT;
                goto out;
            }
        } else {
            fail("%s: unknown key \"%s\" (known: listen, cert, key, ca, certificate, regfile, "
                 "facts, host, interval, client_cn, orchestrators, cert_warn_days, "
                 "handshake_timeout_ms, request_timeout_ms, connection_limit, per_ip_limit, "
                 "firewall_allow, enroll, evidence)",
                 path, k);
            ret = EXIT_INPUT;
            goto out;
        }
    }
out:
    json_decref(root);
    free(text);
    return ret;
}

static void options_release(struct options *o)
{
    free(o->listen);
    free(o->cert);
    free(o->key);
    free(o->cert_store);
    free(o->ca);
    for (size_t i = 0; i < o->nregfiles; i++)
        free(o->regfiles[i]);
    free(o->facts);
    free(o->host);
    free(o->client_cn);
    for (size_t i = 0; i < o->norchestrators; i++)
        free(o->orchestrators[i]);
    enroll_options_release(&o->enroll);
    free(o->iis_logs);
    memset(o, 0, sizeof(*o));
}

/* Parses argv (then the config file for what argv left unset). 0, -1 for --help, -2 for
 * --version, or EXIT_*. */
static int parse_options(int argc, char **argv, struct options *o)
{
    enum { OPT_CLIENT_CN = 256, OPT_VERSION };
    static const struct option longopts[] = {
        {"listen", required_argument, NULL, 'l'},
        {"cert", required_argument, NULL, 'c'},
        {"key", required_argument, NULL, 'k'},
        {"ca", required_argument, NULL, 'a'},
        {"regfile", required_argument, NULL, 'r'},
        {"facts", required_argument, NULL, 'f'},
        {"registry", no_argument, NULL, 'R'},
        {"host", required_argument, NULL, 'H'},
        {"interval", required_argument, NULL, 'i'},
        {"client-cn", required_argument, NULL, OPT_CLIENT_CN},
        {"config", required_argument, NULL, 'C'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, OPT_VERSION},
        {NULL, 0, NULL, 0},
    };
    const char *config = NULL;
    int ch;
    opterr = 0;
    while ((ch = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        int rc = 0;
        switch (ch) {
        case 'l': rc = set_string(&o->listen, optarg); break;
        case 'c': rc = set_string(&o->cert, optarg); break;
        case 'k': rc = set_string(&o->key, optarg); break;
        case 'a': rc = set_string(&o->ca, optarg); break;
        case 'f': rc = set_string(&o->facts, optarg); break;
        case 'H': rc = set_string(&o->host, optarg); break;
        case OPT_CLIENT_CN: rc = set_string(&o->client_cn, optarg); break;
        case 'C': config = optarg; break;
        case 'R': o->registry = true; break;
        case 'r':
            if (o->nregfiles == MAX_REGFILES) {
                fail("at most %d --regfile", MAX_REGFILES);
                return EXIT_USAGE;
            }
            o->regfiles[o->nregfiles] = strdup(optarg);
            rc = o->regfiles[o->nregfiles++] ? 0 : -ENOMEM;
            break;
        case 'i':
            if (parse_interval(optarg, &o->interval) < 0) {
                fail("--interval: '%s' is not a number of seconds from 1 to %d", optarg,
                     MAX_INTERVAL);
                return EXIT_USAGE;
            }
            break;
        case 'h': return -1;
        case OPT_VERSION: return -2;
        case ':': fail("%s needs a value (see --help)", argv[optind - 1]); return EXIT_USAGE;
        default:
            /* A short option inside a cluster ("-xh") leaves optind on the cluster or before it:
             * name the letter getopt refused, not whatever argv[optind - 1] holds. */
            if (optopt)
                fail("unknown option '-%c' (see --help)", optopt);
            else
                fail("unknown option '%s' (see --help)", argv[optind - 1]);
            return EXIT_USAGE;
        }
        if (rc < 0)
            return EXIT_SYSTEM;
    }
    if (optind < argc) {
        fail("unexpected argument '%s' (see --help)", argv[optind]);
        return EXIT_USAGE;
    }
#ifdef _WIN32
    /* Without --config, the service's default config is read when it exists. */
    char default_config[WINLOG_PATH_MAX];
    if (!config && winlog_data_dir(default_config, sizeof(default_config) - 16) == 0) {
        strcat(default_config, "\\" WINSVC_CONFIG_NAME);
        DWORD attr = GetFileAttributesA(default_config);
        if (attr != INVALID_FILE_ATTRIBUTES && !(attr & FILE_ATTRIBUTE_DIRECTORY))
            config = default_config;
    }
#endif
    if (config) {
        int rc = load_config(config, o);
        if (rc)
            return rc;
    }
    if (o->cert_store && (o->cert || o->key)) {
        fail("give either a certificate store (config \"certificate\") or --cert and --key, "
             "not both");
        return EXIT_USAGE;
    }
    if (o->cert_store && o->enroll.url) {
        fail("give either a certificate store (config \"certificate\") or \"enroll\", not "
             "both: an enrolled identity lives in --cert and --key files");
        return EXIT_USAGE;
    }
    const char *missing = !o->listen && !o->enroll_command ? "--listen"
                          : !o->cert && !o->cert_store     ? "--cert"
                          : !o->key && !o->cert_store      ? "--key"
                          : !o->ca                         ? "--ca"
                                                           : NULL;
    if (missing) {
#ifdef _WIN32
        if (!config) {
            fail("%s is required, and there is no %s\\tlsgate\\" WINSVC_CONFIG_NAME " (see --help)",
                 missing, "%ProgramData%");
            return EXIT_USAGE;
        }
#endif
        fail("%s is required (see --help)", missing);
        return EXIT_USAGE;
    }
    if (o->enroll_command) {
        /* `enroll` needs the enrollment settings and the paths it writes, nothing else. */
        if (!o->enroll.url) {
            fail("enroll: %s has no \"enroll\" object ({\"url\", \"site\", "
                 "\"secret_file\"}); see --help",
                 config ? config : "the command line (give --config FILE)");
            return EXIT_USAGE;
        }
        return 0;
    }
    int nsources = (o->nregfiles > 0) + (o->facts != NULL) + o->registry;
#ifdef _WIN32
    if (nsources > 1) {
        fail("give one source: --registry, --regfile FILE... or --facts FILE");
        return EXIT_USAGE;
    }
    if (nsources == 0)
        o->registry = true; /* a Windows host reads its own registry */
#else
    if (o->registry) {
        fail("--registry reads the Windows registry and exists only in the Windows build; "
             "give --regfile FILE... (reg export files) or --facts FILE");
        return EXIT_USAGE;
    }
    if (nsources != 1) {
        fail("give exactly one source: --regfile FILE... or --facts FILE");
        return EXIT_USAGE;
    }
#endif
    o->source = o->registry ? SOURCE_REGISTRY : o->facts ? SOURCE_FACTS : SOURCE_REGFILE;
    if (!o->interval)
        o->interval = DEFAULT_INTERVAL;
    if (!o->client_cn && set_string(&o->client_cn, DEFAULT_CLIENT_CN) < 0)
        return EXIT_SYSTEM;
    if (!o->cert_warn_days)
        o->cert_warn_days = DEFAULT_CERT_WARN_DAYS;
    return 0;
}

/* "127.0.0.1:8443" or "[::1]:8443" into address and port. */
static int parse_listen(const char *s, char *addr, size_t addrsize, uint16_t *port)
{
    const char *colon, *a = s;
    size_t alen;
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (!close || close[1] != ':')
            return -EINVAL;
        a = s + 1;
        alen = (size_t)(close - a);
        colon = close + 1;
    } else {
        colon = strrchr(s, ':');
        if (!colon || memchr(s, ':', (size_t)(colon - s)))
            return -EINVAL;
        alen = (size_t)(colon - s);
    }
    if (alen == 0 || alen >= addrsize)
        return -EINVAL;
    memcpy(addr, a, alen);
    addr[alen] = '\0';
    char *end;
    errno = 0;
    long p = strtol(colon + 1, &end, 10);
    if (errno || end == colon + 1 || *end || p < 0 || p > 65535)
        return -EINVAL;
    *port = (uint16_t)p;
    return 0;
}

/* ---- TLS material ---- */

struct identity {
    char *cert_pem, *key_pem, *ca_pem;
    char *key_url; /* instead of key_pem: the key in a Windows certificate store */
    char *host;
};

static void identity_release(struct identity *id)
{
    free(id->cert_pem);
    platform_free_secret(id->key_pem);
    free(id->ca_pem);
    free(id->key_url);
    free(id->host);
    memset(id, 0, sizeof(*id));
}

static int read_pem(const char *path, char **out, gnutls_datum_t *d)
{
    size_t len = 0;
    int rc = read_capped(path, SERVER_PEM_MAX_BYTES, out, &len);
    if (rc < 0) {
        fail("%s: %s", path, rc == -E2BIG ? "over 65536 bytes, not a PEM file" : strerror(-rc));
        return EXIT_INPUT;
    }
    d->data = (unsigned char *)*out;
    d->size = (unsigned)len;
    return 0;
}

/* A private key others can read is no longer private: refused, with the fix. Windows: the
 * mode bits stat() shows there say nothing; the file's ACL decides (keyacl.h: only SYSTEM,
 * Administrators and the service may read it). Wine keeps no file ACLs: not checked there. */
static int check_key_mode(const char *path)
{
#ifndef _WIN32
    struct stat st;
    if (stat(path, &st) == 0 && (st.st_mode & (S_IRWXG | S_IRWXO))) {
        fail("%s: the private key is open to group or others (mode %04o); make it private: "
             "chmod 600 %s",
             path, (unsigned)(st.st_mode & 07777), path);
        return EXIT_INPUT;
    }
#else
    char why[2048];
    if (!keyacl_wine() && keyacl_check_file(path, why, sizeof(why)) < 0) {
        fail("%s", why);
        return EXIT_INPUT;
    }
#endif
    return 0;
}

/* Where the certificate comes from, for messages: the store's name or the certificate file. */
static const char *cert_source(const struct options *o)
{
    return o->cert_store ? o->cert_store : o->cert;
}

#ifdef _WIN32
static void on_store_log(void *arg, const char *line)
{
    (void)arg;
    log_line(COLLECTOR_LOG_INFO, "%s", line);
}
#endif

/* The certificate and the key's URL from a Windows certificate store (certstore.h), chosen for
 * --host or else this machine's DNS name. 0 or EXIT_INPUT (message out). */
static int identity_from_store(const struct options *o, struct identity *id, gnutls_datum_t *cd)
{
#ifdef _WIN32
    char host[256], err[ERR_SIZE * 4];
    if (o->host)
        snprintf(host, sizeof(host), "%s", o->host);
    else if (certstore_win_hostname(host, sizeof(host)) < 0) {
        fail("%s: this machine has no DNS name to choose a certificate by; give --host",
             o->cert_store);
        return EXIT_INPUT;
    }
    if (certstore_win_load(o->cert_store, host, (long long)time(NULL), on_store_log, NULL,
                           &id->cert_pem, &id->key_url, err, sizeof(err)) < 0) {
        fail("%s", err);
        return EXIT_INPUT;
    }
    cd->data = (unsigned char *)id->cert_pem;
    cd->size = (unsigned)strlen(id->cert_pem);
    return 0;
#else
    (void)id;
    (void)cd;
    fail("%s: certificate stores exist only in the Windows build", o->cert_store);
    return EXIT_INPUT;
#endif
}

/*
 * Loads and checks the certificate, key and CA: each parses, the key belongs to the certificate,
 * every CA entry is a CA, and the host name is the certificate's. 0 or EXIT_INPUT (message out).
 */
static int load_identity(const struct options *o, struct identity *id)
{
    gnutls_datum_t cert_d, key_d, ca_d;
    gnutls_x509_crt_t *chain = NULL, *cas = NULL;
    unsigned nchain = 0, ncas = 0;
    gnutls_x509_privkey_t key = NULL;
    int ret = EXIT_INPUT, rc;

    if (o->cert_store) {
        /* The store's key is checked by the server (a test signature), not read here. */
        if (identity_from_store(o, id, &cert_d) || read_pem(o->ca, &id->ca_pem, &ca_d))
            return EXIT_INPUT;
    } else if (read_pem(o->cert, &id->cert_pem, &cert_d) || check_key_mode(o->key) ||
               read_pem(o->key, &id->key_pem, &key_d) || read_pem(o->ca, &id->ca_pem, &ca_d)) {
        return EXIT_INPUT;
    }

    rc = gnutls_x509_crt_list_import2(&chain, &nchain, &cert_d, GNUTLS_X509_FMT_PEM, 0);
    if (rc < 0 || nchain == 0) {
        fail("%s: not a PEM certificate: %s", cert_source(o), gnutls_strerror(rc));
        goto out;
    }
    if (o->cert_store)
        goto key_checked;
    if (gnutls_x509_privkey_init(&key) < 0)
        goto out;
    rc = gnutls_x509_privkey_import2(key, &key_d, GNUTLS_X509_FMT_PEM, NULL, GNUTLS_PKCS_PLAIN);
    if (rc < 0) {
        fail("%s: not an unencrypted PEM private key: %s", o->key, gnutls_strerror(rc));
        goto out;
    }
    unsigned char cert_id[64], key_id[64];
    size_t cert_id_len = sizeof(cert_id), key_id_len = sizeof(key_id);
    if (gnutls_x509_crt_get_key_id(chain[0], 0, cert_id, &cert_id_len) < 0 ||
        gnutls_x509_privkey_get_key_id(key, 0, key_id, &key_id_len) < 0 ||
        cert_id_len != key_id_len || memcmp(cert_id, key_id, cert_id_len) != 0) {
        fail("%s: this key does not belong to the certificate in %s", o->key, o->cert);
        goto out;
    }
key_checked:
    rc = gnutls_x509_crt_list_import2(&cas, &ncas, &ca_d, GNUTLS_X509_FMT_PEM, 0);
    if (rc < 0 || ncas == 0) {
        fail("%s: not a PEM CA certificate: %s", o->ca, gnutls_strerror(rc));
        goto out;
    }
    for (unsigned i = 0; i < ncas; i++) {
        unsigned critical;
        if (gnutls_x509_crt_get_ca_status(cas[i], &critical) <= 0) {
            fail("%s: certificate %u is not a CA (no basicConstraints CA:TRUE)", o->ca, i + 1);
            goto out;
        }
    }

    char first[256];
    bool match = certstore_names_host(chain[0], o->host, first, sizeof(first), NULL);
    if (o->host && !match) {
        fail("--host %s does not match the certificate in %s (it is issued to %s); refusing to "
             "serve another host's name",
             o->host, cert_source(o), first[0] ? first : "no name");
        goto out;
    }
    if (!o->host && !first[0]) {
        fail("%s: the certificate names no host (no dNSName, no CN); give --host", cert_source(o));
        goto out;
    }
    id->host = strdup(o->host ? o->host : first);
    ret = id->host ? 0 : EXIT_SYSTEM;
out:
    for (unsigned i = 0; i < nchain; i++)
        gnutls_x509_crt_deinit(chain[i]);
    gnutls_free(chain);
    for (unsigned i = 0; i < ncas; i++)
        gnutls_x509_crt_deinit(cas[i]);
    gnutls_free(cas);
    if (key)
        gnutls_x509_privkey_deinit(key);
    return ret;
}

/* ---- the report ---- */

/* Reads the facts and builds the report JSON. 0 and *json (malloc'd) or -errno with err set. */
static int build_report(const struct collector *c, long long now, char **json, size_t *len,
                        char *err, size_t errsize)
{
    const struct options *o = &c->opt;
    json_t *facts = NULL;
    int rc;
    if (o->source == SOURCE_FACTS) {
        rc = facts_load_file(o->facts, &facts, err, errsize);
    } else {
        struct regview *v;
#ifdef _WIN32
        if (o->source == SOURCE_REGISTRY)
            rc = regview_open_native(&v, err, errsize);
        else
#endif
            rc = regview_open_files((const char *const *)o->regfiles, o->nregfiles, &v, err,
                                    errsize);
        if (rc < 0)
            return rc;
        rc = facts_extract(v, &facts, err, errsize);
        regview_free(v);
    }
    if (rc < 0)
        return rc;
    json_t *report = facts_build_report(facts, c->host, now, source_names[o->source], o->interval);
    json_decref(facts);
    if (!report) {
        snprintf(err, errsize, "out of memory building the report");
        return -ENOMEM;
    }
    char why[512];
    rc = report_validate(report, why, sizeof(why));
    if (rc < 0) {
        snprintf(err, errsize, "%s: the report built from it is invalid: %s",
                 o->source == SOURCE_REGFILE ? o->regfiles[0]
                 : o->source == SOURCE_FACTS ? o->facts
                                             : "the registry",
                 why);
        json_decref(report);
        return rc;
    }
    char *text = json_dumps(report, JSON_COMPACT);
    json_decref(report);
    if (!text) {
        snprintf(err, errsize, "out of memory writing the report");
        return -ENOMEM;
    }
    size_t n = strlen(text);
    if (n > REPORT_MAX_BYTES) {
        snprintf(err, errsize, "the report is %zu bytes, over the %d-byte cap", n,
                 REPORT_MAX_BYTES);
        free(text);
        return -E2BIG;
    }
    *json = text;
    *len = n;
    return 0;
}

/* ---- the IIS log summary (config "evidence", iissum.h) ---- */

struct evidence_job {
    uv_work_t req;
    struct collector *c;
    long long now;
    int rc;
    char err[ERR_SIZE];
    char *json;
    size_t len;
};

/* The folder IIS writes its logs to by default: %SystemDrive%\inetpub\logs\LogFiles. */
static char *evidence_default_dir(void)
{
    const char *drive = getenv("SystemDrive");
    char buf[300];
    snprintf(buf, sizeof(buf), "%s\\inetpub\\logs\\LogFiles",
             drive && drive[0] && strlen(drive) < 200 ? drive : "C:");
    return strdup(buf);
}

/* On the thread pool: the scan (only new lines) and the JSON of the whole summary. */
static void evidence_work(uv_work_t *req)
{
    struct evidence_job *j = req->data;
    j->rc = iissum_scan(j->c->iissum, j->now, j->err, sizeof(j->err));
    j->json = iissum_json(j->c->iissum, j->c->host, j->now, &j->len);
}

static void evidence_done(uv_work_t *req, int status)
{
    struct evidence_job *j = req->data;
    struct collector *c = j->c;
    c->evidence_job = NULL;
    if (status == 0 && !c->stopping && c->server) {
        if (!j->json)
            snprintf(j->err, sizeof(j->err), "evidence: out of memory for the summary");
        else if (j->len > IISSUM_JSON_MAX)
            snprintf(j->err, sizeof(j->err), "evidence: the summary is %zu bytes, over %u", j->len,
                     IISSUM_JSON_MAX);
        else if (server_set_evidence(c->server, j->json, j->len) < 0)
            snprintf(j->err, sizeof(j->err), "evidence: out of memory for the summary");
        else
            j->json = NULL; /* the server has it */
        bool failed = j->rc < 0 || j->err[0];
        server_set_evidence_error(c->server, failed ? j->err : NULL);
        if (failed)
            log_line(COLLECTOR_LOG_WARNING, "evidence: %s (the report is still served)", j->err);
    }
    free(j->json);
    free(j);
}

/* Starts a scan of the IIS logs unless one runs (or evidence is off). */
static void evidence_scan_start(struct collector *c)
{
    if (!c->iissum || c->evidence_job || c->stopping)
        return;
    struct evidence_job *j = calloc(1, sizeof(*j));
    if (!j)
        return;
    j->c = c;
    j->now = (long long)time(NULL);
    j->req.data = j;
    if (uv_queue_work(&c->loop, &j->req, evidence_work, evidence_done) < 0) {
        free(j);
        return;
    }
    c->evidence_job = j;
}

/* Builds the report and hands it to the server; on failure the server keeps the old one. */
static int refresh(struct collector *c)
{
    evidence_scan_start(c);
    char err[ERR_SIZE] = "";
    char *json;
    size_t len;
    long long now = (long long)time(NULL);
    int rc = build_report(c, now, &json, &len, err, sizeof(err));
    if (rc == 0) {
        rc = server_set_report(c->server, json, len, now);
        free(json);
        if (rc < 0)
            snprintf(err, sizeof(err), "cannot store the report: %s", strerror(-rc));
        else if (c->renew_error[0])
            server_set_error(c->server, c->renew_error); /* renewal still failing: still said */
    }
    if (rc < 0) {
        server_set_error(c->server, err);
        fail("refresh failed, still serving the last good report: %s", err);
    }
    return rc;
}

static uint64_t next_random(struct collector *c)
{
    uint64_t x = c->rng;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    c->rng = x;
    return x;
}

static void on_refresh_timer(uv_timer_t *t);

/* Arms the refresh timer for interval ±10%. */
static void schedule_refresh(struct collector *c)
{
    uint64_t base = (uint64_t)c->opt.interval * 1000;
    uint64_t spread = base / 5; /* 20% wide window centred on the interval */
    uint64_t delay = base - spread / 2 + (spread ? next_random(c) % (spread + 1) : 0);
    uv_timer_start(&c->refresh, on_refresh_timer, delay, 0);
}

static void on_refresh_timer(uv_timer_t *t)
{
    struct collector *c = t->data;
    refresh(c);
    schedule_refresh(c);
}

/* ---- stop and refresh requests: signals, and other threads (collector.h) ---- */

/*
 * Requests from other threads land in flags under a mutex and wake the loop through the
 * uv_async_t `control`, which exists only while collector_main runs; a stop asked before that
 * is kept and acted on as soon as the loop starts.
 */
static uv_once_t control_once = UV_ONCE_INIT;
static uv_mutex_t control_lock;
static uv_async_t *control_async; /* non-NULL while a loop can take requests */
static bool control_stop, control_refresh;

static void control_init(void)
{
    if (uv_mutex_init(&control_lock) != 0)
        abort(); /* cannot happen on Linux or Windows; nothing sane to do without it */
}

static void control_request(bool stop_it)
{
    uv_once(&control_once, control_init);
    uv_mutex_lock(&control_lock);
    if (stop_it)
        control_stop = true;
    else
        control_refresh = true;
    if (control_async)
        uv_async_send(control_async);
    uv_mutex_unlock(&control_lock);
}

void collector_request_stop(void) { control_request(true); }
void collector_request_refresh(void) { control_request(false); }

static void on_server_closed(void *arg)
{
    struct collector *c = arg;
    c->server = NULL;
}

static void renew_stop(struct collector *c);

static void stop(struct collector *c)
{
    if (c->stopping)
        return;
    c->stopping = true;
    uv_mutex_lock(&control_lock);
    control_async = NULL;
    uv_mutex_unlock(&control_lock);
    log_lifecycle("stopping");
    server_close(c->server, on_server_closed, c);
    c->evidence_stop = 1; /* a scan in flight ends at its next check */
    if (c->evidence_job)
        uv_cancel((uv_req_t *)&c->evidence_job->req);
    uv_close((uv_handle_t *)&c->refresh, NULL);
    uv_close((uv_handle_t *)&c->expiry, NULL);
    renew_stop(c);
    uv_close((uv_handle_t *)&c->control, NULL);
    for (int i = 0; i < NSIGNALS; i++)
        uv_close((uv_handle_t *)&c->signals[i], NULL);
}

static void refresh_now(struct collector *c, const char *why)
{
    if (refresh(c) == 0)
        log_line(COLLECTOR_LOG_INFO, "%s: report refreshed", why);
    schedule_refresh(c);
}

static void check_cert_expiry(struct collector *c);

/*
 * Certificate rotation without a restart: the certificate and key files are read again and
 * checked as at start (PEM, the key is the certificate's and private, the host name is still
 * ours); the server presents the new pair from the next handshake on. Anything wrong keeps
 * the old pair, and the log says why. The CA is not reloaded (libmicrohttpd holds it for the
 * daemon's life); a new CA needs a restart.
 */
static void reload_identity(struct collector *c, const char *why)
{
    struct identity id = {0};
    struct options o = c->opt;
    o.host = c->host; /* the new certificate must still name the host we serve */
    if (load_identity(&o, &id) != 0) {
        log_line(COLLECTOR_LOG_WARNING,
                 "%s: keeping the old certificate and key (the new "
                 "pair is refused, see above)",
                 why);
        identity_release(&id);
        return;
    }
    char err[ERR_SIZE] = "";
    int rc = server_reload_identity_url(c->server, id.cert_pem, id.key_pem, id.key_url, err,
                                        sizeof(err));
    identity_release(&id);
    if (rc < 0) {
        log_line(COLLECTOR_LOG_WARNING, "%s: keeping the old certificate and key: %s", why,
                 err[0] ? err : strerror(-rc));
        return;
    }
    if (c->opt.cert_store)
        log_line(COLLECTOR_LOG_INFO, "%s: certificate and key reloaded from the store %s", why,
                 c->opt.cert_store);
    else
        log_line(COLLECTOR_LOG_INFO, "%s: certificate and key reloaded from %s and %s", why,
                 c->opt.cert, c->opt.key);
    check_cert_expiry(c);
}

static void on_control(uv_async_t *h)
{
    struct collector *c = h->data;
    uv_mutex_lock(&control_lock);
    bool stop_it = control_stop, refresh_it = control_refresh;
    control_stop = control_refresh = false;
    uv_mutex_unlock(&control_lock);
    if (stop_it) {
        stop(c);
    } else if (refresh_it && !c->stopping) {
        /* What SIGHUP does on POSIX: the inputs, and the certificate and key. */
        reload_identity(c, "refresh requested");
        refresh_now(c, "refresh requested");
    }
}

static void on_signal(uv_signal_t *h, int signum)
{
    struct collector *c = h->data;
#ifndef _WIN32
    if (signum == SIGHUP) {
        reload_identity(c, "SIGHUP");
        refresh_now(c, "SIGHUP");
        return;
    }
#endif
    (void)signum;
    stop(c);
}

/* Installs the signal handlers and the control handle; 0 or a libuv error. */
static int start_controls(struct collector *c)
{
    int rc = uv_async_init(&c->loop, &c->control, on_control);
    if (rc < 0)
        return rc;
    c->control.data = c;
    for (int i = 0; i < NSIGNALS; i++) {
        uv_signal_init(&c->loop, &c->signals[i]);
        c->signals[i].data = c;
    }
    for (int i = 0; i < NSIGNALS; i++) {
        int signum = stop_signals[i];
#ifndef _WIN32
        if (!signum)
            signum = SIGHUP;
#endif
        rc = uv_signal_start(&c->signals[i], on_signal, signum);
        if (rc < 0)
            return rc;
    }
    uv_mutex_lock(&control_lock);
    control_async = &c->control;
    if (control_stop || control_refresh)
        uv_async_send(&c->control);
    uv_mutex_unlock(&control_lock);
    return 0;
}

/* Logs a warning when our certificate has expired or expires within cert_warn_days: at start,
 * after a reload, and daily. /v1/health says the same (server.c). */
static void check_cert_expiry(struct collector *c)
{
    long long exp = server_cert_expires(c->server), now = (long long)time(NULL);
    char when[32] = "?";
    struct tm tm;
    if (platform_gmtime((time_t)exp, &tm) == 0)
        strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
    if (now >= exp)
        log_line(COLLECTOR_LOG_WARNING,
                 "the certificate in %s expired on %s: the orchestrator refuses this collector; "
                 "install a new one and send SIGHUP (or restart)",
                 cert_source(&c->opt), when);
    else if (now >= exp - 86400LL * c->opt.cert_warn_days)
        log_line(COLLECTOR_LOG_WARNING,
                 "the certificate in %s expires on %s (in %lld days); install a new one and "
                 "send SIGHUP (or restart)",
                 cert_source(&c->opt), when, (exp - now) / 86400);
}

static void on_expiry_timer(uv_timer_t *t) { check_cert_expiry(t->data); }

/* ---- enrollment: the first certificate, and renewal (issue 12; enroll.h) ---- */

/*
 * With "enroll" in the config the collector gets its identity from the orchestrator:
 * - at start, without a certificate yet, it makes its key (written 0600 before anything is
 *   sent; kept across attempts and restarts, so asking again finds the same pending request),
 *   asks with the site secret and waits while a person has to approve, with backoff; then
 *   serves. `tlsgate-collector enroll` asks once and exits.
 * - while it runs, the renew timer wakes at not_before + renew_fraction * lifetime; the request
 *   (a new key, mutual TLS with the current pair) runs on libuv's thread pool so serving never
 *   waits for it; the new pair is installed (enroll_pair_install) and served from the next
 *   handshake (server_reload_identity). A failure keeps the old pair, says so in /v1/health
 *   last_error and the log, and tries again with backoff.
 */
#define ENROLL_BACKOFF_BASE 15  /* seconds before the first retry */
#define ENROLL_BACKOFF_MAX 3600 /* retries at least hourly */
#define RENEW_MIN_SPACING 3600  /* a renewed certificate is not renewed again within an hour */
#define RENEW_CHECK_MAX 86400   /* the renew timer re-reads the clock at least daily */

/* The clock renewal decisions ask. TLSGATE_NOW (epoch seconds) pins it, as for the
 * orchestrator: tests move a collector past its renew point without waiting. */
static long long enroll_clock(void)
{
    const char *pinned = getenv("TLSGATE_NOW");
    if (pinned && *pinned) {
        char *end;
        long long t = strtoll(pinned, &end, 10);
        if (*end == '\0')
            return t;
    }
    return (long long)time(NULL);
}

/* The name this collector enrolls under: --host / "host", else the machine's own FQDN. */
static int enroll_name(const struct options *o, char *out, size_t size)
{
    if (o->host) {
        snprintf(out, size, "%s", o->host);
        return 0;
    }
    if (enroll_host_name(out, size) < 0) {
        fail("enroll: cannot read this machine's host name; give \"host\" in the config");
        return EXIT_SYSTEM;
    }
    return 0;
}

/* Waits `seconds` unless a stop is asked meanwhile (collector_request_stop); true on a stop. */
static bool enroll_wait(long seconds)
{
    for (long long ms = seconds * 1000LL; ms > 0; ms -= 200) {
        uv_mutex_lock(&control_lock);
        bool stop_it = control_stop;
        uv_mutex_unlock(&control_lock);
        if (stop_it)
            return true;
        uv_sleep(ms > 200 ? 200 : (unsigned)ms);
    }
    return false;
}

static void when_text(long long t, char *buf, size_t size)
{
    struct tm tm;
    snprintf(buf, size, "?");
    if (platform_gmtime((time_t)t, &tm) == 0)
        strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* Reads the key file when there is one (the key of an earlier attempt), else makes a key and
 * writes it (mode 0600) before anything is sent. 0 and *key_pem, or EXIT_*. */
static int enroll_key(const struct options *o, char **key_pem)
{
    char err[ERR_SIZE];
    struct stat st;
    if (stat(o->key, &st) == 0) {
        size_t len;
        if (check_key_mode(o->key))
            return EXIT_INPUT;
        int rc = read_capped(o->key, SERVER_PEM_MAX_BYTES, key_pem, &len);
        char *csr = NULL;
        if (rc == 0 && enroll_csr_make(*key_pem, "check.invalid", &csr, err, sizeof(err)) < 0)
            rc = -EINVAL;
        free(csr);
        if (rc < 0) {
            fail("%s: %s; remove it and a new key is made", o->key,
                 rc == -EINVAL ? "not an unencrypted PEM private key" : strerror(-rc));
            platform_free_secret(*key_pem);
            *key_pem = NULL;
            return EXIT_INPUT;
        }
        return 0;
    }
    /* The key's folder ("identity/host.key"): made private when it does not exist yet. */
    char folder[4096];
    snprintf(folder, sizeof(folder), "%s", o->key);
    char *sep = strrchr(folder, '/');
#ifdef _WIN32
    char *bsep = strrchr(folder, '\\');
    if (bsep && (!sep || bsep > sep))
        sep = bsep;
#endif
    if (sep && sep != folder) {
        *sep = '\0';
        uv_fs_t req;
        int mk = uv_fs_mkdir(NULL, &req, folder, 0700, NULL);
        uv_fs_req_cleanup(&req);
        if (mk < 0 && mk != UV_EEXIST) {
            fail("enroll: %s: cannot make the key's folder: %s", folder, uv_strerror(mk));
            return EXIT_SYSTEM;
        }
    }
    if (enroll_key_generate(key_pem, err, sizeof(err)) < 0 ||
        enroll_write_atomic(o->key, *key_pem, strlen(*key_pem), true, err, sizeof(err)) < 0) {
        fail("enroll: %s", err);
        return EXIT_SYSTEM;
    }
    return 0;
}

/*
 * The first certificate. `once` (`tlsgate-collector enroll`): one request, and an existing
 * certificate means nothing to do. Otherwise (start-up) it waits while the request is pending or
 * the server cannot be reached. Returns 0 (a certificate is in place), ENROLL_EXIT_PENDING
 * (once only), EXIT_* with a message, or -1 when a stop was asked while waiting.
 */
#define ENROLL_EXIT_PENDING 1
static int enroll_first(struct collector *c, bool once)
{
    const struct options *o = &c->opt;
    const struct enroll_options *e = &o->enroll;
    char err[ERR_SIZE] = "";
    int rc = enroll_pair_recover(o->cert, o->key, err, sizeof(err));
    if (rc < 0) {
        fail("%s", err);
        return EXIT_SYSTEM;
    }
    if (rc == 1)
        log_line(COLLECTOR_LOG_INFO, "finished an interrupted renewal: %s is the new certificate",
                 o->cert);
    struct stat st;
    if (stat(o->cert, &st) == 0) {
        if (once)
            printf("tlsgate-collector: %s already holds a certificate; remove it (and %s) to "
                   "enroll again\n",
                   o->cert, o->key);
        return 0;
    }
    char name[256];
    if ((rc = enroll_name(o, name, sizeof(name))) != 0)
        return rc;
    if (!e->secret_file) {
        fail("enroll: \"secret_file\" is needed for the first enrollment (there is no %s yet)",
             o->cert);
        return EXIT_INPUT;
    }
    char *secret = NULL, *ca_pem = NULL, *key_pem = NULL;
    int ret = EXIT_INPUT;
    if (enroll_read_secret(e->secret_file, &secret, err, sizeof(err)) < 0) {
        fail("%s", err);
        goto out;
    }
    gnutls_datum_t ca_d;
    if (read_pem(o->ca, &ca_pem, &ca_d))
        goto out;
    if ((ret = enroll_key(o, &key_pem)) != 0)
        goto out;
    struct enroll_params p = {
        .url = e->url, .ca_pem = ca_pem, .name = name, .site = e->site, .secret = secret};
    uint64_t rng = c->rng;
    for (unsigned attempt = 0;; attempt++) {
        struct enroll_result r;
        enroll_submit(&p, key_pem, false, &r);
        long delay = 0;
        switch (r.outcome) {
        case ENROLL_ISSUED: {
            if (enroll_write_atomic(o->cert, r.cert_pem, strlen(r.cert_pem), false, err,
                                    sizeof(err)) < 0) {
                fail("enroll: %s", err);
                ret = EXIT_SYSTEM;
            } else {
                char when[32];
                when_text(r.not_after, when, sizeof(when));
                log_line(COLLECTOR_LOG_INFO,
                         "enrolled %s at %s: certificate in %s, valid until "
                         "%s",
                         name, e->url, o->cert, when);
                if (once)
                    printf("tlsgate-collector: enrolled %s: %s valid until %s\n", name, o->cert,
                           when);
                ret = 0;
            }
            enroll_result_release(&r);
            goto out;
        }
        case ENROLL_REFUSED:
            fail("enrollment of %s refused: %s", name, r.message);
            ret = EXIT_INPUT;
            goto out;
        case ENROLL_FAILED:
            if (r.http_status)
                fail("enrollment of %s failed: %s", name, r.message);
            else
                fail("enrollment of %s failed: %s (CA bundle %s)", name, r.message, o->ca);
            ret = EXIT_INPUT;
            goto out;
        case ENROLL_PENDING:
            if (once) {
                printf("tlsgate-collector: pending: %s\n", r.message);
                ret = ENROLL_EXIT_PENDING;
                goto out;
            }
            break;
        case ENROLL_RETRY:
            if (once) {
                fail("enrollment of %s: %s; try again later", name, r.message);
                ret = EXIT_SYSTEM;
                goto out;
            }
            break;
        }
        rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
        delay = enroll_backoff(attempt, ENROLL_BACKOFF_BASE, ENROLL_BACKOFF_MAX, rng);
        if (r.retry_after > delay)
            delay = r.retry_after > ENROLL_BACKOFF_MAX ? ENROLL_BACKOFF_MAX : r.retry_after;
        log_line(COLLECTOR_LOG_WARNING, "enrollment: %s; %s again in %ld s", r.message,
                 r.outcome == ENROLL_PENDING ? "asking" : "trying", delay);
        if (enroll_wait(delay)) {
            ret = -1;
            goto out;
        }
    }
out:
    platform_free_secret(secret);
    platform_free_secret(key_pem);
    free(ca_pem);
    return ret;
}

/* A renewal in flight on libuv's thread pool; the loop thread only touches it in renew_done. */
struct renew_job {
    uv_work_t req;
    struct collector *c;
    struct enroll_params p;
    char *url, *ca_pem, *cert_pem, *key_pem, *name;
    const char *cert_path, *key_path;
    struct enroll_result r;
    int install_rc;
    char install_err[ERR_SIZE];
};

static void renew_job_free(struct renew_job *j)
{
    platform_free_secret(j->key_pem);
    free(j->url);
    free(j->ca_pem);
    free(j->cert_pem);
    free(j->name);
    enroll_result_release(&j->r);
    free(j);
}

static void renew_work(uv_work_t *req)
{
    struct renew_job *j = req->data;
    char err[ERR_SIZE];
    char *new_key = NULL;
    if (enroll_key_generate(&new_key, err, sizeof(err)) < 0) {
        memset(&j->r, 0, sizeof(j->r));
        j->r.outcome = ENROLL_FAILED;
        snprintf(j->r.message, sizeof(j->r.message), "%.700s", err);
        return;
    }
    enroll_submit(&j->p, new_key, true, &j->r);
    if (j->r.outcome == ENROLL_ISSUED)
        j->install_rc = enroll_pair_install(j->cert_path, j->key_path, j->r.cert_pem, new_key,
                                            j->install_err, sizeof(j->install_err));
    platform_free_secret(new_key);
}

static void on_renew_timer(uv_timer_t *t);

/* Arms the renew timer for the renew point of the certificate in the cert file, at least
 * `min_delay` seconds from now, at most a day (the timer then looks again). */
static void renew_schedule(struct collector *c, long long min_delay)
{
    char *pem = NULL;
    size_t len;
    long long nb, na, delay = RENEW_CHECK_MAX;
    if (read_capped(c->opt.cert, SERVER_PEM_MAX_BYTES, &pem, &len) == 0 &&
        enroll_cert_times(pem, &nb, &na) == 0)
        delay = enroll_renew_at(nb, na, c->opt.enroll.renew_fraction) - enroll_clock();
    free(pem);
    if (delay < min_delay)
        delay = min_delay;
    if (delay < 0)
        delay = 0;
    if (delay > RENEW_CHECK_MAX)
        delay = RENEW_CHECK_MAX;
    uv_timer_start(&c->renew, on_renew_timer, (uint64_t)delay * 1000, 0);
}

static void renew_failed(struct collector *c, const char *why)
{
    char when[32];
    when_text(server_cert_expires(c->server), when, sizeof(when));
    uint64_t rnd = next_random(c);
    long delay = enroll_backoff(c->renew_failures++, ENROLL_BACKOFF_BASE, ENROLL_BACKOFF_MAX, rnd);
    snprintf(c->renew_error, sizeof(c->renew_error),
             "certificate renewal failed: %s; still serving the certificate valid until %s; "
             "next try in %ld s",
             why, when, delay);
    server_set_error(c->server, c->renew_error);
    log_line(COLLECTOR_LOG_WARNING, "%s", c->renew_error);
    uv_timer_start(&c->renew, on_renew_timer, (uint64_t)delay * 1000, 0);
}

static void renew_done(uv_work_t *req, int status)
{
    struct renew_job *j = req->data;
    struct collector *c = j->c;
    c->renew_job = NULL;
    if (status < 0 || c->stopping) {
        renew_job_free(j);
        return;
    }
    if (j->r.outcome != ENROLL_ISSUED) {
        renew_failed(c, j->r.message);
    } else if (j->install_rc < 0) {
        renew_failed(c, j->install_err);
    } else {
        long long expected = j->r.not_after;
        reload_identity(c, "renewal");
        if (server_cert_expires(c->server) != expected) {
            renew_failed(c, "the renewed pair was written but could not be served (see above)");
        } else {
            c->renew_failures = 0;
            c->renew_error[0] = '\0';
            refresh(c); /* a fresh report also clears the failure from /v1/health */
            renew_schedule(c, RENEW_MIN_SPACING);
        }
    }
    renew_job_free(j);
}

static void on_renew_timer(uv_timer_t *t)
{
    struct collector *c = t->data;
    if (c->renew_job || c->stopping)
        return;
    const struct options *o = &c->opt;
    struct renew_job *j = calloc(1, sizeof(*j));
    if (!j) {
        renew_failed(c, "out of memory");
        return;
    }
    size_t len;
    long long nb, na;
    if (read_capped(o->cert, SERVER_PEM_MAX_BYTES, &j->cert_pem, &len) < 0 ||
        enroll_cert_times(j->cert_pem, &nb, &na) < 0) {
        renew_job_free(j);
        char why[ERR_SIZE];
        snprintf(why, sizeof(why), "%s: cannot read the current certificate", o->cert);
        renew_failed(c, why);
        return;
    }
    if (enroll_clock() < enroll_renew_at(nb, na, o->enroll.renew_fraction)) {
        renew_job_free(j); /* not yet: the timer was armed early, or the file changed */
        renew_schedule(c, 0);
        return;
    }
    j->c = c;
    j->cert_path = o->cert;
    j->key_path = o->key;
    j->url = strdup(o->enroll.url);
    j->name = strdup(c->host);
    if (!j->url || !j->name || read_capped(o->key, SERVER_PEM_MAX_BYTES, &j->key_pem, &len) < 0 ||
        read_capped(o->ca, SERVER_PEM_MAX_BYTES, &j->ca_pem, &len) < 0) {
        renew_job_free(j);
        char why[ERR_SIZE];
        snprintf(why, sizeof(why), "cannot read %s or %s", o->key, o->ca);
        renew_failed(c, why);
        return;
    }
    j->p = (struct enroll_params){.url = j->url,
                                  .ca_pem = j->ca_pem,
                                  .name = j->name,
                                  .cert_pem = j->cert_pem,
                                  .key_pem = j->key_pem};
    j->req.data = j;
    log_line(COLLECTOR_LOG_INFO, "renewing the certificate of %s at %s", c->host, o->enroll.url);
    int rc = uv_queue_work(&c->loop, &j->req, renew_work, renew_done);
    if (rc < 0) {
        renew_job_free(j);
        renew_failed(c, uv_strerror(rc));
        return;
    }
    c->renew_job = j;
}

/* Closes the renew timer; a request in flight ends at its deadline, then is dropped. */
static void renew_stop(struct collector *c)
{
    uv_close((uv_handle_t *)&c->renew, NULL);
    if (c->renew_job)
        uv_cancel((uv_req_t *)&c->renew_job->req);
}

/* Starts the renew timer when the identity comes from enrollment. */
static void renew_start(struct collector *c)
{
    uv_timer_init(&c->loop, &c->renew);
    c->renew.data = c;
    if (c->opt.enroll.url)
        renew_schedule(c, 0);
}

static int run(struct collector *c)
{
    struct identity id = {0};
    /* Enrollment: the first certificate before anything else (a stop while waiting is 0). */
    int ret = c->opt.enroll.url ? enroll_first(c, false) : 0;
    if (ret < 0) {
        ret = 0;
        goto out;
    }
    if (!ret)
        ret = load_identity(&c->opt, &id);
    if (ret)
        goto out;
    c->host = id.host;
    id.host = NULL;

    char addr[64];
    uint16_t port;
    if (parse_listen(c->opt.listen, addr, sizeof(addr), &port) < 0) {
        fail("--listen %s: expected ADDR:PORT with a numeric address (127.0.0.1:8443, "
             "[::1]:8443)",
             c->opt.listen);
        ret = EXIT_USAGE;
        goto out;
    }

    /* The first report is built before listening: bad inputs stop the start (exit 3). */
    char err[ERR_SIZE] = "";
    char *json;
    size_t len;
    long long now = (long long)time(NULL);
    if (build_report(c, now, &json, &len, err, sizeof(err)) < 0) {
        fail("%s", err);
        ret = EXIT_INPUT;
        goto out;
    }

    int rc = uv_loop_init(&c->loop);
    if (rc < 0) {
        free(json);
        fail("cannot create the event loop: %s", uv_strerror(rc));
        ret = EXIT_SYSTEM;
        goto out;
    }
    struct server_options so = {
        .host = c->host,
        .address = addr,
        .port = port,
        .cert_pem = id.cert_pem,
        .key_pem = id.key_pem,
        .key_url = id.key_url,
        .ca_pem = id.ca_pem,
        .client_cn = c->opt.client_cn,
        .log = on_server_log,
        .log_arg = c,
        .orchestrators = (const char *const *)c->opt.orchestrators,
        .norchestrators = c->opt.norchestrators,
        .cert_warn_days = (unsigned)c->opt.cert_warn_days,
        .handshake_timeout_ms = (unsigned)c->opt.handshake_timeout_ms,
        .request_timeout_ms = (unsigned)c->opt.request_timeout_ms,
        .connection_limit = (unsigned)c->opt.connection_limit,
        .per_ip_limit = (unsigned)c->opt.per_ip_limit,
        .evidence = c->opt.evidence,
    };
    rc = server_start(&c->loop, &so, &c->server, err, sizeof(err));
    identity_release(&id); /* the server holds its own copies */
    if (rc == 0)
        rc = server_set_report(c->server, json, len, now);
    free(json);
    if (rc < 0) {
#ifdef _WIN32
        /* Say who holds the port when Windows can tell (HTTP.sys, another collector...). */
        char owner[600];
        if (rc == -EADDRINUSE && port != 0 && winfw_port_owner(port, owner, sizeof(owner)) == 0)
            snprintf(err + strlen(err), sizeof(err) - strlen(err), "; port %u is held by %s",
                     (unsigned)port, owner);
#endif
        fail("%s", err[0] ? err : strerror(-rc));
        if (c->server) {
            server_close(c->server, on_server_closed, c);
            uv_run(&c->loop, UV_RUN_DEFAULT);
        }
        uv_loop_close(&c->loop);
        ret = rc == -EINVAL ? EXIT_INPUT : EXIT_SYSTEM;
        goto out;
    }

    uv_timer_init(&c->loop, &c->refresh);
    c->refresh.data = c;
    uv_timer_init(&c->loop, &c->expiry);
    c->expiry.data = c;
    renew_start(c);
    rc = start_controls(c);
    if (rc < 0) {
        fail("cannot install the signal handlers: %s", uv_strerror(rc));
        stop(c);
        uv_run(&c->loop, UV_RUN_DEFAULT);
        uv_loop_close(&c->loop);
        ret = EXIT_SYSTEM;
        goto out;
    }
    if (c->opt.evidence) {
        char *dir = c->opt.iis_logs ? strdup(c->opt.iis_logs) : evidence_default_dir();
        struct iissum_options io = {.dir = dir,
                                    .max_rows = (size_t)c->opt.max_clients,
                                    .window_days = (int)c->opt.window_days,
                                    .stop = &c->evidence_stop};
        rc = dir ? iissum_new(&io, &c->iissum) : -ENOMEM;
        if (rc == 0)
            log_line(COLLECTOR_LOG_INFO, "evidence: summarising the IIS logs under %s", dir);
        else
            fail("evidence: %s", strerror(-rc));
        free(dir);
        evidence_scan_start(c);
    }
    schedule_refresh(c);
    check_cert_expiry(c);
    uv_timer_start(&c->expiry, on_expiry_timer, 86400 * 1000ULL, 86400 * 1000ULL);

    printf("tlsgate-collector: serving %s on https://%s%s%s:%u (source %s, interval %ld s)\n",
           c->host, strchr(addr, ':') ? "[" : "", addr, strchr(addr, ':') ? "]" : "",
           (unsigned)server_port(c->server), source_names[c->opt.source], c->opt.interval);
    fflush(stdout);
    /* The Windows service (winsvc.c) reports SERVICE_RUNNING on this line: keep "serving ". */
    log_lifecycle("serving %s on port %u (source %s, interval %ld s)", c->host,
                  (unsigned)server_port(c->server), source_names[c->opt.source], c->opt.interval);

    uv_run(&c->loop, UV_RUN_DEFAULT);
    iissum_free(c->iissum); /* no scan runs once the loop has ended */
    c->iissum = NULL;
    rc = uv_loop_close(&c->loop);
    if (rc != 0) {
        fail("event loop still has handles at exit: %s", uv_strerror(rc));
        ret = EXIT_SYSTEM;
        goto out;
    }
    log_lifecycle("stopped");
    ret = 0;
out:
    identity_release(&id);
    return ret;
}

/* A seed for the jitter: the system's random source, else time and pid. */
static uint64_t random_seed(void)
{
    uint64_t seed = 0;
    if (uv_random(NULL, NULL, &seed, sizeof(seed), 0, NULL) != 0)
        seed = (uint64_t)time(NULL) ^ ((uint64_t)uv_os_getpid() << 32);
    return seed | 1; /* xorshift must not start at 0 */
}

int collector_main(int argc, char **argv)
{
#ifndef _WIN32
    /* A client that hangs up mid-response must not kill the collector. */
    signal(SIGPIPE, SIG_IGN);
#endif
    uv_once(&control_once, control_init);

    struct collector c;
    memset(&c, 0, sizeof(c));
    optind = 1;
    /* `tlsgate-collector enroll --config FILE`: enroll once and exit (enroll_first). */
    if (argc > 1 && strcmp(argv[1], "enroll") == 0) {
        c.opt.enroll_command = true;
        argc--;
        argv++;
    }
    int ret = parse_options(argc, argv, &c.opt);
    if (ret == -1 || ret == -2) {
        if (ret == -1)
            usage(stdout);
        else
            printf("tlsgate-collector %s\n", TLSGATE_VERSION);
        options_release(&c.opt);
        return 0;
    }
    if (ret == 0) {
        c.rng = random_seed();
        if (c.opt.enroll_command) {
            ret = enroll_first(&c, true);
            if (ret < 0)
                ret = 0;
        } else {
            ret = run(&c);
        }
    }
    options_release(&c.opt);
    free(c.host);
    /* A request left over from this run must not stop the next one. */
    uv_mutex_lock(&control_lock);
    control_stop = control_refresh = false;
    uv_mutex_unlock(&control_lock);
    return ret;
}
