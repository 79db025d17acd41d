/*
 * rules.c — the compiled readiness catalog: freeing it (rules_free) and what callers read of it
 * (rules_version, rules_count, rules_at, rules_find); the protocol names loading and evaluation
 * share. See rules.h for the contract, rules_int.h for the module's files and private types, and
 * schema/rules.json for the catalog.
 */
#include "rules_int.h"

#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------------------------------- */
/* The compiled catalog                                                                       */

const char *const rules__proto_keys[P_COUNT] = {"ssl3", "tls10", "tls11", "tls12", "tls13"};
const char *const rules__proto_names[P_COUNT] = {"SSL 3.0", "TLS 1.0", "TLS 1.1", "TLS 1.2",
                                                 "TLS 1.3"};

static void node_free(struct node *n)
{
    if (!n)
        return;
    for (size_t i = 0; i < n->nkids; i++)
        node_free(n->kids[i]);
    free(n->kids);
    free(n->keybuf);
    free(n->why);
    json_decref(n->value);
    json_decref(n->if_absent);
    free(n->vers);
    node_free(n->where);
    node_free(n->check);
    for (size_t i = 0; i < n->nbranches; i++) {
        free(n->branches[i].name);
        free(n->branches[i].min_text);
        free(n->branches[i].remedy);
    }
    free(n->branches);
    free(n);
}

void rules_free(struct rules_catalog *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->nrules; i++) {
        struct rule *r = &c->rules[i];
        free(r->id);
        free(r->component);
        free(r->title);
        free(r->remedy);
        free(r->reference);
        free(r->reason);
        free(r->installation_type);
        node_free(r->requires);
        node_free(r->also_when);
        node_free(r->pred);
    }
    free(c->rules);
    for (size_t i = 0; i < c->nreads; i++)
        free(c->reads[i]);
    free(c->reads);
    free(c->version);
    free(c);
}

const char *rules_version(const struct rules_catalog *c) { return c->version; }
size_t rules_count(const struct rules_catalog *c) { return c->nrules; }

const struct rules_info *rules_at(const struct rules_catalog *c, size_t i)
{
    return i < c->nrules ? &c->rules[i].info : NULL;
}

const struct rules_info *rules_find(const struct rules_catalog *c, const char *id)
{
    for (size_t i = 0; i < c->nrules; i++)
        if (!strcmp(c->rules[i].id, id))
            return &c->rules[i].info;
    return NULL;
}

const char *rules_severity_name(enum rules_severity s)
{
    return s == RULES_BLOCKER ? "blocker" : "warning";
}
