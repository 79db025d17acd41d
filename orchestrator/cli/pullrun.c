/*
 * pullrun.c — one run of the pull engine on its own libuv loop, for `tlsgate daemon` and
 * `tlsgate collect` (pullrun.h): the loop, the signals, starting and finishing the poller.
 */
#include "pullrun.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "store.h"

static void on_signal_closed(uv_handle_t *h) { (void)h; }

void pullrun_note_total(struct pullrun *r)
{
    struct poll_stats st;
    poll_get_stats(r->poll, &st);
    if (st.hosts > r->total)
        r->total = st.hosts;
}

void pullrun_on_stopped(struct poll *p, void *data)
{
    struct pullrun *r = data;
    pullrun_note_total(r);
    const char *se = poll_store_error(p);
    if (se && !r->store_error[0])
        snprintf(r->store_error, sizeof(r->store_error), "%s", se);
    uv_close((uv_handle_t *)&r->sig_term, on_signal_closed);
    uv_close((uv_handle_t *)&r->sig_int, on_signal_closed);
    uv_close((uv_handle_t *)&r->sig_hup, on_signal_closed);
}

static void on_stop_signal(uv_signal_t *s, int signum)
{
    struct pullrun *r = s->data;
    poll_log(LOG_INFO, NULL, "%s: stopping (in-flight transfers get %u ms)",
             signum == SIGTERM ? "SIGTERM" : "SIGINT", r->grace_ms);
    r->interrupted = true;
    poll_stop(r->poll, r->grace_ms);
}

static void on_hup(uv_signal_t *s, int signum)
{
    (void)signum;
    struct pullrun *r = s->data;
    struct config next;
    config_init(&next);
    if (r->cli->config_path) {
        char err[STORE_ERROR_SIZE];
        if (config_load(&next, r->cli->config_path, err, sizeof(err))) {
            poll_log(LOG_ERROR, NULL, "SIGHUP: keeping the old settings: %s", err);
            config_release(&next);
            return;
        }
    }
    if (poll_reload(r->poll, &next) == 0) {
        poll_log(LOG_INFO, NULL, "SIGHUP: settings and inventory reloaded");
        config_release(&r->cli->config);
        r->cli->config = next;
        if (r->on_reload)
            r->on_reload(r);
    } else {
        config_release(&next);
    }
}

static int setup_signals(struct pullrun *r, bool with_hup)
{
    uv_signal_t *sigs[] = {&r->sig_term, &r->sig_int, &r->sig_hup};
    for (int i = 0; i < 3; i++) {
        uv_signal_init(&r->loop, sigs[i]);
        sigs[i]->data = r;
    }
    uv_signal_start(&r->sig_term, on_stop_signal, SIGTERM);
    uv_signal_start(&r->sig_int, on_stop_signal, SIGINT);
    if (with_hup)
        uv_signal_start(&r->sig_hup, on_hup, SIGHUP);
    /* A peer closing mid-write must not kill the process; libcurl reports it as an error. */
    signal(SIGPIPE, SIG_IGN);
    return 0;
}

int pullrun_finish(struct pullrun *r)
{
    uv_run(&r->loop, UV_RUN_DEFAULT);
    poll_free(r->poll);
    r->poll = NULL;
    int rc = uv_loop_close(&r->loop);
    if (rc) {
        cli_error("event loop did not close cleanly: %s", uv_strerror(rc));
        return EXIT_SYSTEM;
    }
    return EXIT_OK;
}

int pullrun_start(struct pullrun *r, const struct poll_options *opt, int *code)
{
    struct store *s = cli_store(r->cli, false, code);
    if (!s)
        return -1;
    int rc = uv_loop_init(&r->loop);
    if (rc) {
        cli_error("cannot create the event loop: %s", uv_strerror(rc));
        *code = EXIT_SYSTEM;
        return -1;
    }
    char err[STORE_ERROR_SIZE];
    if ((rc = poll_new(&r->loop, s, &r->cli->config, opt, &r->poll, err, sizeof(err)))) {
        cli_error("%s", err);
        *code = rc == -EINVAL ? EXIT_BADINPUT : EXIT_SYSTEM;
        uv_loop_close(&r->loop);
        return -1;
    }
    setup_signals(r, !opt->round);
    if (poll_start(r->poll)) {
        cli_error("cannot start the writer thread");
        *code = EXIT_SYSTEM;
        poll_stop(r->poll, 0);
        pullrun_finish(r);
        return -1;
    }
    return 0;
}
