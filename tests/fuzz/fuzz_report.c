/*
 * fuzz_report.c — libFuzzer target for the report a collector serves, as the daemon takes it:
 * report_parse (size cap, JSON, duplicate keys, report_validate), then the rules engine on the
 * accepted report (collectors/report.h, orchestrator/domain/rules.h) and ingest into a real
 * SQLite database (domain/ingest.h), in a transaction rolled back after each input.
 *
 * Contract: an input is refused with a negative code, no result and a message; or accepted,
 * and then every consumer of a report walks it without error: the default catalog evaluates it
 * for a client and for a management point (counts agree with the verdicts), the legacy
 * protocol check says 0 or 1, and ingest stores it with its verdicts. Anything else is abort().
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fuzzutil.h"
#include "ingest.h"
#include "inventory.h"
#include "invimport.h"
#include "report.h"
#include "rules.h"
#include "store.h"

static struct rules_catalog *catalog;
static struct store *store;
static long long host_id;

struct tally {
    int fails[2]; /* by severity */
    size_t n;
};

static int count_verdict(void *ctx, const struct rules_verdict *v)
{
    struct tally *t = ctx;
    if (!v->rule || !*v->rule || strnlen(v->reason, RULES_REASON_MAX) == RULES_REASON_MAX)
        abort();
    if (!v->pass)
        t->fails[v->severity == RULES_BLOCKER ? 0 : 1]++;
    t->n++;
    return 0;
}

static void evaluate(json_t *report, unsigned roles)
{
    struct tally t = {{0, 0}, 0};
    int blockers = -1, warnings = -1;
    if (rules_evaluate(catalog, report, roles, count_verdict, &t, &blockers, &warnings) != 0)
        abort();
    if (blockers != t.fails[0] || warnings != t.fails[1] || t.n > rules_count(catalog))
        abort();
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    char err[STORE_ERROR_SIZE];
    if (rules_load_default(&catalog, err, sizeof(err)) != 0)
        fuzz_die("default catalog: %s", err);
    char *path = fuzz_temp_path("report.db");
    if (store_open(path, true, &store, err, sizeof(err)) != 0)
        fuzz_die("%s", err);
    free(path);
    /* One management point, imported the way `tlsgate inventory import` does it. */
    static char inv[] = "name,site,roles,collector,os\n"
                        "fuzz.example.test,PS1,management_point,127.0.0.1:8443,x\n";
    FILE *in = fmemopen(inv, sizeof(inv) - 1, "r");
    struct inv_import im = {.path = "seed.csv", .now = 1, .user = "fuzz"};
    if (!in || store_begin(store, true) != 0 || inv_import(store, in, &im) != 0)
        fuzz_die("seed inventory: %s %s", im.err, store_errmsg(store));
    inv_import_end(store);
    if (store_commit(store) != 0)
        fuzz_die("seed inventory: %s", store_errmsg(store));
    fclose(in);
    sqlite3_stmt *st;
    if (store_prepare(store, "SELECT id FROM host", &st) != 0 || sqlite3_step(st) != SQLITE_ROW)
        fuzz_die("no host");
    host_id = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *report = (json_t *)1;
    char err[STORE_ERROR_SIZE] = "";
    int rc = report_parse((const char *)data, size, &report, err, sizeof(err));
    if (rc != 0) {
        if (rc >= 0 || err[0] == '\0' || (size > REPORT_MAX_BYTES && rc != -E2BIG))
            abort();
        return 0;
    }
    if (!json_is_object(report) || size > REPORT_MAX_BYTES)
        abort();
    evaluate(report, ROLE_CLIENT);
    evaluate(report, ROLE_MANAGEMENT_POINT | ROLE_SITE_SERVER);
    int legacy = rules_legacy_disabled(report);
    if (legacy != 0 && legacy != 1)
        abort();
    char why[64];
    const char *kind = rules_os_kind(report, why, sizeof(why));
    if (kind && strcmp(kind, "server") != 0 && strcmp(kind, "client") != 0)
        abort();

    /* Stored whole, with its verdicts, then rolled back for the next input: a validated report
     * has a usable collected_at, so ingest has no reason to refuse it. */
    if (store_begin(store, true) != 0)
        fuzz_die("begin: %s", store_errmsg(store));
    rc = ingest_report(store, catalog, host_id, ROLE_MANAGEMENT_POINT, report, 1);
    if (rc != 0)
        fuzz_die("ingest refused a validated report (%d): %s", rc, store_errmsg(store));
    store_rollback(store);
    json_decref(report);
    return 0;
}
