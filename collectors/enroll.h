/*
 * enroll: the collector's side of tlsgate enrollment (issue 12; the wire protocol is in
 * README.md, "Enrollment"). The collector makes its own key (ECDSA P-256, it never leaves the
 * host), sends a PKCS#10 request for its host name to the orchestrator's enrollment endpoint
 * with the site's secret (POST /v1/enroll), and later renews over mutual TLS with its current
 * certificate (POST /v1/renew).
 *
 * The HTTPS client here is deliberately small: GnuTLS over a plain socket (POSIX or Winsock),
 * one POST with Content-Length, one answer read with a byte cap and a deadline that covers
 * connect, handshake, request and answer alike. The server is verified against the configured
 * CA bundle and the URL's host name. No libcurl: the Windows build has none.
 *
 * Blocking calls: the collector runs them before its loop starts, or on libuv's thread pool.
 * Every function is thread-safe (no shared state).
 */
#ifndef TLSGATE_ENROLL_H
#define TLSGATE_ENROLL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* An answer (status line, headers and body) is at most this many bytes. */
#define ENROLL_REPLY_MAX (64 * 1024)
/* The whole exchange (connect, handshake, request, answer) by default. */
#define ENROLL_TIMEOUT_MS 30000
/* A site secret file is at most this many bytes. */
#define ENROLL_SECRET_MAX 1024
/* Renewal starts at this fraction of the certificate's lifetime by default. */
#define ENROLL_RENEW_FRACTION 0.5

/* ---- key and request ---- */

/* A new ECDSA P-256 private key as unencrypted PKCS#8 PEM (malloc'd). 0 or -errno + err. */
int enroll_key_generate(char **key_pem, char *err, size_t errsize);

/* A PKCS#10 request signed by `key_pem`, subject CN = name and SAN dNSName = name (PEM,
 * malloc'd). 0 or -errno + err. */
int enroll_csr_make(const char *key_pem, const char *name, char **csr_pem, char *err,
                    size_t errsize);

/* ---- the HTTPS client ---- */

/* "https://HOST:PORT" (HOST a DNS name, an IPv4 address or [IPv6]; PORT optional, 443; no path,
 * no user info). 0 or -EINVAL with the reason in err. */
struct enroll_url {
    char host[256];
    char port[8];
};
int enroll_url_parse(const char *url, struct enroll_url *u, char *err, size_t errsize);

struct enroll_http {
    const char *url;                /* https://HOST:PORT */
    const char *path;               /* "/v1/enroll" */
    const char *ca_pem;             /* the server's certificate must chain to it */
    const char *cert_pem, *key_pem; /* a client certificate (renewal), or NULL */
    const char *body;               /* JSON */
    size_t body_len;
    long timeout_ms;  /* 0: ENROLL_TIMEOUT_MS */
    size_t max_bytes; /* 0: ENROLL_REPLY_MAX */
    /* results */
    int status;  /* HTTP status */
    char *reply; /* the body, NUL-terminated, malloc'd */
    size_t reply_len;
    long retry_after; /* Retry-After header in seconds, -1 when none */
};

/*
 * POSTs the body and reads the answer. 0 with status and reply set, or a negative errno with
 * the reason in err (naming the URL): -EINVAL bad URL or TLS material, -ENOENT the name does
 * not resolve, -ECONNREFUSED (or another connect error), -EACCES the server's certificate is
 * not trusted or is not for the URL's host, -EPROTO TLS failed, -ETIMEDOUT the deadline
 * passed, -E2BIG the answer is over the cap, -EBADMSG the answer is not a complete HTTP/1.x
 * answer with a Content-Length body (truncated, malformed).
 */
int enroll_http_post(struct enroll_http *h, char *err, size_t errsize);
void enroll_http_release(struct enroll_http *h);

/* ---- the protocol ---- */

enum enroll_outcome {
    ENROLL_ISSUED,  /* 200: certificate (and the fleet CA) in the result */
    ENROLL_PENDING, /* 202: a person must approve request `request` */
    ENROLL_REFUSED, /* 403: the server's reason in message */
    ENROLL_RETRY,   /* 429, 503, network errors, deadline: ask again later */
    ENROLL_FAILED,  /* 400, 413, a certificate we cannot trust, a malformed answer */
};

struct enroll_params {
    const char *url;
    const char *ca_pem;   /* the CA bundle that verifies the enrollment server */
    const char *name;     /* this host's name (CN and SAN of the request) */
    const char *site;     /* enroll only */
    const char *secret;   /* enroll only */
    const char *cert_pem; /* renew only: the current certificate and its key */
    const char *key_pem;
    long timeout_ms; /* 0: ENROLL_TIMEOUT_MS */
};

struct enroll_result {
    enum enroll_outcome outcome;
    int http_status;     /* 0 when no answer came */
    char *cert_pem;      /* ISSUED */
    char *ca_pem;        /* ISSUED, when the server sent it */
    long long not_after; /* ISSUED */
    long long request;   /* PENDING */
    long retry_after;    /* PENDING, RETRY: seconds the server asked for, else -1 */
    char message[768];   /* what happened, naming the URL and the server's answer */
};

/*
 * One request: POST /v1/enroll with the site secret (renew false), or POST /v1/renew over
 * mutual TLS with p->cert_pem/key_pem (renew true), for the new key `new_key_pem`. An issued
 * certificate is checked before it is returned: it must be for p->name, hold the new key's
 * public key, and be valid now. Always fills r (release with enroll_result_release).
 */
void enroll_submit(const struct enroll_params *p, const char *new_key_pem, bool renew,
                   struct enroll_result *r);
void enroll_result_release(struct enroll_result *r);

/* ---- schedule ---- */

/* When renewal starts: not_before + fraction * (not_after - not_before) (epoch seconds). */
long long enroll_renew_at(long long not_before, long long not_after, double fraction);

/* Seconds to wait before attempt `attempt` (0 the first retry): base * 2^attempt capped at max,
 * then spread over [half, full] by `rnd` so a fleet does not retry in step. At least 1. */
long enroll_backoff(unsigned attempt, long base, long max, uint64_t rnd);

/* A certificate's validity (PEM, first certificate). 0 or -EINVAL. */
int enroll_cert_times(const char *cert_pem, long long *not_before, long long *not_after);

/* ---- files ---- */

/* Reads a site secret file: at most ENROLL_SECRET_MAX bytes, surrounding white space dropped,
 * not empty, printable ASCII only. 0 and *secret (malloc'd) or -errno with err naming the file. */
int enroll_read_secret(const char *path, char **secret, char *err, size_t errsize);

/*
 * Writes `data` to `path` atomically: PATH.tmp is written and flushed, then renamed over PATH
 * (replacing it on Windows too). private_key: the file is created mode 0600 (POSIX; on Windows
 * it inherits its folder's ACL, which the service installer restricts). 0 or -errno + err.
 */
int enroll_write_atomic(const char *path, const char *data, size_t len, bool private_key, char *err,
                        size_t errsize);

/*
 * Installs a new key and certificate: both are written completely as KEY.new and CERT.new
 * first (the old pair stays in place until then), then KEY.new replaces KEY and CERT.new
 * replaces CERT. A crash between the two renames leaves CERT.new beside a KEY that matches
 * it; enroll_pair_recover finishes that. 0 or -errno with err naming the file.
 */
int enroll_pair_install(const char *cert_path, const char *key_path, const char *cert_pem,
                        const char *key_pem, char *err, size_t errsize);

/* Finishes or undoes an interrupted enroll_pair_install: CERT.new whose key is KEY's replaces
 * CERT; leftovers that do not fit are removed. 1 when it finished an install, 0 when there was
 * nothing to do, -errno + err. */
int enroll_pair_recover(const char *cert_path, const char *key_path, char *err, size_t errsize);

/* This machine's fully qualified name in lower case (Windows: the DNS name with its primary
 * suffix; POSIX: the host name, canonicalised through the resolver when it has no dot).
 * 0 or -errno. */
int enroll_host_name(char *out, size_t size);

#endif
