/*
 * gate: may a server disable SSL 3.0 / TLS 1.0 / TLS 1.1 now? (DESIGN, "Gate and phases")
 *
 * A server is a host with any role in ROLE_SERVER_MASK. Its dependents are
 *   - the hosts of its site whose roles meet the dependent roles of any inv_derived[] rule
 *     matching one of the server's roles (the server itself excluded), and
 *   - the hosts of explicit edges (table `edge`) whose server it is, in any site;
 * each dependent counted once. A dependent *blocks* when its state (hoststate.h) is not
 * `ready` and it has no active waiver. A waiver is active while until_at is NULL or later than
 * now; an expired one stops counting by itself, nothing needs to delete it.
 *
 * The gate is open when
 *   - the site is in `enforce` (or `complete`, which only follows a passed `enforce`),
 *   - the server itself is `ready` (its own waiver does not count: a server that cannot talk
 *     TLS 1.2 must not drop the old protocols), and
 *   - no dependent blocks.
 * Outside `enforce` the same computation answers "what if": who would be orphaned today.
 *
 * Orphan risk: the server's last report says legacy protocols are disabled (report
 * legacy_disabled = 1) while the gate's host conditions fail (the server is not ready or a
 * dependent blocks), whatever the phase. This catches both directions: a server that disabled
 * them too early, and a dependent that went not-ready or stale after its server disabled them.
 *
 * The computation is aggregate: per site, hosts are counted per distinct role mask by state and
 * waiver, and every server's counts follow from those few rows plus its explicit edges, so a
 * 1,000,000-host database is decided without enumerating dependents. Only the blocker listing
 * (gate_blockers) walks hosts, and it streams.
 *
 * The same functions feed `gate check/list`, `phase status`, the CSV export (servers, blockers,
 * summary views) and the daemon's orphan-risk log line, so they all agree.
 *
 * All functions return 0, a negative errno-style code with the message on the store
 * (store_errmsg), or the first non-zero value a callback returned (which stops the walk).
 * Strings in the structs passed to callbacks live only for the duration of the call.
 */
#ifndef TLSGATE_GATE_H
#define TLSGATE_GATE_H

#include <stdbool.h>

#include "phase.h"

struct config;
struct store;

/* The one definition of an active waiver, for queries that join `waiver w` themselves (e.g. the
 * hosts view of the export); `now` is an SQL expression or parameter for utc_now(). */
#define GATE_WAIVER_ACTIVE_SQL(w, now)                                                             \
    "(" w ".host_id IS NOT NULL AND (" w ".until_at IS NULL OR " w ".until_at > " now "))"

/* The moment a decision is taken for: now (utc_now()) and the stale cutoff. */
struct gate_time {
    long long now;
    long long cutoff;         /* now - stale_after: an older report makes its host unknown */
    long long evidence_since; /* now - evidence_window: a legacy handshake logged since then
                                 blocks its server (wire.h); gate_time_make sets the default
                                 window, a command sets the configured one */
    long long probe_since;    /* now - probe max_age: a site system without a probe verdict on
                                 the legacy protocols since then fails the `enforce` exit
                                 (wire.h, WIRE_NOT_PROBED_SELECT); default 7 days */
};
/* The default windows (30 days of evidence, 7 days of probe age): tests and fixtures. */
struct gate_time gate_time_make(long long now, long stale_after);
/* The windows of the config (stale_after, evidence_window, probe.max_age): the one place they
 * are resolved. Every command, the metrics refresh, the daemon's round and its status page ask
 * it, so they all judge with the same settings. */
struct gate_time gate_time_config(long long now, const struct config *c);

enum gate_host_state { GATE_UNKNOWN, GATE_NOT_READY, GATE_READY };
/* "unknown", "not_ready", "ready" (the words of HOSTSTATE_SQL and the CSV contract). */
const char *gate_state_name(enum gate_host_state st);
/* Parses a HOSTSTATE_SQL word; anything else is GATE_UNKNOWN. */
enum gate_host_state gate_state_parse(const char *word);

/* The dependent roles of a server with `roles` through the derived rules (0: none). */
unsigned gate_dependent_roles(unsigned roles);

/* One site: its phase and the counts of the summary view. */
struct gate_site {
    const char *code;
    enum phase_id phase;
    long long entered_at;
    const char *entered_by;
    long hosts;
    long ready, not_ready, unknown; /* by state; a waived host is counted in its state too */
    long waived;                    /* hosts with an active waiver */
    long servers;                   /* hosts with a ROLE_SERVER_MASK role */
    long servers_gate_open;
    long orphan_risk;     /* servers flagged as orphan risk */
    long wire_alarm;      /* complete only: site systems whose last probe found a legacy protocol
                           accepted (wire.h) */
    long wire_not_probed; /* enforce only: site systems held as not probed (never, could not
                             test, or older than probe.max_age; wire.h), in exit_blocking */
    long exit_blocking;   /* hosts failing the exit criterion of `phase` (phase.h;
                                       0 in complete) */
};

/* One server and its gate. */
struct gate_server {
    long long id;
    const char *name;
    const char *site;
    unsigned roles;
    enum phase_id phase;        /* its site's */
    enum gate_host_state state; /* its own */
    bool waived;                /* has an active waiver (shown; does not make its gate open) */
    bool legacy_disabled;       /* its last report says SSL 3.0 / TLS 1.0 / 1.1 are off */
    bool reenable_legacy;       /* asked to re-enable them by a rollback out of enforce */
    long dependents;            /* distinct hosts that depend on it */
    long blocking;              /* dependents not ready and not waived */
    long waived_dependents;     /* dependents under an active waiver (any state) */
    bool open;                  /* the gate */
    bool orphan_risk;
};

/* Why one dependent blocks one server: one row per failed blocker verdict of the dependent. */
struct gate_blocker {
    const char *site; /* the server's */
    const char *server;
    const char *dependent;
    enum gate_host_state state; /* the dependent's: GATE_NOT_READY or GATE_UNKNOWN */
    const char *rule;           /* verdict rule id, or one of GATE_RULE_* below */
    const char *reason;         /* verdict reason, or what makes it unknown */
};
/* Rule ids of blockers that are not verdicts. */
#define GATE_RULE_NO_REPORT "no-report" /* unknown: never reported */
#define GATE_RULE_STALE "stale-report"  /* unknown: last report older than stale_after */
#define GATE_RULE_NOT_READY "not-ready" /* report counts blockers but no verdict is stored */

typedef int (*gate_site_fn)(const struct gate_site *site, void *arg);
typedef int (*gate_server_fn)(const struct gate_server *server, void *arg);
typedef int (*gate_blocker_fn)(const struct gate_blocker *blocker, void *arg);

/* Every site (site NULL, ordered by code) or one site; -ENOENT when `site` does not exist. */
int gate_sites(struct store *s, const char *site, const struct gate_time *t, gate_site_fn fn,
               void *arg);

/* Every server of every site (site NULL) or of one site, ordered by site then name;
 * -ENOENT when `site` does not exist. The daemon logs orphan risk from here. */
int gate_servers(struct store *s, const char *site, const struct gate_time *t, gate_server_fn fn,
                 void *arg);

/* One server by name (case-insensitive): -ENOENT no such host, -EINVAL the host has no server
 * role (message names it). */
int gate_server_get(struct store *s, const char *name, const struct gate_time *t, gate_server_fn fn,
                    void *arg);

/* The blocking dependents of every server of every site (site NULL), of one site, or of one
 * server (server non-NULL; site is then ignored), ordered by site, server, dependent, rule.
 * Streams: memory does not grow with the number of rows. */
int gate_blockers(struct store *s, const char *site, const char *server, const struct gate_time *t,
                  gate_blocker_fn fn, void *arg);

/*
 * What blocks, grouped by rule and counted, for `gate check` and `phase advance`: one call per
 * group with host == NULL (rule, hosts = the group's host count), then one call per host of
 * the group, at most `limit` of them (0: all), ordered by name. Groups come largest first.
 * A host fails once per failed blocker verdict, so it may appear in several groups.
 */
struct gate_failing {
    const char *rule;
    long hosts;       /* hosts in the group */
    const char *host; /* NULL on the group's own call */
    enum gate_host_state state;
    const char *reason; /* the host's; on the group's call, one of the group's */
};
typedef int (*gate_failing_fn)(const struct gate_failing *f, void *arg);

/* The dependents of `server` that block its gate. */
int gate_failing_for_server(struct store *s, const struct gate_server *server,
                            const struct gate_time *t, long limit, gate_failing_fn fn, void *arg);

/* The hosts of `site` that fail the exit criterion of phase `p` (phase.h). */
int gate_failing_for_phase(struct store *s, const char *site, enum phase_id p,
                           const struct gate_time *t, long limit, gate_failing_fn fn, void *arg);

/*
 * `phase advance`'s question in one pass over the site's hosts: calls site_fn once with the
 * site's code, phase, entered_at, entered_by, waived and exit_blocking (the other counts are
 * 0), the same figures gate_sites gives; then, when site_fn returned 0, exit_blocking > 0 and
 * failing_fn is not NULL, the failing hosts as gate_failing_for_phase lists them for the site's
 * phase. In inventory, clients and servers the count is taken from the very rows that are
 * listed; in enforce and complete it is gate_sites' count. A nonzero return of a callback ends
 * the walk and is returned. -ENOENT when `site` does not exist.
 */
int gate_phase_exit(struct store *s, const char *site, const struct gate_time *t, long limit,
                    gate_site_fn site_fn, gate_failing_fn failing_fn, void *arg);

/* The dependents of `server` under an active waiver (they do not block; shown as waived),
 * ordered by name, at most `limit` (0: all). */
struct gate_waived {
    const char *host;
    enum gate_host_state state;
    const char *reason; /* the waiver's */
    long long until_at; /* 0: until unwaived */
};
typedef int (*gate_waived_fn)(const struct gate_waived *w, void *arg);
int gate_waived_for_server(struct store *s, const struct gate_server *server,
                           const struct gate_time *t, long limit, gate_waived_fn fn, void *arg);

/* Rule id of an `enforce` exit failure: the server's report says legacy protocols are on. */
#define GATE_RULE_LEGACY_ENABLED "legacy-enabled"
/* The wire's blockers (wire.h): a legacy handshake logged against the server blocks its gate
 * (WIRE_RULE_LEGACY_SEEN, one "host" per client address); a server whose registry says legacy
 * off while the probe found it accepted fails the enforce exit (WIRE_RULE_RESTART). */

#endif
