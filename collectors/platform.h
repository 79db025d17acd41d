/*
 * platform.h — the few spots where the collector's C differs between POSIX and Windows
 * (mingw-w64), kept in one place so the modules read the same on both, and the message
 * formatter they share.
 */
#ifndef TLSGATE_PLATFORM_H
#define TLSGATE_PLATFORM_H

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifdef _WIN32
/* winsock2.h before windows.h, which would pull the old winsock.h */
#include <winsock2.h>

#include <windows.h>
/* mingw's `printf` format is Microsoft's (no %zu, %lld); the C library we call is C99's. */
#define PLATFORM_PRINTF(fmt, args) __attribute__((format(gnu_printf, fmt, args)))
#else
#define PLATFORM_PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))
#endif

/* Formats a message into the caller's (err, errsize) buffer; nothing when there is none. With
 * PLATFORM_PRINTF, so mingw checks the format as C99's. */
static inline void platform_set_err(char *err, size_t errsize, const char *fmt, ...)
    PLATFORM_PRINTF(3, 4);
static inline void platform_set_err(char *err, size_t errsize, const char *fmt, ...)
{
    if (!err || errsize == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errsize, fmt, ap);
    va_end(ap);
}

/* Clears secrets (key PEM) so the compiler cannot drop the stores. */
static inline void platform_secure_zero(void *p, size_t n)
{
#ifdef _WIN32
    SecureZeroMemory(p, n);
#else
    explicit_bzero(p, n);
#endif
}

/* Clears a secret string (a key PEM, a site secret), then frees it; NULL is accepted. */
static inline void platform_free_secret(char *s)
{
    if (s) {
        platform_secure_zero(s, strlen(s));
        free(s);
    }
}

/* gmtime_r (POSIX) / gmtime_s (Windows): 0 or -1. */
static inline int platform_gmtime(time_t t, struct tm *out)
{
#ifdef _WIN32
    return gmtime_s(out, &t) == 0 ? 0 : -1;
#else
    return gmtime_r(&t, out) ? 0 : -1;
#endif
}

#ifdef _WIN32
/* Windows' own text for a Win32 error code, without its trailing period and line end; "" when
 * Windows has none. */
static inline void platform_win_message(DWORD code, char *text, size_t size)
{
    text[0] = '\0';
    FormatMessageA(FORMAT_MESSAGE_FROM_SYSTEM | FORMAT_MESSAGE_IGNORE_INSERTS, NULL, code, 0, text,
                   (DWORD)size, NULL);
    text[size - 1] = '\0';
    size_t n = strlen(text);
    while (n > 0 && (text[n - 1] == '\r' || text[n - 1] == '\n' || text[n - 1] == '.'))
        text[--n] = '\0';
}
#endif

#endif
