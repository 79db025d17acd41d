/*
 * keyacl-win.c — a real file's DACL into keyacl_judge (keyacl.h).
 */
#include <winsock2.h>
/* */
#include <windows.h>
/* */
#include <aclapi.h>
#include <sddl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keyacl.h"
#include "svcsid.h"

#define MAX_ACES 64

bool keyacl_wine(void)
{
    HMODULE ntdll = GetModuleHandleA("ntdll.dll");
    return ntdll && GetProcAddress(ntdll, "wine_get_version") != NULL;
}

int keyacl_check_file(const char *path, char *why, size_t whysize)
{
    WCHAR wpath[MAX_PATH * 2];
    if (!MultiByteToWideChar(CP_UTF8, 0, path, -1, wpath, (int)(sizeof(wpath) / sizeof(wpath[0]))))
        MultiByteToWideChar(CP_ACP, 0, path, -1, wpath, (int)(sizeof(wpath) / sizeof(wpath[0])));
    PACL dacl = NULL;
    PSECURITY_DESCRIPTOR sd = NULL;
    DWORD rc = GetNamedSecurityInfoW(wpath, SE_FILE_OBJECT, DACL_SECURITY_INFORMATION, NULL, NULL,
                                     &dacl, NULL, &sd);
    if (rc != ERROR_SUCCESS) {
        snprintf(why, whysize, "%s: cannot read the private key file's ACL (error %lu)", path,
                 (unsigned long)rc);
        return -2;
    }
    char service[SVCSID_TEXT_MAX] = "";
    if (svcsid_format("tlsgate-collector", service, sizeof(service)) < 0)
        service[0] = '\0';
    struct keyacl_ace aces[MAX_ACES];
    char *sids[MAX_ACES] = {0};
    char names[MAX_ACES][300];
    size_t n = 0;
    int ret = 0;
    for (DWORD i = 0; dacl && i < dacl->AceCount; i++) {
        ACE_HEADER *ace;
        if (!GetAce(dacl, i, (void **)&ace))
            continue;
        if (n == MAX_ACES) {
            snprintf(why, whysize, "%s: the private key file's ACL has over %d entries", path,
                     MAX_ACES);
            ret = -1;
            goto out;
        }
        struct keyacl_ace *a = &aces[n];
        memset(a, 0, sizeof(*a));
        a->allow = ace->AceType == ACCESS_ALLOWED_ACE_TYPE;
        a->inherit_only = (ace->AceFlags & INHERIT_ONLY_ACE) != 0;
        if (!a->allow)
            continue; /* not credited: only allowed ACEs are judged */
        ACCESS_ALLOWED_ACE *allowed = (ACCESS_ALLOWED_ACE *)ace;
        a->mask = allowed->Mask;
        PSID sid = &allowed->SidStart;
        if (!ConvertSidToStringSidA(sid, &sids[n])) {
            /* A SID we cannot even print: fail closed. */
            snprintf(why, whysize, "%s: the private key file's ACL holds an unreadable SID", path);
            ret = -1;
            goto out;
        }
        a->sid = sids[n];
        char name[256] = "", domain[256] = "";
        DWORD nn = sizeof(name), dn = sizeof(domain);
        SID_NAME_USE use;
        names[n][0] = '\0';
        if (LookupAccountSidA(NULL, sid, name, &nn, domain, &dn, &use))
            snprintf(names[n], sizeof(names[n]), "%s%s%s", domain, domain[0] ? "\\" : "", name);
        a->name = names[n];
        n++;
    }
    ret = keyacl_judge(path, dacl != NULL, aces, n, service, why, whysize);
out:
    for (size_t i = 0; i < n; i++)
        if (sids[i])
            LocalFree(sids[i]);
    LocalFree(sd);
    return ret;
}
