/*
 * waiver.c — `tlsgate waive HOST --reason R [--until DATE]` and `tlsgate unwaive HOST`.
 *
 * A waiver says "this host does not block" (a decommissioned machine, an accepted risk). It
 * changes no state: gate.c counts a waived host as not blocking while the waiver is active
 * (until_at NULL or in the future), so an expiry needs no job to enforce it. One waiver per
 * host; waiving again replaces it. Each change is written with its audit row in one
 * transaction.
 */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "gate.h"
#include "store.h"

/* A waiver's reason is shown in every listing: keep it a line, not a document. */
#define WAIVER_REASON_MAX 500

/*
 * DATE: what utc_parse_time takes (YYYY-MM-DD, YYYY-MM-DDTHH:MM:SSZ), or RFC 3339 with a
 * fraction and/or a numeric offset (2026-12-31T18:00:00.5+02:00). Returns 0 or -EINVAL.
 */
static int parse_until(const char *text, long long *t)
{
    if (!utc_parse_time(text, t))
        return 0;
    size_t len = strlen(text);
    if (len < 20 || len > 40 || (text[10] != 'T' && text[10] != 't' && text[10] != ' '))
        return -EINVAL;
    char base[21];
    memcpy(base, text, 19);
    base[10] = 'T';
    base[19] = 'Z';
    base[20] = '\0';
    if (utc_parse_time(base, t))
        return -EINVAL;
    const char *p = text + 19;
    if (*p == '.') {
        p++;
        if (!isdigit((unsigned char)*p))
            return -EINVAL;
        while (isdigit((unsigned char)*p))
            p++; /* a waiver is not finer than a second */
    }
    if ((*p == 'Z' || *p == 'z') && p[1] == '\0')
        return 0;
    if ((*p != '+' && *p != '-') || strlen(p) != 6 || p[3] != ':' ||
        !isdigit((unsigned char)p[1]) || !isdigit((unsigned char)p[2]) ||
        !isdigit((unsigned char)p[4]) || !isdigit((unsigned char)p[5]))
        return -EINVAL;
    int hours = (p[1] - '0') * 10 + (p[2] - '0'), minutes = (p[4] - '0') * 10 + (p[5] - '0');
    if (hours > 23 || minutes > 59)
        return -EINVAL;
    long long offset = hours * 3600LL + minutes * 60LL;
    *t += *p == '+' ? -offset : offset; /* local time minus its offset is UTC */
    return 0;
}

/* The id of host `name`, -ENOENT (message names it) when there is none. */
static int host_id(struct store *s, const char *name, long long *id, char *canon, size_t size)
{
    sqlite3_stmt *st;
    int rc = store_prepare(s, "SELECT id, name FROM host WHERE name = ?", &st);
    if (rc)
        return rc;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_TRANSIENT);
    int step = sqlite3_step(st);
    if (step == SQLITE_ROW) {
        *id = sqlite3_column_int64(st, 0);
        snprintf(canon, size, "%s", (const char *)sqlite3_column_text(st, 1));
        rc = 0;
    } else if (step == SQLITE_DONE) {
        rc = store_fail(s, -ENOENT, "no such host: %s (see `tlsgate inventory list`)", name);
    } else {
        rc = store_sqlite_fail(s, "find host");
    }
    sqlite3_finalize(st);
    return rc;
}

static int fail(struct store *s, int rc)
{
    cli_error("%s", store_errmsg(s));
    store_rollback(s);
    return rc == -ENOENT ? EXIT_BADINPUT : EXIT_SYSTEM;
}

int cmd_waive(struct cli *cli, int argc, char **argv)
{
    const char *host = NULL, *reason = NULL, *until = NULL;
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        if (!strcmp(o, "--help")) {
            printf("usage: tlsgate waive HOST --reason R [--until DATE]\n\n"
                   "The host stops blocking gates and phases until DATE (YYYY-MM-DD, or RFC 3339\n"
                   "such as 2026-12-31T18:00:00Z or 2026-12-31T18:00:00+02:00) or until\n"
                   "`tlsgate unwaive HOST`. Waiving again replaces the waiver. A server's own\n"
                   "waiver never opens its own gate.\n");
            return EXIT_OK;
        }
        if (!strcmp(o, "--reason") || !strcmp(o, "--until")) {
            if (i + 1 >= argc || !*argv[i + 1]) {
                cli_error("waive: %s needs a value", o);
                return EXIT_USAGE;
            }
            *(o[2] == 'r' ? &reason : &until) = argv[++i];
        } else if (o[0] != '-' && !host) {
            host = o;
        } else {
            cli_error("waive: unexpected argument '%s' (see `tlsgate waive --help`)", o);
            return EXIT_USAGE;
        }
    }
    if (!host || !reason) {
        cli_error("waive: usage: tlsgate waive HOST --reason R [--until DATE]");
        return EXIT_USAGE;
    }
    if (strlen(reason) > WAIVER_REASON_MAX) {
        cli_error("waive: --reason is longer than %d bytes", WAIVER_REASON_MAX);
        return EXIT_USAGE;
    }
    long long until_at = 0, now = utc_now();
    if (until) {
        if (parse_until(until, &until_at)) {
            cli_error("waive: --until '%s' is not a date (YYYY-MM-DD or RFC 3339)", until);
            return EXIT_USAGE;
        }
        if (until_at <= now) {
            cli_error("waive: --until '%s' is not in the future: such a waiver would never count",
                      until);
            return EXIT_USAGE;
        }
    }

    int code;
    struct store *s = cli_store(cli, false, &code);
    if (!s)
        return code;
    long long id;
    char name[256];
    int rc = store_begin(s, true);
    if (rc || (rc = host_id(s, host, &id, name, sizeof(name))))
        return fail(s, rc);
    sqlite3_stmt *st;
    if ((rc = store_prepare(s, "INSERT INTO waiver (host_id, reason, until_at, created_at,"
                               " created_by) VALUES (?, ?, ?, ?, ?) ON CONFLICT (host_id) DO"
                               " UPDATE SET reason = excluded.reason, until_at = excluded.until_at,"
                               " created_at = excluded.created_at,"
                               " created_by = excluded.created_by", &st)))
        return fail(s, rc);
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_text(st, 2, reason, -1, SQLITE_STATIC);
    if (until)
        sqlite3_bind_int64(st, 3, until_at);
    else
        sqlite3_bind_null(st, 3);
    sqlite3_bind_int64(st, 4, now);
    sqlite3_bind_text(st, 5, cli_user(), -1, SQLITE_STATIC);
    rc = sqlite3_step(st) == SQLITE_DONE ? 0 : store_sqlite_fail(s, "write waiver");
    sqlite3_finalize(st);
    char iso[24], outcome[96];
    if (until)
        snprintf(outcome, sizeof(outcome), "ok: waived until %s",
                 utc_iso8601(until_at, iso, sizeof(iso)));
    else
        snprintf(outcome, sizeof(outcome), "ok: waived until unwaived");
    if (rc || (rc = cli_audit(cli, outcome)) || (rc = store_commit(s)))
        return fail(s, rc);
    if (cli->json) {
        fputs("{\"host\":", stdout);
        jsonout_string(stdout, name);
        fputs(",\"waived\":true,\"until\":", stdout);
        if (until)
            printf("\"%s\"", iso);
        else
            fputs("null", stdout);
        fputs(",\"reason\":", stdout);
        jsonout_string(stdout, reason);
        fputs("}\n", stdout);
    } else {
        printf("%s waived %s\n", name, until ? outcome + strlen("ok: waived ") : "until unwaived");
    }
    return EXIT_OK;
}

int cmd_unwaive(struct cli *cli, int argc, char **argv)
{
    const char *host = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help")) {
            printf("usage: tlsgate unwaive HOST\n\nRemoves the host's waiver: it blocks again "
                   "whenever it is not ready.\n");
            return EXIT_OK;
        }
        if (argv[i][0] != '-' && !host) {
            host = argv[i];
        } else {
            cli_error("unwaive: unexpected argument '%s' (usage: tlsgate unwaive HOST)",
                      argv[i]);
            return EXIT_USAGE;
        }
    }
    if (!host) {
        cli_error("unwaive: usage: tlsgate unwaive HOST");
        return EXIT_USAGE;
    }
    int code;
    struct store *s = cli_store(cli, false, &code);
    if (!s)
        return code;
    long long id;
    char name[256];
    int rc = store_begin(s, true);
    if (rc || (rc = host_id(s, host, &id, name, sizeof(name))))
        return fail(s, rc);
    sqlite3_stmt *st;
    if ((rc = store_prepare(s, "DELETE FROM waiver WHERE host_id = ?", &st)))
        return fail(s, rc);
    sqlite3_bind_int64(st, 1, id);
    rc = sqlite3_step(st) == SQLITE_DONE ? 0 : store_sqlite_fail(s, "delete waiver");
    sqlite3_finalize(st);
    bool had = sqlite3_changes(store_db(s)) > 0;
    if (rc || (rc = cli_audit(cli, had ? "ok: unwaived" : "ok: had no waiver")) ||
        (rc = store_commit(s)))
        return fail(s, rc);
    if (cli->json) {
        fputs("{\"host\":", stdout);
        jsonout_string(stdout, name);
        printf(",\"waived\":false,\"had_waiver\":%s}\n", had ? "true" : "false");
    } else {
        printf("%s %s\n", name, had ? "unwaived" : "had no waiver");
    }
    return EXIT_OK;
}
