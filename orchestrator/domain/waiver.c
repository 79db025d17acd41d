/*
 * waiver.c — the `waiver` rows (waiver.h). The commands are cli/waivecmd.c (waive, unwaive);
 * `host show` reads a host's waiver through waiver_get, the gate joins the table itself.
 */
#include "waiver.h"

#include <stdio.h>

#include "gate.h"
#include "store.h"

int waiver_set(struct store *s, long long host_id, const char *reason, long long until_at,
               long long now, const char *user)
{
    sqlite3_stmt *st;
    int rc = store_prepare(s,
                           "INSERT INTO waiver (host_id, reason, until_at, created_at,"
                           " created_by) VALUES (?, ?, ?, ?, ?) ON CONFLICT (host_id) DO"
                           " UPDATE SET reason = excluded.reason, until_at = excluded.until_at,"
                           " created_at = excluded.created_at,"
                           " created_by = excluded.created_by",
                           &st);
    if (rc)
        return rc;
    sqlite3_bind_int64(st, 1, host_id);
    sqlite3_bind_text(st, 2, reason, -1, SQLITE_STATIC);
    store_bind_opt_int64(st, 3, until_at);
    sqlite3_bind_int64(st, 4, now);
    sqlite3_bind_text(st, 5, user, -1, SQLITE_STATIC);
    rc = store_run(s, st, "write waiver");
    return rc;
}

int waiver_clear(struct store *s, long long host_id, bool *had)
{
    sqlite3_stmt *st;
    int rc = store_prepare(s, "DELETE FROM waiver WHERE host_id = ?", &st);
    if (rc)
        return rc;
    sqlite3_bind_int64(st, 1, host_id);
    rc = store_run(s, st, "delete waiver");
    *had = !rc && sqlite3_changes(store_db(s)) > 0;
    return rc;
}

int waiver_get(struct store *s, long long host_id, long long now, struct waiver *w)
{
    sqlite3_stmt *st;
    int rc = store_prepare(s,
                           "SELECT w.reason, w.until_at, w.created_by FROM waiver w "
                           "WHERE w.host_id = ?1 AND " GATE_WAIVER_ACTIVE_SQL("w", "?2"),
                           &st);
    if (rc)
        return rc;
    sqlite3_bind_int64(st, 1, host_id);
    sqlite3_bind_int64(st, 2, now);
    int step = sqlite3_step(st);
    if (step == SQLITE_ROW) {
        w->active = true;
        snprintf(w->reason, sizeof(w->reason), "%s", (const char *)sqlite3_column_text(st, 0));
        w->until_at = sqlite3_column_int64(st, 1);
        snprintf(w->by, sizeof(w->by), "%s", (const char *)sqlite3_column_text(st, 2));
    } else if (step != SQLITE_DONE) {
        rc = store_sqlite_fail(s, "read waiver");
    }
    sqlite3_finalize(st);
    return rc;
}
