/*
 * testutil.h — helpers shared by the Check suites: temporary folders, running the real
 * binaries, reading files. Every suite runs in fork mode, one test per child process.
 */
#ifndef TLSGATE_TESTUTIL_H
#define TLSGATE_TESTUTIL_H

#include <check.h>
#include <stdarg.h>
#include <stddef.h>
#include <sys/types.h>

/* Runs every test of `s` (fork mode) and frees it; returns the exit status for main: 0 when
 * all passed, 1 otherwise. Check prints its closing "N%: Checks: ..." line. */
int tu_run_suite(Suite *s);

/* A fresh empty folder under $TMPDIR (or /tmp), removed by tu_rmtree. */
char *tu_tmpdir(void);
void tu_rmtree(const char *dir);

/* "$dir/$name" in a static rotating buffer (8 slots). */
const char *tu_path(const char *dir, const char *name);

/* Writes `data` to `path`; ck_abort on failure. */
void tu_write_file(const char *path, const char *data, size_t len);
/* Reads the whole file (NUL-terminated, malloc'd); NULL if missing. */
char *tu_read_file(const char *path, size_t *len);

/* Path of a built binary ("orchestrator/tlsgate") or a source file ("tools/sample-inventory.csv"). */
const char *tu_build_path(const char *rel);
const char *tu_source_path(const char *rel);

/*
 * Runs argv (argv[0] a path) with stdout and stderr captured into malloc'd strings (each may be
 * NULL to discard), stdin from /dev/null, and extra environment entries "K=V" (NULL-ended,
 * may be NULL). Returns the exit code, or 128+signal.
 */
int tu_run(char *const argv[], char *const env[], char **out, char **err);

/* Runs `tlsgate --db DB ARGS...` (NULL-terminated varargs). */
int tu_tlsgate(const char *db, char **out, char **err, ...);
/* The same with extra environment entries "K=V" (NULL-ended, may be NULL), e.g. a pinned
 * clock "TLSGATE_NOW=..." and "TLSGATE_USER=...". */
int tu_tlsgate_env(const char *db, char *const env[], char **out, char **err, ...);
int tu_tlsgatev(const char *db, char *const env[], char **out, char **err, va_list ap);

/* Waits for child `pid` to exit within `ms` (a deadline on the monotonic clock, checked every
 * 10 ms); returns its exit code, 128+signal, or -1 when it is still running. */
int tu_wait_exit(pid_t pid, long ms);

/* The one integer `sql` answers on the database file `db` (its first column of its first row),
 * with `param`, when not NULL, bound as text to ?1; ck_abort when there is no row. The file is
 * opened (never created) with plain SQLite, so a test reads what the binaries wrote. */
long long tu_db_int(const char *db, const char *sql, const char *param);

#endif
