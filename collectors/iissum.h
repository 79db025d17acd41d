/*
 * iissum: the collector's summary of its own IIS logs (issue 18, "Traffic evidence"): which
 * client addresses spoke which TLS protocol to which port of this server, since when, served at
 * GET /v1/evidence next to the report and pulled by the orchestrator into its evidence store.
 *
 * The folder is IIS's log root (default on Windows %SystemDrive%\inetpub\logs\LogFiles); its
 * W3C files are W3SVC<site id>\u_ex<date>.log (names matched case-insensitively). Plain files
 * only: IIS writes them uncompressed (gzip is for the orchestrator's `evidence import`).
 *
 * Incremental: each file is remembered with the byte offset after its last complete line and
 * its #Fields: map, so a scan reads only what IIS appended since the last one; a file that got
 * shorter (replaced) is read again from the start; a line IIS has not finished (no line end
 * yet) waits for the next scan. Files last written before the window are not opened.
 *
 * Bounded: rows are per (client address, server port, protocol, UTC day) with first and last
 * seen and a count, at most max_rows of them in a table allocated once; a handshake that would
 * need a new row when the table is full is dropped and counted and the summary says truncated.
 * Rows whose last handshake is older than the window go at each scan. So memory does not grow
 * with the size of the logs, only with max_rows, and one line is read at a time (64 KiB cap).
 *
 * Not thread-safe: one scan at a time, and no other call during a scan (the collector runs the
 * scan and the JSON on libuv's thread pool, one job at a time).
 */
#ifndef TLSGATE_IISSUM_H
#define TLSGATE_IISSUM_H

#include <stdbool.h>
#include <stddef.h>

#define IISSUM_MAX_ROWS_DEFAULT 10000
#define IISSUM_MAX_ROWS_LIMIT 40000 /* the JSON stays under IISSUM_JSON_MAX */
#define IISSUM_WINDOW_DAYS_DEFAULT 30
#define IISSUM_WINDOW_DAYS_LIMIT 400
#define IISSUM_FILES_MAX 1024       /* log files remembered at once */
#define IISSUM_LINE_MAX (64 * 1024) /* a longer line is refused */
#define IISSUM_JSON_MAX (8u << 20)  /* what the orchestrator accepts */
#define IISSUM_SCHEMA "tlsgate.evidence/1"

struct iissum_options {
    const char *dir;    /* IIS's log root; copied */
    size_t max_rows;    /* 0: default */
    int window_days;    /* 0: default */
    volatile int *stop; /* when set and non-zero, a scan ends early (the collector stopping) */
};

struct iissum_stats {
    size_t files;      /* files remembered (read at least once) */
    size_t rows;       /* rows kept */
    long long lines;   /* lines read, all files, since start */
    long long refused; /* hostile or broken lines */
    long long plain;   /* requests without TLS */
    long long dropped; /* handshakes not counted: the table was full */
    long long since;   /* epoch seconds: what the summary covers starts here; 0 = nothing yet */
    char last_refused[200]; /* "FILE:LINE: why" of the last refused line, "" when none */
};

struct iissum;

/* 0 and *out, -EINVAL (no dir, max_rows or window_days out of range), -ENOMEM. */
int iissum_new(const struct iissum_options *o, struct iissum **out);
void iissum_free(struct iissum *s);

/*
 * Reads what is new under the folder (at `now`, epoch seconds). Returns 0, or -ENOENT /
 * -EACCES / -EIO / -ENOTDIR with "FOLDER: why" (or "FILE: why" for a file that could not be
 * read; the other files are still read) in err: the summary keeps what it had and is still
 * served.
 */
int iissum_scan(struct iissum *s, long long now, char *err, size_t errsize);

void iissum_get_stats(const struct iissum *s, struct iissum_stats *st);

/*
 * The summary as JSON for GET /v1/evidence:
 *   {"schema":"tlsgate.evidence/1", "host":HOST, "generated_at":RFC3339, "since":RFC3339|null,
 *    "window_days":D, "max_rows":N, "files":[{"name":"W3SVC1/u_ex261201.log","offset":N}],
 *    "lines":N, "refused":N, "plain":N, "dropped":N, "truncated":bool,
 *    "last_refused":"FILE:LINE: why"|null,
 *    "entries":[{"client":ADDR, "port":P (0: the log has no s-port), "protocol":"tls1.0",
 *                "first_seen":RFC3339, "last_seen":RFC3339, "count":N}, ...]}
 * malloc'd (*len bytes, NUL-terminated) or NULL when out of memory.
 */
char *iissum_json(const struct iissum *s, const char *host, long long now, size_t *len);

#endif
