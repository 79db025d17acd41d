/*
 * probecmd.c — `tlsgate probe`: what the servers' TLS ports really accept (wire/probe.h does the
 * handshakes, domain/wire.h keeps the outcomes).
 *
 *   tlsgate probe [--site S] [--concurrency N] [--timeout SEC] [HOST...]
 *   tlsgate probe show [HOST]
 *   tlsgate probe ports HOST [PORT[/tds]...]
 *
 * `probe` itself has no subcommand word: argv[1] other than `show` / `ports` is a HOST or an
 * option of the probe run (cli.h "OPTIONS").
 */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "inventory.h"
#include "probe.h"
#include "store.h"
#include "sweep.h"
#include "wire.h"

#define PROBE_SYNOPSIS                                                                             \
    "Usage: tlsgate probe [--site S] [--concurrency N] [--timeout SEC] [--json] [HOST...]\n"       \
    "       tlsgate probe show [HOST] [--json]\n"                                                  \
    "       tlsgate probe ports HOST [PORT[/tds]...] [--json]\n"
#define PROBE_ABOUT                                                                                \
    "\n"                                                                                           \
    "Tries a handshake capped at SSL 3.0, TLS 1.0, 1.1, 1.2 and 1.3 on every TLS port of\n"        \
    "every site system (or of the HOSTs named): 443 for management, distribution and\n"            \
    "reporting points and the SMS Provider, 8531 for the software update point, 1433\n"            \
    "(TLS inside TDS PRELOGIN) for the site database, at the address of the host's\n"              \
    "collector. Each is stored as accepted, refused or untested (could not test).\n"               \
    "A self-test against a built-in server first proves which protocols this prober can\n"         \
    "speak; one it cannot is `untested` everywhere, never `refused`.\n"                            \
    "`probe ports` replaces the ports of one host (no PORT: back to those of its roles);\n"        \
    "`probe show` prints the stored outcomes.\n"                                                   \
    "\n"                                                                                           \
    "options:\n"                                                                                   \
    "  --site S         only the site systems of site S\n"                                         \
    "  --concurrency N  handshakes in flight at most (default 16, 1..256)\n"                       \
    "  --timeout SEC    per handshake, connect included (default: the config's\n"                  \
    "                   connect_timeout for the connect, timeout for the whole)\n"

static const struct cli_option probe_options[] = {
    {"site", "S"}, {"concurrency", "N"}, {"timeout", "SEC"}, {NULL}};
static const struct cli_spec probe_spec = {
    .name = "probe",
    .usage = PROBE_SYNOPSIS PROBE_ABOUT,
    .options = probe_options,
    .max_args = -1,
    .json = true,
};
static const struct cli_spec probe_show_spec = {
    .name = "probe show",
    .word = "show",
    .usage = "Usage: tlsgate probe show [HOST] [--json]\n" PROBE_ABOUT,
    .max_args = 1,
    .json = true,
};
static const struct cli_spec probe_ports_spec = {
    .name = "probe ports",
    .word = "ports",
    .usage = "Usage: tlsgate probe ports HOST [PORT[/tds]...] [--json]\n" PROBE_ABOUT,
    .min_args = 1,
    .max_args = -1,
    .json = true,
};
const struct cli_spec *const probe_specs[] = {&probe_spec, &probe_show_spec, &probe_ports_spec,
                                              NULL};
static const struct cli_spec *const probe_subs[] = {&probe_show_spec, &probe_ports_spec, NULL};

static int store_fail_exit(struct store *s, int rc)
{
    cli_error("%s", store_errmsg(s));
    store_rollback(s);
    return rc == -ENOENT || rc == -EINVAL ? EXIT_BADINPUT : EXIT_SYSTEM;
}

/* ---- probe show ----------------------------------------------------------------------- */

struct show {
    bool json;
    long n;
    char last[INV_NAME_SIZE + 8];
};

static int show_row(const struct wire_probe_row *r, void *arg)
{
    struct show *sh = arg;
    char when[UTC_ISO8601_SIZE];
    utc_iso8601(r->at, when, sizeof(when));
    if (sh->json) {
        printf("%s{\"host\":", sh->n ? "," : "");
        jsonout_string(stdout, r->host);
        printf(",\"port\":%d,\"tds\":%s,\"protocol\":\"%s\",\"result\":\"%s\",\"error\":", r->port,
               r->tds ? "true" : "false", wire_proto_name(r->proto), wire_result_name(r->result));
        jsonout_string(stdout, r->error);
        printf(",\"at\":\"%s\"}", when);
    } else {
        char key[INV_NAME_SIZE + 8];
        snprintf(key, sizeof(key), "%s:%d", r->host, r->port);
        if (strcmp(key, sh->last)) {
            printf("%s port %d%s\n", r->host, r->port, r->tds ? " (SQL Server, TDS)" : "");
            snprintf(sh->last, sizeof(sh->last), "%s", key);
        }
        printf("  %-7s %-9s %s%s%s\n", wire_proto_label(r->proto),
               r->result == WIRE_UNTESTED ? "untested" : wire_result_name(r->result), when,
               *r->error ? "  " : "", r->error);
    }
    sh->n++;
    return 0;
}

static int probe_show(struct cli *cli, const char *host)
{
    int code;
    struct store *s = cli_store(cli, false, &code);
    if (!s)
        return code;
    struct inv_host h;
    int rc = host ? inv_host_get(s, host, 0, &h) : 0;
    struct show sh = {.json = cli->json};
    if (cli->json)
        fputs("[", stdout);
    if (!rc)
        rc = wire_probe_each(s, host ? h.name : NULL, show_row, &sh);
    if (cli->json)
        fputs("]\n", stdout);
    if (rc)
        return store_fail_exit(s, rc);
    if (!cli->json && !sh.n)
        printf("no probe results%s%s (run `tlsgate probe`)\n", host ? " for " : "",
               host ? h.name : "");
    return EXIT_OK;
}

/* ---- probe ports ---------------------------------------------------------------------- */

/* argv: HOST [PORT[/tds]...] */
static int probe_ports(struct cli *cli, int argc, char **argv)
{
    struct wire_port ports[WIRE_PORTS_MAX];
    size_t n = 0;
    for (int i = 1; i < argc; i++) {
        char *end;
        long port = strtol(argv[i], &end, 10);
        bool tds = !strcmp(end, "/tds");
        if (end == argv[i] || (*end && !tds) || port < 1 || port > 65535) {
            cli_error("probe ports: '%s' is not PORT or PORT/tds (a port is 1..65535)", argv[i]);
            return EXIT_USAGE;
        }
        if (n == WIRE_PORTS_MAX) {
            cli_error("probe ports: at most %d ports per host", WIRE_PORTS_MAX);
            return EXIT_USAGE;
        }
        ports[n++] = (struct wire_port){(int)port, tds};
    }
    int code;
    struct store *s = cli_store(cli, false, &code);
    if (!s)
        return code;
    struct inv_host h;
    int rc = store_begin(s, true);
    if (rc || (rc = inv_host_get(s, argv[0], 0, &h)) || (rc = wire_ports_set(s, h.id, ports, n)))
        return store_fail_exit(s, rc);
    char outcome[160];
    snprintf(outcome, sizeof(outcome), "ok: %zu probe port%s set%s", n, n == 1 ? "" : "s",
             n ? "" : " (the ports of its roles)");
    if ((rc = cli_audit(cli, outcome)) || (rc = store_commit(s)))
        return store_fail_exit(s, rc);
    if (!cli->json)
        printf("%s: %s\n", h.name, outcome + 4);
    else
        printf("{\"host\":\"%s\",\"ports\":%zu}\n", h.name, n);
    return EXIT_OK;
}

/* ---- probe ---------------------------------------------------------------------------- */

static int parse_long(const char *opt, const char *v, long min, long max, long *out)
{
    char *end;
    long x = strtol(v, &end, 10);
    if (!*v || *end || x < min || x > max) {
        cli_error("probe: %s '%s' must be a whole number from %ld to %ld", opt, v, min, max);
        return -1;
    }
    *out = x;
    return 0;
}

static void print_selftest(const struct probe_selftest *st, bool json)
{
    if (json) {
        fputs("\"selftest\":{", stdout);
        for (size_t k = 0; k < SWEEP_NPROTOCOLS; k++) {
            printf("%s\"%s\":{\"can_test\":%s,\"why\":", k ? "," : "",
                   wire_proto_name(sweep_protocols[k]),
                   st->can[sweep_protocols[k]] ? "true" : "false");
            jsonout_string(stdout, st->can[sweep_protocols[k]] ? "" : st->why[sweep_protocols[k]]);
            fputs("}", stdout);
        }
        fputs("}", stdout);
        return;
    }
    printf("self-test (built-in server on 127.0.0.1):");
    for (size_t k = 0; k < SWEEP_NPROTOCOLS; k++)
        printf(" %s %s%s", wire_proto_label(sweep_protocols[k]),
               st->can[sweep_protocols[k]] ? "ok" : "CANNOT",
               k + 1 < SWEEP_NPROTOCOLS ? "," : "\n");
    for (size_t k = 0; k < SWEEP_NPROTOCOLS; k++)
        if (!st->can[sweep_protocols[k]])
            printf("  %s: could not test anywhere: %s\n", wire_proto_label(sweep_protocols[k]),
                   st->why[sweep_protocols[k]]);
}

int cmd_probe(struct cli *cli, int argc, char **argv)
{
    struct cli_args a;
    if (argc >= 2 && (!strcmp(argv[1], "show") || !strcmp(argv[1], "ports"))) {
        const struct cli_spec *spec;
        int parsed = cli_parse_sub(cli, "probe", PROBE_SYNOPSIS PROBE_ABOUT, probe_subs, argc, argv,
                                   &spec, &a);
        if (parsed != CLI_RUN)
            return parsed;
        if (spec == &probe_show_spec)
            return probe_show(cli, a.argc ? a.argv[0] : NULL);
        return probe_ports(cli, a.argc, a.argv);
    }
    int code = cli_parse(cli, &probe_spec, argc, argv, &a);
    if (code != CLI_RUN)
        return code;
    const char *site = cli_value(&probe_spec, &a, "site");
    const char *conc = cli_value(&probe_spec, &a, "concurrency");
    const char *tmo = cli_value(&probe_spec, &a, "timeout");
    long concurrency = 16, timeout = 0;
    int nhosts = a.argc;
    char **hosts = a.argv;
    if ((conc && parse_long("--concurrency", conc, 1, 256, &concurrency)) ||
        (tmo && parse_long("--timeout", tmo, 1, 3600, &timeout)))
        return EXIT_USAGE;
    code = EXIT_USAGE;
    if (site && nhosts) {
        cli_error("probe: give --site or HOSTs, not both");
        goto out;
    }
    unsigned deny = 0;
    const char *deny_env = getenv("TLSGATE_PROBE_SELFTEST_DENY");
    char bad[80];
    if (deny_env && probe_parse_protocols(deny_env, &deny, bad, sizeof(bad))) {
        cli_error("probe: $TLSGATE_PROBE_SELFTEST_DENY: '%s' is not one of ssl3, tls1.0, "
                  "tls1.1, tls1.2, tls1.3",
                  bad);
        goto out;
    }

    struct store *s = cli_store(cli, false, &code);
    if (!s)
        goto out;
    struct sweep plan = {0};
    int rc = 0;
    if (nhosts)
        for (int i = 0; !rc && i < nhosts; i++)
            rc = sweep_plan(s, NULL, hosts[i], &plan);
    else
        rc = sweep_plan(s, site, NULL, &plan);
    if (rc) {
        if (rc == -ENOMEM)
            cli_error("probe: out of memory");
        code = rc == -ENOMEM ? EXIT_SYSTEM : store_fail_exit(s, rc);
        sweep_release(&plan);
        goto out;
    }

    /* The self-test server writes to sockets its client may have closed (probe.h). */
    signal(SIGPIPE, SIG_IGN);
    struct probe_selftest st;
    char err[STORE_ERROR_SIZE];
    if ((rc = probe_selftest(&st, deny, err, sizeof(err)))) {
        cli_error("%s", err);
        sweep_release(&plan);
        code = EXIT_SYSTEM;
        goto out;
    }
    struct probe_opts opts = {
        .connect_timeout_ms = (timeout ? timeout : cli->config.connect_timeout) * 1000L,
        .timeout_ms = (timeout ? timeout : cli->config.timeout) * 1000L,
        .concurrency = (int)concurrency,
    };
    if ((rc = probe_run(plan.jobs, plan.n, &st, &opts))) {
        cli_error("probe: %s", strerror(-rc));
        sweep_release(&plan);
        code = EXIT_SYSTEM;
        goto out;
    }

    long accepted_legacy = 0, untested = 0;
    rc = store_begin(s, true);
    if (!rc)
        rc = sweep_store(s, &plan, 0, plan.n, &accepted_legacy, &untested);
    char outcome[160];
    snprintf(outcome, sizeof(outcome),
             "ok: %ld host%s, %zu handshakes, %ld legacy accepted, %ld untested", plan.hosts,
             plan.hosts == 1 ? "" : "s", plan.n, accepted_legacy, untested);
    if (rc || (rc = cli_audit(cli, outcome)) || (rc = store_commit(s))) {
        code = store_fail_exit(s, rc);
        sweep_release(&plan);
        goto out;
    }

    if (cli->json) {
        fputs("{", stdout);
        print_selftest(&st, true);
        fputs(",\"results\":[", stdout);
    } else {
        print_selftest(&st, false);
    }
    const char *last_sni = NULL;
    int last_port = 0;
    for (size_t i = 0; i < plan.n; i++) {
        const struct probe_job *j = &plan.jobs[i];
        char when[UTC_ISO8601_SIZE];
        utc_iso8601(j->at, when, sizeof(when));
        if (cli->json) {
            printf("%s{\"host\":", i ? "," : "");
            jsonout_string(stdout, j->sni);
            jsonout_member(stdout, ",\"address\":", j->address);
            printf(",\"port\":%d,\"tds\":%s,\"protocol\":\"%s\",\"result\":\"%s\",\"error\":",
                   j->port.port, j->port.tds ? "true" : "false", wire_proto_name(j->proto),
                   wire_result_name(j->result));
            jsonout_string(stdout, j->error);
            printf(",\"at\":\"%s\"}", when);
            continue;
        }
        if (!last_sni || strcmp(last_sni, j->sni) || last_port != j->port.port) {
            printf("%s %s port %d%s\n", j->sni, j->address, j->port.port,
                   j->port.tds ? " (SQL Server, TLS in TDS)" : "");
            last_sni = j->sni;
            last_port = j->port.port;
        }
        printf("  %-7s %-9s%s%s\n", wire_proto_label(j->proto), wire_result_name(j->result),
               *j->error ? " " : "", j->error);
    }
    if (cli->json)
        printf("],\"hosts\":%ld,\"legacy_accepted\":%ld,\"untested\":%ld}\n", plan.hosts,
               accepted_legacy, untested);
    else if (!plan.n)
        printf("no site system to probe%s%s\n", site ? " in site " : "", site ? site : "");
    else
        printf("%ld host%s probed: %ld legacy handshake%s accepted, %ld untested\n", plan.hosts,
               plan.hosts == 1 ? "" : "s", accepted_legacy, accepted_legacy == 1 ? "" : "s",
               untested);
    sweep_release(&plan);
    code = EXIT_OK;
out:
    return code;
}
