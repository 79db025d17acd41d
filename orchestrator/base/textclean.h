/*
 * textclean: text from outside made safe for a terminal. Host names, OS captions (the host
 * writes its own), waiver reasons and authors, TLSGATE_USER, audit rows, rule reasons quoting
 * report values, and file contents quoted in error messages all reach human-readable output;
 * a raw ESC, CSI or BEL there can clear the screen, rewrite earlier lines, retitle the window
 * or forge a line that says "ready". Every human-readable output path (tables, `show`, `audit`,
 * `gate check`, `phase status`, error messages) passes outside text through textclean; JSON and
 * CSV output are escaped by their own rules instead (jsonout.h, csv.h).
 *
 * What is replaced by a visible escape, one field meant to be one line:
 *   - C0 controls and DEL: \t \n \r as such, the others as \xNN (ESC is \x1b);
 *   - C1 controls U+0080..U+009F (CSI among them) as \uNNNN;
 *   - the Unicode characters that reorder or break a line on a terminal (bidirectional
 *     overrides and isolates U+202A..U+202E, U+2066..U+2069, line and paragraph separators
 *     U+2028, U+2029) as \uNNNN;
 *   - bytes that are not well-formed UTF-8 (a lone 0x9B is CSI on an 8-bit terminal) as \xNN.
 * Everything else, backslashes and accented names included, is kept as it is.
 */
#ifndef TLSGATE_TEXTCLEAN_H
#define TLSGATE_TEXTCLEAN_H

#include <stddef.h>
#include <stdio.h>

/* Room for one cleaned field: a longer one is cut (after TEXTCLEAN_MAX - 4 bytes at most, on a
 * whole character or escape) with "..." at the end. A field of the inventory, a waiver reason or
 * a rule's reason is well under it. */
#define TEXTCLEAN_MAX 4096

/* Writes the cleaned `s` (NULL reads as "") into buf (size >= 4) and returns buf. */
const char *textclean(const char *s, char *buf, size_t size);

/* textclean into a buffer that lives until the end of the enclosing block, for printf
 * arguments: printf("%s %s\n", TEXTCLEAN(name), TEXTCLEAN(reason)). */
#define TEXTCLEAN(s) textclean((s), (char[TEXTCLEAN_MAX]){0}, TEXTCLEAN_MAX)

/* 1 when textclean would change `s` (it holds something to escape), else 0. */
int textclean_needed(const char *s);

/* Writes `s` cleaned to `out`, any length (nothing is cut). */
void textclean_fputs(const char *s, FILE *out);

#endif
