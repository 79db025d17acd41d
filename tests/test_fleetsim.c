/*
 * test_fleetsim.c — the fleet simulator the demo and the benchmarks stand on: real
 * certificates issued in-process from a gen-certs CA, real TLS on 127.0.0.1, real control
 * commands changing what a host serves.
 */
#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"

static char *dir;
static pid_t sim = -1;
static char ctl_path[4200];

struct body {
    char buf[300 * 1024];
    size_t len;
};

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
    struct body *b = ud;
    size_t len = size * n;
    if (b->len + len >= sizeof(b->buf))
        return 0;
    memcpy(b->buf + b->len, p, len);
    b->len += len;
    b->buf[b->len] = '\0';
    return len;
}

/* GET https://HOST:PORT/v1/readiness with the orchestrator's certificate; returns the CURLcode
 * and the body in b. */
static CURLcode fetch(const char *host, int port, struct body *b)
{
    char url[300], resolve[300];
    snprintf(url, sizeof(url), "https://%s:%d/v1/readiness", host, port);
    snprintf(resolve, sizeof(resolve), "%s:%d:127.0.0.1", host, port);
    struct curl_slist *res = curl_slist_append(NULL, resolve);
    CURL *h = curl_easy_init();
    b->len = 0;
    b->buf[0] = '\0';
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_RESOLVE, res);
    curl_easy_setopt(h, CURLOPT_CAINFO, tu_path(dir, "certs/ca.pem"));
    curl_easy_setopt(h, CURLOPT_SSLCERT, tu_path(dir, "certs/orchestrator.pem"));
    curl_easy_setopt(h, CURLOPT_SSLKEY, tu_path(dir, "certs/orchestrator.key"));
    curl_easy_setopt(h, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 3000L);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, b);
    CURLcode rc = curl_easy_perform(h);
    long status = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(h);
    curl_slist_free_all(res);
    if (rc == CURLE_OK && status != 200)
        rc = CURLE_HTTP_RETURNED_ERROR;
    return rc;
}

static char *ctl(const char *a, const char *b, const char *c)
{
    return tu_fleetsim_ctl(ctl_path, a, b, c);
}

/* Starts 40 hosts in two sites; the port base moves on if another test holds the ports. */
static int start_sim(void)
{
    char *gen[] = {(char *)tu_source_path("tools/gen-certs"), (char *)tu_path(dir, "certs"), NULL};
    ck_assert_int_eq(tu_run(gen, NULL, NULL, NULL), 0);
    snprintf(ctl_path, sizeof(ctl_path), "%s", tu_path(dir, "ctl.sock"));
    const char *args[] = {"--certs",     tu_path(dir, "certs"),
                          "--fixtures",  tu_source_path("tests/fixtures/reg"),
                          "--hosts",     "40",
                          "--sites",     "AA1,BB2",
                          "--mps",       "1",
                          "--dps",       "1",
                          "--procs",     "2",
                          "--inventory", tu_path(dir, "inv.csv"),
                          "--control",   ctl_path,
                          NULL};
    int base;
    sim = tu_fleetsim_start(args, tu_path(dir, "sim.log"), "fleetsim: ready 40 hosts", 10000, 400,
                            &base);
    return base;
}

static void setup(void)
{
    dir = tu_tmpdir();
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

static void teardown(void)
{
    tu_kill_reap(sim, SIGTERM);
    tu_rmtree(dir);
    free(dir);
}

START_TEST(test_fleet_serves_one_identity_per_host_and_writes_inventory)
{
    int base = start_sim();
    char *inv = tu_read_file(tu_path(dir, "inv.csv"), NULL);
    ck_assert_ptr_nonnull(inv);
    char expect[200];
    snprintf(expect, sizeof(expect),
             "cm-mp-aa1-01.sim.contoso.com,AA1,management_point,"
             "127.0.0.1:%d,Windows Server 2019 Datacenter\n",
             base + 2);
    ck_assert_msg(strstr(inv, expect), "no '%s' in %s", expect, inv);
    ck_assert_ptr_nonnull(strstr(inv, "name,site,roles,collector,os\n"));
    free(inv);

    struct body b;
    ck_assert_int_eq(fetch("cm-mp-aa1-01.sim.contoso.com", base + 2, &b), CURLE_OK);
    ck_assert_ptr_nonnull(strstr(b.buf, "\"host\":\"cm-mp-aa1-01.sim.contoso.com\""));
    ck_assert_ptr_nonnull(strstr(b.buf, "\"build\":17763"));
    /* The certificate names the host: asking for it under another name fails verification. */
    ck_assert_int_eq(fetch("cm-sql-aa1.sim.contoso.com", base + 2, &b),
                     CURLE_PEER_FAILED_VERIFICATION);
    char *status = ctl("status", NULL, NULL);
    ck_assert_str_eq(status, "hosts 40 served 1 refused 0\n");
    free(status);
}
END_TEST

START_TEST(test_control_patches_stops_and_misbehaves_hosts)
{
    int base = start_sim();
    /* The first client (index 14: 2 sites x 7 site systems) is a Windows 7 without KB3140245. */
    const char *client = "ws000001-aa1.sim.contoso.com";
    struct body b;
    ck_assert_int_eq(fetch(client, base + 14, &b), CURLE_OK);
    ck_assert_ptr_null(strstr(b.buf, "KB3140245"));
    char *out = ctl("fixture-all", "win7-sp1-x64-unpatched", "win7-sp1-x64-unpatched+win7-ready");
    ck_assert_int_eq(strncmp(out, "ok ", 3), 0);
    ck_assert_int_gt(atoi(out + 3), 0);
    free(out);
    ck_assert_int_eq(fetch(client, base + 14, &b), CURLE_OK);
    ck_assert_ptr_nonnull(strstr(b.buf, "KB3140245"));
    ck_assert_ptr_nonnull(strstr(b.buf, "\"product_name\":\"Windows 7 Enterprise\""));

    out = ctl("misbehave", client, "wrong-cert");
    ck_assert_str_eq(out, "ok\n");
    free(out);
    ck_assert_int_eq(fetch(client, base + 14, &b), CURLE_PEER_FAILED_VERIFICATION);

    out = ctl("misbehave", client, "silent");
    free(out);
    ck_assert_int_eq(fetch(client, base + 14, &b), CURLE_OPERATION_TIMEDOUT);

    out = ctl("stop", client, NULL);
    free(out);
    ck_assert_int_eq(fetch(client, base + 14, &b), CURLE_COULDNT_CONNECT);

    out = ctl("start", client, NULL);
    free(out);
    ck_assert_int_eq(fetch(client, base + 14, &b), CURLE_OK);

    out = ctl("stop", "nope.sim.contoso.com", NULL);
    ck_assert_str_eq(out, "error: unknown host\n");
    free(out);
    out = ctl("misbehave", client, "rude");
    ck_assert_int_eq(strncmp(out, "error: mode must be", 19), 0);
    free(out);
}
END_TEST

/* fleetsim with placeholder --certs, --fixtures and --control and one more option: its exit
 * code, stderr in *err (a usage error is found before any of the three is read). */
static int fleetsim_with(const char *option, const char *value, char **err)
{
    char *argv[] = {(char *)tu_build_path("tools/fleetsim"),
                    "--certs",
                    "/x",
                    "--fixtures",
                    "/y",
                    "--control",
                    "/z",
                    (char *)option,
                    (char *)value,
                    NULL};
    return tu_run(argv, NULL, NULL, err);
}

START_TEST(test_bad_options_are_refused)
{
    char *argv[] = {(char *)tu_build_path("tools/fleetsim"),
                    "--certs",
                    "/nonexistent",
                    "--fixtures",
                    (char *)tu_source_path("tests/fixtures/reg"),
                    "--control",
                    (char *)tu_path(dir, "c.sock"),
                    NULL};
    char *err;
    ck_assert_int_eq(tu_run(argv, NULL, NULL, &err), 3);
    ck_assert_ptr_nonnull(strstr(err, "/nonexistent/ca.pem"));
    free(err);
    ck_assert_int_eq(fleetsim_with("--hosts", "5", &err), 2);
    ck_assert_ptr_nonnull(strstr(err, "--hosts must be at least"));
    free(err);
    /* A port past 65535 is refused, not wrapped round to a low port. */
    ck_assert_int_eq(fleetsim_with("--base-port", "70000", &err), 2);
    ck_assert_ptr_nonnull(strstr(err, "--base-port: '70000' is not a whole number from 1024 to "
                                      "65535"));
    free(err);
    /* A range that runs past 65535 is refused; one whose ports are in use names the port. */
    ck_assert_int_eq(fleetsim_with("--base-port", "65500", &err), 2);
    ck_assert_ptr_nonnull(strstr(err, "the range ends past 65535"));
    free(err);
    int port;
    int busy = tu_loopback_listener(1, &port);
    char base[16], want[64];
    snprintf(base, sizeof(base), "%d", port); /* the first port it checks: no other can be named */
    snprintf(want, sizeof(want), "port %d on 127.0.0.1 is taken", port);
    ck_assert_int_eq(fleetsim_with("--base-port", base, &err), 2);
    ck_assert_msg(strstr(err, want) != NULL, "%s", err);
    free(err);
    close(busy);
}
END_TEST

/* `fleetsim ctl` builds the command line in a fixed buffer: a command longer than the line the
 * simulator reads is refused (exit 2) before anything is sent, never written past the buffer. */
START_TEST(test_ctl_refuses_a_command_longer_than_a_line)
{
    char a[600], b[600];
    memset(a, 'a', sizeof(a) - 1);
    a[sizeof(a) - 1] = '\0';
    memset(b, 'b', sizeof(b) - 1);
    b[sizeof(b) - 1] = '\0';
    char *argv[] = {(char *)tu_build_path("tools/fleetsim"),
                    "ctl",
                    (char *)tu_path(dir, "absent.sock"),
                    "fixture",
                    a,
                    b,
                    NULL};
    char *err;
    ck_assert_int_eq(tu_run(argv, NULL, NULL, &err), 2);
    ck_assert_str_eq(err, "fleetsim ctl: the command is longer than 511 bytes\n");
    free(err);
    /* Just under the line: sent (here to no simulator, so the connect fails: exit 4). */
    a[505] = '\0';
    char *argv2[] = {(char *)tu_build_path("tools/fleetsim"),
                     "ctl",
                     (char *)tu_path(dir, "absent.sock"),
                     "stop",
                     a,
                     NULL};
    ck_assert_int_eq(tu_run(argv2, NULL, NULL, &err), 4);
    ck_assert_ptr_nonnull(strstr(err, "absent.sock"));
    free(err);
}
END_TEST

/* Connects to the UNIX socket at path; the fd or -1. */
static int connect_unix(const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    size_t len = strlen(path);
    ck_assert_uint_lt(len, sizeof(sa.sun_path));
    memcpy(sa.sun_path, path, len + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
        return fd;
    if (fd >= 0)
        close(fd);
    return -1;
}

/*
 * Whoever reads "fleetsim: ready" may send a command at once, so the control socket must be
 * listening before that line is written. Made deterministic with a full stdout pipe: the
 * simulator blocks in writing the line, and the socket must already accept a command then.
 */
START_TEST(test_control_socket_listens_before_ready_is_printed)
{
    char *gen[] = {(char *)tu_source_path("tools/gen-certs"), (char *)tu_path(dir, "certs"), NULL};
    ck_assert_int_eq(tu_run(gen, NULL, NULL, NULL), 0);
    snprintf(ctl_path, sizeof(ctl_path), "%s", tu_path(dir, "ctl.sock"));
    int out[2];
    ck_assert_int_eq(pipe(out), 0);
    fcntl(out[1], F_SETFL, O_NONBLOCK);
    char fill[4096];
    memset(fill, '\n', sizeof(fill)); /* empty lines, so the ready line starts a line */
    while (write(out[1], fill, sizeof(fill)) > 0)
        ;
    for (int i = 0; i < 64 && write(out[1], fill, 1) == 1; i++) /* the last partial page */
        ;
    fcntl(out[1], F_SETFL, 0);
    int fd = -1;
    for (int attempt = 0; attempt < 8 && fd < 0; attempt++) {
        char base_s[16];
        snprintf(base_s, sizeof(base_s), "%d",
                 10000 + (int)((getpid() * 13 + attempt * 991) % 400) * 50);
        sim = fork();
        ck_assert_int_ge(sim, 0);
        if (sim == 0) {
            dup2(out[1], 1);
            int devnull = open("/dev/null", O_WRONLY);
            dup2(devnull, 2);
            close(out[0]);
            execl(tu_build_path("tools/fleetsim"), "fleetsim", "--certs", tu_path(dir, "certs"),
                  "--fixtures", tu_source_path("tests/fixtures/reg"), "--hosts", "5", "--sites",
                  "AA1", "--mps", "0", "--dps", "0", "--procs", "1", "--base-port", base_s,
                  "--control", ctl_path, (char *)NULL);
            _exit(127);
        }
        time_t deadline = time(NULL) + 20;
        bool died = false;
        while (fd < 0 && !died && time(NULL) < deadline) {
            fd = connect_unix(ctl_path);
            died = fd < 0 && waitpid(sim, NULL, WNOHANG) == sim; /* ports taken: another base */
            if (fd < 0 && !died)
                usleep(20000);
        }
        if (fd < 0 && !died) {
            kill(sim, SIGKILL); /* alive, blocked on the ready line, and no socket */
            waitpid(sim, NULL, 0);
            sim = -1;
            break;
        }
    }
    close(out[1]);
    ck_assert_msg(fd >= 0, "no control socket while fleetsim announces ready");
    /* Now let the ready line through and talk to the socket that was already listening. */
    FILE *f = fdopen(out[0], "r");
    char line[8192];
    int ready = 0;
    while (!ready && fgets(line, sizeof(line), f))
        ready = strstr(line, "fleetsim: ready 5 hosts") != NULL;
    ck_assert_int_eq(ready, 1);
    ck_assert_int_eq(write(fd, "status\n", 7), 7);
    char answer[100];
    ssize_t n, total = 0;
    while ((n = read(fd, answer + total, sizeof(answer) - 1 - (size_t)total)) > 0)
        total += n;
    answer[total] = '\0';
    ck_assert_str_eq(answer, "hosts 5 served 0 refused 0\n");
    close(fd);
    fclose(f);
}
END_TEST

/* Makes every later fork (clone, clone3, fork, vfork) of this process fail with EAGAIN, as a
 * process limit or a lack of memory would; 0 or -1. */
static int refuse_forks(void)
{
    static const long calls[] = {
        SYS_clone,
#ifdef SYS_clone3
        SYS_clone3,
#endif
#ifdef SYS_fork
        SYS_fork,
#endif
#ifdef SYS_vfork
        SYS_vfork,
#endif
    };
    enum { NCALLS = sizeof(calls) / sizeof(calls[0]) };
    struct sock_filter f[NCALLS + 3];
    unsigned n = 0;
    f[n++] =
        (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr));
    for (unsigned i = 0; i < NCALLS; i++) /* a match jumps to the ERRNO return */
        f[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)calls[i],
                                              (unsigned char)(NCALLS - i), 0);
    f[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
    f[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EAGAIN);
    struct sock_fprog prog = {.len = (unsigned short)n, .filter = f};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
        return -1;
    return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) == 0 ? 0 : -1;
}

/*
 * A worker that cannot be forked stops the start with a message naming it (exit 4), and only
 * the workers already started are signalled. fork()'s -1 was kept as a worker's pid and given
 * to kill(), which signals every process the caller may signal, so the simulator runs in a PID
 * namespace of its own here, where that can reach nothing else.
 */
START_TEST(test_failed_worker_fork_is_named_and_signals_no_one_else)
{
    char *gen[] = {(char *)tu_source_path("tools/gen-certs"), (char *)tu_path(dir, "certs"), NULL};
    ck_assert_int_eq(tu_run(gen, NULL, NULL, NULL), 0);
    char errpath[4200];
    snprintf(errpath, sizeof(errpath), "%s", tu_path(dir, "stderr"));
    pid_t outer = fork();
    ck_assert_int_ge(outer, 0);
    if (outer == 0) {
        if (unshare(CLONE_NEWPID) != 0 && unshare(CLONE_NEWUSER | CLONE_NEWPID) != 0)
            _exit(120);       /* no PID namespace: do not run it unconfined */
        pid_t inner = fork(); /* PID 1 of the new namespace */
        if (inner == 0) {
            int fd = open(errpath, O_WRONLY | O_CREAT | O_TRUNC, 0600);
            dup2(fd, 2);
            if (refuse_forks() != 0)
                _exit(121);
            execl(tu_build_path("tools/fleetsim"), "fleetsim", "--certs", tu_path(dir, "certs"),
                  "--fixtures", tu_source_path("tests/fixtures/reg"), "--hosts", "5", "--sites",
                  "AA1", "--mps", "0", "--dps", "0", "--procs", "2", "--control",
                  tu_path(dir, "ctl.sock"), (char *)NULL);
            _exit(127);
        }
        int status = 0;
        if (inner < 0 || waitpid(inner, &status, 0) != inner)
            _exit(122);
        _exit(WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
    }
    int status = 0;
    ck_assert_int_eq(waitpid(outer, &status, 0), outer);
    ck_assert(WIFEXITED(status));
    ck_assert_msg(WEXITSTATUS(status) != 120, "cannot make a PID namespace for the test");
    ck_assert_int_eq(WEXITSTATUS(status), 4);
    char *err = tu_read_file(errpath, NULL);
    ck_assert_ptr_nonnull(err);
    ck_assert_str_eq(err, "fleetsim: cannot start worker 0: Resource temporarily unavailable\n");
    free(err);
}
END_TEST

int main(void)
{
    Suite *suite = suite_create("fleetsim");
    TCase *tc = tu_tcase(suite, "fleet", setup, teardown,
                         TU_TESTS(test_fleet_serves_one_identity_per_host_and_writes_inventory,
                                  test_control_patches_stops_and_misbehaves_hosts,
                                  test_bad_options_are_refused,
                                  test_ctl_refuses_a_command_longer_than_a_line,
                                  test_control_socket_listens_before_ready_is_printed,
                                  test_failed_worker_fork_is_named_and_signals_no_one_else));
    tcase_set_timeout(tc, 120);
    return tu_run_suite(suite);
}
