/*
 * fuzzutil.h — what the libFuzzer targets of tests/fuzz share: stopping with a message when the
 * harness itself cannot start (not a finding: a broken set-up), and a private temporary folder
 * for the files a target needs (a database, a config file), removed at exit. The folder is in
 * memory (/dev/shm, unless $TMPDIR names another place): on a disk file system a file rewritten
 * per input costs a flush to the disk on each close (ext4 writes a truncated file's data back
 * when it is closed), which made the config targets 50x slower than their parsers.
 */
#ifndef TLSGATE_FUZZUTIL_H
#define TLSGATE_FUZZUTIL_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char fuzz_tmpdir[64];

__attribute__((format(printf, 1, 2), noreturn, unused)) static void fuzz_die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("fuzz: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    abort();
}

static void fuzz_tmp_remove(void)
{
    char cmd[128];
    if (fuzz_tmpdir[0]) {
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", fuzz_tmpdir);
        if (system(cmd) != 0)
            fprintf(stderr, "fuzz: could not remove %s\n", fuzz_tmpdir);
    }
}

/* DIR/name in a folder of this process (made on first use, under $TMPDIR, else /dev/shm, else
 * /tmp). malloc'd. */
__attribute__((unused)) static char *fuzz_temp_path(const char *name)
{
    if (!fuzz_tmpdir[0]) {
        const char *base = getenv("TMPDIR");
        if (!base || strlen(base) >= 32)
            base = access("/dev/shm", W_OK | X_OK) == 0 ? "/dev/shm" : "/tmp";
        snprintf(fuzz_tmpdir, sizeof(fuzz_tmpdir), "%s/tlsgate-fuzz-XXXXXX", base);
        if (!mkdtemp(fuzz_tmpdir))
            fuzz_die("mkdtemp %s failed", fuzz_tmpdir);
        atexit(fuzz_tmp_remove);
    }
    size_t len = strlen(fuzz_tmpdir) + strlen(name) + 2;
    char *p = malloc(len);
    if (!p)
        fuzz_die("out of memory");
    snprintf(p, len, "%s/%s", fuzz_tmpdir, name);
    return p;
}

/* Writes `size` bytes to `path` (replacing it). */
__attribute__((unused)) static void fuzz_write_file(const char *path, const void *data, size_t size)
{
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, size, f) != size || fclose(f) != 0)
        fuzz_die("cannot write %s", path);
}

#endif
