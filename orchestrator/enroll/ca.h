/*
 * ca: the fleet CA of tlsgate enrollment (issue 12), with GnuTLS — making one
 * (`tlsgate enroll ca init`), loading a given one, reading a collector's certificate request
 * (PKCS#10) and signing it. No SQL and no network: enroll.c decides, domain/identity.c stores.
 *
 * What an issued certificate holds is fixed here, whatever the request asked for (the protocol,
 * briefs' enroll-protocol): X.509 v3, CN=name, SAN dNSName=name, EKU serverAuth+clientAuth,
 * keyUsage digitalSignature (+keyEncipherment for RSA), a random 128-bit serial, notBefore
 * now-5 min, notAfter now+lifetime.
 *
 * Functions return 0 or -errno with a message naming the input at fault in (err, errsize).
 */
#ifndef TLSGATE_CA_H
#define TLSGATE_CA_H

#include <stdbool.h>
#include <stddef.h>

/* A CA certificate or key file, a request: at most this many bytes. */
#define CA_PEM_MAX (64 * 1024)
/* Hex SHA-256 (fingerprints, SPKI hashes) with its NUL. */
#define CA_HEX_SHA256 65
/* A host name (DNS, RFC 1123) with its NUL. */
#define CA_NAME_MAX 254
/* notBefore is set this far back, for clocks a little behind. */
#define CA_BACKDATE_S 300

struct ca;

/*
 * `tlsgate enroll ca init`: a new fleet CA in `dir` (made 0700 when missing): ca.key (ECDSA
 * P-256, mode 0600, PKCS#8) and ca.pem (self-signed, CA:TRUE, keyCertSign+cRLSign, `days`
 * long, CN=`cn`). An existing ca.pem or ca.key is never overwritten (-EEXIST); on any failure
 * nothing is left behind.
 */
int ca_init_dir(const char *dir, const char *cn, long days, long long now, char *err,
                size_t errsize);

/*
 * Loads a CA: the certificate (CA:TRUE) and its unencrypted key, which must be readable by
 * its owner only (mode & 077 == 0) and belong to the certificate. 0 and *out, or -EINVAL /
 * -ENOENT / -ENOMEM.
 */
int ca_load(const char *cert_path, const char *key_path, struct ca **out, char *err,
            size_t errsize);
void ca_free(struct ca *ca);
/* The CA's certificate in PEM (what an answer's "ca" carries). */
const char *ca_pem(const struct ca *ca);

/* A checked certificate request. */
struct ca_csr {
    char cn[CA_NAME_MAX];     /* the subject's CN */
    char spki[CA_HEX_SHA256]; /* SHA-256 of the SubjectPublicKeyInfo (DER) */
    bool rsa;                 /* an RSA key (keyEncipherment too) */
    void *pub;                /* gnutls_pubkey_t, owned */
};

/*
 * Reads a PEM PKCS#10 request: it must parse, carry a valid self-signature (proof of
 * possession), a CN that is a DNS host name, and an ECDSA (P-256/P-384/P-521), Ed25519 or RSA
 * (2048 bits or more) key. 0, or -EINVAL with the reason in err.
 */
int ca_csr_parse(const char *pem, size_t len, struct ca_csr *out, char *err, size_t errsize);
void ca_csr_release(struct ca_csr *c);

/* A certificate signed by ca_sign. */
struct ca_issued {
    char *pem; /* malloc'd */
    char fingerprint[CA_HEX_SHA256];
    char serial[41];  /* hex */
    char issuer[512]; /* RFC 4514 */
    long long not_before, not_after;
};

/* Signs a certificate for `name` with the request's key (see the top). 0 or -EIO/-ENOMEM. */
int ca_sign(struct ca *ca, const struct ca_csr *csr, const char *name, long long now,
            long lifetime_days, struct ca_issued *out, char *err, size_t errsize);
void ca_issued_release(struct ca_issued *i);

/* Reads a PEM file of at most CA_PEM_MAX bytes (malloc'd, NUL-terminated); with `private`,
 * a file its group or others may read or write is refused (-EINVAL). */
int ca_read_file(const char *path, bool private, char **out, char *err, size_t errsize);

/* Hex SHA-256 of `len` bytes (a certificate's DER: its fingerprint). */
void ca_sha256_hex(const void *data, size_t len, char out[CA_HEX_SHA256]);

/* True when `name` is a DNS host name (labels of letters, digits and inner hyphens). */
bool ca_name_valid(const char *name);

#endif
