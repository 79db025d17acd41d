/*
 * reportcmd.c — `tlsgate report html --out FILE [--site S]`: the self-contained status page
 * (domain/report_html.h), written atomically. This file parses, checks the site and maps the
 * outcome to an exit code; the page is the report module's.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "gate.h"
#include "report_html.h"
#include "store.h"

#define REPORT_USAGE                                                                               \
    "Usage: tlsgate [--db FILE] [--config FILE] report html --out FILE [--site S]\n\n"             \
    "Writes the status page: one self-contained HTML file (inline CSS and SVG, no\n"               \
    "script, nothing loaded from anywhere), readable in a browser and printable. Per\n"            \
    "site: servers at orphan risk first, the phase, host counts, the burn-down of\n"               \
    "not-ready and unknown hosts (from the history that the daemon and `collect`\n"                \
    "record), gates open vs blocked, top blocking rules, hosts failing to be pulled and\n"         \
    "waivers expiring within 14 days. FILE appears whole or not at all.\n\n"                       \
    "options:\n"                                                                                   \
    "  --out FILE   the page to write (required)\n"                                                \
    "  --site S     only that site\n\n"                                                            \
    "exit codes: 0 written, 2 usage, 3 no such site, 4 database or output error\n"

static const struct cli_option report_html_options[] = {{"out", "FILE"}, {"site", "S"}, {NULL}};
static const struct cli_spec report_html_spec = {
    .name = "report html",
    .word = "html",
    .usage = REPORT_USAGE,
    .options = report_html_options,
};
const struct cli_spec *const report_specs[] = {&report_html_spec, NULL};

int cmd_report(struct cli *cli, int argc, char **argv)
{
    const struct cli_spec *spec;
    struct cli_args a;
    int parsed = cli_parse_sub(cli, "report", REPORT_USAGE, report_specs, argc, argv, &spec, &a);
    if (parsed != CLI_RUN)
        return parsed;
    const char *out = cli_value(spec, &a, "out"), *site = cli_value(spec, &a, "site");
    if (!out) {
        cli_error("report html: --out FILE is required");
        return EXIT_USAGE;
    }
    int code;
    struct store *s = cli_store(cli, false, &code);
    if (!s)
        return code;
    struct gate_time t = gate_time_config(utc_now(), &cli->config);
    int rc = report_html_write_file(s, out, site, &t);
    if (rc == -ENOENT && site) {
        cli_error("report html: --site '%s': no such site in %s", site, store_path(s));
        return EXIT_BADINPUT;
    }
    if (rc) {
        cli_error("report html: %s", store_errmsg(s));
        return EXIT_SYSTEM;
    }
    return EXIT_OK;
}
