/*
 * phase: the ordered rollout phases of a site (DESIGN, "Gate and phases") and the one move that
 * changes a site's phase. The command is `tlsgate phase status|advance|rollback`
 * (cli/phasecmd.c); the exit criteria are counted by the gate (gate.h), which depends on this
 * header and not the other way round.
 *
 *   inventory -> clients -> servers -> enforce -> complete
 *
 * Leaving a phase requires its exit criterion:
 *   inventory  every host of the site has a fresh report (no host is unknown)
 *   clients    every client (ROLE_CLIENT) is ready or under an unexpired waiver
 *   servers    every site system (ROLE_SERVER_MASK) and console is ready or waived
 *   enforce    every site system reports the legacy protocols disabled
 * A site moves one step at a time; the check and the change happen in one BEGIN IMMEDIATE
 * transaction, so no report or waiver can slip in between.
 *
 * Functions that touch the store return 0 or a negative errno-style code with the message on the
 * store (store_errmsg).
 */
#ifndef TLSGATE_PHASE_H
#define TLSGATE_PHASE_H

#include <stdbool.h>

struct store;

enum phase_id {
    PHASE_INVENTORY,
    PHASE_CLIENTS,
    PHASE_SERVERS,
    PHASE_ENFORCE,
    PHASE_COMPLETE,
};
#define PHASE_COUNT 5

/* "inventory", "clients", ... as stored in site.phase. */
const char *phase_name(enum phase_id p);

/* Parses a stored phase name; returns 0, or -EINVAL for anything else. */
int phase_parse(const char *name, enum phase_id *p);

/* What the exit criterion of phase p counts, singular or plural for n ("412 clients: ..."), and
 * the criterion in words ("every client is ready or waived"). */
const char *phase_criterion_noun(enum phase_id p, long n);
const char *phase_criterion_text(enum phase_id p);

/*
 * Moves `site` one step, from `from` to `to`, in the caller's (IMMEDIATE) transaction: sets
 * site.phase, entered_at = now, entered_by = user, and appends the phase_history row with
 * `reason` (NULL: none). Entering enforce from servers withdraws every server's reenable_legacy
 * request; rolling back out of enforce sets it. The caller has checked the exit criterion.
 */
int phase_move(struct store *s, const char *site, enum phase_id from, enum phase_id to,
               long long now, const char *user, const char *reason);

#endif
