/*
 * jsonout: writing a JSON string literal to a stream, for the outputs that stream rows as they
 * come (a listing of any length) instead of building a document in memory with jansson.
 * Bytes that are not well-formed UTF-8 (arguments, old rows) become U+FFFD: the output is always
 * valid JSON.
 */
#ifndef TLSGATE_JSONOUT_H
#define TLSGATE_JSONOUT_H

#include <stdio.h>

/* Writes `s` as a JSON string literal (with quotes) to `out`. */
void jsonout_string(FILE *out, const char *s);

#endif
