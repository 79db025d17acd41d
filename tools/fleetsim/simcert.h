/*
 * simcert: issues host certificates in-process with GnuTLS, signed by the fleet CA that
 * tools/gen-certs made. The fleet simulator needs thousands of identities; one openssl process
 * per host would take minutes, GnuTLS takes a fraction of a millisecond per certificate.
 */
#ifndef TLSGATE_SIMCERT_H
#define TLSGATE_SIMCERT_H

#include <stddef.h>

struct simcert_ca;

/* Loads the CA certificate and key (PEM files). Returns 0, or -errno with the reason in err. */
int simcert_ca_load(const char *cert_path, const char *key_path, struct simcert_ca **out, char *err,
                    size_t errsize);
void simcert_ca_free(struct simcert_ca *ca);

/* The CA certificate as PEM (owned by the CA). */
const char *simcert_ca_pem(const struct simcert_ca *ca);

/*
 * Issues a certificate for `host` (CN and SAN dNSName = host, serverAuth + clientAuth, ECDSA
 * P-256, valid from an hour ago for 30 days). *cert_pem and *key_pem are malloc'd PEM strings.
 */
int simcert_issue(struct simcert_ca *ca, const char *host, char **cert_pem, char **key_pem,
                  char *err, size_t errsize);

#endif
