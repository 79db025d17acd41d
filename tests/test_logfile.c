/*
 * test_logfile.c — the collector's capped, rotated log file (collectors/logfile.c), which the
 * Windows service writes under %ProgramData%\tlsgate\logs: rotation order, the cap, reopening,
 * the fallback when a rename fails, and argument checks. Real files in a temporary folder.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "logfile.h"
#include "testutil.h"

static char *dir;

static void setup(void) { dir = tu_tmpdir(); }

static void teardown(void)
{
    tu_rmtree(dir);
    free(dir);
}

static long file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (long)st.st_size : -1;
}

/* Appends the numbers of every "line N ..." of `path` to nums; returns how many. */
static int line_numbers(const char *path, int *nums, int max)
{
    FILE *f = fopen(path, "r");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    char buf[256];
    int n = 0;
    while (fgets(buf, sizeof(buf), f)) {
        int v;
        ck_assert_msg(sscanf(buf, "line %d ", &v) == 1, "%s: unexpected line %s", path, buf);
        ck_assert(n < max);
        nums[n++] = v;
    }
    fclose(f);
    return n;
}

/* logfile_open that must succeed. */
static struct logfile *open_ok(const char *path, size_t cap, unsigned keep)
{
    struct logfile *lf;
    ck_assert_int_eq(logfile_open(path, cap, keep, &lf), 0);
    return lf;
}

/* Writes lines "line 0000 ..." to "line N-1 ..." (46 bytes each), the file never over 1024. */
static void write_numbered(struct logfile *lf, int n)
{
    char line[128];
    for (int i = 0; i < n; i++) {
        snprintf(line, sizeof(line), "line %04d 2026-12-02T09:00:00Z info some text", i);
        ck_assert_int_eq(logfile_write(lf, line), 0);
        ck_assert(logfile_size(lf) <= 1024);
    }
}

START_TEST(rotates_in_order_and_keeps_the_cap)
{
    const char *log = tu_path(dir, "collector.log");
    struct logfile *lf = open_ok(log, 1024, 3);
    write_numbered(lf, 200);
    logfile_close(lf);

    /* Oldest first: .3, .2, .1, then the live file; every file under the cap. */
    const char *names[] = {"collector.log.3", "collector.log.2", "collector.log.1",
                           "collector.log"};
    int nums[400], n = 0;
    for (int k = 0; k < 4; k++) {
        const char *p = tu_path(dir, names[k]);
        long sz = file_size(p);
        ck_assert_msg(sz > 0 && sz <= 1024, "%s: size %ld", names[k], sz);
        n += line_numbers(p, nums + n, 400 - n);
    }
    ck_assert_int_eq(file_size(tu_path(dir, "collector.log.4")), -1);
    /* Contiguous, ending with the last line written, the oldest dropped. */
    ck_assert_int_eq(nums[n - 1], 199);
    for (int i = 1; i < n; i++)
        ck_assert_int_eq(nums[i], nums[i - 1] + 1);
    ck_assert_int_gt(nums[0], 0);
    /* Each file was filled close to the cap before rotating (lines are 46 bytes). */
    ck_assert_int_ge(file_size(tu_path(dir, "collector.log.2")), 1024 - 46);
}
END_TEST

START_TEST(reopen_appends)
{
    const char *log = tu_path(dir, "a.log");
    struct logfile *lf = open_ok(log, 4096, 2);
    ck_assert_int_eq(logfile_write(lf, "line 1 first"), 0);
    ck_assert_int_eq(logfile_write(lf, "line 2 second"), 0);
    logfile_close(lf);
    lf = open_ok(log, 4096, 2);
    ck_assert_uint_eq(logfile_size(lf), strlen("line 1 first\nline 2 second\n"));
    ck_assert_int_eq(logfile_write(lf, "line 3 third"), 0);
    logfile_close(lf);
    char *text = tu_read_file(log, NULL);
    ck_assert_str_eq(text, "line 1 first\nline 2 second\nline 3 third\n");
    free(text);
    ck_assert_int_eq(file_size(tu_path(dir, "a.log.1")), -1);
}
END_TEST

START_TEST(a_long_line_goes_alone_into_a_fresh_file)
{
    const char *log = tu_path(dir, "b.log");
    struct logfile *lf = open_ok(log, 1024, 2);
    ck_assert_int_eq(logfile_write(lf, "line 1 short"), 0);
    char big[3001];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    ck_assert_int_eq(logfile_write(lf, big), 0);
    ck_assert_uint_eq(logfile_size(lf), 3001);
    logfile_close(lf);
    ck_assert_int_eq(file_size(log), 3001);
    ck_assert_int_eq(file_size(tu_path(dir, "b.log.1")), (long)strlen("line 1 short\n"));
    /* Lines are cut at LOGFILE_LINE_MAX. */
    char *huge = malloc(LOGFILE_LINE_MAX * 2);
    memset(huge, 'y', LOGFILE_LINE_MAX * 2 - 1);
    huge[LOGFILE_LINE_MAX * 2 - 1] = '\0';
    lf = open_ok(log, 1024, 2);
    ck_assert_int_eq(logfile_write(lf, huge), 0);
    logfile_close(lf);
    free(huge);
    ck_assert_int_eq(file_size(log), LOGFILE_LINE_MAX + 1);
}
END_TEST

START_TEST(a_rename_that_fails_truncates_instead)
{
    const char *log = tu_path(dir, "c.log");
    /* c.log.1 is a non-empty folder: it can be neither removed nor renamed over. */
    char sub[1100];
    snprintf(sub, sizeof(sub), "%s/c.log.1", dir);
    ck_assert_int_eq(mkdir(sub, 0700), 0);
    snprintf(sub, sizeof(sub), "%s/c.log.1/keep", dir);
    tu_write_file(sub, "x", 1);

    struct logfile *lf = open_ok(log, 1024, 1);
    write_numbered(lf, 100);
    ck_assert_uint_gt(logfile_truncations(lf), 0);
    logfile_close(lf);
    ck_assert(file_size(log) <= 1024);
    char *text = tu_read_file(log, NULL);
    ck_assert_msg(strncmp(text, "(log truncated: could not rotate ", 33) == 0, "%s", text);
    ck_assert_ptr_nonnull(strstr(text, "line 0099 "));
    free(text);
}
END_TEST

START_TEST(bad_arguments)
{
    struct logfile *lf = (struct logfile *)1;
    ck_assert_int_eq(logfile_open(tu_path(dir, "d.log"), 1023, 3, &lf), -EINVAL);
    ck_assert_ptr_null(lf);
    ck_assert_int_eq(logfile_open(tu_path(dir, "d.log"), 4096, 0, &lf), -EINVAL);
    ck_assert_int_eq(logfile_open(tu_path(dir, "d.log"), 4096, 10, &lf), -EINVAL);
    ck_assert_int_eq(logfile_open("", 4096, 3, &lf), -EINVAL);
    ck_assert_int_eq(logfile_open(tu_path(dir, "missing/d.log"), 4096, 3, &lf), -ENOENT);
    ck_assert_int_eq(file_size(tu_path(dir, "d.log")), -1);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("logfile");
    tu_tcase(s, "logfile", setup, teardown,
             TU_TESTS(rotates_in_order_and_keeps_the_cap, reopen_appends,
                      a_long_line_goes_alone_into_a_fresh_file,
                      a_rename_that_fails_truncates_instead, bad_arguments));
    return tu_run_suite(s);
}
