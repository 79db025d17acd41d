/*
 * table.c — the one printer of every table a command shows (cli.h, "TABLES").
 *
 * A table has fixed column widths, declared by the command, so rows stream: nothing waits for
 * the widest value of a million hosts. Off a terminal every value is printed whole (a long one
 * pushes the rest of its row right; a script reads whole values, or takes --json). On a
 * terminal the table fits its width (TIOCGWINSZ; $COLUMNS overrides; 80 when neither says):
 * the widest columns give up room first, down to their minimum, and a value longer than its
 * column is cut with "…", so every column starts where its title does whatever the host
 * names. $TLSGATE_TTY=1 (or 0) forces the terminal mode on (off), for tests and pagers.
 * Every cell goes through textclean (base/textclean.h) first.
 */
#include "cli.h"

#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

/* Width of a UTF-8 string in terminal columns, counted as code points (no wide glyphs in
 * tlsgate's data: host names, roles, states, OS labels). */
static size_t text_width(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

/* Bytes of the first `cols` code points of s. */
static size_t prefix_bytes(const char *s, size_t cols)
{
    size_t i = 0, n = 0;
    while (s[i]) {
        if (((unsigned char)s[i] & 0xC0) != 0x80) {
            if (n == cols)
                break;
            n++;
        }
        i++;
    }
    return i;
}

static bool env_tty(bool *value)
{
    const char *e = getenv("TLSGATE_TTY");
    if (!e || !*e)
        return false;
    *value = strcmp(e, "0") != 0;
    return true;
}

int cli_terminal_width(void)
{
    const char *c = getenv("COLUMNS");
    if (c && *c) {
        long v = strtol(c, NULL, 10);
        if (v >= 20 && v <= 10000)
            return (int)v;
    }
    struct winsize ws;
    if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col >= 20)
        return ws.ws_col;
    return 80;
}

void cli_table_begin(struct cli_table *t, const struct cli_column *cols, int ncols, FILE *out)
{
    t->cols = cols;
    t->ncols = ncols;
    t->out = out;
    if (!env_tty(&t->tty))
        t->tty = isatty(fileno(out)) == 1;
    int total = -1;
    for (int i = 0; i < ncols; i++) {
        t->width[i] = cols[i].width;
        total += cols[i].width + 1;
    }
    if (t->tty) {
        /* Shrink one step at a time until the row fits: numbers first (their room is mostly
         * padding), then the widest text column. */
        int room = cli_terminal_width() - 1; /* the cursor's own cell */
        while (total > room) {
            int widest = -1;
            for (int pass = 0; pass < 2 && widest < 0; pass++)
                for (int i = 0; i < ncols; i++)
                    if (cols[i].right == (pass == 0) && t->width[i] > cols[i].min &&
                        (widest < 0 || t->width[i] > t->width[widest]))
                        widest = i;
            if (widest < 0)
                break; /* every column at its minimum: the terminal is narrower than that */
            t->width[widest]--;
            total--;
        }
        t->room = room;
    }
    const char *titles[CLI_TABLE_MAX_COLUMNS];
    for (int i = 0; i < ncols; i++)
        titles[i] = cols[i].title;
    cli_table_row(t, titles);
}

static void put_cell(struct cli_table *t, int i, const char *s, int width, bool last)
{
    size_t w = text_width(s);
    bool right = t->cols[i].right;
    if (t->tty && w > (size_t)width) {
        /* Cut: width - 1 code points and the ellipsis. */
        size_t keep = width > 0 ? prefix_bytes(s, (size_t)width - 1) : 0;
        fwrite(s, 1, keep, t->out);
        if (width > 0)
            fputs("\u2026", t->out);
        return;
    }
    int pad = w < (size_t)width ? width - (int)w : 0;
    if (right)
        fprintf(t->out, "%*s", pad, "");
    fputs(s, t->out);
    if (!right && !last)
        fprintf(t->out, "%*s", pad, "");
}

void cli_table_row(struct cli_table *t, const char *const cells[])
{
    int used = 0;
    for (int i = 0; i < t->ncols; i++) {
        bool last = i == t->ncols - 1;
        int width = t->width[i];
        if (last && t->tty) {
            /* The last column takes what is left of the line. */
            int left = t->room - used;
            width = left > 0 ? left : 1;
        } else if (last && !t->cols[i].right) {
            width = 0; /* no padding at the end of a line */
        }
        if (i)
            fputc(' ', t->out);
        /* Cells are outside text (host names, OS captions): no terminal escape gets through. */
        char clean[TEXTCLEAN_MAX];
        const char *cell = cells[i] ? cells[i] : "";
        if (textclean_needed(cell))
            cell = textclean(cell, clean, sizeof(clean));
        put_cell(t, i, cell, width, last);
        used += t->width[i] + 1;
    }
    fputc('\n', t->out);
}
