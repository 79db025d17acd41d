/*
 * evidence: reading the handshakes servers logged (issue 18, "Traffic evidence"), streaming.
 *
 * Two sources, told apart by their first line:
 *   - IIS W3C logs: `#Fields:` names the columns (any order; a later `#Fields:` line re-maps
 *     them); date, time, c-ip and crypt-protocol are needed, the server is --server, else
 *     s-computername, else s-ip. crypt-protocol is SecPkgContext_ConnectionInfo.dwProtocol in
 *     hexadecimal as IIS writes it (40 = TLS 1.0, 100 = TLS 1.1, 400 = TLS 1.2; 0x40 accepted;
 *     a value that only makes sense in decimal, 64 / 256 / 1024, too); `-` is plain HTTP.
 *   - SCHANNEL event exports, `wevtutil qe System /q:"*[System[(EventID=36880)]]" /f:xml`:
 *     one <Event> after another; EventID 36880 with Type server gives the server (<Computer>),
 *     the time and the protocol. The event carries no client address: the client is "unknown".
 * A gzip file (magic 1f 8b) is read through `gzip -dc` as a child process (zlib is not a
 * dependency of tlsgate; gzip is in every Debian base system).
 *
 * Hostile or broken lines (bad field count, bad time, address or protocol, an over-long line or
 * event) are skipped and counted, with the first line numbers kept. Memory does not grow with
 * the file: one line (or one event) at a time, a bounded aggregation table (evidence.c).
 */
#ifndef TLSGATE_EVIDENCE_H
#define TLSGATE_EVIDENCE_H

#include <stdbool.h>
#include <stddef.h>

#include "wire.h"

/* Longest line (IIS) or event (XML) read; longer ones are skipped as hostile. */
#define EVIDENCE_LINE_MAX (64 * 1024)
#define EVIDENCE_BAD_KEPT 5

/* One handshake (or several identical ones of the same day, aggregated). */
struct evidence_record {
    const char *server;
    const char *client;
    enum wire_proto proto;
    long long first, last; /* same UTC day */
    long long count;
};
typedef int (*evidence_fn)(const struct evidence_record *r, void *arg);

struct evidence_stats {
    const char *format;          /* "iis", "schannel" */
    long lines;                  /* physical lines read */
    long handshakes;             /* records produced (before aggregation) */
    long plain;                  /* IIS requests without TLS (crypt-protocol "-") */
    long ignored;                /* other events, client-side handshakes */
    long skipped;                /* hostile or broken lines / events */
    long bad[EVIDENCE_BAD_KEPT]; /* their first line numbers */
    char why[160];               /* why the first one was skipped */
};

/*
 * Reads `path` and calls fn for aggregated records (per server, client, protocol and day); the
 * last ones when the file ends. `server` (may be NULL) overrides the server of every line.
 * Returns 0; -ENOENT / -EIO / -EINVAL (no known format, a broken gzip stream) with the message
 * naming the file in err; or fn's non-zero value.
 */
int evidence_read_file(const char *path, const char *server, evidence_fn fn, void *arg,
                       struct evidence_stats *st, char *err, size_t errsize);

/* The protocol of an IIS crypt-protocol value; -EINVAL when unknown. */
int evidence_iis_protocol(const char *text, enum wire_proto *p);

#endif
