/*
 * ingest.c — the one write path of a report: evaluate it, then replace the host's report row
 * and verdict rows inside a SAVEPOINT (see ingest.h). Also the bulk re-evaluation that a new
 * catalog triggers (`tlsgate rules load`), which rewrites only what changed so that a million
 * stored reports take seconds, not minutes.
 */
#include "ingest.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "report.h"
#include "rules.h"
#include "store.h"

/* collected_at as the report carries it (RFC 3339 UTC, collectors/report.h). */
static int parse_collected_at(json_t *report, long long *t)
{
    const char *s = json_string_value(json_object_get(report, "collected_at"));
    return s ? report_parse_time(s, t) : -EINVAL;
}

int ingest_legacy_disabled(json_t *report)
{
    return rules_legacy_disabled(report);
}

int ingest_init(struct ingest *ig, struct store *s, const struct rules_catalog *c)
{
    memset(ig, 0, sizeof(*ig));
    ig->store = s;
    ig->catalog = c;
    ig->verdicts = calloc(rules_count(c) ? rules_count(c) : 1, sizeof(*ig->verdicts));
    if (!ig->verdicts)
        return store_fail(s, -ENOMEM, "ingest: out of memory");
    int rc;
    if ((rc = store_prepare(s, "SELECT collected_at FROM report WHERE host_id = ?",
                            &ig->get_collected)) ||
        (rc = store_prepare(s,
                            "INSERT INTO report (host_id, collected_at, received_at, body, "
                            "catalog_version, blockers, warnings, legacy_disabled) "
                            "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (host_id) DO UPDATE SET "
                            "collected_at = excluded.collected_at, "
                            "received_at = excluded.received_at, body = excluded.body, "
                            "catalog_version = excluded.catalog_version, "
                            "blockers = excluded.blockers, warnings = excluded.warnings, "
                            "legacy_disabled = excluded.legacy_disabled",
                            &ig->put_report)) ||
        (rc = store_prepare(s, "DELETE FROM verdict WHERE host_id = ?", &ig->del_verdicts)) ||
        (rc = store_prepare(s, "SAVEPOINT ingest", &ig->savepoint)) ||
        (rc = store_prepare(s, "RELEASE ingest", &ig->release)) ||
        (rc = store_prepare(s, "ROLLBACK TO ingest", &ig->rollback_to))) {
        ingest_release(ig);
        return rc;
    }
    return 0;
}

void ingest_release(struct ingest *ig)
{
    sqlite3_finalize(ig->get_collected);
    sqlite3_finalize(ig->put_report);
    sqlite3_finalize(ig->del_verdicts);
    for (size_t k = 0; k < sizeof(ig->put_rows) / sizeof(ig->put_rows[0]); k++)
        sqlite3_finalize(ig->put_rows[k]);
    sqlite3_finalize(ig->savepoint);
    sqlite3_finalize(ig->release);
    sqlite3_finalize(ig->rollback_to);
    free(ig->verdicts);
    memset(ig, 0, sizeof(*ig));
}

struct collect {
    struct rules_verdict *out;
    size_t n, cap;
};

static int collect_verdict(void *ctx, const struct rules_verdict *v)
{
    struct collect *c = ctx;
    if (c->n == c->cap)
        return -EOVERFLOW; /* cannot happen: one verdict per rule at most */
    c->out[c->n++] = *v;
    return 0;
}

/* Runs a stepped statement to completion; maps SQLite's answer to our codes. */
static int step_done(struct store *s, sqlite3_stmt *st, const char *what)
{
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc == SQLITE_DONE)
        return 0;
    if ((sqlite3_extended_errcode(store_db(s))) == SQLITE_CONSTRAINT_FOREIGNKEY) {
        store_sqlite_fail(s, what);
        return -ENOENT;
    }
    return store_sqlite_fail(s, what);
}

/* The statement inserting k (1..16) verdict rows, prepared on first use. */
static int put_rows_stmt(struct ingest *ig, size_t k, sqlite3_stmt **out)
{
    if (ig->put_rows[k - 1]) {
        *out = ig->put_rows[k - 1];
        return 0;
    }
    static const char head[] =
        "INSERT INTO verdict (host_id, rule, pass, severity, reason) VALUES (?,?,?,?,?)";
    char sql[sizeof(head) + 16 * sizeof(",(?,?,?,?,?)")];
    size_t len = sizeof(head) - 1;
    memcpy(sql, head, len);
    for (size_t j = 1; j < k; j++) {
        memcpy(sql + len, ",(?,?,?,?,?)", 12);
        len += 12;
    }
    sql[len] = '\0';
    int rc = store_prepare(ig->store, sql, &ig->put_rows[k - 1]);
    *out = ig->put_rows[k - 1];
    return rc;
}

/* `replace`: the host had a report, so it may have verdict rows to delete first. A host without
 * one has none: verdicts are written only here and by re-evaluation, both with a report, and
 * reports are deleted only with their host (ON DELETE CASCADE), which deletes its verdicts. */
static int write_verdicts(struct ingest *ig, long long host_id, const struct rules_verdict *v,
                          size_t n, bool replace)
{
    int rc = 0;
    if (replace) {
        sqlite3_bind_int64(ig->del_verdicts, 1, host_id);
        rc = step_done(ig->store, ig->del_verdicts, "delete verdicts");
    }
    const size_t max = sizeof(ig->put_rows) / sizeof(ig->put_rows[0]);
    for (size_t i = 0; !rc && i < n;) {
        size_t k = n - i < max ? n - i : max;
        sqlite3_stmt *st;
        if ((rc = put_rows_stmt(ig, k, &st)))
            return rc;
        for (size_t j = 0; j < k; j++, i++) {
            int at = (int)j * 5;
            sqlite3_bind_int64(st, at + 1, host_id);
            sqlite3_bind_text(st, at + 2, v[i].rule, -1, SQLITE_STATIC);
            sqlite3_bind_int(st, at + 3, v[i].pass);
            sqlite3_bind_text(st, at + 4, rules_severity_name(v[i].severity), -1, SQLITE_STATIC);
            sqlite3_bind_text(st, at + 5, v[i].reason, -1, SQLITE_STATIC);
        }
        rc = step_done(ig->store, st, "write verdicts");
    }
    return rc;
}

/* Puts "host N: " before the store's message: every message of ingest_one names the host. */
static int host_fail(struct store *s, int code, long long host_id)
{
    char msg[STORE_ERROR_SIZE];
    snprintf(msg, sizeof(msg), "%s", store_errmsg(s));
    return store_fail(s, code, "host %lld: %s", host_id, msg);
}

int ingest_one(struct ingest *ig, long long host_id, unsigned roles, json_t *report,
               long long received_at)
{
    return ingest_one_body(ig, host_id, roles, report, NULL, 0, received_at);
}

int ingest_one_body(struct ingest *ig, long long host_id, unsigned roles, json_t *report,
                    const char *received, size_t received_len, long long received_at)
{
    struct store *s = ig->store;
    long long collected_at;
    if (parse_collected_at(report, &collected_at))
        return store_fail(s, -EINVAL,
                          "host %lld: report: collected_at: missing or not RFC 3339 UTC", host_id);
    struct collect col = {.out = ig->verdicts, .cap = rules_count(ig->catalog)};
    int blockers, warnings;
    int rc = rules_evaluate(ig->catalog, report, roles, collect_verdict, &col, &blockers,
                            &warnings);
    if (rc)
        return store_fail(s, rc < 0 ? rc : -EIO, "host %lld: evaluation failed (%d)", host_id, rc);
    /* The bytes received when the caller has them (they parsed into `report`); else the
     * report serialised. Either way the stored body parses to the same report. */
    char *body = received ? NULL : json_dumps(report, JSON_COMPACT);
    if (!received && !body)
        return store_fail(s, -ENOMEM, "host %lld: out of memory", host_id);

    /* On its own, take the write lock first: a read that later upgrades can fail at once
     * (SQLITE_BUSY_SNAPSHOT) when another writer committed in between. */
    bool own = sqlite3_get_autocommit(store_db(s));
    if ((own && (rc = store_begin(s, true))) ||
        (rc = step_done(s, ig->savepoint, "begin savepoint"))) {
        host_fail(s, rc, host_id);
        if (own)
            store_rollback(s);
        free(body);
        return rc;
    }
    sqlite3_stmt *st = ig->get_collected;
    sqlite3_bind_int64(st, 1, host_id);
    int step = sqlite3_step(st);
    bool has_stored = step == SQLITE_ROW; /* no sentinel: any epoch second is a valid time */
    long long stored = has_stored ? sqlite3_column_int64(st, 0) : 0;
    sqlite3_reset(st);
    if (step != SQLITE_ROW && step != SQLITE_DONE) {
        rc = store_sqlite_fail(s, "read stored report");
        goto fail;
    }
    if (has_stored && stored > collected_at) {
        char a[32], b[32];
        report_format_time(collected_at, a, sizeof(a));
        report_format_time(stored, b, sizeof(b));
        store_fail(s, 0, "report collected at %s is older than the stored one (%s)", a, b);
        rc = -ESTALE;
        goto fail;
    }

    st = ig->put_report;
    sqlite3_bind_int64(st, 1, host_id);
    sqlite3_bind_int64(st, 2, collected_at);
    sqlite3_bind_int64(st, 3, received_at);
    if (received)
        sqlite3_bind_text64(st, 4, received, received_len, SQLITE_STATIC, SQLITE_UTF8);
    else
        sqlite3_bind_text(st, 4, body, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, rules_version(ig->catalog), -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 6, blockers);
    sqlite3_bind_int(st, 7, warnings);
    sqlite3_bind_int(st, 8, ingest_legacy_disabled(report));
    rc = step_done(s, st, "write report");
    sqlite3_clear_bindings(st);
    if (rc == -ENOENT)
        store_fail(s, 0, "no host with id %lld in the inventory", host_id);
    if (rc || (rc = write_verdicts(ig, host_id, col.out, col.n, has_stored)))
        goto fail;
    if ((rc = step_done(s, ig->release, "release savepoint")))
        goto fail;
    if (own && (rc = store_commit(s))) {
        host_fail(s, rc, host_id);
        store_rollback(s);
        free(body);
        return rc;
    }
    free(body);
    return 0;

fail:
    host_fail(s, rc, host_id);
    sqlite3_step(ig->rollback_to);
    sqlite3_reset(ig->rollback_to);
    sqlite3_step(ig->release);
    sqlite3_reset(ig->release);
    if (own)
        store_rollback(s);
    free(body);
    return rc;
}

int ingest_report(struct store *s, const struct rules_catalog *c, long long host_id,
                  unsigned roles, json_t *report, long long received_at)
{
    struct ingest ig;
    int rc = ingest_init(&ig, s, c);
    if (rc)
        return rc;
    rc = ingest_one(&ig, host_id, roles, report, received_at);
    ingest_release(&ig);
    return rc;
}

/* ---------------------------------------------------------------------------------------- */
/* Re-evaluation of every stored report                                                       */

/*
 * Most of a fleet reports the same facts (thousands of identical Windows 10 clients), and even
 * where reports differ, they mostly differ in members no rule reads (host, collected_at, the
 * update revision os.ubr, hotfix lists on hosts where no rule looks at them...). rules_evaluate
 * depends only on the roles and on the members rules_reads lists, so each stored body is first
 * cut down to those members by a scanner that copies their raw text and skips the rest without
 * building anything (the "projection", a few hundred bytes of valid JSON). Results are memoised
 * by (roles, projection) in a direct-mapped table: a hit compares the whole projection, so a hash
 * collision can only cost a miss, never a wrong verdict. A miss parses the projection, not the
 * body. Parsing whole bodies with jansson was most of the cost of re-evaluation.
 *
 * The scanner accepts a strict subset of JSON that jansson accepts the same way: ASCII strings
 * with the simple escapes, numbers without exponent of at most 18 integer digits, nesting up to
 * PROJ_DEPTH. Anything else (a \u escape, a byte >= 0x80, a malformed body) falls back to parsing
 * the whole body with jansson as before, so a body jansson refuses is still counted as bad.
 */
#define MEMO_SLOTS 4096
#define PROJ_DEPTH 64

/* The paths the catalog reads, as a tree with one level per object member. */
struct pnode {
    char *name;
    size_t len;
    bool whole; /* the member's whole value is read */
    struct pnode *kids;
    size_t nkids;
};

struct memo {
    uint64_t hash;
    unsigned roles;
    char *key;
    size_t keylen;
    int blockers, warnings, legacy;
    size_t n;
    struct rules_verdict *v;
};

/* What evaluates bodies: touches no database, so it can run on the worker thread. */
struct evaluator {
    const struct rules_catalog *c;
    const struct pnode *reads;
    struct memo *memo;
    char *key;
    size_t keycap;
};

struct row {
    long long host_id;
    unsigned roles;
    char *body;
};

/* The evaluation of one row: status 0, 1 (the body does not parse) or a negative code. */
struct result {
    int status;
    size_t n;
    int blockers, warnings;
    int legacy; /* rules_legacy_disabled of the body */
    struct rules_verdict *v; /* room for rules_count verdicts */
};

struct reeval {
    struct store *s;
    const struct rules_catalog *c;
    sqlite3_stmt *chunk, *one, *old, *ins, *upd, *del, *summary;
    size_t *order;
    sqlite3_stmt **write; /* per verdict of the result: ins, upd or NULL (unchanged) */
    char **gone;          /* stored rules to delete */
    size_t ngone, gonecap;
    struct pnode reads;
    struct evaluator E;   /* used on the calling thread (ingest_reevaluate_hosts) */
    struct result one_res;
};

static void pnode_release(struct pnode *t)
{
    for (size_t i = 0; i < t->nkids; i++)
        pnode_release(&t->kids[i]);
    free(t->kids);
    free(t->name);
}

/* Adds one dotted path under `t`. */
static int pnode_add(struct pnode *t, const char *path)
{
    while (!t->whole) {
        const char *dot = strchr(path, '.');
        size_t len = dot ? (size_t)(dot - path) : strlen(path);
        struct pnode *k = NULL;
        for (size_t i = 0; i < t->nkids && !k; i++)
            if (t->kids[i].len == len && !memcmp(t->kids[i].name, path, len))
                k = &t->kids[i];
        if (!k) {
            struct pnode *kids = realloc(t->kids, (t->nkids + 1) * sizeof(*kids));
            if (!kids)
                return -ENOMEM;
            t->kids = kids;
            k = &t->kids[t->nkids];
            *k = (struct pnode){.name = strndup(path, len), .len = len};
            if (!k->name)
                return -ENOMEM;
            t->nkids++;
        }
        t = k;
        if (!dot) {
            t->whole = true; /* what was below it is now covered */
            for (size_t i = 0; i < t->nkids; i++)
                pnode_release(&t->kids[i]);
            free(t->kids);
            t->kids = NULL;
            t->nkids = 0;
            return 0;
        }
        path = dot + 1;
    }
    return 0;
}

/* The scanner's state: a cursor in the body and the projection being written. */
struct proj {
    const char *p;
    char *out;
    size_t n, cap;
};

enum { PROJ_OK = 0, PROJ_FALLBACK = 1 };

static void proj_ws(struct proj *P)
{
    while (*P->p == ' ' || *P->p == '\t' || *P->p == '\n' || *P->p == '\r')
        P->p++;
}

static int proj_put(struct proj *P, const char *s, size_t len)
{
    if (P->n + len + 1 > P->cap)
        return PROJ_FALLBACK; /* cannot happen: the projection is shorter than the body */
    memcpy(P->out + P->n, s, len);
    P->n += len;
    return PROJ_OK;
}

/* A string at P->p ('"'): its raw content in [*s, *s + *len); *plain when it has no escape. */
static int proj_string(struct proj *P, const char **s, size_t *len, bool *plain)
{
    const char *q = P->p + 1;
    *plain = true;
    for (;;) {
        unsigned char ch = (unsigned char)*q;
        if (ch == '"')
            break;
        if (ch < 0x20 || ch >= 0x80)
            return PROJ_FALLBACK;
        if (ch == '\\') {
            if (!q[1] || !strchr("\"\\/bfnrt", q[1]))
                return PROJ_FALLBACK;
            *plain = false;
            q++;
        }
        q++;
    }
    *s = P->p + 1;
    *len = (size_t)(q - *s);
    P->p = q + 1;
    return PROJ_OK;
}

static bool is_digit(char c) { return c >= '0' && c <= '9'; }

static int proj_number(struct proj *P)
{
    const char *q = P->p;
    if (*q == '-')
        q++;
    const char *digits = q;
    if (*q == '0')
        q++;
    else if (is_digit(*q))
        while (is_digit(*q))
            q++;
    else
        return PROJ_FALLBACK;
    if (q - digits > 18)
        return PROJ_FALLBACK;
    if (*q == '.') {
        if (!is_digit(*++q))
            return PROJ_FALLBACK;
        while (is_digit(*q))
            q++;
    }
    if (*q == 'e' || *q == 'E')
        return PROJ_FALLBACK;
    P->p = q;
    return PROJ_OK;
}

static int proj_skip(struct proj *P, int depth);

/* A '{...}' or '[...]' at P->p; with `t`, an object is projected onto `t` into P->out. */
static int proj_container(struct proj *P, const struct pnode *t, int depth)
{
    bool object = *P->p == '{';
    char close = object ? '}' : ']';
    if (depth >= PROJ_DEPTH)
        return PROJ_FALLBACK;
    if (t && proj_put(P, "{", 1))
        return PROJ_FALLBACK;
    P->p++;
    proj_ws(P);
    if (*P->p == close) {
        P->p++;
        return t ? proj_put(P, "}", 1) : PROJ_OK;
    }
    bool emitted = false;
    for (;;) {
        const struct pnode *k = NULL;
        if (object) {
            const char *name;
            size_t len;
            bool plain;
            if (*P->p != '"' || proj_string(P, &name, &len, &plain))
                return PROJ_FALLBACK;
            if (t && !plain)
                return PROJ_FALLBACK; /* an escaped name might spell a member we read */
            for (size_t i = 0; t && i < t->nkids && !k; i++)
                if (t->kids[i].len == len && !memcmp(t->kids[i].name, name, len))
                    k = &t->kids[i];
            proj_ws(P);
            if (*P->p != ':')
                return PROJ_FALLBACK;
            P->p++;
            proj_ws(P);
            if (k && ((emitted && proj_put(P, ",", 1)) || proj_put(P, name - 1, len + 2) ||
                      proj_put(P, ":", 1)))
                return PROJ_FALLBACK;
        }
        int rc;
        if (k && !k->whole && *P->p == '{') {
            rc = proj_container(P, k, depth + 1);
        } else {
            const char *from = P->p;
            rc = proj_skip(P, depth + 1);
            if (!rc && k)
                rc = proj_put(P, from, (size_t)(P->p - from));
        }
        if (rc)
            return rc;
        emitted |= k != NULL;
        proj_ws(P);
        if (*P->p == close)
            break;
        if (*P->p != ',')
            return PROJ_FALLBACK;
        P->p++;
        proj_ws(P);
    }
    P->p++;
    return t ? proj_put(P, "}", 1) : PROJ_OK;
}

/* Checks and steps over one value. */
static int proj_skip(struct proj *P, int depth)
{
    const char *s;
    size_t len;
    bool plain;
    switch (*P->p) {
    case '{': case '[': return proj_container(P, NULL, depth);
    case '"': return proj_string(P, &s, &len, &plain);
    case 't': len = 4; s = "true"; break;
    case 'f': len = 5; s = "false"; break;
    case 'n': len = 4; s = "null"; break;
    default: return proj_number(P);
    }
    if (strncmp(P->p, s, len))
        return PROJ_FALLBACK;
    P->p += len;
    return PROJ_OK;
}

/* Cuts `body` down to the members the catalog reads, into E->key. PROJ_FALLBACK when the body
 * is outside the scanner's subset (parse it whole), a negative code when out of memory. */
static int project(struct evaluator *E, const char *body, size_t *len)
{
    size_t blen = strlen(body);
    if (blen + 3 > E->keycap) {
        char *k = realloc(E->key, blen + 3);
        if (!k)
            return -ENOMEM;
        E->key = k;
        E->keycap = blen + 3;
    }
    struct proj P = {.p = body, .out = E->key, .cap = E->keycap};
    proj_ws(&P);
    if (*P.p != '{' || proj_container(&P, E->reads, 0))
        return PROJ_FALLBACK;
    proj_ws(&P);
    if (*P.p)
        return PROJ_FALLBACK;
    E->key[P.n] = '\0';
    *len = P.n;
    return PROJ_OK;
}

/* FNV-1a over 8-byte words (then the tail bytes): only picks a slot, the key is compared. */
static uint64_t key_hash(const char *s, size_t n, unsigned roles)
{
    uint64_t h = 1469598103934665603ULL ^ roles;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, s + i, 8);
        h = (h ^ w) * 1099511628211ULL;
        h ^= h >> 29;
    }
    for (; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211ULL;
    return h;
}

static int by_rule(const void *a, const void *b, void *ctx)
{
    const struct rules_verdict *v = ctx;
    return strcmp(v[*(const size_t *)a].rule, v[*(const size_t *)b].rule);
}

static int put_verdict(struct reeval *R, sqlite3_stmt *st, long long host_id,
                       const struct rules_verdict *v)
{
    const char *sev = rules_severity_name(v->severity);
    if (st == R->ins) {
        sqlite3_bind_int64(st, 1, host_id);
        sqlite3_bind_text(st, 2, v->rule, -1, SQLITE_STATIC);
        sqlite3_bind_int(st, 3, v->pass);
        sqlite3_bind_text(st, 4, sev, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 5, v->reason, -1, SQLITE_STATIC);
        return step_done(R->s, st, "write verdict");
    }
    sqlite3_bind_int(st, 1, v->pass);
    sqlite3_bind_text(st, 2, sev, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, v->reason, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, host_id);
    sqlite3_bind_text(st, 5, v->rule, -1, SQLITE_STATIC);
    return step_done(R->s, st, "update verdict");
}

/* Notes a stored verdict of a rule the new evaluation does not produce. */
static int note_gone(struct reeval *R, const char *rule)
{
    if (R->ngone == R->gonecap) {
        size_t cap = R->gonecap ? 2 * R->gonecap : 16;
        char **g = realloc(R->gone, cap * sizeof(*g));
        if (!g)
            return store_fail(R->s, -ENOMEM, "re-evaluation: out of memory");
        R->gone = g;
        R->gonecap = cap;
    }
    if (!(R->gone[R->ngone] = strdup(rule)))
        return store_fail(R->s, -ENOMEM, "re-evaluation: out of memory");
    R->ngone++;
    return 0;
}

/*
 * Rewrites one host's verdicts where they differ from the stored ones (rows come sorted by
 * rule, the verdict table's key order); unchanged verdicts are not touched. The stored rows are
 * compared first and the writes made after the read is reset: writing to the verdict table while
 * a SELECT on it is still stepping lets that SELECT skip rows (SQLite leaves it undefined), and
 * a skipped row is a verdict silently lost.
 */
static int sync_verdicts(struct reeval *R, long long host_id, const struct rules_verdict *v,
                         size_t n)
{
    for (size_t i = 0; i < n; i++)
        R->order[i] = i;
    qsort_r(R->order, n, sizeof(*R->order), by_rule, (void *)v);
    memset(R->write, 0, n * sizeof(*R->write));
    R->ngone = 0;
    sqlite3_bind_int64(R->old, 1, host_id);
    size_t k = 0;
    int rc = 0, step;
    while (!rc && (step = sqlite3_step(R->old)) == SQLITE_ROW) {
        const char *rule = (const char *)sqlite3_column_text(R->old, 0);
        int cmp = 1;
        while (k < n && (cmp = strcmp(v[R->order[k]].rule, rule)) < 0)
            R->write[R->order[k++]] = R->ins;
        if (k < n && cmp == 0) {
            size_t i = R->order[k++];
            if (sqlite3_column_int(R->old, 1) != v[i].pass ||
                strcmp((const char *)sqlite3_column_text(R->old, 2),
                       rules_severity_name(v[i].severity)) ||
                strcmp((const char *)sqlite3_column_text(R->old, 3), v[i].reason))
                R->write[i] = R->upd;
        } else {
            rc = note_gone(R, rule); /* a rule that no longer applies (or no longer exists) */
        }
    }
    if (!rc && step != SQLITE_DONE)
        rc = store_sqlite_fail(R->s, "read verdicts");
    sqlite3_reset(R->old);
    while (k < n)
        R->write[R->order[k++]] = R->ins;
    for (size_t i = 0; !rc && i < R->ngone; i++) {
        sqlite3_bind_int64(R->del, 1, host_id);
        sqlite3_bind_text(R->del, 2, R->gone[i], -1, SQLITE_STATIC);
        rc = step_done(R->s, R->del, "delete verdict");
    }
    for (size_t i = 0; i < R->ngone; i++)
        free(R->gone[i]);
    R->ngone = 0;
    for (size_t i = 0; !rc && i < n; i++)
        if (R->write[i])
            rc = put_verdict(R, R->write[i], host_id, &v[i]);
    return rc;
}

static int evaluator_init(struct evaluator *E, const struct rules_catalog *c,
                          const struct pnode *reads)
{
    *E = (struct evaluator){.c = c, .reads = reads};
    E->memo = calloc(MEMO_SLOTS, sizeof(*E->memo));
    return E->memo ? 0 : -ENOMEM;
}

static void evaluator_release(struct evaluator *E)
{
    for (size_t i = 0; E->memo && i < MEMO_SLOTS; i++) {
        free(E->memo[i].key);
        free(E->memo[i].v);
    }
    free(E->memo);
    free(E->key);
}

/* Evaluates a parsed report (consumed) into out. */
static int evaluate(struct evaluator *E, const struct row *row, json_t *report,
                    struct result *out)
{
    struct collect col = {.out = out->v, .cap = rules_count(E->c)};
    int rc = rules_evaluate(E->c, report, row->roles, collect_verdict, &col, &out->blockers,
                            &out->warnings);
    out->legacy = rules_legacy_disabled(report);
    json_decref(report);
    out->n = col.n;
    return rc ? (rc < 0 ? rc : -EIO) : 0;
}

/*
 * Evaluates one stored body into out, through the projection and the memo; sets and returns
 * out->status. A body outside the scanner's subset is parsed whole and not memoised.
 */
static int eval_row(struct evaluator *E, const struct row *row, struct result *out)
{
    size_t keylen = 0;
    int rc = project(E, row->body, &keylen);
    if (rc < 0)
        return out->status = rc;
    json_t *report;
    if (rc == PROJ_FALLBACK) {
        report = json_loads(row->body, 0, NULL);
        if (!report || !json_is_object(report)) {
            json_decref(report);
            return out->status = 1;
        }
        return out->status = evaluate(E, row, report, out);
    }
    uint64_t h = key_hash(E->key, keylen, row->roles);
    struct memo *m = &E->memo[h % MEMO_SLOTS];
    if (m->key && m->hash == h && m->roles == row->roles && m->keylen == keylen &&
        !memcmp(m->key, E->key, keylen)) {
        memcpy(out->v, m->v, m->n * sizeof(*out->v));
        out->n = m->n;
        out->blockers = m->blockers;
        out->warnings = m->warnings;
        out->legacy = m->legacy;
        return out->status = 0;
    }
    /* the projection of a body in the subset is valid JSON; if not, the whole body decides */
    report = json_loadb(E->key, keylen, 0, NULL);
    if (!report)
        report = json_loads(row->body, 0, NULL);
    if (!report || !json_is_object(report)) {
        json_decref(report);
        return out->status = 1;
    }
    if ((rc = evaluate(E, row, report, out)))
        return out->status = rc;
    /* remember it (a failed allocation only means no memo for this one) */
    char *k = malloc(keylen + 1);
    struct rules_verdict *v = malloc((out->n ? out->n : 1) * sizeof(*v));
    if (!k || !v) {
        free(k);
        free(v);
        return out->status = 0;
    }
    memcpy(k, E->key, keylen + 1);
    memcpy(v, out->v, out->n * sizeof(*v));
    free(m->key);
    free(m->v);
    *m = (struct memo){.hash = h, .roles = row->roles, .key = k, .keylen = keylen,
                       .blockers = out->blockers, .warnings = out->warnings,
                       .legacy = out->legacy, .n = out->n, .v = v};
    return out->status = 0;
}

static int reeval_prepare(struct reeval *R)
{
    int rc;
    size_t n = rules_count(R->c) ? rules_count(R->c) : 1;
    R->order = calloc(n, sizeof(*R->order));
    R->write = calloc(n, sizeof(*R->write));
    R->one_res.v = calloc(n, sizeof(*R->one_res.v));
    if (!R->order || !R->write || !R->one_res.v || evaluator_init(&R->E, R->c, &R->reads))
        return store_fail(R->s, -ENOMEM, "re-evaluation: out of memory");
    const char *const *paths;
    size_t npaths = rules_reads(R->c, &paths);
    for (size_t i = 0; i < npaths; i++)
        if (pnode_add(&R->reads, paths[i]))
            return store_fail(R->s, -ENOMEM, "re-evaluation: out of memory");
    /* legacy_disabled is recomputed too: its meaning follows the engine, not the old row */
    npaths = rules_legacy_reads(&paths);
    for (size_t i = 0; i < npaths; i++)
        if (pnode_add(&R->reads, paths[i]))
            return store_fail(R->s, -ENOMEM, "re-evaluation: out of memory");
    if ((rc = store_prepare(R->s,
                            "SELECT r.host_id, h.roles, r.body FROM report r "
                            "JOIN host h ON h.id = r.host_id WHERE r.host_id > ? "
                            "ORDER BY r.host_id LIMIT ?", &R->chunk)) ||
        (rc = store_prepare(R->s,
                            "SELECT r.host_id, h.roles, r.body FROM report r "
                            "JOIN host h ON h.id = r.host_id WHERE r.host_id = ?", &R->one)) ||
        (rc = store_prepare(R->s, "SELECT rule, pass, severity, reason FROM verdict "
                                  "WHERE host_id = ? ORDER BY rule", &R->old)) ||
        (rc = store_prepare(R->s, "INSERT INTO verdict (host_id, rule, pass, severity, reason) "
                                  "VALUES (?, ?, ?, ?, ?)", &R->ins)) ||
        (rc = store_prepare(R->s, "UPDATE verdict SET pass = ?, severity = ?, reason = ? "
                                  "WHERE host_id = ? AND rule = ?", &R->upd)) ||
        (rc = store_prepare(R->s, "DELETE FROM verdict WHERE host_id = ? AND rule = ?",
                            &R->del)) ||
        (rc = store_prepare(R->s, "UPDATE report SET catalog_version = ?, blockers = ?, "
                                  "warnings = ?, legacy_disabled = ? WHERE host_id = ?", &R->summary)))
        return rc;
    return 0;
}

static void reeval_release(struct reeval *R)
{
    sqlite3_finalize(R->chunk);
    sqlite3_finalize(R->one);
    sqlite3_finalize(R->old);
    sqlite3_finalize(R->ins);
    sqlite3_finalize(R->upd);
    sqlite3_finalize(R->del);
    sqlite3_finalize(R->summary);
    free(R->order);
    free(R->write);
    free(R->gone);
    free(R->one_res.v);
    evaluator_release(&R->E);
    pnode_release(&R->reads);
}

/* Writes one evaluated row: changed verdicts and the summary columns. A body that does not
 * parse is counted in *bad and its verdicts left as they are. */
static int reeval_write(struct reeval *R, const struct row *row, const struct result *res,
                        long long *bad)
{
    if (res->status == 1) {
        (*bad)++;
        return 0;
    }
    if (res->status)
        return store_fail(R->s, res->status, "host %lld: evaluation failed (%d)", row->host_id,
                          res->status);
    int rc = sync_verdicts(R, row->host_id, res->v, res->n);
    if (rc)
        return rc;
    sqlite3_bind_text(R->summary, 1, rules_version(R->c), -1, SQLITE_STATIC);
    sqlite3_bind_int(R->summary, 2, res->blockers);
    sqlite3_bind_int(R->summary, 3, res->warnings);
    sqlite3_bind_int(R->summary, 4, res->legacy);
    sqlite3_bind_int64(R->summary, 5, row->host_id);
    return step_done(R->s, R->summary, "update report summary");
}

/* ---------------------------------------------------------------------------------------- */
/* The pipeline of ingest_reevaluate_all                                                      */

/*
 * SQLite stays on the calling thread (it reads a chunk of stored reports, then writes the
 * verdicts of the chunk before); a worker thread evaluates the chunk in between: two chunks in
 * flight, JOB_ROWS rows each, so memory stays at two chunks of bodies and verdicts whatever the
 * fleet size. Without a worker (pthread_create failed) the caller evaluates itself.
 */
#define JOB_ROWS 512

struct job {
    struct row rows[JOB_ROWS];
    struct result res[JOB_ROWS];
    size_t n;
    bool done;
};

struct worker {
    pthread_t thread;
    bool running;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct job *pending; /* handed to the worker, not yet taken */
    bool quit;
    struct evaluator E;
};

static void eval_job(struct evaluator *E, struct job *j)
{
    for (size_t i = 0; i < j->n; i++)
        eval_row(E, &j->rows[i], &j->res[i]);
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (!w->pending && !w->quit)
            pthread_cond_wait(&w->cv, &w->mu);
        if (w->quit)
            break;
        struct job *j = w->pending;
        w->pending = NULL;
        pthread_mutex_unlock(&w->mu);
        eval_job(&w->E, j);
        pthread_mutex_lock(&w->mu);
        j->done = true;
        pthread_cond_broadcast(&w->cv);
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

static void job_submit(struct worker *w, struct job *j)
{
    j->done = false;
    if (!w->running) {
        eval_job(&w->E, j);
        j->done = true;
        return;
    }
    pthread_mutex_lock(&w->mu);
    w->pending = j;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

static void job_wait(struct worker *w, struct job *j)
{
    if (!w->running)
        return;
    pthread_mutex_lock(&w->mu);
    while (!j->done)
        pthread_cond_wait(&w->cv, &w->mu);
    pthread_mutex_unlock(&w->mu);
}

static void job_clear(struct job *j)
{
    for (size_t i = 0; i < j->n; i++)
        free(j->rows[i].body);
    j->n = 0;
}

static struct job *job_new(size_t nrules)
{
    struct job *j = calloc(1, sizeof(*j));
    struct rules_verdict *v = calloc(JOB_ROWS * (nrules ? nrules : 1), sizeof(*v));
    if (!j || !v) {
        free(j);
        free(v);
        return NULL;
    }
    for (size_t i = 0; i < JOB_ROWS; i++)
        j->res[i].v = v + i * (nrules ? nrules : 1);
    j->done = true; /* not handed to the worker: nothing to wait for */
    return j;
}

static void job_free(struct job *j)
{
    if (!j)
        return;
    job_clear(j);
    free(j->res[0].v);
    free(j);
}

/* Reads the next chunk of stored reports after host id *last into j. */
static int job_read(struct reeval *R, struct job *j, long long *last)
{
    int step, rc = 0;
    sqlite3_bind_int64(R->chunk, 1, *last);
    sqlite3_bind_int(R->chunk, 2, JOB_ROWS);
    while (j->n < JOB_ROWS && (step = sqlite3_step(R->chunk)) == SQLITE_ROW) {
        struct row *row = &j->rows[j->n];
        row->host_id = sqlite3_column_int64(R->chunk, 0);
        row->roles = (unsigned)sqlite3_column_int64(R->chunk, 1);
        row->body = strdup((const char *)sqlite3_column_text(R->chunk, 2));
        if (!row->body) {
            rc = store_fail(R->s, -ENOMEM, "re-evaluation: out of memory");
            break;
        }
        j->n++;
    }
    if (!rc && j->n < JOB_ROWS && step != SQLITE_DONE)
        rc = store_sqlite_fail(R->s, "read reports");
    sqlite3_reset(R->chunk);
    if (j->n)
        *last = j->rows[j->n - 1].host_id;
    return rc;
}

int ingest_reevaluate_all(struct store *s, const struct rules_catalog *c,
                          void (*progress)(void *ctx, long long done, long long total),
                          void *ctx, long long *count, long long *bad)
{
    struct reeval R = {.s = s, .c = c};
    struct worker w = {.running = false};
    struct job *cur = job_new(rules_count(c)), *next = job_new(rules_count(c));
    long long total = 0, done = 0, last = 0;
    *count = *bad = 0;
    int rc = cur && next ? reeval_prepare(&R)
                         : store_fail(s, -ENOMEM, "re-evaluation: out of memory");
    if (!rc && evaluator_init(&w.E, c, &R.reads))
        rc = store_fail(s, -ENOMEM, "re-evaluation: out of memory");
    if (!rc && !pthread_mutex_init(&w.mu, NULL)) {
        if (!pthread_cond_init(&w.cv, NULL)) {
            w.running = !pthread_create(&w.thread, NULL, worker_main, &w);
            if (!w.running)
                pthread_cond_destroy(&w.cv);
        }
        if (!w.running)
            pthread_mutex_destroy(&w.mu);
    }
    /*
     * The whole re-evaluation is one transaction that rewrites every report row: with SQLite's
     * default 2 MB page cache, pages spill to the WAL mid-transaction and every later read must
     * look them up there (sqlite3WalFindFrame dominated the profile at 1,000,000 reports). A
     * 256 MiB cache for this command halves the time; the previous size is restored.
     */
    int cache_pages = 0;
    sqlite3_stmt *q;
    if (!rc && sqlite3_prepare_v2(store_db(s), "PRAGMA cache_size", -1, &q, NULL) == SQLITE_OK) {
        if (sqlite3_step(q) == SQLITE_ROW)
            cache_pages = sqlite3_column_int(q, 0);
        sqlite3_finalize(q);
        if (cache_pages)
            sqlite3_exec(store_db(s), "PRAGMA cache_size = -262144", NULL, NULL, NULL);
    }

    if (!rc && progress) {
        sqlite3_stmt *st;
        if (!(rc = store_prepare(s, "SELECT count(*) FROM report", &st))) {
            if (sqlite3_step(st) == SQLITE_ROW)
                total = sqlite3_column_int64(st, 0);
            sqlite3_finalize(st);
        }
    }
    if (!rc && !(rc = job_read(&R, cur, &last)) && cur->n)
        job_submit(&w, cur);
    while (!rc && cur->n) {
        rc = job_read(&R, next, &last); /* while the worker evaluates cur */
        job_wait(&w, cur);
        if (!rc && next->n)
            job_submit(&w, next);
        for (size_t i = 0; !rc && i < cur->n; i++)
            rc = reeval_write(&R, &cur->rows[i], &cur->res[i], bad);
        if (rc)
            break;
        done += (long long)cur->n;
        if (progress)
            progress(ctx, done, total);
        job_clear(cur);
        struct job *t = cur;
        cur = next;
        next = t;
    }
    if (w.running) {
        job_wait(&w, cur); /* after an error, the worker may still hold a chunk */
        job_wait(&w, next);
        pthread_mutex_lock(&w.mu);
        w.quit = true;
        pthread_cond_broadcast(&w.cv);
        pthread_mutex_unlock(&w.mu);
        pthread_join(w.thread, NULL);
        pthread_cond_destroy(&w.cv);
        pthread_mutex_destroy(&w.mu);
    }
    *count = done;
    evaluator_release(&w.E);
    reeval_release(&R);
    job_free(cur);
    job_free(next);
    if (cache_pages) {
        char sql[64];
        snprintf(sql, sizeof(sql), "PRAGMA cache_size = %d", cache_pages);
        sqlite3_exec(store_db(s), sql, NULL, NULL, NULL);
    }
    return rc;
}

int ingest_reevaluate_hosts(struct store *s, const struct rules_catalog *c,
                            const long long *ids, size_t n, long long *count, long long *bad)
{
    struct reeval R = {.s = s, .c = c};
    *count = *bad = 0;
    int rc = reeval_prepare(&R);
    for (size_t i = 0; !rc && i < n; i++) {
        sqlite3_bind_int64(R.one, 1, ids[i]);
        int step = sqlite3_step(R.one);
        if (step == SQLITE_ROW) {
            struct row row = {.host_id = sqlite3_column_int64(R.one, 0),
                              .roles = (unsigned)sqlite3_column_int64(R.one, 1),
                              .body = strdup((const char *)sqlite3_column_text(R.one, 2))};
            sqlite3_reset(R.one);
            if (!row.body) {
                rc = store_fail(s, -ENOMEM, "re-evaluation: out of memory");
                break;
            }
            eval_row(&R.E, &row, &R.one_res);
            rc = reeval_write(&R, &row, &R.one_res, bad);
            free(row.body);
            if (!rc)
                (*count)++;
        } else {
            sqlite3_reset(R.one);
            if (step != SQLITE_DONE)
                rc = store_sqlite_fail(s, "read report");
        }
    }
    reeval_release(&R);
    return rc;
}
