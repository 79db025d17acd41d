/*
 * utc: the one clock of tlsgate and the two ways time is written (epoch seconds in the database,
 * ISO 8601 UTC for people and files). Commands, the gate and the pull engine all ask utc_now(),
 * so a test or tool that pins $TLSGATE_NOW moves every decision at once.
 */
#ifndef TLSGATE_UTC_H
#define TLSGATE_UTC_H

#include <stddef.h>

/* "YYYY-MM-DDTHH:MM:SSZ" and its terminating NUL. */
#define UTC_ISO8601_SIZE 21

/* Current time in seconds since the epoch. Tests and tools may set $TLSGATE_NOW (seconds) to
 * pin the clock; everything that decides on time asks this function. */
long long utc_now(void);

/* Formats `t` (epoch seconds) as ISO 8601 UTC "YYYY-MM-DDTHH:MM:SSZ" into buf
 * (>= UTC_ISO8601_SIZE bytes); "?" when t cannot be represented. Returns buf. */
const char *utc_iso8601(long long t, char *buf, size_t size);

/* Parses "YYYY-MM-DD" or "YYYY-MM-DDTHH:MM:SSZ" (UTC); returns 0 and sets *t, or -EINVAL. */
int utc_parse_time(const char *s, long long *t);

#endif
