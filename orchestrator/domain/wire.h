/*
 * wire: evidence from the wire (issue 18) — the owner of the tables of schema/007_wire.sql.
 *
 *   probe_port, probe_result   what `tlsgate probe` found on each server's TLS ports: per
 *                              (host, port, protocol) accepted / refused / untested, with the time
 *                              and the error. The prober itself is orchestrator/wire/.
 *   evidence, evidence_waiver  handshakes the servers logged (IIS crypt-protocol, SCHANNEL event
 *                              36880), per (server, client address, protocol) and UTC day, and
 *                              the per-address waivers.
 *
 * What it decides, for the gate (gate.c calls these; this module does not include gate.h):
 *   - legacy handshake seen: a handshake at SSL 3.0 / TLS 1.0 / TLS 1.1 (or SSL 2.0) logged
 *     against a server at or after `since` (now - config evidence_window) blocks that server's
 *     gate, one blocker per client address, unless the address has an active evidence waiver.
 *     An address that is no inventory host's collector address is an "uninventoried client".
 *   - restart pending: a site system whose fresh report says the legacy protocols are disabled
 *     while its last probe found one of them accepted: SCHANNEL reads its settings at boot, so
 *     the server has not restarted since the change. It fails the `enforce` exit. A protocol the
 *     prober could not test never counts either way.
 *   - not probed (fail closed): a site system with a TLS port whose fresh report says the legacy
 *     protocols are disabled, but no probe since now - probe max_age gave a verdict on one of
 *     them (never probed, could not test, too old). It fails the `enforce` exit too.
 *   - alarm: a legacy protocol accepted on the wire by a server of a site in `complete`.
 *
 * Functions return 0 or a negative errno-style code with the message on the store, or the first
 * non-zero value of a callback. Strings passed to callbacks live for the call only.
 */
#ifndef TLSGATE_WIRE_H
#define TLSGATE_WIRE_H

#include <stdbool.h>
#include <stddef.h>

struct store;

enum wire_proto { WIRE_SSL2, WIRE_SSL3, WIRE_TLS10, WIRE_TLS11, WIRE_TLS12, WIRE_TLS13 };
#define WIRE_PROTO_COUNT 6
/* Legacy: what the rollout disables (SSL 2.0 / 3.0, TLS 1.0, 1.1). */
#define WIRE_PROTO_LEGACY(p) ((p) <= WIRE_TLS11)
/* The stored word ("ssl3", "tls1.0", ...) and the label for people ("TLS 1.0"). */
const char *wire_proto_name(enum wire_proto p);
const char *wire_proto_label(enum wire_proto p);
/* Parses a stored word; returns 0 or -EINVAL. */
int wire_proto_parse(const char *name, enum wire_proto *p);
/* SQL list of the legacy words, for IN (...). */
#define WIRE_LEGACY_SQL "('ssl2', 'ssl3', 'tls1.0', 'tls1.1')"

enum wire_result { WIRE_ACCEPTED, WIRE_REFUSED, WIRE_UNTESTED };
const char *wire_result_name(enum wire_result r); /* "accepted", "refused", "untested" */

/* Default window of the legacy-handshake blocker (config evidence_window): 30 days. */
#define WIRE_WINDOW_DEFAULT (30L * 86400)
/* Evidence older than this many days before the newest import is pruned (bounded size). */
#define WIRE_RETENTION_DAYS 400

/* ---- probe ---------------------------------------------------------------------------- */

struct wire_port {
    int port;
    bool tds; /* SQL Server: TLS inside TDS PRELOGIN packets */
};
#define WIRE_PORTS_MAX 16

/* The TLS ports a host's roles serve: 443 for MP, DP, reporting point, SMS Provider (and the
 * other HTTPS site systems), 8531 for the SUP, 1433 (TDS) for the site database. */
size_t wire_ports_for_roles(unsigned roles, struct wire_port *out, size_t max);

/* One host to probe: its address (the host part of its collector address) and its ports (the
 * probe_port override, else those of its roles). */
struct wire_target {
    long long host_id;
    const char *name;
    const char *site;
    const char *address;
    unsigned roles;
    struct wire_port ports[WIRE_PORTS_MAX];
    size_t nports;
};
typedef int (*wire_target_fn)(const struct wire_target *t, void *arg);

/* The site systems (hosts with a server role) of every site (site NULL) or one, ordered by
 * name; or the one host `host` (any role, -ENOENT when unknown). -ENOENT for an unknown site. */
int wire_targets(struct store *s, const char *site, const char *host, wire_target_fn fn, void *arg);

/* Replaces the port override of `host_id` (n == 0: back to the ports of its roles). */
int wire_ports_set(struct store *s, long long host_id, const struct wire_port *ports, size_t n);

/* Forgets the stored outcomes of host `host_id` (before storing a new probe of it, so a port
 * it no longer serves keeps no old answer). */
int wire_probe_clear(struct store *s, long long host_id);

/* The oldest "newest probe" among the site systems that have a TLS port to probe, in *oldest
 * (0 when one was never probed; -1 when there is no such host): when a schedule that probes
 * every `interval` is due next (oldest + interval). */
int wire_probe_oldest(struct store *s, long long *oldest);

/* Stores one probe outcome (replacing the previous one of that host, port and protocol). */
int wire_probe_store(struct store *s, long long host_id, const struct wire_port *port,
                     enum wire_proto p, enum wire_result r, const char *error, long long at);

struct wire_probe_row {
    const char *host;
    const char *site;
    int port;
    bool tds;
    enum wire_proto proto;
    enum wire_result result;
    const char *error;
    long long at;
};
typedef int (*wire_probe_fn)(const struct wire_probe_row *r, void *arg);
/* The stored outcomes of one host (host non-NULL) or all, ordered by host, port, protocol. */
int wire_probe_each(struct store *s, const char *host, wire_probe_fn fn, void *arg);

/* ---- evidence ------------------------------------------------------------------------- */

/* `count` logged handshakes between `first` and `last` (one UTC day), added to their (server,
 * client, protocol, day) row; in the caller's transaction. `client` is an address, or
 * "unknown". */
int wire_evidence_add(struct store *s, const char *server, const char *client, enum wire_proto p,
                      long long first, long long last, long long count);

/* A collector's summary row (GET /v1/evidence, pull/evpull.c): `count` handshakes of one UTC
 * day as the collector counts them so far. Its counts only grow while the day is in its window,
 * so the row keeps the larger count rather than adding: pulling the same summary twice (or a
 * restarted collector reading its logs again) stores the same row. In the caller's
 * transaction. */
int wire_evidence_merge(struct store *s, const char *server, const char *client, enum wire_proto p,
                        long long first, long long last, long long count);

/* The inventory name of the server a log names: the host of that name, else the one whose
 * first label it is (a NetBIOS name, as s-computername and <Computer> may give), else the one
 * whose collector address it is (s-ip); else the text as given (it then gates nothing). */
int wire_server_resolve(struct store *s, const char *text, char *name, size_t size);
/* Deletes evidence of days before `before` (epoch seconds). */
int wire_evidence_prune(struct store *s, long long before);

struct wire_evidence_filter {
    const char *server; /* NULL: every server */
    bool legacy_only;
    bool uninventoried_only;
    long long since; /* only rows seen at or after (0: all) */
    long long now;   /* for the waivers */
};
struct wire_evidence_row {
    const char *server;
    const char *client;
    const char *client_host; /* the inventory host whose collector address it is, or NULL */
    enum wire_proto proto;
    long long first_seen, last_seen, count; /* over the days kept */
    bool waived;
};
typedef int (*wire_evidence_fn)(const struct wire_evidence_row *r, void *arg);
/* Rows aggregated over days, ordered by server, client, protocol. Streams. */
int wire_evidence_each(struct store *s, const struct wire_evidence_filter *f, wire_evidence_fn fn,
                       void *arg);

/* The administrator's address resolver (evidence_name): a client address that belongs to an
 * inventory host without being its collector address. wire_names_clear empties it (a file
 * replaces it whole); wire_name_add maps `address` to inventory host `host` (-ENOENT with the
 * message when no such host). In the caller's transaction. */
int wire_names_clear(struct store *s);
int wire_name_add(struct store *s, const char *address, const char *host);

/* Per-address waiver (audit is the caller's). */
int wire_waiver_set(struct store *s, const char *client, const char *reason, long long until_at,
                    long long now, const char *user);
int wire_waiver_clear(struct store *s, const char *client, bool *had);

/* ---- what the gate asks --------------------------------------------------------------- */

/* Rule ids of the blockers this module adds. */
#define WIRE_RULE_LEGACY_SEEN "legacy-handshake"
#define WIRE_RULE_RESTART "restart-pending"
#define WIRE_RULE_NOT_PROBED "not-probed"

/* Default of config probe.max_age: a probe older than this no longer shows what the wire
 * accepts (7 days). */
#define WIRE_PROBE_MAX_AGE_DEFAULT (7L * 86400)

/* The legacy-handshake blockers of server `server` (a name): one call per client address not
 * waived, ordered by address; *count gets their number. fn may be NULL (count only). `reason`
 * says address, inventory host or "uninventoried client", protocols, count and last time. */
typedef int (*wire_blocker_fn)(const char *client, const char *reason, void *arg);
int wire_legacy_blockers(struct store *s, const char *server, long long since, long long now,
                         long *count, wire_blocker_fn fn, void *arg);

/* The same per server of a site, counted in one query: fn(server host id, number of client
 * addresses) for each server of `site` with at least one; any order. */
typedef int (*wire_count_fn)(long long server_id, long count, void *arg);
int wire_legacy_counts(struct store *s, const char *site, long long since, long long now,
                       wire_count_fn fn, void *arg);

/*
 * Restart pending, as an SQL SELECT gate.c embeds (it owns its temp tables): the site systems
 * (roles meeting :mask, ROLE_SERVER_MASK) of site :site, not waived at :now, whose last probe
 * found a legacy protocol accepted and whose report is fresh (collected_at >= :cutoff) and says
 * the legacy protocols are disabled. With :any = 1 the report is not asked (the alarm of a site
 * in `complete`: any legacy protocol accepted on the wire). Columns: id, name, roles, reason.
 */
#define WIRE_RESTART_PENDING_SELECT                                                                \
    "SELECT h.id, h.name, h.roles,"                                                                \
    " CASE WHEN :any THEN 'the probe at ' ||"                                                      \
    " strftime('%Y-%m-%dT%H:%M:%SZ', max(p.at), 'unixepoch') || ' found ' ||"                      \
    " group_concat(DISTINCT p.protocol || ' on ' || p.port) || ' accepted after `complete`:"       \
    " disable them again, restart the server, then run `tlsgate probe ' || h.name || '`'"          \
    " ELSE 'registry says SSL 3.0, TLS 1.0 and 1.1 are off, but the probe at ' ||"                 \
    " strftime('%Y-%m-%dT%H:%M:%SZ', max(p.at), 'unixepoch') || ' found ' ||"                      \
    " group_concat(DISTINCT p.protocol || ' on ' || p.port) || ' accepted: restart the server"     \
    " (SCHANNEL reads its protocol settings at boot), then run `tlsgate probe ' || h.name ||"      \
    " '`' END AS reason"                                                                           \
    " FROM host h LEFT JOIN report r ON r.host_id = h.id"                                          \
    " JOIN probe_result p ON p.host_id = h.id AND p.result = 'accepted'"                           \
    "  AND p.protocol IN " WIRE_LEGACY_SQL " LEFT JOIN waiver w ON w.host_id = h.id"               \
    " WHERE h.site = :site AND h.roles <> 1 AND (h.roles & :mask) <> 0"                            \
    "  AND (:any OR (r.collected_at >= :cutoff AND r.legacy_disabled = 1))"                        \
    "  AND NOT (w.host_id IS NOT NULL AND (w.until_at IS NULL OR w.until_at > :now))"              \
    " GROUP BY h.id"

/* How many site systems of `site` the SELECT above gives (`mask` is ROLE_SERVER_MASK; `any`
 * as :any). */
int wire_restart_pending_count(struct store *s, const char *site, unsigned mask, long long cutoff,
                               long long now, bool any, long *count);

/* The alarm, host by host: for each site in `complete` (by code) and each of its site systems
 * the SELECT above gives with :any = 1 (by name), fn(site, host, reason). The daemon's probe
 * logs these. */
typedef int (*wire_alarm_fn)(const char *site, const char *host, const char *reason, void *arg);
int wire_alarms_each(struct store *s, unsigned mask, long long now, wire_alarm_fn fn, void *arg);

/*
 * Not probed, as an SQL SELECT gate.c embeds (fail closed at the `enforce` exit): the site
 * systems of :site that have a TLS port to probe (a role of WIRE_PORT_ROLES_SQL or a probe_port
 * override), not waived at :now, whose fresh report (collected_at >= :cutoff) says the legacy
 * protocols are disabled, and for which no probe since :probe_since gave a verdict (accepted or
 * refused) on a legacy protocol: never probed, only "could not test", or probed too long ago.
 * A server with a legacy protocol accepted is restart pending instead (above), and one whose
 * report is stale or says legacy on is listed for that: each server fails the exit once.
 * Columns: id, name, roles, reason (with the remedy: `tlsgate probe --site S`).
 */
#define WIRE_PORT_ROLES_SQL "176632" /* 443 / 8531 / 1433 roles (wire_ports_for_roles) */
#define WIRE_NOT_PROBED_SELECT                                                                     \
    "SELECT h.id, h.name, h.roles,"                                                                \
    " CASE WHEN pr.last IS NULL THEN 'never probed: nothing shows that the wire refuses SSL 3.0,"  \
    " TLS 1.0 and 1.1'"                                                                            \
    "  WHEN pr.last >= :probe_since THEN 'the probe at ' ||"                                       \
    " strftime('%Y-%m-%dT%H:%M:%SZ', pr.last, 'unixepoch') || ' could not test TLS 1.0 or 1.1 on"  \
    " any port (`tlsgate probe show ' || h.name || '`; its ports: `tlsgate probe ports`)'"         \
    "  ELSE 'the last probe, at ' || strftime('%Y-%m-%dT%H:%M:%SZ', pr.last, 'unixepoch') ||"      \
    " ', is older than the config''s probe max_age' END"                                           \
    " || ': run `tlsgate probe --site ' || h.site || '`' AS reason"                                \
    " FROM host h JOIN report r ON r.host_id = h.id LEFT JOIN waiver w ON w.host_id = h.id"        \
    " LEFT JOIN (SELECT host_id, max(at) AS last, max(CASE WHEN result <> 'untested' AND"          \
    "  protocol IN " WIRE_LEGACY_SQL " THEN at END) AS judged,"                                    \
    "  max(result = 'accepted' AND protocol IN " WIRE_LEGACY_SQL ") AS legacy"                     \
    "  FROM probe_result GROUP BY host_id) pr ON pr.host_id = h.id"                                \
    " WHERE h.site = :site AND h.roles <> 1 AND (h.roles & :mask) <> 0"                            \
    "  AND ((h.roles & " WIRE_PORT_ROLES_SQL ") <> 0"                                              \
    "   OR EXISTS (SELECT 1 FROM probe_port pp WHERE pp.host_id = h.id))"                          \
    "  AND r.collected_at >= :cutoff AND r.legacy_disabled = 1"                                    \
    "  AND coalesce(pr.legacy, 0) = 0 AND (pr.judged IS NULL OR pr.judged < :probe_since)"         \
    "  AND NOT (w.host_id IS NOT NULL AND (w.until_at IS NULL OR w.until_at > :now))"

/* How many site systems of `site` the SELECT above gives (`since` as :probe_since). */
int wire_not_probed_count(struct store *s, const char *site, unsigned mask, long long cutoff,
                          long long since, long long now, long *count);

/* The wire summary of one host: probed at all, a legacy protocol accepted (and which, where,
 * when, in `detail`). */
struct wire_summary {
    bool probed;
    bool legacy_accepted;
    long long at; /* the newest probe */
    char detail[256];
};
int wire_summary_get(struct store *s, long long host_id, struct wire_summary *w);

/* The wire summary of every probed host, in one query (the servers CSV and the status page):
 * fn(host id, newest probe, the legacy protocols accepted as "tls1.0;tls1.1" or "") ordered by
 * host id. */
typedef int (*wire_summary_fn)(long long host_id, long long at, const char *legacy_accepted,
                               void *arg);
int wire_summaries_each(struct store *s, wire_summary_fn fn, void *arg);

/* What those give, kept in memory for lookups by host id (sorted by id). */
struct wire_summaries {
    long long *id, *at;
    char (*accepted)[48];
    size_t n, cap;
};
int wire_summaries_load(struct store *s, struct wire_summaries *ws); /* -ENOMEM: no message */
/* The entry of `host_id`, or -1 when never probed. */
long wire_summaries_find(const struct wire_summaries *ws, long long host_id);
void wire_summaries_release(struct wire_summaries *ws);

#endif
