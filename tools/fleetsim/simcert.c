/*
 * simcert.c — see simcert.h.
 */
#include "simcert.h"

#include <errno.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct simcert_ca {
    gnutls_x509_crt_t crt;
    gnutls_x509_privkey_t key;
    char *pem;
    unsigned long long serial;
};

static char *read_pem(const char *path, char *err, size_t errsize)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errsize, "%s: %s", path, strerror(errno));
        return NULL;
    }
    char *buf = malloc(65537);
    size_t n = buf ? fread(buf, 1, 65536, f) : 0;
    fclose(f);
    if (!buf || n == 0 || n == 65536) {
        snprintf(err, errsize, "%s: empty, unreadable or over 64 KiB", path);
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    return buf;
}

int simcert_ca_load(const char *cert_path, const char *key_path, struct simcert_ca **out, char *err,
                    size_t errsize)
{
    *out = NULL;
    struct simcert_ca *ca = calloc(1, sizeof(*ca));
    char *keypem = NULL;
    if (!ca)
        return -ENOMEM;
    ca->serial = ((unsigned long long)time(NULL) << 20);
    int rc = -EINVAL, g;
    if (!(ca->pem = read_pem(cert_path, err, errsize)) ||
        !(keypem = read_pem(key_path, err, errsize)))
        goto fail;
    gnutls_datum_t d = {(unsigned char *)ca->pem, (unsigned)strlen(ca->pem)};
    if ((g = gnutls_x509_crt_init(&ca->crt)) ||
        (g = gnutls_x509_crt_import(ca->crt, &d, GNUTLS_X509_FMT_PEM))) {
        snprintf(err, errsize, "%s: %s", cert_path, gnutls_strerror(g));
        goto fail;
    }
    gnutls_datum_t k = {(unsigned char *)keypem, (unsigned)strlen(keypem)};
    if ((g = gnutls_x509_privkey_init(&ca->key)) ||
        (g = gnutls_x509_privkey_import2(ca->key, &k, GNUTLS_X509_FMT_PEM, NULL, 0))) {
        snprintf(err, errsize, "%s: %s", key_path, gnutls_strerror(g));
        goto fail;
    }
    free(keypem);
    *out = ca;
    return 0;
fail:
    free(keypem);
    simcert_ca_free(ca);
    return rc;
}

void simcert_ca_free(struct simcert_ca *ca)
{
    if (!ca)
        return;
    if (ca->crt)
        gnutls_x509_crt_deinit(ca->crt);
    if (ca->key)
        gnutls_x509_privkey_deinit(ca->key);
    free(ca->pem);
    free(ca);
}

const char *simcert_ca_pem(const struct simcert_ca *ca) { return ca->pem; }

static char *datum_to_string(gnutls_datum_t *d)
{
    char *s = malloc(d->size + 1);
    if (s) {
        memcpy(s, d->data, d->size);
        s[d->size] = '\0';
    }
    gnutls_free(d->data);
    return s;
}

int simcert_issue(struct simcert_ca *ca, const char *host, char **cert_pem, char **key_pem,
                  char *err, size_t errsize)
{
    gnutls_x509_privkey_t key = NULL;
    gnutls_x509_crt_t crt = NULL;
    int g;
    *cert_pem = *key_pem = NULL;
    unsigned char serial[8];
    unsigned long long sn = ++ca->serial;
    for (int i = 0; i < 8; i++)
        serial[i] = (unsigned char)(sn >> (56 - 8 * i));
    serial[0] &= 0x7f; /* positive */
    time_t now = time(NULL);

    if ((g = gnutls_x509_privkey_init(&key)) ||
        (g = gnutls_x509_privkey_generate(key, GNUTLS_PK_ECDSA,
                                          GNUTLS_CURVE_TO_BITS(GNUTLS_ECC_CURVE_SECP256R1), 0)) ||
        (g = gnutls_x509_crt_init(&crt)) || (g = gnutls_x509_crt_set_version(crt, 3)) ||
        (g = gnutls_x509_crt_set_serial(crt, serial, sizeof(serial))) ||
        (g = gnutls_x509_crt_set_activation_time(crt, now - 3600)) ||
        (g = gnutls_x509_crt_set_expiration_time(crt, now + 30 * 86400)) ||
        (g = gnutls_x509_crt_set_dn_by_oid(crt, GNUTLS_OID_X520_COMMON_NAME, 0, host,
                                           (unsigned)strlen(host))) ||
        (g = gnutls_x509_crt_set_subject_alt_name(crt, GNUTLS_SAN_DNSNAME, host,
                                                  (unsigned)strlen(host), GNUTLS_FSAN_SET)) ||
        (g = gnutls_x509_crt_set_key(crt, key)) ||
        (g = gnutls_x509_crt_set_basic_constraints(crt, 0, -1)) ||
        (g = gnutls_x509_crt_set_key_usage(crt, GNUTLS_KEY_DIGITAL_SIGNATURE)) ||
        (g = gnutls_x509_crt_set_key_purpose_oid(crt, GNUTLS_KP_TLS_WWW_SERVER, 0)) ||
        (g = gnutls_x509_crt_set_key_purpose_oid(crt, GNUTLS_KP_TLS_WWW_CLIENT, 0)) ||
        (g = gnutls_x509_crt_sign2(crt, ca->crt, ca->key, GNUTLS_DIG_SHA256, 0)))
        goto fail;
    gnutls_datum_t c, k;
    if ((g = gnutls_x509_crt_export2(crt, GNUTLS_X509_FMT_PEM, &c)))
        goto fail;
    *cert_pem = datum_to_string(&c);
    if ((g = gnutls_x509_privkey_export2(key, GNUTLS_X509_FMT_PEM, &k)))
        goto fail;
    *key_pem = datum_to_string(&k);
    gnutls_x509_crt_deinit(crt);
    gnutls_x509_privkey_deinit(key);
    if (!*cert_pem || !*key_pem) {
        free(*cert_pem);
        free(*key_pem);
        *cert_pem = *key_pem = NULL;
        return -ENOMEM;
    }
    return 0;
fail:
    snprintf(err, errsize, "certificate for %s: %s", host, gnutls_strerror(g));
    free(*cert_pem);
    *cert_pem = NULL;
    if (crt)
        gnutls_x509_crt_deinit(crt);
    if (key)
        gnutls_x509_privkey_deinit(key);
    return -EIO;
}
