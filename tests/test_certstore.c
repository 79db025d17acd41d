/*
 * test_certstore.c — choosing the certificate to serve among a store's candidates
 * (collectors/certstore.c), with real certificates: tools/gen-certs makes the fleet CA and a
 * regular host certificate, the openssl CLI the variants a Windows LocalMachine\My store holds
 * (AD CS "Workstation Authentication" with clientAuth only, "Web Server" with serverAuth only,
 * another host's, no EKU, CN only, RSA for key encipherment only, short- and long-lived).
 * Dates are judged against a `now` the test gives, so expiry needs no forged dates.
 */
#include <errno.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <gnutls/abstract.h>
#include <gnutls/urls.h>
#include <uv.h>

#include "certstore.h"
#include "server.h"
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
    tu_assert_has(s.log, "chosen for " HOST, "clientAuth only",
                  "issued to other.example.test, not " HOST, "no extendedKeyUsage",
                  "keyUsage lacks digitalSignature", "extendedKeyUsage lacks serverAuth");
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
    tu_assert_has(s.err, "LocalMachine\\My: no certificate to serve as " HOST, "4 in the store",
                  "clientAuth only", "not " HOST, "no extendedKeyUsage", "no private key",
                  "lacks serverAuth");
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

/* ---- the server's key_url path, which the Windows store feeds (certstore-win.c) ----
 * A URL scheme of the test's own, "test-extkey:PATH", hands GnuTLS an external key (its public
 * half unknown to GnuTLS, signing through a callback), as tlsgate-certstore: does over CNG. */

static int ext_sign_hash(gnutls_privkey_t key, gnutls_sign_algorithm_t algo, void *userdata,
                         unsigned int flags, const gnutls_datum_t *hash, gnutls_datum_t *sig)
{
    (void)key;
    (void)flags;
    return gnutls_privkey_sign_hash2(userdata, algo, 0, hash, sig);
}

static int ext_info(gnutls_privkey_t key, unsigned int flags, void *userdata)
{
    (void)key;
    (void)userdata;
    if (flags & GNUTLS_PRIVKEY_INFO_PK_ALGO)
        return GNUTLS_PK_ECDSA;
    if (flags & GNUTLS_PRIVKEY_INFO_PK_ALGO_BITS)
        return 256;
    if (flags & GNUTLS_PRIVKEY_INFO_HAVE_SIGN_ALGO)
        return gnutls_sign_get_pk_algorithm(GNUTLS_FLAGS_TO_SIGN_ALGO(flags)) == GNUTLS_PK_ECDSA;
    return -1;
}

static void ext_deinit(gnutls_privkey_t key, void *userdata)
{
    (void)key;
    gnutls_privkey_deinit(userdata);
}

static int ext_import(gnutls_privkey_t pkey, const char *url, unsigned flags)
{
    (void)flags;
    size_t len;
    char *pem = tu_read_file(url + strlen("test-extkey:"), &len);
    if (!pem)
        return GNUTLS_E_FILE_ERROR;
    gnutls_privkey_t inner;
    gnutls_datum_t d = {(unsigned char *)pem, (unsigned)len};
    int rc = gnutls_privkey_init(&inner);
    if (rc == 0)
        rc = gnutls_privkey_import_x509_raw(inner, &d, GNUTLS_X509_FMT_PEM, NULL, 0);
    free(pem);
    if (rc == 0)
        rc = gnutls_privkey_import_ext4(pkey, inner, NULL, ext_sign_hash, NULL, ext_deinit,
                                        ext_info, 0);
    return rc;
}

static const gnutls_custom_url_st ext_scheme = {
    .name = "test-extkey:", .name_size = 12, .import_key = ext_import};

static uv_loop_t loop;
static uv_async_t stop_async;
static struct server *srv;

static void on_closed(void *arg) { (void)arg; }
static void on_stop(uv_async_t *a)
{
    server_close(srv, on_closed, NULL);
    uv_close((uv_handle_t *)a, NULL);
}
static void run_loop(void *arg)
{
    (void)arg;
    uv_run(&loop, UV_RUN_DEFAULT);
}

/* Starts a server for HOST with the certificate file `cert` and the key by URL. */
static int start(const char *cert, const char *key_url, char *err, size_t errsize)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, cert);
    char *cert_pem = tu_read_file(path, NULL);
    snprintf(path, sizeof(path), "%s/ca.pem", dir);
    char *ca_pem = tu_read_file(path, NULL);
    ck_assert_int_eq(uv_loop_init(&loop), 0);
    struct server_options o = {.host = HOST,
                               .address = "127.0.0.1",
                               .cert_pem = cert_pem,
                               .key_url = key_url,
                               .ca_pem = ca_pem,
                               .client_cn = "tlsgate-orchestrator"};
    int rc = server_start(&loop, &o, &srv, err, errsize);
    free(cert_pem);
    free(ca_pem);
    return rc;
}

START_TEST(server_serves_with_a_key_by_url)
{
    ck_assert_int_eq(gnutls_register_custom_url(&ext_scheme), 0);
    char url[4200], err[1024];
    snprintf(url, sizeof(url), "test-extkey:%s/%s.key", dir, HOST);
    ck_assert_msg(start(HOST ".pem", url, err, sizeof(err)) == 0, "%s", err);
    ck_assert_int_eq(server_set_report(srv, "{}", 2, 1764072000), 0);
    ck_assert_int_eq(uv_async_init(&loop, &stop_async, on_stop), 0);
    uv_thread_t t;
    ck_assert_int_eq(uv_thread_create(&t, run_loop, NULL), 0);
    /* A full mutual-TLS handshake: the server signs with the external key (TLS 1.3 and 1.2). */
    long versions[] = {0, CURL_SSLVERSION_TLSv1_2 | CURL_SSLVERSION_MAX_TLSv1_2};
    for (int i = 0; i < 2; i++) {
        struct tu_fetch f = {
            .path = "/v1/health", .host = HOST, .certdir = dir, .sslversion = versions[i]};
        char ca[4200];
        snprintf(ca, sizeof(ca), "%s/ca.pem", dir);
        f.ca = ca;
        tu_fetch_run(server_port(srv), &f);
        ck_assert_msg(f.code == 200, "pass %d: %ld %s", i, f.code, f.error);
        ck_assert_ptr_nonnull(strstr(f.out, "\"host\":\"" HOST "\""));
        tu_fetch_release(&f);
    }
    uv_async_send(&stop_async);
    uv_thread_join(&t);
    ck_assert_int_eq(uv_loop_close(&loop), 0);
}
END_TEST

START_TEST(server_refuses_a_key_by_url_that_is_not_the_certificates)
{
    ck_assert_int_eq(gnutls_register_custom_url(&ext_scheme), 0);
    char url[4200], err[1024];
    /* Another certificate's key: the test signature does not verify. */
    snprintf(url, sizeof(url), "test-extkey:%s/machine.key", dir);
    ck_assert_int_eq(start(HOST ".pem", url, err, sizeof(err)), -EINVAL);
    ck_assert_msg(strstr(err, "does not sign for the certificate"), "%s", err);
    ck_assert_ptr_null(srv);
    uv_loop_close(&loop);
    /* A key that cannot be opened. */
    snprintf(url, sizeof(url), "test-extkey:%s/missing.key", dir);
    ck_assert_int_eq(start(HOST ".pem", url, err, sizeof(err)), -EINVAL);
    ck_assert_msg(strstr(err, "cannot be opened"), "%s", err);
    uv_loop_close(&loop);
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
    tcase_add_test(tc, server_serves_with_a_key_by_url);
    tcase_add_test(tc, server_refuses_a_key_by_url_that_is_not_the_certificates);
    suite_add_tcase(s, tc);
    int rc = tu_run_suite(s);
    tu_rmtree(dir);
    free(dir);
    return rc;
}
