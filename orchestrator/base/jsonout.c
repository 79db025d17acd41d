/*
 * jsonout.c — a JSON string literal written straight to a stream (jsonout.h).
 */
#include "jsonout.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Length of the well-formed UTF-8 sequence at p (shortest form, no surrogate, at most
 * U+10FFFF), or 0 when there is none. */
static size_t utf8_sequence(const unsigned char *p)
{
    unsigned c = p[0];
    size_t n = c >= 0xf0 ? 3 : c >= 0xe0 ? 2 : c >= 0xc0 ? 1 : 0;
    if (!n || c > 0xf4)
        return 0;
    unsigned cp = c & (0x3f >> n);
    for (size_t i = 1; i <= n; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (p[i] & 0x3f);
    }
    static const unsigned min[4] = {0, 0x80, 0x800, 0x10000};
    if (cp < min[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return n + 1;
}

void jsonout_string(FILE *out, const char *s)
{
    fputc('"', out);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p >= 0x80) {
            /* Bytes from outside (arguments, old rows) may not be UTF-8; JSON must be. */
            size_t n = utf8_sequence(p);
            if (n) {
                fwrite(p, 1, n, out);
                p += n - 1;
            } else {
                fputs("\\ufffd", out);
            }
            continue;
        }
        switch (*p) {
        case '"': fputs("\\\"", out); break;
        case '\\': fputs("\\\\", out); break;
        case '\n': fputs("\\n", out); break;
        case '\r': fputs("\\r", out); break;
        case '\t': fputs("\\t", out); break;
        default:
            if (*p < 0x20)
                fprintf(out, "\\u%04x", *p);
            else
                fputc(*p, out);
        }
    }
    fputc('"', out);
}

json_t *jsonout_text(const char *s)
{
    /* Valid text is taken as it is; otherwise each ill-formed byte becomes U+FFFD (3 bytes). */
    size_t len = strlen(s);
    char *clean = malloc(3 * len + 1);
    if (!clean)
        return NULL;
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        size_t seq = *p >= 0x80 ? utf8_sequence(p) : 1;
        if (!seq) {
            memcpy(clean + n, "\xef\xbf\xbd", 3);
            n += 3;
            continue;
        }
        memcpy(clean + n, p, seq);
        n += seq;
        p += seq - 1;
    }
    json_t *v = json_stringn(clean, n);
    free(clean);
    return v;
}

int jsonout_print(FILE *out, json_t *doc)
{
    if (!doc)
        return -ENOMEM;
    int rc = json_dumpf(doc, out, JSON_COMPACT) == 0 && fputc('\n', out) != EOF ? 0 : -EIO;
    json_decref(doc);
    return rc;
}

void jsonout_member(FILE *out, const char *before, const char *s)
{
    fputs(before, out);
    if (s)
        jsonout_string(out, s);
    else
        fputs("null", out);
}
