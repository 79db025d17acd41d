/*
 * report_html.c — the self-contained status page (report_html.h): the overview of every site,
 * then one section per site; HTML escaping, the inline SVG charts, and the round hook of the
 * pull engine.
 *
 * Memory: the sites (a few dozen), and per site at most REPORT_HTML_TOP servers and the history
 * points of that site (one per round for a week, then one per day) are held; hosts are never
 * enumerated beyond the top-N queries, so the page of a 1,000,000-host database costs what the
 * gate's aggregates cost.
 */
#include "report_html.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "atomicfile.h"
#include "config.h"
#include "gate.h"
#include "grow.h"
#include "history.h"
#include "inventory.h"
#include "phase.h"
#include "rules.h"
#include "store.h"
#include "utc.h"
#include "wire.h"

/* Most points drawn per series: more are thinned evenly (the last one always stays). */
#define CHART_POINTS_MAX 400
/* Observed values (verdict reasons) shown per rule. */
#define RULE_REASONS_MAX 3
/* Servers at orphan risk per site whose blocking dependents are listed (each listing reads the
 * site's failing hosts again); the others point to `tlsgate gate check`. */
#define ORPHAN_DETAILED_MAX 5
/* Blocking dependents named per rule group of a server at orphan risk. */
#define ORPHAN_DEPENDENTS_MAX 5

/* ---- text ------------------------------------------------------------------------------- */

/* Writes `s` as HTML text or attribute value: & < > " ' escaped, control characters (which no
 * host name, reason or waiver should hold) shown as U+FFFD. */
static void esc(FILE *o, const char *s)
{
    if (!s)
        return;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        switch (c) {
        case '&': fputs("&amp;", o); break;
        case '<': fputs("&lt;", o); break;
        case '>': fputs("&gt;", o); break;
        case '"': fputs("&quot;", o); break;
        case '\'': fputs("&#39;", o); break;
        default:
            if ((c < 0x20 && c != '\t') || c == 0x7f)
                fputs("&#xFFFD;", o);
            else
                fputc(c, o);
        }
    }
}

/* `before` as is (markup), then `s` escaped by esc(). */
static void put_esc(FILE *o, const char *before, const char *s)
{
    fputs(before, o);
    esc(o, s);
}

/* 12345 -> "12,345" (for people; data-k attributes and cells keep plain digits elsewhere). */
static const char *thousands(long long v, char *buf, size_t size)
{
    char digits[32];
    snprintf(digits, sizeof(digits), "%lld", v < 0 ? -v : v);
    size_t n = strlen(digits), o = 0;
    if (v < 0 && o + 1 < size)
        buf[o++] = '-';
    for (size_t i = 0; i < n && o + 2 < size; i++) {
        if (i && (n - i) % 3 == 0)
            buf[o++] = ',';
        buf[o++] = digits[i];
    }
    buf[o] = '\0';
    return buf;
}

static const char *iso(long long t, char *buf)
{
    return t > 0 ? utc_iso8601(t, buf, UTC_ISO8601_SIZE) : "never";
}

/* A count a test can read: <td data-k="K">N</td>. */
static void count_cell(FILE *o, const char *k, long long v)
{
    fprintf(o, "<td data-k=\"%s\">%lld</td>", k, v);
}

static void more_line(FILE *o, long long more, const char *what, const char *where)
{
    char n[32];
    if (more <= 0)
        return;
    fprintf(o, "<p class=\"more\">and %s more %s — see <code>", thousands(more, n, sizeof(n)),
            what);
    esc(o, where);
    fputs("</code></p>\n", o);
}

/* ---- page frame ------------------------------------------------------------------------- */

static const char page_css[] =
    ":root{--fg:#1a1a1a;--muted:#555;--line:#c8c8c8;--bg:#fff;--danger:#a4001d;"
    "--danger-bg:#fde8ec;--ok:#1b6e2d;--warn:#8a4b00;--accent:#1f4e99}\n"
    "*{box-sizing:border-box}\n"
    "body{font:15px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,Arial,sans-serif;"
    "color:var(--fg);background:var(--bg);margin:0 auto;max-width:1100px;padding:1rem 1.25rem}\n"
    "h1{font-size:1.6rem;margin:.2rem 0}h2{font-size:1.3rem;margin:2rem 0 .4rem;"
    "border-bottom:2px solid var(--accent);padding-bottom:.2rem}"
    "h3{font-size:1.05rem;margin:1.2rem 0 .3rem}\n"
    ".asof{color:var(--muted);margin:.1rem 0 .6rem}\n"
    "table{border-collapse:collapse;width:100%;margin:.3rem 0 .6rem;font-size:.92rem}\n"
    "th,td{border:1px solid var(--line);padding:.25rem .45rem;text-align:left;"
    "vertical-align:top}\n"
    /* Free text (a pull error quotes a URL) may break anywhere rather than widen the page. */
    "td.text{overflow-wrap:anywhere}table[data-list=rules] th[scope=row]{width:15rem}\n"
    "thead th{background:#eef1f6}td[data-k],td.num{text-align:right;"
    "font-variant-numeric:tabular-nums}\n"
    "caption{text-align:left;color:var(--muted);padding:.2rem 0}\n"
    "code{font-family:ui-monospace,Consolas,monospace;font-size:.9em}\n"
    ".danger{border:2px solid var(--danger);border-left-width:8px;background:var(--danger-bg);"
    "padding:.4rem .8rem;margin:.5rem 0}\n"
    ".label{display:inline-block;font-weight:700;color:#fff;background:var(--danger);"
    "padding:0 .35rem;border-radius:3px;letter-spacing:.03em}\n"
    ".label.ok{background:var(--ok)}.label.blocked{background:var(--warn)}\n"
    ".ok-text{color:var(--ok)}\n"
    "ol.phases{list-style:none;display:flex;flex-wrap:wrap;gap:.3rem;padding:0;margin:.3rem 0}\n"
    "ol.phases li{border:1px solid var(--line);padding:.2rem .6rem;border-radius:1rem}\n"
    "ol.phases li.done{background:#e6f2e8}ol.phases li.current{background:var(--accent);"
    "color:#fff;font-weight:700}\n"
    ".more{color:var(--muted);font-style:italic}\n"
    "svg{max-width:100%;height:auto}\n"
    ".asof-print{display:none}\n"
    "@media print{body{font-size:10.5pt;max-width:none;padding:0}"
    "section.site{break-before:page}h2,h3{break-after:avoid}tr{break-inside:avoid}"
    "a{color:inherit;text-decoration:none}"
    ".asof-print{display:block;position:fixed;bottom:0;right:0;font-size:8pt;"
    "color:var(--muted)}"
    ".danger,.label,ol.phases li,thead th{-webkit-print-color-adjust:exact;"
    "print-color-adjust:exact}}\n";

static void page_head(FILE *o, const struct gate_time *t, long stale_after)
{
    char when[UTC_ISO8601_SIZE];
    utc_iso8601(t->now, when, sizeof(when));
    fputs("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
          "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
          "style-src 'unsafe-inline'\">\n"
          "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
          "<meta name=\"generator\" content=\"tlsgate " TLSGATE_VERSION "\">\n",
          o);
    fprintf(o, "<title>tlsgate status — TLS 1.2 rollout, data as of %s</title>\n", when);
    fprintf(o, "<style>\n%s</style>\n</head>\n<body>\n", page_css);
    fprintf(o,
            "<div class=\"asof-print\" aria-hidden=\"true\">tlsgate status — data as of %s</div>\n"
            "<header>\n<h1>TLS 1.2 rollout status</h1>\n"
            "<p class=\"asof\">Data as of <time id=\"data-as-of\" datetime=\"%s\" "
            "data-epoch=\"%lld\">%s</time> (UTC). A host without a report newer than %ld s is "
            "<em>unknown</em> and never counts as ready.</p>\n</header>\n<main>\n",
            when, when, t->now, when, stale_after);
}

static void page_tail(FILE *o)
{
    fputs("</main>\n<footer><p class=\"asof\">Written by <code>tlsgate report html</code>. "
          "Every number here is what <code>tlsgate phase status</code>, <code>gate list</code> "
          "and <code>export csv</code> answer for the same moment.</p></footer>\n"
          "</body>\n</html>\n",
          o);
}

/* ---- the sites -------------------------------------------------------------------------- */

/* One failing blocker rule of a site: its hosts and its most frequent reasons. */
struct rule_stat {
    char *rule;
    long hosts;
    int nreasons;
    char *reason[RULE_REASONS_MAX];
    long reason_hosts[RULE_REASONS_MAX];
};

struct site_row {
    struct rule_stat *rules; /* load_rules; the site's failing blocker rules */
    size_t nrules, caprules;
    char *code;
    enum phase_id phase;
    long long entered_at;
    char *entered_by;
    long hosts, ready, not_ready, unknown, waived, servers, gate_open, orphan_risk;
    long exit_blocking;
    long wire_alarm, wire_not_probed; /* gate_site's */
    long pull_failing;
};

struct sites {
    struct site_row *v;
    size_t n, cap;
};

static int take_site(const struct gate_site *g, void *arg)
{
    struct sites *ss = arg;
    if (grow_room(&ss->v, ss->n, &ss->cap, sizeof(*ss->v), 16))
        return -ENOMEM;
    struct site_row *r = &ss->v[ss->n];
    memset(r, 0, sizeof(*r));
    r->code = strdup(g->code);
    r->entered_by = strdup(g->entered_by ? g->entered_by : "");
    ss->n++;
    if (!r->code || !r->entered_by)
        return -ENOMEM;
    r->phase = g->phase;
    r->entered_at = g->entered_at;
    r->hosts = g->hosts;
    r->ready = g->ready;
    r->not_ready = g->not_ready;
    r->unknown = g->unknown;
    r->waived = g->waived;
    r->servers = g->servers;
    r->gate_open = g->servers_gate_open;
    r->orphan_risk = g->orphan_risk;
    r->exit_blocking = g->exit_blocking;
    r->wire_alarm = g->wire_alarm;
    r->wire_not_probed = g->wire_not_probed;
    return 0;
}

static void sites_free(struct sites *ss)
{
    for (size_t i = 0; i < ss->n; i++) {
        struct site_row *r = &ss->v[i];
        for (size_t k = 0; k < r->nrules; k++) {
            free(r->rules[k].rule);
            for (int j = 0; j < r->rules[k].nreasons; j++)
                free(r->rules[k].reason[j]);
        }
        free(r->rules);
        free(r->code);
        free(r->entered_by);
    }
    free(ss->v);
}

/* One integer answer of `sql` with ?1 = site. */
static int query_count(struct store *s, const char *sql, const char *site, long *out)
{
    sqlite3_stmt *st;
    int rc = store_prepare(s, sql, &st);
    if (rc)
        return rc;
    sqlite3_bind_text(st, 1, site, -1, SQLITE_STATIC);
    long long n;
    rc = store_one_int(s, st, "count", &n);
    *out = (long)n;
    return rc;
}

static int count_pull_failing(struct store *s, const char *site, long *out)
{
    return query_count(s,
                       "SELECT count(*) FROM poll p JOIN host h ON h.id = p.host_id WHERE "
                       "h.site = ?1 AND " HISTORY_PULL_FAILING_SQL("p"),
                       site, out);
}

static void overview(FILE *o, const struct sites *ss)
{
    long risk = 0;
    for (size_t i = 0; i < ss->n; i++)
        risk += ss->v[i].orphan_risk;
    char n[32];
    if (risk) {
        fprintf(o,
                "<div class=\"danger\" role=\"alert\" id=\"orphan-risk-alert\" "
                "data-k=\"orphan_risk\" data-value=\"%ld\"><p><span class=\"label\">ORPHAN RISK"
                "</span> <strong>%s server%s</strong> report%s the legacy protocols disabled "
                "while %s gate is blocked: a client that cannot use TLS 1.2 can no longer reach "
                "%s. Fix the dependents or re-enable the protocols on %s (see each site below).",
                risk, thousands(risk, n, sizeof(n)), risk == 1 ? "" : "s", risk == 1 ? "s" : "",
                risk == 1 ? "its" : "their", risk == 1 ? "it" : "them",
                risk == 1 ? "that server" : "those servers");
        fputs("</p>\n<ul>", o);
        for (size_t i = 0; i < ss->n; i++)
            if (ss->v[i].orphan_risk) {
                put_esc(o, "<li><a href=\"#site-", ss->v[i].code);
                put_esc(o, "\">Site ", ss->v[i].code);
                fprintf(o, "</a>: %ld</li>", ss->v[i].orphan_risk);
            }
        fputs("</ul></div>\n", o);
    }
    fputs("<section id=\"overview\" aria-labelledby=\"overview-h\">\n"
          "<h2 id=\"overview-h\">Sites</h2>\n<table id=\"sites\">\n"
          "<caption>Per site: phase, hosts by state, gates and orphan risk (as <code>phase "
          "status</code> and <code>gate list</code>)</caption>\n<thead><tr>"
          "<th scope=\"col\">Site</th><th scope=\"col\">Phase</th>"
          "<th scope=\"col\">Hosts</th><th scope=\"col\">Ready</th>"
          "<th scope=\"col\">Not ready</th><th scope=\"col\">Unknown</th>"
          "<th scope=\"col\">Waived</th><th scope=\"col\">Servers</th>"
          "<th scope=\"col\">Gates open</th><th scope=\"col\">Gates blocked</th>"
          "<th scope=\"col\">Orphan risk</th><th scope=\"col\">Failing pulls</th>"
          "</tr></thead>\n<tbody>\n",
          o);
    for (size_t i = 0; i < ss->n; i++) {
        const struct site_row *r = &ss->v[i];
        put_esc(o, "<tr data-site=\"", r->code);
        put_esc(o, "\"><th scope=\"row\"><a href=\"#site-", r->code);
        put_esc(o, "\">", r->code);
        fprintf(o, "</a></th><td data-k=\"phase\">%s</td>", phase_name(r->phase));
        count_cell(o, "hosts", r->hosts);
        count_cell(o, "ready", r->ready);
        count_cell(o, "not_ready", r->not_ready);
        count_cell(o, "unknown", r->unknown);
        count_cell(o, "waived", r->waived);
        count_cell(o, "servers", r->servers);
        count_cell(o, "gate_open", r->gate_open);
        count_cell(o, "gate_blocked", r->servers - r->gate_open);
        if (r->orphan_risk)
            fprintf(o, "<td data-k=\"orphan_risk\" class=\"danger\">%ld</td>", r->orphan_risk);
        else
            count_cell(o, "orphan_risk", 0);
        count_cell(o, "pull_failing", r->pull_failing);
        fputs("</tr>\n", o);
    }
    fputs("</tbody>\n</table>\n</section>\n", o);
}

/* ---- servers: orphan risk first, then the most-blocked ---------------------------------- */

struct server_copy {
    long long id;
    char *name;
    unsigned roles;
    enum gate_host_state state;
    bool legacy_disabled, open, orphan_risk;
    long dependents, blocking;
};

/* A server whose last probe found a legacy protocol accepted (the wire section). */
struct wire_copy {
    char *name;
    char accepted[48];
    long long at;
    bool restart_pending; /* its report says the legacy protocols are off */
};

struct server_pick {
    const char *site;
    struct server_copy risk[REPORT_HTML_TOP], blocked[REPORT_HTML_TOP];
    size_t nrisk, nblocked;
    long risk_total, blocked_total;
    /* The wire probe (domain/wire.h): the page's summaries, and this site's counts. */
    const struct wire_summaries *wire;
    long long probe_since; /* an older probe is stale (config probe.max_age) */
    long wire_probed, wire_never, wire_stale, wire_legacy, wire_restart;
    struct wire_copy legacy[REPORT_HTML_TOP];
    size_t nlegacy;
};

static int copy_server(struct server_copy *c, const struct gate_server *g)
{
    c->id = g->id;
    if (!(c->name = strdup(g->name)))
        return -ENOMEM;
    c->roles = g->roles;
    c->state = g->state;
    c->legacy_disabled = g->legacy_disabled;
    c->open = g->open;
    c->orphan_risk = g->orphan_risk;
    c->dependents = g->dependents;
    c->blocking = g->blocking;
    return 0;
}

/* Keeps the REPORT_HTML_TOP blocked servers with the most blocking dependents (ties: the name
 * order the gate walks in), by insertion into a short sorted array. */
static int keep_blocked(struct server_pick *p, const struct gate_server *g)
{
    p->blocked_total++;
    size_t at = p->nblocked;
    while (at > 0 && p->blocked[at - 1].blocking < g->blocking)
        at--;
    if (at >= REPORT_HTML_TOP)
        return 0;
    if (p->nblocked == REPORT_HTML_TOP)
        free(p->blocked[--p->nblocked].name);
    memmove(&p->blocked[at + 1], &p->blocked[at], (p->nblocked - at) * sizeof(p->blocked[0]));
    p->nblocked++;
    return copy_server(&p->blocked[at], g);
}

/* Counts the server's probe and keeps it when the wire accepted a legacy protocol (restart
 * pending first, then the name order the gate walks in). */
static int pick_wire(struct server_pick *p, const struct gate_server *g)
{
    long k = wire_summaries_find(p->wire, g->id);
    if (k < 0) {
        p->wire_never++;
        return 0;
    }
    p->wire_probed++;
    p->wire_stale += p->wire->at[k] < p->probe_since;
    if (!p->wire->accepted[k][0])
        return 0;
    bool restart = g->legacy_disabled;
    p->wire_legacy++;
    p->wire_restart += restart;
    size_t at = p->nlegacy;
    while (at > 0 && restart && !p->legacy[at - 1].restart_pending)
        at--;
    if (at >= REPORT_HTML_TOP)
        return 0;
    if (p->nlegacy == REPORT_HTML_TOP)
        free(p->legacy[--p->nlegacy].name);
    memmove(&p->legacy[at + 1], &p->legacy[at], (p->nlegacy - at) * sizeof(p->legacy[0]));
    p->nlegacy++;
    struct wire_copy *c = &p->legacy[at];
    c->at = p->wire->at[k];
    c->restart_pending = restart;
    memcpy(c->accepted, p->wire->accepted[k], sizeof(c->accepted));
    return (c->name = strdup(g->name)) ? 0 : -ENOMEM;
}

static int pick_server(const struct gate_server *g, void *arg)
{
    struct server_pick *p = arg;
    int wrc = pick_wire(p, g);
    if (wrc)
        return wrc;
    if (g->orphan_risk) {
        p->risk_total++;
        if (p->nrisk < REPORT_HTML_TOP) {
            int rc = copy_server(&p->risk[p->nrisk], g);
            p->nrisk++;
            if (rc)
                return rc;
        }
    }
    return g->open ? 0 : keep_blocked(p, g);
}

static void pick_free(struct server_pick *p)
{
    for (size_t i = 0; i < p->nrisk; i++)
        free(p->risk[i].name);
    for (size_t i = 0; i < p->nblocked; i++)
        free(p->blocked[i].name);
    for (size_t i = 0; i < p->nlegacy; i++)
        free(p->legacy[i].name);
}

struct dependents_out {
    FILE *o;
    long groups;
    long names; /* named in the current group */
};

static int dependent_group(const struct gate_failing *f, void *arg)
{
    struct dependents_out *d = arg;
    FILE *o = d->o;
    char n[32];
    if (!f->host) {
        if (d->groups++)
            fputs("</li>", o);
        fprintf(o, "<li><strong>%s</strong> host%s: <code>", thousands(f->hosts, n, sizeof(n)),
                f->hosts == 1 ? "" : "s");
        esc(o, f->rule);
        fputs("</code> — ", o);
        d->names = 0;
        return 0;
    }
    if (d->names++)
        fputs(", ", o);
    esc(o, f->host);
    fprintf(o, " (%s)", gate_state_name(f->state));
    return 0;
}

static int orphan_section(struct store *s, FILE *o, const struct site_row *r, struct server_pick *p,
                          const struct gate_time *t)
{
    char n[32];
    fprintf(o, "<h3 id=\"orphan-h-");
    esc(o, r->code);
    fputs("\">Orphan risk</h3>\n", o);
    if (!p->risk_total) {
        fputs("<p data-k=\"orphan_risk\" data-value=\"0\"><span class=\"ok-text\">No server "
              "at orphan risk</span>: no server reports the legacy protocols disabled while "
              "its gate is blocked.</p>\n",
              o);
        return 0;
    }
    fprintf(o,
            "<div class=\"danger\" data-k=\"orphan_risk\" data-value=\"%ld\"><p><span "
            "class=\"label\">ORPHAN RISK</span> <strong>%s server%s</strong> report%s SSL 3.0 / "
            "TLS 1.0 / TLS 1.1 disabled while %s gate is blocked. Each dependent listed can no "
            "longer reach %s: make it ready, or re-enable the legacy protocols on the "
            "server.</p>\n",
            p->risk_total, thousands(p->risk_total, n, sizeof(n)), p->risk_total == 1 ? "" : "s",
            p->risk_total == 1 ? "s" : "", p->risk_total == 1 ? "its" : "their",
            p->risk_total == 1 ? "it" : "them");
    fputs("<table data-list=\"orphan-risk\">\n<thead><tr><th scope=\"col\">Server</th>"
          "<th scope=\"col\">Roles</th><th scope=\"col\">Why</th>"
          "<th scope=\"col\">Blocking dependents (by rule; first "
          "names)</th></tr></thead>\n<tbody>\n",
          o);
    for (size_t i = 0; i < p->nrisk; i++) {
        const struct server_copy *c = &p->risk[i];
        char roles[256];
        inv_roles_format(c->roles, roles, sizeof(roles));
        put_esc(o, "<tr data-server=\"", c->name);
        put_esc(o, "\"><th scope=\"row\"><span class=\"label\">ORPHAN RISK</span> ", c->name);
        put_esc(o, "</th><td>", roles);
        fputs("</td><td>", o);
        if (c->state != GATE_READY)
            fprintf(o, "the server itself is %s; ", gate_state_name(c->state));
        fprintf(o, "<span data-k=\"blocking\">%ld</span> of %ld dependents block</td><td>",
                c->blocking, c->dependents);
        struct gate_server g = {.id = c->id,
                                .name = c->name,
                                .site = r->code,
                                .roles = c->roles,
                                .phase = r->phase,
                                .state = c->state};
        struct dependents_out d = {o, 0, 0};
        if (c->blocking && i >= ORPHAN_DETAILED_MAX) {
            put_esc(o, "see <code>tlsgate gate check ", c->name);
            fputs("</code>", o);
        } else if (c->blocking) {
            fputs("<ul>", o);
            int rc = gate_failing_for_server(s, &g, t, ORPHAN_DEPENDENTS_MAX, dependent_group, &d);
            if (rc)
                return rc;
            fputs(d.groups ? "</li></ul>" : "</ul>", o);
        } else {
            fputs("none (the server itself is not ready)", o);
        }
        fputs("</td></tr>\n", o);
    }
    fputs("</tbody></table>\n", o);
    char where[160];
    snprintf(where, sizeof(where), "tlsgate export csv --view servers --site %s", r->code);
    more_line(o, p->risk_total - (long)p->nrisk, "servers at orphan risk", where);
    fputs("</div>\n", o);
    return 0;
}

static void gates_section(FILE *o, const struct site_row *r, const struct server_pick *p)
{
    long blocked = r->servers - r->gate_open;
    fputs("<h3>Gates: may a server disable the legacy protocols now?</h3>\n", o);
    fprintf(o,
            "<p><span class=\"label ok\">OPEN</span> <strong data-k=\"gate_open\">%ld</strong> "
            "&nbsp; <span class=\"label blocked\">BLOCKED</span> <strong "
            "data-k=\"gate_blocked\">%ld</strong> of %ld servers.%s</p>\n",
            r->gate_open, blocked, r->servers,
            r->phase < PHASE_ENFORCE ? " The site is not in <code>enforce</code> yet, so every "
                                       "gate is blocked; the list below says who would be "
                                       "orphaned today."
                                     : "");
    if (r->servers > 0) {
        /* A stacked bar; its text alternative says the same numbers. */
        double w = 600.0, open_w = w * (double)r->gate_open / (double)r->servers;
        fprintf(o,
                "<svg width=\"620\" height=\"34\" viewBox=\"0 0 620 34\" role=\"img\" "
                "aria-label=\"Gates: %ld open, %ld blocked of %ld servers\">"
                "<title>Gates: %ld open, %ld blocked of %ld servers</title>"
                "<rect x=\"10\" y=\"6\" width=\"%.1f\" height=\"22\" fill=\"#1b6e2d\"/>"
                "<rect x=\"%.1f\" y=\"6\" width=\"%.1f\" height=\"22\" fill=\"#8a4b00\" "
                "fill-opacity=\"0.85\"/></svg>\n",
                r->gate_open, blocked, r->servers, r->gate_open, blocked, r->servers, open_w,
                10 + open_w, w - open_w);
    }
    if (!p->nblocked)
        return;
    fputs("<table data-list=\"blocked-servers\">\n<caption>Blocked gates, most blocking "
          "dependents first</caption>\n<thead><tr><th scope=\"col\">Server</th>"
          "<th scope=\"col\">Roles</th><th scope=\"col\">Own state</th>"
          "<th scope=\"col\">Dependents</th><th scope=\"col\">Blocking</th>"
          "<th scope=\"col\">Legacy protocols</th></tr></thead>\n<tbody>\n",
          o);
    for (size_t i = 0; i < p->nblocked; i++) {
        const struct server_copy *c = &p->blocked[i];
        char roles[256];
        inv_roles_format(c->roles, roles, sizeof(roles));
        put_esc(o, "<tr><th scope=\"row\">", c->name);
        put_esc(o, "</th><td>", roles);
        fprintf(o,
                "</td><td>%s</td><td class=\"num\">%ld</td><td class=\"num\">%ld</td><td>%s"
                "</td></tr>\n",
                gate_state_name(c->state), c->dependents, c->blocking,
                c->orphan_risk       ? "<strong>disabled — ORPHAN RISK</strong>"
                : c->legacy_disabled ? "disabled"
                                     : "enabled");
    }
    fputs("</tbody></table>\n", o);
    char where[160];
    snprintf(where, sizeof(where), "tlsgate export csv --view servers --site %s", r->code);
    more_line(o, p->blocked_total - (long)p->nblocked, "blocked servers", where);
}

/* ---- the wire probe --------------------------------------------------------------------- */

static void wire_section(FILE *o, const struct site_row *r, const struct server_pick *p)
{
    fputs("<h3>Wire: what the servers' TLS ports accept</h3>\n", o);
    fprintf(o,
            "<p><strong data-k=\"wire_probed\">%ld</strong> of %ld servers probed "
            "(<code>tlsgate probe --site %s</code>), <strong data-k=\"wire_never_probed\">%ld"
            "</strong> never, <strong data-k=\"wire_stale\">%ld</strong> stale (last probe older "
            "than the config's probe.max_age). <strong data-k=\"wire_legacy_accepted\">%ld"
            "</strong> accept SSL 3.0, TLS 1.0 or 1.1 on the wire, <strong "
            "data-k=\"wire_restart_pending\">%ld</strong> of them <span class=\"label\">RESTART "
            "PENDING</span> (the registry says off; SCHANNEL reads it at boot).</p>\n",
            p->wire_probed, p->wire_probed + p->wire_never, r->code, p->wire_never, p->wire_stale,
            p->wire_legacy, p->wire_restart);
    if (r->phase == PHASE_ENFORCE && r->wire_not_probed)
        fprintf(o,
                "<p data-k=\"wire_not_probed\" data-value=\"%ld\"><strong>%ld NOT PROBED</strong>: "
                "site systems that hold the site in <code>enforce</code> because no recent probe "
                "shows the wire refusing the legacy protocols (never probed, could not test, or "
                "stale): <code>tlsgate probe --site %s</code>.</p>\n",
                r->wire_not_probed, r->wire_not_probed, r->code);
    if (r->phase == PHASE_COMPLETE && r->wire_alarm)
        fprintf(o,
                "<p class=\"danger\" role=\"alert\" data-k=\"wire_alarm\" data-value=\"%ld\">"
                "<strong>ALARM: %ld site system%s still accept%s SSL 3.0, TLS 1.0 or TLS 1.1 on "
                "the wire</strong> after <code>complete</code> (listed below): disable them again "
                "and restart, then <code>tlsgate probe --site %s</code>.</p>\n",
                r->wire_alarm, r->wire_alarm, r->wire_alarm == 1 ? "" : "s",
                r->wire_alarm == 1 ? "s" : "", r->code);
    if (!p->nlegacy)
        return;
    fputs("<table data-list=\"wire-legacy\">\n<caption>Servers whose last probe found a legacy "
          "protocol accepted, restart pending first</caption>\n<thead><tr><th scope=\"col\">"
          "Server</th><th scope=\"col\">Accepted</th><th scope=\"col\">Last probe</th>"
          "<th scope=\"col\">Registry</th></tr></thead>\n<tbody>\n",
          o);
    for (size_t i = 0; i < p->nlegacy; i++) {
        const struct wire_copy *c = &p->legacy[i];
        char when[UTC_ISO8601_SIZE];
        put_esc(o, "<tr data-server=\"", c->name);
        put_esc(o, "\"><th scope=\"row\">", c->name);
        put_esc(o, "</th><td>", c->accepted);
        fprintf(o, "</td><td>%s</td><td>%s</td></tr>\n", iso(c->at, when),
                c->restart_pending ? "<strong>off — RESTART PENDING</strong>" : "on");
    }
    fputs("</tbody></table>\n", o);
    char where[160];
    snprintf(where, sizeof(where), "tlsgate export csv --view servers --site %s", r->code);
    more_line(o, p->wire_legacy - (long)p->nlegacy, "servers accepting legacy protocols", where);
}

/* ---- phase and counts ------------------------------------------------------------------- */

static void phase_section(FILE *o, const struct site_row *r)
{
    char when[UTC_ISO8601_SIZE], n[32];
    fprintf(o, "<h3>Phase</h3>\n<p>Phase <strong>%d of %d</strong>: <strong>%s</strong>, entered ",
            (int)r->phase + 1, PHASE_COUNT, phase_name(r->phase));
    if (r->entered_at > 0)
        fprintf(o, "%s ", iso(r->entered_at, when));
    put_esc(o, "by ", r->entered_by);
    fputs(".</p>\n<ol class=\"phases\" aria-label=\"Phases of the site\">", o);
    for (int i = 0; i < PHASE_COUNT; i++) {
        const char *cls = i < (int)r->phase ? "done" : i == (int)r->phase ? "current" : "todo";
        fprintf(o, "<li class=\"%s\"%s>%s <small>(%s)</small></li>", cls,
                i == (int)r->phase ? " aria-current=\"step\"" : "", phase_name((enum phase_id)i),
                i < (int)r->phase    ? "done"
                : i == (int)r->phase ? "current"
                                     : "to do");
    }
    fputs("</ol>\n", o);
    if (r->phase == PHASE_COMPLETE) {
        fputs("<p data-k=\"exit_blocking\" data-value=\"0\">The rollout of this site is "
              "complete.</p>\n",
              o);
        return;
    }
    fprintf(o, "<p data-k=\"exit_blocking\" data-value=\"%ld\">To leave <code>%s</code>: %s — ",
            r->exit_blocking, phase_name(r->phase), phase_criterion_text(r->phase));
    if (r->exit_blocking)
        fprintf(o, "<strong>%s %s</strong> still fail (<code>tlsgate phase advance --site ",
                thousands(r->exit_blocking, n, sizeof(n)),
                phase_criterion_noun(r->phase, r->exit_blocking));
    else
        fputs("<span class=\"ok-text\">met</span> (<code>tlsgate phase advance --site ", o);
    esc(o, r->code);
    fputs(" --dry-run</code>).</p>\n", o);
}

static void counts_table(FILE *o, const struct site_row *r)
{
    put_esc(o, "<h3>Hosts</h3>\n<table id=\"counts-", r->code);
    fputs("\" data-list=\"counts\">\n<thead><tr><th scope=\"col\">Hosts</th>"
          "<th scope=\"col\">Ready</th><th scope=\"col\">Not ready</th>"
          "<th scope=\"col\">Unknown (no fresh report)</th><th scope=\"col\">Waived</th>"
          "<th scope=\"col\">Failing pulls</th></tr></thead>\n<tbody><tr>",
          o);
    count_cell(o, "hosts", r->hosts);
    count_cell(o, "ready", r->ready);
    count_cell(o, "not_ready", r->not_ready);
    count_cell(o, "unknown", r->unknown);
    count_cell(o, "waived", r->waived);
    count_cell(o, "pull_failing", r->pull_failing);
    fputs("</tr></tbody></table>\n", o);
}

/* ---- burn-down chart -------------------------------------------------------------------- */

struct series {
    long long *at;
    long *not_ready, *unknown;
    size_t n, cap;
};

static int take_point(const struct history_point *pt, void *arg)
{
    struct series *sr = arg;
    if (sr->n == sr->cap) {
        size_t cap = grow_cap(sr->cap, 64);
        if (grow_to(&sr->at, cap, sizeof(*sr->at)) ||
            grow_to(&sr->not_ready, cap, sizeof(*sr->not_ready)) ||
            grow_to(&sr->unknown, cap, sizeof(*sr->unknown)))
            return -ENOMEM;
        sr->cap = cap;
    }
    sr->at[sr->n] = pt->at;
    sr->not_ready[sr->n] = pt->not_ready;
    sr->unknown[sr->n] = pt->unknown;
    sr->n++;
    return 0;
}

static void series_free(struct series *sr)
{
    free(sr->at);
    free(sr->not_ready);
    free(sr->unknown);
}

#define CH_W 640
#define CH_H 220
#define CH_L 56 /* left margin: the y labels */
#define CH_R 16
#define CH_T 14
#define CH_B 40

static void polyline(FILE *o, const struct series *sr, const long *v, long long t0, long long t1,
                     long vmax, const char *attrs)
{
    size_t step = sr->n > CHART_POINTS_MAX ? (sr->n + CHART_POINTS_MAX - 1) / CHART_POINTS_MAX : 1;
    double pw = CH_W - CH_L - CH_R, ph = CH_H - CH_T - CH_B;
    fprintf(o, "<polyline %s points=\"", attrs);
    for (size_t i = 0; i < sr->n; i += step) {
        size_t k = i + step >= sr->n ? sr->n - 1 : i;
        double x = CH_L + (t1 > t0 ? pw * (double)(sr->at[k] - t0) / (double)(t1 - t0) : pw / 2);
        double y = CH_T + ph - (vmax > 0 ? ph * (double)v[k] / (double)vmax : 0);
        fprintf(o, "%s%.1f,%.1f", i ? " " : "", x, y);
        if (k == sr->n - 1)
            break;
    }
    fputs("\"/>", o);
    if (sr->n == 1) { /* one point: a line needs two; show a dot */
        double y = CH_T + ph - (vmax > 0 ? ph * (double)v[0] / (double)vmax : 0);
        fprintf(o, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"4\" %s/>", CH_L + pw / 2, y, attrs);
    }
}

static int burndown(struct store *s, FILE *o, const struct site_row *r)
{
    struct series sr = {0};
    int rc = history_points(s, r->code, take_point, &sr);
    if (rc == -ENOMEM)
        rc = store_fail(s, rc, "status page: out of memory");
    if (rc) {
        series_free(&sr);
        return rc;
    }
    fputs("<h3>Burn-down: hosts not ready and unknown over time</h3>\n", o);
    if (!sr.n) {
        fputs("<p>No history yet: a point is recorded after each round of the daemon and after "
              "each <code>tlsgate collect</code>.</p>\n",
              o);
        series_free(&sr);
        return 0;
    }
    long vmax = 1;
    for (size_t i = 0; i < sr.n; i++) {
        if (sr.not_ready[i] > vmax)
            vmax = sr.not_ready[i];
        if (sr.unknown[i] > vmax)
            vmax = sr.unknown[i];
    }
    long long t0 = sr.at[0], t1 = sr.at[sr.n - 1];
    char a[UTC_ISO8601_SIZE], b[UTC_ISO8601_SIZE], n1[32], n2[32], n3[32], n4[32], nm[32];
    iso(t0, a);
    iso(t1, b);
    fputs("<figure>\n<svg width=\"640\" height=\"220\" viewBox=\"0 0 640 220\" role=\"img\" "
          "aria-labelledby=\"chart-t-",
          o);
    esc(o, r->code);
    put_esc(o, " chart-d-", r->code);
    put_esc(o, "\"><title id=\"chart-t-", r->code);
    put_esc(o, "\">Site ", r->code);
    put_esc(o, ": hosts not ready and unknown over time</title><desc id=\"chart-d-", r->code);
    fprintf(o,
            "\">From %s to %s (%zu points): not ready went from %s to %s, unknown from %s to "
            "%s.</desc>\n",
            a, b, sr.n, thousands(sr.not_ready[0], n1, sizeof(n1)),
            thousands(sr.not_ready[sr.n - 1], n2, sizeof(n2)),
            thousands(sr.unknown[0], n3, sizeof(n3)),
            thousands(sr.unknown[sr.n - 1], n4, sizeof(n4)));
    /* Axes and their labels. */
    fprintf(o,
            "<g font-size=\"11\" fill=\"#555\"><line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" "
            "stroke=\"#999\"/><line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#999\"/>"
            "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#ddd\"/>"
            "<text x=\"%d\" y=\"%d\" text-anchor=\"end\">%s</text>"
            "<text x=\"%d\" y=\"%d\" text-anchor=\"end\">0</text>"
            "<text x=\"%d\" y=\"%d\">%.16s</text>"
            "<text x=\"%d\" y=\"%d\" text-anchor=\"end\">%.16s</text></g>\n",
            CH_L, CH_T, CH_L, CH_H - CH_B, CH_L, CH_H - CH_B, CH_W - CH_R, CH_H - CH_B, CH_L, CH_T,
            CH_W - CH_R, CH_T, CH_L - 6, CH_T + 4, thousands(vmax, nm, sizeof(nm)), CH_L - 6,
            CH_H - CH_B + 4, CH_L, CH_H - CH_B + 16, a, CH_W - CH_R, CH_H - CH_B + 16, b);
    polyline(o, &sr, sr.not_ready, t0, t1, vmax,
             "fill=\"none\" stroke=\"#a4001d\" stroke-width=\"2.5\"");
    polyline(o, &sr, sr.unknown, t0, t1, vmax,
             "fill=\"none\" stroke=\"#1f4e99\" stroke-width=\"2\" stroke-dasharray=\"6 4\"");
    /* The legend: line style and words, never colour alone. */
    fprintf(o,
            "<g font-size=\"12\"><line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#a4001d\" "
            "stroke-width=\"2.5\"/><text x=\"%d\" y=\"%d\">not ready (solid)</text>"
            "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#1f4e99\" stroke-width=\"2\" "
            "stroke-dasharray=\"6 4\"/><text x=\"%d\" y=\"%d\">unknown (dashed)</text></g>\n",
            CH_L, CH_H - 8, CH_L + 30, CH_H - 8, CH_L + 36, CH_H - 4, CH_L + 180, CH_H - 8,
            CH_L + 210, CH_H - 8, CH_L + 216, CH_H - 4);
    fprintf(o,
            "</svg>\n<figcaption>At the last point (%s): %s not ready, %s unknown. Every "
            "point: <code>tlsgate export csv --view history --site ",
            b, n2, n4);
    esc(o, r->code);
    fputs("</code>.</figcaption>\n</figure>\n", o);
    series_free(&sr);
    return 0;
}

/* ---- top blocking rules ----------------------------------------------------------------- */

/*
 * Every failed blocker verdict of every site (or one) in one scan of the failed-verdict index
 * (verdict_failed): per site and rule the hosts and the most frequent reasons. Walking each
 * site's hosts instead would read every host row of a 1,000,000-host fleet once per site.
 */
static struct rule_stat *rule_slot(struct site_row *r, const char *rule)
{
    if (r->nrules && !strcmp(r->rules[r->nrules - 1].rule, rule))
        return &r->rules[r->nrules - 1]; /* rows come ordered by site, rule */
    if (r->nrules == r->caprules) {
        size_t cap = r->caprules ? r->caprules * 2 : 8;
        struct rule_stat *grown = realloc(r->rules, cap * sizeof(*grown));
        if (!grown)
            return NULL;
        r->rules = grown;
        r->caprules = cap;
    }
    struct rule_stat *rs = &r->rules[r->nrules];
    memset(rs, 0, sizeof(*rs));
    if (!(rs->rule = strdup(rule)))
        return NULL;
    r->nrules++;
    return rs;
}

/* Adds `n` hosts with `reason` to the rule, keeping its RULE_REASONS_MAX largest reasons. */
static int rule_add(struct rule_stat *rs, const char *reason, long n)
{
    rs->hosts += n;
    int at = rs->nreasons;
    while (at > 0 && rs->reason_hosts[at - 1] < n)
        at--;
    if (at >= RULE_REASONS_MAX)
        return 0;
    char *copy = strdup(reason);
    if (!copy)
        return -ENOMEM;
    if (rs->nreasons == RULE_REASONS_MAX)
        free(rs->reason[--rs->nreasons]);
    memmove(&rs->reason[at + 1], &rs->reason[at], (size_t)(rs->nreasons - at) * sizeof(char *));
    memmove(&rs->reason_hosts[at + 1], &rs->reason_hosts[at],
            (size_t)(rs->nreasons - at) * sizeof(long));
    rs->reason[at] = copy;
    rs->reason_hosts[at] = n;
    rs->nreasons++;
    return 0;
}

static int load_rules(struct store *s, struct sites *ss, const char *site)
{
    sqlite3_stmt *st;
    int rc = store_prepare(s,
                           "SELECT h.site, v.rule, v.reason, count(*) FROM verdict v CROSS JOIN "
                           "host h ON h.id = v.host_id WHERE v.pass = 0 AND v.severity = "
                           "'blocker' AND (?1 IS NULL OR h.site = ?1) GROUP BY h.site, v.rule, "
                           "v.reason ORDER BY h.site, v.rule",
                           &st);
    if (rc)
        return rc;
    if (site)
        sqlite3_bind_text(st, 1, site, -1, SQLITE_STATIC);
    int step;
    size_t at = 0;
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        const char *code = (const char *)sqlite3_column_text(st, 0);
        if (at >= ss->n || strcasecmp(ss->v[at].code, code))
            for (at = 0; at < ss->n && strcasecmp(ss->v[at].code, code); at++)
                ;
        if (at == ss->n)
            continue; /* a host of a site that appeared after gate_sites: not on this page */
        struct rule_stat *rs = rule_slot(&ss->v[at], (const char *)sqlite3_column_text(st, 1));
        if (!rs || rule_add(rs, (const char *)sqlite3_column_text(st, 2),
                            (long)sqlite3_column_int64(st, 3))) {
            sqlite3_finalize(st);
            return store_fail(s, -ENOMEM, "status page: out of memory");
        }
    }
    rc = step == SQLITE_DONE ? 0 : store_sqlite_fail(s, "read blocking rules");
    sqlite3_finalize(st);
    return rc;
}

static int rule_cmp(const void *a, const void *b)
{
    const struct rule_stat *x = a, *y = b;
    if (x->hosts != y->hosts)
        return x->hosts > y->hosts ? -1 : 1;
    return strcmp(x->rule, y->rule);
}

static void rules_section(FILE *o, struct site_row *r, const struct rules_catalog *cat)
{
    char n[32];
    fputs("<h3>Top blocking rules</h3>\n", o);
    if (!r->nrules) {
        fputs("<p>No host of this site fails a blocker rule.</p>\n", o);
        return;
    }
    qsort(r->rules, r->nrules, sizeof(r->rules[0]), rule_cmp);
    fputs("<table data-list=\"rules\">\n<caption>Failed blocker verdicts of the last report of "
          "each host (stale ones included), by rule</caption>\n<thead><tr>"
          "<th scope=\"col\">Rule</th><th scope=\"col\">Hosts</th>"
          "<th scope=\"col\">Observed values (hosts)</th><th scope=\"col\">Remedy</th>"
          "</tr></thead>\n<tbody>\n",
          o);
    size_t shown = r->nrules < REPORT_HTML_TOP ? r->nrules : REPORT_HTML_TOP;
    for (size_t i = 0; i < shown; i++) {
        const struct rule_stat *rs = &r->rules[i];
        const struct rules_info *info = rules_find(cat, rs->rule);
        put_esc(o, "<tr data-rule=\"", rs->rule);
        put_esc(o, "\"><th scope=\"row\"><code>", rs->rule);
        put_esc(o, "</code><br>", info ? info->title : "(rule not in the active catalog)");
        fprintf(o, "</th><td data-k=\"hosts\">%ld</td><td class=\"text\"><ul>", rs->hosts);
        for (int k = 0; k < rs->nreasons; k++) {
            put_esc(o, "<li>", rs->reason[k]);
            fprintf(o, " <small>(%s)</small></li>", thousands(rs->reason_hosts[k], n, sizeof(n)));
        }
        put_esc(o, "</ul></td><td class=\"text\">", info ? info->remedy : "");
        fputs("</td></tr>\n", o);
    }
    fputs("</tbody></table>\n", o);
    char where[160];
    snprintf(where, sizeof(where), "tlsgate rules blockers --site %s", r->code);
    more_line(o, (long long)(r->nrules - shown), "rules", where);
}

/* ---- failing pulls and expiring waivers ------------------------------------------------- */

struct pull_out {
    FILE *o;
    int rows;
};

static int pull_row(const struct history_pull_failure *f, void *arg)
{
    struct pull_out *p = arg;
    FILE *o = p->o;
    char a[UTC_ISO8601_SIZE], b[UTC_ISO8601_SIZE];
    if (!p->rows++)
        fputs("<table data-list=\"pull-failures\">\n<thead><tr><th scope=\"col\">Host</th>"
              "<th scope=\"col\">Kind</th><th scope=\"col\">Failures in a row</th>"
              "<th scope=\"col\">Last attempt</th><th scope=\"col\">Last success</th>"
              "<th scope=\"col\">Error</th></tr></thead>\n<tbody>\n",
              o);
    put_esc(o, "<tr><th scope=\"row\">", f->host);
    fprintf(o,
            "</th><td data-kind=\"%s\">%s</td><td class=\"num\">%ld</td><td>%s</td><td>%s"
            "</td><td class=\"text\">",
            f->kind, f->kind, f->failures, iso(f->last_attempt, a), iso(f->last_success, b));
    esc(o, f->error);
    fputs("</td></tr>\n", o);
    return 0;
}

static int pulls_section(struct store *s, FILE *o, const struct site_row *r)
{
    fputs("<h3>Hosts failing to be pulled</h3>\n", o);
    struct pull_out p = {o, 0};
    int rc = history_pull_failures(s, r->code, REPORT_HTML_TOP, pull_row, &p);
    if (rc)
        return rc;
    if (!p.rows) {
        fputs("<p>Every host's last pull succeeded (or it was never tried).</p>\n", o);
        return 0;
    }
    fputs("</tbody></table>\n", o);
    char where[160];
    snprintf(where, sizeof(where), "tlsgate export csv --view pull-failures --site %s", r->code);
    more_line(o, r->pull_failing - p.rows, "hosts", where);
    return 0;
}

static int expiring_waivers(struct store *s, FILE *o, const struct site_row *r,
                            const struct gate_time *t)
{
    char n[32], when[UTC_ISO8601_SIZE];
    fprintf(o, "<h3>Waivers expiring within %lld days</h3>\n", REPORT_HTML_WAIVER_SOON_S / 86400);
    sqlite3_stmt *st;
    int rc = store_prepare(s,
                           "SELECT h.name, w.until_at, w.reason, w.created_by, count(*) OVER () "
                           "FROM waiver w JOIN host h ON h.id = w.host_id WHERE h.site = ?1 AND "
                           "w.until_at > ?2 AND w.until_at <= ?3 ORDER BY w.until_at, h.name "
                           "LIMIT ?4",
                           &st);
    if (rc)
        return rc;
    sqlite3_bind_text(st, 1, r->code, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, t->now);
    sqlite3_bind_int64(st, 3, t->now + REPORT_HTML_WAIVER_SOON_S);
    sqlite3_bind_int(st, 4, REPORT_HTML_TOP);
    int step, rows = 0;
    long long total = 0;
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        total = sqlite3_column_int64(st, 4);
        if (!rows++)
            fputs("<table data-list=\"expiring-waivers\">\n<thead><tr><th scope=\"col\">Host"
                  "</th><th scope=\"col\">Until</th><th scope=\"col\">Reason</th>"
                  "<th scope=\"col\">By</th></tr></thead>\n<tbody>\n",
                  o);
        put_esc(o, "<tr><th scope=\"row\">", (const char *)sqlite3_column_text(st, 0));
        fprintf(o, "</th><td>%s</td><td class=\"text\">", iso(sqlite3_column_int64(st, 1), when));
        esc(o, (const char *)sqlite3_column_text(st, 2));
        put_esc(o, "</td><td>", (const char *)sqlite3_column_text(st, 3));
        fputs("</td></tr>\n", o);
    }
    rc = step == SQLITE_DONE ? 0 : store_sqlite_fail(s, "read waivers");
    sqlite3_finalize(st);
    if (rc)
        return rc;
    if (!rows) {
        fputs("<p>No waiver of this site ends in that time.</p>\n", o);
        return 0;
    }
    fputs("</tbody></table>\n", o);
    if (total > rows) {
        fprintf(o,
                "<p class=\"more\">and %s more — see <code>tlsgate export csv --view hosts "
                "--site ",
                thousands(total - rows, n, sizeof(n)));
        esc(o, r->code);
        fputs("</code> (column <code>waived</code>)</p>\n", o);
    }
    return 0;
}

/* ---- one site --------------------------------------------------------------------------- */

static int site_section(struct store *s, FILE *o, struct site_row *r, const struct gate_time *t,
                        const struct rules_catalog *cat, const struct wire_summaries *wire)
{
    char when[UTC_ISO8601_SIZE];
    put_esc(o, "<section class=\"site\" id=\"site-", r->code);
    put_esc(o, "\" data-site=\"", r->code);
    fprintf(o, "\" data-phase=\"%s\" aria-labelledby=\"h-", phase_name(r->phase));
    esc(o, r->code);
    put_esc(o, "\">\n<h2 id=\"h-", r->code);
    put_esc(o, "\">Site ", r->code);
    fprintf(o, "</h2>\n<p class=\"asof\">Data as of %s (UTC).</p>\n", iso(t->now, when));

    struct server_pick p = {.site = r->code, .wire = wire, .probe_since = t->probe_since};
    int rc = gate_servers(s, r->code, t, pick_server, &p);
    if (rc == -ENOMEM)
        rc = store_fail(s, rc, "status page: out of memory");
    if (!rc)
        rc = orphan_section(s, o, r, &p, t);
    if (!rc) {
        phase_section(o, r);
        counts_table(o, r);
        rc = burndown(s, o, r);
    }
    if (!rc)
        gates_section(o, r, &p);
    if (!rc)
        wire_section(o, r, &p);
    if (!rc)
        rules_section(o, r, cat);
    if (!rc)
        rc = pulls_section(s, o, r);
    if (!rc)
        rc = expiring_waivers(s, o, r, t);
    pick_free(&p);
    fputs("</section>\n", o);
    return rc;
}

int report_html_write(struct store *s, FILE *o, const char *site, const struct gate_time *t)
{
    struct sites ss = {0};
    struct rules_catalog *cat = NULL;
    struct wire_summaries wire = {0};
    int rc = store_begin(s, false);
    if (rc)
        return rc;
    rc = gate_sites(s, site, t, take_site, &ss);
    if (rc == -ENOMEM)
        rc = store_fail(s, rc, "status page: out of memory");
    for (size_t i = 0; i < ss.n && !rc; i++)
        rc = count_pull_failing(s, ss.v[i].code, &ss.v[i].pull_failing);
    if (!rc)
        rc = load_rules(s, &ss, site);
    if (!rc)
        rc = rules_load_active(s, &cat);
    if (!rc && (rc = wire_summaries_load(s, &wire)) == -ENOMEM)
        rc = store_fail(s, rc, "status page: out of memory");
    if (!rc) {
        page_head(o, t, (long)(t->now - t->cutoff));
        overview(o, &ss);
        for (size_t i = 0; i < ss.n && !rc; i++)
            rc = site_section(s, o, &ss.v[i], t, cat, &wire);
        if (!rc)
            page_tail(o);
    }
    store_rollback(s); /* a read: nothing to keep */
    rules_free(cat);
    sites_free(&ss);
    wire_summaries_release(&wire);
    return rc;
}

int report_html_write_file(struct store *s, const char *path, const char *site,
                           const struct gate_time *t)
{
    struct atomicfile a;
    char err[STORE_ERROR_SIZE];
    int rc = atomicfile_open(&a, path, err, sizeof(err));
    if (rc)
        return store_fail(s, rc, "status page: %s", err);
    rc = report_html_write(s, a.f, site, t);
    if (rc) {
        atomicfile_discard(&a);
        return rc;
    }
    if ((rc = atomicfile_commit(&a, err, sizeof(err))))
        return store_fail(s, rc, "status page: %s", err);
    return 0;
}

int report_html_round(struct store *s, const struct config *cfg, long long now, bool force,
                      bool *done)
{
    if (done)
        *done = false;
    bool due = force;
    int rc = force ? 0 : history_due(s, now, cfg->interval, &due);
    if (rc || !due)
        return rc;
    struct gate_time t = gate_time_config(now, cfg);
    if ((rc = history_record(s, &t)))
        return rc;
    if (cfg->report_html[0] && (rc = report_html_write_file(s, cfg->report_html, NULL, &t)))
        return rc;
    if (done)
        *done = true;
    return 0;
}
