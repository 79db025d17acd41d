/*
 * daemon.c — `tlsgate daemon`: pull every collector on schedule until SIGTERM/SIGINT, SIGHUP
 * reloads. A thin shell around the poller (poll.h) run by pullrun.h; this file owns what the
 * user sees.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "evpull.h"
#include "metrics.h"
#include "poll.h"
#include "probesched.h"
#include "pullrun.h"

/* How long in-flight transfers may run after SIGTERM/SIGINT before they are abandoned. */
#define DAEMON_GRACE_MS 5000

/* The run, its optional metrics endpoint (metrics.h) and its optional probe thread
 * (probesched.h); the pullrun first (pullrun.h). */
struct daemon_run {
    struct pullrun r;
    struct metrics *metrics;
    struct probesched *probe;
    struct evpull_sched *evidence; /* the site systems' IIS log summaries (evpull.h) */
};

static void probe_counts(void *arg, struct metrics_probe *out)
{
    struct probesched_stats st;
    probesched_get_stats(arg, &st);
    *out = (struct metrics_probe){.rounds = st.rounds,
                                  .accepted = st.handshakes[WIRE_ACCEPTED],
                                  .refused = st.handshakes[WIRE_REFUSED],
                                  .untested = st.handshakes[WIRE_UNTESTED],
                                  .legacy_accepted = st.legacy_accepted};
}

/* The probe thread's settings from the config ("probe": {...}). */
static struct probe_opts probe_opts_of(const struct config *c)
{
    return (struct probe_opts){.connect_timeout_ms = c->probe_timeout * 1000L,
                               .timeout_ms = c->probe_timeout * 1000L,
                               .concurrency = (int)c->probe_concurrency};
}

/* Starts the probe thread when the config asks for it ("probe": {"interval": ...}). */
static int start_probe(struct daemon_run *d, struct cli *cli)
{
    const struct config *c = &cli->config;
    if (c->probe_interval <= 0)
        return 0;
    struct probesched_options o = {
        .db_path = cli->db_path,
        .interval_s = c->probe_interval,
        .probe = probe_opts_of(c),
        .log = poll_log,
    };
    const char *deny = getenv("TLSGATE_PROBE_SELFTEST_DENY");
    char err[STORE_ERROR_SIZE];
    if (deny && probe_parse_protocols(deny, &o.selftest_deny, err, sizeof(err))) {
        cli_error("daemon: $TLSGATE_PROBE_SELFTEST_DENY: '%s' is not one of ssl3, tls1.0, tls1.1, "
                  "tls1.2, tls1.3",
                  err);
        return -EINVAL;
    }
    int rc = probesched_start(&o, &d->probe, err, sizeof(err));
    if (rc)
        cli_error("daemon: %s", err);
    if (!rc && d->metrics)
        metrics_watch_probe(d->metrics, probe_counts, d->probe);
    return rc;
}

/* SIGHUP reloaded the settings (pullrun.h): the probe takes the new "probe" ones — started when
 * it was off, reconfigured (or turned off) when it runs. A refused reload never gets here, so
 * the probe keeps its settings then. */
static void on_reload(struct pullrun *r)
{
    struct daemon_run *d = (struct daemon_run *)r; /* r is its first member */
    const struct config *c = &r->cli->config;
    if (d->probe) {
        struct probe_opts po = probe_opts_of(c);
        probesched_reconfigure(d->probe, c->probe_interval, &po);
    } else if (c->probe_interval > 0 && start_probe(d, r->cli)) {
        poll_log(LOG_ERROR, NULL, "SIGHUP: the probe could not start (above)");
    }
}

static void on_outcome(struct poll *p, const struct poll_outcome *o, void *data)
{
    struct daemon_run *d = data;
    if (d->metrics)
        metrics_note_outcome(d->metrics, p, o);
}

static void on_stopped(struct poll *p, void *data)
{
    struct daemon_run *d = data;
    evpull_sched_stop(d->evidence); /* its timer closes before the loop ends */
    d->evidence = NULL;
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
             "http://ADDRESS:PORT/metrics (read at start). With \"probe\": {\"interval\":\n"
             "\"6h\", ...} it also probes the site systems' TLS ports on its own thread, as\n"
             "`tlsgate probe` does (SIGHUP reloads it too). Every interval it also asks the\n"
             "site systems pulled since for their IIS log summary (GET /v1/evidence; a 404\n"
             "is no error) and stores it as `tlsgate evidence import` would.\n",
};
const struct cli_spec *const daemon_specs[] = {&daemon_spec, NULL};

int cmd_daemon(struct cli *cli, int argc, char **argv)
{
    struct cli_args a;
    int parsed = cli_parse(cli, &daemon_spec, argc, argv, &a);
    if (parsed != CLI_RUN)
        return parsed;
    poll_log_set_level(cli->config.log_level);
    struct daemon_run d = {.r = {.cli = cli, .grace_ms = DAEMON_GRACE_MS, .on_reload = on_reload}};
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
    /* The probe writes from its own thread; SIGPIPE from a closing peer must not kill us
     * (pullrun ignores it already, probe.h asks it). */
    if (start_probe(&d, cli)) {
        metrics_close(d.metrics);
        d.metrics = NULL;
        poll_stop(d.r.poll, 0);
        pullrun_finish(rp);
        return EXIT_SYSTEM;
    }
    /* After the reports, the site systems' IIS log summaries (GET /v1/evidence). */
    char eerr[STORE_ERROR_SIZE];
    if (evpull_sched_start(&d.r.loop, cli->db_path, &cli->config, &d.evidence, eerr, sizeof(eerr)))
        poll_log(LOG_ERROR, NULL, "evidence summaries are not pulled: %s", eerr);
    poll_log(LOG_INFO, NULL, "daemon started (pid %ld, database %s)", (long)getpid(), cli->db_path);
    code = pullrun_finish(rp);
    probesched_stop(d.probe);
    if (d.r.store_error[0]) {
        cli_error("daemon: cannot start: %s", d.r.store_error);
        return EXIT_SYSTEM;
    }
    poll_log(LOG_INFO, NULL, "daemon stopped");
    return code;
}
