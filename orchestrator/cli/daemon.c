/*
 * daemon.c — `tlsgate daemon`: pull every collector on schedule until SIGTERM/SIGINT, SIGHUP
 * reloads. A thin shell around the poller (poll.h) run by pullrun.h; this file owns what the
 * user sees.
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "poll.h"
#include "pullrun.h"

/* How long in-flight transfers may run after SIGTERM/SIGINT before they are abandoned. */
#define DAEMON_GRACE_MS 5000

static const struct cli_spec daemon_spec = {
    .name = "daemon",
    .usage = "Usage: tlsgate [--db FILE] [--config FILE] daemon\n\n"
             "Pulls every collector of the inventory on schedule (config: interval, jitter,\n"
             "concurrency, timeouts, backoff_max, tls) and stores the reports, until\n"
             "SIGTERM or SIGINT. SIGHUP re-reads the config file and the inventory.\n"
             "Logs go to stderr: time, level, host, event.\n",
};
const struct cli_spec *const daemon_specs[] = {&daemon_spec, NULL};

int cmd_daemon(struct cli *cli, int argc, char **argv)
{
    struct cli_args a;
    int parsed = cli_parse(cli, &daemon_spec, argc, argv, &a);
    if (parsed != CLI_RUN)
        return parsed;
    poll_log_set_level(cli->config.log_level);
    struct pullrun r = {.cli = cli, .grace_ms = DAEMON_GRACE_MS};
    struct poll_options opt = {.on_stopped = pullrun_on_stopped, .data = &r};
    int code = EXIT_OK;
    if (pullrun_start(&r, &opt, &code))
        return code;
    poll_log(LOG_INFO, NULL, "daemon started (pid %ld, database %s)", (long)getpid(), cli->db_path);
    code = pullrun_finish(&r);
    if (r.store_error[0]) {
        cli_error("daemon: cannot start: %s", r.store_error);
        return EXIT_SYSTEM;
    }
    poll_log(LOG_INFO, NULL, "daemon stopped");
    return code;
}
