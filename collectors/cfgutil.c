/*
 * cfgutil.c — config paths relative to the config file, and the address lists (orchestrators,
 * firewall_allow)
 * (see cfgutil.h).
 */
#include "cfgutil.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef _WIN32
#include <winsock2.h>
#include <ws2tcpip.h>
#else
#include <arpa/inet.h>
#endif

static bool is_sep(char c)
{
#ifdef _WIN32
    return c == '\\' || c == '/';
#else
    return c == '/';
#endif
}

bool cfg_path_is_absolute(const char *path)
{
    if (is_sep(path[0]))
        return true; /* POSIX root; on Windows also the current drive's root and UNC paths */
#ifdef _WIN32
    /* "C:" followed by a separator. A bare "C:x" (relative to drive C's current folder) is not
     * absolute, but it names a drive, so it is left alone too rather than joined. */
    if (((path[0] >= 'A' && path[0] <= 'Z') || (path[0] >= 'a' && path[0] <= 'z')) &&
        path[1] == ':')
        return true;
#endif
    return false;
}

char *cfg_resolve(const char *config_path, const char *value)
{
    size_t dirlen = 0;
    if (!cfg_path_is_absolute(value)) {
        for (size_t i = 0; config_path[i]; i++)
            if (is_sep(config_path[i]))
                dirlen = i + 1;
#ifdef _WIN32
        if (dirlen == 0 && config_path[0] && config_path[1] == ':')
            dirlen = 2; /* "C:collector.json" */
#endif
    }
    size_t vlen = strlen(value);
    char *out = malloc(dirlen + vlen + 1);
    if (!out)
        return NULL;
    memcpy(out, config_path, dirlen);
    memcpy(out + dirlen, value, vlen + 1);
    return out;
}

int cfg_check_address(const char *s)
{
    size_t len = strlen(s);
    if (len == 0 || len >= CFG_ADDRESS_MAX)
        return -EINVAL;
    char addr[CFG_ADDRESS_MAX];
    memcpy(addr, s, len + 1);
    char *slash = strchr(addr, '/');
    long prefix = -1;
    if (slash) {
        *slash = '\0';
        const char *p = slash + 1;
        if (!*p || strlen(p) > 3)
            return -EINVAL;
        prefix = 0;
        for (; *p; p++) {
            if (*p < '0' || *p > '9')
                return -EINVAL;
            prefix = prefix * 10 + (*p - '0');
        }
    }
    unsigned char buf[16];
    if (inet_pton(AF_INET, addr, buf) == 1)
        return prefix <= 32 ? 0 : -EINVAL;
    if (inet_pton(AF_INET6, addr, buf) == 1)
        return prefix <= 128 ? 0 : -EINVAL;
    return -EINVAL;
}

int cfg_check_address_list(const json_t *v, const char *key, char *err, size_t errsize)
{
    if (!json_is_array(v) || json_array_size(v) > CFG_ALLOW_MAX) {
        snprintf(err, errsize, "%s: must be an array of at most %d addresses", key, CFG_ALLOW_MAX);
        return -EINVAL;
    }
    for (size_t i = 0; i < json_array_size(v); i++) {
        const json_t *item = json_array_get(v, i);
        if (!json_is_string(item) || cfg_check_address(json_string_value(item)) < 0) {
            /* %lu, not %zu: the Windows C library's printf (mingw) has no z. */
            snprintf(err, errsize, "%s[%lu]: not an IPv4 or IPv6 address (optionally /prefix)", key,
                     (unsigned long)i);
            return -EINVAL;
        }
    }
    return 0;
}
