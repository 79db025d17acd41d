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

#include "store.h"

void cli_error(const char *fmt, ...)
{
    /* Messages quote inputs (file contents, names, report values): one line, cleaned. */
    char msg[STORE_ERROR_SIZE + 512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    fputs("tlsgate: ", stderr);
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

const char *cli_user(void)
{
    static char name[64];
    if (name[0])
        return name;
    const char *env = getenv("TLSGATE_USER"); /* lets wrappers name the real operator */
    struct passwd *pw = getpwuid(geteuid());
    snprintf(name, sizeof(name), "%s",
             env && *env ? env : pw && pw->pw_name ? pw->pw_name : "unknown");
    return name;
}

int cli_audit(struct cli *cli, const char *outcome)
{
    return store_audit_append(cli->store, utc_now(), cli_user(),
                              cli->command_line ? cli->command_line : "", outcome);
}
