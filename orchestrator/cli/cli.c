/*
 * cli.c — the helpers every command shares: opening the store with the right exit code,
 * the user's name, the audit row. (The clock and JSON string output are base/, utc.h and
 * jsonout.h: the pull engine and the domain use them too.)
 */
#include "cli.h"

#include <errno.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "inventory.h"
#include "journal.h"
#include "store.h"

void cli_error(const char *fmt, ...)
{
    /* Messages quote inputs (file contents, names, report values): one line, cleaned. */
    char msg[STORE_ERROR_SIZE + 512];
    va_list ap;
    fputs(journal_stderr() ? "<3>tlsgate: " : "tlsgate: ", stderr); /* journal.h */
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    textclean_fputs(msg, stderr);
    fputc('\n', stderr);
}

struct store *cli_store(struct cli *cli, bool create, int *code)
{
    if (cli->store)
        return cli->store;
    char err[STORE_ERROR_SIZE];
    int rc = store_open(cli->db_path, create, &cli->store, err, sizeof(err));
    if (rc) {
        cli_error("%s", err);
        *code = EXIT_SYSTEM;
        return NULL;
    }
    return cli->store;
}

struct store *cli_store_read(struct cli *cli, int *code)
{
    struct store *s = cli_store(cli, false, code);
    if (s && store_begin(s, false)) {
        cli_error("%s", store_errmsg(s));
        *code = EXIT_SYSTEM;
        return NULL;
    }
    return s;
}

struct gate_time cli_gate_time(const struct cli *cli)
{
    return gate_time_config(utc_now(), &cli->config);
}

const char *cli_user(void)
{
    static char name[64];
    if (name[0])
        return name;
    const char *env = getenv("TLSGATE_USER"); /* lets wrappers name the real operator */
    struct passwd *pw = getpwuid(geteuid());
    snprintf(name, sizeof(name), "%s",
             env && *env         ? env
             : pw && pw->pw_name ? pw->pw_name
                                 : "unknown");
    return name;
}

int cli_audit(struct cli *cli, const char *outcome)
{
    return store_audit_append(cli->store, utc_now(), cli_user(),
                              cli->command_line ? cli->command_line : "", outcome);
}

void cli_json_roles(FILE *out, unsigned roles)
{
    fputc('[', out);
    for (int i = 0, n = 0; i < ROLE_COUNT; i++)
        if (roles & (1u << i)) {
            fputs(n++ ? ", " : "", out);
            jsonout_string(out, inv_role_names[i]);
        }
    fputc(']', out);
}

json_t *cli_json_roles_array(unsigned roles)
{
    json_t *a = json_array();
    for (int i = 0; a && i < ROLE_COUNT; i++)
        if (roles & (1u << i))
            json_array_append_new(a, json_string(inv_role_names[i]));
    return a;
}
