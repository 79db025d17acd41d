/*
 * winreg.c — the native registry backend (Windows only; meson compiles it only there).
 *
 * Answers regview_backend.h queries straight from the live registry, so facts read on a Windows
 * host go through the same regview.c decoding as the .reg fixtures. Two choices matter:
 *
 *   - The 64-bit view (KEY_WOW64_64KEY) always: a 32-bit collector must not be redirected to
 *     Wow6432Node behind its back, or it would report the 32-bit WinHTTP/.NET settings as the
 *     native ones.
 *   - A path under HKLM\SOFTWARE\Wow6432Node names the 32-bit view explicitly: it is opened as
 *     HKLM\SOFTWARE\<rest> with KEY_WOW64_32KEY, which is what Windows documents for reading
 *     the redirected keys (and also works where Wow6432Node is not a real key).
 *
 * Values are read with RegGetValueW and RRF_NOEXPAND (a REG_EXPAND_SZ is returned as stored),
 * bounded by REGVIEW_MAX_VALUE_BYTES like the file backend.
 */
#ifdef _WIN32

#include "regview.h"
#include "regview_backend.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <windows.h>

static HKEY hive_handle(int hive)
{
    switch (hive) {
    case 0: return HKEY_LOCAL_MACHINE;
    case 1: return HKEY_CURRENT_USER;
    case 2: return HKEY_CLASSES_ROOT;
    case 3: return HKEY_USERS;
    default: return HKEY_CURRENT_CONFIG;
    }
}

static int from_win32(LONG rc)
{
    switch (rc) {
    case ERROR_SUCCESS: return 0;
    case ERROR_FILE_NOT_FOUND:
    case ERROR_PATH_NOT_FOUND: return -ENOENT;
    case ERROR_ACCESS_DENIED: return -EACCES;
    case ERROR_NOT_ENOUGH_MEMORY:
    case ERROR_OUTOFMEMORY: return -ENOMEM;
    default: return -EIO;
    }
}

/* NUL-terminated UTF-8 -> malloc'd UTF-16; NULL on invalid UTF-8 or no memory. */
static wchar_t *to_wide(const char *s)
{
    int n = MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS, s, -1, NULL, 0);
    if (n <= 0)
        return NULL;
    wchar_t *w = malloc((size_t)n * sizeof(*w));
    if (w && MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS, s, -1, w, n) != n) {
        free(w);
        return NULL;
    }
    return w;
}

static char *to_utf8(const wchar_t *w, DWORD len)
{
    int n = len ? WideCharToMultiByte(CP_UTF8, 0, w, (int)len, NULL, 0, NULL, NULL) : 0;
    if (len && n <= 0)
        return NULL;
    char *s = malloc((size_t)n + 1);
    if (s && n)
        WideCharToMultiByte(CP_UTF8, 0, w, (int)len, s, n, NULL, NULL);
    if (s)
        s[n] = '\0';
    return s;
}

/* Opens `path` ("HKLM\\SOFTWARE\\..."); see the top comment for the view choice. */
static int open_key(const char *path, HKEY *out)
{
    const char *sep = strchr(path, '\\');
    size_t hlen = sep ? (size_t)(sep - path) : strlen(path);
    int hive = regview_hive_index(path, hlen);
    if (hive < 0)
        return -ENOENT;
    const char *sub = sep ? sep + 1 : "";
    static const char wow[] = "SOFTWARE\\Wow6432Node";
    const size_t wl = sizeof(wow) - 1;
    REGSAM view = KEY_WOW64_64KEY;
    char *redirected = NULL;
    if (hive == 0 && _strnicmp(sub, wow, wl) == 0 && (sub[wl] == '\\' || sub[wl] == '\0')) {
        view = KEY_WOW64_32KEY;
        size_t n = strlen("SOFTWARE") + strlen(sub + wl) + 1;
        redirected = malloc(n);
        if (!redirected)
            return -ENOMEM;
        snprintf(redirected, n, "SOFTWARE%s", sub + wl);
        sub = redirected;
    }
    wchar_t *wsub = to_wide(sub);
    free(redirected);
    if (!wsub)
        return -ENOENT; /* not valid UTF-8: no such key */
    LONG rc = RegOpenKeyExW(hive_handle(hive), wsub, 0, KEY_READ | view, out);
    free(wsub);
    return from_win32(rc);
}

static int wr_get_raw(struct regview *v, const char *key, const char *name,
                      struct regview_raw *raw)
{
    (void)v;
    HKEY h;
    int rc = open_key(key, &h);
    if (rc < 0)
        return rc;
    wchar_t *wname = to_wide(name);
    if (!wname) {
        RegCloseKey(h);
        return -ENOENT;
    }
    const DWORD flags = RRF_RT_ANY | RRF_NOEXPAND;
    DWORD type = 0, size = 0;
    LONG r = RegGetValueW(h, NULL, wname, flags, &type, NULL, &size);
    unsigned char *buf = NULL;
    /* The value may grow between the calls: retry a few times on ERROR_MORE_DATA. */
    for (int tries = 0; r == ERROR_SUCCESS; tries++) {
        if (size > REGVIEW_MAX_VALUE_BYTES) {
            rc = -E2BIG;
            break;
        }
        if (tries == 4) {
            rc = -EIO;
            break;
        }
        unsigned char *b = realloc(buf, size ? size : 1);
        if (!b) {
            rc = -ENOMEM;
            break;
        }
        buf = b;
        DWORD got = size;
        r = RegGetValueW(h, NULL, wname, flags, &type, buf, &got);
        size = got;
        if (r == ERROR_SUCCESS)
            break;
        if (r == ERROR_MORE_DATA)
            r = ERROR_SUCCESS;
    }
    RegCloseKey(h);
    free(wname);
    if (rc == 0 && r != ERROR_SUCCESS)
        rc = from_win32(r);
    if (rc < 0) {
        free(buf);
        return rc;
    }
    raw->type = type;
    raw->data = buf;
    raw->len = size;
    raw->owned = buf;
    return 0;
}

static int wr_list(struct regview *v, const char *key, enum regview_list_kind kind, char ***out)
{
    (void)v;
    HKEY h;
    int rc = open_key(key, &h);
    if (rc < 0)
        return rc;
    DWORD nsub = 0, maxsub = 0, nval = 0, maxval = 0;
    LONG r = RegQueryInfoKeyW(h, NULL, NULL, NULL, &nsub, &maxsub, NULL, &nval, &maxval, NULL,
                              NULL, NULL);
    if (r != ERROR_SUCCESS) {
        RegCloseKey(h);
        return from_win32(r);
    }
    DWORD count = kind == REGVIEW_LIST_SUBKEYS ? nsub : nval;
    DWORD cap = (kind == REGVIEW_LIST_SUBKEYS ? maxsub : maxval) + 1;
    wchar_t *name = malloc((size_t)cap * sizeof(*name));
    char **strv = calloc((size_t)count + 1, sizeof(*strv));
    rc = name && strv ? 0 : -ENOMEM;
    DWORD n = 0;
    for (DWORD i = 0; rc == 0 && i < count; i++) {
        DWORD len = cap;
        r = kind == REGVIEW_LIST_SUBKEYS
                ? RegEnumKeyExW(h, i, name, &len, NULL, NULL, NULL, NULL)
                : RegEnumValueW(h, i, name, &len, NULL, NULL, NULL, NULL);
        if (r == ERROR_NO_MORE_ITEMS)
            break; /* deleted while listing */
        if (r != ERROR_SUCCESS) {
            rc = from_win32(r);
            break;
        }
        strv[n] = to_utf8(name, len);
        rc = strv[n] ? 0 : -ENOMEM;
        n += rc == 0;
    }
    RegCloseKey(h);
    free(name);
    if (rc < 0) {
        regview_strv_free(strv);
        return rc;
    }
    *out = strv;
    return 0;
}

static void wr_free(struct regview *v)
{
    free(v);
}

static const struct regview_ops winreg_ops = {
    .get_raw = wr_get_raw,
    .list = wr_list,
    .free = wr_free,
};

int regview_open_native(struct regview **out, char *err, size_t errsize)
{
    *out = NULL;
    struct regview *v = malloc(sizeof(*v));
    if (!v) {
        snprintf(err, errsize, "registry: out of memory");
        return -ENOMEM;
    }
    v->ops = &winreg_ops;
    *out = v;
    return 0;
}

#endif /* _WIN32 */
