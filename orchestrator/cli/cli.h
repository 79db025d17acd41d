/*
 * cli: what every `tlsgate` command shares — the exit codes of the CLI contract, the parsed
 * global options, the store and config a command works on. Only the command layer (cli/)
 * includes this header (tools/check-layers).
 *
 * A command is `int cmd_NAME(struct cli *cli, int argc, char **argv)`: argv[0] is the command
 * word, the global options (--db, --config, --json) are already removed wherever they stood.
 * It returns one of the EXIT_* codes. Messages for the user go to stderr through cli_error(),
 * which prefixes "tlsgate: ".
 */
#ifndef TLSGATE_CLI_H
#define TLSGATE_CLI_H

#include <stdbool.h>
#include <stdio.h>

#include "config.h"
#include "jsonout.h"   /* every command prints; these are the shared helpers */
#include "textclean.h" /* outside text on a terminal: TEXTCLEAN() at every human print */
#include "utc.h"

enum {
    EXIT_OK = 0,       /* done / passes */
    EXIT_BLOCKED = 1,  /* gate or phase blocked */
    EXIT_USAGE = 2,    /* usage error */
    EXIT_BADINPUT = 3, /* bad input: file, report, config */
    EXIT_SYSTEM = 4,   /* database or system error */
};

struct store;

struct cli {
    const char *db_path;     /* --db, $TLSGATE_DB, or "tlsgate.db" */
    const char *config_path; /* --config, $TLSGATE_CONFIG, or NULL (built-in defaults) */
    bool json;               /* --json */
    struct config config;    /* loaded before the command runs */
    struct store *store;     /* opened lazily by cli_store() */
    char *command_line;      /* the whole invocation, for the audit log */
};

/* Opens the database (creating and migrating it when `create` is true, else it must exist and be
 * at the current schema). Prints the error and returns NULL on failure; *code gets the exit code. */
struct store *cli_store(struct cli *cli, bool create, int *code);

/* Prints "tlsgate: " + message + newline to stderr. */
void cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* The OS user running the command (for audit rows and phase history). Never NULL. */
const char *cli_user(void);

/* Appends one audit row (time, user, command line, outcome) in the store's current
 * transaction or its own. Returns 0 or a negative errno-style code (message on the store). */
int cli_audit(struct cli *cli, const char *outcome);

/* The commands. Each lives in the module that owns it. */
int cmd_init(struct cli *cli, int argc, char **argv);
int cmd_inventory(struct cli *cli, int argc, char **argv);
int cmd_host(struct cli *cli, int argc, char **argv);
int cmd_rules(struct cli *cli, int argc, char **argv);
int cmd_gate(struct cli *cli, int argc, char **argv);
int cmd_phase(struct cli *cli, int argc, char **argv);
int cmd_waive(struct cli *cli, int argc, char **argv);
int cmd_unwaive(struct cli *cli, int argc, char **argv);
int cmd_audit(struct cli *cli, int argc, char **argv);
int cmd_export(struct cli *cli, int argc, char **argv);
int cmd_collect(struct cli *cli, int argc, char **argv);
int cmd_daemon(struct cli *cli, int argc, char **argv);

#endif
