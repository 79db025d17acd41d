/*
 * report_html: the status page — one self-contained HTML file for people who would rather look
 * than read (`tlsgate report html`, and the daemon's "report_html" option).
 *
 * Self-contained: inline CSS, inline SVG charts, no script, no font, image or link that loads
 * anything (a Content-Security-Policy meta of default-src 'none' with inline styles says so to
 * the browser too); readable on a screen and printable (@media print, "data as of" on every
 * printed page). Every number comes from the functions the commands use — gate_sites and
 * gate_servers (gate.h) for `phase status` and `gate list`, history.h for the burn-down and
 * the CSV views — read in one snapshot, so the page agrees with them. Numbers carry stable
 * attributes for tests and scrapers: the overview row <tr data-site="S">, each site's section
 * id="site-S" data-site data-phase, and every count a cell or element with data-k="NAME"
 * (hosts, ready, not_ready, unknown, waived, servers, gate_open, gate_blocked, orphan_risk,
 * pull_failing, exit_blocking) holding the plain integer.
 *
 * Per site, in this order: servers at orphan risk (first, in a danger colour and labelled
 * "ORPHAN RISK" in words, each with its blocking dependents by rule), the phase and the progress
 * through the phases, the host counts, the burn-down of not-ready and unknown hosts over time,
 * gates open vs blocked and the most-blocked servers, the top blocking rules (hosts, observed
 * values, remedy), hosts failing to be pulled (kind of error), waivers expiring soon. Lists are
 * cut at REPORT_HTML_TOP rows with "and N more — see ..." naming the CSV view that has them all,
 * so a page for 1,000,000 hosts stays small. Every string from hosts, the inventory, reports or
 * waivers is HTML-escaped.
 *
 * Functions return 0 or a negative errno-style code with the message on the store.
 */
#ifndef TLSGATE_REPORT_HTML_H
#define TLSGATE_REPORT_HTML_H

#include <stdbool.h>
#include <stdio.h>

struct store;
struct config;
struct gate_time;

/* Rows of each list on the page. */
#define REPORT_HTML_TOP 20
/* Waivers that end within this many seconds are "expiring". */
#define REPORT_HTML_WAIVER_SOON_S (14 * 86400LL)

/* Writes the page for every site (site NULL) or one (-ENOENT when it does not exist) to `out`,
 * read in one transaction the function opens and closes. */
int report_html_write(struct store *s, FILE *out, const char *site, const struct gate_time *t);

/* The same into `path`, atomically (atomicfile.h): the old file or the new one, never half. */
int report_html_write_file(struct store *s, const char *path, const char *site,
                           const struct gate_time *t);

/*
 * The pull engine's one call when a round ends: `tlsgate collect` (force: always) and the
 * daemon (after writes; only when `cfg->interval` has passed since the last history point).
 * Records a history point (history.h) and, when cfg->report_html is set, rewrites that page.
 * *done (may be NULL) says whether anything was written.
 */
int report_html_round(struct store *s, const struct config *cfg, long long now, bool force,
                      bool *done);

#endif
