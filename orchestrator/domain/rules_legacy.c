/*
 * rules_legacy.c — SCHANNEL's protocol defaults per OS build (what an absent Enabled or
 * DisabledByDefault means, for protocol_enabled and here) and, for orphan risk, whether a
 * server has the legacy protocols (SSL 3.0, TLS 1.0, TLS 1.1) off: rules_legacy_disabled, the
 * value ingest stores in report.legacy_disabled.
 */
#include "rules_int.h"

/*
 * SCHANNEL defaults per OS build (tls12-facts.md §1.2, S12/S15): whether the protocol is on
 * when neither Enabled nor DisabledByDefault is set.
 */
/* The last build released before TLS 1.0 and 1.1 were turned off by default (S19: Windows 11
 * Insider builds from September 2023 and later releases; in-market versions up to Windows 11
 * 23H2 / Server 2022 keep them on). */
#define LEGACY_ON_LAST_BUILD 22631

bool rules__protocol_default_on(enum proto p, long build)
{
    switch (p) {
    case P_SSL3: return build < 14393; /* off by default from 1607 / Server 2016 (S12, S13) */
    case P_TLS10: return build <= LEGACY_ON_LAST_BUILD; /* S19 */
    case P_TLS11: /* Windows 7 / 2008 R2 / 2008 SP2: off (S12); later releases: off (S19) */
        return build >= 9200 && build <= LEGACY_ON_LAST_BUILD;
    case P_TLS12: return build >= 9200;  /* Windows 7 / 2008 R2 / 2008 SP2: off (S12) */
    case P_TLS13: return build >= 20348; /* Server 2022, Windows 11 (S12) */
    default: return false;
    }
}

/*
 * For orphan risk: is the legacy protocol off on the server side? Off when Enabled=0, when
 * DisabledByDefault=1 (IIS and HTTP.sys do not ask for a protocol by name, so they do not
 * negotiate it), or when the value is absent and the OS default is off (per build, as the
 * rules read it). When a value is absent and the build is not reported, the default is unknown:
 * count it as off, so that the doubt raises the orphan-risk alarm instead of hiding it.
 */
static bool legacy_server_off(json_t *report, enum proto p)
{
    json_t *side = json_object_get(
        json_object_get(json_object_get(report, "schannel"), rules__proto_keys[p]), "server");
    json_t *en = json_object_get(side, "enabled"),
           *dbd = json_object_get(side, "disabled_by_default");
    json_t *b = json_object_get(json_object_get(report, "os"), "build");
    if (json_is_integer(en) && json_integer_value(en) == 0)
        return true;
    if (json_is_integer(dbd) && json_integer_value(dbd) != 0)
        return true;
    if (json_is_integer(en) && json_is_integer(dbd))
        return false; /* Enabled != 0 and DisabledByDefault = 0: on */
    if (!json_is_integer(b))
        return true;
    bool def = rules__protocol_default_on(p, (long)json_integer_value(b));
    /* Enabled=1 with DisabledByDefault absent: on only where the protocol is on by default */
    return !def;
}

int rules_legacy_disabled(json_t *report)
{
    return legacy_server_off(report, P_SSL3) && legacy_server_off(report, P_TLS10) &&
           legacy_server_off(report, P_TLS11);
}

static const char *const legacy_paths[] = {"schannel.ssl3.server", "schannel.tls10.server",
                                           "schannel.tls11.server", "os.build"};

size_t rules_legacy_reads(const char *const **paths)
{
    *paths = legacy_paths;
    return sizeof(legacy_paths) / sizeof(legacy_paths[0]);
}
