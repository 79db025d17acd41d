/*
 * rules_int.h — the rules module's private parts, shared by its files and by no one else (the
 * contract is rules.h). A catalog is compiled once, at load, into a tree of `struct node` per
 * rule; evaluation walks it. The files, by job:
 *
 *   rules.c         the compiled catalog: freeing it, what callers read of it (rules_at, ...)
 *   rules_facts.c   the facts a report carries (path, type, label); version numbers
 *   rules_load.c    loading: validating a catalog and compiling its predicates; the active
 *                   catalog of a store
 *   rules_reads.c   what evaluation reads (rules_reads), collected at load
 *   rules_eval.c    evaluation: three-valued, with the reason of each verdict (rules_evaluate)
 *   rules_legacy.c  SCHANNEL defaults per OS build; legacy protocols off for orphan risk
 *                   (rules_legacy_disabled)
 *
 * Functions and tables shared between these files are prefixed rules__ (as poll__ in pull/):
 * internal, never used outside the rules module.
 */
#ifndef TLSGATE_RULES_INT_H
#define TLSGATE_RULES_INT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "rules.h"

/* Facts (rules_facts.c): what a report carries, by path. */

enum ftype { F_NUM, F_STR, F_BOOL, F_STRLIST, F_OBJLIST };

struct fact {
    const char *path;
    enum ftype type;
    const char *label; /* where it comes from, for reasons; NULL = the path says it */
    bool hex;
};

const struct fact *rules__fact_find(const char *path, bool element);
/* Where a fact comes from, for reasons: its label, else its path. */
const char *rules__fact_label(const struct fact *f);

/* Versions (rules_facts.c): up to four dot-separated numbers; in thresholds a part may be "*"
 * (ignored). */
struct version {
    long part[4];
    unsigned wild; /* bit i: part i is "*" */
};

/* 0, or -EINVAL when `s` is not a version (a "*" part only with allow_wild). */
int rules__version_parse(const char *s, struct version *v, bool allow_wild);
/* <0, 0, >0 as observed `a` is below, equal to, above threshold `t` (t's wildcards ignored). */
int rules__version_cmp(const struct version *a, const struct version *t);

/* The compiled catalog (rules.c) */

enum op {
    OP_ALL,
    OP_ANY,
    OP_NOT,
    OP_EQ,
    OP_NE,
    OP_LT,
    OP_LE,
    OP_GT,
    OP_GE,
    OP_VER_EQ,
    OP_VER_NE,
    OP_VER_LT,
    OP_VER_LE,
    OP_VER_GT,
    OP_VER_GE,
    OP_VER_IN,
    OP_HAS_BITS,
    OP_CONTAINS,
    OP_CONTAINS_ANY,
    OP_TEXT_CONTAINS,
    OP_IS_NULL,
    OP_PRESENT,
    OP_PROTOCOL_ENABLED,
    OP_EVERY,
    OP_VERSION_BRANCH,
    OP_WHEN,
    OP_NEVER,
};

enum proto { P_SSL3, P_TLS10, P_TLS11, P_TLS12, P_TLS13, P_COUNT };
/* "ssl3" ... "tls13", as a report names them; "SSL 3.0" ... "TLS 1.3", as reasons do. */
extern const char *const rules__proto_keys[P_COUNT];
extern const char *const rules__proto_names[P_COUNT];

struct branch {
    char *name;
    struct version from, below;
    bool has_min;
    struct version min;
    char *min_text;
    char *remedy; /* what to install on this branch, or NULL */
};

struct node {
    enum op op;
    struct node **kids;
    size_t nkids;
    /* leaves */
    const struct fact *fact;
    const char *keys[4]; /* the fact path split at '.', pointing into keybuf */
    int nkeys;
    char *keybuf;
    json_t *value;     /* comparison operand */
    json_t *if_absent; /* the OS default standing in for an absent fact, or NULL */
    struct version ver;
    struct version *vers;
    size_t nvers;
    /* protocol_enabled */
    enum proto proto;
    bool server;
    bool explicit_use; /* "use": "explicit": DisabledByDefault does not count (WinHTTP, S8) */
    /* unconfirmed */
    char *why;
    /* every */
    struct node *where, *check;
    bool none_holds;
    const char *elem_label; /* member naming an element in reasons: "name" */
    /* version_branch */
    struct branch *branches;
    size_t nbranches;
    bool otherwise_holds;
};

struct rule {
    struct rules_info info;
    char *id, *component, *title, *remedy, *reference, *reason;
    long build_min, build_max; /* -1: no bound */
    char *installation_type;   /* NULL: any */
    struct node *requires;     /* NULL: always */
    struct node *also_when;    /* NULL: only the roles; else also hosts where it holds */
    struct node *pred;
};

struct rules_catalog {
    char *version;
    struct rule *rules;
    size_t nrules;
    char **reads; /* report members evaluation can read (rules_reads), deduplicated */
    size_t nreads;
};

/* Adds what evaluating rule `r` reads to c->reads (rules_reads.c). 0 or -ENOMEM. */
int rules__collect_rule_reads(struct rules_catalog *c, const struct rule *r);

/* Whether protocol `p` is on by default on OS build `build`, when neither Enabled nor
 * DisabledByDefault is set (rules_legacy.c). */
bool rules__protocol_default_on(enum proto p, long build);

#endif
