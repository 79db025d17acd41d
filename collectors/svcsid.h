/*
 * svcsid: the SID Windows gives a service's virtual account `NT SERVICE\NAME`:
 * S-1-5-80- followed by the SHA-1 of the upper-cased service name in UTF-16LE, read as five
 * little-endian 32-bit numbers. The service installer (winsvc.c) writes ACLs for that account;
 * computing the SID, instead of asking LookupAccountName, works before the SCM has published the
 * account and is the same arithmetic on every platform, so it is tested on Linux against a SID
 * Windows publishes (NT SERVICE\TrustedInstaller).
 */
#ifndef TLSGATE_SVCSID_H
#define TLSGATE_SVCSID_H

#include <stddef.h>

/* Longest text: "S-1-5-80-" and five 10-digit numbers with dashes, plus the NUL. */
#define SVCSID_TEXT_MAX 64

/* Writes the SID text of NT SERVICE\name. The name is 1..256 printable ASCII characters
 * (Windows' limit; non-ASCII names are refused, not guessed). 0, -EINVAL, -EIO (hash). */
int svcsid_format(const char *name, char *out, size_t outsize);

#endif
