/*
 * metrics_http.c — the endpoint's HTTP server (metrics.h): libmicrohttpd in external epoll mode
 * on the daemon's libuv loop, as collectors/server.c runs it (one uv_poll_t on MHD's epoll fd,
 * one uv_timer_t following MHD_get_timeout), plain HTTP, GET /metrics only.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "metrics_int.h"
#include "poll.h"

#define CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

static void on_mhd_timer(uv_timer_t *t);

static void run_mhd(struct metrics *m)
{
    if (!m->mhd)
        return;
    MHD_run(m->mhd);
    MHD_UNSIGNED_LONG_LONG ms;
    if (MHD_get_timeout(m->mhd, &ms) == MHD_YES) {
        uint64_t t = ms > 3600 * 1000ULL ? 3600 * 1000ULL : (uint64_t)ms;
        uv_timer_start(&m->mhd_timer, on_mhd_timer, t, 0);
    } else {
        uv_timer_stop(&m->mhd_timer);
    }
}

static void on_mhd_timer(uv_timer_t *t) { run_mhd(t->data); }

static void on_mhd_poll(uv_poll_t *p, int status, int events)
{
    (void)status; /* even on an error MHD must run: it reaps what failed */
    (void)events;
    run_mhd(p->data);
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char msg[512];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    size_t n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
        msg[--n] = '\0';
    poll_log(LOG_WARN, NULL, "metrics: %s", msg);
}

static enum MHD_Result answer(struct MHD_Connection *c, unsigned code, const char *body,
                              const char *allow)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(body), (void *)body, MHD_RESPMEM_PERSISTENT);
    if (!r)
        return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/plain; charset=utf-8");
    if (allow)
        MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, allow);
    enum MHD_Result ret = MHD_queue_response(c, code, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    (void)version;
    (void)upload_data;
    (void)con_cls;
    struct metrics *m = cls;
    if (strcmp(url, "/metrics") != 0)
        return answer(c, MHD_HTTP_NOT_FOUND, "not found: the metrics are at /metrics\n", NULL);
    if (strcmp(method, MHD_HTTP_METHOD_GET) != 0)
        return answer(c, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed: GET /metrics\n",
                      MHD_HTTP_METHOD_GET);
    if (*upload_data_size ||
        MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH) ||
        MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_TRANSFER_ENCODING))
        return answer(c, MHD_HTTP_CONTENT_TOO_LARGE, "a GET has no body\n", NULL);
    size_t len;
    char *page = metrics_render(m, &len);
    if (!page)
        return answer(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n", NULL);
    struct MHD_Response *r = MHD_create_response_from_buffer_with_free_callback(len, page, free);
    if (!r) {
        free(page);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, CONTENT_TYPE);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    enum MHD_Result ret = MHD_queue_response(c, MHD_HTTP_OK, r);
    MHD_destroy_response(r);
    return ret;
}

/* A non-blocking listening socket on a numeric address; 0 and *out, or -errno. */
static int listen_on(const char *address, unsigned port, int *out, char *err, size_t errsize)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    socklen_t len;
    struct sockaddr_in *in4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, address, &in4->sin_addr) == 1) {
        in4->sin_family = AF_INET;
        in4->sin_port = htons((uint16_t)port);
        len = sizeof(*in4);
    } else if (inet_pton(AF_INET6, address, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)port);
        len = sizeof(*in6);
    } else {
        snprintf(err, errsize, "config: metrics: '%s' is not a numeric address", address);
        return -EINVAL;
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        int e = errno;
        snprintf(err, errsize, "metrics: socket: %s", strerror(e));
        return -e;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (ss.ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *)&ss, len) < 0 || listen(fd, 64) < 0) {
        int e = errno;
        snprintf(err, errsize, "metrics: cannot listen on %s port %u: %s", address, port,
                 e == EADDRINUSE ? "the port is in use by another program" : strerror(e));
        close(fd);
        return -e;
    }
    *out = fd;
    return 0;
}

int metrics__http_start(struct metrics *m, const char *address, unsigned port, char *err,
                        size_t errsize)
{
    int fd = -1;
    int rc = listen_on(address, port, &fd, err, errsize);
    if (rc)
        return rc;
    m->mhd = MHD_start_daemon(MHD_USE_EPOLL | MHD_USE_ERROR_LOG, 0, NULL, NULL, on_request, m,
                              MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, m, MHD_OPTION_LISTEN_SOCKET,
                              fd, MHD_OPTION_CONNECTION_LIMIT, (unsigned)METRICS_CONNECTIONS,
                              MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)METRICS_PER_IP,
                              MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)METRICS_TIMEOUT_S,
                              MHD_OPTION_SIGPIPE_HANDLED_BY_APP, (int)1, MHD_OPTION_END);
    if (!m->mhd) {
        if (fcntl(fd, F_GETFD) >= 0)
            close(fd);
        snprintf(err, errsize, "metrics: cannot start the HTTP server on %s port %u", address,
                 port);
        return -EIO;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(m->mhd, MHD_DAEMON_INFO_EPOLL_FD);
    rc = di ? uv_poll_init(m->loop, &m->mhd_poll, di->epoll_fd) : UV_EINVAL;
    if (rc < 0) {
        snprintf(err, errsize, "metrics: cannot poll the server's epoll fd: %s", uv_strerror(rc));
        MHD_stop_daemon(m->mhd);
        m->mhd = NULL;
        return -EIO;
    }
    uv_timer_init(m->loop, &m->mhd_timer);
    m->mhd_poll.data = m;
    m->mhd_timer.data = m;
    m->open_handles += 2;
    m->port = port;
    uv_poll_start(&m->mhd_poll, UV_READABLE, on_mhd_poll);
    run_mhd(m);
    poll_log(LOG_INFO, NULL, "metrics: serving http://%s%s%s:%u/metrics",
             strchr(address, ':') ? "[" : "", address, strchr(address, ':') ? "]" : "", port);
    return 0;
}

void metrics__http_close(struct metrics *m)
{
    /* libuv must stop polling the epoll fd before MHD closes it. */
    uv_poll_stop(&m->mhd_poll);
    uv_timer_stop(&m->mhd_timer);
    MHD_stop_daemon(m->mhd);
    m->mhd = NULL;
    uv_close((uv_handle_t *)&m->mhd_poll, metrics__handle_closed);
    uv_close((uv_handle_t *)&m->mhd_timer, metrics__handle_closed);
}
