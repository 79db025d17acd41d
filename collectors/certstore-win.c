/*
 * certstore-win.c — the collector's identity from a Windows certificate store (certstore.h):
 * enumerate with crypt32, choose with certstore_select, sign through CNG (ncrypt).
 *
 * Why not GnuTLS's own "system:win:" URLs (lib/system/keys-win.c): GnuTLS 3.7.9 looks only in
 * CurrentUser\My and opens keys without NCRYPT_MACHINE_KEY_FLAG, so a LocalMachine\My machine
 * certificate is out of its reach, and its CNG signer has no RSA-PSS (which TLS 1.3 needs for
 * RSA keys). This file registers its own URL scheme instead, "tlsgate-certstore:", whose key
 * signs with NCryptSignHash on the handle CryptAcquireCertificatePrivateKey gives: the key stays
 * in the Windows key store, exportable or not.
 */
/* winsock2.h (platform.h has it) before windows.h, then the crypto headers. */
#include <winsock2.h>
/* */
#include <windows.h>
/* */
#include <bcrypt.h>
#include <ncrypt.h>
#include <wincrypt.h>

#include <gnutls/abstract.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <gnutls/urls.h>
#include <gnutls/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "certstore.h"
#include "platform.h"

#define URL_PREFIX "tlsgate-certstore:"
#define MAX_CANDIDATES 256

/* ---- the store ---- */

/* Opens "LocalMachine\NAME" / "CurrentUser\NAME" read-only; NULL with err. */
static HCERTSTORE open_store(const char *store, char *err, size_t errsize)
{
    if (certstore_check_name(store) < 0) {
        snprintf(err, errsize,
                 "certificate store \"%s\": expected LocalMachine\\NAME or CurrentUser\\NAME",
                 store);
        return NULL;
    }
    bool machine = certstore_prefix(store, "LocalMachine\\");
    const char *name = store + (machine ? 13 : 12);
    WCHAR wname[80];
    size_t i = 0;
    for (; name[i] && i < 79; i++)
        wname[i] = (WCHAR)name[i];
    wname[i] = 0;
    DWORD flags = (machine ? CERT_SYSTEM_STORE_LOCAL_MACHINE : CERT_SYSTEM_STORE_CURRENT_USER) |
                  CERT_STORE_READONLY_FLAG | CERT_STORE_OPEN_EXISTING_FLAG;
    HCERTSTORE h = CertOpenStore(CERT_STORE_PROV_SYSTEM_W, 0, 0, flags, wname);
    if (!h && GetLastError() == ERROR_FILE_NOT_FOUND) {
        /* Never created (nothing was ever enrolled): an empty store, judged as one. Opened in
         * memory so that this read-only agent creates nothing in the registry. */
        h = CertOpenStore(CERT_STORE_PROV_MEMORY, 0, 0, 0, NULL);
    }
    if (!h) {
        char why[256];
        platform_win_message(GetLastError(), why, sizeof(why));
        snprintf(err, errsize, "certificate store %s: cannot open it: %s", store, why);
    }
    return h;
}

/* The CNG handle of a certificate's private key, silently (a service has no desktop); 0 when
 * there is none or this account may not use it. *owned says whether to free it. */
static NCRYPT_KEY_HANDLE acquire_key(PCCERT_CONTEXT ctx, BOOL *owned, DWORD *lasterr)
{
    HCRYPTPROV_OR_NCRYPT_KEY_HANDLE h = 0;
    DWORD spec = 0;
    *owned = FALSE;
    if (!CryptAcquireCertificatePrivateKey(
            ctx, CRYPT_ACQUIRE_ONLY_NCRYPT_KEY_FLAG | CRYPT_ACQUIRE_SILENT_FLAG, NULL, &h, &spec,
            owned)) {
        if (lasterr)
            *lasterr = GetLastError();
        return 0;
    }
    if (spec != CERT_NCRYPT_KEY_SPEC) {
        if (*owned)
            NCryptFreeObject(h);
        *owned = FALSE;
        return 0;
    }
    return (NCRYPT_KEY_HANDLE)h;
}

/* ---- the key: a GnuTLS external key over an NCrypt handle ---- */

struct nkey {
    NCRYPT_KEY_HANDLE h;
    BOOL owned;
    gnutls_pk_algorithm_t pk; /* GNUTLS_PK_RSA or GNUTLS_PK_ECDSA */
    unsigned bits;
};

static LPCWSTR cng_hash(gnutls_digest_algorithm_t d)
{
    switch (d) {
    case GNUTLS_DIG_SHA1: return BCRYPT_SHA1_ALGORITHM;
    case GNUTLS_DIG_SHA256: return BCRYPT_SHA256_ALGORITHM;
    case GNUTLS_DIG_SHA384: return BCRYPT_SHA384_ALGORITHM;
    case GNUTLS_DIG_SHA512: return BCRYPT_SHA512_ALGORITHM;
    default: return NULL;
    }
}

static int nkey_sign_hash(gnutls_privkey_t key, gnutls_sign_algorithm_t algo, void *userdata,
                          unsigned int flags, const gnutls_datum_t *hash, gnutls_datum_t *signature)
{
    (void)key;
    (void)flags;
    struct nkey *k = userdata;
    BCRYPT_PKCS1_PADDING_INFO pkcs1 = {NULL};
    BCRYPT_PSS_PADDING_INFO pss = {NULL, 0};
    void *padding = NULL;
    DWORD nflags = 0;
    gnutls_pk_algorithm_t spk = gnutls_sign_get_pk_algorithm(algo);
    if (k->pk == GNUTLS_PK_RSA && algo == GNUTLS_SIGN_RSA_RAW) {
        /* PKCS#1 v1.5: GnuTLS hands the DigestInfo; no algorithm id makes CNG sign it as is. */
        padding = &pkcs1;
        nflags = BCRYPT_PAD_PKCS1;
    } else if (k->pk == GNUTLS_PK_RSA && spk == GNUTLS_PK_RSA_PSS) {
        pss.pszAlgId = cng_hash(gnutls_sign_get_hash_algorithm(algo));
        if (!pss.pszAlgId)
            return GNUTLS_E_UNSUPPORTED_SIGNATURE_ALGORITHM;
        pss.cbSalt = hash->size; /* TLS: salt as long as the hash */
        padding = &pss;
        nflags = BCRYPT_PAD_PSS;
    } else if (k->pk == GNUTLS_PK_ECDSA && spk == GNUTLS_PK_ECDSA) {
        padding = NULL;
    } else {
        return GNUTLS_E_UNSUPPORTED_SIGNATURE_ALGORITHM;
    }
    DWORD len = 0;
    SECURITY_STATUS st =
        NCryptSignHash(k->h, padding, hash->data, hash->size, NULL, 0, &len, nflags);
    if (st != ERROR_SUCCESS || len == 0 || len > 1024)
        return GNUTLS_E_PK_SIGN_FAILED;
    unsigned char *raw = gnutls_malloc(len);
    if (!raw)
        return GNUTLS_E_MEMORY_ERROR;
    st = NCryptSignHash(k->h, padding, hash->data, hash->size, raw, len, &len, nflags);
    if (st != ERROR_SUCCESS) {
        gnutls_free(raw);
        return GNUTLS_E_PK_SIGN_FAILED;
    }
    if (k->pk == GNUTLS_PK_RSA) {
        signature->data = raw;
        signature->size = len;
        return 0;
    }
    /* ECDSA: CNG gives r || s, TLS wants the DER SEQUENCE. */
    gnutls_datum_t r = {raw, len / 2}, s = {raw + len / 2, len / 2};
    int rc = gnutls_encode_rs_value(signature, &r, &s);
    gnutls_free(raw);
    return rc;
}

static int nkey_info(gnutls_privkey_t key, unsigned int flags, void *userdata)
{
    (void)key;
    struct nkey *k = userdata;
    if (flags & GNUTLS_PRIVKEY_INFO_PK_ALGO)
        return (int)k->pk;
    if (flags & GNUTLS_PRIVKEY_INFO_PK_ALGO_BITS)
        return (int)k->bits;
    if (flags & GNUTLS_PRIVKEY_INFO_HAVE_SIGN_ALGO) {
        gnutls_sign_algorithm_t algo = GNUTLS_FLAGS_TO_SIGN_ALGO(flags);
        gnutls_pk_algorithm_t spk = gnutls_sign_get_pk_algorithm(algo);
        if (!cng_hash(gnutls_sign_get_hash_algorithm(algo)))
            return 0;
        if (k->pk == GNUTLS_PK_RSA)
            /* RSA-PSS with an rsaEncryption key (TLS 1.3 rsa_pss_rsae_*), and PKCS#1 v1.5. */
            return spk == GNUTLS_PK_RSA || (spk == GNUTLS_PK_RSA_PSS &&
                                            gnutls_sign_supports_pk_algorithm(algo, GNUTLS_PK_RSA));
        return spk == GNUTLS_PK_ECDSA;
    }
    return -1;
}

static void nkey_deinit(gnutls_privkey_t key, void *userdata)
{
    (void)key;
    struct nkey *k = userdata;
    if (k->owned)
        NCryptFreeObject(k->h);
    free(k);
}

/* gnutls_privkey_import_url for "tlsgate-certstore:STORE;sha1=THUMB". */
static int import_key_url(gnutls_privkey_t pkey, const char *url, unsigned flags)
{
    (void)flags;
    char store[96], err[256];
    const char *rest = url + strlen(URL_PREFIX);
    const char *semi = strstr(rest, ";sha1=");
    if (strncmp(url, URL_PREFIX, strlen(URL_PREFIX)) != 0 || !semi ||
        (size_t)(semi - rest) >= sizeof(store) || strlen(semi + 6) != 40)
        return GNUTLS_E_PARSING_ERROR;
    memcpy(store, rest, (size_t)(semi - rest));
    store[semi - rest] = '\0';
    BYTE sha1[20];
    for (int i = 0; i < 40; i++) {
        char ch = semi[6 + i];
        int v = ch >= '0' && ch <= '9'   ? ch - '0'
                : ch >= 'A' && ch <= 'F' ? ch - 'A' + 10
                : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10
                                         : -1;
        if (v < 0)
            return GNUTLS_E_PARSING_ERROR;
        sha1[i / 2] = (BYTE)(i % 2 ? (sha1[i / 2] | v) : (v << 4));
    }
    HCERTSTORE h = open_store(store, err, sizeof(err));
    if (!h)
        return GNUTLS_E_FILE_ERROR;
    CRYPT_HASH_BLOB blob = {20, sha1};
    PCCERT_CONTEXT ctx =
        CertFindCertificateInStore(h, X509_ASN_ENCODING, 0, CERT_FIND_SHA1_HASH, &blob, NULL);
    int rc = GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE;
    struct nkey *k = NULL;
    gnutls_x509_crt_t crt = NULL;
    if (!ctx)
        goto out;
    k = calloc(1, sizeof(*k));
    if (!k) {
        rc = GNUTLS_E_MEMORY_ERROR;
        goto out;
    }
    k->h = acquire_key(ctx, &k->owned, NULL);
    if (!k->h)
        goto out;
    gnutls_datum_t der = {ctx->pbCertEncoded, ctx->cbCertEncoded};
    if (gnutls_x509_crt_init(&crt) < 0 || gnutls_x509_crt_import(crt, &der, GNUTLS_X509_FMT_DER))
        goto out;
    int pk = gnutls_x509_crt_get_pk_algorithm(crt, &k->bits);
    if (pk != GNUTLS_PK_RSA && pk != GNUTLS_PK_ECDSA) {
        rc = GNUTLS_E_UNKNOWN_PK_ALGORITHM;
        goto out;
    }
    k->pk = (gnutls_pk_algorithm_t)pk;
    rc = gnutls_privkey_import_ext4(pkey, k, NULL, nkey_sign_hash, NULL, nkey_deinit, nkey_info, 0);
    if (rc == 0)
        k = NULL; /* the privkey owns it now */
out:
    if (k) {
        if (k->h && k->owned)
            NCryptFreeObject(k->h);
        free(k);
    }
    if (crt)
        gnutls_x509_crt_deinit(crt);
    if (ctx)
        CertFreeCertificateContext(ctx);
    CertCloseStore(h, 0);
    return rc;
}

static const gnutls_custom_url_st url_scheme = {
    .name = URL_PREFIX,
    .name_size = sizeof(URL_PREFIX) - 1,
    .import_key = import_key_url,
};

static INIT_ONCE register_once = INIT_ONCE_STATIC_INIT;
static int register_rc;

static BOOL CALLBACK do_register(PINIT_ONCE once, PVOID param, PVOID *ctx)
{
    (void)once;
    (void)param;
    (void)ctx;
    register_rc = gnutls_register_custom_url(&url_scheme);
    return TRUE;
}

/* ---- choosing ---- */

int certstore_win_load(const char *store, const char *host, long long now,
                       void (*log)(void *arg, const char *line), void *log_arg, char **cert_pem,
                       char **key_url, char *err, size_t errsize)
{
    *cert_pem = *key_url = NULL;
    InitOnceExecuteOnce(&register_once, do_register, NULL, NULL);
    if (register_rc < 0) {
        snprintf(err, errsize, "certificate store %s: cannot register the key URL: %s", store,
                 gnutls_strerror(register_rc));
        return -1;
    }
    HCERTSTORE h = open_store(store, err, errsize);
    if (!h)
        return -1;
    struct certstore_candidate *cands = calloc(MAX_CANDIDATES, sizeof(*cands));
    PCCERT_CONTEXT *ctxs = calloc(MAX_CANDIDATES, sizeof(*ctxs));
    int ret = -1;
    size_t n = 0;
    if (!cands || !ctxs) {
        snprintf(err, errsize, "certificate store %s: out of memory", store);
        goto out;
    }
    PCCERT_CONTEXT ctx = NULL;
    while (n < MAX_CANDIDATES && (ctx = CertEnumCertificatesInStore(h, ctx)) != NULL) {
        ctxs[n] = CertDuplicateCertificateContext(ctx); /* keeps the DER alive */
        cands[n].der = ctxs[n]->pbCertEncoded;
        cands[n].der_len = ctxs[n]->cbCertEncoded;
        /* "Has a key" = this account can use it, silently: what the server will need. */
        BOOL owned;
        DWORD why = 0;
        NCRYPT_KEY_HANDLE k = acquire_key(ctx, &owned, &why);
        cands[n].has_key = k != 0;
        if (k && owned)
            NCryptFreeObject(k);
        n++;
    }
    if (ctx)
        CertFreeCertificateContext(ctx); /* stopped at MAX_CANDIDATES */
    char thumb[CERTSTORE_THUMB_SIZE];
    int best = certstore_select(cands, n, host, now, store, log, log_arg, thumb, err, errsize);
    if (best < 0)
        goto out;
    gnutls_datum_t der = {(unsigned char *)cands[best].der, (unsigned)cands[best].der_len}, pem;
    if (gnutls_pem_base64_encode2("CERTIFICATE", &der, &pem) < 0) {
        snprintf(err, errsize, "certificate store %s: cannot encode the certificate", store);
        goto out;
    }
    *cert_pem = malloc(pem.size + 1);
    size_t ulen = strlen(URL_PREFIX) + strlen(store) + 6 + 41;
    *key_url = malloc(ulen);
    if (!*cert_pem || !*key_url) {
        gnutls_free(pem.data);
        snprintf(err, errsize, "certificate store %s: out of memory", store);
        goto out;
    }
    memcpy(*cert_pem, pem.data, pem.size);
    (*cert_pem)[pem.size] = '\0';
    gnutls_free(pem.data);
    snprintf(*key_url, ulen, "%s%s;sha1=%s", URL_PREFIX, store, thumb);
    ret = 0;
out:
    if (ret < 0) {
        free(*cert_pem);
        free(*key_url);
        *cert_pem = *key_url = NULL;
    }
    for (size_t i = 0; ctxs && i < n; i++)
        CertFreeCertificateContext(ctxs[i]);
    free(ctxs);
    free(cands);
    CertCloseStore(h, 0);
    return ret;
}

int certstore_win_hostname(char *out, size_t size)
{
    WCHAR w[256];
    DWORD n = 256;
    if (!GetComputerNameExW(ComputerNameDnsFullyQualified, w, &n) || n == 0 || n >= size)
        return -1;
    for (DWORD i = 0; i < n; i++) {
        if (w[i] > 127)
            return -1;
        char ch = (char)w[i];
        out[i] = (ch >= 'A' && ch <= 'Z') ? (char)(ch - 'A' + 'a') : ch;
    }
    out[n] = '\0';
    return 0;
}
