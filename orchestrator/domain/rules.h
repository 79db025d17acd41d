/*
 * rules: the readiness rule catalog (schema/rules.json, DESIGN "Readiness") and the engine that
 * evaluates a report against it.
 *
 * A catalog is data: {"catalog": "tlsgate-rules", "version": "YYYY.MM.N", "rules": [...]}.
 * rules_load validates all of it up front (operators, fact paths, roles, severities, remedies,
 * duplicate ids) so evaluation never meets a malformed rule; every load error names the rule:
 *   rules.json: rule winhttp-dsp-wow64: unknown operator "bitz"
 *
 * Evaluation is three-valued: a fact the rule needs that the report lacks (JSON null or missing)
 * and that has no OS default is "not reported", and a rule that cannot be decided fails — a
 * check that could not run is never a pass. Each failing value is named in the reason.
 *
 * The active catalog of a store is the `meta` row 'catalog' (JSON text, with 'catalog_version'
 * beside it); without one, the catalog embedded at build time (schema_catalogs) is used.
 * `tlsgate rules load` changes it while a daemon may run: a long-running process compares
 * store_meta_get(s, "catalog_version") with rules_version() of the catalog it holds (say, once
 * per write batch) and reloads with rules_load_active when they differ.
 */
#ifndef TLSGATE_RULES_H
#define TLSGATE_RULES_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

struct store;
struct rules_catalog;

/* A catalog file is at most this many bytes. */
#define RULES_MAX_BYTES (1024 * 1024)
/* A verdict's reason is cut to this many bytes (with "..." at the end when cut). */
#define RULES_REASON_MAX 512

enum rules_severity { RULES_BLOCKER, RULES_WARNING };

/* What the catalog says about one rule; strings are owned by the catalog. */
struct rules_info {
    const char *id;
    const char *component;  /* row of Microsoft's feature table, e.g. "client WinHTTP" */
    const char *title;      /* short statement of the failure: "KB3140245 missing" */
    enum rules_severity severity;
    const char *remedy;     /* what to do, naming the KB or registry setting */
    const char *reference;  /* source ids and URLs, joined with "; " */
    unsigned roles;         /* ROLE_* mask the rule applies to (inventory.h) */
};

struct rules_verdict {
    const char *rule;       /* id, owned by the catalog */
    bool pass;
    enum rules_severity severity;
    char reason[RULES_REASON_MAX];
};

/*
 * Parses and validates catalog text. `name` is used in messages ("rules.json", a file path).
 * Returns 0 and *out, or -EINVAL (-E2BIG over RULES_MAX_BYTES, -ENOMEM) with the message in err.
 */
int rules_load(const char *text, size_t len, const char *name, struct rules_catalog **out,
               char *err, size_t errsize);

/* The catalog built into the binary (schema/rules.json). */
int rules_load_default(struct rules_catalog **out, char *err, size_t errsize);

/*
 * The store's active catalog: meta 'catalog' if set, else the embedded default.
 * Returns 0 and *out, or a negative code with the message on the store (store_errmsg).
 */
int rules_load_active(struct store *s, struct rules_catalog **out);

/* Makes `text` (already validated by rules_load into `c`) the store's active catalog: writes
 * meta 'catalog' and 'catalog_version' in the current transaction. */
int rules_store_active(struct store *s, const struct rules_catalog *c, const char *text);

void rules_free(struct rules_catalog *c);

const char *rules_version(const struct rules_catalog *c);
size_t rules_count(const struct rules_catalog *c);
/* Rule i (0..rules_count-1) in catalog order, or NULL. */
const struct rules_info *rules_at(const struct rules_catalog *c, size_t i);
/* The rule with this id, or NULL. */
const struct rules_info *rules_find(const struct rules_catalog *c, const char *id);

/* Called once per applicable rule, in catalog order. A non-zero return stops evaluation and is
 * returned by rules_evaluate. `v` is valid only during the call. */
typedef int (*rules_verdict_fn)(void *ctx, const struct rules_verdict *v);

/*
 * Evaluates every rule that applies to a host with `roles` (ROLE_* mask) and the report's OS.
 * Only applicable rules produce verdicts. Returns 0, or the callback's non-zero value.
 * Counts failed blockers and warnings into *blockers and *warnings (each may be NULL).
 */
int rules_evaluate(const struct rules_catalog *c, json_t *report, unsigned roles,
                   rules_verdict_fn fn, void *ctx, int *blockers, int *warnings);

const char *rules_severity_name(enum rules_severity s);

/*
 * Whether the report's host is a "server" or a "client": ProductOptions\ProductType (WinNT;
 * ServerNT or LanmanNT), else InstallationType (Client; Server, Server Core, Nano Server).
 * NULL when neither says (unknown, which rules treat as a failure, never as "not applicable").
 * `why` (may be small) receives the observed values for messages.
 */
const char *rules_os_kind(json_t *report, char *why, size_t whysize);

/*
 * 1 when the report's SCHANNEL server side has SSL 3.0, TLS 1.0 and TLS 1.1 all off for the
 * purpose of orphan risk, else 0. A protocol is off when Enabled=0, when DisabledByDefault=1
 * (IIS and HTTP.sys never ask for it), or when its values are absent and the OS default is off
 * (SSL 3.0 from Server 2016 / Windows 10 1607; TLS 1.1 on Windows 7 / 2008 R2 / 2008 SP2; TLS
 * 1.0 and 1.1 on releases after Windows 11 23H2). An absent value whose default cannot be known
 * (no OS build) counts as off: a doubt raises the orphan-risk alarm. Tests and re-evaluation
 * compute it through this one function.
 */
int rules_legacy_disabled(json_t *report);
/* The report members rules_legacy_disabled reads (dotted paths, as rules_reads). */
size_t rules_legacy_reads(const char *const **paths);

/*
 * The report members the catalog's evaluation can read, as dotted paths from the report's root
 * ("os.build", "schannel.tls12.client", "sql.instances"), each meaning that member's whole value.
 * rules_evaluate's verdicts depend on these values and the roles only: two reports that agree on
 * them get the same verdicts, and a report cut down to them evaluates exactly as the whole one.
 * Valid while the catalog lives.
 */
size_t rules_reads(const struct rules_catalog *c, const char *const **paths);

#endif
