/*
 * pull-driver: the later-rounds side of tools/bench/pull. Pulls every host of the inventory in
 * DB ROUNDS times in one process, each round exactly as `tlsgate collect` makes it (poll.h in
 * round mode: a new poller, a new libcurl multi, new connections), all rounds with one tlsctx,
 * so rounds after the first resume the TLS sessions of the one before, as the daemon's rounds
 * do. Prints one line per round:
 *   "round I HOSTS hosts OK ok SECONDS seconds CPU cpu OFFERED offered RESUMED resumed
 *    SESSIONS sessions PEAK peak_kib"
 * (CPU: this process's user + system seconds for the round; offered/resumed: TLS sessions;
 * sessions: the TLS sessions kept after the round, one per host at most; PEAK: the process's
 * peak resident set so far, VmHWM, which is what the daemon's memory is after such rounds).
 *
 * usage: pull-driver DB CONFIG ROUNDS
 */
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <uv.h>

#include "config.h"
#include "poll.h"
#include "store.h"
#include "tlsctx.h"

struct round {
    size_t ok, failed;
};

static double cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

static void on_outcome(struct poll *p, const struct poll_outcome *o, void *data)
{
    (void)p;
    struct round *r = data;
    if (o->ok)
        r->ok++;
    else
        r->failed++;
}

static void on_round_done(struct poll *p, void *data)
{
    (void)data;
    poll_stop(p, 0);
}

static void on_stopped(struct poll *p, void *data) { (void)p, (void)data; }

/* VmHWM of /proc/self/status in KiB (0 if unreadable): of this program only, unlike
 * ru_maxrss, which may keep the parent's high-water mark from before exec. */
static long peak_kib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kib = 0;
    while (f && fgets(line, sizeof(line), f))
        if (sscanf(line, "VmHWM: %ld kB", &kib) == 1)
            break;
    if (f)
        fclose(f);
    return kib;
}

int main(int argc, char **argv)
{
    if (argc != 4 || atoi(argv[3]) < 1) {
        fprintf(stderr, "usage: pull-driver DB CONFIG ROUNDS\n");
        return 2;
    }
    char err[512];
    struct config cfg;
    config_init(&cfg);
    if (config_load(&cfg, argv[2], err, sizeof(err))) {
        fprintf(stderr, "pull-driver: %s\n", err);
        return 3;
    }
    poll_log_set_level(LOG_ERROR);
    struct tlsctx *tls;
    if (tlsctx_load(cfg.tls_ca, cfg.tls_cert, cfg.tls_key, &tls, err, sizeof(err))) {
        fprintf(stderr, "pull-driver: %s\n", err);
        return 3;
    }
    int rounds = atoi(argv[3]);
    for (int i = 1; i <= rounds; i++) {
        struct store *s;
        if (store_open(argv[1], false, &s, err, sizeof(err))) {
            fprintf(stderr, "pull-driver: %s\n", err);
            return 4;
        }
        uv_loop_t loop;
        uv_loop_init(&loop);
        struct round r = {0};
        struct poll_options opt = {.round = true,
                                   .on_outcome = on_outcome,
                                   .on_round_done = on_round_done,
                                   .on_stopped = on_stopped,
                                   .data = &r,
                                   .tls = tls};
        struct tlsctx_stats before, after;
        tlsctx_get_stats(tls, &before);
        double c0 = cpu_s();
        uint64_t t0 = uv_hrtime();
        struct poll *p;
        if (poll_new(&loop, s, &cfg, &opt, &p, err, sizeof(err)) || poll_start(p)) {
            fprintf(stderr, "pull-driver: cannot start the poller: %s\n", err);
            return 4;
        }
        uv_run(&loop, UV_RUN_DEFAULT);
        poll_free(p);
        double secs = (double)(uv_hrtime() - t0) / 1e9, cpu = cpu_s() - c0;
        tlsctx_get_stats(tls, &after);
        uv_loop_close(&loop);
        store_close(s);
        printf("round %d %zu hosts %zu ok %.3f seconds %.3f cpu %zu offered %zu resumed %zu "
               "sessions %ld peak_kib\n",
               i, r.ok + r.failed, r.ok, secs, cpu, after.offered - before.offered,
               after.resumed - before.resumed, after.sessions, peak_kib());
        fflush(stdout);
    }
    tlsctx_unref(tls);
    config_release(&cfg);
    return 0;
}
