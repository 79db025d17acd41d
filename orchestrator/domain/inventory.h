/*
 * inventory: hosts (name, site, roles, collector address, OS label) and their dependency edges.
 *
 * Roles are a bit mask in the order DESIGN.md lists them. Derived edges are not stored (see
 * schema/001_init.sql): `inv_derived` below is the one table that says who depends on whom by
 * role, and every query that needs dependents (inventory deps, gate, export) goes through it.
 *
 * The module owns the `host`, `edge` and `site` rows an import writes (invimport.h) and is the
 * one place that looks a host up by name (inv_host_get).
 */
#ifndef TLSGATE_INVENTORY_H
#define TLSGATE_INVENTORY_H

#include <stdbool.h>
#include <stddef.h>

struct store;

enum role {
    ROLE_CLIENT = 1 << 0,
    ROLE_SITE_SERVER = 1 << 1,
    ROLE_SECONDARY_SITE_SERVER = 1 << 2,
    ROLE_SITE_DATABASE = 1 << 3,
    ROLE_MANAGEMENT_POINT = 1 << 4,
    ROLE_DISTRIBUTION_POINT = 1 << 5,
    ROLE_SOFTWARE_UPDATE_POINT = 1 << 6,
    ROLE_REPORTING_POINT = 1 << 7,
    ROLE_SMS_PROVIDER = 1 << 8,
    ROLE_CLOUD_MANAGEMENT_GATEWAY = 1 << 9,
    ROLE_CONSOLE = 1 << 10,
    /* Site systems that use the SQL client components (S2, S7), after the original eleven so
     * stored masks keep their meaning. */
    ROLE_SERVICE_CONNECTION_POINT = 1 << 11,
    ROLE_ENROLLMENT_POINT = 1 << 12,
    ROLE_ENROLLMENT_PROXY_POINT = 1 << 13,
    ROLE_ENDPOINT_PROTECTION_POINT = 1 << 14,
    ROLE_CERTIFICATE_REGISTRATION_POINT = 1 << 15,
    ROLE_DATA_WAREHOUSE_SERVICE_POINT = 1 << 16,
    ROLE_STATE_MIGRATION_POINT = 1 << 17,
    ROLE_ASSET_INTELLIGENCE_SYNC_POINT = 1 << 18,
};
#define ROLE_COUNT 19
/* Every role but `client` and `console` makes a host a site system ("server") with a gate. */
#define ROLE_SERVER_MASK (((1 << ROLE_COUNT) - 1) & ~(ROLE_CLIENT | ROLE_CONSOLE))

/* The role's name in the DESIGN vocabulary, by bit index 0..ROLE_COUNT-1. */
extern const char *const inv_role_names[ROLE_COUNT];

/* Parses "a;b;c" (empty = client). A word is a role of the vocabulary or one of ConfigMgr's own
 * names for it, as Get-CMSiteSystemServer (RoleName: "SMS Management Point") or the console
 * ("Management point") show them; "SMS Site System" and "SMS Component Server", which every site
 * system has, add nothing. Returns 0, or -EINVAL and the offending word in bad. */
int inv_roles_parse(const char *text, unsigned *roles, char *bad, size_t badsize);
/* Writes the roles joined with ';' in vocabulary order. */
void inv_roles_format(unsigned roles, char *buf, size_t size);

/* A derived dependency: hosts of the same site with any of `dependent_roles` depend on each
 * host with `server_role`, over `channel`. */
struct inv_derived_edge {
    unsigned server_role;
    unsigned dependent_roles;
    const char *channel;
};
extern const struct inv_derived_edge inv_derived[];
extern const size_t inv_derived_count;

/* A site code is three letters or digits (inv_valid_site). Buffers that copy one from a row
 * keep room for a longer value from a hand-edited database: snprintf cuts it, nothing overflows. */
#define INV_SITE_LEN 3
#define INV_SITE_BUFSIZE 16

/* Longest OS label and explicit-edge channel an import accepts. */
#define INV_OS_MAX 128
#define INV_CHANNEL_MAX 32
/* Room for a stored host name (RFC 1123: at most 253 characters) and a collector address. */
#define INV_NAME_SIZE 256
#define INV_COLLECTOR_SIZE 300
/* Room for a host state word of HOSTSTATE_SQL ("unknown", "not_ready", "ready"). */
#define INV_STATE_SIZE 16

/* Validation shared by import and other commands. */
bool inv_valid_fqdn(const char *name);
bool inv_valid_site(const char *site);
/* ADDRESS:PORT with a port 1..65535; IPv6 as [addr]:port. */
bool inv_valid_collector(const char *addr);

/* One host as the inventory keeps it, with its state now (hoststate.h). */
struct inv_host {
    long long id;
    char name[INV_NAME_SIZE]; /* as stored: the spelling of the last import */
    char site[INV_SITE_BUFSIZE];
    unsigned roles;
    char collector[INV_COLLECTOR_SIZE];
    char os[INV_OS_MAX + 1];
    long long added_at, updated_at;
    char state[INV_STATE_SIZE]; /* with reports older than the cutoff counted as unknown */
    long long collected_at;     /* of its stored report; 0 when it never reported */
};

/*
 * Looks a host up by name, compared case-insensitively (the column's collation). `cutoff` is the
 * stale cutoff of the state (now - stale_after). Returns 0 and *h, -ENOENT with the message
 * "no such host: NAME (see `tlsgate inventory list`)" on the store, or another negative code
 * (message on the store).
 */
int inv_host_get(struct store *s, const char *name, long long cutoff, struct inv_host *h);

/* 0 when site `code` exists, -ENOENT with "no such site: CODE" on the store, or another
 * negative code (message on the store). */
int inv_site_exists(struct store *s, const char *code);

/*
 * Calls fn for every dependency of host `h` in one direction: with `dependents` false, the
 * servers h depends on; with true, the hosts that depend on h. Derived edges first (by rule in
 * inv_derived order, then name; `derived` true), then explicit ones (by name, channel). A
 * non-zero return from fn stops the walk and is returned; else 0 or a negative code.
 */
typedef int (*inv_dep_fn)(void *arg, const char *host, const char *channel, bool derived);
int inv_deps_each(struct store *s, const struct inv_host *h, bool dependents, inv_dep_fn fn,
                  void *arg);

#endif
