/*
 * test_inventory.c — `tlsgate inventory`: import (CSV, JSON, explicit edges), all-or-nothing
 * refusals naming FILE:LINE:FIELD, and the dependency edges derived from roles. Runs the real
 * binary on real database files.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ingest.h"
#include "inventory.h"
#include "rules.h"
#include "store.h"
#include "testutil.h"

static char *dir;
static const char *db;

static void setup(void)
{
    dir = tu_tmpdir();
    db = strdup(tu_path(dir, "t.db"));
    ck_assert_int_eq(tu_tlsgate(db, NULL, NULL, "init", NULL), 0);
}

static void teardown(void)
{
    tu_rmtree(dir);
    free(dir);
    free((char *)db);
}

/* Writes `text` to DIR/name and imports it; returns the exit code, stderr in *err. */
static int import_text(const char *name, const char *text, char **err)
{
    const char *path = tu_path(dir, name);
    tu_write_file(path, text, strlen(text));
    char *p = strdup(path);
    int code = tu_tlsgate(db, NULL, err, "inventory", "import", p, NULL);
    free(p);
    return code;
}

static char *query_text(const char *sql)
{
    sqlite3 *raw;
    ck_assert_int_eq(sqlite3_open(db, &raw), SQLITE_OK);
    sqlite3_stmt *st;
    ck_assert_int_eq(sqlite3_prepare_v2(raw, sql, -1, &st, NULL), SQLITE_OK);
    ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
    char *v = strdup((const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    sqlite3_close(raw);
    return v;
}

#define GOOD_HOSTS                                                                                 \
    "name,site,roles,collector,os\n"                                                               \
    "mp1.corp.example,PS1,management_point,,Windows Server 2019\n"                                 \
    "ws1.corp.example,PS1,,10.0.0.5:9443,Windows 7 SP1\n"

START_TEST(test_import_happy_path_upserts_hosts_and_sites)
{
    char *err;
    ck_assert_int_eq(import_text("a.csv", GOOD_HOSTS, &err), 0);
    free(err);
    ck_assert_int_eq(tu_db_int(db, "SELECT count(*) FROM host", NULL), 2);
    ck_assert_int_eq(tu_db_int(db,
                               "SELECT count(*) FROM site WHERE code = 'PS1' AND "
                               "phase = 'inventory'",
                               NULL),
                     1);
    char *collector = query_text("SELECT collector FROM host WHERE name = 'MP1.corp.example'");
    ck_assert_str_eq(collector, "mp1.corp.example:8443");
    free(collector);
    ck_assert_int_eq(tu_db_int(db, "SELECT roles FROM host WHERE name = 'ws1.corp.example'", NULL),
                     1);

    /* Re-import with a changed OS updates in place, names compared case-insensitively. */
    ck_assert_int_eq(import_text("b.csv", "name,site,os\nWS1.CORP.EXAMPLE,ps1,Windows 10\n", &err),
                     0);
    free(err);
    ck_assert_int_eq(tu_db_int(db, "SELECT count(*) FROM host", NULL), 2);
    char *os = query_text("SELECT os FROM host WHERE name = 'ws1.corp.example'");
    ck_assert_str_eq(os, "Windows 10");
    free(os);
    ck_assert_int_eq(tu_db_int(db,
                               "SELECT count(*) FROM audit WHERE command LIKE "
                               "'%inventory import%' AND outcome LIKE 'ok:%'",
                               NULL),
                     2);
}
END_TEST

/* Each bad file: exit 3, FILE:LINE:FIELD in the message, nothing changed. */
static void assert_refused(const char *text, const char *expect)
{
    char *err;
    ck_assert_int_eq(import_text("good.csv", GOOD_HOSTS, &err), 0);
    free(err);
    long long hosts = tu_db_int(db, "SELECT count(*) FROM host", NULL);
    long long sum =
        tu_db_int(db, "SELECT total(length(os) + roles + length(collector)) FROM host", NULL);
    ck_assert_int_eq(import_text("bad.csv", text, &err), 3);
    ck_assert_msg(strstr(err, expect) != NULL, "expected '%s' in: %s", expect, err);
    ck_assert_ptr_nonnull(strstr(err, "nothing was imported"));
    free(err);
    ck_assert_int_eq(tu_db_int(db, "SELECT count(*) FROM host", NULL), hosts);
    ck_assert_int_eq(
        tu_db_int(db, "SELECT total(length(os) + roles + length(collector)) FROM host", NULL), sum);
    ck_assert_int_eq(tu_db_int(db, "SELECT count(*) FROM site", NULL), 1);
}

START_TEST(test_import_refuses_missing_column)
{
    assert_refused("name,roles\nmp9.corp.example,management_point\n", "bad.csv:1:site: missing");
}
END_TEST

START_TEST(test_import_maps_configmgr_role_names_and_new_site_systems)
{
    char *err = NULL, *out = NULL;
    ck_assert_int_eq(
        import_text(
            "cm.csv",
            "name,site,roles\n"
            "sql.p01.example,P01,SMS Site System;SMS SQL Server;SMS Component Server\n"
            "scp.p01.example,P01,SMS Site System;SMS Dmp Connector;SMS Management Point\n"
            "enr.p01.example,P01,Enrollment point\n"
            "enrp.p01.example,P01,SMS Enrollment Web Site\n"
            "smp.p01.example,P01,SMS State Migration Point\n"
            "ai.p01.example,P01,AI Update Service Point;Data Warehouse Service Point\n"
            "epp.p01.example,P01,sms endpoint protection point;Certificate registration point\n"
            "dp.p01.example,P01,SMS Site System;SMS Fallback Status Point;SMS Distribution Point\n"
            "pc.p01.example,P01,client\n",
            &err),
        0);
    free(err);
    ck_assert_int_eq(tu_db_int(db, "SELECT roles FROM host WHERE name = 'scp.p01.example'", NULL),
                     ROLE_SERVICE_CONNECTION_POINT | ROLE_MANAGEMENT_POINT);
    ck_assert_int_eq(tu_db_int(db, "SELECT roles FROM host WHERE name = 'ai.p01.example'", NULL),
                     ROLE_ASSET_INTELLIGENCE_SYNC_POINT | ROLE_DATA_WAREHOUSE_SERVICE_POINT);
    ck_assert_int_eq(tu_db_int(db, "SELECT roles FROM host WHERE name = 'dp.p01.example'", NULL),
                     ROLE_DISTRIBUTION_POINT);
    ck_assert_int_eq(tu_db_int(db, "SELECT roles FROM host WHERE name = 'epp.p01.example'", NULL),
                     ROLE_ENDPOINT_PROTECTION_POINT | ROLE_CERTIFICATE_REGISTRATION_POINT);
    /* the site systems that use the SQL client components depend on the site database */
    ck_assert_int_eq(tu_tlsgate(db, &out, NULL, "inventory", "deps", "sql.p01.example", NULL), 0);
    ck_assert_str_eq(out, "sql.p01.example depends on:\n"
                          "  (nothing)\n"
                          "depend on sql.p01.example:\n"
                          "  ai.p01.example                           sql            derived\n"
                          "  enr.p01.example                          sql            derived\n"
                          "  epp.p01.example                          sql            derived\n"
                          "  scp.p01.example                          sql            derived\n"
                          "  smp.p01.example                          sql            derived\n");
    free(out);
    /* the enrollment proxy point talks to the enrollment point; clients to the state
     * migration point */
    ck_assert_int_eq(tu_tlsgate(db, &out, NULL, "inventory", "deps", "enr.p01.example", NULL), 0);
    ck_assert_ptr_nonnull(strstr(out, "  enrp.p01.example                         "
                                      "https-enrollment"));
    free(out);
    ck_assert_int_eq(tu_tlsgate(db, &out, NULL, "inventory", "deps", "smp.p01.example", NULL), 0);
    ck_assert_ptr_nonnull(strstr(out, "  pc.p01.example                           https-smp"));
    free(out);
    /* a host with only the roles every site system has is not a client */
    ck_assert_int_eq(
        import_text("bad.csv", "name,site,roles\nx.p01.example,P01,SMS Site System\n", &err), 3);
    ck_assert_ptr_nonnull(strstr(err, "bad.csv:2:roles: unknown role 'SMS Site System'"));
    free(err);
    ck_assert_int_eq(tu_db_int(db, "SELECT count(*) FROM host WHERE name = 'x.p01.example'", NULL),
                     0);
}
END_TEST

START_TEST(test_import_refuses_unknown_role)
{
    /* The good first row would be written before the bad third: all of it must roll back. */
    assert_refused("name,site,roles\nnew1.corp.example,PS2,\nmp1.corp.example,PS1,client\n"
                   "x.corp.example,PS1,management_piont\n",
                   "bad.csv:4:roles: unknown role 'management_piont'");
}
END_TEST

START_TEST(test_import_refuses_duplicate_host)
{
    assert_refused("name,site\nnew1.corp.example,PS2\nNEW1.corp.example,PS2\n",
                   "bad.csv:3:name: duplicate host 'NEW1.corp.example'");
}
END_TEST

START_TEST(test_import_refuses_bad_site_code)
{
    assert_refused("name,site\nnew1.corp.example,PS12\n", "bad.csv:2:site: 'PS12' is not a site");
    assert_refused("name,site\nnew1.corp.example,P-1\n", "bad.csv:2:site:");
}
END_TEST

START_TEST(test_import_refuses_bad_port)
{
    assert_refused("name,site,collector\nnew1.corp.example,PS1,10.0.0.1:70000\n",
                   "bad.csv:2:collector: '10.0.0.1:70000' is not ADDRESS:PORT");
    assert_refused("name,site,collector\nnew1.corp.example,PS1,10.0.0.1:0\n",
                   "bad.csv:2:collector:");
    assert_refused("name,site,collector\nnew1.corp.example,PS1,10.0.0.1\n", "bad.csv:2:collector:");
}
END_TEST

/* A collector address longer than the column the importer copies it into was stored cut short,
 * port and all; junk between brackets passed as IPv6. Both are refused, naming the field. */
START_TEST(test_import_refuses_overlong_or_junk_collector)
{
    char text[600], host[300];
    memset(host, 'a', 300);
    host[299] = '\0';
    snprintf(text, sizeof(text), "name,site,collector\nnew1.corp.example,PS1,%s:8443\n", host);
    assert_refused(text, "bad.csv:2:collector:");
    assert_refused("name,site,collector\nnew1.corp.example,PS1,[zz zz]:80\n",
                   "bad.csv:2:collector:");
    assert_refused("name,site,collector\nnew1.corp.example,PS1,[::1/x]:80\n",
                   "bad.csv:2:collector:");
    ck_assert(inv_valid_collector("[::1]:8443"));
    ck_assert(inv_valid_collector("[2001:db8::7]:443"));
    ck_assert(inv_valid_collector("[fe80::1%eth0]:443"));
    ck_assert(!inv_valid_collector("[fe80::1%]:443"));
    ck_assert(!inv_valid_collector("[fe80::1%a/b]:443"));
    ck_assert(!inv_valid_collector("[fe80::1%abcdefghijklmnopq]:443"));
    ck_assert(inv_valid_collector("127.0.0.1:8443"));
    host[253] = '\0';
    char ok[320];
    snprintf(ok, sizeof(ok), "%s:1", host);
    ck_assert(inv_valid_collector(ok));
}
END_TEST

/* The os label is the one free-text column: a Latin-1 file (Excel's plain "CSV") stored bytes
 * that made `inventory list --json` and the CSV export invalid UTF-8. */
START_TEST(test_import_refuses_os_not_utf8)
{
    assert_refused("name,site,os\nnew1.corp.example,PS1,Windows \xe9"
                   "dition\n",
                   "bad.csv:2:os: not UTF-8");
    assert_refused("name,site,os\nnew1.corp.example,PS1,\xed\xa0\x80\n", "bad.csv:2:os:");
    assert_refused("name,site,os\nnew1.corp.example,PS1,\xc0\xaf\n", "bad.csv:2:os:");
    char *err;
    ck_assert_int_eq(import_text("u.csv",
                                 "name,site,os\nnew1.corp.example,PS1,"
                                 "Windows Server 2022 \xc3\xa9"
                                 "dition \xe2\x82\xac "
                                 "\xf0\x9f\x92\xbb\n",
                                 &err),
                     0);
    free(err);
    char *os = query_text("SELECT os FROM host WHERE name = 'new1.corp.example'");
    ck_assert_str_eq(os, "Windows Server 2022 \xc3\xa9"
                         "dition \xe2\x82\xac \xf0\x9f\x92\xbb");
    free(os);
    /* The cap is in bytes: 65 two-byte characters are 130 bytes, and the message says so. */
    char text[400] = "name,site,os\nnew1.corp.example,PS1,";
    for (int i = 0; i < 65; i++)
        strcat(text, "\xc3\xa9");
    strcat(text, "\n");
    assert_refused(text, "bad.csv:2:os: longer than 128 bytes");
}
END_TEST

START_TEST(test_import_refuses_empty_name)
{
    assert_refused("name,site\n,PS1\n", "bad.csv:2:name: empty host name");
    assert_refused("name,site\nnot a host,PS1\n", "bad.csv:2:name:");
}
END_TEST

START_TEST(test_import_refuses_ragged_and_broken_rows)
{
    assert_refused("name,site,os\nnew1.corp.example,PS1\n",
                   "bad.csv:2: 2 fields, the header has 3");
    assert_refused("name,site,os\nnew1.corp.example,PS1,\"Windows\n", "unterminated quoted field");
    assert_refused("", "empty file");
    assert_refused("foo,bar\n1,2\n", "bad.csv:1: unknown header");
}
END_TEST

START_TEST(test_import_accepts_bom_crlf_and_quoted_fields)
{
    const char *text = "\xEF\xBB\xBFname,site,roles,collector,os\r\n"
                       "\"mp1.corp.example\",PS1,\"management_point;distribution_point\",,"
                       "\"Windows Server 2019, \"\"Datacenter\"\"\"\r\n"
                       "\r\n"
                       "ws1.corp.example,PS1,,,\"Windows 10\r\nLTSC\"\r\n";
    char *err;
    ck_assert_int_eq(import_text("a.csv", text, &err), 0);
    free(err);
    char *os = query_text("SELECT os FROM host WHERE name = 'mp1.corp.example'");
    ck_assert_str_eq(os, "Windows Server 2019, \"Datacenter\"");
    free(os);
    os = query_text("SELECT os FROM host WHERE name = 'ws1.corp.example'");
    ck_assert_str_eq(os, "Windows 10\r\nLTSC");
    free(os);
    ck_assert_int_eq(tu_db_int(db, "SELECT roles FROM host WHERE name = 'mp1.corp.example'", NULL),
                     (1 << 4) | (1 << 5));
}
END_TEST

START_TEST(test_import_keeps_sql_and_formula_lookalikes_verbatim)
{
    const char *text = "name,site,os\n"
                       "drop-table-host.corp.example,PS1,\"'); DROP TABLE host; --\"\n"
                       "select.corp.example,PS1,\"=HYPERLINK(\"\"http://x\"\",\"\"y\"\")\"\n";
    char *err;
    ck_assert_int_eq(import_text("a.csv", text, &err), 0);
    free(err);
    char *out;
    ck_assert_int_eq(tu_tlsgate(db, &out, NULL, "inventory", "list", "--json", NULL), 0);
    ck_assert_ptr_nonnull(strstr(out, "\"'); DROP TABLE host; --\""));
    ck_assert_ptr_nonnull(strstr(out, "\"=HYPERLINK(\\\"http://x\\\",\\\"y\\\")\""));
    free(out);
    ck_assert_int_eq(tu_db_int(db, "SELECT count(*) FROM host", NULL), 2);
}
END_TEST

START_TEST(test_import_json_array)
{
    const char *text = "[{\"name\": \"mp1.corp.example\", \"site\": \"PS1\", "
                       "\"roles\": [\"management_point\", \"distribution_point\"]},\n"
                       " {\"name\": \"ws1.corp.example\", \"site\": \"PS1\", \"os\": \"Win7\"}]";
    char *err;
    ck_assert_int_eq(import_text("a.json", text, &err), 0);
    free(err);
    ck_assert_int_eq(tu_db_int(db, "SELECT count(*) FROM host", NULL), 2);
    ck_assert_int_eq(import_text("b.json",
                                 "[{\"name\": \"x.corp.example\", \"site\": \"PS1\", "
                                 "\"colour\": \"red\"}]",
                                 &err),
                     3);
    ck_assert_ptr_nonnull(strstr(err, "element 0:colour: unknown member"));
    free(err);
    ck_assert_int_eq(import_text("c.json", "[{\"name\": \"x.corp.example\",", &err), 3);
    ck_assert_ptr_nonnull(strstr(err, "c.json:1:"));
    free(err);
    ck_assert_int_eq(tu_db_int(db, "SELECT count(*) FROM host", NULL), 2);
}
END_TEST

/* Windows PowerShell 5.1 writes "UTF-8" as UTF-8 with a BOM (Out-File / Set-Content -Encoding
 * UTF8): the sniffer took such a file for JSON, then the JSON parser choked on the BOM. A UTF-16
 * file (PowerShell's `>`) was refused as "NUL byte in text", which does not say what to do. */
START_TEST(test_import_json_with_bom_and_utf16_refused_by_name)
{
    char *err;
    ck_assert_int_eq(import_text("bom.json",
                                 "\xEF\xBB\xBF[{\"name\": \"mp1.corp.example\", "
                                 "\"site\": \"PS1\"}]\r\n",
                                 &err),
                     0);
    free(err);
    ck_assert_int_eq(tu_db_int(db, "SELECT count(*) FROM host", NULL), 1);
    static const char u16[] = "\xFF\xFE[\0{\0}\0]\0";
    tu_write_file(tu_path(dir, "u16.json"), u16, sizeof(u16) - 1);
    char *p = strdup(tu_path(dir, "u16.json"));
    ck_assert_int_eq(tu_tlsgate(db, NULL, &err, "inventory", "import", p, NULL), 3);
    ck_assert_msg(strstr(err, "u16.json: UTF-16") != NULL, "%s", err);
    free(err);
    free(p);
    ck_assert_int_eq(tu_db_int(db, "SELECT count(*) FROM host", NULL), 1);
    /* One object, not an array (ConvertTo-Json of a single host): read as CSV, it was refused
     * with "quote in the middle of an unquoted field". */
    ck_assert_int_eq(import_text("one.json",
                                 " {\"name\": \"ws1.corp.example\", "
                                 "\"site\": \"PS1\"}",
                                 &err),
                     3);
    ck_assert_msg(strstr(err, "one.json: expected a JSON array of hosts") != NULL, "%s", err);
    free(err);
}
END_TEST

START_TEST(test_explicit_edges_import_and_refusals)
{
    char *err;
    ck_assert_int_eq(import_text("a.csv", GOOD_HOSTS, &err), 0);
    free(err);
    ck_assert_int_eq(import_text("e.csv",
                                 "dependent,server,channel\n"
                                 "mp1.corp.example,ws1.corp.example,custom-app\n",
                                 &err),
                     0);
    free(err);
    ck_assert_int_eq(tu_db_int(db, "SELECT count(*) FROM edge", NULL), 1);
    ck_assert_int_eq(import_text("f.csv",
                                 "dependent,server,channel\n"
                                 "mp1.corp.example,nope.corp.example,x\n",
                                 &err),
                     3);
    ck_assert_ptr_nonnull(strstr(err, "f.csv:2:server: unknown host 'nope.corp.example'"));
    free(err);
    ck_assert_int_eq(import_text("g.csv",
                                 "dependent,server,channel\n"
                                 "mp1.corp.example,MP1.corp.example,x\n",
                                 &err),
                     3);
    ck_assert_ptr_nonnull(strstr(err, "cannot depend on itself"));
    free(err);
    ck_assert_int_eq(tu_db_int(db, "SELECT count(*) FROM edge", NULL), 1);

    char *out;
    ck_assert_int_eq(
        tu_tlsgate(db, &out, NULL, "inventory", "deps", "ws1.corp.example", "--json", NULL), 0);
    ck_assert_ptr_nonnull(strstr(out, "{\"host\": \"mp1.corp.example\", \"channel\": "
                                      "\"custom-app\", \"kind\": \"explicit\"}"));
    free(out);
}
END_TEST

/* The sample site: the derived edges of each server, written out by hand from DESIGN. */
START_TEST(test_derived_edges_of_sample_site)
{
    char *err, *out;
    const char *sample = tu_source_path("tools/sample-inventory.csv");
    char *p = strdup(sample);
    ck_assert_int_eq(tu_tlsgate(db, NULL, &err, "inventory", "import", p, NULL), 0);
    free(p);
    free(err);

    /* Every client of PS1 (32) depends on each MP, DP and SUP. */
    ck_assert_int_eq(
        tu_tlsgate(db, &out, NULL, "inventory", "deps", "cm-ps1-mp01.corp.contoso.com", NULL), 0);
    ck_assert_ptr_nonnull(strstr(out, "cm-ps1-mp01.corp.contoso.com depends on:\n"
                                      "  cm-ps1-sql.corp.contoso.com              sql "));
    ck_assert_ptr_nonnull(strstr(out, "  ws-w7-001.corp.contoso.com               https-mp"));
    int clients = 0;
    for (char *q = out; (q = strstr(q, "https-mp")); q++)
        clients++;
    ck_assert_int_eq(clients, 32);
    free(out);

    ck_assert_int_eq(
        tu_tlsgate(db, &out, NULL, "inventory", "deps", "cm-ps1-sql.corp.contoso.com", NULL), 0);
    ck_assert_str_eq(out, "cm-ps1-sql.corp.contoso.com depends on:\n"
                          "  (nothing)\n"
                          "depend on cm-ps1-sql.corp.contoso.com:\n"
                          "  cm-ps1-mp01.corp.contoso.com             sql            derived\n"
                          "  cm-ps1-mp02.corp.contoso.com             sql            derived\n"
                          "  cm-ps1-rsp.corp.contoso.com              sql            derived\n"
                          "  cm-ps1-site.corp.contoso.com             sql            derived\n"
                          "  cm-ps1-sup01.corp.contoso.com            sql            derived\n");
    free(out);

    ck_assert_int_eq(
        tu_tlsgate(db, &out, NULL, "inventory", "deps", "cm-ps1-sup01.corp.contoso.com", NULL), 0);
    ck_assert_ptr_nonnull(strstr(out, "  cm-ps1-site.corp.contoso.com             wsus "));
    ck_assert_ptr_nonnull(strstr(out, "  ws-w11-006.corp.contoso.com              https-sup "));
    free(out);

    ck_assert_int_eq(
        tu_tlsgate(db, &out, NULL, "inventory", "deps", "adm-ws01.corp.contoso.com", NULL), 0);
    ck_assert_str_eq(out, "adm-ws01.corp.contoso.com depends on:\n"
                          "  cm-ps1-site.corp.contoso.com             sms-provider   derived\n"
                          "  cm-ps1-rsp.corp.contoso.com              ssrs           derived\n"
                          "depend on adm-ws01.corp.contoso.com:\n"
                          "  (nothing)\n");
    free(out);

    /* A Windows 7 client depends on 2 MPs, 3 DPs and the SUP. */
    ck_assert_int_eq(tu_tlsgate(db, &out, NULL, "inventory", "show", "WS-W7-003.corp.contoso.com",
                                "--json", NULL),
                     0);
    ck_assert_ptr_nonnull(strstr(out, "\"depends_on\": 6, \"dependents\": 0}"));
    free(out);
}
END_TEST

START_TEST(test_unknown_host_and_usage_errors)
{
    char *err;
    ck_assert_int_eq(tu_tlsgate(db, NULL, &err, "inventory", "show", "nope.corp.example", NULL), 3);
    ck_assert_ptr_nonnull(strstr(err, "unknown host 'nope.corp.example'"));
    free(err);
    ck_assert_int_eq(tu_tlsgate(db, NULL, NULL, "inventory", "frobnicate", "x", NULL), 2);
    ck_assert_int_eq(tu_tlsgate(db, NULL, NULL, "inventory", "list", "--bogus", NULL), 2);
    ck_assert_int_eq(tu_tlsgate(db, NULL, NULL, "inventory", "import", NULL), 2);
    ck_assert_int_eq(tu_tlsgate(db, NULL, &err, "inventory", "import", "/nonexistent.csv", NULL),
                     3);
    ck_assert_ptr_nonnull(strstr(err, "/nonexistent.csv: cannot open"));
    free(err);
}
END_TEST

/* `list --site` of a site that does not exist printed an empty list and exit 0, as if the site
 * had no hosts; every other command taking --site refuses it (exit 3). */
START_TEST(test_list_refuses_unknown_site)
{
    char *out, *err;
    ck_assert_int_eq(import_text("a.csv", GOOD_HOSTS, &err), 0);
    free(err);
    ck_assert_int_eq(
        tu_tlsgate(db, &out, &err, "inventory", "list", "--site", "ZZ9", "--json", NULL), 3);
    ck_assert_str_eq(out, "");
    ck_assert_ptr_nonnull(strstr(err, "no such site: ZZ9"));
    free(out);
    free(err);
    ck_assert_int_eq(tu_tlsgate(db, &out, NULL, "inventory", "list", "--site", "ps1", NULL), 0);
    ck_assert_ptr_nonnull(strstr(out, "mp1.corp.example"));
    ck_assert_ptr_nonnull(strstr(out, "ws1.corp.example"));
    free(out);
    ck_assert_int_eq(tu_tlsgate(db, NULL, &err, "inventory", "list", "--site", NULL), 2);
    ck_assert_ptr_nonnull(strstr(err, "--site needs a value"));
    free(err);
}
END_TEST

/* README: "Waived hosts are shown as waived in every listing". `inventory list` and `host show`
 * said nothing of a waiver, so a waived not_ready host looked like a blocker there. */
START_TEST(test_list_and_host_show_show_the_waiver)
{
    char *out, *err;
    ck_assert_int_eq(import_text("a.csv", GOOD_HOSTS, &err), 0);
    free(err);
    ck_assert_int_eq(tu_tlsgate(db, NULL, NULL, "waive", "ws1.corp.example", "--reason",
                                "decommissioned", "--until", "2099-01-01", NULL),
                     0);

    ck_assert_int_eq(tu_tlsgate(db, &out, NULL, "inventory", "list", NULL), 0);
    const char *ws1 = strstr(out, "ws1.corp.example ");
    const char *mp1 = strstr(out, "mp1.corp.example ");
    ck_assert_ptr_nonnull(ws1);
    ck_assert_ptr_nonnull(mp1);
    ck_assert_ptr_nonnull(strstr(ws1, "10.0.0.5:9443  (waived)\n"));
    ck_assert_ptr_nonnull(strstr(mp1, "mp1.corp.example:8443\n"));
    free(out);

    ck_assert_int_eq(tu_tlsgate(db, &out, NULL, "inventory", "list", "--json", NULL), 0);
    json_t *list = json_loads(out, 0, NULL);
    ck_assert_ptr_nonnull(list);
    ck_assert_uint_eq(json_array_size(list), 2);
    ck_assert(json_is_false(json_object_get(json_array_get(list, 0), "waived")));
    ck_assert(json_is_true(json_object_get(json_array_get(list, 1), "waived")));
    json_decref(list);
    free(out);

    ck_assert_int_eq(tu_tlsgate(db, &out, NULL, "host", "show", "ws1.corp.example", NULL), 0);
    ck_assert_ptr_nonnull(strstr(out, "\nwaived until 2099-01-01T00:00:00Z by "));
    ck_assert_ptr_nonnull(strstr(out, ": decommissioned (does not block)\n"));
    free(out);
    ck_assert_int_eq(tu_tlsgate(db, &out, NULL, "host", "show", "ws1.corp.example", "--json", NULL),
                     0);
    json_t *h = json_loads(out, 0, NULL);
    ck_assert_ptr_nonnull(h);
    json_t *w = json_object_get(h, "waiver");
    ck_assert_str_eq(json_string_value(json_object_get(w, "reason")), "decommissioned");
    ck_assert_str_eq(json_string_value(json_object_get(w, "until")), "2099-01-01T00:00:00Z");
    json_decref(h);
    free(out);
    ck_assert_int_eq(tu_tlsgate(db, &out, NULL, "host", "show", "mp1.corp.example", "--json", NULL),
                     0);
    h = json_loads(out, 0, NULL);
    ck_assert_ptr_nonnull(h);
    ck_assert(json_is_null(json_object_get(h, "waiver")));
    json_decref(h);
    free(out);
    ck_assert_int_eq(tu_tlsgate(db, &out, NULL, "host", "show", "mp1.corp.example", NULL), 0);
    ck_assert_ptr_null(strstr(out, "waived"));
    free(out);

    /* An expired waiver is no waiver. */
    ck_assert_int_eq(tu_tlsgate(db, NULL, NULL, "waive", "mp1.corp.example", "--reason", "x",
                                "--until", "2099-01-01", NULL),
                     0);
    char *env[] = {"TLSGATE_NOW=4102444800", NULL}; /* 2100-01-01 */
    char *argv[] = {(char *)tu_build_path("orchestrator/tlsgate"),
                    "--db",
                    (char *)db,
                    "inventory",
                    "list",
                    "--json",
                    NULL};
    ck_assert_int_eq(tu_run(argv, env, &out, NULL), 0);
    list = json_loads(out, 0, NULL);
    ck_assert_ptr_nonnull(list);
    ck_assert(json_is_false(json_object_get(json_array_get(list, 0), "waived")));
    ck_assert(json_is_false(json_object_get(json_array_get(list, 1), "waived")));
    json_decref(list);
    free(out);
}
END_TEST

/* A file that cannot be sought (a FIFO, /dev/stdin from a pipe, `<(...)`): sniffing CSV vs JSON
 * ate its first bytes, so a good file was refused for a header it does not have. */
START_TEST(test_import_from_fifo)
{
    const char *fifo = tu_path(dir, "hosts.fifo");
    ck_assert_int_eq(mkfifo(fifo, 0600), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        FILE *w = fopen(fifo, "w");
        if (!w || fputs(GOOD_HOSTS, w) == EOF || fclose(w))
            _exit(1);
        _exit(0);
    }
    char *err, *p = strdup(fifo);
    int code = tu_tlsgate(db, NULL, &err, "inventory", "import", p, NULL);
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_msg(code == 0, "exit %d: %s", code, err);
    ck_assert_int_eq(tu_db_int(db, "SELECT count(*) FROM host", NULL), 2);
    free(err);
    free(p);
}
END_TEST

/* A folder was read as an empty file ("empty file: expected a header row"). */
START_TEST(test_import_refuses_folder)
{
    char *err, *p = strdup(dir);
    ck_assert_int_eq(tu_tlsgate(db, NULL, &err, "inventory", "import", p, NULL), 3);
    ck_assert_msg(strstr(err, "is a folder") != NULL, "%s", err);
    ck_assert_ptr_null(strstr(err, "empty file"));
    free(err);
    free(p);
}
END_TEST

/* ---- roles changed by an import re-evaluate the stored report ---------------------------- */

/* 2026-11-25T12:00:00Z, the fixtures' collected_at, and one hour later as the commands' clock */
#define T0 1795608000LL
#define NOW "1795611600"

/* Stores the fixture report for host `name` with the roles the host has, as the daemon would. */
static void ingest_fixture(const char *name, const char *fixture)
{
    struct store *st;
    struct rules_catalog *cat;
    char err[512], rel[256];
    ck_assert_msg(store_open(db, false, &st, err, sizeof(err)) == 0, "%s", err);
    ck_assert_int_eq(rules_load_active(st, &cat), 0);
    snprintf(rel, sizeof(rel), "tests/fixtures/reports/%s.json", fixture);
    json_error_t je;
    json_t *r = json_load_file(tu_source_path(rel), 0, &je);
    ck_assert_msg(r != NULL, "%s: %s", rel, je.text);
    json_object_set_new(r, "host", json_string(name));
    sqlite3_stmt *q;
    ck_assert_int_eq(store_prepare(st, "SELECT id, roles FROM host WHERE name = ?", &q), 0);
    sqlite3_bind_text(q, 1, name, -1, SQLITE_STATIC);
    ck_assert_int_eq(sqlite3_step(q), SQLITE_ROW);
    long long id = sqlite3_column_int64(q, 0);
    unsigned roles = (unsigned)sqlite3_column_int(q, 1);
    sqlite3_finalize(q);
    ck_assert_msg(ingest_report(st, cat, id, roles, r, T0) == 0, "%s", store_errmsg(st));
    json_decref(r);
    rules_free(cat);
    store_close(st);
}

/* The host's state as `tlsgate inventory show` says it, an hour after the report. */
static char *state_of(const char *name)
{
    char *argv[] = {(char *)tu_build_path("orchestrator/tlsgate"),
                    "--db",
                    (char *)db,
                    "--json",
                    "inventory",
                    "show",
                    (char *)name,
                    NULL};
    char *env[] = {"TLSGATE_NOW=" NOW, NULL};
    char *out;
    ck_assert_int_eq(tu_run(argv, env, &out, NULL), 0);
    json_error_t je;
    json_t *j = json_loads(out, 0, &je);
    ck_assert_msg(j != NULL, "%s: %s", out, je.text);
    char *state = strdup(json_string_value(json_object_get(j, "state")));
    json_decref(j);
    free(out);
    return state;
}

/* Imports `text` and returns the command's standard output. */
static char *import_out(const char *name, const char *text)
{
    const char *path = tu_path(dir, name);
    tu_write_file(path, text, strlen(text));
    char *p = strdup(path), *out, *err;
    ck_assert_int_eq(tu_tlsgate(db, &out, &err, "inventory", "import", p, NULL), 0);
    ck_assert_str_eq(err, "");
    free(err);
    free(p);
    return out;
}

#define W10 "w10.corp.example"
#define OTHER "ws2.corp.example"
#define OF_W10 " v JOIN host h ON h.id = v.host_id WHERE h.name = '" W10 "'"

START_TEST(test_import_role_change_reevaluates_stored_report)
{
    /* Windows 10 without strong crypto: ready as a client, not as a management point */
    char *out = import_out("a.csv", "name,site,roles\n" W10 ",PS1,client\n" OTHER ",PS1,\n");
    free(out);
    ingest_fixture(W10, "win10-22h2");
    ingest_fixture(OTHER, "win10-22h2");
    char *state = state_of(W10);
    ck_assert_str_eq(state, "ready");
    free(state);
    const char *site_rules = "SELECT count(*) FROM verdict" OF_W10 " AND v.rule IN "
                             "('site-system-dotnet', 'site-system-strong-crypto', "
                             "'site-system-strong-crypto-v2')";
    const char *failed_blockers = "SELECT count(*) FROM verdict" OF_W10 " AND v.pass = 0 "
                                  "AND v.severity = 'blocker'";
    ck_assert_int_eq(tu_db_int(db, site_rules, NULL), 0);
    long long client_verdicts = tu_db_int(db, "SELECT count(*) FROM verdict" OF_W10, NULL);
    long long other_before = tu_db_int(db,
                                       "SELECT count(*) FROM verdict v JOIN host h ON "
                                       "h.id = v.host_id WHERE h.name = '" OTHER "'",
                                       NULL);

    /* the same command that makes it a management point re-evaluates its report */
    out = import_out("b.csv", "name,site,roles\n" W10 ",PS1,management_point\n" OTHER ",PS1,\n");
    ck_assert_ptr_nonnull(strstr(out, "1 stored reports re-evaluated for changed roles"));
    free(out);
    state = state_of(W10);
    ck_assert_str_eq(state, "not_ready");
    free(state);
    ck_assert_int_eq(tu_db_int(db, site_rules, NULL), 3);
    ck_assert_int_eq(
        tu_db_int(db, "SELECT pass FROM verdict" OF_W10 " AND v.rule = 'site-system-strong-crypto'",
                  NULL),
        0);
    char *reason =
        query_text("SELECT reason FROM verdict" OF_W10 " AND v.rule = 'site-system-strong-crypto'");
    ck_assert_ptr_nonnull(strstr(reason, "SchUseStrongCrypto not reported"));
    free(reason);
    ck_assert_int_eq(
        tu_db_int(db, "SELECT count(*) FROM verdict" OF_W10 " AND v.rule LIKE 'software-center-%'",
                  NULL),
        0);
    ck_assert_int_gt(tu_db_int(db, failed_blockers, NULL), 0);
    ck_assert_int_eq(tu_db_int(db, failed_blockers, NULL),
                     tu_db_int(db,
                               "SELECT r.blockers FROM report r JOIN host h ON "
                               "h.id = r.host_id WHERE h.name = '" W10 "'",
                               NULL));
    ck_assert_int_eq(tu_db_int(db,
                               "SELECT count(*) FROM audit WHERE outcome LIKE '%1 reports "
                               "re-evaluated for changed roles'",
                               NULL),
                     1);
    /* a host whose roles stayed is not touched */
    ck_assert_int_eq(tu_db_int(db,
                               "SELECT count(*) FROM verdict v JOIN host h ON "
                               "h.id = v.host_id WHERE h.name = '" OTHER "'",
                               NULL),
                     other_before);

    /* re-importing the same file changes no roles and re-evaluates nothing */
    out = import_out("b2.csv", "name,site,roles\n" W10 ",PS1,management_point\n" OTHER ",PS1,\n");
    ck_assert_ptr_null(strstr(out, "re-evaluated"));
    free(out);

    /* and back to a client */
    out = import_out("c.csv", "name,site,roles\n" W10 ",PS1,\n");
    ck_assert_ptr_nonnull(strstr(out, "1 stored reports re-evaluated for changed roles"));
    free(out);
    state = state_of(W10);
    ck_assert_str_eq(state, "ready");
    free(state);
    ck_assert_int_eq(tu_db_int(db, site_rules, NULL), 0);
    ck_assert_int_eq(tu_db_int(db, "SELECT count(*) FROM verdict" OF_W10, NULL), client_verdicts);
    ck_assert_int_eq(tu_db_int(db, failed_blockers, NULL), 0);
}
END_TEST

START_TEST(test_refused_import_does_not_reevaluate)
{
    char *out = import_out("a.csv", "name,site,roles\n" W10 ",PS1,client\n");
    free(out);
    ingest_fixture(W10, "win10-22h2");
    char *err;
    /* the role change is in a file whose second row is bad: nothing changes */
    ck_assert_int_eq(import_text("b.csv",
                                 "name,site,roles\n" W10 ",PS1,management_point\n"
                                 "bad host,PS1,\n",
                                 &err),
                     3);
    free(err);
    char *state = state_of(W10);
    ck_assert_str_eq(state, "ready");
    free(state);
    ck_assert_int_eq(tu_db_int(db, "SELECT roles FROM host WHERE name = '" W10 "'", NULL),
                     ROLE_CLIENT);
    ck_assert_int_eq(
        tu_db_int(db, "SELECT count(*) FROM verdict" OF_W10 " AND v.rule LIKE 'site-system-%'",
                  NULL),
        0);
}
END_TEST

int main(void)
{
    Suite *suite = suite_create("inventory");
    tu_tcase(suite, "import", setup, teardown,
             TU_TESTS(test_import_happy_path_upserts_hosts_and_sites,
                      test_import_role_change_reevaluates_stored_report,
                      test_refused_import_does_not_reevaluate, test_import_refuses_missing_column,
                      test_import_refuses_unknown_role,
                      test_import_maps_configmgr_role_names_and_new_site_systems,
                      test_import_refuses_duplicate_host, test_import_refuses_bad_site_code,
                      test_import_refuses_bad_port, test_import_refuses_empty_name,
                      test_import_refuses_os_not_utf8,
                      test_import_refuses_overlong_or_junk_collector,
                      test_import_refuses_ragged_and_broken_rows,
                      test_import_accepts_bom_crlf_and_quoted_fields,
                      test_import_keeps_sql_and_formula_lookalikes_verbatim, test_import_json_array,
                      test_import_json_with_bom_and_utf16_refused_by_name,
                      test_explicit_edges_import_and_refusals, test_derived_edges_of_sample_site,
                      test_unknown_host_and_usage_errors, test_list_refuses_unknown_site,
                      test_list_and_host_show_show_the_waiver, test_import_from_fifo,
                      test_import_refuses_folder));
    return tu_run_suite(suite);
}
