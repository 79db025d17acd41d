/*
 * test_enroll.c — collector enrollment (issue 12) end to end: the real `tlsgate enroll serve`
 * on 127.0.0.1 with real certificates (tools/gen-certs makes the fleet CA and the endpoint's
 * certificate), requests made here with GnuTLS (keys and PKCS#10 requests, like a collector's)
 * and sent with libcurl, and the real SQLite file the server and the CLI write.
 *
 * Every wait is on a condition with a deadline; nothing asserts on wall time.
 */
#include <errno.h>
#include <fcntl.h>
#include <gnutls/abstract.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <jansson.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"

static char certs[4096]; /* made once: ca.pem/ca.key (the fleet CA), enroll.test.pem/.key */
static char *dir;
static char db[4096], config[4096], logpath[4096];
static char secret1[128], secret2[128];
static pid_t server = -1;
static uint16_t port;

#define SERVE_HOST "enroll.test"

/* ------------------------------------------------------------------ fixture */

static void write_config(const char *extra)
{
    char buf[20000];
    snprintf(buf, sizeof(buf),
             "{\"enroll\": {\"ca_cert\": \"%s/ca.pem\", \"ca_key\": \"%s/ca.key\", "
             "\"cert\": \"%s/" SERVE_HOST ".pem\", \"key\": \"%s/" SERVE_HOST ".key\", "
             "\"listen\": \"127.0.0.1:%u\"%s%s}}",
             certs, certs, certs, certs, (unsigned)port, extra ? ", " : "", extra ? extra : "");
    tu_write_file(config, buf, strlen(buf));
}

/* `tlsgate --json enroll secret --site SITE`: the secret it prints. */
static void make_secret(const char *site, char *out, size_t size)
{
    char *json = NULL;
    ck_assert_int_eq(
        tu_tlsgate(db, &json, NULL, "--json", "enroll", "secret", "--site", site, NULL), 0);
    json_t *doc = json_loads(json, 0, NULL);
    ck_assert_ptr_nonnull(doc);
    snprintf(out, size, "%s", json_string_value(json_object_get(doc, "secret")));
    ck_assert_int_eq(strlen(out), 48);
    json_decref(doc);
    free(json);
}

static void setup(void)
{
    dir = tu_tmpdir();
    snprintf(db, sizeof(db), "%s", tu_path(dir, "t.db"));
    snprintf(config, sizeof(config), "%s", tu_path(dir, "config.json"));
    snprintf(logpath, sizeof(logpath), "%s", tu_path(dir, "serve.log"));
    ck_assert_int_eq(tu_tlsgate(db, NULL, NULL, "init", NULL), 0);
    const char inv[] = "name,site,roles,collector,os\n"
                       "host1.test,S01,client,127.0.0.1:1,Windows 10\n"
                       "host2.test,S01,client,127.0.0.1:1,Windows 10\n"
                       "host3.test,S02,client,127.0.0.1:1,Windows 10\n";
    tu_write_file(tu_path(dir, "inv.csv"), inv, strlen(inv));
    ck_assert_int_eq(
        tu_tlsgate(db, NULL, NULL, "inventory", "import", tu_path(dir, "inv.csv"), NULL), 0);
    make_secret("S01", secret1, sizeof(secret1));
    make_secret("S02", secret2, sizeof(secret2));
    port = (uint16_t)tu_closed_port();
    write_config(NULL);
    server = -1;
}

static void serve_start(void)
{
    tu_write_file(logpath, "", 0); /* the line of a previous run is not this run's */
    char *tlsgate = strdup(tu_build_path("orchestrator/tlsgate"));
    server = fork();
    ck_assert_int_ge(server, 0);
    if (server == 0) {
        int fd = open(logpath, O_WRONLY | O_CREAT | O_APPEND, 0600);
        int devnull = open("/dev/null", O_RDWR);
        dup2(devnull, 0);
        dup2(devnull, 1);
        dup2(fd, 2);
        execl(tlsgate, "tlsgate", "--db", db, "--config", config, "enroll", "serve", (char *)NULL);
        _exit(127);
    }
    free(tlsgate);
    char want[64];
    snprintf(want, sizeof(want), "listening on https://127.0.0.1:%u", (unsigned)port);
    bool up = tu_wait_file_contains(logpath, want, 20000);
    if (!up) {
        char *log = tu_read_file(logpath, NULL);
        ck_abort_msg("enroll serve did not start: %s", log ? log : "(no log)");
    }
}

/* SIGTERM and wait: the server must stop cleanly (exit 0). */
static void serve_stop(void)
{
    if (server <= 0)
        return;
    kill(server, SIGTERM);
    int code = tu_wait_exit(server, 20000);
    server = -1;
    ck_assert_int_eq(code, 0);
}

static void teardown(void)
{
    tu_kill_reap(server, SIGKILL);
    tu_rmtree(dir);
    free(dir);
}

/* ------------------------------------------------------------------ a collector's side */

/* A new ECDSA P-256 key (written to dir/FILE.key, 0600) and a request for CN=cn signed by it
 * (malloc'd PEM). */
static char *make_csr(const char *cn, const char *file)
{
    gnutls_x509_privkey_t key;
    gnutls_x509_crq_t crq;
    ck_assert_int_ge(gnutls_x509_privkey_init(&key), 0);
    ck_assert_int_ge(gnutls_x509_privkey_generate(
                         key, GNUTLS_PK_ECDSA, GNUTLS_CURVE_TO_BITS(GNUTLS_ECC_CURVE_SECP256R1), 0),
                     0);
    ck_assert_int_ge(gnutls_x509_crq_init(&crq), 0);
    ck_assert_int_ge(gnutls_x509_crq_set_version(crq, 1), 0);
    ck_assert_int_ge(
        gnutls_x509_crq_set_dn_by_oid(crq, GNUTLS_OID_X520_COMMON_NAME, 0, cn, strlen(cn)), 0);
    ck_assert_int_ge(gnutls_x509_crq_set_key(crq, key), 0);
    ck_assert_int_ge(gnutls_x509_crq_sign2(crq, key, GNUTLS_DIG_SHA256, 0), 0);
    gnutls_datum_t pem, kpem;
    ck_assert_int_ge(gnutls_x509_crq_export2(crq, GNUTLS_X509_FMT_PEM, &pem), 0);
    ck_assert_int_ge(gnutls_x509_privkey_export2(key, GNUTLS_X509_FMT_PEM, &kpem), 0);
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s.key", dir, file);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, kpem.data, kpem.size), (ssize_t)kpem.size);
    close(fd);
    char *out = strndup((char *)pem.data, pem.size);
    gnutls_free(pem.data);
    gnutls_free(kpem.data);
    gnutls_x509_crq_deinit(crq);
    gnutls_x509_privkey_deinit(key);
    return out;
}

/* The request with one byte of its signature changed: the self-signature no longer holds. */
static char *break_signature(const char *pem)
{
    gnutls_datum_t in = {(unsigned char *)pem, (unsigned)strlen(pem)}, der, out;
    ck_assert_int_ge(gnutls_pem_base64_decode2(NULL, &in, &der), 0);
    der.data[der.size - 1] ^= 0x01;
    ck_assert_int_ge(gnutls_pem_base64_encode2("CERTIFICATE REQUEST", &der, &out), 0);
    char *s = strndup((char *)out.data, out.size);
    gnutls_free(der.data);
    gnutls_free(out.data);
    return s;
}

struct answer {
    long code;
    long retry_after;
    json_t *doc; /* NULL when the body is not JSON */
    char body[512];
};

static void answer_release(struct answer *a) { json_decref(a->doc); }

/* POST body to path; with `certname`, presenting dir/CERTNAME.pem and .key. */
static struct answer post(const char *path, const char *body, const char *certname,
                          const char *source)
{
    struct tu_fetch f = {
        .path = path,
        .host = SERVE_HOST,
        .ca = tu_path(certs, "ca.pem"),
        .certdir = certname ? dir : NULL,
        .certname = certname,
        .body = body,
        .source = source,
    };
    tu_fetch_run(port, &f);
    ck_assert_msg(f.rc == CURLE_OK, "%s: %s", path, f.error);
    struct answer a = {.code = f.code, .retry_after = f.retry_after};
    a.doc = f.out ? json_loads(f.out, 0, NULL) : NULL;
    snprintf(a.body, sizeof(a.body), "%s", f.out ? f.out : "");
    tu_fetch_release(&f);
    return a;
}

static struct answer enroll(const char *name, const char *site, const char *secret, const char *csr)
{
    json_t *j =
        json_pack("{s:s, s:s, s:s, s:s}", "name", name, "site", site, "secret", secret, "csr", csr);
    char *body = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    struct answer a = post("/v1/enroll", body, NULL, NULL);
    free(body);
    return a;
}

static const char *status_of(const struct answer *a)
{
    const char *s = json_string_value(json_object_get(a->doc, "status"));
    return s ? s : "";
}

/* The issued certificate, checked: it verifies against the fleet CA, names `name` in CN and SAN,
 * carries the key of dir/KEYFILE.key, and serves serverAuth and clientAuth. Written to
 * dir/KEYFILE.pem (for a later mutual TLS request); returns its SHA-256 fingerprint (hex). */
static void check_issued(const struct answer *a, const char *name, const char *keyfile,
                         char fingerprint[65])
{
    ck_assert_msg(a->code == 200, "want 200, got %ld: %s", a->code, a->body);
    ck_assert_str_eq(status_of(a), "issued");
    const char *pem = json_string_value(json_object_get(a->doc, "certificate"));
    const char *ca = json_string_value(json_object_get(a->doc, "ca"));
    ck_assert_ptr_nonnull(pem);
    ck_assert_ptr_nonnull(ca);
    ck_assert(json_is_integer(json_object_get(a->doc, "not_after")));
    char *want_ca = tu_read_file(tu_path(certs, "ca.pem"), NULL);
    ck_assert_str_eq(ca, want_ca);
    free(want_ca);

    gnutls_x509_crt_t crt, cacrt;
    gnutls_datum_t d = {(unsigned char *)pem, (unsigned)strlen(pem)};
    gnutls_datum_t cd = {(unsigned char *)ca, (unsigned)strlen(ca)};
    ck_assert_int_ge(gnutls_x509_crt_init(&crt), 0);
    ck_assert_int_ge(gnutls_x509_crt_import(crt, &d, GNUTLS_X509_FMT_PEM), 0);
    ck_assert_int_ge(gnutls_x509_crt_init(&cacrt), 0);
    ck_assert_int_ge(gnutls_x509_crt_import(cacrt, &cd, GNUTLS_X509_FMT_PEM), 0);
    unsigned status = 1;
    ck_assert_int_ge(gnutls_x509_crt_verify(crt, &cacrt, 1, 0, &status), 0);
    ck_assert_uint_eq(status, 0);
    ck_assert_int_eq(gnutls_x509_crt_check_hostname(crt, name), 1);
    char cn[256];
    size_t n = sizeof(cn);
    ck_assert_int_ge(gnutls_x509_crt_get_dn_by_oid(crt, GNUTLS_OID_X520_COMMON_NAME, 0, 0, cn, &n),
                     0);
    ck_assert_str_eq(cn, name);
    char oid[128];
    size_t oidlen = sizeof(oid);
    bool server_auth = false, client_auth = false;
    for (unsigned i = 0;
         oidlen = sizeof(oid), gnutls_x509_crt_get_key_purpose_oid(crt, i, oid, &oidlen, NULL) >= 0;
         i++) {
        server_auth |= !strcmp(oid, GNUTLS_KP_TLS_WWW_SERVER);
        client_auth |= !strcmp(oid, GNUTLS_KP_TLS_WWW_CLIENT);
    }
    ck_assert(server_auth && client_auth);
    /* The key it certifies is the one the collector made. */
    char keypath[4096];
    snprintf(keypath, sizeof(keypath), "%s/%s.key", dir, keyfile);
    char *ktext = tu_read_file(keypath, NULL);
    gnutls_datum_t kd = {(unsigned char *)ktext, (unsigned)strlen(ktext)};
    gnutls_x509_privkey_t key;
    ck_assert_int_ge(gnutls_x509_privkey_init(&key), 0);
    ck_assert_int_ge(gnutls_x509_privkey_import(key, &kd, GNUTLS_X509_FMT_PEM), 0);
    unsigned char a_id[64], b_id[64];
    size_t alen = sizeof(a_id), blen = sizeof(b_id);
    ck_assert_int_ge(gnutls_x509_privkey_get_key_id(key, 0, a_id, &alen), 0);
    ck_assert_int_ge(gnutls_x509_crt_get_key_id(crt, 0, b_id, &blen), 0);
    ck_assert(alen == blen && memcmp(a_id, b_id, alen) == 0);
    unsigned char fp[32];
    size_t fplen = sizeof(fp);
    ck_assert_int_ge(gnutls_x509_crt_get_fingerprint(crt, GNUTLS_DIG_SHA256, fp, &fplen), 0);
    for (size_t i = 0; i < fplen; i++)
        snprintf(fingerprint + 2 * i, 3, "%02x", fp[i]);
    gnutls_x509_privkey_deinit(key);
    gnutls_x509_crt_deinit(crt);
    gnutls_x509_crt_deinit(cacrt);
    free(ktext);
    char certpath[4096];
    snprintf(certpath, sizeof(certpath), "%s/%s.pem", dir, keyfile);
    tu_write_file(certpath, pem, strlen(pem));
}

static long long count(const char *sql, const char *param) { return tu_db_int(db, sql, param); }

static long long audit_rows(const char *like)
{
    return count("SELECT count(*) FROM audit WHERE outcome LIKE ?1 OR command LIKE ?1", like);
}

/* ------------------------------------------------------------------ the tests */

START_TEST(test_enroll_first_enrollment_issues)
{
    serve_start();
    char *csr = make_csr("host1.test", "host1");
    struct answer a = enroll("host1.test", "S01", secret1, csr);
    char fp[65];
    check_issued(&a, "host1.test", "host1", fp);
    ck_assert_int_eq(count("SELECT count(*) FROM identity WHERE name = 'host1.test' AND"
                           " source = 'enroll' AND fingerprint = ?1",
                           fp),
                     1);
    ck_assert_int_eq(count("SELECT count(*) FROM enroll_request WHERE state = 'issued' AND"
                           " decided_by = 'policy'",
                           NULL),
                     1);
    ck_assert_int_eq(audit_rows("issued: request 1,%"), 1);
    /* The answer is lost, the collector asks again with the same key: the same certificate. */
    struct answer b = enroll("host1.test", "S01", secret1, csr);
    char fp2[65];
    check_issued(&b, "host1.test", "host1", fp2);
    ck_assert_str_eq(fp, fp2);
    ck_assert_int_eq(count("SELECT count(*) FROM identity", NULL), 1);
    ck_assert_int_eq(count("SELECT count(*) FROM enroll_request", NULL), 1);
    /* `enroll list` shows it. */
    char *out = NULL;
    ck_assert_int_eq(tu_tlsgate(db, &out, NULL, "--json", "enroll", "list", NULL), 0);
    ck_assert_ptr_nonnull(strstr(out, "\"name\":\"host1.test\""));
    ck_assert_ptr_nonnull(strstr(out, "\"source\":\"enroll\""));
    free(out);
    answer_release(&a);
    answer_release(&b);
    free(csr);
    serve_stop();
}
END_TEST

/* host1.test enrolled with a first key ("first", answer a: 200) and then asking with a second
 * ("second", answer b: 202, its request `id`): where the approval tests start. */
struct second_key {
    char *csr1, *csr2;
    struct answer a, b;
    json_int_t id;
    char idtext[32]; /* id as the commands take it */
};

static void second_key_pending(struct second_key *k)
{
    k->csr1 = make_csr("host1.test", "first");
    k->csr2 = make_csr("host1.test", "second");
    k->a = enroll("host1.test", "S01", secret1, k->csr1);
    ck_assert_msg(k->a.code == 200, "want 200, got %ld: %s", k->a.code, k->a.body);
    k->b = enroll("host1.test", "S01", secret1, k->csr2);
    ck_assert_msg(k->b.code == 202, "want 202, got %ld: %s", k->b.code, k->b.body);
    k->id = json_integer_value(json_object_get(k->b.doc, "request"));
    snprintf(k->idtext, sizeof(k->idtext), "%lld", (long long)k->id);
}

static void second_key_release(struct second_key *k)
{
    answer_release(&k->a);
    answer_release(&k->b);
    free(k->csr1);
    free(k->csr2);
}

START_TEST(test_enroll_second_key_waits_then_approved_to_same_key)
{
    serve_start();
    /* A second key for an enrolled name: a leaked secret does not take it over. */
    struct second_key k;
    second_key_pending(&k);
    char fp1[65], fp2[65];
    check_issued(&k.a, "host1.test", "first", fp1);
    ck_assert_str_eq(status_of(&k.b), "pending");
    ck_assert_int_gt(k.id, 0);
    ck_assert(json_is_integer(json_object_get(k.b.doc, "retry_after")));
    /* Asking again with the same key finds the same request: no new row. */
    struct answer c = enroll("host1.test", "S01", secret1, k.csr2);
    ck_assert_int_eq(c.code, 202);
    ck_assert_int_eq(json_integer_value(json_object_get(c.doc, "request")), k.id);
    ck_assert_int_eq(count("SELECT count(*) FROM enroll_request WHERE state = 'pending'", NULL), 1);
    char *out = NULL;
    ck_assert_int_eq(tu_tlsgate(db, &out, NULL, "--json", "enroll", "pending", NULL), 0);
    ck_assert_ptr_nonnull(strstr(out, "\"name\":\"host1.test\""));
    free(out);
    ck_assert_int_eq(tu_tlsgate(db, NULL, NULL, "enroll", "approve", k.idtext, NULL), 0);
    /* Approving twice is bad input: it is decided already. */
    ck_assert_int_eq(tu_tlsgate(db, NULL, NULL, "enroll", "approve", k.idtext, NULL), 3);
    struct answer d = enroll("host1.test", "S01", secret1, k.csr2);
    check_issued(&d, "host1.test", "second", fp2);
    ck_assert_str_ne(fp1, fp2);
    ck_assert_int_eq(count("SELECT count(*) FROM identity WHERE name = 'host1.test'", NULL), 2);
    ck_assert_int_eq(audit_rows("ok: request % approved"), 1);
    answer_release(&c);
    answer_release(&d);
    second_key_release(&k);
    serve_stop();
}
END_TEST

START_TEST(test_enroll_denied_request_is_refused)
{
    serve_start();
    struct second_key k;
    second_key_pending(&k);
    ck_assert_int_eq(
        tu_tlsgate(db, NULL, NULL, "enroll", "deny", k.idtext, "--reason", "unknown key", NULL), 0);
    struct answer c = enroll("host1.test", "S01", secret1, k.csr2);
    ck_assert_msg(c.code == 403, "want 403, got %ld: %s", c.code, c.body);
    ck_assert_ptr_nonnull(strstr(c.body, "denied"));
    ck_assert_int_eq(count("SELECT count(*) FROM identity", NULL), 1);
    answer_release(&c);
    second_key_release(&k);
    serve_stop();
}
END_TEST

START_TEST(test_enroll_refuses_bad_secret_strangers_and_other_sites)
{
    serve_start();
    char *csr = make_csr("host1.test", "host1"), *csr3 = make_csr("host3.test", "host3");
    char *stranger = make_csr("intruder.test", "intruder");
    /* A wrong secret, for a name that exists and one that does not: the same answer. */
    struct answer a = enroll("host1.test", "S01", "not-the-secret", csr);
    struct answer b = enroll("intruder.test", "S01", "not-the-secret", stranger);
    ck_assert_int_eq(a.code, 403);
    ck_assert_int_eq(b.code, 403);
    ck_assert_str_eq(a.body, b.body);
    /* The right secret, a name outside the inventory: refused, audited. */
    struct answer c = enroll("intruder.test", "S01", secret1, stranger);
    ck_assert_int_eq(c.code, 403);
    ck_assert_ptr_nonnull(strstr(c.body, "not in the inventory"));
    ck_assert_int_eq(audit_rows("%POST /v1/enroll intruder.test%"), 2);
    /* Site S01's secret for a host of S02, and S02's secret claiming S01. */
    struct answer d = enroll("host3.test", "S01", secret1, csr3);
    struct answer e = enroll("host1.test", "S01", secret2, csr);
    ck_assert_int_eq(d.code, 403);
    ck_assert_int_eq(e.code, 403);
    /* A rotated secret: the old one is retired. */
    char old[128];
    snprintf(old, sizeof(old), "%s", secret1);
    make_secret("S01", secret1, sizeof(secret1));
    struct answer f = enroll("host1.test", "S01", old, csr);
    ck_assert_int_eq(f.code, 403);
    ck_assert_ptr_nonnull(strstr(f.body, "retired"));
    ck_assert_int_eq(count("SELECT count(*) FROM enroll_request", NULL), 0);
    ck_assert_int_eq(count("SELECT count(*) FROM identity", NULL), 0);
    ck_assert_int_eq(audit_rows("refused: %"), 6);
    struct answer g = enroll("host1.test", "S01", secret1, csr);
    ck_assert_int_eq(g.code, 200);
    struct answer *all[] = {&a, &b, &c, &d, &e, &f, &g};
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
        answer_release(all[i]);
    free(csr);
    free(csr3);
    free(stranger);
    serve_stop();
}
END_TEST

START_TEST(test_enroll_malformed_requests_store_nothing)
{
    serve_start();
    char *csr = make_csr("host1.test", "host1"), *other = make_csr("host2.test", "host2");
    char *broken = break_signature(csr);
    struct answer a = post("/v1/enroll", "{\"name\": \"host1.test\",", NULL, NULL);
    ck_assert_int_eq(a.code, 400);
    ck_assert_ptr_nonnull(strstr(a.body, "malformed JSON"));
    struct answer b =
        post("/v1/enroll", "{\"name\": \"host1.test\", \"site\": \"S01\"}", NULL, NULL);
    ck_assert_int_eq(b.code, 400);
    ck_assert_ptr_nonnull(strstr(b.body, "secret"));
    struct answer c = enroll("host1.test", "S01", secret1, broken);
    ck_assert_int_eq(c.code, 400);
    ck_assert_ptr_nonnull(strstr(c.body, "signature"));
    struct answer d = enroll("host1.test", "S01", secret1, other);
    ck_assert_int_eq(d.code, 400);
    ck_assert_ptr_nonnull(strstr(d.body, "CN"));
    struct answer e =
        enroll("host1.test", "S01", secret1, "-----BEGIN CERTIFICATE REQUEST-----\nx");
    ck_assert_int_eq(e.code, 400);
    /* 16 KiB + 1: refused before it is read. */
    size_t big = 16 * 1024 + 1;
    char *body = malloc(big + 1);
    memset(body, ' ', big);
    body[0] = '{';
    body[big - 1] = '}';
    body[big] = '\0';
    struct answer f = post("/v1/enroll", body, NULL, NULL);
    ck_assert_int_eq(f.code, 413);
    ck_assert_ptr_nonnull(strstr(f.body, "larger than"));
    free(body);
    /* Nothing but the audit rows: one per refusal. */
    ck_assert_int_eq(count("SELECT count(*) FROM enroll_request", NULL), 0);
    ck_assert_int_eq(count("SELECT count(*) FROM identity", NULL), 0);
    ck_assert_int_eq(audit_rows("refused: %"), 6);
    /* Other paths and methods. */
    struct tu_fetch g = {.path = "/v1/enroll", .host = SERVE_HOST, .ca = tu_path(certs, "ca.pem")};
    tu_fetch_run(port, &g);
    ck_assert_int_eq(g.code, 405);
    tu_fetch_release(&g);
    struct tu_fetch h = {.path = "/v1/other", .host = SERVE_HOST, .ca = tu_path(certs, "ca.pem")};
    tu_fetch_run(port, &h);
    ck_assert_int_eq(h.code, 404);
    tu_fetch_release(&h);
    struct tu_fetch i = {.path = "/v1/health", .host = SERVE_HOST, .ca = tu_path(certs, "ca.pem")};
    tu_fetch_run(port, &i);
    ck_assert_int_eq(i.code, 200);
    ck_assert_str_eq(i.out, "{\"status\":\"ok\"}");
    tu_fetch_release(&i);
    struct answer *all[] = {&a, &b, &c, &d, &e, &f};
    for (size_t k = 0; k < sizeof(all) / sizeof(all[0]); k++)
        answer_release(all[k]);
    free(csr);
    free(other);
    free(broken);
    serve_stop();
}
END_TEST

static struct answer renew(const char *csr, const char *certname)
{
    json_t *j = json_pack("{s:s}", "csr", csr);
    char *body = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    struct answer a = post("/v1/renew", body, certname, NULL);
    free(body);
    return a;
}

START_TEST(test_enroll_renewal_over_mutual_tls)
{
    serve_start();
    char *csr = make_csr("host1.test", "host1");
    struct answer a = enroll("host1.test", "S01", secret1, csr);
    char fp1[65], fp2[65];
    check_issued(&a, "host1.test", "host1", fp1);
    char *fresh = make_csr("host1.test", "renewed");
    /* Without a client certificate: refused. */
    struct answer b = renew(fresh, NULL);
    ck_assert_int_eq(b.code, 403);
    /* A certificate of the fleet CA that was not enrolled here (gen-certs made it): refused. */
    struct answer c = post("/v1/renew", "{\"csr\": \"x\"}", NULL, NULL);
    ck_assert_int_eq(c.code, 403);
    char *other = make_csr("host2.test", "other");
    struct answer d = renew(other, "host1");
    ck_assert_int_eq(d.code, 403);
    ck_assert_ptr_nonnull(strstr(d.body, "another host"));
    struct answer e = renew(fresh, "host1");
    check_issued(&e, "host1.test", "renewed", fp2);
    ck_assert_str_ne(fp1, fp2);
    ck_assert_int_eq(count("SELECT count(*) FROM enroll_request WHERE kind = 'renew' AND"
                           " state = 'issued'",
                           NULL),
                     1);
    /* The renewed certificate renews in turn. */
    char *third = make_csr("host1.test", "third");
    struct answer f = renew(third, "renewed");
    ck_assert_int_eq(f.code, 200);
    struct answer *all[] = {&a, &b, &c, &d, &e, &f};
    for (size_t k = 0; k < sizeof(all) / sizeof(all[0]); k++)
        answer_release(all[k]);
    free(csr);
    free(fresh);
    free(other);
    free(third);
    serve_stop();
}
END_TEST

START_TEST(test_enroll_revoked_certificate_cannot_renew_or_reenroll)
{
    serve_start();
    char *csr = make_csr("host1.test", "host1");
    struct answer a = enroll("host1.test", "S01", secret1, csr);
    char fp[65];
    check_issued(&a, "host1.test", "host1", fp);
    char *out = NULL;
    ck_assert_int_eq(tu_tlsgate(db, &out, NULL, "--json", "enroll", "revoke", "host1.test",
                                "--reason", "stolen laptop", NULL),
                     0);
    ck_assert_ptr_nonnull(strstr(out, "\"identities_revoked\":1"));
    free(out);
    ck_assert_int_eq(count("SELECT count(*) FROM identity WHERE revoked_at IS NOT NULL AND"
                           " fingerprint = ?1",
                           fp),
                     1);
    char *fresh = make_csr("host1.test", "renewed");
    struct answer b = renew(fresh, "host1");
    ck_assert_int_eq(b.code, 403);
    ck_assert_ptr_nonnull(strstr(b.body, "revoked"));
    /* The old key asking again does not get its revoked certificate back. */
    struct answer c = enroll("host1.test", "S01", secret1, csr);
    ck_assert_int_eq(c.code, 403);
    /* A new key with the secret: a person decides. */
    struct answer d = enroll("host1.test", "S01", secret1, fresh);
    ck_assert_int_eq(d.code, 202);
    /* Revoking a name that never had anything is bad input. */
    ck_assert_int_eq(tu_tlsgate(db, NULL, NULL, "enroll", "revoke", "nobody.test", NULL), 3);
    ck_assert_int_eq(audit_rows("ok: host1.test: 1 identity revoked%"), 1);
    struct answer *all[] = {&a, &b, &c, &d};
    for (size_t k = 0; k < sizeof(all) / sizeof(all[0]); k++)
        answer_release(all[k]);
    free(csr);
    free(fresh);
    serve_stop();
}
END_TEST

START_TEST(test_enroll_restart_between_request_and_approval)
{
    serve_start();
    struct second_key k;
    second_key_pending(&k);
    serve_stop();
    ck_assert_int_eq(tu_tlsgate(db, NULL, NULL, "enroll", "approve", k.idtext, NULL), 0);
    serve_start();
    struct answer c = enroll("host1.test", "S01", secret1, k.csr2);
    char fp[65];
    check_issued(&c, "host1.test", "second", fp);
    ck_assert_int_eq(count("SELECT count(*) FROM enroll_request", NULL), 2);
    ck_assert_int_eq(count("SELECT request_id FROM identity WHERE fingerprint = ?1", fp), k.id);
    answer_release(&c);
    second_key_release(&k);
    serve_stop();
}
END_TEST

START_TEST(test_enroll_rate_limit_per_address)
{
    write_config("\"rate_burst\": 3, \"rate_per_minute\": 1");
    serve_start();
    long codes[6];
    long retry = -1;
    for (int i = 0; i < 6; i++) {
        struct answer a = post("/v1/enroll", "{}", NULL, "127.0.0.1");
        codes[i] = a.code;
        if (a.code == 429)
            retry = a.retry_after;
        answer_release(&a);
    }
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(codes[i], 400);
    for (int i = 3; i < 6; i++)
        ck_assert_int_eq(codes[i], 429);
    ck_assert_int_gt(retry, 0);
    /* One audit row when the address became limited, not one per refusal. */
    ck_assert_int_eq(audit_rows("refused: rate limited%"), 1);
    /* Another address has its own bucket. */
    struct answer b = post("/v1/enroll", "{}", NULL, "127.0.0.2");
    ck_assert_int_eq(b.code, 400);
    answer_release(&b);
    serve_stop();
}
END_TEST

START_TEST(test_enroll_pending_cap)
{
    write_config("\"pending_max\": 1");
    serve_start();
    char *csr1 = make_csr("host1.test", "first"), *csr2 = make_csr("host1.test", "second");
    char *csr3 = make_csr("host1.test", "third");
    ck_assert_int_eq(enroll("host1.test", "S01", secret1, csr1).code, 200);
    struct answer b = enroll("host1.test", "S01", secret1, csr2);
    ck_assert_int_eq(b.code, 202);
    struct answer c = enroll("host1.test", "S01", secret1, csr3);
    ck_assert_int_eq(c.code, 429);
    ck_assert_int_gt(c.retry_after, 0);
    ck_assert_int_eq(count("SELECT count(*) FROM enroll_request WHERE state = 'pending'", NULL), 1);
    answer_release(&b);
    answer_release(&c);
    free(csr1);
    free(csr2);
    free(csr3);
    serve_stop();
}
END_TEST

START_TEST(test_enroll_ca_key_must_be_private)
{
    /* A CA of our own: `enroll ca init`, which refuses to overwrite it. */
    char *err = NULL;
    const char *cadir = tu_path(dir, "fleetca");
    ck_assert_int_eq(tu_tlsgate(db, NULL, NULL, "enroll", "ca", "init", "--out", cadir, NULL), 0);
    struct stat st;
    ck_assert_int_eq(stat(tu_path(cadir, "ca.key"), &st), 0);
    ck_assert_int_eq(st.st_mode & 0777, 0600);
    ck_assert_int_eq(
        tu_tlsgate(db, NULL, &err, "enroll", "ca", "init", "--out", tu_path(dir, "fleetca"), NULL),
        3);
    ck_assert_ptr_nonnull(strstr(err, "never overwritten"));
    free(err);
    err = NULL;
    chmod(tu_path(cadir, "ca.key"), 0640);
    char buf[20000];
    snprintf(buf, sizeof(buf),
             "{\"enroll\": {\"ca_cert\": \"fleetca/ca.pem\", \"ca_key\": \"fleetca/ca.key\", "
             "\"cert\": \"%s/" SERVE_HOST ".pem\", \"key\": \"%s/" SERVE_HOST ".key\", "
             "\"listen\": \"127.0.0.1:%u\"}}",
             certs, certs, (unsigned)port);
    tu_write_file(config, buf, strlen(buf));
    ck_assert_int_eq(tu_tlsgate(db, NULL, &err, "--config", config, "enroll", "serve", NULL), 3);
    ck_assert_ptr_nonnull(strstr(err, "fleetca/ca.key"));
    ck_assert_ptr_nonnull(strstr(err, "group or others"));
    free(err);
    /* A config without the CA: named. */
    tu_write_file(config, "{\"enroll\": {}}", 14);
    err = NULL;
    ck_assert_int_eq(tu_tlsgate(db, NULL, &err, "--config", config, "enroll", "serve", NULL), 3);
    ck_assert_ptr_nonnull(strstr(err, "enroll.ca_cert"));
    free(err);
    tu_write_file(config, "{\"enroll\": {\"lifetime\": 3}}", 27);
    err = NULL;
    ck_assert_int_eq(tu_tlsgate(db, NULL, &err, "--config", config, "enroll", "list", NULL), 3);
    ck_assert_ptr_nonnull(strstr(err, "enroll.lifetime: unknown key"));
    free(err);
}
END_TEST

START_TEST(test_enroll_list_expiring)
{
    serve_start();
    char *csr = make_csr("host1.test", "host1");
    struct answer a = enroll("host1.test", "S01", secret1, csr);
    ck_assert_int_eq(a.code, 200);
    answer_release(&a);
    serve_stop();
    /* What the puller saw at host2 (no enrolled identity): expires in 5 days, and a
     * certificate change not through enrollment. */
    sqlite3 *h;
    ck_assert_int_eq(sqlite3_open_v2(db, &h, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    ck_assert_int_eq(sqlite3_exec(h,
                                  "INSERT INTO poll (host_id, cert_not_after, cert_changed_at)"
                                  " SELECT id, strftime('%s','now') + 5 * 86400, 1 FROM host"
                                  " WHERE name = 'host2.test'",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(h);
    char *out = NULL;
    ck_assert_int_eq(
        tu_tlsgate(db, &out, NULL, "--json", "enroll", "list", "--expiring", "14d", NULL), 0);
    ck_assert_ptr_nonnull(strstr(out, "host2.test"));
    ck_assert_ptr_null(strstr(out, "host1.test")); /* 60 days left */
    free(out);
    ck_assert_int_eq(
        tu_tlsgate(db, &out, NULL, "--json", "enroll", "list", "--expiring", "90d", NULL), 0);
    ck_assert_ptr_nonnull(strstr(out, "host1.test"));
    free(out);
    ck_assert_int_eq(tu_tlsgate(db, NULL, NULL, "enroll", "list", "--expiring", "soon", NULL), 2);
    /* `enroll accept`: the noted change is cleared, once. */
    ck_assert_int_eq(tu_tlsgate(db, &out, NULL, "--json", "enroll", "accept", "host2.test", NULL),
                     0);
    ck_assert_ptr_nonnull(strstr(out, "\"accepted\":true"));
    free(out);
    ck_assert_int_eq(count("SELECT count(*) FROM poll WHERE cert_changed_at IS NOT NULL", NULL), 0);
    ck_assert_int_eq(tu_tlsgate(db, &out, NULL, "--json", "enroll", "accept", "host2.test", NULL),
                     0);
    ck_assert_ptr_nonnull(strstr(out, "\"accepted\":false"));
    free(out);
    ck_assert_int_eq(tu_tlsgate(db, NULL, NULL, "enroll", "accept", "nobody.test", NULL), 3);
    free(csr);
}
END_TEST

START_TEST(test_enroll_busy_store_answers_503_and_stores_nothing)
{
    serve_start();
    char *csr = make_csr("host1.test", "host1");
    /* Another writer holds the database (the daemon in a long batch, say). */
    sqlite3 *other;
    ck_assert_int_eq(sqlite3_open_v2(db, &other, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    ck_assert_int_eq(sqlite3_exec(other, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
    struct answer a = enroll("host1.test", "S01", secret1, csr);
    ck_assert_msg(a.code == 503, "want 503, got %ld: %s", a.code, a.body);
    ck_assert_int_gt(a.retry_after, 0);
    ck_assert_int_eq(sqlite3_exec(other, "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(other);
    ck_assert_int_eq(count("SELECT count(*) FROM enroll_request", NULL), 0);
    ck_assert_int_eq(count("SELECT count(*) FROM identity", NULL), 0);
    /* Asked again once the store is free: issued, one request, one identity. */
    struct answer b = enroll("host1.test", "S01", secret1, csr);
    ck_assert_int_eq(b.code, 200);
    ck_assert_int_eq(count("SELECT count(*) FROM enroll_request", NULL), 1);
    ck_assert_int_eq(count("SELECT count(*) FROM identity", NULL), 1);
    answer_release(&a);
    answer_release(&b);
    free(csr);
    serve_stop();
}
END_TEST

static Suite *enroll_suite(void)
{
    Suite *s = suite_create("enroll");
    TCase *tc = tcase_create("serve");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_enroll_first_enrollment_issues);
    tcase_add_test(tc, test_enroll_second_key_waits_then_approved_to_same_key);
    tcase_add_test(tc, test_enroll_denied_request_is_refused);
    tcase_add_test(tc, test_enroll_refuses_bad_secret_strangers_and_other_sites);
    tcase_add_test(tc, test_enroll_malformed_requests_store_nothing);
    tcase_add_test(tc, test_enroll_renewal_over_mutual_tls);
    tcase_add_test(tc, test_enroll_revoked_certificate_cannot_renew_or_reenroll);
    tcase_add_test(tc, test_enroll_restart_between_request_and_approval);
    tcase_add_test(tc, test_enroll_rate_limit_per_address);
    tcase_add_test(tc, test_enroll_pending_cap);
    tcase_add_test(tc, test_enroll_ca_key_must_be_private);
    tcase_add_test(tc, test_enroll_list_expiring);
    tcase_add_test(tc, test_enroll_busy_store_answers_503_and_stores_nothing);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    /* One fleet CA and endpoint certificate for every test. */
    const char *tmp = getenv("TMPDIR");
    char *base = NULL;
    if (asprintf(&base, "%s/tlsgate-enroll-XXXXXX", tmp && *tmp ? tmp : "/tmp") < 0 ||
        !mkdtemp(base))
        return 1;
    snprintf(certs, sizeof(certs), "%s/certs", base);
    const char *names[] = {SERVE_HOST, NULL};
    if (tu_gen_certs(certs, names) != 0)
        return 1;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    int rc = tu_run_suite(enroll_suite());
    curl_global_cleanup();
    tu_rmtree(base);
    free(base);
    return rc;
}
