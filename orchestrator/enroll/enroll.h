/*
 * enroll: the enrollment endpoint of `tlsgate enroll serve` (issue 12): the HTTPS side of the
 * protocol (POST /v1/enroll, POST /v1/renew, GET /v1/health), on collectors/server.c's
 * connection discipline, with a token bucket per client address. What to answer is decided by
 * domain/identity.c (identity_ask); the CA (ca.h) signs inside that decision's transaction.
 *
 * Answers (JSON, application/json):
 *   200 {"status":"issued","certificate":PEM,"ca":PEM,"not_after":EPOCH}
 *   202 {"status":"pending","request":ID,"retry_after":SECONDS}
 *   400 {"error"} malformed JSON, a missing or mistyped member, a bad CSR (parse, signature,
 *       key), CN not equal to name; 403 {"error"} refused by the policy (identity.h) or renew
 *       without an enrolled client certificate; 404 / 405 other paths or methods; 411 a body
 *       without Content-Length; 413 over ENROLL_BODY_MAX; 429 rate limited, or too many
 *       requests pending (Retry-After); 503 the store is busy or signing failed (Retry-After).
 * Every POST is one audit row: decided ones by identity_ask, refused ones before it here
 * (a client address that is rate limited: one row when it becomes limited, not one per try).
 * Everything runs on the loop's thread.
 */
#ifndef TLSGATE_ENROLL_H
#define TLSGATE_ENROLL_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "ca.h"

struct store;
struct enroll_server;

/* The protocol's cap on a request body. */
#define ENROLL_BODY_MAX (16 * 1024)
/* What a pending answer tells the collector to wait before asking again. */
#define ENROLL_PENDING_RETRY_S 60
/* Retry-After of a 503. */
#define ENROLL_BUSY_RETRY_S 5
/* How long an ask waits for another writer of the database before it answers 503. */
#define ENROLL_BUSY_TIMEOUT_MS 2000
/* Client addresses whose buckets are remembered (the least recently seen is forgotten). */
#define ENROLL_BUCKETS 1024

struct enroll_options {
    const char *address;  /* numeric, to bind */
    uint16_t port;        /* 0: the kernel picks */
    const char *cert_pem; /* the endpoint's server certificate and key */
    const char *key_pem;
    struct ca *ca; /* borrowed: must outlive the server */
    long lifetime_days;
    long pending_max;
    long rate_per_minute;
    long rate_burst;
    unsigned connection_limit, per_ip_limit; /* 0: server.h's defaults */
};

/* Starts serving on `loop` with `s` (borrowed; the serve's own connection). 0 and *out, or
 * -errno with the reason in err. */
int enroll_server_start(uv_loop_t *loop, struct store *s, const struct enroll_options *o,
                        struct enroll_server **out, char *err, size_t errsize);
uint16_t enroll_server_port(const struct enroll_server *e);
/* Stops; the memory goes once the loop has closed the handles (run it). */
void enroll_server_close(struct enroll_server *e);

#endif
