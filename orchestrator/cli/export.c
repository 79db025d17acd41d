/*
 * export.c — `tlsgate export csv --view V [--site S] [--out FILE] [--bom]`: the dashboard CSV
 * (DESIGN "CLI contract" fixes the five column sets; csv.h does the escaping).
 *
 * Streaming: each view is one prepared statement whose rows are written as sqlite3_step yields
 * them, in (site, name) order straight off an index, so memory stays flat at any fleet size. The
 * whole export reads inside one transaction, so it is one consistent state of the database and
 * two exports of one state are byte-identical.
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
#include "gate.h"
#include "hoststate.h"
#include "inventory.h"
#include "phase.h"
#include "pollstatus.h"
#include "store.h"

enum export_view {
    VIEW_HOSTS,
    VIEW_SERVERS,
    VIEW_BLOCKERS,
    VIEW_PHASES,
    VIEW_SUMMARY,
    VIEW_POLL,
    VIEW_COUNT,
};

static const char *const view_names[VIEW_COUNT] = {
    "hosts", "servers", "blockers", "phases", "summary", "poll",
};

static const char *const hosts_columns[] = {
    "name", "site", "roles", "os", "state", "blockers", "warnings", "last_report", "waived",
    "reachable", "last_error", NULL, /* the last two added later: appended, never inserted */
};
static const char *const servers_columns[] = {
    "name", "site", "roles", "phase", "gate", "dependents", "blocking", "legacy_disabled",
    "orphan_risk", NULL,
};
static const char *const blockers_columns[] = {"server", "dependent", "rule", "reason", NULL};
static const char *const phases_columns[] = {"site", "phase", "entered_at", "entered_by", NULL};
static const char *const poll_columns[] = {
    "name", "site", "state", "reachable", "last_attempt", "last_success", "failures",
    "next_attempt", "error_kind", "last_error", "cert_not_after", NULL,
};
static const char *const summary_columns[] = {
    "site", "phase", "hosts", "ready", "not_ready", "unknown", "waived", "servers_gate_open", NULL,
};

/* What every view needs: the writer, the store, and the decisions' inputs. */
struct export_ctx {
    struct csv_writer *w;
    struct store *store;
    const char *site; /* NULL: every site */
    struct gate_time time; /* now and the stale cutoff (now - stale_after) */
    unsigned roles_mask; /* the role set last formatted into roles (0: none yet) */
    char roles[512];
};

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

/* ---- the views ---- */

/* Binds the site filter (if any) as parameter `idx`. The SQL has both forms so the planner can
 * walk the (site, name) index either way. */
static void bind_site(sqlite3_stmt *st, int idx, const char *site)
{
    if (site)
        sqlite3_bind_text(st, idx, site, -1, SQLITE_STATIC);
}

static int text_cell(struct csv_writer *w, sqlite3_stmt *st, int col)
{
    const unsigned char *s = sqlite3_column_text(st, col);
    return csv_cell(w, (const char *)s, (size_t)sqlite3_column_bytes(st, col));
}

static int time_cell(struct csv_writer *w, sqlite3_stmt *st, int col)
{
    if (sqlite3_column_type(st, col) == SQLITE_NULL)
        return csv_cell(w, NULL, 0);
    char iso[32];
    return csv_cell_str(w, utc_iso8601(sqlite3_column_int64(st, col), iso, sizeof(iso)));
}

/* Runs of rows share a role set (clients above all): each set is formatted once per run. */
static int roles_cell_mask(struct export_ctx *x, unsigned mask)
{
    if (mask != x->roles_mask) {
        inv_roles_format(mask, x->roles, sizeof(x->roles));
        x->roles_mask = mask;
    }
    return csv_cell_str(x->w, x->roles);
}

static int roles_cell(struct export_ctx *x, sqlite3_stmt *st, int col)
{
    return roles_cell_mask(x, (unsigned)sqlite3_column_int64(st, col));
}

static int int_or_empty_cell(struct csv_writer *w, sqlite3_stmt *st, int col)
{
    if (sqlite3_column_type(st, col) == SQLITE_NULL)
        return csv_cell(w, NULL, 0);
    return csv_cell_int(w, sqlite3_column_int64(st, col));
}

/* Steps `st` to the end, calling `row` for each row; stops at the first write error. Returns 0,
 * the writer's -errno, or the store's code. */
static int stream_rows(struct export_ctx *x, sqlite3_stmt *st, const char *what,
                       int (*row)(struct export_ctx *, sqlite3_stmt *))
{
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        int err = row(x, st);
        if (err)
            return err;
    }
    if (rc != SQLITE_DONE)
        return store_sqlite_fail(x->store, what);
    return 0;
}

#define HOSTS_SQL(where)                                                                          \
    "SELECT h.name, h.site, h.roles, h.os, " HOSTSTATE_SQL("r", "?1") ", r.blockers, r.warnings," \
    " r.collected_at, " GATE_WAIVER_ACTIVE_SQL("w", "?2") ","                                     \
    " p.last_attempt_at IS NOT NULL, coalesce(p.failures, 0), p.last_error FROM host h"           \
    " LEFT JOIN report r ON r.host_id = h.id LEFT JOIN waiver w ON w.host_id = h.id"              \
    " LEFT JOIN poll p ON p.host_id = h.id " where " ORDER BY h.site, h.name"

static int hosts_row(struct export_ctx *x, sqlite3_stmt *st)
{
    struct csv_writer *w = x->w;
    text_cell(w, st, 0);
    text_cell(w, st, 1);
    roles_cell(x, st, 2);
    text_cell(w, st, 3);
    text_cell(w, st, 4);
    int_or_empty_cell(w, st, 5);
    int_or_empty_cell(w, st, 6);
    time_cell(w, st, 7);
    csv_cell_bool(w, sqlite3_column_int(st, 8) != 0);
    /* reachable: the last pull stored a report (empty: never pulled); pollstatus.h */
    if (sqlite3_column_int(st, 9))
        csv_cell_bool(w, sqlite3_column_int(st, 10) == 0);
    else
        csv_cell(w, NULL, 0);
    text_cell(w, st, 11);
    return csv_end_row(w);
}

/* ---- poll: the daemon's side of every host (pollstatus.h) ---- */

static int time_cell_value(struct csv_writer *w, long long t)
{
    char iso[32];
    return csv_cell_str(w, t ? utc_iso8601(t, iso, sizeof(iso)) : NULL);
}

static int poll_row(const struct pollstatus_host *h, void *arg)
{
    struct csv_writer *w = ((struct export_ctx *)arg)->w;
    csv_cell_str(w, h->name);
    csv_cell_str(w, h->site);
    csv_cell_str(w, h->state);
    csv_cell_str(w, pollstatus_reachable(h));
    time_cell_value(w, h->last_attempt_at);
    time_cell_value(w, h->last_success_at);
    csv_cell_int(w, h->failures);
    time_cell_value(w, h->next_at);
    csv_cell_str(w, h->last_error ? pollstatus_kind_id(h->kind) : NULL);
    csv_cell_str(w, h->last_error);
    time_cell_value(w, h->cert_not_after);
    return csv_end_row(w);
}

static int view_poll(struct export_ctx *x)
{
    int rc = csv_header(x->w, poll_columns);
    return rc ? rc : pollstatus_each(x->store, x->site, false, x->time.cutoff, poll_row, x);
}

static int view_hosts(struct export_ctx *x)
{
    sqlite3_stmt *st;
    int rc = store_prepare(x->store, x->site ? HOSTS_SQL("WHERE h.site = ?3") : HOSTS_SQL(""), &st);
    if (rc)
        return rc;
    sqlite3_bind_int64(st, 1, x->time.cutoff);
    sqlite3_bind_int64(st, 2, x->time.now);
    bind_site(st, 3, x->site);
    rc = csv_header(x->w, hosts_columns);
    if (!rc)
        rc = stream_rows(x, st, "read hosts", hosts_row);
    sqlite3_finalize(st);
    return rc;
}

static int phases_row(struct export_ctx *x, sqlite3_stmt *st)
{
    struct csv_writer *w = x->w;
    text_cell(w, st, 0);
    text_cell(w, st, 1);
    time_cell(w, st, 2);
    text_cell(w, st, 3);
    return csv_end_row(w);
}

static int view_phases(struct export_ctx *x)
{
    sqlite3_stmt *st;
    int rc = store_prepare(x->store,
                           x->site ? "SELECT code, phase, entered_at, entered_by FROM site "
                                     "WHERE code = ?1 ORDER BY code"
                                   : "SELECT code, phase, entered_at, entered_by FROM site "
                                     "ORDER BY code",
                           &st);
    if (rc)
        return rc;
    bind_site(st, 1, x->site);
    rc = csv_header(x->w, phases_columns);
    if (!rc)
        rc = stream_rows(x, st, "read phases", phases_row);
    sqlite3_finalize(st);
    return rc;
}

/* The servers, blockers and summary views are gate.h's decisions, written out: the export never
 * computes a gate itself, so it cannot disagree with `gate list` or `phase status`. */

static int servers_row(const struct gate_server *g, void *arg)
{
    struct export_ctx *x = arg;
    struct csv_writer *w = x->w;
    csv_cell_str(w, g->name);
    csv_cell_str(w, g->site);
    roles_cell_mask(x, g->roles);
    csv_cell_str(w, phase_name(g->phase));
    csv_cell_str(w, g->open ? "open" : "blocked");
    csv_cell_int(w, g->dependents);
    csv_cell_int(w, g->blocking);
    csv_cell_bool(w, g->legacy_disabled);
    csv_cell_bool(w, g->orphan_risk);
    return csv_end_row(w);
}

static int view_servers(struct export_ctx *x)
{
    int rc = csv_header(x->w, servers_columns);
    return rc ? rc : gate_servers(x->store, x->site, &x->time, servers_row, x);
}

static int blockers_row(const struct gate_blocker *b, void *arg)
{
    struct export_ctx *x = arg;
    struct csv_writer *w = x->w;
    csv_cell_str(w, b->server);
    csv_cell_str(w, b->dependent);
    csv_cell_str(w, b->rule);
    csv_cell_str(w, b->reason);
    return csv_end_row(w);
}

static int view_blockers(struct export_ctx *x)
{
    int rc = csv_header(x->w, blockers_columns);
    return rc ? rc : gate_blockers(x->store, x->site, NULL, &x->time, blockers_row, x);
}

static int summary_row(const struct gate_site *g, void *arg)
{
    struct export_ctx *x = arg;
    struct csv_writer *w = x->w;
    csv_cell_str(w, g->code);
    csv_cell_str(w, phase_name(g->phase));
    csv_cell_int(w, g->hosts);
    csv_cell_int(w, g->ready);
    csv_cell_int(w, g->not_ready);
    csv_cell_int(w, g->unknown);
    csv_cell_int(w, g->waived);
    csv_cell_int(w, g->servers_gate_open);
    return csv_end_row(w);
}

static int view_summary(struct export_ctx *x)
{
    int rc = csv_header(x->w, summary_columns);
    return rc ? rc : gate_sites(x->store, x->site, &x->time, summary_row, x);
}

static int (*const view_run[VIEW_COUNT])(struct export_ctx *) = {
    [VIEW_HOSTS] = view_hosts,
    [VIEW_SERVERS] = view_servers,
    [VIEW_BLOCKERS] = view_blockers,
    [VIEW_PHASES] = view_phases,
    [VIEW_SUMMARY] = view_summary,
    [VIEW_POLL] = view_poll,
};

/* ---- the command ---- */

static void usage(FILE *out)
{
    fprintf(out, "usage: tlsgate [--db FILE] [--config FILE] export csv --view VIEW [--site S] "
                 "[--out FILE] [--bom]\n\n"
                 "Writes one dashboard view as CSV (RFC 4180, UTF-8, CRLF) to standard output or,\n"
                 "with --out, to FILE (which appears whole or not at all).\n\n"
                 "views:\n"
                 "  hosts     name,site,roles,os,state,blockers,warnings,last_report,waived,\n"
                 "            reachable,last_error\n"
                 "  servers   name,site,roles,phase,gate,dependents,blocking,legacy_disabled,"
                 "orphan_risk\n"
                 "  blockers  server,dependent,rule,reason\n"
                 "  phases    site,phase,entered_at,entered_by\n"
                 "  summary   site,phase,hosts,ready,not_ready,unknown,waived,servers_gate_open\n"
                 "  poll      name,site,state,reachable,last_attempt,last_success,failures,\n"
                 "            next_attempt,error_kind,last_error,cert_not_after\n\n"
                 "options:\n"
                 "  --view VIEW  one of the views above (required)\n"
                 "  --site S     only that site\n"
                 "  --out FILE   write FILE atomically instead of standard output\n"
                 "  --bom        start with a UTF-8 byte order mark (for Excel)\n");
}

static void list_views(char *buf, size_t size)
{
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; i < VIEW_COUNT && used < size; i++)
        used += (size_t)snprintf(buf + used, size - used, "%s%s", i ? ", " : "", view_names[i]);
}

struct export_args {
    int view; /* -1 until given */
    const char *site;
    const char *out;
    bool bom;
};

/* Returns EXIT_OK with *args filled, or an exit code (usage printed / error named). */
static int parse_args(int argc, char **argv, struct export_args *a, bool *help)
{
    char views[128];
    list_views(views, sizeof(views));
    *help = false;
    a->view = -1;
    if (argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        *help = true;
        return EXIT_OK;
    }
    if (argc < 2 || strcmp(argv[1], "csv")) {
        cli_error("export: the format must be 'csv' (usage: export csv --view VIEW [--site S] "
                  "[--out FILE] [--bom])");
        return EXIT_USAGE;
    }
    for (int i = 2; i < argc; i++) {
        const char *opt = argv[i];
        const char **slot = NULL;
        const char *value = NULL;
        if (!strcmp(opt, "--help") || !strcmp(opt, "-h")) {
            *help = true;
            return EXIT_OK;
        }
        if (!strcmp(opt, "--bom")) {
            a->bom = true;
            continue;
        }
        const char *names[] = {"--view", "--site", "--out"};
        const char *found_view = NULL;
        for (int k = 0; k < 3 && !slot; k++) {
            size_t len = strlen(names[k]);
            if (strncmp(opt, names[k], len))
                continue;
            if (opt[len] == '=')
                value = opt + len + 1;
            else if (opt[len] == '\0') {
                if (i + 1 >= argc) {
                    cli_error("export: %s needs a value", names[k]);
                    return EXIT_USAGE;
                }
                value = argv[++i];
            } else
                continue;
            slot = k == 0 ? &found_view : k == 1 ? &a->site : &a->out;
        }
        if (!slot) {
            cli_error("export: unknown option '%s' (valid: --view %s, --site S, --out FILE, "
                      "--bom)",
                      opt, views);
            return EXIT_USAGE;
        }
        if (!*value) {
            cli_error("export: %s needs a non-empty value", opt);
            return EXIT_USAGE;
        }
        *slot = value;
        if (found_view) {
            a->view = -1;
            for (int v = 0; v < VIEW_COUNT; v++)
                if (!strcmp(found_view, view_names[v]))
                    a->view = v;
            if (a->view < 0) {
                cli_error("export: unknown view '%s' (valid views: %s)", found_view, views);
                return EXIT_USAGE;
            }
        }
    }
    if (a->view < 0) {
        cli_error("export: --view is required (valid views: %s)", views);
        return EXIT_USAGE;
    }
    return EXIT_OK;
}

/* Exit 3 when --site names no site: an empty file would look like a site with no hosts. */
static int check_site(struct store *s, const char *site)
{
    sqlite3_stmt *st;
    if (store_prepare(s, "SELECT 1 FROM site WHERE code = ?1", &st)) {
        cli_error("%s", store_errmsg(s));
        return EXIT_SYSTEM;
    }
    sqlite3_bind_text(st, 1, site, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc == SQLITE_ROW)
        return EXIT_OK;
    if (rc == SQLITE_DONE) {
        cli_error("export: --site '%s': no such site in %s", site, store_path(s));
        return EXIT_BADINPUT;
    }
    store_sqlite_fail(s, "look up the site");
    cli_error("%s", store_errmsg(s));
    return EXIT_SYSTEM;
}

int cmd_export(struct cli *cli, int argc, char **argv)
{
    struct export_args a = {0};
    bool help;
    int code = parse_args(argc, argv, &a, &help);
    if (help) {
        usage(stdout);
        return EXIT_OK;
    }
    if (code)
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
    struct export_ctx x = {
        .w = &w,
        .store = s,
        .site = a.site,
        .time = gate_time_make(utc_now(), cli->config.stale_after),
    };

    rc = store_begin(s, false);
    if (!rc && a.bom)
        rc = csv_bom(&w);
    if (!rc)
        rc = view_run[a.view](&x);
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
