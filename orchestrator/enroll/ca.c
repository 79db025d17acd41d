/*
 * ca.c — the fleet CA with GnuTLS: make one, load one, read a request, sign it (ca.h). The CA
 * key is the fleet: whoever reads it can make any host's identity, so it is created 0600 with
 * O_EXCL and refused at load when its group or others can read or write it.
 */
#include "ca.h"

#include <errno.h>
#include <fcntl.h>
#include <gnutls/abstract.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct ca {
    gnutls_x509_crt_t crt;
    gnutls_privkey_t key;
    char *pem;
};

static int fail(char *err, size_t errsize, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int fail(char *err, size_t errsize, int code, const char *fmt, ...)
{
    if (err && errsize) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errsize, fmt, ap);
        va_end(ap);
    }
    return code;
}

/* Lowercase hex of n bytes into out (2n + 1 bytes, NUL-terminated). */
static void hex(const unsigned char *b, size_t n, char *out)
{
    gnutls_datum_t d = {(unsigned char *)b, (unsigned)n};
    size_t size = 2 * n + 1;
    gnutls_hex_encode(&d, out, &size); /* cannot fail: out holds 2n + 1 */
}

void ca_sha256_hex(const void *data, size_t len, char out[CA_HEX_SHA256])
{
    unsigned char d[32];
    gnutls_hash_fast(GNUTLS_DIG_SHA256, data, len, d);
    hex(d, sizeof(d), out);
}

bool ca_name_valid(const char *name)
{
    size_t len = strlen(name), label = 0;
    if (len == 0 || len >= CA_NAME_MAX)
        return false;
    for (size_t i = 0; i <= len; i++) {
        char ch = name[i];
        if (ch == '.' || ch == '\0') {
            if (label == 0 || label > 63 || name[i - 1] == '-')
                return false;
            label = 0;
            continue;
        }
        bool alnum =
            (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9');
        if (!alnum && !(ch == '-' && label > 0))
            return false;
        label++;
    }
    return true;
}

/* Reads a whole file of at most CA_PEM_MAX bytes; with `private`, refuses group/other access
 * (checked on the open file). */
int ca_read_file(const char *path, bool private, char **out, char *err, size_t errsize)
{
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return fail(err, errsize, errno == ENOENT ? -ENOENT : -EINVAL, "%s: %s", path,
                    strerror(errno));
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return fail(err, errsize, -EINVAL, "%s: not a regular file", path);
    }
    if (private && (st.st_mode & 077)) {
        close(fd);
        return fail(err, errsize, -EINVAL,
                    "%s: the private key is readable or writable by group or others (mode %04o); "
                    "restrict it to its owner: chmod 600 %s",
                    path, (unsigned)(st.st_mode & 07777), path);
    }
    if (st.st_size > CA_PEM_MAX) {
        close(fd);
        return fail(err, errsize, -EINVAL, "%s: larger than %d bytes", path, CA_PEM_MAX);
    }
    char *buf = malloc((size_t)st.st_size + 1);
    if (!buf) {
        close(fd);
        return -ENOMEM;
    }
    size_t got = 0;
    while (got < (size_t)st.st_size) {
        ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
        if (n <= 0) {
            free(buf);
            close(fd);
            return fail(err, errsize, -EINVAL, "%s: cannot read: %s", path,
                        n < 0 ? strerror(errno) : "short file");
        }
        got += (size_t)n;
    }
    close(fd);
    buf[got] = '\0';
    *out = buf;
    return 0;
}

/* The key id of a public key, for the subject/authority key identifiers. */
static int key_id(gnutls_pubkey_t pub, unsigned char *id, size_t *len)
{
    return gnutls_pubkey_get_key_id(pub, GNUTLS_KEYID_USE_SHA1, id, len);
}

/* Writes `d` to dir/name with O_EXCL and `mode`. */
static int write_new(const char *dir, const char *name, const gnutls_datum_t *d, mode_t mode,
                     char *path, size_t pathsize, char *err, size_t errsize)
{
    if ((size_t)snprintf(path, pathsize, "%s/%s", dir, name) >= pathsize)
        return fail(err, errsize, -ENAMETOOLONG, "%s: path too long", dir);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd < 0)
        return fail(err, errsize, errno == EEXIST ? -EEXIST : -EIO, "%s: %s%s", path,
                    strerror(errno),
                    errno == EEXIST ? " (an existing CA is never overwritten)" : "");
    if (fchmod(fd, mode) < 0 || write(fd, d->data, d->size) != (ssize_t)d->size || fsync(fd) < 0) {
        int e = errno;
        close(fd);
        unlink(path);
        return fail(err, errsize, -EIO, "%s: cannot write: %s", path, strerror(e));
    }
    close(fd);
    return 0;
}

int ca_init_dir(const char *dir, const char *cn, long days, long long now, char *err,
                size_t errsize)
{
    if (mkdir(dir, 0700) < 0 && errno != EEXIST)
        return fail(err, errsize, -EIO, "%s: cannot create the folder: %s", dir, strerror(errno));
    char kpath[4096], cpath[4096];
    snprintf(kpath, sizeof(kpath), "%s/ca.key", dir);
    snprintf(cpath, sizeof(cpath), "%s/ca.pem", dir);
    if (access(kpath, F_OK) == 0 || access(cpath, F_OK) == 0)
        return fail(err, errsize, -EEXIST,
                    "%s: holds a CA already (ca.pem or ca.key); an "
                    "existing CA is never overwritten",
                    dir);
    gnutls_x509_privkey_t xkey = NULL;
    gnutls_privkey_t key = NULL;
    gnutls_pubkey_t pub = NULL;
    gnutls_x509_crt_t crt = NULL;
    gnutls_datum_t kd = {NULL, 0}, cd = {NULL, 0};
    int rc = -EIO;
    unsigned char serial[17], id[64];
    size_t idlen = sizeof(id);
    serial[0] = 0;
    if (gnutls_x509_privkey_init(&xkey) < 0 ||
        gnutls_x509_privkey_generate(xkey, GNUTLS_PK_ECDSA,
                                     GNUTLS_CURVE_TO_BITS(GNUTLS_ECC_CURVE_SECP256R1), 0) < 0 ||
        gnutls_x509_privkey_export2_pkcs8(xkey, GNUTLS_X509_FMT_PEM, NULL, GNUTLS_PKCS_PLAIN, &kd) <
            0 ||
        gnutls_privkey_init(&key) < 0 || gnutls_privkey_import_x509(key, xkey, 0) < 0 ||
        gnutls_pubkey_init(&pub) < 0 || gnutls_pubkey_import_privkey(pub, key, 0, 0) < 0 ||
        key_id(pub, id, &idlen) < 0 || gnutls_rnd(GNUTLS_RND_NONCE, serial + 1, 16) < 0 ||
        gnutls_x509_crt_init(&crt) < 0 || gnutls_x509_crt_set_version(crt, 3) < 0 ||
        gnutls_x509_crt_set_serial(crt, serial, sizeof(serial)) < 0 ||
        gnutls_x509_crt_set_dn_by_oid(crt, GNUTLS_OID_X520_COMMON_NAME, 0, cn,
                                      (unsigned)strlen(cn)) < 0 ||
        gnutls_x509_crt_set_activation_time(crt, (time_t)(now - CA_BACKDATE_S)) < 0 ||
        gnutls_x509_crt_set_expiration_time(crt, (time_t)(now + days * 86400LL)) < 0 ||
        gnutls_x509_crt_set_basic_constraints(crt, 1, -1) < 0 ||
        gnutls_x509_crt_set_key_usage(crt, GNUTLS_KEY_KEY_CERT_SIGN | GNUTLS_KEY_CRL_SIGN) < 0 ||
        gnutls_x509_crt_set_pubkey(crt, pub) < 0 ||
        gnutls_x509_crt_set_subject_key_id(crt, id, idlen) < 0 ||
        gnutls_x509_crt_privkey_sign(crt, crt, key, GNUTLS_DIG_SHA256, 0) < 0 ||
        gnutls_x509_crt_export2(crt, GNUTLS_X509_FMT_PEM, &cd) < 0) {
        fail(err, errsize, -EIO, "%s: GnuTLS could not make the CA", dir);
        goto out;
    }
    if ((rc = write_new(dir, "ca.key", &kd, 0600, kpath, sizeof(kpath), err, errsize)) < 0)
        goto out;
    if ((rc = write_new(dir, "ca.pem", &cd, 0644, cpath, sizeof(cpath), err, errsize)) < 0) {
        unlink(kpath);
        goto out;
    }
    rc = 0;
out:
    if (kd.data) {
        gnutls_memset(kd.data, 0, kd.size);
        gnutls_free(kd.data);
    }
    gnutls_free(cd.data);
    if (crt)
        gnutls_x509_crt_deinit(crt);
    if (pub)
        gnutls_pubkey_deinit(pub);
    if (key)
        gnutls_privkey_deinit(key);
    if (xkey)
        gnutls_x509_privkey_deinit(xkey);
    return rc;
}

void ca_free(struct ca *ca)
{
    if (!ca)
        return;
    if (ca->crt)
        gnutls_x509_crt_deinit(ca->crt);
    if (ca->key)
        gnutls_privkey_deinit(ca->key);
    free(ca->pem);
    free(ca);
}

const char *ca_pem(const struct ca *ca) { return ca->pem; }

int ca_load(const char *cert_path, const char *key_path, struct ca **out, char *err, size_t errsize)
{
    *out = NULL;
    struct ca *ca = calloc(1, sizeof(*ca));
    if (!ca)
        return -ENOMEM;
    char *keytext = NULL;
    gnutls_pubkey_t a = NULL, b = NULL;
    int rc = ca_read_file(cert_path, false, &ca->pem, err, errsize);
    if (rc < 0)
        goto out;
    if ((rc = ca_read_file(key_path, true, &keytext, err, errsize)) < 0)
        goto out;
    rc = -EINVAL;
    gnutls_datum_t cd = {(unsigned char *)ca->pem, (unsigned)strlen(ca->pem)};
    gnutls_datum_t kd = {(unsigned char *)keytext, (unsigned)strlen(keytext)};
    if (gnutls_x509_crt_init(&ca->crt) < 0 ||
        gnutls_x509_crt_import(ca->crt, &cd, GNUTLS_X509_FMT_PEM) < 0) {
        fail(err, errsize, rc, "%s: not a PEM certificate", cert_path);
        goto out;
    }
    unsigned critical = 0, isca = 0;
    if (gnutls_x509_crt_get_basic_constraints(ca->crt, &critical, &isca, NULL) < 0 || !isca) {
        fail(err, errsize, rc, "%s: not a CA certificate (basicConstraints CA:TRUE missing)",
             cert_path);
        goto out;
    }
    if (gnutls_privkey_init(&ca->key) < 0 ||
        gnutls_privkey_import_x509_raw(ca->key, &kd, GNUTLS_X509_FMT_PEM, NULL, 0) < 0) {
        fail(err, errsize, rc, "%s: not an unencrypted PEM private key", key_path);
        goto out;
    }
    unsigned char ida[64], idb[64];
    size_t la = sizeof(ida), lb = sizeof(idb);
    if (gnutls_pubkey_init(&a) < 0 || gnutls_pubkey_import_privkey(a, ca->key, 0, 0) < 0 ||
        gnutls_pubkey_init(&b) < 0 || gnutls_pubkey_import_x509(b, ca->crt, 0) < 0 ||
        gnutls_pubkey_get_key_id(a, 0, ida, &la) < 0 ||
        gnutls_pubkey_get_key_id(b, 0, idb, &lb) < 0 || la != lb || memcmp(ida, idb, la) != 0) {
        fail(err, errsize, rc, "%s: is not the key of the CA certificate %s", key_path, cert_path);
        goto out;
    }
    rc = 0;
out:
    if (keytext) {
        gnutls_memset(keytext, 0, strlen(keytext));
        free(keytext);
    }
    if (a)
        gnutls_pubkey_deinit(a);
    if (b)
        gnutls_pubkey_deinit(b);
    if (rc < 0)
        ca_free(ca);
    else
        *out = ca;
    return rc;
}

void ca_csr_release(struct ca_csr *c)
{
    if (c->pub)
        gnutls_pubkey_deinit(c->pub);
    c->pub = NULL;
}

int ca_csr_parse(const char *pem, size_t len, struct ca_csr *out, char *err, size_t errsize)
{
    memset(out, 0, sizeof(*out));
    if (len > CA_PEM_MAX)
        return fail(err, errsize, -EINVAL, "csr: larger than %d bytes", CA_PEM_MAX);
    gnutls_x509_crq_t crq = NULL;
    gnutls_pubkey_t pub = NULL;
    gnutls_datum_t der = {NULL, 0};
    int rc = -EINVAL;
    gnutls_datum_t d = {(unsigned char *)pem, (unsigned)len};
    if (gnutls_x509_crq_init(&crq) < 0)
        return -ENOMEM;
    if (gnutls_x509_crq_import(crq, &d, GNUTLS_X509_FMT_PEM) < 0) {
        fail(err, errsize, rc, "csr: not a PEM certificate request (PKCS#10)");
        goto out;
    }
    if (gnutls_x509_crq_verify(crq, 0) < 0) {
        fail(err, errsize, rc, "csr: its signature does not verify (no proof of possession)");
        goto out;
    }
    size_t n = sizeof(out->cn);
    if (gnutls_x509_crq_get_dn_by_oid(crq, GNUTLS_OID_X520_COMMON_NAME, 0, 0, out->cn, &n) < 0 ||
        !ca_name_valid(out->cn)) {
        fail(err, errsize, rc, "csr: its subject has no CN that is a DNS host name");
        goto out;
    }
    if (gnutls_pubkey_init(&pub) < 0 || gnutls_pubkey_import_x509_crq(pub, crq, 0) < 0 ||
        gnutls_pubkey_export2(pub, GNUTLS_X509_FMT_DER, &der) < 0) {
        fail(err, errsize, rc, "csr: its public key cannot be read");
        goto out;
    }
    unsigned bits = 0;
    int alg = gnutls_pubkey_get_pk_algorithm(pub, &bits);
    if (alg == GNUTLS_PK_RSA && bits >= 2048) {
        out->rsa = true;
    } else if (alg != GNUTLS_PK_ECDSA && alg != GNUTLS_PK_EDDSA_ED25519) {
        fail(err, errsize, rc, "csr: the key must be ECDSA, Ed25519 or RSA of 2048 bits or more");
        goto out;
    }
    ca_sha256_hex(der.data, der.size, out->spki);
    out->pub = pub;
    pub = NULL;
    rc = 0;
out:
    gnutls_free(der.data);
    if (pub)
        gnutls_pubkey_deinit(pub);
    gnutls_x509_crq_deinit(crq);
    return rc;
}

void ca_issued_release(struct ca_issued *i)
{
    free(i->pem);
    memset(i, 0, sizeof(*i));
}

int ca_sign(struct ca *ca, const struct ca_csr *csr, const char *name, long long now,
            long lifetime_days, struct ca_issued *out, char *err, size_t errsize)
{
    memset(out, 0, sizeof(*out));
    gnutls_x509_crt_t crt = NULL;
    gnutls_datum_t pem = {NULL, 0}, der = {NULL, 0}, issuer = {NULL, 0};
    unsigned char serial[17], id[64], caid[64];
    size_t idlen = sizeof(id), caidlen = sizeof(caid);
    unsigned usage = GNUTLS_KEY_DIGITAL_SIGNATURE | (csr->rsa ? GNUTLS_KEY_KEY_ENCIPHERMENT : 0);
    int rc = -EIO;
    serial[0] = 0; /* a positive 128-bit integer */
    unsigned nl = (unsigned)strlen(name);
    /* Never beyond the CA itself: a chain with an expired CA does not verify. */
    long long until = now + lifetime_days * 86400LL;
    long long ca_until = (long long)gnutls_x509_crt_get_expiration_time(ca->crt);
    if (ca_until > 0 && until > ca_until)
        until = ca_until;
    if (until <= now)
        return fail(err, errsize, -EIO, "the fleet CA has expired: it cannot sign");
    if (gnutls_rnd(GNUTLS_RND_NONCE, serial + 1, 16) < 0 || gnutls_x509_crt_init(&crt) < 0 ||
        gnutls_x509_crt_set_version(crt, 3) < 0 ||
        gnutls_x509_crt_set_serial(crt, serial, sizeof(serial)) < 0 ||
        gnutls_x509_crt_set_dn_by_oid(crt, GNUTLS_OID_X520_COMMON_NAME, 0, name, nl) < 0 ||
        gnutls_x509_crt_set_subject_alt_name(crt, GNUTLS_SAN_DNSNAME, name, nl, GNUTLS_FSAN_SET) <
            0 ||
        gnutls_x509_crt_set_key_purpose_oid(crt, GNUTLS_KP_TLS_WWW_SERVER, 0) < 0 ||
        gnutls_x509_crt_set_key_purpose_oid(crt, GNUTLS_KP_TLS_WWW_CLIENT, 0) < 0 ||
        gnutls_x509_crt_set_key_usage(crt, usage) < 0 ||
        gnutls_x509_crt_set_basic_constraints(crt, 0, -1) < 0 ||
        gnutls_x509_crt_set_activation_time(crt, (time_t)(now - CA_BACKDATE_S)) < 0 ||
        gnutls_x509_crt_set_expiration_time(crt, (time_t)until) < 0 ||
        gnutls_x509_crt_set_pubkey(crt, csr->pub) < 0 || key_id(csr->pub, id, &idlen) < 0 ||
        gnutls_x509_crt_set_subject_key_id(crt, id, idlen) < 0) {
        fail(err, errsize, rc, "%s: GnuTLS could not build the certificate", name);
        goto out;
    }
    if (gnutls_x509_crt_get_subject_key_id(ca->crt, caid, &caidlen, NULL) >= 0)
        gnutls_x509_crt_set_authority_key_id(crt, caid, caidlen);
    if (gnutls_x509_crt_privkey_sign(crt, ca->crt, ca->key, GNUTLS_DIG_SHA256, 0) < 0 ||
        gnutls_x509_crt_export2(crt, GNUTLS_X509_FMT_PEM, &pem) < 0 ||
        gnutls_x509_crt_export2(crt, GNUTLS_X509_FMT_DER, &der) < 0 ||
        gnutls_x509_crt_get_issuer_dn3(crt, &issuer, 0) < 0) {
        fail(err, errsize, rc, "%s: GnuTLS could not sign the certificate", name);
        goto out;
    }
    if (!(out->pem = malloc(pem.size + 1))) {
        rc = -ENOMEM;
        goto out;
    }
    memcpy(out->pem, pem.data, pem.size);
    out->pem[pem.size] = '\0';
    ca_sha256_hex(der.data, der.size, out->fingerprint);
    unsigned char got[32];
    size_t gotlen = sizeof(got);
    if (gnutls_x509_crt_get_serial(crt, got, &gotlen) < 0 || gotlen > 20)
        gotlen = 0;
    size_t skip = 0; /* the DER sign byte is not part of the number */
    while (skip + 1 < gotlen && got[skip] == 0)
        skip++;
    hex(got + skip, gotlen - skip, out->serial);
    snprintf(out->issuer, sizeof(out->issuer), "%.*s", (int)issuer.size, (char *)issuer.data);
    out->not_before = (long long)gnutls_x509_crt_get_activation_time(crt);
    out->not_after = (long long)gnutls_x509_crt_get_expiration_time(crt);
    rc = 0;
out:
    gnutls_free(pem.data);
    gnutls_free(der.data);
    gnutls_free(issuer.data);
    if (crt)
        gnutls_x509_crt_deinit(crt);
    if (rc < 0)
        ca_issued_release(out);
    return rc;
}
