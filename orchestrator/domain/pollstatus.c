/*
 * pollstatus.c — the daemon's view of each host (poll table) read for people: kinds of failure,
 * the one-line "why unknown", the listing and its summary (pollstatus.h). Reads only; the poll
 * table is written by pull/writer.c.
 */
#include "pollstatus.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "hoststate.h"
#include "store.h"
#include "utc.h"

static const struct {
    const char *id, *label;
} kinds[PK_COUNT] = {
    [PK_NONE] = {"none", "no failure"},
    [PK_REFUSED] = {"refused", "connection refused"},
    [PK_UNREACHABLE] = {"unreachable", "collector unreachable"},
    [PK_DNS] = {"dns", "host name not resolved"},
    [PK_TIMEOUT] = {"timeout", "timeout"},
    [PK_TLS_WRONG_HOST] = {"tls_wrong_host", "certificate for another host"},
    [PK_TLS_EXPIRED] = {"tls_expired", "certificate expired"},
    [PK_TLS_UNTRUSTED] = {"tls_untrusted", "certificate not trusted"},
    [PK_TLS] = {"tls", "TLS handshake failed"},
    [PK_HTTP] = {"http", "HTTP error status"},
    [PK_TOO_BIG] = {"too_big", "report too big"},
    [PK_INVALID] = {"invalid", "invalid report"},
    [PK_WRONG_HOST] = {"wrong_host", "report for another host"},
    [PK_FUTURE] = {"future", "report from the future"},
    [PK_OLDER] = {"older", "older than stored report"},
    [PK_NOT_STORED] = {"not_stored", "report not stored"},
    [PK_CERT_REVOKED] = {"cert_revoked", "certificate revoked"},
    [PK_CERT_CHANGED] = {"cert_changed", "certificate changed"},
    [PK_OTHER] = {"other", "other error"},
};

const char *pollstatus_kind_id(enum pollstatus_kind k)
{
    return k >= 0 && k < PK_COUNT ? kinds[k].id : kinds[PK_OTHER].id;
}

const char *pollstatus_kind_label(enum pollstatus_kind k)
{
    return k >= 0 && k < PK_COUNT ? kinds[k].label : kinds[PK_OTHER].label;
}

static bool starts(const char *s, const char *prefix)
{
    return !strncmp(s, prefix, strlen(prefix));
}

enum pollstatus_kind pollstatus_classify(const char *e)
{
    if (!e)
        return PK_NONE;
    /* The labels the pull engine writes first (transfer.c), then the texts writer.c has always
     * written for a report it refuses. */
    for (int k = PK_REFUSED; k <= PK_TLS; k++)
        if (starts(e, kinds[k].label) && e[strlen(kinds[k].label)] == ':')
            return (enum pollstatus_kind)k;
    if (starts(e, "HTTP status "))
        return PK_HTTP;
    if (starts(e, "report over "))
        return PK_TOO_BIG;
    if (starts(e, "invalid report"))
        return PK_INVALID;
    if (starts(e, "report is for host "))
        return PK_WRONG_HOST;
    if (starts(e, "collected_at ") && strstr(e, "in the future"))
        return PK_FUTURE;
    if (starts(e, "older than stored report"))
        return PK_OLDER;
    if (starts(e, "report not stored"))
        return PK_NOT_STORED;
    /* pull/writer.c's refusals of a collector's certificate (issue 12). */
    if (starts(e, "certificate revoked:"))
        return PK_CERT_REVOKED;
    if (starts(e, "certificate changed:"))
        return PK_CERT_CHANGED;
    /* Rows written before the labels: libcurl's own words. */
    if (strstr(e, "Connection refused"))
        return PK_REFUSED;
    if (strstr(e, "Could not resolve"))
        return PK_DNS;
    if (strstr(e, "Failed to connect") || strstr(e, "Connection timed out"))
        return PK_UNREACHABLE;
    if (strstr(e, "timed out") || strstr(e, "Timeout"))
        return PK_TIMEOUT;
    if (strstr(e, "subject name") || strstr(e, "does not match"))
        return PK_TLS_WRONG_HOST;
    if (strstr(e, "certificate has expired"))
        return PK_TLS_EXPIRED;
    if (strstr(e, "certificate") || strstr(e, "SSL") || strstr(e, "TLS"))
        return PK_TLS;
    return PK_OTHER;
}

const char *pollstatus_kind_group(enum pollstatus_kind k)
{
    /* No default: a new kind is a build error here until it has its group. */
    switch (k) {
    case PK_REFUSED:
    case PK_UNREACHABLE:
    case PK_DNS: return "connect";
    case PK_TIMEOUT: return "timeout";
    case PK_TLS_WRONG_HOST:
    case PK_TLS_EXPIRED:
    case PK_TLS_UNTRUSTED:
    case PK_TLS: return "tls";
    case PK_HTTP: return "http";
    case PK_TOO_BIG:
    case PK_INVALID:
    case PK_WRONG_HOST:
    case PK_FUTURE:
    case PK_OLDER:
    case PK_NOT_STORED: return "report";
    case PK_CERT_REVOKED:
    case PK_CERT_CHANGED: return "identity";
    case PK_NONE:
    case PK_OTHER:
    case PK_COUNT: break;
    }
    return "other";
}

const char *pollstatus_reachable(const struct pollstatus_host *h)
{
    if (!h->last_attempt_at)
        return "";
    return h->failures > 0 ? "false" : "true";
}

void pollstatus_why_unknown(const struct pollstatus_host *h, char *buf, size_t size)
{
    assert(h->state && size > 0);
    if (strcmp(h->state, "unknown") != 0) {
        snprintf(buf, size, "%s", "");
        return;
    }
    char t[UTC_ISO8601_SIZE + 8];
    int n;
    if (h->report_at)
        n = snprintf(buf, size, "last report %s is older than stale_after",
                     utc_iso8601(h->report_at, t, sizeof(t)));
    else
        n = snprintf(buf, size, "never reported");
    if (n < 0 || (size_t)n >= size)
        return;
    if (h->failures > 0 && h->last_error) {
        char since[UTC_ISO8601_SIZE + 8];
        snprintf(buf + n, size - (size_t)n, "; pull failing (%d in a row, last %s): %s",
                 h->failures, utc_iso8601(h->last_attempt_at, since, sizeof(since)), h->last_error);
    }
}

#define POLLSTATUS_SQL(where)                                                                            \
    "SELECT h.id, h.name, h.site, " HOSTSTATE_SQL(                                                       \
        "r",                                                                                             \
        "?1") ", r.collected_at,"                                                                        \
              " p.last_attempt_at, p.last_success_at, p.next_at, coalesce(p.failures, 0), p.last_error," \
              " p.cert_not_after, p.cert_fingerprint, p.cert_issuer, p.cert_changed_at"                  \
              " FROM host h LEFT JOIN report r ON r.host_id = h.id"                                      \
              " LEFT JOIN poll p ON p.host_id = h.id " where

struct walk {
    pollstatus_fn fn;
    void *arg;
    long rows;
};

static int walk_row(sqlite3_stmt *st, void *arg)
{
    struct walk *w = arg;
    const char *error = (const char *)sqlite3_column_text(st, 9);
    struct pollstatus_host h = {
        .id = sqlite3_column_int64(st, 0),
        .name = (const char *)sqlite3_column_text(st, 1),
        .site = (const char *)sqlite3_column_text(st, 2),
        .state = (const char *)sqlite3_column_text(st, 3),
        .report_at = sqlite3_column_int64(st, 4),
        .last_attempt_at = sqlite3_column_int64(st, 5),
        .last_success_at = sqlite3_column_int64(st, 6),
        .next_at = sqlite3_column_int64(st, 7),
        .failures = sqlite3_column_int(st, 8),
        .last_error = error,
        .kind = pollstatus_classify(error),
        .cert_not_after = sqlite3_column_int64(st, 10),
        .cert_fingerprint = (const char *)sqlite3_column_text(st, 11),
        .cert_issuer = (const char *)sqlite3_column_text(st, 12),
        .cert_changed_at = sqlite3_column_int64(st, 13),
    };
    assert(h.name && h.site && h.state); /* NOT NULL columns; HOSTSTATE_SQL always names one */
    w->rows++;
    return w->fn(&h, w->arg);
}

int pollstatus_get(struct store *s, const char *name, long long cutoff, pollstatus_fn fn, void *arg)
{
    sqlite3_stmt *st;
    int rc = store_prepare(s, POLLSTATUS_SQL("WHERE h.name = ?2"), &st);
    if (rc)
        return rc;
    sqlite3_bind_int64(st, 1, cutoff);
    sqlite3_bind_text(st, 2, name, -1, SQLITE_TRANSIENT);
    struct walk w = {fn, arg, 0};
    rc = store_each(s, st, "read poll state", walk_row, &w);
    if (!rc && !w.rows)
        rc = store_fail(s, -ENOENT, "no such host: %s (see `tlsgate inventory list`)", name);
    return rc;
}

int pollstatus_each(struct store *s, const char *site, bool failing, long long cutoff,
                    pollstatus_fn fn, void *arg)
{
    sqlite3_stmt *st;
    int rc;
    if (site) {
        if ((rc = store_prepare(s, "SELECT 1 FROM site WHERE code = ?1", &st)))
            return rc;
        sqlite3_bind_text(st, 1, site, -1, SQLITE_TRANSIENT);
        int step = sqlite3_step(st);
        sqlite3_finalize(st);
        if (step == SQLITE_DONE)
            return store_fail(s, -ENOENT, "no such site: %s", site);
        if (step != SQLITE_ROW)
            return store_sqlite_fail(s, "look up the site");
    }
    static const char *const sql[2][2] = {
        {POLLSTATUS_SQL("ORDER BY h.site, h.name"),
         POLLSTATUS_SQL("WHERE p.failures > 0 ORDER BY h.site, h.name")},
        {POLLSTATUS_SQL("WHERE h.site = ?2 ORDER BY h.site, h.name"),
         POLLSTATUS_SQL("WHERE h.site = ?2 AND p.failures > 0 ORDER BY h.site, h.name")},
    };
    if ((rc = store_prepare(s, sql[site != NULL][failing], &st)))
        return rc;
    sqlite3_bind_int64(st, 1, cutoff);
    if (site)
        sqlite3_bind_text(st, 2, site, -1, SQLITE_TRANSIENT);
    struct walk w = {fn, arg, 0};
    return store_each(s, st, "read poll state", walk_row, &w);
}

void pollstatus_count(struct pollstatus_summary *sum, const struct pollstatus_host *h)
{
    assert(h->kind >= PK_NONE && h->kind < PK_COUNT);
    sum->hosts++;
    if (!h->last_attempt_at)
        sum->never++;
    else if (h->failures > 0) {
        sum->failing++;
        sum->by_kind[h->kind]++;
    } else
        sum->ok++;
}

size_t pollstatus_summary_kinds(const struct pollstatus_summary *sum,
                                enum pollstatus_kind out[PK_COUNT])
{
    size_t n = 0;
    for (int k = 0; k < PK_COUNT; k++)
        if (sum->by_kind[k])
            out[n++] = (enum pollstatus_kind)k;
    /* Largest first, then in the order of the kinds (insertion sort: at most PK_COUNT). */
    for (size_t i = 1; i < n; i++)
        for (size_t j = i; j > 0 && sum->by_kind[out[j]] > sum->by_kind[out[j - 1]]; j--) {
            enum pollstatus_kind t = out[j];
            out[j] = out[j - 1];
            out[j - 1] = t;
        }
    return n;
}

void pollstatus_summary_text(const struct pollstatus_summary *sum, char *buf, size_t size)
{
    assert(size > 0);
    enum pollstatus_kind k[PK_COUNT];
    size_t n = pollstatus_summary_kinds(sum, k), used = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < n && used < size; i++) {
        int w = snprintf(buf + used, size - used, "%s%ld%s: %s", i ? "; " : "", sum->by_kind[k[i]],
                         i                         ? ""
                         : sum->by_kind[k[i]] == 1 ? " host"
                                                   : " hosts",
                         pollstatus_kind_label(k[i]));
        if (w < 0)
            break;
        used += (size_t)w;
    }
}

struct site_counts {
    pollstatus_site_count_fn fn;
    void *arg;
};

static int site_count_row(sqlite3_stmt *st, void *arg)
{
    struct site_counts *c = arg;
    return c->fn((const char *)sqlite3_column_text(st, 0), (long)sqlite3_column_int64(st, 1),
                 c->arg);
}

int pollstatus_certs_expiring(struct store *s, long long before, pollstatus_site_count_fn fn,
                              void *arg)
{
    sqlite3_stmt *st;
    int rc = store_prepare(s,
                           "SELECT h.site, count(*) FROM poll p JOIN host h ON h.id = p.host_id"
                           " WHERE p.cert_not_after > 0 AND p.cert_not_after < ?1"
                           " GROUP BY h.site ORDER BY h.site",
                           &st);
    if (rc)
        return rc;
    sqlite3_bind_int64(st, 1, before);
    struct site_counts c = {fn, arg};
    return store_each(s, st, "count expiring collector certificates", site_count_row, &c);
}
