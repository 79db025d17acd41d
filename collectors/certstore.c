/*
 * certstore.c — choosing the certificate to serve among a store's candidates (certstore.h).
 * GnuTLS parses; the rules are ours and documented in the header.
 */
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "certstore.h"
#include "platform.h"

#define OID_SERVER_AUTH "1.3.6.1.5.5.7.3.1"
#define OID_CLIENT_AUTH "1.3.6.1.5.5.7.3.2"
#define REASONS_MAX 400
#define LINE_MAX_BYTES 768

int certstore_thumbprint(const unsigned char *der, size_t der_len, char thumb[CERTSTORE_THUMB_SIZE])
{
    unsigned char md[20];
    if (gnutls_hash_fast(GNUTLS_DIG_SHA1, der, der_len, md) < 0)
        return -1;
    for (int i = 0; i < 20; i++)
        snprintf(thumb + 2 * i, 3, "%02X", md[i]);
    return 0;
}

/* ASCII case-insensitive prefix (no locale, and no msvcrt tolower import on Windows). */
bool certstore_prefix(const char *s, const char *prefix)
{
    for (; *prefix; s++, prefix++) {
        char a = *s, b = *prefix;
        if (a >= 'A' && a <= 'Z')
            a = (char)(a - 'A' + 'a');
        if (b >= 'A' && b <= 'Z')
            b = (char)(b - 'A' + 'a');
        if (a != b)
            return false;
    }
    return true;
}

int certstore_check_name(const char *store)
{
    const char *name;
    if (certstore_prefix(store, "LocalMachine\\"))
        name = store + 13;
    else if (certstore_prefix(store, "CurrentUser\\"))
        name = store + 12;
    else
        return -1;
    size_t n = strlen(name);
    if (n < 1 || n > 64)
        return -1;
    for (const char *p = name; *p; p++)
        if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9')))
            return -1;
    return 0;
}

static bool ascii_equal(const char *a, const char *b)
{
    return strlen(a) == strlen(b) && certstore_prefix(a, b);
}

static void add_reason(char *reasons, const char *fmt, ...) PLATFORM_PRINTF(2, 3);
static void add_reason(char *reasons, const char *fmt, ...)
{
    size_t len = strlen(reasons);
    if (len && len + 2 < REASONS_MAX) {
        memcpy(reasons + len, "; ", 3);
        len += 2;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reasons + len, REASONS_MAX - len, fmt, ap);
    va_end(ap);
}

static void when(long long t, char *out, size_t size)
{
    struct tm tm;
    if (platform_gmtime((time_t)t, &tm) != 0 || !strftime(out, size, "%Y-%m-%dT%H:%M:%SZ", &tm))
        snprintf(out, size, "%lld", t);
}

bool certstore_names_host(gnutls_x509_crt_t crt, const char *host, char *first, size_t firstsize,
                          bool *from_cn)
{
    bool any_dns = false, match = false;
    first[0] = '\0';
    if (from_cn)
        *from_cn = false;
    for (unsigned i = 0;; i++) {
        char name[256];
        size_t n = sizeof(name) - 1;
        int type = gnutls_x509_crt_get_subject_alt_name(crt, i, name, &n, NULL);
        if (type == GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE)
            break;
        if (type == GNUTLS_E_SHORT_MEMORY_BUFFER)
            continue;
        if (type < 0)
            break;
        if (type != GNUTLS_SAN_DNSNAME)
            continue;
        name[n] = '\0';
        if (!any_dns)
            snprintf(first, firstsize, "%s", name);
        any_dns = true;
        /* An embedded NUL ("host\0.evil") never matches. */
        if (host && strlen(name) == n && ascii_equal(name, host))
            match = true;
    }
    if (any_dns)
        return match;
    char cn[256];
    size_t n = sizeof(cn);
    if (gnutls_x509_crt_get_dn_by_oid(crt, GNUTLS_OID_X520_COMMON_NAME, 0, 0, cn, &n) < 0)
        return false;
    snprintf(first, firstsize, "%s", cn);
    if (from_cn)
        *from_cn = true;
    return host && strlen(cn) == n && ascii_equal(cn, host);
}

/* serverAuth / clientAuth from the extendedKeyUsage extension. false when it is absent. */
static bool key_purposes(gnutls_x509_crt_t crt, bool *server, bool *client)
{
    *server = *client = false;
    bool any = false;
    for (unsigned i = 0;; i++) {
        char oid[128];
        size_t n = sizeof(oid);
        int rc = gnutls_x509_crt_get_key_purpose_oid(crt, i, oid, &n, NULL);
        if (rc == GNUTLS_E_SHORT_MEMORY_BUFFER)
            continue;
        if (rc < 0)
            break;
        any = true;
        if (strcmp(oid, OID_SERVER_AUTH) == 0)
            *server = true;
        else if (strcmp(oid, OID_CLIENT_AUTH) == 0)
            *client = true;
    }
    return any;
}

struct judged {
    bool eligible, client_auth;
    long long not_before, not_after;
    char thumb[CERTSTORE_THUMB_SIZE];
    char shown[272];
    char reasons[REASONS_MAX];
};

static void judge(const struct certstore_candidate *c, const char *host, long long now,
                  struct judged *j)
{
    memset(j, 0, sizeof(*j));
    if (certstore_thumbprint(c->der, c->der_len, j->thumb) < 0)
        snprintf(j->thumb, sizeof(j->thumb), "?");
    gnutls_x509_crt_t crt;
    if (gnutls_x509_crt_init(&crt) < 0) {
        add_reason(j->reasons, "out of memory");
        return;
    }
    gnutls_datum_t d = {(unsigned char *)c->der, (unsigned)c->der_len};
    int rc = gnutls_x509_crt_import(crt, &d, GNUTLS_X509_FMT_DER);
    if (rc < 0) {
        add_reason(j->reasons, "not a readable X.509 certificate (%s)", gnutls_strerror(rc));
        gnutls_x509_crt_deinit(crt);
        return;
    }
    char first[sizeof(j->shown) - 3];
    bool from_cn;
    bool named = certstore_names_host(crt, host, first, sizeof(first), &from_cn);
    snprintf(j->shown, sizeof(j->shown), "%s%s", from_cn ? "CN=" : "", first);
    if (!named)
        add_reason(j->reasons, "issued to %s, not %s", j->shown[0] ? j->shown : "no name", host);

    bool server, client;
    if (!key_purposes(crt, &server, &client))
        add_reason(j->reasons, "no extendedKeyUsage (serverAuth required)");
    else if (!server)
        add_reason(j->reasons, "extendedKeyUsage lacks serverAuth%s",
                   client ? " (clientAuth only: a workstation certificate)" : "");
    j->client_auth = client;

    unsigned ku = 0, critical = 0;
    rc = gnutls_x509_crt_get_key_usage(crt, &ku, &critical);
    if (rc >= 0 && !(ku & GNUTLS_KEY_DIGITAL_SIGNATURE))
        add_reason(j->reasons, "keyUsage lacks digitalSignature");

    j->not_before = (long long)gnutls_x509_crt_get_activation_time(crt);
    j->not_after = (long long)gnutls_x509_crt_get_expiration_time(crt);
    char t[32];
    if (j->not_before == -1 || j->not_after == -1) {
        add_reason(j->reasons, "unreadable validity dates");
    } else if (now < j->not_before) {
        when(j->not_before, t, sizeof(t));
        add_reason(j->reasons, "not valid before %s", t);
    } else if (now >= j->not_after) {
        when(j->not_after, t, sizeof(t));
        add_reason(j->reasons, "expired on %s", t);
    }
    if (!c->has_key)
        add_reason(j->reasons, "no private key in the store for it");
    j->eligible = j->reasons[0] == '\0';
    gnutls_x509_crt_deinit(crt);
}

/* a is better than b: clientAuth too, then later notAfter, then later notBefore. */
static bool better(const struct judged *a, const struct judged *b)
{
    if (a->client_auth != b->client_auth)
        return a->client_auth;
    if (a->not_after != b->not_after)
        return a->not_after > b->not_after;
    return a->not_before > b->not_before;
}

static void emit(void (*log)(void *, const char *), void *arg, const char *fmt, ...)
    PLATFORM_PRINTF(3, 4);
static void emit(void (*log)(void *, const char *), void *arg, const char *fmt, ...)
{
    if (!log)
        return;
    char line[LINE_MAX_BYTES];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    log(arg, line);
}

int certstore_select(const struct certstore_candidate *cands, size_t n, const char *host,
                     long long now, const char *store, void (*log)(void *arg, const char *line),
                     void *log_arg, char thumb[CERTSTORE_THUMB_SIZE], char *err, size_t errsize)
{
    if (err && errsize)
        err[0] = '\0';
    if (!host || !host[0]) {
        snprintf(err, errsize, "%s: no host name to choose a certificate for", store);
        return -1;
    }
    struct judged *js = n ? calloc(n, sizeof(*js)) : NULL;
    if (n && !js) {
        snprintf(err, errsize, "%s: out of memory", store);
        return -1;
    }
    long best = -1;
    for (size_t i = 0; i < n; i++) {
        judge(&cands[i], host, now, &js[i]);
        if (js[i].eligible && (best < 0 || better(&js[i], &js[best])))
            best = (long)i;
    }
    for (size_t i = 0; i < n; i++) {
        char t[32];
        when(js[i].not_after, t, sizeof(t));
        if ((long)i == best)
            emit(log, log_arg, "%s: certificate %s (%s, notAfter %s): chosen for %s", store,
                 js[i].thumb, js[i].shown, t, host);
        else if (js[i].eligible)
            emit(log, log_arg,
                 "%s: certificate %s (%s, notAfter %s): eligible, not chosen (%s %s wins)", store,
                 js[i].thumb, js[i].shown, t,
                 js[best].client_auth && !js[i].client_auth ? "clientAuth too:"
                                                            : "a later notAfter:",
                 js[best].thumb);
        else
            emit(log, log_arg, "%s: certificate %s (%s): rejected: %s", store, js[i].thumb,
                 js[i].shown[0] ? js[i].shown : "?", js[i].reasons);
    }
    if (best >= 0) {
        if (thumb)
            memcpy(thumb, js[best].thumb, CERTSTORE_THUMB_SIZE);
        free(js);
        return (int)best;
    }
    if (err && errsize) {
        size_t len =
            (size_t)snprintf(err, errsize, "%s: no certificate to serve as %s (%zu in the store%s",
                             store, host, n, n ? ":" : "");
        for (size_t i = 0; i < n && len < errsize; i++)
            len += (size_t)snprintf(err + len, errsize - len, "%s %s: %s", i ? ";" : "",
                                    js[i].thumb, js[i].reasons);
        if (len < errsize)
            snprintf(err + len, errsize - len,
                     "); it needs a SAN dNSName %s, extendedKeyUsage serverAuth, a valid date "
                     "and its private key",
                     host);
    }
    free(js);
    return -1;
}
