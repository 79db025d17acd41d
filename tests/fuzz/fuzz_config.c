/*
 * fuzz_config.c — libFuzzer target for the orchestrator's config file (`--config FILE`,
 * orchestrator/base/config.h), read from a real file as every command reads it.
 *
 * Contract: a file is refused with -EINVAL (or -ENOMEM) and a message naming the file, and the
 * settings it leaves are still in range; or accepted, and then every setting is within the
 * range config.c documents, the log level is one of the four, and each TLS path is absolute or
 * under the config file's folder. Anything else is abort().
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "fuzzutil.h"

static char *path, *dir;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    path = fuzz_temp_path("tlsgate.json");
    dir = fuzz_temp_path("");
    return 0;
}

static void check_path(const char *p)
{
    if (p && p[0] != '/' && strncmp(p, dir, strlen(dir)) != 0)
        abort();
    if (p && p[0] == '\0')
        abort();
}

static void check_ranges(const struct config *c)
{
    if (c->interval < 1 || c->interval > 31 * 86400 || c->concurrency < 1 ||
        c->concurrency > 65536 || c->connect_timeout < 1 || c->connect_timeout > 3600 ||
        c->timeout < 1 || c->timeout > 86400 || c->stale_after < 1 ||
        c->stale_after > 366L * 86400 || c->backoff_max < 1 || c->backoff_max > 31 * 86400 ||
        !(c->jitter >= 0 && c->jitter <= 1) || c->log_level < LOG_ERROR || c->log_level > LOG_DEBUG)
        abort();
    check_path(c->tls_ca);
    check_path(c->tls_cert);
    check_path(c->tls_key);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_write_file(path, data, size);
    struct config c;
    config_init(&c);
    char err[1024] = "";
    int rc = config_load(&c, path, err, sizeof(err));
    if (rc != 0 && (rc >= 0 || strncmp(err, path, strlen(path)) != 0))
        abort();
    check_ranges(&c);
    config_release(&c);
    return 0;
}
