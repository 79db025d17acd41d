/*
 * report: the readiness report both sides share (wire format, schema/report.schema.json).
 *
 * The collector builds one from facts and serves it; the daemon parses and validates what it
 * pulled with exactly the same code. A report is at most REPORT_MAX_BYTES of JSON.
 */
#ifndef TLSGATE_REPORT_H
#define TLSGATE_REPORT_H

#include <jansson.h>
#include <stddef.h>

#define REPORT_SCHEMA "tlsgate.report/1"
#define REPORT_MAX_BYTES (256 * 1024)

/*
 * Checks a parsed report against the schema: required fields present with the right types,
 * "schema" equal to REPORT_SCHEMA, "host" a valid FQDN, "collected_at" RFC 3339 UTC. Unknown
 * fields are ignored. Returns 0, or -EINVAL with "FIELD.PATH: why" in err.
 */
int report_validate(json_t *report, char *err, size_t errsize);

/* The fact members only (os, hotfixes, schannel, winhttp, dotnet, sql, wsus, fips and the
 * optional extraction_warnings), checked exactly as report_validate checks them in a report;
 * the envelope (schema, host, collected_at, collector) is not looked at. For facts files. */
int report_validate_facts(json_t *facts, char *err, size_t errsize);

/* Parses `len` bytes (refusing more than REPORT_MAX_BYTES with -E2BIG) and validates them.
 * Returns 0 and a new reference in *out, or a negative code with the reason in err. */
int report_parse(const char *buf, size_t len, json_t **out, char *err, size_t errsize);

/* Parses an RFC 3339 UTC timestamp ("2026-11-25T12:00:00Z"); 0 and *t, or -EINVAL. */
int report_parse_time(const char *s, long long *t);
/* Formats epoch seconds as RFC 3339 UTC into buf (>= 21 bytes); returns buf, or NULL when
 * size is too small or the year is outside 0000..9999. */
const char *report_format_time(long long t, char *buf, size_t size);

#endif
