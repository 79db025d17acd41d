/*
 * tlsctx.c — see tlsctx.h.
 */
#include "tlsctx.h"

#include <errno.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

struct tlsctx {
    int refs;
    X509_STORE *store;        /* the fleet CA, shared by every connection (refcounted) */
    X509 *cert;
    STACK_OF(X509) *chain;    /* certificates after the first one in the cert file */
    EVP_PKEY *key;
    /* TLS sessions (and DNS answers) of connections made with this material. A resumed
     * session skips the certificate check, so the cache lives and dies with the CA that
     * checked its sessions: after a reload, no session made under the old CA is resumed. */
    CURLSH *share;
};

static int fail(char *err, size_t errsize, const char *path, const char *why)
{
    unsigned long e = ERR_peek_last_error();
    char detail[256] = "";
    if (e)
        ERR_error_string_n(e, detail, sizeof(detail));
    ERR_clear_error();
    snprintf(err, errsize, "%s: %s%s%s", path, why, detail[0] ? ": " : "", detail);
    return -EINVAL;
}

int tlsctx_load(const char *ca, const char *cert, const char *key, struct tlsctx **out, char *err,
                size_t errsize)
{
    *out = NULL;
    struct tlsctx *t = calloc(1, sizeof(*t));
    if (t)
        t->refs = 1;
    if (!t || !(t->store = X509_STORE_new()) || !(t->chain = sk_X509_new_null()) ||
        !(t->share = curl_share_init())) {
        tlsctx_unref(t);
        snprintf(err, errsize, "out of memory");
        return -ENOMEM;
    }
    /* One thread (the loop) uses the share, so it needs no lock callbacks. */
    curl_share_setopt(t->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
    curl_share_setopt(t->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
    int rc = 0;
    FILE *f = NULL;
    if (X509_STORE_load_file(t->store, ca) != 1) {
        rc = fail(err, errsize, ca, "cannot load the CA certificates");
        goto out;
    }
    if (!(f = fopen(cert, "r"))) {
        snprintf(err, errsize, "%s: %s", cert, strerror(errno));
        rc = -EINVAL;
        goto out;
    }
    if (!(t->cert = PEM_read_X509(f, NULL, NULL, NULL))) {
        rc = fail(err, errsize, cert, "no PEM certificate");
        goto out;
    }
    X509 *extra;
    while ((extra = PEM_read_X509(f, NULL, NULL, NULL)))
        if (!sk_X509_push(t->chain, extra)) {
            X509_free(extra);
            rc = fail(err, errsize, cert, "out of memory");
            goto out;
        }
    ERR_clear_error(); /* the end of the file ends the loop with an error on the queue */
    fclose(f);
    if (!(f = fopen(key, "r"))) {
        snprintf(err, errsize, "%s: %s", key, strerror(errno));
        rc = -EINVAL;
        goto out;
    }
    /* The key is the orchestrator's identity to every collector: one other user able to read
     * it can pull any host's report. Checked on the open file, so no rename can swap it. */
    struct stat st;
    if (fstat(fileno(f), &st) == 0 && (st.st_mode & 077)) {
        snprintf(err, errsize,
                 "%s: private key is readable or writable by group or others (mode %04o); "
                 "restrict it to its owner: chmod 600 %s",
                 key, (unsigned)(st.st_mode & 07777), key);
        rc = -EINVAL;
        goto out;
    }
    if (!(t->key = PEM_read_PrivateKey(f, NULL, NULL, NULL))) {
        rc = fail(err, errsize, key, "no unencrypted PEM private key");
        goto out;
    }
    if (X509_check_private_key(t->cert, t->key) != 1) {
        rc = fail(err, errsize, key, "is not the key of the client certificate");
        goto out;
    }
out:
    if (f)
        fclose(f);
    if (rc) {
        tlsctx_unref(t);
        return rc;
    }
    *out = t;
    return 0;
}

struct tlsctx *tlsctx_ref(struct tlsctx *t)
{
    t->refs++;
    return t;
}

void tlsctx_unref(struct tlsctx *t)
{
    if (!t || --t->refs > 0)
        return;
    X509_STORE_free(t->store);
    X509_free(t->cert);
    sk_X509_pop_free(t->chain, X509_free);
    EVP_PKEY_free(t->key);
    curl_share_cleanup(t->share);
    free(t);
}

/* Called by libcurl for every new connection, before the handshake. */
static CURLcode on_ssl_ctx(CURL *easy, void *ssl_ctx, void *userp)
{
    (void)easy;
    struct tlsctx *t = userp;
    SSL_CTX *ctx = ssl_ctx;
    if (SSL_CTX_use_certificate(ctx, t->cert) != 1 || SSL_CTX_use_PrivateKey(ctx, t->key) != 1)
        return CURLE_SSL_CERTPROBLEM;
    for (int i = 0; i < sk_X509_num(t->chain); i++)
        if (SSL_CTX_add1_chain_cert(ctx, sk_X509_value(t->chain, i)) != 1)
            return CURLE_SSL_CERTPROBLEM;
    SSL_CTX_set1_cert_store(ctx, t->store);
    return CURLE_OK;
}

void tlsctx_apply(struct tlsctx *t, CURL *easy)
{
    /* No CA file or folder of libcurl's own (Debian's default is the system bundle): the only
     * trust is the fleet CA installed by on_ssl_ctx. */
    curl_easy_setopt(easy, CURLOPT_CAINFO, NULL);
    curl_easy_setopt(easy, CURLOPT_CAPATH, NULL);
    curl_easy_setopt(easy, CURLOPT_SSL_CTX_FUNCTION, on_ssl_ctx);
    curl_easy_setopt(easy, CURLOPT_SSL_CTX_DATA, t);
    curl_easy_setopt(easy, CURLOPT_SHARE, t->share);
    /* libcurl >= 7.87 otherwise keeps the first connection's X509_STORE in the multi handle and
     * installs it in every later SSL_CTX: after a reload the old CA would go on deciding. */
    curl_easy_setopt(easy, CURLOPT_CA_CACHE_TIMEOUT, 0L);
}
