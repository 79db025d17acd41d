/*
 * fuzz_csvread.c — libFuzzer target for the CSV reader of the inventory files
 * (orchestrator/base/csvread.h), fed through a FILE as `tlsgate inventory import` does.
 *
 * Contract: records come out until 0 (end, and it stays the end) or -EINVAL with a reason; each
 * record has 1..CSVREAD_MAX_FIELDS fields of at most CSVREAD_MAX_RECORD bytes in all, without
 * NUL, and starts on a line no earlier than the one before. Every record read is written back
 * as RFC 4180 (every field quoted, quotes doubled) and read again: the same fields must come
 * back (the reader and the format agree). Anything else is abort().
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "csvread.h"

static char *quote_record(const struct csvread *r, size_t *len)
{
    size_t cap = 3;
    for (size_t i = 0; i < r->nfields; i++)
        cap += 2 * strlen(r->fields[i]) + 3;
    char *out = malloc(cap), *p = out;
    if (!out)
        abort();
    for (size_t i = 0; i < r->nfields; i++) {
        if (i)
            *p++ = ',';
        *p++ = '"';
        for (const char *s = r->fields[i]; *s; s++) {
            if (*s == '"')
                *p++ = '"';
            *p++ = *s;
        }
        *p++ = '"';
    }
    *p++ = '\r';
    *p++ = '\n';
    *len = (size_t)(p - out);
    return out;
}

static void check_round_trip(const struct csvread *r)
{
    size_t len;
    char *text = quote_record(r, &len);
    FILE *in = fmemopen(text, len, "r");
    struct csvread again;
    if (!in || csvread_init(&again, in) != 0)
        abort();
    int rc = csvread_next(&again);
    /* Quoting doubles quotes: a record near the cap may not fit again, nothing else fails. */
    if (rc == -EINVAL && strstr(again.err, "longer than"))
        goto out;
    if (rc != 1 || again.nfields != r->nfields)
        abort();
    for (size_t i = 0; i < r->nfields; i++)
        if (strcmp(again.fields[i], r->fields[i]) != 0)
            abort();
    if (csvread_next(&again) != 0)
        abort();
out:
    csvread_release(&again);
    fclose(in);
    free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    FILE *in = fmemopen((void *)data, size, "r");
    if (!in)
        abort();
    struct csvread r;
    if (csvread_init(&r, in) != 0)
        abort();
    long last_line = 0;
    for (;;) {
        int rc = csvread_next(&r);
        if (rc == 0) {
            if (csvread_next(&r) != 0)
                abort();
            break;
        }
        if (rc < 0) {
            if (rc != -EINVAL || r.err[0] == '\0' || r.line < 1)
                abort();
            break;
        }
        if (rc != 1 || r.nfields < 1 || r.nfields > CSVREAD_MAX_FIELDS || r.line < last_line ||
            r.next_line < r.line)
            abort();
        size_t total = 0;
        for (size_t i = 0; i < r.nfields; i++) {
            if (r.fields[i] < r.buf || r.fields[i] > r.buf + CSVREAD_MAX_RECORD)
                abort();
            total += strlen(r.fields[i]) + 1;
        }
        if (total > CSVREAD_MAX_RECORD + 1)
            abort();
        last_line = r.line;
        check_round_trip(&r);
    }
    csvread_release(&r);
    fclose(in);
    return 0;
}
