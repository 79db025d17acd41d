/*
 * evidence.c — IIS W3C logs and SCHANNEL event exports, one line (or event) at a time, into
 * aggregated records (evidence.h). The aggregation table is fixed-size: a record whose slot is
 * taken by another key pushes the older one out to the callback, so memory stays flat whatever
 * the file holds.
 */
#include "evidence.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/wait.h>
#include <unistd.h>

#include "utc.h"
#include "w3c.h"

/* w3c.h names the protocols in wire_proto's order: the reader hands them over as they are. */
_Static_assert(W3C_SSL2 == (int)WIRE_SSL2 && W3C_TLS10 == (int)WIRE_TLS10 &&
                   W3C_TLS13 == (int)WIRE_TLS13 && W3C_PROTO_COUNT == WIRE_PROTO_COUNT,
               "w3c_proto and wire_proto differ");

/* ---- input: plain or through gzip -dc --------------------------------------------------- */

struct input {
    FILE *f;
    pid_t gzip; /* 0: plain file */
};

static int input_open(struct input *in, const char *path, char *err, size_t errsize)
{
    memset(in, 0, sizeof(*in));
    FILE *f = fopen(path, "rb");
    if (!f) {
        int e = errno;
        snprintf(err, errsize, "%s: %s", path, strerror(e));
        return e == ENOENT ? -ENOENT : -EIO;
    }
    unsigned char magic[2] = {0, 0};
    size_t n = fread(magic, 1, 2, f);
    if (n < 2 || magic[0] != 0x1f || magic[1] != 0x8b) {
        rewind(f);
        in->f = f;
        return 0;
    }
    /* gzip: a child decompresses, we read its stdout. No shell: the path is an argument. */
    int fd = dup(fileno(f));
    fclose(f);
    int pipefd[2];
    if (fd < 0 || pipe2(pipefd, O_CLOEXEC)) {
        if (fd >= 0)
            close(fd);
        snprintf(err, errsize, "%s: %s", path, strerror(errno));
        return -EIO;
    }
    lseek(fd, 0, SEEK_SET);
    pid_t pid = fork();
    if (pid < 0) {
        snprintf(err, errsize, "%s: cannot start gzip: %s", path, strerror(errno));
        close(fd);
        close(pipefd[0]);
        close(pipefd[1]);
        return -EIO;
    }
    if (pid == 0) {
        dup2(fd, 0);
        dup2(pipefd[1], 1);
        execlp("gzip", "gzip", "-dc", (char *)NULL);
        _exit(127);
    }
    close(fd);
    close(pipefd[1]);
    in->f = fdopen(pipefd[0], "rb");
    in->gzip = pid;
    if (!in->f) {
        close(pipefd[0]);
        waitpid(pid, NULL, 0);
        snprintf(err, errsize, "%s: out of memory", path);
        return -ENOMEM;
    }
    return 0;
}

/* Closes; for gzip, a child that failed (a corrupt or truncated stream) is an error. */
static int input_close(struct input *in, const char *path, bool check, char *err, size_t errsize)
{
    if (!in->f)
        return 0;
    if (in->gzip) {
        /* Drain, so a child still writing is not killed by SIGPIPE on an early stop. */
        char buf[4096];
        while (check && fread(buf, 1, sizeof(buf), in->f) > 0)
            ;
    }
    fclose(in->f);
    in->f = NULL;
    if (!in->gzip)
        return 0;
    int status = 0;
    waitpid(in->gzip, &status, 0);
    in->gzip = 0;
    if (check && (!WIFEXITED(status) || WEXITSTATUS(status) != 0)) {
        snprintf(err, errsize,
                 "%s: gzip -dc failed (%s %d): the file is not a complete gzip stream", path,
                 WIFEXITED(status) ? "exit" : "signal",
                 WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
        return -EINVAL;
    }
    return 0;
}

/* ---- aggregation ------------------------------------------------------------------------ */

#define AGG_SLOTS 16384 /* about 5.5 MiB: a busy server's distinct clients of a day */
#define AGG_WAYS 8
#define AGG_SERVER 256
#define AGG_CLIENT 64

struct slot {
    bool used;
    enum wire_proto proto;
    long long day, first, last, count;
    char server[AGG_SERVER];
    char client[AGG_CLIENT];
};

struct agg {
    struct slot *slots;
    evidence_fn fn;
    void *arg;
};

static int slot_emit(struct agg *a, struct slot *s)
{
    struct evidence_record r = {s->server, s->client, s->proto, s->first, s->last, s->count};
    s->used = false;
    return a->fn(&r, a->arg);
}

static uint32_t hash_key(const char *server, const char *client, enum wire_proto p, long long day)
{
    uint32_t h = 2166136261u;
    for (const char *c = server; *c; c++)
        h = (h ^ (unsigned char)tolower((unsigned char)*c)) * 16777619u;
    for (const char *c = client; *c; c++)
        h = (h ^ (unsigned char)*c) * 16777619u;
    h = (h ^ (uint32_t)p) * 16777619u;
    h = (h ^ (uint32_t)(day / 86400)) * 16777619u;
    return h;
}

static int agg_add(struct agg *a, const char *server, const char *client, enum wire_proto p,
                   long long at)
{
    long long day = at - ((at % 86400) + 86400) % 86400;
    /* AGG_WAYS slots per key: the key's own, else a free one, else the one seen longest ago
     * (it goes to the callback and makes room; logs are in time order, so that is a key of a
     * day that has passed). */
    uint32_t h = hash_key(server, client, p, day);
    struct slot *s = NULL, *victim = NULL;
    for (uint32_t w = 0; w < AGG_WAYS; w++) {
        struct slot *c = &a->slots[(h + w) % AGG_SLOTS];
        if (!c->used) {
            victim = victim && !victim->used ? victim : c;
            continue;
        }
        if (c->proto == p && c->day == day && !strcasecmp(c->server, server) &&
            !strcmp(c->client, client)) {
            s = c;
            break;
        }
        if (!victim || (victim->used && c->last < victim->last))
            victim = c;
    }
    if (s) {
        s->count++;
        s->first = at < s->first ? at : s->first;
        s->last = at > s->last ? at : s->last;
        return 0;
    }
    s = victim;
    int rc = s->used ? slot_emit(a, s) : 0;
    if (rc)
        return rc;
    *s = (struct slot){.used = true, .proto = p, .day = day, .first = at, .last = at, .count = 1};
    snprintf(s->server, sizeof(s->server), "%s", server);
    snprintf(s->client, sizeof(s->client), "%s", client);
    return 0;
}

static int agg_flush(struct agg *a)
{
    for (size_t i = 0; i < AGG_SLOTS; i++)
        if (a->slots[i].used) {
            int rc = slot_emit(a, &a->slots[i]);
            if (rc)
                return rc;
        }
    return 0;
}

/* ---- shared checks ---------------------------------------------------------------------- */

static void skip_line(struct evidence_stats *st, long line, const char *fmt, const char *detail)
{
    if (st->skipped < EVIDENCE_BAD_KEPT)
        st->bad[st->skipped] = line;
    if (!st->skipped)
        snprintf(st->why, sizeof(st->why), fmt, detail);
    st->skipped++;
}

/* A server name from a log: letters, digits, '-', '.', '_' (NetBIOS names have '_'). */
static bool valid_server(const char *s)
{
    size_t n = strlen(s);
    if (!n || n >= AGG_SERVER)
        return false;
    for (const char *c = s; *c; c++)
        if (!isalnum((unsigned char)*c) && *c != '-' && *c != '.' && *c != '_' && *c != ':')
            return false;
    return true;
}

int evidence_iis_protocol(const char *text, enum wire_proto *p)
{
    enum w3c_proto w;
    int rc = w3c_protocol(text, &w);
    if (!rc)
        *p = (enum wire_proto)w;
    return rc;
}

/* ---- IIS W3C ---------------------------------------------------------------------------- */

static int iis_line(struct agg *a, struct w3c_map *m, char *line, long n, const char *server,
                    struct evidence_stats *st)
{
    struct w3c_entry e;
    switch (w3c_line(m, line, !server, &e)) {
    case W3C_COMMENT:
    case W3C_EMPTY: return 0;
    case W3C_PLAIN: st->plain++; return 0;
    case W3C_BAD: skip_line(st, n, "%s", e.why); return 0;
    case W3C_ENTRY: break;
    }
    const char *srv = server ? server : e.server;
    if (!valid_server(srv)) {
        skip_line(st, n, "server '%.60s' is not a host name or address", srv);
        return 0;
    }
    st->handshakes++;
    return agg_add(a, srv, e.client, (enum wire_proto)e.proto, e.at);
}

/* ---- SCHANNEL events (wevtutil /f:xml) -------------------------------------------------- */

/* The text of <tag ...>TEXT</tag> in `ev`, into buf; false when absent. */
static bool xml_element(const char *ev, const char *tag, char *buf, size_t size)
{
    char open[64];
    snprintf(open, sizeof(open), "<%s", tag);
    const char *p = ev;
    while ((p = strstr(p, open))) {
        char c = p[strlen(open)];
        if (c == '>' || c == ' ' || c == '\t' || c == '/')
            break;
        p++;
    }
    if (!p || !(p = strchr(p, '>')) || p[-1] == '/')
        return false;
    p++;
    const char *end = strchr(p, '<');
    if (!end)
        return false;
    snprintf(buf, size, "%.*s", (int)(end - p), p);
    return true;
}

/* <Data Name='NAME'>TEXT</Data>, either quote. */
static bool xml_data(const char *ev, const char *name, char *buf, size_t size)
{
    for (const char *q = "'\""; *q; q++) {
        char key[96];
        snprintf(key, sizeof(key), "Name=%c%s%c", *q, name, *q);
        const char *p = strstr(ev, key);
        if (!p)
            continue;
        if (!(p = strchr(p, '>')) || p[-1] == '/') {
            buf[0] = '\0';
            return true;
        }
        p++;
        const char *end = strchr(p, '<');
        if (!end)
            return false;
        snprintf(buf, size, "%.*s", (int)(end - p), p);
        return true;
    }
    return false;
}

/* An attribute value NAME='V' or NAME="V" inside `ev`. */
static bool xml_attr(const char *ev, const char *name, char *buf, size_t size)
{
    const char *p = strstr(ev, name);
    if (!p || p[strlen(name)] != '=')
        return false;
    p += strlen(name) + 1;
    char q = *p;
    if (q != '\'' && q != '"')
        return false;
    const char *end = strchr(p + 1, q);
    if (!end)
        return false;
    snprintf(buf, size, "%.*s", (int)(end - p - 1), p + 1);
    return true;
}

static int schannel_event(struct agg *a, const char *ev, long n, const char *server,
                          struct evidence_stats *st)
{
    char id[16], type[32], proto[32], when[64], computer[AGG_SERVER];
    if (!xml_element(ev, "EventID", id, sizeof(id))) {
        skip_line(st, n, "%s", "an <Event> without <EventID>");
        return 0;
    }
    if (strcmp(id, "36880")) {
        st->ignored++;
        return 0;
    }
    if (!xml_data(ev, "Protocol", proto, sizeof(proto)) ||
        !xml_attr(ev, "SystemTime", when, sizeof(when)) ||
        (!server && !xml_element(ev, "Computer", computer, sizeof(computer)))) {
        skip_line(st, n, "%s", "event 36880 without Protocol, TimeCreated or Computer");
        return 0;
    }
    if (xml_data(ev, "Type", type, sizeof(type)) && strcasecmp(type, "server")) {
        st->ignored++; /* the machine was the client of that handshake */
        return 0;
    }
    static const char *const labels[] = {"SSL 2.0", "SSL 3.0", "TLS 1.0",
                                         "TLS 1.1", "TLS 1.2", "TLS 1.3"};
    int p = -1;
    for (int i = 0; i < WIRE_PROTO_COUNT; i++)
        if (!strcasecmp(proto, labels[i]))
            p = i;
    long long at;
    char stamp[24];
    snprintf(stamp, sizeof(stamp), "%.19sZ", when);
    if (p < 0) {
        skip_line(st, n, "Protocol '%.40s' is not a known protocol", proto);
        return 0;
    }
    if (strlen(when) < 20 || utc_parse_time(stamp, &at)) {
        skip_line(st, n, "%s", "bad TimeCreated SystemTime");
        return 0;
    }
    const char *srv = server ? server : computer;
    if (!valid_server(srv)) {
        skip_line(st, n, "Computer '%.60s' is not a host name", srv);
        return 0;
    }
    st->handshakes++;
    return agg_add(a, srv, "unknown", (enum wire_proto)p, at);
}

/* ---- the file --------------------------------------------------------------------------- */

int evidence_read_file(const char *path, const char *server, evidence_fn fn, void *arg,
                       struct evidence_stats *st, char *err, size_t errsize)
{
    memset(st, 0, sizeof(*st));
    enum { UNKNOWN, IIS, XML } kind = UNKNOWN;
    struct input in;
    int rc = input_open(&in, path, err, errsize);
    if (rc)
        return rc;
    char *line = malloc(EVIDENCE_LINE_MAX + 2);
    char *event = malloc(EVIDENCE_LINE_MAX + 1);
    struct agg a = {calloc(AGG_SLOTS, sizeof(struct slot)), fn, arg};
    if (!line || !event || !a.slots) {
        snprintf(err, errsize, "%s: out of memory", path);
        rc = -ENOMEM;
        goto out;
    }
    struct w3c_map map;
    w3c_map_init(&map);
    size_t evlen = 0;
    long evline = 0;
    bool in_event = false, ev_overlong = false;
    while (!rc && fgets(line, EVIDENCE_LINE_MAX + 2, in.f)) {
        st->lines++;
        size_t len = strlen(line);
        bool overlong =
            len > EVIDENCE_LINE_MAX || (len == EVIDENCE_LINE_MAX + 1 && line[len - 1] != '\n');
        if (overlong) {
            int c;
            while ((c = fgetc(in.f)) != EOF && c != '\n')
                ;
            skip_line(st, st->lines, "%s", "a line longer than 64 KiB");
            continue;
        }
        char *p = line;
        if (st->lines == 1 && !strncmp(p, "\xef\xbb\xbf", 3))
            p += 3; /* UTF-8 byte order mark */
        if (kind == UNKNOWN) {
            while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
                p++;
            if (!*p)
                continue;
            if (*p == '#') {
                kind = IIS;
                st->format = "iis";
            } else if (*p == '<') {
                kind = XML;
                st->format = "schannel";
            } else {
                snprintf(err, errsize,
                         "%s:%ld: neither an IIS W3C log (#Software / #Fields lines) nor a "
                         "SCHANNEL event export (<Event> XML)",
                         path, st->lines);
                rc = -EINVAL;
                break;
            }
        }
        if (kind == IIS) {
            rc = iis_line(&a, &map, p, st->lines, server, st);
            continue;
        }
        /* XML: events may span lines or share one; cut at <Event and </Event>. */
        while (*p) {
            if (!in_event) {
                char *start = strstr(p, "<Event");
                while (start && start[6] != '>' && start[6] != ' ' && start[6] != '\t')
                    start = strstr(start + 1, "<Event");
                if (!start)
                    break;
                in_event = true;
                ev_overlong = false;
                evlen = 0;
                evline = st->lines;
                p = start;
            }
            char *end = strstr(p, "</Event>");
            size_t take = end ? (size_t)(end - p) + 8 : strlen(p);
            if (evlen + take > EVIDENCE_LINE_MAX)
                ev_overlong = true;
            else {
                memcpy(event + evlen, p, take);
                evlen += take;
            }
            p += take;
            if (!end)
                break;
            event[evlen] = '\0';
            in_event = false;
            if (ev_overlong)
                skip_line(st, evline, "%s", "an event longer than 64 KiB");
            else if ((rc = schannel_event(&a, event, evline, server, st)))
                break;
        }
    }
    if (!rc && in_event)
        skip_line(st, evline, "%s", "an <Event> that never ends");
    if (!rc && ferror(in.f)) {
        snprintf(err, errsize, "%s: read error", path);
        rc = -EIO;
    }
    if (!rc && kind == UNKNOWN && !in.gzip) {
        snprintf(err, errsize, "%s: empty: no IIS log lines or SCHANNEL events", path);
        rc = -EINVAL;
    }
    if (!rc)
        rc = agg_flush(&a);
out:;
    int crc = input_close(&in, path, rc == 0, err, errsize);
    if (!rc && crc)
        rc = crc;
    if (!rc && kind == UNKNOWN) {
        snprintf(err, errsize, "%s: empty: no IIS log lines or SCHANNEL events", path);
        rc = -EINVAL;
    }
    free(line);
    free(event);
    free(a.slots);
    return rc;
}
