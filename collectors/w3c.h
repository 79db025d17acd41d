/*
 * w3c: one line of an IIS W3C log at a time (issue 18, "Traffic evidence"), the one reader both
 * sides use: `tlsgate evidence import` (orchestrator/wire/evidence.c, files given by the admin)
 * and the collector's own IIS log folder (iissum.c, served at /v1/evidence).
 *
 * `#Fields:` names the columns (any order; a later `#Fields:` line re-maps them); date, time,
 * c-ip and crypt-protocol are needed; s-port, s-computername and s-ip are taken when present.
 * crypt-protocol is SecPkgContext_ConnectionInfo.dwProtocol in hexadecimal as IIS writes it
 * (40 = TLS 1.0, 100 = TLS 1.1, 400 = TLS 1.2; 0x40 accepted; a value that only makes sense in
 * decimal, 64 / 256 / 1024, too); `-` is plain HTTP.
 *
 * Plain C over the caller's buffer (the line is cut in place): no I/O, no allocation, no
 * SQLite or orchestrator header, so the Windows collector compiles it as is. A hostile line is
 * W3C_BAD with why, never a crash: every field is checked (count, date and time, address,
 * protocol, port).
 */
#ifndef TLSGATE_W3C_H
#define TLSGATE_W3C_H

#include <stdbool.h>
#include <stddef.h>

/* The protocols in the order of the orchestrator's enum wire_proto (wire/evidence.c asserts
 * it), with its names. */
enum w3c_proto { W3C_SSL2, W3C_SSL3, W3C_TLS10, W3C_TLS11, W3C_TLS12, W3C_TLS13 };
#define W3C_PROTO_COUNT 6
const char *w3c_proto_name(enum w3c_proto p); /* "ssl2" ... "tls1.3" */

/* A line has at most this many fields; a client address at most this many bytes with its NUL. */
#define W3C_MAX_FIELDS 64
#define W3C_ADDRESS_MAX 64

/* Where the columns are (-1: absent); nfields 0 until the first #Fields: line. */
struct w3c_map {
    int date, time, cip, proto, computer, sip, sport;
    int nfields;
};
void w3c_map_init(struct w3c_map *m);

enum w3c_kind {
    W3C_ENTRY,   /* a request over TLS: the entry is filled */
    W3C_COMMENT, /* a # line (a #Fields: line has re-mapped the columns) */
    W3C_EMPTY,   /* nothing but white space */
    W3C_PLAIN,   /* a request without TLS (crypt-protocol "-") */
    W3C_BAD,     /* hostile or broken: why says what */
};

struct w3c_entry {
    const char *client; /* c-ip, a valid IPv4 / IPv6 address (points into the line) */
    const char *server; /* s-computername, else s-ip, else NULL (points into the line) */
    int port;           /* s-port, or -1 when the log has none */
    enum w3c_proto proto;
    long long at; /* epoch seconds, UTC (IIS logs in UTC) */
    char why[160];
};

/*
 * One line without its line end (or with it; \r and \n are white space), cut in place. `m` is
 * the file's column map, updated by #Fields: lines. need_server: a line whose log has neither
 * s-computername nor s-ip is W3C_BAD (the import's case without --server).
 */
enum w3c_kind w3c_line(struct w3c_map *m, char *line, bool need_server, struct w3c_entry *e);

/* The protocol of a crypt-protocol value; -EINVAL when unknown. */
int w3c_protocol(const char *text, enum w3c_proto *p);

/* "YYYY-MM-DD" and "HH:MM:SS" (a fraction after the seconds ignored) as UTC epoch seconds;
 * -EINVAL when not a real date and time. */
int w3c_time(const char *date, const char *time, long long *at);

#endif
