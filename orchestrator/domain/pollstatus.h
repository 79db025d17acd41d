/*
 * pollstatus: why a host is unknown or stale, from the daemon's side — the `poll` table (written
 * by pull/writer.c) read next to the host and its report, for `host show`, `poll status`, the
 * `poll` and `hosts` CSV views and the reasons of the gate and phase refusals.
 *
 * A failure is recorded as text (poll.last_error). The pull engine opens every failure it
 * detects with the label of its kind ("connection refused: https://h/v1/readiness via ...");
 * pollstatus_classify reads the kind back from that label (and from the older unlabelled texts
 * by their libcurl wording), so failures are counted by kind without parsing libcurl's words.
 * It is the only reader of poll.last_error's kind: the pull-failures view and the status page
 * (history.c, pollstatus_kind_group) and the metrics' outcome labels (metrics.c) map its kinds.
 * The expiry of the collector's certificate is recorded at each handshake (poll.cert_not_after,
 * schema/005_ops.sql).
 */
#ifndef TLSGATE_POLLSTATUS_H
#define TLSGATE_POLLSTATUS_H

#include <stdbool.h>
#include <stddef.h>

struct store;

enum pollstatus_kind {
    PK_NONE = 0,       /* no failure recorded */
    PK_REFUSED,        /* TCP connection refused: nothing listens on the collector's port */
    PK_UNREACHABLE,    /* no TCP connection within connect_timeout (firewall, host down) */
    PK_DNS,            /* the host name (or CONNECT_TO address) did not resolve */
    PK_TIMEOUT,        /* connected, but no whole answer within timeout */
    PK_TLS_WRONG_HOST, /* the collector's certificate is for another host name */
    PK_TLS_EXPIRED,    /* a certificate expired (or is not yet valid) */
    PK_TLS_UNTRUSTED,  /* the certificate is not from the fleet CA */
    PK_TLS,            /* any other TLS handshake failure */
    PK_HTTP,           /* an HTTP status other than 200 */
    PK_TOO_BIG,        /* the report is over 256 KiB */
    PK_INVALID,        /* the report fails validation (the member at fault is in the text) */
    PK_WRONG_HOST,     /* the report is for another host */
    PK_FUTURE,         /* collected_at too far in the future */
    PK_OLDER,          /* older than the stored report */
    PK_NOT_STORED,     /* accepted but not stored (the reason follows) */
    PK_CERT_REVOKED,   /* the collector presented a revoked certificate: report refused */
    PK_CERT_CHANGED,   /* another certificate, not through enrollment: report held */
    PK_OTHER,          /* anything else */
    PK_COUNT
};

/* The kind's id (JSON, CSV: "refused", "tls_expired", ...) and its label for people
 * ("connection refused", "certificate expired", ...). The pull engine writes the label as the
 * first words of poll.last_error for the transfer failures (PK_REFUSED .. PK_TLS). */
const char *pollstatus_kind_id(enum pollstatus_kind k);
const char *pollstatus_kind_label(enum pollstatus_kind k);

/* The kind of a recorded poll.last_error (NULL: PK_NONE). */
enum pollstatus_kind pollstatus_classify(const char *error);

/* The coarse group of a kind for the `pull-failures` view and the status page: "connect"
 * (refused, unreachable, name not resolved), "tls", "timeout", "http", "report" (the collector
 * answered with a report that was refused or not stored) or "other" (PK_NONE, PK_OTHER). */
const char *pollstatus_kind_group(enum pollstatus_kind k);

/* One host as the daemon sees it. Strings are borrowed for the callback's duration. */
struct pollstatus_host {
    long long id;
    const char *name, *site;
    const char *state;         /* ready, not_ready, unknown (hoststate.h) */
    long long report_at;       /* collected_at of the stored report; 0: never reported */
    long long last_attempt_at; /* 0: never attempted */
    long long last_success_at; /* 0: never succeeded */
    long long next_at;         /* 0: not scheduled yet */
    int failures;              /* failed attempts in a row */
    long long cert_not_after;  /* the collector certificate's expiry, as last seen; 0 unknown */
    /* Its SHA-256 fingerprint and issuer DN (NULL: never seen), and when a certificate other
     * than the previous one came not through enrollment (0: none, or accepted since). */
    const char *cert_fingerprint, *cert_issuer;
    long long cert_changed_at;
    const char *last_error; /* NULL when the last attempt succeeded (or none was made) */
    enum pollstatus_kind kind;
};

/* "true" when the last attempt stored a report, "false" when it failed, "" never attempted
 * (the CSV's `reachable`). */
const char *pollstatus_reachable(const struct pollstatus_host *h);

/* Why the host is unknown, in one line: "never reported", "last report T is older than
 * stale_after", followed by "; pull failing (N in a row, last T): ERROR" when the daemon fails to
 * pull it (gate.c's refusals say the same). "" for a host that is not unknown. */
void pollstatus_why_unknown(const struct pollstatus_host *h, char *buf, size_t size);

typedef int (*pollstatus_fn)(const struct pollstatus_host *h, void *arg);

/* One host by name (case-insensitive): 0 after fn ran, -ENOENT (message on the store). `cutoff`
 * is now - stale_after. */
int pollstatus_get(struct store *s, const char *name, long long cutoff, pollstatus_fn fn,
                   void *arg);

/* Every host (site NULL) or those of one site, in (site, name) order, streaming; with
 * `failing`, only hosts whose last attempt failed. -ENOENT when `site` does not exist. */
int pollstatus_each(struct store *s, const char *site, bool failing, long long cutoff,
                    pollstatus_fn fn, void *arg);

/* Per site, the hosts whose collector certificate (as the last handshake showed it) expires
 * before `before` (expired ones included; unknown expiry not counted): fn(site, count, arg) for
 * every site that has one, in site order. */
typedef int (*pollstatus_site_count_fn)(const char *site, long count, void *arg);
int pollstatus_certs_expiring(struct store *s, long long before, pollstatus_site_count_fn fn,
                              void *arg);

/* Counts for the summary of `poll status`. */
struct pollstatus_summary {
    long hosts, ok, failing, never;
    long by_kind[PK_COUNT];
};
void pollstatus_count(struct pollstatus_summary *sum, const struct pollstatus_host *h);
/* "412 hosts: connection refused; 37: certificate expired" (kinds by count, largest first);
 * "" when nothing fails. */
void pollstatus_summary_text(const struct pollstatus_summary *sum, char *buf, size_t size);
/* The kinds of the summary in that order; returns how many (<= PK_COUNT) went into `out`. */
size_t pollstatus_summary_kinds(const struct pollstatus_summary *sum,
                                enum pollstatus_kind out[PK_COUNT]);

#endif
