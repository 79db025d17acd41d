/*
 * winfw.c — who holds the collector's port, and its Windows Firewall rule (see winfw.h).
 *
 * The rule goes through netsh advfirewall rather than the INetFwPolicy2 COM interface: netsh is
 * on every Windows from 7 SP1 and 2008 R2 on, what admins read in documentation and logs, and it
 * keeps COM (ole32, oleaut32) out of the exe's imports. netsh is started by full path from the
 * system folder with CreateProcessW and an argument vector quoted here, never through cmd.exe.
 */
#ifdef _WIN32

#include "winfw.h"

/* Order matters: winsock2.h before windows.h, iphlpapi.h after both. */
#include <winsock2.h>
#include <ws2tcpip.h>

#include <windows.h>

#include <iphlpapi.h>

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NETSH_OUTPUT_MAX 2048
#define NETSH_TIMEOUT_MS 60000
#define CMDLINE_MAX 8192

/* ---- who holds a port ---- */

/* The image path of `pid` into out ("" when Windows will not say). */
static void process_name(DWORD pid, char *out, size_t outsize)
{
    out[0] = '\0';
    HANDLE h = OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, FALSE, pid);
    if (!h)
        return;
    wchar_t path[MAX_PATH];
    DWORD n = MAX_PATH;
    if (QueryFullProcessImageNameW(h, 0, path, &n)) {
        if (WideCharToMultiByte(CP_ACP, 0, path, -1, out, (int)outsize, NULL, NULL) <= 0)
            out[0] = '\0';
    }
    CloseHandle(h);
}

/* The listening table of one family into a malloc'd buffer. 0 or -errno. */
static int listener_table(ULONG family, void **table)
{
    DWORD size = 0;
    DWORD rc = GetExtendedTcpTable(NULL, &size, FALSE, family, TCP_TABLE_OWNER_PID_LISTENER, 0);
    for (int tries = 0; tries < 4 && rc == ERROR_INSUFFICIENT_BUFFER; tries++) {
        size += 16 * sizeof(MIB_TCP6ROW_OWNER_PID); /* it may grow between the calls */
        void *buf = malloc(size);
        if (!buf)
            return -ENOMEM;
        rc = GetExtendedTcpTable(buf, &size, FALSE, family, TCP_TABLE_OWNER_PID_LISTENER, 0);
        if (rc == NO_ERROR) {
            *table = buf;
            return 0;
        }
        free(buf);
    }
    return rc == ERROR_NOT_SUPPORTED ? -ENOTSUP : -EIO;
}

int winfw_port_owner(uint16_t port, char *out, size_t outsize)
{
    DWORD pid = 0;
    bool found = false;
    int rc = 0;
    void *t = NULL;
    if ((rc = listener_table(AF_INET, &t)) == 0) {
        MIB_TCPTABLE_OWNER_PID *v4 = t;
        for (DWORD i = 0; i < v4->dwNumEntries && !found; i++) {
            if (ntohs((u_short)v4->table[i].dwLocalPort) == port) {
                pid = v4->table[i].dwOwningPid;
                found = true;
            }
        }
        free(t);
    }
    if (!found && listener_table(AF_INET6, &t) == 0) {
        MIB_TCP6TABLE_OWNER_PID *v6 = t;
        for (DWORD i = 0; i < v6->dwNumEntries && !found; i++) {
            if (ntohs((u_short)v6->table[i].dwLocalPort) == port) {
                pid = v6->table[i].dwOwningPid;
                found = true;
            }
        }
        free(t);
        rc = 0;
    }
    if (!found)
        return rc < 0 ? rc : -ENOENT;
    if (pid == 0)
        return -ESRCH; /* a listener, but no owner reported (Wine's table has none) */
    char name[MAX_PATH * 2];
    if (pid == 4)
        snprintf(out, outsize,
                 "process 4 (System: the kernel's HTTP.sys, a URL reservation or "
                 "another driver; `netsh http show servicestate` names it)");
    else {
        process_name(pid, name, sizeof(name));
        snprintf(out, outsize, "process %lu (%s)", (unsigned long)pid,
                 name[0] ? name : "name not readable: run as administrator to see it");
    }
    return 0;
}

/* ---- netsh ---- */

/* Appends `arg` to the command line, quoted as CommandLineToArgvW reads it back; a KEY=VALUE
 * argument is written KEY="VALUE", the form netsh's documentation shows. */
static int append_arg(wchar_t *cmd, size_t size, const wchar_t *arg)
{
    size_t len = wcslen(cmd);
    bool quote = arg[0] == L'\0' || wcspbrk(arg, L" \t\"") != NULL;
    size_t need = len + 1 + wcslen(arg) * 2 + 3;
    if (need >= size)
        return -E2BIG;
    wchar_t *p = cmd + len;
    if (len)
        *p++ = L' ';
    const wchar_t *eq = wcschr(arg, L'='), *special = wcspbrk(arg, L" \t\"");
    if (quote && eq && special && special > eq) {
        size_t keylen = (size_t)(eq - arg) + 1;
        wmemcpy(p, arg, keylen);
        p += keylen;
        arg += keylen;
    }
    if (quote)
        *p++ = L'"';
    size_t slashes = 0;
    for (const wchar_t *a = arg; *a; a++) {
        if (*a == L'\\') {
            slashes++;
        } else {
            if (*a == L'"')
                for (size_t i = 0; i < slashes + 1; i++)
                    *p++ = L'\\';
            slashes = 0;
        }
        *p++ = *a;
    }
    if (quote) {
        for (size_t i = 0; i < slashes; i++)
            *p++ = L'\\';
        *p++ = L'"';
    }
    *p = L'\0';
    return 0;
}

/*
 * Runs netsh.exe from the system folder with `args` (NULL-terminated), its output captured.
 * Returns netsh's exit code, or -1 with err set when it could not run or did not finish.
 */
static int run_netsh(const wchar_t *const *args, FILE *progress, char *output, size_t outsize,
                     char *err, size_t errsize)
{
    wchar_t exe[MAX_PATH];
    UINT n = GetSystemDirectoryW(exe, MAX_PATH - 12);
    if (n == 0 || n >= MAX_PATH - 12) {
        snprintf(err, errsize, "cannot find the system folder (error %lu)", GetLastError());
        return -1;
    }
    wcscat(exe, L"\\netsh.exe");
    static wchar_t cmd[CMDLINE_MAX];
    cmd[0] = L'\0';
    if (append_arg(cmd, CMDLINE_MAX, L"netsh") < 0)
        return -1;
    for (size_t i = 0; args[i]; i++) {
        if (append_arg(cmd, CMDLINE_MAX, args[i]) < 0) {
            snprintf(err, errsize, "netsh command line over %d characters", CMDLINE_MAX);
            return -1;
        }
    }
    if (progress)
        fprintf(progress, "firewall: %ls\n", cmd);

    SECURITY_ATTRIBUTES sa = {sizeof(sa), NULL, TRUE};
    HANDLE rd, wr;
    if (!CreatePipe(&rd, &wr, &sa, 0)) {
        snprintf(err, errsize, "cannot create a pipe for netsh (error %lu)", GetLastError());
        return -1;
    }
    SetHandleInformation(rd, HANDLE_FLAG_INHERIT, 0);
    STARTUPINFOW si;
    memset(&si, 0, sizeof(si));
    si.cb = sizeof(si);
    si.dwFlags = STARTF_USESTDHANDLES;
    si.hStdInput = INVALID_HANDLE_VALUE;
    si.hStdOutput = wr;
    si.hStdError = wr;
    PROCESS_INFORMATION pi;
    BOOL ok = CreateProcessW(exe, cmd, NULL, NULL, TRUE, CREATE_NO_WINDOW, NULL, NULL, &si, &pi);
    DWORD cpe = GetLastError();
    CloseHandle(wr);
    if (!ok) {
        CloseHandle(rd);
        snprintf(err, errsize, "cannot run %ls (error %lu)", exe, (unsigned long)cpe);
        return -1;
    }
    /* Read until netsh closes its end (its output is a few lines; the pipe never fills). */
    size_t got = 0;
    char chunk[512];
    DWORD r;
    while (ReadFile(rd, chunk, sizeof(chunk), &r, NULL) && r > 0) {
        size_t take = got + r < outsize - 1 ? r : outsize - 1 - got;
        memcpy(output + got, chunk, take);
        got += take;
    }
    output[got] = '\0';
    CloseHandle(rd);
    DWORD code = 1;
    DWORD w = WaitForSingleObject(pi.hProcess, NETSH_TIMEOUT_MS);
    if (w != WAIT_OBJECT_0) {
        TerminateProcess(pi.hProcess, 1);
        snprintf(err, errsize, "netsh did not finish within %d s", NETSH_TIMEOUT_MS / 1000);
        CloseHandle(pi.hThread);
        CloseHandle(pi.hProcess);
        return -1;
    }
    GetExitCodeProcess(pi.hProcess, &code);
    CloseHandle(pi.hThread);
    CloseHandle(pi.hProcess);
    /* One line of output for messages. */
    for (char *p = output; *p; p++)
        if (*p == '\r' || *p == '\n')
            *p = ' ';
    return (int)code;
}

/* Whether a rule of our name exists: 1, 0, or -1 with err set. netsh's exit code says it
 * (1 when no rule matches); its text is localised, so it is only quoted, never parsed. */
static int rule_exists(FILE *progress, char *out, size_t outsize, char *err, size_t errsize)
{
    const wchar_t *show[] = {L"advfirewall",           L"firewall", L"show", L"rule",
                             L"name=" WINFW_RULE_NAME, NULL};
    int code = run_netsh(show, progress, out, outsize, err, errsize);
    return code < 0 ? -1 : code == 0;
}

int winfw_remove_rule(FILE *progress, char *err, size_t errsize)
{
    char out[NETSH_OUTPUT_MAX];
    int exists = rule_exists(progress, out, sizeof(out), err, errsize);
    if (exists <= 0)
        return exists;
    const wchar_t *args[] = {L"advfirewall",           L"firewall", L"delete", L"rule",
                             L"name=" WINFW_RULE_NAME, NULL};
    int code = run_netsh(args, progress, out, sizeof(out), err, errsize);
    if (code < 0)
        return -1;
    if (code != 0) {
        snprintf(err, errsize, "netsh could not delete the firewall rule %ls (exit %d): %s",
                 WINFW_RULE_NAME, code, out);
        return -1;
    }
    return 0;
}

int winfw_add_rule(const wchar_t *exe, uint16_t port, const char *const *allow, size_t n,
                   FILE *progress, char *err, size_t errsize)
{
    if (n == 0 || port == 0) {
        snprintf(err, errsize, "a firewall rule needs a fixed port and at least one address");
        return -1;
    }
    /* remoteip=A,B,C: addresses and prefixes as checked by cfg_check_address. */
    wchar_t remote[CMDLINE_MAX / 2] = L"remoteip=";
    for (size_t i = 0; i < n; i++) {
        wchar_t w[128];
        if (MultiByteToWideChar(CP_ACP, 0, allow[i], -1, w, 128) <= 0 ||
            wcslen(remote) + wcslen(w) + 2 >= CMDLINE_MAX / 2) {
            snprintf(err, errsize, "firewall_allow: too many addresses for one rule");
            return -1;
        }
        if (i)
            wcscat(remote, L",");
        wcscat(remote, w);
    }
    wchar_t localport[32], program[MAX_PATH + 16];
    swprintf(localport, 32, L"localport=%u", (unsigned)port);
    if (wcslen(exe) >= MAX_PATH) {
        snprintf(err, errsize, "the exe's path is too long for a firewall rule");
        return -1;
    }
    swprintf(program, MAX_PATH + 16, L"program=%ls", exe);

    if (winfw_remove_rule(progress, err, errsize) < 0)
        return -1;
    const wchar_t *add[] = {L"advfirewall",
                            L"firewall",
                            L"add",
                            L"rule",
                            L"name=" WINFW_RULE_NAME,
                            L"dir=in",
                            L"action=allow",
                            L"protocol=TCP",
                            localport,
                            remote,
                            program,
                            L"service=tlsgate-collector",
                            L"profile=any",
                            L"enable=yes",
                            L"description=tlsgate orchestrator pulls the readiness report",
                            NULL};
    char out[NETSH_OUTPUT_MAX];
    int code = run_netsh(add, progress, out, sizeof(out), err, errsize);
    if (code < 0)
        return -1;
    if (code != 0) {
        snprintf(err, errsize, "netsh could not add the firewall rule (exit %d): %s", code, out);
        return -1;
    }
    /* Read it back. */
    int exists = rule_exists(progress, out, sizeof(out), err, errsize);
    if (exists < 0)
        return -1;
    if (!exists) {
        snprintf(err, errsize, "netsh added the firewall rule but cannot show it: %s", out);
        return -1;
    }
    return 0;
}

#endif /* _WIN32 */
