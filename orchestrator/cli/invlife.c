/*
 * invlife.c — the inventory's lifecycle as commands: the diff an import or a removal makes
 * (printed for --dry-run), the audit rows of removed hosts, and `tlsgate inventory remove
 * HOST... [--dry-run]`. The domain work is invimport.h's (inv_remove, inv_diff_each).
 *
 * A removed host goes with its reports, verdicts, poll state, waiver and edges (FK cascade): it
 * is no longer part of the estate, and keeping its rows would need a "removed" state in every
 * gate query. What it was stays in the audit log: one row per removed host with its site, roles
 * and collector, next to the command that removed it; `tlsgate db backup` keeps whole states.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "invimport.h"
#include "invlife.h"
#include "store.h"

struct diff_print {
    struct cli *cli;
    bool print; /* print every line (a dry run) */
    bool audit; /* audit every removed host */
    const char *why;
    long added, changed, removed;
    int rc;
};

static int diff_line(const struct inv_change *c, void *arg)
{
    struct diff_print *d = arg;
    d->added += c->kind == '+';
    d->changed += c->kind == '~';
    d->removed += c->kind == '-';
    if (d->print)
        printf("%c %s  %s\n", c->kind, c->name, c->detail);
    if (d->audit && c->kind == '-') {
        char outcome[STORE_ERROR_SIZE + 512];
        snprintf(outcome, sizeof(outcome), "removed host %s (%s)%s%s", c->name, c->detail,
                 d->why ? ": " : "", d->why ? d->why : "");
        return cli_audit(d->cli, outcome);
    }
    return 0;
}

int invlife_diff(struct cli *cli, bool dry_run, const char *why, long counts[3])
{
    struct diff_print d = {.cli = cli, .print = dry_run, .audit = !dry_run, .why = why};
    int rc = inv_diff_each(cli->store, diff_line, &d);
    counts[0] = d.added;
    counts[1] = d.changed;
    counts[2] = d.removed;
    return rc;
}

int invlife_remove(struct cli *cli, char **names_in, int n_in, bool dry_run)
{
    const char **names = (const char **)names_in;
    size_t n = (size_t)n_in;
    int code = EXIT_OK;
    struct store *s = cli_store(cli, false, &code);
    if (!s)
        return code;
    long removed = 0, counts[3] = {0, 0, 0};
    int rc = store_begin(s, true);
    if (!rc)
        rc = inv_remove(s, names, n, &removed);
    if (!rc)
        rc = invlife_diff(cli, dry_run, "inventory remove", counts);
    if (!rc && !dry_run) {
        char outcome[128];
        snprintf(outcome, sizeof(outcome), "ok: %ld hosts removed", removed);
        if (!(rc = cli_audit(cli, outcome)))
            rc = store_commit(s);
    }
    char msg[STORE_ERROR_SIZE];
    snprintf(msg, sizeof(msg), "%s", store_errmsg(s));
    inv_import_end(s);
    store_rollback(s); /* a dry run, or a failure: nothing stays */
    if (rc) {
        cli_error("inventory remove: %s", msg);
        return rc == -ENOENT ? EXIT_BADINPUT : EXIT_SYSTEM;
    }
    if (dry_run)
        printf("dry run: %ld hosts would be removed; nothing was changed\n", removed);
    else
        printf("%ld hosts removed (audited); the daemon stops pulling them within %d s\n", removed,
               INVLIFE_DAEMON_NOTICE_S);
    return EXIT_OK;
}
