/*
 * logfile: an append-only text log with a size cap and numbered rotation, the file half of the
 * collector's service logging (winlog.c) kept free of Windows calls so that its rotation can be
 * tested on every platform.
 *
 * A line that would take the file over `cap` bytes first rotates: PATH.KEEP is removed,
 * PATH.N becomes PATH.N+1, PATH becomes PATH.1, and a new PATH is started. So at most KEEP + 1
 * files of at most `cap` bytes each exist (a single line longer than `cap` is the one exception:
 * it is written alone into a fresh file). When a rename fails (another process holds the file
 * open without delete sharing, on Windows), PATH is truncated instead, so the cap holds whatever
 * happens; the first line of the new file says so.
 *
 * Not thread-safe: the caller serialises writes (winlog.c holds a lock).
 */
#ifndef TLSGATE_LOGFILE_H
#define TLSGATE_LOGFILE_H

#include <stddef.h>

struct logfile;

/* Caps: a path is at most this long; a line is cut to this many bytes (plus the line end). */
#define LOGFILE_PATH_MAX 1024
#define LOGFILE_LINE_MAX 4096

/* Opens (appending) or creates `path`. cap >= 1024 bytes, 1 <= keep <= 9. 0 or -errno. */
int logfile_open(const char *path, size_t cap, unsigned keep, struct logfile **out);

/* Appends `line` (no line end; one is added: "\r\n" on Windows, "\n" elsewhere) and flushes.
 * Rotates first when needed. 0 or -errno (the line is lost, the log stays usable). */
int logfile_write(struct logfile *lf, const char *line);

/* Bytes in the current file. */
size_t logfile_size(const struct logfile *lf);

/* How many times the file was truncated because a rotation could not rename it. */
unsigned logfile_truncations(const struct logfile *lf);

void logfile_close(struct logfile *lf);

#endif
