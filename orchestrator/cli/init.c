/*
 * init.c — `tlsgate init`: create the database, or migrate an older one to this version.
 */
#include <string.h>

#include "cli.h"
#include "store.h"

int cmd_init(struct cli *cli, int argc, char **argv)
{
    if (argc > 1) {
        if (!strcmp(argv[1], "--help")) {
            printf("usage: tlsgate [--db FILE] init\n\n"
                   "Creates the database, or migrates one written by an older tlsgate.\n"
                   "A database written by a newer tlsgate is refused (exit 4).\n");
            return EXIT_OK;
        }
        cli_error("init: unexpected argument '%s'", argv[1]);
        return EXIT_USAGE;
    }
    int code;
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
