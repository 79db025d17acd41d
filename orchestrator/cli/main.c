/*
 * main.c — `tlsgate`: global options (--db, --config, --json in any position), then one
 * command from the table below. See DESIGN.md "CLI contract" and README.md.
 *
 * FRONT: on Linux this file makes two binaries (orchestrator/meson.build). `tlsgate-net`
 * (installed in libexecdir) runs every command. `tlsgate` is built with TLSGATE_FRONT: the
 * commands that talk to the network (collect, daemon, probe, enroll) are left out of its table,
 * so none of libcurl, OpenSSL, GnuTLS, libuv and libmicrohttpd is linked into it (-Wl,--as-needed)
 * and a read-only command starts with 8 shared libraries instead of 38 (startup is most of what a
 * one-site `phase advance --dry-run` costs over SQLite's own shell: README "Benchmarks"). For
 * those commands, and for --commands, it execs tlsgate-net with the same arguments: the same
 * process, so a service manager's PID, signals and descriptors stay as they were.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef TLSGATE_FRONT
#include <curl/curl.h>
#endif

#include "cli.h"
#include "store.h"

struct command {
    const char *name;
    int (*run)(struct cli *, int, char **);
    const char *summary;
    const struct cli_spec *const *specs; /* its (sub)commands, for --commands */
};

/* What only tlsgate-net links: in the front binary these entries have no run function and no
 * specs, and main() execs tlsgate-net for them (FRONT above). */
#ifdef TLSGATE_FRONT
#define NET(x) NULL
#else
#define NET(x) x
#endif

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
    {"collect", NET(cmd_collect), "one pull round now over all (or one) hosts", NET(collect_specs)},
    {"daemon", NET(cmd_daemon), "pull every collector on schedule until SIGTERM/SIGINT",
     NET(daemon_specs)},
    {"poll", cmd_poll, "poll status: why hosts are unknown, failing pulls by kind of error",
     poll_specs},
    {"db", cmd_db, "db migrate: bring an older database up (backup first); db backup FILE",
     db_specs},
    {"probe", NET(cmd_probe), "what the servers' TLS ports really accept (SSL 3.0 .. TLS 1.3)",
     NET(probe_specs)},
    {"evidence", cmd_evidence, "import / list the handshakes servers logged (IIS, SCHANNEL)",
     evidence_specs},
    {"enroll", NET(cmd_enroll),
     "collector identities: CA, site secrets, requests, revocation, serve", NET(enroll_specs)},
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

#ifdef TLSGATE_FRONT
/*
 * Replaces this process with tlsgate-net and the arguments as given (`args`, argv before the
 * global options were taken out): the copy next to this binary (the build tree), else the
 * installed one (TLSGATE_NET_PATH, libexecdir). Returns only when neither could be run.
 */
static int exec_net(const char *what, char **args)
{
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    char *slash = n > 0 ? memrchr(self, '/', (size_t)n) : NULL;
    if (slash && (size_t)(slash - self) + sizeof("/tlsgate-net") <= sizeof(self)) {
        memcpy(slash, "/tlsgate-net", sizeof("/tlsgate-net"));
        if (access(self, X_OK) == 0) {
            execv(self, args);
            cli_error("%s: cannot run %s: %s", what, self, strerror(errno));
            return EXIT_SYSTEM;
        }
    }
    execv(TLSGATE_NET_PATH, args);
    cli_error("%s: cannot run %s (the program of the commands collect, daemon, probe and enroll): "
              "%s",
              what, TLSGATE_NET_PATH, strerror(errno));
    return EXIT_SYSTEM;
}
#endif

int main(int argc, char **argv)
{
    struct cli cli = {0};
#ifdef TLSGATE_FRONT
    /* take_global_options() reorders argv in place; tlsgate-net gets it as it was given. */
    char **given = malloc(sizeof(*argv) * ((size_t)argc + 1));
    if (!given) {
        cli_error("out of memory");
        return EXIT_SYSTEM;
    }
    memcpy(given, argv, sizeof(*argv) * ((size_t)argc + 1));
#endif
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
#ifdef TLSGATE_FRONT
        code = exec_net("--commands", given); /* the specs of every command are there */
#else
        /* Every command and subcommand from the table, one a line with whether --json applies
         * ("NAME<TAB>json" or "NAME<TAB>-"): what the tests walk. */
        for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
            for (const struct cli_spec *const *s = commands[i].specs; *s; s++)
                printf("%s\t%s\n", (*s)->name, (*s)->json ? "json" : "-");
        code = EXIT_OK;
#endif
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
#ifdef TLSGATE_FRONT
    code = cmd->run ? cmd->run(&cli, n, args) : exec_net(cmd->name, given);
#else
    curl_global_init(CURL_GLOBAL_DEFAULT);
    code = cmd->run(&cli, n, args);
    curl_global_cleanup();
#endif

out:
    store_close(cli.store);
    config_release(&cli.config);
    free(cli.command_line);
#ifdef TLSGATE_FRONT
    free(given);
#endif
    return code;
}
