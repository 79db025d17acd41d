/*
 * audit.c — `tlsgate audit [--json]`: the audit log in the order it was written. Rows are
 * appended by cli_audit() from every command that changes state (schema triggers keep the
 * table append-only); this file only reads them, streaming, so a long log costs no memory.
 */
#include <string.h>

#include "cli.h"
#include "store.h"

int cmd_audit(struct cli *cli, int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help")) {
            printf("usage: tlsgate audit [--json]\n\n"
                   "Every state change (init, import, phase moves, waivers, catalog loads), in\n"
                   "order: time (UTC), OS user, command line, outcome.\n");
            return EXIT_OK;
        }
        cli_error("audit: unexpected argument '%s' (usage: tlsgate audit [--json])", argv[i]);
        return EXIT_USAGE;
    }
    int code;
    struct store *s = cli_store(cli, false, &code);
    if (!s)
        return code;
    sqlite3_stmt *st;
    if (store_prepare(s, "SELECT id, at, user, command, outcome FROM audit ORDER BY id", &st)) {
        cli_error("%s", store_errmsg(s));
        return EXIT_SYSTEM;
    }
    if (cli->json)
        fputs("{\"audit\":[", stdout);
    int step;
    long n = 0;
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        char when[24];
        utc_iso8601(sqlite3_column_int64(st, 1), when, sizeof(when));
        const char *user = (const char *)sqlite3_column_text(st, 2);
        const char *command = (const char *)sqlite3_column_text(st, 3);
        const char *outcome = (const char *)sqlite3_column_text(st, 4);
        if (cli->json) {
            printf("%s{\"id\":%lld,\"at\":\"%s\",\"user\":", n ? "," : "",
                   (long long)sqlite3_column_int64(st, 0), when);
            jsonout_string(stdout, user);
            fputs(",\"command\":", stdout);
            jsonout_string(stdout, command);
            fputs(",\"outcome\":", stdout);
            jsonout_string(stdout, outcome);
            fputc('}', stdout);
        } else {
            /* Text from the command line is data: print it, never interpret it. */
            printf("%s  %-12s  %-40s  %s\n", when, user, outcome, command);
        }
        n++;
    }
    int rc = step == SQLITE_DONE ? 0 : store_sqlite_fail(s, "read audit log");
    sqlite3_finalize(st);
    if (cli->json && !rc)
        fputs("]}\n", stdout);
    if (rc) {
        cli_error("%s", store_errmsg(s));
        return EXIT_SYSTEM;
    }
    return EXIT_OK;
}
