/*
 * regview_backend: the contract between the generic registry view (regview.c) and its backends
 * (regfile.c, winreg.c). Not for callers of the view: they use regview.h only.
 *
 * A backend answers two questions in the registry's own terms: "what are the type and the raw
 * bytes of this value" and "what are the names under this key". Everything that turns raw bytes
 * into what a caller asked for (type checks, UTF-16LE to UTF-8, REG_MULTI_SZ splitting, the
 * big-endian DWORD, sorting names) lives once in regview.c, so the .reg files and the native
 * registry are read by the same code.
 */
#ifndef TLSGATE_REGVIEW_BACKEND_H
#define TLSGATE_REGVIEW_BACKEND_H

#include <stddef.h>
#include <stdint.h>

/* Registry value types (winnt.h numbering). */
enum {
    REGVIEW_NONE = 0,
    REGVIEW_SZ = 1,
    REGVIEW_EXPAND_SZ = 2,
    REGVIEW_BINARY = 3,
    REGVIEW_DWORD = 4,
    REGVIEW_DWORD_BIG_ENDIAN = 5,
    REGVIEW_MULTI_SZ = 7,
    REGVIEW_QWORD = 11,
};

/* Caps that mirror Windows' own limits (characters are UTF-16 code units, as Windows counts). */
#define REGVIEW_MAX_KEY_NAME 255 /* one component of a key path */
#define REGVIEW_MAX_VALUE_NAME 16383
#define REGVIEW_MAX_DEPTH 512 /* components below the hive */
#define REGVIEW_MAX_VALUE_BYTES (1u << 20)

/* The regfile backend holds at most this many keys and values in one view (about 200 bytes
 * each): the 64 MiB file cap alone would let a file of deep [KEY] lines (two bytes per new key)
 * cost gigabytes. A real 64 MiB UTF-16 export holds well under 2 million. */
#define REGFILE_MAX_ENTRIES ((size_t)1 << 21)

/*
 * What regview_open_files (datas == NULL: names are paths) and regview_open_buffer (datas and
 * lens given; names name the buffers in messages) both run, with the entry cap as a parameter
 * so tests can reach it without building millions of keys. Over the cap: -E2BIG with
 * "NAME:LINE: over N keys and values in all the files together".
 */
int regfile_open(const char *const *names, const void *const *datas, const size_t *lens, size_t n,
                 size_t max_entries, struct regview **out, char *err, size_t errsize);

/* A value as the registry holds it. `data` stays valid until `owned` is freed (regfile points
 * into the view and leaves `owned` NULL; winreg hands over a malloc'd buffer). */
struct regview_raw {
    uint32_t type;
    const unsigned char *data;
    size_t len;
    void *owned;
};

enum regview_list_kind { REGVIEW_LIST_SUBKEYS, REGVIEW_LIST_VALUES };

struct regview;

struct regview_ops {
    /* 0 and *raw, -ENOENT (key or value absent) or -ENOMEM/-EIO. name "" is the default value. */
    int (*get_raw)(struct regview *v, const char *key, const char *name, struct regview_raw *raw);
    /* 0 and a NULL-ended malloc'd array of malloc'd UTF-8 names in any order, or -ENOENT. */
    int (*list)(struct regview *v, const char *key, enum regview_list_kind kind, char ***out);
    void (*free)(struct regview *v);
};

/* Every backend's view starts with this. */
struct regview {
    const struct regview_ops *ops;
};

/*
 * Hive names: "HKLM" and "HKEY_LOCAL_MACHINE" (and the other four hives, short and long),
 * compared case-insensitively over `len` bytes. Returns the hive index 0..4, or -1.
 */
int regview_hive_index(const char *name, size_t len);
const char *regview_hive_name(int index); /* the long spelling, e.g. "HKEY_LOCAL_MACHINE" */
#define REGVIEW_HIVES 5

/*
 * Case folding for names, as the registry compares them: ASCII, Latin-1, Latin Extended-A,
 * basic Greek and Cyrillic fold to upper case. Folding never changes the UTF-8 length, so
 * `out` needs exactly `len` bytes (it is not NUL-terminated by this call). `in` must be valid
 * UTF-8 (the view only holds validated text).
 */
void regview_fold(const char *in, size_t len, char *out);

/* Compares two names case-insensitively (by folded code point), then byte-wise for a total
 * order. */
int regview_name_cmp(const char *a, const char *b);

/* Writes code point `cp` as UTF-8 (1 to 4 bytes) to buf; returns the byte count. */
size_t regview_utf8_put(uint32_t cp, char *buf);

/* Number of UTF-16 code units `s` (valid UTF-8, `len` bytes) takes. */
size_t regview_utf16_units(const char *s, size_t len);

#endif
