/*
 * store: the one SQLite database file that holds inventory, reports, verdicts, phases, waivers
 * and the audit log (schema/NNN_*.sql). One `struct store` per process, owned by whoever opened
 * it (the CLI for a command, the daemon for its lifetime).
 *
 * Opening sets WAL, foreign_keys=ON and a busy timeout and checks the schema version. Migrations
 * are explicit: only `tlsgate init` (create) and `tlsgate db migrate` (store_migrate) run them,
 * after an online backup of the file (backup.c); every other opener refuses an older schema
 * (-ESTALE, message saying to run `tlsgate db migrate`). Migrations run in order inside one
 * transaction together with the `PRAGMA user_version` bump, so a half-applied migration cannot
 * exist. A database written by a newer tlsgate is refused (-EPROTO).
 *
 * Functions return 0 or a negative errno-style code and leave a message on the store
 * (store_errmsg), in the manner of sqlite3_errmsg.
 *
 * HOW ERRORS TRAVEL (the rule of every layer, read this first):
 *   - store/, domain/, pull/: a function returns 0 or -errno (or its module's enum) and leaves
 *     the message naming the input at fault on the store (store_fail, store_sqlite_fail). It
 *     never prints. A caller that adds context writes a new message with store_fail.
 *   - Work that has no store yet (store_open, config_load, tlsctx_load, poll_new, report_parse)
 *     or runs off it (the importer's message) hands the message out in a caller's buffer
 *     (char *err, size_t errsize) of STORE_ERROR_SIZE bytes.
 *   - cli/: the command prints the message once, with cli_error(), and maps the code to an
 *     EXIT_* code; nothing below it prints (the pull engine's log lines are its output, poll.h).
 * One size for every message buffer: STORE_ERROR_SIZE.
 */
#ifndef TLSGATE_STORE_H
#define TLSGATE_STORE_H

#include <sqlite3.h>
#include <stdbool.h>
#include <stddef.h>

struct store;

/* Room for one error message, on the store and in every (err, errsize) buffer that carries one
 * out of a module: the one size, so a message is never cut differently on its way up. */
#define STORE_ERROR_SIZE 1024

/* Busy timeout: how long a writer waits for another (daemon vs CLI) before giving up. */
#define STORE_BUSY_TIMEOUT_MS 30000

/* Longest database or backup path handled (a backup name is the database's plus a suffix). */
#define STORE_PATH_MAX 4096

/*
 * Opens `path`. With `create` (`tlsgate init`), a missing file is created with the whole schema
 * and an older schema is migrated after a backup (as store_migrate); without, the file must
 * exist and hold a tlsgate database at this binary's schema version. Returns 0 and *out, or:
 *   -ENOENT  no such database (message says to run `tlsgate init`)
 *   -ESTALE  an older schema and not `create`: refused untouched, message says to run
 *            `tlsgate db migrate`
 *   -EPROTO  written by a newer tlsgate; refused untouched
 *   -EINVAL  not a tlsgate database
 *   -EIO     any other SQLite or system failure
 * On failure *out is NULL and the message is copied to err.
 */
int store_open(const char *path, bool create, struct store **out, char *err, size_t errsize);

void store_close(struct store *s);

/* Opens an existing tlsgate database at this or an older schema version, without migrating
 * (for `tlsgate db migrate` / `db backup`). Same codes as store_open but never -ESTALE. */
int store_open_any(const char *path, struct store **out, char *err, size_t errsize);

/* The schema version the file holds (PRAGMA user_version). */
int store_schema_version(struct store *s, int *version);

/*
 * Brings an older schema to the latest: copies the file first to its backup (store_backup_name,
 * owner-only) and migrates, both under one write lock, so the backup is exactly the database
 * the migration started from. *from gets the version found; `backup` (when not NULL) the
 * backup's path, or "" when nothing had to change. A failed migration leaves the file as it was
 * and removes its backup. Returns 0 or -ENOENT / -EPROTO / -EINVAL / -EEXIST / -EIO.
 */
int store_migrate(struct store *s, int *from, char *backup, size_t backup_size);

/* "DB.bak-VERSION-YYYYMMDDTHHMMSSZ" next to the database (utc_now()). 0, or -ENAMETOOLONG. */
int store_backup_name(struct store *s, int version, char *out, size_t size);

/*
 * `tlsgate db backup FILE`: a consistent copy of the open database while other processes (the
 * daemon) keep writing, with SQLite's online backup API in steps of STORE_BACKUP_STEP_PAGES,
 * the lock released between steps. Written owner-only to a temporary name in FILE's folder,
 * synced, then renamed to FILE. An existing FILE is refused (-EEXIST) unless `force`. Returns 0
 * or a negative code (message on the store naming FILE).
 */
#define STORE_BACKUP_STEP_PAGES 256
int store_backup(struct store *s, const char *dest, bool force);

sqlite3 *store_db(struct store *s);
const char *store_path(const struct store *s);

/* The message of the last failure on this store. */
const char *store_errmsg(const struct store *s);

/* Sets the store's message (for module-level failures); returns `code` for `return` chaining. */
int store_fail(struct store *s, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Records SQLite's current error for `what` and returns the errno-style code for it
 * (-EBUSY for SQLITE_BUSY/LOCKED, -EIO otherwise). */
int store_sqlite_fail(struct store *s, const char *what);

/* Runs statements without results (no parameters: never for data from outside). */
int store_exec(struct store *s, const char *sql);

/* Prepares `sql`; on failure records the error and returns it. */
int store_prepare(struct store *s, const char *sql, sqlite3_stmt **stmt);

/* Binds `v` to parameter i, or NULL when v is 0 (an optional time: "no end", "never"). For an
 * optional text, sqlite3_bind_text with a NULL pointer already binds NULL. */
void store_bind_opt_int64(sqlite3_stmt *st, int i, long long v);

/*
 * The life of a prepared statement, written once: store_each steps `st` to its end and calls
 * fn(st, arg) on every row; a non-zero return from fn stops the walk and is returned. store_run
 * steps a statement that returns no row (INSERT / UPDATE / DELETE) once. Both finalize `st`
 * whatever happens (NULL is accepted: nothing to do) and turn a failed step into the store's
 * code with the message "PATH: what: SQLite's message". Returns 0, fn's value, or that code.
 */
typedef int (*store_row_fn)(sqlite3_stmt *st, void *arg);
int store_each(struct store *s, sqlite3_stmt *st, const char *what, store_row_fn fn, void *arg);
int store_run(struct store *s, sqlite3_stmt *st, const char *what);
/* Steps `st` once for its one integer (a count(*), a max(...)): *out gets the first column of the
 * first row, 0 when there is no row. Finalizes `st` like store_run; returns 0 or the code. */
int store_one_int(struct store *s, sqlite3_stmt *st, const char *what, long long *out);
/* store_each for a statement the caller runs again (bound anew each time): the same walk, but
 * `st` is reset at the end (its bindings stay) instead of finalized; the caller finalizes it. */
int store_each_keep(struct store *s, sqlite3_stmt *st, const char *what, store_row_fn fn,
                    void *arg);

/* Transactions. `immediate` takes the write lock at once (for check-then-change). */
int store_begin(struct store *s, bool immediate);
int store_commit(struct store *s);
void store_rollback(struct store *s); /* safe to call when no transaction is open */

/* The schema version this binary writes (the number of migrations it carries). */
int store_schema_latest(void);

/* Reads/writes a `meta` row. store_meta_get returns 0 and a malloc'd copy, -ENOENT, or -EIO. */
int store_meta_get(struct store *s, const char *key, char **value);
int store_meta_set(struct store *s, const char *key, const char *value);

/* Appends one `audit` row (the table is append-only: schema triggers refuse the rest), in the
 * current transaction or its own. Returns 0 or a negative code (message on the store). */
int store_audit_append(struct store *s, long long at, const char *user, const char *command,
                       const char *outcome);

/* Every audit row in the order written, streaming; fn's non-zero return stops the walk. */
struct store_audit_row {
    long long id, at;
    const char *user, *command, *outcome;
};
int store_audit_each(struct store *s, int (*fn)(const struct store_audit_row *row, void *arg),
                     void *arg);

#endif
