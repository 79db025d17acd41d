/*
 * sweep.c — the jobs of a probe over many hosts, and storing their outcomes (sweep.h).
 */
#include "sweep.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "wire.h"

const enum wire_proto sweep_protocols[SWEEP_NPROTOCOLS] = {WIRE_SSL3, WIRE_TLS10, WIRE_TLS11,
                                                           WIRE_TLS12, WIRE_TLS13};

static int grow(struct sweep *w)
{
    size_t ncap = w->cap ? w->cap * 2 : 64;
    struct probe_job *j = realloc(w->jobs, ncap * sizeof(*j));
    if (!j)
        return -ENOMEM;
    w->jobs = j;
    long long *ids = realloc(w->host_ids, ncap * sizeof(*ids));
    if (!ids)
        return -ENOMEM;
    w->host_ids = ids;
    w->cap = ncap;
    return 0;
}

static int plan_target(const struct wire_target *t, void *arg)
{
    struct sweep *w = arg;
    w->hosts++;
    for (size_t i = 0; i < t->nports; i++) {
        for (size_t k = 0; k < SWEEP_NPROTOCOLS; k++) {
            if (w->n == w->cap && grow(w))
                return -ENOMEM;
            char *address = strdup(t->address), *sni = strdup(t->name);
            if (!address || !sni) {
                free(address);
                free(sni);
                return -ENOMEM;
            }
            w->jobs[w->n] = (struct probe_job){
                .address = address, .sni = sni, .port = t->ports[i], .proto = sweep_protocols[k]};
            w->host_ids[w->n++] = t->host_id;
        }
    }
    return 0;
}

int sweep_plan(struct store *s, const char *site, const char *host, struct sweep *w)
{
    return wire_targets(s, host ? NULL : site, host, plan_target, w);
}

size_t sweep_slice_end(const struct sweep *w, size_t from, size_t max)
{
    size_t end = from;
    while (end < w->n) {
        size_t host_end = end + 1;
        while (host_end < w->n && w->host_ids[host_end] == w->host_ids[end])
            host_end++;
        if (end > from && host_end - from > max)
            break;
        end = host_end;
    }
    return end;
}

int sweep_store(struct store *s, const struct sweep *w, size_t from, size_t to,
                long *accepted_legacy, long *untested)
{
    int rc = 0;
    for (size_t i = from; !rc && i < to; i++) {
        const struct probe_job *j = &w->jobs[i];
        if (i == from || w->host_ids[i] != w->host_ids[i - 1])
            rc = wire_probe_clear(s, w->host_ids[i]);
        if (!rc)
            rc =
                wire_probe_store(s, w->host_ids[i], &j->port, j->proto, j->result, j->error, j->at);
        if (accepted_legacy)
            *accepted_legacy += j->result == WIRE_ACCEPTED && WIRE_PROTO_LEGACY(j->proto);
        if (untested)
            *untested += j->result == WIRE_UNTESTED;
    }
    return rc;
}

void sweep_release(struct sweep *w)
{
    for (size_t i = 0; i < w->n; i++) {
        free((char *)w->jobs[i].address);
        free((char *)w->jobs[i].sni);
    }
    free(w->jobs);
    free(w->host_ids);
    memset(w, 0, sizeof(*w));
}
