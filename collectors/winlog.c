/*
 * winlog.c — the Windows service's log: a rotated file under %ProgramData%\tlsgate\logs and the
 * Event Log for start, stop and the fatal error (see winlog.h). One lock serialises the file,
 * because the collector may log from more than one thread (its loop, the SCM's control thread).
 */
#ifdef _WIN32

#include "winlog.h"

#include "platform.h" /* winsock2.h, windows.h */

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "logfile.h"
#include "messages.h"

#define WINLOG_EVENTLOG_KEY                                                                        \
    L"SYSTEM\\CurrentControlSet\\Services\\EventLog\\Application\\tlsgate-collector"
#define LAST_ERROR_MAX 512

static CRITICAL_SECTION lock;
static BOOL lock_ready;
static struct logfile *file;
static char file_path[WINLOG_PATH_MAX];
static HANDLE source;
static char last_error[LAST_ERROR_MAX];

/* ---- paths and strings ---- */

/* ProgramData where Windows itself keeps it (ProfileList\ProgramData, the value the
 * environment variable is made from). Read first, because not every process gets the variable
 * right: Wine gives its services ProgramData=C:\users\Public. 0 or -ENOENT. */
static int programdata_from_registry(char *out, DWORD size)
{
    char raw[WINLOG_PATH_MAX];
    DWORD type, n = sizeof(raw) - 1;
    HKEY key;
    if (RegOpenKeyExA(HKEY_LOCAL_MACHINE,
                      "SOFTWARE\\Microsoft\\Windows NT\\CurrentVersion\\ProfileList", 0,
                      KEY_QUERY_VALUE | KEY_WOW64_64KEY, &key) != ERROR_SUCCESS)
        return -ENOENT;
    LONG rc = RegQueryValueExA(key, "ProgramData", NULL, &type, (BYTE *)raw, &n);
    RegCloseKey(key);
    if (rc != ERROR_SUCCESS || (type != REG_SZ && type != REG_EXPAND_SZ))
        return -ENOENT;
    raw[n < sizeof(raw) ? n : sizeof(raw) - 1] = '\0';
    DWORD got = ExpandEnvironmentStringsA(raw, out, size);
    return got == 0 || got > size || !out[0] || strchr(out, '%') ? -ENOENT : 0;
}

int winlog_data_dir(char *out, size_t size)
{
    char base[WINLOG_PATH_MAX];
    if (programdata_from_registry(base, sizeof(base)) < 0) {
        DWORD n = GetEnvironmentVariableA("ProgramData", base, sizeof(base));
        if (n == 0)
            return -ENOENT;
        if (n >= sizeof(base))
            return -ENAMETOOLONG;
    }
    size_t n = strlen(base);
    while (n > 0 && (base[n - 1] == '\\' || base[n - 1] == '/'))
        base[--n] = '\0';
    int w = snprintf(out, size, "%s\\tlsgate", base);
    return w < 0 || (size_t)w >= size ? -ENAMETOOLONG : 0;
}

int winlog_log_dir(char *out, size_t size)
{
    char data[WINLOG_PATH_MAX];
    int rc = winlog_data_dir(data, sizeof(data));
    if (rc < 0)
        return rc;
    int w = snprintf(out, size, "%s\\logs", data);
    return w < 0 || (size_t)w >= size ? -ENAMETOOLONG : 0;
}

wchar_t *winlog_widen(const char *s)
{
    if (!s)
        return NULL;
    int n = MultiByteToWideChar(CP_ACP, 0, s, -1, NULL, 0);
    if (n <= 0)
        return NULL;
    wchar_t *w = malloc((size_t)n * sizeof(wchar_t));
    if (w && MultiByteToWideChar(CP_ACP, 0, s, -1, w, n) != n) {
        free(w);
        return NULL;
    }
    return w;
}

char *winlog_narrow(const wchar_t *s)
{
    if (!s)
        return NULL;
    int n = WideCharToMultiByte(CP_ACP, 0, s, -1, NULL, 0, NULL, NULL);
    if (n <= 0)
        return NULL;
    char *a = malloc((size_t)n);
    if (a && WideCharToMultiByte(CP_ACP, 0, s, -1, a, n, NULL, NULL) != n) {
        free(a);
        return NULL;
    }
    return a;
}

/* Creates `dir` and its parent when missing. 0 or -errno. */
static int make_dir(const char *dir)
{
    if (CreateDirectoryA(dir, NULL) || GetLastError() == ERROR_ALREADY_EXISTS)
        return 0;
    if (GetLastError() != ERROR_PATH_NOT_FOUND)
        return -EACCES;
    char parent[WINLOG_PATH_MAX];
    snprintf(parent, sizeof(parent), "%s", dir);
    char *cut = strrchr(parent, '\\');
    if (!cut || cut == parent)
        return -ENOENT;
    *cut = '\0';
    int rc = make_dir(parent);
    if (rc < 0)
        return rc;
    if (CreateDirectoryA(dir, NULL) || GetLastError() == ERROR_ALREADY_EXISTS)
        return 0;
    return -EACCES;
}

/* ---- the Event Log ---- */

static void report_event(WORD type, DWORD id, const char *const *strings, WORD n)
{
    if (!source)
        return;
    const wchar_t *w[3] = {NULL, NULL, NULL};
    WORD got = 0;
    for (; got < n && got < 3; got++) {
        w[got] = winlog_widen(strings[got]);
        if (!w[got])
            break;
    }
    if (got == n)
        ReportEventW(source, type, 0, id, NULL, n, 0, w, NULL);
    for (WORD i = 0; i < got; i++)
        free((void *)w[i]);
}

void winlog_event_started(const char *config)
{
    const char *s[3] = {TLSGATE_VERSION, config ? config : "(none)",
                        file_path[0] ? file_path : "(Event Log only)"};
    report_event(EVENTLOG_INFORMATION_TYPE, MSG_SERVICE_STARTED, s, 3);
}

void winlog_event_stopped(int exit_code)
{
    if (exit_code == 0) {
        report_event(EVENTLOG_INFORMATION_TYPE, MSG_SERVICE_STOPPED, NULL, 0);
        return;
    }
    char code[16], why[LAST_ERROR_MAX];
    snprintf(code, sizeof(code), "%d", exit_code);
    if (lock_ready)
        EnterCriticalSection(&lock);
    snprintf(why, sizeof(why), "%s", last_error[0] ? last_error : "(no error was logged)");
    if (lock_ready)
        LeaveCriticalSection(&lock);
    const char *s[2] = {code, why};
    report_event(EVENTLOG_ERROR_TYPE, MSG_SERVICE_FAILED, s, 2);
}

void winlog_event_warning(const char *text)
{
    const char *s[1] = {text};
    report_event(EVENTLOG_WARNING_TYPE, MSG_SERVICE_WARNING, s, 1);
}

/* ---- the file ---- */

int winlog_open(const char *dir)
{
    if (!lock_ready) {
        InitializeCriticalSection(&lock);
        lock_ready = TRUE;
    }
    if (!source)
        source = RegisterEventSourceW(NULL, WINLOG_SOURCE);
    file_path[0] = '\0';
    int w = snprintf(file_path, sizeof(file_path), "%s\\%s", dir, WINLOG_FILE_NAME);
    int rc = w < 0 || (size_t)w >= sizeof(file_path) ? -ENAMETOOLONG : make_dir(dir);
    if (rc == 0)
        rc = logfile_open(file_path, WINLOG_FILE_CAP, WINLOG_FILE_KEEP, &file);
    if (rc < 0) {
        char msg[WINLOG_PATH_MAX + 128];
        snprintf(msg, sizeof(msg),
                 "cannot open the log file %s\\%s (%s): logging to the Event "
                 "Log only",
                 dir, WINLOG_FILE_NAME, strerror(-rc));
        file_path[0] = '\0';
        winlog_event_warning(msg);
    }
    return rc;
}

const char *winlog_file_path(void) { return file_path; }

void winlog_sink(int level, const char *line, void *arg)
{
    (void)arg;
    /* Debug lines (libmicrohttpd's failed handshakes, from any scanner on the network) would
     * rotate the useful ones away. */
    if (level > 2)
        return;
    const char *name = level <= 0 ? "error" : level == 1 ? "warn" : "info";
    SYSTEMTIME t;
    GetSystemTime(&t);
    char buf[LOGFILE_LINE_MAX];
    snprintf(buf, sizeof(buf), "%04u-%02u-%02uT%02u:%02u:%02uZ %s %s", t.wYear, t.wMonth, t.wDay,
             t.wHour, t.wMinute, t.wSecond, name, line);
    /* One line per entry: a message with a line end in it must not forge a second entry. */
    for (char *p = buf; *p; p++)
        if (*p == '\r' || *p == '\n')
            *p = ' ';
    if (!lock_ready)
        return;
    EnterCriticalSection(&lock);
    if (level <= 0)
        snprintf(last_error, sizeof(last_error), "%s", line);
    if (file)
        logfile_write(file, buf);
    LeaveCriticalSection(&lock);
}

void winlog_close(void)
{
    if (lock_ready)
        EnterCriticalSection(&lock);
    logfile_close(file);
    file = NULL;
    if (source)
        DeregisterEventSource(source);
    source = NULL;
    if (lock_ready)
        LeaveCriticalSection(&lock);
}

/* ---- the Event Log source's registration ---- */

static unsigned long win_error(char *err, size_t errsize, DWORD code, const char *what)
{
    char text[256];
    platform_win_message(code, text, sizeof(text));
    snprintf(err, errsize, "%s: %s (error %lu)", what, text[0] ? text : "failed",
             (unsigned long)code);
    return code;
}

unsigned long winlog_register_source(const wchar_t *exe, char *err, size_t errsize)
{
    HKEY key;
    LONG rc = RegCreateKeyExW(HKEY_LOCAL_MACHINE, WINLOG_EVENTLOG_KEY, 0, NULL, 0, KEY_SET_VALUE,
                              NULL, &key, NULL);
    if (rc != ERROR_SUCCESS)
        return win_error(err, errsize, (DWORD)rc,
                         "cannot create the Event Log source key HKLM\\SYSTEM\\CurrentControlSet"
                         "\\Services\\EventLog\\Application\\tlsgate-collector");
    DWORD types = EVENTLOG_ERROR_TYPE | EVENTLOG_WARNING_TYPE | EVENTLOG_INFORMATION_TYPE;
    rc = RegSetValueExW(key, L"EventMessageFile", 0, REG_EXPAND_SZ, (const BYTE *)exe,
                        (DWORD)((wcslen(exe) + 1) * sizeof(wchar_t)));
    if (rc == ERROR_SUCCESS)
        rc = RegSetValueExW(key, L"TypesSupported", 0, REG_DWORD, (const BYTE *)&types,
                            sizeof(types));
    RegCloseKey(key);
    if (rc != ERROR_SUCCESS)
        return win_error(err, errsize, (DWORD)rc, "cannot write the Event Log source's values");
    return 0;
}

unsigned long winlog_unregister_source(char *err, size_t errsize)
{
    LONG rc = RegDeleteKeyW(HKEY_LOCAL_MACHINE, WINLOG_EVENTLOG_KEY);
    if (rc != ERROR_SUCCESS && rc != ERROR_FILE_NOT_FOUND)
        return win_error(err, errsize, (DWORD)rc, "cannot remove the Event Log source");
    return 0;
}

#endif /* _WIN32 */
