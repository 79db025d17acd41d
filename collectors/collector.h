/*
 * collector.h — the collector agent as a library entry point, so that the process around it can
 * be a console program (main.c) or a Windows service: both call collector_main, and a service
 * control handler (another thread) asks it to stop or to refresh through the two request calls.
 *
 * Logging: every line the collector writes about its work (its own, the HTTPS server's and
 * libmicrohttpd's) goes through one sink. The default sink writes "tlsgate-collector: LINE" to
 * stderr for levels up to COLLECTOR_LOG_INFO. The `--help` text and the "serving ..." line on
 * stdout (which tests and scripts read for the port) are output, not log.
 */
#ifndef TLSGATE_COLLECTOR_H
#define TLSGATE_COLLECTOR_H

enum collector_log_level {
    COLLECTOR_LOG_ERROR = 0,   /* the collector stops, or a request it was given failed */
    COLLECTOR_LOG_WARNING = 1, /* it carries on degraded (a refresh failed) */
    COLLECTOR_LOG_INFO = 2,    /* start, stop, refresh on request */
    COLLECTOR_LOG_DEBUG = 3,   /* libmicrohttpd's messages after start (failed handshakes) */
};

/* Parses the options (argv[0] is the program name), runs until stopped, returns the exit code:
 * 0 stopped, 2 usage, 3 bad input, 4 system error. Call it at most once at a time. */
int collector_main(int argc, char **argv);

/* Thread-safe, async-signal-unsafe. Asks a running collector_main to stop (it returns 0), or
 * the next one to stop as soon as it has started when none runs yet. */
void collector_request_stop(void);

/* Thread-safe: re-read the facts now (as SIGHUP does on POSIX). Ignored when none runs. */
void collector_request_refresh(void);

/* Replaces the log sink (NULL restores the default). `line` has no trailing newline and is
 * valid during the call only. Set it before collector_main; the sink may be called from
 * libmicrohttpd's thread on Windows, so it must be thread-safe. */
void collector_set_log_sink(void (*sink)(int level, const char *line, void *arg), void *arg);

#endif
