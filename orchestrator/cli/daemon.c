/*
 * daemon.c — `tlsgate daemon` (pull on schedule until SIGTERM/SIGINT, SIGHUP reloads) and
 * `tlsgate collect [--host H]` (one round now, with progress). Both are thin shells around the
 * poller (poll.h) on one libuv loop; this file owns the loop, the signals and what the user sees.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "cli.h"
#include "poll.h"
#include "store.h"

/* How long in-flight transfers may run after SIGTERM/SIGINT before they are abandoned. */
#define DAEMON_GRACE_MS 5000
/* The progress line is redrawn at most this often. */
#define PROGRESS_EVERY_NS (100ull * 1000 * 1000)
/* Failed hosts named again in collect's summary (all are printed as they happen). */
#define SUMMARY_FAILURES_MAX 20

struct run {
    struct cli *cli;
    uv_loop_t loop;
    uv_signal_t sig_term, sig_int, sig_hup;
    struct poll *poll;
    bool interrupted;
    unsigned grace_ms; /* in-flight transfers' time after SIGTERM/SIGINT */
    /* collect */
    bool tty;
    uint64_t started_ns, drawn_ns;
    size_t total, ok, failed;
    char *failures[SUMMARY_FAILURES_MAX];
    size_t nfailures;
    char store_error[512];
};

static void on_signal_closed(uv_handle_t *h) { (void)h; }

static void note_total(struct run *r)
{
    struct poll_stats st;
    poll_get_stats(r->poll, &st);
    if (st.hosts > r->total)
        r->total = st.hosts;
}

static void on_stopped(struct poll *p, void *data)
{
    struct run *r = data;
    note_total(r);
    const char *se = poll_store_error(p);
    if (se && !r->store_error[0])
        snprintf(r->store_error, sizeof(r->store_error), "%s", se);
    uv_close((uv_handle_t *)&r->sig_term, on_signal_closed);
    uv_close((uv_handle_t *)&r->sig_int, on_signal_closed);
    uv_close((uv_handle_t *)&r->sig_hup, on_signal_closed);
}

static void on_stop_signal(uv_signal_t *s, int signum)
{
    struct run *r = s->data;
    poll_log(LOG_INFO, NULL, "%s: stopping (in-flight transfers get %u ms)",
             signum == SIGTERM ? "SIGTERM" : "SIGINT", r->grace_ms);
    r->interrupted = true;
    poll_stop(r->poll, r->grace_ms);
}

static void on_hup(uv_signal_t *s, int signum)
{
    (void)signum;
    struct run *r = s->data;
    struct config next;
    config_init(&next);
    if (r->cli->config_path) {
        char err[512];
        if (config_load(&next, r->cli->config_path, err, sizeof(err))) {
            poll_log(LOG_ERROR, NULL, "SIGHUP: keeping the old settings: %s", err);
            config_release(&next);
            return;
        }
    }
    if (poll_reload(r->poll, &next) == 0) {
        poll_log(LOG_INFO, NULL, "SIGHUP: settings and inventory reloaded");
        config_release(&r->cli->config);
        r->cli->config = next;
    } else {
        config_release(&next);
    }
}

static int setup_signals(struct run *r, bool with_hup)
{
    uv_signal_t *sigs[] = {&r->sig_term, &r->sig_int, &r->sig_hup};
    for (int i = 0; i < 3; i++) {
        uv_signal_init(&r->loop, sigs[i]);
        sigs[i]->data = r;
    }
    uv_signal_start(&r->sig_term, on_stop_signal, SIGTERM);
    uv_signal_start(&r->sig_int, on_stop_signal, SIGINT);
    if (with_hup)
        uv_signal_start(&r->sig_hup, on_hup, SIGHUP);
    /* A peer closing mid-write must not kill the process; libcurl reports it as an error. */
    signal(SIGPIPE, SIG_IGN);
    return 0;
}

/* Runs the loop to its end and closes it; EXIT_OK, or EXIT_SYSTEM if a handle leaked. */
static int finish_loop(struct run *r)
{
    uv_run(&r->loop, UV_RUN_DEFAULT);
    poll_free(r->poll);
    r->poll = NULL;
    int rc = uv_loop_close(&r->loop);
    if (rc) {
        cli_error("event loop did not close cleanly: %s", uv_strerror(rc));
        return EXIT_SYSTEM;
    }
    return EXIT_OK;
}

static int start(struct run *r, const struct poll_options *opt, int *code)
{
    struct store *s = cli_store(r->cli, false, code);
    if (!s)
        return -1;
    int rc = uv_loop_init(&r->loop);
    if (rc) {
        cli_error("cannot create the event loop: %s", uv_strerror(rc));
        *code = EXIT_SYSTEM;
        return -1;
    }
    char err[512];
    if ((rc = poll_new(&r->loop, s, &r->cli->config, opt, &r->poll, err, sizeof(err)))) {
        cli_error("%s", err);
        *code = rc == -EINVAL ? EXIT_BADINPUT : EXIT_SYSTEM;
        uv_loop_close(&r->loop);
        return -1;
    }
    setup_signals(r, !opt->round);
    if (poll_start(r->poll)) {
        cli_error("cannot start the writer thread");
        *code = EXIT_SYSTEM;
        poll_stop(r->poll, 0);
        finish_loop(r);
        return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------- daemon */

int cmd_daemon(struct cli *cli, int argc, char **argv)
{
    if (argc > 1) {
        if (!strcmp(argv[1], "--help")) {
            printf("usage: tlsgate [--db FILE] [--config FILE] daemon\n\n"
                   "Pulls every collector of the inventory on schedule (config: interval, jitter,\n"
                   "concurrency, timeouts, backoff_max, tls) and stores the reports, until\n"
                   "SIGTERM or SIGINT. SIGHUP re-reads the config file and the inventory.\n"
                   "Logs go to stderr: time, level, host, event.\n");
            return EXIT_OK;
        }
        cli_error("daemon: unexpected argument '%s'", argv[1]);
        return EXIT_USAGE;
    }
    poll_log_set_level(cli->config.log_level);
    struct run r = {.cli = cli, .grace_ms = DAEMON_GRACE_MS};
    struct poll_options opt = {.on_stopped = on_stopped, .data = &r};
    int code = EXIT_OK;
    if (start(&r, &opt, &code))
        return code;
    poll_log(LOG_INFO, NULL, "daemon started (pid %ld, database %s)", (long)getpid(),
             cli->db_path);
    code = finish_loop(&r);
    if (r.store_error[0]) {
        cli_error("daemon: cannot start: %s", r.store_error);
        return EXIT_SYSTEM;
    }
    poll_log(LOG_INFO, NULL, "daemon stopped");
    return code;
}

/* ---------------------------------------------------------------- collect */

static void draw_progress(struct run *r, bool final)
{
    struct poll_stats st;
    poll_get_stats(r->poll, &st);
    double secs = (double)(uv_hrtime() - r->started_ns) / 1e9;
    size_t done = r->ok + r->failed;
    fprintf(stdout, "\r\033[Kcollect: %zu done, %zu failed, %zu remaining, %.1f hosts/s%s",
            r->ok, r->failed, r->total > done ? r->total - done : 0,
            secs > 0 ? (double)done / secs : 0.0, final ? "\n" : "");
    fflush(stdout);
}

static void on_outcome(struct poll *p, const struct poll_outcome *o, void *data)
{
    (void)p;
    struct run *r = data;
    note_total(r);
    if (o->ok) {
        r->ok++;
    } else {
        r->failed++;
        if (r->nfailures < SUMMARY_FAILURES_MAX) {
            char *line = NULL;
            if (asprintf(&line, "%s: %s", o->host, o->error) >= 0)
                r->failures[r->nfailures++] = line;
        }
    }
    if (!r->tty) {
        if (o->ok)
            printf("ok %s\n", o->host);
        else
            printf("failed %s: %s\n", o->host, o->error);
        return;
    }
    if (!o->ok) {
        printf("\r\033[Kfailed %s: %s\n", o->host, o->error);
    }
    uint64_t now = uv_hrtime();
    if (now - r->drawn_ns >= PROGRESS_EVERY_NS || !o->ok) {
        r->drawn_ns = now;
        draw_progress(r, false);
    }
}

static void on_round_done(struct poll *p, void *data)
{
    struct run *r = data;
    note_total(r);
    const char *se = poll_store_error(p);
    if (se)
        snprintf(r->store_error, sizeof(r->store_error), "%s", se);
    poll_stop(p, 0);
}

int cmd_collect(struct cli *cli, int argc, char **argv)
{
    const char *host = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help")) {
            printf("usage: tlsgate [--db FILE] [--config FILE] collect [--host HOST]\n\n"
                   "Pulls every collector of the inventory (or only HOST) once, now, and stores\n"
                   "the reports. On a terminal a progress line shows done / failed / remaining\n"
                   "and the rate; otherwise one line per host (\"ok HOST\" or \"failed HOST: "
                   "why\").\n"
                   "Exit 0 when the round ran, even if hosts failed (they are listed);\n"
                   "3 for a bad config, 4 for a database error or an interrupted round.\n");
            return EXIT_OK;
        }
        if (!strcmp(argv[i], "--host") && i + 1 < argc) {
            host = argv[++i];
        } else if (!strncmp(argv[i], "--host=", 7) && argv[i][7]) {
            host = argv[i] + 7;
        } else {
            cli_error("collect: unexpected argument '%s' (usage: collect [--host HOST])",
                      argv[i]);
            return EXIT_USAGE;
        }
    }
    /* collect reports per host itself; the log keeps only what has no host line. */
    poll_log_set_level(cli->config.log_level == LOG_DEBUG ? LOG_DEBUG : LOG_ERROR);
    /* Ctrl-C on a one-shot round means now: what was fetched is written, the rest dropped. */
    struct run r = {.cli = cli, .tty = isatty(STDOUT_FILENO) == 1, .grace_ms = 0};
    struct poll_options opt = {.round = true, .host = host, .on_outcome = on_outcome,
                               .on_round_done = on_round_done, .on_stopped = on_stopped,
                               .data = &r};
    int code = EXIT_OK;
    if (start(&r, &opt, &code))
        return code;
    r.started_ns = uv_hrtime();
    code = finish_loop(&r);
    double secs = (double)(uv_hrtime() - r.started_ns) / 1e9;
    size_t done = r.ok + r.failed;
    if (r.tty)
        printf("\r\033[K");
    printf("collect: %zu hosts, %zu ok, %zu failed in %.1f s (%.1f hosts/s)\n", r.total, r.ok,
           r.failed, secs, secs > 0 ? (double)done / secs : 0.0);
    for (size_t i = 0; i < r.nfailures; i++) {
        printf("  failed %s\n", r.failures[i]);
        free(r.failures[i]);
    }
    if (r.failed > r.nfailures)
        printf("  ... and %zu more failed hosts\n", r.failed - r.nfailures);
    if (r.store_error[0]) {
        cli_error("collect: database error: %s", r.store_error);
        return EXIT_SYSTEM;
    }
    if (r.interrupted) {
        cli_error("collect: interrupted; %zu hosts not polled", r.total - done);
        return EXIT_SYSTEM;
    }
    if (host && r.total == 0) {
        cli_error("collect: no host named '%s' in the inventory", host);
        return EXIT_BADINPUT;
    }
    return code;
}
