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

/* Points an easy handle at `t`: no CA file of libcurl's own, the client certificate, key and
 * trust store from `t` installed in each connection's SSL_CTX, and `t`'s own TLS session cache
 * (CURLOPT_SHARE), so sessions are never resumed across material. The caller holds a
 * reference to `t` for as long as the handle lives and cleans the handle up before dropping it. */
void tlsctx_apply(struct tlsctx *t, CURL *easy);

#endif
