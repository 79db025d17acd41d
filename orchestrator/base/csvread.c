/*
 * csvread.c — see csvread.h. A small state machine over getc(): fields are written into one
 * preallocated buffer, so a record costs no allocation and memory does not grow with the file.
 */
#include "csvread.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

int csvread_init(struct csvread *r, FILE *in)
{
    memset(r, 0, sizeof(*r));
    r->in = in;
    r->next_line = 1;
    r->delim = ',';
    r->buf = malloc(CSVREAD_MAX_RECORD + 1);
    if (!r->buf)
        return -ENOMEM;
    /* A UTF-8 BOM (Excel's "CSV UTF-8") is not part of the first header name. */
    int c1 = getc(in);
    if (c1 == 0xEF) {
        int c2 = getc(in), c3 = getc(in);
        if (c2 == 0xBB && c3 == 0xBF)
            return 0;
        /* Not a BOM: such a file is not UTF-8; the header check that follows reports it. */
        return 0;
    }
    if (c1 != EOF)
        ungetc(c1, in);
    return 0;
}

int csvread_detect(struct csvread *r)
{
    long start = ftell(r->in);
    if (start < 0)
        return -EIO;
    static const char type[] = "#TYPE";
    char head[sizeof(type) - 1];
    size_t n = fread(head, 1, sizeof(head), r->in);
    if (n == sizeof(head) && !memcmp(head, type, sizeof(head))) {
        int c;
        while ((c = getc(r->in)) != EOF && c != '\n')
            ;
        r->type_line = true;
        r->next_line++;
        start = ftell(r->in);
    }
    if (fseek(r->in, start, SEEK_SET))
        return -EIO;
    /* Count the candidates on the header line, outside quotes. */
    long count[3] = {0, 0, 0};
    static const char cand[3] = {',', ';', '\t'};
    bool quoted = false;
    int c;
    for (long k = 0; k < CSVREAD_MAX_RECORD && (c = getc(r->in)) != EOF; k++) {
        if (c == '"')
            quoted = !quoted;
        else if (!quoted && (c == '\n' || c == '\r'))
            break;
        else if (!quoted)
            for (int i = 0; i < 3; i++)
                count[i] += c == cand[i];
    }
    int best = 0;
    for (int i = 1; i < 3; i++)
        if (count[i] > count[best])
            best = i;
    r->delim = cand[best];
    return fseek(r->in, start, SEEK_SET) ? -EIO : 0;
}

void csvread_release(struct csvread *r)
{
    free(r->buf);
    r->buf = NULL;
}

static int fail(struct csvread *r, const char *why)
{
    snprintf(r->err, sizeof(r->err), "%s", why);
    return -EINVAL;
}

int csvread_next(struct csvread *r)
{
    size_t used = 0;
    bool quoted = false, after_quote = false, field_has_data = false;
    r->nfields = 0;
    r->line = r->next_line;
    int c;

    for (;;) {
        c = getc(r->in);
        if (c == EOF) {
            if (quoted)
                return fail(r, "unterminated quoted field");
            if (r->nfields == 0 && used == 0 && !field_has_data)
                return 0;
            break;
        }
        if (c == '\0')
            return fail(r, "NUL byte in text");
        if (quoted) {
            if (c == '"') {
                int n = getc(r->in);
                if (n == '"') {
                    c = '"';
                } else {
                    if (n != EOF)
                        ungetc(n, r->in);
                    quoted = false;
                    after_quote = true;
                    continue;
                }
            } else if (c == '\n') {
                r->next_line++;
            }
        } else {
            if (c == '\r') {
                int n = getc(r->in);
                if (n != '\n' && n != EOF)
                    ungetc(n, r->in);
                c = '\n';
            }
            if (c == '\n') {
                r->next_line++;
                if (r->nfields == 0 && used == 0 && !field_has_data) {
                    r->line = r->next_line; /* blank line */
                    continue;
                }
                break;
            }
            if (c == r->delim) {
                if (r->nfields >= CSVREAD_MAX_FIELDS - 1)
                    return fail(r, "too many fields");
                if (used >= CSVREAD_MAX_RECORD)
                    return fail(r, "record longer than 65536 bytes");
                r->buf[used++] = '\0';
                r->fields[r->nfields++] = NULL; /* set once the record ends, below */
                after_quote = false;
                field_has_data = true;
                continue;
            }
            if (after_quote)
                return fail(r, "text after a closing quote (quotes inside a field are doubled)");
            if (c == '"') {
                /* A quote opens a quoted field only at its start. */
                size_t start = used;
                size_t k = used;
                while (k > 0 && r->buf[k - 1] != '\0')
                    k--;
                if (k != start)
                    return fail(r, "quote in the middle of an unquoted field");
                quoted = true;
                field_has_data = true;
                continue;
            }
        }
        if (used >= CSVREAD_MAX_RECORD)
            return fail(r, "record longer than 65536 bytes");
        r->buf[used++] = (char)c;
        field_has_data = true;
    }
    if (r->nfields >= CSVREAD_MAX_FIELDS)
        return fail(r, "too many fields");
    r->buf[used] = '\0';
    r->nfields++;
    /* Field i starts after the i-th NUL. */
    char *p = r->buf;
    for (size_t i = 0; i < r->nfields; i++) {
        r->fields[i] = p;
        p += strlen(p) + 1;
    }
    return 1;
}
