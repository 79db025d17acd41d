/*
 * tls-floor: the TLS library floor of tools/bench/pull. The same mutual-TLS handshakes a pull
 * round makes (TLS 1.2 minimum, the fleet CA, the orchestrator's client certificate, the host
 * name checked against each collector's certificate, same ADDRESS:PORT from the inventory) with
 * OpenSSL directly: one SSL_CTX, certificates and key decoded once, no HTTP, no database. A
 * handshake is counted only when it completed and verified; the connection is then closed.
 * Runs `concurrency` handshakes at once with poll(2) and prints
 *   "floor HOSTS hosts OK ok SECONDS seconds CPU cpu"
 * (CPU: this process's user + system seconds for the handshakes).
 *
 * usage: tls-floor CA CERT KEY INVENTORY.csv CONCURRENCY
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

struct target {
    char name[256];
    int port;
};

struct conn {
    int fd;
    SSL *ssl;
    short events; /* what the handshake waits for: POLLOUT while the TCP connect runs */
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static double cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

/* Reads name and port of every row of a fleetsim inventory (name,site,roles,collector,os). */
static struct target *read_inventory(const char *path, size_t *n)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    char line[1024];
    size_t cap = 1024;
    struct target *t = malloc(cap * sizeof(*t));
    *n = 0;
    if (!fgets(line, sizeof(line), f)) /* header */
        *n = 0;
    while (t && fgets(line, sizeof(line), f)) {
        /* Fields may be empty (a client's roles): split on every comma. */
        char *field[5] = {line};
        int nf = 1;
        for (char *c = line; *c && nf < 5; c++)
            if (*c == ',') {
                *c = '\0';
                field[nf++] = c + 1;
            }
        char *name = field[0], *addr = nf == 5 ? field[3] : NULL;
        char *colon = addr ? strrchr(addr, ':') : NULL;
        if (!colon || strncmp(addr, "127.0.0.1:", 10) != 0)
            continue; /* loopback only */
        if (*n == cap) {
            struct target *more = realloc(t, 2 * cap * sizeof(*t));
            if (!more)
                break;
            t = more;
            cap *= 2;
        }
        if (strlen(name) >= sizeof(t[*n].name))
            continue;
        memcpy(t[*n].name, name, strlen(name) + 1);
        t[(*n)++].port = atoi(colon + 1);
    }
    fclose(f);
    return t;
}

static int start(SSL_CTX *ctx, const struct target *t, struct conn *c)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)t->port)};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0)
        return -1;
    if (connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 && errno != EINPROGRESS) {
        close(c->fd);
        return -1;
    }
    c->ssl = SSL_new(ctx);
    SSL_set_fd(c->ssl, c->fd);
    SSL_set_tlsext_host_name(c->ssl, t->name);
    SSL_set1_host(c->ssl, t->name);
    SSL_set_connect_state(c->ssl);
    c->events = POLLOUT;
    return 0;
}

static void finish(struct conn *c)
{
    SSL_free(c->ssl);
    close(c->fd);
    c->ssl = NULL;
    c->fd = -1;
}

int main(int argc, char **argv)
{
    if (argc != 6) {
        fprintf(stderr, "usage: tls-floor CA CERT KEY INVENTORY.csv CONCURRENCY\n");
        return 2;
    }
    size_t n;
    struct target *targets = read_inventory(argv[4], &n);
    int conc = atoi(argv[5]);
    if (!targets || n == 0 || conc < 1 || conc > 1000) {
        fprintf(stderr, "tls-floor: %s: no loopback hosts, or bad concurrency\n", argv[4]);
        return 2;
    }
    double cpu0 = cpu_s(), t0 = now_s();
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx || SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1 ||
        SSL_CTX_load_verify_locations(ctx, argv[1], NULL) != 1 ||
        SSL_CTX_use_certificate_chain_file(ctx, argv[2]) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, argv[3], SSL_FILETYPE_PEM) != 1) {
        ERR_print_errors_fp(stderr);
        return 3;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);

    struct conn *conns = calloc((size_t)conc, sizeof(*conns));
    struct pollfd *pfd = calloc((size_t)conc, sizeof(*pfd));
    size_t next = 0, ok = 0, done = 0;
    for (int i = 0; i < conc; i++)
        conns[i].fd = -1;
    while (done < n) {
        for (int i = 0; i < conc; i++)
            while (conns[i].fd < 0 && next < n) {
                if (start(ctx, &targets[next++], &conns[i]) == 0)
                    break;
                done++;
            }
        int live = 0;
        for (int i = 0; i < conc; i++) {
            pfd[i].fd = conns[i].fd;
            pfd[i].events = 0;
            if (conns[i].fd < 0)
                continue;
            live++;
            pfd[i].events = conns[i].events;
        }
        if (!live)
            break;
        if (poll(pfd, (nfds_t)conc, 30000) <= 0) {
            fprintf(stderr, "tls-floor: no progress in 30 s\n");
            return 4;
        }
        for (int i = 0; i < conc; i++) {
            if (conns[i].fd < 0 || !pfd[i].revents)
                continue;
            ERR_clear_error();
            int r = SSL_do_handshake(conns[i].ssl);
            int e = r == 1 ? SSL_ERROR_NONE : SSL_get_error(conns[i].ssl, r);
            if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
                conns[i].events = e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT;
                continue;
            }
            if (e == SSL_ERROR_NONE && SSL_get_verify_result(conns[i].ssl) == X509_V_OK)
                ok++;
            done++;
            finish(&conns[i]);
        }
    }
    SSL_CTX_free(ctx);
    printf("floor %zu hosts %zu ok %.3f seconds %.3f cpu\n", n, ok, now_s() - t0, cpu_s() - cpu0);
    free(conns);
    free(pfd);
    free(targets);
    return ok == n ? 0 : 1;
}
