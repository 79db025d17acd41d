/*
 * phase.c — the ordered phases of a site (phase.h): their names, their exit criteria in words,
 * and the one function that moves a site (site.phase, phase_history, and the servers'
 * reenable_legacy request). The command is cli/phasecmd.c; whether a site may move is counted
 * by gate.c.
 */
#include "phase.h"

#include <assert.h>
#include <errno.h>
#include <string.h>

#include "inventory.h"
#include "store.h"

static const char *const names[PHASE_COUNT] = {
    "inventory", "clients", "servers", "enforce", "complete",
};

const char *phase_name(enum phase_id p) { return (unsigned)p < PHASE_COUNT ? names[p] : "?"; }

int phase_parse(const char *name, enum phase_id *p)
{
    for (int i = 0; name && i < PHASE_COUNT; i++)
        if (!strcmp(name, names[i])) {
            *p = (enum phase_id)i;
            return 0;
        }
    return -EINVAL;
}

const char *phase_criterion_noun(enum phase_id p, long n)
{
    switch (p) {
    case PHASE_INVENTORY: return n == 1 ? "host" : "hosts";
    case PHASE_CLIENTS: return n == 1 ? "client" : "clients";
    case PHASE_SERVERS: return n == 1 ? "site system" : "site systems";
    case PHASE_ENFORCE: return n == 1 ? "server" : "servers";
    case PHASE_COMPLETE: break;
    }
    return "hosts";
}

const char *phase_criterion_text(enum phase_id p)
{
    switch (p) {
    case PHASE_INVENTORY: return "every host has a fresh report";
    case PHASE_CLIENTS: return "every client is ready or waived";
    case PHASE_SERVERS: return "every site system and console is ready or waived";
    case PHASE_ENFORCE:
        return "every server reports SSL 3.0, TLS 1.0 and TLS 1.1 disabled and a recent probe "
               "agrees";
    case PHASE_COMPLETE: break;
    }
    return "none: the site is complete";
}

/* Moves `site` to `to`, records the history row. */
static int set_phase(struct store *s, const char *site, enum phase_id from, enum phase_id to,
                     long long now, const char *user, const char *reason)
{
    sqlite3_stmt *st;
    int rc = store_prepare(s,
                           "UPDATE site SET phase = ?, entered_at = ?, entered_by = ? "
                           "WHERE code = ?",
                           &st);
    if (rc)
        return rc;
    sqlite3_bind_text(st, 1, phase_name(to), -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, now);
    sqlite3_bind_text(st, 3, user, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 4, site, -1, SQLITE_TRANSIENT);
    rc = store_run(s, st, "change phase");
    if (rc)
        return rc;
    rc = store_prepare(s,
                       "INSERT INTO phase_history (site, from_phase, to_phase, at, by, reason)"
                       " VALUES (?, ?, ?, ?, ?, ?)",
                       &st);
    if (rc)
        return rc;
    sqlite3_bind_text(st, 1, site, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, phase_name(from), -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, phase_name(to), -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, now);
    sqlite3_bind_text(st, 5, user, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 6, reason ? reason : "", -1, SQLITE_TRANSIENT);
    rc = store_run(s, st, "record phase history");
    return rc;
}

/* Sets reenable_legacy on every server of the site (value 1: rollback out of enforce; 0: the
 * site enters enforce again and the request is withdrawn). */
static int set_reenable(struct store *s, const char *site, int value, long long now)
{
    sqlite3_stmt *st;
    int rc = store_prepare(s,
                           "UPDATE host SET reenable_legacy = ?, updated_at = ? "
                           "WHERE site = ? AND roles <> 1 AND (roles & ?) <> 0 "
                           "AND reenable_legacy <> ?",
                           &st);
    if (rc)
        return rc;
    sqlite3_bind_int(st, 1, value);
    sqlite3_bind_int64(st, 2, now);
    sqlite3_bind_text(st, 3, site, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int(st, 4, ROLE_SERVER_MASK);
    sqlite3_bind_int(st, 5, value);
    rc = store_run(s, st, "mark servers");
    return rc;
}

int phase_move(struct store *s, const char *site, enum phase_id from, enum phase_id to,
               long long now, const char *user, const char *reason)
{
    /* One step at a time, never from complete: the callers check before they move. */
    assert(from < PHASE_COUNT && to < PHASE_COUNT);
    assert(to == from + 1 || to + 1 == from);
    int rc = set_phase(s, site, from, to, now, user, reason);
    if (!rc && to == PHASE_ENFORCE && to > from)
        rc = set_reenable(s, site, 0, now);
    else if (!rc && from == PHASE_ENFORCE && to < from)
        rc = set_reenable(s, site, 1, now);
    return rc;
}
