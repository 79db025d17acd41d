/*
 * schedule.c — when each host is due (poll.h, "schedule"): the deterministic first poll and
 * back-off arithmetic, a min-heap of idle hosts by next_at, starting the due ones while there is
 * room, and taking a freshly loaded inventory without losing the state of hosts that stay.
 * Loop thread only.
 */
#include <assert.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "poll_int.h"
#include "utc.h"

double poll_host_fraction(const char *name, unsigned salt)
{
    /* FNV-1a over the lower-cased name, then a final mix: stable across runs and machines. */
    uint64_t h = 1469598103934665603ull ^ salt;
    for (const unsigned char *c = (const unsigned char *)name; *c; c++) {
        unsigned char l = (*c >= 'A' && *c <= 'Z') ? (unsigned char)(*c + 32) : *c;
        h = (h ^ l) * 1099511628211ull;
    }
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    return (double)(h >> 11) / (double)(1ull << 53);
}

long long poll_first_at(const struct config *cfg, const char *name, long long now)
{
    return now + (long long)(poll_host_fraction(name, 0) * cfg->jitter * (double)cfg->interval);
}

long long poll_next_at(const struct config *cfg, const char *name, int failures, long long now)
{
    if (failures <= 0)
        return now + cfg->interval;
    long long d = POLL_BACKOFF_BASE_SECONDS;
    for (int i = 1; i < failures && d < cfg->backoff_max; i++)
        d *= 2;
    if (d > cfg->backoff_max)
        d = cfg->backoff_max;
    double f = poll_host_fraction(name, (unsigned)failures);
    return now + d / 2 + (long long)(f * (double)(d - d / 2));
}

static int host_cmp_id(const void *a, const void *b)
{
    long long x = ((const struct host *)a)->id, y = ((const struct host *)b)->id;
    return x < y ? -1 : x > y;
}

struct host *poll__host_find(struct poll *p, long long id)
{
    struct host key = {.id = id};
    if (!p->nhosts)
        return NULL;
    return bsearch(&key, p->hosts, p->nhosts, sizeof(*p->hosts), host_cmp_id);
}

static void heap_swap(struct poll *p, size_t a, size_t b)
{
    size_t t = p->heap[a];
    p->heap[a] = p->heap[b];
    p->heap[b] = t;
}

static bool heap_less(struct poll *p, size_t a, size_t b)
{
    return p->hosts[p->heap[a]].next_at < p->hosts[p->heap[b]].next_at;
}

void poll__heap_push(struct poll *p, size_t host_index)
{
    /* The heap holds idle hosts only, each once: it never outgrows the host table. */
    assert(p->nheap < p->nhosts && p->hosts[host_index].state == HOST_IDLE);
    size_t i = p->nheap++;
    p->heap[i] = host_index;
    while (i > 0 && heap_less(p, i, (i - 1) / 2)) {
        heap_swap(p, i, (i - 1) / 2);
        i = (i - 1) / 2;
    }
}

static size_t heap_pop(struct poll *p)
{
    size_t top = p->heap[0];
    p->heap[0] = p->heap[--p->nheap];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < p->nheap && heap_less(p, l, m))
            m = l;
        if (r < p->nheap && heap_less(p, r, m))
            m = r;
        if (m == i)
            break;
        heap_swap(p, i, m);
        i = m;
    }
    return top;
}

/* Idle hosts due before `before`: a walk of the heap that stops under any entry not due, so it
 * visits only those hosts and their children (poll.h, poll_overdue). */
size_t poll_overdue(const struct poll *p, long long before)
{
    size_t count = 0, stack[64 * 2], top = 0;
    if (p->nheap)
        stack[top++] = 0;
    while (top) {
        size_t i = stack[--top];
        if (p->hosts[p->heap[i]].next_at >= before)
            continue;
        count++;
        /* Depth-first: at most one pending sibling per level, 64 levels suffice. */
        for (size_t c = 2 * i + 1; c <= 2 * i + 2 && c < p->nheap; c++)
            stack[top++] = c;
    }
    return count;
}

static void on_sched_timer(uv_timer_t *t) { poll__fill(t->data); }

/* Starts due hosts while there is room: a free transfer slot and room in the write buffer. */
void poll__fill(struct poll *p)
{
    if (p->state != POLL_RUNNING || p->job == JOB_LOAD)
        return;
    long long now = utc_now();
    while (p->nheap && p->in_flight < (size_t)p->cfg.concurrency &&
           !poll__batch_full(&p->filling)) {
        struct host *h = &p->hosts[p->heap[0]];
        if (h->next_at > now)
            break;
        heap_pop(p);
        h->state = HOST_BUSY;
        char err[STORE_ERROR_SIZE];
        if (poll__xfer_start(p, h, err, sizeof(err))) {
            poll_log(LOG_ERROR, h->name, "%s", err);
            h->next_at = now + 1;
            h->state = HOST_IDLE;
            poll__heap_push(p, (size_t)(h - p->hosts));
            break;
        }
    }
    uv_timer_stop(&p->sched_timer);
    if (p->nheap && p->in_flight < (size_t)p->cfg.concurrency && !poll__batch_full(&p->filling)) {
        long long wait = p->hosts[p->heap[0]].next_at - now;
        if (wait < 0)
            wait = 0;
        /* Checked at least every minute, so a wall-clock jump is noticed. */
        uint64_t ms = wait > 60 ? 60000 : (uint64_t)wait * 1000 + 1;
        uv_timer_start(&p->sched_timer, on_sched_timer, ms, 0);
    }
}

void poll__free_rows(struct poll *p)
{
    for (size_t i = 0; i < p->nrows; i++) {
        free(p->rows[i].name);
        free(p->rows[i].collector);
    }
    free(p->rows);
    p->rows = NULL;
    p->nrows = 0;
}

/* Replaces the host table by the loaded rows, keeping the state of hosts that stay. */
int poll__apply_rows(struct poll *p)
{
    struct host *nh = calloc(p->nrows ? p->nrows : 1, sizeof(*nh));
    size_t *heap = calloc(p->nrows ? p->nrows : 1, sizeof(*heap));
    if (!nh || !heap) {
        free(nh);
        free(heap);
        return -ENOMEM;
    }
    long long now = utc_now();
    size_t n = 0;
    p->round_left = 0;
    for (size_t i = 0; i < p->nrows; i++) {
        struct host_row *r = &p->rows[i];
        if (p->opt.round && p->opt.host && strcasecmp(p->opt.host, r->name) != 0)
            continue;
        struct host *h = &nh[n++];
        struct host *old = poll__host_find(p, r->id);
        h->id = r->id;
        h->name = r->name;
        h->collector = r->collector;
        r->name = r->collector = NULL;
        if (p->opt.round) {
            h->next_at = 0;
            h->in_round = true;
            p->round_left++;
        } else if (old) {
            h->next_at = old->next_at;
            h->state = old->state;
        } else {
            h->next_at = r->next_at ? r->next_at : poll_first_at(&p->cfg, h->name, now);
        }
    }
    for (size_t i = 0; i < p->nhosts; i++) {
        free(p->hosts[i].name);
        free(p->hosts[i].collector);
    }
    free(p->hosts);
    free(p->heap);
    p->hosts = nh;
    p->nhosts = n;
    p->heap = heap;
    p->nheap = 0;
    for (size_t i = 0; i < n; i++)
        if (nh[i].state == HOST_IDLE)
            poll__heap_push(p, i);
    poll__free_rows(p);
    return 0;
}
