/*
 * test_journal.c — log lines with syslog priorities when stderr is the journal (base/journal.h):
 * the real tlsgate daemon and a failing command, stderr redirected to a file whose device and
 * inode are put in $JOURNAL_STREAM as systemd does, then the same without (plain lines).
 */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fixture.h"
#include "journal.h"
#include "testutil.h"

static char *dir;
static char db[4096];
static char config_path[4096];

static void setup(void)
{
    dir = tu_tmpdir_with_db(db, sizeof(db));
    snprintf(config_path, sizeof(config_path), "%s", tu_path(dir, "config.json"));
    char *certs = strdup(tu_path(dir, "certs"));
    ck_assert_msg(tu_gen_certs(certs, TU_ARGS("down.test")) == 0, "gen-certs failed");
    char buf[8192];
    snprintf(buf, sizeof(buf),
             "{\"tls\": {\"ca\": \"%s/ca.pem\", \"cert\": \"%s/orchestrator.pem\", "
             "\"key\": \"%s/orchestrator.key\"}, \"interval\": 3600, \"jitter\": 0, "
             "\"connect_timeout\": 2, \"timeout\": 3, \"log_level\": \"debug\"}",
             certs, certs, certs);
    free(certs);
    tu_write_file(config_path, buf, strlen(buf));
    ck_assert_int_eq(tu_tlsgate(db, NULL, NULL, "init", NULL), 0);
    struct store *s = fx_open(db);
    fx_site(s, "S01", "inventory");
    char collector[64];
    snprintf(collector, sizeof(collector), "127.0.0.1:%d", tu_closed_port());
    fx_host_bare(s, "down.test", "S01", ROLE_CLIENT, collector);
    store_close(s);
}

static void teardown(void)
{
    tu_rmtree(dir);
    free(dir);
}

/* "DEV:INO" of `path`, as systemd writes $JOURNAL_STREAM. */
static void stream_of(const char *path, char *out, size_t size)
{
    struct stat st;
    ck_assert_int_eq(stat(path, &st), 0);
    snprintf(out, size, "%ju:%ju", (uintmax_t)st.st_dev, (uintmax_t)st.st_ino);
}

/* Runs tlsgate with ARGS (NULL-ended) with stderr into `log` (created empty first) and
 * $JOURNAL_STREAM set to `stream` (NULL: unset). Daemons get SIGTERM once `log` holds `until`.
 * Returns the exit code. */
static int run_logged(const char *log, const char *stream, const char *until, char **args)
{
    tu_write_file(log, "", 0);
    char *tlsgate = strdup(tu_build_path("orchestrator/tlsgate"));
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_APPEND);
        int devnull = open("/dev/null", O_RDWR);
        dup2(devnull, 0);
        dup2(devnull, 1);
        dup2(fd, 2);
        if (stream)
            setenv("JOURNAL_STREAM", stream, 1);
        else
            unsetenv("JOURNAL_STREAM");
        char *argv[16] = {"tlsgate", "--db", db, "--config", config_path};
        int n = 5;
        for (int i = 0; args[i] && n < 15; i++)
            argv[n++] = args[i];
        argv[n] = NULL;
        execv(tlsgate, argv);
        _exit(127);
    }
    free(tlsgate);
    if (until) {
        bool seen = false;
        struct timespec step = {0, 20 * 1000 * 1000};
        for (int waited = 0; waited < 30000 && !seen; waited += 20) {
            char *text = tu_read_file(log, NULL);
            seen = text && strstr(text, until);
            free(text);
            if (!seen)
                nanosleep(&step, NULL);
        }
        kill(pid, SIGTERM);
        if (!seen) {
            tu_wait_exit(pid, 10000);
            char *text = tu_read_file(log, NULL);
            ck_abort_msg("no \"%s\" in the log:\n%s", until, text ? text : "");
        }
    }
    int rc = tu_wait_exit(pid, 20000);
    ck_assert_msg(rc >= 0, "tlsgate did not exit");
    return rc;
}

/* Every line of `log` checked: with `journal`, "<N>" first and N the priority of the line's
 * level word; without, no prefix. Returns the number of lines of each level seen. */
static void check_lines(const char *log, bool journal, int *errors, int *warnings, int *infos)
{
    char *text = tu_read_file(log, NULL);
    ck_assert_ptr_nonnull(text);
    *errors = *warnings = *infos = 0;
    int lines = 0;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        lines++;
        const char *rest = line;
        int prio = -1;
        if (journal) {
            ck_assert_msg(line[0] == '<' && line[2] == '>', "no priority: %s", line);
            prio = line[1] - '0';
            rest = line + 3;
        } else {
            ck_assert_msg(line[0] != '<', "a priority on a plain stream: %s", line);
        }
        if (!strncmp(rest, "tlsgate: ", 9)) { /* cli_error: an error */
            ck_assert(!journal || prio == JOURNAL_ERR);
            (*errors)++;
            continue;
        }
        /* "TIME LEVEL ..." from the pull engine's log */
        const char *sp = strchr(rest, ' ');
        ck_assert_msg(sp != NULL, "unexpected line: %s", line);
        const char *level = sp + 1;
        int want = !strncmp(level, "error ", 6)   ? JOURNAL_ERR
                   : !strncmp(level, "warn ", 5)  ? JOURNAL_WARNING
                   : !strncmp(level, "info ", 5)  ? JOURNAL_INFO
                   : !strncmp(level, "debug ", 6) ? JOURNAL_DEBUG
                                                  : -1;
        ck_assert_msg(want >= 0, "no level word: %s", line);
        ck_assert_msg(!journal || prio == want, "priority %d for: %s", prio, line);
        if (want == JOURNAL_ERR)
            (*errors)++;
        else if (want == JOURNAL_WARNING)
            (*warnings)++;
        else if (want == JOURNAL_INFO)
            (*infos)++;
    }
    ck_assert_int_gt(lines, 0);
    free(text);
}

START_TEST(matches_only_its_own_stream)
{
    const char *file = tu_path(dir, "other");
    tu_write_file(file, "", 0);
    int fd = open(file, O_RDONLY);
    char stream[64];
    stream_of(file, stream, sizeof(stream));
    ck_assert(journal_matches(stream, fd));
    ck_assert(!journal_matches(NULL, fd));
    ck_assert(!journal_matches("", fd));
    char bad[80];
    snprintf(bad, sizeof(bad), "%s0", stream); /* another inode */
    ck_assert(!journal_matches(bad, fd));
    snprintf(bad, sizeof(bad), "%sx", stream);
    ck_assert(!journal_matches(bad, fd));
    ck_assert(!journal_matches("12", fd));
    ck_assert(!journal_matches(":12", fd));
    ck_assert(!journal_matches("x:y", fd));
    close(fd);
}
END_TEST

START_TEST(daemon_lines_carry_priorities_on_the_journal)
{
    const char *log = tu_path(dir, "daemon.log");
    tu_write_file(log, "", 0);
    char stream[64];
    stream_of(log, stream, sizeof(stream));
    char *args[] = {"daemon", NULL};
    char *logc = strdup(log);
    ck_assert_int_eq(run_logged(logc, stream, "in a row)", args), 0);
    int e, w, i;
    check_lines(logc, true, &e, &w, &i);
    ck_assert_int_ge(w, 1); /* the failed pull */
    ck_assert_int_ge(i, 2); /* started, stopping */
    free(logc);
}
END_TEST

START_TEST(daemon_lines_stay_plain_elsewhere)
{
    const char *log = tu_path(dir, "daemon.log");
    char *logc = strdup(log);
    char *args[] = {"daemon", NULL};
    /* Unset, and set to another file's stream (stderr inherited from a journald parent and
     * redirected since): both plain. */
    ck_assert_int_eq(run_logged(logc, NULL, "in a row)", args), 0);
    int e, w, i;
    check_lines(logc, false, &e, &w, &i);
    ck_assert_int_ge(w, 1);
    const char *other = tu_path(dir, "other");
    tu_write_file(other, "", 0);
    char stream[64];
    stream_of(other, stream, sizeof(stream));
    ck_assert_int_eq(run_logged(logc, stream, "in a row)", args), 0);
    check_lines(logc, false, &e, &w, &i);
    ck_assert_int_ge(w, 1);
    free(logc);
}
END_TEST

START_TEST(command_errors_are_errors_on_the_journal)
{
    const char *log = tu_path(dir, "cmd.log");
    tu_write_file(log, "", 0);
    char stream[64];
    stream_of(log, stream, sizeof(stream));
    char *logc = strdup(log);
    char *args[] = {"gate", "check", "no-such-host.test", NULL};
    ck_assert_int_eq(run_logged(logc, stream, NULL, args), 3);
    int e, w, i;
    check_lines(logc, true, &e, &w, &i);
    ck_assert_int_ge(e, 1);
    ck_assert_int_eq(run_logged(logc, NULL, NULL, args), 3);
    check_lines(logc, false, &e, &w, &i);
    ck_assert_int_ge(e, 1);
    free(logc);
}
END_TEST

static Suite *journal_suite(void)
{
    Suite *s = suite_create("journal");
    TCase *tc = tu_tcase(
        s, "journal", setup, teardown,
        TU_TESTS(matches_only_its_own_stream, daemon_lines_carry_priorities_on_the_journal,
                 daemon_lines_stay_plain_elsewhere, command_errors_are_errors_on_the_journal));
    tcase_set_timeout(tc, 120);
    return s;
}

int main(void) { return tu_run_suite(journal_suite()); }
