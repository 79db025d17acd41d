/*
 * test_history.c — the history tables and the status page (suite 'history'): a history point
 * and the page's numbers equal `phase status --json`, `gate list --json` and the CSV views on
 * the same database; per-rule counts equal `rules blockers`; compaction keeps a week whole and
 * one point per site and day before it; the page is self-contained, escapes every string from
 * hosts and waivers, lists orphan risk first and cuts long lists with "and N more"; a failed
 * write leaves the old page untouched; `collect` records a point and writes the config's
 * "report_html". Real database files, the real binary, a pinned clock.
 */
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "config.h"
#include "fixture.h"
#include "gate.h"
#include "history.h"
#include "report_html.h"
#include "store.h"
#include "testutil.h"

static char *dir;
static char db[4096];

static void setup(void) { dir = tu_tmpdir_with_db(db, sizeof(db)); }
static void teardown(void) { tu_tmpdir_drop(&dir); }

/*
 * P01 (clients): mp1 (MP, ready), dp1 (DP, ready, legacy protocols off: orphan risk, its
 *   clients block), c1 ready, c2 and c3 fail winhttp-kb3140245 (two reasons), c4 fails
 *   schannel-tls12-client, c5 stale, c6 never reported, c7 fails winhttp-kb3140245 but is
 *   waived until 3 days from now (an expiring waiver with markup in its reason); the pulls of
 *   c5 and c6 fail (connect, TLS).
 * P02 (enforce): sql (site database) and mp2 ready with legacy protocols off, c8 ready: every
 *   gate open.
 */
static void make_fleet(void)
{
    struct store *s = fx_open(db);
    fx_site(s, "P01", "clients");
    fx_site(s, "P02", "enforce");
    fx_host(s, "mp1.p01.test", "P01", MP);
    fx_host(s, "dp1.p01.test", "P01", DP);
    fx_legacy_off(s, "dp1.p01.test");
    fx_host(s, "c1.p01.test", "P01", ROLE_CLIENT);
    fx_host(s, "c2.p01.test", "P01", ROLE_CLIENT);
    fx_fail(s, "c2.p01.test", "winhttp-kb3140245", "KB3140245 missing");
    fx_host(s, "c3.p01.test", "P01", ROLE_CLIENT);
    fx_fail(s, "c3.p01.test", "winhttp-kb3140245", "<script>alert(1)</script> staged");
    fx_host(s, "c4.p01.test", "P01", ROLE_CLIENT);
    fx_fail(s, "c4.p01.test", "schannel-tls12-client", "TLS 1.2 client Enabled = 0");
    fx_host(s, "c5.p01.test", "P01", ROLE_CLIENT);
    fx_stale(s, "c5.p01.test");
    fx_host(s, "c6.p01.test", "P01", ROLE_CLIENT);
    fx_unreported(s, "c6.p01.test");
    fx_host(s, "c7.p01.test", "P01", ROLE_CLIENT);
    fx_fail(s, "c7.p01.test", "winhttp-kb3140245", "KB3140245 missing");
    fx_sql(s,
           "INSERT INTO waiver VALUES (%lld, '<b>\"vendor\"</b> & ''patch'' <img src=x>', %lld, "
           "0, 'alice')",
           fx_id(s, "c7.p01.test"), FX_NOW + 3 * 86400);
    fx_sql(s,
           "INSERT INTO poll (host_id, last_attempt_at, last_success_at, last_error, failures, "
           "next_at) VALUES (%lld, %lld, NULL, 'https://c5.p01.test/v1/readiness via "
           "127.0.0.1:9443: Failed to connect to 127.0.0.1 port 9443: Connection refused', 3, 0),"
           " (%lld, %lld, 5, 'https://c6.p01.test/v1/readiness via 127.0.0.1:9443: SSL "
           "certificate problem: unable to get local issuer certificate', 1, 0),"
           " (%lld, %lld, %lld, NULL, 0, 0)",
           fx_id(s, "c5.p01.test"), FX_NOW - 100, fx_id(s, "c6.p01.test"), FX_NOW - 100,
           fx_id(s, "c1.p01.test"), FX_NOW - 100, FX_NOW - 100);
    fx_host(s, "sql.p02.test", "P02", ROLE_SITE_DATABASE);
    fx_legacy_off(s, "sql.p02.test");
    fx_host(s, "mp2.p02.test", "P02", MP);
    fx_legacy_off(s, "mp2.p02.test");
    fx_host(s, "c8.p02.test", "P02", ROLE_CLIENT);
    store_close(s);
}

static void record_at(long long now)
{
    struct store *s = fx_open(db);
    struct gate_time t = gate_time_make(now, FX_STALE_AFTER);
    ck_assert_msg(history_record(s, &t) == 0, "%s", store_errmsg(s));
    store_close(s);
}

/* ---- reading the outputs ---------------------------------------------------------------- */

static json_t *cli_json(const char *a1, const char *a2)
{
    char *out = NULL;
    ck_assert_int_eq(fx_run(db, &out, NULL, "--json", a1, a2, NULL), 0);
    json_error_t jerr;
    json_t *doc = json_loads(out, 0, &jerr);
    ck_assert_msg(doc != NULL, "%s: %s", jerr.text, out);
    free(out);
    return doc;
}

/* The page, written by the real binary at FX_NOW into dir/status.html. */
static char *page(void)
{
    const char *path = tu_path(dir, "status.html");
    char *err = NULL;
    int rc = fx_run(db, NULL, &err, "report", "html", "--out", path, NULL);
    ck_assert_msg(rc == 0, "report html: %d %s", rc, err);
    free(err);
    char *html = tu_read_file(path, NULL);
    ck_assert_ptr_nonnull(html);
    return html;
}

/* The integer of the first data-k="key" after `from` and before `until` (NULL: the end). */
static long html_count(const char *from, const char *until, const char *key)
{
    return tu_data_k(from, until, key, true);
}

/* The CSV view's row of `site` (after the header), as columns; `cols` gets up to n cells. */
static int csv_row(const char *csv, const char *site, char cells[][128], int n)
{
    const char *line = strchr(csv, '\n');
    while (line && line[1]) {
        line++;
        size_t len = strlen(site);
        if (!strncmp(line, site, len) && line[len] == ',') {
            int k = 0;
            const char *c = line;
            while (k < n) {
                const char *end = c + strcspn(c, ",\r\n");
                snprintf(cells[k++], 128, "%.*s", (int)(end - c), c);
                if (*end != ',')
                    break;
                c = end + 1;
            }
            return k;
        }
        line = strchr(line, '\n');
    }
    return 0;
}

static char *export_view(const char *view)
{
    char *out = NULL;
    ck_assert_int_eq(fx_run(db, &out, NULL, "export", "csv", "--view", view, NULL), 0);
    return out;
}

/* ---- the numbers agree ------------------------------------------------------------------ */

START_TEST(test_history_point_and_page_equal_phase_status_gate_list_and_csv)
{
    make_fleet();
    record_at(FX_NOW);
    json_t *status = cli_json("phase", "status");
    json_t *gates = cli_json("gate", "list");
    char *history = export_view("history");
    char *summary = export_view("summary");
    char *html = page();

    size_t i;
    json_t *site;
    json_array_foreach(json_object_get(status, "sites"), i, site)
    {
        const char *code = json_string_value(json_object_get(site, "site"));
        long open = 0, blocked = 0, risk = 0;
        size_t j;
        json_t *g;
        json_array_foreach(json_object_get(gates, "servers"), j, g)
        {
            if (strcmp(json_string_value(json_object_get(g, "site")), code))
                continue;
            if (!strcmp(json_string_value(json_object_get(g, "gate")), "open"))
                open++;
            else
                blocked++;
            risk += json_is_true(json_object_get(g, "orphan_risk"));
        }
        long want[] = {
            json_integer_value(json_object_get(site, "hosts")),
            json_integer_value(json_object_get(site, "ready")),
            json_integer_value(json_object_get(site, "not_ready")),
            json_integer_value(json_object_get(site, "unknown")),
            json_integer_value(json_object_get(site, "waived")),
            json_integer_value(json_object_get(site, "servers")),
            open,
            blocked,
            risk,
        };
        ck_assert_int_eq(json_integer_value(json_object_get(site, "servers_gate_open")), open);
        ck_assert_int_eq((long)json_array_size(json_object_get(site, "orphan_risk")), risk);
        static const char *const keys[] = {"hosts",     "ready",        "not_ready",
                                           "unknown",   "waived",       "servers",
                                           "gate_open", "gate_blocked", "orphan_risk"};

        /* The history view: site,at,phase,hosts,ready,not_ready,unknown,waived,servers,
         * gate_open,gate_blocked,orphan_risk,pull_failing */
        char cells[13][128];
        ck_assert_int_eq(csv_row(history, code, cells, 13), 13);
        ck_assert_str_eq(cells[1], "2027-01-15T08:00:00Z");
        ck_assert_str_eq(cells[2], json_string_value(json_object_get(site, "phase")));
        for (int k = 0; k < 9; k++)
            ck_assert_msg(strtol(cells[3 + k], NULL, 10) == want[k], "%s history %s: %s != %ld",
                          code, keys[k], cells[3 + k], want[k]);
        /* The summary view, the export's own decision. */
        char sum[8][128];
        ck_assert_int_eq(csv_row(summary, code, sum, 8), 8);
        ck_assert_int_eq(strtol(sum[3], NULL, 10), want[1]);
        ck_assert_int_eq(strtol(sum[7], NULL, 10), open);

        /* The page: the overview row and the site's own section. */
        char anchor[64];
        snprintf(anchor, sizeof(anchor), "<tr data-site=\"%s\">", code);
        const char *row = strstr(html, anchor);
        ck_assert_msg(row != NULL, "no overview row for %s", code);
        const char *row_end = strstr(row, "</tr>");
        snprintf(anchor, sizeof(anchor), "id=\"site-%s\"", code);
        const char *sec = strstr(html, anchor);
        ck_assert_msg(sec != NULL, "no section for %s", code);
        const char *sec_end = strstr(sec, "</section>");
        snprintf(anchor, sizeof(anchor), "id=\"counts-%s\"", code);
        const char *counts = strstr(sec, anchor);
        ck_assert_ptr_nonnull(counts);
        for (int k = 0; k < 9; k++) {
            ck_assert_msg(html_count(row, row_end, keys[k]) == want[k], "%s page %s", code,
                          keys[k]);
            if (k < 5)
                ck_assert_int_eq(html_count(counts, sec_end, keys[k]), want[k]);
        }
        ck_assert_int_eq(html_count(sec, sec_end, "gate_open"), open);
        ck_assert_int_eq(html_count(sec, sec_end, "gate_blocked"), blocked);
        ck_assert_int_eq(html_count(sec, sec_end, "orphan_risk"), risk);
        ck_assert_int_eq(html_count(sec, sec_end, "exit_blocking"),
                         json_integer_value(json_object_get(site, "exit_blocking")));
        ck_assert_int_eq(html_count(row, row_end, "pull_failing"), strtol(cells[12], NULL, 10));
    }
    /* The fleet's own numbers, so the comparison above cannot pass on two empty answers. */
    char cells[13][128];
    csv_row(history, "P01", cells, 13);
    ck_assert_str_eq(cells[5], "4");  /* not_ready: c2 c3 c4 c7 */
    ck_assert_str_eq(cells[6], "2");  /* unknown: c5 c6 */
    ck_assert_str_eq(cells[11], "1"); /* orphan risk: dp1 */
    ck_assert_str_eq(cells[12], "2"); /* failing pulls: c5 c6 */
    csv_row(history, "P02", cells, 13);
    ck_assert_str_eq(cells[9], "2"); /* both gates open */
    json_decref(status);
    json_decref(gates);
    free(history);
    free(summary);
    free(html);
}
END_TEST

START_TEST(test_history_rules_equal_rules_blockers_and_page)
{
    make_fleet();
    record_at(FX_NOW);
    char *out = NULL;
    ck_assert_int_eq(fx_run(db, &out, NULL, "--json", "rules", "blockers", "--site", "P01", NULL),
                     0);
    json_t *doc = json_loads(out, 0, NULL);
    ck_assert_ptr_nonnull(doc);
    free(out);
    char *rules = export_view("history-rules");
    char *html = page();
    const char *sec = strstr(html, "id=\"site-P01\"");
    ck_assert_ptr_nonnull(sec);
    size_t i, n = 0;
    json_t *r;
    json_array_foreach(json_object_get(doc, "rules"), i, r)
    {
        if (strcmp(json_string_value(json_object_get(r, "severity")), "blocker"))
            continue;
        const char *rule = json_string_value(json_object_get(r, "rule"));
        long hosts = (long)json_integer_value(json_object_get(r, "hosts"));
        char line[256];
        snprintf(line, sizeof(line), "P01,2027-01-15T08:00:00Z,%s,%ld\r\n", rule, hosts);
        ck_assert_msg(strstr(rules, line) != NULL, "history-rules lacks %s in:\n%s", line, rules);
        char anchor[128];
        snprintf(anchor, sizeof(anchor), "<tr data-rule=\"%s\">", rule);
        const char *row = strstr(sec, anchor);
        ck_assert_msg(row != NULL, "page lacks rule %s", rule);
        ck_assert_int_eq(html_count(row, strstr(row, "</tr>"), "hosts"), hosts);
        n++;
    }
    ck_assert_int_eq(n, 2);
    ck_assert_ptr_nonnull(strstr(rules, "P01,2027-01-15T08:00:00Z,winhttp-kb3140245,3\r\n"));
    json_decref(doc);
    free(rules);
    free(html);
}
END_TEST

/* ---- bounded ---------------------------------------------------------------------------- */

START_TEST(test_history_keeps_a_week_then_one_point_per_site_and_day)
{
    make_fleet();
    const long long day = 86400, hour = 3600;
    /* FX_NOW is 08:00 UTC, so +1 h and +2 h stay in the same UTC day. */
    long long times[] = {FX_NOW - 10 * day,
                         FX_NOW - 10 * day + hour,
                         FX_NOW - 10 * day + 2 * hour,
                         FX_NOW - 8 * day,
                         FX_NOW - 1 * day,
                         FX_NOW - 1 * day + hour,
                         FX_NOW};
    for (size_t i = 0; i < sizeof(times) / sizeof(times[0]); i++)
        record_at(times[i]);
    /* 10 days ago: only the day's last point; 8 days ago: one; the last week: every point. */
    ck_assert_int_eq(tu_db_int(db, "SELECT count(*) FROM history WHERE site = ?1", "P01"), 5);
    ck_assert_int_eq(tu_db_int(db, "SELECT count(*) FROM history WHERE site = ?1", "P02"), 5);
    char q[160];
    snprintf(q, sizeof(q), "SELECT count(*) FROM history WHERE at = %lld + 0 * length(?1)",
             FX_NOW - 10 * day + 2 * hour);
    ck_assert_int_eq(tu_db_int(db, q, "x"), 2);
    ck_assert_int_eq(tu_db_int(db,
                               "SELECT count(*) FROM history_rule r WHERE NOT EXISTS (SELECT 1 "
                               "FROM history h WHERE h.site = r.site AND h.at = r.at) AND "
                               "length(?1)",
                               "x"),
                     0);
    /* Two rules of P01 per surviving point. */
    ck_assert_int_eq(tu_db_int(db, "SELECT count(*) FROM history_rule WHERE site = ?1", "P01"), 10);
    /* A second record in the same second replaces its point, it does not add one. */
    record_at(FX_NOW);
    ck_assert_int_eq(tu_db_int(db, "SELECT count(*) FROM history WHERE site = ?1", "P01"), 5);
    ck_assert_int_eq(tu_db_int(db, "SELECT count(*) FROM history_rule WHERE site = ?1", "P01"), 10);
}
END_TEST

START_TEST(test_history_due_once_per_interval)
{
    make_fleet();
    struct store *s = fx_open(db);
    bool due = false;
    ck_assert_int_eq(history_due(s, FX_NOW, 900, &due), 0);
    ck_assert(due);
    store_close(s);
    record_at(FX_NOW);
    s = fx_open(db);
    ck_assert_int_eq(history_due(s, FX_NOW + 899, 900, &due), 0);
    ck_assert(!due);
    ck_assert_int_eq(history_due(s, FX_NOW + 900, 900, &due), 0);
    ck_assert(due);
    /* The daemon's hook records only when due, the page included. */
    struct config cfg;
    config_init(&cfg);
    snprintf(cfg.report_html, sizeof(cfg.report_html), "%s", tu_path(dir, "daemon.html"));
    bool done = true;
    ck_assert_int_eq(report_html_round(s, &cfg, FX_NOW + 10, false, &done), 0);
    ck_assert(!done);
    struct stat st;
    ck_assert_int_ne(stat(tu_path(dir, "daemon.html"), &st), 0);
    ck_assert_int_eq(report_html_round(s, &cfg, FX_NOW + 900, false, &done), 0);
    ck_assert(done);
    ck_assert_int_eq(stat(tu_path(dir, "daemon.html"), &st), 0);
    store_close(s);
    ck_assert_int_eq(tu_db_int(db, "SELECT count(*) FROM history WHERE site = ?1", "P01"), 2);
}
END_TEST

/* ---- the page itself -------------------------------------------------------------------- */

START_TEST(test_report_is_self_contained_and_escapes_text)
{
    make_fleet();
    char *html = page();
    ck_assert_ptr_nonnull(strstr(html, "<meta http-equiv=\"Content-Security-Policy\" "
                                       "content=\"default-src 'none'; style-src "
                                       "'unsafe-inline'\">"));
    static const char *const banned[] = {"<script", "url(",    "@import", "<link",
                                         "<img",    "<iframe", "<object", "<embed"};
    for (size_t i = 0; i < sizeof(banned) / sizeof(banned[0]); i++)
        ck_assert_msg(strcasestr(html, banned[i]) == NULL, "page holds %s", banned[i]);
    /* No tag names an address or a source: links only within the page (href="#..."). A URL
     * or "src=" may appear as text (a pull error quotes a URL), where it loads nothing. */
    for (const char *t = strchr(html, '<'); t; t = strchr(t + 1, '<')) {
        const char *end = strchr(t, '>');
        ck_assert_ptr_nonnull(end);
        char *tag = strndup(t, (size_t)(end - t));
        static const char csp[] = "<meta http-equiv=\"Content-Security-Policy\"";
        if (!strncmp(tag, csp, sizeof(csp) - 1)) {
            free(tag);
            continue;
        }
        ck_assert_msg(!strcasestr(tag, "http:") && !strcasestr(tag, "https:") &&
                          !strstr(tag, "//") && !strcasestr(tag, "data:") &&
                          !strcasestr(tag, "src"),
                      "a tag names an address: %s", tag);
        const char *href = strstr(tag, "href=\"");
        ck_assert_msg(!href || href[6] == '#', "a link leaves the page: %s", tag);
        free(tag);
    }
    /* The verdict reason and the waiver's text, escaped. */
    ck_assert_ptr_nonnull(strstr(html, "&lt;script&gt;alert(1)&lt;/script&gt; staged"));
    ck_assert_ptr_nonnull(
        strstr(html, "&lt;b&gt;&quot;vendor&quot;&lt;/b&gt; &amp; &#39;patch&#39; &lt;img "));
    /* Accessible: headings, header cells with scope, charts with a text alternative. */
    tu_assert_has(html, "<h1>", "<th scope=\"col\">", "<th scope=\"row\">", "@media print",
                  "id=\"data-as-of\" datetime=\"2027-01-15T08:00:00Z\"");
    free(html);
}
END_TEST

START_TEST(test_report_lists_orphan_risk_first_with_its_dependents)
{
    make_fleet();
    char *html = page();
    const char *sec = strstr(html, "id=\"site-P01\"");
    ck_assert_ptr_nonnull(sec);
    const char *risk = strstr(sec, ">Orphan risk</h3>");
    const char *phase = strstr(sec, "<h3>Phase</h3>");
    ck_assert_ptr_nonnull(risk);
    ck_assert_ptr_nonnull(phase);
    ck_assert(risk < phase);
    /* The colour is not the only signal: the words say it. */
    const char *row = strstr(risk, "<tr data-server=\"dp1.p01.test\">");
    ck_assert_ptr_nonnull(row);
    ck_assert(row < phase);
    const char *row_end = strstr(row, "</tr>");
    ck_assert_ptr_nonnull(strstr(row, "ORPHAN RISK"));
    /* Its blocking dependents: c2..c6 (c7 is waived), by rule. */
    char *cut = strndup(row, (size_t)(row_end - row));
    tu_assert_has(cut, "winhttp-kb3140245", "c2.p01.test (not_ready)", "c6.p01.test (unknown)");
    ck_assert_ptr_null(strstr(cut, "c7.p01.test"));
    ck_assert_int_eq(html_count(row, row_end, "blocking"), 5);
    free(cut);
    /* The alert above the overview names the site. */
    const char *alert = strstr(html, "id=\"orphan-risk-alert\"");
    ck_assert_ptr_nonnull(alert);
    ck_assert(alert < strstr(html, "id=\"overview\""));
    /* P02 has none, and says so. */
    ck_assert_ptr_nonnull(strstr(strstr(html, "id=\"site-P02\""), "No server at orphan risk"));
    /* Failing pulls with their kind; the expiring waiver. */
    tu_assert_has(sec, "data-kind=\"connect\"", "data-kind=\"tls\"",
                  "<table data-list=\"expiring-waivers\">");
    free(html);
}
END_TEST

/* The wire section: servers probed and never probed, those accepting a legacy protocol, restart
 * pending first; the same as the servers CSV's probe columns. */
START_TEST(test_report_shows_the_wire_probe)
{
    make_fleet();
    struct store *s = fx_open(db);
    fx_probed(s, "sql.p02.test", "accepted", FX_NOW - 120);
    fx_probed(s, "mp2.p02.test", "refused", FX_NOW - 120);
    fx_probed(s, "mp1.p01.test", "accepted", FX_NOW - 60); /* registry still on: no restart */
    store_close(s);
    char *html = page();
    const char *p01 = strstr(html, "id=\"site-P01\""), *p02 = strstr(html, "id=\"site-P02\"");
    ck_assert_ptr_nonnull(p01);
    ck_assert_ptr_nonnull(p02);
    const char *w1 = strstr(p01, "<h3>Wire:"), *w2 = strstr(p02, "<h3>Wire:");
    ck_assert_ptr_nonnull(w1);
    ck_assert_ptr_nonnull(w2);
    ck_assert_int_eq(html_count(w1, p02, "wire_probed"), 1);
    ck_assert_int_eq(html_count(w1, p02, "wire_never_probed"), 1);
    ck_assert_int_eq(html_count(w1, p02, "wire_legacy_accepted"), 1);
    ck_assert_int_eq(html_count(w1, p02, "wire_restart_pending"), 0);
    ck_assert_int_eq(html_count(w2, NULL, "wire_probed"), 2);
    ck_assert_int_eq(html_count(w2, NULL, "wire_never_probed"), 0);
    ck_assert_int_eq(html_count(w2, NULL, "wire_restart_pending"), 1);
    const char *row = strstr(w2, "<tr data-server=\"sql.p02.test\">");
    ck_assert_ptr_nonnull(row);
    const char *row_end = strstr(row, "</tr>");
    char *cut = strndup(row, (size_t)(row_end - row));
    ck_assert_ptr_nonnull(strstr(cut, "tls1.0"));
    ck_assert_ptr_nonnull(strstr(cut, "RESTART PENDING"));
    free(cut);
    ck_assert_ptr_null(strstr(w2, "data-server=\"mp2.p02.test\""));
    /* The CSV says the same. */
    char *csv = export_view("servers");
    const char *line = strstr(csv, "\nsql.p02.test,");
    ck_assert_ptr_nonnull(line);
    ck_assert_msg(!strncmp(strstr(line, ",tls1.0,"), ",tls1.0,2027-01-15T07:58:00Z,true\r\n", 35),
                  "%s", csv);
    free(csv);
    free(html);
}
END_TEST

START_TEST(test_report_cuts_long_lists_with_a_count_and_the_csv_view)
{
    struct store *s = fx_open(db);
    fx_site(s, "P01", "inventory");
    fx_sql(s, "BEGIN");
    for (int i = 0; i < 57; i++) {
        char name[64];
        snprintf(name, sizeof(name), "c%02d.p01.test", i);
        long long id = fx_host(s, name, "P01", ROLE_CLIENT);
        fx_sql(s,
               "INSERT INTO poll (host_id, last_attempt_at, last_error, failures) VALUES (%lld, "
               "%lld, 'x via y: Operation timed out after 3000 milliseconds', 2)",
               id, FX_NOW - 10);
    }
    fx_sql(s, "COMMIT");
    store_close(s);
    char *html = page();
    ck_assert_ptr_nonnull(
        strstr(html, "and 37 more hosts — see <code>tlsgate export csv --view pull-failures "
                     "--site P01</code>"));
    ck_assert_ptr_nonnull(strstr(html, "data-kind=\"timeout\""));
    free(html);
    /* The view has all of them. */
    char *csv = export_view("pull-failures");
    int lines = 0;
    for (const char *p = csv; (p = strchr(p, '\n')); p++)
        lines++;
    ck_assert_int_eq(lines, 58);
    ck_assert_ptr_nonnull(strstr(csv, "host,site,failures,last_attempt,last_success,kind,error"));
    free(csv);
}
END_TEST

START_TEST(test_report_failure_leaves_the_old_page)
{
    make_fleet();
    const char *path = tu_path(dir, "status.html");
    tu_write_file(path, "old", 3);
    char *err = NULL;
    ck_assert_int_eq(fx_run(db, NULL, &err, "report", "html", "--out", path, "--site", "ZZ9", NULL),
                     3);
    ck_assert_ptr_nonnull(strstr(err, "ZZ9"));
    free(err);
    err = NULL;
    ck_assert_int_eq(fx_run(db, NULL, &err, "report", "html", "--out",
                            tu_path(dir, "no-such-folder/s.html"), NULL),
                     4);
    ck_assert_ptr_nonnull(strstr(err, "no-such-folder"));
    free(err);
    ck_assert_int_eq(fx_run(db, NULL, NULL, "report", "html", NULL), 2);
    ck_assert_int_eq(fx_run(db, NULL, NULL, "report", "pdf", "--out", path, NULL), 2);
    ck_assert_int_eq(fx_run(db, NULL, NULL, "report", "html", "--out", path, "--bogus", NULL), 2);
    char *kept = tu_read_file(path, NULL);
    ck_assert_str_eq(kept, "old");
    free(kept);
    /* No temp file left beside it. */
    ck_assert_int_eq(
        tu_run((char *const[]){"/bin/sh", "-c", "ls -A \"$0\" | grep -c tmp", (char *)dir, NULL},
               NULL, NULL, NULL),
        1);
    /* --site writes only that site. */
    ck_assert_int_eq(fx_run(db, NULL, NULL, "report", "html", "--out", path, "--site", "P02", NULL),
                     0);
    char *html = tu_read_file(path, NULL);
    ck_assert_ptr_nonnull(strstr(html, "id=\"site-P02\""));
    ck_assert_ptr_null(strstr(html, "id=\"site-P01\""));
    free(html);
}
END_TEST

/* ---- collect records a point and writes the configured page ----------------------------- */

START_TEST(test_collect_records_history_and_writes_report_html)
{
    ck_assert_msg(tu_gen_certs(tu_path(dir, "certs"), TU_ARGS("gone.test")) == 0,
                  "gen-certs failed");
    char config[2048];
    snprintf(config, sizeof(config),
             "{\"tls\": {\"ca\": \"certs/ca.pem\", \"cert\": \"certs/orchestrator.pem\", "
             "\"key\": \"certs/orchestrator.key\"}, \"connect_timeout\": 2, \"timeout\": 3, "
             "\"report_html\": \"out/status.html\"}");
    tu_write_file(tu_path(dir, "tlsgate.json"), config, strlen(config));
    mkdir(tu_path(dir, "out"), 0755);
    struct store *s = fx_open(db);
    fx_site(s, "S01", "inventory");
    /* Port 1 on loopback: nothing listens, the pull fails with a refused connection. */
    fx_host_bare(s, "gone.test", "S01", ROLE_CLIENT, "127.0.0.1:1");
    store_close(s);
    char *out = NULL, *err = NULL;
    int rc = fx_run(db, &out, &err, "--config", tu_path(dir, "tlsgate.json"), "collect", NULL);
    ck_assert_msg(rc == 0, "collect: %d %s %s", rc, out, err);
    free(out);
    free(err);
    ck_assert_int_eq(tu_db_int(db, "SELECT pull_failing FROM history WHERE site = ?1", "S01"), 1);
    ck_assert_int_eq(tu_db_int(db, "SELECT unknown FROM history WHERE site = ?1", "S01"), 1);
    char *html = tu_read_file(tu_path(dir, "out/status.html"), NULL);
    ck_assert_ptr_nonnull(html);
    const char *row = strstr(html, "<tr data-site=\"S01\">");
    ck_assert_ptr_nonnull(row);
    ck_assert_int_eq(html_count(row, strstr(row, "</tr>"), "pull_failing"), 1);
    ck_assert_ptr_nonnull(strstr(html, "data-kind=\"connect\""));
    free(html);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("history");
    TCase *tc = tu_tcase(s, "history", setup, teardown,
                         TU_TESTS(test_history_point_and_page_equal_phase_status_gate_list_and_csv,
                                  test_history_rules_equal_rules_blockers_and_page,
                                  test_history_keeps_a_week_then_one_point_per_site_and_day,
                                  test_history_due_once_per_interval,
                                  test_report_is_self_contained_and_escapes_text,
                                  test_report_lists_orphan_risk_first_with_its_dependents,
                                  test_report_shows_the_wire_probe,
                                  test_report_cuts_long_lists_with_a_count_and_the_csv_view,
                                  test_report_failure_leaves_the_old_page,
                                  test_collect_records_history_and_writes_report_html));
    tcase_set_timeout(tc, 120);
    return s;
}

int main(void) { return tu_run_suite(suite()); }
