/*
 * winsvc.c — `tlsgate-collector service install|uninstall|start|stop|status|refresh|run`: the
 * collector as the Windows service "tlsgate-collector" (see winservice.h). Windows only.
 *
 * Install creates (or, when it exists, reconfigures) an auto-start service that the SCM restarts
 * after a failure, running as the virtual account NT SERVICE\tlsgate-collector (a member of
 * Users: it reads HKLM like any user and nothing else is granted to it) with no privilege but
 * SeChangeNotifyPrivilege, with the command line
 * `"EXE" service run --config "CONFIG"`. It registers the Event Log source (winlog.c), gives
 * %ProgramData%\tlsgate to SYSTEM and Administrators with read for the service, its logs\
 * folder with modify for the service (the only place it can write), and the key file a
 * protected ACL: SYSTEM, Administrators, the service (read) and nobody else. With
 * "firewall_allow" in the config it adds the inbound firewall rule (winfw.c). A failed step
 * of a fresh install removes the service again.
 *
 * Run: the SCM starts `service run`; StartServiceCtrlDispatcherW calls service_main, which
 * sends the collector's log lines to winlog and runs collector_main (collector.h) on that
 * thread. The control handler (the dispatcher thread) turns STOP and SHUTDOWN into
 * collector_request_stop and control code 128 into collector_request_refresh. SERVICE_RUNNING
 * is reported when the collector logs that it serves ("serving ..." at info level, once it
 * listens), so `service start` and `net start` return only when the port is open or the start
 * failed; STOPPED carries the collector's exit code (0, or ERROR_SERVICE_SPECIFIC_ERROR with 2,
 * 3 or 4), which is what makes the SCM's failure actions restart it. A watchdog thread keeps
 * the SCM informed while starting or stopping and ends the process if a stop takes over 30 s.
 *
 * Under Wine some of these calls are missing or do nothing (service SID type, failure-action
 * flag, file ACLs, netsh advfirewall): where Wine is detected, what it cannot do is printed as a
 * note instead of failing; on Windows every step must succeed.
 */
#ifdef _WIN32

#include "winservice.h"

#include "platform.h" /* winsock2.h, windows.h */

#include <aclapi.h>
#include <sddl.h>

#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cfgutil.h"
#include "collector.h"
#include "keyacl.h"
#include "svcsid.h"
#include "winfw.h"
#include "winlog.h"

#define SVC_NAME_W L"tlsgate-collector"
#define SVC_DISPLAY_W L"tlsgate collector"
#define SVC_DESCRIPTION_W                                                                          \
    L"Serves this host's TLS 1.2 readiness report to the tlsgate orchestrator over HTTPS with "    \
    L"mutual TLS."
#define SVC_ACCOUNT_W L"NT SERVICE\\tlsgate-collector"

#define EXIT_NOT_RUNNING 1
#define EXIT_USAGE 2
#define EXIT_INPUT 3
#define EXIT_SYSTEM 4

#define CONFIG_MAX_BYTES (64 * 1024)
#define ERR_SIZE 1024
#define START_WAIT_MS 60000
#define STOP_WAIT_MS 40000
#define STOP_GIVE_UP_MS 30000

static void say_error(const char *cmd, const char *fmt, ...)
    __attribute__((format(gnu_printf, 2, 3)));
static void say_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "tlsgate-collector: service %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

/* "TEXT (error N)" for a Win32 error code. */
static const char *win_text(DWORD code)
{
    static char buf[320];
    char text[256];
    platform_win_message(code, text, sizeof(text));
    snprintf(buf, sizeof(buf), "%s (error %lu)", text[0] ? text : "failed", (unsigned long)code);
    return buf;
}

static bool is_wine(void)
{
    HMODULE ntdll = GetModuleHandleW(L"ntdll.dll");
    return ntdll && GetProcAddress(ntdll, "wine_get_version") != NULL;
}

static void usage(FILE *f)
{
    fputs("usage: tlsgate-collector service COMMAND [--config FILE]\n"
          "\n"
          "Runs the collector as the Windows service \"" WINSVC_NAME "\". Every command but\n"
          "status needs an elevated (administrator) prompt.\n"
          "  install [--config FILE]  create the service, or update it: automatic start,\n"
          "                           restarted after a failure, account\n"
          "                           NT SERVICE\\" WINSVC_NAME ", command line\n"
          "                           \"EXE\" service run --config FILE; register the Event Log\n"
          "                           source; restrict %ProgramData%\\tlsgate to SYSTEM,\n"
          "                           Administrators and the service (read; logs\\ modify) and\n"
          "                           the key file to those three; with \"firewall_allow\" in\n"
          "                           the config, add an inbound firewall rule for the port\n"
          "                           from those addresses only\n"
          "  uninstall                stop and delete the service, its Event Log source and its\n"
          "                           firewall rule; the config, certificates and logs stay\n"
          "  start                    start it and wait until it serves, or say why it stopped\n"
          "  stop                     stop it and wait\n"
          "  status                   state, process, account, command line, last exit code,\n"
          "                           log file, and whether only SYSTEM, Administrators and\n"
          "                           the service can read the key file\n"
          "  refresh                  rebuild the report now (service control code 128, also\n"
          "                           `sc control " WINSVC_NAME " 128`)\n"
          "  run [--config FILE]      what the service control manager starts (not a console\n"
          "                           command: run `tlsgate-collector --config FILE` there)\n"
          "\n"
          "FILE defaults to %ProgramData%\\tlsgate\\" WINSVC_CONFIG_NAME "; the paths in it are\n"
          "relative to its folder. It must name \"listen\", \"cert\", \"key\" and \"ca\"; the\n"
          "service reads nothing else. Logs: %ProgramData%\\tlsgate\\logs\\collector.log\n"
          "(4 MiB, 3 older files kept) and the Application Event Log (source " WINSVC_NAME ")\n"
          "for start, stop and the error that stopped it.\n"
          "Exit: 0 done (status: running), 1 status: not running, 2 usage, 3 bad config or\n"
          "files, 4 system error (not installed, access denied, the service failed).\n",
          f);
}

/* ---- paths ---- */

int winsvc_default_config(char *out, size_t size)
{
    char dir[WINLOG_PATH_MAX];
    int rc = winlog_data_dir(dir, sizeof(dir));
    if (rc < 0)
        return rc;
    int w = snprintf(out, size, "%s\\%s", dir, WINSVC_CONFIG_NAME);
    return w < 0 || (size_t)w >= size ? -ENAMETOOLONG : 0;
}

/* An absolute, normalised copy of `path` (malloc'd), or NULL. */
static char *full_path(const char *path)
{
    char buf[WINLOG_PATH_MAX];
    DWORD n = GetFullPathNameA(path, sizeof(buf), buf, NULL);
    if (n == 0 || n >= sizeof(buf))
        return NULL;
    return strdup(buf);
}

/* True when `path` is `dir` or inside it (case-insensitive, as NTFS names are). */
static bool path_within(const char *path, const char *dir)
{
    size_t n = strlen(dir);
    return _strnicmp(path, dir, n) == 0 && (path[n] == '\0' || path[n] == '\\');
}

/* ---- the config, as far as the installer needs it ---- */

struct svc_config {
    char *path; /* absolute */
    char *key;  /* absolute */
    uint16_t port;
    char *allow[CFG_ALLOW_MAX];
    size_t nallow;
    /* "enroll" in the config: the service makes and renews its own key and certificate, so
     * it may write the key's folder (identity_dir, not the data folder itself). */
    bool enroll;
    char identity_dir[WINLOG_PATH_MAX];
};

static void svc_config_release(struct svc_config *c)
{
    free(c->path);
    free(c->key);
    for (size_t i = 0; i < c->nallow; i++)
        free(c->allow[i]);
    memset(c, 0, sizeof(*c));
}

/* The port of "ADDR:PORT" or "[ADDR]:PORT"; -1 when malformed. */
static long listen_port(const char *s)
{
    const char *colon = strrchr(s, ':');
    if (!colon || colon == s)
        return -1;
    char *end;
    long p = strtol(colon + 1, &end, 10);
    return end == colon + 1 || *end || p < 0 || p > 65535 ? -1 : p;
}

/* Reads what install needs from the config at `path`. 0 or EXIT_* with a message. */
static int svc_config_load(const char *cmd, const char *path, struct svc_config *c)
{
    memset(c, 0, sizeof(*c));
    c->path = full_path(path);
    if (!c->path) {
        say_error(cmd, "%s: not a usable path", path);
        return EXIT_INPUT;
    }
    json_error_t je;
    json_t *root = json_load_file(c->path, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        if (je.line < 0)
            say_error(cmd, "%s: %s", c->path, je.text);
        else
            say_error(cmd, "%s:%d:%d: %s", c->path, je.line, je.column, je.text);
        return EXIT_INPUT;
    }
    int ret = EXIT_INPUT;
    if (!json_is_object(root)) {
        say_error(cmd, "%s: the config must be a JSON object", c->path);
        goto out;
    }
    static const char *const required[] = {"listen", "cert", "key", "ca"};
    for (size_t i = 0; i < 4; i++) {
        if (!json_is_string(json_object_get(root, required[i]))) {
            say_error(cmd,
                      "%s: \"%s\" is missing or not a string; the service takes all its "
                      "settings from this file",
                      c->path, required[i]);
            goto out;
        }
    }
    const char *listen = json_string_value(json_object_get(root, "listen"));
    long port = listen_port(listen);
    if (port < 0) {
        say_error(cmd, "%s: listen: '%s' is not ADDR:PORT", c->path, listen);
        goto out;
    }
    c->port = (uint16_t)port;
    char *key = cfg_resolve(c->path, json_string_value(json_object_get(root, "key")));
    c->key = key ? full_path(key) : NULL;
    free(key);
    if (!c->key) {
        say_error(cmd, "%s: key: not a usable path", c->path);
        goto out;
    }
    c->enroll = json_is_object(json_object_get(root, "enroll"));
    if (c->enroll) {
        snprintf(c->identity_dir, sizeof(c->identity_dir), "%s", c->key);
        char *slash = strrchr(c->identity_dir, '\\');
        if (slash)
            *slash = '\0';
    }
    DWORD attr = GetFileAttributesA(c->key);
    if (c->enroll && attr == INVALID_FILE_ATTRIBUTES) {
        /* Not there yet: the collector makes it when it enrolls. */
    } else if (attr == INVALID_FILE_ATTRIBUTES || (attr & FILE_ATTRIBUTE_DIRECTORY)) {
        say_error(cmd, "%s: key: %s is not a file: %s", c->path, c->key, win_text(GetLastError()));
        goto out;
    }
    json_t *allow = json_object_get(root, "firewall_allow");
    if (allow) {
        size_t i;
        json_t *item;
        char why[128];
        if (cfg_check_address_list(allow, "firewall_allow", why, sizeof(why))) {
            say_error(cmd, "%s: %s", c->path, why);
            goto out;
        }
        json_array_foreach(allow, i, item)
        {
            c->allow[c->nallow] = strdup(json_string_value(item));
            if (!c->allow[c->nallow++]) {
                ret = EXIT_SYSTEM;
                goto out;
            }
        }
        if (c->nallow > 0 && c->port == 0) {
            say_error(cmd, "%s: firewall_allow needs a fixed port in \"listen\", not 0", c->path);
            goto out;
        }
    }
    ret = 0;
out:
    json_decref(root);
    return ret;
}

/* ---- ACLs ---- */

/* The service account's SID as text (S-1-5-80-...). */
static const char *service_sid(void)
{
    static char sid[SVCSID_TEXT_MAX];
    if (!sid[0] && svcsid_format(WINSVC_NAME, sid, sizeof(sid)) < 0)
        sid[0] = '\0';
    return sid;
}

/* Sets a protected DACL given in SDDL (the service SID substituted for %s). 0 or Win32 error. */
static DWORD set_dacl(const char *path, const char *sddl_fmt)
{
    char sddl[512];
    snprintf(sddl, sizeof(sddl), sddl_fmt, service_sid(), service_sid(), service_sid());
    PSECURITY_DESCRIPTOR sd = NULL;
    if (!ConvertStringSecurityDescriptorToSecurityDescriptorA(sddl, SDDL_REVISION_1, &sd, NULL))
        return GetLastError();
    BOOL present = FALSE, defaulted = FALSE;
    PACL dacl = NULL;
    DWORD rc = ERROR_INVALID_SECURITY_DESCR;
    if (GetSecurityDescriptorDacl(sd, &present, &dacl, &defaulted) && present && dacl)
        rc = SetNamedSecurityInfoA((char *)path, SE_FILE_OBJECT,
                                   DACL_SECURITY_INFORMATION | PROTECTED_DACL_SECURITY_INFORMATION,
                                   NULL, NULL, dacl, NULL);
    LocalFree(sd);
    return rc;
}

/*
 * Checks that nobody but SYSTEM, Administrators and the service can read `path` (keyacl.h, the
 * same judgement the collector makes at start). 1 yes, 0 no (who else is named in `why`, with
 * the icacls fix), -1 cannot read the ACL (why says so).
 */
static int only_trusted_readers(const char *path, char *why, size_t whysize)
{
    int rc = keyacl_check_file(path, why, whysize);
    return rc == 0 ? 1 : rc == -1 ? 0 : -1;
}

/* The installer's ACL step. 0 or EXIT_SYSTEM with a message. */
static int install_acls(const struct svc_config *c, bool wine)
{
    char data[WINLOG_PATH_MAX], logs[WINLOG_PATH_MAX];
    if (winlog_data_dir(data, sizeof(data)) < 0 || winlog_log_dir(logs, sizeof(logs)) < 0) {
        say_error("install", "cannot find %%ProgramData%% (no ProgramData variable)");
        return EXIT_SYSTEM;
    }
    if (c->enroll && (_stricmp(c->identity_dir, data) == 0 || !path_within(c->key, data))) {
        say_error("install",
                  "%s: with \"enroll\", keep \"cert\" and \"key\" in a folder of their own "
                  "under %s (\"identity\\\\host.pem\", \"identity\\\\host.key\"): the "
                  "service writes there, and must not be able to rewrite its config",
                  c->path, data);
        return EXIT_INPUT;
    }
    const char *dirs[3] = {data, logs, c->enroll ? c->identity_dir : NULL};
    for (int i = 0; i < 3 && dirs[i]; i++) {
        if (!CreateDirectoryA(dirs[i], NULL) && GetLastError() != ERROR_ALREADY_EXISTS) {
            say_error("install", "cannot create %s: %s", dirs[i], win_text(GetLastError()));
            return EXIT_SYSTEM;
        }
    }
    struct {
        const char *path, *sddl, *what;
    } steps[] = {
        /* 0x1200a9: read and execute (list, traverse); 0x1301bf: modify (no ACL changes). */
        {data, "D:P(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)(A;OICI;0x1200a9;;;%s)",
         "SYSTEM, Administrators: full; the service: read"},
        {logs, "D:P(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)(A;OICI;0x1301bf;;;%s)",
         "SYSTEM, Administrators: full; the service: modify"},
        {c->key, "D:P(A;;FA;;;SY)(A;;FA;;;BA)(A;;FR;;;%s)",
         "SYSTEM, Administrators: full; the service: read; nobody else"},
        /* enroll: the service writes its key and certificate (KEY.tmp, KEY.new, renames over
         * KEY), and a key it makes inherits this: private to SYSTEM, Administrators and it. */
        {c->identity_dir, "D:P(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)(A;OICI;0x1301bf;;;%s)",
         "SYSTEM, Administrators: full; the service: modify (enrollment)"},
    };
    if (c->enroll) {
        steps[2] = steps[3];
        steps[3].path = GetFileAttributesA(c->key) != INVALID_FILE_ATTRIBUTES ? c->key : NULL;
        steps[3].sddl = "D:P(A;;FA;;;SY)(A;;FA;;;BA)(A;;0x1301bf;;;%s)";
        steps[3].what = "SYSTEM, Administrators: full; the service: modify (renewal); nobody else";
    } else {
        steps[3].path = NULL;
    }
    for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]) && steps[i].path; i++) {
        DWORD rc = set_dacl(steps[i].path, steps[i].sddl);
        if (rc != ERROR_SUCCESS) {
            say_error("install", "cannot set the ACL of %s: %s", steps[i].path, win_text(rc));
            return EXIT_SYSTEM;
        }
        printf("acl: %s (%s)\n", steps[i].path, steps[i].what);
    }
    if (!path_within(c->path, data))
        printf("acl: the config's folder is not under %s: its ACL was left as it is\n", data);
    char why[512];
    if (c->enroll && GetFileAttributesA(c->key) == INVALID_FILE_ATTRIBUTES) {
        printf("acl: %s does not exist yet: the collector makes it when it enrolls, inheriting "
               "its folder's ACL\n",
               c->key);
        return 0;
    }
    int ok = only_trusted_readers(c->key, why, sizeof(why));
    if (ok != 1) {
        if (wine) {
            printf("note: Wine does not keep file ACLs, so the key file's cannot be checked here "
                   "(%s)\n",
                   why);
        } else {
            say_error("install", "%s: the ACL just set does not hold: %s", c->key, why);
            return EXIT_SYSTEM;
        }
    }
    return 0;
}

/* ---- the service control manager ---- */

static SC_HANDLE open_scm(const char *cmd, DWORD access)
{
    SC_HANDLE scm = OpenSCManagerW(NULL, NULL, access);
    if (!scm) {
        DWORD e = GetLastError();
        say_error(cmd, "cannot open the service control manager: %s%s", win_text(e),
                  e == ERROR_ACCESS_DENIED ? "; run it from an elevated (administrator) prompt"
                                           : "");
    }
    return scm;
}

/* Opens the service; NULL with a message ("not installed" says so). */
static SC_HANDLE open_service(const char *cmd, SC_HANDLE scm, DWORD access)
{
    SC_HANDLE s = OpenServiceW(scm, SVC_NAME_W, access);
    if (!s) {
        DWORD e = GetLastError();
        if (e == ERROR_SERVICE_DOES_NOT_EXIST)
            say_error(cmd, "the service " WINSVC_NAME " is not installed");
        else
            say_error(cmd, "cannot open the service " WINSVC_NAME ": %s%s", win_text(e),
                      e == ERROR_ACCESS_DENIED ? "; run it from an elevated (administrator) prompt"
                                               : "");
    }
    return s;
}

static bool query_status(SC_HANDLE s, SERVICE_STATUS_PROCESS *st)
{
    DWORD need;
    return QueryServiceStatusEx(s, SC_STATUS_PROCESS_INFO, (BYTE *)st, sizeof(*st), &need);
}

/* Waits until the state is `want` or STOPPED (or the time is up). Returns the last state. */
static DWORD wait_state(SC_HANDLE s, DWORD want, DWORD ms, SERVICE_STATUS_PROCESS *st)
{
    for (DWORD waited = 0;; waited += 200) {
        if (!query_status(s, st))
            return 0;
        if (st->dwCurrentState == want || st->dwCurrentState == SERVICE_STOPPED || waited >= ms)
            return st->dwCurrentState;
        Sleep(200);
    }
}

static const char *state_name(DWORD state)
{
    switch (state) {
    case SERVICE_STOPPED: return "stopped";
    case SERVICE_START_PENDING: return "starting";
    case SERVICE_STOP_PENDING: return "stopping";
    case SERVICE_RUNNING: return "running";
    case SERVICE_CONTINUE_PENDING: return "continuing";
    case SERVICE_PAUSE_PENDING: return "pausing";
    case SERVICE_PAUSED: return "paused";
    default: return "unknown";
    }
}

/* The collector's exit code from a stopped service's status (0 when it stopped cleanly or
 * never ran). */
static int exit_code_of(const SERVICE_STATUS_PROCESS *st)
{
    if (st->dwWin32ExitCode == ERROR_SERVICE_NEVER_STARTED)
        return 0;
    if (st->dwWin32ExitCode == ERROR_SERVICE_SPECIFIC_ERROR)
        return (int)st->dwServiceSpecificExitCode;
    return st->dwWin32ExitCode == NO_ERROR ? 0 : EXIT_SYSTEM;
}

/* ChangeServiceConfig2W; under Wine a missing level is a note. 0 or EXIT_SYSTEM. */
static int config2(SC_HANDLE s, DWORD level, void *info, const char *what, bool wine)
{
    if (ChangeServiceConfig2W(s, level, info))
        return 0;
    DWORD e = GetLastError();
    if (wine) {
        printf("note: Wine's service manager does not support %s (%s); Windows does\n", what,
               win_text(e));
        return 0;
    }
    say_error("install", "cannot set %s: %s", what, win_text(e));
    return EXIT_SYSTEM;
}

static int cmd_install(const char *config)
{
    bool wine = is_wine();
    struct svc_config c;
    int ret = svc_config_load("install", config, &c);
    if (ret)
        goto out_config;

    wchar_t exe[MAX_PATH];
    DWORD n = GetModuleFileNameW(NULL, exe, MAX_PATH);
    if (n == 0 || n >= MAX_PATH) {
        say_error("install", "cannot find this program's own path");
        ret = EXIT_SYSTEM;
        goto out_config;
    }
    wchar_t *wconfig = winlog_widen(c.path);
    static wchar_t binpath[2 * MAX_PATH + WINLOG_PATH_MAX];
    if (!wconfig || wcschr(wconfig, L'"')) {
        say_error("install", "%s: unusable characters in the config path", c.path);
        free(wconfig);
        ret = EXIT_INPUT;
        goto out_config;
    }
    swprintf(binpath, sizeof(binpath) / sizeof(binpath[0]), L"\"%ls\" service run --config \"%ls\"",
             exe, wconfig);
    free(wconfig);

    SC_HANDLE scm = open_scm("install", SC_MANAGER_CONNECT | SC_MANAGER_CREATE_SERVICE);
    if (!scm) {
        ret = EXIT_SYSTEM;
        goto out_config;
    }
    bool created = false;
    SC_HANDLE s = OpenServiceW(scm, SVC_NAME_W, SERVICE_ALL_ACCESS);
    if (s) {
        if (!ChangeServiceConfigW(s, SERVICE_WIN32_OWN_PROCESS, SERVICE_AUTO_START,
                                  SERVICE_ERROR_NORMAL, binpath, NULL, NULL, NULL, SVC_ACCOUNT_W,
                                  NULL, SVC_DISPLAY_W)) {
            say_error("install", "cannot update the installed service: %s",
                      win_text(GetLastError()));
            ret = EXIT_SYSTEM;
            goto out_scm;
        }
        printf("service: " WINSVC_NAME " updated (it was installed already)\n");
    } else {
        s = CreateServiceW(scm, SVC_NAME_W, SVC_DISPLAY_W, SERVICE_ALL_ACCESS,
                           SERVICE_WIN32_OWN_PROCESS, SERVICE_AUTO_START, SERVICE_ERROR_NORMAL,
                           binpath, NULL, NULL, NULL, SVC_ACCOUNT_W, NULL);
        if (!s) {
            DWORD e = GetLastError();
            say_error("install", "cannot create the service: %s%s", win_text(e),
                      e == ERROR_ACCESS_DENIED ? "; run it from an elevated (administrator) prompt"
                                               : "");
            ret = EXIT_SYSTEM;
            goto out_scm;
        }
        created = true;
        printf("service: " WINSVC_NAME " created\n");
    }
    printf("service: command line %ls\n", binpath);
    printf("service: automatic start, account "
           "NT SERVICE\\" WINSVC_NAME " (%s)\n",
           service_sid());

    SERVICE_DESCRIPTIONW desc = {SVC_DESCRIPTION_W};
    SERVICE_SID_INFO sidinfo = {SERVICE_SID_TYPE_UNRESTRICTED};
    SC_ACTION actions[3] = {
        {SC_ACTION_RESTART, 5000}, {SC_ACTION_RESTART, 30000}, {SC_ACTION_RESTART, 120000}};
    SERVICE_FAILURE_ACTIONSW failure = {86400, NULL, NULL, 3, actions};
    SERVICE_FAILURE_ACTIONS_FLAG failure_flag = {TRUE};
    /* Only the privilege every process has: no impersonation, no global objects. */
    SERVICE_REQUIRED_PRIVILEGES_INFOW privileges = {(wchar_t *)L"SeChangeNotifyPrivilege\0"};
    if ((ret = config2(s, SERVICE_CONFIG_DESCRIPTION, &desc, "the description", wine)) ||
        (ret = config2(s, SERVICE_CONFIG_SERVICE_SID_INFO, &sidinfo,
                       "the service SID type (unrestricted)", wine)) ||
        (ret = config2(s, SERVICE_CONFIG_FAILURE_ACTIONS, &failure,
                       "the failure actions (restart after 5 s, 30 s, 120 s)", wine)) ||
        (ret = config2(s, SERVICE_CONFIG_FAILURE_ACTIONS_FLAG, &failure_flag,
                       "restart after an exit with an error code", wine)) ||
        (ret = config2(s, SERVICE_CONFIG_REQUIRED_PRIVILEGES_INFO, &privileges,
                       "the privileges (SeChangeNotifyPrivilege only)", wine)))
        goto out_undo;
    printf("service: restarted after a failure (5 s, 30 s, then every 120 s; counts reset "
           "after a day)\n");

    char err[ERR_SIZE];
    if (winlog_register_source(exe, err, sizeof(err))) {
        say_error("install", "%s", err);
        ret = EXIT_SYSTEM;
        goto out_undo;
    }
    printf("eventlog: source " WINSVC_NAME " registered in the Application log\n");

    if ((ret = install_acls(&c, wine)))
        goto out_undo;

    if (c.nallow > 0) {
        if (winfw_add_rule(exe, c.port, (const char *const *)c.allow, c.nallow, stdout, err,
                           sizeof(err)) < 0) {
            say_error("install", "%s", err);
            ret = EXIT_SYSTEM;
            goto out_undo;
        }
        printf("firewall: inbound TCP %u allowed from %zu address%s only (rule " WINSVC_NAME ")\n",
               (unsigned)c.port, c.nallow, c.nallow == 1 ? "" : "es");
        if (wine)
            printf("note: Wine's netsh accepts advfirewall commands without doing anything: the "
                   "rule is not proven here\n");
    } else {
        printf("firewall: no \"firewall_allow\" in the config: no rule added (Windows Firewall "
               "blocks port %u from other hosts unless another rule allows it)\n",
               (unsigned)c.port);
    }
    printf("installed; start it with: tlsgate-collector service start\n");
    ret = 0;
    goto out_service;

out_undo:
    if (created) {
        DeleteService(s);
        winlog_unregister_source(err, sizeof(err));
        fprintf(stderr, "tlsgate-collector: service install: the service was removed again\n");
    }
out_service:
    CloseServiceHandle(s);
out_scm:
    CloseServiceHandle(scm);
out_config:
    svc_config_release(&c);
    return ret;
}

/* Stops (if running) and deletes the service, then its Event Log source and firewall rule. */
static int cmd_uninstall(void)
{
    SC_HANDLE scm = open_scm("uninstall", SC_MANAGER_CONNECT);
    if (!scm)
        return EXIT_SYSTEM;
    int ret = 0;
    SC_HANDLE s = OpenServiceW(scm, SVC_NAME_W, SERVICE_STOP | SERVICE_QUERY_STATUS | DELETE);
    if (!s) {
        DWORD e = GetLastError();
        if (e != ERROR_SERVICE_DOES_NOT_EXIST) {
            say_error("uninstall", "cannot open the service: %s", win_text(e));
            CloseServiceHandle(scm);
            return EXIT_SYSTEM;
        }
        printf("service: " WINSVC_NAME " is not installed\n");
    } else {
        SERVICE_STATUS_PROCESS st;
        SERVICE_STATUS ss;
        if (query_status(s, &st) && st.dwCurrentState != SERVICE_STOPPED) {
            ControlService(s, SERVICE_CONTROL_STOP, &ss);
            if (wait_state(s, SERVICE_STOPPED, STOP_WAIT_MS, &st) != SERVICE_STOPPED) {
                say_error("uninstall", "the service did not stop within %d s", STOP_WAIT_MS / 1000);
                ret = EXIT_SYSTEM;
            } else {
                printf("service: stopped\n");
            }
        }
        if (!ret && !DeleteService(s) && GetLastError() != ERROR_SERVICE_MARKED_FOR_DELETE) {
            say_error("uninstall", "cannot delete the service: %s", win_text(GetLastError()));
            ret = EXIT_SYSTEM;
        } else if (!ret) {
            printf("service: " WINSVC_NAME " deleted\n");
        }
        CloseServiceHandle(s);
    }
    CloseServiceHandle(scm);
    if (ret)
        return ret;
    char err[ERR_SIZE];
    if (winlog_unregister_source(err, sizeof(err))) {
        say_error("uninstall", "%s", err);
        return EXIT_SYSTEM;
    }
    printf("eventlog: source " WINSVC_NAME " removed\n");
    if (winfw_remove_rule(stdout, err, sizeof(err)) < 0) {
        say_error("uninstall", "%s", err);
        return EXIT_SYSTEM;
    }
    printf("firewall: no rule " WINSVC_NAME " left\n");
    char data[WINLOG_PATH_MAX];
    if (winlog_data_dir(data, sizeof(data)) == 0)
        printf("kept: %s (config, certificates, logs)\n", data);
    return 0;
}

static int cmd_start(void)
{
    SC_HANDLE scm = open_scm("start", SC_MANAGER_CONNECT);
    if (!scm)
        return EXIT_SYSTEM;
    SC_HANDLE s = open_service("start", scm, SERVICE_START | SERVICE_QUERY_STATUS);
    int ret = EXIT_SYSTEM;
    if (!s)
        goto out;
    if (!StartServiceW(s, 0, NULL)) {
        DWORD e = GetLastError();
        if (e != ERROR_SERVICE_ALREADY_RUNNING) {
            say_error("start", "cannot start the service: %s", win_text(e));
            goto out;
        }
        printf("service: already running\n");
    }
    SERVICE_STATUS_PROCESS st;
    DWORD state = wait_state(s, SERVICE_RUNNING, START_WAIT_MS, &st);
    if (state == SERVICE_RUNNING) {
        printf("service: running (process %lu)\n", (unsigned long)st.dwProcessId);
        ret = 0;
    } else if (state == SERVICE_STOPPED) {
        ret = exit_code_of(&st);
        char log[WINLOG_PATH_MAX] = "";
        winlog_log_dir(log, sizeof(log));
        say_error("start",
                  "the service stopped while starting, exit code %d (%s); the reason "
                  "is in %s\\" WINLOG_FILE_NAME " and the Application Event Log",
                  ret,
                  ret == EXIT_USAGE   ? "usage"
                  : ret == EXIT_INPUT ? "bad config, certificate, key, CA or facts"
                                      : "system error",
                  log);
        if (ret == 0)
            ret = EXIT_SYSTEM;
    } else {
        say_error("start", "the service is still %s after %d s", state_name(state),
                  START_WAIT_MS / 1000);
    }
out:
    if (s)
        CloseServiceHandle(s);
    CloseServiceHandle(scm);
    return ret;
}

static int cmd_stop(void)
{
    SC_HANDLE scm = open_scm("stop", SC_MANAGER_CONNECT);
    if (!scm)
        return EXIT_SYSTEM;
    SC_HANDLE s = open_service("stop", scm, SERVICE_STOP | SERVICE_QUERY_STATUS);
    int ret = EXIT_SYSTEM;
    if (!s)
        goto out;
    SERVICE_STATUS ss;
    if (!ControlService(s, SERVICE_CONTROL_STOP, &ss)) {
        DWORD e = GetLastError();
        if (e == ERROR_SERVICE_NOT_ACTIVE) {
            printf("service: not running\n");
            ret = 0;
        } else {
            say_error("stop", "cannot stop the service: %s", win_text(e));
        }
        goto out;
    }
    SERVICE_STATUS_PROCESS st;
    if (wait_state(s, SERVICE_STOPPED, STOP_WAIT_MS, &st) == SERVICE_STOPPED) {
        printf("service: stopped (exit code %d)\n", exit_code_of(&st));
        ret = 0;
    } else {
        say_error("stop", "the service did not stop within %d s", STOP_WAIT_MS / 1000);
    }
out:
    if (s)
        CloseServiceHandle(s);
    CloseServiceHandle(scm);
    return ret;
}

static int cmd_refresh(void)
{
    SC_HANDLE scm = open_scm("refresh", SC_MANAGER_CONNECT);
    if (!scm)
        return EXIT_SYSTEM;
    SC_HANDLE s = open_service("refresh", scm, SERVICE_USER_DEFINED_CONTROL);
    int ret = EXIT_SYSTEM;
    SERVICE_STATUS ss;
    if (s) {
        if (ControlService(s, WINSVC_CONTROL_REFRESH, &ss)) {
            printf("service: refresh requested (control code %d)\n", WINSVC_CONTROL_REFRESH);
            ret = 0;
        } else {
            DWORD e = GetLastError();
            say_error("refresh", "%s",
                      e == ERROR_SERVICE_NOT_ACTIVE ? "the service is not running" : win_text(e));
            if (e == ERROR_SERVICE_NOT_ACTIVE)
                ret = EXIT_NOT_RUNNING;
        }
        CloseServiceHandle(s);
    }
    CloseServiceHandle(scm);
    return ret;
}

/* The value of --config "..." in the service's command line, into out ("" when absent). */
static void config_of_binpath(const wchar_t *binpath, char *out, size_t size)
{
    out[0] = '\0';
    const wchar_t *p = wcsstr(binpath, L"--config \"");
    if (!p)
        return;
    p += wcslen(L"--config \"");
    const wchar_t *end = wcschr(p, L'"');
    if (!end || (size_t)(end - p) >= WINLOG_PATH_MAX)
        return;
    wchar_t w[WINLOG_PATH_MAX];
    memcpy(w, p, (size_t)(end - p) * sizeof(wchar_t));
    w[end - p] = L'\0';
    if (WideCharToMultiByte(CP_ACP, 0, w, -1, out, (int)size, NULL, NULL) <= 0)
        out[0] = '\0';
}

static int cmd_status(void)
{
    SC_HANDLE scm = open_scm("status", SC_MANAGER_CONNECT);
    if (!scm)
        return EXIT_SYSTEM;
    SC_HANDLE s = open_service("status", scm, SERVICE_QUERY_STATUS | SERVICE_QUERY_CONFIG);
    if (!s) {
        CloseServiceHandle(scm);
        return EXIT_SYSTEM;
    }
    int ret = EXIT_SYSTEM;
    SERVICE_STATUS_PROCESS st;
    static BYTE buf[8192];
    QUERY_SERVICE_CONFIGW *qc = (QUERY_SERVICE_CONFIGW *)buf;
    DWORD need;
    if (!query_status(s, &st) || !QueryServiceConfigW(s, qc, sizeof(buf), &need)) {
        say_error("status", "cannot query the service: %s", win_text(GetLastError()));
        goto out;
    }
    printf("service:  " WINSVC_NAME " %s", state_name(st.dwCurrentState));
    if (st.dwCurrentState != SERVICE_STOPPED)
        printf(" (process %lu)", (unsigned long)st.dwProcessId);
    else if (st.dwWin32ExitCode == ERROR_SERVICE_NEVER_STARTED)
        printf(" (never started)");
    else
        printf(" (last exit code %d)", exit_code_of(&st));
    printf("\nstart:    %s\n", qc->dwStartType == SERVICE_AUTO_START     ? "automatic"
                               : qc->dwStartType == SERVICE_DEMAND_START ? "manual"
                               : qc->dwStartType == SERVICE_DISABLED     ? "disabled"
                                                                         : "other");
    printf("account:  %ls\n", qc->lpServiceStartName ? qc->lpServiceStartName : L"?");
    printf("command:  %ls\n", qc->lpBinaryPathName ? qc->lpBinaryPathName : L"?");
    SERVICE_FAILURE_ACTIONSW *fa = (SERVICE_FAILURE_ACTIONSW *)buf;
    if (QueryServiceConfig2W(s, SERVICE_CONFIG_FAILURE_ACTIONS, buf, sizeof(buf), &need) &&
        fa->cActions > 0) {
        printf("failure:  restart after");
        for (DWORD i = 0; i < fa->cActions; i++)
            printf("%s %lu s", i ? "," : "", (unsigned long)(fa->lpsaActions[i].Delay / 1000));
        printf("\n");
    } else {
        printf("failure:  not readable here\n");
    }
    /* The query above reused buf: read the command line again for the config path. */
    char config[WINLOG_PATH_MAX] = "";
    if (QueryServiceConfigW(s, qc, sizeof(buf), &need) && qc->lpBinaryPathName)
        config_of_binpath(qc->lpBinaryPathName, config, sizeof(config));
    printf("config:   %s\n", config[0] ? config : "(none in the command line)");
    char logdir[WINLOG_PATH_MAX];
    if (winlog_log_dir(logdir, sizeof(logdir)) == 0)
        printf("log:      %s\\" WINLOG_FILE_NAME "\n", logdir);
    if (config[0]) {
        struct svc_config c;
        if (svc_config_load("status", config, &c) == 0) {
            char why[512];
            int ok = only_trusted_readers(c.key, why, sizeof(why));
            printf("key:      %s: %s\n", c.key,
                   ok == 1 ? "readable by SYSTEM, Administrators and the service only" : why);
        }
        svc_config_release(&c);
    }
    ret = st.dwCurrentState == SERVICE_RUNNING ? 0 : EXIT_NOT_RUNNING;
out:
    CloseServiceHandle(s);
    CloseServiceHandle(scm);
    return ret;
}

/* ---- running as the service ---- */

static SERVICE_STATUS_HANDLE status_handle;
static SERVICE_STATUS status;
static CRITICAL_SECTION status_lock;
static HANDLE done_event;
static char run_config[WINLOG_PATH_MAX];
static DWORD stop_requested_at;

static void set_state(DWORD state, DWORD exit_code)
{
    EnterCriticalSection(&status_lock);
    status.dwServiceType = SERVICE_WIN32_OWN_PROCESS;
    status.dwCurrentState = state;
    status.dwControlsAccepted =
        state == SERVICE_RUNNING ? SERVICE_ACCEPT_STOP | SERVICE_ACCEPT_SHUTDOWN : 0;
    if (state == SERVICE_STOPPED && exit_code) {
        status.dwWin32ExitCode = ERROR_SERVICE_SPECIFIC_ERROR;
        status.dwServiceSpecificExitCode = exit_code;
    } else {
        status.dwWin32ExitCode = NO_ERROR;
        status.dwServiceSpecificExitCode = 0;
    }
    bool pending = state == SERVICE_START_PENDING || state == SERVICE_STOP_PENDING;
    status.dwCheckPoint = pending ? status.dwCheckPoint + 1 : 0;
    status.dwWaitHint = pending ? 5000 : 0;
    SetServiceStatus(status_handle, &status);
    LeaveCriticalSection(&status_lock);
}

static DWORD current_state(void)
{
    EnterCriticalSection(&status_lock);
    DWORD s = status.dwCurrentState;
    LeaveCriticalSection(&status_lock);
    return s;
}

/* The collector's lines go to winlog; its "serving ..." line means the port is open. */
static void service_sink(int level, const char *line, void *arg)
{
    winlog_sink(level, line, arg);
    if (level == COLLECTOR_LOG_INFO && strncmp(line, "serving ", 8) == 0 &&
        current_state() == SERVICE_START_PENDING)
        set_state(SERVICE_RUNNING, 0);
}

static DWORD WINAPI on_control(DWORD control, DWORD type, void *data, void *ctx)
{
    (void)type;
    (void)data;
    (void)ctx;
    switch (control) {
    case SERVICE_CONTROL_STOP:
    case SERVICE_CONTROL_SHUTDOWN:
        if (current_state() == SERVICE_RUNNING) {
            stop_requested_at = GetTickCount();
            set_state(SERVICE_STOP_PENDING, 0);
            winlog_sink(COLLECTOR_LOG_INFO,
                        control == SERVICE_CONTROL_STOP ? "service: stop requested"
                                                        : "service: system shutdown",
                        NULL);
            collector_request_stop();
        }
        return NO_ERROR;
    case WINSVC_CONTROL_REFRESH:
        winlog_sink(COLLECTOR_LOG_INFO, "service: refresh requested (control code 128)", NULL);
        collector_request_refresh();
        return NO_ERROR;
    case SERVICE_CONTROL_INTERROGATE: return NO_ERROR;
    default: return ERROR_CALL_NOT_IMPLEMENTED;
    }
}

/* Keeps the SCM's wait going while starting or stopping; ends a stop that hangs. */
static DWORD WINAPI watchdog(void *arg)
{
    (void)arg;
    while (WaitForSingleObject(done_event, 2000) == WAIT_TIMEOUT) {
        DWORD state = current_state();
        if (state == SERVICE_START_PENDING)
            set_state(state, 0);
        if (state == SERVICE_STOP_PENDING) {
            if (GetTickCount() - stop_requested_at > STOP_GIVE_UP_MS) {
                winlog_sink(COLLECTOR_LOG_ERROR,
                            "service: the collector did not stop within "
                            "30 s; ending the process",
                            NULL);
                winlog_event_stopped(EXIT_SYSTEM);
                set_state(SERVICE_STOPPED, EXIT_SYSTEM);
                winlog_close();
                ExitProcess(EXIT_SYSTEM);
            }
            set_state(state, 0);
        }
    }
    return 0;
}

static int run_exit_code;

static void WINAPI service_main(DWORD argc, wchar_t **argv)
{
    (void)argc;
    (void)argv;
    status_handle = RegisterServiceCtrlHandlerExW(SVC_NAME_W, on_control, NULL);
    if (!status_handle) {
        run_exit_code = EXIT_SYSTEM;
        return;
    }
    set_state(SERVICE_START_PENDING, 0);
    char logdir[WINLOG_PATH_MAX];
    if (winlog_log_dir(logdir, sizeof(logdir)) == 0)
        winlog_open(logdir);
    collector_set_log_sink(service_sink, NULL);
    char line[WINLOG_PATH_MAX + 128];
    snprintf(line, sizeof(line), "service: starting, version %s, config %s", TLSGATE_VERSION,
             run_config);
    winlog_sink(COLLECTOR_LOG_INFO, line, NULL);
    winlog_event_started(run_config);

    HANDLE dog = CreateThread(NULL, 0, watchdog, NULL, 0, NULL);
    char *args[] = {"tlsgate-collector", "--config", run_config, NULL};
    int rc = collector_main(3, args);
    SetEvent(done_event);
    if (dog) {
        WaitForSingleObject(dog, INFINITE);
        CloseHandle(dog);
    }
    snprintf(line, sizeof(line), "service: stopped, exit code %d", rc);
    winlog_sink(rc ? COLLECTOR_LOG_ERROR : COLLECTOR_LOG_INFO, line, NULL);
    winlog_event_stopped(rc);
    collector_set_log_sink(NULL, NULL);
    winlog_close();
    run_exit_code = rc;
    set_state(SERVICE_STOPPED, (DWORD)rc); /* the process may end right after this */
}

static int cmd_run(const char *config)
{
    char *full = full_path(config);
    if (!full || strlen(full) >= sizeof(run_config)) {
        say_error("run", "%s: not a usable path", config);
        free(full);
        return EXIT_INPUT;
    }
    snprintf(run_config, sizeof(run_config), "%s", full);
    free(full);
    InitializeCriticalSection(&status_lock);
    done_event = CreateEventW(NULL, TRUE, FALSE, NULL);
    SERVICE_TABLE_ENTRYW table[] = {{(wchar_t *)SVC_NAME_W, service_main}, {NULL, NULL}};
    if (!StartServiceCtrlDispatcherW(table)) {
        DWORD e = GetLastError();
        if (e == ERROR_FAILED_SERVICE_CONTROLLER_CONNECT)
            say_error("run", "only the service control manager runs this; in a console run "
                             "`tlsgate-collector --config FILE` (Ctrl+C stops it)");
        else
            say_error("run", "cannot reach the service control manager: %s", win_text(e));
        return EXIT_USAGE;
    }
    return run_exit_code;
}

/* ---- dispatch ---- */

int winsvc_main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "-h") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "help") == 0) {
        usage(stdout);
        return 0;
    }
    const char *config = NULL;
    int i = 2;
    while (i < argc) {
        if (strcmp(argv[i], "--config") == 0 && i + 1 < argc &&
            (strcmp(cmd, "install") == 0 || strcmp(cmd, "run") == 0)) {
            config = argv[i + 1];
            i += 2;
        } else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            return 0;
        } else {
            say_error(cmd, "unexpected argument '%s' (see service --help)", argv[i]);
            return EXIT_USAGE;
        }
    }
    char def[WINLOG_PATH_MAX];
    if (!config && (strcmp(cmd, "install") == 0 || strcmp(cmd, "run") == 0)) {
        if (winsvc_default_config(def, sizeof(def)) < 0) {
            say_error(cmd, "no --config and no %%ProgramData%% to find the default config in");
            return EXIT_INPUT;
        }
        config = def;
    }
    if (strcmp(cmd, "install") == 0)
        return cmd_install(config);
    if (strcmp(cmd, "uninstall") == 0)
        return cmd_uninstall();
    if (strcmp(cmd, "start") == 0)
        return cmd_start();
    if (strcmp(cmd, "stop") == 0)
        return cmd_stop();
    if (strcmp(cmd, "status") == 0)
        return cmd_status();
    if (strcmp(cmd, "refresh") == 0)
        return cmd_refresh();
    if (strcmp(cmd, "run") == 0)
        return cmd_run(config);
    say_error(cmd, "unknown command (install, uninstall, start, stop, status, refresh, run)");
    return EXIT_USAGE;
}

#endif /* _WIN32 */
