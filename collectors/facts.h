/*
 * facts: turns a registry view into the facts of a readiness report, and builds whole reports.
 *
 * The facts are the report's members other than schema/host/collected_at/collector: "os",
 * "hotfixes", "schannel", "winhttp", "dotnet", "sql", "wsus", "fips". An absent registry value
 * is JSON null, never 0 or "", so the rules can apply the OS default.
 */
#ifndef TLSGATE_FACTS_H
#define TLSGATE_FACTS_H

#include <jansson.h>
#include <stddef.h>

struct regview;

/* Reads every fact from the view. Returns 0 and a new JSON object in *facts, or a negative
 * code with the reason in err. */
int facts_extract(struct regview *v, json_t **facts, char *err, size_t errsize);

/*
 * Reads a JSON facts file (--facts): an object with the fact members above (a whole report is
 * accepted too: its schema/host/collected_at/collector members are ignored). Validated as a
 * report would be; at most REPORT_MAX_BYTES. Returns 0 and *facts, or -EINVAL / -E2BIG / -errno
 * with "FILE: FIELD: why" in err.
 */
int facts_load_file(const char *path, json_t **facts, char *err, size_t errsize);

/* Builds a full report: schema, host, collected_at (epoch seconds), collector {version,
 * source, interval} plus the facts (copied). Returns a new reference or NULL on ENOMEM. */
json_t *facts_build_report(json_t *facts, const char *host, long long collected_at,
                           const char *source, long interval);

#endif
