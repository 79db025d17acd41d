/*
 * orphans.c — the daemon's orphan-risk watch: after writes (at most every POLL_ORPHANS_EVERY_S)
 * the worker asks the gate (gate.h) which servers report the legacy protocols disabled while
 * their gate is blocked, and the loop logs only what changed since the last answer. The same job
 * ends the daemon's round once per `interval`: a history point and the status page
 * (report_html_round, report_html.h).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "gate.h"
#include "poll_int.h"
#include "report_html.h"
#include "store.h"
#include "utc.h"

void poll__orphans_free(struct orphan *o, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(o[i].name);
    free(o);
}

static int orphan_seen(const struct gate_server *srv, void *arg)
{
    struct poll *p = arg;
    if (!srv->orphan_risk)
        return 0;
    struct orphan *grown = realloc(p->scan, (p->nscan + 1) * sizeof(*grown));
    if (!grown)
        return -ENOMEM;
    p->scan = grown;
    struct orphan *o = &p->scan[p->nscan];
    if (!(o->name = strdup(srv->name)))
        return -ENOMEM;
    o->blocking = srv->blocking;
    o->ready = srv->state == GATE_READY;
    p->nscan++;
    return 0;
}

static int orphan_cmp(const void *a, const void *b)
{
    return strcasecmp(((const struct orphan *)a)->name, ((const struct orphan *)b)->name);
}

/* The gate's own answer (gate.h), read in one snapshot, for every server of every site. */
int poll__orphans_scan(struct poll *p)
{
    struct gate_time t = gate_time_config(utc_now(), &p->job_cfg);
    int rc = store_begin(p->store, false);
    if (!rc)
        rc = gate_servers(p->store, NULL, &t, orphan_seen, p);
    if (rc)
        snprintf(p->job_err, sizeof(p->job_err), "%s", store_errmsg(p->store));
    store_rollback(p->store);
    /* A round of the daemon ends once per interval: its history point and status page. */
    if (!rc && report_html_round(p->store, &p->job_cfg, t.now, false, NULL))
        poll_log(LOG_ERROR, NULL, "history or status page not written: %s", store_errmsg(p->store));
    if (!rc && p->nscan > 1)
        qsort(p->scan, p->nscan, sizeof(*p->scan), orphan_cmp);
    return rc;
}

/* Logs the servers that became an orphan risk since the last watch, and those that no longer
 * are; both lists are sorted by name. */
void poll__orphans_report(struct poll *p, int rc)
{
    if (rc) {
        poll_log(LOG_ERROR, NULL, "orphan-risk check failed: %s", p->job_err);
        poll__orphans_free(p->scan, p->nscan);
    } else {
        size_t i = 0, j = 0;
        while (i < p->nrisk || j < p->nscan) {
            int c = i == p->nrisk   ? 1
                    : j == p->nscan ? -1
                                    : strcasecmp(p->risk[i].name, p->scan[j].name);
            if (c < 0) {
                poll_log(LOG_INFO, p->risk[i].name, "orphan risk cleared");
                i++;
            } else if (c > 0) {
                const struct orphan *o = &p->scan[j];
                if (o->ready)
                    poll_log(LOG_WARN, o->name,
                             "ORPHAN RISK: legacy protocols disabled while %ld dependent(s) "
                             "cannot use TLS 1.2 or have no fresh report (tlsgate gate check %s)",
                             o->blocking, o->name);
                else
                    poll_log(LOG_WARN, o->name,
                             "ORPHAN RISK: legacy protocols disabled while the server itself "
                             "is not ready (tlsgate gate check %s)",
                             o->name);
                j++;
            } else {
                i++;
                j++;
            }
        }
        poll__orphans_free(p->risk, p->nrisk);
        p->risk = p->scan;
        p->nrisk = p->nscan;
    }
    p->scan = NULL;
    p->nscan = 0;
}
