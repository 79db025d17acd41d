/*
 * rules_eval.c — evaluating a report against the compiled catalog (rules_evaluate).
 *
 * Evaluation walks each rule's tree of `struct node` with three-valued logic (holds / fails /
 * not reported) and pushes `not` down to the leaves, so every leaf knows whether it is asked to
 * hold or to fail and can say so in the reason ("DefaultSecureProtocols (Wow6432Node) not
 * reported", "dotnet.release is 378389, needs >= 394802"). Which leaves speak is decided by the
 * outcome: a failed `all` names its failing members, a passed `any` its passing ones.
 */
#include "rules_int.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---------------------------------------------------------------------------------------- */
/* Evaluation                                                                                 */

/* Text of each comparison as a requirement, and of its negation (for leaves under `not`). */
static const char *op_text(enum op op, bool neg)
{
    switch (op) {
    case OP_EQ:
    case OP_VER_EQ: return neg ? "not " : "";
    case OP_NE:
    case OP_VER_NE: return neg ? "" : "not ";
    case OP_LT:
    case OP_VER_LT: return neg ? ">= " : "< ";
    case OP_LE:
    case OP_VER_LE: return neg ? "> " : "<= ";
    case OP_GT:
    case OP_VER_GT: return neg ? "<= " : "> ";
    case OP_GE:
    case OP_VER_GE: return neg ? "< " : ">= ";
    default: return "?";
    }
}

enum tri { T_FAIL, T_HOLD, T_UNKNOWN };

/* Reason text under construction: fragments each start with "; "; cut at the cap. */
#define TEXT_CAP 2048
struct text {
    char buf[TEXT_CAP];
    size_t len;
    bool cut;
};

/* Appends n bytes, as vsnprintf would into the rest of the buffer: what fits, then cut. */
static void text_put(struct text *t, const char *s, size_t n)
{
    size_t room = TEXT_CAP - 1 - t->len;
    if (n > room) {
        n = room;
        t->cut = true;
    }
    memcpy(t->buf + t->len, s, n);
    t->len += n;
    t->buf[t->len] = '\0';
}

/* An integer in decimal, or in upper-case hex for %llX. */
static void text_put_int(struct text *t, unsigned long long u, bool negative, bool hex)
{
    char num[24];
    char *p = num + sizeof(num);
    unsigned base = hex ? 16 : 10;
    do {
        *--p = "0123456789ABCDEF"[u % base];
        u /= base;
    } while (u);
    if (negative)
        *--p = '-';
    text_put(t, p, (size_t)(num + sizeof(num) - p));
}

static unsigned long long magnitude(long long v)
{
    return v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
}

/*
 * Every verdict's reason is built from these fragments, several per rule and report, so ingest
 * spends its time here: the conversions the reasons use (%s, %.*s, %d, %ld, %lld, %zu, %llX) are
 * written directly, with the same bytes and the same cut as vsnprintf; a format with anything
 * else goes to vsnprintf.
 */
static bool text_fmt_simple(const char *fmt)
{
    for (const char *p = strchr(fmt, '%'); p; p = strchr(p + 1, '%')) {
        p++;
        if (*p == 's' || *p == 'd' || !strncmp(p, ".*s", 3) || !strncmp(p, "ld", 2) ||
            !strncmp(p, "zu", 2) || !strncmp(p, "lld", 3) || !strncmp(p, "llX", 3))
            continue;
        return false;
    }
    return true;
}

static void text_vadd(struct text *t, const char *fmt, va_list ap)
{
    const char *p = fmt;
    while (*p && !t->cut) {
        const char *pct = strchr(p, '%');
        if (!pct) {
            text_put(t, p, strlen(p));
            return;
        }
        text_put(t, p, (size_t)(pct - p));
        p = pct + 1;
        if (*p == 's') {
            const char *s = va_arg(ap, const char *);
            s = s ? s : "(null)";
            text_put(t, s, strlen(s));
            p += 1;
        } else if (*p == '.') { /* %.*s */
            int prec = va_arg(ap, int);
            const char *s = va_arg(ap, const char *);
            s = s ? s : "(null)";
            text_put(t, s, prec < 0 ? strlen(s) : strnlen(s, (size_t)prec));
            p += 3;
        } else if (*p == 'd') {
            int v = va_arg(ap, int);
            text_put_int(t, magnitude(v), v < 0, false);
            p += 1;
        } else if (*p == 'z') {
            text_put_int(t, va_arg(ap, size_t), false, false);
            p += 2;
        } else if (p[1] == 'd') { /* %ld */
            long v = va_arg(ap, long);
            text_put_int(t, magnitude(v), v < 0, false);
            p += 2;
        } else if (p[2] == 'd') { /* %lld */
            long long v = va_arg(ap, long long);
            text_put_int(t, magnitude(v), v < 0, false);
            p += 3;
        } else { /* %llX */
            text_put_int(t, va_arg(ap, unsigned long long), false, true);
            p += 3;
        }
    }
}

static void text_add(struct text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void text_add(struct text *t, const char *fmt, ...)
{
    if (!t || t->cut)
        return;
    va_list ap;
    va_start(ap, fmt);
    if (text_fmt_simple(fmt)) {
        text_vadd(t, fmt, ap);
        va_end(ap);
        return;
    }
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
        if (rules__version_parse(raw, &v, false)) {
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

/* snprintf(buf, size, "%s", s) without the format machinery: reasons quote values often. */
static void copy_cut(char *buf, size_t size, const char *s)
{
    size_t n = strlen(s);
    if (n > size - 1)
        n = size - 1;
    memcpy(buf, s, n);
    buf[n] = '\0';
}

static void format_json(const struct fact *f, json_t *v, char *buf, size_t size)
{
    if (json_is_integer(v)) {
        /* "%lld", or "0x%llX" for a non-negative hex fact, written directly */
        long long x = json_integer_value(v);
        bool hex = f->hex && x >= 0;
        char num[24];
        char *p = num + sizeof(num);
        *--p = '\0';
        unsigned long long u = magnitude(x);
        do {
            *--p = "0123456789ABCDEF"[u % (hex ? 16 : 10)];
            u /= hex ? 16 : 10;
        } while (u);
        if (hex) {
            *--p = 'x';
            *--p = '0';
        } else if (x < 0) {
            *--p = '-';
        }
        copy_cut(buf, size, p);
    } else if (json_is_real(v)) {
        snprintf(buf, size, "%g", json_real_value(v));
    } else if (json_is_string(v)) {
        clean(json_string_value(v), 80, buf, size);
    } else if (json_is_boolean(v)) {
        copy_cut(buf, size, json_is_true(v) ? "true" : "false");
    } else if (json_is_array(v)) {
        snprintf(buf, size, "a list of %zu", json_array_size(v));
    } else {
        copy_cut(buf, size, "(unexpected value)");
    }
}

static void format_val(const struct node *n, const struct val *v, char *buf, size_t size)
{
    if (v->disp)
        copy_cut(buf, size, v->disp);
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
    text_add(E->text, "; %s not reported", rules__fact_label(n->fact));
    return T_UNKNOWN;
}

static enum tri unexpected(const struct eval *E, const struct node *n, const char *what)
{
    text_add(E->text, "; %s %s", rules__fact_label(n->fact), what);
    return T_UNKNOWN;
}

static bool num_of(json_t *j, double *out)
{
    if (!json_is_number(j))
        return false;
    *out = json_number_value(j);
    return true;
}

/* Whether `c`, the fact's order against the rule's value (<0, 0, >0), satisfies the comparison
 * `op`: one table for the numeric and the version operators. */
static bool order_holds(enum op op, int c)
{
    switch (op) {
    case OP_EQ:
    case OP_VER_EQ: return c == 0;
    case OP_NE:
    case OP_VER_NE: return c != 0;
    case OP_LT:
    case OP_VER_LT: return c < 0;
    case OP_LE:
    case OP_VER_LE: return c <= 0;
    case OP_GT:
    case OP_VER_GT: return c > 0;
    default: return c >= 0; /* OP_GE, OP_VER_GE */
    }
}

static enum tri eval_compare(const struct eval *E, const struct node *n, bool neg)
{
    struct val v;
    if (!fact_value(E, n, &v))
        return not_reported(E, n);
    bool raw = false;
    switch (n->fact->type) {
    case F_NUM: {
        double a, b = json_number_value(n->value);
        if (!num_of(v.j, &a))
            return unexpected(E, n, "is not a number");
        raw = order_holds(n->op, (a > b) - (a < b));
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
    default: return unexpected(E, n, "cannot be compared");
    }
    enum tri r = flip(raw ? T_HOLD : T_FAIL, neg);
    if (!E->text || E->text->cut)
        return r; /* nothing more can be said: skip formatting the values */
    const char *dflt = v.j == n->if_absent && n->if_absent ? " (absent: OS default)" : "";
    char obs[160], want[128];
    format_val(n, &v, obs, sizeof(obs));
    if (r == T_HOLD) {
        text_add(E->text, "; %s is %s%s", rules__fact_label(n->fact), obs, dflt);
    } else {
        format_json(n->fact, n->value, want, sizeof(want)); /* only a failure says what it needs */
        text_add(E->text, "; %s is %s%s, needs %s%s", rules__fact_label(n->fact), obs, dflt,
                 op_text(n->op, neg), want);
    }
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
    if (rules__version_parse(v.s, a, false)) {
        char c[64];
        text_add(E->text, "; %s is \"%s\", not a version", rules__fact_label(n->fact),
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
            raw = rules__version_cmp(&a, &n->vers[i]) == 0;
        enum tri r = flip(raw ? T_HOLD : T_FAIL, neg);
        if (raw)
            text_add(E->text, "; %s is %s (listed)", rules__fact_label(n->fact), obs);
        else
            text_add(E->text, "; %s is %s (not listed)", rules__fact_label(n->fact), obs);
        return r;
    }
    raw = order_holds(n->op, rules__version_cmp(&a, &n->ver));
    enum tri r = flip(raw ? T_HOLD : T_FAIL, neg);
    if (r == T_HOLD)
        text_add(E->text, "; %s is %s", rules__fact_label(n->fact), obs);
    else
        text_add(E->text, "; %s is %s, needs %s%s", rules__fact_label(n->fact), obs,
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
        text_add(E->text, "; %s is %s", rules__fact_label(n->fact), obs);
    else if (r == T_HOLD)
        text_add(E->text, "; %s is %s (%s 0x%llX)", rules__fact_label(n->fact), obs,
                 has ? "includes" : "without", mask);
    else
        text_add(E->text, "; %s is %s, %s 0x%llX", rules__fact_label(n->fact), obs,
                 has ? "must not include" : "lacks", mask);
    return r;
}

static bool list_has(json_t *list, const char *s)
{
    size_t i;
    json_t *v;
    json_array_foreach(list, i, v)
    {
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
    json_object_foreach(ni, key, st)
    {
        if (strcasecmp(key, kb))
            continue;
        if (json_is_integer(st))
            text_add(E->text, " (its package is %s, CurrentState 0x%llX: not installed)",
                     cbs_state_name(json_integer_value(st)), (long long)json_integer_value(st));
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
        json_array_foreach(n->value, i, w)
        {
            if (!found && list_has(v.j, json_string_value(w)))
                found = json_string_value(w);
        }
    }
    enum tri r = flip(found ? T_HOLD : T_FAIL, neg);
    if (found) {
        text_add(E->text, "; %s include %s", rules__fact_label(n->fact), found);
    } else if (n->op == OP_CONTAINS) {
        text_add(E->text, "; %s lack %s", rules__fact_label(n->fact), json_string_value(n->value));
        not_installed_note(E, n, json_string_value(n->value));
    } else {
        text_add(E->text, "; %s lack all of", rules__fact_label(n->fact));
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
        text_add(E->text, "; %s is \"%s\"", rules__fact_label(n->fact), c);
    else
        text_add(E->text, "; %s is \"%s\", %s \"%s\"", rules__fact_label(n->fact), c,
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
        text_add(E->text, "; %s not reported", rules__fact_label(n->fact));
    } else {
        char obs[160];
        format_val(n, &v, obs, sizeof(obs));
        text_add(E->text, "; %s is %s%s", rules__fact_label(n->fact), obs,
                 r == T_HOLD ? "" : ", needs to be absent");
    }
    return r;
}

static enum tri eval_protocol(const struct eval *E, const struct node *n, bool neg)
{
    json_t *side = json_object_get(
        json_object_get(json_object_get(E->report, "schannel"), rules__proto_keys[n->proto]),
        n->server ? "server" : "client");
    json_t *en = json_object_get(side, "enabled"),
           *dbd = json_object_get(side, "disabled_by_default");
    bool has_en = json_is_integer(en), has_dbd = json_is_integer(dbd);
    json_t *b = json_object_get(json_object_get(E->report, "os"), "build");
    const char *Side = n->server ? "Server" : "Client";
    if ((!has_en || (!has_dbd && !n->explicit_use)) && !json_is_integer(b)) {
        text_add(E->text,
                 "; SCHANNEL %s\\%s: OS build not reported (needed for the default of "
                 "an absent value)",
                 rules__proto_names[n->proto], Side);
        return T_UNKNOWN;
    }
    long build = json_is_integer(b) ? (long)json_integer_value(b) : 0;
    bool def = rules__protocol_default_on(n->proto, build);
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
             rules__proto_names[n->proto], Side, on ? "on" : "off",
             n->explicit_use ? " for applications that ask for it" : "", e, d);
    if (!has_en || (!has_dbd && !n->explicit_use))
        text_add(E->text, "; build %ld default: %s", build, def ? "on" : "off");
    text_add(E->text, ")%s", r == T_HOLD ? "" : neg ? ", needs off" : ", needs on");
    return r;
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
        if (rules__version_cmp(&a, &n->branches[i].from) >= 0 &&
            rules__version_cmp(&a, &n->branches[i].below) < 0)
            br = &n->branches[i];
    bool raw;
    if (!br) {
        raw = n->otherwise_holds;
        text_add(E->text, "; %s is %s, in no listed branch", rules__fact_label(n->fact), obs);
    } else if (!br->has_min) {
        raw = false;
        text_add(E->text, "; %s is %s: %s has no TLS 1.2 build", rules__fact_label(n->fact), obs,
                 br->name);
    } else {
        raw = rules__version_cmp(&a, &br->min) >= 0;
        if (raw)
            text_add(E->text, "; %s is %s (%s, at or above %s)", rules__fact_label(n->fact), obs,
                     br->name, br->min_text);
        else
            text_add(E->text, "; %s is %s, below %s, the first TLS 1.2 build of %s",
                     rules__fact_label(n->fact), obs, br->min_text, br->name);
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
        bool keep =
            (result == T_HOLD) == (r[i] == T_HOLD) && !(result == T_HOLD && !conj && kept_hold);
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
                 rules__fact_label(n->fact), json_array_size(list), MAX_ELEMS);
        return T_UNKNOWN;
    }
    json_array_foreach(list, i, elem)
    {
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
            text_add(E->text, " cannot tell whether it is concerned (%s)",
                     "a filtered fact "
                     "is not reported");
        /* "NAME:; fragment" -> "NAME: fragment" */
        if (E->text && !E->text->cut && E->text->len >= body + 2 && E->text->buf[body] == ';') {
            memmove(E->text->buf + body, E->text->buf + body + 1, E->text->len - body - 1);
            E->text->len--;
            E->text->buf[E->text->len] = '\0';
        }
        k++;
    }
    if (k == 0) {
        bool holds = neg ? !n->none_holds : n->none_holds;
        text_add(E->text, "; no %s%s", n->where ? "concerned entry in " : "entry in ",
                 rules__fact_label(n->fact));
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
    case OP_ALL:
    case OP_ANY: return eval_list(E, n, neg);
    case OP_NOT: return eval_node(E, n->kids[0], !neg);
    case OP_EQ:
    case OP_NE:
    case OP_LT:
    case OP_LE:
    case OP_GT:
    case OP_GE: return eval_compare(E, n, neg);
    case OP_VER_EQ:
    case OP_VER_NE:
    case OP_VER_LT:
    case OP_VER_LE:
    case OP_VER_GT:
    case OP_VER_GE:
    case OP_VER_IN: return eval_version(E, n, neg);
    case OP_HAS_BITS: return eval_bits(E, n, neg);
    case OP_CONTAINS:
    case OP_CONTAINS_ANY: return eval_contains(E, n, neg);
    case OP_TEXT_CONTAINS: return eval_text(E, n, neg);
    case OP_IS_NULL:
    case OP_PRESENT: return eval_presence(E, n, neg);
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
                const struct fact *f = rules__fact_find(name, false);
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
            text_add(why, "; OS build not reported (the rule covers builds %ld..%ld)", r->build_min,
                     r->build_max);
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
