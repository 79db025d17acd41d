/*
 * report.c — the readiness report's validation, parsing and time format (see report.h).
 *
 * The collector validates what it is about to serve and the daemon validates what it pulled,
 * both through report_validate, so the two sides cannot drift apart. The rules are the wire
 * format of schema/report.example.json, written down for integrators in
 * schema/report.schema.json: containers (os, schannel, ...) must be present with their type;
 * every leaf fact must be present but may be null ("not reported", which is never the same as
 * 0 or ""); unknown members are ignored so a newer collector can add facts.
 *
 * Every message starts with the path of the member at fault ("schannel.tls12.client.enabled:
 * must be an integer or null"), because the daemon records it as the reason a report was refused.
 *
 * This file links only jansson: the orchestrator links it for report_parse and must not pull
 * in the collector's HTTPS stack.
 */
#include "report.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define DWORD_MAX 0xFFFFFFFFLL

/* A JSON path being walked, e.g. "schannel.tls12.client"; bounded, the schema is shallow. */
struct path {
    char buf[128];
    size_t len;
};

static void path_push(struct path *p, const char *name, size_t *saved)
{
    *saved = p->len;
    int n = snprintf(p->buf + p->len, sizeof(p->buf) - p->len, "%s%s", p->len ? "." : "", name);
    if (n > 0)
        p->len += (size_t)n < sizeof(p->buf) - p->len ? (size_t)n : sizeof(p->buf) - p->len - 1;
}

static void path_push_index(struct path *p, size_t i, size_t *saved)
{
    *saved = p->len;
    int n = snprintf(p->buf + p->len, sizeof(p->buf) - p->len, "[%zu]", i);
    if (n > 0)
        p->len += (size_t)n < sizeof(p->buf) - p->len ? (size_t)n : sizeof(p->buf) - p->len - 1;
}

static void path_pop(struct path *p, size_t saved)
{
    p->len = saved;
    p->buf[saved] = '\0';
}

static int fail(const struct path *p, char *err, size_t errsize, const char *fmt, ...)
{
    char why[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    snprintf(err, errsize, "%s: %s", p->len ? p->buf : "report", why);
    return -EINVAL;
}

/* ---- leaf checks ------------------------------------------------------------------------ */

enum leaf {
    LEAF_STRING, /* string or null */
    LEAF_DWORD,  /* integer 0..0xFFFFFFFF or null */
    LEAF_BOOL,   /* true, false or null */
};

struct member {
    const char *name;
    enum leaf type;
};

static int check_leaf(json_t *v, enum leaf type, const struct path *p, char *err, size_t errsize)
{
    if (json_is_null(v))
        return 0;
    switch (type) {
    case LEAF_STRING:
        if (!json_is_string(v))
            return fail(p, err, errsize, "must be a string or null");
        return 0;
    case LEAF_DWORD:
        if (!json_is_integer(v))
            return fail(p, err, errsize, "must be an integer or null");
        if (json_integer_value(v) < 0 || json_integer_value(v) > DWORD_MAX)
            return fail(p, err, errsize,
                        "must be between 0 and 4294967295, not %" JSON_INTEGER_FORMAT,
                        json_integer_value(v));
        return 0;
    case LEAF_BOOL:
        if (!json_is_boolean(v))
            return fail(p, err, errsize, "must be true, false or null");
        return 0;
    }
    return fail(p, err, errsize, "internal: unknown leaf type");
}

/* Looks up `name` in `obj`, which must hold it; the path is extended while checking. */
static int check_member(json_t *obj, const char *name, enum leaf type, struct path *p, char *err,
                        size_t errsize)
{
    size_t saved;
    path_push(p, name, &saved);
    json_t *v = json_object_get(obj, name);
    int rc = v ? check_leaf(v, type, p, err, errsize) : fail(p, err, errsize, "missing");
    path_pop(p, saved);
    return rc;
}

static int check_members(json_t *obj, const struct member *m, size_t n, struct path *p, char *err,
                         size_t errsize)
{
    for (size_t i = 0; i < n; i++) {
        int rc = check_member(obj, m[i].name, m[i].type, p, err, errsize);
        if (rc)
            return rc;
    }
    return 0;
}

/* Descends into obj[name], which must be an object; *child receives it. */
static int enter_object(json_t *obj, const char *name, json_t **child, struct path *p,
                        size_t *saved, char *err, size_t errsize)
{
    path_push(p, name, saved);
    *child = json_object_get(obj, name);
    if (!*child)
        return fail(p, err, errsize, "missing");
    if (!json_is_object(*child))
        return fail(p, err, errsize, "must be an object");
    return 0;
}

/* ---- host and time ---------------------------------------------------------------------- */

/* RFC 1123 host name: labels of letters, digits and inner hyphens, 1..63 each, 1..253 total. */
static bool host_is_valid(const char *s, const char **why)
{
    size_t len = strlen(s);
    if (len == 0 || len > 253) {
        *why = "must be 1 to 253 characters";
        return false;
    }
    size_t label = 0;
    for (size_t i = 0; i <= len; i++) {
        char c = s[i];
        if (c == '.' || c == '\0') {
            if (label == 0) {
                *why = "has an empty label";
                return false;
            }
            if (s[i - 1] == '-') {
                *why = "has a label ending with a hyphen";
                return false;
            }
            label = 0;
            continue;
        }
        bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
        if (!alnum && c != '-') {
            *why = "may hold only letters, digits, hyphens and dots";
            return false;
        }
        if (c == '-' && label == 0) {
            *why = "has a label starting with a hyphen";
            return false;
        }
        if (++label > 63) {
            *why = "has a label longer than 63 characters";
            return false;
        }
    }
    return true;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil). */
static long long days_from_civil(long long y, unsigned m, unsigned d)
{
    y -= m <= 2;
    long long era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (long long)doe - 719468;
}

static void civil_from_days(long long z, long long *y, unsigned *m, unsigned *d)
{
    z += 719468;
    long long era = (z >= 0 ? z : z - 146096) / 146097;
    unsigned doe = (unsigned)(z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (long long)yoe + era * 400 + (*m <= 2);
}

static bool is_leap(long long y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }

/* Reads exactly n digits; -1 if any is not a digit. */
static int digits(const char *s, int n)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

int report_parse_time(const char *s, long long *t)
{
    /* YYYY-MM-DDTHH:MM:SS[.f+]Z; fractions are accepted and dropped (reports are per second). */
    if (!s || strlen(s) < 20)
        return -EINVAL;
    int year = digits(s, 4), month = digits(s + 5, 2), day = digits(s + 8, 2);
    int hour = digits(s + 11, 2), min = digits(s + 14, 2), sec = digits(s + 17, 2);
    if (year < 0 || month < 0 || day < 0 || hour < 0 || min < 0 || sec < 0 || s[4] != '-' ||
        s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':')
        return -EINVAL;
    const char *end = s + 19;
    if (*end == '.') {
        size_t n = 0;
        while (end[1 + n] >= '0' && end[1 + n] <= '9')
            n++;
        if (n == 0 || n > 9)
            return -EINVAL;
        end += 1 + n;
    }
    if (end[0] != 'Z' || end[1] != '\0')
        return -EINVAL;
    static const int mdays[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (month < 1 || month > 12 || day < 1 ||
        day > mdays[month - 1] + (month == 2 && is_leap(year)) || hour > 23 || min > 59 || sec > 59)
        return -EINVAL;
    *t = days_from_civil(year, (unsigned)month, (unsigned)day) * 86400 + hour * 3600 + min * 60 +
         sec;
    return 0;
}

const char *report_format_time(long long t, char *buf, size_t size)
{
    /* Years 0000..9999 only: RFC 3339 has four year digits. */
    if (!buf || size < 21 || t < -62167219200LL || t > 253402300799LL)
        return NULL;
    long long days = t >= 0 ? t / 86400 : -((-t + 86399) / 86400);
    long long secs = t - days * 86400;
    long long y;
    unsigned m, d;
    civil_from_days(days, &y, &m, &d);
    snprintf(buf, size, "%04lld-%02u-%02uT%02lld:%02lld:%02lldZ", y, m, d, secs / 3600,
             secs / 60 % 60, secs % 60);
    return buf;
}

/* ---- the fact members ------------------------------------------------------------------- */

static const struct member os_members[] = {
    {"product_name", LEAF_STRING}, {"version", LEAF_STRING}, {"build", LEAF_DWORD},
    {"ubr", LEAF_DWORD},           {"arch", LEAF_STRING},    {"installation_type", LEAF_STRING},
    {"csd_version", LEAF_STRING},
};

static const char *const schannel_protocols[] = {"ssl2",  "ssl3",  "tls10",
                                                 "tls11", "tls12", "tls13"};
static const char *const schannel_sides[] = {"client", "server"};
static const struct member schannel_members[] = {
    {"enabled", LEAF_DWORD},
    {"disabled_by_default", LEAF_DWORD},
};

static const struct member winhttp_members[] = {
    {"default_secure_protocols", LEAF_DWORD},
    {"default_secure_protocols_wow64", LEAF_DWORD},
};

static const char *const dotnet_keys[] = {"v4", "v4_wow64", "v2", "v2_wow64"};
static const struct member dotnet_key_members[] = {
    {"strong_crypto", LEAF_DWORD},
    {"system_default_tls", LEAF_DWORD},
};

static const struct member sql_members[] = {
    {"native_client_11", LEAF_STRING},
    {"odbc_17", LEAF_STRING},
    {"odbc_18", LEAF_STRING},
};
static const struct member sql_instance_members[] = {
    {"name", LEAF_STRING},        {"id", LEAF_STRING},      {"version", LEAF_STRING},
    {"patch_level", LEAF_STRING}, {"edition", LEAF_STRING},
};

static const struct member wsus_members[] = {
    {"installed", LEAF_BOOL},
    {"version", LEAF_STRING},
};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* obj[name] must be an object holding exactly-typed leaves `m`. */
static int check_leaf_object(json_t *obj, const char *name, const struct member *m, size_t n,
                             struct path *p, char *err, size_t errsize)
{
    json_t *child;
    size_t saved;
    int rc = enter_object(obj, name, &child, p, &saved, err, errsize);
    if (!rc)
        rc = check_members(child, m, n, p, err, errsize);
    path_pop(p, saved);
    return rc;
}

static bool is_kb(const char *s)
{
    if ((s[0] != 'K' || s[1] != 'B') || s[2] == '\0')
        return false;
    for (s += 2; *s; s++)
        if (*s < '0' || *s > '9')
            return false;
    return true;
}

/* An optional member (added after tlsgate.report/1 was first published): absent is accepted,
 * so an older collector's report still validates, and the rules read it as "not reported". */
static int check_optional(json_t *obj, const char *name, enum leaf type, struct path *p, char *err,
                          size_t errsize)
{
    return json_object_get(obj, name) ? check_member(obj, name, type, p, err, errsize) : 0;
}

static int check_kb_array(json_t *a, struct path *p, char *err, size_t errsize)
{
    size_t saved_i;
    int rc = 0;
    for (size_t i = 0; !rc && i < json_array_size(a); i++) {
        json_t *kb = json_array_get(a, i);
        path_push_index(p, i, &saved_i);
        if (!json_is_string(kb) || !is_kb(json_string_value(kb)))
            rc = fail(p, err, errsize, "must be a string \"KB\" followed by digits");
        path_pop(p, saved_i);
    }
    return rc;
}

/* "updates" (optional): {installed: [KB...], not_installed: {KB: CurrentState or null},
 * rollup: version string or null}; null when the CBS key is absent. */
static int check_updates(json_t *facts, struct path *p, char *err, size_t errsize)
{
    json_t *u = json_object_get(facts, "updates");
    if (!u || json_is_null(u))
        return 0;
    size_t saved, saved_m, saved_k;
    int rc = 0;
    path_push(p, "updates", &saved);
    if (!json_is_object(u)) {
        rc = fail(p, err, errsize, "must be an object or null");
    } else {
        path_push(p, "installed", &saved_m);
        json_t *a = json_object_get(u, "installed");
        if (!json_is_array(a))
            rc = fail(p, err, errsize, a ? "must be an array" : "missing");
        else
            rc = check_kb_array(a, p, err, errsize);
        path_pop(p, saved_m);
        json_t *o = json_object_get(u, "not_installed");
        if (!rc) {
            path_push(p, "not_installed", &saved_m);
            if (!json_is_object(o))
                rc = fail(p, err, errsize, o ? "must be an object" : "missing");
            const char *kb;
            json_t *st;
            json_object_foreach(rc ? NULL : o, kb, st)
            {
                path_push(p, kb, &saved_k);
                if (!is_kb(kb))
                    rc = fail(p, err, errsize, "must be named \"KB\" followed by digits");
                else
                    rc = check_leaf(st, LEAF_DWORD, p, err, errsize);
                path_pop(p, saved_k);
                if (rc)
                    break;
            }
            path_pop(p, saved_m);
        }
        if (!rc)
            rc = check_member(u, "rollup", LEAF_STRING, p, err, errsize);
    }
    path_pop(p, saved);
    return rc;
}

static int check_hotfixes(json_t *facts, struct path *p, char *err, size_t errsize)
{
    size_t saved, saved_i;
    path_push(p, "hotfixes", &saved);
    json_t *a = json_object_get(facts, "hotfixes");
    int rc = 0;
    if (!a)
        rc = fail(p, err, errsize, "missing");
    else if (!json_is_null(a) && !json_is_array(a))
        rc = fail(p, err, errsize, "must be an array or null");
    for (size_t i = 0; !rc && json_is_array(a) && i < json_array_size(a); i++) {
        json_t *kb = json_array_get(a, i);
        path_push_index(p, i, &saved_i);
        if (!json_is_string(kb) || !is_kb(json_string_value(kb)))
            rc = fail(p, err, errsize, "must be a string \"KB\" followed by digits");
        path_pop(p, saved_i);
    }
    path_pop(p, saved);
    return rc;
}

static int check_schannel(json_t *facts, struct path *p, char *err, size_t errsize)
{
    json_t *sch, *proto;
    size_t saved, saved_proto;
    int rc = enter_object(facts, "schannel", &sch, p, &saved, err, errsize);
    for (size_t i = 0; !rc && i < COUNT(schannel_protocols); i++) {
        rc = enter_object(sch, schannel_protocols[i], &proto, p, &saved_proto, err, errsize);
        for (size_t s = 0; !rc && s < COUNT(schannel_sides); s++)
            rc = check_leaf_object(proto, schannel_sides[s], schannel_members,
                                   COUNT(schannel_members), p, err, errsize);
        path_pop(p, saved_proto);
    }
    path_pop(p, saved);
    return rc;
}

static int check_dotnet(json_t *facts, struct path *p, char *err, size_t errsize)
{
    json_t *dn;
    size_t saved;
    int rc = enter_object(facts, "dotnet", &dn, p, &saved, err, errsize);
    if (!rc)
        rc = check_member(dn, "release", LEAF_DWORD, p, err, errsize);
    if (!rc)
        rc = check_optional(dn, "v35_installed", LEAF_BOOL, p, err, errsize);
    for (size_t i = 0; !rc && i < COUNT(dotnet_keys); i++)
        rc = check_leaf_object(dn, dotnet_keys[i], dotnet_key_members, COUNT(dotnet_key_members), p,
                               err, errsize);
    path_pop(p, saved);
    return rc;
}

/* sql[name]: an array of instance objects; `optional` accepts its absence. */
static int check_instances(json_t *sql, const char *name, bool optional, struct path *p, char *err,
                           size_t errsize)
{
    size_t saved_list, saved_i;
    json_t *list = json_object_get(sql, name);
    if (!list && optional)
        return 0;
    int rc = 0;
    path_push(p, name, &saved_list);
    if (!list)
        rc = fail(p, err, errsize, "missing");
    else if (!json_is_array(list))
        rc = fail(p, err, errsize, "must be an array");
    for (size_t i = 0; !rc && json_is_array(list) && i < json_array_size(list); i++) {
        json_t *inst = json_array_get(list, i);
        path_push_index(p, i, &saved_i);
        if (!json_is_object(inst))
            rc = fail(p, err, errsize, "must be an object");
        else
            rc = check_members(inst, sql_instance_members, COUNT(sql_instance_members), p, err,
                               errsize);
        path_pop(p, saved_i);
    }
    path_pop(p, saved_list);
    return rc;
}

static int check_sql(json_t *facts, struct path *p, char *err, size_t errsize)
{
    json_t *sql;
    size_t saved;
    int rc = enter_object(facts, "sql", &sql, p, &saved, err, errsize);
    if (!rc)
        rc = check_members(sql, sql_members, COUNT(sql_members), p, err, errsize);
    if (!rc)
        rc = check_instances(sql, "instances", false, p, err, errsize);
    if (!rc)
        rc = check_instances(sql, "rs_instances", true, p, err, errsize);
    path_pop(p, saved);
    return rc;
}

static int check_warnings(json_t *facts, struct path *p, char *err, size_t errsize)
{
    /* Optional: the collector lists values it found with an unexpected type. */
    json_t *a = json_object_get(facts, "extraction_warnings");
    if (!a)
        return 0;
    size_t saved, saved_i;
    int rc = 0;
    path_push(p, "extraction_warnings", &saved);
    if (!json_is_array(a))
        rc = fail(p, err, errsize, "must be an array of strings");
    for (size_t i = 0; !rc && json_is_array(a) && i < json_array_size(a); i++) {
        path_push_index(p, i, &saved_i);
        if (!json_is_string(json_array_get(a, i)))
            rc = fail(p, err, errsize, "must be a string");
        path_pop(p, saved_i);
    }
    path_pop(p, saved);
    return rc;
}

/* The collector maps PROCESSOR_ARCHITECTURE to these three names; rules match on them. */
static int check_arch(json_t *facts, char *err, size_t errsize)
{
    json_t *arch = json_object_get(json_object_get(facts, "os"), "arch");
    if (!json_is_string(arch))
        return 0;
    const char *a = json_string_value(arch);
    if (strcmp(a, "x64") && strcmp(a, "x86") && strcmp(a, "arm64")) {
        snprintf(err, errsize,
                 "os.arch: must be \"x64\", \"x86\", \"arm64\" or null, not \"%.32s\"", a);
        return -EINVAL;
    }
    return 0;
}

int report_validate_facts(json_t *facts, char *err, size_t errsize)
{
    struct path p = {.buf = "", .len = 0};
    if (!json_is_object(facts))
        return fail(&p, err, errsize, "must be a JSON object");
    int rc = check_leaf_object(facts, "os", os_members, COUNT(os_members), &p, err, errsize);
    if (!rc) {
        size_t saved;
        path_push(&p, "os", &saved);
        rc = check_optional(json_object_get(facts, "os"), "product_type", LEAF_STRING, &p, err,
                            errsize);
        path_pop(&p, saved);
    }
    if (!rc)
        rc = check_arch(facts, err, errsize);
    if (!rc)
        rc = check_hotfixes(facts, &p, err, errsize);
    if (!rc)
        rc = check_updates(facts, &p, err, errsize);
    if (!rc)
        rc = check_schannel(facts, &p, err, errsize);
    if (!rc)
        rc = check_leaf_object(facts, "winhttp", winhttp_members, COUNT(winhttp_members), &p, err,
                               errsize);
    if (!rc)
        rc = check_dotnet(facts, &p, err, errsize);
    if (!rc)
        rc = check_sql(facts, &p, err, errsize);
    if (!rc)
        rc = check_leaf_object(facts, "wsus", wsus_members, COUNT(wsus_members), &p, err, errsize);
    if (!rc)
        rc = check_member(facts, "fips", LEAF_BOOL, &p, err, errsize);
    if (!rc)
        rc = check_warnings(facts, &p, err, errsize);
    return rc;
}

/* ---- the envelope ----------------------------------------------------------------------- */

/* obj[name] must be a non-empty string; *out receives it. */
static int check_string(json_t *obj, const char *name, const char **out, struct path *p, char *err,
                        size_t errsize)
{
    size_t saved;
    path_push(p, name, &saved);
    json_t *v = json_object_get(obj, name);
    int rc = 0;
    if (!v)
        rc = fail(p, err, errsize, "missing");
    else if (!json_is_string(v))
        rc = fail(p, err, errsize, "must be a string");
    else
        *out = json_string_value(v);
    path_pop(p, saved);
    return rc;
}

static int check_collector(json_t *report, struct path *p, char *err, size_t errsize)
{
    json_t *c;
    size_t saved, saved_i;
    const char *s;
    int rc = enter_object(report, "collector", &c, p, &saved, err, errsize);
    if (!rc)
        rc = check_string(c, "version", &s, p, err, errsize);
    if (!rc)
        rc = check_string(c, "source", &s, p, err, errsize);
    if (!rc) {
        path_push(p, "interval", &saved_i);
        json_t *iv = json_object_get(c, "interval");
        if (!iv)
            rc = fail(p, err, errsize, "missing");
        else if (!json_is_integer(iv) || json_integer_value(iv) < 0)
            rc = fail(p, err, errsize, "must be an integer number of seconds, 0 or more");
        path_pop(p, saved_i);
    }
    path_pop(p, saved);
    return rc;
}

int report_validate(json_t *report, char *err, size_t errsize)
{
    struct path p = {.buf = "", .len = 0};
    if (!json_is_object(report))
        return fail(&p, err, errsize, "must be a JSON object");
    const char *s;
    int rc = check_string(report, "schema", &s, &p, err, errsize);
    if (rc)
        return rc;
    if (strcmp(s, REPORT_SCHEMA) != 0) {
        snprintf(err, errsize, "schema: must be \"%s\", not \"%.64s\"", REPORT_SCHEMA, s);
        return -EINVAL;
    }

    if ((rc = check_string(report, "host", &s, &p, err, errsize)))
        return rc;
    const char *why;
    if (!host_is_valid(s, &why)) {
        snprintf(err, errsize, "host: \"%.64s\" is not a valid host name: %s", s, why);
        return -EINVAL;
    }

    if ((rc = check_string(report, "collected_at", &s, &p, err, errsize)))
        return rc;
    long long t;
    if (report_parse_time(s, &t)) {
        snprintf(err, errsize,
                 "collected_at: \"%.64s\" is not an RFC 3339 UTC time "
                 "(YYYY-MM-DDTHH:MM:SSZ)",
                 s);
        return -EINVAL;
    }

    if ((rc = check_collector(report, &p, err, errsize)))
        return rc;
    return report_validate_facts(report, err, errsize);
}

int report_parse(const char *buf, size_t len, json_t **out, char *err, size_t errsize)
{
    *out = NULL;
    if (len > REPORT_MAX_BYTES) {
        snprintf(err, errsize, "report is %zu bytes, over the %d-byte cap", len, REPORT_MAX_BYTES);
        return -E2BIG;
    }
    json_error_t je;
    json_t *r = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &je);
    if (!r) {
        snprintf(err, errsize, "report:%d:%d: invalid JSON: %s", je.line, je.column, je.text);
        return -EINVAL;
    }
    int rc = report_validate(r, err, errsize);
    if (rc) {
        json_decref(r);
        return rc;
    }
    *out = r;
    return 0;
}
