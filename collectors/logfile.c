/*
 * logfile.c — a capped, rotated text log (see logfile.h). Plain C stdio so the same rotation
 * runs, and is tested, on Linux and Windows alike.
 */
#include "logfile.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef _WIN32
#define LOGFILE_EOL "\r\n"
#else
#define LOGFILE_EOL "\n"
#endif

struct logfile {
    char path[LOGFILE_PATH_MAX];
    size_t cap;
    unsigned keep;
    FILE *f;
    size_t size;
    unsigned truncations;
};

static int open_append(struct logfile *lf)
{
    lf->f = fopen(lf->path, "ab");
    if (!lf->f)
        return -errno;
    if (fseek(lf->f, 0, SEEK_END) != 0) {
        int e = errno;
        fclose(lf->f);
        lf->f = NULL;
        return -e;
    }
    long at = ftell(lf->f);
    lf->size = at > 0 ? (size_t)at : 0;
    return 0;
}

int logfile_open(const char *path, size_t cap, unsigned keep, struct logfile **out)
{
    *out = NULL;
    if (!path || !*path || strlen(path) + 3 > LOGFILE_PATH_MAX || cap < 1024 || keep < 1 ||
        keep > 9)
        return -EINVAL;
    struct logfile *lf = calloc(1, sizeof(*lf));
    if (!lf)
        return -ENOMEM;
    snprintf(lf->path, sizeof(lf->path), "%s", path);
    lf->cap = cap;
    lf->keep = keep;
    int rc = open_append(lf);
    if (rc < 0) {
        free(lf);
        return rc;
    }
    *out = lf;
    return 0;
}

/* PATH.n into buf (n == 0: PATH itself). */
static void numbered(const struct logfile *lf, unsigned n, char *buf, size_t size)
{
    if (n == 0)
        snprintf(buf, size, "%s", lf->path);
    else
        snprintf(buf, size, "%s.%c", lf->path, (char)('0' + n)); /* keep <= 9 */
}

/* Shifts PATH.N to PATH.N+1 and PATH to PATH.1, dropping PATH.KEEP; falls back to truncating
 * PATH when a rename fails. Leaves lf->f open on the new, empty file, or NULL on -errno. */
static int rotate(struct logfile *lf)
{
    char from[LOGFILE_PATH_MAX + 4], to[LOGFILE_PATH_MAX + 4];
    fclose(lf->f);
    lf->f = NULL;
    bool renamed = true;
    numbered(lf, lf->keep, to, sizeof(to));
    if (remove(to) != 0 && errno != ENOENT)
        renamed = false;
    for (unsigned n = lf->keep; renamed && n > 0; n--) {
        numbered(lf, n - 1, from, sizeof(from));
        numbered(lf, n, to, sizeof(to));
        if (rename(from, to) != 0 && errno != ENOENT)
            renamed = false;
    }
    if (!renamed) {
        /* The cap wins over the history: start PATH again from empty. */
        lf->f = fopen(lf->path, "wb");
        if (!lf->f)
            return -errno;
        lf->size = 0;
        lf->truncations++;
        int n = fprintf(lf->f, "(log truncated: could not rotate %s)" LOGFILE_EOL, lf->path);
        if (n > 0)
            lf->size = (size_t)n;
        return 0;
    }
    return open_append(lf);
}

int logfile_write(struct logfile *lf, const char *line)
{
    size_t len = strnlen(line, LOGFILE_LINE_MAX);
    size_t need = len + strlen(LOGFILE_EOL);
    if (!lf->f) {
        /* A previous rotation failed to reopen: try again now. */
        int rc = open_append(lf);
        if (rc < 0)
            return rc;
    }
    if (lf->size > 0 && lf->size + need > lf->cap) {
        int rc = rotate(lf);
        if (rc < 0)
            return rc;
    }
    if (fwrite(line, 1, len, lf->f) != len || fputs(LOGFILE_EOL, lf->f) == EOF ||
        fflush(lf->f) != 0) {
        int e = errno ? errno : EIO;
        /* Re-read the size: a partial write still counts against the cap. */
        long at = ftell(lf->f);
        if (at >= 0)
            lf->size = (size_t)at;
        return -e;
    }
    lf->size += need;
    return 0;
}

size_t logfile_size(const struct logfile *lf) { return lf->size; }

unsigned logfile_truncations(const struct logfile *lf) { return lf->truncations; }

void logfile_close(struct logfile *lf)
{
    if (!lf)
        return;
    if (lf->f)
        fclose(lf->f);
    free(lf);
}
