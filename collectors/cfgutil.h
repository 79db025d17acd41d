/*
 * cfgutil: what the collector's config file means beyond its JSON, shared by the collector's
 * loader (collector.c) and the Windows service installer (winsvc.c) so that both read a config
 * the same way:
 * - a relative path in a config file is relative to the folder of that config file, not to the
 *   working directory (a Windows service runs in System32);
 * - "firewall_allow" holds the orchestrator's addresses: IPv4 or IPv6, each optionally with a
 *   /prefix length, which the Windows Firewall rule accepts as its remote addresses.
 * Plain C with the platform's inet_pton; tested on Linux.
 */
#ifndef TLSGATE_CFGUTIL_H
#define TLSGATE_CFGUTIL_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

/* At most this many firewall_allow entries, each at most CFG_ADDRESS_MAX - 1 characters. */
#define CFG_ALLOW_MAX 64
#define CFG_ADDRESS_MAX 64

/* True for "/x" (POSIX); on Windows also "C:\x", "C:/x", "\x", "\\server\share". */
bool cfg_path_is_absolute(const char *path);

/* `value` from the config file `config_path`: absolute as is, else joined to the config's
 * folder (nothing when the config has no folder part). malloc'd; NULL when out of memory. */
char *cfg_resolve(const char *config_path, const char *value);

/* 0 when `s` is an IPv4 or IPv6 address with an optional /prefix (0..32, 0..128), else -EINVAL. */
int cfg_check_address(const char *s);

/* 0 when `v`, the value of the config key `key` ("orchestrators", "firewall_allow"), is an array
 * of at most CFG_ALLOW_MAX strings that cfg_check_address takes; else -EINVAL and the message
 * naming the key (and the entry) in err, for the caller to prefix with the file's name. */
int cfg_check_address_list(const json_t *v, const char *key, char *err, size_t errsize);

#endif
