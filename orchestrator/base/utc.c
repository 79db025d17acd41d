/*
 * utc.c — the clock every decision asks, and UTC time text in and out (utc.h).
 */
#include "utc.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

long long utc_now(void)
{
    const char *pinned = getenv("TLSGATE_NOW");
    if (pinned && *pinned) {
        char *end;
        long long t = strtoll(pinned, &end, 10);
        if (*end == '\0')
            return t;
    }
    return (long long)time(NULL);
}

const char *utc_iso8601(long long t, char *buf, size_t size)
{
    time_t tt = (time_t)t;
    struct tm tm;
    if (!gmtime_r(&tt, &tm) || !strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm))
        snprintf(buf, size, "?");
    return buf;
}

int utc_parse_time(const char *s, long long *t)
{
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    const char *end = strptime(s, "%Y-%m-%dT%H:%M:%SZ", &tm);
    if (!end || *end) {
        memset(&tm, 0, sizeof(tm));
        end = strptime(s, "%Y-%m-%d", &tm);
        if (!end || *end)
            return -EINVAL;
    }
    int mday = tm.tm_mday, mon = tm.tm_mon;
    time_t v = timegm(&tm);
    /* timegm normalises 2026-02-30 into March: such a date is a typo, not a date. */
    if (v == (time_t)-1 || tm.tm_mday != mday || tm.tm_mon != mon)
        return -EINVAL;
    *t = (long long)v;
    return 0;
}
