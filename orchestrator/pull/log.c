/*
 * log.c — the pull engine's log (poll.h, poll_log): "TIME LEVEL host=HOST EVENT" lines on
 * stderr (each with its syslog priority "<N>" first when stderr is the journal, journal.h), one fprintf each so the loop and the writer thread never interleave, and the scrub
 * that keeps a collector's bytes from forging lines or terminal escapes.
 */
#include <stdarg.h>
#include <stdio.h>
#include <time.h>

#include "journal.h"
#include "poll_int.h"

/* Read by the writer thread too, set on the loop (SIGHUP). */
static _Atomic int log_threshold = LOG_INFO;

void poll_log_set_level(enum log_level level) { log_threshold = (int)level; }

void poll_log(enum log_level level, const char *host, const char *fmt, ...)
{
    static const char *const names[] = {"error", "warn", "info", "debug"};
    /* When stderr is the journal, "<N>" gives each line its syslog priority (journal.h). */
    static const enum journal_priority prios[] = {JOURNAL_ERR, JOURNAL_WARNING, JOURNAL_INFO,
                                                  JOURNAL_DEBUG};
    if ((int)level > log_threshold)
        return;
    char when[32];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    /* One fprintf per line so lines from the writer thread and the loop never interleave. */
    if (host)
        fprintf(stderr, "%s%s.%03ldZ %s host=%s %s\n", journal_prefix(prios[level]), when,
                ts.tv_nsec / 1000000, names[level], host, msg);
    else
        fprintf(stderr, "%s%s.%03ldZ %s %s\n", journal_prefix(prios[level]), when,
                ts.tv_nsec / 1000000, names[level], msg);
}

/* A reason may quote the collector's bytes (a report's host, libcurl's message): control
 * characters become '?', so a collector cannot forge log lines or terminal escapes in the log,
 * poll.last_error, or collect's output. */
void poll__scrub(char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            *s = '?';
}
