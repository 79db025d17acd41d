/*
 * test_browser.c — the status page in a real browser (suite 'browser'): Debian's chromium,
 * headless, renders the page of a demo-like database (two sites, Windows 7 clients not ready, a
 * distribution point at orphan risk, four days of history) to a DOM (--dump-dom) and a PNG
 * (--screenshot). The DOM must hold every site with the counts of `phase status --json`, the
 * orphan-risk section before the phase, and the charts' text alternatives; chromium's net log
 * must show no request the page asked for, and nothing but loopback connections at all (every
 * request chromium makes on its own goes to a proxy on 127.0.0.1 port 9, where nothing listens,
 * and every name resolves to nothing). A second test proves that check fails on a page that
 * loads an image.
 *
 * SKIPs (exit 77) with the reason when chromium is not installed (tools/bootstrap installs it).
 * $TLSGATE_KEEP_SHOT=PATH copies the screenshot there (how docs/status-page.png is made).
 */
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fixture.h"
#include "gate.h"
#include "history.h"
#include "store.h"
#include "testutil.h"

static char *dir;
static char db[4096];
static char chromium[4096];

static void setup(void) { dir = tu_tmpdir_with_db(db, sizeof(db)); }
static void teardown(void) { tu_tmpdir_drop(&dir); }

static bool find_chromium(void)
{
    const char *env = getenv("CHROMIUM");
    if (env && *env && access(env, X_OK) == 0) {
        snprintf(chromium, sizeof(chromium), "%s", env);
        return true;
    }
    static const char *const names[] = {"/usr/bin/chromium", "/usr/bin/chromium-browser", NULL};
    for (int i = 0; names[i]; i++)
        if (access(names[i], X_OK) == 0) {
            snprintf(chromium, sizeof(chromium), "%s", names[i]);
            return true;
        }
    return false;
}

static void record_at(long long now)
{
    struct store *s = fx_open(db);
    struct gate_time t = gate_time_make(now, FX_STALE_AFTER);
    ck_assert_msg(history_record(s, &t) == 0, "%s", store_errmsg(s));
    store_close(s);
}

/* PS1 (clients): site server + database, two MPs, a DP (legacy protocols off: orphan risk), 40
 * clients of which the Windows 7 ones were patched day by day; PS2 (inventory): never reported. */
static void make_demo_like_db(void)
{
    const long long day = 86400;
    struct store *s = fx_open(db);
    fx_site(s, "PS1", "clients");
    fx_site(s, "PS2", "inventory");
    fx_sql(s, "BEGIN");
    fx_host(s, "cm-site-ps1.sim.test", "PS1", ROLE_SITE_SERVER | ROLE_SMS_PROVIDER);
    fx_host(s, "cm-sql-ps1.sim.test", "PS1", ROLE_SITE_DATABASE);
    fx_host(s, "cm-mp-ps1-01.sim.test", "PS1", MP);
    fx_host(s, "cm-mp-ps1-02.sim.test", "PS1", MP);
    fx_host(s, "cm-dp-ps1-01.sim.test", "PS1", DP);
    fx_legacy_off(s, "cm-dp-ps1-01.sim.test");
    for (int i = 0; i < 40; i++) {
        char name[64];
        snprintf(name, sizeof(name), "ws%03d-ps1.sim.test", i);
        fx_host(s, name, "PS1", ROLE_CLIENT);
        if (i < 24)
            fx_win7_without_kb(s, name);
    }
    for (int i = 0; i < 12; i++) {
        char name[64];
        snprintf(name, sizeof(name), "ws%03d-ps2.sim.test", i);
        fx_host_bare(s, name, "PS2", ROLE_CLIENT, "127.0.0.1:9443");
    }
    fx_host_bare(s, "cm-mp-ps2-01.sim.test", "PS2", MP, "127.0.0.1:9443");
    fx_sql(s, "COMMIT");
    store_close(s);
    /* Four days: each day 6 more Windows 7 clients patched. */
    for (int d = 3; d >= 0; d--) {
        record_at(FX_NOW - d * day);
        if (d == 0)
            break;
        s = fx_open(db);
        for (int i = (3 - d) * 6; i < (4 - d) * 6; i++) {
            char name[64];
            snprintf(name, sizeof(name), "ws%03d-ps1.sim.test", i);
            fx_fix(s, name);
        }
        store_close(s);
    }
}

/* Runs chromium headless on `page` with the flags that keep it quiet and on loopback, plus
 * `what` (--dump-dom or --screenshot=...); returns the exit code, the DOM in *out. */
static int run_chromium(const char *page, const char *what, const char *netlog, char **out)
{
    char url[4200], profile[4200], net[4200];
    snprintf(url, sizeof(url), "file://%s", page);
    char *prof = tu_tmpdir();
    snprintf(profile, sizeof(profile), "--user-data-dir=%s", prof);
    snprintf(net, sizeof(net), "--log-net-log=%s", netlog);
    char *argv[] = {"/usr/bin/timeout", "120", chromium, "--headless", "--no-sandbox",
                    "--disable-gpu", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--no-first-run", "--no-pings",
                    "--disable-domain-reliability", "--disable-client-side-phishing-detection",
                    "--disable-default-apps",
                    /* What chromium still fetches on its own goes nowhere but loopback. */
                    "--proxy-server=127.0.0.1:9", "--host-resolver-rules=MAP * ~NOTFOUND",
                    "--window-size=1200,2400", profile, net, (char *)what, url, NULL};
    char *err = NULL;
    int rc = tu_run(argv, NULL, out, &err);
    if (rc)
        fprintf(stderr, "chromium exit %d: %s\n", rc, err ? err : "");
    free(err);
    tu_rmtree(prof);
    free(prof);
    return rc;
}

/*
 * Reads chromium's net log: how many requests the page itself asked for (URL requests whose
 * initiator is an origin; chromium's own carry "not an origin"), and how many connections or
 * datagrams went to an address off loopback. `why` gets the first of either.
 */
static int netlog_violations(const char *path, char *why, size_t whysize)
{
    json_error_t jerr;
    json_t *log = json_load_file(path, 0, &jerr);
    ck_assert_msg(log != NULL, "net log %s: %s", path, jerr.text);
    json_t *types = json_object_get(json_object_get(log, "constants"), "logEventTypes");
    long long start_job = json_integer_value(json_object_get(types, "URL_REQUEST_START_JOB"));
    long long tcp_attempt = json_integer_value(json_object_get(types, "TCP_CONNECT_ATTEMPT"));
    long long udp_sent = json_integer_value(json_object_get(types, "UDP_BYTES_SENT"));
    ck_assert_int_gt(start_job, 0);
    int bad = 0;
    size_t i;
    json_t *ev;
    why[0] = '\0';
    json_array_foreach(json_object_get(log, "events"), i, ev)
    {
        long long type = json_integer_value(json_object_get(ev, "type"));
        json_t *params = json_object_get(ev, "params");
        if (type == start_job) {
            const char *init = json_string_value(json_object_get(params, "initiator"));
            if (init && strcmp(init, "not an origin")) {
                if (!bad++)
                    snprintf(why, whysize, "the page requested %s",
                             json_string_value(json_object_get(params, "url")));
            }
        } else if (type == tcp_attempt || type == udp_sent) {
            const char *addr = json_string_value(json_object_get(params, "address"));
            if (addr && strncmp(addr, "127.", 4) && strncmp(addr, "[::1]", 5)) {
                if (!bad++)
                    snprintf(why, whysize, "a connection to %s", addr);
            }
        }
    }
    json_decref(log);
    return bad;
}

/* The number the rendered DOM shows in the element data-k="key" (its text, not an attribute). */
static long dom_count(const char *from, const char *until, const char *key)
{
    return tu_data_k(from, until, key, false);
}

START_TEST(test_chromium_renders_the_page_with_the_numbers_and_loads_nothing)
{
    make_demo_like_db();
    const char *page = strdup(tu_path(dir, "status.html"));
    char *err = NULL;
    ck_assert_msg(fx_run(db, NULL, &err, "report", "html", "--out", page, NULL) == 0, "%s", err);
    free(err);

    char *dom = NULL;
    ck_assert_int_eq(run_chromium(page, "--dump-dom", tu_path(dir, "net1.json"), &dom), 0);
    ck_assert_ptr_nonnull(dom);
    ck_assert_ptr_nonnull(strstr(dom, "<title>tlsgate status — TLS 1.2 rollout, data as of "
                                      "2027-01-15T08:00:00Z</title>"));

    char *out = NULL;
    ck_assert_int_eq(fx_run(db, &out, NULL, "--json", "phase", "status", NULL), 0);
    json_t *status = json_loads(out, 0, NULL);
    ck_assert_ptr_nonnull(status);
    free(out);
    size_t i;
    json_t *site;
    static const char *const keys[] = {"hosts", "ready", "not_ready", "unknown", "waived"};
    json_array_foreach(json_object_get(status, "sites"), i, site)
    {
        const char *code = json_string_value(json_object_get(site, "site"));
        char anchor[64];
        snprintf(anchor, sizeof(anchor), "id=\"counts-%s\"", code);
        const char *counts = strstr(dom, anchor);
        ck_assert_msg(counts != NULL, "DOM lacks site %s", code);
        snprintf(anchor, sizeof(anchor), ">Site %s</h2>", code);
        ck_assert_ptr_nonnull(strstr(dom, anchor));
        for (int k = 0; k < 5; k++)
            ck_assert_int_eq(dom_count(counts, NULL, keys[k]),
                             json_integer_value(json_object_get(site, keys[k])));
    }
    ck_assert_int_eq(i, 2);
    json_decref(status);
    /* The numbers of this fleet: 6 Windows 7 clients still not ready in PS1. */
    ck_assert_int_eq(dom_count(strstr(dom, "id=\"counts-PS1\""), NULL, "not_ready"), 6);
    ck_assert_int_eq(dom_count(strstr(dom, "id=\"counts-PS2\""), NULL, "unknown"), 13);

    /* Orphan risk: before the phase, in words, with the blocking dependents. */
    const char *sec = strstr(dom, "id=\"site-PS1\"");
    const char *risk = strstr(sec, ">Orphan risk</h3>");
    const char *phase = strstr(sec, "<h3>Phase</h3>");
    ck_assert(risk && phase && risk < phase);
    const char *row = strstr(risk, "data-server=\"cm-dp-ps1-01.sim.test\"");
    ck_assert(row && row < phase);
    ck_assert_ptr_nonnull(strstr(row, "ORPHAN RISK"));
    ck_assert_ptr_nonnull(strstr(row, "ws018-ps1.sim.test (not_ready)"));
    /* The burn-down chart, with its text alternative. */
    ck_assert_ptr_nonnull(strstr(sec, "<title id=\"chart-t-PS1\">"));
    ck_assert_ptr_nonnull(strstr(sec, "not ready went from 24 to 6"));

    char why[512];
    ck_assert_msg(netlog_violations(tu_path(dir, "net1.json"), why, sizeof(why)) == 0, "%s", why);

    char shot[4200];
    snprintf(shot, sizeof(shot), "--screenshot=%s", tu_path(dir, "shot.png"));
    ck_assert_int_eq(run_chromium(page, shot, tu_path(dir, "net2.json"), NULL), 0);
    size_t len = 0;
    char *png = tu_read_file(tu_path(dir, "shot.png"), &len);
    ck_assert_ptr_nonnull(png);
    ck_assert_int_gt(len, 10000);
    ck_assert_int_eq(memcmp(png, "\x89PNG\r\n\x1a\n", 8), 0);
    const char *keep = getenv("TLSGATE_KEEP_SHOT");
    if (keep && *keep)
        tu_write_file(keep, png, len);
    free(png);
    ck_assert_msg(netlog_violations(tu_path(dir, "net2.json"), why, sizeof(why)) == 0, "%s", why);
    free(dom);
    free((char *)page);
}
END_TEST

/* The net-log check is not vacuous: a page that loads an image (from loopback, where nothing
 * listens) is caught. */
START_TEST(test_netlog_check_catches_a_page_that_loads)
{
    const char *page = tu_path(dir, "loads.html");
    static const char html[] = "<!DOCTYPE html><html><head><title>loads</title></head><body>"
                               "<img src=\"http://127.0.0.1:9/pixel.png\" alt=\"\"></body></html>";
    tu_write_file(page, html, strlen(html));
    char *dom = NULL;
    char *copy = strdup(page);
    ck_assert_int_eq(run_chromium(copy, "--dump-dom", tu_path(dir, "net.json"), &dom), 0);
    char why[512];
    ck_assert_int_gt(netlog_violations(tu_path(dir, "net.json"), why, sizeof(why)), 0);
    ck_assert_msg(strstr(why, "127.0.0.1:9/pixel.png") != NULL, "%s", why);
    free(dom);
    free(copy);
}
END_TEST

int main(void)
{
    if (!find_chromium()) {
        printf("SKIP: chromium is not installed (tools/bootstrap installs Debian's chromium); "
               "the status page was not rendered in a browser\n");
        return 77;
    }
    Suite *s = suite_create("browser");
    TCase *tc = tu_tcase(s, "browser", setup, teardown,
                         TU_TESTS(test_chromium_renders_the_page_with_the_numbers_and_loads_nothing,
                                  test_netlog_check_catches_a_page_that_loads));
    tcase_set_timeout(tc, 280);
    return tu_run_suite(s);
}
