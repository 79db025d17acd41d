/*
 * rules.c — the readiness catalog: load and validate it (rules_load), evaluate a report against
 * it (rules_evaluate). See rules.h for the contract and schema/rules.json for the catalog.
 *
 * A predicate is compiled once into a tree of `struct node`; evaluation walks the tree with
 * three-valued logic (holds / fails / not reported) and pushes `not` down to the leaves, so
 * every leaf knows whether it is asked to hold or to fail and can say so in the reason
 * ("DefaultSecureProtocols (Wow6432Node) not reported", "dotnet.release is 378389, needs >=
 * 394802"). Which leaves speak is decided by the outcome: a failed `all` names its failing
 * members, a passed `any` its passing ones.
 *
 * Facts are addressed by path ("schannel.tls12.client.enabled"); the table `facts` below is the
 * complete list of what a report carries (schema/report.example.json), with each fact's type,
 * so a catalog that names an unknown fact, or compares a number as a version, is refused at load.
 */
#include "rules.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "embedded.h"
#include "inventory.h"
#include "store.h"

/* ---------------------------------------------------------------------------------------- */
/* Facts                                                                                     */

enum ftype { F_NUM, F_STR, F_BOOL, F_STRLIST, F_OBJLIST };

struct fact {
    const char *path;
    enum ftype type;
    const char *label; /* where it comes from, for reasons; NULL = the path says it */
    bool hex;
};

#define SCH_SIDE(p, name, side, Side)                                                            \
    {"schannel." p "." side ".enabled", F_NUM, "SCHANNEL " name "\\" Side " Enabled", false},    \
    {"schannel." p "." side ".disabled_by_default", F_NUM,                                        \
     "SCHANNEL " name "\\" Side " DisabledByDefault", false}
#define SCH(p, name) SCH_SIDE(p, name, "client", "Client"), SCH_SIDE(p, name, "server", "Server")
#define NETKEY(k, name)                                                                           \
    {"dotnet." k ".strong_crypto", F_NUM, name " SchUseStrongCrypto", false},                     \
    {"dotnet." k ".system_default_tls", F_NUM, name " SystemDefaultTlsVersions", false}

static const struct fact facts[] = {
    {"os.product_name", F_STR, NULL, false},
    {"os.version", F_STR, NULL, false},
    {"os.build", F_NUM, "OS build", false},
    {"os.ubr", F_NUM, NULL, false},
    {"os.arch", F_STR, "OS architecture", false},
    {"os.installation_type", F_STR, "InstallationType", false},
    {"os.csd_version", F_STR, NULL, false},
    {"os.product_type", F_STR, "ProductType", false},
    /* Derived (fact_value): "server" or "client", from ProductType, else InstallationType. */
    {"os.kind", F_STR, "server or client (ProductType, InstallationType)", false},
    {"hotfixes", F_STRLIST, "installed updates", false},
    {"updates.installed", F_STRLIST, "installed updates (CBS CurrentState)", false},
    {"updates.rollup", F_STR, "installed rollup (Package_for_RollupFix)", false},
    SCH("ssl2", "SSL 2.0"), SCH("ssl3", "SSL 3.0"), SCH("tls10", "TLS 1.0"),
    SCH("tls11", "TLS 1.1"), SCH("tls12", "TLS 1.2"), SCH("tls13", "TLS 1.3"),
    {"winhttp.default_secure_protocols", F_NUM, "WinHttp DefaultSecureProtocols (native)", true},
    {"winhttp.default_secure_protocols_wow64", F_NUM,
     "WinHttp DefaultSecureProtocols (Wow6432Node)", true},
    {"dotnet.release", F_NUM, ".NET Framework 4 Release", false},
    {"dotnet.v35_installed", F_BOOL, ".NET Framework 3.5 (NDP\\v3.5 Install)", false},
    NETKEY("v4", ".NETFramework\\v4.0.30319"),
    NETKEY("v4_wow64", "Wow6432Node .NETFramework\\v4.0.30319"),
    NETKEY("v2", ".NETFramework\\v2.0.50727"),
    NETKEY("v2_wow64", "Wow6432Node .NETFramework\\v2.0.50727"),
    {"sql.instances", F_OBJLIST, "SQL Server instances", false},
    {"sql.rs_instances", F_OBJLIST, "Reporting Services instances", false},
    {"sql.native_client_11", F_STR, "SQL Server Native Client 11.0", false},
    {"sql.odbc_17", F_STR, "ODBC Driver 17 for SQL Server", false},
    {"sql.odbc_18", F_STR, "ODBC Driver 18 for SQL Server", false},
    {"wsus.installed", F_BOOL, "WSUS", false},
    {"wsus.version", F_STR, "WSUS version", false},
    {"fips", F_BOOL, "FIPS policy", false},
};
#define NFACTS (sizeof(facts) / sizeof(facts[0]))

/* Members of one sql.instances element ("@.name"). `engine` is derived: patch_level, else
 * version, with the service-pack digit taken out of the minor part (12.1.4100.1 -> 12.0.4100.1,
 * 10.53.6000.34 -> 10.50.6000.34), which is how KB3135244 writes its build table. */
static const struct fact instance_facts[] = {
    {"@.name", F_STR, "instance name", false},
    {"@.id", F_STR, "instance id", false},
    {"@.version", F_STR, "Version", false},
    {"@.patch_level", F_STR, "PatchLevel", false},
    {"@.edition", F_STR, "Edition", false},
    {"@.engine", F_STR, "engine build", false},
};
#define NINSTANCE_FACTS (sizeof(instance_facts) / sizeof(instance_facts[0]))

static const struct fact *fact_find(const char *path, bool element)
{
    const struct fact *t = element ? instance_facts : facts;
    size_t n = element ? NINSTANCE_FACTS : NFACTS;
    for (size_t i = 0; i < n; i++)
        if (!strcmp(t[i].path, path))
            return &t[i];
    return NULL;
}

static const char *fact_label(const struct fact *f)
{
    return f->label ? f->label : f->path;
}

/* ---------------------------------------------------------------------------------------- */
/* Versions: up to four dot-separated numbers; in thresholds a part may be "*" (ignored).     */

struct version {
    long part[4];
    unsigned wild; /* bit i: part i is "*" */
};

static int version_parse(const char *s, struct version *v, bool allow_wild)
{
    memset(v, 0, sizeof(*v));
    int n = 0;
    const char *p = s;
    for (;;) {
        if (n == 4)
            return -EINVAL;
        if (allow_wild && *p == '*') {
            v->wild |= 1u << n;
            p++;
        } else {
            if (!isdigit((unsigned char)*p))
                return -EINVAL;
            long x = 0;
            while (isdigit((unsigned char)*p)) {
                if (x > 100000000)
                    return -EINVAL;
                x = x * 10 + (*p++ - '0');
            }
            v->part[n] = x;
        }
        n++;
        if (*p == '\0')
            return 0;
        if (*p++ != '.')
            return -EINVAL;
    }
}

/* <0, 0, >0 as observed `a` is below, equal to, above threshold `t` (t's wildcards ignored). */
static int version_cmp(const struct version *a, const struct version *t)
{
    for (int i = 0; i < 4; i++) {
        if (t->wild & (1u << i))
            continue;
        if (a->part[i] != t->part[i])
            return a->part[i] < t->part[i] ? -1 : 1;
    }
    return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* The compiled catalog                                                                       */

enum op {
    OP_ALL, OP_ANY, OP_NOT,
    OP_EQ, OP_NE, OP_LT, OP_LE, OP_GT, OP_GE,
    OP_VER_EQ, OP_VER_NE, OP_VER_LT, OP_VER_LE, OP_VER_GT, OP_VER_GE, OP_VER_IN,
    OP_HAS_BITS, OP_CONTAINS, OP_CONTAINS_ANY, OP_TEXT_CONTAINS,
    OP_IS_NULL, OP_PRESENT,
    OP_PROTOCOL_ENABLED, OP_EVERY, OP_VERSION_BRANCH, OP_WHEN, OP_NEVER,
};

static const struct {
    const char *name;
    enum op op;
} op_names[] = {
    {"all", OP_ALL}, {"any", OP_ANY}, {"not", OP_NOT},
    {"eq", OP_EQ}, {"ne", OP_NE}, {"lt", OP_LT}, {"le", OP_LE}, {"gt", OP_GT}, {"ge", OP_GE},
    {"version_eq", OP_VER_EQ}, {"version_ne", OP_VER_NE}, {"version_lt", OP_VER_LT},
    {"version_le", OP_VER_LE}, {"version_gt", OP_VER_GT}, {"version_ge", OP_VER_GE},
    {"version_in", OP_VER_IN},
    {"has_bits", OP_HAS_BITS}, {"contains", OP_CONTAINS}, {"contains_any", OP_CONTAINS_ANY},
    {"text_contains", OP_TEXT_CONTAINS},
    {"is_null", OP_IS_NULL}, {"present", OP_PRESENT},
    {"protocol_enabled", OP_PROTOCOL_ENABLED}, {"every", OP_EVERY},
    {"version_branch", OP_VERSION_BRANCH}, {"when", OP_WHEN}, {"never", OP_NEVER},
};

/* Text of each comparison as a requirement, and of its negation (for leaves under `not`). */
static const char *op_text(enum op op, bool neg)
{
    switch (op) {
    case OP_EQ: case OP_VER_EQ: return neg ? "not " : "";
    case OP_NE: case OP_VER_NE: return neg ? "" : "not ";
    case OP_LT: case OP_VER_LT: return neg ? ">= " : "< ";
    case OP_LE: case OP_VER_LE: return neg ? "> " : "<= ";
    case OP_GT: case OP_VER_GT: return neg ? "<= " : "> ";
    case OP_GE: case OP_VER_GE: return neg ? "< " : ">= ";
    default: return "?";
    }
}

enum proto { P_SSL3, P_TLS10, P_TLS11, P_TLS12, P_TLS13, P_COUNT };
static const char *const proto_keys[P_COUNT] = {"ssl3", "tls10", "tls11", "tls12", "tls13"};
static const char *const proto_names[P_COUNT] = {"SSL 3.0", "TLS 1.0", "TLS 1.1", "TLS 1.2",
                                                 "TLS 1.3"};

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

/* ---------------------------------------------------------------------------------------- */
/* Loading                                                                                    */

struct loader {
    const char *name;
    const char *rule; /* id of the rule being read, for messages */
    size_t index;
    char *err;
    size_t errsize;
};

static int load_fail(struct loader *L, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int load_fail(struct loader *L, const char *fmt, ...)
{
    char msg[384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (L->rule)
        snprintf(L->err, L->errsize, "%s: rule %s: %s", L->name, L->rule, msg);
    else if (L->index)
        snprintf(L->err, L->errsize, "%s: rule #%zu: %s", L->name, L->index, msg);
    else
        snprintf(L->err, L->errsize, "%s: %s", L->name, msg);
    return -EINVAL;
}

static int bind_fact(struct loader *L, struct node *n, json_t *path, bool in_every)
{
    if (!json_is_string(path))
        return load_fail(L, "operator needs a fact path string as its first operand");
    const char *p = json_string_value(path);
    bool element = !strncmp(p, "@.", 2);
    if (element && !in_every)
        return load_fail(L, "fact \"%s\" names an element outside \"every\"", p);
    n->fact = fact_find(p, element);
    if (!n->fact)
        return load_fail(L, "unknown fact \"%s\"", p);
    n->keybuf = strdup(element ? p + 2 : p);
    if (!n->keybuf)
        return -ENOMEM;
    char *save, *tok = strtok_r(n->keybuf, ".", &save);
    while (tok && n->nkeys < 4) {
        n->keys[n->nkeys++] = tok;
        tok = strtok_r(NULL, ".", &save);
    }
    return 0;
}

static const char *type_name(enum ftype t)
{
    switch (t) {
    case F_NUM: return "a number";
    case F_STR: return "a string";
    case F_BOOL: return "a boolean";
    case F_STRLIST: return "a list of strings";
    case F_OBJLIST: return "a list of objects";
    }
    return "?";
}

static int compile(struct loader *L, json_t *j, bool in_every, struct node **out);

static int compile_version(struct loader *L, json_t *v, struct version *out)
{
    if (!json_is_string(v) || version_parse(json_string_value(v), out, true))
        return load_fail(L, "\"%s\" is not a version (up to four numbers or *, dot-separated)",
                         json_is_string(v) ? json_string_value(v) : "(not a string)");
    return 0;
}


static int compile_list(struct loader *L, struct node *n, json_t *arg, bool in_every,
                        const char *opname)
{
    if (!json_is_array(arg) || json_array_size(arg) == 0 || json_array_size(arg) > 32)
        return load_fail(L, "\"%s\" needs a list of 1..32 predicates", opname);
    n->nkids = json_array_size(arg);
    n->kids = calloc(n->nkids, sizeof(*n->kids));
    if (!n->kids)
        return -ENOMEM;
    for (size_t i = 0; i < n->nkids; i++) {
        int rc = compile(L, json_array_get(arg, i), in_every, &n->kids[i]);
        if (rc)
            return rc;
    }
    return 0;
}

static bool value_fits(const struct fact *f, json_t *v)
{
    switch (f->type) {
    case F_NUM: return json_is_number(v);
    case F_STR: return json_is_string(v);
    case F_BOOL: return json_is_boolean(v);
    default: return false;
    }
}

/* [PATH, OPERAND]: binds the fact and checks the operand's type against the operator. */
static int compile_leaf(struct loader *L, struct node *n, json_t *arg, bool in_every,
                        const char *opname)
{
    if (!json_is_array(arg) || json_array_size(arg) != 2)
        return load_fail(L, "\"%s\" needs [fact, value]", opname);
    int rc = bind_fact(L, n, json_array_get(arg, 0), in_every);
    if (rc)
        return rc;
    json_t *v = json_array_get(arg, 1);
    const struct fact *f = n->fact;
    bool ok = false;
    switch (n->op) {
    case OP_EQ: case OP_NE:
        ok = (f->type == F_NUM || f->type == F_STR || f->type == F_BOOL) && value_fits(f, v);
        break;
    case OP_LT: case OP_LE: case OP_GT: case OP_GE:
        ok = f->type == F_NUM && json_is_number(v);
        break;
    case OP_VER_EQ: case OP_VER_NE: case OP_VER_LT: case OP_VER_LE: case OP_VER_GT:
    case OP_VER_GE:
        if (f->type != F_STR)
            break;
        if ((rc = compile_version(L, v, &n->ver)))
            return rc;
        ok = true;
        break;
    case OP_VER_IN:
        if (f->type != F_STR || !json_is_array(v) || json_array_size(v) == 0)
            break;
        n->nvers = json_array_size(v);
        if (!(n->vers = calloc(n->nvers, sizeof(*n->vers))))
            return -ENOMEM;
        for (size_t i = 0; i < n->nvers; i++)
            if ((rc = compile_version(L, json_array_get(v, i), &n->vers[i])))
                return rc;
        ok = true;
        break;
    case OP_HAS_BITS:
        ok = f->type == F_NUM && json_is_integer(v) && json_integer_value(v) > 0 &&
             json_integer_value(v) <= 0xffffffffLL;
        break;
    case OP_CONTAINS:
        ok = f->type == F_STRLIST && json_is_string(v);
        break;
    case OP_CONTAINS_ANY:
        ok = f->type == F_STRLIST && json_is_array(v) && json_array_size(v) > 0;
        for (size_t i = 0; ok && i < json_array_size(v); i++)
            ok = json_is_string(json_array_get(v, i));
        break;
    case OP_TEXT_CONTAINS:
        ok = f->type == F_STR && json_is_string(v) && json_string_length(v) > 0;
        break;
    default:
        break;
    }
    if (!ok)
        return load_fail(L, "\"%s\" cannot compare %s (%s) with %s", opname, f->path,
                         type_name(f->type),
                         json_is_string(v) ? "a string" : json_is_number(v) ? "a number"
                         : json_is_boolean(v) ? "a boolean" : json_is_array(v) ? "a list"
                         : "this value");
    n->value = json_incref(v);
    return 0;
}

static int compile_protocol(struct loader *L, struct node *n, json_t *arg)
{
    const char *proto = NULL, *side = NULL, *use = "default";
    if (!json_is_object(arg) ||
        json_unpack(arg, "{s:s, s:s, s?:s !}", "protocol", &proto, "side", &side, "use", &use))
        return load_fail(L, "\"protocol_enabled\" needs {\"protocol\": ..., \"side\": ...} "
                            "and optionally \"use\": \"default\" or \"explicit\"");
    if (strcmp(use, "default") && strcmp(use, "explicit"))
        return load_fail(L, "protocol_enabled: use \"%s\" must be default or explicit", use);
    n->explicit_use = use[0] == 'e';
    int p = -1;
    for (int i = 0; i < P_COUNT; i++)
        if (!strcmp(proto, proto_keys[i]))
            p = i;
    if (p < 0)
        return load_fail(L, "protocol_enabled: no OS default known for protocol \"%s\" (one of "
                            "ssl3, tls10, tls11, tls12, tls13)", proto);
    if (strcmp(side, "client") && strcmp(side, "server"))
        return load_fail(L, "protocol_enabled: side \"%s\" must be client or server", side);
    n->proto = (enum proto)p;
    n->server = side[0] == 's';
    return 0;
}

static int holds_word(struct loader *L, json_t *v, const char *what, bool *out)
{
    const char *s = json_string_value(v);
    if (!s || (strcmp(s, "pass") && strcmp(s, "fail")))
        return load_fail(L, "\"%s\" must be \"pass\" or \"fail\"", what);
    *out = s[0] == 'p';
    return 0;
}

static int compile_every(struct loader *L, struct node *n, json_t *arg, bool in_every)
{
    if (in_every)
        return load_fail(L, "\"every\" cannot be nested");
    if (!json_is_object(arg))
        return load_fail(L, "\"every\" needs {\"in\": ..., \"check\": ...}");
    const char *key;
    json_t *v;
    json_object_foreach(arg, key, v) {
        if (strcmp(key, "in") && strcmp(key, "where") && strcmp(key, "check") &&
            strcmp(key, "if_none"))
            return load_fail(L, "every: unknown member \"%s\"", key);
    }
    int rc = bind_fact(L, n, json_object_get(arg, "in"), false);
    if (rc)
        return rc;
    if (n->fact->type != F_OBJLIST)
        return load_fail(L, "every: %s is not a list of objects", n->fact->path);
    if (!json_object_get(arg, "check"))
        return load_fail(L, "every: missing \"check\"");
    if ((rc = compile(L, json_object_get(arg, "check"), true, &n->check)))
        return rc;
    if (json_object_get(arg, "where") &&
        (rc = compile(L, json_object_get(arg, "where"), true, &n->where)))
        return rc;
    n->none_holds = false;
    if (json_object_get(arg, "if_none") &&
        (rc = holds_word(L, json_object_get(arg, "if_none"), "every.if_none", &n->none_holds)))
        return rc;
    n->elem_label = "name";
    return 0;
}

static int compile_branch_table(struct loader *L, struct node *n, json_t *arg, bool in_every)
{
    json_t *branches = json_object_get(arg, "branches");
    json_t *fact = json_object_get(arg, "fact");
    if (!json_is_object(arg) || !fact || !json_is_array(branches) ||
        json_array_size(branches) == 0 || !json_object_get(arg, "otherwise") ||
        json_object_size(arg) != 3)
        return load_fail(L, "\"version_branch\" needs exactly {\"fact\", \"branches\", "
                            "\"otherwise\"}");
    int rc = bind_fact(L, n, fact, in_every);
    if (rc)
        return rc;
    if (n->fact->type != F_STR)
        return load_fail(L, "version_branch: %s is not a version string", n->fact->path);
    if ((rc = holds_word(L, json_object_get(arg, "otherwise"), "version_branch.otherwise",
                         &n->otherwise_holds)))
        return rc;
    n->nbranches = json_array_size(branches);
    if (!(n->branches = calloc(n->nbranches, sizeof(*n->branches))))
        return -ENOMEM;
    for (size_t i = 0; i < n->nbranches; i++) {
        json_t *b = json_array_get(branches, i), *from, *below, *min;
        const char *name, *remedy = NULL;
        if (json_unpack(b, "{s:s, s:o, s:o, s:o, s?:s !}", "name", &name, "from", &from,
                        "below", &below, "min", &min, "remedy", &remedy))
            return load_fail(L, "version_branch: branch %zu needs exactly {name, from, below, "
                                "min} and optionally remedy", i + 1);
        struct branch *br = &n->branches[i];
        if (!(br->name = strdup(name)) || (remedy && !(br->remedy = strdup(remedy))))
            return -ENOMEM;
        if ((rc = compile_version(L, from, &br->from)) ||
            (rc = compile_version(L, below, &br->below)))
            return rc;
        if (!json_is_null(min)) {
            if ((rc = compile_version(L, min, &br->min)))
                return rc;
            br->has_min = true;
            if (!(br->min_text = strdup(json_string_value(min))))
                return -ENOMEM;
        }
    }
    return 0;
}

static int compile(struct loader *L, json_t *j, bool in_every, struct node **out)
{
    *out = NULL;
    if (!json_is_object(j))
        return load_fail(L, "a predicate must be an object {\"operator\": operands}");
    const char *opname = NULL, *key;
    json_t *arg = NULL, *if_absent = NULL, *v;
    json_object_foreach(j, key, v) {
        if (!strcmp(key, "if_absent")) {
            if_absent = v;
            continue;
        }
        if (opname)
            return load_fail(L, "a predicate has one operator, found \"%s\" and \"%s\"", opname,
                             key);
        opname = key;
        arg = v;
    }
    if (!opname)
        return load_fail(L, "a predicate has no operator");
    int op = -1;
    for (size_t i = 0; i < sizeof(op_names) / sizeof(op_names[0]); i++)
        if (!strcmp(opname, op_names[i].name))
            op = (int)op_names[i].op;
    if (op < 0)
        return load_fail(L, "unknown operator \"%s\"", opname);

    struct node *n = calloc(1, sizeof(*n));
    if (!n)
        return -ENOMEM;
    *out = n;
    n->op = (enum op)op;
    int rc;
    switch (n->op) {
    case OP_ALL: case OP_ANY:
        rc = compile_list(L, n, arg, in_every, opname);
        break;
    case OP_NOT:
        n->nkids = 1;
        rc = (n->kids = calloc(1, sizeof(*n->kids))) ? compile(L, arg, in_every, &n->kids[0])
                                                     : -ENOMEM;
        break;
    case OP_IS_NULL: case OP_PRESENT:
        rc = bind_fact(L, n, arg, in_every);
        break;
    case OP_PROTOCOL_ENABLED:
        rc = compile_protocol(L, n, arg);
        break;
    case OP_EVERY:
        rc = compile_every(L, n, arg, in_every);
        break;
    case OP_VERSION_BRANCH:
        rc = compile_branch_table(L, n, arg, in_every);
        break;
    case OP_NEVER:
        /* {"never": "why"}: a condition that holds on no host in the rule's scope, or that no
         * source settles (fail closed); it says why. */
        if (!json_is_string(arg) || json_string_length(arg) == 0 ||
            json_string_length(arg) > 400) {
            rc = load_fail(L, "\"never\" needs the reason as a string of 1..400 bytes");
            break;
        }
        rc = (n->why = strdup(json_string_value(arg))) ? 0 : -ENOMEM;
        break;
    case OP_WHEN:
        /* {"when": {"if": P, "then": Q}}: Q must hold where P holds; elsewhere it is not asked */
        if (!json_is_object(arg) || json_object_size(arg) != 2 || !json_object_get(arg, "if") ||
            !json_object_get(arg, "then")) {
            rc = load_fail(L, "\"when\" needs exactly {\"if\": ..., \"then\": ...}");
            break;
        }
        n->nkids = 2;
        if (!(n->kids = calloc(2, sizeof(*n->kids)))) {
            rc = -ENOMEM;
            break;
        }
        rc = compile(L, json_object_get(arg, "if"), in_every, &n->kids[0]);
        if (!rc)
            rc = compile(L, json_object_get(arg, "then"), in_every, &n->kids[1]);
        break;
    default:
        rc = compile_leaf(L, n, arg, in_every, opname);
        break;
    }
    if (rc)
        return rc;
    if (if_absent) {
        bool leaf = n->op >= OP_EQ && n->op <= OP_TEXT_CONTAINS;
        if (!leaf)
            return load_fail(L, "\"if_absent\" only goes with a comparison, not \"%s\"", opname);
        if (n->fact->type == F_STRLIST || n->fact->type == F_OBJLIST
                ? !json_is_array(if_absent) : !value_fits(n->fact, if_absent))
            return load_fail(L, "if_absent for %s must be %s", n->fact->path,
                             type_name(n->fact->type));
        n->if_absent = json_incref(if_absent);
    }
    return 0;
}

/* Checks {name} placeholders of a reason template: "detail" or a fact path. */
static int check_template(struct loader *L, const char *t)
{
    for (const char *p = strchr(t, '{'); p; p = strchr(p + 1, '{')) {
        const char *end = strchr(p, '}');
        if (!end)
            return load_fail(L, "reason: unclosed \"{\"");
        char name[96];
        size_t len = (size_t)(end - p - 1);
        if (len >= sizeof(name))
            return load_fail(L, "reason: placeholder too long");
        memcpy(name, p + 1, len);
        name[len] = '\0';
        if (strcmp(name, "detail") && !fact_find(name, false))
            return load_fail(L, "reason: unknown placeholder \"{%s}\"", name);
    }
    return 0;
}

static char *dup_string(json_t *v)
{
    return strdup(json_string_value(v));
}

static int load_roles(struct loader *L, json_t *roles, unsigned *mask)
{
    if (!json_is_array(roles) || json_array_size(roles) == 0)
        return load_fail(L, "applies.roles needs a non-empty list of roles (or [\"any\"])");
    *mask = 0;
    size_t i;
    json_t *v;
    json_array_foreach(roles, i, v) {
        const char *s = json_string_value(v);
        if (!s)
            return load_fail(L, "applies.roles: entries must be role names");
        if (!strcmp(s, "any")) {
            *mask |= (1u << ROLE_COUNT) - 1;
            continue;
        }
        int found = -1;
        for (int r = 0; r < ROLE_COUNT; r++)
            if (!strcmp(s, inv_role_names[r]))
                found = r;
        if (found < 0)
            return load_fail(L, "applies.roles: unknown role \"%s\"", s);
        *mask |= 1u << found;
    }
    return 0;
}

static int load_applies(struct loader *L, struct rule *r, json_t *a)
{
    if (!json_is_object(a))
        return load_fail(L, "missing \"applies\"");
    const char *key;
    json_t *v;
    json_object_foreach(a, key, v) {
        if (strcmp(key, "roles") && strcmp(key, "os_build") && strcmp(key, "installation_type") &&
            strcmp(key, "requires") && strcmp(key, "also_when"))
            return load_fail(L, "applies: unknown member \"%s\"", key);
    }
    int rc = load_roles(L, json_object_get(a, "roles"), &r->info.roles);
    if (rc)
        return rc;
    r->build_min = r->build_max = -1;
    json_t *b = json_object_get(a, "os_build");
    if (b) {
        json_t *min = json_object_get(b, "min"), *max = json_object_get(b, "max");
        if (!json_is_object(b) || (!min && !max) ||
            json_object_size(b) != (size_t)(!!min + !!max) || (min && !json_is_integer(min)) ||
            (max && !json_is_integer(max)))
            return load_fail(L, "applies.os_build needs {\"min\": N, \"max\": N} (either or "
                                "both, integers)");
        r->build_min = min ? (long)json_integer_value(min) : -1;
        r->build_max = max ? (long)json_integer_value(max) : -1;
        if (r->build_min >= 0 && r->build_max >= 0 && r->build_min > r->build_max)
            return load_fail(L, "applies.os_build: min %ld is above max %ld", r->build_min,
                             r->build_max);
    }
    v = json_object_get(a, "installation_type");
    if (v) {
        const char *t = json_string_value(v);
        if (!t || (strcmp(t, "Client") && strcmp(t, "Server")))
            return load_fail(L, "applies.installation_type must be \"Client\" or \"Server\"");
        if (!(r->installation_type = strdup(t)))
            return -ENOMEM;
    }
    v = json_object_get(a, "requires");
    if (v && (rc = compile(L, v, false, &r->requires)))
        return rc;
    /* also_when: the rule applies to hosts of other roles where this holds (WSUS installed on a
     * host that is not a software update point). */
    v = json_object_get(a, "also_when");
    if (v && (rc = compile(L, v, false, &r->also_when)))
        return rc;
    return 0;
}

static const char *const rule_members[] = {"id", "component", "title", "applies", "predicate",
                                           "severity", "remedy", "reference", "reason", NULL};

static int load_rule(struct loader *L, struct rule *r, json_t *j)
{
    if (!json_is_object(j))
        return load_fail(L, "a rule must be an object");
    json_t *id = json_object_get(j, "id");
    if (!json_is_string(id) || json_string_length(id) == 0 || json_string_length(id) > 64)
        return load_fail(L, "missing \"id\" (a string of 1..64 characters)");
    L->rule = json_string_value(id);
    for (const char *p = L->rule; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '-' && *p != '_' && *p != '.')
            return load_fail(L, "id: only letters, digits, '-', '_' and '.' are allowed");
    const char *key;
    json_t *v;
    json_object_foreach(j, key, v) {
        bool known = false;
        for (int i = 0; rule_members[i]; i++)
            known |= !strcmp(key, rule_members[i]);
        if (!known)
            return load_fail(L, "unknown member \"%s\"", key);
    }
    static const char *const texts[] = {"component", "title", "remedy", "reason"};
    for (size_t i = 0; i < 4; i++) {
        v = json_object_get(j, texts[i]);
        if (!json_is_string(v) || json_string_length(v) == 0)
            return load_fail(L, "missing \"%s\" (a non-empty string)", texts[i]);
    }
    json_t *sev = json_object_get(j, "severity");
    const char *s = json_string_value(sev);
    if (!s || (strcmp(s, "blocker") && strcmp(s, "warning")))
        return load_fail(L, "severity \"%s\": must be \"blocker\" or \"warning\"",
                         s ? s : "(missing)");
    r->info.severity = s[0] == 'b' ? RULES_BLOCKER : RULES_WARNING;

    json_t *ref = json_object_get(j, "reference");
    if (!json_is_array(ref) || json_array_size(ref) == 0)
        return load_fail(L, "missing \"reference\" (a non-empty list of source ids or URLs)");
    size_t len = 1, i;
    json_array_foreach(ref, i, v) {
        if (!json_is_string(v) || json_string_length(v) == 0)
            return load_fail(L, "reference: entries must be non-empty strings");
        len += json_string_length(v) + 2;
    }
    if (!(r->reference = malloc(len)))
        return -ENOMEM;
    r->reference[0] = '\0';
    json_array_foreach(ref, i, v) {
        if (i)
            strcat(r->reference, "; ");
        strcat(r->reference, json_string_value(v));
    }

    if (!(r->id = dup_string(id)) ||
        !(r->component = dup_string(json_object_get(j, "component"))) ||
        !(r->title = dup_string(json_object_get(j, "title"))) ||
        !(r->remedy = dup_string(json_object_get(j, "remedy"))) ||
        !(r->reason = dup_string(json_object_get(j, "reason"))))
        return -ENOMEM;
    int rc = check_template(L, r->reason);
    if (rc || (rc = load_applies(L, r, json_object_get(j, "applies"))))
        return rc;
    if (!json_object_get(j, "predicate"))
        return load_fail(L, "missing \"predicate\"");
    if ((rc = compile(L, json_object_get(j, "predicate"), false, &r->pred)))
        return rc;
    r->info.id = r->id;
    r->info.component = r->component;
    r->info.title = r->title;
    r->info.remedy = r->remedy;
    r->info.reference = r->reference;
    return 0;
}

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
        snprintf(path, sizeof(path), "schannel.%s.%s", proto_keys[n->proto],
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
static int collect_rule_reads(struct rules_catalog *c, const struct rule *r)
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

static bool valid_catalog_version(const char *v)
{
    /* YYYY.MM.N */
    int y, m, n, used = 0;
    if (sscanf(v, "%4d.%2d.%d%n", &y, &m, &n, &used) != 3 || v[used] != '\0')
        return false;
    return y >= 2000 && m >= 1 && m <= 12 && n >= 0 && isdigit((unsigned char)v[5]) &&
           isdigit((unsigned char)v[6]);
}

int rules_load(const char *text, size_t len, const char *name, struct rules_catalog **out,
               char *err, size_t errsize)
{
    *out = NULL;
    struct loader L = {.name = name, .err = err, .errsize = errsize};
    if (len > RULES_MAX_BYTES) {
        snprintf(err, errsize, "%s: catalog is %zu bytes, over the %d-byte cap", name, len,
                 RULES_MAX_BYTES);
        return -E2BIG;
    }
    json_error_t je;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        snprintf(err, errsize, "%s:%d:%d: invalid JSON: %s", name, je.line, je.column, je.text);
        return -EINVAL;
    }
    int rc = 0;
    struct rules_catalog *c = calloc(1, sizeof(*c));
    if (!c) {
        json_decref(root);
        return -ENOMEM;
    }
    const char *cat = json_string_value(json_object_get(root, "catalog"));
    const char *version = json_string_value(json_object_get(root, "version"));
    json_t *rules = json_object_get(root, "rules");
    if (!json_is_object(root) || !cat || strcmp(cat, "tlsgate-rules")) {
        rc = load_fail(&L, "catalog: must be \"tlsgate-rules\"");
        goto out;
    }
    if (!version || !valid_catalog_version(version)) {
        rc = load_fail(&L, "version: \"%s\" must be YYYY.MM.N", version ? version : "(missing)");
        goto out;
    }
    if (json_object_size(root) != 3) {
        rc = load_fail(&L, "the catalog has exactly the members catalog, version, rules");
        goto out;
    }
    if (!json_is_array(rules) || json_array_size(rules) == 0) {
        rc = load_fail(&L, "rules: must be a non-empty list");
        goto out;
    }
    if (!(c->version = strdup(version)) ||
        !(c->rules = calloc(json_array_size(rules), sizeof(*c->rules)))) {
        rc = -ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < json_array_size(rules); i++) {
        L.index = i + 1;
        L.rule = NULL;
        c->nrules = i + 1;
        if ((rc = load_rule(&L, &c->rules[i], json_array_get(rules, i))))
            goto out;
        for (size_t k = 0; k < i; k++)
            if (!strcmp(c->rules[k].id, c->rules[i].id)) {
                rc = load_fail(&L, "duplicate id (also rule #%zu)", k + 1);
                goto out;
            }
        if ((rc = collect_rule_reads(c, &c->rules[i])))
            goto out;
    }
out:
    if (rc == -ENOMEM)
        snprintf(err, errsize, "%s: out of memory", name);
    json_decref(root);
    if (rc) {
        rules_free(c);
        return rc;
    }
    *out = c;
    return 0;
}

int rules_load_default(struct rules_catalog **out, char *err, size_t errsize)
{
    for (const struct embedded_file *f = schema_catalogs; f->name; f++)
        if (!strcmp(f->name, "rules.json"))
            return rules_load(f->data, f->size, "rules.json (built in)", out, err, errsize);
    snprintf(err, errsize, "no built-in rules.json");
    return -ENOENT;
}

int rules_load_active(struct store *s, struct rules_catalog **out)
{
    char *text = NULL, err[512];
    int rc = store_meta_get(s, "catalog", &text);
    if (rc == -ENOENT)
        rc = rules_load_default(out, err, sizeof(err));
    else if (rc == 0)
        rc = rules_load(text, strlen(text), "stored catalog", out, err, sizeof(err));
    else
        return rc;
    free(text);
    if (rc)
        return store_fail(s, rc, "%s", err);
    return 0;
}

int rules_store_active(struct store *s, const struct rules_catalog *c, const char *text)
{
    int rc = store_meta_set(s, "catalog", text);
    return rc ? rc : store_meta_set(s, "catalog_version", c->version);
}

/* ---------------------------------------------------------------------------------------- */
/* Evaluation                                                                                 */

enum tri { T_FAIL, T_HOLD, T_UNKNOWN };

/* Reason text under construction: fragments each start with "; "; cut at the cap. */
#define TEXT_CAP 2048
struct text {
    char buf[TEXT_CAP];
    size_t len;
    bool cut;
};

static void text_add(struct text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void text_add(struct text *t, const char *fmt, ...)
{
    if (!t || t->cut)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(t->buf + t->len, TEXT_CAP - t->len, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= TEXT_CAP - t->len) {
        t->len = TEXT_CAP - 1;
        t->cut = true;
    } else {
        t->len += (size_t)n;
    }
}

struct eval {
    json_t *report;
    json_t *elem; /* the element of an `every` being checked */
    struct text *text;
};

/*
 * A string from a report as reasons quote it: at most `max` bytes, cut on a UTF-8 boundary, and
 * control characters replaced by '?', so a hostile value cannot forge lines or terminal escapes
 * in `host show` or break the JSON output.
 */
static const char *clean(const char *s, size_t max, char *buf, size_t size)
{
    size_t n = 0;
    if (max > size - 1)
        max = size - 1;
    for (const unsigned char *p = (const unsigned char *)s; *p && n < max; p++)
        buf[n++] = *p < 0x20 || *p == 0x7f ? '?' : (char)*p;
    /* Cut inside a character (the next byte continues it): drop the partial character. */
    while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
        n--;
    buf[n] = '\0';
    return buf;
}

/* A fact's value: the JSON value, or (for @.engine) a derived version string. */
struct val {
    json_t *j;
    const char *s;    /* string facts: the text */
    const char *disp; /* how to show it, when not s */
    char buf[48];
    char dispbuf[128];
};

static json_t *walk(json_t *root, const struct node *n)
{
    json_t *v = root;
    for (int i = 0; i < n->nkeys && v; i++)
        v = json_is_object(v) ? json_object_get(v, n->keys[i]) : NULL;
    return v;
}

/* Fills *out; returns false when the fact is absent (null or missing) and has no default. */
static bool fact_value(const struct eval *E, const struct node *n, struct val *out)
{
    memset(out, 0, sizeof(*out));
    json_t *root = n->fact->path[0] == '@' ? E->elem : E->report;
    if (!strcmp(n->fact->path, "os.kind")) {
        const char *k = rules_os_kind(E->report, out->dispbuf, sizeof(out->dispbuf));
        if (!k)
            goto absent;
        out->s = k;
        out->disp = out->dispbuf;
        return true;
    }
    if (!strcmp(n->fact->path, "@.engine")) {
        const char *raw = json_string_value(json_object_get(root, "patch_level"));
        const char *from = "PatchLevel";
        if (!raw) {
            raw = json_string_value(json_object_get(root, "version"));
            from = "Version";
        }
        if (!raw)
            goto absent;
        struct version v;
        if (version_parse(raw, &v, false)) {
            out->s = raw; /* not a version: the comparison says so */
            return true;
        }
        /* The service-pack level rides in the minor part (12.1 = 2014 SP1, 10.53 = 2008 R2
         * SP3); KB3135244's table writes the product's own minor (12.0, 10.50). */
        long minor = v.part[1] - v.part[1] % 10;
        snprintf(out->buf, sizeof(out->buf), "%ld.%ld.%ld.%ld", v.part[0], minor, v.part[2],
                 v.part[3]);
        char c[48];
        snprintf(out->dispbuf, sizeof(out->dispbuf), "%s (%s %s)", out->buf, from,
                 clean(raw, 40, c, sizeof(c)));
        out->disp = out->dispbuf;
        out->s = out->buf;
        return true;
    }
    out->j = walk(root, n);
    if (out->j && !json_is_null(out->j)) {
        out->s = json_string_value(out->j);
        return true;
    }
absent:
    if (n->if_absent) {
        out->j = n->if_absent;
        out->s = json_string_value(out->j);
        return true;
    }
    return false;
}


/*
 * Server or client. ProductOptions\ProductType is set by every edition since NT: WinNT is a
 * client, ServerNT a server, LanmanNT a domain controller (a server). A report without it (an
 * older collector) falls back to InstallationType, where "Server", "Server Core" and "Nano
 * Server" are servers and "Client" a client. Anything else is unknown (NULL): a rule that
 * depends on it fails rather than skips. `why` receives the observed values for reasons.
 */
const char *rules_os_kind(json_t *report, char *why, size_t whysize)
{
    json_t *os = json_object_get(report, "os");
    const char *pt = json_string_value(json_object_get(os, "product_type"));
    const char *it = json_string_value(json_object_get(os, "installation_type"));
    char a[48], b[48];
    const char *kind = NULL;
    if (pt) {
        if (!strcasecmp(pt, "WinNT"))
            kind = "client";
        else if (!strcasecmp(pt, "ServerNT") || !strcasecmp(pt, "LanmanNT"))
            kind = "server";
        snprintf(why, whysize, "%s (ProductType %s)", kind ? kind : "unknown",
                 clean(pt, 40, a, sizeof(a)));
        return kind;
    }
    if (it) {
        if (!strcasecmp(it, "Client"))
            kind = "client";
        else if (!strcasecmp(it, "Server") || !strcasecmp(it, "Server Core") ||
                 !strcasecmp(it, "Nano Server"))
            kind = "server";
        snprintf(why, whysize, "%s (ProductType not reported, InstallationType %s)",
                 kind ? kind : "unknown", clean(it, 40, b, sizeof(b)));
        return kind;
    }
    snprintf(why, whysize, "unknown (ProductType and InstallationType not reported)");
    return NULL;
}

static void format_json(const struct fact *f, json_t *v, char *buf, size_t size)
{
    if (json_is_integer(v)) {
        long long x = json_integer_value(v);
        if (f->hex && x >= 0)
            snprintf(buf, size, "0x%llX", x);
        else
            snprintf(buf, size, "%lld", x);
    } else if (json_is_real(v)) {
        snprintf(buf, size, "%g", json_real_value(v));
    } else if (json_is_string(v)) {
        clean(json_string_value(v), 80, buf, size);
    } else if (json_is_boolean(v)) {
        snprintf(buf, size, "%s", json_is_true(v) ? "true" : "false");
    } else if (json_is_array(v)) {
        snprintf(buf, size, "a list of %zu", json_array_size(v));
    } else {
        snprintf(buf, size, "(unexpected value)");
    }
}

static void format_val(const struct node *n, const struct val *v, char *buf, size_t size)
{
    if (v->disp)
        snprintf(buf, size, "%s", v->disp);
    else if (v->s)
        clean(v->s, 120, buf, size);
    else
        format_json(n->fact, v->j, buf, size);
}

static enum tri flip(enum tri r, bool neg)
{
    if (!neg || r == T_UNKNOWN)
        return r;
    return r == T_HOLD ? T_FAIL : T_HOLD;
}

static enum tri not_reported(const struct eval *E, const struct node *n)
{
    text_add(E->text, "; %s not reported", fact_label(n->fact));
    return T_UNKNOWN;
}

static enum tri unexpected(const struct eval *E, const struct node *n, const char *what)
{
    text_add(E->text, "; %s %s", fact_label(n->fact), what);
    return T_UNKNOWN;
}

static bool num_of(json_t *j, double *out)
{
    if (!json_is_number(j))
        return false;
    *out = json_number_value(j);
    return true;
}

static enum tri eval_compare(const struct eval *E, const struct node *n, bool neg)
{
    struct val v;
    if (!fact_value(E, n, &v))
        return not_reported(E, n);
    bool raw = false;
    char obs[160], want[128];
    format_val(n, &v, obs, sizeof(obs));
    format_json(n->fact, n->value, want, sizeof(want));
    switch (n->fact->type) {
    case F_NUM: {
        double a, b = json_number_value(n->value);
        if (!num_of(v.j, &a))
            return unexpected(E, n, "is not a number");
        switch (n->op) {
        case OP_EQ: raw = a == b; break;
        case OP_NE: raw = a != b; break;
        case OP_LT: raw = a < b; break;
        case OP_LE: raw = a <= b; break;
        case OP_GT: raw = a > b; break;
        default: raw = a >= b; break;
        }
        break;
    }
    case F_STR:
        if (!v.s)
            return unexpected(E, n, "is not a string");
        raw = !strcasecmp(v.s, json_string_value(n->value)) == (n->op == OP_EQ);
        break;
    case F_BOOL:
        if (!json_is_boolean(v.j))
            return unexpected(E, n, "is not true or false");
        raw = (json_is_true(v.j) == json_is_true(n->value)) == (n->op == OP_EQ);
        break;
    default:
        return unexpected(E, n, "cannot be compared");
    }
    enum tri r = flip(raw ? T_HOLD : T_FAIL, neg);
    const char *dflt = v.j == n->if_absent && n->if_absent ? " (absent: OS default)" : "";
    if (r == T_HOLD)
        text_add(E->text, "; %s is %s%s", fact_label(n->fact), obs, dflt);
    else
        text_add(E->text, "; %s is %s%s, needs %s%s", fact_label(n->fact), obs, dflt,
                 op_text(n->op, neg), want);
    return r;
}

/*
 * Reads the version a version operator compares: the fact parsed into *a and its printed form
 * in obs. Returns T_HOLD when there is one to compare; otherwise the verdict to give (never a
 * pass: not reported, not a string, not a version), with its reason already written.
 */
static enum tri version_fact(const struct eval *E, const struct node *n, struct version *a,
                             char *obs, size_t obssize)
{
    struct val v;
    if (!fact_value(E, n, &v))
        return not_reported(E, n);
    if (!v.s)
        return unexpected(E, n, "is not a version string");
    if (version_parse(v.s, a, false)) {
        char c[64];
        text_add(E->text, "; %s is \"%s\", not a version", fact_label(n->fact),
                 clean(v.s, 60, c, sizeof(c)));
        return T_UNKNOWN;
    }
    format_val(n, &v, obs, obssize);
    return T_HOLD;
}

static enum tri eval_version(const struct eval *E, const struct node *n, bool neg)
{
    struct version a;
    char obs[160];
    enum tri got = version_fact(E, n, &a, obs, sizeof(obs));
    if (got != T_HOLD)
        return got;
    bool raw = false;
    if (n->op == OP_VER_IN) {
        for (size_t i = 0; i < n->nvers && !raw; i++)
            raw = version_cmp(&a, &n->vers[i]) == 0;
        enum tri r = flip(raw ? T_HOLD : T_FAIL, neg);
        if (raw)
            text_add(E->text, "; %s is %s (listed)", fact_label(n->fact), obs);
        else
            text_add(E->text, "; %s is %s (not listed)", fact_label(n->fact), obs);
        return r;
    }
    int c = version_cmp(&a, &n->ver);
    switch (n->op) {
    case OP_VER_EQ: raw = c == 0; break;
    case OP_VER_NE: raw = c != 0; break;
    case OP_VER_LT: raw = c < 0; break;
    case OP_VER_LE: raw = c <= 0; break;
    case OP_VER_GT: raw = c > 0; break;
    default: raw = c >= 0; break;
    }
    enum tri r = flip(raw ? T_HOLD : T_FAIL, neg);
    if (r == T_HOLD)
        text_add(E->text, "; %s is %s", fact_label(n->fact), obs);
    else
        text_add(E->text, "; %s is %s, needs %s%s", fact_label(n->fact), obs,
                 op_text(n->op, neg), json_string_value(n->value));
    return r;
}

static enum tri eval_bits(const struct eval *E, const struct node *n, bool neg)
{
    struct val v;
    if (!fact_value(E, n, &v))
        return not_reported(E, n);
    if (!json_is_integer(v.j))
        return unexpected(E, n, "is not an integer");
    long long x = json_integer_value(v.j), mask = json_integer_value(n->value);
    char obs[96];
    format_json(n->fact, v.j, obs, sizeof(obs));
    if (n->if_absent && v.j == n->if_absent)
        snprintf(obs, sizeof(obs), "absent (OS default)");
    enum tri r = flip((x & mask) == mask ? T_HOLD : T_FAIL, neg);
    bool has = (x & mask) == mask;
    if (r == T_HOLD && n->if_absent && v.j == n->if_absent)
        text_add(E->text, "; %s is %s", fact_label(n->fact), obs);
    else if (r == T_HOLD)
        text_add(E->text, "; %s is %s (%s 0x%llX)", fact_label(n->fact), obs,
                 has ? "includes" : "without", mask);
    else
        text_add(E->text, "; %s is %s, %s 0x%llX", fact_label(n->fact), obs,
                 has ? "must not include" : "lacks", mask);
    return r;
}

static bool list_has(json_t *list, const char *s)
{
    size_t i;
    json_t *v;
    json_array_foreach(list, i, v) {
        if (json_is_string(v) && !strcasecmp(json_string_value(v), s))
            return true;
    }
    return false;
}

/* CBS CurrentState names (the servicing API's install state times 16). */
static const char *cbs_state_name(long long st)
{
    switch (st) {
    case 0x00: return "absent";
    case 0x10: return "resolving";
    case 0x20: return "resolved";
    case 0x30: return "staging";
    case 0x40: return "staged";
    case 0x50: return "superseded or uninstall pending";
    case 0x60: return "install pending";
    case 0x65: return "partially installed";
    default: return "in another state";
    }
}

/* For a KB that updates.installed lacks, says in which state its package is, if any. */
static void not_installed_note(const struct eval *E, const struct node *n, const char *kb)
{
    if (strcmp(n->fact->path, "updates.installed"))
        return;
    json_t *ni = json_object_get(json_object_get(E->report, "updates"), "not_installed");
    const char *key;
    json_t *st;
    json_object_foreach(ni, key, st) {
        if (strcasecmp(key, kb))
            continue;
        if (json_is_integer(st))
            text_add(E->text, " (its package is %s, CurrentState 0x%llX: not installed)",
                     cbs_state_name(json_integer_value(st)),
                     (long long)json_integer_value(st));
        else
            text_add(E->text, " (its package has no CurrentState: not installed)");
        return;
    }
}

static enum tri eval_contains(const struct eval *E, const struct node *n, bool neg)
{
    struct val v;
    if (!fact_value(E, n, &v))
        return not_reported(E, n);
    if (!json_is_array(v.j))
        return unexpected(E, n, "is not a list");
    const char *found = NULL;
    if (n->op == OP_CONTAINS) {
        if (list_has(v.j, json_string_value(n->value)))
            found = json_string_value(n->value);
    } else {
        size_t i;
        json_t *w;
        json_array_foreach(n->value, i, w) {
            if (!found && list_has(v.j, json_string_value(w)))
                found = json_string_value(w);
        }
    }
    enum tri r = flip(found ? T_HOLD : T_FAIL, neg);
    if (found) {
        text_add(E->text, "; %s include %s", fact_label(n->fact), found);
    } else if (n->op == OP_CONTAINS) {
        text_add(E->text, "; %s lack %s", fact_label(n->fact), json_string_value(n->value));
        not_installed_note(E, n, json_string_value(n->value));
    } else {
        text_add(E->text, "; %s lack all of", fact_label(n->fact));
        size_t i;
        json_t *w;
        json_array_foreach(n->value, i, w)
            text_add(E->text, "%s %s", i ? "," : "", json_string_value(w));
    }
    return r;
}

static enum tri eval_text(const struct eval *E, const struct node *n, bool neg)
{
    struct val v;
    if (!fact_value(E, n, &v))
        return not_reported(E, n);
    if (!v.s)
        return unexpected(E, n, "is not a string");
    const char *want = json_string_value(n->value);
    bool raw = strcasestr(v.s, want) != NULL;
    enum tri r = flip(raw ? T_HOLD : T_FAIL, neg);
    char c[96];
    clean(v.s, 80, c, sizeof(c));
    if (r == T_HOLD)
        text_add(E->text, "; %s is \"%s\"", fact_label(n->fact), c);
    else
        text_add(E->text, "; %s is \"%s\", %s \"%s\"", fact_label(n->fact), c,
                 neg ? "must not contain" : "needs to contain", want);
    return r;
}

static enum tri eval_presence(const struct eval *E, const struct node *n, bool neg)
{
    struct val v;
    bool present = fact_value(E, n, &v);
    bool raw = n->op == OP_PRESENT ? present : !present;
    enum tri r = flip(raw ? T_HOLD : T_FAIL, neg);
    if (!present) {
        text_add(E->text, "; %s not reported", fact_label(n->fact));
    } else {
        char obs[160];
        format_val(n, &v, obs, sizeof(obs));
        text_add(E->text, "; %s is %s%s", fact_label(n->fact), obs,
                 r == T_HOLD ? "" : ", needs to be absent");
    }
    return r;
}

/*
 * SCHANNEL defaults per OS build (tls12-facts.md §1.2, S12/S15): whether the protocol is on
 * when neither Enabled nor DisabledByDefault is set.
 */
/* The last build released before TLS 1.0 and 1.1 were turned off by default (S19: Windows 11
 * Insider builds from September 2023 and later releases; in-market versions up to Windows 11
 * 23H2 / Server 2022 keep them on). */
#define LEGACY_ON_LAST_BUILD 22631

static bool protocol_default_on(enum proto p, long build)
{
    switch (p) {
    case P_SSL3: return build < 14393;  /* off by default from 1607 / Server 2016 (S12, S13) */
    case P_TLS10: return build <= LEGACY_ON_LAST_BUILD; /* S19 */
    case P_TLS11: /* Windows 7 / 2008 R2 / 2008 SP2: off (S12); later releases: off (S19) */
        return build >= 9200 && build <= LEGACY_ON_LAST_BUILD;
    case P_TLS12: return build >= 9200; /* Windows 7 / 2008 R2 / 2008 SP2: off (S12) */
    case P_TLS13: return build >= 20348; /* Server 2022, Windows 11 (S12) */
    default: return false;
    }
}

static enum tri eval_protocol(const struct eval *E, const struct node *n, bool neg)
{
    json_t *side = json_object_get(json_object_get(json_object_get(E->report, "schannel"),
                                                   proto_keys[n->proto]),
                                   n->server ? "server" : "client");
    json_t *en = json_object_get(side, "enabled"), *dbd = json_object_get(side,
                                                                          "disabled_by_default");
    bool has_en = json_is_integer(en), has_dbd = json_is_integer(dbd);
    json_t *b = json_object_get(json_object_get(E->report, "os"), "build");
    const char *Side = n->server ? "Server" : "Client";
    if ((!has_en || (!has_dbd && !n->explicit_use)) && !json_is_integer(b)) {
        text_add(E->text, "; SCHANNEL %s\\%s: OS build not reported (needed for the default of "
                          "an absent value)", proto_names[n->proto], Side);
        return T_UNKNOWN;
    }
    long build = json_is_integer(b) ? (long)json_integer_value(b) : 0;
    bool def = protocol_default_on(n->proto, build);
    bool eff_en = has_en ? json_integer_value(en) != 0 : def;
    bool eff_dbd = has_dbd ? json_integer_value(dbd) != 0 : !def;
    /* An application that names its protocols (WinHTTP with DefaultSecureProtocols, S8) is
     * refused only by Enabled; DisabledByDefault governs only who asks for the defaults. */
    bool on = eff_en && (n->explicit_use || !eff_dbd);
    enum tri r = flip(on ? T_HOLD : T_FAIL, neg);
    char e[24] = "absent", d[24] = "absent";
    if (has_en)
        snprintf(e, sizeof(e), "%lld", (long long)json_integer_value(en));
    if (has_dbd)
        snprintf(d, sizeof(d), "%lld", (long long)json_integer_value(dbd));
    text_add(E->text, "; SCHANNEL %s\\%s is %s%s (Enabled=%s, DisabledByDefault=%s",
             proto_names[n->proto], Side, on ? "on" : "off",
             n->explicit_use ? " for applications that ask for it" : "", e, d);
    if (!has_en || (!has_dbd && !n->explicit_use))
        text_add(E->text, "; build %ld default: %s", build, def ? "on" : "off");
    text_add(E->text, ")%s", r == T_HOLD ? "" : neg ? ", needs off" : ", needs on");
    return r;
}

/*
 * For orphan risk: is the legacy protocol off on the server side? Off when Enabled=0, when
 * DisabledByDefault=1 (IIS and HTTP.sys do not ask for a protocol by name, so they do not
 * negotiate it), or when the value is absent and the OS default is off (per build, as the
 * rules read it). When a value is absent and the build is not reported, the default is unknown:
 * count it as off, so that the doubt raises the orphan-risk alarm instead of hiding it.
 */
static bool legacy_server_off(json_t *report, enum proto p)
{
    json_t *side = json_object_get(json_object_get(json_object_get(report, "schannel"),
                                                   proto_keys[p]), "server");
    json_t *en = json_object_get(side, "enabled"), *dbd = json_object_get(side,
                                                                          "disabled_by_default");
    json_t *b = json_object_get(json_object_get(report, "os"), "build");
    if (json_is_integer(en) && json_integer_value(en) == 0)
        return true;
    if (json_is_integer(dbd) && json_integer_value(dbd) != 0)
        return true;
    if (json_is_integer(en) && json_is_integer(dbd))
        return false; /* Enabled != 0 and DisabledByDefault = 0: on */
    if (!json_is_integer(b))
        return true;
    bool def = protocol_default_on(p, (long)json_integer_value(b));
    /* Enabled=1 with DisabledByDefault absent: on only where the protocol is on by default */
    return !def;
}

int rules_legacy_disabled(json_t *report)
{
    return legacy_server_off(report, P_SSL3) && legacy_server_off(report, P_TLS10) &&
           legacy_server_off(report, P_TLS11);
}

static const char *const legacy_paths[] = {"schannel.ssl3.server", "schannel.tls10.server",
                                           "schannel.tls11.server", "os.build"};

size_t rules_legacy_reads(const char *const **paths)
{
    *paths = legacy_paths;
    return sizeof(legacy_paths) / sizeof(legacy_paths[0]);
}

static enum tri eval_branch(const struct eval *E, const struct node *n, bool neg)
{
    struct version a;
    char obs[160];
    enum tri got = version_fact(E, n, &a, obs, sizeof(obs));
    if (got != T_HOLD)
        return got;
    const struct branch *br = NULL;
    for (size_t i = 0; i < n->nbranches && !br; i++)
        if (version_cmp(&a, &n->branches[i].from) >= 0 &&
            version_cmp(&a, &n->branches[i].below) < 0)
            br = &n->branches[i];
    bool raw;
    if (!br) {
        raw = n->otherwise_holds;
        text_add(E->text, "; %s is %s, in no listed branch", fact_label(n->fact), obs);
    } else if (!br->has_min) {
        raw = false;
        text_add(E->text, "; %s is %s: %s has no TLS 1.2 build", fact_label(n->fact), obs,
                 br->name);
    } else {
        raw = version_cmp(&a, &br->min) >= 0;
        if (raw)
            text_add(E->text, "; %s is %s (%s, at or above %s)", fact_label(n->fact), obs,
                     br->name, br->min_text);
        else
            text_add(E->text, "; %s is %s, below %s, the first TLS 1.2 build of %s",
                     fact_label(n->fact), obs, br->min_text, br->name);
    }
    if (br && br->remedy && flip(raw ? T_HOLD : T_FAIL, neg) != T_HOLD)
        text_add(E->text, " (fix: %s)", br->remedy);
    return flip(raw ? T_HOLD : T_FAIL, neg);
}

static enum tri eval_node(const struct eval *E, const struct node *n, bool neg);

/* Keeps, of the fragments written since each kid's start, those that explain `result`. */
static void keep_fragments(struct text *t, const size_t *start, const enum tri *r, size_t k,
                           enum tri result, bool conj)
{
    if (!t || t->cut || k == 0)
        return;
    size_t w = start[0];
    bool kept_hold = false;
    for (size_t i = 0; i < k; i++) {
        size_t end = i + 1 < k ? start[i + 1] : t->len;
        /* A passing "any" needs one reason, not all of them. */
        bool keep = (result == T_HOLD) == (r[i] == T_HOLD) &&
                    !(result == T_HOLD && !conj && kept_hold);
        if (keep) {
            kept_hold |= r[i] == T_HOLD;
            memmove(t->buf + w, t->buf + start[i], end - start[i]);
            w += end - start[i];
        }
    }
    t->len = w;
    t->buf[w] = '\0';
}

static enum tri combine(bool conj, const enum tri *r, size_t k)
{
    bool any_fail = false, any_hold = false, any_unknown = false;
    for (size_t i = 0; i < k; i++) {
        any_fail |= r[i] == T_FAIL;
        any_hold |= r[i] == T_HOLD;
        any_unknown |= r[i] == T_UNKNOWN;
    }
    if (conj)
        return any_fail ? T_FAIL : any_unknown ? T_UNKNOWN : T_HOLD;
    return any_hold ? T_HOLD : any_unknown ? T_UNKNOWN : T_FAIL;
}

#define MAX_KIDS 32
#define MAX_ELEMS 64

static enum tri eval_list(const struct eval *E, const struct node *n, bool neg)
{
    size_t start[MAX_KIDS];
    enum tri r[MAX_KIDS] = {T_FAIL};
    for (size_t i = 0; i < n->nkids; i++) {
        start[i] = E->text ? E->text->len : 0;
        r[i] = eval_node(E, n->kids[i], neg);
    }
    /* Under `not`, all becomes any and any becomes all (De Morgan). */
    bool conj = (n->op == OP_ALL) != neg;
    enum tri res = combine(conj, r, n->nkids);
    /* A member that never holds explains an undecided result, not a definite failure: its
     * text is left out when another member already failed. */
    for (size_t i = 0; res == T_FAIL && i < n->nkids; i++)
        if (n->kids[i]->op == OP_NEVER)
            r[i] = T_HOLD;
    keep_fragments(E->text, start, r, n->nkids, res, conj);
    return res;
}

static enum tri eval_every(const struct eval *E, const struct node *n, bool neg)
{
    json_t *list = walk(E->report, n);
    if (!list || json_is_null(list))
        return not_reported(E, n);
    if (!json_is_array(list))
        return unexpected(E, n, "is not a list");
    size_t start[MAX_ELEMS];
    enum tri r[MAX_ELEMS] = {T_FAIL};
    size_t k = 0;
    struct eval sub = *E;
    size_t i;
    json_t *elem;
    if (json_array_size(list) > MAX_ELEMS) {
        text_add(E->text, "; %s has %zu entries, more than the %d a host can have",
                 fact_label(n->fact), json_array_size(list), MAX_ELEMS);
        return T_UNKNOWN;
    }
    json_array_foreach(list, i, elem) {
        sub.elem = elem;
        enum tri w = T_HOLD;
        if (n->where) {
            struct eval quiet = sub;
            quiet.text = NULL;
            if ((w = eval_node(&quiet, n->where, false)) == T_FAIL)
                continue;
        }
        start[k] = E->text ? E->text->len : 0;
        const char *name = json_string_value(json_object_get(elem, n->elem_label));
        char c[72];
        if (name)
            text_add(E->text, "; %s:", clean(name, 64, c, sizeof(c)));
        else
            text_add(E->text, "; #%zu:", i + 1);
        size_t body = E->text ? E->text->len : 0;
        r[k] = w == T_UNKNOWN ? T_UNKNOWN : eval_node(&sub, n->check, neg);
        if (w == T_UNKNOWN)
            text_add(E->text, " cannot tell whether it is concerned (%s)", "a filtered fact "
                     "is not reported");
        /* "NAME:; fragment" -> "NAME: fragment" */
        if (E->text && !E->text->cut && E->text->len >= body + 2 && E->text->buf[body] == ';')
        {
            memmove(E->text->buf + body, E->text->buf + body + 1, E->text->len - body - 1);
            E->text->len--;
            E->text->buf[E->text->len] = '\0';
        }
        k++;
    }
    if (k == 0) {
        bool holds = neg ? !n->none_holds : n->none_holds;
        text_add(E->text, "; no %s%s", n->where ? "concerned entry in " : "entry in ",
                 fact_label(n->fact));
        return holds ? T_HOLD : T_FAIL;
    }
    enum tri res = combine(!neg, r, k);
    keep_fragments(E->text, start, r, k, res, !neg);
    return res;
}

/* The condition speaks only when it cannot be decided; where it does not hold, the rule
 * has nothing to ask (a 32-bit OS has no Wow6432Node), which is a pass. */
static enum tri eval_when(const struct eval *E, const struct node *n, bool neg)
{
    struct eval quiet = *E;
    quiet.text = NULL;
    enum tri cond = eval_node(&quiet, n->kids[0], false);
    if (cond == T_UNKNOWN)
        return eval_node(E, n->kids[0], false);
    if (cond == T_FAIL)
        return flip(T_HOLD, neg);
    return eval_node(E, n->kids[1], neg);
}

static enum tri eval_node(const struct eval *E, const struct node *n, bool neg)
{
    switch (n->op) {
    case OP_ALL: case OP_ANY: return eval_list(E, n, neg);
    case OP_NOT: return eval_node(E, n->kids[0], !neg);
    case OP_EQ: case OP_NE: case OP_LT: case OP_LE: case OP_GT: case OP_GE:
        return eval_compare(E, n, neg);
    case OP_VER_EQ: case OP_VER_NE: case OP_VER_LT: case OP_VER_LE: case OP_VER_GT:
    case OP_VER_GE: case OP_VER_IN:
        return eval_version(E, n, neg);
    case OP_HAS_BITS: return eval_bits(E, n, neg);
    case OP_CONTAINS: case OP_CONTAINS_ANY: return eval_contains(E, n, neg);
    case OP_TEXT_CONTAINS: return eval_text(E, n, neg);
    case OP_IS_NULL: case OP_PRESENT: return eval_presence(E, n, neg);
    case OP_PROTOCOL_ENABLED: return eval_protocol(E, n, neg);
    case OP_EVERY: return eval_every(E, n, neg);
    case OP_VERSION_BRANCH: return eval_branch(E, n, neg);
    case OP_WHEN: return eval_when(E, n, neg);
    case OP_NEVER:
        /* Neither it nor its negation is known to hold: never a pass, even under `not`. */
        text_add(E->text, "; %s", n->why);
        return T_UNKNOWN;
    }
    return T_UNKNOWN;
}

/* Fills the rule's reason template: {detail} = the fragments, {fact.path} = its value. */
static void render_reason(const struct rule *r, json_t *report, const struct text *detail,
                          bool pass, char *out, size_t size)
{
    const char *d = detail->buf;
    if (d[0] == ';')
        d += 2;
    struct text t;
    t.len = 0;
    t.cut = false;
    t.buf[0] = '\0';
    if (pass) {
        text_add(&t, "ok: %s", *d ? d : "all conditions hold");
    } else {
        for (const char *p = r->reason; *p;) {
            const char *open = strchr(p, '{');
            if (!open) {
                text_add(&t, "%s", p);
                break;
            }
            text_add(&t, "%.*s", (int)(open - p), p);
            const char *close = strchr(open, '}');
            char name[96];
            snprintf(name, sizeof(name), "%.*s", (int)(close - open - 1), open + 1);
            if (!strcmp(name, "detail")) {
                text_add(&t, "%s", d);
            } else {
                const struct fact *f = fact_find(name, false);
                struct node probe = {.fact = f};
                char *keys = strdup(name), *save;
                char *tok = keys ? strtok_r(keys, ".", &save) : NULL;
                while (tok && probe.nkeys < 4) {
                    probe.keys[probe.nkeys++] = tok;
                    tok = strtok_r(NULL, ".", &save);
                }
                json_t *v = walk(report, &probe);
                char buf[160];
                if (!v || json_is_null(v))
                    snprintf(buf, sizeof(buf), "not reported");
                else
                    format_json(f, v, buf, sizeof(buf));
                text_add(&t, "%s", buf);
                free(keys);
            }
            p = close + 1;
        }
    }
    if (detail->cut || t.cut || t.len >= size) {
        snprintf(out, size, "%.*s...", (int)(size - 4), t.buf);
    } else {
        memcpy(out, t.buf, t.len + 1);
    }
}

/* Decides whether a rule applies; T_UNKNOWN when a fact it depends on is not reported (the rule
 * then fails with that reason: an undecidable scope is never a silent skip). */
static enum tri applies(const struct rule *r, json_t *report, unsigned roles, struct text *why)
{
    enum tri res = T_HOLD;
    if (!(r->info.roles & roles)) {
        if (!r->also_when)
            return T_FAIL;
        struct eval E = {.report = report, .text = why};
        size_t mark = why->len;
        enum tri q = eval_node(&E, r->also_when, false);
        if (q == T_FAIL)
            return T_FAIL;
        if (q == T_HOLD) {
            why->len = mark; /* only an undecidable scope is worth saying */
            why->buf[mark] = '\0';
        } else {
            res = T_UNKNOWN;
        }
    }
    json_t *os = json_object_get(report, "os");
    if (r->build_min >= 0 || r->build_max >= 0) {
        json_t *b = json_object_get(os, "build");
        if (!json_is_integer(b)) {
            text_add(why, "; OS build not reported (the rule covers builds %ld..%ld)",
                     r->build_min, r->build_max);
            res = T_UNKNOWN;
        } else {
            long build = (long)json_integer_value(b);
            if ((r->build_min >= 0 && build < r->build_min) ||
                (r->build_max >= 0 && build > r->build_max))
                return T_FAIL;
        }
    }
    if (r->installation_type) {
        char seen[160];
        const char *k = rules_os_kind(report, seen, sizeof(seen));
        if (!k) {
            text_add(why, "; server or client: %s (the rule covers %s)", seen,
                     r->installation_type);
            res = T_UNKNOWN;
        } else if (strcasecmp(k, r->installation_type)) {
            return T_FAIL;
        }
    }
    if (r->requires) {
        struct eval E = {.report = report, .text = why};
        size_t mark = why->len;
        enum tri q = eval_node(&E, r->requires, false);
        if (q == T_FAIL)
            return T_FAIL;
        if (q == T_HOLD) {
            why->len = mark; /* only an undecidable scope is worth saying */
            why->buf[mark] = '\0';
        } else {
            res = T_UNKNOWN;
        }
    }
    return res;
}

int rules_evaluate(const struct rules_catalog *c, json_t *report, unsigned roles,
                   rules_verdict_fn fn, void *ctx, int *blockers, int *warnings)
{
    int nb = 0, nw = 0;
    struct text *t = malloc(sizeof(*t));
    struct rules_verdict *v = malloc(sizeof(*v));
    int rc = 0;
    if (!t || !v) {
        rc = -ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < c->nrules; i++) {
        const struct rule *r = &c->rules[i];
        t->len = 0;
        t->cut = false;
        t->buf[0] = '\0';
        enum tri a = applies(r, report, roles, t);
        if (a == T_FAIL)
            continue;
        enum tri res = T_UNKNOWN;
        if (a == T_HOLD) {
            struct eval E = {.report = report, .text = t};
            res = eval_node(&E, r->pred, false);
        }
        v->rule = r->id;
        v->severity = r->info.severity;
        v->pass = res == T_HOLD;
        render_reason(r, report, t, v->pass, v->reason, sizeof(v->reason));
        if (!v->pass) {
            if (r->info.severity == RULES_BLOCKER)
                nb++;
            else
                nw++;
        }
        if (fn && (rc = fn(ctx, v)))
            goto out;
    }
out:
    free(t);
    free(v);
    if (blockers)
        *blockers = nb;
    if (warnings)
        *warnings = nw;
    return rc;
}
