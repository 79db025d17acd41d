/*
 * w3c.c — one IIS W3C log line into an entry (w3c.h). Shared by the orchestrator's
 * `evidence import` and the collector's IIS log summary, so both read a log the same way.
 */
#include "w3c.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#ifdef _WIN32
#include <winsock2.h>
#include <ws2tcpip.h>
#else
#include <arpa/inet.h>
#endif

const char *w3c_proto_name(enum w3c_proto p)
{
    static const char *const names[W3C_PROTO_COUNT] = {"ssl2",   "ssl3",   "tls1.0",
                                                       "tls1.1", "tls1.2", "tls1.3"};
    return (unsigned)p < W3C_PROTO_COUNT ? names[p] : "?";
}

void w3c_map_init(struct w3c_map *m) { *m = (struct w3c_map){-1, -1, -1, -1, -1, -1, -1, 0}; }

int w3c_protocol(const char *text, enum w3c_proto *p)
{
    /* Server-side and client-side dwProtocol values (tls12-facts.md 6.3). */
    static const struct {
        unsigned long v;
        enum w3c_proto p;
    } map[] = {{0x4, W3C_SSL2},    {0x8, W3C_SSL2},    {0x10, W3C_SSL3},    {0x20, W3C_SSL3},
               {0x40, W3C_TLS10},  {0x80, W3C_TLS10},  {0x100, W3C_TLS11},  {0x200, W3C_TLS11},
               {0x400, W3C_TLS12}, {0x800, W3C_TLS12}, {0x1000, W3C_TLS13}, {0x2000, W3C_TLS13}};
    const char *t = text;
    if (t[0] == '0' && (t[1] == 'x' || t[1] == 'X'))
        t += 2;
    if (!*t || strlen(t) > 8)
        return -EINVAL;
    for (int base = 16; base >= 10; base -= 6) {
        if (text != t && base == 10)
            break; /* "0x..." is hexadecimal only */
        for (const char *c = t; *c; c++)
            if (!isxdigit((unsigned char)*c))
                return -EINVAL; /* strtoul would take a sign or white space */
        char *end;
        unsigned long v = strtoul(t, &end, base);
        if (*end)
            continue;
        for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
            if (map[i].v == v) {
                *p = map[i].p;
                return 0;
            }
    }
    return -EINVAL;
}

/* n digits at s into *v; false unless all are digits. */
static bool digits(const char *s, int n, int *v)
{
    *v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        *v = *v * 10 + (s[i] - '0');
    }
    return true;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil). */
static long long days_from_civil(int y, int m, int d)
{
    y -= m <= 2;
    long long era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153u * (unsigned)(m + (m > 2 ? -3 : 9)) + 2) / 5 + (unsigned)d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (long long)doe - 719468;
}

int w3c_time(const char *date, const char *time, long long *at)
{
    static const int mdays[12] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int y, mo, d, h, mi, s;
    if (strlen(date) != 10 || date[4] != '-' || date[7] != '-' || !digits(date, 4, &y) ||
        !digits(date + 5, 2, &mo) || !digits(date + 8, 2, &d))
        return -EINVAL;
    size_t tl = strlen(time);
    if (tl < 8 || time[2] != ':' || time[5] != ':' || !digits(time, 2, &h) ||
        !digits(time + 3, 2, &mi) || !digits(time + 6, 2, &s) || (tl > 8 && time[8] != '.'))
        return -EINVAL;
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if (y < 1970 || mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] ||
        (mo == 2 && d == 29 && !leap) || h > 23 || mi > 59 || s > 60)
        return -EINVAL;
    *at = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + (s > 59 ? 59 : s);
    return 0;
}

static void w3c_fields(struct w3c_map *m, char *line)
{
    w3c_map_init(m);
    char *save = NULL;
    for (char *tok = strtok_r(line, " \t\r\n", &save); tok && m->nfields < W3C_MAX_FIELDS;
         tok = strtok_r(NULL, " \t\r\n", &save), m->nfields++) {
        int *slot = !strcasecmp(tok, "date")             ? &m->date
                    : !strcasecmp(tok, "time")           ? &m->time
                    : !strcasecmp(tok, "c-ip")           ? &m->cip
                    : !strcasecmp(tok, "crypt-protocol") ? &m->proto
                    : !strcasecmp(tok, "s-computername") ? &m->computer
                    : !strcasecmp(tok, "s-ip")           ? &m->sip
                    : !strcasecmp(tok, "s-port")         ? &m->sport
                                                         : NULL;
        if (slot)
            *slot = m->nfields;
    }
}

static bool valid_address(const char *a)
{
    unsigned char buf[16];
    return strlen(a) < W3C_ADDRESS_MAX &&
           (inet_pton(AF_INET, a, buf) == 1 || inet_pton(AF_INET6, a, buf) == 1);
}

static enum w3c_kind bad(struct w3c_entry *e, const char *fmt, const char *detail)
{
    snprintf(e->why, sizeof(e->why), fmt, detail);
    return W3C_BAD;
}

enum w3c_kind w3c_line(struct w3c_map *m, char *line, bool need_server, struct w3c_entry *e)
{
    e->why[0] = '\0';
    if (line[0] == '#') {
        if (!strncasecmp(line, "#Fields:", 8))
            w3c_fields(m, line + 8);
        return W3C_COMMENT;
    }
    char *f[W3C_MAX_FIELDS];
    int nf = 0;
    char *save = NULL;
    for (char *tok = strtok_r(line, " \t\r\n", &save); tok;
         tok = strtok_r(NULL, " \t\r\n", &save)) {
        if (nf == W3C_MAX_FIELDS) {
            nf = -1;
            break;
        }
        f[nf++] = tok;
    }
    if (nf == 0)
        return W3C_EMPTY;
    if (m->nfields == 0)
        return bad(e, "%s", "a log line before any #Fields: line");
    if (m->date < 0 || m->time < 0 || m->cip < 0 || m->proto < 0 ||
        (need_server && m->computer < 0 && m->sip < 0))
        return bad(e, "%s",
                   "#Fields: lacks date, time, c-ip or crypt-protocol (IIS logs the protocol "
                   "only when the crypt-protocol custom field is configured), or a server");
    if (nf != m->nfields)
        return bad(e, "%s", "the number of fields differs from #Fields:");
    const char *proto = f[m->proto];
    if (!strcmp(proto, "-"))
        return W3C_PLAIN;
    if (w3c_protocol(proto, &e->proto))
        return bad(e, "crypt-protocol '%.40s' is not a known protocol value", proto);
    if (w3c_time(f[m->date], f[m->time], &e->at))
        return bad(e, "%s", "bad date or time");
    if (!valid_address(f[m->cip]))
        return bad(e, "c-ip '%.60s' is not an IP address", f[m->cip]);
    e->client = f[m->cip];
    e->port = -1;
    if (m->sport >= 0) {
        char *end;
        long port = strtol(f[m->sport], &end, 10);
        if (*end || end == f[m->sport] || port < 1 || port > 65535 || f[m->sport][0] == '+' ||
            f[m->sport][0] == '-')
            return bad(e, "s-port '%.20s' is not a port number", f[m->sport]);
        e->port = (int)port;
    }
    e->server = m->computer >= 0 ? f[m->computer] : m->sip >= 0 ? f[m->sip] : NULL;
    return W3C_ENTRY;
}
