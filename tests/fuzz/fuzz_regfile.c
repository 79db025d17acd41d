/*
 * fuzz_regfile.c — libFuzzer target for the regfile parser (regview_open_buffer) and the view it
 * builds. Built and run by tools/fuzz (clang, libFuzzer, ASan + UBSan), seeded from
 * tests/fixtures/reg/ and tests/fuzz/corpus/regfile/.
 *
 * Every input must either give a view that can be walked completely (every key listed, every
 * value read through every getter) or be refused with a message that names the input and a line.
 * An accepted input is then parsed again layered over itself (regfile_open with two buffers).
 * A crash, a leak, a sanitizer report or an abort() below is a finding.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "regview.h"
#include "regview_backend.h"

/* Bounds the walk so one input cannot take seconds. */
static size_t budget;

static void read_value(struct regview *v, const char *key, const char *name)
{
    uint32_t d;
    uint64_t q;
    char *s;
    char **m;
    int rc = regview_get_dword(v, key, name, &d);
    if (rc != 0 && rc != -EINVAL)
        abort();
    rc = regview_get_qword(v, key, name, &q);
    if (rc != 0 && rc != -EINVAL)
        abort();
    rc = regview_get_string(v, key, name, &s);
    if (rc == 0)
        free(s);
    else if (rc != -EINVAL)
        abort();
    rc = regview_get_multi(v, key, name, &m);
    if (rc == 0)
        regview_strv_free(m);
    else if (rc != -EINVAL)
        abort();
}

static void walk(struct regview *v, const char *key, int depth)
{
    if (budget == 0 || depth > 600)
        return;
    budget--;
    char **names;
    if (regview_list_values(v, key, &names) != 0)
        abort(); /* it was listed as a subkey: it must exist */
    for (char **n = names; *n && budget; n++, budget--)
        read_value(v, key, *n);
    regview_strv_free(names);
    if (regview_list_subkeys(v, key, &names) != 0)
        abort();
    for (char **n = names; *n && budget; n++) {
        size_t len = strlen(key) + strlen(*n) + 2;
        char *child = malloc(len);
        if (!child)
            break;
        snprintf(child, len, "%s\\%s", key, *n);
        walk(v, child, depth + 1);
        free(child);
    }
    regview_strv_free(names);
}

static void walk_all(struct regview *v)
{
    static const char *const hives[] = {"HKLM", "HKEY_CURRENT_USER", "HKCR", "HKU", "HKCC"};
    budget = 20000;
    for (size_t i = 0; i < sizeof(hives) / sizeof(hives[0]); i++)
        walk(v, hives[i], 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct regview *v = NULL;
    char err[512] = "";
    int rc = regview_open_buffer("fuzz.reg", data, size, &v, err, sizeof(err));
    if (rc != 0) {
        if (v != NULL || strncmp(err, "fuzz.reg:", 9) != 0)
            abort();
        return 0;
    }
    walk_all(v);
    regview_free(v);

    /* The same file layered over itself: values replaced, existing keys deleted and rebuilt. */
    const char *names[2] = {"fuzz.reg", "again.reg"};
    const void *datas[2] = {data, data};
    size_t lens[2] = {size, size};
    rc = regfile_open(names, datas, lens, 2, REGFILE_MAX_ENTRIES, &v, err, sizeof(err));
    if (rc != 0) {
        /* The text was accepted once: only the entry cap can refuse it the second time. */
        if (rc != -E2BIG || v != NULL || strncmp(err, "again.reg:", 10) != 0)
            abort();
        return 0;
    }
    walk_all(v);
    regview_free(v);
    return 0;
}
