/*
 * probe: what a server's TLS port really accepts (issue 18, "Wire probe"). For each (address,
 * port, protocol) it opens a TCP connection and tries one handshake capped at that protocol
 * (OpenSSL, the library libcurl is built on, at security level 0 with the old ciphers for the
 * old protocols), and says accepted / refused / untested with the error. SQL Server (port kind
 * tds) first exchanges TDS PRELOGIN packets and then carries the handshake inside TDS packets,
 * so port 1433 is probed like any other (tds.c).
 *
 * Self-test: before any verdict the prober proves, against its own TLS server on 127.0.0.1
 * (in-process, security level 0), that it can still speak each protocol. A protocol it cannot
 * speak is `untested` ("could not test") on every target, never `refused`: a scanner whose own
 * TLS library refused must not report a server as safe. A handshake that cannot be judged (no
 * TCP connection, a timeout, no TDS answer) is `untested` too.
 *
 * No store here: the caller stores the outcomes (domain/wire.h). Functions return 0 or -errno.
 * The self-test server writes with OpenSSL's socket BIO: the process must ignore SIGPIPE.
 */
#ifndef TLSGATE_PROBE_H
#define TLSGATE_PROBE_H

#include <stdbool.h>
#include <stddef.h>

#include "wire.h"

#define PROBE_ERROR_SIZE 256

/* What the self-test found, per protocol (SSL 2.0 is never offered: always untested). */
struct probe_selftest {
    bool can[WIRE_PROTO_COUNT];
    char why[WIRE_PROTO_COUNT][PROBE_ERROR_SIZE]; /* when it cannot */
};

/*
 * Runs the self-test. `deny` is a bit mask (1 << enum wire_proto) of protocols the built-in
 * server refuses on purpose — the tests' way of proving that a failed self-test makes the probe
 * say "untested" (tlsgate probe reads it from $TLSGATE_PROBE_SELFTEST_DENY). Returns 0, or
 * -errno with a message in err when the server itself could not be set up.
 */
int probe_selftest(struct probe_selftest *st, unsigned deny, char *err, size_t errsize);

/* One handshake to try. The caller fills the first part; probe_run fills the outcome. */
struct probe_job {
    const char *address; /* host name or IP literal */
    const char *sni;     /* server name to send, or NULL */
    struct wire_port port;
    enum wire_proto proto;
    /* outcome */
    enum wire_result result;
    char error[PROBE_ERROR_SIZE];
    long long at; /* utc_now() when it was tried */
};

struct probe_opts {
    long connect_timeout_ms;
    long timeout_ms; /* the whole attempt: connect, PRELOGIN, handshake */
    int concurrency; /* handshakes in flight at most */
};

/* Tries every job, at most o->concurrency at once (threads). Jobs whose protocol the self-test
 * could not speak are not tried: untested, with the self-test's reason. */
int probe_run(struct probe_job *jobs, size_t n, const struct probe_selftest *st,
              const struct probe_opts *o);

/* "tls1.0,tls1.1" -> deny mask; -EINVAL naming the word in bad. */
int probe_parse_protocols(const char *list, unsigned *mask, char *bad, size_t badsize);

#endif
