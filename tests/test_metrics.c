/*
 * test_metrics.c — the daemon's Prometheus endpoint (orchestrator/metrics/) with real processes:
 * a simulated fleet (tools/fleetsim: real collector identities over mutual TLS on loopback), the
 * real tlsgate daemon with "metrics" in its config, scraped over plain HTTP on 127.0.0.1. Every
 * line of every scrape is parsed against the text exposition format (a small parser below), and
 * the values are checked against the database file the daemon wrote (plain SQL with the one
 * state definition, hoststate.h) and against `tlsgate gate list --json`.
 *
 * Every wait is on a condition with a deadline; nothing asserts on wall time.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fixture.h"
#include "hoststate.h"
#include "metrics.h"
#include "testutil.h"

static char *dir;
static char db[4096];
static char config_path[4096];
static char ctl_path[4096];
static pid_t sim = -1, daemon_pid = -1;
static int scrape_port;

/* ------------------------------------------------------------------ processes and sockets */

static void setup(void)
{
    dir = tu_tmpdir_with_db(db, sizeof(db));
    snprintf(config_path, sizeof(config_path), "%s", tu_path(dir, "config.json"));
    snprintf(ctl_path, sizeof(ctl_path), "%s", tu_path(dir, "ctl.sock"));
    char *gen[] = {(char *)tu_source_path("tools/gen-certs"), (char *)tu_path(dir, "certs"), NULL};
    ck_assert_int_eq(tu_run(gen, NULL, NULL, NULL), 0);
    ck_assert_int_eq(tu_tlsgate(db, NULL, NULL, "init", NULL), 0);
    sim = daemon_pid = -1;
}

static void stop(pid_t *pid)
{
    tu_kill_reap(*pid, SIGKILL);
    *pid = -1;
}

static void teardown(void)
{
    stop(&daemon_pid);
    tu_kill_reap(sim, SIGTERM);
    tu_rmtree(dir);
    free(dir);
}

/* The config: the fleet's certificates, the metrics address, and `extra` members. */
static void write_config(const char *metrics, const char *extra)
{
    char buf[4096];
    snprintf(buf, sizeof(buf),
             "{\"tls\": {\"ca\": \"certs/ca.pem\", \"cert\": \"certs/orchestrator.pem\", "
             "\"key\": \"certs/orchestrator.key\"}, \"connect_timeout\": 10, \"timeout\": 20%s%s%s"
             "%s%s}",
             metrics ? ", \"metrics\": " : "", metrics ? metrics : "", extra ? ", " : "",
             extra ? extra : "", "");
    tu_write_file(config_path, buf, strlen(buf));
}

/* 40 hosts in sites AA1 and BB2; servers report the legacy protocols disabled. */
static void start_sim(void)
{
    const char *args[] = {"--certs",
                          tu_path(dir, "certs"),
                          "--fixtures",
                          tu_source_path("tests/fixtures/reg"),
                          "--fixtures",
                          tu_source_path("tools/fleetsim/fixtures"),
                          "--server-fixture",
                          "server2019-site-server+legacy-disabled",
                          "--hosts",
                          "40",
                          "--sites",
                          "AA1,BB2",
                          "--mps",
                          "1",
                          "--dps",
                          "1",
                          "--procs",
                          "1",
                          "--inventory",
                          tu_path(dir, "inv.csv"),
                          "--control",
                          ctl_path,
                          NULL};
    sim = tu_fleetsim_start(args, tu_path(dir, "sim.log"), "fleetsim: ready 40 hosts", 20000, 200,
                            NULL);
}

static void ctl(const char *a, const char *b, const char *c)
{
    char *out = tu_fleetsim_ctl(ctl_path, a, b, c);
    ck_assert_msg(out && !strncmp(out, "ok", 2), "fleetsim ctl %s %s: %s", a, b, out);
    free(out);
}

static pid_t start_daemon(void)
{
    return tu_tlsgate_start(db, config_path, "daemon", tu_path(dir, "daemon.log"), false);
}

static void fail_with_log(const char *what)
{
    size_t len = 0;
    char *log = tu_read_file(tu_path(dir, "daemon.log"), &len);
    /* Check carries a message of a few KiB at most: the end of the log. */
    const char *tail = log ? log + (len > 1500 ? len - 1500 : 0) : "(none)";
    ck_abort_msg("%.600s; daemon log (end):\n%s", what, tail);
}

/* One HTTP/1.1 request on a fresh connection to the metrics port; the status (0: no answer)
 * and the body (malloc'd, may be NULL). */
static int http(const char *method, const char *path, char **body)
{
    if (body)
        *body = NULL;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)scrape_port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        close(fd);
        return 0;
    }
    struct timeval tv = {10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    char req[256];
    int n =
        snprintf(req, sizeof(req), "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
                 method, path);
    if (write(fd, req, (size_t)n) != n) {
        close(fd);
        return 0;
    }
    size_t len = 0, cap = 65536;
    char *buf = malloc(cap);
    for (;;) {
        if (len + 1 >= cap)
            buf = realloc(buf, cap *= 2);
        ssize_t r = read(fd, buf + len, cap - len - 1);
        if (r <= 0)
            break;
        len += (size_t)r;
    }
    close(fd);
    buf[len] = '\0';
    int status = 0;
    if (sscanf(buf, "HTTP/1.%*d %d", &status) != 1)
        status = 0;
    char *sep = strstr(buf, "\r\n\r\n");
    if (body && sep)
        *body = strdup(sep + 4);
    if (status == 200 && !strstr(buf, "Content-Type: text/plain; version=0.0.4"))
        status = -1; /* the exposition format's content type is part of the contract */
    free(buf);
    return status;
}

/* ------------------------------------------------------------------ the exposition format */

#define MAX_SERIES 512

struct series {
    char key[256]; /* name{labels} as written */
    char name[96];
    double value;
};

struct scrape {
    struct series s[MAX_SERIES];
    int n;
};

static bool name_char(char c, bool first)
{
    return isalpha((unsigned char)c) || c == '_' || c == ':' ||
           (!first && isdigit((unsigned char)c));
}

/* Parses the whole page against the text format (0.0.4): "# HELP name text", "# TYPE name
 * type" (once each, TYPE before the metric's samples), other comments, and samples
 * "name{label="value",...} value [timestamp]". Also the project's conventions: tlsgate_ prefix,
 * counters end in _total, every sample's metric has HELP and TYPE, no series twice. Returns
 * NULL, or what is wrong (static text with the line). */
static const char *parse_page(const char *page, struct scrape *out)
{
    static char why[512];
    char helped[64][128], typed[64][128], types[64][16];
    int nhelp = 0, ntype = 0;
    out->n = 0;
    size_t plen = strlen(page);
    if (plen == 0 || page[plen - 1] != '\n')
        return "the page does not end with a line feed";
    const char *line = page;
    while (*line) {
        const char *eol = strchr(line, '\n');
        size_t len = (size_t)(eol - line);
        char l[1024];
        if (len >= sizeof(l))
            return "a line over 1023 bytes";
        memcpy(l, line, len);
        l[len] = '\0';
        line = eol + 1;
        if (len == 0)
            continue; /* empty lines are allowed and ignored */
#define BAD(msg)                                                                                   \
    do {                                                                                           \
        snprintf(why, sizeof(why), "%s: %.400s", msg, l);                                          \
        return why;                                                                                \
    } while (0)
        if (l[0] == '#') {
            char kw[8], name[128], rest[900];
            rest[0] = '\0';
            int k = sscanf(l, "# %7s %127s %899[^\n]", kw, name, rest);
            if (k < 2 || (strcmp(kw, "HELP") && strcmp(kw, "TYPE")))
                continue; /* an ordinary comment */
            for (int i = 0; name[i]; i++)
                if (!name_char(name[i], i == 0))
                    BAD("bad metric name");
            if (!strcmp(kw, "HELP")) {
                if (k < 3 || !rest[0])
                    BAD("HELP without text");
                for (int i = 0; i < nhelp; i++)
                    if (!strcmp(helped[i], name))
                        BAD("HELP twice");
                snprintf(helped[nhelp++], sizeof(helped[0]), "%s", name);
            } else {
                if (strcmp(rest, "counter") && strcmp(rest, "gauge") && strcmp(rest, "histogram") &&
                    strcmp(rest, "summary") && strcmp(rest, "untyped"))
                    BAD("unknown TYPE");
                for (int i = 0; i < ntype; i++)
                    if (!strcmp(typed[i], name))
                        BAD("TYPE twice");
                for (int i = 0; i < out->n; i++)
                    if (!strcmp(out->s[i].name, name))
                        BAD("TYPE after the metric's samples");
                snprintf(typed[ntype], sizeof(typed[0]), "%s", name);
                snprintf(types[ntype++], sizeof(types[0]), "%s", rest);
            }
            if (nhelp >= 64 || ntype >= 64)
                BAD("too many metrics for this parser");
            continue;
        }
        /* A sample. */
        const char *p = l;
        struct series *s = &out->s[out->n];
        size_t nl = 0;
        while (name_char(*p, nl == 0) && nl < sizeof(s->name) - 1)
            s->name[nl++] = *p++;
        s->name[nl] = '\0';
        if (nl == 0)
            BAD("no metric name");
        if (*p == '{') {
            p++;
            char seen_labels[16][64];
            int nlabels = 0;
            while (*p != '}') {
                char lname[64];
                size_t ln = 0;
                if (!name_char(*p, true) || *p == ':')
                    BAD("bad label name");
                while ((isalnum((unsigned char)*p) || *p == '_') && ln < sizeof(lname) - 1)
                    lname[ln++] = *p++;
                lname[ln] = '\0';
                if (!strncmp(lname, "__", 2))
                    BAD("reserved label name");
                for (int i = 0; i < nlabels; i++)
                    if (!strcmp(seen_labels[i], lname))
                        BAD("label twice");
                if (nlabels < 16)
                    snprintf(seen_labels[nlabels++], sizeof(seen_labels[0]), "%s", lname);
                if (*p++ != '=' || *p++ != '"')
                    BAD("label without =\"value\"");
                while (*p && *p != '"') {
                    if (*p == '\\') {
                        p++;
                        if (*p != '\\' && *p != '"' && *p != 'n')
                            BAD("bad escape in a label value");
                    }
                    p++;
                }
                if (*p++ != '"')
                    BAD("unterminated label value");
                if (*p == ',')
                    p++;
                else if (*p != '}')
                    BAD("labels not separated by ','");
            }
            p++;
        }
        size_t keylen = (size_t)(p - l);
        if (keylen >= sizeof(s->key))
            BAD("series too long for this parser");
        memcpy(s->key, l, keylen);
        s->key[keylen] = '\0';
        if (*p++ != ' ')
            BAD("no space before the value");
        char *end;
        if (!strncmp(p, "NaN", 3) || !strncmp(p, "+Inf", 4) || !strncmp(p, "-Inf", 4)) {
            s->value = NAN;
            end = (char *)p + (p[0] == 'N' ? 3 : 4);
        } else {
            errno = 0;
            s->value = strtod(p, &end);
            if (end == p || errno)
                BAD("bad value");
        }
        if (*end == ' ') { /* an optional timestamp: an integer (ms) */
            const char *t = end + 1;
            strtoll(t, &end, 10);
            if (end == t)
                BAD("bad timestamp");
        }
        if (*end)
            BAD("trailing text after the value");
        /* The project's conventions. */
        if (strncmp(s->name, "tlsgate_", 8))
            BAD("metric without the tlsgate_ prefix");
        const char *type = NULL;
        for (int i = 0; i < ntype; i++)
            if (!strcmp(typed[i], s->name))
                type = types[i];
        bool help = false;
        for (int i = 0; i < nhelp; i++)
            help = help || !strcmp(helped[i], s->name);
        if (!type || !help)
            BAD("sample before its HELP and TYPE");
        size_t sl = strlen(s->name);
        bool total = sl > 6 && !strcmp(s->name + sl - 6, "_total");
        if (!strcmp(type, "counter") != total)
            BAD("a counter must end in _total, and only a counter");
        if (!strcmp(type, "counter") && !(s->value >= 0))
            BAD("a negative counter");
        for (int i = 0; i < out->n; i++)
            if (!strcmp(out->s[i].key, s->key))
                BAD("series twice");
        for (size_t i = 0; s->name[i]; i++)
            if (isupper((unsigned char)s->name[i]))
                BAD("not snake_case");
        if (++out->n >= MAX_SERIES)
            BAD("too many series for this parser");
#undef BAD
    }
    return NULL;
}

/* The value of one series ("name" or "name{labels}" exactly as written), or -1 when absent. */
static double get(const struct scrape *sc, const char *key)
{
    for (int i = 0; i < sc->n; i++)
        if (!strcmp(sc->s[i].key, key))
            return sc->s[i].value;
    return -1;
}

static double getf(const struct scrape *sc, const char *fmt, const char *a, const char *b)
{
    char key[256];
    snprintf(key, sizeof(key), fmt, a, b);
    return get(sc, key);
}

/* Scrapes and parses; ck_abort on a protocol or format error. */
static void scrape(struct scrape *sc)
{
    char *body = NULL;
    int status = http("GET", "/metrics", &body);
    if (status != 200) {
        char msg[128];
        snprintf(msg, sizeof(msg), "GET /metrics answered %d", status);
        fail_with_log(msg);
    }
    const char *bad = parse_page(body, sc);
    ck_assert_msg(bad == NULL, "%s\nin:\n%s", bad, body);
    free(body);
}

/* ------------------------------------------------------------------ the database's answer */

/* Per site, by the one state definition (hoststate.h), waived, and the gate's answer from
 * `tlsgate gate list --json`; NULL when the scrape agrees, else the first difference. */
static const char *compare_with_db(const struct scrape *sc)
{
    static char why[512];
    const char *sites[] = {"AA1", "BB2"};
    const char *states[] = {"ready", "not_ready", "unknown"};
    char sql[1024];
    for (int i = 0; i < 2; i++) {
        for (int j = 0; j < 3; j++) {
            snprintf(sql, sizeof(sql),
                     "SELECT count(*) FROM host h LEFT JOIN report r ON r.host_id = h.id "
                     "WHERE h.site = ?1 AND " HOSTSTATE_SQL("r", "(unixepoch() - 86400)") " = '%s'",
                     states[j]);
            long long want = tu_db_int(db, sql, sites[i]);
            double got = getf(sc, "tlsgate_hosts{site=\"%s\",state=\"%s\"}", sites[i], states[j]);
            if (got != (double)want) {
                snprintf(why, sizeof(why), "%s %s: metrics %g, database %lld", sites[i], states[j],
                         got, want);
                return why;
            }
        }
        long long waived =
            tu_db_int(db,
                      "SELECT count(*) FROM waiver w JOIN host h ON h.id = w.host_id "
                      "WHERE h.site = ?1 AND (w.until_at IS NULL OR w.until_at > "
                      "unixepoch())",
                      sites[i]);
        double got = getf(sc, "tlsgate_hosts_waived{site=\"%s\"}%s", sites[i], "");
        if (got != (double)waived) {
            snprintf(why, sizeof(why), "%s waived: metrics %g, database %lld", sites[i], got,
                     waived);
            return why;
        }
    }
    /* The gate, as the CLI answers it from the same file. */
    char *out = NULL;
    ck_assert_int_le(tu_tlsgate(db, &out, NULL, "gate", "list", "--json", NULL), 1);
    json_error_t e;
    json_t *root = json_loads(out, 0, &e);
    ck_assert_msg(root != NULL, "gate list --json: %s", e.text);
    free(out);
    long open[2] = {0}, blocked[2] = {0}, risk[2] = {0};
    size_t k;
    json_t *srv;
    json_array_foreach(json_object_get(root, "servers"), k, srv)
    {
        int i = !strcmp(json_string_value(json_object_get(srv, "site")), "AA1") ? 0 : 1;
        if (!strcmp(json_string_value(json_object_get(srv, "gate")), "open"))
            open[i]++;
        else
            blocked[i]++;
        if (json_is_true(json_object_get(srv, "orphan_risk")))
            risk[i]++;
    }
    json_decref(root);
    for (int i = 0; i < 2; i++) {
        double o = getf(sc, "tlsgate_server_gates{site=\"%s\",gate=\"%s\"}", sites[i], "open");
        double b = getf(sc, "tlsgate_server_gates{site=\"%s\",gate=\"%s\"}", sites[i], "blocked");
        double r = getf(sc, "tlsgate_servers_orphan_risk{site=\"%s\"}%s", sites[i], "");
        if (o != open[i] || b != blocked[i] || r != risk[i]) {
            snprintf(why, sizeof(why),
                     "%s gates: metrics open %g blocked %g orphan risk %g; gate list open %ld "
                     "blocked %ld orphan risk %ld",
                     sites[i], o, b, r, open[i], blocked[i], risk[i]);
            return why;
        }
    }
    return NULL;
}

/* ------------------------------------------------------------------ tests */

START_TEST(scrape_parses_and_agrees_with_the_database)
{
    start_sim();
    char *err = NULL;
    ck_assert_msg(
        tu_tlsgate(db, NULL, &err, "inventory", "import", tu_path(dir, "inv.csv"), NULL) == 0,
        "import: %s", err);
    free(err);
    /* Site BB2 in enforce (gates may open there); two clients down, one with the wrong
     * certificate, one waived. */
    struct store *s = fx_open(db);
    fx_sql(s, "UPDATE site SET phase = 'enforce' WHERE code = 'BB2'");
    store_close(s);
    ctl("stop", "ws000001-aa1.sim.contoso.com", NULL);
    ctl("stop", "ws000002-bb2.sim.contoso.com", NULL);
    ctl("misbehave", "ws000003-aa1.sim.contoso.com", "wrong-cert");
    ck_assert_int_eq(tu_tlsgate(db, NULL, NULL, "waive", "ws000004-bb2.sim.contoso.com", "--reason",
                                "decommissioned next week", NULL),
                     0);

    scrape_port = tu_closed_port();
    char addr[64];
    snprintf(addr, sizeof(addr), "\"127.0.0.1:%d\"", scrape_port);
    write_config(addr, "\"interval\": 3600, \"jitter\": 0, \"concurrency\": 64");
    daemon_pid = start_daemon();

    /* Until a round has ended and the per-site numbers read after it agree with the file. */
    struct scrape *sc = calloc(1, sizeof(*sc));
    const char *diff = "no scrape yet";
    long long hosts = tu_db_int(db, "SELECT count(*) FROM host", NULL);
    /* Generous timeouts (above) and this wait: a slow machine (or a sanitizer build) may need
     * retries before every reachable host is stored; the gauges must then catch up. */
    for (int waited = 0; waited < 150000 && diff; waited += 200) {
        usleep(200000);
        if (http("GET", "/metrics", NULL) != 200)
            continue; /* not listening yet */
        scrape(sc);
        if (get(sc, "tlsgate_rounds_total") < 1) {
            diff = "no round ended";
            continue;
        }
        if (tu_db_int(db, "SELECT count(*) FROM poll WHERE last_success_at IS NOT NULL", NULL) <
            hosts - 3) {
            diff = "not every reachable host stored yet";
            continue;
        }
        diff = compare_with_db(sc);
    }
    if (diff)
        fail_with_log(diff);

    /* The counters, against the poll table. */
    long long stored =
        tu_db_int(db, "SELECT count(*) FROM poll WHERE last_success_at IS NOT NULL", NULL);
    ck_assert_int_eq(stored, hosts - 3);
    ck_assert(get(sc, "tlsgate_pulls_total{outcome=\"stored\"}") >= (double)stored);
    ck_assert(get(sc, "tlsgate_pulls_total{outcome=\"connect\"}") >= 2);
    ck_assert(get(sc, "tlsgate_pulls_total{outcome=\"tls\"}") >= 1);
    ck_assert(get(sc, "tlsgate_pulls_total{outcome=\"other\"}") == 0);
    ck_assert(get(sc, "tlsgate_pulls_total{outcome=\"invalid_report\"}") == 0);
    double total = 0;
    for (int i = 0; i < sc->n; i++)
        if (!strcmp(sc->s[i].name, "tlsgate_pulls_total"))
            total += sc->s[i].value;
    ck_assert(total >= (double)hosts);
    ck_assert(get(sc, "tlsgate_hosts_scheduled") == (double)hosts);
    ck_assert(get(sc, "tlsgate_hosts_overdue") == 0);
    ck_assert(get(sc, "tlsgate_round_duration_seconds") >= 0);
    long long last_round = (long long)get(sc, "tlsgate_last_successful_round_timestamp_seconds");
    ck_assert_int_ge(last_round, tu_db_int(db, "SELECT max(last_attempt_at) FROM poll", NULL) - 1);
    ck_assert(get(sc, "tlsgate_metrics_refresh_timestamp_seconds") >= (double)last_round);
    ck_assert(get(sc, "tlsgate_metrics_refresh_failures_total") == 0);
    ck_assert(get(sc, "tlsgate_metrics_refresh_duration_seconds") >= 0);
    printf("metrics: %d series; last per-site read took %.3f s\n", sc->n,
           get(sc, "tlsgate_metrics_refresh_duration_seconds"));
    ck_assert(get(sc, "tlsgate_site_phase{site=\"BB2\",phase=\"enforce\"}") == 1);
    ck_assert(get(sc, "tlsgate_site_phase{site=\"BB2\",phase=\"inventory\"}") == 0);
    ck_assert(get(sc, "tlsgate_site_phase{site=\"AA1\",phase=\"inventory\"}") == 1);
    /* The fleet has unpatched clients and servers with the legacy protocols off: risk shows. */
    ck_assert(get(sc, "tlsgate_servers_orphan_risk{site=\"AA1\"}") >= 1);
    ck_assert(get(sc, "tlsgate_hosts_waived{site=\"BB2\"}") == 1);
    ck_assert(get(sc, "tlsgate_hosts{site=\"AA1\",state=\"unknown\"}") >= 2);
    free(sc);

    /* Only GET /metrics. */
    ck_assert_int_eq(http("GET", "/", NULL), 404);
    ck_assert_int_eq(http("GET", "/metrics/x", NULL), 404);
    ck_assert_int_eq(http("POST", "/metrics", NULL), 405);
    ck_assert_int_eq(http("DELETE", "/metrics", NULL), 405);

    kill(daemon_pid, SIGTERM);
    int rc = tu_wait_exit(daemon_pid, 30000);
    daemon_pid = -1;
    if (rc != 0)
        fail_with_log("the daemon did not stop cleanly");
    ck_assert_int_eq(http("GET", "/metrics", NULL), 0); /* nothing listens any more */
}
END_TEST

/* Connections are bounded: beyond the per-address limit a connection is closed unanswered, and
 * once the idle ones go the endpoint answers again. */
START_TEST(connections_are_bounded)
{
    scrape_port = tu_closed_port();
    char addr[64];
    snprintf(addr, sizeof(addr), "\"127.0.0.1:%d\"", scrape_port);
    write_config(addr, "\"interval\": 3600");
    daemon_pid = start_daemon();
    bool up = false;
    for (int waited = 0; waited < 30000 && !up; waited += 100) {
        up = http("GET", "/metrics", NULL) == 200;
        if (!up)
            usleep(100000);
    }
    if (!up)
        fail_with_log("the endpoint did not answer");
    int held[8];
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)scrape_port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    for (int i = 0; i < 8; i++) {
        held[i] = socket(AF_INET, SOCK_STREAM, 0);
        ck_assert_int_eq(connect(held[i], (struct sockaddr *)&a, sizeof(a)), 0);
    }
    /* A ninth from the same address: accepted by the kernel, closed by the server. */
    int status = 200;
    for (int waited = 0; waited < 10000 && status == 200; waited += 100) {
        status = http("GET", "/metrics", NULL);
        if (status == 200)
            usleep(100000); /* the held connections may not be accepted yet */
    }
    ck_assert_int_eq(status, 0);
    for (int i = 0; i < 8; i++)
        close(held[i]);
    up = false;
    for (int waited = 0; waited < 10000 && !up; waited += 100) {
        up = http("GET", "/metrics", NULL) == 200;
        if (!up)
            usleep(100000);
    }
    ck_assert(up);
    kill(daemon_pid, SIGTERM);
    ck_assert_int_eq(tu_wait_exit(daemon_pid, 30000), 0);
    daemon_pid = -1;
}
END_TEST

/* A bad "metrics" value names the key (exit 3, nothing started); a taken port stops the daemon
 * at start with exit 4 naming the port; without the key nothing listens. */
START_TEST(bad_settings_are_refused)
{
    const char *bad[] = {"\"localhost:9464\"",
                         "\"127.0.0.1\"",
                         "\"127.0.0.1:0\"",
                         "\"127.0.0.1:65536\"",
                         "\"::1:9464\"",
                         "\"[::1]:\"",
                         "9464",
                         "\"127.0.0.1.5:9464\"",
                         "\"127.0.0.1:94x\""};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        write_config(bad[i], NULL);
        char *err = NULL;
        int rc = tu_run((char *[]){(char *)tu_build_path("orchestrator/tlsgate"), "--db", db,
                                   "--config", config_path, "daemon", NULL},
                        NULL, NULL, &err);
        ck_assert_msg(rc == 3, "%s: exit %d", bad[i], rc);
        ck_assert_msg(err && strstr(err, "metrics:") && strstr(err, config_path), "%s: %s", bad[i],
                      err);
        free(err);
    }
    /* IPv6 loopback is accepted by the config. */
    write_config("\"[::1]:9464\"", NULL);
    ck_assert_int_eq(tu_tlsgate(db, NULL, NULL, "--config", config_path, "audit", NULL), 0);

    int taken;
    int fd = tu_loopback_listener(1, &taken);
    char addr[64];
    snprintf(addr, sizeof(addr), "\"127.0.0.1:%d\"", taken);
    write_config(addr, NULL);
    char *err = NULL;
    int rc = tu_run((char *[]){(char *)tu_build_path("orchestrator/tlsgate"), "--db", db,
                               "--config", config_path, "daemon", NULL},
                    NULL, NULL, &err);
    close(fd);
    ck_assert_int_eq(rc, 4);
    char port[16];
    snprintf(port, sizeof(port), "port %d", taken);
    ck_assert_msg(err && strstr(err, port) && strstr(err, "in use"), "%s", err);
    free(err);
}
END_TEST

/* The outcome label from the reason the poller recorded, in the words of pull/transfer.c
 * (libcurl's message after "URL via ADDRESS: ") and pull/writer.c. */
START_TEST(outcomes_are_named_from_the_recorded_reason)
{
    static const struct {
        bool ok;
        const char *error;
        enum metrics_outcome want;
    } cases[] = {
        {true, NULL, OUTCOME_STORED},
        {false,
         "https://a.test/v1/readiness via 127.0.0.1:1: Failed to connect to 127.0.0.1 port 1 "
         "after 0 ms: Couldn't connect to server",
         OUTCOME_CONNECT},
        {false,
         "https://a.test/v1/readiness via 127.0.0.1:9: Operation timed out after 3001 "
         "milliseconds with 0 bytes received",
         OUTCOME_TIMEOUT},
        {false,
         "https://a.test/v1/readiness via 127.0.0.1:9: SSL: no alternative certificate subject "
         "name matches target host name 'a.test'",
         OUTCOME_TLS},
        {false, "report over 262144 bytes (transfer aborted)", OUTCOME_TOO_BIG},
        {false, "HTTP status 503 from https://a.test/v1/readiness", OUTCOME_HTTP_STATUS},
        {false, "invalid report: os.build: must be an integer", OUTCOME_INVALID_REPORT},
        /* A collector's bytes quoted in the reason cannot pass for another outcome. */
        {false, "report is for host \"Couldn't connect SSL\", not a.test", OUTCOME_WRONG_HOST},
        {false,
         "collected_at 2030-01-01T00:00:00Z is 99 s in the future (more than the 300 s "
         "allowed skew)",
         OUTCOME_FUTURE_REPORT},
        {false, "older than stored report", OUTCOME_OLDER_REPORT},
        {false, "report not stored: disk I/O error", OUTCOME_OTHER},
        {false, "something new", OUTCOME_OTHER},
        {false, NULL, OUTCOME_OTHER},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        enum metrics_outcome got = metrics_outcome_of(cases[i].ok, cases[i].error);
        ck_assert_msg(got == cases[i].want, "%s: %s, want %s", cases[i].error,
                      metrics_outcome_name(got), metrics_outcome_name(cases[i].want));
    }
    ck_assert_str_eq(metrics_outcome_name(OUTCOME_TOO_BIG), "too_big");
}
END_TEST

static Suite *metrics_suite(void)
{
    Suite *s = suite_create("metrics");
    TCase *tc =
        tu_tcase(s, "metrics", setup, teardown,
                 TU_TESTS(scrape_parses_and_agrees_with_the_database, connections_are_bounded,
                          bad_settings_are_refused, outcomes_are_named_from_the_recorded_reason));
    tcase_set_timeout(tc, 280);
    return s;
}

int main(void) { return tu_run_suite(metrics_suite()); }
