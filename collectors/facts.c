/*
 * facts.c — reads the TLS 1.2 readiness facts through a registry view and builds reports
 * (see facts.h; the registry paths and their meaning are in DESIGN.md "The collector").
 *
 * The one rule that shapes this file: an absent value is JSON null, never 0 or "". Windows
 * gives an absent SCHANNEL or .NET value a per-OS default, and only the rules engine knows it;
 * writing 0 here would turn "not configured" into "disabled". A value of the wrong type (a
 * Release written as REG_SZ by a broken script) is treated as absent too, and named in the
 * optional "extraction_warnings" array so whoever reads the report can find and fix it.
 *
 * All lookups go through regview.h, so the .reg fixtures exercise exactly the code that runs
 * against the native registry on Windows.
 */
#include "facts.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "regview.h"
#include "report.h"

#ifndef TLSGATE_VERSION
#define TLSGATE_VERSION "unknown"
#endif

#define K_CURRENT_VERSION "HKLM\\SOFTWARE\\Microsoft\\Windows NT\\CurrentVersion"
#define K_ENVIRONMENT "HKLM\\SYSTEM\\CurrentControlSet\\Control\\Session Manager\\Environment"
#define K_CBS_PACKAGES                                                                             \
    "HKLM\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Component Based Servicing\\Packages"
#define K_SCHANNEL_PROTOCOLS                                                                       \
    "HKLM\\SYSTEM\\CurrentControlSet\\Control\\SecurityProviders\\SCHANNEL\\Protocols"
#define K_WINHTTP "HKLM\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Internet Settings\\WinHttp"
#define K_WINHTTP_WOW64                                                                            \
    "HKLM\\SOFTWARE\\Wow6432Node\\Microsoft\\Windows\\CurrentVersion\\Internet Settings\\WinHttp"
#define K_NDP_V4_FULL "HKLM\\SOFTWARE\\Microsoft\\NET Framework Setup\\NDP\\v4\\Full"
#define K_SQL_ROOT "HKLM\\SOFTWARE\\Microsoft\\Microsoft SQL Server"
#define K_SQL_INSTANCES K_SQL_ROOT "\\Instance Names\\SQL"
#define K_SNAC11 "HKLM\\SOFTWARE\\Microsoft\\SQLNCLI11"
#define K_ODBC17 "HKLM\\SOFTWARE\\Microsoft\\MSODBCSQL17"
#define K_ODBC18 "HKLM\\SOFTWARE\\Microsoft\\MSODBCSQL18"
#define K_WSUS_SETUP "HKLM\\SOFTWARE\\Microsoft\\Update Services\\Server\\Setup"
#define K_FIPS "HKLM\\SYSTEM\\CurrentControlSet\\Control\\Lsa\\FipsAlgorithmPolicy"
#define K_PRODUCT_OPTIONS "HKLM\\SYSTEM\\CurrentControlSet\\Control\\ProductOptions"
#define K_NDP_V35 "HKLM\\SOFTWARE\\Microsoft\\NET Framework Setup\\NDP\\v3.5"
#define K_RS_INSTANCES K_SQL_ROOT "\\Instance Names\\RS"

/* Longest key path built here (a SQL instance id is data from the registry, so it is capped). */
#define KEY_MAX 512
/* A CBS package name with more KB digits than this is not a KB number. */
#define KB_DIGITS_MAX 12
/*
 * Caps that keep any report well under REPORT_MAX_BYTES whatever the registry holds (a value
 * may be 1 MiB): a string fact longer than any real version or product name is not one; an old
 * Windows 7 has a few hundred KBs, a SQL host a handful of instances.
 */
#define STRING_FACT_MAX 256
#define HOTFIXES_MAX 4096
#define SQL_INSTANCES_MAX 64
#define WARNINGS_MAX 32

/* One extraction: the view, the warnings so far, and the first hard error (ENOMEM, I/O). */
struct extraction {
    struct regview *v;
    json_t *warnings;
    int rc;
    char where[KEY_MAX + 64];
};

static void hard_error(struct extraction *x, int rc, const char *key, const char *name)
{
    if (x->rc)
        return;
    x->rc = rc;
    snprintf(x->where, sizeof(x->where), "%s\\%s", key, name && *name ? name : "(Default)");
}

/* Which type a value has, found by asking for each one (the view only says "not a DWORD"). */
static const char *type_found(struct regview *v, const char *key, const char *name)
{
    uint32_t d;
    uint64_t q;
    char *s = NULL, **m = NULL;
    if (regview_get_string(v, key, name, &s) == 0) {
        free(s);
        return "REG_SZ";
    }
    if (regview_get_multi(v, key, name, &m) == 0) {
        regview_strv_free(m);
        return "REG_MULTI_SZ";
    }
    if (regview_get_dword(v, key, name, &d) == 0)
        return "REG_DWORD";
    if (regview_get_qword(v, key, name, &q) == 0)
        return "REG_QWORD";
    return "REG_BINARY or another type";
}

static void warn(struct extraction *x, const char *key, const char *name, const char *why)
{
    char msg[KEY_MAX + 256];
    size_t n = json_array_size(x->warnings);
    if (n > WARNINGS_MAX)
        return;
    if (n == WARNINGS_MAX)
        snprintf(msg, sizeof(msg), "more than %d warnings; the rest are not listed", WARNINGS_MAX);
    else if (!name) /* about the key itself */
        snprintf(msg, sizeof(msg), "%s: %s", key, why);
    else if (!*name)
        snprintf(msg, sizeof(msg), "%s\\(Default): %s", key, why);
    else {
        /* A value name is registry data (an SQL instance name can be anything up to 16,383
         * characters): cut it to 128 bytes, but between UTF-8 characters, or the warning would
         * not be valid UTF-8 and json_string would fail the whole extraction. */
        int cut = (int)strnlen(name, 128);
        while (name[cut] && cut > 0 && ((unsigned char)name[cut] & 0xC0) == 0x80)
            cut--;
        snprintf(msg, sizeof(msg), "%s\\%.*s: %s", key, cut, name, why);
    }
    if (json_array_append_new(x->warnings, json_string(msg)) != 0)
        hard_error(x, -ENOMEM, key, name);
}

static void warn_type(struct extraction *x, const char *key, const char *name, const char *want)
{
    char why[128];
    snprintf(why, sizeof(why), "%s where %s was expected; reported as null",
             type_found(x->v, key, name), want);
    warn(x, key, name, why);
}

/* A DWORD value: 0 and *out, or -ENOENT for absent or wrong type (warned). */
static int read_dword(struct extraction *x, const char *key, const char *name, uint32_t *out)
{
    int rc = regview_get_dword(x->v, key, name, out);
    if (rc == -EINVAL) {
        warn_type(x, key, name, "REG_DWORD");
        return -ENOENT;
    }
    if (rc && rc != -ENOENT)
        hard_error(x, rc, key, name);
    return rc ? -ENOENT : 0;
}

/* A REG_SZ / REG_EXPAND_SZ value: 0 and *out (malloc'd), or -ENOENT (absent or wrong type). */
static int read_string(struct extraction *x, const char *key, const char *name, char **out)
{
    int rc = regview_get_string(x->v, key, name, out);
    if (rc == -EINVAL) {
        warn_type(x, key, name, "REG_SZ");
        return -ENOENT;
    }
    if (rc && rc != -ENOENT)
        hard_error(x, rc, key, name);
    return rc ? -ENOENT : 0;
}

static json_t *dword_fact(struct extraction *x, const char *key, const char *name)
{
    uint32_t d;
    return read_dword(x, key, name, &d) ? json_null() : json_integer((json_int_t)d);
}

/* Takes ownership of s. */
static json_t *string_json(struct extraction *x, const char *key, const char *name, char *s)
{
    if (!s) {
        hard_error(x, -ENOMEM, key, name);
        return json_null();
    }
    if (strlen(s) > STRING_FACT_MAX) {
        free(s);
        warn(x, key, name, "longer than 256 bytes; reported as null");
        return json_null();
    }
    json_t *j = json_string(s);
    if (!j)
        warn(x, key, name, "not valid UTF-8; reported as null");
    free(s);
    return j ? j : json_null();
}

static json_t *string_fact(struct extraction *x, const char *key, const char *name)
{
    char *s;
    return read_string(x, key, name, &s) ? json_null() : string_json(x, key, name, s);
}

/* Sets obj[name] = value (a new reference, or NULL after an allocation failure). */
static void put(struct extraction *x, json_t *obj, const char *name, json_t *value)
{
    if (json_object_set_new(obj, name, value) != 0 && !x->rc)
        hard_error(x, -ENOMEM, "(facts)", name);
}

/* ---- os --------------------------------------------------------------------------------- */

static json_t *os_version(struct extraction *x)
{
    /* Windows 10 and later keep CurrentVersion at "6.3" for old installers; the real version
     * is in CurrentMajor/MinorVersionNumber, which older systems do not have. */
    uint32_t major, minor;
    if (read_dword(x, K_CURRENT_VERSION, "CurrentMajorVersionNumber", &major) == 0 &&
        read_dword(x, K_CURRENT_VERSION, "CurrentMinorVersionNumber", &minor) == 0) {
        char buf[32];
        snprintf(buf, sizeof(buf), "%u.%u", (unsigned)major, (unsigned)minor);
        return json_string(buf);
    }
    return string_fact(x, K_CURRENT_VERSION, "CurrentVersion");
}

/* CurrentBuildNumber ("7601"), else CurrentBuild, as an integer. */
static json_t *os_build(struct extraction *x)
{
    static const char *const names[] = {"CurrentBuildNumber", "CurrentBuild"};
    for (size_t i = 0; i < 2; i++) {
        char *s;
        if (read_string(x, K_CURRENT_VERSION, names[i], &s))
            continue;
        char *end;
        errno = 0;
        unsigned long long n = strtoull(s, &end, 10);
        bool ok = s[0] >= '0' && s[0] <= '9' && *end == '\0' && errno == 0 && n <= 0xFFFFFFFFULL;
        free(s);
        if (ok)
            return json_integer((json_int_t)n);
        warn(x, K_CURRENT_VERSION, names[i], "not a build number; reported as null");
        return json_null();
    }
    return json_null();
}

static json_t *os_arch(struct extraction *x)
{
    static const char *const map[][2] = {{"AMD64", "x64"}, {"x86", "x86"}, {"ARM64", "arm64"}};
    char *s;
    if (read_string(x, K_ENVIRONMENT, "PROCESSOR_ARCHITECTURE", &s))
        return json_null();
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
        if (strcasecmp(s, map[i][0]) == 0) {
            free(s);
            return json_string(map[i][1]);
        }
    }
    free(s);
    warn(x, K_ENVIRONMENT, "PROCESSOR_ARCHITECTURE", "not AMD64, x86 or ARM64; reported as null");
    return json_null();
}

static json_t *extract_os(struct extraction *x)
{
    json_t *os = json_object();
    if (!os)
        return NULL;
    put(x, os, "product_name", string_fact(x, K_CURRENT_VERSION, "ProductName"));
    put(x, os, "version", os_version(x));
    put(x, os, "build", os_build(x));
    put(x, os, "ubr", dword_fact(x, K_CURRENT_VERSION, "UBR"));
    put(x, os, "arch", os_arch(x));
    put(x, os, "installation_type", string_fact(x, K_CURRENT_VERSION, "InstallationType"));
    put(x, os, "csd_version", string_fact(x, K_CURRENT_VERSION, "CSDVersion"));
    /* Set by every edition since NT (WinNT, ServerNT, LanmanNT), unlike InstallationType, which
     * Server 2008 SP2 lacks and which says "Server Core" on a Core installation. */
    put(x, os, "product_type", string_fact(x, K_PRODUCT_OPTIONS, "ProductType"));
    return os;
}

/* ---- hotfixes --------------------------------------------------------------------------- */

/* KB numbers as digit strings without leading zeros; numeric order is (length, then bytes). */
struct kb_list {
    char (*items)[KB_DIGITS_MAX + 1];
    size_t n, cap;
};

static int kb_cmp(const void *a, const void *b)
{
    size_t la = strlen(a), lb = strlen(b);
    return la != lb ? (la < lb ? -1 : 1) : strcmp(a, b);
}

static int kb_add(struct kb_list *l, const char *digits, size_t n)
{
    while (n > 1 && *digits == '0') {
        digits++;
        n--;
    }
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        void *p = realloc(l->items, cap * sizeof(l->items[0]));
        if (!p)
            return -ENOMEM;
        l->items = p;
        l->cap = cap;
    }
    memcpy(l->items[l->n], digits, n);
    l->items[l->n][n] = '\0';
    l->n++;
    return 0;
}

/* Every "KB<digits>" in a CBS package name ("Package_1_for_KB4019276~31bf...~6.0.1.0"). */
static int kb_scan(struct kb_list *l, const char *name)
{
    for (const char *p = name; *p; p++) {
        if ((p[0] != 'K' && p[0] != 'k') || (p[1] != 'B' && p[1] != 'b'))
            continue;
        size_t n = strspn(p + 2, "0123456789");
        if (n > 0 && n <= KB_DIGITS_MAX) {
            int rc = kb_add(l, p + 2, n);
            if (rc)
                return rc;
        }
        p += 1 + n;
    }
    return 0;
}

/*
 * CBS CurrentState of a package (the servicing API's install state times 16): only Installed
 * (0x70) and Permanent (0x80) mean the update is in effect. Staged, install pending, partially
 * installed, superseded, absent or a missing CurrentState are not installed.
 */
#define CBS_INSTALLED 0x70
#define CBS_PERMANENT 0x80
#define K_ROLLUP_PREFIX "Package_for_RollupFix~"

static bool cbs_installed(uint32_t state)
{
    return state == CBS_INSTALLED || state == CBS_PERMANENT;
}

/* The version a RollupFix package name ends with ("...~~7601.24544.1.4"): 0 and its four
 * numbers, or -EINVAL. */
static int rollup_version(const char *name, unsigned long v[4])
{
    const char *p = strrchr(name, '~');
    if (!p)
        return -EINVAL;
    p++;
    for (int i = 0; i < 4; i++) {
        char *end;
        if (*p < '0' || *p > '9')
            return -EINVAL;
        errno = 0;
        v[i] = strtoul(p, &end, 10);
        if (errno || v[i] > 100000000UL || (i < 3 ? *end != '.' : *end != '\0'))
            return -EINVAL;
        p = end + 1;
    }
    return 0;
}

struct cbs_scan {
    struct kb_list installed, other;
    uint32_t *other_state; /* parallel to other.items */
    size_t other_cap;
    unsigned long rollup[4];
    bool has_rollup;
};

static int scan_other(struct cbs_scan *c, const char *name, uint32_t state)
{
    size_t before = c->other.n;
    int rc = kb_scan(&c->other, name);
    if (rc)
        return rc;
    if (c->other.n > c->other_cap) {
        size_t cap = c->other.cap;
        uint32_t *p = realloc(c->other_state, cap * sizeof(*p));
        if (!p)
            return -ENOMEM;
        c->other_state = p;
        c->other_cap = cap;
    }
    for (size_t i = before; i < c->other.n; i++)
        c->other_state[i] = state;
    return 0;
}

/* One package key: its KBs go to `installed` or `other` by CurrentState. */
static int cbs_package(struct extraction *x, struct cbs_scan *c, const char *name)
{
    char key[KEY_MAX];
    if (snprintf(key, sizeof(key), "%s\\%s", K_CBS_PACKAGES, name) >= (int)sizeof(key))
        return 0;                 /* no package name is this long; not one of ours */
    uint32_t state = 0xFFFFFFFFu; /* missing CurrentState: not installed */
    int rc = regview_get_dword(x->v, key, "CurrentState", &state);
    if (rc && rc != -ENOENT && rc != -EINVAL)
        return rc;
    if (rc == -EINVAL)
        state = 0xFFFFFFFFu;
    if (!cbs_installed(state))
        return scan_other(c, name, state);
    if (!strncasecmp(name, K_ROLLUP_PREFIX, strlen(K_ROLLUP_PREFIX))) {
        unsigned long v[4];
        if (rollup_version(name, v) == 0) {
            bool higher = !c->has_rollup;
            for (int i = 0; i < 4 && !higher; i++) {
                if (v[i] != c->rollup[i]) {
                    higher = v[i] > c->rollup[i];
                    break;
                }
            }
            if (higher)
                memcpy(c->rollup, v, sizeof(v));
            c->has_rollup = true;
        }
    }
    return kb_scan(&c->installed, name);
}

/* Sorted, deduplicated "KB<digits>" strings of a list; NULL on ENOMEM. */
static json_t *kb_array(struct extraction *x, struct kb_list *l)
{
    json_t *a = json_array();
    if (l->n)
        qsort(l->items, l->n, sizeof(l->items[0]), kb_cmp);
    for (size_t i = 0; a && i < l->n; i++) {
        if (i > 0 && strcmp(l->items[i], l->items[i - 1]) == 0)
            continue;
        if (json_array_size(a) == HOTFIXES_MAX) {
            warn(x, K_CBS_PACKAGES, NULL, "more than 4096 KB numbers; the highest are not listed");
            break;
        }
        char kb[KB_DIGITS_MAX + 3];
        snprintf(kb, sizeof(kb), "KB%s", l->items[i]);
        if (json_array_append_new(a, json_string(kb)) != 0) {
            json_decref(a);
            a = NULL;
        }
    }
    return a;
}

/*
 * "hotfixes" (the KBs in effect: a package naming them is Installed or Permanent) and "updates"
 * {installed: the same list, not_installed: {KB: CurrentState or null} for KBs whose every
 * package is in another state, rollup: the highest installed Package_for_RollupFix version}.
 * An older collector listed every package whatever its state; a report without "updates" is
 * how an orchestrator tells the two apart (and fails closed).
 */
static void extract_updates(struct extraction *x, json_t *f)
{
    char **names;
    int rc = regview_list_subkeys(x->v, K_CBS_PACKAGES, &names);
    if (rc == -ENOENT) {
        put(x, f, "hotfixes", json_null());
        put(x, f, "updates", json_null());
        return;
    }
    if (rc) {
        hard_error(x, rc, K_CBS_PACKAGES, "");
        put(x, f, "hotfixes", json_null());
        return;
    }
    struct cbs_scan c = {0};
    for (size_t i = 0; names[i] && !rc; i++)
        rc = cbs_package(x, &c, names[i]);
    regview_strv_free(names);
    json_t *inst = rc ? NULL : kb_array(x, &c.installed);
    json_t *other = rc ? NULL : json_object();
    /* A KB with one installed package is installed (an older revision of its package is often
     * left superseded or absent beside it). */
    for (size_t i = 0; other && i < c.other.n; i++) {
        char kb[KB_DIGITS_MAX + 3];
        snprintf(kb, sizeof(kb), "KB%s", c.other.items[i]);
        bool in = false;
        for (size_t k = 0; k < c.installed.n && !in; k++)
            in = !strcmp(c.installed.items[k], c.other.items[i]);
        if (in || json_object_get(other, kb))
            continue;
        if (json_object_size(other) == HOTFIXES_MAX)
            break;
        uint32_t st = c.other_state[i];
        if (json_object_set_new(other, kb,
                                st == 0xFFFFFFFFu ? json_null() : json_integer((json_int_t)st)))
            rc = -ENOMEM;
    }
    char rollup[64];
    if (c.has_rollup)
        snprintf(rollup, sizeof(rollup), "%lu.%lu.%lu.%lu", c.rollup[0], c.rollup[1], c.rollup[2],
                 c.rollup[3]);
    free(c.installed.items);
    free(c.other.items);
    free(c.other_state);
    if (rc || !inst || !other) {
        json_decref(inst);
        json_decref(other);
        hard_error(x, rc ? rc : -ENOMEM, K_CBS_PACKAGES, "");
        put(x, f, "hotfixes", json_null());
        return;
    }
    put(x, f, "hotfixes", json_deep_copy(inst));
    put(x, f, "updates",
        json_pack("{s:o, s:o, s:o}", "installed", inst, "not_installed", other, "rollup",
                  c.has_rollup ? json_string(rollup) : json_null()));
}

/* ---- schannel, winhttp, dotnet ---------------------------------------------------------- */

static const char *const schannel_names[][2] = {
    {"ssl2", "SSL 2.0"},  {"ssl3", "SSL 3.0"},  {"tls10", "TLS 1.0"},
    {"tls11", "TLS 1.1"}, {"tls12", "TLS 1.2"}, {"tls13", "TLS 1.3"},
};

static json_t *extract_schannel(struct extraction *x)
{
    static const char *const sides[][2] = {{"client", "Client"}, {"server", "Server"}};
    json_t *sch = json_object();
    for (size_t i = 0; sch && i < sizeof(schannel_names) / sizeof(schannel_names[0]); i++) {
        json_t *proto = json_object();
        for (size_t s = 0; proto && s < 2; s++) {
            char key[KEY_MAX];
            snprintf(key, sizeof(key), "%s\\%s\\%s", K_SCHANNEL_PROTOCOLS, schannel_names[i][1],
                     sides[s][1]);
            json_t *side = json_object();
            if (side) {
                put(x, side, "enabled", dword_fact(x, key, "Enabled"));
                put(x, side, "disabled_by_default", dword_fact(x, key, "DisabledByDefault"));
            }
            put(x, proto, sides[s][0], side);
        }
        put(x, sch, schannel_names[i][0], proto);
    }
    return sch;
}

static json_t *extract_winhttp(struct extraction *x)
{
    json_t *w = json_object();
    if (w) {
        put(x, w, "default_secure_protocols", dword_fact(x, K_WINHTTP, "DefaultSecureProtocols"));
        put(x, w, "default_secure_protocols_wow64",
            dword_fact(x, K_WINHTTP_WOW64, "DefaultSecureProtocols"));
    }
    return w;
}

static json_t *extract_dotnet(struct extraction *x)
{
    static const char *const keys[][2] = {
        {"v4", "HKLM\\SOFTWARE\\Microsoft\\.NETFramework\\v4.0.30319"},
        {"v4_wow64", "HKLM\\SOFTWARE\\Wow6432Node\\Microsoft\\.NETFramework\\v4.0.30319"},
        {"v2", "HKLM\\SOFTWARE\\Microsoft\\.NETFramework\\v2.0.50727"},
        {"v2_wow64", "HKLM\\SOFTWARE\\Wow6432Node\\Microsoft\\.NETFramework\\v2.0.50727"},
    };
    json_t *dn = json_object();
    if (!dn)
        return NULL;
    put(x, dn, "release", dword_fact(x, K_NDP_V4_FULL, "Release"));
    /* .NET 3.5 (CLR 2.0, the v2.0.50727 keys): installed when NDP\v3.5 Install=1; a missing
     * key is "not installed" (false), never null, so a report says which it is. */
    uint32_t inst35 = 0;
    put(x, dn, "v35_installed",
        json_boolean(read_dword(x, K_NDP_V35, "Install", &inst35) == 0 && inst35 == 1));
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        json_t *k = json_object();
        if (k) {
            put(x, k, "strong_crypto", dword_fact(x, keys[i][1], "SchUseStrongCrypto"));
            put(x, k, "system_default_tls", dword_fact(x, keys[i][1], "SystemDefaultTlsVersions"));
        }
        put(x, dn, keys[i][0], k);
    }
    return dn;
}

/* ---- sql -------------------------------------------------------------------------------- */

static int name_cmp(const void *a, const void *b)
{
    const char *sa = *(const char *const *)a, *sb = *(const char *const *)b;
    int c = strcasecmp(sa, sb);
    return c ? c : strcmp(sa, sb);
}

static json_t *sql_instance(struct extraction *x, const char *list_key, const char *name)
{
    json_t *inst = json_object();
    if (!inst)
        return NULL;
    put(x, inst, "name", string_json(x, list_key, name, strdup(name)));
    char *id = NULL;
    char setup[KEY_MAX] = "", current[KEY_MAX] = "";
    if (read_string(x, list_key, name, &id) == 0) {
        /* The id becomes part of a key path: one path component, bounded. */
        if (id[0] == '\0' || strchr(id, '\\') || strlen(id) > 128) {
            warn(x, list_key, name, "not an instance id; reported as null");
            free(id);
            id = NULL;
        } else {
            snprintf(setup, sizeof(setup), "%s\\%s\\Setup", K_SQL_ROOT, id);
            /* SSRS 2017 and later keep their version under MSSQLServer\CurrentVersion. */
            snprintf(current, sizeof(current), "%s\\%s\\MSSQLServer\\CurrentVersion", K_SQL_ROOT,
                     id);
        }
    }
    put(x, inst, "id", id ? string_json(x, list_key, name, id) : json_null());
    json_t *version = setup[0] ? string_fact(x, setup, "Version") : json_null();
    if (json_is_null(version) && current[0])
        version = string_fact(x, current, "CurrentVersion");
    put(x, inst, "version", version);
    put(x, inst, "patch_level", setup[0] ? string_fact(x, setup, "PatchLevel") : json_null());
    put(x, inst, "edition", setup[0] ? string_fact(x, setup, "Edition") : json_null());
    return inst;
}

/* The instances listed under `list_key` ("Instance Names\\SQL" for the engine, "...\\RS" for
 * Reporting Services), each with its Setup key's Version, PatchLevel and Edition. */
static json_t *sql_instances(struct extraction *x, const char *list_key)
{
    json_t *list = json_array();
    char **names;
    int rc = regview_list_values(x->v, list_key, &names);
    if (rc == -ENOENT || !list)
        return list;
    if (rc) {
        hard_error(x, rc, list_key, "");
        return list;
    }
    size_t n = 0;
    while (names[n])
        n++;
    qsort(names, n, sizeof(names[0]), name_cmp);
    for (size_t i = 0; i < n; i++) {
        if (names[i][0] == '\0') /* the key's default value is not an instance */
            continue;
        if (json_array_size(list) == SQL_INSTANCES_MAX) {
            warn(x, list_key, NULL, "more than 64 instances; the rest are not listed");
            break;
        }
        if (json_array_append_new(list, sql_instance(x, list_key, names[i])) != 0)
            hard_error(x, -ENOMEM, list_key, names[i]);
    }
    regview_strv_free(names);
    return list;
}

static json_t *extract_sql(struct extraction *x)
{
    json_t *sql = json_object();
    if (!sql)
        return NULL;
    put(x, sql, "instances", sql_instances(x, K_SQL_INSTANCES));
    put(x, sql, "rs_instances", sql_instances(x, K_RS_INSTANCES));
    json_t *snac = string_fact(x, K_SNAC11 "\\CurrentVersion", "Version");
    if (json_is_null(snac))
        snac = string_fact(x, K_SNAC11, "InstalledVersion");
    put(x, sql, "native_client_11", snac);
    put(x, sql, "odbc_17", string_fact(x, K_ODBC17, "InstalledVersion"));
    put(x, sql, "odbc_18", string_fact(x, K_ODBC18, "InstalledVersion"));
    return sql;
}

/* ---- wsus, fips ------------------------------------------------------------------------- */

static json_t *extract_wsus(struct extraction *x)
{
    json_t *w = json_object();
    if (!w)
        return NULL;
    char **names;
    int rc = regview_list_values(x->v, K_WSUS_SETUP, &names);
    if (rc == 0)
        regview_strv_free(names);
    else if (rc != -ENOENT)
        hard_error(x, rc, K_WSUS_SETUP, "");
    put(x, w, "installed", json_boolean(rc == 0));
    put(x, w, "version", rc == 0 ? string_fact(x, K_WSUS_SETUP, "VersionString") : json_null());
    return w;
}

static json_t *extract_fips(struct extraction *x)
{
    uint32_t d;
    return read_dword(x, K_FIPS, "Enabled", &d) ? json_null() : json_boolean(d != 0);
}

int facts_extract(struct regview *v, json_t **facts, char *err, size_t errsize)
{
    *facts = NULL;
    struct extraction x = {.v = v, .warnings = json_array(), .rc = 0};
    json_t *f = json_object();
    if (!f || !x.warnings) {
        json_decref(f);
        json_decref(x.warnings);
        snprintf(err, errsize, "out of memory");
        return -ENOMEM;
    }
    put(&x, f, "os", extract_os(&x));
    extract_updates(&x, f);
    put(&x, f, "schannel", extract_schannel(&x));
    put(&x, f, "winhttp", extract_winhttp(&x));
    put(&x, f, "dotnet", extract_dotnet(&x));
    put(&x, f, "sql", extract_sql(&x));
    put(&x, f, "wsus", extract_wsus(&x));
    put(&x, f, "fips", extract_fips(&x));
    if (json_array_size(x.warnings) > 0)
        put(&x, f, "extraction_warnings", json_incref(x.warnings));
    json_decref(x.warnings);
    if (x.rc) {
        json_decref(f);
        snprintf(err, errsize, "%s: %s", x.where, strerror(-x.rc));
        return x.rc;
    }
    *facts = f;
    return 0;
}

/* ---- facts files and whole reports ------------------------------------------------------ */

static const char *const fact_members[] = {
    "os",     "hotfixes", "updates", "schannel", "winhttp",
    "dotnet", "sql",      "wsus",    "fips",     "extraction_warnings",
};

/* Reads at most REPORT_MAX_BYTES + 1 bytes, so an oversize file is refused without reading it
 * all. */
static int read_capped(const char *path, char **buf, size_t *len, char *err, size_t errsize)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        int e = errno;
        snprintf(err, errsize, "%s: %s", path, strerror(e));
        return -e;
    }
    char *b = malloc(REPORT_MAX_BYTES + 1);
    if (!b) {
        fclose(f);
        snprintf(err, errsize, "%s: out of memory", path);
        return -ENOMEM;
    }
    errno = 0;
    size_t n = fread(b, 1, REPORT_MAX_BYTES + 1, f);
    int e = ferror(f) ? (errno ? errno : EIO) : 0;
    fclose(f);
    if (e) {
        free(b);
        snprintf(err, errsize, "%s: %s", path, strerror(e));
        return -e;
    }
    if (n > REPORT_MAX_BYTES) {
        free(b);
        snprintf(err, errsize, "%s: facts file is over the %d-byte cap", path, REPORT_MAX_BYTES);
        return -E2BIG;
    }
    *buf = b;
    *len = n;
    return 0;
}

int facts_load_file(const char *path, json_t **facts, char *err, size_t errsize)
{
    *facts = NULL;
    char *buf = NULL;
    size_t len = 0;
    int rc = read_capped(path, &buf, &len, err, errsize);
    if (rc)
        return rc;
    json_error_t je;
    json_t *doc = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &je);
    free(buf);
    if (!doc) {
        snprintf(err, errsize, "%s:%d:%d: invalid JSON: %s", path, je.line, je.column, je.text);
        return -EINVAL;
    }
    char why[256];
    if (report_validate_facts(doc, why, sizeof(why)) != 0) {
        snprintf(err, errsize, "%s: %s", path, why);
        json_decref(doc);
        return -EINVAL;
    }
    /* Only the facts: a whole report's envelope and unknown members are left behind. */
    json_t *f = json_object();
    for (size_t i = 0; f && i < sizeof(fact_members) / sizeof(fact_members[0]); i++) {
        json_t *v = json_object_get(doc, fact_members[i]);
        if (v && json_object_set(f, fact_members[i], v) != 0) {
            json_decref(f);
            f = NULL;
        }
    }
    json_decref(doc);
    if (!f) {
        snprintf(err, errsize, "%s: out of memory", path);
        return -ENOMEM;
    }
    *facts = f;
    return 0;
}

json_t *facts_build_report(json_t *facts, const char *host, long long collected_at,
                           const char *source, long interval)
{
    char when[32];
    if (!report_format_time(collected_at, when, sizeof(when)))
        return NULL;
    json_t *r = json_object();
    if (!r)
        return NULL;
    /* json_object_set_new consumes its value even when it fails (or is given NULL). */
    int bad = json_object_set_new(r, "schema", json_string(REPORT_SCHEMA));
    bad |= json_object_set_new(r, "host", json_string(host));
    bad |= json_object_set_new(r, "collected_at", json_string(when));
    bad |= json_object_set_new(r, "collector",
                               json_pack("{s:s, s:s, s:I}", "version", TLSGATE_VERSION, "source",
                                         source, "interval", (json_int_t)interval));
    if (bad) {
        json_decref(r);
        return NULL;
    }
    /* Deep copies: the caller keeps its facts and may change them after the report is built. */
    const char *key;
    json_t *v;
    json_object_foreach(facts, key, v)
    {
        if (json_object_set_new(r, key, json_deep_copy(v)) != 0) {
            json_decref(r);
            return NULL;
        }
    }
    return r;
}
