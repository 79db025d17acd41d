/*
 * rules_load.c — loading a catalog: rules_load validates all of it up front and compiles each
 * predicate into a tree of `struct node` (rules_int.h), so evaluation never meets a malformed
 * rule; every error names the rule. Also the catalog of a store: the built-in one, the active
 * one (the `meta` row 'catalog') and storing a new one.
 */
#include "rules_int.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "embedded.h"
#include "inventory.h"
#include "store.h"

/* ---------------------------------------------------------------------------------------- */
/* Loading                                                                                    */

static const struct {
    const char *name;
    enum op op;
} op_names[] = {
    {"all", OP_ALL},
    {"any", OP_ANY},
    {"not", OP_NOT},
    {"eq", OP_EQ},
    {"ne", OP_NE},
    {"lt", OP_LT},
    {"le", OP_LE},
    {"gt", OP_GT},
    {"ge", OP_GE},
    {"version_eq", OP_VER_EQ},
    {"version_ne", OP_VER_NE},
    {"version_lt", OP_VER_LT},
    {"version_le", OP_VER_LE},
    {"version_gt", OP_VER_GT},
    {"version_ge", OP_VER_GE},
    {"version_in", OP_VER_IN},
    {"has_bits", OP_HAS_BITS},
    {"contains", OP_CONTAINS},
    {"contains_any", OP_CONTAINS_ANY},
    {"text_contains", OP_TEXT_CONTAINS},
    {"is_null", OP_IS_NULL},
    {"present", OP_PRESENT},
    {"protocol_enabled", OP_PROTOCOL_ENABLED},
    {"every", OP_EVERY},
    {"version_branch", OP_VERSION_BRANCH},
    {"when", OP_WHEN},
    {"never", OP_NEVER},
};

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
    n->fact = rules__fact_find(p, element);
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
    if (!json_is_string(v) || rules__version_parse(json_string_value(v), out, true))
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
    case OP_EQ:
    case OP_NE:
        ok = (f->type == F_NUM || f->type == F_STR || f->type == F_BOOL) && value_fits(f, v);
        break;
    case OP_LT:
    case OP_LE:
    case OP_GT:
    case OP_GE: ok = f->type == F_NUM && json_is_number(v); break;
    case OP_VER_EQ:
    case OP_VER_NE:
    case OP_VER_LT:
    case OP_VER_LE:
    case OP_VER_GT:
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
    case OP_CONTAINS: ok = f->type == F_STRLIST && json_is_string(v); break;
    case OP_CONTAINS_ANY:
        ok = f->type == F_STRLIST && json_is_array(v) && json_array_size(v) > 0;
        for (size_t i = 0; ok && i < json_array_size(v); i++)
            ok = json_is_string(json_array_get(v, i));
        break;
    case OP_TEXT_CONTAINS:
        ok = f->type == F_STR && json_is_string(v) && json_string_length(v) > 0;
        break;
    default: break;
    }
    if (!ok)
        return load_fail(L, "\"%s\" cannot compare %s (%s) with %s", opname, f->path,
                         type_name(f->type),
                         json_is_string(v)    ? "a string"
                         : json_is_number(v)  ? "a number"
                         : json_is_boolean(v) ? "a boolean"
                         : json_is_array(v)   ? "a list"
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
        if (!strcmp(proto, rules__proto_keys[i]))
            p = i;
    if (p < 0)
        return load_fail(L,
                         "protocol_enabled: no OS default known for protocol \"%s\" (one of "
                         "ssl3, tls10, tls11, tls12, tls13)",
                         proto);
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
    json_object_foreach(arg, key, v)
    {
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
        if (json_unpack(b, "{s:s, s:o, s:o, s:o, s?:s !}", "name", &name, "from", &from, "below",
                        &below, "min", &min, "remedy", &remedy))
            return load_fail(L,
                             "version_branch: branch %zu needs exactly {name, from, below, "
                             "min} and optionally remedy",
                             i + 1);
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
    json_object_foreach(j, key, v)
    {
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
    case OP_ALL:
    case OP_ANY: rc = compile_list(L, n, arg, in_every, opname); break;
    case OP_NOT:
        n->nkids = 1;
        rc = (n->kids = calloc(1, sizeof(*n->kids))) ? compile(L, arg, in_every, &n->kids[0])
                                                     : -ENOMEM;
        break;
    case OP_IS_NULL:
    case OP_PRESENT: rc = bind_fact(L, n, arg, in_every); break;
    case OP_PROTOCOL_ENABLED: rc = compile_protocol(L, n, arg); break;
    case OP_EVERY: rc = compile_every(L, n, arg, in_every); break;
    case OP_VERSION_BRANCH: rc = compile_branch_table(L, n, arg, in_every); break;
    case OP_NEVER:
        /* {"never": "why"}: a condition that holds on no host in the rule's scope, or that no
         * source settles (fail closed); it says why. */
        if (!json_is_string(arg) || json_string_length(arg) == 0 || json_string_length(arg) > 400) {
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
    default: rc = compile_leaf(L, n, arg, in_every, opname); break;
    }
    if (rc)
        return rc;
    if (if_absent) {
        bool leaf = n->op >= OP_EQ && n->op <= OP_TEXT_CONTAINS;
        if (!leaf)
            return load_fail(L, "\"if_absent\" only goes with a comparison, not \"%s\"", opname);
        if (n->fact->type == F_STRLIST || n->fact->type == F_OBJLIST
                ? !json_is_array(if_absent)
                : !value_fits(n->fact, if_absent))
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
        if (strcmp(name, "detail") && !rules__fact_find(name, false))
            return load_fail(L, "reason: unknown placeholder \"{%s}\"", name);
    }
    return 0;
}

static char *dup_string(json_t *v) { return strdup(json_string_value(v)); }

static int load_roles(struct loader *L, json_t *roles, unsigned *mask)
{
    if (!json_is_array(roles) || json_array_size(roles) == 0)
        return load_fail(L, "applies.roles needs a non-empty list of roles (or [\"any\"])");
    *mask = 0;
    size_t i;
    json_t *v;
    json_array_foreach(roles, i, v)
    {
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
    json_object_foreach(a, key, v)
    {
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

static const char *const rule_members[] = {"id",        "component", "title",  "applies",
                                           "predicate", "severity",  "remedy", "reference",
                                           "reason",    NULL};

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
    json_object_foreach(j, key, v)
    {
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
    json_array_foreach(ref, i, v)
    {
        if (!json_is_string(v) || json_string_length(v) == 0)
            return load_fail(L, "reference: entries must be non-empty strings");
        len += json_string_length(v) + 2;
    }
    if (!(r->reference = malloc(len)))
        return -ENOMEM;
    r->reference[0] = '\0';
    json_array_foreach(ref, i, v)
    {
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
        if ((rc = rules__collect_rule_reads(c, &c->rules[i])))
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
    char *text = NULL, err[STORE_ERROR_SIZE];
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
