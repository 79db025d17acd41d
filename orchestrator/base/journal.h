/*
 * journal: is stderr the systemd journal? When a service's stderr is connected to journald,
 * systemd sets $JOURNAL_STREAM to "DEVICE:INODE" of that stream (systemd.exec(5)). Lines written
 * there may then start with a syslog priority, "<N>" (sd-daemon(3)), which journald takes as the
 * line's priority, so `journalctl -p warning` shows the warnings and errors only. On a terminal,
 * a pipe or a file the lines stay plain.
 */
#ifndef TLSGATE_JOURNAL_H
#define TLSGATE_JOURNAL_H

#include <stdbool.h>

/* syslog(3) priorities, as journald reads them from a "<N>" prefix. */
enum journal_priority {
    JOURNAL_ERR = 3,
    JOURNAL_WARNING = 4,
    JOURNAL_INFO = 6,
    JOURNAL_DEBUG = 7,
};

/* True when $JOURNAL_STREAM names the device and inode of file descriptor 2. Decided once per
 * process (the first call), safe from any thread. */
bool journal_stderr(void);

/* The same test for any descriptor and value (for tests): `stream` is $JOURNAL_STREAM's text
 * or NULL. */
bool journal_matches(const char *stream, int fd);

/* "<N>" for `prio` when stderr is the journal, else "": the prefix of one log line. */
const char *journal_prefix(enum journal_priority prio);

#endif
