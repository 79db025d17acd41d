/*
 * enroll.c — the enrollment endpoint (enroll.h): request parsing, the per-address token
 * bucket, and the glue between collectors/server.c (HTTPS, connection discipline), the CA
 * (ca.c) and the policy (domain/identity.c).
 */
#include "enroll.h"

#include <errno.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "identity.h"
#include "server.h"
#include "store.h"
#include "utc.h"

struct bucket {
    char addr[64]; /* "" unused */
    double tokens;
    uint64_t last_ms;
    bool limited; /* refused since it last had a token: audited once */
};

struct enroll_server {
    struct server *server;
    struct store *store;
    struct ca *ca;
    long lifetime_days, pending_max;
    double per_ms, burst;
    struct bucket buckets[ENROLL_BUCKETS];
};

static uint64_t mono_ms(void) { return uv_hrtime() / 1000000; }

static void reply(struct server_reply *rep, unsigned status, json_t *doc)
{
    rep->status = status;
    rep->body = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
    json_decref(doc);
}

static void reply_error(struct server_reply *rep, unsigned status, const char *why)
{
    reply(rep, status, json_pack("{s:s}", "error", why));
}

/* The bucket of `addr`: found, or a free one, or the least recently used of its probe run. */
static struct bucket *bucket_of(struct enroll_server *e, const char *addr, uint64_t now)
{
    unsigned h = 2166136261u; /* FNV-1a */
    for (const char *p = addr; *p; p++)
        h = (h ^ (unsigned char)*p) * 16777619u;
    struct bucket *empty = NULL, *oldest = NULL;
    for (unsigned i = 0; i < 16; i++) {
        struct bucket *b = &e->buckets[(h + i) % ENROLL_BUCKETS];
        if (!strcmp(b->addr, addr))
            return b;
        if (!b->addr[0]) {
            if (!empty)
                empty = b;
        } else if (!oldest || b->last_ms < oldest->last_ms) {
            oldest = b;
        }
    }
    if (empty)
        oldest = empty;
    snprintf(oldest->addr, sizeof(oldest->addr), "%s", addr);
    oldest->tokens = e->burst;
    oldest->last_ms = now;
    oldest->limited = false;
    return oldest;
}

/* Takes a token for `addr`: 0, or the seconds to wait (and *first: the first refusal since
 * the address last had one). */
static unsigned take_token(struct enroll_server *e, const char *addr, bool *first)
{
    uint64_t now = mono_ms();
    struct bucket *b = bucket_of(e, addr, now);
    b->tokens += (double)(now - b->last_ms) * e->per_ms;
    if (b->tokens > e->burst)
        b->tokens = e->burst;
    b->last_ms = now;
    if (b->tokens >= 1.0) {
        b->tokens -= 1.0;
        b->limited = false;
        return 0;
    }
    *first = !b->limited;
    b->limited = true;
    unsigned wait = (unsigned)((1.0 - b->tokens) / e->per_ms / 1000.0) + 1;
    return wait;
}

static void audit_refusal(struct enroll_server *e, const struct server_request *req,
                          const char *why)
{
    char what[96];
    snprintf(what, sizeof(what), "%.8s %.64s", req->method, req->path);
    if (identity_audit_refusal(e->store, utc_now(), req->peer, what, why))
        fprintf(stderr, "tlsgate: enroll serve: audit: %s\n", store_errmsg(e->store));
}

/* Refuses with `status` and one audit row. */
static void refuse(struct enroll_server *e, const struct server_request *req,
                   struct server_reply *rep, unsigned status, const char *why)
{
    audit_refusal(e, req, why);
    reply_error(rep, status, why);
}

struct sign_ctx {
    struct enroll_server *e;
    const struct ca_csr *csr;
    long long now;
};

static int sign_cb(void *arg, const char *name, struct identity_issued *out)
{
    struct sign_ctx *x = arg;
    struct ca_issued is;
    char err[256];
    int rc = ca_sign(x->e->ca, x->csr, name, x->now, x->e->lifetime_days, &is, err, sizeof(err));
    if (rc) {
        fprintf(stderr, "tlsgate: enroll serve: %s\n", err);
        return rc;
    }
    out->pem = is.pem;
    is.pem = NULL;
    memcpy(out->fingerprint, is.fingerprint, sizeof(out->fingerprint));
    memcpy(out->serial, is.serial, sizeof(out->serial));
    memcpy(out->issuer, is.issuer, sizeof(out->issuer));
    out->not_before = is.not_before;
    out->not_after = is.not_after;
    ca_issued_release(&is);
    return 0;
}

/* A member that must be a non-empty string of at most `max` bytes; NULL when not. */
static const char *member(json_t *doc, const char *key, size_t max)
{
    json_t *v = json_object_get(doc, key);
    if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) > max ||
        strlen(json_string_value(v)) != json_string_length(v))
        return NULL;
    return json_string_value(v);
}

static void answer(struct enroll_server *e, const struct server_request *req,
                   struct server_reply *rep, bool renew)
{
    json_error_t jerr;
    json_t *doc = json_loadb(req->body, req->body_len, JSON_REJECT_DUPLICATES, &jerr);
    char why[IDENTITY_WHY_MAX + 64];
    if (!json_is_object(doc)) {
        snprintf(why, sizeof(why), "malformed JSON: %s",
                 doc ? "the body must be a JSON object" : jerr.text);
        json_decref(doc);
        refuse(e, req, rep, 400, why);
        return;
    }
    struct ca_csr csr;
    memset(&csr, 0, sizeof(csr));
    const char *name = NULL, *site = NULL, *secret = NULL, *pem = member(doc, "csr", CA_PEM_MAX);
    char presented[CA_HEX_SHA256] = "";
    if (!renew) {
        name = member(doc, "name", CA_NAME_MAX - 1);
        site = member(doc, "site", 64);
        secret = member(doc, "secret", 256);
        const char *bad = !name     ? "name"
                          : !site   ? "site"
                          : !secret ? "secret"
                          : !pem    ? "csr"
                                    : NULL;
        if (bad) {
            snprintf(why, sizeof(why), "member \"%s\" missing or not a non-empty string", bad);
            goto bad_request;
        }
        if (!ca_name_valid(name)) {
            snprintf(why, sizeof(why), "name: not a DNS host name");
            goto bad_request;
        }
    } else {
        if (!req->client_verified) {
            json_decref(doc);
            refuse(e, req, rep, 403, "renewal needs the current enrolled certificate (mutual TLS)");
            return;
        }
        if (!pem) {
            snprintf(why, sizeof(why), "member \"csr\" missing or not a non-empty string");
            goto bad_request;
        }
        ca_sha256_hex(req->client_der, req->client_der_len, presented);
    }
    if (ca_csr_parse(pem, strlen(pem), &csr, why, sizeof(why)))
        goto bad_request;
    if (!renew && strcasecmp(csr.cn, name) != 0) {
        snprintf(why, sizeof(why), "csr: its CN '%s' is not the name '%s'", csr.cn, name);
        goto bad_request;
    }
    struct identity_ask ask = {
        .renew = renew,
        .name = renew ? csr.cn : name,
        .site = site,
        .secret = secret,
        .presented = presented,
        .spki = csr.spki,
        .csr = pem,
        .peer = req->peer,
        .now = utc_now(),
        .pending_max = e->pending_max,
    };
    struct sign_ctx ctx = {e, &csr, ask.now};
    struct identity_answer ans;
    int rc = identity_ask(e->store, &ask, sign_cb, &ctx, &ans);
    if (rc) {
        /* Nothing was stored; the audit row may not be possible either (a busy store). */
        fprintf(stderr, "tlsgate: enroll serve: %s\n", store_errmsg(e->store));
        reply_error(rep, 503,
                    rc == -EBUSY ? "the database is busy; retry later"
                                 : "cannot sign now; retry later");
        rep->retry_after = ENROLL_BUSY_RETRY_S;
    } else if (ans.outcome == IDENTITY_ISSUED) {
        reply(rep, 200,
              json_pack("{s:s, s:s, s:s, s:I}", "status", "issued", "certificate", ans.certificate,
                        "ca", ca_pem(e->ca), "not_after", (json_int_t)ans.not_after));
    } else if (ans.outcome == IDENTITY_PENDING) {
        reply(rep, 202,
              json_pack("{s:s, s:I, s:i}", "status", "pending", "request", (json_int_t)ans.request,
                        "retry_after", ENROLL_PENDING_RETRY_S));
    } else if (ans.outcome == IDENTITY_FULL) {
        reply_error(rep, 429, ans.why);
        rep->retry_after = ENROLL_PENDING_RETRY_S;
    } else {
        reply_error(rep, 403, ans.why);
    }
    identity_answer_release(&ans);
    ca_csr_release(&csr);
    json_decref(doc);
    return;
bad_request:
    ca_csr_release(&csr);
    json_decref(doc);
    refuse(e, req, rep, 400, why);
}

static void on_request(void *arg, const struct server_request *req, struct server_reply *rep)
{
    struct enroll_server *e = arg;
    bool enroll = !strcmp(req->path, "/v1/enroll"), renew = !strcmp(req->path, "/v1/renew");
    if (!strcmp(req->path, "/v1/health")) {
        if (strcmp(req->method, "GET") && strcmp(req->method, "HEAD"))
            reply_error(rep, 405, "method not allowed");
        else
            reply(rep, 200, json_pack("{s:s}", "status", "ok"));
        return;
    }
    if (!enroll && !renew) {
        reply_error(rep, 404, "not found");
        return;
    }
    if (strcmp(req->method, "POST") != 0) {
        reply_error(rep, 405, "method not allowed");
        return;
    }
    bool first = false;
    unsigned wait = take_token(e, req->peer, &first);
    if (wait) {
        if (first)
            audit_refusal(e, req,
                          "rate limited (further requests from this address are "
                          "refused without a row until it has a token again)");
        reply_error(rep, 429, "rate limited; retry later");
        rep->retry_after = wait;
        return;
    }
    if (req->body_refused) {
        char why[96];
        snprintf(why, sizeof(why), "the body (%llu bytes) is larger than %d bytes",
                 req->body_refused, ENROLL_BODY_MAX);
        refuse(e, req, rep, 413, why);
        return;
    }
    answer(e, req, rep, renew);
}

int enroll_server_start(uv_loop_t *loop, struct store *s, const struct enroll_options *o,
                        struct enroll_server **out, char *err, size_t errsize)
{
    *out = NULL;
    struct enroll_server *e = calloc(1, sizeof(*e));
    if (!e)
        return -ENOMEM;
    e->store = s;
    e->ca = o->ca;
    e->lifetime_days = o->lifetime_days;
    e->pending_max = o->pending_max;
    e->per_ms = (double)o->rate_per_minute / 60000.0;
    e->burst = (double)o->rate_burst;
    identity_set_busy_timeout(s, ENROLL_BUSY_TIMEOUT_MS);
    struct server_options so = {
        .host = "enroll",
        .address = o->address,
        .port = o->port,
        .cert_pem = o->cert_pem,
        .key_pem = o->key_pem,
        .ca_pem = ca_pem(o->ca), /* renewal: client certificates of the fleet CA */
        .handler = on_request,
        .handler_arg = e,
        .body_max = ENROLL_BODY_MAX,
        .connection_limit = o->connection_limit,
        .per_ip_limit = o->per_ip_limit,
    };
    int rc = server_start(loop, &so, &e->server, err, errsize);
    if (rc) {
        free(e);
        return rc;
    }
    *out = e;
    return 0;
}

uint16_t enroll_server_port(const struct enroll_server *e) { return server_port(e->server); }

static void on_closed(void *arg) { free(arg); }

void enroll_server_close(struct enroll_server *e) { server_close(e->server, on_closed, e); }
