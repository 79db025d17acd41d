/*
 * config.c — the JSON settings file of DESIGN's CLI contract. Strict: unknown keys and wrong
 * types are errors that name the file and the key, so a typo never silently means "default".
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <libgen.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void config_init(struct config *c)
{
    memset(c, 0, sizeof(*c));
    c->interval = 900;
    c->jitter = 0.1;
    c->concurrency = 64;
    c->connect_timeout = 5;
    c->timeout = 15;
    c->stale_after = 86400;
    c->backoff_max = 3600;
    c->evidence_window = 30L * 86400;
    c->log_level = LOG_INFO;
    snprintf(c->enroll.listen, sizeof(c->enroll.listen), "127.0.0.1:8443");
    c->enroll.lifetime_days = 60;
    c->enroll.pending_max = 1000;
    c->enroll.rate_per_minute = 30;
    c->enroll.rate_burst = 10;
    c->enroll.connection_limit = 256;
    c->enroll.per_ip_limit = 16;
}

void config_release(struct config *c)
{
    free(c->tls_ca);
    free(c->tls_cert);
    free(c->tls_key);
    c->tls_ca = c->tls_cert = c->tls_key = NULL;
}

/* A path from the config, made relative to the config file's folder unless absolute. */
static char *resolve_path(const char *config_path, const char *p)
{
    if (p[0] == '/')
        return strdup(p);
    char *copy = strdup(config_path);
    if (!copy)
        return NULL;
    const char *dir = dirname(copy);
    char *out = NULL;
    if (asprintf(&out, "%s/%s", dir, p) < 0)
        out = NULL;
    free(copy);
    return out;
}

static int load_tls(struct config *c, const char *path, json_t *tls, char *err, size_t errsize)
{
    if (!json_is_object(tls)) {
        snprintf(err, errsize, "%s: tls: must be an object", path);
        return -EINVAL;
    }
    const char *key;
    json_t *v;
    json_object_foreach(tls, key, v)
    {
        char **slot = !strcmp(key, "ca")     ? &c->tls_ca
                      : !strcmp(key, "cert") ? &c->tls_cert
                      : !strcmp(key, "key")  ? &c->tls_key
                                             : NULL;
        if (!slot) {
            snprintf(err, errsize, "%s: tls.%s: unknown key (known: ca, cert, key)", path, key);
            return -EINVAL;
        }
        if (!json_is_string(v) || json_string_length(v) == 0) {
            snprintf(err, errsize, "%s: tls.%s: must be a non-empty string (a file path)", path,
                     key);
            return -EINVAL;
        }
        free(*slot);
        if (!(*slot = resolve_path(path, json_string_value(v)))) {
            snprintf(err, errsize, "%s: out of memory", path);
            return -ENOMEM;
        }
    }
    return 0;
}

int config_split_address(const char *text, char *addr, size_t addrsize, unsigned *port, char *err,
                         size_t errsize)
{
    const char *colon = strrchr(text, ':');
    if (!colon) {
        snprintf(err, errsize, "must be ADDRESS:PORT, e.g. 127.0.0.1:9464 or [::1]:9464");
        return -EINVAL;
    }
    const char *a = text;
    size_t alen = (size_t)(colon - text);
    bool v6 = alen >= 2 && a[0] == '[' && a[alen - 1] == ']';
    if (v6) {
        a++;
        alen -= 2;
    }
    char buf[INET6_ADDRSTRLEN + 1];
    unsigned char bin[sizeof(struct in6_addr)];
    if (alen == 0 || alen >= sizeof(buf) || alen >= addrsize) {
        snprintf(err, errsize, "must be ADDRESS:PORT with a numeric address");
        return -EINVAL;
    }
    memcpy(buf, a, alen);
    buf[alen] = '\0';
    if (inet_pton(v6 ? AF_INET6 : AF_INET, buf, bin) != 1) {
        snprintf(err, errsize, "'%s' is not a numeric %s address%s", buf, v6 ? "IPv6" : "IPv4",
                 v6 ? "" : " (write IPv6 as [ADDRESS]:PORT)");
        return -EINVAL;
    }
    const char *p = colon + 1;
    char *end;
    long n = strtol(p, &end, 10);
    if (!*p || *end || n < 1 || n > 65535 || *p == '+' || *p == '-' || *p == ' ') {
        snprintf(err, errsize, "port '%s' is not a number from 1 to 65535", p);
        return -EINVAL;
    }
    memcpy(addr, buf, alen + 1);
    *port = (unsigned)n;
    return 0;
}

/* The "enroll" object (config.h, struct config_enroll). */
static int load_enroll(struct config *c, const char *path, json_t *obj, char *err, size_t errsize)
{
    if (!json_is_object(obj)) {
        snprintf(err, errsize, "%s: enroll: must be an object", path);
        return -EINVAL;
    }
    static const char known[] = "ca_cert, ca_key, cert, key, listen, lifetime_days, pending_max, "
                                "rate_per_minute, rate_burst, connection_limit, per_ip_limit";
    struct config_enroll *e = &c->enroll;
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v)
    {
        char *slot = !strcmp(key, "ca_cert")  ? e->ca_cert
                     : !strcmp(key, "ca_key") ? e->ca_key
                     : !strcmp(key, "cert")   ? e->cert
                     : !strcmp(key, "key")    ? e->key
                                              : NULL;
        if (slot) {
            char *full = json_is_string(v) && json_string_length(v) > 0
                             ? resolve_path(path, json_string_value(v))
                             : NULL;
            if (!full || strlen(full) >= PATH_MAX) {
                snprintf(err, errsize, "%s: enroll.%s: must be a non-empty string (a file path)",
                         path, key);
                free(full);
                return -EINVAL;
            }
            memcpy(slot, full, strlen(full) + 1);
            free(full);
            continue;
        }
        if (!strcmp(key, "listen")) {
            char addr[64], why[160];
            unsigned port;
            const char *text = json_string_value(v);
            if (!text || strlen(text) >= sizeof(e->listen) ||
                config_split_address(text, addr, sizeof(addr), &port, why, sizeof(why))) {
                snprintf(err, errsize, "%s: enroll.listen: %s", path,
                         !text ? "must be a string \"ADDRESS:PORT\" (e.g. \"127.0.0.1:8443\")"
                         : strlen(text) >= sizeof(e->listen) ? "too long"
                                                             : why);
                return -EINVAL;
            }
            snprintf(e->listen, sizeof(e->listen), "%s", text);
            continue;
        }
        long *num = !strcmp(key, "lifetime_days")      ? &e->lifetime_days
                    : !strcmp(key, "pending_max")      ? &e->pending_max
                    : !strcmp(key, "rate_per_minute")  ? &e->rate_per_minute
                    : !strcmp(key, "rate_burst")       ? &e->rate_burst
                    : !strcmp(key, "connection_limit") ? &e->connection_limit
                    : !strcmp(key, "per_ip_limit")     ? &e->per_ip_limit
                                                       : NULL;
        if (!num) {
            snprintf(err, errsize, "%s: enroll.%s: unknown key (known: %s)", path, key, known);
            return -EINVAL;
        }
        long max = num == &e->lifetime_days                                 ? 3650
                   : num == &e->connection_limit || num == &e->per_ip_limit ? 65536
                                                                            : 1000000;
        if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > max) {
            snprintf(err, errsize, "%s: enroll.%s: must be a whole number from 1 to %ld", path, key,
                     max);
            return -EINVAL;
        }
        *num = (long)json_integer_value(v);
    }
    return 0;
}

struct int_key {
    const char *name;
    size_t offset;
    long min, max;
};

static const struct int_key int_keys[] = {
    {"interval", offsetof(struct config, interval), 1, 31 * 86400},
    {"concurrency", offsetof(struct config, concurrency), 1, 65536},
    {"connect_timeout", offsetof(struct config, connect_timeout), 1, 3600},
    {"timeout", offsetof(struct config, timeout), 1, 86400},
    {"stale_after", offsetof(struct config, stale_after), 1, 366L * 86400},
    {"backoff_max", offsetof(struct config, backoff_max), 1, 31 * 86400},
    {"evidence_window", offsetof(struct config, evidence_window), 1, 400L * 86400},
};

int config_load(struct config *c, const char *path, char *err, size_t errsize)
{
    json_error_t jerr;
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        snprintf(err, errsize, "%s:%d: %s", path, jerr.line, jerr.text);
        return -EINVAL;
    }
    int rc = 0;
    if (!json_is_object(root)) {
        snprintf(err, errsize, "%s: the config must be a JSON object", path);
        rc = -EINVAL;
        goto out;
    }
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v)
    {
        if (!strcmp(key, "tls")) {
            if ((rc = load_tls(c, path, v, err, errsize)))
                goto out;
            continue;
        }
        if (!strcmp(key, "enroll")) {
            if ((rc = load_enroll(c, path, v, err, errsize)))
                goto out;
            continue;
        }
        if (!strcmp(key, "jitter")) {
            if (!json_is_number(v) || json_number_value(v) < 0 || json_number_value(v) > 1) {
                snprintf(err, errsize, "%s: jitter: must be a number from 0 to 1", path);
                rc = -EINVAL;
                goto out;
            }
            c->jitter = json_number_value(v);
            continue;
        }
        if (!strcmp(key, "report_html")) {
            char *full = json_is_string(v) && json_string_length(v) > 0
                             ? resolve_path(path, json_string_value(v))
                             : NULL;
            if (!full || strlen(full) >= sizeof(c->report_html)) {
                snprintf(err, errsize, "%s: report_html: must be a non-empty string (a file path)",
                         path);
                free(full);
                rc = -EINVAL;
                goto out;
            }
            memcpy(c->report_html, full, strlen(full) + 1);
            free(full);
            continue;
        }
        if (!strcmp(key, "log_level")) {
            const char *s = json_string_value(v);
            static const char *const levels[] = {"error", "warn", "info", "debug"};
            int found = -1;
            for (int i = 0; s && i < 4; i++)
                if (!strcmp(s, levels[i]))
                    found = i;
            if (found < 0) {
                snprintf(err, errsize, "%s: log_level: must be one of error, warn, info, debug",
                         path);
                rc = -EINVAL;
                goto out;
            }
            c->log_level = (enum log_level)found;
            continue;
        }
        if (!strcmp(key, "metrics")) {
            char addr[64], why[160];
            unsigned port;
            const char *text = json_string_value(v);
            if (!text) {
                snprintf(err, errsize,
                         "%s: metrics: must be a string \"ADDRESS:PORT\" (e.g. "
                         "\"127.0.0.1:9464\")",
                         path);
                rc = -EINVAL;
                goto out;
            }
            if (strlen(text) >= sizeof(c->metrics) ||
                config_split_address(text, addr, sizeof(addr), &port, why, sizeof(why))) {
                snprintf(err, errsize, "%s: metrics: %s", path,
                         strlen(text) >= sizeof(c->metrics) ? "too long" : why);
                rc = -EINVAL;
                goto out;
            }
            snprintf(c->metrics, sizeof(c->metrics), "%s", text);
            continue;
        }
        const struct int_key *k = NULL;
        for (size_t i = 0; i < sizeof(int_keys) / sizeof(int_keys[0]); i++)
            if (!strcmp(key, int_keys[i].name))
                k = &int_keys[i];
        if (!k) {
            snprintf(err, errsize,
                     "%s: %s: unknown key (known: tls, interval, jitter, concurrency, "
                     "connect_timeout, timeout, stale_after, backoff_max, evidence_window, "
                     "log_level, report_html, metrics, enroll)",
                     path, key);
            rc = -EINVAL;
            goto out;
        }
        if (!json_is_integer(v) || json_integer_value(v) < k->min ||
            json_integer_value(v) > k->max) {
            snprintf(err, errsize, "%s: %s: must be a whole number from %ld to %ld", path, key,
                     k->min, k->max);
            rc = -EINVAL;
            goto out;
        }
        *(long *)((char *)c + k->offset) = (long)json_integer_value(v);
    }
out:
    json_decref(root);
    return rc;
}
