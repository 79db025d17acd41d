/*
 * bench_regfile.c — how fast the regfile backend parses a large export and answers lookups.
 *
 * Writes a synthetic `reg export` (UTF-16LE, CRLF) shaped like a real HKLM export: NKEYS keys
 * under SOFTWARE\Vendor%03d\Product%d\..., each with a REG_SZ, two DWORDs and a wrapped hex(2).
 * Then prints, measured in the same run:
 *   - the floor: reading the file and touching every byte (what any parser must do at least);
 *   - regview_open_files on it;
 *   - random lookups of existing values by full path (hashed) and of absent keys;
 *   - the peer for lookups: one linear scan over the decoded text for one key, i.e. what a
 *     parser-less "grep the export" lookup would cost each time.
 * Figures only; nothing asserts on time. Usage: bench_regfile [NKEYS] [DIR]
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "regview.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void put16(FILE *f, const char *s)
{
    for (; *s; s++) {
        fputc((unsigned char)*s, f);
        fputc(0, f);
    }
}

static void key_path(char *buf, size_t n, long i)
{
    snprintf(buf, n, "HKEY_LOCAL_MACHINE\\SOFTWARE\\Vendor%03ld\\Product%ld\\Component%ld", i % 500,
             (i / 500) % 20, i);
}

int main(int argc, char **argv)
{
    long nkeys = argc > 1 ? atol(argv[1]) : 50000;
    const char *dir = argc > 2 ? argv[2] : ".";
    char path[4096], line[512], kp[256];
    snprintf(path, sizeof(path), "%s/bench-regfile.reg", dir);
    FILE *f = fopen(path, "wb");
    if (!f) {
        perror(path);
        return 1;
    }
    fputc(0xFF, f);
    fputc(0xFE, f);
    put16(f, "Windows Registry Editor Version 5.00\r\n\r\n");
    for (long i = 0; i < nkeys; i++) {
        key_path(kp, sizeof(kp), i);
        snprintf(line, sizeof(line),
                 "[%s]\r\n\"DisplayName\"=\"Component number %ld\"\r\n\"Version\"=dword:%08lx\r\n"
                 "\"Enabled\"=dword:00000001\r\n\"InstallPath\"=hex(2):25,00,50,00,72,00,6f,00,67,"
                 "00,72,00,61,00,6d,00,46,00,69,00,6c,00,65,00,\\\r\n  73,00,25,00,5c,00,43,00,"
                 "00,00\r\n\r\n",
                 kp, i, (unsigned long)i);
        put16(f, line);
    }
    long size = ftell(f);
    fclose(f);

    /* Floor: read the file and touch every byte. */
    double t0 = now();
    f = fopen(path, "rb");
    unsigned char *buf = malloc((size_t)size);
    if (!f || !buf || fread(buf, 1, (size_t)size, f) != (size_t)size)
        return 1;
    fclose(f);
    unsigned long lf = 0;
    for (long i = 0; i < size; i++)
        lf += buf[i] == '\n';
    double floor_s = now() - t0;

    struct regview *v;
    char err[512];
    const char *paths[1] = {path};
    t0 = now();
    int rc = regview_open_files(paths, 1, &v, err, sizeof(err));
    double parse_s = now() - t0;
    if (rc != 0) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }

    const long nlook = 1000000;
    uint64_t seed = 42, sum = 0;
    t0 = now();
    for (long j = 0; j < nlook; j++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        key_path(kp, sizeof(kp), (long)((seed >> 33) % (uint64_t)nkeys));
        uint32_t d;
        if (regview_get_dword(v, kp, "Version", &d) != 0)
            return 1;
        sum += d;
    }
    double look_s = now() - t0;
    t0 = now();
    for (long j = 0; j < nlook; j++) {
        snprintf(kp, sizeof(kp), "HKLM\\SOFTWARE\\Vendor%03ld\\Absent%ld", j % 500, j);
        uint32_t d;
        if (regview_get_dword(v, kp, "Version", &d) != -ENOENT)
            return 1;
    }
    double miss_s = now() - t0;

    /* Peer: one linear search of the UTF-16 text for the last key's header. */
    key_path(kp, sizeof(kp), nkeys - 1);
    unsigned char needle[600];
    size_t nl = 0;
    needle[nl++] = '[', needle[nl++] = 0;
    for (const char *s = kp; *s; s++)
        needle[nl++] = (unsigned char)*s, needle[nl++] = 0;
    t0 = now();
    const int scans = 20;
    long found = 0;
    for (int s = 0; s < scans; s++)
        found += memmem(buf, (size_t)size, needle, nl) != NULL;
    double scan_s = (now() - t0) / scans;

    printf("regfile bench: %ld keys, %ld values, file %.1f MiB (UTF-16LE, %lu lines)\n", nkeys,
           nkeys * 4, size / 1048576.0, lf);
    printf("  floor  read + touch every byte      %8.1f ms\n", floor_s * 1e3);
    printf("  parse  regview_open_files           %8.1f ms  (%.0f MiB/s, %.1fx the floor)\n",
           parse_s * 1e3, size / 1048576.0 / parse_s, parse_s / floor_s);
    printf("  lookup get_dword, existing key      %8.0f ns  (%ld random lookups)\n",
           look_s / nlook * 1e9, nlook);
    printf("  lookup get_dword, absent key        %8.0f ns\n", miss_s / nlook * 1e9);
    printf("  peer   one memmem scan of the text  %8.0f ns  (per lookup, if not parsed; %ld)\n",
           scan_s * 1e9, found);
    printf("  checksum %llu\n", (unsigned long long)sum);
    regview_free(v);
    free(buf);
    if (!getenv("KEEP"))
        remove(path);
    return 0;
}
