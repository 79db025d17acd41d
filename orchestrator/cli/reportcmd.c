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

static void usage(FILE *out)
{
    fprintf(out,
            "usage: tlsgate [--db FILE] [--config FILE] report html --out FILE [--site S]\n\n"
            "Writes the status page: one self-contained HTML file (inline CSS and SVG, no\n"
            "script, nothing loaded from anywhere), readable in a browser and printable. Per\n"
            "site: servers at orphan risk first, the phase, host counts, the burn-down of\n"
            "not-ready and unknown hosts (from the history that the daemon and `collect`\n"
            "record), gates open vs blocked, top blocking rules, hosts failing to be pulled and\n"
            "waivers expiring within 14 days. FILE appears whole or not at all.\n\n"
            "options:\n"
            "  --out FILE   the page to write (required)\n"
            "  --site S     only that site\n\n"
            "exit codes: 0 written, 2 usage, 3 no such site, 4 database or output error\n");
}

int cmd_report(struct cli *cli, int argc, char **argv)
{
    const char *out = NULL, *site = NULL;
    if (argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        usage(stdout);
        return EXIT_OK;
    }
    if (argc < 2 || strcmp(argv[1], "html")) {
        cli_error("report: the format must be 'html' (usage: report html --out FILE [--site S])");
        return EXIT_USAGE;
    }
    for (int i = 2; i < argc; i++) {
        const char *opt = argv[i];
        const char **slot = NULL;
        size_t len = 0;
        if (!strcmp(opt, "--help") || !strcmp(opt, "-h")) {
            usage(stdout);
            return EXIT_OK;
        }
        if (!strncmp(opt, "--out", 5) && (opt[5] == '\0' || opt[5] == '='))
            slot = &out, len = 5;
        else if (!strncmp(opt, "--site", 6) && (opt[6] == '\0' || opt[6] == '='))
            slot = &site, len = 6;
        if (!slot) {
            cli_error("report html: unknown option '%s' (valid: --out FILE, --site S)", opt);
            return EXIT_USAGE;
        }
        const char *value = opt[len] == '=' ? opt + len + 1 : NULL;
        if (!value) {
            if (i + 1 >= argc) {
                cli_error("report html: %s needs a value", opt);
                return EXIT_USAGE;
            }
            value = argv[++i];
        }
        if (!*value) {
            cli_error("report html: %.6s needs a non-empty value", opt);
            return EXIT_USAGE;
        }
        *slot = value;
    }
    if (!out) {
        cli_error("report html: --out FILE is required");
        return EXIT_USAGE;
    }
    int code;
    struct store *s = cli_store(cli, false, &code);
    if (!s)
        return code;
    struct gate_time t = gate_time_make(utc_now(), cli->config.stale_after);
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
