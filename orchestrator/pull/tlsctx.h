/*
 * tlsctx: the daemon's TLS material (fleet CA, client certificate and key), parsed once.
 *
 * libcurl 7.88 builds a new OpenSSL SSL_CTX for every connection and, given file names, decodes
 * the CA bundle, the certificate and the key again each time; with OpenSSL 3 that decoding costs
 * about as much CPU as the handshake itself. tlsgate connects to every host of the fleet each
 * round, so it parses the files once and hands the parsed objects to each new SSL_CTX from
 * CURLOPT_SSL_CTX_FUNCTION. This is why the build links OpenSSL (the library Debian's libcurl
 * itself uses).
 */
#ifndef TLSGATE_TLSCTX_H
#define TLSGATE_TLSCTX_H

#include <curl/curl.h>
#include <stddef.h>

struct tlsctx;

/*
 * TLS session resumption, one session per collector for the whole fleet (libcurl's own cache,
 * even shared, holds 8). The cache lives in the tlsctx, so it lives and dies with the CA that
 * checked its sessions: a reload (SIGHUP) resumes nothing made before it. Rules:
 *   - a session is stored only from a handshake whose chain verified against the fleet CA and
 *     whose certificate names the host (X509_check_host), keyed by inventory name and address;
 *   - it is offered only to that name at that address, and never when older than
 *     TLSCTX_SESSION_MAX_AGE_S (the collector's tickets expire at the same age);
 *   - a transfer that fails forgets the host's session (tlsctx_forget);
 *   - resumption never replaces the host-name check: libcurl checks the name against the
 *     certificate the session carries, exactly as after a full handshake;
 *   - a collector restarted with a re-issued certificate has a new ticket key, refuses the
 *     old ticket, and the handshake is a full one against the new certificate.
 */
#define TLSCTX_SESSION_MAX_AGE_S 14400
/* Hosts whose session is kept at most (about 3 KiB each with the peer certificate). */
#define TLSCTX_SESSIONS_MAX (2 * 1024 * 1024)

/* What a transfer gives tlsctx_apply: the collector's inventory name (the name its certificate
 * must carry) and address. The struct and both strings must outlive the easy handle. */
struct tlsctx_peer {
    const char *name;
    const char *address;
    struct tlsctx *t; /* set by tlsctx_apply */
};

struct tlsctx_stats {
    size_t sessions; /* hosts with a session kept */
    size_t offered;  /* handshakes that offered a kept session */
    size_t resumed;  /* handshakes the collector resumed */
};

/* Reads and checks the PEM files: a CA with at least one certificate, a certificate (and any
 * chain after it), its private key (unencrypted) matching the certificate. Returns 0 and *out,
 * or -EINVAL / -ENOMEM with "FILE: why" in err. A key file that group or others may read or
 * write is refused (-EINVAL, the message says to chmod 600 it). */
int tlsctx_load(const char *ca, const char *cert, const char *key, struct tlsctx **out, char *err,
                size_t errsize);
/* Reference counting: tlsctx_load returns one reference; each transfer holds one more while it
 * may still connect, so a reload never frees material a pending connection will use. */
struct tlsctx *tlsctx_ref(struct tlsctx *t);
void tlsctx_unref(struct tlsctx *t);

/* Points an easy handle at `t` for `peer`: no CA file of libcurl's own, the client certificate,
 * key and trust store from `t` installed in each connection's SSL_CTX, libcurl's session cache
 * off and `t`'s per-host cache on (above). The caller holds a reference to `t` for as long as
 * the handle lives and cleans the handle up before dropping it; each connection's SSL_CTX holds
 * its own reference (it may outlive the handle in libcurl's connection cache). */
void tlsctx_apply(struct tlsctx *t, CURL *easy, struct tlsctx_peer *peer);

/* What a collector presented: the first certificate of its chain, read from the connection's
 * SSL (CURLINFO_TLS_SSL_PTR), so a resumed session (OpenSSL keeps the peer certificate in the
 * SSL_SESSION) and a reused connection yield the same certificate as a full handshake. */
#define TLSCTX_FINGERPRINT_SIZE 65 /* lower-case hex SHA-256 of the DER, and its NUL */
#define TLSCTX_SERIAL_SIZE 67      /* hex, at most 32 bytes (RFC 5280 allows 20), a sign */
#define TLSCTX_ISSUER_SIZE 512     /* the issuer's DN, RFC 4514 (escaped), cut to fit */
struct tlsctx_cert {
    char fingerprint[TLSCTX_FINGERPRINT_SIZE]; /* "" when nothing was read */
    char serial[TLSCTX_SERIAL_SIZE];
    char issuer[TLSCTX_ISSUER_SIZE];
    long long not_before, not_after; /* epoch seconds */
};

/* Reads the peer certificate of the connection `easy` is using now. Call it while the transfer
 * runs (from a header or body callback): once the transfer is done libcurl no longer gives the
 * connection. 0, or -ENOENT (no TLS connection, no peer certificate), -ENOMEM; `out` is zeroed
 * first. */
int tlsctx_peer_cert(CURL *easy, struct tlsctx_cert *out);

/* Drops the session kept for that name and address (after a failed transfer). */
void tlsctx_forget(struct tlsctx *t, const char *name, const char *address);

void tlsctx_get_stats(const struct tlsctx *t, struct tlsctx_stats *out);

#endif
