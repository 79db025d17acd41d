/*
 * ingest-driver: the tlsgate side of tools/bench/ingest. Creates N client hosts in a fresh
 * database, then stores one report per host through ingest_one_body as the daemon does (rules
 * evaluated, verdicts written, the received bytes stored), batched 1,000 per transaction as the daemon batches them, and prints
 * "ingest N reports S seconds". The reports are built from the facts fixtures given.
 *
 * usage: ingest-driver DB N FACTS.json...
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "facts.h"
#include "ingest.h"
#include "rules.h"
#include "store.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: ingest-driver DB N FACTS.json...\n");
        return 2;
    }
    long n = atol(argv[2]);
    int nfacts = argc - 3;
    char err[512];
    json_t **facts = calloc((size_t)nfacts, sizeof(*facts));
    for (int i = 0; i < nfacts; i++)
        if (facts_load_file(argv[3 + i], &facts[i], err, sizeof(err))) {
            fprintf(stderr, "ingest-driver: %s\n", err);
            return 3;
        }
    struct store *s;
    if (store_open(argv[1], true, &s, err, sizeof(err))) {
        fprintf(stderr, "ingest-driver: %s\n", err);
        return 4;
    }
    char sql[512];
    snprintf(sql, sizeof(sql),
             "INSERT INTO site VALUES ('BEN', 'inventory', 0, 'bench');"
             "WITH RECURSIVE i(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM i WHERE x < %ld) "
             "INSERT INTO host (id, name, site, roles, collector, os, added_at, updated_at) "
             "SELECT x, printf('ws%%07d.bench.example', x), 'BEN', 1, '127.0.0.1:8443', '', 0, 0 "
             "FROM i",
             n);
    struct rules_catalog *cat;
    if (store_exec(s, sql) || rules_load_active(s, &cat)) {
        fprintf(stderr, "ingest-driver: %s\n", store_errmsg(s));
        return 4;
    }
    /* One prepared report per fixture, with its bytes as the daemon receives them (it stores
     * those bytes, not a new serialisation). */
    json_t **reports = calloc((size_t)nfacts, sizeof(*reports));
    char **bodies = calloc((size_t)nfacts, sizeof(*bodies));
    for (int i = 0; i < nfacts; i++) {
        reports[i] = facts_build_report(facts[i], "bench.example", 1795000000, "bench", 900);
        bodies[i] = json_dumps(reports[i], JSON_COMPACT);
    }

    struct ingest ig;
    if (ingest_init(&ig, s, cat)) {
        fprintf(stderr, "ingest-driver: %s\n", store_errmsg(s));
        return 4;
    }
    double t0 = now_s();
    for (long i = 1; i <= n; i++) {
        if ((i - 1) % 1000 == 0 && store_begin(s, false))
            return 4;
        if (ingest_one_body(&ig, i, 1, reports[i % nfacts], bodies[i % nfacts],
                            strlen(bodies[i % nfacts]), 1795000000)) {
            fprintf(stderr, "ingest-driver: %s\n", store_errmsg(s));
            return 4;
        }
        if ((i % 1000 == 0 || i == n) && store_commit(s)) {
            fprintf(stderr, "ingest-driver: %s\n", store_errmsg(s));
            return 4;
        }
    }
    double secs = now_s() - t0;
    printf("ingest %ld reports %.3f seconds\n", n, secs);
    ingest_release(&ig);
    rules_free(cat);
    for (int i = 0; i < nfacts; i++) {
        json_decref(reports[i]);
        json_decref(facts[i]);
        free(bodies[i]);
    }
    free(reports);
    free(bodies);
    free(facts);
    store_close(s);
    return 0;
}
