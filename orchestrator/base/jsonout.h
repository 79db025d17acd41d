/*
 * jsonout: how a command writes JSON (--json).
 *
 * THE RULE: a single object (a command's answer: `waive`, `unwaive`, `phase rollback`, ...) is
 * built with jansson and printed with jsonout_print. Hand-written printf JSON, with
 * jsonout_string for every string in it, is only for streams whose length has no bound (a
 * listing of every host, the audit log, the hosts failing a criterion), which are written row by
 * row as the database yields them so memory stays flat at any fleet size.
 *
 * Either way, bytes that are not well-formed UTF-8 (arguments, old rows) become U+FFFD: the
 * output is always valid JSON.
 */
#ifndef TLSGATE_JSONOUT_H
#define TLSGATE_JSONOUT_H

#include <jansson.h>
#include <stdio.h>

/* A jansson string of `s`, ill-formed UTF-8 replaced by U+FFFD; NULL only when out of memory
 * (jansson's setters then fail too, and jsonout_print reports it). */
json_t *jsonout_text(const char *s);

/* Writes `doc` compact on one line and a newline to `out`, then releases it (a NULL doc is an
 * out-of-memory failure). Returns 0, or -ENOMEM / -EIO. */
int jsonout_print(FILE *out, json_t *doc);

/* Writes `s` as a JSON string literal (with quotes) to `out`. */
void jsonout_string(FILE *out, const char *s);

/* Writes `before` as is (the JSON that leads to the value: `, "site": `), then `s` as
 * jsonout_string does, or `null` when s is NULL: one member of a hand-written row. */
void jsonout_member(FILE *out, const char *before, const char *s);

#endif
