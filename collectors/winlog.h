/*
 * winlog: where tlsgate-collector's log lines go when it runs as a Windows service, which has no
 * console: a capped, rotated file (logfile.h) under %ProgramData%\tlsgate\logs, plus the
 * Windows Event Log (source "tlsgate-collector", message table collectors/windows/messages.mc)
 * for the service's start, its stop and the error that stopped it. Also the few Windows paths
 * and string conversions the service code shares. Windows only.
 *
 * Strings: char * paths and messages are in the process's ANSI code page, as main's argv and
 * the C library's fopen take them; they are widened with that code page for the W APIs.
 */
#ifndef TLSGATE_WINLOG_H
#define TLSGATE_WINLOG_H

#ifdef _WIN32

#include <stddef.h>
#include <wchar.h>

/* The Event Log source and the service share this name. */
#define WINLOG_SOURCE L"tlsgate-collector"
/* The log file: at most WINLOG_FILE_CAP bytes, then rotated into .1 .. .WINLOG_FILE_KEEP. */
#define WINLOG_FILE_NAME "collector.log"
#define WINLOG_FILE_CAP (4 * 1024 * 1024)
#define WINLOG_FILE_KEEP 3
/* Longest path handled (Windows' MAX_PATH is 260; long-path-aware callers get more). */
#define WINLOG_PATH_MAX 1024

/* %ProgramData%\tlsgate (no trailing backslash): the registry's ProfileList\ProgramData
 * (what the environment variable is made from), else the ProgramData variable. 0, or -ENOENT /
 * -ENAMETOOLONG. */
int winlog_data_dir(char *out, size_t size);
/* %ProgramData%\tlsgate\logs: the one folder the service account may write. */
int winlog_log_dir(char *out, size_t size);

/* ANSI code page <-> UTF-16, malloc'd; NULL on failure or NULL input. */
wchar_t *winlog_widen(const char *s);
char *winlog_narrow(const wchar_t *s);

/*
 * Starts service logging: opens DIR\collector.log (creating DIR) and the Event Log source.
 * A file that cannot be opened is reported to the Event Log and logging goes on there only.
 * Always usable afterwards; returns 0, or -errno when the file could not be opened.
 */
int winlog_open(const char *dir);
/* The path of the open log file ("" when none). */
const char *winlog_file_path(void);

/* A collector log sink (collector_set_log_sink): one line "TIME LEVEL text" into the file,
 * for levels error (0), warn (1) and info (2); debug lines are dropped.
 * Thread-safe. Error lines are remembered for winlog_event_stopped. */
void winlog_sink(int level, const char *line, void *arg);

/* Event Log entries: started (version, config), stopped (exit 0), or failed (exit code and the
 * last error line the collector logged). */
void winlog_event_started(const char *config);
void winlog_event_stopped(int exit_code);
void winlog_event_warning(const char *text);

void winlog_close(void);

/* Registers the Event Log source (EventMessageFile = exe, which carries the message table), or
 * removes it. 0 or a Win32 error code, with a message in err. */
unsigned long winlog_register_source(const wchar_t *exe, char *err, size_t errsize);
unsigned long winlog_unregister_source(char *err, size_t errsize);

#endif /* _WIN32 */
#endif
