/*
 * rules_reads.c — what evaluation reads: the report members each rule looks at, collected once
 * at load into the catalog (rules_reads), so re-evaluation can cut a stored report down to them
 * and evaluate equal cuts once.
 */
#include "rules_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------------------------------- */
/* What evaluation reads (rules_reads)                                                        */

static int add_read(struct rules_catalog *c, const char *path)
{
    for (size_t i = 0; i < c->nreads; i++)
        if (!strcmp(c->reads[i], path))
            return 0;
    char **r = realloc(c->reads, (c->nreads + 1) * sizeof(*r));
    if (!r)
        return -ENOMEM;
    c->reads = r;
    if (!(c->reads[c->nreads] = strdup(path)))
        return -ENOMEM;
    c->nreads++;
    return 0;
}

/* Every member a node's evaluation looks at, mirroring the eval_* functions: a fact's path
 * (an `every` reads its whole list, elements included), and for protocol_enabled the SCHANNEL
 * side and the OS build its defaults depend on. */
static int collect_reads(struct rules_catalog *c, const struct node *n)
{
    if (!n)
        return 0;
    int rc = 0;
    if (n->fact && !strcmp(n->fact->path, "os.kind")) {
        if (!(rc = add_read(c, "os.product_type")))
            rc = add_read(c, "os.installation_type");
    } else if (n->fact && n->fact->path[0] != '@') {
        rc = add_read(c, n->fact->path);
    }
    if (!rc && n->fact && !strcmp(n->fact->path, "updates.installed"))
        rc = add_read(c, "updates.not_installed"); /* named in reasons */
    if (!rc && n->op == OP_PROTOCOL_ENABLED) {
        char path[64];
        snprintf(path, sizeof(path), "schannel.%s.%s", rules__proto_keys[n->proto],
                 n->server ? "server" : "client");
        if (!(rc = add_read(c, path)))
            rc = add_read(c, "os.build");
    }
    for (size_t i = 0; !rc && i < n->nkids; i++)
        rc = collect_reads(c, n->kids[i]);
    if (!rc)
        rc = collect_reads(c, n->where);
    if (!rc)
        rc = collect_reads(c, n->check);
    return rc;
}

/* The same for a rule: its scope (applies), its predicate and its reason's placeholders. */
int rules__collect_rule_reads(struct rules_catalog *c, const struct rule *r)
{
    int rc = 0;
    if (r->build_min >= 0 || r->build_max >= 0)
        rc = add_read(c, "os.build");
    if (!rc && r->installation_type && !(rc = add_read(c, "os.installation_type")))
        rc = add_read(c, "os.product_type");
    if (!rc)
        rc = collect_reads(c, r->requires);
    if (!rc)
        rc = collect_reads(c, r->also_when);
    if (!rc)
        rc = collect_reads(c, r->pred);
    for (const char *p = strchr(r->reason, '{'); !rc && p; p = strchr(p + 1, '{')) {
        const char *end = strchr(p, '}');
        char name[96];
        snprintf(name, sizeof(name), "%.*s", (int)(end - p - 1), p + 1);
        if (strcmp(name, "detail"))
            rc = add_read(c, name);
    }
    return rc;
}

size_t rules_reads(const struct rules_catalog *c, const char *const **paths)
{
    *paths = (const char *const *)c->reads;
    return c->nreads;
}
