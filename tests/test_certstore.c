/*
 * test_certstore.c — choosing the certificate to serve among a store's candidates
 * (collectors/certstore.c), with real certificates: tools/gen-certs makes the fleet CA and a
 * regular host certificate, the openssl CLI the variants a Windows LocalMachine\My store holds
 * (AD CS "Workstation Authentication" with clientAuth only, "Web Server" with serverAuth only,
 * another host's, no EKU, CN only, RSA for key encipherment only, short- and long-lived).
 * Dates are judged against a `now` the test gives, so expiry needs no forged dates.
 */
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "certstore.h"
#include "testutil.h"

#define HOST "host.example.test"
#define DAY 86400LL

static char *dir;

/* The certificates, made once in main(). Extension sections are in the config below. */
static const struct variant {
    const char *name, *ext, *cn, *days, *keyopt;
} variants[] = {
    {"machine", "both", HOST, "365", "ec"},       /* AD CS Computer: serverAuth + clientAuth */
    {"machine_short", "both", HOST, "30", "ec"},  /* the same, expiring sooner */
    {"webserver", "server", HOST, "700", "ec"},   /* serverAuth only, lives longest */
    {"workstation", "client", HOST, "700", "ec"}, /* clientAuth only */
    {"other", "other", "other.example.test", "700", "ec"},
    {"noeku", "noeku", HOST, "700", "ec"},
    {"cnonly", "cnonly", HOST, "365", "ec"},      /* no SAN at all: the CN counts */
    {"cn_san_other", "other", HOST, "700", "ec"}, /* CN is the host, SAN is not: no match */
    {"encipher", "encipher", HOST, "700", "rsa"}, /* keyUsage keyEncipherment only */
    {"upper", "upper", HOST, "365", "ec"},        /* SAN in upper case */
    {"anyeku", "anyeku", HOST, "700", "ec"},      /* anyExtendedKeyUsage only */
};
#define NVARIANTS (sizeof(variants) / sizeof(variants[0]))

static const char cnf[] = "[req]\n"
                          "distinguished_name = dn\n"
                          "prompt = no\n"
                          "[dn]\n"
                          "CN = unused\n"
                          "[both]\n"
                          "keyUsage = critical, digitalSignature\n"
                          "extendedKeyUsage = serverAuth, clientAuth\n"
                          "subjectAltName = DNS:" HOST "\n"
                          "[server]\n"
                          "extendedKeyUsage = serverAuth\n"
                          "subjectAltName = DNS:" HOST "\n"
                          "[client]\n"
                          "extendedKeyUsage = clientAuth\n"
                          "subjectAltName = DNS:" HOST "\n"
                          "[other]\n"
                          "extendedKeyUsage = serverAuth, clientAuth\n"
                          "subjectAltName = DNS:other.example.test, DNS:www.example.test\n"
                          "[noeku]\n"
                          "subjectAltName = DNS:" HOST "\n"
                          "[cnonly]\n"
                          "extendedKeyUsage = serverAuth, clientAuth\n"
                          "[encipher]\n"
                          "keyUsage = critical, keyEncipherment\n"
                          "extendedKeyUsage = serverAuth, clientAuth\n"
                          "subjectAltName = DNS:" HOST "\n"
                          "[upper]\n"
                          "extendedKeyUsage = serverAuth, clientAuth\n"
                          "subjectAltName = DNS:HOST.Example.TEST\n"
                          "[anyeku]\n"
                          "extendedKeyUsage = anyExtendedKeyUsage\n"
                          "subjectAltName = DNS:" HOST "\n";

static int make_variants(void)
{
    const char *names[] = {HOST, NULL};
    if (tu_gen_certs(dir, names) < 0)
        return -1;
    char path[4096];
    snprintf(path, sizeof(path), "%s/variants.cnf", dir);
    FILE *f = fopen(path, "w");
    if (!f || fputs(cnf, f) < 0 || fclose(f) != 0)
        return -1;
    for (size_t i = 0; i < NVARIANTS; i++) {
        const struct variant *v = &variants[i];
        char cmd[8192];
        snprintf(cmd, sizeof(cmd),
                 "cd '%s' && openssl req -new -x509 -config variants.cnf -extensions %s %s "
                 "-nodes -keyout %s.key -out %s.der -outform DER -subj '/CN=%s' -CA ca.pem "
                 "-CAkey ca.key -days %s 2>%s.log",
                 dir, v->ext,
                 strcmp(v->keyopt, "rsa") == 0 ? "-newkey rsa:2048"
                                               : "-newkey ec -pkeyopt ec_paramgen_curve:P-256",
                 v->name, v->name, v->cn, v->days, v->name);
        if (system(cmd) != 0) {
            fprintf(stderr, "openssl failed for %s (see %s/%s.log)\n", v->name, dir, v->name);
            return -1;
        }
    }
    return 0;
}

/* The DER of a variant (or of gen-certs' HOST.pem when name is "gencerts"). */
static unsigned char *der_of(const char *name, size_t *len)
{
    char path[4096];
    if (strcmp(name, "gencerts") == 0) {
        snprintf(path, sizeof(path), "%s/%s.pem", dir, HOST);
        size_t plen;
        char *pem = tu_read_file(path, &plen);
        gnutls_x509_crt_t crt;
        gnutls_datum_t d = {(unsigned char *)pem, (unsigned)plen}, out;
        ck_assert_int_eq(gnutls_x509_crt_init(&crt), 0);
        ck_assert_int_eq(gnutls_x509_crt_import(crt, &d, GNUTLS_X509_FMT_PEM), 0);
        ck_assert_int_eq(gnutls_x509_crt_export2(crt, GNUTLS_X509_FMT_DER, &out), 0);
        gnutls_x509_crt_deinit(crt);
        free(pem);
        unsigned char *der = malloc(out.size);
        memcpy(der, out.data, out.size);
        *len = out.size;
        gnutls_free(out.data);
        return der;
    }
    snprintf(path, sizeof(path), "%s/%s.der", dir, name);
    return (unsigned char *)tu_read_file(path, len);
}

/* A store built from names; "name!" means the store has no private key for it. */
struct store {
    struct certstore_candidate c[16];
    size_t n;
    char log[16384];
    char err[4096];
    char thumb[CERTSTORE_THUMB_SIZE];
};

static void collect(void *arg, const char *line)
{
    struct store *s = arg;
    size_t len = strlen(s->log);
    snprintf(s->log + len, sizeof(s->log) - len, "%s\n", line);
}

static int pick(struct store *s, long long now, const char *const *names)
{
    memset(s, 0, sizeof(*s));
    for (; *names; names++) {
        char name[64];
        snprintf(name, sizeof(name), "%s", *names);
        size_t nl = strlen(name);
        bool has_key = !(nl && name[nl - 1] == '!');
        if (!has_key)
            name[nl - 1] = '\0';
        s->c[s->n].der = der_of(name, &s->c[s->n].der_len);
        s->c[s->n].has_key = has_key;
        s->n++;
    }
    return certstore_select(s->c, s->n, HOST, now, "LocalMachine\\My", collect, s, s->thumb, s->err,
                            sizeof(s->err));
}

static void release(struct store *s)
{
    for (size_t i = 0; i < s->n; i++)
        free((void *)s->c[i].der);
}

static size_t count_lines(const char *text, const char *needle)
{
    size_t n = 0;
    for (const char *p = text; (p = strstr(p, needle)); p += strlen(needle))
        n++;
    return n;
}

static long long now_s(void) { return (long long)time(NULL); }

START_TEST(machine_cert_wins_over_the_rest)
{
    struct store s;
    const char *names[] = {"workstation", "other",  "webserver",    "noeku", "machine",
                           "encipher",    "anyeku", "cn_san_other", NULL};
    ck_assert_int_eq(pick(&s, now_s(), names), 4);
    /* One line per candidate, each naming its thumbprint. */
    ck_assert_uint_eq(count_lines(s.log, "LocalMachine\\My: certificate "), 8);
    ck_assert_ptr_nonnull(strstr(s.log, "chosen for " HOST));
    ck_assert_ptr_nonnull(strstr(s.log, "clientAuth only"));
    ck_assert_ptr_nonnull(strstr(s.log, "issued to other.example.test, not " HOST));
    ck_assert_ptr_nonnull(strstr(s.log, "no extendedKeyUsage"));
    ck_assert_ptr_nonnull(strstr(s.log, "keyUsage lacks digitalSignature"));
    ck_assert_ptr_nonnull(strstr(s.log, "extendedKeyUsage lacks serverAuth"));
    /* serverAuth only is eligible, yet the one with clientAuth too wins though it expires
     * sooner. */
    ck_assert_ptr_nonnull(strstr(s.log, "eligible, not chosen (clientAuth too:"));
    char thumb[CERTSTORE_THUMB_SIZE];
    ck_assert_int_eq(certstore_thumbprint(s.c[4].der, s.c[4].der_len, thumb), 0);
    ck_assert_str_eq(s.thumb, thumb);
    ck_assert_ptr_nonnull(strstr(s.log, thumb));
    ck_assert_uint_eq(strlen(thumb), 40);
    release(&s);
}
END_TEST

START_TEST(latest_not_after_wins)
{
    struct store s;
    const char *names[] = {"machine_short", "machine", "gencerts", NULL};
    /* gen-certs' own host certificate (825 days, both EKUs) outlives the 365-day one. */
    ck_assert_int_eq(pick(&s, now_s(), names), 2);
    ck_assert_uint_eq(count_lines(s.log, "eligible, not chosen (a later notAfter:"), 2);
    release(&s);
    const char *two[] = {"machine", "machine_short", NULL};
    ck_assert_int_eq(pick(&s, now_s(), two), 0);
    release(&s);
}
END_TEST

START_TEST(serverauth_only_when_nothing_better)
{
    struct store s;
    const char *names[] = {"workstation", "webserver", NULL};
    ck_assert_int_eq(pick(&s, now_s(), names), 1);
    release(&s);
}
END_TEST

START_TEST(names_per_rfc6125)
{
    struct store s;
    /* No SAN: the CN is the name. */
    const char *cn[] = {"cnonly", NULL};
    ck_assert_int_eq(pick(&s, now_s(), cn), 0);
    release(&s);
    /* A SAN that does not name the host: the CN is not looked at. */
    const char *san[] = {"cn_san_other", NULL};
    ck_assert_int_eq(pick(&s, now_s(), san), -1);
    ck_assert_ptr_nonnull(strstr(s.err, "issued to other.example.test"));
    release(&s);
    /* Case does not matter. */
    const char *upper[] = {"upper", NULL};
    ck_assert_int_eq(pick(&s, now_s(), upper), 0);
    release(&s);
}
END_TEST

START_TEST(dates_and_keys)
{
    struct store s;
    const char *names[] = {"machine_short", "machine", NULL};
    /* In 100 days the 30-day certificate has expired; the other one serves. */
    ck_assert_int_eq(pick(&s, now_s() + 100 * DAY, names), 1);
    ck_assert_ptr_nonnull(strstr(s.log, "rejected: expired on "));
    release(&s);
    /* Before either was issued. */
    ck_assert_int_eq(pick(&s, now_s() - 10 * DAY, names), -1);
    ck_assert_ptr_nonnull(strstr(s.err, "not valid before "));
    release(&s);
    /* After both. */
    ck_assert_int_eq(pick(&s, now_s() + 400 * DAY, names), -1);
    ck_assert_uint_eq(count_lines(s.err, "expired on "), 2);
    release(&s);
    /* The best one without its private key: the next one serves. */
    const char *nokey[] = {"gencerts!", "machine", NULL};
    ck_assert_int_eq(pick(&s, now_s(), nokey), 1);
    ck_assert_ptr_nonnull(strstr(s.log, "no private key in the store for it"));
    release(&s);
}
END_TEST

START_TEST(fails_closed_with_every_reason)
{
    struct store s;
    const char *names[] = {"workstation", "other", "noeku!", "anyeku", NULL};
    ck_assert_int_eq(pick(&s, now_s(), names), -1);
    ck_assert_ptr_nonnull(strstr(s.err, "LocalMachine\\My: no certificate to serve as " HOST));
    ck_assert_ptr_nonnull(strstr(s.err, "4 in the store"));
    ck_assert_ptr_nonnull(strstr(s.err, "clientAuth only"));
    ck_assert_ptr_nonnull(strstr(s.err, "not " HOST));
    ck_assert_ptr_nonnull(strstr(s.err, "no extendedKeyUsage"));
    ck_assert_ptr_nonnull(strstr(s.err, "no private key"));
    ck_assert_ptr_nonnull(strstr(s.err, "lacks serverAuth"));
    ck_assert_uint_eq(count_lines(s.log, "rejected: "), 4);
    release(&s);

    /* An empty store, garbage, and no host. */
    ck_assert_int_eq(certstore_select(NULL, 0, HOST, now_s(), "LocalMachine\\My", NULL, NULL, NULL,
                                      s.err, sizeof(s.err)),
                     -1);
    ck_assert_ptr_nonnull(strstr(s.err, "(0 in the store)"));
    struct certstore_candidate junk = {(const unsigned char *)"\x30\x03\x02\x01\x01", 5, true};
    ck_assert_int_eq(certstore_select(&junk, 1, HOST, now_s(), "LocalMachine\\My", NULL, NULL, NULL,
                                      s.err, sizeof(s.err)),
                     -1);
    ck_assert_ptr_nonnull(strstr(s.err, "not a readable X.509 certificate"));
    ck_assert_int_eq(certstore_select(&junk, 1, "", now_s(), "LocalMachine\\My", NULL, NULL, NULL,
                                      s.err, sizeof(s.err)),
                     -1);
    ck_assert_ptr_nonnull(strstr(s.err, "no host name"));
}
END_TEST

START_TEST(a_short_error_buffer_is_cut_not_overrun)
{
    struct store s;
    const char *names[] = {"workstation", "other", "noeku", "anyeku", "encipher", NULL};
    memset(&s, 0, sizeof(s));
    for (size_t i = 0; names[i]; i++) {
        s.c[i].der = der_of(names[i], &s.c[i].der_len);
        s.c[i].has_key = true;
        s.n++;
    }
    char small[64];
    memset(small, 'x', sizeof(small));
    ck_assert_int_eq(
        certstore_select(s.c, s.n, HOST, now_s(), "LocalMachine\\My", NULL, NULL, NULL, small, 40),
        -1);
    ck_assert_uint_eq(strlen(small), 39);
    ck_assert_int_eq(small[40], 'x');
    release(&s);
}
END_TEST

int main(void)
{
    /* Outside a test: no ck_assert (tu_tmpdir) here. */
    const char *base = getenv("TMPDIR");
    if (asprintf(&dir, "%s/tlsgate-certstore-XXXXXX", base && *base ? base : "/tmp") < 0 ||
        !mkdtemp(dir))
        return 1;
    if (make_variants() < 0)
        return 1;
    Suite *s = suite_create("certstore");
    TCase *tc = tcase_create("certstore");
    tcase_add_test(tc, machine_cert_wins_over_the_rest);
    tcase_add_test(tc, latest_not_after_wins);
    tcase_add_test(tc, serverauth_only_when_nothing_better);
    tcase_add_test(tc, names_per_rfc6125);
    tcase_add_test(tc, dates_and_keys);
    tcase_add_test(tc, fails_closed_with_every_reason);
    tcase_add_test(tc, a_short_error_buffer_is_cut_not_overrun);
    suite_add_tcase(s, tc);
    int rc = tu_run_suite(s);
    tu_rmtree(dir);
    free(dir);
    return rc;
}
