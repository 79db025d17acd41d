/*
 * evidencecmd.c — `tlsgate evidence`: the handshakes servers logged (wire/evidence.h reads the
 * files, domain/wire.h keeps them and says what blocks).
 *
 *   tlsgate evidence import [--server S] FILE...
 *   tlsgate evidence list [--server S] [--legacy] [--uninventoried] [--csv] [--json]
 *   tlsgate evidence waive ADDRESS --reason R [--until YYYY-MM-DD]
 *   tlsgate evidence unwaive ADDRESS
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "cli.h"
#include "csv.h"
#include "csvread.h"
#include "evidence.h"
#include "inventory.h"
#include "store.h"
#include "wire.h"

#define EVIDENCE_SYNOPSIS                                                                          \
    "Usage: tlsgate evidence import [--server S] [--json] FILE...\n"                               \
    "       tlsgate evidence list [--server S] [--legacy] [--uninventoried] [--csv] [--json]\n"    \
    "       tlsgate evidence waive ADDRESS --reason R [--until YYYY-MM-DD] [--json]\n"             \
    "       tlsgate evidence unwaive ADDRESS [--json]\n"                                           \
    "       tlsgate evidence names FILE\n"
#define EVIDENCE_ABOUT                                                                             \
    "\n"                                                                                           \
    "import reads IIS W3C logs (any field order, from #Fields:; needs date, time, c-ip\n"          \
    "and the crypt-protocol custom field) and SCHANNEL event exports (wevtutil qe System\n"        \
    "/q:\"*[System[(EventID=36880)]]\" /f:xml), plain or gzip, and keeps per server,\n"            \
    "client address, protocol and day the first and last time and the count. The server\n"         \
    "is --server, else the log's s-computername / s-ip / <Computer>, matched to the\n"             \
    "inventory. Hostile lines are skipped and counted. All files or none are stored.\n"            \
    "A legacy handshake (SSL 3.0, TLS 1.0, 1.1) seen within the config's evidence_window\n"        \
    "(default 30 days) blocks that server's gate, named by client address: \"uninventoried\n"      \
    "client\" when no inventory host has that collector address. `evidence waive`\n"               \
    "stops one address from blocking (audited); list shows everything kept.\n"                     \
    "`evidence names FILE` replaces the address resolver: a CSV with the header\n"                 \
    "address,host mapping client addresses that are no collector address to inventory\n"           \
    "hosts (a second interface, NAT); all rows or none are stored (audited).\n"

static const struct cli_option evidence_import_options[] = {{"server", "S"}, {NULL}};
static const struct cli_spec evidence_import_spec = {
    .name = "evidence import",
    .word = "import",
    .usage = "Usage: tlsgate evidence import [--server S] [--json] FILE...\n" EVIDENCE_ABOUT,
    .options = evidence_import_options,
    .min_args = 1,
    .max_args = -1,
    .json = true,
};
static const struct cli_option evidence_list_options[] = {
    {"server", "S"}, {"legacy", NULL}, {"uninventoried", NULL}, {"csv", NULL}, {NULL}};
static const struct cli_spec evidence_list_spec = {
    .name = "evidence list",
    .word = "list",
    .usage = "Usage: tlsgate evidence list [--server S] [--legacy] [--uninventoried] [--csv] "
             "[--json]\n" EVIDENCE_ABOUT,
    .options = evidence_list_options,
    .json = true,
};
static const struct cli_option evidence_waive_options[] = {
    {"reason", "R"}, {"until", "YYYY-MM-DD"}, {NULL}};
static const struct cli_spec evidence_waive_spec = {
    .name = "evidence waive",
    .word = "waive",
    .usage = "Usage: tlsgate evidence waive ADDRESS --reason R [--until YYYY-MM-DD] "
             "[--json]\n" EVIDENCE_ABOUT,
    .options = evidence_waive_options,
    .min_args = 1,
    .max_args = 1,
    .json = true,
};
static const struct cli_spec evidence_unwaive_spec = {
    .name = "evidence unwaive",
    .word = "unwaive",
    .usage = "Usage: tlsgate evidence unwaive ADDRESS [--json]\n" EVIDENCE_ABOUT,
    .min_args = 1,
    .max_args = 1,
    .json = true,
};
static const struct cli_spec evidence_names_spec = {
    .name = "evidence names",
    .word = "names",
    .usage = "Usage: tlsgate evidence names FILE\n" EVIDENCE_ABOUT,
    .min_args = 1,
    .max_args = 1,
};
const struct cli_spec *const evidence_specs[] = {&evidence_import_spec, &evidence_list_spec,
                                                 &evidence_waive_spec,  &evidence_unwaive_spec,
                                                 &evidence_names_spec,  NULL};

static int store_fail_exit(struct store *s, int rc)
{
    cli_error("%s", store_errmsg(s));
    store_rollback(s);
    return rc == -ENOENT || rc == -EINVAL ? EXIT_BADINPUT : EXIT_SYSTEM;
}

/* ---- import --------------------------------------------------------------------------- */

#define RESOLVED_MAX 64

struct import {
    struct store *s;
    long long rows;
    /* The last few server names resolved to inventory names (a log names one server). */
    struct {
        char text[256];
        char name[INV_NAME_SIZE];
    } cache[RESOLVED_MAX];
    size_t ncache, next;
};

static int import_record(const struct evidence_record *r, void *arg)
{
    struct import *im = arg;
    const char *name = NULL;
    for (size_t i = 0; i < im->ncache && !name; i++)
        if (!strcmp(im->cache[i].text, r->server))
            name = im->cache[i].name;
    if (!name) {
        size_t i = im->ncache < RESOLVED_MAX ? im->ncache++ : im->next++ % RESOLVED_MAX;
        snprintf(im->cache[i].text, sizeof(im->cache[i].text), "%s", r->server);
        int rc =
            wire_server_resolve(im->s, r->server, im->cache[i].name, sizeof(im->cache[i].name));
        if (rc)
            return rc;
        name = im->cache[i].name;
    }
    im->rows++;
    return wire_evidence_add(im->s, name, r->client, r->proto, r->first, r->last, r->count);
}

/* files: the FILE arguments (at least one). */
static int evidence_import(struct cli *cli, const char *server, int nfiles, char **files)
{
    int code;
    struct store *s = cli_store(cli, false, &code);
    if (!s)
        return code;
    struct import *im = calloc(1, sizeof(*im));
    if (!im) {
        cli_error("evidence import: out of memory");
        return EXIT_SYSTEM;
    }
    im->s = s;
    struct inv_host h;
    int rc = store_begin(s, true);
    if (!rc && server && !(rc = inv_host_get(s, server, 0, &h)))
        server = h.name;
    if (rc) {
        free(im);
        return store_fail_exit(s, rc);
    }
    long long handshakes = 0, skipped = 0, plain = 0;
    for (int i = 0; i < nfiles; i++) {
        struct evidence_stats st;
        char err[STORE_ERROR_SIZE];
        err[0] = '\0';
        rc = evidence_read_file(files[i], server, import_record, im, &st, err, sizeof(err));
        if (rc) {
            if (err[0])
                cli_error("%s", err);
            else
                cli_error("%s", store_errmsg(s));
            store_rollback(s);
            free(im);
            return err[0] && rc != -ENOMEM && rc != -EIO ? EXIT_BADINPUT : EXIT_SYSTEM;
        }
        handshakes += st.handshakes;
        skipped += st.skipped;
        plain += st.plain;
        if (!cli->json) {
            printf("%s: %s, %ld lines, %ld handshakes, %ld without TLS, %ld other events", files[i],
                   st.format, st.lines, st.handshakes, st.plain, st.ignored);
            if (st.skipped) {
                printf(", %ld skipped (line", st.skipped);
                for (long k = 0; k < st.skipped && k < EVIDENCE_BAD_KEPT; k++)
                    printf("%s %ld", k ? "," : "s", st.bad[k]);
                printf("%s: %s)", st.skipped > EVIDENCE_BAD_KEPT ? ", ..." : "", st.why);
            }
            printf("\n");
        }
    }
    /* Bounded: days older than the retention go. */
    rc = wire_evidence_prune(s, utc_now() - WIRE_RETENTION_DAYS * 86400LL);
    char outcome[160];
    snprintf(outcome, sizeof(outcome), "ok: %lld handshakes in %lld rows, %lld lines skipped",
             handshakes, im->rows, skipped);
    if (rc || (rc = cli_audit(cli, outcome)) || (rc = store_commit(s))) {
        free(im);
        return store_fail_exit(s, rc);
    }
    if (cli->json)
        printf("{\"files\":%d,\"handshakes\":%lld,\"rows\":%lld,\"plain\":%lld,\"skipped\":%lld}\n",
               nfiles, handshakes, im->rows, plain, skipped);
    free(im);
    return EXIT_OK;
}

/* ---- list ----------------------------------------------------------------------------- */

struct list {
    bool json, csv;
    long n;
    struct csv_writer *w;
};

static int list_row(const struct wire_evidence_row *r, void *arg)
{
    struct list *l = arg;
    char first[UTC_ISO8601_SIZE], last[UTC_ISO8601_SIZE];
    utc_iso8601(r->first_seen, first, sizeof(first));
    utc_iso8601(r->last_seen, last, sizeof(last));
    bool legacy = WIRE_PROTO_LEGACY(r->proto);
    if (l->csv) {
        csv_cell_str(l->w, r->server);
        csv_cell_str(l->w, r->client);
        csv_cell_str(l->w, r->client_host ? r->client_host : "");
        csv_cell_str(l->w, wire_proto_name(r->proto));
        csv_cell_bool(l->w, legacy);
        csv_cell_str(l->w, first);
        csv_cell_str(l->w, last);
        csv_cell_int(l->w, r->count);
        csv_cell_bool(l->w, r->waived);
        csv_end_row(l->w);
    } else if (l->json) {
        printf("%s{\"server\":", l->n ? "," : "");
        jsonout_string(stdout, r->server);
        jsonout_member(stdout, ",\"client\":", r->client);
        fputs(",\"client_host\":", stdout);
        if (r->client_host)
            jsonout_string(stdout, r->client_host);
        else
            fputs("null", stdout);
        printf(",\"protocol\":\"%s\",\"legacy\":%s,\"first_seen\":\"%s\",\"last_seen\":\"%s\","
               "\"count\":%lld,\"waived\":%s}",
               wire_proto_name(r->proto), legacy ? "true" : "false", first, last, r->count,
               r->waived ? "true" : "false");
    } else {
        if (!l->n)
            printf("%-32s %-39s %-32s %-7s %8s %-20s %s\n", "SERVER", "CLIENT", "CLIENT HOST",
                   "PROTO", "COUNT", "LAST SEEN", "");
        printf("%-32s %-39s %-32s %-7s %8lld %-20s %s\n", r->server, r->client,
               r->client_host ? r->client_host : "(uninventoried)", wire_proto_label(r->proto),
               r->count, last, r->waived ? "waived" : "");
    }
    l->n++;
    return 0;
}

static int evidence_list(struct cli *cli, const struct cli_spec *spec, const struct cli_args *a)
{
    struct wire_evidence_filter f = {.now = utc_now()};
    f.server = cli_value(spec, a, "server");
    f.legacy_only = cli_given(spec, a, "legacy");
    f.uninventoried_only = cli_given(spec, a, "uninventoried");
    bool csv = cli_given(spec, a, "csv");
    int code;
    struct store *s = cli_store(cli, false, &code);
    if (!s)
        return code;
    static struct csv_writer w; /* 64 KiB: not for the stack */
    struct list l = {.json = cli->json && !csv, .csv = csv, .w = &w};
    if (csv) {
        static const char *const head[] = {"server", "client",     "client_host", "protocol",
                                           "legacy", "first_seen", "last_seen",   "count",
                                           "waived", NULL};
        fflush(stdout);
        csv_init(&w, STDOUT_FILENO);
        csv_header(&w, head);
    }
    if (l.json)
        fputs("[", stdout);
    int rc = store_begin(s, false);
    if (!rc)
        rc = wire_evidence_each(s, &f, list_row, &l);
    store_rollback(s);
    if (l.json)
        fputs("]\n", stdout);
    if (csv && !rc && csv_flush(&w)) {
        cli_error("evidence list: cannot write the CSV to stdout");
        return EXIT_SYSTEM;
    }
    if (rc)
        return store_fail_exit(s, rc);
    if (!csv && !l.json && !l.n)
        printf("no evidence%s (see `tlsgate evidence import`)\n",
               f.legacy_only ? " of legacy TLS" : "");
    return EXIT_OK;
}

/* ---- waive / unwaive ------------------------------------------------------------------ */

static bool valid_client(const char *a)
{
    unsigned char buf[16];
    return !strcmp(a, "unknown") || inet_pton(AF_INET, a, buf) == 1 ||
           inet_pton(AF_INET6, a, buf) == 1;
}

static int evidence_waive(struct cli *cli, const char *client, const char *reason,
                          const char *until, bool waive)
{
    const char *word = waive ? "waive" : "unwaive";
    if (waive && !reason) {
        cli_error("evidence waive: --reason is required (see `tlsgate evidence waive --help`)");
        return EXIT_USAGE;
    }
    if (!valid_client(client)) {
        cli_error("evidence %s: '%s' is not an IP address (or \"unknown\")", word, client);
        return EXIT_USAGE;
    }
    if (reason && strlen(reason) > 500) {
        cli_error("evidence waive: --reason is longer than 500 bytes");
        return EXIT_USAGE;
    }
    long long now = utc_now(), until_at = 0;
    if (until && (utc_parse_time(until, &until_at) || until_at <= now)) {
        cli_error("evidence waive: --until '%s' is not a future date (YYYY-MM-DD or "
                  "YYYY-MM-DDTHH:MM:SSZ)",
                  until);
        return EXIT_USAGE;
    }
    int code;
    struct store *s = cli_store(cli, false, &code);
    if (!s)
        return code;
    bool had = true;
    int rc = store_begin(s, true);
    if (!rc)
        rc = waive ? wire_waiver_set(s, client, reason, until_at, now, cli_user())
                   : wire_waiver_clear(s, client, &had);
    char outcome[128], iso[UTC_ISO8601_SIZE];
    if (waive)
        snprintf(outcome, sizeof(outcome), "ok: %s waived until %s", client,
                 until ? utc_iso8601(until_at, iso, sizeof(iso)) : "unwaived");
    else
        snprintf(outcome, sizeof(outcome), "ok: %s %s", client, had ? "unwaived" : "had no waiver");
    if (rc || (rc = cli_audit(cli, outcome)) || (rc = store_commit(s)))
        return store_fail_exit(s, rc);
    if (cli->json)
        printf("{\"client\":\"%s\",\"waived\":%s}\n", client, waive ? "true" : "false");
    else
        printf("%s\n", outcome + 4);
    return EXIT_OK;
}

/* ---- names --------------------------------------------------------------------------- */

/* `evidence names FILE`: the CSV (address,host; any column order, from the header) replaces
 * the resolver in one transaction; the first bad row is reported with its line and nothing is
 * changed. */
static int evidence_names(struct cli *cli, const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        cli_error("evidence names: %s: %s", path, strerror(errno));
        return EXIT_BADINPUT;
    }
    struct csvread r;
    if (csvread_init(&r, f) || csvread_detect(&r)) {
        fclose(f);
        cli_error("evidence names: %s: cannot read it", path);
        return EXIT_SYSTEM;
    }
    int code = EXIT_BADINPUT, col_addr = -1, col_host = -1, rc = csvread_next(&r);
    for (size_t i = 0; rc == 1 && i < r.nfields; i++) {
        if (!strcasecmp(r.fields[i], "address"))
            col_addr = (int)i;
        else if (!strcasecmp(r.fields[i], "host"))
            col_host = (int)i;
    }
    struct store *s = NULL;
    long rows = 0;
    if (rc != 1 || col_addr < 0 || col_host < 0) {
        cli_error("evidence names: %s:%ld: %s", path, r.line,
                  rc < 0 ? r.err : "the header must name the columns address and host");
        goto out;
    }
    if (!(s = cli_store(cli, false, &code)))
        goto out;
    if ((rc = store_begin(s, true)) || (rc = wire_names_clear(s))) {
        code = store_fail_exit(s, rc);
        goto out;
    }
    while ((rc = csvread_next(&r)) == 1) {
        const char *addr = (size_t)col_addr < r.nfields ? r.fields[col_addr] : "";
        const char *host = (size_t)col_host < r.nfields ? r.fields[col_host] : "";
        if (!valid_client(addr) || !strcmp(addr, "unknown")) {
            cli_error("evidence names: %s:%ld: address '%s' is not an IP address", path, r.line,
                      addr);
            store_rollback(s);
            goto out;
        }
        if ((rc = wire_name_add(s, addr, host))) {
            cli_error("evidence names: %s:%ld: %s", path, r.line, store_errmsg(s));
            store_rollback(s);
            code = rc == -ENOENT ? EXIT_BADINPUT : EXIT_SYSTEM;
            goto out;
        }
        rows++;
    }
    if (rc < 0) {
        cli_error("evidence names: %s:%ld: %s", path, r.line, r.err);
        store_rollback(s);
        goto out;
    }
    char outcome[96];
    snprintf(outcome, sizeof(outcome), "ok: %ld address%s mapped to inventory hosts", rows,
             rows == 1 ? "" : "es");
    if ((rc = cli_audit(cli, outcome)) || (rc = store_commit(s))) {
        code = store_fail_exit(s, rc);
        goto out;
    }
    printf("%s\n", outcome + 4);
    code = EXIT_OK;
out:
    csvread_release(&r);
    fclose(f);
    return code;
}

int cmd_evidence(struct cli *cli, int argc, char **argv)
{
    const struct cli_spec *spec;
    struct cli_args a;
    int parsed = cli_parse_sub(cli, "evidence", EVIDENCE_SYNOPSIS EVIDENCE_ABOUT, evidence_specs,
                               argc, argv, &spec, &a);
    if (parsed != CLI_RUN)
        return parsed;
    if (spec == &evidence_import_spec)
        return evidence_import(cli, cli_value(spec, &a, "server"), a.argc, a.argv);
    if (spec == &evidence_list_spec)
        return evidence_list(cli, spec, &a);
    if (spec == &evidence_names_spec)
        return evidence_names(cli, a.argv[0]);
    return evidence_waive(cli, a.argv[0], cli_value(spec, &a, "reason"),
                          cli_value(spec, &a, "until"), spec == &evidence_waive_spec);
}
