/*
 * test_facts.c — suite 'facts': every per-OS registry export under tests/fixtures/reg/ (real
 * UTF-16LE files as `reg export` writes them, one REGEDIT4 ANSI file; readable sources in
 * tests/fixtures/reg/src/, turned into .reg with tools/mkreg) extracts to exactly the facts in
 * tests/fixtures/facts/NAME.json. Smaller cases pin one rule each: absent is null, wrong types
 * are null plus a warning, KB numbers are unique and in numeric order.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "facts.h"
#include "regview.h"
#include "report.h"
#include "testutil.h"

/* A fixture: the .reg files given to the collector, in layering order, and its expected facts. */
struct fixture {
    const char *name;
    const char *files[3];
};

static const struct fixture fixtures[] = {
    {"win7-sp1-x64-unpatched", {"win7-sp1-x64-unpatched.reg"}},
    {"win7-kb3140245-native-only", {"win7-kb3140245-native-only.reg"}},
    /* The unpatched export, then an export of the keys the rollout changed (and a deleted key). */
    {"win7-ready", {"win7-sp1-x64-unpatched.reg", "win7-ready.reg"}},
    {"win81", {"win81.reg"}},
    {"win10-22h2", {"win10-22h2.reg"}},
    {"win11-23h2", {"win11-23h2.reg"}},
    {"server2012-wsus", {"server2012-wsus.reg"}},
    {"server2012r2-sql2014sp1-snac", {"server2012r2-sql2014sp1-snac.reg"}},
    {"server2016-sql2016sp2-express", {"server2016-sql2016sp2-express.reg"}},
    {"server2019-site-server", {"server2019-site-server.reg"}},
    {"server2008r2-regedit4-ansi", {"server2008r2-regedit4-ansi.reg"}},
    /* One verdict case each (tests/test_rules.c "cases"), written by regen-facts too. */
    {"case-server2008r2-legacy-tls11-default-off",
     {"case-server2008r2-legacy-tls11-default-off.reg"}},
    {"case-server2008r2-sql2008r2sp2-x64", {"case-server2008r2-sql2008r2sp2-x64.reg"}},
    {"case-server2008sp2-core", {"case-server2008sp2-core.reg"}},
    {"case-server2012r2-core-wsus", {"case-server2012r2-core-wsus.reg"}},
    {"case-server2012r2-ssrs2014-no-net35-update",
     {"case-server2012r2-ssrs2014-no-net35-update.reg"}},
    {"case-server2016-legacy-disabled-by-default",
     {"case-server2016-legacy-disabled-by-default.reg"}},
    {"case-server2019-dsp-wow64-without-tls12", {"case-server2019-dsp-wow64-without-tls12.reg"}},
    {"case-server2019-legacy-off-by-default", {"case-server2019-legacy-off-by-default.reg"}},
    {"case-win10-dsp-without-tls12", {"case-win10-dsp-without-tls12.reg"}},
    {"case-win7-enabled-dbd-absent", {"case-win7-enabled-dbd-absent.reg"}},
    {"case-win7-kb3140245-staged", {"case-win7-kb3140245-staged.reg"}},
    {"case-win7-rtm-7600", {"case-win7-rtm-7600.reg"}},
    {"case-win8-client", {"case-win8-client.reg"}},
};

static void assert_json_equal(json_t *got, json_t *want, const char *what)
{
    if (json_equal(got, want))
        return;
    char *g = json_dumps(got, JSON_SORT_KEYS | JSON_INDENT(1));
    char *w = json_dumps(want, JSON_SORT_KEYS | JSON_INDENT(1));
    ck_abort_msg("%s: extracted facts differ\n--- got:\n%s\n--- want:\n%s", what, g, w);
}

static json_t *extract_files(const char *const *files, size_t n)
{
    const char *paths[4];
    char bufs[4][4096];
    for (size_t i = 0; i < n; i++) {
        char rel[256];
        snprintf(rel, sizeof(rel), "tests/fixtures/reg/%s", files[i]);
        snprintf(bufs[i], sizeof(bufs[i]), "%s", tu_source_path(rel));
        paths[i] = bufs[i];
    }
    struct regview *v = NULL;
    char err[512] = "";
    ck_assert_msg(regview_open_files(paths, n, &v, err, sizeof(err)) == 0, "%s", err);
    json_t *facts = NULL;
    ck_assert_msg(facts_extract(v, &facts, err, sizeof(err)) == 0, "%s", err);
    regview_free(v);
    return facts;
}

/* Extracts facts from a REGEDIT4 text given in memory (UTF-8). */
static json_t *extract_text(const char *text)
{
    struct regview *v = NULL;
    char err[512] = "";
    ck_assert_msg(regview_open_buffer("inline.reg", text, strlen(text), &v, err, sizeof(err)) == 0,
                  "%s", err);
    json_t *facts = NULL;
    ck_assert_msg(facts_extract(v, &facts, err, sizeof(err)) == 0, "%s", err);
    regview_free(v);
    return facts;
}

static json_t *load_expected(const char *name)
{
    char rel[256];
    snprintf(rel, sizeof(rel), "tests/fixtures/facts/%s.json", name);
    json_error_t je;
    json_t *want = json_load_file(tu_source_path(rel), JSON_REJECT_DUPLICATES, &je);
    ck_assert_msg(want != NULL, "%s:%d:%d: %s", rel, je.line, je.column, je.text);
    return want;
}

START_TEST(test_facts_fixture_extracts_exactly_its_expected_facts)
{
    const struct fixture *fx = &fixtures[_i];
    size_t n = 0;
    while (n < 3 && fx->files[n])
        n++;
    json_t *got = extract_files(fx->files, n);
    json_t *want = load_expected(fx->name);
    assert_json_equal(got, want, fx->name);
    /* The expected facts are themselves valid report facts. */
    char err[256] = "";
    ck_assert_msg(report_validate_facts(got, err, sizeof(err)) == 0, "%s: %s", fx->name, err);
    json_decref(got);
    json_decref(want);
}
END_TEST

/* The facts of a registry that has none of the keys: every fact null, nothing invented. */
static const char all_absent[] =
    "{\"os\": {\"product_name\": null, \"version\": null, \"build\": null, \"ubr\": null,"
    " \"arch\": null, \"installation_type\": null, \"csd_version\": null,"
    " \"product_type\": null},"
    " \"hotfixes\": null, \"updates\": null,"
    " \"schannel\": {"
    "  \"ssl2\": {\"client\": {\"enabled\": null, \"disabled_by_default\": null},"
    "            \"server\": {\"enabled\": null, \"disabled_by_default\": null}},"
    "  \"ssl3\": {\"client\": {\"enabled\": null, \"disabled_by_default\": null},"
    "            \"server\": {\"enabled\": null, \"disabled_by_default\": null}},"
    "  \"tls10\": {\"client\": {\"enabled\": null, \"disabled_by_default\": null},"
    "             \"server\": {\"enabled\": null, \"disabled_by_default\": null}},"
    "  \"tls11\": {\"client\": {\"enabled\": null, \"disabled_by_default\": null},"
    "             \"server\": {\"enabled\": null, \"disabled_by_default\": null}},"
    "  \"tls12\": {\"client\": {\"enabled\": null, \"disabled_by_default\": null},"
    "             \"server\": {\"enabled\": null, \"disabled_by_default\": null}},"
    "  \"tls13\": {\"client\": {\"enabled\": null, \"disabled_by_default\": null},"
    "             \"server\": {\"enabled\": null, \"disabled_by_default\": null}}},"
    " \"winhttp\": {\"default_secure_protocols\": null, \"default_secure_protocols_wow64\": null},"
    " \"dotnet\": {\"release\": null,"
    "  \"v4\": {\"strong_crypto\": null, \"system_default_tls\": null},"
    "  \"v4_wow64\": {\"strong_crypto\": null, \"system_default_tls\": null},"
    "  \"v2\": {\"strong_crypto\": null, \"system_default_tls\": null},"
    "  \"v2_wow64\": {\"strong_crypto\": null, \"system_default_tls\": null},"
    "  \"v35_installed\": false},"
    " \"sql\": {\"instances\": [], \"native_client_11\": null, \"odbc_17\": null,"
    "  \"odbc_18\": null, \"rs_instances\": []},"
    " \"wsus\": {\"installed\": false, \"version\": null},"
    " \"fips\": null}";

static json_t *skeleton(void)
{
    json_error_t je;
    json_t *j = json_loads(all_absent, 0, &je);
    ck_assert_msg(j != NULL, "skeleton: %s", je.text);
    return j;
}

START_TEST(test_facts_absent_registry_is_all_null)
{
    /* Neighbouring keys exist, the values the facts read do not. */
    json_t *got = extract_text(
        "REGEDIT4\r\n\r\n"
        "[HKEY_LOCAL_MACHINE\\SOFTWARE\\Microsoft\\Windows NT\\CurrentVersion]\r\n"
        "\"RegisteredOwner\"=\"IT\"\r\n\r\n"
        "[HKEY_LOCAL_MACHINE\\SYSTEM\\CurrentControlSet\\Control\\SecurityProviders\\SCHANNEL"
        "\\Protocols\\TLS 1.2\\Client]\r\n\r\n"
        "[HKEY_LOCAL_MACHINE\\SOFTWARE\\Microsoft\\Microsoft SQL Server\\Instance Names\\RS]\r\n"
        "\"MSSQLSERVER\"=\"MSRS12.MSSQLSERVER\"\r\n\r\n"
        "[HKEY_LOCAL_MACHINE\\SYSTEM\\CurrentControlSet\\Control\\Lsa]\r\n"
        "\"fipsalgorithmpolicy\"=dword:00000001\r\n\r\n");
    json_t *want = skeleton();
    /* A Reporting Services instance whose Setup key is absent: listed, its version null. */
    json_array_append_new(json_object_get(json_object_get(want, "sql"), "rs_instances"),
                          json_pack("{s:s, s:s, s:n, s:n, s:n}", "name", "MSSQLSERVER", "id",
                                    "MSRS12.MSSQLSERVER", "version", "patch_level", "edition"));
    assert_json_equal(got, want, "absent registry");
    ck_assert_ptr_null(json_object_get(got, "extraction_warnings"));
    json_decref(got);
    json_decref(want);
}
END_TEST

START_TEST(test_facts_present_empty_packages_key_is_empty_list)
{
    json_t *got = extract_text(
        "REGEDIT4\r\n\r\n"
        "[HKLM\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Component Based Servicing\\Packages]"
        "\r\n\r\n");
    json_t *hf = json_object_get(got, "hotfixes");
    ck_assert(json_is_array(hf));
    ck_assert_uint_eq(json_array_size(hf), 0);
    json_decref(got);
}
END_TEST

START_TEST(test_facts_only_installed_cbs_packages_count)
{
    /* CurrentState: 0x70 installed, 0x80 permanent; staged, install pending, partially
     * installed, superseded, absent and a missing CurrentState are not installed. A KB with one
     * installed package (beside an older superseded one) is installed. */
    json_t *got = extract_text("REGEDIT4\r\n\r\n"
#define PKG                                                                                        \
    "[HKLM\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Component Based Servicing\\Packages\\"
                               PKG "Package_for_KB3140245~31bf3856ad364e35~amd64~~6.1.1.1]\r\n"
                               "\"CurrentState\"=dword:00000040\r\n\r\n" PKG
                               "Package_for_KB3154518~31bf3856ad364e35~amd64~~6.1.1.0]\r\n"
                               "\"CurrentState\"=dword:00000060\r\n\r\n" PKG
                               "Package_for_KB4019276~31bf3856ad364e35~amd64~~6.0.1.0]\r\n"
                               "\"CurrentState\"=dword:00000065\r\n\r\n" PKG
                               "Package_for_KB4022720~31bf3856ad364e35~amd64~~6.3.1.0]\r\n"
                               "\"CurrentState\"=dword:00000050\r\n\r\n" PKG
                               "Package_for_KB2533623~31bf3856ad364e35~amd64~~6.1.1.0]\r\n\r\n" PKG
                               "Package_for_KB976932~31bf3856ad364e35~amd64~~6.1.1.17514]\r\n"
                               "\"CurrentState\"=dword:00000080\r\n\r\n" PKG
                               "Package_for_KB2552343~31bf3856ad364e35~amd64~~6.1.1.0]\r\n"
                               "\"CurrentState\"=dword:00000050\r\n\r\n" PKG
                               "Package_for_KB2552343~31bf3856ad364e35~amd64~~6.1.1.1]\r\n"
                               "\"CurrentState\"=dword:00000070\r\n\r\n" PKG
                               "Package_for_RollupFix~31bf3856ad364e35~amd64~~7601.24544.1.4]\r\n"
                               "\"CurrentState\"=dword:00000070\r\n\r\n" PKG
                               "Package_for_RollupFix~31bf3856ad364e35~amd64~~7601.24548.1.2]\r\n"
                               "\"CurrentState\"=dword:00000040\r\n\r\n" PKG
                               "Package_for_RollupFix~31bf3856ad364e35~amd64~~7601.23964.1.0]\r\n"
                               "\"CurrentState\"=dword:00000050\r\n\r\n"
#undef PKG
    );
    json_error_t je;
    json_t *want =
        json_loads("{\"installed\": [\"KB976932\", \"KB2552343\"],"
                   " \"not_installed\": {\"KB2533623\": null, \"KB3140245\": 64, \"KB3154518\": 96,"
                   "                     \"KB4019276\": 101, \"KB4022720\": 80},"
                   " \"rollup\": \"7601.24544.1.4\"}",
                   0, &je);
    ck_assert_ptr_nonnull(want);
    assert_json_equal(json_object_get(got, "updates"), want, "updates");
    assert_json_equal(json_object_get(got, "hotfixes"), json_object_get(want, "installed"),
                      "hotfixes");
    char err[256] = "";
    ck_assert_msg(report_validate_facts(got, err, sizeof(err)) == 0, "%s", err);
    json_decref(want);
    json_decref(got);
}
END_TEST

START_TEST(test_facts_kb_numbers_unique_uppercase_in_numeric_order)
{
    json_t *got = extract_text(
        "REGEDIT4\r\n\r\n"
#define PKG                                                                                        \
    "[HKLM\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Component Based Servicing\\Packages\\"
#define INSTALLED "\"CurrentState\"=dword:00000070\r\n\r\n"
        PKG "Package_for_KB3140245~31bf3856ad364e35~amd64~~6.1.1.1]\r\n" INSTALLED PKG
        "Package_for_KB976932~31bf3856ad364e35~amd64~~6.1.1.17514]\r\n" INSTALLED PKG
        "Package_1_for_KB4019276~31bf3856ad364e35~amd64~~6.0.1.0]\r\n" INSTALLED PKG
        "Package_2_for_KB4019276~31bf3856ad364e35~amd64~~6.0.1.0]\r\n" INSTALLED PKG
        "package_for_kb2533623~31bf3856ad364e35~amd64~~6.1.1.0]\r\n" INSTALLED PKG
        "Package_for_KB0012345~31bf3856ad364e35~amd64~~6.1.1.0]\r\n" INSTALLED PKG
        "Package_for_KB12345_RTM~31bf3856ad364e35~amd64~~6.1.1.0]\r\n" INSTALLED PKG
        "Package_for_RollupFix~31bf3856ad364e35~amd64~~19041.3693.1.7]\r\n" INSTALLED PKG
        "Package_for_KB~31bf3856ad364e35~amd64~~1.0]\r\n" INSTALLED PKG
        "Package_for_KB1234567890123~31bf3856ad364e35~amd64~~1.0]\r\n" INSTALLED
            /* A subkey of a package is not a package. */
            PKG "Package_for_RollupFix~31bf3856ad364e35~amd64~~19041.3693.1.7\\KB5555555]\r\n\r\n"
#undef PKG
#undef INSTALLED
    );
    json_error_t je;
    json_t *want = json_loads("[\"KB12345\", \"KB976932\", \"KB2533623\", \"KB3140245\","
                              " \"KB4019276\"]",
                              0, &je);
    assert_json_equal(json_object_get(got, "hotfixes"), want, "hotfixes");
    json_decref(got);
    json_decref(want);
}
END_TEST

START_TEST(test_facts_wrong_types_are_null_and_named_in_warnings)
{
    json_t *got = extract_text(
        "REGEDIT4\r\n\r\n"
        "[HKLM\\SOFTWARE\\Microsoft\\Windows NT\\CurrentVersion]\r\n"
        "\"ProductName\"=dword:00000007\r\n"
        "\"CurrentBuildNumber\"=\"7601 SP1\"\r\n"
        "\"UBR\"=\"24544\"\r\n"
        "\"CurrentVersion\"=\"6.1\"\r\n\r\n"
        "[HKLM\\SYSTEM\\CurrentControlSet\\Control\\Session Manager\\Environment]\r\n"
        "\"PROCESSOR_ARCHITECTURE\"=\"IA64\"\r\n\r\n"
        "[HKLM\\SYSTEM\\CurrentControlSet\\Control\\SecurityProviders\\SCHANNEL\\Protocols"
        "\\TLS 1.2\\Client]\r\n"
        "\"Enabled\"=hex(b):01,00,00,00,00,00,00,00\r\n"
        "\"DisabledByDefault\"=dword:00000000\r\n\r\n"
        "[HKLM\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Internet Settings\\WinHttp]\r\n"
        "\"DefaultSecureProtocols\"=hex(7):61,00,00\r\n\r\n"
        "[HKLM\\SOFTWARE\\Microsoft\\NET Framework Setup\\NDP\\v4\\Full]\r\n"
        "\"Release\"=\"528049\"\r\n\r\n"
        "[HKLM\\SOFTWARE\\Microsoft\\.NETFramework\\v4.0.30319]\r\n"
        "\"SchUseStrongCrypto\"=hex:01,00,00,00\r\n\r\n"
        "[HKLM\\SOFTWARE\\Microsoft\\Microsoft SQL Server\\Instance Names\\SQL]\r\n"
        "\"MSSQLSERVER\"=\"..\\\\..\\\\Setup\"\r\n"
        "\"SQLEXPRESS\"=dword:00000001\r\n\r\n"
        "[HKLM\\SOFTWARE\\Microsoft\\MSODBCSQL18]\r\n"
        "\"InstalledVersion\"=hex(2):31,38,00\r\n\r\n"
        "[HKLM\\SYSTEM\\CurrentControlSet\\Control\\Lsa\\FipsAlgorithmPolicy]\r\n"
        "\"Enabled\"=\"1\"\r\n\r\n");
    json_t *want = skeleton();
    json_object_set_new(json_object_get(want, "os"), "version", json_string("6.1"));
    json_object_set_new(
        json_object_get(json_object_get(json_object_get(want, "schannel"), "tls12"), "client"),
        "disabled_by_default", json_integer(0));
    /* REG_EXPAND_SZ is a string: read, not expanded. */
    json_object_set_new(json_object_get(want, "sql"), "odbc_18", json_string("18"));
    json_error_t je;
    json_t *instances = json_loads(
        "[{\"name\": \"MSSQLSERVER\", \"id\": null, \"version\": null, \"patch_level\": null,"
        "  \"edition\": null},"
        " {\"name\": \"SQLEXPRESS\", \"id\": null, \"version\": null, \"patch_level\": null,"
        "  \"edition\": null}]",
        0, &je);
    json_object_set_new(json_object_get(want, "sql"), "instances", instances);
    json_t *warnings = json_loads(
        "["
        "\"HKLM\\\\SOFTWARE\\\\Microsoft\\\\Windows NT\\\\CurrentVersion\\\\ProductName: REG_DWORD"
        " where REG_SZ was expected; reported as null\","
        "\"HKLM\\\\SOFTWARE\\\\Microsoft\\\\Windows NT\\\\CurrentVersion\\\\CurrentBuildNumber:"
        " not a build number; reported as null\","
        "\"HKLM\\\\SOFTWARE\\\\Microsoft\\\\Windows NT\\\\CurrentVersion\\\\UBR: REG_SZ where"
        " REG_DWORD was expected; reported as null\","
        "\"HKLM\\\\SYSTEM\\\\CurrentControlSet\\\\Control\\\\Session Manager\\\\Environment"
        "\\\\PROCESSOR_ARCHITECTURE: not AMD64, x86 or ARM64; reported as null\","
        "\"HKLM\\\\SYSTEM\\\\CurrentControlSet\\\\Control\\\\SecurityProviders\\\\SCHANNEL"
        "\\\\Protocols\\\\TLS 1.2\\\\Client\\\\Enabled: REG_QWORD where REG_DWORD was expected;"
        " reported as null\","
        "\"HKLM\\\\SOFTWARE\\\\Microsoft\\\\Windows\\\\CurrentVersion\\\\Internet Settings"
        "\\\\WinHttp\\\\DefaultSecureProtocols: REG_MULTI_SZ where REG_DWORD was expected;"
        " reported as null\","
        "\"HKLM\\\\SOFTWARE\\\\Microsoft\\\\NET Framework Setup\\\\NDP\\\\v4\\\\Full\\\\Release:"
        " REG_SZ where REG_DWORD was expected; reported as null\","
        "\"HKLM\\\\SOFTWARE\\\\Microsoft\\\\.NETFramework\\\\v4.0.30319\\\\SchUseStrongCrypto:"
        " REG_BINARY or another type where REG_DWORD was expected; reported as null\","
        "\"HKLM\\\\SOFTWARE\\\\Microsoft\\\\Microsoft SQL Server\\\\Instance Names\\\\SQL"
        "\\\\MSSQLSERVER: not an instance id; reported as null\","
        "\"HKLM\\\\SOFTWARE\\\\Microsoft\\\\Microsoft SQL Server\\\\Instance Names\\\\SQL"
        "\\\\SQLEXPRESS: REG_DWORD where REG_SZ was expected; reported as null\","
        "\"HKLM\\\\SYSTEM\\\\CurrentControlSet\\\\Control\\\\Lsa\\\\FipsAlgorithmPolicy"
        "\\\\Enabled: REG_SZ where REG_DWORD was expected; reported as null\""
        "]",
        0, &je);
    ck_assert_msg(warnings != NULL, "%s", je.text);
    json_object_set_new(want, "extraction_warnings", warnings);
    assert_json_equal(got, want, "wrong types");
    char err[256] = "";
    ck_assert_msg(report_validate_facts(got, err, sizeof(err)) == 0, "%s", err);
    json_decref(got);
    json_decref(want);
}
END_TEST

START_TEST(test_facts_os_version_needs_both_major_and_minor)
{
    /* Windows 10 keeps CurrentVersion "6.3"; the numbers win only when both are there. */
    json_t *got = extract_text("REGEDIT4\r\n\r\n"
                               "[HKLM\\SOFTWARE\\Microsoft\\Windows NT\\CurrentVersion]\r\n"
                               "\"CurrentVersion\"=\"6.3\"\r\n"
                               "\"CurrentMajorVersionNumber\"=dword:0000000a\r\n"
                               "\"CurrentMinorVersionNumber\"=dword:00000000\r\n"
                               "\"CurrentBuild\"=\"19045\"\r\n\r\n");
    json_t *os = json_object_get(got, "os");
    ck_assert_str_eq(json_string_value(json_object_get(os, "version")), "10.0");
    /* CurrentBuildNumber absent: CurrentBuild stands in. */
    ck_assert_int_eq(json_integer_value(json_object_get(os, "build")), 19045);
    json_decref(got);

    got = extract_text("REGEDIT4\r\n\r\n"
                       "[HKLM\\SOFTWARE\\Microsoft\\Windows NT\\CurrentVersion]\r\n"
                       "\"CurrentVersion\"=\"6.3\"\r\n"
                       "\"CurrentMajorVersionNumber\"=dword:0000000a\r\n\r\n");
    ck_assert_str_eq(json_string_value(json_object_get(json_object_get(got, "os"), "version")),
                     "6.3");
    json_decref(got);
}
END_TEST

START_TEST(test_facts_snac_falls_back_to_installed_version_and_wsus_without_version)
{
    json_t *got = extract_text("REGEDIT4\r\n\r\n"
                               "[HKLM\\SOFTWARE\\Microsoft\\SQLNCLI11]\r\n"
                               "\"InstalledVersion\"=\"11.3.6538.0\"\r\n\r\n"
                               "[HKLM\\SOFTWARE\\Microsoft\\SQLNCLI11\\CurrentVersion]\r\n\r\n"
                               "[HKLM\\SOFTWARE\\Microsoft\\Update Services\\Server\\Setup]\r\n\r\n"
                               "[HKLM\\SYSTEM\\CurrentControlSet\\Control\\Lsa\\"
                               "FipsAlgorithmPolicy]\r\n"
                               "\"Enabled\"=dword:00000002\r\n\r\n");
    ck_assert_str_eq(
        json_string_value(json_object_get(json_object_get(got, "sql"), "native_client_11")),
        "11.3.6538.0");
    json_t *wsus = json_object_get(got, "wsus");
    ck_assert(json_is_true(json_object_get(wsus, "installed")));
    ck_assert(json_is_null(json_object_get(wsus, "version")));
    ck_assert(json_is_true(json_object_get(got, "fips")));
    json_decref(got);
}
END_TEST

/* A value name is registry data: a warning quoting a long non-ASCII one is cut between
 * characters, so the warning stays valid UTF-8 and the extraction still succeeds. */
START_TEST(test_facts_warning_cuts_long_value_name_between_characters)
{
    char name[256] = "a";
    for (int i = 0; i < 100; i++)
        strcat(name, "\xC3\xA9"); /* U+00E9: byte 128 of the name is inside a character */
    char text[1024];
    snprintf(text, sizeof(text),
             "REGEDIT4\r\n\r\n"
             "[HKLM\\SOFTWARE\\Microsoft\\Microsoft SQL Server\\Instance Names\\SQL]\r\n"
             "\"%s\"=\"a\\\\b\"\r\n",
             name);
    json_t *got = extract_text(text);
    json_t *w = json_object_get(got, "extraction_warnings");
    ck_assert_int_eq(json_array_size(w), 1);
    char want[512];
    snprintf(want, sizeof(want),
             "HKLM\\SOFTWARE\\Microsoft\\Microsoft SQL Server\\Instance Names\\SQL\\%.127s: "
             "not an instance id; reported as null",
             name);
    ck_assert_str_eq(json_string_value(json_array_get(w, 0)), want);
    json_t *inst = json_array_get(json_object_get(json_object_get(got, "sql"), "instances"), 0);
    ck_assert_str_eq(json_string_value(json_object_get(inst, "name")), name);
    ck_assert(json_is_null(json_object_get(inst, "id")));
    json_decref(got);
}
END_TEST

START_TEST(test_facts_caps_keep_any_registry_under_the_report_cap)
{
    /* A hostile or broken registry: a huge product name, 5000 KBs, 70 SQL instances whose ids
     * are all of the wrong type (70 warnings). */
    size_t cap = 2 * 1024 * 1024, len = 0;
    char *text = malloc(cap);
    len +=
        (size_t)snprintf(text + len, cap - len,
                         "REGEDIT4\r\n\r\n[HKLM\\SOFTWARE\\Microsoft\\Windows NT\\CurrentVersion]"
                         "\r\n\"ProductName\"=\"");
    memset(text + len, 'A', 300);
    len += 300;
    len += (size_t)snprintf(text + len, cap - len, "\"\r\n\r\n");
    for (int kb = 1; kb <= 5000; kb++)
        len += (size_t)snprintf(
            text + len, cap - len,
            "[HKLM\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Component Based"
            " Servicing\\Packages\\Package_for_KB%d~31bf3856ad364e35~amd64~~6.1.1.0]"
            "\r\n\"CurrentState\"=dword:00000070\r\n\r\n",
            kb);
    len += (size_t)snprintf(text + len, cap - len,
                            "[HKLM\\SOFTWARE\\Microsoft\\Microsoft SQL Server\\Instance Names\\SQL]"
                            "\r\n");
    for (int i = 0; i < 70; i++)
        len += (size_t)snprintf(text + len, cap - len, "\"I%02d\"=dword:00000001\r\n", i);
    ck_assert_uint_lt(len, cap);

    struct regview *v = NULL;
    char err[512] = "";
    ck_assert_msg(regview_open_buffer("huge.reg", text, len, &v, err, sizeof(err)) == 0, "%s", err);
    json_t *facts = NULL;
    ck_assert_msg(facts_extract(v, &facts, err, sizeof(err)) == 0, "%s", err);
    regview_free(v);
    free(text);

    ck_assert(json_is_null(json_object_get(json_object_get(facts, "os"), "product_name")));
    json_t *hf = json_object_get(facts, "hotfixes");
    ck_assert_uint_eq(json_array_size(hf), 4096);
    ck_assert_str_eq(json_string_value(json_array_get(hf, 0)), "KB1");
    ck_assert_str_eq(json_string_value(json_array_get(hf, 4095)), "KB4096");
    json_t *inst = json_object_get(json_object_get(facts, "sql"), "instances");
    ck_assert_uint_eq(json_array_size(inst), 64);
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(inst, 63), "name")), "I63");
    json_t *w = json_object_get(facts, "extraction_warnings");
    ck_assert_uint_eq(json_array_size(w), 33);
    ck_assert_str_eq(json_string_value(json_array_get(w, 0)),
                     "HKLM\\SOFTWARE\\Microsoft\\Windows NT\\CurrentVersion\\ProductName: longer"
                     " than 256 bytes; reported as null");
    ck_assert_str_eq(json_string_value(json_array_get(w, 1)),
                     "HKLM\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Component Based Servicing"
                     "\\Packages: more than 4096 KB numbers; the highest are not listed");
    ck_assert_str_eq(json_string_value(json_array_get(w, 2)),
                     "HKLM\\SOFTWARE\\Microsoft\\Microsoft SQL Server\\Instance Names\\SQL\\I00:"
                     " REG_DWORD where REG_SZ was expected; reported as null");
    ck_assert_str_eq(json_string_value(json_array_get(w, 32)),
                     "more than 32 warnings; the rest are not listed");

    json_t *r = facts_build_report(facts, "big.corp.contoso.com", 0, "regfile", 900);
    ck_assert_ptr_nonnull(r);
    char *out = json_dumps(r, JSON_COMPACT);
    ck_assert_uint_lt(strlen(out), REPORT_MAX_BYTES);
    json_t *parsed = NULL;
    ck_assert_msg(report_parse(out, strlen(out), &parsed, err, sizeof(err)) == 0, "%s", err);
    json_decref(parsed);
    free(out);
    json_decref(r);
    json_decref(facts);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("facts");
    TCase *tc = tcase_create("fixtures");
    tcase_add_loop_test(tc, test_facts_fixture_extracts_exactly_its_expected_facts, 0,
                        sizeof(fixtures) / sizeof(fixtures[0]));
    suite_add_tcase(s, tc);
    tu_tcase(s, "rules", NULL, NULL,
             TU_TESTS(test_facts_absent_registry_is_all_null,
                      test_facts_present_empty_packages_key_is_empty_list,
                      test_facts_kb_numbers_unique_uppercase_in_numeric_order,
                      test_facts_only_installed_cbs_packages_count,
                      test_facts_wrong_types_are_null_and_named_in_warnings,
                      test_facts_os_version_needs_both_major_and_minor,
                      test_facts_snac_falls_back_to_installed_version_and_wsus_without_version,
                      test_facts_caps_keep_any_registry_under_the_report_cap,
                      test_facts_warning_cuts_long_value_name_between_characters));
    return tu_run_suite(s);
}
