/*
 * identity.c — enrollment's tables (identity.h): secrets, requests, issued identities,
 * revocation, and THE POLICY that decides each request. The CA key is not here: signing is the
 * caller's callback (enroll/enroll.c), run inside the request's transaction so a certificate is
 * never issued without its rows, nor rows written for a certificate that was not signed.
 */
#include "identity.h"

#include <errno.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store.h"

/* Lowercase hex of n bytes into out (2n + 1 bytes, NUL-terminated). */
static void to_hex(const unsigned char *b, size_t n, char *out)
{
    gnutls_datum_t d = {(unsigned char *)b, (unsigned)n};
    size_t size = 2 * n + 1;
    gnutls_hex_encode(&d, out, &size); /* cannot fail: out holds 2n + 1 */
}

static int from_hex(const char *text, unsigned char *out, size_t n)
{
    if (strlen(text) != 2 * n)
        return -EINVAL;
    for (size_t i = 0; i < 2 * n; i++) {
        char c = text[i];
        int v = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (v < 0)
            return -EINVAL;
        out[i / 2] = (unsigned char)(i % 2 ? (out[i / 2] << 4) | v : v);
    }
    return 0;
}

/* hex SHA-256(salt || secret) */
static int secret_hash(const unsigned char salt[16], const char *secret, char out[65])
{
    size_t n = strlen(secret);
    unsigned char *buf = malloc(16 + n + 1), d[32];
    if (!buf)
        return -ENOMEM;
    memcpy(buf, salt, 16);
    memcpy(buf + 16, secret, n);
    int rc = gnutls_hash_fast(GNUTLS_DIG_SHA256, buf, 16 + n, d);
    gnutls_memset(buf, 0, 16 + n);
    free(buf);
    if (rc < 0)
        return -EIO;
    to_hex(d, sizeof(d), out);
    return 0;
}

/* The text of column i, or "" (never NULL). */
static const char *col(sqlite3_stmt *st, int i)
{
    const char *t = (const char *)sqlite3_column_text(st, i);
    return t ? t : "";
}

int identity_secret_rotate(struct store *s, const char *site, long long now, const char *by,
                           char secret[IDENTITY_SECRET_TEXT], bool *rotated)
{
    *rotated = false;
    sqlite3_stmt *st;
    int rc = store_prepare(s, "SELECT code FROM site WHERE code = ?", &st);
    if (rc)
        return rc;
    sqlite3_bind_text(st, 1, site, -1, SQLITE_STATIC);
    int step = sqlite3_step(st);
    sqlite3_finalize(st);
    if (step == SQLITE_DONE)
        return store_fail(s, -ENOENT,
                          "site '%s' is not in the inventory (see `tlsgate inventory list`)", site);
    if (step != SQLITE_ROW)
        return store_sqlite_fail(s, "read site");
    unsigned char raw[IDENTITY_SECRET_BYTES], salt[16];
    char salt_hex[33], hash[65];
    if (gnutls_rnd(GNUTLS_RND_KEY, raw, sizeof(raw)) < 0 ||
        gnutls_rnd(GNUTLS_RND_NONCE, salt, sizeof(salt)) < 0)
        return store_fail(s, -EIO, "no random bytes for a secret");
    to_hex(raw, sizeof(raw), secret);
    gnutls_memset(raw, 0, sizeof(raw));
    to_hex(salt, sizeof(salt), salt_hex);
    if ((rc = secret_hash(salt, secret, hash)))
        return store_fail(s, rc, "cannot hash the secret");
    if ((rc = store_prepare(s,
                            "UPDATE enroll_secret SET retired_at = ?2 WHERE site = ?1 AND"
                            " retired_at IS NULL",
                            &st)))
        return rc;
    sqlite3_bind_text(st, 1, site, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, now);
    if ((rc = store_run(s, st, "retire enrollment secret")))
        return rc;
    *rotated = sqlite3_changes(store_db(s)) > 0;
    if ((rc = store_prepare(s,
                            "INSERT INTO enroll_secret (site, salt, hash, created_at, created_by)"
                            " VALUES ((SELECT code FROM site WHERE code = ?1), ?2, ?3, ?4, ?5)",
                            &st)))
        return rc;
    sqlite3_bind_text(st, 1, site, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, salt_hex, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, hash, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, now);
    sqlite3_bind_text(st, 5, by, -1, SQLITE_STATIC);
    return store_run(s, st, "store enrollment secret");
}

/* True when `secret` is the current secret of `site`. */
static int secret_ok(struct store *s, const char *site, const char *secret, bool *ok)
{
    *ok = false;
    sqlite3_stmt *st;
    int rc = store_prepare(s,
                           "SELECT salt, hash FROM enroll_secret WHERE site = ? AND"
                           " retired_at IS NULL",
                           &st);
    if (rc)
        return rc;
    sqlite3_bind_text(st, 1, site, -1, SQLITE_STATIC);
    int step = sqlite3_step(st);
    if (step == SQLITE_ROW) {
        unsigned char salt[16], want[32], got[32];
        char hash[65];
        if (from_hex(col(st, 0), salt, 16) == 0 && from_hex(col(st, 1), want, 32) == 0 &&
            secret_hash(salt, secret, hash) == 0 && from_hex(hash, got, 32) == 0) {
            unsigned diff = 0; /* constant time: the comparison says nothing of where */
            for (int i = 0; i < 32; i++)
                diff |= (unsigned)(want[i] ^ got[i]);
            *ok = diff == 0;
        }
    } else if (step != SQLITE_DONE) {
        rc = store_sqlite_fail(s, "read enrollment secret");
    }
    sqlite3_finalize(st);
    return rc;
}

/* One integer from `sql` with text parameters p1 (and p2 when set); 0 when no row. */
static int query_int(struct store *s, const char *sql, const char *p1, const char *p2,
                     long long *out)
{
    *out = 0;
    sqlite3_stmt *st;
    int rc = store_prepare(s, sql, &st);
    if (rc)
        return rc;
    sqlite3_bind_text(st, 1, p1, -1, SQLITE_STATIC);
    if (p2)
        sqlite3_bind_text(st, 2, p2, -1, SQLITE_STATIC);
    return store_one_int(s, st, "read enrollment state", out);
}

static int audit(struct store *s, const struct identity_ask *a, const char *outcome)
{
    char user[96], command[640];
    snprintf(user, sizeof(user), "enroll:%s", a->peer);
    if (a->renew)
        snprintf(command, sizeof(command), "POST /v1/renew %.255s (client certificate %.16s)",
                 a->name, a->presented);
    else
        snprintf(command, sizeof(command), "POST /v1/enroll %.255s site %.64s", a->name, a->site);
    return store_audit_append(s, a->now, user, command, outcome);
}

int identity_audit_refusal(struct store *s, long long now, const char *peer, const char *what,
                           const char *why)
{
    char user[96], outcome[IDENTITY_WHY_MAX + 16];
    snprintf(user, sizeof(user), "enroll:%s", peer);
    snprintf(outcome, sizeof(outcome), "refused: %s", why);
    return store_audit_append(s, now, user, what, outcome);
}

void identity_set_busy_timeout(struct store *s, int ms) { sqlite3_busy_timeout(store_db(s), ms); }

/* Signs, stores the identity and the request's certificate. */
static int issue(struct store *s, const struct identity_ask *a, long long request,
                 identity_sign_fn sign, void *arg, struct identity_answer *ans)
{
    struct identity_issued is;
    memset(&is, 0, sizeof(is));
    int rc = sign(arg, a->name, &is);
    if (rc) {
        free(is.pem);
        return store_fail(s, -EIO, "%s: cannot sign the certificate", a->name);
    }
    sqlite3_stmt *st;
    if ((rc = store_prepare(s,
                            "INSERT INTO identity (fingerprint, name, source, serial, issuer,"
                            " not_before, not_after, first_seen, request_id) VALUES"
                            " (?, ?, 'enroll', ?, ?, ?, ?, ?, ?)",
                            &st)))
        goto out;
    sqlite3_bind_text(st, 1, is.fingerprint, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, a->name, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, is.serial, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, is.issuer, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 5, is.not_before);
    sqlite3_bind_int64(st, 6, is.not_after);
    sqlite3_bind_int64(st, 7, a->now);
    sqlite3_bind_int64(st, 8, request);
    if ((rc = store_run(s, st, "store identity")))
        goto out;
    if ((rc = store_prepare(s, "UPDATE enroll_request SET certificate = ? WHERE id = ?", &st)))
        goto out;
    sqlite3_bind_text(st, 1, is.pem, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, request);
    if ((rc = store_run(s, st, "store certificate")))
        goto out;
    ans->outcome = IDENTITY_ISSUED;
    ans->request = request;
    ans->certificate = is.pem;
    ans->not_after = is.not_after;
    is.pem = NULL;
    char outcome[160];
    snprintf(outcome, sizeof(outcome), "issued: request %lld, serial %s, until %lld", request,
             is.serial, is.not_after);
    rc = audit(s, a, outcome);
out:
    free(is.pem);
    return rc;
}

static int insert_request(struct store *s, const struct identity_ask *a, const char *site,
                          bool issued, long long *id)
{
    sqlite3_stmt *st;
    int rc = store_prepare(s,
                           "INSERT INTO enroll_request (name, site, kind, state, spki, csr, peer,"
                           " created_at, decided_at, decided_by) VALUES (?1, ?2, ?3, ?4, ?5, ?6,"
                           " ?7, ?8, CASE WHEN ?4 = 'issued' THEN ?8 END,"
                           " CASE WHEN ?4 = 'issued' THEN 'policy' END)",
                           &st);
    if (rc)
        return rc;
    sqlite3_bind_text(st, 1, a->name, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, site, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, a->renew ? "renew" : "enroll", -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, issued ? "issued" : "pending", -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, a->spki, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 6, a->csr, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 7, a->peer, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 8, a->now);
    rc = store_run(s, st, "store request");
    *id = sqlite3_last_insert_rowid(store_db(s));
    return rc;
}

static int refuse(struct store *s, const struct identity_ask *a, struct identity_answer *ans,
                  const char *why)
{
    ans->outcome = IDENTITY_REFUSED;
    snprintf(ans->why, sizeof(ans->why), "%s", why);
    char outcome[IDENTITY_WHY_MAX + 16];
    snprintf(outcome, sizeof(outcome), "refused: %s", why);
    return audit(s, a, outcome);
}

/* The request (name, spki, kind) asked before: answers from it. *found false when none. */
static int answer_known(struct store *s, const struct identity_ask *a, identity_sign_fn sign,
                        void *arg, struct identity_answer *ans, bool *found)
{
    *found = false;
    sqlite3_stmt *st;
    int rc = store_prepare(s,
                           "SELECT r.id, r.state, r.certificate,"
                           " (SELECT count(*) FROM identity i WHERE i.request_id = r.id AND"
                           " i.revoked_at IS NOT NULL),"
                           " (SELECT max(i.not_after) FROM identity i WHERE i.request_id = r.id)"
                           " FROM enroll_request r WHERE r.name = ?1 AND r.spki = ?2 AND"
                           " r.kind = ?3 ORDER BY r.id DESC LIMIT 1",
                           &st);
    if (rc)
        return rc;
    sqlite3_bind_text(st, 1, a->name, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, a->spki, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, a->renew ? "renew" : "enroll", -1, SQLITE_STATIC);
    int step = sqlite3_step(st);
    if (step == SQLITE_DONE) {
        sqlite3_finalize(st);
        return 0;
    }
    if (step != SQLITE_ROW) {
        rc = store_sqlite_fail(s, "read request");
        sqlite3_finalize(st);
        return rc;
    }
    *found = true;
    long long id = sqlite3_column_int64(st, 0), revoked = sqlite3_column_int64(st, 3);
    long long not_after = sqlite3_column_int64(st, 4);
    char state[16];
    snprintf(state, sizeof(state), "%s", col(st, 1));
    char *cert = sqlite3_column_type(st, 2) == SQLITE_NULL ? NULL : strdup(col(st, 2));
    bool oom = sqlite3_column_type(st, 2) != SQLITE_NULL && !cert;
    sqlite3_finalize(st);
    if (oom)
        return store_fail(s, -ENOMEM, "out of memory");
    char why[IDENTITY_WHY_MAX];
    ans->request = id;
    if (!strcmp(state, "pending")) {
        ans->outcome = IDENTITY_PENDING;
        snprintf(why, sizeof(why), "pending: request %lld (asked again)", id);
        return audit(s, a, why);
    }
    if (!strcmp(state, "denied")) {
        free(cert);
        snprintf(why, sizeof(why), "request %lld was denied", id);
        return refuse(s, a, ans, why);
    }
    if (revoked > 0) {
        free(cert);
        snprintf(why, sizeof(why), "the certificate of request %lld is revoked", id);
        return refuse(s, a, ans, why);
    }
    if (!cert) /* approved by a person: signed now, once */
        return issue(s, a, id, sign, arg, ans);
    ans->outcome = IDENTITY_ISSUED;
    ans->certificate = cert;
    ans->not_after = not_after;
    snprintf(why, sizeof(why), "issued: request %lld, the same certificate again", id);
    return audit(s, a, why);
}

static int decide_enroll(struct store *s, const struct identity_ask *a, identity_sign_fn sign,
                         void *arg, struct identity_answer *ans)
{
    bool ok;
    int rc = secret_ok(s, a->site, a->secret, &ok);
    if (rc)
        return rc;
    /* Nothing about the name before the secret is known good. */
    if (!ok)
        return refuse(s, a, ans, "wrong or retired enrollment secret for this site");
    sqlite3_stmt *st;
    if ((rc = store_prepare(s, "SELECT site FROM host WHERE name = ?", &st)))
        return rc;
    sqlite3_bind_text(st, 1, a->name, -1, SQLITE_STATIC);
    int step = sqlite3_step(st);
    char site[128] = "";
    if (step == SQLITE_ROW)
        snprintf(site, sizeof(site), "%s", col(st, 0));
    sqlite3_finalize(st);
    if (step != SQLITE_ROW && step != SQLITE_DONE)
        return store_sqlite_fail(s, "read host");
    if (step == SQLITE_DONE)
        return refuse(s, a, ans, "the name is not in the inventory");
    if (strcasecmp(site, a->site) != 0)
        return refuse(s, a, ans, "the name is not a host of this site");
    bool found;
    if ((rc = answer_known(s, a, sign, arg, ans, &found)) || found)
        return rc;
    long long had;
    if ((rc = query_int(s,
                        "SELECT EXISTS (SELECT 1 FROM identity WHERE name = ?1) OR EXISTS"
                        " (SELECT 1 FROM enroll_request WHERE name = ?1 AND state = 'issued')",
                        a->name, NULL, &had)))
        return rc;
    long long id;
    if (!had) {
        if ((rc = insert_request(s, a, site, true, &id)))
            return rc;
        return issue(s, a, id, sign, arg, ans);
    }
    long long pending;
    if ((rc = query_int(s, "SELECT count(*) FROM enroll_request WHERE state = 'pending' AND ?1",
                        "1", NULL, &pending)))
        return rc;
    if (pending >= a->pending_max) {
        ans->outcome = IDENTITY_FULL;
        snprintf(ans->why, sizeof(ans->why), "too many requests wait for a person; retry later");
        return audit(s, a, "refused: too many pending requests");
    }
    if ((rc = insert_request(s, a, site, false, &id)))
        return rc;
    ans->outcome = IDENTITY_PENDING;
    ans->request = id;
    char outcome[96];
    snprintf(outcome, sizeof(outcome), "pending: request %lld (the name had an identity)", id);
    return audit(s, a, outcome);
}

static int decide_renew(struct store *s, const struct identity_ask *a, identity_sign_fn sign,
                        void *arg, struct identity_answer *ans)
{
    sqlite3_stmt *st;
    int rc = store_prepare(s,
                           "SELECT i.name, i.source, i.revoked_at, i.not_after, h.site FROM"
                           " identity i LEFT JOIN host h ON h.name = i.name WHERE"
                           " i.fingerprint = ?",
                           &st);
    if (rc)
        return rc;
    sqlite3_bind_text(st, 1, a->presented, -1, SQLITE_STATIC);
    int step = sqlite3_step(st);
    char name[256] = "", source[16] = "", site[128] = "";
    bool revoked = false, has_site = false;
    long long not_after = 0;
    if (step == SQLITE_ROW) {
        snprintf(name, sizeof(name), "%s", col(st, 0));
        snprintf(source, sizeof(source), "%s", col(st, 1));
        revoked = sqlite3_column_type(st, 2) != SQLITE_NULL;
        not_after = sqlite3_column_int64(st, 3);
        has_site = sqlite3_column_type(st, 4) != SQLITE_NULL;
        snprintf(site, sizeof(site), "%s", col(st, 4));
    }
    sqlite3_finalize(st);
    if (step != SQLITE_ROW && step != SQLITE_DONE)
        return store_sqlite_fail(s, "read identity");
    if (step == SQLITE_DONE || strcmp(source, "enroll") != 0)
        return refuse(s, a, ans, "the client certificate is not an identity enrolled here");
    if (revoked)
        return refuse(s, a, ans, "the client certificate is revoked");
    if (not_after <= a->now)
        return refuse(s, a, ans, "the client certificate has expired");
    if (strcasecmp(name, a->name) != 0)
        return refuse(s, a, ans, "the request names another host than the client certificate");
    if (!has_site)
        return refuse(s, a, ans, "the name is no longer in the inventory");
    bool found;
    if ((rc = answer_known(s, a, sign, arg, ans, &found)) || found)
        return rc;
    long long id;
    if ((rc = insert_request(s, a, site, true, &id)))
        return rc;
    return issue(s, a, id, sign, arg, ans);
}

int identity_ask(struct store *s, const struct identity_ask *a, identity_sign_fn sign, void *arg,
                 struct identity_answer *ans)
{
    memset(ans, 0, sizeof(*ans));
    int rc = store_begin(s, true);
    if (rc)
        return rc;
    rc = a->renew ? decide_renew(s, a, sign, arg, ans) : decide_enroll(s, a, sign, arg, ans);
    if (!rc)
        rc = store_commit(s);
    if (rc) {
        store_rollback(s);
        identity_answer_release(ans);
        memset(ans, 0, sizeof(*ans));
    }
    return rc;
}

void identity_answer_release(struct identity_answer *a)
{
    free(a->certificate);
    a->certificate = NULL;
}

/* The state of request `id` into state (and its name); -ENOENT when none. */
static int request_state(struct store *s, long long id, char state[16], char name[256])
{
    sqlite3_stmt *st;
    int rc = store_prepare(s, "SELECT state, name FROM enroll_request WHERE id = ?", &st);
    if (rc)
        return rc;
    sqlite3_bind_int64(st, 1, id);
    int step = sqlite3_step(st);
    if (step == SQLITE_ROW) {
        snprintf(state, 16, "%s", col(st, 0));
        snprintf(name, 256, "%s", col(st, 1));
    }
    sqlite3_finalize(st);
    if (step == SQLITE_DONE)
        return store_fail(s, -ENOENT,
                          "request %lld: no such request (see `tlsgate enroll "
                          "pending`)",
                          id);
    return step == SQLITE_ROW ? 0 : store_sqlite_fail(s, "read request");
}

static int decide(struct store *s, long long id, bool approve, long long now, const char *by,
                  const char *reason, char name[256])
{
    char state[16];
    int rc = request_state(s, id, state, name);
    if (rc)
        return rc;
    if (strcmp(state, "pending") != 0)
        return store_fail(s, -EALREADY, "request %lld (%s) is %s already, not pending", id, name,
                          state);
    sqlite3_stmt *st;
    if ((rc = store_prepare(s,
                            "UPDATE enroll_request SET state = ?2, decided_at = ?3,"
                            " decided_by = ?4, reason = ?5 WHERE id = ?1 AND state = 'pending'",
                            &st)))
        return rc;
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_text(st, 2, approve ? "issued" : "denied", -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, now);
    sqlite3_bind_text(st, 4, by, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, reason, -1, SQLITE_STATIC); /* NULL: no reason */
    return store_run(s, st, approve ? "approve request" : "deny request");
}

int identity_approve(struct store *s, long long id, long long now, const char *by, char name[256])
{
    return decide(s, id, true, now, by, NULL, name);
}

int identity_deny(struct store *s, long long id, long long now, const char *by, const char *reason,
                  char name[256])
{
    return decide(s, id, false, now, by, reason, name);
}

/* Runs one of revocation's UPDATEs (?1 name, ?2 now, ?3 by, ?4 reason or NULL); *changed gets
 * how many rows it changed. */
static int revoke_update(struct store *s, const char *sql, const char *name, long long now,
                         const char *by, const char *reason, const char *what, int *changed)
{
    sqlite3_stmt *st;
    int rc = store_prepare(s, sql, &st);
    if (rc)
        return rc;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, now);
    sqlite3_bind_text(st, 3, by, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, reason, -1, SQLITE_STATIC); /* NULL: no reason */
    if ((rc = store_run(s, st, what)))
        return rc;
    *changed = sqlite3_changes(store_db(s));
    return 0;
}

int identity_revoke(struct store *s, const char *name, long long now, const char *by,
                    const char *reason, int *identities, int *requests)
{
    *identities = *requests = 0;
    long long known;
    int rc = query_int(s,
                       "SELECT (SELECT count(*) FROM identity WHERE name = ?1) +"
                       " (SELECT count(*) FROM enroll_request WHERE name = ?1)",
                       name, NULL, &known);
    if (rc)
        return rc;
    if (!known)
        return store_fail(s, -ENOENT, "%s: no identity and no request under this name", name);
    if ((rc = revoke_update(s,
                            "UPDATE identity SET revoked_at = ?2, revoked_by = ?3,"
                            " revoke_reason = ?4 WHERE name = ?1 AND revoked_at IS NULL",
                            name, now, by, reason, "revoke identities", identities)))
        return rc;
    /* What was not delivered yet never will be: a pending or approved-but-unsigned request. */
    return revoke_update(s,
                         "UPDATE enroll_request SET state = 'denied', decided_at = ?2,"
                         " decided_by = ?3, reason = 'revoked' || coalesce(': ' || ?4, '')"
                         " WHERE name = ?1 AND (state = 'pending' OR (state = 'issued' AND"
                         " certificate IS NULL))",
                         name, now, by, reason, "deny requests", requests);
}

struct each_walk {
    int (*fn)(const struct identity_row *row, void *arg);
    void *arg;
};

static const char *opt_text(sqlite3_stmt *st, int i)
{
    return (const char *)sqlite3_column_text(st, i);
}

static int each_row(sqlite3_stmt *st, void *arg)
{
    struct each_walk *w = arg;
    struct identity_row r = {
        .name = col(st, 0),
        .site = opt_text(st, 1),
        .source = col(st, 2),
        .fingerprint = opt_text(st, 3),
        .serial = opt_text(st, 4),
        .issuer = opt_text(st, 5),
        .not_before = sqlite3_column_int64(st, 6),
        .not_after = sqlite3_column_int64(st, 7),
        .revoked_at = sqlite3_column_int64(st, 8),
        .revoked_by = opt_text(st, 9),
        .reason = opt_text(st, 10),
    };
    return w->fn(&r, w->arg);
}

int identity_each(struct store *s, const char *site, long long expiring, long long now,
                  int (*fn)(const struct identity_row *row, void *arg), void *arg)
{
    static const char all[] =
        "SELECT i.name, h.site, i.source, i.fingerprint, i.serial, i.issuer, i.not_before,"
        " i.not_after, i.revoked_at, i.revoked_by, i.revoke_reason FROM identity i"
        " LEFT JOIN host h ON h.name = i.name WHERE (?1 IS NULL OR h.site = ?1)"
        " ORDER BY i.name, i.not_after, i.fingerprint";
    /* Each name's latest enrolled identity, and what the puller saw where none was enrolled. */
    static const char soon[] =
        "SELECT * FROM (SELECT i.name, h.site, i.source, i.fingerprint, i.serial, i.issuer,"
        " i.not_before, i.not_after, NULL, NULL, NULL FROM identity i"
        " LEFT JOIN host h ON h.name = i.name WHERE (?1 IS NULL OR h.site = ?1) AND"
        " i.source = 'enroll' AND i.revoked_at IS NULL AND i.not_after <= ?2 AND"
        " i.not_after = (SELECT max(j.not_after) FROM identity j WHERE j.name = i.name AND"
        " j.source = 'enroll' AND j.revoked_at IS NULL)"
        " UNION ALL SELECT h.name, h.site, 'pull', p.cert_fingerprint, NULL, p.cert_issuer, NULL,"
        " p.cert_not_after, NULL, NULL, NULL FROM poll p JOIN host h ON h.id = p.host_id"
        " WHERE (?1 IS NULL OR h.site = ?1) AND p.cert_not_after IS NOT NULL AND"
        " p.cert_not_after <= ?2 AND NOT EXISTS (SELECT 1 FROM identity e WHERE"
        " e.name = h.name AND e.source = 'enroll' AND e.revoked_at IS NULL))"
        " ORDER BY 8, 1";
    sqlite3_stmt *st;
    int rc = store_prepare(s, expiring > 0 ? soon : all, &st);
    if (rc)
        return rc;
    if (site)
        sqlite3_bind_text(st, 1, site, -1, SQLITE_STATIC);
    if (expiring > 0)
        sqlite3_bind_int64(st, 2, now + expiring);
    struct each_walk w = {fn, arg};
    return store_each(s, st, "read identities", each_row, &w);
}

struct pending_walk {
    int (*fn)(const struct identity_pending *row, void *arg);
    void *arg;
};

static int pending_row(sqlite3_stmt *st, void *arg)
{
    struct pending_walk *w = arg;
    struct identity_pending p = {
        .id = sqlite3_column_int64(st, 0),
        .created_at = sqlite3_column_int64(st, 1),
        .name = col(st, 2),
        .site = col(st, 3),
        .kind = col(st, 4),
        .peer = col(st, 5),
        .spki = col(st, 6),
    };
    return w->fn(&p, w->arg);
}

int identity_pending_each(struct store *s, int (*fn)(const struct identity_pending *row, void *arg),
                          void *arg)
{
    sqlite3_stmt *st;
    int rc = store_prepare(s,
                           "SELECT id, created_at, name, site, kind, peer, spki FROM"
                           " enroll_request WHERE state = 'pending' ORDER BY created_at, id",
                           &st);
    if (rc)
        return rc;
    struct pending_walk w = {fn, arg};
    return store_each(s, st, "read pending requests", pending_row, &w);
}
