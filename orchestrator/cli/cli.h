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
#include "gate.h"      /* struct gate_time: the moment every decision of a command is taken at */
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

/* cli_store, then a read transaction (BEGIN), so everything a command prints comes from one
 * state of the database even while the daemon writes; the caller ends it with store_rollback.
 * Prints the error and returns NULL on failure; *code gets the exit code. */
struct store *cli_store_read(struct cli *cli, int *code);

/* Now, with the configured stale_after, evidence window and probe max_age: the time every
 * command that decides (gate, phase, report, export) decides at. */
struct gate_time cli_gate_time(const struct cli *cli);

/* Prints "tlsgate: " + message + newline to stderr. */
void cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* The OS user running the command (for audit rows and phase history). Never NULL. */
const char *cli_user(void);

/* Appends one audit row (time, user, command line, outcome) in the store's current
 * transaction or its own. Returns 0 or a negative errno-style code (message on the store). */
int cli_audit(struct cli *cli, const char *outcome);

/*
 * OPTIONS — the one parser of every command (opts.c). A command describes itself with a
 * struct cli_spec (its options, how many arguments, whether --json applies, its usage text)
 * and calls cli_parse; `--help` / `-h` anywhere print the usage to stdout (exit 0), an unknown
 * option is refused with the closest one named (exit 2), `--opt VALUE` and `--opt=VALUE` are
 * the same, options may stand before or after the arguments, and --json where the spec says it
 * does not apply is a usage error. A command with subcommands (`gate check|list`) picks the
 * subcommand with cli_pick, then parses with the subcommand's spec.
 */
#define CLI_MAX_OPTIONS 16
#define CLI_RUN (-1) /* cli_parse: the arguments are good, run the command */

struct cli_option {
    const char *name; /* long name without "--" */
    const char *arg;  /* the value's name in the usage ("S", "FILE"), NULL for a flag */
};

struct cli_spec {
    const char *name;                 /* "gate check", as messages and --help name it */
    const char *word;                 /* the subcommand word ("check"); NULL for a command */
    const char *usage;                /* the whole --help text, starting with "Usage: " */
    const struct cli_option *options; /* ended by {NULL}; --help is always there */
    int min_args, max_args;           /* positional arguments; max -1: no limit */
    bool json;                        /* it prints data: --json applies */
};

/* What cli_parse found: option values by index in spec->options, and the arguments. */
struct cli_args {
    const char *value[CLI_MAX_OPTIONS]; /* NULL when not given or a flag */
    bool given[CLI_MAX_OPTIONS];
    int argc;
    char **argv;
};

/* Parses argv (argv[0] is the command or subcommand word). Returns CLI_RUN when the command
 * should run, else the exit code after printing the usage (--help) or naming the fault. */
int cli_parse(struct cli *cli, const struct cli_spec *spec, int argc, char **argv,
              struct cli_args *a);
/* The value of option `name` (NULL: not given), and whether a flag was given. */
const char *cli_value(const struct cli_spec *spec, const struct cli_args *a, const char *name);
bool cli_given(const struct cli_spec *spec, const struct cli_args *a, const char *name);
void cli_usage(const struct cli_spec *spec, FILE *out);

/* argv[1] among the subcommands `subs` (NULL-ended) of `command`: returns its index, or
 * -(exit code) - 1 after printing the usage (no subcommand: stderr, exit 2; --help: stdout,
 * exit 0) or naming an unknown one (exit 2, with the closest subcommand). */
int cli_pick(const char *command, const char *usage, const struct cli_spec *const subs[], int argc,
             char **argv);
/* cli_pick, then cli_parse with the subcommand's spec: CLI_RUN with *spec and *a set, or the
 * exit code. */
int cli_parse_sub(struct cli *cli, const char *command, const char *usage,
                  const struct cli_spec *const subs[], int argc, char **argv,
                  const struct cli_spec **spec, struct cli_args *a);

/* Every command and subcommand, for `tlsgate --commands` (main.c): the command's specs, NULL
 * ended; a command without subcommands has one spec with word NULL. */
extern const struct cli_spec *const init_specs[],
    *const inventory_specs[],
        *const host_specs[],
            *const rules_specs[],
                *const gate_specs[],
                    *const phase_specs[],
                        *const waive_specs[],
                            *const unwaive_specs[],
                                *const audit_specs[],
                                    *const export_specs[],
                                        *const report_specs[],
                                            *const collect_specs[],
                                                *const daemon_specs[],
                                                    *const poll_specs[],
                                                        *const db_specs[],
                                                            *const probe_specs[],
                                                                *const evidence_specs[],
                                                                    *const enroll_specs[];

/*
 * TABLES — the one table printer (table.c). Column widths are fixed by the command so rows
 * stream. Off a terminal values are printed whole; on one ($TLSGATE_TTY=1 forces it) the table
 * fits the terminal's width ($COLUMNS, else TIOCGWINSZ, else 80): wide columns shrink down to
 * their minimum and a longer value is cut with "…", so columns never misalign.
 */
#define CLI_TABLE_MAX_COLUMNS 16
struct cli_column {
    const char *title;
    int width;  /* columns it gets when there is room */
    int min;    /* the least it shrinks to on a narrow terminal */
    bool right; /* numbers: aligned right */
};
struct cli_table {
    const struct cli_column *cols;
    int ncols;
    int width[CLI_TABLE_MAX_COLUMNS];
    bool tty;
    int room; /* the terminal's width, in tty mode */
    FILE *out;
};
/* Prints the title row; then one cli_table_row per row (cells: ncols strings, NULL = ""). */
void cli_table_begin(struct cli_table *t, const struct cli_column *cols, int ncols, FILE *out);
void cli_table_row(struct cli_table *t, const char *const cells[]);
/* The terminal's width: $COLUMNS, else TIOCGWINSZ on stdout, else 80. */
int cli_terminal_width(void);

/* A host's roles in JSON: one shape in every command, an array of role names in vocabulary
 * order (["management_point", "distribution_point"]); printed to `out`, or as a jansson array. */
void cli_json_roles(FILE *out, unsigned roles);
json_t *cli_json_roles_array(unsigned roles);

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
int cmd_report(struct cli *cli, int argc, char **argv);
int cmd_collect(struct cli *cli, int argc, char **argv);
int cmd_daemon(struct cli *cli, int argc, char **argv);
int cmd_probe(struct cli *cli, int argc, char **argv);
int cmd_evidence(struct cli *cli, int argc, char **argv);
int cmd_enroll(struct cli *cli, int argc, char **argv);

/* The wire lines of `host show` and `gate check` (probecmd.c): the last probe of host `id`
 * (restart pending when `legacy_disabled` and it found a legacy protocol accepted) and the
 * legacy handshakes logged against it since the configured window. Text lines start with
 * `indent`; with --json, one `,"wire":{...}` member. Returns 0 or a store code. */
int cli_print_wire(struct cli *cli, struct store *s, long long id, const char *name,
                   bool legacy_disabled, const char *indent);
int cmd_db(struct cli *cli, int argc, char **argv);
int cmd_poll(struct cli *cli, int argc, char **argv);

#endif
