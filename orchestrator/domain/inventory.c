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
};

/*
 * DESIGN "Inventory and dependencies": client -> MP/DP/SUP/CMG; MP, SMS Provider, site server,
 * SUP, reporting point -> site database; site server -> SUP (WSUS); console -> SMS Provider and
 * reporting point. All within one site.
 */
const struct inv_derived_edge inv_derived[] = {
    {ROLE_MANAGEMENT_POINT, ROLE_CLIENT, "https-mp"},
    {ROLE_DISTRIBUTION_POINT, ROLE_CLIENT, "https-dp"},
    {ROLE_SOFTWARE_UPDATE_POINT, ROLE_CLIENT, "https-sup"},
    {ROLE_CLOUD_MANAGEMENT_GATEWAY, ROLE_CLIENT, "https-cmg"},
    {ROLE_SITE_DATABASE,
     ROLE_MANAGEMENT_POINT | ROLE_SMS_PROVIDER | ROLE_SITE_SERVER | ROLE_SOFTWARE_UPDATE_POINT |
         ROLE_REPORTING_POINT,
     "sql"},
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
            if (found < 0) {
                snprintf(bad, badsize, "%.*s", (int)(len > 64 ? 64 : len), word);
                return -EINVAL;
            }
            mask |= 1u << found;
        }
        if (!end)
            break;
        p = end + 1;
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
    int rc = store_prepare(s, "SELECT h.id, h.name, h.site, h.roles, h.collector, h.os, "
                              "h.added_at, h.updated_at, " HOSTSTATE_SQL("r", "?2") ", "
                              "coalesce(r.collected_at, 0) "
                              "FROM host h LEFT JOIN report r ON r.host_id = h.id "
                              "WHERE h.name = ?1", &st);
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

