/*
 * csv.c — see csv.h. The escaping rules live in csv_cell(); everything else is buffering.
 */
#include "csv.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

void csv_init(struct csv_writer *w, int fd)
{
    w->fd = fd;
    w->error = 0;
    w->row_open = false;
    w->used = 0;
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t r = write(fd, p, n);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (r == 0)
            return -EIO;
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

int csv_flush(struct csv_writer *w)
{
    if (w->error)
        return w->error;
    if (w->used) {
        w->error = write_all(w->fd, w->buf, w->used);
        w->used = 0;
    }
    return w->error;
}

static void put(struct csv_writer *w, const char *p, size_t n)
{
    while (n && !w->error) {
        if (w->used == sizeof(w->buf))
            csv_flush(w);
        size_t room = sizeof(w->buf) - w->used;
        size_t k = n < room ? n : room;
        memcpy(w->buf + w->used, p, k);
        w->used += k;
        p += k;
        n -= k;
    }
}

static void put_char(struct csv_writer *w, char c)
{
    if (w->used == sizeof(w->buf) && csv_flush(w))
        return;
    if (!w->error)
        w->buf[w->used++] = c;
}

int csv_bom(struct csv_writer *w)
{
    put(w, "\xEF\xBB\xBF", 3);
    return w->error;
}

/* A spreadsheet treats a cell starting with one of these as a formula (or, for TAB and CR, may
 * strip them and then see one): OWASP "CSV Injection". */
static bool formula_start(char c)
{
    return c == '=' || c == '+' || c == '-' || c == '@' || c == '\t' || c == '\r';
}

int csv_cell(struct csv_writer *w, const char *s, size_t len)
{
    if (w->row_open)
        put_char(w, ',');
    w->row_open = true;
    if (!s || !len)
        return w->error;
    bool quote = false;
    for (size_t i = 0; i < len && !quote; i++)
        quote = s[i] == ',' || s[i] == '"' || s[i] == '\r' || s[i] == '\n';
    if (quote)
        put_char(w, '"');
    if (formula_start(s[0]))
        put_char(w, '\'');
    if (!quote) {
        put(w, s, len);
        return w->error;
    }
    const char *run = s;
    for (size_t i = 0; i < len; i++) {
        if (s[i] != '"')
            continue;
        put(w, run, (size_t)(s + i + 1 - run)); /* up to and including the quote */
        put_char(w, '"');                       /* doubled */
        run = s + i + 1;
    }
    put(w, run, (size_t)(s + len - run));
    put_char(w, '"');
    return w->error;
}

int csv_cell_str(struct csv_writer *w, const char *s) { return csv_cell(w, s, s ? strlen(s) : 0); }

int csv_cell_int(struct csv_writer *w, long long v)
{
    char num[24];
    int n = snprintf(num, sizeof(num), "%lld", v);
    return csv_cell(w, num, (size_t)n);
}

int csv_cell_bool(struct csv_writer *w, bool v)
{
    return v ? csv_cell(w, "true", 4) : csv_cell(w, "false", 5);
}

int csv_end_row(struct csv_writer *w)
{
    put(w, "\r\n", 2);
    w->row_open = false;
    return w->error;
}

int csv_header(struct csv_writer *w, const char *const *names)
{
    for (size_t i = 0; names[i]; i++)
        csv_cell_str(w, names[i]);
    return csv_end_row(w);
}
