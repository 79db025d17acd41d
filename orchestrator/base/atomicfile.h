/*
 * atomicfile: a file that appears whole or not at all — written to ".NAME.tmp-XXXXXX" in the
 * same folder (mkstemp), then fsync'ed and renamed over NAME, and the folder fsync'ed, so a
 * reader (a browser, a dashboard) sees the old file or the new one, never half of one. On any
 * failure the temp file is removed and NAME is untouched. The status page (report_html.h) is
 * written this way by `tlsgate report html` and by the daemon after each round.
 *
 * Functions return 0 or a negative errno, with a message naming the file in (err, errsize).
 */
#ifndef TLSGATE_ATOMICFILE_H
#define TLSGATE_ATOMICFILE_H

#include <limits.h>
#include <stddef.h>
#include <stdio.h>

struct atomicfile {
    const char *path;   /* borrowed: the final name */
    char tmp[PATH_MAX]; /* the temp file's name */
    FILE *f;            /* buffered writes go here */
};

/* Creates the temp file next to `path` (mode 0666 & ~umask). */
int atomicfile_open(struct atomicfile *a, const char *path, char *err, size_t errsize);

/* Flushes, fsyncs, closes and renames over the final name. On failure the temp file is gone. */
int atomicfile_commit(struct atomicfile *a, char *err, size_t errsize);

/* Closes and removes the temp file (safe after a failed commit, or twice). */
void atomicfile_discard(struct atomicfile *a);

#endif
