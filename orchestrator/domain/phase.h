/*
 * phase: the ordered rollout phases of a site (DESIGN, "Gate and phases") and the commands that
 * move a site through them (`tlsgate phase status|advance|rollback`).
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
 */
#ifndef TLSGATE_PHASE_H
#define TLSGATE_PHASE_H

#include <stdbool.h>

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

#endif
