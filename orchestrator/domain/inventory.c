/*
 * inventory.c — the role vocabulary, the derived dependency table and the validation of host
 * names, site codes and collector addresses, and the one lookup of a host by name. The importer
 * is invimport.c; the commands live in cli/invcmd.c.
 */
#include "inventory.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "hoststate.h"
#include "store.h"

const char *const inv_role_names[ROLE_COUNT] = {
    "client",
    "site_server",
    "secondary_site_server",
    "site_database",
    "management_point",
    "distribution_point",
    "software_update_point",
    "reporting_point",
    "sms_provider",
    "cloud_management_gateway",
    "console",
    "service_connection_point",
    "enrollment_point",
    "enrollment_proxy_point",
    "endpoint_protection_point",
    "certificate_registration_point",
    "data_warehouse_service_point",
    "state_migration_point",
    "asset_intelligence_synchronization_point",
};

/*
 * ConfigMgr's names for the roles: the RoleName of SMS_SystemResourceList (what
 * Get-CMSiteSystemServer lists) and the console's display names. A role of 0 is one every site
 * system carries, or the fallback status point, which says nothing about TLS (ignored, not an
 * error; alone it is refused, since such a host is not a client).
 */
static const struct {
    const char *name;
    unsigned role;
} role_aliases[] = {
    {"SMS Site Server", ROLE_SITE_SERVER},
    {"Site server", ROLE_SITE_SERVER},
    {"SMS SQL Server", ROLE_SITE_DATABASE},
    {"Site database server", ROLE_SITE_DATABASE},
    {"SMS Provider", ROLE_SMS_PROVIDER},
    {"SMS Management Point", ROLE_MANAGEMENT_POINT},
    {"SMS Device Management Point", ROLE_MANAGEMENT_POINT},
    {"Management point", ROLE_MANAGEMENT_POINT},
    {"SMS Distribution Point", ROLE_DISTRIBUTION_POINT},
    {"Distribution point", ROLE_DISTRIBUTION_POINT},
    {"SMS Software Update Point", ROLE_SOFTWARE_UPDATE_POINT},
    {"Software update point", ROLE_SOFTWARE_UPDATE_POINT},
    {"SMS SRS Reporting Point", ROLE_REPORTING_POINT},
    {"Reporting services point", ROLE_REPORTING_POINT},
    {"SMS Cloud Proxy Connector", ROLE_CLOUD_MANAGEMENT_GATEWAY},
    {"Cloud management gateway connection point", ROLE_CLOUD_MANAGEMENT_GATEWAY},
    {"SMS Dmp Connector", ROLE_SERVICE_CONNECTION_POINT},
    {"Service connection point", ROLE_SERVICE_CONNECTION_POINT},
    {"SMS Enrollment Server", ROLE_ENROLLMENT_POINT},
    {"Enrollment point", ROLE_ENROLLMENT_POINT},
    {"SMS Enrollment Web Site", ROLE_ENROLLMENT_PROXY_POINT},
    {"Enrollment proxy point", ROLE_ENROLLMENT_PROXY_POINT},
    {"SMS Endpoint Protection Point", ROLE_ENDPOINT_PROTECTION_POINT},
    {"Endpoint Protection point", ROLE_ENDPOINT_PROTECTION_POINT},
    {"SMS Certificate Registration Point", ROLE_CERTIFICATE_REGISTRATION_POINT},
    {"Certificate registration point", ROLE_CERTIFICATE_REGISTRATION_POINT},
    {"Data Warehouse Service Point", ROLE_DATA_WAREHOUSE_SERVICE_POINT},
    {"SMS Data Warehouse Service Point", ROLE_DATA_WAREHOUSE_SERVICE_POINT},
    {"SMS State Migration Point", ROLE_STATE_MIGRATION_POINT},
    {"State migration point", ROLE_STATE_MIGRATION_POINT},
    {"AI Update Service Point", ROLE_ASSET_INTELLIGENCE_SYNC_POINT},
    {"Asset Intelligence synchronization point", ROLE_ASSET_INTELLIGENCE_SYNC_POINT},
    {"SMS Site System", 0},
    {"SMS Component Server", 0},
    /* HTTP only, no SQL client: nothing for TLS 1.2 to judge beyond the host's other roles */
    {"SMS Fallback Status Point", 0},
    {"Fallback status point", 0},
};

/*
 * DESIGN "Inventory and dependencies": client -> MP/DP/SUP/CMG/state migration point; MP, SMS
 * Provider, site server, SUP, reporting point and the other site systems that use the SQL client
 * components (service connection, enrollment, Endpoint Protection, certificate registration,
 * data warehouse, state migration, Asset Intelligence synchronization points: S2, S7) -> site
 * database; enrollment proxy point -> enrollment point; site server -> SUP (WSUS); console ->
 * SMS Provider and reporting point. All within one site.
 */
const struct inv_derived_edge inv_derived[] = {
    {ROLE_MANAGEMENT_POINT, ROLE_CLIENT, "https-mp"},
    {ROLE_DISTRIBUTION_POINT, ROLE_CLIENT, "https-dp"},
    {ROLE_SOFTWARE_UPDATE_POINT, ROLE_CLIENT, "https-sup"},
    {ROLE_CLOUD_MANAGEMENT_GATEWAY, ROLE_CLIENT, "https-cmg"},
    {ROLE_STATE_MIGRATION_POINT, ROLE_CLIENT, "https-smp"},
    {ROLE_SITE_DATABASE,
     ROLE_MANAGEMENT_POINT | ROLE_SMS_PROVIDER | ROLE_SITE_SERVER | ROLE_SOFTWARE_UPDATE_POINT |
         ROLE_REPORTING_POINT | ROLE_SERVICE_CONNECTION_POINT | ROLE_ENROLLMENT_POINT |
         ROLE_ENDPOINT_PROTECTION_POINT | ROLE_CERTIFICATE_REGISTRATION_POINT |
         ROLE_DATA_WAREHOUSE_SERVICE_POINT | ROLE_STATE_MIGRATION_POINT |
         ROLE_ASSET_INTELLIGENCE_SYNC_POINT,
     "sql"},
    {ROLE_ENROLLMENT_POINT, ROLE_ENROLLMENT_PROXY_POINT, "https-enrollment"},
    {ROLE_SOFTWARE_UPDATE_POINT, ROLE_SITE_SERVER, "wsus"},
    {ROLE_SMS_PROVIDER, ROLE_CONSOLE, "sms-provider"},
    {ROLE_REPORTING_POINT, ROLE_CONSOLE, "ssrs"},
};
const size_t inv_derived_count = sizeof(inv_derived) / sizeof(inv_derived[0]);

static void trim(const char **start, size_t *len)
{
    while (*len && isspace((unsigned char)**start)) {
        (*start)++;
        (*len)--;
    }
    while (*len && isspace((unsigned char)(*start)[*len - 1]))
        (*len)--;
}

int inv_roles_parse(const char *text, unsigned *roles, char *bad, size_t badsize)
{
    unsigned mask = 0;
    bool generic = false; /* a word that names only a role every site system has */
    const char *p = text;
    for (;;) {
        const char *end = strchr(p, ';');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        const char *word = p;
        trim(&word, &len);
        if (len) {
            int found = -1;
            for (int i = 0; i < ROLE_COUNT; i++)
                if (strlen(inv_role_names[i]) == len && !strncasecmp(word, inv_role_names[i], len))
                    found = i;
            if (found >= 0) {
                mask |= 1u << found;
            } else {
                size_t k = 0, n = sizeof(role_aliases) / sizeof(role_aliases[0]);
                while (k < n && !(strlen(role_aliases[k].name) == len &&
                                  !strncasecmp(word, role_aliases[k].name, len)))
                    k++;
                if (k == n) {
                    snprintf(bad, badsize, "%.*s", (int)(len > 64 ? 64 : len), word);
                    return -EINVAL;
                }
                mask |= role_aliases[k].role;
                generic |= !role_aliases[k].role;
            }
        }
        if (!end)
            break;
        p = end + 1;
    }
    if (!mask && generic) {
        /* "SMS Site System" alone is a site system of no role tlsgate judges, not a client */
        snprintf(bad, badsize, "%.64s", text);
        return -EINVAL;
    }
    *roles = mask ? mask : ROLE_CLIENT;
    return 0;
}

void inv_roles_format(unsigned roles, char *buf, size_t size)
{
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; i < ROLE_COUNT; i++) {
        if (!(roles & (1u << i)))
            continue;
        int n = snprintf(buf + used, size - used, "%s%s", used ? ";" : "", inv_role_names[i]);
        if (n < 0 || (size_t)n >= size - used)
            return;
        used += (size_t)n;
    }
}

bool inv_valid_fqdn(const char *name)
{
    size_t len = strlen(name);
    if (len == 0 || len > 253 || name[0] == '.' || name[len - 1] == '.')
        return false;
    size_t label = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)name[i];
        if (c == '.') {
            if (label == 0 || name[i - 1] == '-')
                return false;
            label = 0;
            continue;
        }
        if (!(isalnum(c) || c == '-' || c == '_') || (c == '-' && label == 0) || ++label > 63)
            return false;
    }
    return name[len - 1] != '-';
}

bool inv_valid_site(const char *site)
{
    if (strlen(site) != INV_SITE_LEN)
        return false;
    for (int i = 0; i < INV_SITE_LEN; i++)
        if (!isalnum((unsigned char)site[i]))
            return false;
    return true;
}

bool inv_valid_collector(const char *addr)
{
    const char *colon;
    if (addr[0] == '[') {
        const char *close = strchr(addr, ']');
        if (!close || close == addr + 1 || close[1] != ':')
            return false;
        /* Between the brackets: an IPv6 address, and for a link-local one its zone
         * (%eth0, as curl takes it), nothing else. */
        const char *zone = memchr(addr + 1, '%', (size_t)(close - addr - 1));
        const char *end = zone ? zone : close;
        char v6[INET6_ADDRSTRLEN];
        size_t len = (size_t)(end - addr - 1);
        struct in6_addr bin;
        if (len >= sizeof(v6))
            return false;
        memcpy(v6, addr + 1, len);
        v6[len] = '\0';
        if (inet_pton(AF_INET6, v6, &bin) != 1)
            return false;
        if (zone && (close - zone < 2 || close - zone > 16))
            return false;
        for (const char *p = zone ? zone + 1 : close; p < close; p++)
            if (!(isalnum((unsigned char)*p) || *p == '.' || *p == '-' || *p == '_'))
                return false;
        colon = close + 1;
    } else {
        colon = strrchr(addr, ':');
        /* A host name is at most 253 characters (RFC 1035), as inv_valid_fqdn has it. */
        if (!colon || colon == addr || colon - addr > 253 ||
            memchr(addr, ':', (size_t)(colon - addr)))
            return false;
        for (const char *p = addr; p < colon; p++)
            if (!(isalnum((unsigned char)*p) || *p == '.' || *p == '-' || *p == '_'))
                return false;
    }
    const char *port = colon + 1;
    if (!*port || strlen(port) > 5)
        return false;
    for (const char *p = port; *p; p++)
        if (!isdigit((unsigned char)*p))
            return false;
    long v = strtol(port, NULL, 10);
    return v >= 1 && v <= 65535;
}

static void copy_text(char *dst, size_t size, sqlite3_stmt *st, int col)
{
    const unsigned char *t = sqlite3_column_text(st, col);
    snprintf(dst, size, "%s", t ? (const char *)t : "");
}

int inv_host_get(struct store *s, const char *name, long long cutoff, struct inv_host *h)
{
    sqlite3_stmt *st;
    int rc = store_prepare(s,
                           "SELECT h.id, h.name, h.site, h.roles, h.collector, h.os, "
                           "h.added_at, h.updated_at, " HOSTSTATE_SQL(
                               "r", "?2") ", "
                                          "coalesce(r.collected_at, 0) "
                                          "FROM host h LEFT JOIN report r ON r.host_id = h.id "
                                          "WHERE h.name = ?1",
                           &st);
    if (rc)
        return rc;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 2, cutoff);
    int step = sqlite3_step(st);
    if (step == SQLITE_ROW) {
        h->id = sqlite3_column_int64(st, 0);
        copy_text(h->name, sizeof(h->name), st, 1);
        copy_text(h->site, sizeof(h->site), st, 2);
        h->roles = (unsigned)sqlite3_column_int64(st, 3);
        copy_text(h->collector, sizeof(h->collector), st, 4);
        copy_text(h->os, sizeof(h->os), st, 5);
        h->added_at = sqlite3_column_int64(st, 6);
        h->updated_at = sqlite3_column_int64(st, 7);
        copy_text(h->state, sizeof(h->state), st, 8);
        h->collected_at = sqlite3_column_int64(st, 9);
    } else if (step == SQLITE_DONE) {
        rc = store_fail(s, -ENOENT, "no such host: %s (see `tlsgate inventory list`)", name);
    } else {
        rc = store_sqlite_fail(s, "find host");
    }
    sqlite3_finalize(st);
    return rc;
}

int inv_site_exists(struct store *s, const char *code)
{
    sqlite3_stmt *st;
    int rc = store_prepare(s, "SELECT 1 FROM site WHERE code = ?1", &st);
    if (rc)
        return rc;
    sqlite3_bind_text(st, 1, code, -1, SQLITE_TRANSIENT);
    int step = sqlite3_step(st);
    if (step == SQLITE_DONE)
        rc = store_fail(s, -ENOENT, "no such site: %s", code);
    else if (step != SQLITE_ROW)
        rc = store_sqlite_fail(s, "look up the site");
    sqlite3_finalize(st);
    return rc;
}

struct dep_walk {
    inv_dep_fn fn;
    void *arg;
    const char *channel; /* of the derived rule being walked; NULL for explicit edges */
};

static int dep_row(sqlite3_stmt *st, void *arg)
{
    struct dep_walk *w = arg;
    const char *host = (const char *)sqlite3_column_text(st, 0);
    if (w->channel)
        return w->fn(w->arg, host, w->channel, true);
    return w->fn(w->arg, host, (const char *)sqlite3_column_text(st, 1), false);
}

int inv_deps_each(struct store *s, const struct inv_host *h, bool dependents, inv_dep_fn fn,
                  void *arg)
{
    struct dep_walk w = {fn, arg, NULL};
    int rc = 0;
    for (size_t i = 0; i < inv_derived_count && !rc; i++) {
        const struct inv_derived_edge *e = &inv_derived[i];
        unsigned mine = dependents ? e->server_role : e->dependent_roles;
        unsigned theirs = dependents ? e->dependent_roles : e->server_role;
        if (!(h->roles & mine))
            continue;
        sqlite3_stmt *st;
        if ((rc = store_prepare(s,
                                "SELECT name FROM host WHERE site = ?1 AND (roles & ?2) != 0 "
                                "AND id != ?3 ORDER BY name",
                                &st)))
            return rc;
        sqlite3_bind_text(st, 1, h->site, -1, SQLITE_STATIC);
        sqlite3_bind_int(st, 2, (int)theirs);
        sqlite3_bind_int64(st, 3, h->id);
        w.channel = e->channel;
        rc = store_each(s, st, "derived edges", dep_row, &w);
    }
    if (rc)
        return rc;
    const char *sql =
        dependents ? "SELECT h.name, e.channel FROM edge e JOIN host h ON h.id = e.dependent "
                     "WHERE e.server = ? ORDER BY h.name, e.channel"
                   : "SELECT h.name, e.channel FROM edge e JOIN host h ON h.id = e.server "
                     "WHERE e.dependent = ? ORDER BY h.name, e.channel";
    sqlite3_stmt *st;
    if ((rc = store_prepare(s, sql, &st)))
        return rc;
    sqlite3_bind_int64(st, 1, h->id);
    w.channel = NULL;
    return store_each(s, st, "explicit edges", dep_row, &w);
}
