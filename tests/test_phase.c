/*
 * test_phase.c — a site's ordered phases through the real `tlsgate phase` command on real
 * database files: exit criteria, refusals that change nothing, dry runs, rollback, concurrent
 * advances, and the audit rows they leave.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fixture.h"
#include "gate.h"

static char *dir;
static const char *db;
static struct store *s;

static void setup(void)
{
    dir = tu_tmpdir();
    db = strdup(tu_path(dir, "phase.db"));
    s = fx_open(db);
}

static void teardown(void)
{
    store_close(s);
    tu_rmtree(dir);
    free(dir);
    free((char *)db);
}

/* Site P01 in `phase` with database/site server, MP, DP, SUP, a console and three clients, all
 * ready; site P02 in inventory with one client that never reported. */
static void fleet(const char *phase)
{
    fx_site(s, "P01", phase);
    fx_site(s, "P02", "inventory");
    fx_p01_servers(s);
    fx_host(s, "con1.p01.example", "P01", ROLE_CONSOLE);
    fx_host(s, "pc1.p01.example", "P01", ROLE_CLIENT);
    fx_host(s, "pc2.p01.example", "P01", ROLE_CLIENT);
    fx_host(s, "pc3.p01.example", "P01", ROLE_CLIENT);
    fx_host(s, "pc1.p02.example", "P02", ROLE_CLIENT);
    fx_unreported(s, "pc1.p02.example");
}

static char *phase_of(const char *site)
{
    sqlite3_stmt *st;
    ck_assert_int_eq(store_prepare(s, "SELECT phase FROM site WHERE code = ?", &st), 0);
    sqlite3_bind_text(st, 1, site, -1, SQLITE_STATIC);
    ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
    char *p = strdup((const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    return p;
}

#define ck_phase(site, expected)                                                                   \
    do {                                                                                           \
        char *p_ = phase_of(site);                                                                 \
        ck_assert_str_eq(p_, expected);                                                            \
        free(p_);                                                                                  \
    } while (0)

static int advance(char **out)
{
    return fx_run(db, out, NULL, "phase", "advance", "--site", "P01", NULL);
}

START_TEST(test_phase_happy_path_through_all_phases)
{
    fleet("inventory");
    /* inventory -> clients needs a fresh report from every host. */
    fx_unreported(s, "pc3.p01.example");
    char *out;
    ck_assert_int_eq(advance(&out), 1);
    ck_assert_ptr_nonnull(strstr(out, "1 host: no-report: never reported"));
    free(out);
    fx_host(s, "tmp.p01.example", "P01", ROLE_CLIENT); /* fresh, for the next step */
    fx_sql(s,
           "INSERT INTO report SELECT %lld, collected_at, received_at, body, catalog_version,"
           " 0, 0, 0 FROM report WHERE host_id = %lld",
           fx_id(s, "pc3.p01.example"), fx_id(s, "pc1.p01.example"));
    ck_assert_int_eq(advance(&out), 0);
    ck_assert_str_eq(out, "site P01: inventory -> clients\n");
    free(out);
    ck_phase("P01", "clients");

    /* clients -> servers: every client ready. */
    fx_win7_without_kb(s, "pc2.p01.example");
    ck_assert_int_eq(advance(NULL), 1);
    fx_fix(s, "pc2.p01.example");
    ck_assert_int_eq(advance(NULL), 0);
    ck_phase("P01", "servers");

    /* servers -> enforce: every site system and console ready. */
    fx_fail(s, "con1.p01.example", "console-dotnet", ".NET 4.6.2 missing");
    ck_assert_int_eq(advance(&out), 1);
    ck_assert_ptr_nonnull(strstr(out, "1 site system: console-dotnet: .NET 4.6.2 missing"));
    free(out);
    fx_fix(s, "con1.p01.example");
    ck_assert_int_eq(advance(NULL), 0);
    ck_phase("P01", "enforce");
    ck_assert_int_eq(fx_run(db, NULL, NULL, "gate", "check", "mp1.p01.example", NULL), 0);

    /* enforce -> complete: every server reports the legacy protocols off. */
    const char *servers[] = {"db1.p01.example", "mp1.p01.example", "dp1.p01.example",
                             "sup1.p01.example"};
    for (int i = 0; i < 4; i++) {
        ck_assert_int_eq(advance(&out), 1);
        ck_assert_ptr_nonnull(strstr(out, "legacy-enabled"));
        free(out);
        fx_legacy_off(s, servers[i]);
    }
    /* ... and the wire agrees: fail closed while no probe says so. */
    ck_assert_int_eq(advance(&out), 1);
    ck_assert_ptr_nonnull(strstr(out, "4 servers fail"));
    ck_assert_ptr_nonnull(strstr(out, "not-probed"));
    free(out);
    for (int i = 0; i < 4; i++)
        fx_probed(s, servers[i], "refused", FX_NOW - 60);
    ck_assert_int_eq(advance(NULL), 0);
    ck_phase("P01", "complete");
    char *err;
    ck_assert_int_eq(fx_run(db, NULL, &err, "phase", "advance", "--site", "P01", NULL), 1);
    ck_assert_ptr_nonnull(strstr(err, "already complete"));
    free(err);

    ck_assert_int_eq(fx_int(s, "SELECT count(*) FROM phase_history WHERE site = 'P01'"), 4);
    ck_assert_int_eq(fx_int(s,
                            "SELECT count(*) FROM phase_history WHERE site = 'P01' AND "
                            "from_phase = 'enforce' AND to_phase = 'complete' AND "
                            "by = 'tester' AND at = %lld",
                            FX_NOW),
                     1);
    ck_assert_int_eq(fx_int(s, "SELECT entered_at FROM site WHERE code = 'P01'"), FX_NOW);
    /* Audit: 4 moves, 1 + 1 + 1 + 5 refusals before them, 1 refusal after. */
    ck_assert_int_eq(fx_int(s, "SELECT count(*) FROM audit WHERE outcome LIKE 'ok: %%'"), 4);
    ck_assert_int_eq(fx_int(s, "SELECT count(*) FROM audit WHERE outcome LIKE 'refused: %%'"), 9);
    ck_assert_int_eq(fx_int(s, "SELECT count(*) FROM audit WHERE outcome = "
                               "'ok: enforce -> complete' AND user = 'tester'"),
                     1);
}
END_TEST

START_TEST(test_phase_win7_client_blocks_clients_to_servers_and_lists_groups)
{
    fleet("clients");
    fx_win7_without_kb(s, "pc1.p01.example");
    fx_win7_without_kb(s, "pc3.p01.example");
    fx_fail(s, "pc3.p01.example", "schannel-tls12-client", "TLS 1.2 client disabled");
    fx_stale(s, "pc2.p01.example");
    fx_fail(s, "mp1.p01.example", "x", "servers are not this phase business");
    char *out;
    ck_assert_int_eq(advance(&out), 1);
    ck_assert_str_eq(out,
                     "site P01: clients -> servers refused: 3 clients fail \"every client is "
                     "ready or waived\"\n"
                     "  2 clients: winhttp-kb3140245: KB3140245 missing\n"
                     "    remedy: Install KB3140245 (Update to enable TLS 1.1 and TLS 1.2 as "
                     "default secure protocols in WinHTTP), then set DefaultSecureProtocols "
                     "(rules winhttp-dsp, winhttp-dsp-wow64); reinstall it after adding a "
                     "language pack.\n"
                     "    pc1.p01.example  not_ready  KB3140245 missing\n"
                     "    pc3.p01.example  not_ready  KB3140245 missing\n"
                     "  1 client: schannel-tls12-client: TLS 1.2 client disabled\n"
                     "    remedy: Under HKLM\\SYSTEM\\CurrentControlSet\\Control\\"
                     "SecurityProviders\\SCHANNEL\\Protocols\\TLS 1.2\\Client set Enabled=1 "
                     "(DWORD; required on Windows 7 / Server 2008 R2 / Server 2008 SP2, where "
                     "TLS 1.2 is not enabled by default) and DisabledByDefault=0, remove any "
                     "Enabled=0, restart.\n"
                     "    pc3.p01.example  not_ready  TLS 1.2 client disabled\n"
                     "  1 client: stale-report: last report 2027-01-14T07:59:59Z is older than "
                     "stale_after\n"
                     "    pc2.p01.example  unknown  last report 2027-01-14T07:59:59Z is older "
                     "than stale_after\n");
    free(out);
    ck_phase("P01", "clients");
    ck_assert_int_eq(fx_int(s, "SELECT count(*) FROM audit WHERE outcome = 'refused: 3 blockers'"),
                     1);
    ck_assert_int_eq(fx_int(s, "SELECT count(*) FROM phase_history"), 0);

    ck_assert_int_eq(
        fx_run(db, &out, NULL, "--json", "phase", "advance", "--site", "P01", "--dry-run", NULL),
        1);
    ck_assert_ptr_nonnull(strstr(out, "{\"site\":\"P01\",\"from\":\"clients\",\"to\":\"servers\","
                                      "\"dry_run\":true,\"advanced\":false,\"blocking\":3,"
                                      "\"waived\":0,\"groups\":[{\"rule\":"
                                      "\"winhttp-kb3140245\","
                                      "\"hosts\":2,\"reason\":\"KB3140245 missing\","
                                      "\"remedy\":\"Install KB3140245 "));
    free(out);

    /* A waiver lets the site pass; an unrelated site's state does not matter. */
    fx_waive(s, "pc1.p01.example", 0);
    fx_waive(s, "pc3.p01.example", FX_NOW + 10);
    fx_waive(s, "pc2.p01.example", 0);
    ck_assert_int_eq(fx_run(db, &out, NULL, "phase", "advance", "--site", "P01", "--dry-run", NULL),
                     0);
    ck_assert_str_eq(out, "site P01: clients -> servers would pass (every client is ready or "
                          "waived)\n"
                          "  3 waived hosts of P01 pass by waiver (see `tlsgate gate check`, "
                          "`tlsgate audit`)\n");
    free(out);
    /* ... until the waiver of pc3 expires. */
    ck_assert_int_eq(fx_run_at(db, FX_NOW + 10, NULL, NULL, "phase", "advance", "--site", "P01",
                               "--dry-run", NULL),
                     1);
    ck_assert_int_eq(advance(NULL), 0);
    ck_phase("P01", "servers");
}
END_TEST

START_TEST(test_phase_dry_run_changes_nothing)
{
    fleet("inventory");
    char *out;
    ck_assert_int_eq(fx_run(db, &out, NULL, "phase", "advance", "--site", "P01", "--dry-run", NULL),
                     0);
    ck_assert_str_eq(out, "site P01: inventory -> clients would pass (every host has a fresh "
                          "report)\n");
    free(out);
    ck_assert_int_eq(fx_run(db, NULL, NULL, "phase", "advance", "--site", "P02", "--dry-run", NULL),
                     1);
    ck_phase("P01", "inventory");
    ck_phase("P02", "inventory");
    ck_assert_int_eq(fx_int(s, "SELECT count(*) FROM audit"), 0);
    ck_assert_int_eq(fx_int(s, "SELECT count(*) FROM phase_history"), 0);
}
END_TEST

START_TEST(test_phase_out_of_order_and_bad_usage_refused_and_change_nothing)
{
    fleet("inventory");
    char *err;
    /* Nothing before inventory. */
    ck_assert_int_eq(
        fx_run(db, NULL, &err, "phase", "rollback", "--site", "P01", "--reason", "x", NULL), 1);
    ck_assert_ptr_nonnull(strstr(err, "nothing to roll back"));
    free(err);
    ck_assert_int_eq(fx_run(db, NULL, &err, "phase", "advance", NULL), 2);
    ck_assert_ptr_nonnull(strstr(err, "--site S is required"));
    free(err);
    ck_assert_int_eq(fx_run(db, NULL, NULL, "phase", "advance", "--site", NULL), 2);
    ck_assert_int_eq(fx_run(db, NULL, NULL, "phase", "advance", "--site", "P01", "--force", NULL),
                     2);
    ck_assert_int_eq(fx_run(db, NULL, NULL, "phase", "rollback", "--site", "P01", NULL), 2);
    ck_assert_int_eq(fx_run(db, NULL, NULL, "phase", "rollback", "--site", "P01", "--dry-run",
                            "--reason", "r", NULL),
                     2);
    ck_assert_int_eq(fx_run(db, NULL, NULL, "phase", "jump", "--site", "P01", NULL), 2);
    ck_assert_int_eq(fx_run(db, NULL, NULL, "phase", NULL), 2);
    ck_assert_int_eq(fx_run(db, NULL, &err, "phase", "advance", "--site", "ZZ9", NULL), 3);
    ck_assert_ptr_nonnull(strstr(err, "no such site: ZZ9"));
    free(err);
    ck_assert_int_eq(fx_run(db, NULL, &err, "phase", "status", "--site", "ZZ9", NULL), 3);
    free(err);
    ck_phase("P01", "inventory");
    ck_assert_int_eq(fx_int(s, "SELECT count(*) FROM phase_history"), 0);
    /* Only the refused rollback is a recorded decision; usage errors are not. */
    ck_assert_int_eq(fx_int(s, "SELECT count(*) FROM audit"), 1);
    ck_assert_int_eq(fx_int(s, "SELECT count(*) FROM audit WHERE outcome = "
                               "'refused: site is in inventory'"),
                     1);
}
END_TEST

/* An unknown site with --json left half a document ("{\"sites\":[") on stdout. */
START_TEST(test_phase_status_json_unknown_site_prints_nothing)
{
    fleet("inventory");
    fx_json_unknown_site_prints_nothing(db, "phase", "status", "ZZ9");
    char *out;
    ck_assert_int_eq(fx_run(db, &out, NULL, "--json", "phase", "status", "--site", "P01", NULL), 0);
    ck_assert_ptr_nonnull(strstr(out, "{\"sites\":[{\"site\":\"P01\""));
    ck_assert_ptr_nonnull(strstr(out, "]}\n"));
    free(out);
}
END_TEST

START_TEST(test_phase_rollback_out_of_enforce_marks_servers_to_reenable_legacy)
{
    fleet("enforce");
    fx_legacy_off(s, "mp1.p01.example");
    char *out;
    ck_assert_int_eq(fx_run(db, &out, NULL, "phase", "rollback", "--site", "P01", "--reason",
                            "pc fleet regression", NULL),
                     0);
    ck_assert_ptr_nonnull(strstr(out, "site P01: enforce -> servers"));
    free(out);
    ck_phase("P01", "servers");
    /* Every server of the site, not the clients, the console or another site's hosts. */
    ck_assert_int_eq(fx_int(s, "SELECT count(*) FROM host WHERE reenable_legacy = 1"), 4);
    ck_assert_int_eq(fx_int(s,
                            "SELECT count(*) FROM host WHERE reenable_legacy = 1 AND "
                            "(roles & %d) = 0",
                            ROLE_SERVER_MASK),
                     0);
    ck_assert_int_eq(fx_int(s, "SELECT count(*) FROM phase_history WHERE reason = "
                               "'pc fleet regression' AND from_phase = 'enforce'"),
                     1);
    ck_assert_int_eq(fx_run(db, &out, NULL, "gate", "check", "mp1.p01.example", NULL), 1);
    ck_assert_ptr_nonnull(strstr(out, "asked to re-enable legacy protocols"));
    free(out);
    /* Back into enforce withdraws the request. */
    ck_assert_int_eq(advance(NULL), 0);
    ck_assert_int_eq(fx_int(s, "SELECT count(*) FROM host WHERE reenable_legacy = 1"), 0);
    /* Rollback from servers does not touch the flags. */
    ck_assert_int_eq(
        fx_run(db, NULL, NULL, "phase", "rollback", "--site", "P01", "--reason", "a", NULL), 0);
    ck_assert_int_eq(
        fx_run(db, NULL, NULL, "phase", "rollback", "--site", "P01", "--reason", "b", NULL), 0);
    ck_phase("P01", "clients");
    ck_assert_int_eq(fx_int(s, "SELECT count(*) FROM host WHERE reenable_legacy = 1"), 4);
    ck_assert_int_eq(fx_int(s, "SELECT count(*) FROM audit WHERE outcome LIKE 'ok: enforce -> "
                               "servers, servers asked to re-enable%%'"),
                     2);
}
END_TEST

/*
 * Several `tlsgate phase advance` processes at once. The site passes inventory but not clients,
 * so whatever the interleaving exactly one may move it and every other one must see the moved
 * site and be refused (exit 1) — not fail (a check made on a stale snapshot would end in
 * SQLITE_BUSY, exit 4) and not move it twice. A few thousand clients make each check last
 * long enough for the processes to overlap.
 */
#define RACERS 6
START_TEST(test_phase_concurrent_advances_cannot_both_succeed)
{
    fleet("inventory");
    fx_win7_without_kb(s, "pc1.p01.example");
    fx_sql(s, "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000)"
              " INSERT INTO host (name, site, roles, collector, added_at, updated_at)"
              " SELECT 'bulk' || i || '.p01.example', 'P01', 1, '127.0.0.1:9443', 0, 0 FROM n");
    fx_sql(s,
           "INSERT INTO report SELECT id, %lld, 0, '{}', 't', 0, 0, 0 FROM host"
           " WHERE name LIKE 'bulk%%'",
           FX_NOW - 60);
    pid_t pids[RACERS];
    for (int i = 0; i < RACERS; i++) {
        pids[i] = fork();
        ck_assert_int_ge(pids[i], 0);
        if (pids[i] == 0)
            _exit(fx_run(db, NULL, NULL, "phase", "advance", "--site", "P01", NULL));
    }
    int moved = 0, refused = 0;
    for (int i = 0; i < RACERS; i++) {
        int status;
        ck_assert_int_eq(waitpid(pids[i], &status, 0), pids[i]);
        ck_assert(WIFEXITED(status));
        int code = WEXITSTATUS(status);
        ck_assert_msg(code == 0 || code == 1, "racer %d exited %d", i, code);
        moved += code == 0;
        refused += code == 1;
    }
    ck_assert_int_eq(moved, 1);
    ck_assert_int_eq(refused, RACERS - 1);
    ck_phase("P01", "clients");
    ck_assert_int_eq(fx_int(s, "SELECT count(*) FROM phase_history"), 1);
    ck_assert_int_eq(fx_int(s, "SELECT count(*) FROM audit WHERE outcome = 'refused: 1 blockers'"),
                     RACERS - 1);
}
END_TEST

START_TEST(test_phase_status_shows_counts_next_step_and_orphan_risk)
{
    fleet("servers");
    fx_win7_without_kb(s, "pc2.p01.example");
    fx_waive(s, "pc3.p01.example", 0);
    fx_legacy_off(s, "dp1.p01.example");
    char *out;
    ck_assert_int_eq(fx_run(db, &out, NULL, "phase", "status", "--site", "p01", NULL), 0);
    ck_assert_str_eq(out, "P01: servers since 1970-01-01T00:00:00Z by fixture\n"
                          "  hosts 8: ready 7, not_ready 1, unknown 0, waived 1\n"
                          "  servers 4: gate open 0, orphan risk 1\n"
                          "  -> enforce: can advance (every site system and console is ready or "
                          "waived)\n"
                          "  ORPHAN RISK: dp1.p01.example reports legacy protocols disabled "
                          "while its gate is blocked (1 blocking dependents)\n");
    free(out);
    ck_assert_int_eq(fx_run(db, &out, NULL, "phase", "status", "--json", NULL), 0);
    ck_assert_str_eq(out, "{\"sites\":[{\"site\":\"P01\",\"phase\":\"servers\",\"entered_at\":"
                          "\"1970-01-01T00:00:00Z\",\"entered_by\":\"fixture\",\"hosts\":8,"
                          "\"ready\":7,\"not_ready\":1,\"unknown\":0,\"waived\":1,\"servers\":4,"
                          "\"servers_gate_open\":0,\"next\":\"enforce\",\"exit_blocking\":0,"
                          "\"wire_alarm\":0,"
                          "\"orphan_risk\":[\"dp1.p01.example\"]},"
                          "{\"site\":\"P02\",\"phase\":\"inventory\",\"entered_at\":"
                          "\"1970-01-01T00:00:00Z\",\"entered_by\":\"fixture\",\"hosts\":1,"
                          "\"ready\":0,\"not_ready\":0,\"unknown\":1,\"waived\":0,\"servers\":0,"
                          "\"servers_gate_open\":0,\"next\":\"clients\",\"exit_blocking\":1,"
                          "\"wire_alarm\":0,"
                          "\"orphan_risk\":[]}]}\n");
    free(out);
}
END_TEST

START_TEST(test_phase_servers_exit_counts_consoles_and_waived_systems_pass)
{
    fleet("servers");
    fx_stale(s, "con1.p01.example");
    fx_unreported(s, "sup1.p01.example");
    char *out;
    ck_assert_int_eq(advance(&out), 1);
    tu_assert_has(out, "2 site systems fail", "con1.p01.example  unknown",
                  "sup1.p01.example  unknown  never reported");
    free(out);
    fx_waive(s, "con1.p01.example", 0);
    fx_waive(s, "sup1.p01.example", 0);
    ck_assert_int_eq(advance(NULL), 0);
    ck_phase("P01", "enforce");
}
END_TEST

START_TEST(test_phase_enforce_exit_needs_fresh_legacy_disabled_reports)
{
    fleet("enforce");
    fx_legacy_off(s, "db1.p01.example");
    fx_legacy_off(s, "mp1.p01.example");
    fx_legacy_off(s, "dp1.p01.example");
    fx_legacy_off(s, "sup1.p01.example");
    fx_stale(s, "sup1.p01.example"); /* it said so, but too long ago */
    const char *servers[] = {"db1.p01.example", "mp1.p01.example", "dp1.p01.example",
                             "sup1.p01.example"};
    for (int i = 0; i < 4; i++)
        fx_probed(s, servers[i], "refused", FX_NOW - 60);
    char *out;
    ck_assert_int_eq(advance(&out), 1);
    ck_assert_ptr_nonnull(strstr(out, "1 server fail"));
    ck_assert_ptr_nonnull(strstr(out, "1 server: stale-report:"));
    free(out);
    fx_fix(s, "sup1.p01.example");
    ck_assert_int_eq(advance(NULL), 0);
    ck_phase("P01", "complete");
}
END_TEST

/* Fail closed: the registry says the legacy protocols are off, but nothing on the wire says
 * so. A site system never probed, probed without a verdict (could not test), or probed longer
 * ago than probe.max_age holds the site in enforce with the remedy; a waiver lifts it as for the
 * other blockers (there is no --force); a server without a TLS port has nothing to probe. */
START_TEST(test_phase_enforce_exit_fails_closed_without_a_recent_probe)
{
    fleet("enforce");
    const char *servers[] = {"db1.p01.example", "mp1.p01.example", "dp1.p01.example",
                             "sup1.p01.example"};
    for (int i = 0; i < 4; i++)
        fx_legacy_off(s, servers[i]);
    fx_host(s, "ss1.p01.example", "P01", ROLE_SITE_SERVER); /* no TLS port of its own */
    fx_legacy_off(s, "ss1.p01.example");
    fx_probed(s, "db1.p01.example", "refused", FX_NOW - 60);
    fx_probed(s, "mp1.p01.example", "untested", FX_NOW - 60);
    fx_probed(s, "dp1.p01.example", "refused", FX_NOW - 8 * 86400);
    char *out;
    ck_assert_int_eq(advance(&out), 1);
    ck_assert_msg(strstr(out, "3 servers fail") != NULL, "%s", out);
    tu_assert_has(out, "3 servers: not-probed:", "sup1.p01.example", "never probed",
                  "could not test TLS 1.0 or 1.1 on any port",
                  "older than the config's probe max_age", "run `tlsgate probe --site P01`");
    ck_assert_ptr_null(strstr(out, "ss1.p01.example"));
    ck_assert_ptr_null(strstr(out, "db1.p01.example"));
    free(out);
    ck_phase("P01", "enforce");
    char *err;
    ck_assert_int_eq(fx_run(db, &out, &err, "--json", "phase", "status", "--site", "P01", NULL), 0);
    ck_assert_ptr_nonnull(strstr(out, "\"exit_blocking\":3"));
    free(out);
    free(err);

    /* A longer max_age accepts the 8-day-old probe. */
    char *cfg = strdup(tu_path(dir, "c.json"));
    FILE *f = fopen(cfg, "w");
    fputs("{\"probe\": {\"max_age\": \"9d\"}}", f);
    fclose(f);
    ck_assert_int_eq(fx_run(db, &out, NULL, "--config", cfg, "phase", "advance", "--site", "P01",
                            "--dry-run", NULL),
                     1);
    ck_assert_ptr_nonnull(strstr(out, "2 servers fail"));
    ck_assert_ptr_null(strstr(out, "older than"));
    free(out);
    /* A bad max_age is bad input naming the key. */
    f = fopen(cfg, "w");
    fputs("{\"probe\": {\"max_age\": \"9 weeks\"}}", f);
    fclose(f);
    ck_assert_int_eq(fx_run(db, NULL, &err, "--config", cfg, "phase", "status", NULL), 3);
    ck_assert_ptr_nonnull(strstr(err, "probe.max_age"));
    free(err);
    free(cfg);

    /* Probed now (and a waiver for the one whose port cannot be reached): it completes. */
    fx_probed(s, "dp1.p01.example", "refused", FX_NOW - 60);
    fx_probed(s, "sup1.p01.example", "refused", FX_NOW - 60);
    ck_assert_int_eq(advance(NULL), 1);
    fx_waive(s, "mp1.p01.example", 0);
    ck_assert_int_eq(advance(NULL), 0);
    ck_phase("P01", "complete");
}
END_TEST

START_TEST(test_phase_failing_listing_agrees_with_counts)
{
    fleet("clients");
    char name[64];
    for (int i = 0; i < 30; i++) {
        snprintf(name, sizeof(name), "c%02d.p01.example", i);
        fx_host(s, name, "P01", i % 3 ? ROLE_CLIENT : ROLE_CLIENT | ROLE_CONSOLE);
        if (i % 2)
            fx_win7_without_kb(s, name);
        if (i % 5 == 0)
            fx_stale(s, name);
    }
    struct gate_time t = gate_time_make(FX_NOW, FX_STALE_AFTER);
    for (int p = PHASE_INVENTORY; p < PHASE_COMPLETE; p++) {
        fx_sql(s, "UPDATE site SET phase = '%s' WHERE code = 'P01'", phase_name(p));
        long counted = -1;
        char *out;
        fx_run(db, &out, NULL, "--json", "phase", "advance", "--site", "P01", "--dry-run", "--all",
               NULL);
        char *b = strstr(out, "\"blocking\":");
        ck_assert_ptr_nonnull(b);
        counted = strtol(b + 11, NULL, 10);
        /* Distinct hosts listed across groups == the aggregate count. */
        long listed = 0;
        for (char *h = strstr(out, "{\"host\":\""); h; h = strstr(h + 1, "{\"host\":\"")) {
            char *end = strchr(h + 9, '"');
            char *prev = strstr(out, "{\"host\":\"");
            bool seen = false;
            for (; prev && prev < h; prev = strstr(prev + 1, "{\"host\":\""))
                if (!strncmp(prev, h, (size_t)(end - h) + 1))
                    seen = true;
            listed += !seen;
        }
        ck_assert_msg(listed == counted, "phase %s: listed %ld, counted %ld", phase_name(p), listed,
                      counted);
        free(out);
        (void)t;
    }
}
END_TEST

int main(void)
{
    Suite *suite = suite_create("phase");
    tu_tcase(suite, "phase", setup, teardown,
             TU_TESTS(test_phase_happy_path_through_all_phases,
                      test_phase_win7_client_blocks_clients_to_servers_and_lists_groups,
                      test_phase_dry_run_changes_nothing,
                      test_phase_out_of_order_and_bad_usage_refused_and_change_nothing,
                      test_phase_status_json_unknown_site_prints_nothing,
                      test_phase_rollback_out_of_enforce_marks_servers_to_reenable_legacy,
                      test_phase_concurrent_advances_cannot_both_succeed,
                      test_phase_status_shows_counts_next_step_and_orphan_risk,
                      test_phase_servers_exit_counts_consoles_and_waived_systems_pass,
                      test_phase_enforce_exit_needs_fresh_legacy_disabled_reports,
                      test_phase_enforce_exit_fails_closed_without_a_recent_probe,
                      test_phase_failing_listing_agrees_with_counts));
    return tu_run_suite(suite);
}
