/*
 * tlsctx.c — see tlsctx.h.
 */
#include "tlsctx.h"

#include <errno.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "utc.h"

/* One kept session: key is "NAME\nADDRESS"; sess NULL once forgotten (the slot stays). */
struct session_slot {
    char *key;
    SSL_SESSION *sess;
    long long stored_at;
};

struct tlsctx {
    int refs;
    X509_STORE *store; /* the fleet CA, shared by every connection (refcounted) */
    X509 *cert;
    STACK_OF(X509) * chain; /* certificates after the first one in the cert file */
    EVP_PKEY *key;
    /* DNS answers of connections made with this material. */
    CURLSH *share;
    /* The per-host TLS sessions (tlsctx.h): open addressing, linear probing, cap a power of
     * two, at most half full. A resumed session skips the chain check, so the cache lives and
     * dies with the CA that checked its sessions. */
    struct session_slot *slots;
    size_t cap, used;
    struct tlsctx_stats stats;
};

/* What each connection's SSL_CTX carries (ex_data): the host it is for, and a reference to the
 * material, because libcurl may keep the connection (and call back) after the transfer ended. */
struct conn_peer {
    struct tlsctx *t;
    char *key;
    size_t name_len; /* key[0..name_len) is the name */
    bool counted;
};

static int peer_index = -1; /* the process's one ex_data index for conn_peer */

static void conn_peer_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
                           void *argp)
{
    (void)parent, (void)ad, (void)idx, (void)argl, (void)argp;
    struct conn_peer *cp = ptr;
    if (!cp)
        return;
    tlsctx_unref(cp->t);
    free(cp->key);
    free(cp);
}

static char *make_key(const char *name, const char *address)
{
    size_t n = strlen(name), a = strlen(address);
    char *k = malloc(n + a + 2);
    if (k) {
        memcpy(k, name, n);
        k[n] = '\n';
        memcpy(k + n + 1, address, a + 1);
    }
    return k;
}

static uint64_t key_hash(const char *k)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *k; k++)
        h = (h ^ (unsigned char)*k) * 1099511628211ull;
    return h;
}

/* The slot holding `key`, or the empty slot where it would go. */
static struct session_slot *slot_find(struct session_slot *slots, size_t cap, const char *key)
{
    size_t i = (size_t)key_hash(key) & (cap - 1);
    while (slots[i].key && strcmp(slots[i].key, key) != 0)
        i = (i + 1) & (cap - 1);
    return &slots[i];
}

static int slots_grow(struct tlsctx *t)
{
    size_t cap = t->cap ? t->cap * 2 : 1024;
    struct session_slot *n = calloc(cap, sizeof(*n));
    if (!n)
        return -ENOMEM;
    for (size_t i = 0; i < t->cap; i++)
        if (t->slots[i].key)
            *slot_find(n, cap, t->slots[i].key) = t->slots[i];
    free(t->slots);
    t->slots = n;
    t->cap = cap;
    return 0;
}

/* Keeps `sess` (a reference is taken) for the key; returns 0, or -ENOMEM / -ENOSPC. */
static int session_put(struct tlsctx *t, const char *key, SSL_SESSION *sess)
{
    if ((t->used + 1) * 2 > t->cap && (t->used >= TLSCTX_SESSIONS_MAX || slots_grow(t)))
        return -ENOSPC;
    struct session_slot *s = slot_find(t->slots, t->cap, key);
    if (!s->key) {
        if (!(s->key = strdup(key)))
            return -ENOMEM;
        t->used++;
    }
    if (s->sess)
        SSL_SESSION_free(s->sess);
    else
        t->stats.sessions++;
    SSL_SESSION_up_ref(sess);
    s->sess = sess;
    s->stored_at = utc_now();
    return 0;
}

static struct session_slot *session_get(struct tlsctx *t, const char *key)
{
    if (!t->cap)
        return NULL;
    struct session_slot *s = slot_find(t->slots, t->cap, key);
    return s->key && s->sess ? s : NULL;
}

static void session_drop(struct tlsctx *t, struct session_slot *s)
{
    SSL_SESSION_free(s->sess);
    s->sess = NULL;
    t->stats.sessions--;
}

/* OpenSSL's "new session" callback (TLS 1.2: end of the handshake; TLS 1.3: each ticket).
 * Returns 1 when the session was kept (OpenSSL then leaves our reference alone). */
static int on_new_session(SSL *ssl, SSL_SESSION *sess)
{
    struct conn_peer *cp = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), peer_index);
    if (!cp || !SSL_SESSION_is_resumable(sess) || SSL_get_verify_result(ssl) != X509_V_OK)
        return 0;
    /* Only a session whose certificate names the host: the cache never holds a session that
     * a host-name check would refuse. */
    X509 *peer = SSL_SESSION_get0_peer(sess);
    if (!peer || X509_check_host(peer, cp->key, cp->name_len, 0, NULL) != 1)
        return 0;
    session_put(cp->t, cp->key, sess);
    return 0; /* session_put took its own reference */
}

/* Offers the host's session before the ClientHello is built, and counts what the server did.
 * libcurl 7.88 creates the SSL after CURLOPT_SSL_CTX_FUNCTION returns, so the start of the
 * handshake is the first moment the SSL exists. */
static void on_info(const SSL *cssl, int where, int ret)
{
    (void)ret;
    struct conn_peer *cp = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(cssl), peer_index);
    if (!cp)
        return;
    SSL *ssl = (SSL *)cssl; /* OpenSSL passes the SSL it is driving; it is ours to set */
    if ((where & SSL_CB_HANDSHAKE_START) && SSL_in_before(ssl)) {
        struct session_slot *s = session_get(cp->t, cp->key);
        if (!s)
            return;
        if (utc_now() - s->stored_at > TLSCTX_SESSION_MAX_AGE_S) {
            session_drop(cp->t, s);
            return;
        }
        if (SSL_set_session(ssl, s->sess) == 1)
            cp->t->stats.offered++;
    } else if ((where & SSL_CB_HANDSHAKE_DONE) && !cp->counted) {
        cp->counted = true;
        if (SSL_session_reused(ssl))
            cp->t->stats.resumed++;
    }
}

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
    curl_share_setopt(t->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
    if (peer_index < 0 &&
        (peer_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, conn_peer_free)) < 0) {
        tlsctx_unref(t);
        snprintf(err, errsize, "out of memory");
        return -ENOMEM;
    }
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
    for (size_t i = 0; i < t->cap; i++) {
        free(t->slots[i].key);
        if (t->slots[i].sess)
            SSL_SESSION_free(t->slots[i].sess);
    }
    free(t->slots);
    free(t);
}

/* Called by libcurl for every new connection, before the handshake; userp is the transfer's
 * struct tlsctx_peer (tlsctx_apply), valid during this call. */
static CURLcode on_ssl_ctx(CURL *easy, void *ssl_ctx, void *userp)
{
    (void)easy;
    const struct tlsctx_peer *peer = userp;
    struct tlsctx *t = peer->t;
    SSL_CTX *ctx = ssl_ctx;
    if (SSL_CTX_use_certificate(ctx, t->cert) != 1 || SSL_CTX_use_PrivateKey(ctx, t->key) != 1)
        return CURLE_SSL_CERTPROBLEM;
    for (int i = 0; i < sk_X509_num(t->chain); i++)
        if (SSL_CTX_add1_chain_cert(ctx, sk_X509_value(t->chain, i)) != 1)
            return CURLE_SSL_CERTPROBLEM;
    SSL_CTX_set1_cert_store(ctx, t->store);

    /* The per-host session cache (tlsctx.h). Without memory for it the connection simply makes
     * a full handshake. */
    struct conn_peer *cp = calloc(1, sizeof(*cp));
    if (!cp || !(cp->key = make_key(peer->name, peer->address))) {
        free(cp);
        return CURLE_OK;
    }
    cp->name_len = strlen(peer->name);
    cp->t = tlsctx_ref(t);
    if (SSL_CTX_set_ex_data(ctx, peer_index, cp) != 1) {
        conn_peer_free(NULL, cp, NULL, 0, 0, NULL);
        return CURLE_OK;
    }
    /* libcurl set its own callback before calling us; its cache is off (tlsctx_apply). */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL);
    SSL_CTX_sess_set_new_cb(ctx, on_new_session);
    SSL_CTX_set_info_callback(ctx, on_info);
    return CURLE_OK;
}

void tlsctx_apply(struct tlsctx *t, CURL *easy, struct tlsctx_peer *peer)
{
    peer->t = t;
    /* No CA file or folder of libcurl's own (Debian's default is the system bundle): the only
     * trust is the fleet CA installed by on_ssl_ctx. */
    curl_easy_setopt(easy, CURLOPT_CAINFO, NULL);
    curl_easy_setopt(easy, CURLOPT_CAPATH, NULL);
    curl_easy_setopt(easy, CURLOPT_SSL_CTX_FUNCTION, on_ssl_ctx);
    curl_easy_setopt(easy, CURLOPT_SSL_CTX_DATA, peer);
    curl_easy_setopt(easy, CURLOPT_SHARE, t->share);
    /* libcurl's session cache (8 sessions when shared) off: the per-host cache replaces it. */
    curl_easy_setopt(easy, CURLOPT_SSL_SESSIONID_CACHE, 0L);
    /* libcurl >= 7.87 otherwise keeps the first connection's X509_STORE in the multi handle and
     * installs it in every later SSL_CTX: after a reload the old CA would go on deciding. */
    curl_easy_setopt(easy, CURLOPT_CA_CACHE_TIMEOUT, 0L);
}

void tlsctx_forget(struct tlsctx *t, const char *name, const char *address)
{
    char *key = make_key(name, address);
    struct session_slot *s = key ? session_get(t, key) : NULL;
    if (s)
        session_drop(t, s);
    free(key);
}

void tlsctx_get_stats(const struct tlsctx *t, struct tlsctx_stats *out) { *out = t->stats; }

int tlsctx_peer_cert(CURL *easy, struct tlsctx_cert *out)
{
    memset(out, 0, sizeof(*out));
    struct curl_tlssessioninfo *tsi = NULL;
    if (curl_easy_getinfo(easy, CURLINFO_TLS_SSL_PTR, &tsi) != CURLE_OK || !tsi ||
        tsi->backend != CURLSSLBACKEND_OPENSSL || !tsi->internals)
        return -ENOENT;
    /* The session's peer: after a resumption OpenSSL restores it from the SSL_SESSION. */
    X509 *c = SSL_get0_peer_certificate(tsi->internals);
    if (!c)
        return -ENOENT;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (X509_digest(c, EVP_sha256(), md, &mdlen) != 1 || mdlen != 32) {
        ERR_clear_error();
        return -ENOMEM;
    }
    static const char hex[] = "0123456789abcdef";
    for (unsigned i = 0; i < mdlen; i++) {
        out->fingerprint[2 * i] = hex[md[i] >> 4];
        out->fingerprint[2 * i + 1] = hex[md[i] & 15];
    }
    out->fingerprint[2 * mdlen] = '\0';

    BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(c), NULL);
    char *sh = bn ? BN_bn2hex(bn) : NULL;
    if (sh) {
        size_t i = 0;
        for (; sh[i] && i + 1 < sizeof(out->serial); i++)
            out->serial[i] = (char)(sh[i] >= 'A' && sh[i] <= 'F' ? sh[i] - 'A' + 'a' : sh[i]);
        out->serial[i] = '\0';
    }
    OPENSSL_free(sh);
    BN_free(bn);

    /* RFC 4514 with control and non-ASCII bytes escaped: the text goes to logs and tables. */
    BIO *b = BIO_new(BIO_s_mem());
    if (b && X509_NAME_print_ex(b, X509_get_issuer_name(c), 0, XN_FLAG_RFC2253) >= 0) {
        int n = BIO_read(b, out->issuer, (int)sizeof(out->issuer) - 1);
        out->issuer[n > 0 ? n : 0] = '\0';
    }
    BIO_free(b);

    struct tm tm;
    if (ASN1_TIME_to_tm(X509_get0_notBefore(c), &tm) == 1)
        out->not_before = (long long)timegm(&tm);
    if (ASN1_TIME_to_tm(X509_get0_notAfter(c), &tm) == 1)
        out->not_after = (long long)timegm(&tm);
    ERR_clear_error();
    return 0;
}
