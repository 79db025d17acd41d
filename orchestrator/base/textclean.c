/*
 * textclean.c — see textclean.h. One pass over the bytes with a small UTF-8 decoder: a
 * well-formed sequence is copied unless its code point is one to escape; anything else is
 * escaped byte by byte. The same walk serves the buffer and the stream forms.
 */
#include "textclean.h"

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

/* Length of the well-formed UTF-8 sequence at s (1..4) and its code point, or 0 when the
 * bytes there are not one (overlong forms, surrogates and code points over U+10FFFF refused). */
static size_t utf8_decode(const unsigned char *s, uint32_t *cp)
{
    unsigned char c = s[0];
    size_t n;
    uint32_t v, min;
    if (c < 0x80) {
        *cp = c;
        return 1;
    } else if (c >= 0xC2 && c <= 0xDF) {
        n = 2, v = c & 0x1F, min = 0x80;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3, v = c & 0x0F, min = 0x800;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4, v = c & 0x07, min = 0x10000;
    } else {
        return 0;
    }
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0; /* also stops at the terminating NUL */
        v = (v << 6) | (s[i] & 0x3F);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF))
        return 0;
    *cp = v;
    return n;
}

static bool escaped_code_point(uint32_t cp)
{
    return cp < 0x20 || cp == 0x7F || (cp >= 0x80 && cp <= 0x9F) ||
           (cp >= 0x202A && cp <= 0x202E) || (cp >= 0x2066 && cp <= 0x2069) || cp == 0x2028 ||
           cp == 0x2029;
}

/* Writes the escape for the unit at s (of n bytes, code point cp; n == 0: one bad byte) into
 * out (>= 7 bytes); returns its length. */
static size_t escape(const unsigned char *s, size_t n, uint32_t cp, char *out)
{
    static const char hex[] = "0123456789abcdef";
    if (n == 0 || cp < 0x80) {
        unsigned char b = n == 0 ? s[0] : (unsigned char)cp;
        if (b == '\t' || b == '\n' || b == '\r') {
            out[0] = '\\';
            out[1] = b == '\t' ? 't' : b == '\n' ? 'n' : 'r';
            return 2;
        }
        out[0] = '\\', out[1] = 'x', out[2] = hex[b >> 4], out[3] = hex[b & 15];
        return 4;
    }
    out[0] = '\\', out[1] = 'u';
    for (int i = 0; i < 4; i++)
        out[2 + i] = hex[(cp >> (12 - 4 * i)) & 15];
    return 6;
}

/* Calls put(piece, len, arg) for each piece of the cleaned text; stops when put returns false. */
static void clean_walk(const char *text, bool (*put)(const char *p, size_t n, void *arg), void *arg)
{
    const unsigned char *s = (const unsigned char *)(text ? text : "");
    while (*s) {
        uint32_t cp = 0;
        size_t n = utf8_decode(s, &cp);
        if (n > 0 && !escaped_code_point(cp)) {
            if (!put((const char *)s, n, arg))
                return;
            s += n;
            continue;
        }
        char e[8];
        size_t len = escape(s, n, cp, e);
        if (!put(e, len, arg))
            return;
        s += n ? n : 1;
    }
}

struct sink {
    char *buf;
    size_t size, used;
    bool cut;
};

static bool put_buf(const char *p, size_t n, void *arg)
{
    struct sink *k = arg;
    if (k->used + n + 4 > k->size) { /* room kept for "..." and the NUL */
        k->cut = true;
        return false;
    }
    memcpy(k->buf + k->used, p, n);
    k->used += n;
    return true;
}

const char *textclean(const char *s, char *buf, size_t size)
{
    struct sink k = {buf, size, 0, false};
    clean_walk(s, put_buf, &k);
    if (k.cut) {
        /* Cut after a whole piece: never inside an escape or a UTF-8 sequence. */
        memcpy(buf + k.used, "...", 3);
        k.used += 3;
    }
    buf[k.used] = '\0';
    return buf;
}

static bool put_changed(const char *p, size_t n, void *arg)
{
    const char **at = arg;
    if (p != *at) {
        *at = NULL; /* an escape was written instead of the bytes themselves */
        return false;
    }
    *at += n;
    return true;
}

int textclean_needed(const char *s)
{
    const char *at = s ? s : "";
    clean_walk(at, put_changed, &at);
    return at == NULL;
}

static bool put_stream(const char *p, size_t n, void *arg) { return fwrite(p, 1, n, arg) == n; }

void textclean_fputs(const char *s, FILE *out) { clean_walk(s, put_stream, out); }
