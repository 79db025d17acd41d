/*
 * certstore: which of several certificates this host serves (issue 12, "bring your own PKI").
 *
 * On Windows the collector can take its identity from a certificate store (LocalMachine\My,
 * certstore-win.c) instead of PEM files. A store often holds several certificates (an expired
 * one next to its renewal, AD CS "Workstation Authentication" next to "Computer", a web server's
 * certificate for another name); this module picks one, platform-neutral, so it is tested on
 * every platform with real certificates. A candidate is eligible when all of these hold:
 *
 *   - a SAN dNSName equals the host name (ASCII case-insensitive, no wildcards); the subject CN
 *     counts only when the certificate has no dNSName at all (RFC 6125 6.4.4);
 *   - an extendedKeyUsage extension lists serverAuth (1.3.6.1.5.5.7.3.1). A certificate without
 *     the extension, or with anyExtendedKeyUsage only, is refused: fail closed;
 *   - a keyUsage extension, when present, includes digitalSignature (every TLS 1.2 ECDHE and
 *     TLS 1.3 handshake signs with the key);
 *   - it is valid now (notBefore <= now < notAfter);
 *   - the store has its private key.
 *
 * Among the eligible ones, a certificate that also lists clientAuth (AD CS "Computer" /
 * "Machine" template) wins over one with serverAuth only: the same identity can then present
 * itself as a client (tlsgate enrollment's renewal over mutual TLS). Then the latest notAfter
 * wins; then the latest notBefore; then the order given (deterministic). clientAuth alone
 * ("Workstation Authentication") never serves: a TLS server needs serverAuth.
 *
 * Every candidate gets one log line (chosen, eligible but not chosen, or rejected with every
 * reason), named by its SHA-1 thumbprint as certutil and the certificates console show it.
 */
#ifndef TLSGATE_CERTSTORE_H
#define TLSGATE_CERTSTORE_H

#include <stdbool.h>
#include <stddef.h>

#include <gnutls/x509.h>

struct certstore_candidate {
    const unsigned char *der; /* the certificate, DER */
    size_t der_len;
    bool has_key; /* the store holds (and lets us use) its private key */
};

/* 40 hex digits, upper case, and the NUL. */
#define CERTSTORE_THUMB_SIZE 41

/*
 * Chooses the certificate to serve for `host` at `now` (epoch seconds) among `n` candidates
 * from the store named `store` (used in messages only). `log` (may be NULL) gets one line per
 * candidate and one for the choice. Returns the index chosen (its thumbprint in `thumb` when not
 * NULL), or -1 with a message in err naming the store, the host and each candidate's reasons.
 */
int certstore_select(const struct certstore_candidate *cands, size_t n, const char *host,
                     long long now, const char *store, void (*log)(void *arg, const char *line),
                     void *log_arg, char thumb[CERTSTORE_THUMB_SIZE], char *err, size_t errsize);

/* The SHA-1 thumbprint of a DER certificate (upper-case hex); 0 or -1. */
int certstore_thumbprint(const unsigned char *der, size_t der_len,
                         char thumb[CERTSTORE_THUMB_SIZE]);

/* A store name: "LocalMachine\\NAME" or "CurrentUser\\NAME", NAME of 1..64 letters and digits
 * (My, WebHosting, ...), the location in any case. 0 or -1. The collector checks its config with
 * it on every platform. */
int certstore_check_name(const char *store);

/*
 * Does `host` name this certificate? RFC 6125: its dNSNames, ASCII case-insensitive, the CN only
 * when it has none; a name with an embedded NUL never matches. `first` gets the first dNSName,
 * else the CN (*from_cn true then; from_cn may be NULL), "" when it names nothing. `host` may be
 * NULL: then only `first` is filled and the answer is false. The collector checks its own
 * certificate with it, and the store's candidates are judged with it.
 */
bool certstore_names_host(gnutls_x509_crt_t crt, const char *host, char *first, size_t firstsize,
                          bool *from_cn);

/* True when `s` starts with `prefix`, ASCII case-insensitive. */
bool certstore_prefix(const char *s, const char *prefix);

#ifdef _WIN32
/*
 * Windows (certstore-win.c): the identity from a system certificate store, "LocalMachine\\My"
 * (or "LocalMachine\\NAME", "CurrentUser\\NAME"). Enumerates the store, judges each certificate
 * by certstore_select (a candidate "has a key" when CryptAcquireCertificatePrivateKey opens it
 * through CNG for this account, silently), and returns the chosen certificate as PEM and a GnuTLS
 * key URL ("tlsgate-certstore:STORE;sha1=THUMB") that gnutls_privkey_import_url resolves to a key
 * that signs through NCryptSignHash: the key never leaves the Windows key store, so
 * non-exportable keys work. RSA (PKCS#1 v1.5 and PSS, TLS 1.2 and 1.3) and ECDSA P-256/384/521.
 * Returns 0, or -1 with err naming the store (and every candidate's reasons).
 */
int certstore_win_load(const char *store, const char *host, long long now,
                       void (*log)(void *arg, const char *line), void *log_arg, char **cert_pem,
                       char **key_url, char *err, size_t errsize);

/* This machine's DNS name (GetComputerNameExW, ComputerNameDnsFullyQualified), lower case, for
 * choosing a certificate when no --host is given; 0 or -1. */
int certstore_win_hostname(char *out, size_t size);
#endif

#endif
