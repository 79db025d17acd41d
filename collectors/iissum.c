/*
 * iissum.c — the collector's IIS log summary (iissum.h): the folder walk, the incremental read
 * of each W3C file (w3c.h parses the lines) and the fixed-size table of rows.
 */
#include "iissum.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "platform.h"
#include "w3c.h"

#ifdef _WIN32
#define PATH_SEP '\\'
#define file_seek(f, o) _fseeki64((f), (o), SEEK_SET)
#define file_seek_end(f) _fseeki64((f), 0, SEEK_END)
#define file_tell(f) _ftelli64(f)
#else
#define PATH_SEP '/'
#define file_seek(f, o) fseeko((f), (off_t)(o), SEEK_SET)
#define file_seek_end(f) fseeko((f), 0, SEEK_END)
#define file_tell(f) ((long long)ftello(f))
#endif

#define NAME_MAX_BYTES 160 /* "W3SVC<id>/u_ex<date>.log" and then some */

struct row {
    bool used;
    enum w3c_proto proto;
    int port;
    long long day, first, last, count;
    char client[W3C_ADDRESS_MAX];
};

struct file {
    char name[NAME_MAX_BYTES]; /* relative to the folder, '/'-separated */
    long long offset;          /* after the last complete line read */
    long long line;            /* lines read so far (line numbers in messages) */
    struct w3c_map map;
    bool seen; /* in the folder at the last scan */
};

struct iissum {
    char *dir;
    size_t max_rows, nslots, nrows;
    long long window;
    volatile int *stop;
    struct row *rows;
    struct file *files;
    size_t nfiles;
    long long lines, refused, plain, dropped, earliest;
    char last_refused[200];
    char *line; /* IISSUM_LINE_MAX + 2 */
};

int iissum_new(const struct iissum_options *o, struct iissum **out)
{
    *out = NULL;
    size_t max = o->max_rows ? o->max_rows : IISSUM_MAX_ROWS_DEFAULT;
    int days = o->window_days ? o->window_days : IISSUM_WINDOW_DAYS_DEFAULT;
    if (!o->dir || !o->dir[0] || max > IISSUM_MAX_ROWS_LIMIT || days < 1 ||
        days > IISSUM_WINDOW_DAYS_LIMIT)
        return -EINVAL;
    struct iissum *s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    s->max_rows = max;
    s->nslots = 16;
    while (s->nslots < 2 * max)
        s->nslots *= 2; /* at most half full: short probe runs */
    s->window = (long long)days * 86400;
    s->stop = o->stop;
    s->dir = strdup(o->dir);
    s->rows = calloc(s->nslots, sizeof(struct row));
    s->files = calloc(IISSUM_FILES_MAX, sizeof(struct file));
    s->line = malloc(IISSUM_LINE_MAX + 2);
    if (!s->dir || !s->rows || !s->files || !s->line) {
        iissum_free(s);
        return -ENOMEM;
    }
    *out = s;
    return 0;
}

void iissum_free(struct iissum *s)
{
    if (!s)
        return;
    free(s->dir);
    free(s->rows);
    free(s->files);
    free(s->line);
    free(s);
}

/* ---- rows ------------------------------------------------------------------------------- */

static uint32_t row_hash(const char *client, int port, enum w3c_proto p, long long day)
{
    uint32_t h = 2166136261u;
    for (const char *c = client; *c; c++)
        h = (h ^ (unsigned char)*c) * 16777619u;
    h = (h ^ (uint32_t)port) * 16777619u;
    h = (h ^ (uint32_t)p) * 16777619u;
    return (h ^ (uint32_t)(day / 86400)) * 16777619u;
}

/* The row of the key, or the free slot where it goes (linear probing; never full). */
static struct row *row_find(struct row *rows, size_t nslots, const char *client, int port,
                            enum w3c_proto p, long long day)
{
    size_t i = row_hash(client, port, p, day) & (nslots - 1);
    for (;; i = (i + 1) & (nslots - 1)) {
        struct row *r = &rows[i];
        if (!r->used ||
            (r->port == port && r->proto == p && r->day == day && !strcmp(r->client, client)))
            return r;
    }
}

static void row_add(struct iissum *s, const struct w3c_entry *e)
{
    long long day = e->at - ((e->at % 86400) + 86400) % 86400;
    int port = e->port > 0 ? e->port : 0;
    struct row *r = row_find(s->rows, s->nslots, e->client, port, e->proto, day);
    if (!r->used) {
        if (s->nrows >= s->max_rows) {
            s->dropped++;
            return;
        }
        *r = (struct row){.used = true,
                          .proto = e->proto,
                          .port = port,
                          .day = day,
                          .first = e->at,
                          .last = e->at};
        snprintf(r->client, sizeof(r->client), "%s", e->client);
        s->nrows++;
    }
    r->count++;
    r->first = e->at < r->first ? e->at : r->first;
    r->last = e->at > r->last ? e->at : r->last;
}

/* Drops the rows last seen before `before`; the table is rebuilt when any went (linear
 * probing has no simple delete). */
static int rows_prune(struct iissum *s, long long before)
{
    size_t gone = 0;
    for (size_t i = 0; i < s->nslots; i++)
        gone += s->rows[i].used && s->rows[i].last < before;
    if (!gone)
        return 0;
    struct row *fresh = calloc(s->nslots, sizeof(struct row));
    if (!fresh)
        return -ENOMEM;
    s->nrows = 0;
    for (size_t i = 0; i < s->nslots; i++) {
        struct row *r = &s->rows[i];
        if (!r->used || r->last < before)
            continue;
        *row_find(fresh, s->nslots, r->client, r->port, r->proto, r->day) = *r;
        s->nrows++;
    }
    free(s->rows);
    s->rows = fresh;
    return 0;
}

/* ---- files ------------------------------------------------------------------------------ */

static bool has_prefix_ci(const char *s, const char *prefix)
{
    return strncasecmp(s, prefix, strlen(prefix)) == 0;
}

static bool is_log_name(const char *name)
{
    size_t n = strlen(name);
    return has_prefix_ci(name, "u_ex") && n > 8 && strcasecmp(name + n - 4, ".log") == 0;
}

static void refuse(struct iissum *s, const struct file *f, const char *why)
{
    s->refused++;
    snprintf(s->last_refused, sizeof(s->last_refused), "%.100s:%lld: %.80s", f->name, f->line, why);
}

/* Reads the lines of `f` appended since its offset. 0, or -errno with err. */
static int file_read(struct iissum *s, struct file *f, const char *path, long long from, char *err,
                     size_t errsize)
{
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        int e = errno;
        snprintf(err, errsize, "%s: %s", path, strerror(e));
        return e == EACCES ? -EACCES : -EIO;
    }
    long long size = file_seek_end(fp) == 0 ? file_tell(fp) : -1;
    if (size < 0) {
        snprintf(err, errsize, "%s: cannot seek: %s", path, strerror(errno));
        fclose(fp);
        return -EIO;
    }
    if (size < f->offset) { /* replaced or cut: read it again */
        f->offset = 0;
        f->line = 0;
        w3c_map_init(&f->map);
    }
    if (file_seek(fp, f->offset) != 0) {
        snprintf(err, errsize, "%s: cannot seek: %s", path, strerror(errno));
        fclose(fp);
        return -EIO;
    }
    char *line = s->line;
    long long n = 0;
    while (fgets(line, IISSUM_LINE_MAX + 2, fp)) {
        size_t len = strlen(line);
        bool complete = len > 0 && line[len - 1] == '\n';
        if (!complete && len <= IISSUM_LINE_MAX) {
            /* Either IIS is still writing this line (wait for it) or a NUL byte cut it. */
            if (feof(fp))
                break;
            int c;
            while ((c = fgetc(fp)) != EOF && c != '\n')
                ;
            if (c == EOF)
                break;
            f->line++;
            s->lines++;
            f->offset = file_tell(fp);
            refuse(s, f, "a NUL byte in the line");
            continue;
        }
        if (!complete) { /* over IISSUM_LINE_MAX */
            int c;
            while ((c = fgetc(fp)) != EOF && c != '\n')
                ;
            if (c == EOF)
                break;
            f->line++;
            s->lines++;
            f->offset = file_tell(fp);
            refuse(s, f, "a line longer than 64 KiB");
            continue;
        }
        f->line++;
        s->lines++;
        f->offset = file_tell(fp);
        char *p = line;
        if (f->line == 1 && !strncmp(p, "\xef\xbb\xbf", 3))
            p += 3; /* UTF-8 byte order mark */
        struct w3c_entry e;
        switch (w3c_line(&f->map, p, false, &e)) {
        case W3C_COMMENT:
        case W3C_EMPTY: break;
        case W3C_PLAIN: s->plain++; break;
        case W3C_BAD: refuse(s, f, e.why); break;
        case W3C_ENTRY:
            if (e.at < from)
                break; /* before the window */
            if (!s->earliest || e.at < s->earliest)
                s->earliest = e.at;
            row_add(s, &e);
            break;
        }
        if ((++n & 4095) == 0 && s->stop && *s->stop)
            break;
    }
    int rc = 0;
    if (ferror(fp)) {
        snprintf(err, errsize, "%s: read error", path);
        rc = -EIO;
    }
    fclose(fp);
    return rc;
}

static struct file *file_get(struct iissum *s, const char *name)
{
    for (size_t i = 0; i < s->nfiles; i++)
        if (!strcmp(s->files[i].name, name))
            return &s->files[i];
    if (s->nfiles == IISSUM_FILES_MAX)
        return NULL;
    struct file *f = &s->files[s->nfiles++];
    memset(f, 0, sizeof(*f));
    snprintf(f->name, sizeof(f->name), "%s", name);
    w3c_map_init(&f->map);
    return f;
}

static int cmp_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The entries of `dir` accepted by `want`, sorted (u_ex names sort by date). malloc'd. */
static int list_dir(const char *dir, bool (*want)(const char *), char ***out, size_t *n)
{
    *out = NULL;
    *n = 0;
    DIR *d = opendir(dir);
    if (!d)
        return -errno;
    size_t cap = 0;
    struct dirent *de;
    int rc = 0;
    while ((de = readdir(d))) {
        if (!want(de->d_name) || strlen(de->d_name) >= NAME_MAX_BYTES / 2)
            continue;
        if (*n == cap) {
            cap = cap ? cap * 2 : 16;
            char **grown = cap <= 4 * IISSUM_FILES_MAX ? realloc(*out, cap * sizeof(char *)) : NULL;
            if (!grown) {
                rc = -ENOMEM;
                break;
            }
            *out = grown;
        }
        if (!((*out)[*n] = strdup(de->d_name))) {
            rc = -ENOMEM;
            break;
        }
        (*n)++;
    }
    closedir(d);
    if (*n)
        qsort(*out, *n, sizeof(char *), cmp_name);
    return rc;
}

static void free_list(char **list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(list[i]);
    free(list);
}

static bool is_site_dir(const char *name) { return has_prefix_ci(name, "W3SVC"); }

int iissum_scan(struct iissum *s, long long now, char *err, size_t errsize)
{
    err[0] = '\0';
    long long from = now - s->window;
    int rc = rows_prune(s, from);
    if (rc) {
        snprintf(err, errsize, "%s: out of memory", s->dir);
        return rc;
    }
    struct stat sb;
    if (stat(s->dir, &sb) != 0) {
        int e = errno;
        snprintf(err, errsize, "%s: %s", s->dir, strerror(e));
        return e == ENOENT ? -ENOENT : -EACCES;
    }
    if (!S_ISDIR(sb.st_mode)) {
        snprintf(err, errsize, "%s: not a folder (evidence.iis_logs)", s->dir);
        return -ENOTDIR;
    }
    char **sites;
    size_t nsites;
    if ((rc = list_dir(s->dir, is_site_dir, &sites, &nsites)) < 0) {
        snprintf(err, errsize, "%s: %s", s->dir, strerror(-rc));
        return rc == -ENOENT ? -ENOENT : rc == -ENOMEM ? -ENOMEM : -EACCES;
    }
    for (size_t i = 0; i < s->nfiles; i++)
        s->files[i].seen = false;
    int first_rc = 0;
    char path[1024];
    for (size_t i = 0; i < nsites && !(s->stop && *s->stop); i++) {
        snprintf(path, sizeof(path), "%s%c%s", s->dir, PATH_SEP, sites[i]);
        char **logs;
        size_t nlogs;
        if (stat(path, &sb) != 0 || !S_ISDIR(sb.st_mode))
            continue;
        if ((rc = list_dir(path, is_log_name, &logs, &nlogs)) < 0) {
            if (!first_rc) {
                first_rc = rc == -ENOMEM ? -ENOMEM : -EACCES;
                snprintf(err, errsize, "%s: %s", path, strerror(-rc));
            }
            continue;
        }
        for (size_t j = 0; j < nlogs && !(s->stop && *s->stop); j++) {
            char name[NAME_MAX_BYTES];
            snprintf(name, sizeof(name), "%s/%s", sites[i], logs[j]);
            snprintf(path, sizeof(path), "%s%c%s%c%s", s->dir, PATH_SEP, sites[i], PATH_SEP,
                     logs[j]);
            /* Last written before the window: nothing in it counts. */
            if (stat(path, &sb) != 0 || !S_ISREG(sb.st_mode) || (long long)sb.st_mtime < from)
                continue;
            struct file *f = file_get(s, name);
            if (!f) {
                if (!first_rc) {
                    first_rc = -EIO;
                    snprintf(err, errsize, "%s: more than %d log files in the window", s->dir,
                             IISSUM_FILES_MAX);
                }
                continue;
            }
            f->seen = true;
            char ferr[1280];
            rc = file_read(s, f, path, from, ferr, sizeof(ferr));
            if (rc && !first_rc) {
                first_rc = rc;
                snprintf(err, errsize, "%s", ferr);
            }
        }
        free_list(logs, nlogs);
    }
    free_list(sites, nsites);
    /* Forget files gone from the folder (IIS's log cleanup) or out of the window. */
    size_t kept = 0;
    for (size_t i = 0; i < s->nfiles; i++)
        if (s->files[i].seen)
            s->files[kept++] = s->files[i];
    s->nfiles = kept;
    return first_rc;
}

void iissum_get_stats(const struct iissum *s, struct iissum_stats *st)
{
    *st = (struct iissum_stats){.files = s->nfiles,
                                .rows = s->nrows,
                                .lines = s->lines,
                                .refused = s->refused,
                                .plain = s->plain,
                                .dropped = s->dropped,
                                .since = s->earliest};
    snprintf(st->last_refused, sizeof(st->last_refused), "%s", s->last_refused);
}

/* ---- JSON ------------------------------------------------------------------------------- */

static json_t *json_time(long long t)
{
    struct tm tm;
    char buf[32];
    if (t <= 0 || platform_gmtime((time_t)t, &tm) != 0 ||
        !strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm))
        return json_null();
    return json_string(buf);
}

char *iissum_json(const struct iissum *s, const char *host, long long now, size_t *len)
{
    long long from = now - s->window;
    long long since = s->earliest > from ? s->earliest : s->earliest ? from : 0;
    json_t *files = json_array(), *entries = json_array();
    json_t *root = json_pack(
        "{s:s, s:s, s:o, s:o, s:I, s:I, s:o, s:I, s:I, s:I, s:I, s:b, s:o, s:o}", "schema",
        IISSUM_SCHEMA, "host", host, "generated_at", json_time(now), "since", json_time(since),
        "window_days", (json_int_t)(s->window / 86400), "max_rows", (json_int_t)s->max_rows,
        "files", files, "lines", (json_int_t)s->lines, "refused", (json_int_t)s->refused, "plain",
        (json_int_t)s->plain, "dropped", (json_int_t)s->dropped, "truncated", s->dropped > 0,
        "last_refused", s->last_refused[0] ? json_string(s->last_refused) : json_null(), "entries",
        entries);
    if (!root)
        return NULL;
    int bad = 0;
    for (size_t i = 0; i < s->nfiles; i++)
        bad |= json_array_append_new(files, json_pack("{s:s, s:I}", "name", s->files[i].name,
                                                      "offset", (json_int_t)s->files[i].offset));
    for (size_t i = 0; i < s->nslots; i++) {
        const struct row *r = &s->rows[i];
        if (!r->used || r->last < from)
            continue;
        bad |= json_array_append_new(
            entries,
            json_pack("{s:s, s:i, s:s, s:o, s:o, s:I}", "client", r->client, "port", r->port,
                      "protocol", w3c_proto_name(r->proto), "first_seen", json_time(r->first),
                      "last_seen", json_time(r->last), "count", (json_int_t)r->count));
    }
    char *text = bad ? NULL : json_dumps(root, JSON_COMPACT);
    json_decref(root);
    if (text)
        *len = strlen(text);
    return text;
}
