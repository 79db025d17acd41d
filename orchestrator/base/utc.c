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

/* Days since 1970-01-01 as a proleptic Gregorian date (H. Hinnant, "chrono-Compatible Low-Level
 * Date Algorithms", civil_from_days), for days >= 0. */
static void civil_from_days(long long z, unsigned *y, unsigned *m, unsigned *d)
{
    z += 719468;
    long long era = z / 146097;
    unsigned doe = (unsigned)(z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (unsigned)(yoe + era * 400) + (*m <= 2);
}

static char *two_digits(char *p, unsigned v)
{
    p[0] = (char)('0' + v / 10);
    p[1] = (char)('0' + v % 10);
    return p + 2;
}

/* The export writes one of these per row: 1970..9999 are formatted here, a few dozen
 * instructions against gmtime_r + strftime's thousand; other times take the library's path. */
#define UTC_FAST_END 253402300800LL /* 10000-01-01T00:00:00Z */

const char *utc_iso8601(long long t, char *buf, size_t size)
{
    if (t >= 0 && t < UTC_FAST_END && size >= sizeof("YYYY-MM-DDTHH:MM:SSZ")) {
        unsigned y, mo, d, sec = (unsigned)(t % 86400);
        civil_from_days(t / 86400, &y, &mo, &d);
        char *p = two_digits(buf, y / 100);
        p = two_digits(p, y % 100);
        *p++ = '-';
        p = two_digits(p, mo);
        *p++ = '-';
        p = two_digits(p, d);
        *p++ = 'T';
        p = two_digits(p, sec / 3600);
        *p++ = ':';
        p = two_digits(p, sec / 60 % 60);
        *p++ = ':';
        p = two_digits(p, sec % 60);
        *p++ = 'Z';
        *p = '\0';
        return buf;
    }
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
