/*
 * config: the settings every deciding command reads (DESIGN, "CLI contract"). Loaded from a
 * JSON file; an unknown key or a wrong type is an error naming the file and the key.
 */
#ifndef TLSGATE_CONFIG_H
#define TLSGATE_CONFIG_H

#include <limits.h>
#include <stddef.h>

enum log_level { LOG_ERROR, LOG_WARN, LOG_INFO, LOG_DEBUG };

struct config {
    char *tls_ca;         /* fleet CA (PEM path) */
    char *tls_cert;       /* orchestrator client certificate */
    char *tls_key;        /* its key */
    long interval;        /* seconds between two polls of one host (900) */
    double jitter;        /* fraction of interval used to spread hosts (0.1) */
    long concurrency;     /* transfers in flight at most (64) */
    long connect_timeout; /* seconds (5) */
    long timeout;         /* seconds, whole transfer (15) */
    long stale_after;     /* seconds after which a report no longer counts (86400) */
    long backoff_max;     /* seconds, upper bound of a failing host's retry delay (3600) */
    long evidence_window; /* seconds: a legacy handshake logged this recently blocks its
                                server's gate (30 days, domain/wire.h) */
    enum log_level log_level;
    /* The status page the daemon rewrites after each round ("" none); an array, not a pointer,
     * so copies of the struct (the pull engine's worker keeps one) need no allocation. */
    char report_html[PATH_MAX];
    /* The daemon's Prometheus endpoint, "ADDRESS:PORT" ("[IPv6]:PORT"), numeric; "" when off
     * (the default). An array, not a pointer: copies of the struct (the poller's) stay valid. */
    char metrics[64];
    /* `tlsgate enroll` (issue 12): the fleet CA that signs collector identities and the
     * enrollment endpoint. Paths are taken relative to the config file's folder; "" unset.
     * Arrays, not pointers, like the two above. */
    struct config_enroll {
        char ca_cert[PATH_MAX]; /* the fleet CA's certificate (PEM) */
        char ca_key[PATH_MAX];  /* its key: owner-only (mode 0600), refused otherwise */
        char cert[PATH_MAX];    /* the endpoint's HTTPS server certificate */
        char key[PATH_MAX];     /* its key (owner-only too) */
        char listen[64];        /* "ADDRESS:PORT" of `enroll serve` ("127.0.0.1:8443") */
        long lifetime_days;     /* of an issued certificate (60) */
        long pending_max;       /* requests waiting for a person, at most (1000) */
        long rate_per_minute;   /* requests one client address may make per minute (30) */
        long rate_burst;        /* ...and at once, after a quiet while (10) */
        long connection_limit;  /* connections at once (256) */
        long per_ip_limit;      /* ...from one address (16) */
    } enroll;
};

/* Fills `c` with the built-in defaults. */
void config_init(struct config *c);

/* Reads `path` over the defaults already in `c`. Paths in "tls" are taken relative to the
 * config file's folder. Returns 0, or -EINVAL with a message "FILE: key: why" in err. */
int config_load(struct config *c, const char *path, char *err, size_t errsize);

void config_release(struct config *c);

/* Splits "ADDRESS:PORT" ("127.0.0.1:9464", "[::1]:9464"): a numeric IPv4 or IPv6 address and
 * a port from 1 to 65535. Returns 0, or -EINVAL with the reason in err (without the text). */
int config_split_address(const char *text, char *addr, size_t addrsize, unsigned *port, char *err,
                         size_t errsize);

#endif
