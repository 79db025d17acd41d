/*
 * main.c — `tlsgate`: global options (--db, --config, --json in any position), then one
 * command from the table below. See DESIGN.md "CLI contract" and README.md.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "cli.h"
#include "store.h"

struct command {
    const char *name;
    int (*run)(struct cli *, int, char **);
    const char *summary;
    const struct cli_spec *const *specs; /* its (sub)commands, for --commands */
};

static const struct command commands[] = {
    {"init", cmd_init, "create the database (or migrate an older one, backup first)", init_specs},
    {"inventory", cmd_inventory, "import, list, show, remove hosts and their dependencies",
     inventory_specs},
    {"host", cmd_host, "facts, verdicts, reasons and remedies of a host", host_specs},
    {"rules", cmd_rules, "check, load and show the readiness rules; blockers by rule", rules_specs},
    {"gate", cmd_gate, "gate check SERVER, gate list: may a server drop legacy TLS now",
     gate_specs},
    {"phase", cmd_phase, "phase status|advance|rollback: move a site through its phases",
     phase_specs},
    {"waive", cmd_waive, "waive HOST --reason R [--until DATE]: the host stops blocking",
     waive_specs},
    {"unwaive", cmd_unwaive, "unwaive HOST: remove a host's waiver", unwaive_specs},
    {"audit", cmd_audit, "the audit log of every state change", audit_specs},
    {"export", cmd_export, "dashboard CSV (export csv --view V)", export_specs},
    {"report", cmd_report, "the status page (report html --out FILE [--site S])", report_specs},
    {"collect", cmd_collect, "one pull round now over all (or one) hosts", collect_specs},
    {"daemon", cmd_daemon, "pull every collector on schedule until SIGTERM/SIGINT", daemon_specs},
    {"poll", cmd_poll, "poll status: why hosts are unknown, failing pulls by kind of error",
     poll_specs},
    {"db", cmd_db, "db migrate: bring an older database up (backup first); db backup FILE",
     db_specs},
    {"probe", cmd_probe, "what the servers' TLS ports really accept (SSL 3.0 .. TLS 1.3)",
     probe_specs},
    {"evidence", cmd_evidence, "import / list the handshakes servers logged (IIS, SCHANNEL)",
     evidence_specs},
    {"enroll", cmd_enroll, "collector identities: CA, site secrets, requests, revocation, serve",
     enroll_specs},
};

static void usage(FILE *out)
{
    fprintf(out, "Usage: tlsgate [--db FILE] [--config FILE] [--json] COMMAND [ARGS]\n"
                 "\n"
                 "Moves a Configuration Manager estate to TLS 1.2 without orphaning clients.\n"
                 "\n"
                 "commands:\n");
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(out,
            "\n"
            "global options (accepted in any position):\n"
            "  --db FILE      database file (default $TLSGATE_DB, else ./tlsgate.db)\n"
            "  --config FILE  JSON settings (default $TLSGATE_CONFIG, else built-in defaults)\n"
            "  --json         machine-readable output for read commands\n"
            "\n"
            "exit codes: 0 done/passes, 1 gate or phase blocked, 2 usage error,\n"
            "            3 bad input (file, report, config), 4 database or system error\n"
            "Run `tlsgate COMMAND --help` for a command's own options.\n");
}

/* The command line as the audit log records it: "tlsgate" and the arguments as given. */
static char *join_args(int argc, char **argv)
{
    size_t len = sizeof("tlsgate");
    for (int i = 0; i < argc; i++)
        len += strlen(argv[i]) + 1;
    char *s = malloc(len);
    if (!s)
        return NULL;
    strcpy(s, "tlsgate");
    for (int i = 1; i < argc; i++) {
        strcat(s, " ");
        strcat(s, argv[i]);
    }
    return s;
}

/* Takes the global options out of argv wherever they stand; returns the new argc or -1. */
static int take_global_options(struct cli *cli, int argc, char **argv)
{
    int out = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        const char **slot = NULL;
        const char *value = NULL;
        if (!strcmp(a, "--json")) {
            cli->json = true;
            continue;
        }
        if (!strcmp(a, "--db") || !strcmp(a, "--config")) {
            slot = a[2] == 'd' ? &cli->db_path : &cli->config_path;
            if (i + 1 >= argc) {
                cli_error("%s needs a value", a);
                return -1;
            }
            value = argv[++i];
        } else if (!strncmp(a, "--db=", 5)) {
            slot = &cli->db_path;
            value = a + 5;
        } else if (!strncmp(a, "--config=", 9)) {
            slot = &cli->config_path;
            value = a + 9;
        }
        if (slot) {
            if (!*value) {
                cli_error("%.8s needs a non-empty value", a);
                return -1;
            }
            *slot = value;
            continue;
        }
        argv[out++] = argv[i];
    }
    argv[out] = NULL;
    return out;
}

int main(int argc, char **argv)
{
    struct cli cli = {0};
    config_init(&cli.config);
    cli.command_line = join_args(argc, argv);
    cli.db_path =
        getenv("TLSGATE_DB") && *getenv("TLSGATE_DB") ? getenv("TLSGATE_DB") : "tlsgate.db";
    const char *env_config = getenv("TLSGATE_CONFIG");
    cli.config_path = env_config && *env_config ? env_config : NULL;

    int code = EXIT_USAGE;
    int n = take_global_options(&cli, argc - 1, argv + 1);
    char **args = argv + 1;
    if (n < 0)
        goto out;
    if (n == 0) {
        usage(stderr);
        goto out;
    }
    if (!strcmp(args[0], "--help") || !strcmp(args[0], "-h") || !strcmp(args[0], "help")) {
        usage(stdout);
        code = EXIT_OK;
        goto out;
    }
    if (!strcmp(args[0], "--commands")) {
        /* Every command and subcommand from the table, one a line with whether --json applies
         * ("NAME<TAB>json" or "NAME<TAB>-"): what the tests walk. */
        for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
            for (const struct cli_spec *const *s = commands[i].specs; *s; s++)
                printf("%s\t%s\n", (*s)->name, (*s)->json ? "json" : "-");
        code = EXIT_OK;
        goto out;
    }
    if (!strcmp(args[0], "--version")) {
        printf("tlsgate %s\n", TLSGATE_VERSION);
        code = EXIT_OK;
        goto out;
    }
    if (cli.config_path) {
        char err[STORE_ERROR_SIZE];
        if (config_load(&cli.config, cli.config_path, err, sizeof(err))) {
            cli_error("%s", err);
            code = EXIT_BADINPUT;
            goto out;
        }
    }
    const struct command *cmd = NULL;
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        if (!strcmp(args[0], commands[i].name))
            cmd = &commands[i];
    if (!cmd) {
        cli_error("unknown command '%s' (see `tlsgate --help`)", args[0]);
        goto out;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    code = cmd->run(&cli, n, args);
    curl_global_cleanup();

out:
    store_close(cli.store);
    config_release(&cli.config);
    free(cli.command_line);
    return code;
}
