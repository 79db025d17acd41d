/*
 * daemon.c — `tlsgate daemon`: pull every collector on schedule until SIGTERM/SIGINT, SIGHUP
 * reloads. A thin shell around the poller (poll.h) run by pullrun.h; this file owns what the
 * user sees.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "metrics.h"
#include "poll.h"
#include "pullrun.h"

/* How long in-flight transfers may run after SIGTERM/SIGINT before they are abandoned. */
#define DAEMON_GRACE_MS 5000

/* The run and its optional metrics endpoint (metrics.h); the pullrun first (pullrun.h). */
struct daemon_run {
    struct pullrun r;
    struct metrics *metrics;
};

static void on_outcome(struct poll *p, const struct poll_outcome *o, void *data)
{
    struct daemon_run *d = data;
    if (d->metrics)
        metrics_note_outcome(d->metrics, p, o);
}

static void on_stopped(struct poll *p, void *data)
{
    struct daemon_run *d = data;
    pullrun_on_stopped(p, &d->r);
    metrics_close(d->metrics); /* its handles close before the loop ends */
    d->metrics = NULL;
}

static const struct cli_spec daemon_spec = {
    .name = "daemon",
    .usage = "Usage: tlsgate [--db FILE] [--config FILE] daemon\n\n"
             "Pulls every collector of the inventory on schedule (config: interval, jitter,\n"
             "concurrency, timeouts, backoff_max, tls) and stores the reports, until\n"
             "SIGTERM or SIGINT. SIGHUP re-reads the config file and the inventory.\n"
             "Logs go to stderr: time, level, host, event (with a syslog priority\n"
             "first when stderr is the systemd journal). With \"metrics\":\n"
             "\"ADDRESS:PORT\" in the config, serves Prometheus metrics at\n"
             "http://ADDRESS:PORT/metrics (read at start).\n",
};
const struct cli_spec *const daemon_specs[] = {&daemon_spec, NULL};

int cmd_daemon(struct cli *cli, int argc, char **argv)
{
    struct cli_args a;
    int parsed = cli_parse(cli, &daemon_spec, argc, argv, &a);
    if (parsed != CLI_RUN)
        return parsed;
    poll_log_set_level(cli->config.log_level);
    struct daemon_run d = {.r = {.cli = cli, .grace_ms = DAEMON_GRACE_MS}};
    struct pullrun *rp = &d.r;
    struct poll_options opt = {.on_outcome = on_outcome, .on_stopped = on_stopped, .data = &d};
    int code = EXIT_OK;
    if (pullrun_start(rp, &opt, &code))
        return code;
    if (cli->config.metrics[0]) {
        char err[STORE_ERROR_SIZE];
        int rc = metrics_start(&d.r.loop, cli->db_path, &cli->config, d.r.poll, &d.metrics, err,
                               sizeof(err));
        if (rc) {
            cli_error("daemon: %s", err);
            poll_stop(d.r.poll, 0);
            pullrun_finish(rp);
            return rc == -EINVAL ? EXIT_BADINPUT : EXIT_SYSTEM;
        }
    }
    poll_log(LOG_INFO, NULL, "daemon started (pid %ld, database %s)", (long)getpid(), cli->db_path);
    code = pullrun_finish(rp);
    if (d.r.store_error[0]) {
        cli_error("daemon: cannot start: %s", d.r.store_error);
        return EXIT_SYSTEM;
    }
    poll_log(LOG_INFO, NULL, "daemon stopped");
    return code;
}
