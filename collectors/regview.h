/*
 * regview: the one interface between where registry facts come from and what they mean.
 *
 * Backends: `regfile` (files written by `reg export` / regedit, layered in order; every OS) and
 * `winreg` (the native registry; built only on Windows). The fact extractor (facts.c) reads only
 * through this interface, so the .reg fixtures test exactly the logic that runs on Windows.
 *
 * Paths are full key paths with the hive spelled "HKLM" or "HKEY_LOCAL_MACHINE" (both accepted,
 * compared case-insensitively, as are key and value names), e.g.
 *   "HKLM\\SOFTWARE\\Microsoft\\NET Framework Setup\\NDP\\v4\\Full".
 * Value name "" (or NULL) is the key's default value ("@" in a .reg file).
 *
 * Every getter returns:
 *   0         found, *out set
 *   -ENOENT   the key or the value is absent (absent is never zero or empty)
 *   -EINVAL   present but of another type (e.g. a REG_SZ where a DWORD was asked)
 *   -ENOMEM   out of memory
 * Strings are UTF-8, malloc'd, owned by the caller.
 */
#ifndef TLSGATE_REGVIEW_H
#define TLSGATE_REGVIEW_H

#include <stddef.h>
#include <stdint.h>

struct regview;

int regview_get_dword(struct regview *v, const char *key, const char *name, uint32_t *out);
int regview_get_qword(struct regview *v, const char *key, const char *name, uint64_t *out);
/* REG_SZ or REG_EXPAND_SZ (not expanded). */
int regview_get_string(struct regview *v, const char *key, const char *name, char **out);
/* REG_MULTI_SZ: *out is a NULL-terminated array of strings; free with regview_strv_free. */
int regview_get_multi(struct regview *v, const char *key, const char *name, char ***out);
/* Names of the direct subkeys of `key` in a stable (case-insensitive sorted) order; NULL-ended,
 * free with regview_strv_free. An absent key is -ENOENT. */
int regview_list_subkeys(struct regview *v, const char *key, char ***out);
/* Names of the values of `key` (for keys like "Instance Names\\SQL" whose value names are data),
 * in the same order; a default value that is set is listed as "". */
int regview_list_values(struct regview *v, const char *key, char ***out);

void regview_strv_free(char **strv);
void regview_free(struct regview *v);

/*
 * The regfile backend: parses each file fully, in order, later files layering over earlier ones
 * ([-KEY] deletes a key and its subkeys, "v"=- deletes a value). Accepts UTF-16LE with BOM and
 * the "Windows Registry Editor Version 5.00" header, and "REGEDIT4" in ANSI (Windows-1252) or
 * UTF-8. On a malformed file returns -EINVAL with "FILE:LINE: reason" in err and no view:
 * a half-read view is never returned. Other failures, also with *out NULL and a message naming
 * the file: -E2BIG (a file over 64 MiB, or over 2,097,152 keys and values in all the files
 * together), -ENOMEM, or the -errno of opening / reading the file. Limits, as Windows has them:
 * a value at most 1 MiB, a key name 255 and a value name 16,383 UTF-16 units, 512 levels below
 * the hive. Zero files give an empty registry.
 */
int regview_open_files(const char *const *paths, size_t n, struct regview **out, char *err,
                       size_t errsize);

/* The same for a buffer in memory (name is used in messages); for the fuzzer. */
int regview_open_buffer(const char *name, const void *data, size_t len, struct regview **out,
                        char *err, size_t errsize);

#ifdef _WIN32
/* The native registry, 64-bit view; keys under SOFTWARE\\Wow6432Node read the 32-bit view. */
int regview_open_native(struct regview **out, char *err, size_t errsize);
#endif

#endif
