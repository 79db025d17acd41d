/*
 * test_store.c — the store's migrations and refusals, on real database files.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "store.h"
#include "testutil.h"

static char *dir;

static void setup(void) { dir = tu_tmpdir(); }
static void teardown(void)
{
    tu_rmtree(dir);
    free(dir);
}

static int query_int(struct store *s, const char *sql)
{
    sqlite3_stmt *st;
    ck_assert_int_eq(store_prepare(s, sql, &st), 0);
    ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
    int v = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return v;
}

START_TEST(test_migrations_create_every_table_on_empty_file)
{
    struct store *s;
    char err[512];
    ck_assert_int_eq(store_open(tu_path(dir, "a.db"), true, &s, err, sizeof(err)), 0);
    ck_assert_int_eq(query_int(s, "PRAGMA user_version"), store_schema_latest());
    ck_assert_int_eq(query_int(s, "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND "
                                  "name IN ('site','host','edge','report','verdict','poll',"
                                  "'waiver','phase_history','audit','meta')"),
                     10);
    ck_assert_int_eq(query_int(s, "PRAGMA foreign_keys"), 1);
    sqlite3_stmt *st;
    ck_assert_int_eq(store_prepare(s, "PRAGMA journal_mode", &st), 0);
    ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
    ck_assert_str_eq((const char *)sqlite3_column_text(st, 0), "wal");
    sqlite3_finalize(st);
    store_close(s);
}
END_TEST

START_TEST(test_migrations_rerun_is_idempotent)
{
    struct store *s;
    char err[512];
    const char *db = tu_path(dir, "a.db");
    ck_assert_int_eq(store_open(db, true, &s, err, sizeof(err)), 0);
    ck_assert_int_eq(store_exec(s, "INSERT INTO meta VALUES ('k', 'v')"), 0);
    store_close(s);
    ck_assert_int_eq(store_open(db, true, &s, err, sizeof(err)), 0);
    ck_assert_int_eq(query_int(s, "SELECT count(*) FROM meta"), 1);
    ck_assert_int_eq(query_int(s, "PRAGMA user_version"), store_schema_latest());
    store_close(s);
    ck_assert_int_eq(store_open(db, false, &s, err, sizeof(err)), 0);
    store_close(s);
}
END_TEST

START_TEST(test_newer_database_is_refused_untouched)
{
    struct store *s;
    char err[512];
    const char *db = tu_path(dir, "a.db");
    ck_assert_int_eq(store_open(db, true, &s, err, sizeof(err)), 0);
    char sql[64];
    snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", store_schema_latest() + 1);
    ck_assert_int_eq(store_exec(s, sql), 0);
    store_close(s);

    ck_assert_int_eq(store_open(db, true, &s, err, sizeof(err)), -EPROTO);
    ck_assert_ptr_null(s);
    ck_assert_ptr_nonnull(strstr(err, "newer tlsgate"));

    char *out, *errout;
    ck_assert_int_eq(tu_tlsgate(db, &out, &errout, "init", NULL), 4);
    ck_assert_ptr_nonnull(strstr(errout, "newer tlsgate"));
    free(out);
    free(errout);

    sqlite3 *raw;
    ck_assert_int_eq(sqlite3_open(db, &raw), SQLITE_OK);
    sqlite3_stmt *st;
    ck_assert_int_eq(sqlite3_prepare_v2(raw, "PRAGMA user_version", -1, &st, NULL), SQLITE_OK);
    ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
    ck_assert_int_eq(sqlite3_column_int(st, 0), store_schema_latest() + 1);
    sqlite3_finalize(st);
    sqlite3_close(raw);
}
END_TEST

START_TEST(test_missing_database_is_not_created_by_other_commands)
{
    struct store *s;
    char err[512];
    const char *db = tu_path(dir, "missing.db");
    ck_assert_int_eq(store_open(db, false, &s, err, sizeof(err)), -ENOENT);
    ck_assert_ptr_nonnull(strstr(err, "tlsgate init"));
    ck_assert_ptr_null(tu_read_file(db, NULL));
}
END_TEST

START_TEST(test_foreign_file_is_refused)
{
    struct store *s;
    char err[512];
    const char *junk = tu_path(dir, "junk.db");
    tu_write_file(junk, "hello, not sqlite at all\n", 25);
    ck_assert_int_eq(store_open(junk, true, &s, err, sizeof(err)), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "not a tlsgate database"));

    /* Someone else's SQLite database is not ours to migrate either. */
    const char *other = tu_path(dir, "other.db");
    sqlite3 *raw;
    ck_assert_int_eq(sqlite3_open(other, &raw), SQLITE_OK);
    ck_assert_int_eq(sqlite3_exec(raw, "CREATE TABLE t (x)", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(raw);
    ck_assert_int_eq(store_open(other, true, &s, err, sizeof(err)), -EINVAL);
}
END_TEST

START_TEST(test_audit_rows_cannot_be_changed)
{
    struct store *s;
    char err[512];
    ck_assert_int_eq(store_open(tu_path(dir, "a.db"), true, &s, err, sizeof(err)), 0);
    ck_assert_int_eq(store_exec(s, "INSERT INTO audit (at, user, command, outcome) "
                                   "VALUES (1, 'u', 'c', 'ok')"),
                     0);
    ck_assert_int_ne(store_exec(s, "UPDATE audit SET outcome = 'x'"), 0);
    ck_assert_int_ne(store_exec(s, "DELETE FROM audit"), 0);
    ck_assert_int_eq(query_int(s, "SELECT count(*) FROM audit WHERE outcome = 'ok'"), 1);
    store_close(s);
}
END_TEST

/* `tlsgate init` makes the database, and SQLite its -wal and -shm files, for the owner only,
 * whatever the umask (here the permissive 022 of most shells). */
START_TEST(test_init_creates_files_for_the_owner_only)
{
    const char *db = tu_path(dir, "private.db");
    mode_t old = umask(022);
    ck_assert_int_eq(tu_tlsgate(db, NULL, NULL, "init", NULL), 0);
    umask(old);
    struct stat st;
    ck_assert_int_eq(stat(db, &st), 0);
    ck_assert_msg((st.st_mode & 0777) == 0600, "database mode %o", st.st_mode & 0777);
    /* The WAL and shared-memory files exist while a connection writes. */
    struct store *s;
    char err[512];
    ck_assert_int_eq(store_open(db, false, &s, err, sizeof(err)), 0);
    ck_assert_int_eq(store_exec(s, "BEGIN; INSERT INTO audit (at, user, command, outcome) "
                                   "VALUES (1, 'u', 'c', 'ok'); COMMIT"),
                     0);
    char side[600];
    for (int i = 0; i < 2; i++) {
        snprintf(side, sizeof(side), "%s-%s", db, i ? "shm" : "wal");
        ck_assert_msg(stat(side, &st) == 0, "%s missing", side);
        ck_assert_msg((st.st_mode & 0077) == 0, "%s mode %o", side, st.st_mode & 0777);
    }
    store_close(s);
}
END_TEST

int main(void)
{
    Suite *suite = suite_create("store");
    tu_tcase(suite, "migrations", setup, teardown,
             TU_TESTS(test_migrations_create_every_table_on_empty_file,
                      test_migrations_rerun_is_idempotent, test_newer_database_is_refused_untouched,
                      test_missing_database_is_not_created_by_other_commands,
                      test_foreign_file_is_refused, test_audit_rows_cannot_be_changed,
                      test_init_creates_files_for_the_owner_only));
    return tu_run_suite(suite);
}
