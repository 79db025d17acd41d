/*
 * dbcmd.c — `tlsgate db migrate` and `tlsgate db backup FILE [--force]`: the database file
 * itself. Migrations are explicit (store.h): every other command refuses an older schema with
 * exit 4 and points here; `db migrate` copies the file first (store_migrate).
 */
#include <errno.h>
#include <string.h>

#include "cli.h"
#include "store.h"

#define DB_ABOUT                                                                                   \
    "migrate  brings a database written by an older tlsgate to this version. It first\n"           \
    "         copies the file (SQLite online backup, owner-only) to DB.bak-VERSION-TIME\n"         \
    "         next to it, then migrates, both under one write lock. Every other command\n"         \
    "         refuses an older database (exit 4) until this has run.\n"                            \
    "backup   writes a consistent copy of the database to FILE while the daemon keeps\n"           \
    "         running (online backup in steps, the lock released between them), to a\n"            \
    "         temporary name in FILE's folder renamed when complete. An existing FILE\n"           \
    "         is refused unless --force.\n"

static const struct cli_spec db_migrate_spec = {
    .name = "db migrate",
    .word = "migrate",
    .usage = "Usage: tlsgate [--db FILE] db migrate\n\n" DB_ABOUT,
};
static const struct cli_option db_backup_options[] = {{"force", NULL}, {NULL}};
static const struct cli_spec db_backup_spec = {
    .name = "db backup",
    .word = "backup",
    .usage = "Usage: tlsgate [--db FILE] db backup FILE [--force]\n\n" DB_ABOUT,
    .options = db_backup_options,
    .max_args = 1, /* FILE: checked by cmd_db with its own message */
};
const struct cli_spec *const db_specs[] = {&db_migrate_spec, &db_backup_spec, NULL};

/* A FILE that exists, sits in no folder or is no file name is bad input; the rest is system. */
static int exit_of(int rc)
{
    return rc == -EEXIST || rc == -ENAMETOOLONG || rc == -EINVAL || rc == -ENOENT ||
                   rc == -ENOTDIR || rc == -EISDIR
               ? EXIT_BADINPUT
               : EXIT_SYSTEM;
}

static int db_open(struct cli *cli, struct store **s)
{
    char err[STORE_ERROR_SIZE];
    if (store_open_any(cli->db_path, s, err, sizeof(err))) {
        cli_error("%s", err);
        return EXIT_SYSTEM;
    }
    cli->store = *s; /* closed by main */
    return EXIT_OK;
}

static int db_migrate(struct cli *cli)
{
    struct store *s;
    int code = db_open(cli, &s);
    if (code)
        return code;
    int from = 0;
    char backup[STORE_PATH_MAX];
    int rc = store_migrate(s, &from, backup, sizeof(backup));
    if (rc) {
        cli_error("db migrate: %s", store_errmsg(s));
        return exit_of(rc);
    }
    if (!backup[0]) {
        printf("%s: schema version %d, nothing to migrate\n", store_path(s), from);
        return EXIT_OK;
    }
    char outcome[STORE_PATH_MAX + 64];
    snprintf(outcome, sizeof(outcome), "migrated %d -> %d, backup %s", from, store_schema_latest(),
             backup);
    if (cli_audit(cli, outcome)) {
        cli_error("%s", store_errmsg(s));
        return EXIT_SYSTEM;
    }
    printf("%s: schema version %d -> %d (backup of version %d: %s)\n", store_path(s), from,
           store_schema_latest(), from, backup);
    return EXIT_OK;
}

static int db_backup(struct cli *cli, const char *file, bool force)
{
    struct store *s;
    int code = db_open(cli, &s);
    if (code)
        return code;
    int rc = store_backup(s, file, force);
    if (rc) {
        cli_error("db backup: %s", store_errmsg(s));
        return exit_of(rc);
    }
    int version = 0;
    store_schema_version(s, &version);
    printf("%s: copied to %s (schema version %d)\n", store_path(s), file, version);
    return EXIT_OK;
}

int cmd_db(struct cli *cli, int argc, char **argv)
{
    const struct cli_spec *spec;
    struct cli_args a;
    int parsed = cli_parse_sub(cli, "db",
                               "Usage: tlsgate [--db FILE] db migrate\n"
                               "       tlsgate [--db FILE] db backup FILE [--force]\n\n" DB_ABOUT,
                               db_specs, argc, argv, &spec, &a);
    if (parsed != CLI_RUN)
        return parsed;
    if (spec == &db_migrate_spec)
        return db_migrate(cli);
    if (!a.argc || !*a.argv[0]) {
        cli_error("db backup: FILE is missing (see `tlsgate db backup --help`)");
        return EXIT_USAGE;
    }
    return db_backup(cli, a.argv[0], cli_given(spec, &a, "force"));
}
