/*
 * regfile.c — the `regfile` registry backend: parses files written by `reg export` and regedit
 * into an in-memory registry, layered in order, and answers regview_backend.h queries from it.
 *
 * Why a whole in-memory registry rather than a lookup over the text: several exports are layered
 * ([-KEY] and "v"=- delete what earlier files set), and facts read the same keys many times, so
 * the files are applied once into a tree and then queried. The tree mirrors the registry: a key
 * has a parent, children and values; values hold the registry's own bytes (strings as UTF-16LE
 * with their NUL), so regview.c decodes them exactly as it decodes the native registry.
 *
 * Lookups are hashed: one table maps (parent key, folded child name) to a key and one maps
 * (key, folded value name) to a value, so reading a path costs one probe per component however
 * many keys the exports hold. Names fold case-insensitively (regview_fold); each key keeps the
 * spelling it was first created with for listing.
 *
 * Parsing is strict and total: text is decoded (UTF-16LE with BOM, UTF-8, or Windows-1252) with
 * NULs, unpaired surrogates and a cut last character refused; then every line must be a key, a
 * value, a comment or blank. The first fault stops everything with "FILE:LINE: reason" and the
 * whole view is freed: a caller never sees half a registry. Everything is bounded: 64 MiB per
 * file, 1 MiB per value, Windows' name lengths and key depth.
 */
#include "platform.h"
#include "regview.h"
#include "regview_backend.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define REGFILE_MAX_FILE_BYTES ((size_t)64 << 20)

#ifndef O_CLOEXEC
#define O_CLOEXEC 0
#endif
#ifndef O_BINARY
#define O_BINARY 0 /* Windows (MinGW) opens in text mode without it */
#endif

static const char HEADER_V5[] = "Windows Registry Editor Version 5.00";
static const char HEADER_V4[] = "REGEDIT4";

/* ---- the in-memory registry ---- */

/*
 * What both hash tables chain. Keys are found by their whole folded path in one probe: the
 * hash covers the hive's index as one digit followed by "\\NAME" per level
 * ("0\\SOFTWARE\\MICROSOFT"), `owner` is NULL and `folded` is the key's own folded name (the
 * path is checked by walking up the parents). Values are found by (owner key, folded name).
 * The folded text lives in the same allocation as the key or value.
 */
struct rf_node {
    struct rf_node *hnext;
    const void *owner;
    uint64_t hash;
    const char *folded;
    size_t flen;
};

struct rf_table {
    struct rf_node **buckets;
    size_t nbuckets;
    size_t count;
};

struct rf_key;

struct rf_value {
    struct rf_node node; /* first: the table hands back nodes */
    struct rf_key *key;
    size_t slot;      /* index in key->values */
    const char *name; /* as spelled in the file; "" is the default value */
    uint32_t type;
    size_t len;
    unsigned char *data;
    /* then: folded name, NUL, name, NUL */
};

struct rf_key {
    struct rf_node node;
    struct rf_key *parent; /* NULL for a hive root */
    size_t slot;           /* index in parent->children */
    const char *name;      /* this level's name, first spelling seen */
    struct rf_key **children;
    size_t nchildren, cchildren;
    struct rf_value **values;
    size_t nvalues, cvalues;
    /* then: folded path, NUL, name, NUL */
};

struct regfile {
    struct regview base; /* first: the generic view casts */
    struct rf_key *roots[REGVIEW_HIVES];
    struct rf_table keys;
    struct rf_table values;
    size_t max_entries; /* keys + values; a deep [KEY] line makes hundreds of keys */
};

/* Room for `more` new keys or values? */
static bool room_for(const struct regfile *rf, size_t more)
{
    return rf->keys.count + rf->values.count + more <= rf->max_entries;
}

/*
 * FNV-1a over the owner pointer, then the folded text. It is incremental on purpose: the hashes
 * of every prefix of a key path ("0\\A", "0\\A\\B", ...) come out of one pass, so finding
 * the deepest existing parent of a new key costs one pass over its path, not one per level.
 */
static uint64_t rf_hash_start(const void *owner)
{
    uint64_t h = 1469598103934665603ull;
    uintptr_t o = (uintptr_t)owner;
    for (size_t i = 0; i < sizeof(o); i++) {
        h ^= (o >> (8 * i)) & 0xFF;
        h *= 1099511628211ull;
    }
    return h;
}

static uint64_t rf_hash_feed(uint64_t h, const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ull;
    }
    return h;
}

/* The table masks the low bits: fold the better-mixed high ones in. */
static uint64_t rf_hash_end(uint64_t h) { return h ^ (h >> 29); }

static uint64_t rf_hash(const void *owner, const char *folded, size_t len)
{
    return rf_hash_end(rf_hash_feed(rf_hash_start(owner), folded, len));
}

static struct rf_node *table_find(const struct rf_table *t, const void *owner, const char *folded,
                                  size_t flen, uint64_t hash)
{
    if (t->nbuckets == 0)
        return NULL;
    for (struct rf_node *n = t->buckets[hash & (t->nbuckets - 1)]; n; n = n->hnext) {
        if (n->hash == hash && n->owner == owner && n->flen == flen &&
            memcmp(n->folded, folded, flen) == 0)
            return n;
    }
    return NULL;
}

/* Inserts `node`; node->hash must already be rf_hash(owner, folded, flen). */
static int table_insert(struct rf_table *t, struct rf_node *node)
{
    if (t->count >= t->nbuckets) {
        size_t nb = t->nbuckets ? t->nbuckets * 2 : 64;
        struct rf_node **b = calloc(nb, sizeof(*b));
        if (!b)
            return -ENOMEM;
        for (size_t i = 0; i < t->nbuckets; i++) {
            struct rf_node *n = t->buckets[i];
            while (n) {
                struct rf_node *next = n->hnext;
                n->hnext = b[n->hash & (nb - 1)];
                b[n->hash & (nb - 1)] = n;
                n = next;
            }
        }
        free(t->buckets);
        t->buckets = b;
        t->nbuckets = nb;
    }
    struct rf_node **head = &t->buckets[node->hash & (t->nbuckets - 1)];
    node->hnext = *head;
    *head = node;
    t->count++;
    return 0;
}

static void table_remove(struct rf_table *t, struct rf_node *node)
{
    struct rf_node **p = &t->buckets[node->hash & (t->nbuckets - 1)];
    while (*p && *p != node)
        p = &(*p)->hnext;
    if (*p) {
        *p = node->hnext;
        t->count--;
    }
}

/* Room for one more child / value. */
static int grow_children(struct rf_key *k)
{
    if (k->nchildren < k->cchildren)
        return 0;
    size_t nc = k->cchildren ? k->cchildren * 2 : 4;
    struct rf_key **a = realloc(k->children, nc * sizeof(*a));
    if (!a)
        return -ENOMEM;
    k->children = a;
    k->cchildren = nc;
    return 0;
}

static int grow_values(struct rf_key *k)
{
    if (k->nvalues < k->cvalues)
        return 0;
    size_t nc = k->cvalues ? k->cvalues * 2 : 4;
    struct rf_value **a = realloc(k->values, nc * sizeof(*a));
    if (!a)
        return -ENOMEM;
    k->values = a;
    k->cvalues = nc;
    return 0;
}

/* Frees `k` and everything below it; with `untable`, first takes each from the hash tables. */
static void key_destroy(struct regfile *rf, struct rf_key *k, bool untable)
{
    for (size_t i = 0; i < k->nchildren; i++)
        key_destroy(rf, k->children[i], untable);
    for (size_t i = 0; i < k->nvalues; i++) {
        if (untable)
            table_remove(&rf->values, &k->values[i]->node);
        free(k->values[i]->data);
        free(k->values[i]);
    }
    if (untable && k->parent)
        table_remove(&rf->keys, &k->node);
    free(k->children);
    free(k->values);
    free(k);
}

/* [-KEY]: unlinks `k` from its parent and frees its subtree. */
static void key_delete(struct regfile *rf, struct rf_key *k)
{
    struct rf_key *parent = k->parent;
    struct rf_key *last = parent->children[--parent->nchildren];
    parent->children[k->slot] = last;
    last->slot = k->slot;
    key_destroy(rf, k, true);
}

/* A key block: the struct, then the folded name (a root's: its hive digit) and the name. */
static struct rf_key *key_new(const char *folded, size_t flen, const char *name, size_t nlen)
{
    struct rf_key *k = calloc(1, sizeof(*k) + flen + nlen + 2);
    if (!k)
        return NULL;
    char *f = (char *)(k + 1);
    memcpy(f, folded, flen);
    f[flen] = '\0';
    memcpy(f + flen + 1, name, nlen);
    f[flen + 1 + nlen] = '\0';
    k->node.folded = f;
    k->node.flen = flen;
    k->name = f + flen + 1;
    return k;
}

/* Is `k` the key at folded path `fpath`? Compares level by level from the leaf up, so a key
 * stores only its own name (a full path per key would cost memory quadratic in depth). */
static bool key_is(const struct rf_key *k, const char *fpath, size_t flen)
{
    size_t pos = flen;
    for (; k->parent; k = k->parent) {
        size_t n = k->node.flen;
        if (pos < n + 2 || fpath[pos - n - 1] != '\\' ||
            memcmp(fpath + pos - n, k->node.folded, n) != 0)
            return false;
        pos -= n + 1;
    }
    return pos == 1 && fpath[0] == k->node.folded[0];
}

/* One probe: keys are hashed by their whole folded path. */
static struct rf_key *key_find(struct regfile *rf, const char *fpath, size_t flen, uint64_t hash)
{
    const struct rf_table *t = &rf->keys;
    if (t->nbuckets == 0)
        return NULL;
    for (struct rf_node *n = t->buckets[hash & (t->nbuckets - 1)]; n; n = n->hnext) {
        if (n->hash == hash && key_is((const struct rf_key *)n, fpath, flen))
            return (struct rf_key *)n;
    }
    return NULL;
}

/* Makes `name` (nlen bytes, `folded` its folded form) a child of `parent`; `hash` is the hash
 * of the child's whole folded path. */
static int key_add(struct regfile *rf, struct rf_key *parent, uint64_t hash, const char *folded,
                   const char *name, size_t nlen, struct rf_key **out)
{
    struct rf_key *k = key_new(folded, nlen, name, nlen);
    if (k)
        k->node.hash = hash;
    if (!k || grow_children(parent) < 0 || table_insert(&rf->keys, &k->node) < 0) {
        free(k);
        return -ENOMEM;
    }
    k->parent = parent;
    k->slot = parent->nchildren;
    parent->children[parent->nchildren++] = k;
    *out = k;
    return 0;
}

/*
 * The key at folded path `fpath` under hive root `root`, created with its missing parents.
 * `orig` is the path as written after the hive ("\\Software\\X"): byte i of orig matches byte
 * i + 1 of fpath, since folding keeps lengths. `ends` holds the end offset in fpath of each of
 * the `depth` levels.
 */
static int key_ensure(struct regfile *rf, struct rf_key *root, const char *fpath, const char *orig,
                      const size_t *ends, size_t depth, struct rf_key **out)
{
    uint64_t hashes[REGVIEW_MAX_DEPTH];
    uint64_t h = rf_hash_start(NULL);
    for (size_t d = 0, from = 0; d < depth; from = ends[d++]) {
        h = rf_hash_feed(h, fpath + from, ends[d] - from);
        hashes[d] = rf_hash_end(h);
    }
    size_t d = depth;
    struct rf_key *k = NULL;
    while (d > 0 && !(k = key_find(rf, fpath, ends[d - 1], hashes[d - 1])))
        d--; /* usually one or two probes: the parent of a new key exists */
    if (!k)
        k = root;
    if (!room_for(rf, depth - d))
        return -E2BIG;
    for (; d < depth; d++) {
        size_t start = d == 0 ? 1 : ends[d - 1];
        /* orig[start - 1] is the '\\' before the name; the name runs to ends[d] - 1 in orig. */
        int rc =
            key_add(rf, k, hashes[d], fpath + start + 1, orig + start, ends[d] - start - 1, &k);
        if (rc < 0)
            return rc;
    }
    *out = k;
    return 0;
}

/* A value block: the struct, then the folded name and the name, each NUL-terminated. */
static struct rf_value *value_find(struct regfile *rf, struct rf_key *k, const char *name,
                                   size_t len, int *rc)
{
    char small[256];
    char *folded = len <= sizeof(small) ? small : malloc(len);
    *rc = 0;
    if (!folded) {
        *rc = -ENOMEM;
        return NULL;
    }
    regview_fold(name, len, folded);
    struct rf_node *n = table_find(&rf->values, k, folded, len, rf_hash(k, folded, len));
    if (folded != small)
        free(folded);
    return (struct rf_value *)n;
}

/* Sets a value, taking ownership of `data` (freed on failure too). */
static int value_set(struct regfile *rf, struct rf_key *k, const char *name, size_t nlen,
                     uint32_t type, unsigned char *data, size_t len)
{
    int rc;
    struct rf_value *val = value_find(rf, k, name, nlen, &rc);
    if (rc < 0) {
        free(data);
        return rc;
    }
    if (val) {
        free(val->data);
        val->type = type;
        val->data = data;
        val->len = len;
        return 0;
    }
    if (!room_for(rf, 1)) {
        free(data);
        return -E2BIG;
    }
    val = calloc(1, sizeof(*val) + 2 * nlen + 2);
    if (!val) {
        free(data);
        return -ENOMEM;
    }
    char *f = (char *)(val + 1);
    regview_fold(name, nlen, f);
    f[nlen] = '\0';
    memcpy(f + nlen + 1, name, nlen);
    f[2 * nlen + 1] = '\0';
    val->node.owner = k;
    val->node.folded = f;
    val->node.flen = nlen;
    val->node.hash = rf_hash(k, f, nlen);
    val->name = f + nlen + 1;
    if (grow_values(k) < 0 || table_insert(&rf->values, &val->node) < 0) {
        free(val);
        free(data);
        return -ENOMEM;
    }
    val->key = k;
    val->type = type;
    val->data = data;
    val->len = len;
    val->slot = k->nvalues;
    k->values[k->nvalues++] = val;
    return 0;
}

static int value_delete(struct regfile *rf, struct rf_key *k, const char *name, size_t nlen)
{
    int rc;
    struct rf_value *val = value_find(rf, k, name, nlen, &rc);
    if (!val)
        return rc;
    struct rf_value *last = k->values[--k->nvalues];
    k->values[val->slot] = last;
    last->slot = val->slot;
    table_remove(&rf->values, &val->node);
    free(val->data);
    free(val);
    return 0;
}

/* Resolves a caller's path ("HKLM\\A\\B") with one hash probe. A path no key can have (empty
 * level, trailing '\\', unknown hive) is simply absent. */
static int key_resolve(struct regfile *rf, const char *path, struct rf_key **out)
{
    const char *sep = strchr(path, '\\');
    size_t hlen = sep ? (size_t)(sep - path) : strlen(path);
    int hive = regview_hive_index(path, hlen);
    if (hive < 0)
        return -ENOENT;
    if (!sep) {
        *out = rf->roots[hive];
        return 0;
    }
    size_t rlen = strlen(sep);
    char small[512];
    char *fpath = rlen + 1 <= sizeof(small) ? small : malloc(rlen + 1);
    if (!fpath)
        return -ENOMEM;
    fpath[0] = (char)('0' + hive);
    regview_fold(sep, rlen, fpath + 1);
    struct rf_key *k = key_find(rf, fpath, rlen + 1, rf_hash(NULL, fpath, rlen + 1));
    if (fpath != small)
        free(fpath);
    if (!k)
        return -ENOENT;
    *out = k;
    return 0;
}

/* ---- backend operations ---- */

static int rf_get_raw(struct regview *v, const char *key, const char *name, struct regview_raw *raw)
{
    struct regfile *rf = (struct regfile *)v;
    struct rf_key *k;
    int rc = key_resolve(rf, key, &k);
    if (rc < 0)
        return rc;
    struct rf_value *val = value_find(rf, k, name, strlen(name), &rc);
    if (!val)
        return rc < 0 ? rc : -ENOENT;
    raw->type = val->type;
    raw->data = val->data;
    raw->len = val->len;
    raw->owned = NULL;
    return 0;
}

static int rf_list(struct regview *v, const char *key, enum regview_list_kind kind, char ***out)
{
    struct regfile *rf = (struct regfile *)v;
    struct rf_key *k;
    int rc = key_resolve(rf, key, &k);
    if (rc < 0)
        return rc;
    size_t n = kind == REGVIEW_LIST_SUBKEYS ? k->nchildren : k->nvalues;
    char **strv = calloc(n + 1, sizeof(*strv));
    if (!strv)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        const char *name = kind == REGVIEW_LIST_SUBKEYS ? k->children[i]->name : k->values[i]->name;
        size_t len = strlen(name) + 1;
        strv[i] = malloc(len);
        if (strv[i])
            memcpy(strv[i], name, len);
        else {
            regview_strv_free(strv);
            return -ENOMEM;
        }
    }
    *out = strv;
    return 0;
}

static void rf_free(struct regview *v)
{
    struct regfile *rf = (struct regfile *)v;
    for (int i = 0; i < REGVIEW_HIVES; i++) {
        if (rf->roots[i])
            key_destroy(rf, rf->roots[i], false);
    }
    free(rf->keys.buckets);
    free(rf->values.buckets);
    free(rf);
}

static const struct regview_ops regfile_ops = {
    .get_raw = rf_get_raw,
    .list = rf_list,
    .free = rf_free,
};

static struct regfile *regfile_new(size_t max_entries)
{
    struct regfile *rf = calloc(1, sizeof(*rf));
    if (!rf)
        return NULL;
    rf->base.ops = &regfile_ops;
    rf->max_entries = max_entries;
    for (int i = 0; i < REGVIEW_HIVES; i++) {
        const char *name = regview_hive_name(i);
        char digit = (char)('0' + i);
        rf->roots[i] = key_new(&digit, 1, name, strlen(name));
        if (!rf->roots[i]) {
            rf_free(&rf->base);
            return NULL;
        }
    }
    return rf;
}

/* ---- decoding the file's text ---- */

/* Does the first line of `d` (stride 1: bytes, 2: UTF-16LE units) read `hdr`, followed only by
 * spaces or tabs? */
static bool header_is(const unsigned char *d, size_t n, size_t stride, const char *hdr)
{
    size_t units = n / stride, i = 0;
    for (; hdr[i]; i++) {
        if (i >= units || d[i * stride] != (unsigned char)hdr[i] || (stride == 2 && d[i * 2 + 1]))
            return false;
    }
    for (; i < units; i++) {
        unsigned c = d[i * stride] | (stride == 2 ? (unsigned)d[i * 2 + 1] << 8 : 0u);
        if (c == '\r' || c == '\n')
            return true;
        if (c != ' ' && c != '\t')
            return false;
    }
    return true;
}

/* Windows-1252 0x80..0x9F; the five unassigned bytes map to C1 controls, as Windows maps them. */
static const uint16_t cp1252_high[32] = {
    0x20AC, 0x0081, 0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021, 0x02C6, 0x2030, 0x0160,
    0x2039, 0x0152, 0x008D, 0x017D, 0x008F, 0x0090, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022,
    0x2013, 0x2014, 0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0x009D, 0x017E, 0x0178,
};

static uint32_t cp1252(unsigned char b)
{
    return b >= 0x80 && b < 0xA0 ? cp1252_high[b - 0x80] : b;
}

/* Counts line breaks as the parser does: CRLF, LF or a lone CR each end one line. */
struct line_counter {
    unsigned long line;
    bool after_cr;
};

static void count_char(struct line_counter *lc, uint32_t c)
{
    if (c == '\n') {
        if (!lc->after_cr)
            lc->line++;
    } else if (c == '\r') {
        lc->line++;
    }
    lc->after_cr = c == '\r';
}

/* Length of the valid UTF-8 sequence at s[i..n), or 0 if it is not one (overlong, surrogate,
 * above U+10FFFF, truncated). */
static size_t utf8_valid_seq(const unsigned char *s, size_t n, size_t i, uint32_t *cp)
{
    unsigned char c = s[i];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    size_t len;
    uint32_t v, min;
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2, v = c & 0x1F, min = 0x80;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3, v = c & 0x0F, min = 0x800;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4, v = c & 0x07, min = 0x10000;
    } else {
        return 0;
    }
    if (i + len > n)
        return 0;
    for (size_t k = 1; k < len; k++) {
        if ((s[i + k] & 0xC0) != 0x80)
            return 0;
        v = (v << 6) | (s[i + k] & 0x3F);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF))
        return 0;
    *cp = v;
    return len;
}

/*
 * Decodes the file into NUL-terminated UTF-8 without BOM. Sets *v4 from the header line.
 * Returns 0, -EINVAL with "FILE:LINE: reason", or -ENOMEM.
 */
static int decode_text(const char *file, const unsigned char *d, size_t n, char **text,
                       size_t *tlen, bool *v4, char *err, size_t errsize)
{
    struct line_counter lc = {1, false};
    bool utf16 = n >= 2 && d[0] == 0xFF && d[1] == 0xFE;
    bool bom8 = !utf16 && n >= 3 && d[0] == 0xEF && d[1] == 0xBB && d[2] == 0xBF;
    size_t skip = utf16 ? 2 : bom8 ? 3 : 0;
    const unsigned char *s = d + skip;
    size_t sn = n - skip, stride = utf16 ? 2 : 1;

    if (header_is(s, sn, stride, HEADER_V5)) {
        *v4 = false;
    } else if (header_is(s, sn, stride, HEADER_V4)) {
        *v4 = true;
    } else {
        platform_set_err(err, errsize, "%s:1: not a registry export (expected \"%s\" or \"%s\")",
                         file, HEADER_V5, HEADER_V4);
        return -EINVAL;
    }

    /* UTF-16: a unit becomes at most 3 bytes (a pair, 4). 8-bit: a byte at most 3 (cp1252). */
    char *out = malloc((utf16 ? sn / 2 : sn) * 3 + 1);
    if (!out) {
        platform_set_err(err, errsize, "%s: out of memory", file);
        return -ENOMEM;
    }
    size_t w = 0;
    if (utf16) {
        size_t units = sn / 2;
        for (size_t i = 0; i < units; i++) {
            uint32_t u = s[2 * i] | ((uint32_t)s[2 * i + 1] << 8);
            if (u >= 0xD800 && u <= 0xDBFF && i + 1 < units) {
                uint32_t lo = s[2 * i + 2] | ((uint32_t)s[2 * i + 3] << 8);
                if (lo >= 0xDC00 && lo <= 0xDFFF) {
                    u = 0x10000 + ((u - 0xD800) << 10) + (lo - 0xDC00);
                    i++;
                }
            }
            if (u >= 0xD800 && u <= 0xDFFF) {
                platform_set_err(err, errsize, "%s:%lu: unpaired UTF-16 surrogate 0x%04X", file,
                                 lc.line, (unsigned)u);
                goto fail;
            }
            if (u == 0) {
                platform_set_err(err, errsize, "%s:%lu: NUL character in the text", file, lc.line);
                goto fail;
            }
            count_char(&lc, u);
            w += regview_utf8_put(u, out + w);
        }
        if (sn % 2) {
            platform_set_err(
                err, errsize,
                "%s:%lu: odd byte count (%zu) in a UTF-16LE file: the last character is cut", file,
                lc.line, n);
            goto fail;
        }
    } else {
        /* UTF-8 when the whole text is valid UTF-8 (or carries its BOM); else Windows-1252,
         * which is what regedit wrote REGEDIT4 files in. */
        bool is_utf8 = true;
        for (size_t i = 0; i < sn;) {
            uint32_t cp;
            size_t len = utf8_valid_seq(s, sn, i, &cp);
            if (!len) {
                is_utf8 = false;
                if (bom8) {
                    platform_set_err(err, errsize,
                                     "%s:%lu: invalid UTF-8 after a UTF-8 byte order mark", file,
                                     lc.line);
                    goto fail;
                }
                break;
            }
            count_char(&lc, cp);
            i += len;
        }
        lc = (struct line_counter){1, false};
        for (size_t i = 0; i < sn;) {
            uint32_t cp;
            size_t len = is_utf8 ? utf8_valid_seq(s, sn, i, &cp) : 1;
            if (!is_utf8)
                cp = cp1252(s[i]);
            if (cp == 0) {
                platform_set_err(err, errsize, "%s:%lu: NUL byte in the text", file, lc.line);
                goto fail;
            }
            count_char(&lc, cp);
            w += regview_utf8_put(cp, out + w);
            i += len;
        }
    }
    out[w] = '\0';
    *text = out;
    *tlen = w;
    return 0;
fail:
    free(out);
    return -EINVAL;
}

/* ---- parsing ---- */

struct rf_parser {
    struct regfile *rf;
    const char *file;
    const char *text;
    size_t len;
    size_t pos;         /* start of the next line */
    unsigned long line; /* number of the line last read */
    bool v4;            /* REGEDIT4: hex(1)/(2)/(7) bytes are Windows-1252 */
    struct rf_key *cur; /* key the value lines apply to; NULL before any, or after [-KEY] */
    bool cur_deleted;
    char *err;
    size_t errsize;
};

static int perr(struct rf_parser *p, const char *fmt, ...) PLATFORM_PRINTF(2, 3);

static int perr(struct rf_parser *p, const char *fmt, ...)
{
    if (p->err && p->errsize) {
        int n = snprintf(p->err, p->errsize, "%s:%lu: ", p->file, p->line);
        if (n >= 0 && (size_t)n < p->errsize) {
            va_list ap;
            va_start(ap, fmt);
            vsnprintf(p->err + n, p->errsize - (size_t)n, fmt, ap);
            va_end(ap);
        }
    }
    return -EINVAL;
}

static int pnomem(struct rf_parser *p)
{
    platform_set_err(p->err, p->errsize, "%s: out of memory", p->file);
    return -ENOMEM;
}

static int ptoomany(struct rf_parser *p)
{
    perr(p, "over %zu keys and values in all the files together", p->rf->max_entries);
    return -E2BIG;
}

static bool next_line(struct rf_parser *p, const char **s, size_t *n)
{
    if (p->pos >= p->len)
        return false;
    const char *start = p->text + p->pos;
    size_t i = 0, left = p->len - p->pos;
    while (i < left && start[i] != '\r' && start[i] != '\n')
        i++;
    *s = start;
    *n = i;
    if (i < left)
        i += (start[i] == '\r' && i + 1 < left && start[i + 1] == '\n') ? 2 : 1;
    p->pos += i;
    p->line++;
    return true;
}

static size_t skip_ws(const char *s, size_t n, size_t i)
{
    while (i < n && (s[i] == ' ' || s[i] == '\t'))
        i++;
    return i;
}

/* Nothing but blanks and perhaps a ;comment from i to the end of the line? */
static bool rest_is_empty(const char *s, size_t n, size_t i)
{
    i = skip_ws(s, n, i);
    return i == n || s[i] == ';';
}

/* The character at s[i] for a message: the whole UTF-8 sequence, or \xNN for a control. */
static const char *show_char(const char *s, size_t n, size_t i, char out[8])
{
    unsigned char c = (unsigned char)s[i];
    if (c < 0x20 || c == 0x7F) {
        snprintf(out, 8, "\\x%02X", c);
        return out;
    }
    size_t len = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
    if (len > n - i)
        len = n - i;
    memcpy(out, s + i, len);
    out[len] = '\0';
    return out;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* A byte buffer that refuses to grow past the value cap. */
struct rf_buf {
    unsigned char *d;
    size_t len, cap;
    size_t max; /* 0: REGVIEW_MAX_VALUE_BYTES */
};

static int buf_put(struct rf_buf *b, const void *data, size_t n)
{
    size_t max = b->max ? b->max : REGVIEW_MAX_VALUE_BYTES;
    if (n > max - b->len)
        return -E2BIG;
    if (b->len + n > b->cap) {
        size_t nc = b->cap ? b->cap : 64;
        while (nc < b->len + n)
            nc *= 2;
        if (nc > max)
            nc = max;
        unsigned char *d = realloc(b->d, nc);
        if (!d)
            return -ENOMEM;
        b->d = d;
        b->cap = nc;
    }
    memcpy(b->d + b->len, data, n);
    b->len += n;
    return 0;
}

static int buf_fail(struct rf_parser *p, struct rf_buf *b, int rc, const char *what)
{
    free(b->d);
    b->d = NULL;
    if (rc == -E2BIG)
        return perr(p, "%s is over the %u-byte cap", what, REGVIEW_MAX_VALUE_BYTES);
    return pnomem(p);
}

/*
 * A quoted string starting at s[*i] == '"', with the escapes \\ and \" (the only ones regedit
 * writes). The UTF-8 result goes to b (not NUL-terminated); *i ends past the closing quote.
 * `what` names it in messages: "value name" or "value data" (a string value).
 */
static int parse_quoted(struct rf_parser *p, const char *s, size_t n, size_t *i, struct rf_buf *b,
                        const char *what)
{
    const char *what_str = strcmp(what, "value data") == 0 ? "string" : what;
    size_t j = *i + 1;
    for (;;) {
        if (j >= n) {
            free(b->d);
            b->d = NULL;
            return perr(p, "unterminated %s (no closing '\"')", what_str);
        }
        char c = s[j];
        if (c == '"')
            break;
        if (c == '\\') {
            if (j + 1 >= n || (s[j + 1] != '\\' && s[j + 1] != '"')) {
                free(b->d);
                b->d = NULL;
                if (j + 1 >= n)
                    return perr(p, "bad escape in %s: '\\' at the end of the line", what_str);
                char ch[8];
                return perr(p, "bad escape \"\\%s\" in %s (only \\\\ and \\\" are allowed)",
                            show_char(s, n, j + 1, ch), what_str);
            }
            c = s[++j];
        }
        int rc = buf_put(b, &c, 1);
        if (rc < 0)
            return buf_fail(p, b, rc, what);
        j++;
    }
    *i = j + 1;
    return 0;
}

/* UTF-8 (valid: it comes from decode_text) to UTF-16LE with the terminating NUL. */
static int utf8_to_utf16(const unsigned char *s, size_t n, struct rf_buf *out)
{
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t len = utf8_valid_seq(s, n, i, &cp);
        if (!len)
            return -EINVAL;
        i += len;
        unsigned char u[4];
        size_t un = 2;
        if (cp >= 0x10000) {
            uint32_t hi = 0xD800 + ((cp - 0x10000) >> 10), lo = 0xDC00 + ((cp - 0x10000) & 0x3FF);
            u[0] = hi & 0xFF, u[1] = (unsigned char)(hi >> 8);
            u[2] = lo & 0xFF, u[3] = (unsigned char)(lo >> 8);
            un = 4;
        } else {
            u[0] = cp & 0xFF, u[1] = (unsigned char)(cp >> 8);
        }
        int rc = buf_put(out, u, un);
        if (rc < 0)
            return rc;
    }
    static const unsigned char nul[2] = {0, 0};
    return buf_put(out, nul, 2);
}

/*
 * A hex list from s[i] on ("01,ff,..."), following ",\" continuations onto the next lines.
 * Appends the bytes to b.
 */
static int parse_hex_list(struct rf_parser *p, const char *s, size_t n, size_t i, struct rf_buf *b)
{
    bool want_byte = true; /* at the start or after a ',' */
    for (;;) {
        i = skip_ws(s, n, i);
        if (i == n || s[i] == ';')
            return 0;
        if (s[i] == '\\') {
            if (!want_byte)
                return perr(p, "bad hex continuation: '\\' must follow a ','");
            if (skip_ws(s, n, i + 1) != n)
                return perr(p, "bad hex continuation: text after the '\\'");
            if (!next_line(p, &s, &n))
                return perr(p, "truncated file: hex data continues with ',\\' past the end");
            i = 0;
            continue;
        }
        if (s[i] == ',')
            return perr(p, "bad hex: empty byte between commas");
        int hi = hexval(s[i]);
        char ch[8];
        if (hi < 0)
            return perr(p, "bad hex: '%s' is not a hex digit", show_char(s, n, i, ch));
        if (!want_byte)
            return perr(p, "bad hex: missing ',' between bytes");
        unsigned v = (unsigned)hi;
        i++;
        if (i < n && hexval(s[i]) >= 0) {
            v = v * 16 + (unsigned)hexval(s[i]);
            i++;
            if (i < n && hexval(s[i]) >= 0)
                return perr(p, "bad hex: a byte has more than two digits");
        }
        unsigned char byte = (unsigned char)v;
        int rc = buf_put(b, &byte, 1);
        if (rc < 0)
            return buf_fail(p, b, rc, "value data");
        i = skip_ws(s, n, i);
        want_byte = i < n && s[i] == ',';
        if (want_byte)
            i++;
        else if (i < n && s[i] != ';' && s[i] != '\\' && hexval(s[i]) < 0)
            return perr(p, "bad hex: '%s' is not a hex digit", show_char(s, n, i, ch));
    }
}

/* hex(N): N is 1 to 8 hex digits. */
static int parse_hex_type(struct rf_parser *p, const char *s, size_t n, size_t *i, uint32_t *type)
{
    size_t j = *i, digits = 0;
    uint32_t t = 0;
    while (j < n && hexval(s[j]) >= 0) {
        if (++digits > 8)
            return perr(p, "bad value type: hex(N) takes at most 8 hex digits");
        t = t * 16 + (uint32_t)hexval(s[j]);
        j++;
    }
    if (digits == 0 || j + 1 >= n || s[j] != ')' || s[j + 1] != ':')
        return perr(p, "bad value type: expected hex(N): with N in hex");
    *type = t;
    *i = j + 2;
    return 0;
}

static int parse_dword(struct rf_parser *p, const char *s, size_t n, size_t i, struct rf_buf *b)
{
    uint32_t v = 0;
    size_t digits = 0;
    while (i < n && hexval(s[i]) >= 0) {
        v = v * 16 + (uint32_t)hexval(s[i]);
        digits++;
        i++;
    }
    if (digits > 8)
        return perr(p, "bad dword: %zu hex digits, at most 8", digits);
    if (digits == 0)
        return perr(p, "bad dword: expected 1 to 8 hex digits after \"dword:\"");
    char ch[8];
    if (!rest_is_empty(s, n, i))
        return perr(p, "bad dword: '%s' is not a hex digit", show_char(s, n, skip_ws(s, n, i), ch));
    unsigned char le[4] = {v & 0xFF, (v >> 8) & 0xFF, (v >> 16) & 0xFF, (v >> 24) & 0xFF};
    int rc = buf_put(b, le, 4);
    return rc < 0 ? pnomem(p) : 0;
}

/* REGEDIT4 wrote REG_SZ/EXPAND_SZ/MULTI_SZ hex data in the ANSI code page: make it UTF-16LE. */
static int ansi_to_utf16(struct rf_parser *p, struct rf_buf *b)
{
    struct rf_buf u = {0};
    for (size_t i = 0; i < b->len; i++) {
        uint32_t cp = cp1252(b->d[i]);
        unsigned char le[2] = {cp & 0xFF, (cp >> 8) & 0xFF};
        int rc = buf_put(&u, le, 2);
        if (rc < 0) {
            free(b->d);
            b->d = NULL;
            return buf_fail(p, &u, rc, "value data");
        }
    }
    free(b->d);
    *b = u;
    return 0;
}

static const char *type_name(uint32_t type)
{
    return type == REGVIEW_QWORD ? "hex(b) (REG_QWORD)"
           : type == 4           ? "hex(4) (REG_DWORD)"
                                 : "hex(5) (REG_DWORD_BIG_ENDIAN)";
}

static int parse_value_line(struct rf_parser *p, const char *s, size_t n)
{
    if (!p->cur) {
        if (p->cur_deleted)
            return perr(p, "value line after a [-KEY] deletion; values need a [KEY] line");
        return perr(p, "value line before any [KEY] line");
    }
    struct rf_buf name = {0}, data = {0};
    uint32_t type = 0;
    bool hex = false;
    size_t i;
    if (s[0] == '@') {
        i = 1;
    } else {
        i = 0;
        int rc = parse_quoted(p, s, n, &i, &name, "value name");
        if (rc < 0)
            return rc;
    }
    int rc = 0;
    if (regview_utf16_units((const char *)name.d, name.len) > REGVIEW_MAX_VALUE_NAME) {
        rc = perr(p, "value name over %d characters", REGVIEW_MAX_VALUE_NAME);
        goto out;
    }
    i = skip_ws(s, n, i);
    if (i >= n || s[i] != '=') {
        rc = perr(p, "missing '=' after the value name");
        goto out;
    }
    i = skip_ws(s, n, i + 1);

    const char *nm = name.d ? (const char *)name.d : "";
    if (i < n && s[i] == '-' && rest_is_empty(s, n, i + 1)) {
        rc = value_delete(p->rf, p->cur, nm, name.len);
        if (rc < 0)
            rc = pnomem(p);
        goto out;
    } else if (i < n && s[i] == '"') {
        /* UTF-8 takes at most 3 bytes where UTF-16 takes 2: room for any string that fits
         * the cap once converted; utf8_to_utf16 applies the exact cap. */
        struct rf_buf text = {.max = REGVIEW_MAX_VALUE_BYTES / 2 * 3};
        rc = parse_quoted(p, s, n, &i, &text, "value data");
        if (rc < 0)
            goto out;
        if (!rest_is_empty(s, n, i)) {
            free(text.d);
            rc = perr(p, "text after the closing quote of the string");
            goto out;
        }
        rc = utf8_to_utf16(text.d ? text.d : (const unsigned char *)"", text.len, &data);
        free(text.d);
        if (rc < 0) {
            rc = buf_fail(p, &data, rc, "value data");
            goto out;
        }
        type = REGVIEW_SZ;
    } else if (n - i >= 6 && memcmp(s + i, "dword:", 6) == 0) {
        rc = parse_dword(p, s, n, i + 6, &data);
        type = REGVIEW_DWORD;
    } else if (n - i >= 4 && memcmp(s + i, "hex:", 4) == 0) {
        type = REGVIEW_BINARY;
        hex = true;
        rc = parse_hex_list(p, s, n, i + 4, &data);
    } else if (n - i >= 4 && memcmp(s + i, "hex(", 4) == 0) {
        i += 4;
        rc = parse_hex_type(p, s, n, &i, &type);
        hex = true;
        if (rc == 0)
            rc = parse_hex_list(p, s, n, i, &data);
    } else {
        rc = perr(p, "unknown value type (expected \"string\", dword:, hex:, hex(N): or -)");
        goto out;
    }
    /* parse_hex_list may have moved to a continuation line: s/n/i are stale from here on. */
    if (rc < 0) {
        free(data.d);
        goto out;
    }
    if ((type == REGVIEW_QWORD && data.len != 8) ||
        ((type == REGVIEW_DWORD || type == REGVIEW_DWORD_BIG_ENDIAN) && data.len != 4)) {
        rc = perr(p, "%s data is %zu bytes, must be %d", type_name(type), data.len,
                  type == REGVIEW_QWORD ? 8 : 4);
        free(data.d);
        goto out;
    }
    if (p->v4 && hex &&
        (type == REGVIEW_SZ || type == REGVIEW_EXPAND_SZ || type == REGVIEW_MULTI_SZ)) {
        rc = ansi_to_utf16(p, &data);
        if (rc < 0)
            goto out;
    }
    rc = value_set(p->rf, p->cur, nm, name.len, type, data.d, data.len);
    if (rc < 0)
        rc = rc == -E2BIG ? ptoomany(p) : pnomem(p);
out:
    free(name.d);
    return rc;
}

static int parse_key_line(struct rf_parser *p, const char *s, size_t n)
{
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        n--;
    if (n < 2 || s[n - 1] != ']')
        return perr(p, "key line without a closing ']'");
    const char *path = s + 1;
    size_t plen = n - 2;
    bool del = plen > 0 && path[0] == '-';
    if (del)
        path++, plen--;
    const char *sep = memchr(path, '\\', plen);
    size_t hlen = sep ? (size_t)(sep - path) : plen;
    int hive = regview_hive_index(path, hlen);
    if (hive < 0) {
        size_t show = hlen > 40 ? 40 : hlen; /* a long name is cut, not inside a character */
        while (show < hlen && ((unsigned char)path[show] & 0xC0) == 0x80)
            show--;
        return perr(p,
                    "unknown hive \"%.*s\" (expected HKEY_LOCAL_MACHINE, HKLM, "
                    "HKEY_CURRENT_USER, HKCU, HKEY_CLASSES_ROOT, HKCR, HKEY_USERS, HKU, "
                    "HKEY_CURRENT_CONFIG or HKCC)",
                    (int)show, path);
    }
    /* Check every level, noting where each ends in the folded path (the hive's digit, then
     * the text from the first '\\' on, folded: same length as written). */
    size_t ends[REGVIEW_MAX_DEPTH];
    size_t depth = 0;
    const char *end = path + plen;
    for (const char *c = sep; c;) {
        const char *name = c + 1;
        const char *next = memchr(name, '\\', (size_t)(end - name));
        size_t len = next ? (size_t)(next - name) : (size_t)(end - name);
        if (len == 0)
            return perr(p, "empty key name in the path (a doubled or trailing '\\')");
        if (regview_utf16_units(name, len) > REGVIEW_MAX_KEY_NAME)
            return perr(p, "key name over %d characters", REGVIEW_MAX_KEY_NAME);
        if (depth == REGVIEW_MAX_DEPTH)
            return perr(p, "key path deeper than %d levels", REGVIEW_MAX_DEPTH);
        ends[depth++] = 1 + (size_t)(name + len - sep);
        c = next;
    }
    if (depth == 0) {
        if (del)
            return perr(p, "cannot delete a hive root");
        p->cur = p->rf->roots[hive];
        p->cur_deleted = false;
        return 0;
    }
    size_t flen = 1 + (size_t)(end - sep);
    char *fpath = malloc(flen);
    if (!fpath)
        return pnomem(p);
    fpath[0] = (char)('0' + hive);
    regview_fold(sep, (size_t)(end - sep), fpath + 1);
    int rc = 0;
    if (del) {
        struct rf_key *k = key_find(p->rf, fpath, flen, rf_hash(NULL, fpath, flen));
        if (k)
            key_delete(p->rf, k);
        p->cur = NULL;
        p->cur_deleted = true;
    } else {
        rc = key_ensure(p->rf, p->rf->roots[hive], fpath, sep, ends, depth, &p->cur);
        p->cur_deleted = false;
        if (rc < 0) {
            p->cur = NULL;
            rc = rc == -E2BIG ? ptoomany(p) : pnomem(p);
        }
    }
    free(fpath);
    return rc;
}

/* Applies one file's text over the view. */
static int parse_into(struct regfile *rf, const char *file, const unsigned char *data, size_t len,
                      char *err, size_t errsize)
{
    if (len > REGFILE_MAX_FILE_BYTES) {
        platform_set_err(err, errsize, "%s: %zu bytes, over the %zu-byte cap of a .reg file", file,
                         len, REGFILE_MAX_FILE_BYTES);
        return -E2BIG;
    }
    struct rf_parser p = {.rf = rf, .file = file, .err = err, .errsize = errsize};
    char *text;
    int rc = decode_text(file, data, len, &text, &p.len, &p.v4, err, errsize);
    if (rc < 0)
        return rc;
    p.text = text;
    const char *s;
    size_t n;
    next_line(&p, &s, &n); /* the header, checked by decode_text */
    while (rc == 0 && next_line(&p, &s, &n)) {
        size_t i = skip_ws(s, n, 0);
        if (i == n || s[i] == ';')
            continue;
        if (s[i] == '[')
            rc = parse_key_line(&p, s + i, n - i);
        else if (s[i] == '"' || s[i] == '@')
            rc = parse_value_line(&p, s + i, n - i);
        else
            rc = perr(&p, "unexpected text (expected [KEY], \"name\"=value, @=value or ;comment)");
    }
    free(text);
    return rc;
}

/* Reads a whole file, refusing more than the cap. */
static int read_file(const char *path, unsigned char **out, size_t *outlen, char *err,
                     size_t errsize)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_BINARY);
    if (fd < 0) {
        int e = errno;
        platform_set_err(err, errsize, "%s: cannot open: %s", path, strerror(e));
        return -e;
    }
    struct stat st;
    size_t cap = 64 * 1024;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0) {
        if ((unsigned long long)st.st_size > REGFILE_MAX_FILE_BYTES) {
            close(fd);
            platform_set_err(err, errsize, "%s: %llu bytes, over the %zu-byte cap of a .reg file",
                             path, (unsigned long long)st.st_size, REGFILE_MAX_FILE_BYTES);
            return -E2BIG;
        }
        cap = (size_t)st.st_size + 1;
    }
    unsigned char *buf = malloc(cap);
    size_t len = 0;
    int rc = buf ? 0 : -ENOMEM;
    while (rc == 0) {
        if (len == cap) {
            if (cap > REGFILE_MAX_FILE_BYTES)
                break;
            size_t nc = cap * 2 > REGFILE_MAX_FILE_BYTES + 1 ? REGFILE_MAX_FILE_BYTES + 1 : cap * 2;
            unsigned char *b = realloc(buf, nc);
            if (!b) {
                rc = -ENOMEM;
                break;
            }
            buf = b;
            cap = nc;
        }
        ssize_t r = read(fd, buf + len, cap - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            rc = -errno;
            platform_set_err(err, errsize, "%s: cannot read: %s", path, strerror(errno));
        } else if (r == 0) {
            break;
        } else {
            len += (size_t)r;
        }
    }
    close(fd);
    if (rc == -ENOMEM)
        platform_set_err(err, errsize, "%s: out of memory", path);
    if (rc == 0 && len > REGFILE_MAX_FILE_BYTES) {
        platform_set_err(err, errsize, "%s: more than %zu bytes, over the cap of a .reg file", path,
                         REGFILE_MAX_FILE_BYTES);
        rc = -E2BIG;
    }
    if (rc < 0) {
        free(buf);
        return rc;
    }
    *out = buf;
    *outlen = len;
    return 0;
}

int regview_open_files(const char *const *paths, size_t n, struct regview **out, char *err,
                       size_t errsize)
{
    return regfile_open(paths, NULL, NULL, n, REGFILE_MAX_ENTRIES, out, err, errsize);
}

int regview_open_buffer(const char *name, const void *data, size_t len, struct regview **out,
                        char *err, size_t errsize)
{
    return regfile_open(&name, &data, &len, 1, REGFILE_MAX_ENTRIES, out, err, errsize);
}

int regfile_open(const char *const *names, const void *const *datas, const size_t *lens, size_t n,
                 size_t max_entries, struct regview **out, char *err, size_t errsize)
{
    *out = NULL;
    struct regfile *rf = regfile_new(max_entries);
    if (!rf) {
        platform_set_err(err, errsize, "out of memory");
        return -ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        int rc;
        if (datas) {
            rc = parse_into(rf, names[i], datas[i], lens[i], err, errsize);
        } else {
            unsigned char *data = NULL;
            size_t len = 0;
            rc = read_file(names[i], &data, &len, err, errsize);
            if (rc == 0) {
                rc = parse_into(rf, names[i], data, len, err, errsize);
                free(data);
            }
        }
        if (rc < 0) {
            rf_free(&rf->base);
            return rc;
        }
    }
    *out = &rf->base;
    return 0;
}
