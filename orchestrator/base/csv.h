/*
 * csv: a streaming RFC 4180 writer for the dashboard export (DESIGN "CLI contract").
 *
 * Rows go out as they are produced: cells are appended to a fixed 64 KiB buffer that is written
 * to the file descriptor with write(2) whenever it fills, so memory does not depend on the number
 * of rows. Every row ends with CRLF. A cell is quoted when it holds a comma, a double quote, CR or
 * LF, and its quotes are doubled. A cell that begins with '=', '+', '-', '@', TAB or CR gets a
 * leading "'" (inside the quotes, when quoted) so a spreadsheet never evaluates it as a formula.
 *
 * Errors are sticky: the first failed write(2) is remembered as -errno, later calls do nothing
 * and return it, and csv_flush() reports it. The caller decides what the failure means (an
 * --out temp file to remove, an exit code).
 */
#ifndef TLSGATE_CSV_H
#define TLSGATE_CSV_H

#include <stdbool.h>
#include <stddef.h>

#define CSV_BUFFER_SIZE 65536

struct csv_writer {
    int fd;        /* not owned: the caller opens and closes it */
    int error;     /* 0, or the first -errno of a failed write */
    bool row_open; /* a cell was written since the last csv_end_row */
    size_t used;   /* bytes waiting in buf */
    char buf[CSV_BUFFER_SIZE];
};

/* Prepares `w` to write to `fd`. */
void csv_init(struct csv_writer *w, int fd);

/* Writes the UTF-8 byte order mark (only meaningful before the first row; Excel wants it). */
int csv_bom(struct csv_writer *w);

/* Appends one cell of `len` bytes (NULL or len 0: an empty cell), escaped as described above. */
int csv_cell(struct csv_writer *w, const char *s, size_t len);
/* The same for a NUL-terminated string (NULL: an empty cell). */
int csv_cell_str(struct csv_writer *w, const char *s);
/* A decimal integer (an ordinary cell: a negative one would get the formula guard too). */
int csv_cell_int(struct csv_writer *w, long long v);
/* "true" or "false". */
int csv_cell_bool(struct csv_writer *w, bool v);

/* Ends the current row with CRLF. */
int csv_end_row(struct csv_writer *w);

/* Writes a whole header row from a NULL-terminated list of names. */
int csv_header(struct csv_writer *w, const char *const *names);

/* Writes what is buffered. Returns 0 or the sticky -errno. */
int csv_flush(struct csv_writer *w);

#endif
