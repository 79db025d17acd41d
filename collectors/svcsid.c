/*
 * svcsid.c — the virtual service account's SID (see svcsid.h), with GnuTLS's SHA-1.
 */
#include "svcsid.h"

#include <errno.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define SVCSID_NAME_MAX 256

int svcsid_format(const char *name, char *out, size_t outsize)
{
    size_t n = strlen(name);
    if (n == 0 || n > SVCSID_NAME_MAX || outsize < SVCSID_TEXT_MAX)
        return -EINVAL;
    unsigned char utf16[SVCSID_NAME_MAX * 2];
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)name[i];
        if (c < 0x20 || c > 0x7e)
            return -EINVAL;
        if (c >= 'a' && c <= 'z')
            c = (unsigned char)(c - 'a' + 'A');
        utf16[2 * i] = c;
        utf16[2 * i + 1] = 0;
    }
    unsigned char digest[20];
    if (gnutls_hash_fast(GNUTLS_DIG_SHA1, utf16, n * 2, digest) < 0)
        return -EIO;
    uint32_t sub[5];
    for (int i = 0; i < 5; i++)
        sub[i] = (uint32_t)digest[4 * i] | (uint32_t)digest[4 * i + 1] << 8 |
                 (uint32_t)digest[4 * i + 2] << 16 | (uint32_t)digest[4 * i + 3] << 24;
    snprintf(out, outsize, "S-1-5-80-%lu-%lu-%lu-%lu-%lu", (unsigned long)sub[0],
             (unsigned long)sub[1], (unsigned long)sub[2], (unsigned long)sub[3],
             (unsigned long)sub[4]);
    return 0;
}
