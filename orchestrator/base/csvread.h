/*
 * csvread: a streaming RFC 4180 reader for the inventory files administrators hand us
 * (exported from Excel or ConfigMgr queries): UTF-8 with or without BOM, CRLF or LF, quoted
 * fields with commas, doubled quotes and line breaks. One record at a time, bounded.
 * csvread_detect reads files as Windows tools write them: PowerShell 5.1's Export-Csv opens with
 * a "#TYPE ..." line, and Excel in many locales (and Export-Csv -UseCulture) separates with ';'
 * or a tab instead of ','.
 */
#ifndef TLSGATE_CSVREAD_H
#define TLSGATE_CSVREAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#define CSVREAD_MAX_FIELDS 64
#define CSVREAD_MAX_RECORD (64 * 1024)

struct csvread {
    FILE *in;
    long line;      /* physical line where the current record starts (1-based) */
    long next_line; /* physical line the next record starts on */
    size_t nfields;
    char *fields[CSVREAD_MAX_FIELDS];
    char *buf;      /* field storage, CSVREAD_MAX_RECORD + 1 bytes */
    char delim;     /* ',' unless csvread_detect found ';' or a tab */
    bool type_line; /* csvread_detect skipped a "#TYPE" first line */
    char err[160];
};

int csvread_init(struct csvread *r, FILE *in);

/* Right after csvread_init on a seekable stream: skips a "#TYPE ..." first line (counted in
 * `line`) and sets `delim` to the one of ',', ';' and TAB that the header line (outside quotes)
 * holds most of (',' on a tie or none). Reads ahead and seeks back; 0 or -EIO. */
int csvread_detect(struct csvread *r);
void csvread_release(struct csvread *r);

/* Reads the next record. Returns 1 and fills fields/nfields/line; 0 at end of input; -EINVAL
 * with the reason in err (unterminated quote, text after a closing quote, too many fields, a
 * record over CSVREAD_MAX_RECORD, a NUL byte) and `line` set to where it happened. Blank lines
 * are skipped. */
int csvread_next(struct csvread *r);

#endif
