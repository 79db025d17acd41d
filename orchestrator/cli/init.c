/*
 * init.c — `tlsgate init`: create the database, or migrate an older one to this version.
 */
#include <string.h>

#include "cli.h"
#include "store.h"

static const struct cli_spec init_spec = {
    .name = "init",
    .usage = "Usage: tlsgate [--db FILE] init\n\n"
             "Creates the database, or migrates one written by an older tlsgate.\n"
             "A database written by a newer tlsgate is refused (exit 4).\n",
};
const struct cli_spec *const init_specs[] = {&init_spec, NULL};

int cmd_init(struct cli *cli, int argc, char **argv)
{
    struct cli_args a;
    int code = cli_parse(cli, &init_spec, argc, argv, &a);
    if (code != CLI_RUN)
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
