/*
 * cli.c — the helpers every command shares: opening the store with the right exit code,
 * the audit row, time formatting, JSON string output.
 */
#include "cli.h"

#include <errno.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "store.h"

void cli_error(const char *fmt, ...)
{
    va_list ap;
    fputs("tlsgate: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

struct store *cli_store(struct cli *cli, bool create, int *code)
{
    if (cli->store)
        return cli->store;
    char err[512];
    int rc = store_open(cli->db_path, create, &cli->store, err, sizeof(err));
    if (rc) {
        cli_error("%s", err);
        *code = EXIT_SYSTEM;
        return NULL;
    }
    return cli->store;
}

const char *cli_user(void)
{
    static char name[64];
    if (name[0])
        return name;
    const char *env = getenv("TLSGATE_USER"); /* lets wrappers name the real operator */
    struct passwd *pw = getpwuid(geteuid());
    snprintf(name, sizeof(name), "%s",
             env && *env ? env : pw && pw->pw_name ? pw->pw_name : "unknown");
    return name;
}

int cli_audit(struct cli *cli, const char *outcome)
{
    sqlite3_stmt *st;
    int rc = store_prepare(cli->store,
                           "INSERT INTO audit (at, user, command, outcome) VALUES (?, ?, ?, ?)",
                           &st);
    if (rc)
        return rc;
    sqlite3_bind_int64(st, 1, cli_now());
    sqlite3_bind_text(st, 2, cli_user(), -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, cli->command_line ? cli->command_line : "", -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, outcome, -1, SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_DONE)
        rc = store_sqlite_fail(cli->store, "write audit row");
    sqlite3_finalize(st);
    return rc;
}

/* Length of the well-formed UTF-8 sequence at p (shortest form, no surrogate, at most
 * U+10FFFF), or 0 when there is none. */
static size_t utf8_sequence(const unsigned char *p)
{
    unsigned c = p[0];
    size_t n = c >= 0xf0 ? 3 : c >= 0xe0 ? 2 : c >= 0xc0 ? 1 : 0;
    if (!n || c > 0xf4)
        return 0;
    unsigned cp = c & (0x3f >> n);
    for (size_t i = 1; i <= n; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (p[i] & 0x3f);
    }
    static const unsigned min[4] = {0, 0x80, 0x800, 0x10000};
    if (cp < min[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return n + 1;
}

void cli_json_string(FILE *out, const char *s)
{
    fputc('"', out);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p >= 0x80) {
            /* Bytes from outside (arguments, old rows) may not be UTF-8; JSON must be. */
            size_t n = utf8_sequence(p);
            if (n) {
                fwrite(p, 1, n, out);
                p += n - 1;
            } else {
                fputs("\\ufffd", out);
            }
            continue;
        }
        switch (*p) {
        case '"': fputs("\\\"", out); break;
        case '\\': fputs("\\\\", out); break;
        case '\n': fputs("\\n", out); break;
        case '\r': fputs("\\r", out); break;
        case '\t': fputs("\\t", out); break;
        default:
            if (*p < 0x20)
                fprintf(out, "\\u%04x", *p);
            else
                fputc(*p, out);
        }
    }
    fputc('"', out);
}

long long cli_now(void)
{
    const char *pinned = getenv("TLSGATE_NOW");
    if (pinned && *pinned) {
        char *end;
        long long t = strtoll(pinned, &end, 10);
        if (*end == '\0')
            return t;
    }
    return (long long)time(NULL);
}

const char *cli_iso8601(long long t, char *buf, size_t size)
{
    time_t tt = (time_t)t;
    struct tm tm;
    if (!gmtime_r(&tt, &tm) || !strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm))
        snprintf(buf, size, "?");
    return buf;
}

int cli_parse_time(const char *s, long long *t)
{
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    const char *end = strptime(s, "%Y-%m-%dT%H:%M:%SZ", &tm);
    if (!end || *end) {
        memset(&tm, 0, sizeof(tm));
        end = strptime(s, "%Y-%m-%d", &tm);
        if (!end || *end)
            return -EINVAL;
    }
    int mday = tm.tm_mday, mon = tm.tm_mon;
    time_t v = timegm(&tm);
    /* timegm normalises 2026-02-30 into March: such a date is a typo, not a date. */
    if (v == (time_t)-1 || tm.tm_mday != mday || tm.tm_mon != mon)
        return -EINVAL;
    *t = (long long)v;
    return 0;
}
