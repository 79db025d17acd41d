/*
 * sweep: one probe of many hosts, as `tlsgate probe` (cli/probecmd.c) and the daemon's own
 * schedule (probesched.h) both run it: plan the jobs of each target (domain/wire.h
 * wire_targets: one job per port and protocol), run them (probe.h), store each host's outcomes
 * (wire_probe_clear, then wire_probe_store, in the caller's transaction).
 *
 * The jobs of one host are contiguous, so a caller may run and store them in slices of whole
 * hosts (the daemon does, so a stop request waits for one slice, not a whole round).
 *
 * Errors follow store.h: 0 or -errno; store errors leave their message on the store, running
 * out of memory is -ENOMEM with no message.
 */
#ifndef TLSGATE_SWEEP_H
#define TLSGATE_SWEEP_H

#include <stdbool.h>
#include <stddef.h>

#include "probe.h"

struct store;

/* The protocols a sweep tries on each port (SSL 2.0 is never offered). */
extern const enum wire_proto sweep_protocols[];
#define SWEEP_NPROTOCOLS 5

struct sweep {
    struct probe_job *jobs; /* n jobs, those of one host contiguous */
    long long *host_ids;    /* host of each job */
    size_t n, cap;
    long hosts;
};

/* Adds the jobs of the site systems of `site` (NULL: every site) or, with host non-NULL, of
 * that one host (-ENOENT with the message on the store when unknown). */
int sweep_plan(struct store *s, const char *site, const char *host, struct sweep *w);

/* The end of the slice of whole hosts starting at job `from` with at most `max` jobs (at least
 * one host, whatever its number of jobs). */
size_t sweep_slice_end(const struct sweep *w, size_t from, size_t max);

/* Stores jobs [from, to) (whole hosts), each host's old outcomes forgotten first, in the
 * caller's transaction; adds the legacy protocols accepted and the untested outcomes to the
 * counters when not NULL. */
int sweep_store(struct store *s, const struct sweep *w, size_t from, size_t to,
                long *accepted_legacy, long *untested);

void sweep_release(struct sweep *w);

#endif
