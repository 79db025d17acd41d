/*
 * test_export.c — `tlsgate export csv` (suite 'export'): the exact bytes of each view on a known
 * database, the escaping and formula guard checked by a real CSV reader (Python's csv module via
 * tests/csv_roundtrip.py), the --out file appearing whole or not at all under a full disk, a
 * file-size limit, SIGTERM and SIGKILL, and the usage errors. Everything runs the real binary on
 * real SQLite files.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "csv.h"
#include "fixture.h"
#include "utc.h"

/* 2025-11-24T16:00:00Z: every test pins the clock here. */
#define NOW 1764000000LL
#define NOW_ENV "TLSGATE_NOW=1764000000"

static char *dir;
static char *db;

static void setup(void)
{
    dir = tu_tmpdir();
    db = strdup(tu_path(dir, "t.db"));
}

static void teardown(void)
{
    tu_rmtree(dir);
    free(dir);
    free(db);
}

/*
 * The known database: two sites, seven hosts covering every state and waiver case.
 *   P01 (clients): CL-A ready with a warning; cl-b not_ready; cl-c stale (unknown);
 *                  cl-d never reported (unknown) with an open-ended waiver;
 *                  mp1 (MP + DP) ready with an expired waiver
 *   P02 (enforce): cl-e ready with a waiver until later; sql (site database) ready, legacy off
 */
static void make_known_db(void)
{
    struct store *s = fx_open(db);
    fx_site_row(s, "P01", "clients", 1763000000, "alice");
    fx_site_row(s, "P02", "enforce", 1763500000, "bob");
    static const struct fx_host_spec hosts[] = {
        {1, "cl-b.p01.example", "P01", ROLE_CLIENT, "cl-b:9443", "Windows 7 Enterprise"},
        {2, "CL-A.p01.example", "P01", ROLE_CLIENT, "cl-a:9443", "Windows 10 Enterprise"},
        {3, "cl-c.p01.example", "P01", ROLE_CLIENT, "cl-c:9443", "Windows 7"},
        {4, "cl-d.p01.example", "P01", ROLE_CLIENT, "cl-d:9443", ""},
        {5, "mp1.p01.example", "P01", MP | DP, "mp1:9443", "Windows Server 2019"},
        {6, "sql.p02.example", "P02", ROLE_SITE_DATABASE, "sql:9443", "Windows Server 2016"},
        {7, "cl-e.p02.example", "P02", ROLE_CLIENT, "cl-e:9443", "Windows 11"},
    };
    for (size_t i = 0; i < sizeof(hosts) / sizeof(hosts[0]); i++)
        fx_host_row(s, &hosts[i]);
    fx_report_row(
        s, 1,
        &(struct fx_report_spec){.collected_at = NOW - 600, .received_at = NOW, .blockers = 2});
    fx_report_row(
        s, 2,
        &(struct fx_report_spec){.collected_at = NOW - 3600, .received_at = NOW, .warnings = 1});
    fx_report_row(s, 3, &(struct fx_report_spec){.collected_at = NOW - 90000, .received_at = NOW});
    fx_report_row(s, 5, &(struct fx_report_spec){.collected_at = NOW - 60, .received_at = NOW});
    fx_report_row(s, 6,
                  &(struct fx_report_spec){
                      .collected_at = NOW - 30, .received_at = NOW, .legacy_disabled = true});
    fx_report_row(s, 7, &(struct fx_report_spec){.collected_at = NOW - 120, .received_at = NOW});
    fx_waiver_row(s, 4, "lab machine", 0, 1, "alice");
    fx_waiver_row(s, 5, "was broken", NOW - 1, 1, "alice");
    fx_waiver_row(s, 7, "vendor fix due", NOW + 100, 1, "bob");
    fx_verdict_row(s, 1, "winhttp.kb3140245", false, "blocker", "KB3140245 is not installed");
    fx_verdict_row(s, 1, "schannel.tls12.client", false, "blocker",
                   "Enabled = 0 in \"TLS 1.2\\Client\", disabled");
    fx_verdict_row(s, 1, "dotnet.strong_crypto", false, "warning", "SchUseStrongCrypto is not 1");
    fx_verdict_row(s, 2, "dotnet.strong_crypto", false, "warning", "SchUseStrongCrypto is not 1");
    fx_verdict_row(s, 2, "winhttp.kb3140245", true, "blocker", "ok");
    store_close(s);
}

static const char known_hosts_csv[] =
    "name,site,roles,os,state,blockers,warnings,last_report,waived,reachable,last_error,"
    "cert_not_after,cert_fingerprint,cert_issuer,cert_changed_at\r\n"
    "CL-A.p01.example,P01,client,Windows 10 Enterprise,ready,0,1,"
    "2025-11-24T15:00:00Z,false,,,,,,\r\n"
    "cl-b.p01.example,P01,client,Windows 7 Enterprise,not_ready,2,0,"
    "2025-11-24T15:50:00Z,false,,,,,,\r\n"
    "cl-c.p01.example,P01,client,Windows 7,unknown,0,0,2025-11-23T15:00:00Z,false,,,,,,\r\n"
    "cl-d.p01.example,P01,client,,unknown,,,,true,,,,,,\r\n"
    "mp1.p01.example,P01,management_point;distribution_point,Windows Server 2019,ready,0,0,"
    "2025-11-24T15:59:00Z,false,,,,,,\r\n"
    "cl-e.p02.example,P02,client,Windows 11,ready,0,0,2025-11-24T15:58:00Z,true,,,,,,\r\n"
    "sql.p02.example,P02,site_database,Windows Server 2016,ready,0,0,2025-11-24T15:59:30Z,"
    "false,,,,,,\r\n";

static const char known_phases_csv[] = "site,phase,entered_at,entered_by\r\n"
                                       "P01,clients,2025-11-13T02:13:20Z,alice\r\n"
                                       "P02,enforce,2025-11-18T21:06:40Z,bob\r\n";

/* Runs `tlsgate --db DB export csv ARGS...` with the clock pinned; returns the exit code. */
static int export(char **out, char **err, const char *a1, const char *a2, const char *a3,
                  const char *a4, const char *a5, const char *a6)
{
    char *argv[16];
    int n = 0;
    argv[n++] = (char *)tu_build_path("orchestrator/tlsgate");
    argv[n++] = "--db";
    argv[n++] = db;
    argv[n++] = "export";
    argv[n++] = "csv";
    const char *rest[] = {a1, a2, a3, a4, a5, a6};
    for (int i = 0; i < 6 && rest[i]; i++)
        argv[n++] = (char *)rest[i];
    argv[n] = NULL;
    char *env[] = {NOW_ENV, NULL};
    return tu_run(argv, env, out, err);
}

static void assert_export(const char *expected, const char *a1, const char *a2, const char *a3,
                          const char *a4)
{
    char *out, *err;
    int code = export(&out, &err, a1, a2, a3, a4, NULL, NULL);
    ck_assert_msg(code == 0, "exit %d: %s", code, err);
    ck_assert_str_eq(out, expected);
    ck_assert_str_eq(err, "");
    free(out);
    free(err);
}

/* Whether `dir` holds an export temp file of hosts.csv. */
static bool has_temp_file(void)
{
    DIR *d = opendir(dir);
    ck_assert_ptr_nonnull(d);
    bool found = false;
    struct dirent *e;
    while ((e = readdir(d)))
        found |= !strncmp(e->d_name, ".hosts.csv.tmp-", 15);
    closedir(d);
    return found;
}

/* Names in `dir` other than the database files. */
static int count_other_files(char *first, size_t size)
{
    DIR *d = opendir(dir);
    ck_assert_ptr_nonnull(d);
    int n = 0;
    struct dirent *e;
    if (first)
        first[0] = '\0';
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..") || !strncmp(e->d_name, "t.db", 4))
            continue;
        if (first && !n)
            snprintf(first, size, "%s", e->d_name);
        n++;
    }
    closedir(d);
    return n;
}

/* ---- the views, byte for byte ---- */

START_TEST(test_hosts_view_exact_bytes)
{
    make_known_db();
    assert_export(known_hosts_csv, "--view", "hosts", NULL, NULL);
}
END_TEST

START_TEST(test_hosts_view_site_filter)
{
    make_known_db();
    assert_export("name,site,roles,os,state,blockers,warnings,last_report,waived,reachable,"
                  "last_error,cert_not_after,cert_fingerprint,cert_issuer,cert_changed_at\r\n"
                  "cl-e.p02.example,P02,client,Windows 11,ready,0,0,2025-11-24T15:58:00Z,true,,"
                  ",,,,\r\n"
                  "sql.p02.example,P02,site_database,Windows Server 2016,ready,0,0,"
                  "2025-11-24T15:59:30Z,false,,,,,,\r\n",
                  "--site", "p02", "--view=hosts", NULL);
}
END_TEST

START_TEST(test_hosts_view_uses_configured_stale_after)
{
    make_known_db();
    const char *config = tu_path(dir, "c.json");
    tu_write_file(config, "{\"stale_after\": 100000}", 23);
    char *out, *err;
    ck_assert_int_eq(export(&out, &err, "--view", "hosts", "--config", config, NULL, NULL), 0);
    /* cl-c's 25-hour-old report counts again: no blocker, so ready. */
    ck_assert_ptr_nonnull(
        strstr(out, "\r\ncl-c.p01.example,P01,client,Windows 7,ready,0,0,2025-11-23T15:00:00Z,"
                    "false,,,,,,\r\n"));
    free(out);
    free(err);
}
END_TEST

START_TEST(test_phases_view_exact_bytes)
{
    make_known_db();
    assert_export(known_phases_csv, "--view", "phases", NULL, NULL);
    assert_export("site,phase,entered_at,entered_by\r\nP01,clients,2025-11-13T02:13:20Z,alice\r\n",
                  "--view", "phases", "--site", "P01");
}
END_TEST

START_TEST(test_bom_prefixes_utf8_mark)
{
    make_known_db();
    char expected[sizeof(known_phases_csv) + 3];
    snprintf(expected, sizeof(expected), "\xEF\xBB\xBF%s", known_phases_csv);
    assert_export(expected, "--bom", "--view", "phases", NULL);
}
END_TEST

START_TEST(test_unknown_site_is_bad_input)
{
    make_known_db();
    char *out, *err;
    ck_assert_int_eq(export(&out, &err, "--view", "hosts", "--site", "X99", NULL, NULL), 3);
    ck_assert_str_eq(out, "");
    ck_assert_ptr_nonnull(strstr(err, "--site 'X99': no such site"));
    free(out);
    free(err);
}
END_TEST

START_TEST(test_servers_view_exact_bytes)
{
    make_known_db();
    /* mp1 serves P01's four clients: cl-b (not ready) and cl-c (stale) block, cl-d is waived.
     * sql.p02 has no dependents in P02 and its site is in enforce: open. */
    assert_export("name,site,roles,phase,gate,dependents,blocking,legacy_disabled,orphan_risk,"
                  "wire_legacy_accepted,last_probe,restart_pending\r\n"
                  "mp1.p01.example,P01,management_point;distribution_point,clients,blocked,4,2,"
                  "false,false,,,false\r\n"
                  "sql.p02.example,P02,site_database,enforce,open,0,0,true,false,,,false\r\n",
                  "--view", "servers", NULL, NULL);
}
END_TEST

/* The probe's columns: what the wire accepted (legacy protocols only, in version order), when,
 * and registry off but wire on. */
START_TEST(test_servers_view_probe_columns)
{
    make_known_db();
    struct store *s = fx_open(db);
    fx_sql(s, "INSERT INTO probe_result (host_id, port, tds, protocol, result, error, at)"
              " SELECT id, 1433, 1, 'tls1.1', 'accepted', '', 1764000000 FROM host"
              " WHERE name = 'sql.p02.example'");
    fx_sql(s, "INSERT INTO probe_result (host_id, port, tds, protocol, result, error, at)"
              " SELECT id, 1433, 1, p, r, '', 1764000060 FROM host,"
              " (SELECT 'tls1.0' AS p, 'accepted' AS r UNION ALL SELECT 'tls1.2', 'accepted'"
              "  UNION ALL SELECT 'ssl3', 'untested')"
              " WHERE name = 'sql.p02.example'");
    fx_sql(s, "INSERT INTO probe_result (host_id, port, tds, protocol, result, error, at)"
              " SELECT id, 443, 0, 'tls1.0', 'refused', '', 1764000000 FROM host"
              " WHERE name = 'mp1.p01.example'");
    store_close(s);
    assert_export("name,site,roles,phase,gate,dependents,blocking,legacy_disabled,orphan_risk,"
                  "wire_legacy_accepted,last_probe,restart_pending\r\n"
                  "mp1.p01.example,P01,management_point;distribution_point,clients,blocked,4,2,"
                  "false,false,,2025-11-24T16:00:00Z,false\r\n"
                  "sql.p02.example,P02,site_database,enforce,open,0,0,true,false,tls1.0;tls1.1,"
                  "2025-11-24T16:01:00Z,true\r\n",
                  "--view", "servers", NULL, NULL);
}
END_TEST

START_TEST(test_servers_view_shows_orphan_risk)
{
    make_known_db();
    struct store *s = fx_open(db);
    /* mp1 turned the legacy protocols off while cl-b still cannot do TLS 1.2. */
    fx_legacy_off(s, "mp1.p01.example");
    store_close(s);
    assert_export("name,site,roles,phase,gate,dependents,blocking,legacy_disabled,orphan_risk,"
                  "wire_legacy_accepted,last_probe,restart_pending\r\n"
                  "mp1.p01.example,P01,management_point;distribution_point,clients,blocked,4,2,"
                  "true,true,,,false\r\n",
                  "--view", "servers", "--site", "P01");
}
END_TEST

START_TEST(test_blockers_view_exact_bytes)
{
    make_known_db();
    /* One row per failed blocker verdict (not the warning, not the passed rule), and the stale
     * host with the reason it is unknown; the waived cl-d is not listed. */
    assert_export("server,dependent,rule,reason\r\n"
                  "mp1.p01.example,cl-b.p01.example,schannel.tls12.client,"
                  "\"Enabled = 0 in \"\"TLS 1.2\\Client\"\", disabled\"\r\n"
                  "mp1.p01.example,cl-b.p01.example,winhttp.kb3140245,"
                  "KB3140245 is not installed\r\n"
                  "mp1.p01.example,cl-c.p01.example,stale-report,"
                  "last report 2025-11-23T15:00:00Z is older than stale_after\r\n",
                  "--view", "blockers", NULL, NULL);
    assert_export("server,dependent,rule,reason\r\n", "--view", "blockers", "--site", "P02");
}
END_TEST

START_TEST(test_summary_view_exact_bytes)
{
    make_known_db();
    assert_export("site,phase,hosts,ready,not_ready,unknown,waived,servers_gate_open\r\n"
                  "P01,clients,5,2,1,2,1,0\r\n"
                  "P02,enforce,2,2,0,0,1,1\r\n",
                  "--view", "summary", NULL, NULL);
}
END_TEST

/* ---- --out: whole or nothing ---- */

START_TEST(test_out_writes_file_whole_and_leaves_no_temp)
{
    make_known_db();
    const char *target = tu_path(dir, "hosts.csv");
    tu_write_file(target, "old contents\r\n", 14);
    char *out, *err;
    mode_t old = umask(022);
    int code = export(&out, &err, "--view", "hosts", "--out", target, NULL, NULL);
    umask(old);
    ck_assert_msg(code == 0, "exit %d: %s", code, err);
    ck_assert_str_eq(out, "");
    char *got = tu_read_file(target, NULL);
    ck_assert_str_eq(got, known_hosts_csv);
    struct stat st;
    ck_assert_int_eq(stat(target, &st), 0);
    ck_assert_int_eq(st.st_mode & 0777, 0644);
    char name[256];
    ck_assert_int_eq(count_other_files(name, sizeof(name)), 1);
    ck_assert_str_eq(name, "hosts.csv");
    free(got);
    free(out);
    free(err);
}
END_TEST

/* Runs the export in a child with `fsize` as RLIMIT_FSIZE (0: none) and stdout on `stdout_path`
 * (NULL: /dev/null); returns the raw wait status. stderr is kept in *err. */
static int run_limited(const char *stdout_path, rlim_t fsize, char **err, const char *const *args)
{
    FILE *fe = tmpfile();
    ck_assert_ptr_nonnull(fe);
    /* Every check in the child (before exec) writes to Check's own file, which the limit would
     * refuse: what needs a check is done here. */
    const char *tlsgate = tu_build_path("orchestrator/tlsgate");
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        int fd = open(stdout_path ? stdout_path : "/dev/null", O_WRONLY);
        if (fd < 0)
            _exit(126);
        dup2(fd, 1);
        dup2(fileno(fe), 2);
        if (fsize) {
            struct rlimit rl = {fsize, fsize};
            if (setrlimit(RLIMIT_FSIZE, &rl))
                _exit(126);
        }
        putenv(NOW_ENV);
        char *argv[16];
        int n = 0;
        argv[n++] = (char *)tlsgate;
        argv[n++] = "--db";
        argv[n++] = db;
        argv[n++] = "export";
        argv[n++] = "csv";
        for (int i = 0; args[i]; i++)
            argv[n++] = (char *)args[i];
        argv[n] = NULL;
        execv(argv[0], argv);
        _exit(127);
    }
    int status;
    while (waitpid(pid, &status, 0) < 0)
        ck_assert_int_eq(errno, EINTR);
    fflush(fe);
    lseek(fileno(fe), 0, SEEK_SET);
    char buf[4096];
    ssize_t n = read(fileno(fe), buf, sizeof(buf) - 1);
    buf[n > 0 ? n : 0] = '\0';
    *err = strdup(buf);
    fclose(fe);
    return status;
}

/* Enough hosts that the CSV is far larger than the 64 KiB output buffer. */
static void make_many_hosts(int count)
{
    struct store *s = fx_open(db);
    fx_site_row(s, "P01", "clients", 1763000000, "alice");
    ck_assert_int_eq(store_exec(s, "BEGIN"), 0);
    for (int n = 1; n <= count; n++) {
        char name[64];
        snprintf(name, sizeof(name), "client-%06d.p01.corp.example", n);
        fx_host_row(
            s, &(struct fx_host_spec){0, name, "P01", ROLE_CLIENT, "x:1", "Windows 10 Enterprise"});
    }
    ck_assert_int_eq(store_exec(s, "COMMIT"), 0);
    store_close(s);
}

START_TEST(test_full_disk_on_stdout_is_exit_4)
{
    make_known_db();
    char *err;
    const char *args[] = {"--view", "hosts", NULL};
    int status = run_limited("/dev/full", 0, &err, args);
    ck_assert(WIFEXITED(status));
    ck_assert_int_eq(WEXITSTATUS(status), 4);
    ck_assert_ptr_nonnull(strstr(err, "cannot write standard output: No space left on device"));
    free(err);
}
END_TEST

START_TEST(test_file_size_limit_mid_export_leaves_old_file_and_no_temp)
{
    make_many_hosts(20000); /* about 1.3 MB of CSV */
    const char *target = tu_path(dir, "hosts.csv");
    tu_write_file(target, "old contents\r\n", 14);
    char *err;
    const char *args[] = {"--view", "hosts", "--out", target, NULL};
    int status = run_limited(NULL, 200 * 1024, &err, args);
    ck_assert_msg(WIFEXITED(status), "died of signal %d", WTERMSIG(status));
    ck_assert_int_eq(WEXITSTATUS(status), 4);
    ck_assert_ptr_nonnull(strstr(err, "File too large"));
    ck_assert_ptr_nonnull(strstr(err, target));
    char *got = tu_read_file(target, NULL);
    ck_assert_str_eq(got, "old contents\r\n");
    char name[256];
    ck_assert_int_eq(count_other_files(name, sizeof(name)), 1);
    ck_assert_str_eq(name, "hosts.csv");
    free(got);
    free(err);

    /* Without the limit the same export goes through: the failure above was the limit's. */
    status = run_limited(NULL, 0, &err, args);
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    size_t len;
    got = tu_read_file(target, &len);
    ck_assert_uint_gt(len, 1000000);
    ck_assert_uint_eq(len, strlen(got));
    free(got);
    free(err);
}
END_TEST

/* Starts an export to --out while the test holds an exclusive lock on the database, so the
 * export is stuck mid-way (temp file created, rows not yet read) for as long as we like; waits,
 * with a deadline, until the temp file exists. Returns the child's pid; *lock is the holder. */
static pid_t start_stuck_export(const char *target, sqlite3 **lock)
{
    ck_assert_int_eq(sqlite3_open(db, lock), SQLITE_OK);
    ck_assert_int_eq(sqlite3_exec(*lock,
                                  "PRAGMA locking_mode = EXCLUSIVE; BEGIN EXCLUSIVE;"
                                  "INSERT INTO meta VALUES ('lock', 'held');",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        int null = open("/dev/null", O_WRONLY);
        dup2(null, 1);
        dup2(null, 2);
        putenv(NOW_ENV);
        char *argv[] = {(char *)tu_build_path("orchestrator/tlsgate"),
                        "--db",
                        db,
                        "export",
                        "csv",
                        "--view",
                        "hosts",
                        "--out",
                        (char *)target,
                        NULL};
        execv(argv[0], argv);
        _exit(127);
    }
    struct timespec deadline, now;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += 20;
    while (!has_temp_file()) {
        clock_gettime(CLOCK_MONOTONIC, &now);
        ck_assert_msg(now.tv_sec < deadline.tv_sec, "the export never created its temp file");
        ck_assert_int_eq(waitpid(pid, NULL, WNOHANG), 0); /* still running */
        struct timespec tick = {0, 2 * 1000 * 1000};
        nanosleep(&tick, NULL);
    }
    return pid;
}

START_TEST(test_sigterm_mid_export_removes_temp_file)
{
    make_known_db();
    const char *target = tu_path(dir, "hosts.csv");
    tu_write_file(target, "old contents\r\n", 14);
    sqlite3 *lock;
    pid_t pid = start_stuck_export(target, &lock);
    ck_assert_int_eq(kill(pid, SIGTERM), 0);
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFSIGNALED(status));
    ck_assert_int_eq(WTERMSIG(status), SIGTERM);
    char name[256];
    ck_assert_int_eq(count_other_files(name, sizeof(name)), 1); /* the temp file is gone */
    ck_assert_str_eq(name, "hosts.csv");
    char *got = tu_read_file(target, NULL);
    ck_assert_str_eq(got, "old contents\r\n"); /* and the previous export is untouched */
    free(got);
    sqlite3_close(lock);
}
END_TEST

START_TEST(test_sigkill_mid_export_leaves_no_out_file)
{
    make_known_db();
    const char *target = tu_path(dir, "hosts.csv");
    sqlite3 *lock; /* no hosts.csv before: a kill must not make one */
    pid_t pid = start_stuck_export(target, &lock);
    ck_assert_int_eq(kill(pid, SIGKILL), 0);
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFSIGNALED(status));
    ck_assert_ptr_null(tu_read_file(target, NULL));
    char name[256];
    ck_assert_int_eq(count_other_files(name, sizeof(name)), 1);
    ck_assert_msg(!strncmp(name, ".hosts.csv.tmp-", 15), "left behind: %s", name);
    sqlite3_close(lock);

    /* Once the lock is gone the next export succeeds and replaces nothing but its own target. */
    char *out, *err;
    ck_assert_int_eq(export(&out, &err, "--view", "hosts", "--out", target, NULL, NULL), 0);
    char *got = tu_read_file(target, NULL);
    ck_assert_str_eq(got, known_hosts_csv);
    free(got);
    free(out);
    free(err);
}
END_TEST

/* ---- usage errors ---- */

START_TEST(test_unknown_view_exit_2_lists_views)
{
    make_known_db();
    char *out, *err;
    ck_assert_int_eq(export(&out, &err, "--view", "clients", NULL, NULL, NULL, NULL), 2);
    ck_assert_str_eq(out, "");
    ck_assert_ptr_nonnull(strstr(err, "unknown view 'clients' (valid views: hosts, servers, "
                                      "blockers, phases, summary, history, history-rules, "
                                      "pull-failures, poll)"));
    free(out);
    free(err);
}
END_TEST

START_TEST(test_unknown_option_exit_2_lists_options)
{
    make_known_db();
    char *out, *err;
    ck_assert_int_eq(export(&out, &err, "--view", "hosts", "--sites", "P01", NULL, NULL), 2);
    ck_assert_ptr_nonnull(strstr(err, "unknown option --sites; did you mean --site?"));
    free(out);
    free(err);
    ck_assert_int_eq(export(&out, &err, "--view", "hosts", "--zzzzzzzz", NULL, NULL, NULL), 2);
    ck_assert_ptr_nonnull(strstr(err, "unknown option --zzzzzzzz (valid: --help, --view VIEW, "
                                      "--site S, --out FILE, --bom)"));
    free(out);
    free(err);
}
END_TEST

START_TEST(test_missing_view_or_value_exit_2)
{
    make_known_db();
    char *out, *err;
    ck_assert_int_eq(export(&out, &err, NULL, NULL, NULL, NULL, NULL, NULL), 2);
    ck_assert_ptr_nonnull(strstr(err, "--view is required (valid views: hosts, servers"));
    free(out);
    free(err);
    ck_assert_int_eq(export(&out, &err, "--view", NULL, NULL, NULL, NULL, NULL), 2);
    ck_assert_ptr_nonnull(strstr(err, "--view needs a value"));
    free(out);
    free(err);
    ck_assert_int_eq(tu_tlsgate(db, &out, &err, "export", "json", "--view", "hosts", NULL), 2);
    ck_assert_ptr_nonnull(strstr(err, "unknown subcommand 'json' (csv)"));
    free(out);
    free(err);
}
END_TEST

/* ---- hostile cells through a real CSV reader ---- */

/* What a spreadsheet-safe cell looks like once read back: the original with "'" in front when
 * it begins like a formula. */
static const char *guarded(const char *s, char *buf, size_t size)
{
    if (strchr("=+-@\t\r", s[0]) && s[0])
        snprintf(buf, size, "'%s", s);
    else
        snprintf(buf, size, "%s", s);
    return buf;
}

static const char *const hostile[] = {
    "comma,inside.example",
    "\"quoted\" name",
    "line\nbreak",
    "crlf\r\ninside",
    "=cmd|' /C calc'!A0",
    "+SUM(1,2)",
    "-2+3",
    "@SUM(A1:A9)",
    "\tleading tab",
    "\rleading cr",
    "Zürich-Ωmega-日本.example",
    "trailing space ",
    "' already quoted",
    "=\"both\",\nkinds",
};
#define HOSTILE_COUNT (sizeof(hostile) / sizeof(hostile[0]))

static int by_name_nocase(const void *a, const void *b)
{
    return strcasecmp(*(const char *const *)a, *(const char *const *)b);
}

static void run_roundtrip(const char *csv_path, json_t *expected, const char *flag)
{
    const char *json_path = tu_path(dir, "expected.json");
    ck_assert_int_eq(json_dump_file(expected, json_path, 0), 0);
    char *argv[] = {"/usr/bin/env",
                    "python3",
                    (char *)tu_source_path("tests/csv_roundtrip.py"),
                    (char *)csv_path,
                    (char *)json_path,
                    (char *)flag,
                    NULL};
    char *out, *err;
    int code = tu_run(argv, NULL, &out, &err);
    ck_assert_msg(code == 0, "csv_roundtrip.py exit %d: %s%s", code, out, err);
    free(out);
    free(err);
}

START_TEST(test_hostile_cells_round_trip_through_python_csv)
{
    struct store *s = fx_open(db);
    fx_site_row(s, "S01", "inventory", 1763000000, "@evil, \"boss\"\r\n");
    fx_site_row(s, "=S2", "inventory", 1763000000, "Zoë");
    /* the os column carries the next hostile string, so every cell kind is exercised */
    for (size_t i = 0; i < HOSTILE_COUNT; i++)
        fx_host_row(s, &(struct fx_host_spec){0, hostile[i], "S01", ROLE_CLIENT, "x:1",
                                              hostile[(i + 1) % HOSTILE_COUNT]});
    store_close(s);

    /* hosts: every hostile name and os, in (site, name) order; never reported. */
    const char *sorted[HOSTILE_COUNT];
    memcpy(sorted, hostile, sizeof(hostile));
    qsort(sorted, HOSTILE_COUNT, sizeof(sorted[0]), by_name_nocase);
    json_t *rows = json_array();
    json_array_append_new(rows, json_pack("[sssssssssssssss]", "name", "site", "roles", "os",
                                          "state", "blockers", "warnings", "last_report", "waived",
                                          "reachable", "last_error", "cert_not_after",
                                          "cert_fingerprint", "cert_issuer", "cert_changed_at"));
    for (size_t i = 0; i < HOSTILE_COUNT; i++) {
        size_t k = 0;
        while (hostile[k] != sorted[i])
            k++;
        char name[256], os[256];
        json_array_append_new(
            rows, json_pack("[sssssssssssssss]", guarded(sorted[i], name, sizeof(name)), "S01",
                            "client", guarded(hostile[(k + 1) % HOSTILE_COUNT], os, sizeof(os)),
                            "unknown", "", "", "", "false", "", "", "", "", "", ""));
    }
    const char *csv_path = tu_path(dir, "hosts.csv");
    char *out, *err;
    ck_assert_int_eq(export(&out, &err, "--view", "hosts", "--out", csv_path, NULL, NULL), 0);
    free(out);
    free(err);
    run_roundtrip(csv_path, rows, NULL);
    json_decref(rows);

    /* phases: hostile site code and operator name, with the BOM a spreadsheet wants. */
    rows = json_pack("[[ssss][ssss][ssss]]", "site", "phase", "entered_at", "entered_by", "'=S2",
                     "inventory", "2025-11-13T02:13:20Z", "Zoë", "S01", "inventory",
                     "2025-11-13T02:13:20Z", "'@evil, \"boss\"\r\n");
    csv_path = tu_path(dir, "phases.csv");
    ck_assert_int_eq(export(&out, &err, "--view", "phases", "--bom", "--out", csv_path, NULL), 0);
    free(out);
    free(err);
    run_roundtrip(csv_path, rows, "--bom");
    json_decref(rows);
}
END_TEST

START_TEST(test_hostile_reasons_round_trip_in_blockers_view)
{
    /* A management point with a hostile name; every hostile name is a not-ready client of it
     * whose failed verdict has a hostile rule id and reason. */
    const char *server = "=mp,\"1\".example";
    const char *rule = "-rule;1,x";
    struct store *s = fx_open(db);
    fx_site_row(s, "S01", "clients", 1763000000, "alice");
    for (size_t i = 0; i <= HOSTILE_COUNT; i++) {
        bool is_server = i == HOSTILE_COUNT;
        long long id =
            fx_host_row(s, &(struct fx_host_spec){0, is_server ? server : hostile[i], "S01",
                                                  is_server ? MP : ROLE_CLIENT, "x:1", NULL});
        fx_report_row(s, id,
                      &(struct fx_report_spec){
                          .collected_at = NOW, .received_at = NOW, .blockers = !is_server});
        if (!is_server)
            fx_verdict_row(s, id, rule, false, "blocker", hostile[(i + 1) % HOSTILE_COUNT]);
    }
    store_close(s);

    const char *sorted[HOSTILE_COUNT];
    memcpy(sorted, hostile, sizeof(hostile));
    qsort(sorted, HOSTILE_COUNT, sizeof(sorted[0]), by_name_nocase);
    json_t *rows = json_array();
    json_array_append_new(rows, json_pack("[ssss]", "server", "dependent", "rule", "reason"));
    for (size_t i = 0; i < HOSTILE_COUNT; i++) {
        size_t k = 0;
        while (hostile[k] != sorted[i])
            k++;
        char a[256], b[256], c[256], d[256];
        json_array_append_new(
            rows, json_pack("[ssss]", guarded(server, a, sizeof(a)),
                            guarded(sorted[i], b, sizeof(b)), guarded(rule, c, sizeof(c)),
                            guarded(hostile[(k + 1) % HOSTILE_COUNT], d, sizeof(d))));
    }
    const char *csv_path = tu_path(dir, "blockers.csv");
    char *out, *err;
    int code = export(&out, &err, "--view", "blockers", "--out", csv_path, NULL, NULL);
    ck_assert_msg(code == 0, "exit %d: %s", code, err);
    free(out);
    free(err);
    run_roundtrip(csv_path, rows, NULL);
    json_decref(rows);
}
END_TEST

/* ---- the writer itself ---- */

/* Writes cells through csv.c into a file and returns its bytes. */
static char *write_cells(const char *const *cells, size_t count, size_t per_row, size_t *len)
{
    const char *path = tu_path(dir, "w.csv");
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ck_assert_int_ge(fd, 0);
    static struct csv_writer w;
    csv_init(&w, fd);
    for (size_t i = 0; i < count; i++) {
        ck_assert_int_eq(csv_cell_str(&w, cells[i]), 0);
        if ((i + 1) % per_row == 0)
            ck_assert_int_eq(csv_end_row(&w), 0);
    }
    ck_assert_int_eq(csv_flush(&w), 0);
    close(fd);
    return tu_read_file(path, len);
}

START_TEST(test_writer_quotes_doubles_and_guards)
{
    const char *cells[] = {"plain", "a,b", "say \"hi\"", "cr\rx", "lf\nx", "=1+1", "+1",  "-1",
                           "@A1",   "\tt", "\rr",        "",      NULL,    "'q",   "a=b", "é"};
    size_t len;
    char *got = write_cells(cells, 16, 16, &len);
    ck_assert_str_eq(got, "plain,\"a,b\",\"say \"\"hi\"\"\",\"cr\rx\",\"lf\nx\",'=1+1,'+1,'-1,"
                          "'@A1,'\tt,\"'\rr\",,,'q,a=b,é\r\n");
    free(got);
}
END_TEST

/* The writer's own integer and time formatting against the C library's (snprintf, gmtime_r +
 * strftime), at the edges and at many pseudo-random points. */
START_TEST(test_writer_integers_and_times_match_the_c_library)
{
    const char *path = tu_path(dir, "n.csv");
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ck_assert_int_ge(fd, 0);
    static struct csv_writer w;
    csv_init(&w, fd);
    static const long long ints[] = {0, 1, -1, 9, 10, -10, 4294967296LL, LLONG_MAX, LLONG_MIN};
    char want[4096] = "";
    size_t used = 0;
    for (size_t i = 0; i < sizeof(ints) / sizeof(ints[0]); i++) {
        ck_assert_int_eq(csv_cell_int(&w, ints[i]), 0);
        used += (size_t)snprintf(want + used, sizeof(want) - used, "%s%s%lld", i ? "," : "",
                                 ints[i] < 0 ? "'" : "", ints[i]);
    }
    ck_assert_int_eq(csv_end_row(&w), 0);
    ck_assert_int_eq(csv_flush(&w), 0);
    close(fd);
    snprintf(want + used, sizeof(want) - used, "\r\n");
    size_t len;
    char *got = tu_read_file(path, &len);
    ck_assert_str_eq(got, want);
    free(got);

    /* epoch, day edges, 2000-02-29, 2100-02-28/03-01, the fixtures' time, the last second of
     * 9999 and the first past it, before the epoch */
    static const long long edges[] = {0,
                                      59,
                                      86399,
                                      86400,
                                      951782400,
                                      951868799,
                                      4107456000LL,
                                      4107542400LL,
                                      1795608000,
                                      253402300799LL,
                                      253402300800LL,
                                      -1,
                                      -86401};
    const int nedges = (int)(sizeof(edges) / sizeof(edges[0]));
    unsigned long long x = 88172645463325252ULL;
    for (int i = 0; i < 100000 + nedges; i++) {
        long long t;
        if (i < nedges) {
            t = edges[i];
        } else {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17; /* xorshift64 */
            t = (long long)(x % 253402300800ULL);
        }
        char mine[32], lib[32];
        time_t tt = (time_t)t;
        struct tm tm;
        ck_assert_ptr_nonnull(gmtime_r(&tt, &tm));
        ck_assert_uint_gt(strftime(lib, sizeof(lib), "%Y-%m-%dT%H:%M:%SZ", &tm), 0);
        ck_assert_str_eq(utc_iso8601(t, mine, sizeof(mine)), lib);
    }
}
END_TEST

START_TEST(test_writer_streams_past_its_buffer)
{
    /* A quoted cell with quotes in it that straddles several buffer boundaries. */
    size_t n = 3 * CSV_BUFFER_SIZE + 17;
    char *big = malloc(n + 1);
    for (size_t i = 0; i < n; i++)
        big[i] = i % 7 == 3 ? '"' : 'a' + (char)(i % 26);
    big[n] = '\0';
    const char *cells[] = {"x", big, "y"};
    size_t len;
    char *got = write_cells(cells, 3, 3, &len);
    size_t quotes = 0;
    for (size_t i = 0; i < n; i++)
        quotes += big[i] == '"';
    ck_assert_uint_eq(len, 2 + 2 + n + quotes + 2 + 2);
    ck_assert(!strncmp(got, "x,\"", 3));
    size_t j = 3;
    for (size_t i = 0; i < n; i++) {
        ck_assert_int_eq(got[j++], big[i]);
        if (big[i] == '"')
            ck_assert_int_eq(got[j++], '"');
    }
    ck_assert_str_eq(got + j, "\",y\r\n");
    free(got);
    free(big);
}
END_TEST

START_TEST(test_writer_reports_first_write_error)
{
    int fd = open("/dev/full", O_WRONLY);
    ck_assert_int_ge(fd, 0);
    static struct csv_writer w;
    csv_init(&w, fd);
    ck_assert_int_eq(csv_cell_str(&w, "a"), 0); /* buffered: no write yet */
    ck_assert_int_eq(csv_end_row(&w), 0);
    ck_assert_int_eq(csv_flush(&w), -ENOSPC);
    ck_assert_int_eq(csv_cell_str(&w, "b"), -ENOSPC);
    ck_assert_int_eq(csv_flush(&w), -ENOSPC);
    close(fd);
}
END_TEST

int main(void)
{
    Suite *suite = suite_create("export");
    tu_tcase(suite, "views", setup, teardown,
             TU_TESTS(test_hosts_view_exact_bytes, test_hosts_view_site_filter,
                      test_hosts_view_uses_configured_stale_after, test_servers_view_exact_bytes,
                      test_servers_view_shows_orphan_risk, test_servers_view_probe_columns,
                      test_blockers_view_exact_bytes, test_phases_view_exact_bytes,
                      test_summary_view_exact_bytes, test_bom_prefixes_utf8_mark,
                      test_unknown_site_is_bad_input));

    tu_tcase(suite, "out", setup, teardown,
             TU_TESTS(test_out_writes_file_whole_and_leaves_no_temp,
                      test_full_disk_on_stdout_is_exit_4,
                      test_file_size_limit_mid_export_leaves_old_file_and_no_temp,
                      test_sigterm_mid_export_removes_temp_file,
                      test_sigkill_mid_export_leaves_no_out_file));

    tu_tcase(suite, "usage", setup, teardown,
             TU_TESTS(test_unknown_view_exit_2_lists_views,
                      test_unknown_option_exit_2_lists_options, test_missing_view_or_value_exit_2));

    tu_tcase(suite, "csv", setup, teardown,
             TU_TESTS(test_hostile_cells_round_trip_through_python_csv,
                      test_hostile_reasons_round_trip_in_blockers_view,
                      test_writer_quotes_doubles_and_guards, test_writer_streams_past_its_buffer,
                      test_writer_integers_and_times_match_the_c_library,
                      test_writer_reports_first_write_error));

    return tu_run_suite(suite);
}
