/*
 * test_report.c — suite 'report': what report_validate / report_parse accept and refuse, with
 * the exact message (the daemon stores it as the reason a report was refused), and the RFC 3339
 * time helpers, and the two ways facts become a report: facts files (--facts) and
 * facts_build_report. Starts from schema/report.example.json, the wire format by example.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "facts.h"
#include "regview.h"
#include "report.h"
#include "testutil.h"

static json_t *load_example(void)
{
    json_error_t je;
    json_t *r =
        json_load_file(tu_source_path("schema/report.example.json"), JSON_REJECT_DUPLICATES, &je);
    ck_assert_msg(r != NULL, "report.example.json: %d:%d: %s", je.line, je.column, je.text);
    return r;
}

/*
 * Walks "a.b[2].c" to the parent of the last step; returns the parent and puts the last step in
 * *last (a member name, or *index >= 0 for an array element).
 */
static json_t *walk(json_t *root, const char *path, char *last, size_t lastsize, long *index)
{
    char buf[256];
    snprintf(buf, sizeof(buf), "%s", path);
    json_t *cur = root;
    char *save = NULL;
    char *tok = strtok_r(buf, ".", &save);
    while (tok) {
        char *next = strtok_r(NULL, ".", &save);
        char *br = strchr(tok, '[');
        long idx = -1;
        if (br) {
            idx = strtol(br + 1, NULL, 10);
            *br = '\0';
        }
        if (!next) {
            if (idx >= 0) {
                cur = json_object_get(cur, tok);
                snprintf(last, lastsize, "%s", "");
            } else {
                snprintf(last, lastsize, "%s", tok);
            }
            *index = idx;
            return cur;
        }
        cur = json_object_get(cur, tok);
        if (idx >= 0)
            cur = json_array_get(cur, (size_t)idx);
        ck_assert_msg(cur != NULL, "test path %s does not exist in the example", path);
        tok = next;
    }
    ck_abort_msg("empty test path");
    return NULL;
}

/* Replaces (json != NULL) or removes (json == NULL) the member at path. */
static void edit(json_t *root, const char *path, const char *json)
{
    char last[64];
    long index;
    json_t *parent = walk(root, path, last, sizeof(last), &index);
    json_t *v = NULL;
    if (json) {
        json_error_t je;
        v = json_loads(json, JSON_DECODE_ANY, &je);
        ck_assert_msg(v != NULL, "bad test JSON %s", json);
    }
    if (index >= 0) {
        ck_assert(json_is_array(parent));
        if (v)
            ck_assert_int_eq(json_array_set_new(parent, (size_t)index, v), 0);
        else
            ck_assert_int_eq(json_array_remove(parent, (size_t)index), 0);
    } else {
        ck_assert(json_is_object(parent));
        if (v)
            ck_assert_int_eq(json_object_set_new(parent, last, v), 0);
        else
            ck_assert_int_eq(json_object_del(parent, last), 0);
    }
}

/* The example with one edit must be refused with exactly `want`. */
static void assert_refused(const char *path, const char *json, const char *want)
{
    json_t *r = load_example();
    edit(r, path, json);
    char err[256] = "";
    ck_assert_int_eq(report_validate(r, err, sizeof(err)), -EINVAL);
    ck_assert_str_eq(err, want);
    json_decref(r);
}

static void assert_accepted(const char *path, const char *json)
{
    json_t *r = load_example();
    edit(r, path, json);
    char err[256] = "";
    int rc = report_validate(r, err, sizeof(err));
    ck_assert_msg(rc == 0, "%s = %s refused: %s", path, json ? json : "(removed)", err);
    json_decref(r);
}

START_TEST(test_report_example_is_accepted)
{
    size_t len;
    char *buf = tu_read_file(tu_source_path("schema/report.example.json"), &len);
    ck_assert_ptr_nonnull(buf);
    json_t *r = NULL;
    char err[256] = "";
    ck_assert_msg(report_parse(buf, len, &r, err, sizeof(err)) == 0, "%s", err);
    ck_assert_str_eq(json_string_value(json_object_get(r, "host")), "cl-w7-0001.corp.contoso.com");
    json_decref(r);
    free(buf);
}
END_TEST

/* Every member the example has is required; removing it names its path. */
static const char *const required_paths[] = {
    "schema",
    "host",
    "collected_at",
    "collector",
    "collector.version",
    "collector.source",
    "collector.interval",
    "os",
    "os.product_name",
    "os.version",
    "os.build",
    "os.ubr",
    "os.arch",
    "os.installation_type",
    "os.csd_version",
    "hotfixes",
    "schannel",
    "schannel.ssl2",
    "schannel.ssl3.server",
    "schannel.tls10.client",
    "schannel.tls11.server.enabled",
    "schannel.tls12.client.enabled",
    "schannel.tls13.server.disabled_by_default",
    "winhttp",
    "winhttp.default_secure_protocols",
    "winhttp.default_secure_protocols_wow64",
    "dotnet",
    "dotnet.release",
    "dotnet.v4",
    "dotnet.v4_wow64.strong_crypto",
    "dotnet.v2.system_default_tls",
    "dotnet.v2_wow64",
    "sql",
    "sql.instances",
    "sql.instances[0].name",
    "sql.instances[0].id",
    "sql.instances[0].version",
    "sql.instances[0].patch_level",
    "sql.instances[0].edition",
    "sql.native_client_11",
    "sql.odbc_17",
    "sql.odbc_18",
    "wsus",
    "wsus.installed",
    "wsus.version",
    "fips",
};

START_TEST(test_report_refuses_missing_member_by_path)
{
    const char *path = required_paths[_i];
    char want[160];
    snprintf(want, sizeof(want), "%s: missing", path);
    assert_refused(path, NULL, want);
}
END_TEST

struct bad_value {
    const char *path, *json, *want;
};

static const struct bad_value bad_values[] = {
    {"schema", "1", "schema: must be a string"},
    {"schema", "\"tlsgate.report/2\"",
     "schema: must be \"tlsgate.report/1\", not \"tlsgate.report/2\""},
    {"host", "null", "host: must be a string"},
    {"collected_at", "1795608000", "collected_at: must be a string"},
    {"collector", "[]", "collector: must be an object"},
    {"collector.interval", "-1",
     "collector.interval: must be an integer number of seconds, 0 or more"},
    {"collector.version", "1", "collector.version: must be a string"},
    {"os", "null", "os: must be an object"},
    {"os.build", "\"7601\"", "os.build: must be an integer or null"},
    {"os.ubr", "1.5", "os.ubr: must be an integer or null"},
    {"os.product_name", "7", "os.product_name: must be a string or null"},
    {"os.arch", "\"AMD64\"", "os.arch: must be \"x64\", \"x86\", \"arm64\" or null, not \"AMD64\""},
    {"os.arch", "1", "os.arch: must be a string or null"},
    {"hotfixes", "{}", "hotfixes: must be an array or null"},
    {"hotfixes[1]", "\"3140245\"", "hotfixes[1]: must be a string \"KB\" followed by digits"},
    {"hotfixes[0]", "\"kb2533623\"", "hotfixes[0]: must be a string \"KB\" followed by digits"},
    {"hotfixes[2]", "\"KB\"", "hotfixes[2]: must be a string \"KB\" followed by digits"},
    {"hotfixes[2]", "2533623", "hotfixes[2]: must be a string \"KB\" followed by digits"},
    {"schannel", "1", "schannel: must be an object"},
    {"schannel.tls12", "null", "schannel.tls12: must be an object"},
    {"schannel.tls12.client", "1", "schannel.tls12.client: must be an object"},
    {"schannel.tls12.client.enabled", "\"1\"",
     "schannel.tls12.client.enabled: must be an integer or null"},
    {"schannel.tls12.client.enabled", "true",
     "schannel.tls12.client.enabled: must be an integer or null"},
    {"schannel.tls10.server.enabled", "-1",
     "schannel.tls10.server.enabled: must be between 0 and 4294967295, not -1"},
    {"schannel.ssl3.client.disabled_by_default", "4294967296",
     "schannel.ssl3.client.disabled_by_default: must be between 0 and 4294967295, not 4294967296"},
    {"winhttp.default_secure_protocols_wow64", "\"0xA00\"",
     "winhttp.default_secure_protocols_wow64: must be an integer or null"},
    {"dotnet.release", "4.8", "dotnet.release: must be an integer or null"},
    {"dotnet.v2_wow64", "[]", "dotnet.v2_wow64: must be an object"},
    {"dotnet.v4.strong_crypto", "false", "dotnet.v4.strong_crypto: must be an integer or null"},
    {"sql.instances", "null", "sql.instances: must be an array"},
    {"sql.instances[0]", "\"MSSQLSERVER\"", "sql.instances[0]: must be an object"},
    {"sql.instances[0].version", "12", "sql.instances[0].version: must be a string or null"},
    {"sql.odbc_18", "18", "sql.odbc_18: must be a string or null"},
    {"wsus.installed", "0", "wsus.installed: must be true, false or null"},
    {"wsus.version", "false", "wsus.version: must be a string or null"},
    {"fips", "\"false\"", "fips: must be true, false or null"},
    {"fips", "0", "fips: must be true, false or null"},
    {"extraction_warnings", "\"x\"", "extraction_warnings: must be an array of strings"},
    {"extraction_warnings", "[\"a\", 2]", "extraction_warnings[1]: must be a string"},
};

START_TEST(test_report_refuses_wrong_type_by_path)
{
    const struct bad_value *b = &bad_values[_i];
    assert_refused(b->path, b->json, b->want);
}
END_TEST

START_TEST(test_report_accepts_null_for_every_leaf_fact)
{
    static const char *const leaves[] = {
        "os.product_name",
        "os.build",
        "os.ubr",
        "os.arch",
        "hotfixes",
        "schannel.tls12.client.enabled",
        "winhttp.default_secure_protocols",
        "dotnet.release",
        "dotnet.v4.strong_crypto",
        "sql.instances[0].version",
        "sql.native_client_11",
        "wsus.installed",
        "wsus.version",
        "fips",
    };
    for (size_t i = 0; i < sizeof(leaves) / sizeof(leaves[0]); i++)
        assert_accepted(leaves[i], "null");
    assert_accepted("schannel.tls10.client.enabled", "4294967295");
    assert_accepted("sql.instances", "[]");
    assert_accepted("hotfixes", "[]");
    assert_accepted("extraction_warnings", "[\"HKLM\\\\X\\\\Release: REG_SZ, not REG_DWORD\"]");
    assert_accepted("unknown_future_member", "{\"anything\": [1, 2]}");
    assert_accepted("os.unknown_future_member", "1");
    assert_accepted("host", "\"LOCALHOST\"");
}
END_TEST

static const struct bad_value bad_hosts[] = {
    {"host", "\"\"", "host: \"\" is not a valid host name: must be 1 to 253 characters"},
    {"host", "\"cl-w7.corp..com\"",
     "host: \"cl-w7.corp..com\" is not a valid host name: has an empty label"},
    {"host", "\"cl-w7.corp.com.\"",
     "host: \"cl-w7.corp.com.\" is not a valid host name: has an empty label"},
    {"host", "\".corp.com\"", "host: \".corp.com\" is not a valid host name: has an empty label"},
    {"host", "\"-cl.corp.com\"",
     "host: \"-cl.corp.com\" is not a valid host name: has a label starting with a hyphen"},
    {"host", "\"cl-.corp.com\"",
     "host: \"cl-.corp.com\" is not a valid host name: has a label ending with a hyphen"},
    {"host", "\"cl_w7.corp.com\"",
     "host: \"cl_w7.corp.com\" is not a valid host name: may hold only letters, digits, hyphens and dots"},
    {"host", "\"cl w7.corp.com\"",
     "host: \"cl w7.corp.com\" is not a valid host name: may hold only letters, digits, hyphens and dots"},
    {"host", "\"10.0.0.1:443\"",
     "host: \"10.0.0.1:443\" is not a valid host name: may hold only letters, digits, hyphens and dots"},
    {"host", "\"h\\u00f6st.corp.com\"",
     "host: \"h\xc3\xb6st.corp.com\" is not a valid host name: may hold only letters, digits, hyphens and dots"},
};

START_TEST(test_report_refuses_bad_host)
{
    assert_refused(bad_hosts[_i].path, bad_hosts[_i].json, bad_hosts[_i].want);
}
END_TEST

START_TEST(test_report_host_length_limits)
{
    char label63[64], label64[65], json[400], want[400];
    memset(label63, 'a', 63);
    label63[63] = '\0';
    memset(label64, 'b', 64);
    label64[64] = '\0';
    snprintf(json, sizeof(json), "\"%s.corp.com\"", label63);
    assert_accepted("host", json);
    snprintf(json, sizeof(json), "\"%s.corp.com\"", label64);
    snprintf(want, sizeof(want),
             "host: \"%.64s\" is not a valid host name: has a label longer than 63 characters",
             json + 1);
    assert_refused("host", json, want);

    /* 4 labels of 63 + 3 dots = 255 > 253; 3 x 63 + 61 + 3 dots = 253 is the longest. */
    char name[300];
    snprintf(name, sizeof(name), "%s.%s.%s.%.61s", label63, label63, label63, label63);
    ck_assert_uint_eq(strlen(name), 253);
    snprintf(json, sizeof(json), "\"%s\"", name);
    assert_accepted("host", json);
    snprintf(name, sizeof(name), "%s.%s.%s.%.62s", label63, label63, label63, label63);
    snprintf(json, sizeof(json), "\"%s\"", name);
    snprintf(want, sizeof(want),
             "host: \"%.64s\" is not a valid host name: must be 1 to 253 characters", name);
    assert_refused("host", json, want);
}
END_TEST

static const char *const bad_times[] = {
    "2026-11-25 12:00:00Z",
    "2026-11-25T12:00:00",
    "2026-11-25T12:00:00+00:00",
    "2026-11-25t12:00:00z",
    "2026-11-25T12:00Z",
    "2026-13-01T00:00:00Z",
    "2026-02-29T00:00:00Z",
    "2026-04-31T00:00:00Z",
    "2026-11-25T24:00:00Z",
    "2026-11-25T12:60:00Z",
    "2026-11-25T12:00:60Z",
    "2026-11-25T12:00:00.Z",
    "2026-11-25T12:00:00.1234567890Z",
    "26-11-25T12:00:00Z",
    "2026-11-25T12:00:00Zjunk",
    "2026-00-10T00:00:00Z",
    "2026-11-00T00:00:00Z",
    "",
};

START_TEST(test_report_refuses_bad_time)
{
    char json[128], want[256];
    snprintf(json, sizeof(json), "\"%s\"", bad_times[_i]);
    snprintf(want, sizeof(want),
             "collected_at: \"%s\" is not an RFC 3339 UTC time (YYYY-MM-DDTHH:MM:SSZ)",
             bad_times[_i]);
    assert_refused("collected_at", json, want);
}
END_TEST

START_TEST(test_report_time_parse_and_format)
{
    long long t;
    char buf[32];
    ck_assert_int_eq(report_parse_time("2026-11-25T12:00:00Z", &t), 0);
    ck_assert_int_eq(t, 1795608000LL);
    ck_assert_str_eq(report_format_time(t, buf, sizeof(buf)), "2026-11-25T12:00:00Z");
    ck_assert_int_eq(report_parse_time("1970-01-01T00:00:00Z", &t), 0);
    ck_assert_int_eq(t, 0);
    ck_assert_int_eq(report_parse_time("2024-02-29T23:59:59.999Z", &t), 0);
    ck_assert_int_eq(t, 1709251199LL);
    ck_assert_str_eq(report_format_time(t, buf, sizeof(buf)), "2024-02-29T23:59:59Z");
    ck_assert_int_eq(report_parse_time("2000-02-29T00:00:00Z", &t), 0);
    ck_assert_int_eq(report_parse_time("1900-02-29T00:00:00Z", &t), -EINVAL);
    ck_assert_int_eq(report_parse_time("1969-12-31T23:59:59Z", &t), 0);
    ck_assert_int_eq(t, -1);
    ck_assert_str_eq(report_format_time(-1, buf, sizeof(buf)), "1969-12-31T23:59:59Z");
    ck_assert_str_eq(report_format_time(253402300799LL, buf, sizeof(buf)), "9999-12-31T23:59:59Z");
    ck_assert_ptr_null(report_format_time(253402300800LL, buf, sizeof(buf)));
    ck_assert_ptr_null(report_format_time(0, buf, 20));
    /* Every day of four years round-trips (covers month ends and a leap day). */
    for (long long day = 20089; day < 20089 + 4 * 366; day++) {
        long long back;
        ck_assert_ptr_nonnull(report_format_time(day * 86400 + 3723, buf, sizeof(buf)));
        ck_assert_int_eq(report_parse_time(buf, &back), 0);
        ck_assert_int_eq(back, day * 86400 + 3723);
    }
}
END_TEST

START_TEST(test_report_parse_refuses_oversize)
{
    /* 256 KiB + 1: valid JSON padded with spaces, so only the size can refuse it. */
    size_t len;
    char *example = tu_read_file(tu_source_path("schema/report.example.json"), &len);
    size_t big = REPORT_MAX_BYTES + 1;
    char *buf = malloc(big);
    memset(buf, ' ', big);
    memcpy(buf, example, len);
    json_t *r = (json_t *)1;
    char err[256] = "";
    ck_assert_int_eq(report_parse(buf, big, &r, err, sizeof(err)), -E2BIG);
    ck_assert_ptr_null(r);
    ck_assert_str_eq(err, "report is 262145 bytes, over the 262144-byte cap");
    /* Exactly at the cap it is accepted. */
    ck_assert_int_eq(report_parse(buf, REPORT_MAX_BYTES, &r, err, sizeof(err)), 0);
    json_decref(r);
    free(buf);
    free(example);
}
END_TEST

START_TEST(test_report_parse_refuses_truncated_json)
{
    size_t len;
    char *example = tu_read_file(tu_source_path("schema/report.example.json"), &len);
    json_t *r = (json_t *)1;
    char err[256] = "";
    /* Cut in the middle of line 3 ("host"). */
    const char *cut = strstr(example, "cl-w7-0001");
    ck_assert_int_eq(report_parse(example, (size_t)(cut - example), &r, err, sizeof(err)), -EINVAL);
    ck_assert_ptr_null(r);
    ck_assert_str_eq(err, "report:3:11: invalid JSON: premature end of input near '\"'");
    free(example);
}
END_TEST

START_TEST(test_report_parse_refuses_duplicate_key)
{
    static const char dup[] = "{\"schema\": \"tlsgate.report/1\",\n \"host\": \"a.example\",\n"
                              " \"host\": \"b.example\"}";
    json_t *r = (json_t *)1;
    char err[256] = "";
    ck_assert_int_eq(report_parse(dup, strlen(dup), &r, err, sizeof(err)), -EINVAL);
    ck_assert_ptr_null(r);
    ck_assert_str_eq(err, "report:3:7: invalid JSON: duplicate object key near '\"host\"'");
}
END_TEST

START_TEST(test_report_parse_refuses_non_object_and_validates)
{
    json_t *r = (json_t *)1;
    char err[256] = "";
    ck_assert_int_eq(report_parse("[1]", 3, &r, err, sizeof(err)), -EINVAL);
    ck_assert_str_eq(err, "report: must be a JSON object");
    ck_assert_ptr_null(r);
    ck_assert_int_eq(report_parse("{}", 2, &r, err, sizeof(err)), -EINVAL);
    ck_assert_str_eq(err, "schema: missing");
    ck_assert_int_eq(report_parse("", 0, &r, err, sizeof(err)), -EINVAL);
    ck_assert_ptr_null(r);
}
END_TEST

/* ---- facts files and built reports ------------------------------------------------------ */

static char *dir;

static void setup(void) { dir = tu_tmpdir(); }
static void teardown(void)
{
    tu_rmtree(dir);
    free(dir);
}

static json_t *fixture_facts(const char *reg)
{
    char rel[256];
    snprintf(rel, sizeof(rel), "tests/fixtures/reg/%s", reg);
    const char *path = tu_source_path(rel);
    struct regview *v = NULL;
    char err[512] = "";
    ck_assert_msg(regview_open_files(&path, 1, &v, err, sizeof(err)) == 0, "%s", err);
    json_t *facts = NULL;
    ck_assert_msg(facts_extract(v, &facts, err, sizeof(err)) == 0, "%s", err);
    regview_free(v);
    return facts;
}

static const char *const fixture_files[] = {
    "win7-sp1-x64-unpatched.reg",
    "win7-kb3140245-native-only.reg",
    "win81.reg",
    "win10-22h2.reg",
    "win11-23h2.reg",
    "server2012-wsus.reg",
    "server2012r2-sql2014sp1-snac.reg",
    "server2016-sql2016sp2-express.reg",
    "server2019-site-server.reg",
    "server2008r2-regedit4-ansi.reg",
};

START_TEST(test_built_report_passes_validation_and_round_trips_as_facts_file)
{
    json_t *facts = fixture_facts(fixture_files[_i]);
    json_t *r =
        facts_build_report(facts, "cl-w7-0001.corp.contoso.com", 1795608000LL, "regfile", 900);
    ck_assert_ptr_nonnull(r);
    char err[256] = "";
    ck_assert_msg(report_validate(r, err, sizeof(err)) == 0, "%s: %s", fixture_files[_i], err);
    ck_assert_str_eq(json_string_value(json_object_get(r, "schema")), "tlsgate.report/1");
    ck_assert_str_eq(json_string_value(json_object_get(r, "collected_at")), "2026-11-25T12:00:00Z");
    json_t *c = json_object_get(r, "collector");
    ck_assert_str_eq(json_string_value(json_object_get(c, "version")), TLSGATE_VERSION);
    ck_assert_str_eq(json_string_value(json_object_get(c, "source")), "regfile");
    ck_assert_int_eq(json_integer_value(json_object_get(c, "interval")), 900);

    /* Serialised, parsed back as the daemon would, and loaded again as a facts file: the same
     * facts come out (the envelope is left behind). */
    char *text = json_dumps(r, JSON_COMPACT);
    json_t *parsed = NULL;
    ck_assert_msg(report_parse(text, strlen(text), &parsed, err, sizeof(err)) == 0, "%s", err);
    ck_assert(json_equal(parsed, r));
    const char *path = tu_path(dir, "report.json");
    tu_write_file(path, text, strlen(text));
    json_t *back = NULL;
    ck_assert_msg(facts_load_file(path, &back, err, sizeof(err)) == 0, "%s", err);
    ck_assert_msg(json_equal(back, facts), "%s: facts changed in the round trip",
                  fixture_files[_i]);
    ck_assert_ptr_null(json_object_get(back, "host"));
    ck_assert_ptr_null(json_object_get(back, "collector"));

    /* The report holds copies: changing the caller's facts afterwards does not reach it. */
    json_object_set_new(json_object_get(facts, "os"), "build", json_integer(1));
    ck_assert(json_equal(parsed, r));
    free(text);
    json_decref(parsed);
    json_decref(back);
    json_decref(r);
    json_decref(facts);
}
END_TEST

START_TEST(test_facts_file_of_facts_only_loads_and_keeps_warnings)
{
    json_t *f = NULL;
    char err[256] = "";
    const char *path = tu_source_path("tests/fixtures/facts/win81.json");
    ck_assert_msg(facts_load_file(path, &f, err, sizeof(err)) == 0, "%s", err);
    ck_assert_uint_eq(json_array_size(json_object_get(f, "extraction_warnings")), 1);
    ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(f, "os"), "build")), 9600);
    json_decref(f);

    /* A whole report is a facts file too; unknown members are dropped. */
    ck_assert_int_eq(
        facts_load_file(tu_source_path("schema/report.example.json"), &f, err, sizeof(err)), 0);
    ck_assert_uint_eq(json_object_size(f), 9);
    ck_assert(json_is_false(json_object_get(f, "fips")));
    json_decref(f);
}
END_TEST

START_TEST(test_facts_file_refusals_name_file_and_field)
{
    json_t *f = (json_t *)1;
    char err[512] = "", want[600];
    const char *missing = tu_path(dir, "missing.json");
    ck_assert_int_eq(facts_load_file(missing, &f, err, sizeof(err)), -ENOENT);
    ck_assert_ptr_null(f);
    snprintf(want, sizeof(want), "%s: No such file or directory", missing);
    ck_assert_str_eq(err, want);

    /* A folder opens but cannot be read. */
    ck_assert_int_eq(facts_load_file(dir, &f, err, sizeof(err)), -EISDIR);
    snprintf(want, sizeof(want), "%s: Is a directory", dir);
    ck_assert_str_eq(err, want);

    const char *bad = tu_path(dir, "bad.json");
    tu_write_file(bad, "{\"os\": {}\n,", 11);
    ck_assert_int_eq(facts_load_file(bad, &f, err, sizeof(err)), -EINVAL);
    snprintf(want, sizeof(want), "%s:2:1: invalid JSON: string or '}' expected near end of file",
             bad);
    ck_assert_str_eq(err, want);

    /* The example with one fact of the wrong type. */
    json_t *r = load_example();
    edit(r, "schannel.tls12.client.enabled", "\"1\"");
    char *text = json_dumps(r, 0);
    tu_write_file(bad, text, strlen(text));
    ck_assert_int_eq(facts_load_file(bad, &f, err, sizeof(err)), -EINVAL);
    ck_assert_ptr_null(f);
    snprintf(want, sizeof(want), "%s: schannel.tls12.client.enabled: must be an integer or null",
             bad);
    ck_assert_str_eq(err, want);
    free(text);
    /* Facts only: the envelope is not required of a facts file. */
    edit(r, "schannel.tls12.client.enabled", "1");
    edit(r, "host", NULL);
    edit(r, "schema", NULL);
    edit(r, "dotnet.v4", NULL);
    text = json_dumps(r, 0);
    tu_write_file(bad, text, strlen(text));
    ck_assert_int_eq(facts_load_file(bad, &f, err, sizeof(err)), -EINVAL);
    snprintf(want, sizeof(want), "%s: dotnet.v4: missing", bad);
    ck_assert_str_eq(err, want);
    free(text);
    json_decref(r);

    /* Over the cap: 256 KiB + 1 of otherwise valid JSON. */
    size_t big = REPORT_MAX_BYTES + 1;
    char *buf = malloc(big);
    memset(buf, ' ', big);
    memcpy(buf, "{}", 2);
    tu_write_file(bad, buf, big);
    ck_assert_int_eq(facts_load_file(bad, &f, err, sizeof(err)), -E2BIG);
    snprintf(want, sizeof(want), "%s: facts file is over the 262144-byte cap", bad);
    ck_assert_str_eq(err, want);
    free(buf);
}
END_TEST

START_TEST(test_report_parse_every_truncation_is_refused)
{
    size_t len;
    char *example = tu_read_file(tu_source_path("schema/report.example.json"), &len);
    size_t end = (size_t)(strrchr(example, '}') - example) + 1;
    for (size_t n = 0; n <= len; n++) {
        json_t *r = (json_t *)1;
        char err[256] = "";
        int rc = report_parse(example, n, &r, err, sizeof(err));
        if (n < end) {
            ck_assert_msg(rc == -EINVAL && r == NULL, "cut at %zu accepted", n);
            ck_assert_msg(strncmp(err, "report:", 7) == 0, "cut at %zu: %s", n, err);
        } else {
            ck_assert_msg(rc == 0, "cut at %zu: %s", n, err);
            json_decref(r);
        }
    }
    free(example);
}
END_TEST

START_TEST(test_report_parse_every_byte_mutation_is_handled)
{
    /* Each byte replaced by each of a few hostile bytes: never a crash (the ASan build runs
     * this too), a refusal always carries a message, an acceptance is a valid report. */
    static const char subst[] = {'"', '{', ']', '0', '\\', '\0', (char)0xff, '-', 'e'};
    size_t len;
    char *example = tu_read_file(tu_source_path("schema/report.example.json"), &len);
    char *buf = malloc(len);
    size_t accepted = 0;
    for (size_t i = 0; i < len; i++) {
        for (size_t k = 0; k < sizeof(subst); k++) {
            memcpy(buf, example, len);
            buf[i] = subst[k];
            json_t *r = (json_t *)1;
            char err[256] = "";
            int rc = report_parse(buf, len, &r, err, sizeof(err));
            ck_assert_msg(rc == 0 || rc == -EINVAL, "byte %zu: rc %d", i, rc);
            if (rc == 0) {
                ck_assert_int_eq(report_validate(r, err, sizeof(err)), 0);
                json_decref(r);
                accepted++;
            } else {
                ck_assert_ptr_null(r);
                ck_assert_msg(err[0] != '\0', "byte %zu: refusal without a message", i);
            }
        }
    }
    /* Mutations inside free text (product name, edition) stay valid reports. */
    ck_assert_uint_gt(accepted, 0);
    free(buf);
    free(example);
}
END_TEST

static Suite *report_suite(void)
{
    Suite *s = suite_create("report");
    TCase *tc = tu_tcase(
        s, "validate", NULL, NULL,
        TU_TESTS(test_report_example_is_accepted, test_report_accepts_null_for_every_leaf_fact,
                 test_report_host_length_limits, test_report_time_parse_and_format));
    tcase_add_loop_test(tc, test_report_refuses_missing_member_by_path, 0,
                        sizeof(required_paths) / sizeof(required_paths[0]));
    tcase_add_loop_test(tc, test_report_refuses_wrong_type_by_path, 0,
                        sizeof(bad_values) / sizeof(bad_values[0]));
    tcase_add_loop_test(tc, test_report_refuses_bad_host, 0,
                        sizeof(bad_hosts) / sizeof(bad_hosts[0]));
    tcase_add_loop_test(tc, test_report_refuses_bad_time, 0,
                        sizeof(bad_times) / sizeof(bad_times[0]));
    tu_tcase(s, "parse", NULL, NULL,
             TU_TESTS(test_report_parse_refuses_oversize, test_report_parse_refuses_truncated_json,
                      test_report_parse_refuses_duplicate_key,
                      test_report_parse_refuses_non_object_and_validates,
                      test_report_parse_every_truncation_is_refused,
                      test_report_parse_every_byte_mutation_is_handled));
    TCase *tf = tu_tcase(s, "facts", setup, teardown,
                         TU_TESTS(test_facts_file_of_facts_only_loads_and_keeps_warnings,
                                  test_facts_file_refusals_name_file_and_field));
    tcase_add_loop_test(tf, test_built_report_passes_validation_and_round_trips_as_facts_file, 0,
                        sizeof(fixture_files) / sizeof(fixture_files[0]));
    return s;
}

int main(void) { return tu_run_suite(report_suite()); }
