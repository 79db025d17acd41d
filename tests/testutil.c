/*
 * testutil.c — see testutil.h.
 */
#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

void tu_rmtree(const char *dir)
{
    nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

const char *tu_path(const char *dir, const char *name)
{
    static char bufs[8][4096];
    static int next;
    char *b = bufs[next++ % 8];
    snprintf(b, sizeof(bufs[0]), "%s/%s", dir, name);
    return b;
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
