/*
 * fleetsim — a simulated Configuration Manager fleet on loopback, for the demo, the pull
 * benchmark and the daemon's tests.
 *
 * Each simulated host is a real collector identity: its own certificate (SAN = its name,
 * issued in-process by simcert from the fleet CA of tools/gen-certs), its own port on
 * 127.0.0.1, and the collector's own HTTPS server code (collectors/server.h) serving a report
 * built with the collector's own extraction (regview + facts) from a .reg fixture. Thousands of
 * identities share one libuv loop per worker process; --procs workers split the fleet.
 *
 * The parent process owns a control socket (UNIX stream, one command line per connection) and
 * forwards each command to the worker that owns the host:
 *   fixture HOST NAME           serve the facts of fixture NAME (e.g. a Windows 7 client patched:
 *                               win7-sp1-x64-unpatched+win7-ready, layers joined with '+')
 *   fixture-all FROM TO         every host on fixture FROM moves to TO
 *   stop HOST | start HOST      the host goes away (connection refused) / comes back
 *   misbehave HOST MODE         silent (accepts, never answers), slow (one byte per 100 ms),
 *                               wrong-cert (presents another name's certificate)
 *   behave HOST                 back to normal
 *   status                      "hosts N served N refused N"
 * `fleetsim ctl SOCKET COMMAND...` sends one and prints the answer.
 *
 * With --enroll URL the identities are not issued here: each simulated host makes its own key
 * and enrolls at the orchestrator's enrollment endpoint with its site's secret, exactly as a
 * tlsgate-collector does (collectors/enroll.h), on libuv's thread pool of each worker
 * (--enroll-concurrency requests at once per worker); a host serves once its certificate
 * arrives, and "ready" is printed when every host serves. A refused host stops the simulator
 * (exit 3, naming the host and the server's reason); a pending or busy answer is asked again
 * until --enroll-timeout.
 */
#include <errno.h>
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <getopt.h>
#include <jansson.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "enroll.h"
#include "facts.h"
#include "regview.h"
#include "server.h"
#include "simcert.h"

#define MAX_FIXTURES 64
#define MAX_SITES 64
#define MAX_PROCS 16
/* Descriptors per simulated host (its listener and MHD's epoll fd) and those a worker keeps for
 * connections in flight and itself; --procs defaults to what RLIMIT_NOFILE allows. */
#define FDS_PER_HOST 2
#define FDS_RESERVE 1024
#define CMD_MAX 512

/* ---------------------------------------------------------------------------------------- */
/* The fleet plan: every process computes the same host table from the options.              */

struct fixture {
    char name[64];
    json_t *facts;
};

enum mode { MODE_OK, MODE_STOPPED, MODE_SILENT, MODE_SLOW, MODE_WRONG_CERT };

struct host {
    char name[128];
    char site[4];
    const char *roles;      /* DESIGN vocabulary, ';'-joined */
    int fixture;            /* index into fixtures */
    uint16_t port;
    /* worker-side state */
    char *cert_pem, *key_pem;
    struct server *srv;
    enum mode mode;
    uv_tcp_t *trap;         /* silent / slow listener */
    uint16_t inner_port;    /* slow: the real server's port behind the trickle proxy */
};

struct fleet {
    struct fixture fixtures[MAX_FIXTURES];
    int nfixtures;
    struct host *hosts;
    int nhosts;
    const char *fixtures_dirs[4];  /* searched in order */
    int nfixtures_dirs;
    const char *address;
    struct simcert_ca *ca;
    long interval;
    uv_loop_t *loop;
    uv_timer_t refresh;
    unsigned long served_closed, refused_closed;
    /* --enroll: the endpoint, the secret per site ("" = every site), the deadline */
    const char *enroll_url;
    struct {
        char site[4];
        char *secret;
    } secrets[MAX_SITES + 1];
    int nsecrets;
    long enroll_timeout;
};

static struct fleet fleet;

static int fixture_index(const char *name, char *err, size_t errsize);

/* Adds the files of one fixture layer to files[]: DIR/NAME.reg, or every *.reg in DIR/NAME/
 * (in name order). Returns 0 or -ENOENT with the reason in err. */
static int add_layer(const char *name, char store[][2048], const char **files, size_t *n,
                     char *err, size_t errsize)
{
    char path[1024];
    struct stat st;
    for (int d = 0; d < fleet.nfixtures_dirs; d++) {
        const char *dir = fleet.fixtures_dirs[d];
        snprintf(path, sizeof(path), "%s/%s.reg", dir, name);
        if (stat(path, &st) == 0) {
            if (*n == 32)
                goto too_many;
            snprintf(store[*n], 2048, "%s", path);
            files[*n] = store[*n];
            (*n)++;
            return 0;
        }
        snprintf(path, sizeof(path), "%s/%s", dir, name);
        uv_fs_t req;
        if (uv_fs_scandir(NULL, &req, path, 0, NULL) < 0)
            continue;
        size_t first = *n;
        uv_dirent_t ent;
        while (uv_fs_scandir_next(&req, &ent) != UV_EOF) {
            size_t len = strlen(ent.name);
            if (len > 4 && !strcmp(ent.name + len - 4, ".reg")) {
                if (*n == 32) {
                    uv_fs_req_cleanup(&req);
                    goto too_many;
                }
                snprintf(store[*n], 2048, "%s/%s", path, ent.name);
                files[*n] = store[*n];
                (*n)++;
            }
        }
        uv_fs_req_cleanup(&req);
        /* scandir order is the file system's: sort so the layering is the names' order. */
        for (size_t i = first + 1; i < *n; i++)
            for (size_t j = i; j > first && strcmp(files[j - 1], files[j]) > 0; j--) {
                const char *t = files[j];
                files[j] = files[j - 1];
                files[j - 1] = t;
            }
        return 0;
    }
    snprintf(err, errsize, "fixture %s: no %s.reg, %s.json or folder in the --fixtures folders",
             name, name, name);
    return -ENOENT;
too_many:
    snprintf(err, errsize, "fixture %s: more than 32 .reg files", name);
    return -E2BIG;
}

/*
 * Loads fixture NAME: DIR/NAME.json (a facts file), or registry exports layered in order:
 * "A+B" reads A's files, then B's over them (a patched host is its unpatched export plus the
 * patch's export, as tests/fixtures/reg/win7-ready.reg is meant to be read).
 */
static int load_fixture(const char *name, json_t **facts, char *err, size_t errsize)
{
    char path[1024];
    struct stat st;
    for (int d = 0; d < fleet.nfixtures_dirs && !strchr(name, '+'); d++) {
        snprintf(path, sizeof(path), "%s/%s.json", fleet.fixtures_dirs[d], name);
        if (stat(path, &st) == 0)
            return facts_load_file(path, facts, err, errsize);
    }
    const char *files[32];
    static char store[32][2048];
    size_t n = 0;
    char layers[256];
    snprintf(layers, sizeof(layers), "%s", name);
    char *save = NULL;
    for (char *layer = strtok_r(layers, "+", &save); layer; layer = strtok_r(NULL, "+", &save)) {
        int rc = add_layer(layer, store, files, &n, err, errsize);
        if (rc)
            return rc;
    }
    struct regview *v;
    int rc = regview_open_files(files, n, &v, err, errsize);
    if (rc)
        return rc;
    rc = facts_extract(v, facts, err, errsize);
    regview_free(v);
    return rc;
}

static int fixture_index(const char *name, char *err, size_t errsize)
{
    for (int i = 0; i < fleet.nfixtures; i++)
        if (!strcmp(fleet.fixtures[i].name, name))
            return i;
    if (fleet.nfixtures == MAX_FIXTURES || strlen(name) >= sizeof(fleet.fixtures[0].name)) {
        snprintf(err, errsize, "fixture %s: too many fixtures or name too long", name);
        return -E2BIG;
    }
    json_t *facts;
    int rc = load_fixture(name, &facts, err, errsize);
    if (rc)
        return rc;
    struct fixture *f = &fleet.fixtures[fleet.nfixtures];
    snprintf(f->name, sizeof(f->name), "%s", name);
    f->facts = facts;
    return fleet.nfixtures++;
}

/* Client mix: "fixture:weight,..." */
struct mix_entry {
    int fixture;
    int weight;
};

struct plan {
    char sites[MAX_SITES][4];
    int nsites;
    int hosts;           /* total, servers included */
    int mps, dps;        /* per site */
    struct mix_entry mix[MAX_FIXTURES];
    int nmix;
    int server_fixture, db_fixture, console_fixture;
    const char *domain;
    uint16_t base_port;
};

static void add_host(struct plan *p, int site, const char *prefix, int num, const char *roles,
                     int fixture)
{
    struct host *h = &fleet.hosts[fleet.nhosts];
    char lower[4];
    for (int i = 0; i < 4; i++)
        lower[i] = (char)(p->sites[site][i] >= 'A' && p->sites[site][i] <= 'Z'
                              ? p->sites[site][i] + 32
                              : p->sites[site][i]);
    if (num >= 0)
        snprintf(h->name, sizeof(h->name), "%s-%s-%02d.%s", prefix, lower, num, p->domain);
    else
        snprintf(h->name, sizeof(h->name), "%s-%s.%s", prefix, lower, p->domain);
    memcpy(h->site, p->sites[site], 4);
    h->roles = roles;
    h->fixture = fixture;
    h->port = (uint16_t)(p->base_port + fleet.nhosts);
    fleet.nhosts++;
}

/* Per site: site server + SMS Provider, site database, MPs, DPs, a SUP, a reporting point and
 * a console; the rest of --hosts are clients spread over the sites, fixtures by the mix. */
static void build_plan(struct plan *p)
{
    fleet.hosts = calloc((size_t)p->hosts, sizeof(struct host));
    if (!fleet.hosts) {
        fprintf(stderr, "fleetsim: out of memory\n");
        exit(4);
    }
    for (int s = 0; s < p->nsites; s++) {
        add_host(p, s, "cm-site", -1, "site_server;sms_provider", p->server_fixture);
        add_host(p, s, "cm-sql", -1, "site_database", p->db_fixture);
        for (int i = 1; i <= p->mps; i++)
            add_host(p, s, "cm-mp", i, "management_point", p->server_fixture);
        for (int i = 1; i <= p->dps; i++)
            add_host(p, s, "cm-dp", i, "distribution_point", p->server_fixture);
        add_host(p, s, "cm-sup", -1, "software_update_point", p->server_fixture);
        add_host(p, s, "cm-rsp", -1, "reporting_point", p->server_fixture);
        add_host(p, s, "adm", 1, "console", p->console_fixture);
    }
    int total_weight = 0;
    for (int i = 0; i < p->nmix; i++)
        total_weight += p->mix[i].weight;
    int clients = p->hosts - fleet.nhosts;
    for (int c = 0; c < clients; c++) {
        /* Deterministic spread: client c gets the mix entry its position falls in. */
        int slot = (int)((long long)c * total_weight / (clients ? clients : 1));
        int fx = p->mix[0].fixture;
        for (int i = 0, acc = 0; i < p->nmix; i++) {
            acc += p->mix[i].weight;
            if (slot < acc) {
                fx = p->mix[i].fixture;
                break;
            }
        }
        struct host *h = &fleet.hosts[fleet.nhosts];
        int site = c % p->nsites;
        char lower[4];
        for (int i = 0; i < 4; i++)
            lower[i] = (char)(p->sites[site][i] >= 'A' && p->sites[site][i] <= 'Z'
                                  ? p->sites[site][i] + 32
                                  : p->sites[site][i]);
        snprintf(h->name, sizeof(h->name), "ws%06d-%s.%s", c + 1, lower, p->domain);
        memcpy(h->site, p->sites[site], 4);
        h->roles = "";
        h->fixture = fx;
        h->port = (uint16_t)(p->base_port + fleet.nhosts);
        fleet.nhosts++;
    }
}

static int write_inventory(const char *path)
{
    char tmp[1024];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f)
        return -errno;
    fprintf(f, "name,site,roles,collector,os\n");
    for (int i = 0; i < fleet.nhosts; i++) {
        const struct host *h = &fleet.hosts[i];
        /* The OS label an administrator's export would carry: the fixture's product name. */
        json_t *os = json_object_get(fleet.fixtures[h->fixture].facts, "os");
        const char *label = json_string_value(json_object_get(os, "product_name"));
        fprintf(f, "%s,%s,%s,%s:%u,%s\n", h->name, h->site, h->roles, fleet.address, h->port,
                label && !strpbrk(label, ",\"\r\n") ? label : fleet.fixtures[h->fixture].name);
    }
    if (fclose(f) != 0 || rename(tmp, path) != 0)
        return -errno;
    return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* Worker: serves its share of the hosts on one loop.                                        */

static int host_report(struct host *h, long long now)
{
    json_t *r = facts_build_report(fleet.fixtures[h->fixture].facts, h->name, now, "fleetsim",
                                   fleet.interval);
    if (!r)
        return -ENOMEM;
    char *text = json_dumps(r, JSON_COMPACT);
    json_decref(r);
    if (!text)
        return -ENOMEM;
    int rc = h->srv ? server_set_report(h->srv, text, strlen(text), now) : 0;
    free(text);
    return rc;
}

static int host_serve(struct host *h, uint16_t port, const char *cert, const char *key,
                      char *err, size_t errsize)
{
    struct server_options o = {
        .host = h->name,
        .address = fleet.address,
        .port = port,
        .cert_pem = cert,
        .key_pem = key,
        .ca_pem = simcert_ca_pem(fleet.ca),
        .connection_limit = 16,
        .per_ip_limit = 16,
    };
    int rc = server_start(fleet.loop, &o, &h->srv, err, errsize);
    if (rc)
        return rc;
    return host_report(h, (long long)time(NULL));
}

static void count_and_free(void *arg) { (void)arg; }

static void host_unserve(struct host *h)
{
    if (h->srv) {
        struct server_stats st;
        server_get_stats(h->srv, &st);
        fleet.served_closed += st.served;
        fleet.refused_closed += st.refused;
        server_close(h->srv, count_and_free, NULL);
        h->srv = NULL;
    }
}

/* silent and slow: a plain TCP listener on the host's port. */
struct trickle {
    uv_tcp_t client;
    uv_tcp_t upstream;
    uv_connect_t connect;
    uv_timer_t timer;
    char *pending;        /* bytes from the server not yet passed to the client */
    size_t len, off;
    int closing;
    struct host *host;
};

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    buf->base = malloc(suggested);
    buf->len = buf->base ? suggested : 0;
}

static void free_handle(uv_handle_t *h) { free(h); }

static void trickle_closed(uv_handle_t *h)
{
    struct trickle *t = h->data;
    if (--t->closing == 0) {
        free(t->pending);
        free(t);
    }
}

static void trickle_close(struct trickle *t)
{
    if (t->closing)
        return;
    t->closing = 3;
    uv_close((uv_handle_t *)&t->client, trickle_closed);
    uv_close((uv_handle_t *)&t->upstream, trickle_closed);
    uv_close((uv_handle_t *)&t->timer, trickle_closed);
}

static void write_done(uv_write_t *req, int status)
{
    (void)status;
    free(req->data);
    free(req);
}

static void send_bytes(uv_stream_t *to, const char *data, size_t len)
{
    uv_write_t *req = malloc(sizeof(*req));
    char *copy = malloc(len);
    if (!req || !copy) {
        free(req);
        free(copy);
        return;
    }
    memcpy(copy, data, len);
    req->data = copy;
    uv_buf_t b = uv_buf_init(copy, (unsigned)len);
    if (uv_write(req, to, &b, 1, write_done) != 0)
        write_done(req, -1);
}

static void trickle_tick(uv_timer_t *timer)
{
    struct trickle *t = timer->data;
    if (t->off < t->len) {
        send_bytes((uv_stream_t *)&t->client, t->pending + t->off, 1);
        t->off++;
    }
}

static void from_upstream(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct trickle *t = s->data;
    if (n > 0) {
        char *grown = realloc(t->pending, t->len + (size_t)n);
        if (grown) {
            memcpy(grown + t->len, buf->base, (size_t)n);
            t->pending = grown;
            t->len += (size_t)n;
        }
    } else if (n < 0 && t->off >= t->len) {
        trickle_close(t);
    }
    free(buf->base);
}

static void from_client(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct trickle *t = s->data;
    if (n > 0)
        send_bytes((uv_stream_t *)&t->upstream, buf->base, (size_t)n);
    else if (n < 0)
        trickle_close(t);
    free(buf->base);
}

static void upstream_connected(uv_connect_t *req, int status)
{
    struct trickle *t = req->data;
    if (status < 0) {
        trickle_close(t);
        return;
    }
    uv_read_start((uv_stream_t *)&t->upstream, alloc_cb, from_upstream);
    uv_read_start((uv_stream_t *)&t->client, alloc_cb, from_client);
    uv_timer_start(&t->timer, trickle_tick, 100, 100);
}

static void silent_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    free(buf->base);
    if (n < 0)
        uv_close((uv_handle_t *)s, free_handle);
}

static void trap_connection(uv_stream_t *server, int status)
{
    struct host *h = server->data;
    if (status < 0)
        return;
    if (h->mode == MODE_SILENT) {
        uv_tcp_t *c = malloc(sizeof(*c));
        if (!c)
            return;
        uv_tcp_init(fleet.loop, c);
        if (uv_accept(server, (uv_stream_t *)c) == 0)
            uv_read_start((uv_stream_t *)c, alloc_cb, silent_read); /* read, never answer */
        else
            uv_close((uv_handle_t *)c, free_handle);
        return;
    }
    struct trickle *t = calloc(1, sizeof(*t));
    if (!t)
        return;
    t->host = h;
    uv_tcp_init(fleet.loop, &t->client);
    uv_tcp_init(fleet.loop, &t->upstream);
    uv_timer_init(fleet.loop, &t->timer);
    t->client.data = t->upstream.data = t->timer.data = t->connect.data = t;
    if (uv_accept(server, (uv_stream_t *)&t->client) != 0) {
        trickle_close(t);
        return;
    }
    struct sockaddr_in addr;
    uv_ip4_addr(fleet.address, h->inner_port, &addr);
    if (uv_tcp_connect(&t->connect, &t->upstream, (const struct sockaddr *)&addr,
                       upstream_connected) != 0)
        trickle_close(t);
}

static int trap_open(struct host *h)
{
    h->trap = malloc(sizeof(*h->trap));
    if (!h->trap)
        return -ENOMEM;
    uv_tcp_init(fleet.loop, h->trap);
    h->trap->data = h;
    struct sockaddr_in addr;
    uv_ip4_addr(fleet.address, h->port, &addr);
    int rc = uv_tcp_bind(h->trap, (const struct sockaddr *)&addr, 0);
    if (!rc)
        rc = uv_listen((uv_stream_t *)h->trap, 128, trap_connection);
    if (rc) {
        uv_close((uv_handle_t *)h->trap, free_handle);
        h->trap = NULL;
    }
    return rc;
}

static void trap_close(struct host *h)
{
    if (h->trap) {
        uv_close((uv_handle_t *)h->trap, free_handle);
        h->trap = NULL;
    }
}

/* Moves a host to `mode`. Returns 0 or a negative code with the reason in err. */
static int host_set_mode(struct host *h, enum mode mode, char *err, size_t errsize)
{
    host_unserve(h);
    trap_close(h);
    h->mode = mode;
    int rc = 0;
    switch (mode) {
    case MODE_OK:
        rc = host_serve(h, h->port, h->cert_pem, h->key_pem, err, errsize);
        break;
    case MODE_STOPPED:
        break;
    case MODE_SILENT:
        rc = trap_open(h);
        break;
    case MODE_SLOW:
        rc = host_serve(h, 0, h->cert_pem, h->key_pem, err, errsize);
        if (!rc) {
            h->inner_port = server_port(h->srv);
            rc = trap_open(h);
        }
        break;
    case MODE_WRONG_CERT: {
        char other[160], *cert, *key;
        snprintf(other, sizeof(other), "impostor.%s", h->name);
        rc = simcert_issue(fleet.ca, other, &cert, &key, err, errsize);
        if (!rc) {
            rc = host_serve(h, h->port, cert, key, err, errsize);
            free(cert);
            free(key);
        }
        break;
    }
    }
    if (rc && !err[0])
        snprintf(err, errsize, "%s: %s", h->name, uv_strerror(rc));
    return rc;
}

static void refresh_all(uv_timer_t *t)
{
    (void)t;
    long long now = (long long)time(NULL);
    for (int i = 0; i < fleet.nhosts; i++)
        if (fleet.hosts[i].srv)
            host_report(&fleet.hosts[i], now);
}

static struct host *find_host(const char *name)
{
    for (int i = 0; i < fleet.nhosts; i++)
        if (!strcasecmp(fleet.hosts[i].name, name))
            return &fleet.hosts[i];
    return NULL;
}

/* Runs one control command on this worker's hosts; writes one answer line into out. */
static void worker_command(char *line, char *out, size_t outsize)
{
    char *argv[4] = {0};
    int argc = 0;
    for (char *tok = strtok(line, " \t\r\n"); tok && argc < 4; tok = strtok(NULL, " \t\r\n"))
        argv[argc++] = tok;
    char err[512] = "";
    if (argc == 0) {
        snprintf(out, outsize, "error: empty command");
        return;
    }
    if (!strcmp(argv[0], "status")) {
        unsigned long served = fleet.served_closed, refused = fleet.refused_closed;
        int up = 0;
        for (int i = 0; i < fleet.nhosts; i++) {
            if (!fleet.hosts[i].srv)
                continue;
            struct server_stats st;
            server_get_stats(fleet.hosts[i].srv, &st);
            served += st.served;
            refused += st.refused;
            up++;
        }
        snprintf(out, outsize, "hosts %d served %lu refused %lu", up, served, refused);
        return;
    }
    if (!strcmp(argv[0], "fixture-all") && argc == 3) {
        int from = -1, to;
        for (int i = 0; i < fleet.nfixtures; i++)
            if (!strcmp(fleet.fixtures[i].name, argv[1]))
                from = i;
        if ((to = fixture_index(argv[2], err, sizeof(err))) < 0) {
            snprintf(out, outsize, "error: %s", err);
            return;
        }
        int n = 0;
        long long now = (long long)time(NULL);
        for (int i = 0; from >= 0 && i < fleet.nhosts; i++)
            if (fleet.hosts[i].fixture == from) {
                fleet.hosts[i].fixture = to;
                host_report(&fleet.hosts[i], now);
                n++;
            }
        snprintf(out, outsize, "ok %d", n);
        return;
    }
    struct host *h = argc >= 2 ? find_host(argv[1]) : NULL;
    if (!h) {
        snprintf(out, outsize, "error: %s", argc >= 2 ? "unknown host" : "missing host");
        return;
    }
    int rc = 0;
    if (!strcmp(argv[0], "fixture") && argc == 3) {
        int fx = fixture_index(argv[2], err, sizeof(err));
        if (fx < 0)
            rc = fx;
        else {
            h->fixture = fx;
            rc = host_report(h, (long long)time(NULL));
        }
    } else if (!strcmp(argv[0], "stop") && argc == 2) {
        rc = host_set_mode(h, MODE_STOPPED, err, sizeof(err));
    } else if ((!strcmp(argv[0], "start") || !strcmp(argv[0], "behave")) && argc == 2) {
        rc = host_set_mode(h, MODE_OK, err, sizeof(err));
    } else if (!strcmp(argv[0], "misbehave") && argc == 3) {
        enum mode m = !strcmp(argv[2], "silent")       ? MODE_SILENT
                      : !strcmp(argv[2], "slow")       ? MODE_SLOW
                      : !strcmp(argv[2], "wrong-cert") ? MODE_WRONG_CERT
                                                       : MODE_OK;
        if (m == MODE_OK) {
            snprintf(out, outsize, "error: mode must be silent, slow or wrong-cert");
            return;
        }
        rc = host_set_mode(h, m, err, sizeof(err));
    } else {
        snprintf(out, outsize, "error: unknown command or wrong arguments");
        return;
    }
    if (rc)
        snprintf(out, outsize, "error: %s", err[0] ? err : strerror(-rc));
    else
        snprintf(out, outsize, "ok");
}

struct worker_io {
    uv_pipe_t in;   /* commands from the parent */
    int out_fd;     /* answers to the parent (blocking writes of one short line) */
    char line[CMD_MAX];
    size_t len;
};

static void worker_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct worker_io *io = s->data;
    for (ssize_t i = 0; i < n; i++) {
        char c = buf->base[i];
        if (c == '\n' || io->len == CMD_MAX - 1) {
            io->line[io->len] = '\0';
            io->len = 0;
            char answer[600];
            worker_command(io->line, answer, sizeof(answer));
            strcat(answer, "\n");
            if (write(io->out_fd, answer, strlen(answer)) < 0)
                perror("fleetsim: answer");
        } else {
            io->line[io->len++] = c;
        }
    }
    free(buf->base);
    if (n < 0)
        uv_stop(fleet.loop); /* the parent is gone */
}

static void worker_signal(uv_signal_t *sig, int signum)
{
    (void)signum;
    uv_stop(sig->loop);
}

/* ---- --enroll: every identity of this worker enrolls, on the loop's thread pool ---- */

struct enroll_job {
    uv_work_t req;
    struct host *host;
    char *key_pem;
    struct enroll_result r;
};

static int enroll_pending_jobs;
static char enroll_error[1200];

static const char *secret_for(const char *site)
{
    for (int i = 0; i < fleet.nsecrets; i++)
        if (!fleet.secrets[i].site[0] || !strcasecmp(fleet.secrets[i].site, site))
            return fleet.secrets[i].secret;
    return NULL;
}

/* On a pool thread: a key, then ask until issued, refused or the deadline. */
static void enroll_work(uv_work_t *req)
{
    struct enroll_job *j = req->data;
    char err[512];
    memset(&j->r, 0, sizeof(j->r));
    if (enroll_key_generate(&j->key_pem, err, sizeof(err)) < 0) {
        j->r.outcome = ENROLL_FAILED;
        snprintf(j->r.message, sizeof(j->r.message), "%s", err);
        return;
    }
    struct enroll_params p = {.url = fleet.enroll_url,
                              .ca_pem = simcert_ca_pem(fleet.ca),
                              .name = j->host->name,
                              .site = j->host->site,
                              .secret = secret_for(j->host->site)};
    uint64_t deadline = uv_hrtime() + (uint64_t)fleet.enroll_timeout * 1000000000u;
    for (unsigned attempt = 0;; attempt++) {
        enroll_submit(&p, j->key_pem, false, &j->r);
        if (j->r.outcome != ENROLL_PENDING && j->r.outcome != ENROLL_RETRY)
            return;
        if (uv_hrtime() >= deadline)
            return;
        long wait = enroll_backoff(attempt, 1, 10, uv_hrtime());
        if (j->r.retry_after > 0 && j->r.retry_after < 30)
            wait = j->r.retry_after;
        enroll_result_release(&j->r);
        uv_sleep((unsigned)wait * 1000);
    }
}

static void enroll_done(uv_work_t *req, int status)
{
    struct enroll_job *j = req->data;
    struct host *h = j->host;
    enroll_pending_jobs--;
    char err[512] = "";
    if (status == 0 && j->r.outcome == ENROLL_ISSUED) {
        h->cert_pem = j->r.cert_pem;
        h->key_pem = j->key_pem;
        j->r.cert_pem = NULL;
        j->key_pem = NULL;
        if (host_set_mode(h, MODE_OK, err, sizeof(err)) && !enroll_error[0])
            snprintf(enroll_error, sizeof(enroll_error), "%s", err);
    } else if (!enroll_error[0]) {
        snprintf(enroll_error, sizeof(enroll_error), "%s: enrollment %s: %s", h->name,
                 j->r.outcome == ENROLL_REFUSED   ? "refused"
                 : j->r.outcome == ENROLL_PENDING ? "still pending at --enroll-timeout"
                                                  : "failed",
                 j->r.message);
    }
    enroll_result_release(&j->r);
    if (j->key_pem) {
        memset(j->key_pem, 0, strlen(j->key_pem));
        free(j->key_pem);
    }
    free(j);
    if (enroll_pending_jobs == 0)
        uv_stop(fleet.loop);
}

/* Enrolls this worker's hosts; each serves as soon as it has its certificate. 0 or -1 with
 * enroll_error set. */
static int enroll_hosts(int index, int procs)
{
    for (int i = 0; i < fleet.nhosts; i++) {
        if (i % procs != index)
            continue;
        struct enroll_job *j = calloc(1, sizeof(*j));
        if (!j) {
            snprintf(enroll_error, sizeof(enroll_error), "out of memory");
            return -1;
        }
        j->host = &fleet.hosts[i];
        j->req.data = j;
        if (uv_queue_work(fleet.loop, &j->req, enroll_work, enroll_done) < 0) {
            free(j);
            snprintf(enroll_error, sizeof(enroll_error), "cannot queue the enrollments");
            return -1;
        }
        enroll_pending_jobs++;
    }
    if (enroll_pending_jobs)
        uv_run(fleet.loop, UV_RUN_DEFAULT); /* until the last one is done (enroll_done) */
    return enroll_error[0] ? -1 : 0;
}

static int run_worker(int index, int procs, int cmd_fd, int answer_fd)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    fleet.loop = &loop;
    char err[512] = "";
    int started = 0;
    if (fleet.enroll_url) {
        if (enroll_hosts(index, procs) < 0) {
            dprintf(answer_fd, "error: %s\n", enroll_error);
            return 1;
        }
        for (int i = index; i < fleet.nhosts; i += procs)
            started++;
    }
    for (int i = 0; i < fleet.nhosts && !fleet.enroll_url; i++) {
        struct host *h = &fleet.hosts[i];
        if (i % procs != index)
            continue;
        if (simcert_issue(fleet.ca, h->name, &h->cert_pem, &h->key_pem, err, sizeof(err)) ||
            host_set_mode(h, MODE_OK, err, sizeof(err))) {
            dprintf(answer_fd, "error: %s\n", err);
            return 1;
        }
        started++;
    }
    uv_timer_init(&loop, &fleet.refresh);
    uv_timer_start(&fleet.refresh, refresh_all, (uint64_t)fleet.interval * 1000,
                   (uint64_t)fleet.interval * 1000);
    uv_signal_t sigterm;
    uv_signal_init(&loop, &sigterm);
    uv_signal_start(&sigterm, worker_signal, SIGTERM);
    struct worker_io io = {.out_fd = answer_fd};
    uv_pipe_init(&loop, &io.in, 0);
    uv_pipe_open(&io.in, cmd_fd);
    io.in.data = &io;
    uv_read_start((uv_stream_t *)&io.in, alloc_cb, worker_read);
    dprintf(answer_fd, "ready %d\n", started);
    uv_run(&loop, UV_RUN_DEFAULT);
    _exit(0); /* the process ends here; the kernel reclaims every socket at once */
}

/* ---------------------------------------------------------------------------------------- */
/* Parent: starts workers, answers the control socket.                                        */

struct worker {
    pid_t pid;
    int cmd_fd;
    FILE *answers;
};

static struct worker workers[MAX_PROCS];
static int nworkers;
static volatile sig_atomic_t stopping;

static void on_stop_signal(int sig)
{
    (void)sig;
    stopping = 1;
}

static int owner_of(const char *name)
{
    for (int i = 0; i < fleet.nhosts; i++)
        if (!strcasecmp(fleet.hosts[i].name, name))
            return i % nworkers;
    return -1;
}

static void parent_command(char *line, char *out, size_t outsize)
{
    char copy[CMD_MAX];
    snprintf(copy, sizeof(copy), "%s", line);
    char *cmd = strtok(copy, " \t\r\n");
    char *host = cmd ? strtok(NULL, " \t\r\n") : NULL;
    if (!cmd) {
        snprintf(out, outsize, "error: empty command");
        return;
    }
    bool all = !strcmp(cmd, "status") || !strcmp(cmd, "fixture-all");
    int only = all ? -1 : host ? owner_of(host) : -1;
    if (!all && only < 0) {
        snprintf(out, outsize, "error: %s", host ? "unknown host" : "missing host");
        return;
    }
    long a = 0, b = 0, c = 0;
    char answer[600] = "";
    for (int w = 0; w < nworkers; w++) {
        if (!all && w != only)
            continue;
        dprintf(workers[w].cmd_fd, "%s\n", line);
        if (!fgets(answer, sizeof(answer), workers[w].answers)) {
            snprintf(out, outsize, "error: worker %d is gone", w);
            return;
        }
        answer[strcspn(answer, "\n")] = '\0';
        if (!strncmp(answer, "error", 5)) {
            snprintf(out, outsize, "%s", answer);
            return;
        }
        long x = 0, y = 0, z = 0;
        if (!strcmp(cmd, "status") && sscanf(answer, "hosts %ld served %ld refused %ld", &x, &y,
                                             &z) == 3) {
            a += x, b += y, c += z;
        } else if (!strcmp(cmd, "fixture-all") && sscanf(answer, "ok %ld", &x) == 1) {
            a += x;
        }
    }
    if (!strcmp(cmd, "status"))
        snprintf(out, outsize, "hosts %ld served %ld refused %ld", a, b, c);
    else if (!strcmp(cmd, "fixture-all"))
        snprintf(out, outsize, "ok %ld", a);
    else
        snprintf(out, outsize, "%s", answer);
}

/* Binds the control socket: the listening fd, or -2 / -4 (the exit code) with a message. */
static int control_open(const char *sock_path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(sock_path) >= sizeof(sa.sun_path)) {
        fprintf(stderr, "fleetsim: control socket path too long: %s\n", sock_path);
        return -2;
    }
    strcpy(sa.sun_path, sock_path);
    unlink(sock_path);
    int lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(lfd, 16) != 0) {
        fprintf(stderr, "fleetsim: %s: %s\n", sock_path, strerror(errno));
        if (lfd >= 0)
            close(lfd);
        return -4;
    }
    return lfd;
}

/* Answers the control socket (bound by control_open) until SIGTERM/SIGINT. */
static int control_loop(int lfd, const char *sock_path)
{
    while (!stopping) {
        int c = accept(lfd, NULL, NULL);
        if (c >= 0) {
            /* A client that connects and says nothing must not hold the socket for everyone. */
            struct timeval tv = {.tv_sec = 2};
            setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        }
        if (c < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        char line[CMD_MAX];
        ssize_t n = 0, r;
        while (n < (ssize_t)sizeof(line) - 1 && (r = read(c, line + n, 1)) == 1 && line[n] != '\n')
            n++;
        line[n] = '\0';
        char out[700];
        parent_command(line, out, sizeof(out));
        dprintf(c, "%s\n", out);
        close(c);
    }
    close(lfd);
    unlink(sock_path);
    return 0;
}

static int ctl(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: fleetsim ctl SOCKET COMMAND [ARGS]\n");
        return 2;
    }
    /* The whole command, newline included, must fit the line the simulator reads. */
    char line[CMD_MAX];
    size_t len = 0;
    for (int i = 1; i < argc; i++) {
        int n = snprintf(line + len, sizeof(line) - len, "%s%s", argv[i],
                         i + 1 < argc ? " " : "\n");
        if (n < 0 || (size_t)n >= sizeof(line) - len) {
            fprintf(stderr, "fleetsim ctl: the command is longer than %d bytes\n", CMD_MAX - 1);
            return 2;
        }
        len += (size_t)n;
    }
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", argv[0]);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        fprintf(stderr, "fleetsim ctl: %s: %s\n", argv[0], strerror(errno));
        return 4;
    }
    if (write(fd, line, strlen(line)) < 0)
        return 4;
    char out[800];
    ssize_t n, total = 0;
    while ((n = read(fd, out + total, sizeof(out) - 1 - (size_t)total)) > 0)
        total += n;
    out[total] = '\0';
    close(fd);
    fputs(out, stdout);
    return strncmp(out, "error", 5) ? 0 : 1;
}

/* A whole number from `min` to `max`, or exit 2 naming the option. */
static long number_arg(const char *option, const char *text, long min, long max)
{
    char *end;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (errno || end == text || *end || v < min || v > max) {
        fprintf(stderr, "fleetsim: --%s: '%s' is not a whole number from %ld to %ld\n", option,
                text, min, max);
        exit(2);
    }
    return v;
}

/* The first port of base..base+n-1 on address that cannot be bound now (errno says why), or 0
 * when all are free. A socket is bound and closed per port, as the servers will bind them. */
static int range_taken(const char *address, uint16_t base, int n)
{
    struct sockaddr_in a = {.sin_family = AF_INET};
    inet_pton(AF_INET, address, &a.sin_addr);
    for (int i = 0; i < n; i++) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
            return base + i;
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        a.sin_port = htons((uint16_t)(base + i));
        int rc = bind(fd, (struct sockaddr *)&a, sizeof(a));
        int e = errno;
        close(fd);
        if (rc < 0) {
            errno = e;
            return base + i;
        }
    }
    return 0;
}

static void usage(FILE *f)
{
    fprintf(f,
        "usage: fleetsim --certs DIR --fixtures DIR... --control SOCKET [--hosts N] [--sites A,B]\n"
        "                [--mps N] [--dps N] [--procs N] [--base-port PORT] [--domain D]\n"
        "                [--inventory FILE] [--interval SECONDS] [--mix FIXTURE:WEIGHT,...]\n"
        "                [--server-fixture F] [--db-fixture F] [--console-fixture F]\n"
        "                [--enroll URL --secret-file [SITE=]FILE... [--site S]\n"
        "                 [--enroll-concurrency N] [--enroll-timeout SECONDS]] [--inventory-only]\n"
        "       fleetsim ctl SOCKET COMMAND [ARGS]\n"
        "\n"
        "Simulates a fleet of collectors on 127.0.0.1, ports BASE-PORT and up, one certificate\n"
        "per host signed by DIR/ca.pem + DIR/ca.key (tools/gen-certs). Writes the matching\n"
        "inventory CSV, prints 'fleetsim: ready N hosts' when every host is serving, and runs\n"
        "until SIGTERM/SIGINT. --procs defaults to as few worker processes as the descriptor\n"
        "limit (ulimit -n) allows, at least 2. A fixture is NAME.reg, a folder NAME of .reg\n"
        "files or NAME.json in the --fixtures folders (searched in order); A+B layers B's\n"
        "exports over A's.\n"
        "Control commands: fixture HOST NAME, fixture-all FROM TO,\n"
        "stop HOST, start HOST, misbehave HOST silent|slow|wrong-cert, behave HOST, status.\n"
        "--enroll https://NAME:PORT: each host makes its own key and enrolls there (tlsgate\n"
        "enroll serve) with its site's secret (--secret-file FILE for every site, or\n"
        "SITE=FILE per site), verifying the server against DIR/ca.pem; at most\n"
        "--enroll-concurrency (8) requests at once per worker; pending or busy answers are\n"
        "asked again until --enroll-timeout (300 s); a refusal ends the simulator (exit 3).\n"
        "--site S is --sites S. --inventory-only writes --inventory and exits (import it\n"
        "before the fleet enrolls: only inventory names are enrolled).\n");
}

int main(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "ctl"))
        return ctl(argc - 2, argv + 2);
    struct plan p = {.hosts = 300, .mps = 2, .dps = 3, .domain = "sim.contoso.com",
                     .base_port = 21000};
    const char *certs = NULL, *inventory = NULL, *control = NULL, *sites = "PS1,PS2";
    const char *mix = "win7-sp1-x64-unpatched:10,win7-sp1-x64-unpatched+win7-ready:5,"
                      "win81:10,win10-22h2:55,win11-23h2:20";
    const char *server_fx = "server2019-site-server", *db_fx = "server2016-sql2016sp2-express",
               *console_fx = "win10-22h2";
    int procs = 0; /* 0: chosen from the descriptor limit below */
    fleet.address = "127.0.0.1";
    fleet.interval = 60;
    static const struct option opts[] = {
        {"certs", 1, 0, 'c'}, {"fixtures", 1, 0, 'f'}, {"hosts", 1, 0, 'n'},
        {"sites", 1, 0, 's'}, {"procs", 1, 0, 'p'}, {"base-port", 1, 0, 'b'},
        {"domain", 1, 0, 'd'}, {"inventory", 1, 0, 'i'}, {"control", 1, 0, 'k'},
        {"interval", 1, 0, 't'}, {"mix", 1, 0, 'm'}, {"mps", 1, 0, 'M'}, {"dps", 1, 0, 'D'},
        {"server-fixture", 1, 0, 'S'}, {"db-fixture", 1, 0, 'B'}, {"console-fixture", 1, 0, 'C'},
        {"enroll", 1, 0, 'E'}, {"secret-file", 1, 0, 'F'}, {"site", 1, 0, 's'},
        {"enroll-concurrency", 1, 0, 'N'}, {"enroll-timeout", 1, 0, 'T'},
        {"inventory-only", 0, 0, 'I'}, {"help", 0, 0, 'h'}, {0, 0, 0, 0}};
    long enroll_concurrency = 8;
    bool inventory_only = false;
    char err0[512];
    fleet.enroll_timeout = 300;
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case 'c': certs = optarg; break;
        case 'f':
            if (fleet.nfixtures_dirs == 4) {
                fprintf(stderr, "fleetsim: --fixtures at most 4 times\n");
                return 2;
            }
            fleet.fixtures_dirs[fleet.nfixtures_dirs++] = optarg;
            break;
        case 'n': p.hosts = (int)number_arg("hosts", optarg, 1, 60000); break;
        case 's': sites = optarg; break;
        case 'p': procs = (int)number_arg("procs", optarg, 1, MAX_PROCS); break;
        case 'b': p.base_port = (uint16_t)number_arg("base-port", optarg, 1024, 65535); break;
        case 'd': p.domain = optarg; break;
        case 'i': inventory = optarg; break;
        case 'k': control = optarg; break;
        case 't': fleet.interval = number_arg("interval", optarg, 1, 86400); break;
        case 'm': mix = optarg; break;
        case 'M': p.mps = (int)number_arg("mps", optarg, 0, 15); break;
        case 'D': p.dps = (int)number_arg("dps", optarg, 0, 2250); break;
        case 'S': server_fx = optarg; break;
        case 'B': db_fx = optarg; break;
        case 'C': console_fx = optarg; break;
        case 'E': fleet.enroll_url = optarg; break;
        case 'F': {
            if (fleet.nsecrets == MAX_SITES + 1) {
                fprintf(stderr, "fleetsim: --secret-file at most %d times\n", MAX_SITES + 1);
                return 2;
            }
            const char *eq = strchr(optarg, '=');
            const char *file = optarg;
            fleet.secrets[fleet.nsecrets].site[0] = '\0';
            if (eq && eq - optarg == 3) {
                memcpy(fleet.secrets[fleet.nsecrets].site, optarg, 3);
                fleet.secrets[fleet.nsecrets].site[3] = '\0';
                file = eq + 1;
            }
            if (enroll_read_secret(file, &fleet.secrets[fleet.nsecrets].secret, err0,
                                   sizeof(err0)) < 0) {
                fprintf(stderr, "fleetsim: --secret-file: %s\n", err0);
                return 3;
            }
            fleet.nsecrets++;
            break;
        }
        case 'N': enroll_concurrency = number_arg("enroll-concurrency", optarg, 1, 128); break;
        case 'T': fleet.enroll_timeout = number_arg("enroll-timeout", optarg, 1, 86400); break;
        case 'I': inventory_only = true; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (!certs || !fleet.nfixtures_dirs || !control || optind != argc || procs < 0 ||
        procs > MAX_PROCS || fleet.interval < 1 || p.mps < 0 || p.dps < 0) {
        usage(stderr);
        return 2;
    }
    char siteslist[256];
    snprintf(siteslist, sizeof(siteslist), "%s", sites);
    for (char *t = strtok(siteslist, ","); t && p.nsites < MAX_SITES; t = strtok(NULL, ",")) {
        if (strlen(t) != 3) {
            fprintf(stderr, "fleetsim: --sites: '%s' is not a three-character site code\n", t);
            return 2;
        }
        snprintf(p.sites[p.nsites++], 4, "%s", t);
    }
    if (fleet.enroll_url) {
        struct enroll_url u;
        if (enroll_url_parse(fleet.enroll_url, &u, err0, sizeof(err0)) < 0) {
            fprintf(stderr, "fleetsim: --enroll: %s\n", err0);
            return 2;
        }
        for (int i = 0; i < p.nsites; i++)
            if (!secret_for(p.sites[i])) {
                fprintf(stderr, "fleetsim: --enroll: no --secret-file for site %s\n",
                        p.sites[i]);
                return 2;
            }
        /* The thread pool bounds the requests in flight; each worker is its own process and
         * reads this when its pool starts. */
        char n[16];
        snprintf(n, sizeof(n), "%ld", enroll_concurrency);
        setenv("UV_THREADPOOL_SIZE", n, 1);
    }
    int servers = p.nsites * (5 + p.mps + p.dps);
    if (p.nsites == 0 || p.hosts < servers) {
        fprintf(stderr, "fleetsim: --hosts must be at least %d (the site systems of %d sites)\n",
                servers, p.nsites);
        return 2;
    }
    /* Any range the caller gives is fine as long as it fits and is free right now (checked
     * below, port by port). Inside the kernel's ephemeral range an outgoing connection may
     * take one of the ports later: said, not refused. */
    if ((long)p.base_port + p.hosts - 1 > 65535) {
        fprintf(stderr, "fleetsim: ports %u-%ld: the range ends past 65535; lower --base-port or "
                        "--hosts\n",
                p.base_port, (long)p.base_port + p.hosts - 1);
        return 2;
    }
    long ephemeral = 32768;
    FILE *pr = fopen("/proc/sys/net/ipv4/ip_local_port_range", "r");
    if (pr) {
        if (fscanf(pr, "%ld", &ephemeral) != 1)
            ephemeral = 32768;
        fclose(pr);
    }
    if ((long)p.base_port + p.hosts > ephemeral)
        fprintf(stderr, "fleetsim: note: ports %u-%ld reach into the ephemeral range (from %ld): "
                        "an outgoing connection may take one of them while the fleet runs\n",
                p.base_port, (long)p.base_port + p.hosts - 1, ephemeral);
    int taken = inventory_only ? 0 : range_taken(fleet.address, p.base_port, p.hosts);
    if (taken > 0) {
        fprintf(stderr, "fleetsim: port %d on %s is taken (%s); the fleet needs ports %u-%ld "
                        "free: choose another --base-port\n",
                taken, fleet.address, strerror(errno), p.base_port,
                (long)p.base_port + p.hosts - 1);
        return 2;
    }

    char err[512] = "";
    char mixcopy[1024];
    snprintf(mixcopy, sizeof(mixcopy), "%s", mix);
    for (char *t = strtok(mixcopy, ","); t; t = strtok(NULL, ",")) {
        char *colon = strchr(t, ':');
        int weight = colon ? atoi(colon + 1) : 1;
        if (colon)
            *colon = '\0';
        int fx = fixture_index(t, err, sizeof(err));
        if (fx < 0 || weight < 1 || p.nmix == MAX_FIXTURES) {
            fprintf(stderr, "fleetsim: --mix: %s\n", err[0] ? err : "bad weight");
            return 3;
        }
        p.mix[p.nmix++] = (struct mix_entry){fx, weight};
    }
    if ((p.server_fixture = fixture_index(server_fx, err, sizeof(err))) < 0 ||
        (p.db_fixture = fixture_index(db_fx, err, sizeof(err))) < 0 ||
        (p.console_fixture = fixture_index(console_fx, err, sizeof(err))) < 0) {
        fprintf(stderr, "fleetsim: %s\n", err);
        return 3;
    }
    char capath[1024], keypath[1024];
    snprintf(capath, sizeof(capath), "%s/ca.pem", certs);
    snprintf(keypath, sizeof(keypath), "%s/ca.key", certs);
    if (simcert_ca_load(capath, keypath, &fleet.ca, err, sizeof(err))) {
        fprintf(stderr, "fleetsim: %s\n", err);
        return 3;
    }
    build_plan(&p);
    if (inventory && write_inventory(inventory)) {
        fprintf(stderr, "fleetsim: %s: %s\n", inventory, strerror(errno));
        return 4;
    }
    if (inventory_only) {
        if (!inventory) {
            fprintf(stderr, "fleetsim: --inventory-only needs --inventory FILE\n");
            return 2;
        }
        printf("fleetsim: inventory of %d hosts in %s\n", fleet.nhosts, inventory);
        return 0;
    }

    /* Enough descriptors for every listener, epoll fd and connection. */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    /* Without --procs: as few workers as the limit allows (at least 2, one per core of the
     * smallest machine we run on); a worker needs about FDS_PER_HOST per identity. */
    long fd_limit = getrlimit(RLIMIT_NOFILE, &rl) == 0 ? (long)rl.rlim_cur : 1024;
    int needed = (int)(((long)p.hosts * FDS_PER_HOST + fd_limit - FDS_RESERVE - 1) /
                       (fd_limit > 2 * FDS_RESERVE ? fd_limit - FDS_RESERVE : 1));
    if (procs == 0)
        procs = needed < 2 ? 2 : needed;
    if (procs > MAX_PROCS || needed > procs) {
        fprintf(stderr,
                "fleetsim: %d hosts need %d workers at %d descriptors each under the limit of "
                "%ld (ulimit -n); %s\n",
                p.hosts, needed, FDS_PER_HOST, fd_limit,
                needed > MAX_PROCS ? "raise the limit or lower --hosts" : "raise --procs");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);

    int ready = 0, code = 0;
    for (int w = 0; w < procs && !code; w++) {
        int cmd[2], ans[2];
        if (pipe2(cmd, O_CLOEXEC) || pipe2(ans, O_CLOEXEC)) {
            perror("fleetsim: pipe");
            code = 4;
            break;
        }
        pid_t pid = fork();
        if (pid < 0) {
            /* Only the workers started so far are stopped below: a pid of -1 given to kill()
             * would signal every process we may signal. */
            fprintf(stderr, "fleetsim: cannot start worker %d: %s\n", w, strerror(errno));
            close(cmd[0]);
            close(cmd[1]);
            close(ans[0]);
            close(ans[1]);
            code = 4;
            break;
        }
        if (pid == 0) {
            close(cmd[1]);
            close(ans[0]);
            for (int k = 0; k < w; k++) {
                close(workers[k].cmd_fd);
                fclose(workers[k].answers);
            }
            return run_worker(w, procs, cmd[0], ans[1]);
        }
        close(cmd[0]);
        close(ans[1]);
        workers[w] = (struct worker){pid, cmd[1], fdopen(ans[0], "r")};
        nworkers++;
    }
    for (int w = 0; w < nworkers && !code; w++) {
        char line[700] = "";
        int n;
        if (!fgets(line, sizeof(line), workers[w].answers) || sscanf(line, "ready %d", &n) != 1) {
            fprintf(stderr, "fleetsim: worker %d: %s", w, line[0] ? line : "died\n");
            code = strstr(line, "enrollment refused") ? 3 : 4;
            break;
        }
        ready += n;
    }
    /* The control socket answers from the moment "ready" is printed: whoever waits for that
     * line may send a command at once. */
    int lfd = code ? -1 : control_open(control);
    if (!code && lfd < 0)
        code = -lfd;
    if (!code) {
        struct sigaction sa = {.sa_handler = on_stop_signal};
        sigaction(SIGTERM, &sa, NULL);
        sigaction(SIGINT, &sa, NULL);
        printf("fleetsim: ready %d hosts on %s ports %u-%u, control %s\n", ready, fleet.address,
               p.base_port, p.base_port + fleet.nhosts - 1, control);
        fflush(stdout);
        code = control_loop(lfd, control);
    }
    for (int w = 0; w < nworkers; w++)
        kill(workers[w].pid, SIGTERM);
    for (int w = 0; w < nworkers; w++)
        waitpid(workers[w].pid, NULL, 0);
    return code;
}
