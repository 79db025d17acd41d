/*
 * keyacl.c — judging a private key file's DACL (keyacl.h).
 */
#include <stdio.h>
#include <string.h>

#include "keyacl.h"

/* How to fix it (the ACL `service install` sets, winsvc.c). */
#define FIX                                                                                        \
    "; make it private: icacls \"%s\" /inheritance:r /grant:r SYSTEM:F Administrators:F "          \
    "\"NT SERVICE\\tlsgate-collector\":R (or run `tlsgate-collector service install`, which "      \
    "sets that ACL)"

#define READ_RIGHTS                                                                                \
    (KEYACL_FILE_READ_DATA | KEYACL_GENERIC_READ | KEYACL_GENERIC_ALL | KEYACL_MAXIMUM_ALLOWED |   \
     KEYACL_WRITE_DAC | KEYACL_WRITE_OWNER)

static bool trusted(const char *sid, const char *service_sid)
{
    return strcmp(sid, "S-1-5-18") == 0 || strcmp(sid, "S-1-5-32-544") == 0 ||
           (service_sid && service_sid[0] && strcmp(sid, service_sid) == 0);
}

/* Well-known names for the message when Windows gave none. */
static const char *known_name(const char *sid)
{
    static const struct {
        const char *sid, *name;
    } known[] = {
        {"S-1-1-0", "Everyone"},      {"S-1-5-11", "Authenticated Users"},
        {"S-1-5-32-545", "Users"},    {"S-1-5-32-546", "Guests"},
        {"S-1-5-4", "INTERACTIVE"},   {"S-1-5-7", "ANONYMOUS LOGON"},
        {"S-1-3-0", "CREATOR OWNER"}, {"S-1-3-4", "OWNER RIGHTS"},
    };
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
        if (strcmp(sid, known[i].sid) == 0)
            return known[i].name;
    return NULL;
}

int keyacl_judge(const char *path, bool dacl_present, const struct keyacl_ace *aces, size_t n,
                 const char *service_sid, char *why, size_t whysize)
{
    if (whysize)
        why[0] = '\0';
    if (!dacl_present) {
        size_t len = (size_t)snprintf(
            why, whysize, "%s: the private key file has no DACL: everyone can read it", path);
        if (len < whysize)
            snprintf(why + len, whysize - len, FIX, path);
        return -1;
    }
    size_t len = 0, others = 0;
    for (size_t i = 0; i < n; i++) {
        const struct keyacl_ace *a = &aces[i];
        if (!a->allow || a->inherit_only || !(a->mask & READ_RIGHTS) || !a->sid ||
            trusted(a->sid, service_sid))
            continue;
        const char *name = a->name && a->name[0] ? a->name : known_name(a->sid);
        if (others == 0)
            len = (size_t)snprintf(why, whysize, "%s: the private key file can be read by ", path);
        if (len < whysize)
            len += (size_t)snprintf(why + len, whysize - len, "%s%s (%s)", others ? ", " : "",
                                    name ? name : "an account", a->sid);
        others++;
    }
    if (!others)
        return 0;
    if (len < whysize)
        snprintf(why + len, whysize - len, FIX, path);
    return -1;
}
