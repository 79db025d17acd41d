/*
 * backup.c — copies of the database file made with SQLite's online backup API: `tlsgate db
 * backup FILE` while the daemon writes, and the backup `db migrate` (and `init` on an older
 * file) takes before it changes the schema.
 *
 * A copy is written to a temporary name in the destination's folder (mkstemp: owner-only), synced
 * and then renamed, so FILE is either absent or a whole database, never half a copy. The online
 * copy goes STORE_BACKUP_STEP_PAGES pages at a time and lets go of the read lock between steps;
 * when another connection writes in between, SQLite restarts the copy from the first page, so a
 * copy that keeps restarting (a busy daemon, a big file) finishes in one last step instead, which
 * in WAL mode holds only a read snapshot and never blocks the daemon's writes.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "store_int.h"
#include "utc.h"

/* Pause between two steps, so writers get the file in between. */
#define BACKUP_STEP_PAUSE_MS 5
/* Restarts (another connection wrote) before the rest is copied in one step. */
#define BACKUP_RESTARTS_MAX 3

int store_backup_name(struct store *s, int version, char *out, size_t size)
{
    time_t t = (time_t)utc_now();
    struct tm tm;
    char when[32];
    if (!gmtime_r(&t, &tm) || !strftime(when, sizeof(when), "%Y%m%dT%H%M%SZ", &tm))
        snprintf(when, sizeof(when), "%lld", (long long)t);
    int n = snprintf(out, size, "%s.bak-%d-%s", s->path, version, when);
    if (n < 0 || (size_t)n >= size)
        return store_fail(s, -ENAMETOOLONG, "%s: path too long for a backup name", s->path);
    return 0;
}

/* The folder of `path` (with its slash) and its last component. */
static void split_path(const char *path, size_t *dir_len, const char **base)
{
    const char *slash = strrchr(path, '/');
    *dir_len = slash ? (size_t)(slash - path) + 1 : 0;
    *base = slash ? slash + 1 : path;
}

static void sync_dir(const char *path)
{
    size_t dir_len;
    const char *base;
    split_path(path, &dir_len, &base);
    char dir[STORE_PATH_MAX];
    snprintf(dir, sizeof(dir), "%.*s", (int)(dir_len ? dir_len : 1), dir_len ? path : ".");
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

/* Runs the backup from `src` into the open (empty) `out`; 0 or the store's code. */
static int copy_pages(struct store *s, sqlite3 *src, sqlite3 *out, const char *dest, int pages)
{
    sqlite3_backup *b = sqlite3_backup_init(out, "main", src, "main");
    if (!b)
        return store_fail(s, -EIO, "%s: cannot start the backup: %s", dest, sqlite3_errmsg(out));
    int rc, restarts = 0, busy_ms = 0, left = -1;
    while ((rc = sqlite3_backup_step(b, pages)) != SQLITE_DONE) {
        if (rc == SQLITE_OK) {
            int now_left = sqlite3_backup_remaining(b);
            if (left >= 0 && now_left > left && ++restarts >= BACKUP_RESTARTS_MAX)
                pages = -1;
            left = now_left;
            sqlite3_sleep(BACKUP_STEP_PAUSE_MS);
        } else if ((rc & 0xff) == SQLITE_BUSY || (rc & 0xff) == SQLITE_LOCKED) {
            if ((busy_ms += BACKUP_STEP_PAUSE_MS) > STORE_BUSY_TIMEOUT_MS)
                break;
            sqlite3_sleep(BACKUP_STEP_PAUSE_MS);
        } else {
            break;
        }
    }
    sqlite3_backup_finish(b);
    if (rc != SQLITE_DONE)
        return store_fail(s, (rc & 0xff) == SQLITE_BUSY ? -EBUSY : -EIO,
                          "%s: backup of %s failed: %s", dest, s->path, sqlite3_errstr(rc));
    return 0;
}

/* The whole copy: temporary file, pages, sync, rename (or link, to refuse an existing FILE). */
static int backup_copy(struct store *s, sqlite3 *src, const char *dest, bool force, int pages)
{
    struct stat st;
    if (!force && lstat(dest, &st) == 0)
        return store_fail(s, -EEXIST, "%s: already exists (use --force to replace it)", dest);
    size_t dir_len;
    const char *base;
    split_path(dest, &dir_len, &base);
    if (!*base)
        return store_fail(s, -EINVAL, "%s: not a file name", dest);
    char tmp[STORE_PATH_MAX + 32];
    int n = snprintf(tmp, sizeof(tmp), "%.*s.%s.tmp-XXXXXX", (int)dir_len, dest, base);
    if (n < 0 || (size_t)n >= sizeof(tmp))
        return store_fail(s, -ENAMETOOLONG, "%s: path too long", dest);
    int fd = mkstemp(tmp); /* mode 0600: a copy of the estate is as private as the original */
    if (fd < 0)
        return store_fail(s, -errno, "%s: cannot create a file in its folder: %s", dest,
                          strerror(errno));

    sqlite3 *out = NULL;
    int rc;
    if (sqlite3_open_v2(tmp, &out, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK) {
        rc = store_fail(s, -EIO, "%s: cannot open the copy: %s", dest,
                        out ? sqlite3_errmsg(out) : "out of memory");
        goto fail;
    }
    if ((rc = copy_pages(s, src, out, dest, pages)))
        goto fail;
    if (sqlite3_close(out) != SQLITE_OK) {
        rc = store_fail(s, -EIO, "%s: cannot close the copy: %s", dest, sqlite3_errmsg(out));
        goto fail;
    }
    out = NULL;
    if (fsync(fd) != 0) {
        rc = store_fail(s, -errno, "%s: cannot sync the copy: %s", dest, strerror(errno));
        goto fail;
    }
    close(fd);
    fd = -1;
    if (force) {
        if (rename(tmp, dest) != 0) {
            rc = store_fail(s, -errno, "%s: cannot rename the copy into place: %s", dest,
                            strerror(errno));
            goto fail;
        }
    } else if (link(tmp, dest) == 0) { /* link fails on an existing name: no overwrite race */
        unlink(tmp);
    } else if (errno == EEXIST) {
        rc = store_fail(s, -EEXIST, "%s: already exists (use --force to replace it)", dest);
        goto fail;
    } else if (rename(tmp, dest) != 0) { /* a file system without hard links */
        rc = store_fail(s, -errno, "%s: cannot rename the copy into place: %s", dest,
                        strerror(errno));
        goto fail;
    }
    sync_dir(dest);
    return 0;

fail:
    if (out)
        sqlite3_close(out);
    if (fd >= 0)
        close(fd);
    unlink(tmp);
    char journal[sizeof(tmp) + 16];
    snprintf(journal, sizeof(journal), "%s-journal", tmp);
    unlink(journal);
    return rc;
}

int store_backup(struct store *s, const char *dest, bool force)
{
    return backup_copy(s, s->db, dest, force, STORE_BACKUP_STEP_PAGES);
}

int store__backup_locked(struct store *s, const char *dest)
{
    /* The caller holds the write lock on s->db, and SQLite will not copy from a connection in
     * a write transaction; a second, read-only connection sees the last commit (WAL), which is
     * exactly what the caller is about to change. */
    sqlite3 *src = NULL;
    if (sqlite3_open_v2(s->path, &src, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
        int rc = store_fail(s, -EIO, "%s: cannot open for the backup: %s", s->path,
                            src ? sqlite3_errmsg(src) : "out of memory");
        sqlite3_close(src);
        return rc;
    }
    sqlite3_busy_timeout(src, STORE_BUSY_TIMEOUT_MS);
    int rc = backup_copy(s, src, dest, false, -1);
    sqlite3_close(src);
    return rc;
}
