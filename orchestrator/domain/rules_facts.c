/*
 * rules_facts.c — the facts a report carries and the version numbers rules compare.
 *
 * Facts are addressed by path ("schannel.tls12.client.enabled"); the table `facts` below is the
 * complete list of what a report carries (schema/report.example.json), with each fact's type,
 * so a catalog that names an unknown fact, or compares a number as a version, is refused at load.
 */
#include "rules_int.h"

#include <ctype.h>
#include <errno.h>
#include <string.h>

/* ---------------------------------------------------------------------------------------- */
/* Facts                                                                                     */

#define SCH_SIDE(p, name, side, Side)                                                              \
    {"schannel." p "." side ".enabled", F_NUM, "SCHANNEL " name "\\" Side " Enabled", false},      \
    {                                                                                              \
        "schannel." p "." side ".disabled_by_default", F_NUM,                                      \
            "SCHANNEL " name "\\" Side " DisabledByDefault", false                                 \
    }
#define SCH(p, name) SCH_SIDE(p, name, "client", "Client"), SCH_SIDE(p, name, "server", "Server")
#define NETKEY(k, name)                                                                            \
    {"dotnet." k ".strong_crypto", F_NUM, name " SchUseStrongCrypto", false},                      \
    {                                                                                              \
        "dotnet." k ".system_default_tls", F_NUM, name " SystemDefaultTlsVersions", false          \
    }

static const struct fact facts[] = {
    {"os.product_name", F_STR, NULL, false},
    {"os.version", F_STR, NULL, false},
    {"os.build", F_NUM, "OS build", false},
    {"os.ubr", F_NUM, NULL, false},
    {"os.arch", F_STR, "OS architecture", false},
    {"os.installation_type", F_STR, "InstallationType", false},
    {"os.csd_version", F_STR, NULL, false},
    {"os.product_type", F_STR, "ProductType", false},
    /* Derived (fact_value): "server" or "client", from ProductType, else InstallationType. */
    {"os.kind", F_STR, "server or client (ProductType, InstallationType)", false},
    {"hotfixes", F_STRLIST, "installed updates", false},
    {"updates.installed", F_STRLIST, "installed updates (CBS CurrentState)", false},
    {"updates.rollup", F_STR, "installed rollup (Package_for_RollupFix)", false},
    SCH("ssl2", "SSL 2.0"),
    SCH("ssl3", "SSL 3.0"),
    SCH("tls10", "TLS 1.0"),
    SCH("tls11", "TLS 1.1"),
    SCH("tls12", "TLS 1.2"),
    SCH("tls13", "TLS 1.3"),
    {"winhttp.default_secure_protocols", F_NUM, "WinHttp DefaultSecureProtocols (native)", true},
    {"winhttp.default_secure_protocols_wow64", F_NUM,
     "WinHttp DefaultSecureProtocols (Wow6432Node)", true},
    {"dotnet.release", F_NUM, ".NET Framework 4 Release", false},
    {"dotnet.v35_installed", F_BOOL, ".NET Framework 3.5 (NDP\\v3.5 Install)", false},
    NETKEY("v4", ".NETFramework\\v4.0.30319"),
    NETKEY("v4_wow64", "Wow6432Node .NETFramework\\v4.0.30319"),
    NETKEY("v2", ".NETFramework\\v2.0.50727"),
    NETKEY("v2_wow64", "Wow6432Node .NETFramework\\v2.0.50727"),
    {"sql.instances", F_OBJLIST, "SQL Server instances", false},
    {"sql.rs_instances", F_OBJLIST, "Reporting Services instances", false},
    {"sql.native_client_11", F_STR, "SQL Server Native Client 11.0", false},
    {"sql.odbc_17", F_STR, "ODBC Driver 17 for SQL Server", false},
    {"sql.odbc_18", F_STR, "ODBC Driver 18 for SQL Server", false},
    {"wsus.installed", F_BOOL, "WSUS", false},
    {"wsus.version", F_STR, "WSUS version", false},
    {"fips", F_BOOL, "FIPS policy", false},
};
#define NFACTS (sizeof(facts) / sizeof(facts[0]))

/* Members of one sql.instances element ("@.name"). `engine` is derived: patch_level, else
 * version, with the service-pack digit taken out of the minor part (12.1.4100.1 -> 12.0.4100.1,
 * 10.53.6000.34 -> 10.50.6000.34), which is how KB3135244 writes its build table. */
static const struct fact instance_facts[] = {
    {"@.name", F_STR, "instance name", false}, {"@.id", F_STR, "instance id", false},
    {"@.version", F_STR, "Version", false},    {"@.patch_level", F_STR, "PatchLevel", false},
    {"@.edition", F_STR, "Edition", false},    {"@.engine", F_STR, "engine build", false},
};
#define NINSTANCE_FACTS (sizeof(instance_facts) / sizeof(instance_facts[0]))

const struct fact *rules__fact_find(const char *path, bool element)
{
    const struct fact *t = element ? instance_facts : facts;
    size_t n = element ? NINSTANCE_FACTS : NFACTS;
    for (size_t i = 0; i < n; i++)
        if (!strcmp(t[i].path, path))
            return &t[i];
    return NULL;
}

const char *rules__fact_label(const struct fact *f) { return f->label ? f->label : f->path; }

/* ---------------------------------------------------------------------------------------- */
/* Versions: up to four dot-separated numbers; in thresholds a part may be "*" (ignored).     */

int rules__version_parse(const char *s, struct version *v, bool allow_wild)
{
    memset(v, 0, sizeof(*v));
    int n = 0;
    const char *p = s;
    for (;;) {
        if (n == 4)
            return -EINVAL;
        if (allow_wild && *p == '*') {
            v->wild |= 1u << n;
            p++;
        } else {
            if (!isdigit((unsigned char)*p))
                return -EINVAL;
            long x = 0;
            while (isdigit((unsigned char)*p)) {
                if (x > 100000000)
                    return -EINVAL;
                x = x * 10 + (*p++ - '0');
            }
            v->part[n] = x;
        }
        n++;
        if (*p == '\0')
            return 0;
        if (*p++ != '.')
            return -EINVAL;
    }
}

/* <0, 0, >0 as observed `a` is below, equal to, above threshold `t` (t's wildcards ignored). */
int rules__version_cmp(const struct version *a, const struct version *t)
{
    for (int i = 0; i < 4; i++) {
        if (t->wild & (1u << i))
            continue;
        if (a->part[i] != t->part[i])
            return a->part[i] < t->part[i] ? -1 : 1;
    }
    return 0;
}
