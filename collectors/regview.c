/*
 * regview.c — the generic half of the registry view (regview.h): turns the raw values a backend
 * returns (regview_backend.h) into what a caller asked for, and owns the rules every backend
 * shares: which types each getter accepts, how UTF-16LE data becomes UTF-8, how a REG_MULTI_SZ
 * splits, the order names are listed in, and how names fold for case-insensitive comparison.
 *
 * Value data is decoded leniently on purpose: a real registry can hold a REG_SZ with an odd
 * byte count or a lone surrogate, and one odd value must not make a whole host unreadable. An
 * odd trailing byte is dropped and an unpaired surrogate reads as U+FFFD. (The .reg *file*
 * text, by contrast, is decoded strictly by regfile.c.)
 */
#include "regview.h"
#include "regview_backend.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

static const struct {
    const char *lng;
    const char *shrt;
} hives[REGVIEW_HIVES] = {
    {"HKEY_LOCAL_MACHINE", "HKLM"}, {"HKEY_CURRENT_USER", "HKCU"},   {"HKEY_CLASSES_ROOT", "HKCR"},
    {"HKEY_USERS", "HKU"},          {"HKEY_CURRENT_CONFIG", "HKCC"},
};

/* ASCII-only: hive names are ASCII, and this must not depend on the C locale. */
static bool ascii_case_eq(const char *a, size_t len, const char *b)
{
    if (strlen(b) != len)
        return false;
    for (size_t i = 0; i < len; i++) {
        char x = a[i] >= 'a' && a[i] <= 'z' ? (char)(a[i] - 32) : a[i];
        if (x != b[i])
            return false;
    }
    return true;
}

int regview_hive_index(const char *name, size_t len)
{
    for (int i = 0; i < REGVIEW_HIVES; i++) {
        if (ascii_case_eq(name, len, hives[i].lng) || ascii_case_eq(name, len, hives[i].shrt))
            return i;
    }
    return -1;
}

const char *regview_hive_name(int index)
{
    return index >= 0 && index < REGVIEW_HIVES ? hives[index].lng : NULL;
}

/* ---- UTF-8 helpers (input already validated) ---- */

static uint32_t utf8_next(const unsigned char *s, size_t len, size_t *i)
{
    unsigned char c = s[*i];
    size_t n = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
    if (*i + n > len) {
        (*i)++;
        return 0xFFFD;
    }
    uint32_t cp = n == 1 ? c : n == 2 ? c & 0x1Fu : n == 3 ? c & 0x0Fu : c & 0x07u;
    for (size_t k = 1; k < n; k++)
        cp = (cp << 6) | (s[*i + k] & 0x3Fu);
    *i += n;
    return cp;
}

size_t regview_utf8_put(uint32_t cp, char *buf)
{
    unsigned char *out = (unsigned char *)buf;
    if (cp < 0x80) {
        out[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (unsigned char)(0xC0 | (cp >> 6));
        out[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (unsigned char)(0xE0 | (cp >> 12));
        out[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (unsigned char)(0xF0 | (cp >> 18));
    out[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

/*
 * Upper-case folding for the scripts registry names use in practice. Every mapping here keeps
 * the UTF-8 length (all are within the 2-byte range), which regview_fold relies on.
 */
static uint32_t fold_cp(uint32_t c)
{
    if (c >= 'a' && c <= 'z')
        return c - 0x20;
    if (c < 0xE0)
        return c;
    if (c <= 0xFE)
        return c == 0xF7 ? c : c - 0x20; /* à..þ -> À..Þ, not ÷ */
    if (c == 0xFF)
        return 0x178; /* ÿ -> Ÿ */
    if (c >= 0x100 && c <= 0x137)
        return c & ~1u; /* Ā..ķ pairs: even upper, odd lower */
    if (c >= 0x139 && c <= 0x148)
        return (c & 1u) ? c : c - 1; /* Ĺ..ň pairs: odd upper, even lower */
    if (c >= 0x14A && c <= 0x177)
        return c & ~1u;
    if (c == 0x17A || c == 0x17C || c == 0x17E)
        return c - 1;
    if (c >= 0x3B1 && c <= 0x3CB && c != 0x3C2)
        return c - 0x20; /* Greek α..ϋ */
    if (c == 0x3C2)
        return 0x3A3; /* final sigma */
    if (c >= 0x430 && c <= 0x44F)
        return c - 0x20; /* Cyrillic а..я */
    if (c >= 0x450 && c <= 0x45F)
        return c - 0x50; /* ѐ..џ */
    return c;
}

void regview_fold(const char *in, size_t len, char *out)
{
    const unsigned char *s = (const unsigned char *)in;
    unsigned char *o = (unsigned char *)out;
    size_t i = 0, w = 0;
    while (i < len) {
        if (s[i] < 0x80) {
            unsigned char c = s[i++];
            o[w++] = (c >= 'a' && c <= 'z') ? (unsigned char)(c - 0x20) : c;
            continue;
        }
        size_t start = i;
        uint32_t cp = utf8_next(s, len, &i);
        uint32_t f = fold_cp(cp);
        if (f == cp || (cp < 0x800) != (f < 0x800)) {
            memcpy(o + w, s + start, i - start);
            w += i - start;
        } else {
            w += regview_utf8_put(f, (char *)o + w);
        }
    }
}

int regview_name_cmp(const char *a, const char *b)
{
    const unsigned char *x = (const unsigned char *)a, *y = (const unsigned char *)b;
    size_t lx = strlen(a), ly = strlen(b), i = 0, j = 0;
    while (i < lx && j < ly) {
        uint32_t cx = fold_cp(utf8_next(x, lx, &i));
        uint32_t cy = fold_cp(utf8_next(y, ly, &j));
        if (cx != cy)
            return cx < cy ? -1 : 1;
    }
    if (i < lx || j < ly)
        return i < lx ? 1 : -1;
    return strcmp(a, b);
}

size_t regview_utf16_units(const char *s, size_t len)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if ((u[i] & 0xC0) != 0x80)
            n += u[i] >= 0xF0 ? 2 : 1;
    }
    return n;
}

/* ---- value decoding ---- */

/* UTF-16LE `units` code units -> malloc'd UTF-8, stopping at the first NUL. */
static char *utf16_to_utf8(const unsigned char *d, size_t units, size_t *consumed)
{
    char *out = malloc(units * 3 + 1);
    if (!out)
        return NULL;
    size_t w = 0, i = 0;
    while (i < units) {
        uint32_t u = d[2 * i] | ((uint32_t)d[2 * i + 1] << 8);
        i++;
        if (u == 0)
            break;
        uint32_t cp = u;
        if (u >= 0xD800 && u <= 0xDBFF && i < units) {
            uint32_t lo = d[2 * i] | ((uint32_t)d[2 * i + 1] << 8);
            if (lo >= 0xDC00 && lo <= 0xDFFF) {
                cp = 0x10000 + ((u - 0xD800) << 10) + (lo - 0xDC00);
                i++;
            } else {
                cp = 0xFFFD;
            }
        } else if (u >= 0xD800 && u <= 0xDFFF) {
            cp = 0xFFFD;
        }
        w += regview_utf8_put(cp, out + w);
    }
    out[w] = '\0';
    if (consumed)
        *consumed = i;
    return out;
}

static int fetch(struct regview *v, const char *key, const char *name, struct regview_raw *raw)
{
    if (!v || !key)
        return -ENOENT;
    memset(raw, 0, sizeof(*raw));
    return v->ops->get_raw(v, key, name ? name : "", raw);
}

int regview_get_dword(struct regview *v, const char *key, const char *name, uint32_t *out)
{
    struct regview_raw raw;
    int rc = fetch(v, key, name, &raw);
    if (rc < 0)
        return rc;
    rc = -EINVAL;
    if ((raw.type == REGVIEW_DWORD || raw.type == REGVIEW_DWORD_BIG_ENDIAN) && raw.len == 4) {
        const unsigned char *d = raw.data;
        if (raw.type == REGVIEW_DWORD)
            *out = d[0] | ((uint32_t)d[1] << 8) | ((uint32_t)d[2] << 16) | ((uint32_t)d[3] << 24);
        else
            *out = d[3] | ((uint32_t)d[2] << 8) | ((uint32_t)d[1] << 16) | ((uint32_t)d[0] << 24);
        rc = 0;
    }
    free(raw.owned);
    return rc;
}

int regview_get_qword(struct regview *v, const char *key, const char *name, uint64_t *out)
{
    struct regview_raw raw;
    int rc = fetch(v, key, name, &raw);
    if (rc < 0)
        return rc;
    rc = -EINVAL;
    if (raw.type == REGVIEW_QWORD && raw.len == 8) {
        uint64_t q = 0;
        for (int i = 7; i >= 0; i--)
            q = (q << 8) | raw.data[i];
        *out = q;
        rc = 0;
    }
    free(raw.owned);
    return rc;
}

int regview_get_string(struct regview *v, const char *key, const char *name, char **out)
{
    struct regview_raw raw;
    int rc = fetch(v, key, name, &raw);
    if (rc < 0)
        return rc;
    rc = -EINVAL;
    if (raw.type == REGVIEW_SZ || raw.type == REGVIEW_EXPAND_SZ) {
        *out = utf16_to_utf8(raw.data, raw.len / 2, NULL);
        rc = *out ? 0 : -ENOMEM;
    }
    free(raw.owned);
    return rc;
}

int regview_get_multi(struct regview *v, const char *key, const char *name, char ***out)
{
    struct regview_raw raw;
    int rc = fetch(v, key, name, &raw);
    if (rc < 0)
        return rc;
    if (raw.type != REGVIEW_MULTI_SZ) {
        free(raw.owned);
        return -EINVAL;
    }
    /* The list ends at the first empty string (the double NUL) or at the end of the data, as
     * RegGetValue reads it; a missing final terminator is tolerated. */
    size_t units = raw.len / 2, pos = 0, n = 0;
    char **strv = calloc(units / 2 + 2, sizeof(*strv));
    rc = strv ? 0 : -ENOMEM;
    while (rc == 0 && pos < units) {
        if (raw.data[2 * pos] == 0 && raw.data[2 * pos + 1] == 0)
            break;
        size_t used;
        char *s = utf16_to_utf8(raw.data + 2 * pos, units - pos, &used);
        if (!s) {
            rc = -ENOMEM;
            break;
        }
        strv[n++] = s;
        pos += used;
    }
    free(raw.owned);
    if (rc < 0) {
        regview_strv_free(strv);
        return rc;
    }
    *out = strv;
    return 0;
}

static int cmp_names(const void *a, const void *b)
{
    return regview_name_cmp(*(char *const *)a, *(char *const *)b);
}

static int list(struct regview *v, const char *key, enum regview_list_kind kind, char ***out)
{
    if (!v || !key)
        return -ENOENT;
    char **strv;
    int rc = v->ops->list(v, key, kind, &strv);
    if (rc < 0)
        return rc;
    size_t n = 0;
    while (strv[n])
        n++;
    qsort(strv, n, sizeof(*strv), cmp_names);
    *out = strv;
    return 0;
}

int regview_list_subkeys(struct regview *v, const char *key, char ***out)
{
    return list(v, key, REGVIEW_LIST_SUBKEYS, out);
}

int regview_list_values(struct regview *v, const char *key, char ***out)
{
    return list(v, key, REGVIEW_LIST_VALUES, out);
}

void regview_strv_free(char **strv)
{
    if (!strv)
        return;
    for (char **p = strv; *p; p++)
        free(*p);
    free(strv);
}

void regview_free(struct regview *v)
{
    if (v)
        v->ops->free(v);
}
