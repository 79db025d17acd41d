/*
 * store.c — opening, migrating and the small transaction helpers of the SQLite store.
 * The schema itself lives in schema/NNN_*.sql, embedded at build time (schema/embedded.h).
 */
#include "store.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "embedded.h"
#include "store_int.h"

int store_fail(struct store *s, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->msg, sizeof(s->msg), fmt, ap);
    va_end(ap);
    return code;
}

int store_sqlite_fail(struct store *s, const char *what)
{
    int rc = sqlite3_extended_errcode(s->db) & 0xff;
    store_fail(s, 0, "%s: %s: %s", s->path, what, sqlite3_errmsg(s->db));
    if (rc == SQLITE_BUSY || rc == SQLITE_LOCKED)
        return -EBUSY;
    if (rc == SQLITE_NOTADB)
        return -EINVAL;
    return -EIO;
}

sqlite3 *store_db(struct store *s) { return s->db; }
const char *store_path(const struct store *s) { return s->path; }
const char *store_errmsg(const struct store *s) { return s->msg; }

int store_schema_latest(void)
{
    int n = 0;
    while (schema_migrations[n].name)
        n++;
    return n;
}

int store_exec(struct store *s, const char *sql)
{
    if (sqlite3_exec(s->db, sql, NULL, NULL, NULL) != SQLITE_OK)
        return store_sqlite_fail(s, "exec");
    return 0;
}

int store_prepare(struct store *s, const char *sql, sqlite3_stmt **stmt)
{
    if (sqlite3_prepare_v2(s->db, sql, -1, stmt, NULL) != SQLITE_OK)
        return store_sqlite_fail(s, "prepare");
    return 0;
}

int store_each_keep(struct store *s, sqlite3_stmt *st, const char *what, store_row_fn fn, void *arg)
{
    int rc = 0, step = SQLITE_DONE;
    while (st && (step = sqlite3_step(st)) == SQLITE_ROW)
        if ((rc = fn(st, arg)))
            break;
    if (!rc && step != SQLITE_DONE)
        rc = store_sqlite_fail(s, what);
    sqlite3_reset(st);
    return rc;
}

int store_each(struct store *s, sqlite3_stmt *st, const char *what, store_row_fn fn, void *arg)
{
    int rc = store_each_keep(s, st, what, fn, arg);
    sqlite3_finalize(st);
    return rc;
}

void store_bind_opt_int64(sqlite3_stmt *st, int i, long long v)
{
    if (v)
        sqlite3_bind_int64(st, i, v);
    else
        sqlite3_bind_null(st, i);
}

int store_run(struct store *s, sqlite3_stmt *st, const char *what)
{
    int rc = st && sqlite3_step(st) != SQLITE_DONE ? store_sqlite_fail(s, what) : 0;
    sqlite3_finalize(st);
    return rc;
}

int store_one_int(struct store *s, sqlite3_stmt *st, const char *what, long long *out)
{
    *out = 0;
    int step = st ? sqlite3_step(st) : SQLITE_DONE, rc = 0;
    if (step == SQLITE_ROW)
        *out = sqlite3_column_int64(st, 0);
    else if (step != SQLITE_DONE)
        rc = store_sqlite_fail(s, what);
    sqlite3_finalize(st);
    return rc;
}

int store_begin(struct store *s, bool immediate)
{
    return store_exec(s, immediate ? "BEGIN IMMEDIATE" : "BEGIN");
}

int store_commit(struct store *s)
{
    assert(!sqlite3_get_autocommit(s->db)); /* a commit ends a transaction its caller began */
    return store_exec(s, "COMMIT");
}

void store_rollback(struct store *s)
{
    if (!sqlite3_get_autocommit(s->db))
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
}

static int pragma_int(struct store *s, const char *sql, int *value)
{
    sqlite3_stmt *st;
    int rc = store_prepare(s, sql, &st);
    if (rc)
        return rc;
    if (sqlite3_step(st) != SQLITE_ROW) {
        rc = store_sqlite_fail(s, sql);
        sqlite3_finalize(st);
        return rc;
    }
    *value = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return 0;
}

/* Counts the objects in the file, to tell an empty new file from someone else's database. */
static int object_count(struct store *s, int *n)
{
    return pragma_int(s, "SELECT count(*) FROM sqlite_schema", n);
}

/*
 * What opening does with the schema it finds:
 *   OPEN_CURRENT  refuses an older one (-ESTALE: "run `tlsgate db migrate`") and a missing one;
 *   OPEN_CREATE   `tlsgate init`: creates the schema in a new file, and brings an older one up
 *                 after a backup (the same as `db migrate`);
 *   OPEN_ANY      opens what is there (older or current), for `db migrate` to look at first.
 */
enum open_mode { OPEN_CURRENT, OPEN_CREATE, OPEN_ANY };

/*
 * Checks the schema and, when asked (`upgrade`), brings it from its current version to the
 * latest, all in one IMMEDIATE transaction, re-reading the version inside it so two processes
 * migrating at once cannot both apply the same step. An existing older schema is first copied
 * whole to its backup file (store_backup_name) inside that same transaction, so the copy is
 * exactly what the migration started from. *from gets the version found (may be NULL).
 */
static int migrate(struct store *s, enum open_mode mode, bool upgrade, int *from, char *backup,
                   size_t backup_size)
{
    int latest = store_schema_latest();
    int rc = store_begin(s, true);
    if (rc)
        return rc;

    int version = 0, app_id = 0, objects = 0;
    if ((rc = pragma_int(s, "PRAGMA user_version", &version)) ||
        (rc = pragma_int(s, "PRAGMA application_id", &app_id)) || (rc = object_count(s, &objects)))
        goto fail;
    if (from)
        *from = version;

    if (app_id != STORE_APPLICATION_ID && (app_id != 0 || objects > 0)) {
        rc = store_fail(s, -EINVAL, "%s is not a tlsgate database", s->path);
        goto fail;
    }
    if (version > latest) {
        rc = store_fail(s, -EPROTO,
                        "%s was written by a newer tlsgate (schema version %d; this tlsgate "
                        "knows up to %d): upgrade tlsgate, the database was left untouched",
                        s->path, version, latest);
        goto fail;
    }
    if (version == 0 && mode != OPEN_CREATE) {
        rc = store_fail(s, -ENOENT, "%s holds no tlsgate database: run `tlsgate init` first",
                        s->path);
        goto fail;
    }
    if (version < latest && !upgrade) {
        if (mode == OPEN_ANY) {
            store_rollback(s);
            return 0;
        }
        rc = store_fail(s, -ESTALE,
                        "%s has schema version %d, this tlsgate needs %d: run `tlsgate db "
                        "migrate` (it backs the file up first); nothing was changed",
                        s->path, version, latest);
        goto fail;
    }
    if (version == latest) {
        store_rollback(s);
        return 0;
    }

    if (version > 0 && backup) {
        if ((rc = store_backup_name(s, version, backup, backup_size)) ||
            (rc = store__backup_locked(s, backup))) {
            backup[0] = '\0'; /* not ours to remove */
            goto fail;
        }
    }
    for (int i = version; i < latest; i++) {
        char *errmsg = NULL;
        if (sqlite3_exec(s->db, schema_migrations[i].data, NULL, NULL, &errmsg) != SQLITE_OK) {
            rc = store_fail(s, -EIO, "%s: migration %s failed: %s", s->path,
                            schema_migrations[i].name, errmsg ? errmsg : "?");
            sqlite3_free(errmsg);
            goto fail;
        }
    }
    char sql[96];
    snprintf(sql, sizeof(sql), "PRAGMA user_version = %d; PRAGMA application_id = %d", latest,
             STORE_APPLICATION_ID);
    if ((rc = store_exec(s, sql)) || (rc = store_commit(s)))
        goto fail;
    return 0;

fail:
    store_rollback(s);
    if (backup && backup[0]) {
        unlink(backup); /* the migration did not happen: its backup would only mislead */
        backup[0] = '\0';
    }
    return rc;
}

int store_migrate(struct store *s, int *from, char *backup, size_t backup_size)
{
    if (backup && backup_size)
        backup[0] = '\0';
    return migrate(s, OPEN_ANY, true, from, backup, backup_size);
}

int store_schema_version(struct store *s, int *version)
{
    return pragma_int(s, "PRAGMA user_version", version);
}

static int open_mode(const char *path, enum open_mode mode, struct store **out, char *err,
                     size_t errsize)
{
    bool create = mode == OPEN_CREATE;
    *out = NULL;
    struct store *s = calloc(1, sizeof(*s));
    if (!s || !(s->path = strdup(path))) {
        free(s);
        snprintf(err, errsize, "%s: out of memory", path);
        return -ENOMEM;
    }

    int rc;
    struct stat st;
    if (!create && stat(path, &st) != 0) {
        rc = store_fail(s, -ENOENT, "%s: no such database: run `tlsgate init` first", path);
        goto fail;
    }

    /* A new database is the owner's only: the file is made 0600 here (SQLite would make it
     * 0644 less the umask), and SQLite gives its -wal and -shm files the mode of the database
     * file. Reports name every host and what it lacks: an attacker's map of the estate. */
    if (create && stat(path, &st) != 0 && errno == ENOENT) {
        int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd < 0 && errno != EEXIST) {
            rc = store_fail(s, -errno, "%s: cannot create: %s", path, strerror(errno));
            goto fail;
        }
        if (fd >= 0)
            close(fd);
    }

    int flags = SQLITE_OPEN_READWRITE | (create ? SQLITE_OPEN_CREATE : 0) | SQLITE_OPEN_NOMUTEX;
    if (sqlite3_open_v2(path, &s->db, flags, NULL) != SQLITE_OK) {
        rc = s->db ? store_sqlite_fail(s, "open")
                   : store_fail(s, -ENOMEM, "%s: cannot open: out of memory", path);
        goto fail;
    }
    sqlite3_extended_result_codes(s->db, 1);
    sqlite3_busy_timeout(s->db, STORE_BUSY_TIMEOUT_MS);

    /* journal_mode answers with a row; anything but "wal" means the file is not usable as ours
     * (for instance not a database at all). */
    sqlite3_stmt *q;
    if ((rc = store_prepare(s, "PRAGMA journal_mode=WAL", &q))) {
        if (rc == -EINVAL)
            store_fail(s, rc, "%s is not a tlsgate database", path);
        goto fail;
    }
    int step = sqlite3_step(q);
    sqlite3_finalize(q);
    if (step != SQLITE_ROW) {
        rc = store_sqlite_fail(s, "set WAL mode");
        if (rc == -EINVAL)
            store_fail(s, rc, "%s is not a tlsgate database", path);
        goto fail;
    }
    if ((rc = store_exec(s, "PRAGMA foreign_keys=ON; PRAGMA synchronous=NORMAL")))
        goto fail;
    /* init migrates an older schema too, after the same backup as `db migrate`. */
    char backup[STORE_PATH_MAX] = "";
    if ((rc = migrate(s, mode, create, NULL, backup, sizeof(backup))))
        goto fail;

    *out = s;
    return 0;

fail:
    snprintf(err, errsize, "%s", s->msg);
    store_close(s);
    return rc;
}

int store_open(const char *path, bool create, struct store **out, char *err, size_t errsize)
{
    return open_mode(path, create ? OPEN_CREATE : OPEN_CURRENT, out, err, errsize);
}

int store_open_any(const char *path, struct store **out, char *err, size_t errsize)
{
    return open_mode(path, OPEN_ANY, out, err, errsize);
}

void store_close(struct store *s)
{
    if (!s)
        return;
    if (s->db)
        sqlite3_close_v2(s->db);
    free(s->path);
    free(s);
}

int store_meta_get(struct store *s, const char *key, char **value)
{
    sqlite3_stmt *st;
    int rc = store_prepare(s, "SELECT value FROM meta WHERE key = ?", &st);
    if (rc)
        return rc;
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    int step = sqlite3_step(st);
    if (step == SQLITE_ROW) {
        *value = strdup((const char *)sqlite3_column_text(st, 0));
        rc = *value ? 0 : -ENOMEM;
    } else if (step == SQLITE_DONE) {
        rc = -ENOENT;
    } else {
        rc = store_sqlite_fail(s, "read meta");
    }
    sqlite3_finalize(st);
    return rc;
}

int store_meta_set(struct store *s, const char *key, const char *value)
{
    sqlite3_stmt *st;
    int rc = store_prepare(s,
                           "INSERT INTO meta (key, value) VALUES (?, ?) "
                           "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                           &st);
    if (rc)
        return rc;
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, value, -1, SQLITE_STATIC);
    return store_run(s, st, "write meta");
}

int store_audit_append(struct store *s, long long at, const char *user, const char *command,
                       const char *outcome)
{
    sqlite3_stmt *st;
    int rc =
        store_prepare(s, "INSERT INTO audit (at, user, command, outcome) VALUES (?, ?, ?, ?)", &st);
    if (rc)
        return rc;
    sqlite3_bind_int64(st, 1, at);
    sqlite3_bind_text(st, 2, user, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, command, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, outcome, -1, SQLITE_STATIC);
    return store_run(s, st, "write audit row");
}

struct audit_walk {
    int (*fn)(const struct store_audit_row *row, void *arg);
    void *arg;
};

static int audit_row(sqlite3_stmt *st, void *arg)
{
    const struct audit_walk *w = arg;
    struct store_audit_row row = {
        .id = sqlite3_column_int64(st, 0),
        .at = sqlite3_column_int64(st, 1),
        .user = (const char *)sqlite3_column_text(st, 2),
        .command = (const char *)sqlite3_column_text(st, 3),
        .outcome = (const char *)sqlite3_column_text(st, 4),
    };
    return w->fn(&row, w->arg);
}

int store_audit_each(struct store *s, int (*fn)(const struct store_audit_row *row, void *arg),
                     void *arg)
{
    sqlite3_stmt *st;
    int rc = store_prepare(s, "SELECT id, at, user, command, outcome FROM audit ORDER BY id", &st);
    if (rc)
        return rc;
    struct audit_walk w = {fn, arg};
    return store_each(s, st, "read audit log", audit_row, &w);
}
