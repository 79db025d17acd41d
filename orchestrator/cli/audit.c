/*
 * audit.c — `tlsgate audit [--json]`: the audit log in the order it was written. Rows are
 * appended by cli_audit() from every command that changes state (schema triggers keep the
 * table append-only); this file only reads them, streaming, so a long log costs no memory.
 */
#include <string.h>

#include "cli.h"
#include "store.h"

struct audit_print {
    bool json;
    long n;
};

static int print_row(const struct store_audit_row *row, void *arg)
{
    struct audit_print *p = arg;
    char when[24];
    utc_iso8601(row->at, when, sizeof(when));
    if (p->json) {
        printf("%s{\"id\":%lld,\"at\":\"%s\",\"user\":", p->n ? "," : "", row->id, when);
        jsonout_string(stdout, row->user);
        jsonout_member(stdout, ",\"command\":", row->command);
        jsonout_member(stdout, ",\"outcome\":", row->outcome);
        fputc('}', stdout);
    } else {
        /* Text from the command line is data: print it, never interpret it. */
        printf("%s  %-12s  %-40s  %s\n", when, TEXTCLEAN(row->user), TEXTCLEAN(row->outcome),
               TEXTCLEAN(row->command));
    }
    p->n++;
    return 0;
}

static const struct cli_spec audit_spec = {
    .name = "audit",
    .usage = "Usage: tlsgate audit [--json]\n\n"
             "Every state change (init, import, phase moves, waivers, catalog loads), in\n"
             "order: time (UTC), OS user, command line, outcome.\n",
    .json = true,
};
const struct cli_spec *const audit_specs[] = {&audit_spec, NULL};

int cmd_audit(struct cli *cli, int argc, char **argv)
{
    struct cli_args a;
    int code = cli_parse(cli, &audit_spec, argc, argv, &a);
    if (code != CLI_RUN)
        return code;
    struct store *s = cli_store(cli, false, &code);
    if (!s)
        return code;
    if (cli->json)
        fputs("{\"audit\":[", stdout);
    struct audit_print p = {cli->json, 0};
    int rc = store_audit_each(s, print_row, &p);
    if (cli->json && !rc)
        fputs("]}\n", stdout);
    if (rc) {
        cli_error("%s", store_errmsg(s));
        return EXIT_SYSTEM;
    }
    return EXIT_OK;
}
