/*
 * keyacl: may anyone but SYSTEM, Administrators and the collector's service read the private key
 * file? (issue 19: the Windows side of "a private key others can read is refused").
 *
 * The judgement is platform-neutral, over the ACEs of the file's DACL as plain data, so it is
 * tested on every platform with constructed security descriptors; keyacl-win.c reads a real
 * file's DACL (GetNamedSecurityInfoW) into this form. A key is refused when:
 *   - the DACL is absent (a NULL DACL grants everyone everything), or
 *   - an access-allowed ACE that applies to the file itself (not inherit-only) grants anyone
 *     other than SYSTEM (S-1-5-18), Administrators (S-1-5-32-544) or the service's own SID a
 *     right that reads the data or can be turned into reading it: FILE_READ_DATA (0x1),
 *     GENERIC_READ, GENERIC_ALL, MAXIMUM_ALLOWED, WRITE_DAC or WRITE_OWNER.
 * Deny ACEs are not credited (a deny in the wrong order does not protect anything), so the
 * judgement can only be stricter than Windows' own access check. Everyone (S-1-1-0), Users
 * (S-1-5-32-545), Authenticated Users (S-1-5-11) or a user's own SID reading the key: refused.
 */
#ifndef TLSGATE_KEYACL_H
#define TLSGATE_KEYACL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KEYACL_FILE_READ_DATA 0x00000001u
#define KEYACL_WRITE_DAC 0x00040000u
#define KEYACL_WRITE_OWNER 0x00080000u
#define KEYACL_MAXIMUM_ALLOWED 0x02000000u
#define KEYACL_GENERIC_ALL 0x10000000u
#define KEYACL_GENERIC_READ 0x80000000u

struct keyacl_ace {
    bool allow;        /* ACCESS_ALLOWED_ACE_TYPE (else any other type: not credited, skipped) */
    bool inherit_only; /* INHERIT_ONLY_ACE: applies to children only, not to this file */
    uint32_t mask;
    const char *sid;  /* "S-1-5-18" */
    const char *name; /* "NT AUTHORITY\SYSTEM", or NULL when unknown (messages only) */
};

/*
 * 0 when only the trusted three can read; -1 otherwise, with `why` naming every other reader
 * ("Everyone (S-1-1-0)") and the fix (icacls). `service_sid` is the collector's service SID
 * (svcsid.h); `path` is for the message. dacl_present false means a NULL DACL.
 */
int keyacl_judge(const char *path, bool dacl_present, const struct keyacl_ace *aces, size_t n,
                 const char *service_sid, char *why, size_t whysize);

#ifdef _WIN32
/* Reads `path`'s DACL and judges it (service SID of NT SERVICE\tlsgate-collector). 0, -1
 * (refused, why), -2 (cannot read the ACL, why). */
int keyacl_check_file(const char *path, char *why, size_t whysize);

/* True under Wine, which keeps no file ACLs: every file would look open to everyone. */
bool keyacl_wine(void);
#endif

#endif
