/*
 * export.c — `tlsgate export csv --view V [--site S] [--out FILE] [--bom]`: the dashboard CSV
 * (DESIGN "CLI contract" fixes the five column sets; csv.h does the escaping).
 *
 * The views and their rows are domain/export.c's (export.h): they stream, so memory stays flat at
 * any fleet size. The whole export reads inside one transaction, so it is one consistent state of
 * the database and two exports of one state are byte-identical.
 *
 * --out FILE appears whole or not at all: rows go to ".FILE.tmp-XXXXXX" in the same folder
 * (mkstemp), which is fsync'ed and renamed over FILE only when everything was written. On any
 * failure the temp file is unlinked; SIGINT, SIGTERM and SIGHUP unlink it too before the process
 * dies of the signal, and SIGXFSZ is ignored so a file-size limit is an ordinary EFBIG. Only a
 * SIGKILL (or a crash) can leave the temp file behind, and it is a dot-file that never has the
 * final name. The temp file is created before the database is opened, so an unwritable folder is
 * reported before any work is done.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "csv.h"
#include "export.h"
#include "gate.h"
#include "inventory.h"
#include "store.h"

/* ---- the temp file behind --out, and the signals that must not leave it behind ---- */

/* The one path a signal handler may unlink: armed (with the cleanup signals blocked) as soon as
 * mkstemp has made the file, disarmed once it is renamed or removed. Process-wide because signal
 * dispositions are; a process runs at most one export. */
static char signal_tmp_path[PATH_MAX];
static volatile sig_atomic_t signal_tmp_armed;

static const int cleanup_signals[] = {SIGINT, SIGTERM, SIGHUP};

static void on_fatal_signal(int sig)
{
    if (signal_tmp_armed)
        unlink(signal_tmp_path);
    signal(sig, SIG_DFL);
    raise(sig);
}

struct export_out {
    const char *path; /* NULL: standard output */
    char tmp[PATH_MAX];
    int fd;
};

static int out_open(struct export_out *o, const char *path)
{
    o->path = path;
    o->fd = STDOUT_FILENO;
    if (!path)
        return 0;
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    int dirlen = slash ? (int)(slash - path) + 1 : 0;
    if (!*base) {
        cli_error("export: --out '%s' names a folder, not a file", path);
        return -EISDIR;
    }
    int n = snprintf(o->tmp, sizeof(o->tmp), "%.*s.%s.tmp-XXXXXX", dirlen, path, base);
    if (n < 0 || (size_t)n >= sizeof(o->tmp)) {
        cli_error("export: --out '%s': path too long", path);
        return -ENAMETOOLONG;
    }

    struct sigaction sa = {0};
    sa.sa_handler = on_fatal_signal;
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < sizeof(cleanup_signals) / sizeof(cleanup_signals[0]); i++)
        sigaction(cleanup_signals[i], &sa, NULL);
    signal(SIGXFSZ, SIG_IGN);

    /* Block the signals while the name is being filled in and armed, so the handler never sees
     * a half-made temp file it does not know about. */
    sigset_t block, old;
    sigemptyset(&block);
    for (size_t i = 0; i < sizeof(cleanup_signals) / sizeof(cleanup_signals[0]); i++)
        sigaddset(&block, cleanup_signals[i]);
    sigprocmask(SIG_BLOCK, &block, &old);
    o->fd = mkstemp(o->tmp);
    int err = errno;
    if (o->fd >= 0) {
        memcpy(signal_tmp_path, o->tmp, sizeof(signal_tmp_path));
        signal_tmp_armed = 1;
    }
    sigprocmask(SIG_SETMASK, &old, NULL);
    if (o->fd < 0) {
        cli_error("export: cannot create a temporary file next to '%s': %s", path, strerror(err));
        return -err;
    }
    /* mkstemp makes 0600; the export is an ordinary file for the dashboards to read. */
    mode_t mask = umask(0);
    umask(mask);
    fchmod(o->fd, 0666 & ~mask);
    return 0;
}

static void out_discard(struct export_out *o)
{
    if (!o->path || o->fd < 0)
        return;
    close(o->fd);
    unlink(o->tmp);
    signal_tmp_armed = 0;
    o->fd = -1;
}

/* Makes the temp file the real one: fsync, close, rename, and fsync the folder so the rename
 * itself survives a power cut. */
static int out_commit(struct export_out *o)
{
    if (!o->path)
        return 0;
    if (fsync(o->fd) < 0) {
        int err = errno;
        cli_error("export: cannot write '%s': %s", o->path, strerror(err));
        out_discard(o);
        return -err;
    }
    int fd = o->fd;
    o->fd = -1;
    if (close(fd) < 0 || rename(o->tmp, o->path) < 0) {
        int err = errno;
        cli_error("export: cannot write '%s': %s", o->path, strerror(err));
        unlink(o->tmp);
        signal_tmp_armed = 0;
        return -err;
    }
    signal_tmp_armed = 0;
    char dir[PATH_MAX];
    const char *slash = strrchr(o->path, '/');
    snprintf(dir, sizeof(dir), "%.*s", slash ? (int)(slash - o->path) + 1 : 1,
             slash ? o->path : ".");
    int dfd = open(dir, O_RDONLY | O_DIRECTORY);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    return 0;
}

/* ---- the command ---- */

#define EXPORT_USAGE                                                                               \
    "Usage: tlsgate [--db FILE] [--config FILE] export csv --view VIEW [--site S] [--out FILE] "   \
    "[--bom]\n\n"                                                                                  \
    "Writes one dashboard view as CSV (RFC 4180, UTF-8, CRLF) to standard output or,\n"            \
    "with --out, to FILE (which appears whole or not at all).\n\n"                                 \
    "views:\n"                                                                                     \
    "  hosts     name,site,roles,os,state,blockers,warnings,last_report,waived,reachable,\n"       \
    "            last_error\n"                                                                     \
    "  servers   name,site,roles,phase,gate,dependents,blocking,legacy_disabled,orphan_risk,\n"    \
    "            wire_legacy_accepted,last_probe,restart_pending\n"                                \
    "  blockers  server,dependent,rule,reason\n"                                                   \
    "  phases    site,phase,entered_at,entered_by\n"                                               \
    "  summary   site,phase,hosts,ready,not_ready,unknown,waived,servers_gate_open\n"              \
    "  history   site,at,phase,hosts,ready,not_ready,unknown,waived,servers,gate_open,\n"          \
    "            gate_blocked,orphan_risk,pull_failing\n"                                          \
    "  history-rules  site,at,rule,hosts\n"                                                        \
    "  pull-failures  host,site,failures,last_attempt,last_success,kind,error\n"                   \
    "  poll      name,site,state,reachable,last_attempt,last_success,failures,next_attempt,\n"     \
    "            error_kind,last_error,cert_not_after\n\n"                                         \
    "options:\n"                                                                                   \
    "  --view VIEW  one of the views above (required)\n"                                           \
    "  --site S     only that site\n"                                                              \
    "  --out FILE   write FILE atomically instead of standard output\n"                            \
    "  --bom        start with a UTF-8 byte order mark (for Excel)\n"

/* CSV is the export's one format: --json does not apply. */
static const struct cli_option export_options[] = {
    {"view", "VIEW"}, {"site", "S"}, {"out", "FILE"}, {"bom", NULL}, {NULL}};
static const struct cli_spec export_csv_spec = {
    .name = "export csv",
    .word = "csv",
    .usage = EXPORT_USAGE,
    .options = export_options,
};
const struct cli_spec *const export_specs[] = {&export_csv_spec, NULL};

static void list_views(char *buf, size_t size)
{
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; i < EXPORT_VIEW_COUNT && used < size; i++)
        used +=
            (size_t)snprintf(buf + used, size - used, "%s%s", i ? ", " : "", export_view_names[i]);
}

struct export_args {
    int view; /* -1 until given */
    const char *site;
    const char *out;
    bool bom;
};

/* Returns CLI_RUN with *args filled, or an exit code (usage printed / error named). */
static int parse_args(struct cli *cli, int argc, char **argv, struct export_args *a)
{
    const struct cli_spec *spec;
    struct cli_args args;
    int code = cli_parse_sub(cli, "export", EXPORT_USAGE, export_specs, argc, argv, &spec, &args);
    if (code != CLI_RUN)
        return code;
    char views[128];
    list_views(views, sizeof(views));
    const char *view = cli_value(&export_csv_spec, &args, "view");
    a->site = cli_value(&export_csv_spec, &args, "site");
    a->out = cli_value(&export_csv_spec, &args, "out");
    a->bom = cli_given(&export_csv_spec, &args, "bom");
    a->view = -1;
    if (!view) {
        cli_error("export: --view is required (valid views: %s)", views);
        return EXIT_USAGE;
    }
    for (int v = 0; v < EXPORT_VIEW_COUNT; v++)
        if (!strcmp(view, export_view_names[v]))
            a->view = v;
    if (a->view < 0) {
        cli_error("export: unknown view '%s' (valid views: %s)", view, views);
        return EXIT_USAGE;
    }
    return CLI_RUN;
}

/* Exit 3 when --site names no site: an empty file would look like a site with no hosts. */
static int check_site(struct store *s, const char *site)
{
    int rc = inv_site_exists(s, site);
    if (!rc)
        return EXIT_OK;
    if (rc == -ENOENT) {
        cli_error("export: --site '%s': no such site in %s", site, store_path(s));
        return EXIT_BADINPUT;
    }
    cli_error("%s", store_errmsg(s));
    return EXIT_SYSTEM;
}

int cmd_export(struct cli *cli, int argc, char **argv)
{
    struct export_args a = {0};
    int code = parse_args(cli, argc, argv, &a);
    if (code != CLI_RUN)
        return code;
    struct export_out out;
    int rc = out_open(&out, a.out);
    if (rc)
        return rc == -EISDIR || rc == -ENAMETOOLONG ? EXIT_USAGE : EXIT_SYSTEM;
    struct store *s = cli_store(cli, false, &code);
    if (!s) {
        out_discard(&out);
        return code;
    }
    if (a.site && (code = check_site(s, a.site))) {
        out_discard(&out);
        return code;
    }

    static struct csv_writer w; /* 64 KiB: not for the stack */
    csv_init(&w, out.fd);
    struct gate_time t = gate_time_config(utc_now(), &cli->config);

    rc = store_begin(s, false);
    if (!rc && a.bom)
        rc = csv_bom(&w);
    if (!rc)
        rc = export_csv(s, (enum export_view)a.view, a.site, &t, &w);
    if (!rc)
        rc = csv_flush(&w);
    store_rollback(s); /* a read: nothing to keep */

    if (rc) {
        if (w.error)
            cli_error("export: cannot write %s%s%s: %s", a.out ? "'" : "",
                      a.out ? a.out : "standard output", a.out ? "'" : "", strerror(-w.error));
        else
            cli_error("export: %s", store_errmsg(s));
        out_discard(&out);
        return EXIT_SYSTEM;
    }
    return out_commit(&out) ? EXIT_SYSTEM : EXIT_OK;
}
