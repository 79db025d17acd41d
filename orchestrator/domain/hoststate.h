/*
 * hoststate: the one definition of a host's readiness state (DESIGN, "Readiness").
 *
 *   unknown    no stored report, or its collected_at is older than now - stale_after
 *   not_ready  the last report has at least one failed blocker verdict
 *   ready      otherwise
 *
 * The state is derived, never stored: every query that needs it uses HOSTSTATE_SQL with the
 * report table joined (LEFT JOIN report r ON r.host_id = h.id) and the stale cutoff
 * (now - stale_after, from utc_now() and config.stale_after) bound where `cutoff` stands.
 * A waiver does not change the state; it changes whether the host blocks (gate.h).
 */
#ifndef TLSGATE_HOSTSTATE_H
#define TLSGATE_HOSTSTATE_H

#define HOSTSTATE_SQL(r, cutoff)                                                                   \
    "(CASE WHEN " r ".host_id IS NULL OR " r ".collected_at < " cutoff " THEN 'unknown' "          \
    "WHEN " r ".blockers > 0 THEN 'not_ready' ELSE 'ready' END)"

#endif
