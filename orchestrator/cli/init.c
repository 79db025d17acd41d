/*
 * init.c — `tlsgate init`: create the database, or migrate an older one to this version (after
 * the same backup as `tlsgate db migrate`).
 */
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "store.h"

/* An existing older file: migrated here, with its backup named. EXIT_OK when nothing failed. */
static int migrate_existing(struct cli *cli)
{
    struct stat st;
    if (stat(cli->db_path, &st) != 0 || st.st_size == 0)
        return EXIT_OK; /* created below */
    struct store *s;
    char err[STORE_ERROR_SIZE];
    if (store_open_any(cli->db_path, &s, err, sizeof(err)))
        return EXIT_OK; /* an empty or foreign file: store_open says what it is */
    int from = 0;
    char backup[STORE_PATH_MAX];
    int rc = store_migrate(s, &from, backup, sizeof(backup));
    if (rc)
        cli_error("init: %s", store_errmsg(s));
    else if (backup[0])
        printf("%s: migrated from schema version %d (backup: %s)\n", cli->db_path, from, backup);
    store_close(s);
    return rc ? EXIT_SYSTEM : EXIT_OK;
}

static const struct cli_spec init_spec = {
    .name = "init",
    .usage = "Usage: tlsgate [--db FILE] init\n\n"
             "Creates the database, or migrates one written by an older tlsgate after\n"
             "copying it to DB.bak-VERSION-TIME (as `tlsgate db migrate` does).\n"
             "A database written by a newer tlsgate is refused (exit 4).\n",
};
const struct cli_spec *const init_specs[] = {&init_spec, NULL};

int cmd_init(struct cli *cli, int argc, char **argv)
{
    struct cli_args a;
    int code = cli_parse(cli, &init_spec, argc, argv, &a);
    if (code != CLI_RUN)
        return code;
    code = migrate_existing(cli);
    if (code)
        return code;
    struct store *s = cli_store(cli, true, &code);
    if (!s)
        return code;
    if (cli_audit(cli, "ok")) {
        cli_error("%s", store_errmsg(s));
        return EXIT_SYSTEM;
    }
    printf("%s: schema version %d\n", store_path(s), store_schema_latest());
    return EXIT_OK;
}
