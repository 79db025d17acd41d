/*
 * ingest_reads: what the commands read back of the `report` and `verdict` rows that ingest
 * (ingest.h) writes — a host's stored report, its verdicts, and the failing verdicts of a site
 * grouped by rule. Reading only: ingest.c stays the one writer of both tables.
 *
 * Functions read in the caller's transaction (or autocommit) and return 0, a callback's non-zero
 * value (which stops the walk), or a negative code with the message on the store. Strings passed
 * to callbacks live only for the duration of the call.
 */
#ifndef TLSGATE_INGEST_READS_H
#define TLSGATE_INGEST_READS_H

#include <stdbool.h>

struct store;

/* A host's stored report. The strings are malloc'd (ingest_stored_release frees them). */
struct ingest_stored {
    bool reported; /* false: no report stored; nothing else is set */
    long long collected_at, received_at;
    char *catalog_version;
    int blockers, warnings, legacy_disabled;
    char *body; /* the report as stored (JSON text) */
};
int ingest_stored_get(struct store *s, long long host_id, struct ingest_stored *r);
void ingest_stored_release(struct ingest_stored *r);

/* One stored verdict. */
struct ingest_verdict_row {
    const char *rule;
    bool pass;
    const char *severity; /* "blocker" or "warning" */
    const char *reason;
};
typedef int (*ingest_verdict_fn)(const struct ingest_verdict_row *v, void *arg);

enum ingest_verdicts_which {
    INGEST_VERDICTS_ALL,             /* failing first, blockers before warnings, then by rule */
    INGEST_VERDICTS_FAILED_BLOCKERS, /* only failed blockers, by rule */
};
int ingest_verdicts_each(struct store *s, long long host_id, enum ingest_verdicts_which which,
                         ingest_verdict_fn fn, void *arg);

/* One failing rule of `rules blockers`: how many hosts fail it, and of them how many are
 * clients, site systems (ROLE_SERVER_MASK) and consoles. */
struct ingest_rule_failures {
    const char *rule;
    const char *severity;
    long long hosts, clients, site_systems, consoles;
};
typedef int (*ingest_rule_failures_fn)(const struct ingest_rule_failures *f, void *arg);

/* The failed verdicts of every host (site NULL) or of one site's, grouped by rule: blockers
 * first, then by host count (largest first), then by rule id. */
int ingest_failures_by_rule(struct store *s, const char *site, ingest_rule_failures_fn fn,
                            void *arg);

#endif
