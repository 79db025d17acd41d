/*
 * pollcmd.c — `tlsgate poll status [--site S] [--failing] [--json]`: the daemon's side of every
 * host (pollstatus.h): last attempt, last success, failures in a row, next attempt, last error,
 * and a summary of the failing hosts grouped by kind of error. Streams: memory stays flat at any
 * fleet size.
 */
#include <errno.h>
#include <string.h>

#include "cli.h"
#include "pollstatus.h"
#include "store.h"

struct status_walk {
    struct cli *cli;
    bool failing;
    long printed;
    struct pollstatus_summary sum;
};

static const char *when(long long t, char *buf, size_t size, const char *none)
{
    return t ? utc_iso8601(t, buf, size) : none;
}

static void json_time(const char *key, long long t)
{
    char b[UTC_ISO8601_SIZE + 8];
    printf(",\"%s\":", key);
    if (t)
        jsonout_string(stdout, utc_iso8601(t, b, sizeof(b)));
    else
        printf("null");
}

/* "EXPIRY" of the collector's certificate, " CHANGED" after it while a change waits for
 * `tlsgate enroll accept`; "-" never seen. */
static const char *cert_cell(const struct pollstatus_host *h, char *buf, size_t size)
{
    char t[32];
    if (!h->cert_not_after && !h->cert_changed_at)
        return "-";
    snprintf(buf, size, "%s%s",
             h->cert_not_after ? utc_iso8601(h->cert_not_after, t, sizeof(t)) : "?",
             h->cert_changed_at ? " CHANGED" : "");
    return buf;
}

static int status_row(const struct pollstatus_host *h, void *arg)
{
    struct status_walk *w = arg;
    pollstatus_count(&w->sum, h);
    if (w->failing && !(h->last_attempt_at && h->failures > 0))
        return 0;
    char a[32], b[32], c[32], d[48];
    if (w->cli->json) {
        printf("%s{\"name\":", w->printed ? "," : "");
        jsonout_string(stdout, h->name);
        jsonout_member(stdout, ",\"site\":", h->site);
        printf(",\"state\":\"%s\"", h->state);
        const char *r = pollstatus_reachable(h);
        printf(",\"reachable\":%s", *r ? r : "null");
        json_time("last_report", h->report_at);
        json_time("last_attempt", h->last_attempt_at);
        json_time("last_success", h->last_success_at);
        printf(",\"failures\":%d", h->failures);
        json_time("next_attempt", h->next_at);
        json_time("cert_not_after", h->cert_not_after);
        jsonout_member(stdout, ",\"cert_fingerprint\":", h->cert_fingerprint);
        jsonout_member(stdout, ",\"cert_issuer\":", h->cert_issuer);
        json_time("cert_changed_at", h->cert_changed_at);
        jsonout_member(stdout,
                       ",\"error_kind\":", h->last_error ? pollstatus_kind_id(h->kind) : NULL);
        jsonout_member(stdout, ",\"last_error\":", h->last_error);
        printf("}");
    } else {
        if (!w->printed)
            printf("%-40s %-4s %-9s %-20s %-20s %8s %-20s %-28s %s\n", "NAME", "SITE", "STATE",
                   "LAST SUCCESS", "LAST ATTEMPT", "FAILURES", "NEXT ATTEMPT", "CERT EXPIRES",
                   "LAST ERROR");
        printf("%-40s %-4s %-9s %-20s %-20s %8d %-20s %-28s %s\n", h->name, h->site, h->state,
               when(h->last_success_at, a, sizeof(a), "never"),
               when(h->last_attempt_at, b, sizeof(b), "never"), h->failures,
               when(h->next_at, c, sizeof(c), "-"), cert_cell(h, d, sizeof(d)),
               h->last_error ? h->last_error : "");
    }
    w->printed++;
    return 0;
}

static int poll_status(struct cli *cli, const char *site, bool failing)
{
    int code;
    struct store *s = cli_store(cli, false, &code);
    if (!s)
        return code;
    struct status_walk w = {.cli = cli, .failing = failing};
    if (cli->json)
        printf("{\"hosts\":[");
    int rc = store_begin(s, false); /* one consistent state while the daemon writes */
    if (!rc)
        rc = pollstatus_each(s, site, false, utc_now() - cli->config.stale_after, status_row, &w);
    store_rollback(s);
    if (rc) {
        if (cli->json)
            printf("]}\n");
        cli_error("poll status: %s", store_errmsg(s));
        return rc == -ENOENT ? EXIT_BADINPUT : EXIT_SYSTEM;
    }
    char text[2048];
    pollstatus_summary_text(&w.sum, text, sizeof(text));
    if (cli->json) {
        printf("],\"summary\":{\"hosts\":%ld,\"ok\":%ld,\"failing\":%ld,\"never_attempted\":%ld,"
               "\"by_error\":[",
               w.sum.hosts, w.sum.ok, w.sum.failing, w.sum.never);
        enum pollstatus_kind k[PK_COUNT];
        size_t n = pollstatus_summary_kinds(&w.sum, k);
        for (size_t i = 0; i < n; i++)
            printf("%s{\"kind\":\"%s\",\"label\":\"%s\",\"hosts\":%ld}", i ? "," : "",
                   pollstatus_kind_id(k[i]), pollstatus_kind_label(k[i]), w.sum.by_kind[k[i]]);
        printf("]}}\n");
    } else {
        if (w.printed)
            printf("\n");
        printf("%ld hosts: %ld pulled ok, %ld failing, %ld never attempted\n", w.sum.hosts,
               w.sum.ok, w.sum.failing, w.sum.never);
        if (text[0])
            printf("failing: %s\n", text);
    }
    return EXIT_OK;
}

#define POLL_USAGE                                                                                 \
    "Usage: tlsgate [--db FILE] [--config FILE] poll status [--site S] [--failing] [--json]\n\n"   \
    "Why hosts are unknown or stale, from the daemon's side: per host its state, last\n"           \
    "attempt, last success, failures in a row, next attempt, the collector certificate's\n"        \
    "expiry (\"CHANGED\" after it: another certificate came not through enrollment and\n"          \
    "waits for `tlsgate enroll accept HOST`) and last error, then a\n"                             \
    "summary of the failing hosts by kind (\"412 hosts: connection refused; 37:\n"                 \
    "certificate expired\").\n\n"                                                                  \
    "  --site S    only the hosts of site S\n"                                                     \
    "  --failing   only hosts whose last pull failed (the summary still counts all)\n"             \
    "  --json      one JSON object: {\"hosts\": [...], \"summary\": {...}}\n"

static const struct cli_option poll_status_options[] = {{"site", "S"}, {"failing", NULL}, {NULL}};
static const struct cli_spec poll_status_spec = {
    .name = "poll status",
    .word = "status",
    .usage = POLL_USAGE,
    .options = poll_status_options,
    .json = true,
};
const struct cli_spec *const poll_specs[] = {&poll_status_spec, NULL};

int cmd_poll(struct cli *cli, int argc, char **argv)
{
    const struct cli_spec *spec;
    struct cli_args a;
    int parsed = cli_parse_sub(cli, "poll", POLL_USAGE, poll_specs, argc, argv, &spec, &a);
    if (parsed != CLI_RUN)
        return parsed;
    return poll_status(cli, cli_value(spec, &a, "site"), cli_given(spec, &a, "failing"));
}
