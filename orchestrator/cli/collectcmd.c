/*
 * collectcmd.c — `tlsgate collect [--host H]`: one pull round now over every host (or one),
 * with a progress line on a terminal and one line per host otherwise, then a summary. The
 * poller (poll.h) does the work, run by pullrun.h; this file owns what the user sees.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "cli.h"
#include "evpull.h"
#include "poll.h"
#include "pullrun.h"

/* The progress line is redrawn at most this often. */
#define PROGRESS_EVERY_NS (100ull * 1000 * 1000)
/* Failed hosts named again in collect's summary (all are printed as they happen). */
#define SUMMARY_FAILURES_MAX 20

/* The poller's callbacks get a struct collect_run *, whose first member is the struct pullrun
 * that pullrun_on_stopped expects. */
struct collect_run {
    struct pullrun run;
    bool tty;
    bool json; /* one document at the end, nothing per host */
    uint64_t started_ns, drawn_ns;
    size_t ok, failed;
    struct evpull_stats evidence;
    char *failures[SUMMARY_FAILURES_MAX];
    size_t nfailures;
};

static void draw_progress(struct collect_run *r, bool final)
{
    struct poll_stats st;
    poll_get_stats(r->run.poll, &st);
    double secs = (double)(uv_hrtime() - r->started_ns) / 1e9;
    size_t done = r->ok + r->failed;
    fprintf(stdout, "\r\033[Kcollect: %zu done, %zu failed, %zu remaining, %.1f hosts/s%s", r->ok,
            r->failed, r->run.total > done ? r->run.total - done : 0,
            secs > 0 ? (double)done / secs : 0.0, final ? "\n" : "");
    fflush(stdout);
}

static void on_outcome(struct poll *p, const struct poll_outcome *o, void *data)
{
    (void)p;
    struct collect_run *r = data;
    pullrun_note_total(&r->run);
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
    if (r->json)
        return;
    if (!r->tty) {
        if (o->ok)
            printf("ok %s\n", TEXTCLEAN(o->host));
        else
            printf("failed %s: %s\n", TEXTCLEAN(o->host), TEXTCLEAN(o->error));
        return;
    }
    if (!o->ok) {
        printf("\r\033[Kfailed %s: %s\n", TEXTCLEAN(o->host), TEXTCLEAN(o->error));
    }
    uint64_t now = uv_hrtime();
    if (now - r->drawn_ns >= PROGRESS_EVERY_NS || !o->ok) {
        r->drawn_ns = now;
        draw_progress(r, false);
    }
}

static void on_round_done(struct poll *p, void *data)
{
    struct collect_run *r = data;
    pullrun_note_total(&r->run);
    const char *se = poll_store_error(p);
    if (se)
        snprintf(r->run.store_error, sizeof(r->run.store_error), "%s", se);
    poll_stop(p, 0);
}

static const struct cli_option collect_options[] = {{"host", "HOST"}, {NULL}};
static const struct cli_spec collect_spec = {
    .name = "collect",
    .usage = "Usage: tlsgate [--db FILE] [--config FILE] collect [--host HOST] [--json]\n\n"
             "Pulls every collector of the inventory (or only HOST) once, now, and stores\n"
             "the reports. On a terminal a progress line shows done / failed / remaining\n"
             "and the rate; otherwise one line per host (\"ok HOST\" or \"failed HOST: "
             "why\").\n"
             "With --json, one object at the end: hosts, ok, failed, seconds and the first\n"
             "failures (host, error).\n"
             "Exit 0 when the round ran, even if hosts failed (they are listed);\n"
             "3 for a bad config, 4 for a database error or an interrupted round.\n",
    .options = collect_options,
    .json = true,
};
const struct cli_spec *const collect_specs[] = {&collect_spec, NULL};

/* The round as one JSON document (--json). */
static void print_json_summary(const struct collect_run *r, double secs)
{
    json_t *failures = json_array();
    for (size_t i = 0; i < r->nfailures; i++) {
        const char *line = r->failures[i], *sep = strstr(line, ": ");
        size_t hostlen = sep ? (size_t)(sep - line) : strlen(line);
        json_array_append_new(failures, json_pack("{s:s%, s:o}", "host", line, hostlen, "error",
                                                  jsonout_text(sep ? sep + 2 : "")));
    }
    const struct evpull_stats *e = &r->evidence;
    json_t *evidence = json_pack("{s:I, s:I, s:I, s:I, s:I}", "servers", (json_int_t)e->servers,
                                 "stored", (json_int_t)e->stored, "absent", (json_int_t)e->absent,
                                 "failed", (json_int_t)e->failed, "rows", (json_int_t)e->rows);
    jsonout_print(stdout,
                  json_pack("{s:I, s:I, s:I, s:f, s:o, s:o}", "hosts", (json_int_t)r->run.total,
                            "ok", (json_int_t)r->ok, "failed", (json_int_t)r->failed, "seconds",
                            secs, "failures", failures, "evidence", evidence));
}

int cmd_collect(struct cli *cli, int argc, char **argv)
{
    struct cli_args a;
    int parsed = cli_parse(cli, &collect_spec, argc, argv, &a);
    if (parsed != CLI_RUN)
        return parsed;
    const char *host = cli_value(&collect_spec, &a, "host");
    /* collect reports per host itself; the log keeps only what has no host line. */
    poll_log_set_level(cli->config.log_level == LOG_DEBUG ? LOG_DEBUG : LOG_ERROR);
    /* Ctrl-C on a one-shot round means now: what was fetched is written, the rest dropped. */
    struct collect_run r = {.run = {.cli = cli, .grace_ms = 0},
                            .tty = !cli->json && isatty(STDOUT_FILENO) == 1,
                            .json = cli->json};
    struct poll_options opt = {.round = true,
                               .host = host,
                               .on_outcome = on_outcome,
                               .on_round_done = on_round_done,
                               .on_stopped = pullrun_on_stopped,
                               .data = &r};
    int code = EXIT_OK;
    if (pullrun_start(&r.run, &opt, &code))
        return code;
    r.started_ns = uv_hrtime();
    long long round_started = utc_now();
    code = pullrun_finish(&r.run);
    /* Then the IIS log summaries of the site systems this round pulled (pull/evpull.h). */
    if (code == EXIT_OK && !r.run.store_error[0] && !r.run.interrupted && r.ok > 0) {
        int scode;
        struct store *s = cli_store(cli, false, &scode);
        char err[STORE_ERROR_SIZE] = "";
        int erc =
            s ? evpull_run(s, &cli->config, host, round_started, &r.evidence, err, sizeof(err))
              : -EIO;
        if (erc && s)
            snprintf(r.run.store_error, sizeof(r.run.store_error), "evidence: %s", err);
    }
    double secs = (double)(uv_hrtime() - r.started_ns) / 1e9;
    size_t done = r.ok + r.failed;
    if (r.tty)
        printf("\r\033[K");
    if (r.json) {
        print_json_summary(&r, secs);
    } else {
        printf("collect: %zu hosts, %zu ok, %zu failed in %.1f s (%.1f hosts/s)\n", r.run.total,
               r.ok, r.failed, secs, secs > 0 ? (double)done / secs : 0.0);
        for (size_t i = 0; i < r.nfailures; i++)
            printf("  failed %s\n", TEXTCLEAN(r.failures[i]));
        if (r.failed > r.nfailures)
            printf("  ... and %zu more failed hosts\n", r.failed - r.nfailures);
        const struct evpull_stats *e = &r.evidence;
        if (e->servers)
            printf("evidence: %zu site systems asked, %zu summaries stored (%lld rows), %zu "
                   "without /v1/evidence, %zu failed%s%s\n",
                   e->servers, e->stored, e->rows, e->absent, e->failed,
                   e->first_error[0] ? ": " : "", TEXTCLEAN(e->first_error));
    }
    for (size_t i = 0; i < r.nfailures; i++)
        free(r.failures[i]);
    if (r.run.store_error[0]) {
        cli_error("collect: database error: %s", r.run.store_error);
        return EXIT_SYSTEM;
    }
    if (r.run.interrupted) {
        cli_error("collect: interrupted; %zu hosts not polled", r.run.total - done);
        return EXIT_SYSTEM;
    }
    if (host && r.run.total == 0) {
        cli_error("collect: no host named '%s' in the inventory", host);
        return EXIT_BADINPUT;
    }
    return code;
}
