/*
 * testutil.h — helpers shared by the Check suites: temporary folders, running the real
 * binaries, reading files. Every suite runs in fork mode, one test per child process.
 */
#ifndef TLSGATE_TESTUTIL_H
#define TLSGATE_TESTUTIL_H

#include <check.h>
#include <curl/curl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Runs every test of `s` (fork mode) and frees it; returns the exit status for main: 0 when
 * all passed, 1 otherwise. Check prints its closing "N%: Checks: ..." line. */
int tu_run_suite(Suite *s);

/* Adds to `s` the test case `name` with the tests of the list (TU_TESTS) and, when setup or
 * teardown is not NULL, that checked fixture; returns it for timeouts and unchecked fixtures. */
TCase *tu_tcase(Suite *s, const char *name, void (*setup)(void), void (*teardown)(void),
                const TTest *const *tests);
/* The NULL-ended list of tu_tcase: TU_TESTS(test_a, test_b). */
#define TU_TESTS(...) ((const TTest *const[]){__VA_ARGS__, NULL})
/* A NULL-ended list of arguments in place: TU_ARGS("--facts", path). */
#define TU_ARGS(...) ((const char *const[]){__VA_ARGS__, NULL})

/* A fresh empty folder under $TMPDIR (or /tmp), removed by tu_rmtree. */
char *tu_tmpdir(void);
void tu_rmtree(const char *dir);

/* The checked fixture of most suites: a fresh folder (tu_tmpdir) with, in `db`, the path of the
 * database file "t.db" in it; tu_tmpdir_drop removes the folder and frees *dir. */
char *tu_tmpdir_with_db(char *db, size_t size);
void tu_tmpdir_drop(char **dir);

/* "$dir/$name" in a static rotating buffer (8 slots). */
const char *tu_path(const char *dir, const char *name);

/* "$dir/$name.$ext" in the same rotating buffer: tu_cert_path(certs, "ca", "pem"). */
const char *tu_cert_path(const char *dir, const char *name, const char *ext);

/* Writes `data` to `path`; ck_abort on failure. */
void tu_write_file(const char *path, const char *data, size_t len);
/* Reads the whole file (NUL-terminated, malloc'd); NULL if missing. */
char *tu_read_file(const char *path, size_t *len);

/* ck_abort unless `text` contains every needle (tu_assert_has) or none of them (tu_assert_lacks);
 * the message gives the caller's file:line, the needle at fault and the text. */
#define tu_assert_has(text, ...) tu_assert_has_at(__FILE__, __LINE__, true, text, __VA_ARGS__, NULL)
#define tu_assert_lacks(text, ...)                                                                 \
    tu_assert_has_at(__FILE__, __LINE__, false, text, __VA_ARGS__, NULL)
void tu_assert_has_at(const char *file, int line, bool want, const char *text, ...);

/* The integer of the first element data-k="key" in the HTML between `from` and `until` (NULL:
 * the end): its data-value attribute when `value_attr` and it has one, else the text right after
 * the tag's '>'. ck_abort when there is no such element. */
long tu_data_k(const char *from, const char *until, const char *key, bool value_attr);

/* Path of a built binary ("orchestrator/tlsgate") or a source file ("tools/sample-inventory.csv"). */
const char *tu_build_path(const char *rel);
const char *tu_source_path(const char *rel);

/*
 * Runs argv (argv[0] a path) with stdout and stderr captured into malloc'd strings (each may be
 * NULL to discard), stdin from /dev/null, and extra environment entries "K=V" (NULL-ended,
 * may be NULL). Returns the exit code, or 128+signal.
 */
int tu_run(char *const argv[], char *const env[], char **out, char **err);

/* Runs `tlsgate --db DB ARGS...` (NULL-terminated varargs). */
int tu_tlsgate(const char *db, char **out, char **err, ...);
/* The same with extra environment entries "K=V" (NULL-ended, may be NULL), e.g. a pinned
 * clock "TLSGATE_NOW=..." and "TLSGATE_USER=...". */
int tu_tlsgate_env(const char *db, char *const env[], char **out, char **err, ...);
int tu_tlsgatev(const char *db, char *const env[], char **out, char **err, va_list ap);

/* Starts `tlsgate --db DB --config CONFIG COMMAND` (e.g. "daemon") in the background, stdin and
 * stdout on /dev/null, stderr into `logpath` (truncated first, or appended to). Returns its pid. */
pid_t tu_tlsgate_start(const char *db, const char *config, const char *command, const char *logpath,
                       bool truncate);

/* Sends `sig` to `pid` and reaps it; nothing when pid <= 0 (never started or already reaped). */
void tu_kill_reap(pid_t pid, int sig);

/* Waits for child `pid` to exit within `ms` (a deadline on the monotonic clock, checked every
 * 10 ms); returns its exit code, 128+signal, or -1 when it is still running. */
int tu_wait_exit(pid_t pid, long ms);

/* The one integer `sql` answers on the database file `db` (its first column of its first row),
 * with `param`, when not NULL, bound as text to ?1; ck_abort when there is no row. The file is
 * opened (never created) with plain SQLite, so a test reads what the binaries wrote. */
long long tu_db_int(const char *db, const char *sql, const char *param);

/* ---- waiting on a condition with a deadline (never a fixed sleep) ---- */

/* The monotonic clock in milliseconds: what every deadline here is measured on. */
long long tu_now_ms(void);
/* Whether `fd` becomes readable within `ms`. */
bool tu_wait_readable(int fd, long ms);
/* Polls tu_db_int(db, sql, param) every 20 ms until it is >= want; false after `ms`. */
bool tu_wait_db_int(const char *db, const char *sql, const char *param, long long want, long ms);
/* Polls the file at `path` until it contains `needle`; false after `ms`. */
bool tu_wait_file_contains(const char *path, const char *needle, long ms);

/* ---- processes on loopback ---- */

/* A loopback port where nothing listens: bound, then released. */
int tu_closed_port(void);

/* A loopback TCP socket that listens (backlog `backlog`) and never accepts: connections complete
 * and then wait. Close-on-exec, so a process started after it does not hold it. Returns the fd
 * and sets *port. */
int tu_loopback_listener(int backlog, int *port);

/* Starts argv (argv[0] looked up on $PATH) with a pipe on its stdin (*in_fd, ours to write and
 * close) and one on its stdout (*out_fd, ours to read); stderr inherited, or /dev/null when
 * `quiet`. Returns its pid; ck_abort when fork fails. */
pid_t tu_spawn_piped(char *const argv[], int *in_fd, int *out_fd, bool quiet);

/* Runs tools/gen-certs OUT NAME... (names NULL-ended), its stdout discarded. Returns 0, or -1
 * with the reason on stderr. Usable outside a test (a suite's main makes certificates once). */
int tu_gen_certs(const char *out, const char *const *names);

/*
 * Starts the real tlsgate-collector with `args` (NULL-ended, without argv[0]), stdin on
 * /dev/null, stderr into `errpath` (NULL: inherited), and waits up to `ms` for the line naming
 * its port ("https://127.0.0.1:PORT"). Returns its pid and sets *port; ck_abort (with its stderr)
 * when it exits first or says something else. The collector's own exit is leak-checked in the
 * sanitizer build (detect_leaks=1).
 */
pid_t tu_collector_start(const char *const *args, const char *errpath, long ms, uint16_t *port);

/* A tests/daemon/peer.py process: TLS servers on loopback, one per spec, until in_fd closes. */
struct tu_peer {
    pid_t pid;
    int in_fd; /* closing it ends the peer */
    int ports[32];
    int nports;
};

/* Starts peer.py with `specs` (NULL-ended, at most 32, each "MODE,NAME[,FILE]": the server
 * presents certdir/NAME.pem with certdir/NAME.key; clients must chain to certdir/ca.pem) and
 * reads back the ports it listens on, in spec order; ck_abort when it does not report them
 * within 20 s. */
void tu_peer_start(struct tu_peer *pr, const char *certdir, const char *const specs[]);
/* The arguments of a tools/fleetsim run: `--certs CERTDIR --fixtures tests/fixtures/reg --hosts
 * HOSTS --sites SITES --mps 1 --dps 1 --control CONTROL`, then the NULL-ended `more` (at most
 * 24). With `binary`, argv[0] is the fleetsim binary (for tu_run); without, there is no argv[0]
 * (for tu_fleetsim_start). Returns a->argv, NULL-ended. */
struct tu_sim_args {
    char *argv[48];
    char hosts[16], binary[4096], fixtures[4096]; /* copies: tu_*_path buffers rotate */
};
char *const *tu_sim_args(struct tu_sim_args *a, bool binary, const char *certdir, int hosts,
                         const char *sites, const char *control, ...);

/* `fleetsim ctl SOCKET A [B [C]]` (tools/fleetsim): its stdout (malloc'd). */
char *tu_fleetsim_ctl(const char *socket, const char *a, const char *b, const char *c);

/* The spec "MODE,NAME,FILE" of tu_peer_start from "MODE,NAME" and FILE, in a static rotating
 * buffer (8 slots): tu_peer_spec("good,a.test", report_path). */
const char *tu_peer_spec(const char *mode_name, const char *file);
/* Ends the peer and reaps it. */
void tu_peer_stop(struct tu_peer *pr);

/* Runs `argv` (argv[0] "python3", argv[1] the script) with a pipe on its stdin (*in_fd: closing
 * it ends the peer) and reads the first line it prints: the ports it listens on, at most `max`
 * into `ports`. Returns how many; ck_abort when it exits or says nothing within 20 s. */
int tu_python_peer(char *const argv[], pid_t *pid, int *in_fd, int ports[], int max);

/*
 * Starts tools/fleetsim with `args` (NULL-ended, without argv[0] and without --base-port), its
 * stdout and stderr into `logpath`, and waits up to 60 s for the log to hold `ready` (e.g.
 * "fleetsim: ready 40 hosts"). The port base is base_min + 50 * k for a k below `slots` picked
 * from the pid; when fleetsim exits early (its ports taken) the next base is tried, 8 tries in
 * all. Returns its pid and sets *base (may be NULL); ck_abort when no try got ready.
 */
pid_t tu_fleetsim_start(const char *const *args, const char *logpath, const char *ready,
                        int base_min, int slots, int *base);

/* ---- a libcurl client with a fleet's trust ---- */

struct tu_fetch {
    const char *path;     /* "/v1/readiness" */
    const char *host;     /* name in the URL, resolved to 127.0.0.1 */
    const char *ca;       /* CA bundle the server's certificate must chain to */
    const char *certdir;  /* client cert from certdir/NAME.pem, or no client cert when NULL */
    const char *certname; /* "orchestrator" by default */
    const char *method;   /* CURLOPT_CUSTOMREQUEST */
    const char *body;     /* POSTFIELDS */
    struct curl_slist *headers;
    long sslversion;     /* CURLOPT_SSLVERSION, 0 = TLS 1.2 minimum */
    const char *ciphers; /* CURLOPT_SSL_CIPHER_LIST */
    int plain;           /* http:// instead of https:// */
    size_t max_bytes;    /* a longer body fails the transfer (0: 1 MiB) */
    long timeout_ms;     /* whole transfer (0: 15 s) */
    const char *source;  /* local address to connect from (CURLOPT_INTERFACE); NULL: any */
    /* results */
    CURLcode rc;
    long code;
    char *out; /* the body, NUL-terminated (malloc'd; tu_fetch_release) */
    size_t len;
    char allow[128];  /* the Allow: header */
    long retry_after; /* the Retry-After: header in seconds, -1 when none */
    char error[CURL_ERROR_SIZE];
};
void tu_fetch_run(uint16_t port, struct tu_fetch *f);
void tu_fetch_release(struct tu_fetch *f);

#endif
