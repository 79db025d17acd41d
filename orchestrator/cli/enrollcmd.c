/*
 * enrollcmd.c — `tlsgate enroll`: collector identities (issue 12). The tables and the policy
 * are domain/identity.c's; the CA and the HTTPS endpoint are enroll/'s; this file parses,
 * prints and picks the exit code. Every change is one audit row, in the change's transaction.
 *
 *   tlsgate enroll ca init --out DIR [--days N] [--cn NAME]
 *   tlsgate enroll secret --site S
 *   tlsgate enroll list [--site S] [--expiring WINDOW] [--csv] [--json]
 *   tlsgate enroll pending [--json]
 *   tlsgate enroll approve ID | deny ID [--reason R]
 *   tlsgate enroll revoke HOST [--reason R] | accept HOST
 *   tlsgate enroll serve
 */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "ca.h"
#include "cli.h"
#include "csv.h"
#include "enroll.h"
#include "identity.h"
#include "inventory.h"
#include "poll.h"
#include "store.h"

#define ENROLL_SYNOPSIS                                                                            \
    "Usage: tlsgate enroll ca init --out DIR [--days N] [--cn NAME]\n"                             \
    "       tlsgate enroll secret --site S [--json]\n"                                             \
    "       tlsgate enroll list [--site S] [--expiring WINDOW] [--csv] [--json]\n"                 \
    "       tlsgate enroll pending [--json]\n"                                                     \
    "       tlsgate enroll approve ID [--json]\n"                                                  \
    "       tlsgate enroll deny ID [--reason R] [--json]\n"                                        \
    "       tlsgate enroll revoke HOST [--reason R] [--json]\n"                                    \
    "       tlsgate enroll accept HOST [--json]\n"                                                 \
    "       tlsgate [--config FILE] enroll serve\n"
#define ENROLL_ABOUT                                                                               \
    "\n"                                                                                           \
    "Collector identities. A collector installed with its site's secret makes its own key\n"       \
    "and asks `enroll serve` for a certificate: the FIRST enrollment of an inventory name\n"       \
    "of that site is issued at once; any other request for it waits for `enroll approve`.\n"       \
    "Renewal is over mutual TLS with the current certificate, no secret needed. The config's\n"    \
    "\"enroll\" object names the CA (ca_cert, ca_key), the endpoint (listen, cert, key) and\n"     \
    "the limits (lifetime_days, pending_max, rate_per_minute, rate_burst, connection_limit,\n"     \
    "per_ip_limit): tlsgate.json(5).\n"

static const struct cli_option ca_options[] = {
    {"out", "DIR"}, {"days", "N"}, {"cn", "NAME"}, {NULL}};
static const struct cli_spec ca_spec = {
    .name = "enroll ca",
    .word = "ca",
    .usage = "Usage: tlsgate enroll ca init --out DIR [--days N] [--cn NAME]\n\n"
             "Makes a fleet CA in DIR: ca.key (ECDSA P-256, mode 0600) and ca.pem (self-signed,\n"
             "N days, default 3650; CN default \"tlsgate fleet CA\"). An existing CA in DIR is\n"
             "never overwritten. Point the config's enroll.ca_cert and enroll.ca_key at them\n"
             "and give ca.pem to the daemon (tls.ca) to trust enrolled collectors.\n",
    .options = ca_options,
    .min_args = 1,
    .max_args = 1,
};
static const struct cli_option secret_options[] = {{"site", "S"}, {NULL}};
static const struct cli_spec secret_spec = {
    .name = "enroll secret",
    .word = "secret",
    .usage = "Usage: tlsgate enroll secret --site S [--json]\n\n"
             "Creates site S's enrollment secret, or replaces it (the old one is refused from\n"
             "now on). The secret is printed this once; only a salted SHA-256 is kept.\n",
    .options = secret_options,
    .json = true,
};
static const struct cli_option list_options[] = {
    {"site", "S"}, {"expiring", "WINDOW"}, {"csv", NULL}, {NULL}};
static const struct cli_spec list_spec = {
    .name = "enroll list",
    .word = "list",
    .usage = "Usage: tlsgate enroll list [--site S] [--expiring WINDOW] [--csv] [--json]\n\n"
             "Every identity: name, site, source (enroll: issued here; seen: first seen at a\n"
             "pull), serial, not_after, revoked. --expiring 14d (or 36h) lists what expires\n"
             "within the window, expired ones included: each host's latest enrolled\n"
             "certificate, and the certificate the puller last saw (source pull) for hosts\n"
             "without one. Revoked identities are left out of --expiring.\n",
    .options = list_options,
    .json = true,
};
static const struct cli_spec pending_spec = {
    .name = "enroll pending",
    .word = "pending",
    .usage = "Usage: tlsgate enroll pending [--json]\n\n"
             "Requests waiting for a person: a name that had an identity, or a second key for\n"
             "a name. Check with the host's owner, then `enroll approve ID` or `enroll deny ID`.\n",
    .json = true,
};
static const struct cli_spec approve_spec = {
    .name = "enroll approve",
    .word = "approve",
    .usage = "Usage: tlsgate enroll approve ID [--json]\n\n"
             "Approves pending request ID: the collector that asked gets its certificate at its\n"
             "next ask (signed by `enroll serve`), for the key it asked with.\n",
    .min_args = 1,
    .max_args = 1,
    .json = true,
};
static const struct cli_option reason_options[] = {{"reason", "R"}, {NULL}};
static const struct cli_spec deny_spec = {
    .name = "enroll deny",
    .word = "deny",
    .usage = "Usage: tlsgate enroll deny ID [--reason R] [--json]\n\n"
             "Denies pending request ID: the collector asking with that key is refused (403).\n",
    .options = reason_options,
    .min_args = 1,
    .max_args = 1,
    .json = true,
};
static const struct cli_spec revoke_spec = {
    .name = "enroll revoke",
    .word = "revoke",
    .usage =
        "Usage: tlsgate enroll revoke HOST [--reason R] [--json]\n\n"
        "Revokes every identity of HOST (issued here or seen at a pull): the puller\n"
        "refuses it at the next pull and renewal refuses it. Its pending and approved but\n"
        "undelivered requests are denied. A new identity for HOST needs a person's approval.\n",
    .options = reason_options,
    .min_args = 1,
    .max_args = 1,
    .json = true,
};
static const struct cli_spec accept_spec = {
    .name = "enroll accept",
    .word = "accept",
    .usage = "Usage: tlsgate enroll accept HOST [--json]\n\n"
             "Accepts the certificate change the puller noted for HOST (a certificate other\n"
             "than the previous one, not from enrollment): `host show` stops showing it.\n",
    .min_args = 1,
    .max_args = 1,
    .json = true,
};
static const struct cli_spec serve_spec = {
    .name = "enroll serve",
    .word = "serve",
    .usage = "Usage: tlsgate [--config FILE] enroll serve\n\n"
             "Serves the enrollment endpoint (HTTPS; POST /v1/enroll, POST /v1/renew, GET\n"
             "/v1/health) on the config's enroll.listen until SIGTERM or SIGINT. Needs\n"
             "enroll.ca_cert, enroll.ca_key, enroll.cert and enroll.key. Writes\n"
             "\"tlsgate: enroll serve: listening on https://ADDRESS:PORT\" to stderr once ready.\n",
};
const struct cli_spec *const enroll_specs[] = {
    &ca_spec,   &secret_spec, &list_spec,   &pending_spec, &approve_spec,
    &deny_spec, &revoke_spec, &accept_spec, &serve_spec,   NULL};

static int fail_exit(struct store *s, int rc)
{
    cli_error("%s", store_errmsg(s));
    store_rollback(s);
    return rc == -ENOENT || rc == -EALREADY || rc == -EINVAL ? EXIT_BADINPUT : EXIT_SYSTEM;
}

/* ---- ca init ---- */

static int enroll_ca(struct cli *cli, const struct cli_spec *spec, const struct cli_args *a)
{
    (void)cli;
    if (strcmp(a->argv[0], "init") != 0) {
        cli_error("enroll ca: unknown subcommand '%s' (the one is: init)", a->argv[0]);
        return EXIT_USAGE;
    }
    const char *out = cli_value(spec, a, "out"), *days_text = cli_value(spec, a, "days");
    const char *cn = cli_value(spec, a, "cn");
    if (!out) {
        cli_error("enroll ca init: --out DIR is required");
        return EXIT_USAGE;
    }
    long days = 3650;
    if (days_text) {
        char *end;
        days = strtol(days_text, &end, 10);
        if (*end || days < 1 || days > 36500) {
            cli_error("enroll ca init: --days '%s' is not a number of days from 1 to 36500",
                      days_text);
            return EXIT_USAGE;
        }
    }
    if (cn && (!*cn || strlen(cn) > 64)) {
        cli_error("enroll ca init: --cn must be 1 to 64 bytes");
        return EXIT_USAGE;
    }
    char err[STORE_ERROR_SIZE];
    int rc = ca_init_dir(out, cn ? cn : "tlsgate fleet CA", days, utc_now(), err, sizeof(err));
    if (rc) {
        cli_error("enroll ca init: %s", err);
        return rc == -EEXIST ? EXIT_BADINPUT : EXIT_SYSTEM;
    }
    printf("fleet CA written: %s/ca.pem (certificate), %s/ca.key (key, mode 0600)\n", out, out);
    return EXIT_OK;
}

/* ---- secret ---- */

static int enroll_secret(struct cli *cli, const struct cli_spec *spec, const struct cli_args *a)
{
    const char *site = cli_value(spec, a, "site");
    if (!site) {
        cli_error("enroll secret: --site S is required");
        return EXIT_USAGE;
    }
    int code;
    struct store *s = cli_store(cli, false, &code);
    if (!s)
        return code;
    char secret[IDENTITY_SECRET_TEXT];
    bool rotated = false;
    int rc = store_begin(s, true);
    if (!rc)
        rc = identity_secret_rotate(s, site, utc_now(), cli_user(), secret, &rotated);
    char outcome[160];
    snprintf(outcome, sizeof(outcome), "ok: site %s: enrollment secret %s", site,
             rotated ? "replaced (the old one is retired)" : "created");
    if (rc || (rc = cli_audit(cli, outcome)) || (rc = store_commit(s)))
        return fail_exit(s, rc);
    if (cli->json) {
        jsonout_print(stdout, json_pack("{s:o, s:s, s:b}", "site", jsonout_text(site), "secret",
                                        secret, "rotated", rotated));
    } else {
        printf("%s\n%s\n", outcome + 4, secret);
        fprintf(stderr,
                "tlsgate: the secret is shown this once; give it to site %s's "
                "collectors (tlsgate-collector's enroll secret)\n",
                site);
    }
    memset(secret, 0, sizeof(secret));
    return EXIT_OK;
}

/* ---- list ---- */

struct list {
    bool json, csv;
    struct csv_writer *w;
    unsigned long n;
};

static json_t *time_or_null(long long t)
{
    char iso[UTC_ISO8601_SIZE];
    return t ? json_string(utc_iso8601(t, iso, sizeof(iso))) : json_null();
}

static int list_row(const struct identity_row *r, void *arg)
{
    struct list *l = arg;
    char na[UTC_ISO8601_SIZE] = "", rv[UTC_ISO8601_SIZE] = "";
    if (r->not_after)
        utc_iso8601(r->not_after, na, sizeof(na));
    if (r->revoked_at)
        utc_iso8601(r->revoked_at, rv, sizeof(rv));
    if (l->json) {
        json_t *o =
            json_pack("{s:o, s:o, s:s, s:o, s:o, s:o, s:o, s:o}", "name", jsonout_text(r->name),
                      "site", r->site ? jsonout_text(r->site) : json_null(), "source", r->source,
                      "fingerprint", r->fingerprint ? jsonout_text(r->fingerprint) : json_null(),
                      "serial", r->serial ? jsonout_text(r->serial) : json_null(), "issuer",
                      r->issuer ? jsonout_text(r->issuer) : json_null(), "not_after",
                      time_or_null(r->not_after), "revoked_at", time_or_null(r->revoked_at));
        if (l->n)
            fputs(",", stdout);
        char *text = json_dumps(o, JSON_COMPACT);
        json_decref(o);
        if (text)
            fputs(text, stdout);
        free(text);
    } else if (l->csv) {
        csv_cell_str(l->w, r->name);
        csv_cell_str(l->w, r->site ? r->site : "");
        csv_cell_str(l->w, r->source);
        csv_cell_str(l->w, r->serial ? r->serial : "");
        csv_cell_str(l->w, r->fingerprint ? r->fingerprint : "");
        csv_cell_str(l->w, na);
        csv_cell_str(l->w, rv);
        csv_end_row(l->w);
    } else {
        printf("%-40s %-8s %-6s %-34s %-20s %s\n", TEXTCLEAN(r->name),
               TEXTCLEAN(r->site ? r->site : "-"), r->source,
               TEXTCLEAN(r->serial ? r->serial : "-"), na[0] ? na : "-", rv[0] ? rv : "-");
    }
    l->n++;
    return 0;
}

/* "14d", "36h" or a number of seconds into *out; -EINVAL otherwise. */
static int parse_window(const char *text, long long *out)
{
    char *end;
    long long n = strtoll(text, &end, 10);
    if (end == text || n <= 0 || n > 3650LL * 86400 || text[0] == '+')
        return -EINVAL;
    long long unit = !*end ? 1 : !strcmp(end, "d") ? 86400 : !strcmp(end, "h") ? 3600 : 0;
    if (!unit || n * unit > 3650LL * 86400)
        return -EINVAL;
    *out = n * unit;
    return 0;
}

static int enroll_list(struct cli *cli, const struct cli_spec *spec, const struct cli_args *a)
{
    const char *site = cli_value(spec, a, "site"), *exp = cli_value(spec, a, "expiring");
    long long window = 0;
    if (exp && parse_window(exp, &window)) {
        cli_error("enroll list: --expiring '%s' is not a window such as 14d or 36h", exp);
        return EXIT_USAGE;
    }
    bool csv = cli_given(spec, a, "csv");
    if (csv && cli->json) {
        cli_error("enroll list: --csv and --json are exclusive");
        return EXIT_USAGE;
    }
    int code;
    struct store *s = cli_store(cli, false, &code);
    if (!s)
        return code;
    static struct csv_writer w;
    struct list l = {.json = cli->json, .csv = csv, .w = &w};
    if (csv) {
        static const char *const head[] = {"name",        "site",      "source",     "serial",
                                           "fingerprint", "not_after", "revoked_at", NULL};
        fflush(stdout);
        csv_init(&w, STDOUT_FILENO);
        csv_header(&w, head);
    } else if (l.json) {
        fputs("[", stdout);
    } else {
        printf("%-40s %-8s %-6s %-34s %-20s %s\n", "NAME", "SITE", "SOURCE", "SERIAL", "NOT_AFTER",
               "REVOKED");
    }
    int rc = store_begin(s, false);
    if (!rc)
        rc = identity_each(s, site, window, utc_now(), list_row, &l);
    store_rollback(s);
    if (l.json)
        fputs("]\n", stdout);
    if (csv && !rc && csv_flush(&w)) {
        cli_error("enroll list: cannot write the CSV to stdout");
        return EXIT_SYSTEM;
    }
    if (rc)
        return fail_exit(s, rc);
    return EXIT_OK;
}

/* ---- pending ---- */

static int pending_row(const struct identity_pending *p, void *arg)
{
    struct list *l = arg;
    char at[UTC_ISO8601_SIZE];
    utc_iso8601(p->created_at, at, sizeof(at));
    if (l->json) {
        json_t *o =
            json_pack("{s:I, s:o, s:o, s:s, s:o, s:s, s:s}", "id", (json_int_t)p->id, "name",
                      jsonout_text(p->name), "site", jsonout_text(p->site), "kind", p->kind, "peer",
                      jsonout_text(p->peer), "spki", p->spki, "created_at", at);
        char *text = json_dumps(o, JSON_COMPACT);
        json_decref(o);
        if (text)
            printf("%s%s", l->n ? "," : "", text);
        free(text);
    } else {
        printf("%-6lld %-40s %-8s %-6s %-20s %-39s %.16s\n", p->id, TEXTCLEAN(p->name),
               TEXTCLEAN(p->site), p->kind, at, TEXTCLEAN(p->peer), p->spki);
    }
    l->n++;
    return 0;
}

static int enroll_pending(struct cli *cli)
{
    int code;
    struct store *s = cli_store(cli, false, &code);
    if (!s)
        return code;
    struct list l = {.json = cli->json};
    if (l.json)
        fputs("[", stdout);
    else
        printf("%-6s %-40s %-8s %-6s %-20s %-39s %s\n", "ID", "NAME", "SITE", "KIND", "ASKED",
               "FROM", "KEY");
    int rc = store_begin(s, false);
    if (!rc)
        rc = identity_pending_each(s, pending_row, &l);
    store_rollback(s);
    if (l.json)
        fputs("]\n", stdout);
    if (rc)
        return fail_exit(s, rc);
    return EXIT_OK;
}

/* ---- approve / deny ---- */

static int enroll_decide(struct cli *cli, const char *id_text, bool approve, const char *reason)
{
    const char *word = approve ? "approve" : "deny";
    char *end;
    long long id = strtoll(id_text, &end, 10);
    if (*end || id <= 0 || id_text[0] == '+') {
        cli_error("enroll %s: '%s' is not a request number (see `tlsgate enroll pending`)", word,
                  id_text);
        return EXIT_USAGE;
    }
    if (reason && strlen(reason) > IDENTITY_REASON_MAX) {
        cli_error("enroll %s: --reason is longer than %d bytes", word, IDENTITY_REASON_MAX);
        return EXIT_BADINPUT;
    }
    int code;
    struct store *s = cli_store(cli, false, &code);
    if (!s)
        return code;
    char name[256] = "";
    int rc = store_begin(s, true);
    if (!rc)
        rc = approve ? identity_approve(s, id, utc_now(), cli_user(), name)
                     : identity_deny(s, id, utc_now(), cli_user(), reason, name);
    char outcome[384];
    snprintf(outcome, sizeof(outcome), "ok: request %lld (%.255s) %s", id, name,
             approve ? "approved" : "denied");
    if (rc || (rc = cli_audit(cli, outcome)) || (rc = store_commit(s)))
        return fail_exit(s, rc);
    if (cli->json)
        jsonout_print(stdout,
                      json_pack("{s:I, s:o, s:s}", "request", (json_int_t)id, "name",
                                jsonout_text(name), "state", approve ? "approved" : "denied"));
    else
        printf("%s%s\n", TEXTCLEAN(outcome + 4),
               approve ? "; the certificate is issued at the collector's next ask" : "");
    return EXIT_OK;
}

/* ---- revoke / accept ---- */

static int enroll_revoke(struct cli *cli, const char *host, const char *reason)
{
    if (reason && strlen(reason) > IDENTITY_REASON_MAX) {
        cli_error("enroll revoke: --reason is longer than %d bytes", IDENTITY_REASON_MAX);
        return EXIT_BADINPUT;
    }
    int code;
    struct store *s = cli_store(cli, false, &code);
    if (!s)
        return code;
    int ids = 0, reqs = 0;
    int rc = store_begin(s, true);
    if (!rc)
        rc = identity_revoke(s, host, utc_now(), cli_user(), reason, &ids, &reqs);
    char outcome[384];
    snprintf(outcome, sizeof(outcome), "ok: %.255s: %d identit%s revoked, %d request%s denied",
             host, ids, ids == 1 ? "y" : "ies", reqs, reqs == 1 ? "" : "s");
    if (rc || (rc = cli_audit(cli, outcome)) || (rc = store_commit(s)))
        return fail_exit(s, rc);
    if (cli->json)
        jsonout_print(stdout, json_pack("{s:o, s:i, s:i}", "host", jsonout_text(host),
                                        "identities_revoked", ids, "requests_denied", reqs));
    else
        printf("%s\n", TEXTCLEAN(outcome + 4));
    return EXIT_OK;
}

static int enroll_accept(struct cli *cli, const char *host)
{
    int code;
    struct store *s = cli_store(cli, false, &code);
    if (!s)
        return code;
    struct inv_host h;
    bool had = false;
    int rc = store_begin(s, true);
    if (!rc)
        rc = inv_host_get(s, host, 0, &h);
    if (!rc)
        rc = poll_accept_cert_change(s, h.id, &had);
    char outcome[384];
    snprintf(outcome, sizeof(outcome), "ok: %.255s: %s", host,
             had ? "certificate change accepted" : "no certificate change was noted");
    if (rc || (rc = cli_audit(cli, outcome)) || (rc = store_commit(s)))
        return fail_exit(s, rc);
    if (cli->json)
        jsonout_print(stdout,
                      json_pack("{s:o, s:b}", "host", jsonout_text(h.name), "accepted", had));
    else
        printf("%s\n", TEXTCLEAN(outcome + 4));
    return EXIT_OK;
}

/* ---- serve ---- */

struct serve {
    uv_loop_t loop;
    uv_signal_t sig_term, sig_int;
    struct enroll_server *server;
};

static void on_stop(uv_signal_t *sig, int signum)
{
    struct serve *v = sig->data;
    fprintf(stderr, "tlsgate: enroll serve: %s, stopping\n",
            signum == SIGINT ? "SIGINT" : "SIGTERM");
    if (v->server)
        enroll_server_close(v->server);
    v->server = NULL;
    uv_close((uv_handle_t *)&v->sig_term, NULL);
    uv_close((uv_handle_t *)&v->sig_int, NULL);
}

static int enroll_serve(struct cli *cli)
{
    const struct config_enroll *c = &cli->config.enroll;
    const char *missing = !c->ca_cert[0]  ? "ca_cert"
                          : !c->ca_key[0] ? "ca_key"
                          : !c->cert[0]   ? "cert"
                          : !c->key[0]    ? "key"
                                          : NULL;
    if (missing) {
        cli_error("enroll serve: the config has no enroll.%s (see tlsgate.json(5); --config FILE)",
                  missing);
        return EXIT_BADINPUT;
    }
    char err[STORE_ERROR_SIZE], addr[64];
    unsigned port;
    if (config_split_address(c->listen, addr, sizeof(addr), &port, err, sizeof(err))) {
        cli_error("enroll serve: enroll.listen: %s", err);
        return EXIT_BADINPUT;
    }
    struct ca *ca = NULL;
    char *cert = NULL, *key = NULL;
    int code = EXIT_BADINPUT;
    if (ca_load(c->ca_cert, c->ca_key, &ca, err, sizeof(err)) ||
        ca_read_file(c->cert, false, &cert, err, sizeof(err)) ||
        ca_read_file(c->key, true, &key, err, sizeof(err))) {
        cli_error("enroll serve: %s", err);
        goto out;
    }
    struct store *s = cli_store(cli, false, &code);
    if (!s)
        goto out;
    signal(SIGPIPE, SIG_IGN);
    struct serve v;
    memset(&v, 0, sizeof(v));
    uv_loop_init(&v.loop);
    struct enroll_options o = {
        .address = addr,
        .port = (uint16_t)port,
        .cert_pem = cert,
        .key_pem = key,
        .ca = ca,
        .lifetime_days = c->lifetime_days,
        .pending_max = c->pending_max,
        .rate_per_minute = c->rate_per_minute,
        .rate_burst = c->rate_burst,
        .connection_limit = (unsigned)c->connection_limit,
        .per_ip_limit = (unsigned)c->per_ip_limit,
    };
    int rc = enroll_server_start(&v.loop, s, &o, &v.server, err, sizeof(err));
    if (rc) {
        cli_error("enroll serve: %s", err);
        uv_loop_close(&v.loop);
        code = rc == -EINVAL ? EXIT_BADINPUT : EXIT_SYSTEM;
        goto out;
    }
    uv_signal_init(&v.loop, &v.sig_term);
    uv_signal_init(&v.loop, &v.sig_int);
    v.sig_term.data = v.sig_int.data = &v;
    uv_signal_start(&v.sig_term, on_stop, SIGTERM);
    uv_signal_start(&v.sig_int, on_stop, SIGINT);
    fprintf(stderr, "tlsgate: enroll serve: listening on https://%s%s%s:%u\n",
            strchr(addr, ':') ? "[" : "", addr, strchr(addr, ':') ? "]" : "",
            (unsigned)enroll_server_port(v.server));
    uv_run(&v.loop, UV_RUN_DEFAULT);
    uv_loop_close(&v.loop);
    code = EXIT_OK;
out:
    if (key) {
        memset(key, 0, strlen(key));
        free(key);
    }
    free(cert);
    ca_free(ca);
    return code;
}

int cmd_enroll(struct cli *cli, int argc, char **argv)
{
    const struct cli_spec *spec;
    struct cli_args a;
    int parsed = cli_parse_sub(cli, "enroll", ENROLL_SYNOPSIS ENROLL_ABOUT, enroll_specs, argc,
                               argv, &spec, &a);
    if (parsed != CLI_RUN)
        return parsed;
    if (spec == &ca_spec)
        return enroll_ca(cli, spec, &a);
    if (spec == &secret_spec)
        return enroll_secret(cli, spec, &a);
    if (spec == &list_spec)
        return enroll_list(cli, spec, &a);
    if (spec == &pending_spec)
        return enroll_pending(cli);
    if (spec == &approve_spec || spec == &deny_spec)
        return enroll_decide(cli, a.argv[0], spec == &approve_spec, cli_value(spec, &a, "reason"));
    if (spec == &revoke_spec)
        return enroll_revoke(cli, a.argv[0], cli_value(spec, &a, "reason"));
    if (spec == &accept_spec)
        return enroll_accept(cli, a.argv[0]);
    return enroll_serve(cli);
}
