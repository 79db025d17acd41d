/*
 * csvread: a streaming RFC 4180 reader for the inventory files administrators hand us
 * (exported from Excel or ConfigMgr queries): UTF-8 with or without BOM, CRLF or LF, quoted
 * fields with commas, doubled quotes and line breaks. One record at a time, bounded.
 */
#ifndef TLSGATE_CSVREAD_H
#define TLSGATE_CSVREAD_H

#include <stddef.h>
#include <stdio.h>

#define CSVREAD_MAX_FIELDS 64
#define CSVREAD_MAX_RECORD (64 * 1024)

struct csvread {
    FILE *in;
    long line;         /* physical line where the current record starts (1-based) */
    long next_line;    /* physical line the next record starts on */
    size_t nfields;
    char *fields[CSVREAD_MAX_FIELDS];
    char *buf;         /* field storage, CSVREAD_MAX_RECORD + 1 bytes */
    char err[160];
};

int csvread_init(struct csvread *r, FILE *in);
void csvread_release(struct csvread *r);

/* Reads the next record. Returns 1 and fills fields/nfields/line; 0 at end of input; -EINVAL
 * with the reason in err (unterminated quote, text after a closing quote, too many fields, a
 * record over CSVREAD_MAX_RECORD, a NUL byte) and `line` set to where it happened. Blank lines
 * are skipped. */
int csvread_next(struct csvread *r);

#endif
