/*
 * journal.c — stderr as the systemd journal (journal.h): compare $JOURNAL_STREAM with fstat of
 * descriptor 2, once, and hand out the "<N>" priority prefix of sd-daemon(3).
 */
#include "journal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <sys/stat.h>

bool journal_matches(const char *stream, int fd)
{
    if (!stream || !*stream)
        return false;
    /* "DEVICE:INODE", both decimal (systemd formats them with "%" PRIu64 ":%" PRIu64). */
    char *end;
    errno = 0;
    uintmax_t dev = strtoumax(stream, &end, 10);
    if (errno || end == stream || *end != ':')
        return false;
    const char *ino_text = end + 1;
    uintmax_t ino = strtoumax(ino_text, &end, 10);
    if (errno || end == ino_text || *end != '\0')
        return false;
    struct stat st;
    if (fstat(fd, &st) != 0)
        return false;
    return (uintmax_t)st.st_dev == dev && (uintmax_t)st.st_ino == ino;
}

/* -1 not decided yet, then 0 or 1. Deciding twice gives the same answer, so a race between two
 * first callers is harmless. */
static _Atomic int on_journal = -1;

bool journal_stderr(void)
{
    int v = on_journal;
    if (v < 0) {
        v = journal_matches(getenv("JOURNAL_STREAM"), 2) ? 1 : 0;
        on_journal = v;
    }
    return v == 1;
}

const char *journal_prefix(enum journal_priority prio)
{
    if (!journal_stderr())
        return "";
    switch (prio) {
    case JOURNAL_ERR: return "<3>";
    case JOURNAL_WARNING: return "<4>";
    case JOURNAL_INFO: return "<6>";
    case JOURNAL_DEBUG: return "<7>";
    }
    return "";
}
