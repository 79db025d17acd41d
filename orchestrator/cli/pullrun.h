/*
 * pullrun: what `tlsgate daemon` (daemon.c) and `tlsgate collect` (collectcmd.c) share — the
 * process's libuv loop, SIGTERM/SIGINT (stop, in-flight transfers get grace_ms) and SIGHUP
 * (daemon: reload config and inventory), and the poller (poll.h) started on that loop.
 *
 * A command fills a struct pullrun (cli, grace_ms), points its poll_options' data at it (or at a
 * struct whose first member it is) with on_stopped = pullrun_on_stopped, then pullrun_start()
 * and pullrun_finish().
 */
#ifndef TLSGATE_PULLRUN_H
#define TLSGATE_PULLRUN_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "poll.h"
#include "store.h"

/* A store error is copied here to outlive the poller. */
#define PULLRUN_ERROR_SIZE STORE_ERROR_SIZE

struct cli;

struct pullrun {
    struct cli *cli;
    uv_loop_t loop;
    uv_signal_t sig_term, sig_int, sig_hup;
    struct poll *poll;
    bool interrupted;  /* stopped by SIGTERM/SIGINT */
    unsigned grace_ms; /* in-flight transfers' time after SIGTERM/SIGINT */
    size_t total;      /* hosts scheduled, the most seen */
    /* Called on the loop after SIGHUP reloaded the settings (r->cli->config is the new one);
     * not after a refused reload. NULL: none. The daemon reloads its probe here. */
    void (*on_reload)(struct pullrun *r);
    char store_error[PULLRUN_ERROR_SIZE];
};

/* Opens the store, the loop and the poller, installs the signals (SIGHUP only when not a
 * round) and starts pulling. Returns 0, or -1 with the message printed and *code the exit code. */
int pullrun_start(struct pullrun *r, const struct poll_options *opt, int *code);

/* Runs the loop to its end, frees the poller and closes the loop: EXIT_OK, or EXIT_SYSTEM (with
 * the message printed) if a handle leaked. */
int pullrun_finish(struct pullrun *r);

/* poll_options.on_stopped for a pullrun (data: the struct pullrun). */
void pullrun_on_stopped(struct poll *p, void *data);

/* Raises r->total to the number of hosts the poller has scheduled. */
void pullrun_note_total(struct pullrun *r);

#endif
