/*
 * fuzz_rules.c — libFuzzer target for the rules catalog loader (rules_load, what
 * `tlsgate rules load FILE` reads; orchestrator/domain/rules.h).
 *
 * Contract: an input is refused with a negative code, no catalog and a message that names the
 * file ("fuzz.json..."); or accepted, and then the catalog is whole: it has a version, every rule
 * has an id, a component, a title, a remedy and at least one role, rules_find finds each rule by
 * its id, the members it reads are dotted paths, and it evaluates each fixture report for every
 * role with verdict counts that agree. Anything else is abort().
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzzutil.h"
#include "inventory.h"
#include "report.h"
#include "rules.h"

/* Reports the accepted catalogs are evaluated on: one not-ready Windows 7 client and one
 * site server, parsed once (tests/fixtures/reports, through $TLSGATE_FUZZ_REPORTS). */
static json_t *reports[2];

static json_t *load_report(const char *dir, const char *name)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    json_error_t je;
    json_t *r = json_load_file(path, 0, &je);
    if (!r)
        fuzz_die("%s: %s", path, je.text);
    return r;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    const char *dir = getenv("TLSGATE_FUZZ_REPORTS");
    if (!dir)
        dir = "tests/fixtures/reports";
    reports[0] = load_report(dir, "win7-sp1-x64-unpatched.json");
    reports[1] = load_report(dir, "server2019-site-server.json");
    return 0;
}

struct tally {
    const struct rules_catalog *c;
    int fails[2];
};

static int check_verdict(void *ctx, const struct rules_verdict *v)
{
    struct tally *t = ctx;
    const struct rules_info *r = rules_find(t->c, v->rule);
    if (!r || r->severity != v->severity ||
        strnlen(v->reason, RULES_REASON_MAX) == RULES_REASON_MAX || (!v->pass && !v->reason[0]))
        abort();
    if (!v->pass)
        t->fails[v->severity == RULES_BLOCKER ? 0 : 1]++;
    return 0;
}

static void walk(const struct rules_catalog *c)
{
    const char *version = rules_version(c);
    if (!version || !*version)
        abort();
    size_t n = rules_count(c);
    for (size_t i = 0; i < n; i++) {
        const struct rules_info *r = rules_at(c, i);
        if (!r || !r->id || !*r->id || !r->component || !r->title || !r->remedy || !r->roles ||
            rules_find(c, r->id) != r)
            abort();
    }
    if (rules_at(c, n) != NULL)
        abort();
    const char *const *paths;
    size_t np = rules_reads(c, &paths);
    for (size_t i = 0; i < np; i++)
        if (!paths[i] || !*paths[i] || paths[i][0] == '.')
            abort();
    for (size_t r = 0; r < 2; r++) {
        for (unsigned role = 0; role < ROLE_COUNT; role++) {
            struct tally t = {c, {0, 0}};
            int blockers = -1, warnings = -1;
            if (rules_evaluate(c, reports[r], 1u << role, check_verdict, &t, &blockers,
                               &warnings) != 0)
                abort();
            if (blockers != t.fails[0] || warnings != t.fails[1])
                abort();
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct rules_catalog *c = (struct rules_catalog *)1;
    char err[1024] = "";
    int rc = rules_load((const char *)data, size, "fuzz.json", &c, err, sizeof(err));
    if (rc != 0) {
        if (rc >= 0 || strncmp(err, "fuzz.json", 9) != 0)
            abort();
        return 0;
    }
    walk(c);
    rules_free(c);
    return 0;
}
