/*
 * fuzz_invimport.c — libFuzzer target for `tlsgate inventory import` (domain/invimport.h): a
 * CSV or JSON file of hosts or explicit edges, imported into a real SQLite database that already
 * holds a small site (three hosts, one with a stored report, so a changed role re-evaluates),
 * inside a transaction rolled back after each input.
 *
 * The import's TEMP tables and triggers (what inv_import_end drops) are made once, by an
 * import of a header without rows committed at start, and kept: each input's rows in them go
 * with the rollback, so every import starts from the same empty tables. Dropping them per input
 * made every rollback a schema change, after which SQLite parses the whole schema again.
 *
 * Contract: an input is refused with -EINVAL and a message naming the file ("fuzz.inv..."),
 * or accepted, and then every host in the database is one the inventory would accept: a valid
 * name, site, roles, collector address and OS label, found by inv_host_get under its name; the
 * counts add up; no foreign key is broken. A store error is a finding too (data must never make
 * SQL fail). Anything else is abort().
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzzutil.h"
#include "ingest.h"
#include "inventory.h"
#include "invimport.h"
#include "report.h"
#include "rules.h"
#include "store.h"

static struct store *store;

static int import_text(const void *data, size_t size, const char *name, struct inv_import *im)
{
    FILE *in = fmemopen((void *)data, size, "r");
    if (!in)
        abort();
    memset(im, 0, sizeof(*im));
    im->path = name;
    im->now = 1000;
    im->user = "fuzz";
    if (store_begin(store, true) != 0)
        fuzz_die("begin: %s", store_errmsg(store));
    int rc = inv_import(store, in, im);
    fclose(in);
    return rc;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    char err[STORE_ERROR_SIZE];
    char *path = fuzz_temp_path("inv.db");
    if (store_open(path, true, &store, err, sizeof(err)) != 0)
        fuzz_die("%s", err);
    free(path);
    static const char seed[] = "name,site,roles,collector,os\n"
                               "mp1.fuzz.test,PS1,management_point,127.0.0.1:8443,Server\n"
                               "db1.fuzz.test,PS1,site_database,,\n"
                               "cl1.fuzz.test,PS1,,[::1]:8443,Windows 7\n";
    struct inv_import im;
    if (import_text(seed, sizeof(seed) - 1, "seed.csv", &im) != 0)
        fuzz_die("seed: %s", im.err);
    inv_import_end(store);
    struct rules_catalog *c;
    if (rules_load_default(&c, err, sizeof(err)) != 0)
        fuzz_die("%s", err);
    static const char report[] = "{\"schema\":\"tlsgate.report/1\",\"host\":\"cl1.fuzz.test\","
                                 "\"collected_at\":\"2026-01-01T00:00:00Z\"}";
    json_t *r = json_loads(report, 0, NULL);
    struct inv_host h;
    if (!r || inv_host_get(store, "cl1.fuzz.test", 0, &h) != 0 ||
        ingest_report(store, c, h.id, h.roles, r, 1000) != 0 || store_commit(store) != 0)
        fuzz_die("seed report: %s", store_errmsg(store));
    json_decref(r);
    rules_free(c);
    static const char header[] = "name,site,roles,collector,os\n";
    if (import_text(header, sizeof(header) - 1, "header.csv", &im) != 0 || im.rows != 0 ||
        store_commit(store) != 0)
        fuzz_die("header: %s %s", im.err, store_errmsg(store));
    return 0;
}

static void check_hosts(const struct inv_import *im)
{
    sqlite3_stmt *st;
    if (store_prepare(store, "SELECT name FROM host", &st) != 0)
        fuzz_die("%s", store_errmsg(store));
    long long n = 0;
    while (sqlite3_step(st) == SQLITE_ROW) {
        const char *name = (const char *)sqlite3_column_text(st, 0);
        struct inv_host h;
        if (!name || inv_host_get(store, name, 0, &h) != 0)
            fuzz_die("host %s: %s", name ? name : "(null)", store_errmsg(store));
        if (!inv_valid_fqdn(h.name) || !inv_valid_site(h.site) || h.roles == 0 ||
            !inv_valid_collector(h.collector) || strlen(h.os) > INV_OS_MAX)
            fuzz_die("accepted host is not valid: %s %s %u %s", h.name, h.site, h.roles,
                     h.collector);
        n++;
    }
    sqlite3_finalize(st);
    if (n != im->hosts_after || im->hosts_after < im->hosts_before || im->rows < 0)
        fuzz_die("counts: %lld hosts, import says %lld (before %lld)", n, im->hosts_after,
                 im->hosts_before);
    if (store_prepare(store, "PRAGMA foreign_key_check", &st) != 0)
        fuzz_die("%s", store_errmsg(store));
    if (sqlite3_step(st) == SQLITE_ROW)
        fuzz_die("foreign key broken in table %s", sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct inv_import im;
    int rc = import_text(data, size, "fuzz.inv", &im);
    if (rc == 0)
        check_hosts(&im);
    else if (rc != -EINVAL)
        fuzz_die("import failed with %d, not a refusal: %s", rc, im.err);
    else if (strncmp(im.err, "fuzz.inv", 8) != 0)
        fuzz_die("refusal does not name the file: %s", im.err);
    store_rollback(store);
    return 0;
}
