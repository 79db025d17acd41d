/*
 * testutil.c — see testutil.h.
 */
#include "testutil.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int tu_run_suite(Suite *s)
{
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}

TCase *tu_tcase(Suite *s, const char *name, void (*setup)(void), void (*teardown)(void),
                const TTest *const *tests)
{
    assert(s && name && tests);
    TCase *tc = tcase_create(name);
    if (setup || teardown)
        tcase_add_checked_fixture(tc, setup, teardown);
    for (; *tests; tests++)
        tcase_add_test(tc, *tests);
    suite_add_tcase(s, tc);
    return tc;
}

char *tu_tmpdir(void)
{
    const char *base = getenv("TMPDIR");
    char *tmpl;
    ck_assert_int_ge(asprintf(&tmpl, "%s/tlsgate-test-XXXXXX", base && *base ? base : "/tmp"), 0);
    ck_assert_ptr_nonnull(mkdtemp(tmpl));
    return tmpl;
}

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

char *tu_tmpdir_with_db(char *db, size_t size)
{
    char *dir = tu_tmpdir();
    ck_assert_int_lt(snprintf(db, size, "%s/t.db", dir), (int)size);
    return dir;
}

void tu_tmpdir_drop(char **dir)
{
    tu_rmtree(*dir);
    free(*dir);
    *dir = NULL;
}

void tu_rmtree(const char *dir) { nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS); }

const char *tu_path(const char *dir, const char *name)
{
    static char bufs[8][4096];
    static int next;
    char *b = bufs[next++ % 8];
    snprintf(b, sizeof(bufs[0]), "%s/%s", dir, name);
    return b;
}

const char *tu_cert_path(const char *dir, const char *name, const char *ext)
{
    char file[512];
    snprintf(file, sizeof(file), "%s.%s", name, ext);
    return tu_path(dir, file);
}

void tu_assert_has_at(const char *file, int line, bool want, const char *text, ...)
{
    ck_assert_msg(text != NULL, "%s:%d: no text to look in", file, line);
    va_list ap;
    va_start(ap, text);
    for (const char *needle; (needle = va_arg(ap, const char *));)
        ck_assert_msg((strstr(text, needle) != NULL) == want, "%s:%d: %s \"%s\" in: %s", file, line,
                      want ? "no" : "unexpected", needle, text);
    va_end(ap);
}

long tu_data_k(const char *from, const char *until, const char *key, bool value_attr)
{
    char pat[128];
    snprintf(pat, sizeof(pat), "data-k=\"%s\"", key);
    const char *p = strstr(from, pat);
    ck_assert_msg(p && (!until || p < until), "no %s", pat);
    p += strlen(pat);
    const char *end = strchr(p, '>');
    ck_assert_msg(end != NULL, "%s: the tag does not end", pat);
    const char *v = strstr(p, "data-value=\"");
    if (value_attr && v && v < end)
        return strtol(v + strlen("data-value=\""), NULL, 10);
    return strtol(end + 1, NULL, 10);
}

void tu_write_file(const char *path, const char *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    ck_assert_msg(f != NULL, "cannot write %s", path);
    ck_assert_uint_eq(fwrite(data, 1, len, f), len);
    ck_assert_int_eq(fclose(f), 0);
}

char *tu_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap + 1);
    size_t r;
    while ((r = fread(buf + n, 1, cap - n, f)) > 0) {
        n += r;
        if (n == cap)
            buf = realloc(buf, (cap *= 2) + 1);
    }
    fclose(f);
    buf[n] = '\0';
    if (len)
        *len = n;
    return buf;
}

static const char *root_path(const char *var, const char *rel)
{
    static char bufs[8][4096];
    static int next;
    const char *root = getenv(var);
    ck_assert_msg(root != NULL, "%s is not set (run the tests through meson test)", var);
    char *b = bufs[next++ % 8];
    snprintf(b, sizeof(bufs[0]), "%s/%s", root, rel);
    return b;
}

const char *tu_build_path(const char *rel) { return root_path("TLSGATE_BUILD_ROOT", rel); }
const char *tu_source_path(const char *rel) { return root_path("TLSGATE_SOURCE_ROOT", rel); }

/* Reads an fd to EOF into a malloc'd string. */
static char *slurp_fd(int fd)
{
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap + 1);
    ssize_t r;
    while ((r = read(fd, buf + n, cap - n)) != 0) {
        if (r < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        n += (size_t)r;
        if (n == cap)
            buf = realloc(buf, (cap *= 2) + 1);
    }
    buf[n] = '\0';
    return buf;
}

int tu_run(char *const argv[], char *const env[], char **out, char **err)
{
    /* Output goes to temporary files, not pipes, so a chatty child can never block on us. */
    FILE *fo = tmpfile(), *fe = tmpfile();
    ck_assert(fo && fe);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        int devnull = open("/dev/null", O_RDONLY);
        dup2(devnull, 0);
        dup2(fileno(fo), 1);
        dup2(fileno(fe), 2);
        for (int i = 0; env && env[i]; i++)
            putenv(env[i]);
        execv(argv[0], argv);
        _exit(127);
    }
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (out) {
        lseek(fileno(fo), 0, SEEK_SET);
        *out = slurp_fd(fileno(fo));
    }
    if (err) {
        lseek(fileno(fe), 0, SEEK_SET);
        *err = slurp_fd(fileno(fe));
    }
    fclose(fo);
    fclose(fe);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

int tu_tlsgatev(const char *db, char *const env[], char **out, char **err, va_list ap)
{
    char *argv[64];
    int n = 0;
    argv[n++] = (char *)tu_build_path("orchestrator/tlsgate");
    argv[n++] = "--db";
    argv[n++] = (char *)db;
    char *a;
    while ((a = va_arg(ap, char *)) && n < 63)
        argv[n++] = a;
    argv[n] = NULL;
    return tu_run(argv, env, out, err);
}

int tu_tlsgate(const char *db, char **out, char **err, ...)
{
    va_list ap;
    va_start(ap, err);
    int rc = tu_tlsgatev(db, NULL, out, err, ap);
    va_end(ap);
    return rc;
}

int tu_tlsgate_env(const char *db, char *const env[], char **out, char **err, ...)
{
    va_list ap;
    va_start(ap, err);
    int rc = tu_tlsgatev(db, env, out, err, ap);
    va_end(ap);
    return rc;
}

pid_t tu_tlsgate_start(const char *db, const char *config, const char *command, const char *logpath,
                       bool truncate)
{
    char *tlsgate = strdup(tu_build_path("orchestrator/tlsgate"));
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        int fd = open(logpath, O_WRONLY | O_CREAT | (truncate ? O_TRUNC : O_APPEND), 0600);
        int devnull = open("/dev/null", O_RDWR);
        dup2(devnull, 0);
        dup2(devnull, 1);
        dup2(fd, 2);
        execl(tlsgate, "tlsgate", "--db", db, "--config", config, command, (char *)NULL);
        _exit(127);
    }
    free(tlsgate);
    return pid;
}

static long long monotonic_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int tu_wait_exit(pid_t pid, long ms)
{
    long long end = monotonic_ms() + ms;
    struct timespec step = {0, 10 * 1000 * 1000};
    for (;;) {
        int status;
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid)
            return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        if ((r < 0 && errno != EINTR) || monotonic_ms() > end)
            return -1;
        nanosleep(&step, NULL);
    }
}

long long tu_db_int(const char *db, const char *sql, const char *param)
{
    sqlite3 *raw;
    ck_assert_msg(sqlite3_open_v2(db, &raw, SQLITE_OPEN_READWRITE, NULL) == SQLITE_OK,
                  "%s: cannot open", db);
    sqlite3_busy_timeout(raw, 30000);
    sqlite3_stmt *st;
    ck_assert_msg(sqlite3_prepare_v2(raw, sql, -1, &st, NULL) == SQLITE_OK, "%s: %s", sql,
                  sqlite3_errmsg(raw));
    if (param)
        sqlite3_bind_text(st, 1, param, -1, SQLITE_STATIC);
    int step = sqlite3_step(st);
    ck_assert_msg(step == SQLITE_ROW, "no row for %s (%s)", sql, param ? param : "");
    long long v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(raw);
    return v;
}

long long tu_now_ms(void) { return monotonic_ms(); }

bool tu_wait_readable(int fd, long ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    return poll(&p, 1, (int)ms) == 1;
}

bool tu_wait_db_int(const char *db, const char *sql, const char *param, long long want, long ms)
{
    long long end = monotonic_ms() + ms;
    struct timespec step = {0, 20 * 1000 * 1000};
    for (;;) {
        if (tu_db_int(db, sql, param) >= want)
            return true;
        if (monotonic_ms() > end)
            return false;
        nanosleep(&step, NULL);
    }
}

bool tu_wait_file_contains(const char *path, const char *needle, long ms)
{
    long long end = monotonic_ms() + ms;
    struct timespec step = {0, 20 * 1000 * 1000};
    for (;;) {
        char *text = tu_read_file(path, NULL);
        bool found = text && strstr(text, needle);
        free(text);
        if (found)
            return true;
        if (monotonic_ms() > end)
            return false;
        nanosleep(&step, NULL);
    }
}

/* A TCP socket bound to an ephemeral loopback port (listening when backlog > 0); sets *port. */
static int loopback_socket(int backlog, int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(fd, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    if (backlog > 0)
        ck_assert_int_eq(listen(fd, backlog), 0);
    socklen_t l = sizeof(a);
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&a, &l), 0);
    *port = ntohs(a.sin_port);
    return fd;
}

int tu_closed_port(void)
{
    int port;
    close(loopback_socket(0, &port));
    return port;
}

int tu_loopback_listener(int backlog, int *port) { return loopback_socket(backlog, port); }

int tu_gen_certs(const char *out, const char *const *names)
{
    const char *root = getenv("TLSGATE_SOURCE_ROOT");
    if (!root) {
        fprintf(stderr, "TLSGATE_SOURCE_ROOT is not set (run the tests through meson test)\n");
        return -1;
    }
    char tool[4096];
    snprintf(tool, sizeof(tool), "%s/tools/gen-certs", root);
    size_t n = 0;
    while (names[n])
        n++;
    char **argv = calloc(n + 3, sizeof(*argv));
    if (!argv)
        return -1;
    argv[0] = tool;
    argv[1] = (char *)out;
    for (size_t i = 0; i < n; i++)
        argv[2 + i] = (char *)names[i];
    pid_t pid = fork();
    if (pid == 0) {
        int devnull = open("/dev/null", O_WRONLY);
        dup2(devnull, 1);
        execv(tool, argv);
        _exit(127);
    }
    free(argv);
    int status;
    if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status) ||
        WEXITSTATUS(status) != 0) {
        fprintf(stderr, "%s %s failed\n", tool, out);
        return -1;
    }
    return 0;
}

pid_t tu_collector_start(const char *const *args, const char *errpath, long ms, uint16_t *port)
{
    char *argv[64];
    int n = 0;
    argv[n++] = (char *)tu_build_path("collectors/tlsgate-collector");
    for (int i = 0; args && args[i] && n < 63; i++)
        argv[n++] = (char *)args[i];
    argv[n] = NULL;
    int fds[2];
    ck_assert_int_eq(pipe(fds), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        int devnull = open("/dev/null", O_RDWR);
        dup2(devnull, 0);
        if (errpath) {
            int e = open(errpath, O_WRONLY | O_CREAT | O_TRUNC, 0600);
            if (e < 0)
                _exit(126);
            dup2(e, 2);
        }
        dup2(fds[1], 1);
        close(fds[0]);
        /* The collector ends through main: a leak shows on stderr and in its exit code. */
        setenv("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=1", 1);
        execv(argv[0], argv);
        _exit(127);
    }
    close(fds[1]);

    char line[1024];
    size_t len = 0;
    long long end = monotonic_ms() + ms;
    const char *at = NULL;
    while (!at) {
        long long left = end - monotonic_ms();
        ck_assert_msg(left > 0, "collector did not start in time");
        if (!tu_wait_readable(fds[0], (long)left))
            continue;
        ssize_t got = read(fds[0], line + len, sizeof(line) - 1 - len);
        if (got <= 0) {
            char *err = errpath ? tu_read_file(errpath, NULL) : NULL;
            ck_abort_msg("collector exited before serving (exit %d): %s", tu_wait_exit(pid, ms),
                         err ? err : "");
        }
        len += (size_t)got;
        line[len] = '\0';
        if (strchr(line, '\n'))
            at = strstr(line, "https://127.0.0.1:");
        ck_assert_msg(!strchr(line, '\n') || at, "unexpected collector output: %s", line);
    }
    close(fds[0]);
    *port = (uint16_t)atoi(at + strlen("https://127.0.0.1:"));
    ck_assert_int_gt(*port, 0);
    return pid;
}

char *tu_fleetsim_ctl(const char *socket, const char *a, const char *b, const char *c)
{
    char *argv[] = {(char *)tu_build_path("tools/fleetsim"),
                    "ctl",
                    (char *)socket,
                    (char *)a,
                    (char *)b,
                    (char *)c,
                    NULL};
    char *out = NULL;
    tu_run(argv, NULL, &out, NULL);
    return out;
}

const char *tu_peer_spec(const char *mode_name, const char *file)
{
    static char buf[8][4200];
    static unsigned next;
    char *out = buf[next++ % 8];
    ck_assert_int_lt(snprintf(out, sizeof(buf[0]), "%s,%s", mode_name, file), (int)sizeof(buf[0]));
    return out;
}

pid_t tu_spawn_piped(char *const argv[], int *in_fd, int *out_fd, bool quiet)
{
    int in[2], out[2];
    ck_assert_int_eq(pipe(in), 0);
    ck_assert_int_eq(pipe(out), 0);
    pid_t child = fork();
    ck_assert_int_ge(child, 0);
    if (child == 0) {
        dup2(in[0], 0);
        dup2(out[1], 1);
        int devnull = quiet ? open("/dev/null", O_WRONLY) : -1;
        if (devnull >= 0)
            dup2(devnull, 2);
        close(in[1]);
        close(out[0]);
        execvp(argv[0], argv);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    *in_fd = in[1];
    *out_fd = out[0];
    return child;
}

void tu_kill_reap(pid_t pid, int sig)
{
    if (pid <= 0)
        return;
    kill(pid, sig);
    waitpid(pid, NULL, 0);
}

int tu_python_peer(char *const argv[], pid_t *pid, int *in_fd, int ports[], int max)
{
    int out;
    *pid = tu_spawn_piped(argv, in_fd, &out, false);
    char line[512];
    size_t len = 0;
    while (len < sizeof(line) - 1 && !memchr(line, '\n', len)) {
        ck_assert_msg(tu_wait_readable(out, 20000), "%s did not report its ports", argv[1]);
        ssize_t r = read(out, line + len, sizeof(line) - 1 - len);
        ck_assert_msg(r > 0, "%s exited before listening", argv[1]);
        len += (size_t)r;
    }
    line[len] = '\0';
    close(out);
    int n = 0;
    for (char *tok = strtok(line, " \n"); tok && n < max; tok = strtok(NULL, " \n"))
        ports[n++] = atoi(tok);
    return n;
}

void tu_peer_start(struct tu_peer *pr, const char *certdir, const char *const specs[])
{
    enum { MAX_SPECS = 32 };
    char *argv[MAX_SPECS + 5];
    int n = 0;
    argv[n++] = "python3";
    argv[n++] = (char *)tu_source_path("tests/daemon/peer.py");
    argv[n++] = "--ca";
    ck_assert_int_ge(asprintf(&argv[n++], "%s/ca.pem", certdir), 0);
    int first_spec = n;
    for (int i = 0; specs[i]; i++) {
        ck_assert_msg(i < MAX_SPECS, "more than %d peer specs", MAX_SPECS);
        char mode[32], name[128], file[2048] = "";
        ck_assert_int_ge(sscanf(specs[i], "%31[^,],%127[^,],%2047s", mode, name, file), 2);
        ck_assert_int_ge(asprintf(&argv[n++], "%s,%s/%s.pem,%s/%s.key%s%s", mode, certdir, name,
                                  certdir, name, file[0] ? "," : "", file),
                         0);
    }
    argv[n] = NULL;
    pr->nports = tu_python_peer(argv, &pr->pid, &pr->in_fd, pr->ports, 32);
    free(argv[first_spec - 1]);
    for (int i = first_spec; i < n; i++)
        free(argv[i]);
}

void tu_peer_stop(struct tu_peer *pr)
{
    close(pr->in_fd);
    tu_kill_reap(pr->pid, SIGKILL);
}

char *const *tu_sim_args(struct tu_sim_args *a, bool binary, const char *certdir, int hosts,
                         const char *sites, const char *control, ...)
{
    snprintf(a->hosts, sizeof(a->hosts), "%d", hosts);
    snprintf(a->binary, sizeof(a->binary), "%s", tu_build_path("tools/fleetsim"));
    snprintf(a->fixtures, sizeof(a->fixtures), "%s", tu_source_path("tests/fixtures/reg"));
    const char *fixed[] = {"--certs", certdir,   "--fixtures", a->fixtures, "--hosts",
                           a->hosts,  "--sites", sites,        "--mps",     "1",
                           "--dps",   "1",       "--control",  control};
    int n = 0;
    if (binary)
        a->argv[n++] = a->binary;
    for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++)
        a->argv[n++] = (char *)fixed[i];
    va_list ap;
    va_start(ap, control);
    for (const char *arg; (arg = va_arg(ap, const char *));) {
        ck_assert_msg(n < 47, "too many fleetsim arguments");
        a->argv[n++] = (char *)arg;
    }
    va_end(ap);
    a->argv[n] = NULL;
    return a->argv;
}

pid_t tu_fleetsim_start(const char *const *args, const char *logpath, const char *ready,
                        int base_min, int slots, int *base)
{
    char *argv[64];
    int n = 0;
    argv[n++] = (char *)tu_build_path("tools/fleetsim");
    for (int i = 0; args[i]; i++) {
        ck_assert_msg(n < 60, "too many fleetsim arguments");
        argv[n++] = (char *)args[i];
    }
    argv[n++] = "--base-port";
    char base_s[16];
    argv[n++] = base_s;
    argv[n] = NULL;
    for (int attempt = 0; attempt < 8; attempt++) {
        int b = base_min + (int)((getpid() * 7 + attempt * 997) % slots) * 50;
        snprintf(base_s, sizeof(base_s), "%d", b);
        unlink(logpath);
        pid_t pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
            freopen(logpath, "w", stdout);
            dup2(fileno(stdout), 2);
            execv(argv[0], argv);
            _exit(127);
        }
        long long deadline = tu_now_ms() + 60000;
        while (tu_now_ms() < deadline) {
            char *text = tu_read_file(logpath, NULL);
            bool up = text && strstr(text, ready);
            free(text);
            if (up) {
                if (base)
                    *base = b;
                return pid;
            }
            if (waitpid(pid, NULL, WNOHANG) == pid)
                break; /* ports taken: try another base */
            usleep(20000);
        }
        if (kill(pid, 0) == 0) {
            kill(pid, SIGKILL);
            waitpid(pid, NULL, 0);
        }
    }
    ck_abort_msg("fleetsim did not start (log: %s)", logpath);
    return -1;
}

static size_t fetch_body(char *p, size_t size, size_t n, void *arg)
{
    struct tu_fetch *f = arg;
    size_t add = size * n;
    if (f->len + add > (f->max_bytes ? f->max_bytes : 1024 * 1024))
        return 0;
    f->out = realloc(f->out, f->len + add + 1);
    memcpy(f->out + f->len, p, add);
    f->len += add;
    f->out[f->len] = '\0';
    return add;
}

static size_t fetch_header(char *p, size_t size, size_t n, void *arg)
{
    struct tu_fetch *f = arg;
    size_t len = size * n;
    if (len > 6 && strncasecmp(p, "Allow:", 6) == 0) {
        size_t m = len - 6 < sizeof(f->allow) - 1 ? len - 6 : sizeof(f->allow) - 1;
        memcpy(f->allow, p + 6, m);
        f->allow[m] = '\0';
        while (m > 0 && (f->allow[m - 1] == '\r' || f->allow[m - 1] == '\n'))
            f->allow[--m] = '\0';
    }
    if (len > 12 && strncasecmp(p, "Retry-After:", 12) == 0)
        f->retry_after = strtol(p + 12, NULL, 10);
    return len;
}

void tu_fetch_run(uint16_t port, struct tu_fetch *f)
{
    char url[512], resolve[300];
    snprintf(url, sizeof(url), "%s://%s:%u%s", f->plain ? "http" : "https", f->host, (unsigned)port,
             f->path);
    snprintf(resolve, sizeof(resolve), "%s:%u:127.0.0.1", f->host, (unsigned)port);
    struct curl_slist *res = curl_slist_append(NULL, resolve);
    CURL *h = curl_easy_init();
    ck_assert_ptr_nonnull(h);
    f->retry_after = -1;
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_RESOLVE, res);
    if (f->source)
        curl_easy_setopt(h, CURLOPT_INTERFACE, f->source);
    curl_easy_setopt(h, CURLOPT_CAINFO, f->ca);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
    curl_easy_setopt(h, CURLOPT_SSLVERSION,
                     f->sslversion ? f->sslversion : (long)CURL_SSLVERSION_TLSv1_2);
    if (f->ciphers)
        curl_easy_setopt(h, CURLOPT_SSL_CIPHER_LIST, f->ciphers);
    char cert[4096], key[4096];
    if (f->certdir) {
        const char *name = f->certname ? f->certname : "orchestrator";
        snprintf(cert, sizeof(cert), "%s/%s.pem", f->certdir, name);
        snprintf(key, sizeof(key), "%s/%s.key", f->certdir, name);
        curl_easy_setopt(h, CURLOPT_SSLCERT, cert);
        curl_easy_setopt(h, CURLOPT_SSLKEY, key);
    }
    if (f->method)
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, f->method);
    if (f->method && strcmp(f->method, "HEAD") == 0)
        curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    if (f->body)
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, f->body);
    if (f->headers)
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, f->headers);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, fetch_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, f);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, fetch_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, f);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, f->error);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, f->timeout_ms ? f->timeout_ms : 15000L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    f->rc = curl_easy_perform(h);
    f->code = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &f->code);
    curl_easy_cleanup(h);
    curl_slist_free_all(res);
}

void tu_fetch_release(struct tu_fetch *f)
{
    free(f->out);
    f->out = NULL;
    f->len = 0;
}
