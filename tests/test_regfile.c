/*
 * test_regfile.c — the regfile registry backend (regview.h) on real .reg files: UTF-16LE as
 * `reg export` writes them, REGEDIT4 in Windows-1252 and UTF-8, every value type, layering,
 * and every malformed fixture refused with its exact "FILE:LINE: reason".
 *
 * Fixtures: tests/fixtures/reg/format/ and tests/fixtures/reg/malformed/, generated from the
 * readable sources in their src/ folders by tests/fixtures/reg/regen-regfile.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "regview.h"
#include "regview_backend.h"
#include "testutil.h"

#define TYPES "HKLM\\SOFTWARE\\Tlsgate\\Types"

/*
 * Allocation failure injection: the suite links with -Wl,--wrap for malloc, calloc and realloc,
 * so the parser's and the view's allocations come here. With alloc_fail_at = N the Nth one from
 * then on fails (curl's torture tests, SQLite's faultsim); 0 never fails.
 */
void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t n);
static long alloc_count, alloc_fail_at;

static int alloc_should_fail(void) { return alloc_fail_at && ++alloc_count == alloc_fail_at; }

void *__wrap_malloc(size_t n) { return alloc_should_fail() ? NULL : __real_malloc(n); }
void *__wrap_calloc(size_t n, size_t size)
{
    return alloc_should_fail() ? NULL : __real_calloc(n, size);
}
void *__wrap_realloc(void *p, size_t n)
{
    return alloc_should_fail() ? NULL : __real_realloc(p, n);
}

static void fail_allocation(long n)
{
    alloc_count = 0;
    alloc_fail_at = n;
}

static char *dir;

static void setup(void) { dir = tu_tmpdir(); }
static void teardown(void)
{
    tu_rmtree(dir);
    free(dir);
}

static const char *format_path(const char *name)
{
    static char buf[4][4096];
    static int next;
    char *b = buf[next++ % 4];
    snprintf(b, sizeof(buf[0]), "%s/%s", tu_source_path("tests/fixtures/reg/format"), name);
    return b;
}

static const char *malformed_path(const char *name)
{
    static char buf[4096];
    snprintf(buf, sizeof(buf), "%s/%s", tu_source_path("tests/fixtures/reg/malformed"), name);
    return buf;
}

/* Opens format fixtures in order; any failure fails the test with the parser's message. */
static struct regview *open_format(const char *a, const char *b)
{
    const char *paths[2] = {format_path(a), b ? format_path(b) : NULL};
    struct regview *v = NULL;
    char err[1024] = "";
    int rc = regview_open_files(paths, b ? 2 : 1, &v, err, sizeof(err));
    ck_assert_msg(rc == 0, "open %s: %d %s", a, rc, err);
    ck_assert_ptr_nonnull(v);
    return v;
}

/* Parses an in-memory text as file "mem.reg"; returns the code, the view or the message. */
static int open_text(const char *text, struct regview **v, char *err, size_t errsize)
{
    err[0] = '\0';
    return regview_open_buffer("mem.reg", text, strlen(text), v, err, errsize);
}

static void assert_string(struct regview *v, const char *key, const char *name, const char *want)
{
    char *s = NULL;
    int rc = regview_get_string(v, key, name, &s);
    ck_assert_msg(rc == 0, "%s\\%s: %d", key, name ? name : "@", rc);
    ck_assert_str_eq(s, want);
    free(s);
}

static void assert_dword(struct regview *v, const char *key, const char *name, uint32_t want)
{
    uint32_t d = 0xdeadbeef;
    int rc = regview_get_dword(v, key, name, &d);
    ck_assert_msg(rc == 0, "%s\\%s: %d", key, name, rc);
    ck_assert_uint_eq(d, want);
}

/* Asserts the NULL-ended list equals `want` (NULL-ended) in order, then frees it. */
static void assert_strv(char **got, const char *const *want)
{
    size_t i = 0;
    for (; want[i]; i++) {
        ck_assert_msg(got[i] != NULL, "list ends at %zu, expected \"%s\"", i, want[i]);
        ck_assert_str_eq(got[i], want[i]);
    }
    ck_assert_msg(got[i] == NULL, "unexpected extra entry \"%s\"", got[i]);
    regview_strv_free(got);
}

static void assert_raw(struct regview *v, const char *key, const char *name, uint32_t type,
                       const void *bytes, size_t len)
{
    struct regview_raw raw = {0};
    ck_assert_int_eq(v->ops->get_raw(v, key, name, &raw), 0);
    ck_assert_uint_eq(raw.type, type);
    ck_assert_uint_eq(raw.len, len);
    ck_assert(len == 0 || memcmp(raw.data, bytes, len) == 0);
    free(raw.owned);
}

/* ---- value types ---- */

START_TEST(test_strings_decode_escapes_and_unicode)
{
    struct regview *v = open_format("types.reg", NULL);
    assert_string(v, TYPES, "String", "plain text");
    assert_string(v, TYPES, "Escaped", "C:\\Program Files\\\"quoted\" \\");
    assert_string(v, TYPES, "Empty", "");
    assert_string(v, TYPES, "Semicolon", "a;b ; c");
    assert_string(v, TYPES, "Ünïcödé Имя", "значение ü");
    assert_string(v, TYPES, "Emoji", "smile \xF0\x9F\x98\x80");
    /* The string is stored as the registry holds it: UTF-16LE with its NUL. */
    assert_raw(v, TYPES, "Empty", REGVIEW_SZ, "\0\0", 2);
    regview_free(v);
}
END_TEST

START_TEST(test_default_value_is_the_empty_name)
{
    struct regview *v = open_format("types.reg", NULL);
    assert_string(v, TYPES, "", "the default value");
    assert_string(v, TYPES, NULL, "the default value");
    assert_string(v, "HKEY_CLASSES_ROOT\\.reg", NULL, "regfile");
    char *s;
    ck_assert_int_eq(regview_get_string(v, "HKLM\\SOFTWARE\\Tlsgate\\Short", NULL, &s), -ENOENT);
    regview_free(v);
}
END_TEST

START_TEST(test_dword_forms_read_as_numbers)
{
    struct regview *v = open_format("types.reg", NULL);
    assert_dword(v, TYPES, "Dword", 0xa00);
    assert_dword(v, TYPES, "DwordMax", 0xffffffffu);
    assert_dword(v, TYPES, "DwordShort", 1);
    assert_dword(v, TYPES, "DwordLE", 0x04030201);
    assert_dword(v, TYPES, "DwordBE", 0x01020304);
    assert_dword(v, TYPES, "Name with \"quotes\" and \\ backslash", 7);
    assert_dword(v, TYPES, "Indented", 3);
    regview_free(v);
}
END_TEST

START_TEST(test_qword_is_little_endian)
{
    struct regview *v = open_format("types.reg", NULL);
    uint64_t q = 0;
    ck_assert_int_eq(regview_get_qword(v, TYPES, "Qword", &q), 0);
    ck_assert_uint_eq(q, 0x0000000100000002ull);
    regview_free(v);
}
END_TEST

START_TEST(test_expand_sz_and_hex1_read_as_strings)
{
    struct regview *v = open_format("types.reg", NULL);
    assert_string(v, TYPES, "Expand",
                  "%SystemRoot%\\System32\\drivers\\etc\\hosts, long enough to wrap twice");
    assert_string(v, TYPES, "SzAsHex", "AB");
    assert_raw(v, TYPES, "SzAsHex", REGVIEW_SZ, "A\0B\0\0\0", 6);
    regview_free(v);
}
END_TEST

START_TEST(test_multi_sz_over_continuation_lines)
{
    struct regview *v = open_format("types.reg", NULL);
    char **m = NULL;
    ck_assert_int_eq(regview_get_multi(v, TYPES, "Multi", &m), 0);
    assert_strv(m, (const char *const[]){"TLS 1.2", "TLS 1.3", "Client \"one\"",
                                         "a long fourth string so the hex wraps", NULL});
    ck_assert_int_eq(regview_get_multi(v, TYPES, "MultiEmpty", &m), 0);
    assert_strv(m, (const char *const[]){NULL});
    regview_free(v);
}
END_TEST

START_TEST(test_binary_none_and_unknown_types_keep_their_bytes)
{
    struct regview *v = open_format("types.reg", NULL);
    assert_raw(v, TYPES, "Binary", REGVIEW_BINARY, "\x00\x01\x7f\x80\xff", 5);
    assert_raw(v, TYPES, "BinaryEmpty", REGVIEW_BINARY, "", 0);
    assert_raw(v, TYPES, "None", REGVIEW_NONE, "", 0);
    assert_raw(v, TYPES, "Other", 10, "\xde\xad\xbe\xef", 4);
    uint32_t d;
    char *s;
    ck_assert_int_eq(regview_get_dword(v, TYPES, "Other", &d), -EINVAL);
    ck_assert_int_eq(regview_get_string(v, TYPES, "Binary", &s), -EINVAL);
    regview_free(v);
}
END_TEST

START_TEST(test_absent_is_enoent_and_wrong_type_is_einval)
{
    struct regview *v = open_format("types.reg", NULL);
    uint32_t d;
    uint64_t q;
    char *s;
    char **m;
    /* Absent key, absent value, absent hive name. */
    ck_assert_int_eq(regview_get_dword(v, "HKLM\\SOFTWARE\\Nope", "Dword", &d), -ENOENT);
    ck_assert_int_eq(regview_get_dword(v, TYPES, "Nope", &d), -ENOENT);
    ck_assert_int_eq(regview_get_dword(v, "HKXX\\SOFTWARE\\Tlsgate\\Types", "Dword", &d), -ENOENT);
    ck_assert_int_eq(regview_list_subkeys(v, "HKLM\\SOFTWARE\\Nope", &m), -ENOENT);
    ck_assert_int_eq(regview_list_values(v, "HKLM\\SOFTWARE\\Nope", &m), -ENOENT);
    /* A path that cannot name a key is absent, not a crash. */
    ck_assert_int_eq(regview_get_dword(v, "HKLM\\SOFTWARE\\\\Tlsgate", "Dword", &d), -ENOENT);
    ck_assert_int_eq(regview_get_dword(v, "HKLM\\SOFTWARE\\Tlsgate\\Types\\", "Dword", &d),
                     -ENOENT);
    /* Present, other type. */
    ck_assert_int_eq(regview_get_dword(v, TYPES, "String", &d), -EINVAL);
    ck_assert_int_eq(regview_get_qword(v, TYPES, "Dword", &q), -EINVAL);
    ck_assert_int_eq(regview_get_dword(v, TYPES, "Qword", &d), -EINVAL);
    ck_assert_int_eq(regview_get_string(v, TYPES, "Dword", &s), -EINVAL);
    ck_assert_int_eq(regview_get_string(v, TYPES, "Multi", &s), -EINVAL);
    ck_assert_int_eq(regview_get_multi(v, TYPES, "String", &m), -EINVAL);
    ck_assert_int_eq(regview_get_multi(v, TYPES, "Expand", &m), -EINVAL);
    regview_free(v);
}
END_TEST

/* ---- names, hives, listing ---- */

START_TEST(test_hive_spellings_are_equivalent)
{
    struct regview *v = open_format("types.reg", NULL);
    assert_string(v, "HKLM\\SOFTWARE\\Tlsgate\\Short", "Where", "short spelling");
    assert_string(v, "HKEY_LOCAL_MACHINE\\SOFTWARE\\Tlsgate\\Short", "Where", "short spelling");
    assert_dword(v, "HKEY_LOCAL_MACHINE\\SOFTWARE\\Tlsgate\\Types", "AddedLater", 1);
    assert_string(v, "HKCU\\Software\\Tlsgate", "User", "current user");
    assert_string(v, "HKEY_CURRENT_USER\\Software\\Tlsgate", "User", "current user");
    assert_string(v, "HKU\\.DEFAULT\\Software\\Tlsgate", "Hive", "users");
    assert_string(v, "HKCR\\.reg", "", "regfile");
    char **m;
    ck_assert_int_eq(regview_list_subkeys(v, "HKCC\\System", &m), 0);
    assert_strv(m, (const char *const[]){"CurrentControlSet", NULL});
    ck_assert_int_eq(regview_list_subkeys(v, "HKEY_CURRENT_USER\\Software\\Tlsgate", &m), 0);
    assert_strv(m, (const char *const[]){"Short", NULL});
    regview_free(v);
}
END_TEST

START_TEST(test_lookup_is_case_insensitive_and_keeps_first_spelling)
{
    struct regview *v = open_format("types.reg", NULL);
    assert_dword(v, "hklm\\software\\TLSGATE\\types", "dword", 0xa00);
    assert_dword(v, "HkLm\\SoFtWaRe\\tlsgate\\TYPES", "ADDEDLATER", 1);
    assert_string(v, TYPES, "üNÏCÖDÉ имя", "значение ü");
    char **m;
    ck_assert_int_eq(regview_list_subkeys(v, "HKLM\\SOFTWARE\\TLSGATE", &m), 0);
    assert_strv(m, (const char *const[]){"Short", "Types", NULL});
    regview_free(v);
}
END_TEST

START_TEST(test_list_subkeys_sorted_case_insensitively)
{
    struct regview *v = open_format("subkeys.reg", NULL);
    char **m;
    ck_assert_int_eq(regview_list_subkeys(v, "HKLM\\SOFTWARE\\Order", &m), 0);
    assert_strv(m, (const char *const[]){"10", "9", "Alpha", "beta", "Delta", "gamma", "Zulu",
                                         "_under", "éclair", NULL});
    /* Parents made implicitly by a deeper key exist and list their child. */
    ck_assert_int_eq(regview_list_subkeys(v, "HKLM\\SOFTWARE\\Order\\Gamma\\Deep", &m), 0);
    assert_strv(m, (const char *const[]){"deeper", NULL});
    ck_assert_int_eq(regview_list_subkeys(v, "HKLM\\SOFTWARE\\Order\\Alpha", &m), 0);
    assert_strv(m, (const char *const[]){NULL});
    ck_assert_int_eq(regview_list_values(v, "HKLM\\SOFTWARE\\Order", &m), 0);
    assert_strv(m, (const char *const[]){"", "alpha", "Beta", "zeta", NULL});
    ck_assert_int_eq(regview_list_values(v, "HKLM\\SOFTWARE\\Order\\Alpha", &m), 0);
    assert_strv(m, (const char *const[]){NULL});
    regview_free(v);
}
END_TEST

/* ---- layering ---- */

START_TEST(test_layered_files_override_and_delete)
{
    struct regview *v = open_format("layer-base.reg", "layer-over.reg");
    const char *layer = "HKLM\\SOFTWARE\\Layer";
    uint32_t d;
    char *s;
    char **m;
    assert_string(v, layer, "Keep", "base");
    assert_dword(v, layer, "Override", 2);
    ck_assert_int_eq(regview_get_string(v, layer, "Remove", &s), -ENOENT);
    ck_assert_int_eq(regview_get_dword(v, "HKLM\\SOFTWARE\\Layer\\Gone", "X", &d), -ENOENT);
    ck_assert_int_eq(regview_list_subkeys(v, "HKLM\\SOFTWARE\\Layer\\Gone\\Child", &m), -ENOENT);
    assert_dword(v, "HKLM\\SOFTWARE\\Layer\\Stays", "Z", 3);
    assert_string(v, "HKLM\\SOFTWARE\\Layer\\Stays", "Added", "over");
    /* Deleted, then created again: only what came after the deletion. */
    assert_dword(v, "HKLM\\SOFTWARE\\Layer\\Reborn", "New", 5);
    ck_assert_int_eq(regview_list_subkeys(v, "HKLM\\SOFTWARE\\Layer\\Reborn", &m), 0);
    assert_strv(m, (const char *const[]){NULL});
    ck_assert_int_eq(regview_list_subkeys(v, layer, &m), 0);
    assert_strv(m, (const char *const[]){"Reborn", "Stays", NULL});
    ck_assert_int_eq(regview_list_values(v, layer, &m), 0);
    assert_strv(m, (const char *const[]){"Keep", "Override", NULL});
    regview_free(v);
}
END_TEST

START_TEST(test_layer_order_decides)
{
    struct regview *v = open_format("layer-over.reg", "layer-base.reg");
    const char *layer = "HKLM\\SOFTWARE\\Layer";
    assert_dword(v, layer, "Override", 1);
    assert_string(v, layer, "Remove", "will be removed");
    assert_dword(v, "HKLM\\SOFTWARE\\Layer\\Gone\\Child", "Y", 2);
    assert_dword(v, "HKLM\\SOFTWARE\\Layer\\Reborn", "New", 5);
    assert_dword(v, "HKLM\\SOFTWARE\\Layer\\Reborn\\Old", "Old", 4);
    regview_free(v);
}
END_TEST

/* ---- encodings and line ends ---- */

START_TEST(test_regedit4_ansi_is_windows_1252)
{
    struct regview *v = open_format("regedit4-ansi.reg", NULL);
    const char *key = "HKLM\\SOFTWARE\\Café";
    assert_string(v, key, "Name", "Crème brûlée €");
    assert_string(v, key, "Expand", "%ProgramFiles%\\Café");
    assert_dword(v, "HKLM\\SOFTWARE\\CAFÉ", "Dword", 42);
    char **m;
    ck_assert_int_eq(regview_get_multi(v, key, "Multi", &m), 0);
    assert_strv(m, (const char *const[]){"naïve", "façade", NULL});
    ck_assert_int_eq(regview_list_subkeys(v, "HKLM\\SOFTWARE", &m), 0);
    assert_strv(m, (const char *const[]){"Café", NULL});
    regview_free(v);
}
END_TEST

START_TEST(test_regedit4_utf8_with_and_without_bom)
{
    const char *files[] = {"regedit4-utf8.reg", "regedit4-utf8-bom.reg"};
    for (int i = 0; i < 2; i++) {
        struct regview *v = open_format(files[i], NULL);
        assert_string(v, "HKLM\\SOFTWARE\\Café", "Name", "Crème brûlée € Ж");
        assert_dword(v, "HKLM\\SOFTWARE\\café", "Dword", 42);
        regview_free(v);
    }
}
END_TEST

START_TEST(test_utf16_with_lf_line_ends)
{
    struct regview *v = open_format("lf-only.reg", NULL);
    const char *key = "HKLM\\SOFTWARE\\Tlsgate\\LF";
    char **m;
    ck_assert_int_eq(regview_get_multi(v, key, "Multi", &m), 0);
    assert_strv(m, (const char *const[]){"one", "two",
                                         "three three three three three three three three "
                                         "three three",
                                         NULL});
    assert_dword(v, key, "Dword", 16);
    regview_free(v);
}
END_TEST

START_TEST(test_mixed_line_ends_count_lines_alike)
{
    struct regview *v;
    char err[256];
    /* CRLF, LF and a lone CR each end one line; the fault is on line 5. */
    const char *text = "REGEDIT4\r\n\n[HKLM\\A]\r\"x\"=dword:1\n\"y\"=dword:zz\r\n";
    ck_assert_int_eq(open_text(text, &v, err, sizeof(err)), -EINVAL);
    ck_assert_str_eq(err, "mem.reg:5: bad dword: expected 1 to 8 hex digits after \"dword:\"");
    ck_assert_int_eq(open_text("REGEDIT4\r[HKLM\\A]\r\"x\"=dword:1\r", &v, err, sizeof(err)), 0);
    assert_dword(v, "HKLM\\A", "x", 1);
    regview_free(v);
}
END_TEST

START_TEST(test_continuation_forms)
{
    struct regview *v;
    char err[256];
    /* Indented with tabs, spaces before the backslash, a trailing comma, a comment after. */
    const char *text = "Windows Registry Editor Version 5.00\n[HKLM\\A]\n"
                       "\"b\"=hex:01,02, \\\n\t03,\\\n    04, ; four\n"
                       "\"c\"=hex(4):2a,00,\\\n  00,00\n";
    ck_assert_int_eq(open_text(text, &v, err, sizeof(err)), 0);
    assert_raw(v, "HKLM\\A", "b", REGVIEW_BINARY, "\x01\x02\x03\x04", 4);
    assert_dword(v, "HKLM\\A", "c", 42);
    regview_free(v);
    /* A blank line after ",\" ends the data. */
    ck_assert_int_eq(open_text("REGEDIT4\n[HKLM\\A]\n\"b\"=hex:01,\\\n\n", &v, err, sizeof(err)),
                     0);
    assert_raw(v, "HKLM\\A", "b", REGVIEW_BINARY, "\x01", 1);
    regview_free(v);
}
END_TEST

/* ---- refusals ---- */

struct malformed_case {
    const char *file;
    int line;
    const char *reason;
};

static const struct malformed_case malformed[] = {
    {"bad-escape.reg", 4, "bad escape \"\\W\" in string (only \\\\ and \\\" are allowed)"},
    {"bad-hex.reg", 4, "bad hex: 'g' is not a hex digit"},
    {"bad-hex-continued.reg", 6, "bad hex: 'z' is not a hex digit"},
    {"binary-junk.reg", 1,
     "not a registry export (expected \"Windows Registry Editor Version 5.00\" or \"REGEDIT4\")"},
    {"dword-not-hex.reg", 4, "bad dword: 'x' is not a hex digit"},
    {"dword-too-long.reg", 4, "bad dword: 9 hex digits, at most 8"},
    {"empty-key-component.reg", 3, "empty key name in the path (a doubled or trailing '\\')"},
    {"hex-missing-comma.reg", 4, "bad hex: missing ',' between bytes"},
    {"junk-after-header.reg", 4, "NUL byte in the text"},
    {"key-line-unclosed.reg", 3, "key line without a closing ']'"},
    {"key-name-too-long.reg", 3, "key name over 255 characters"},
    {"missing-equals.reg", 4, "missing '=' after the value name"},
    {"not-a-registry-export.reg", 1,
     "not a registry export (expected \"Windows Registry Editor Version 5.00\" or \"REGEDIT4\")"},
    {"nul-character.reg", 4, "NUL character in the text"},
    {"odd-byte-count.reg", 5, "odd byte count (193) in a UTF-16LE file: the last character is cut"},
    {"qword-not-8-bytes.reg", 4, "hex(b) (REG_QWORD) data is 4 bytes, must be 8"},
    {"truncated-continuation.reg", 5, "truncated file: hex data continues with ',\\' past the end"},
    {"unexpected-text.reg", 4,
     "unexpected text (expected [KEY], \"name\"=value, @=value or ;comment)"},
    {"unknown-hive.reg", 3,
     "unknown hive \"HKEY_LOCAL_MACHIN\" (expected HKEY_LOCAL_MACHINE, HKLM, HKEY_CURRENT_USER, "
     "HKCU, HKEY_CLASSES_ROOT, HKCR, HKEY_USERS, HKU, HKEY_CURRENT_CONFIG or HKCC)"},
    {"unknown-type.reg", 4, "unknown value type (expected \"string\", dword:, hex:, hex(N): or -)"},
    {"unpaired-surrogate.reg", 4, "unpaired UTF-16 surrogate 0xD800"},
    {"unterminated-string.reg", 4, "unterminated string (no closing '\"')"},
    {"utf8-bom-invalid.reg", 3, "invalid UTF-8 after a UTF-8 byte order mark"},
    {"value-after-deleted-key.reg", 4,
     "value line after a [-KEY] deletion; values need a [KEY] line"},
    {"value-before-key.reg", 3, "value line before any [KEY] line"},
};
#define N_MALFORMED (int)(sizeof(malformed) / sizeof(malformed[0]))

START_TEST(test_malformed_fixture_is_refused_with_file_and_line)
{
    const struct malformed_case *c = &malformed[_i];
    const char *path = malformed_path(c->file);
    char want[8192], err[8192] = "";
    snprintf(want, sizeof(want), "%s:%d: %s", path, c->line, c->reason);
    struct regview *v = (struct regview *)&want; /* must be reset to NULL */
    ck_assert_int_eq(regview_open_files(&path, 1, &v, err, sizeof(err)), -EINVAL);
    ck_assert_ptr_null(v);
    ck_assert_str_eq(err, want);

    /* The same bytes from memory give the same verdict. */
    size_t len;
    char *data = tu_read_file(path, &len);
    ck_assert_ptr_nonnull(data);
    snprintf(want, sizeof(want), "mem:%d: %s", c->line, c->reason);
    ck_assert_int_eq(regview_open_buffer("mem", data, len, &v, err, sizeof(err)), -EINVAL);
    ck_assert_ptr_null(v);
    ck_assert_str_eq(err, want);
    free(data);
}
END_TEST

START_TEST(test_every_malformed_fixture_has_an_expectation)
{
    DIR *d = opendir(tu_source_path("tests/fixtures/reg/malformed"));
    ck_assert_ptr_nonnull(d);
    struct dirent *e;
    int seen = 0;
    while ((e = readdir(d))) {
        size_t n = strlen(e->d_name);
        if (n < 4 || strcmp(e->d_name + n - 4, ".reg") != 0)
            continue;
        int found = 0;
        for (int i = 0; i < N_MALFORMED; i++)
            found |= strcmp(malformed[i].file, e->d_name) == 0;
        ck_assert_msg(found, "%s has no expected message in test_regfile.c", e->d_name);
        seen++;
    }
    closedir(d);
    ck_assert_int_eq(seen, N_MALFORMED);
}
END_TEST

START_TEST(test_malformed_later_file_discards_the_whole_view)
{
    const char *paths[2] = {format_path("types.reg"), malformed_path("bad-hex.reg")};
    struct regview *v = NULL;
    char err[1024];
    ck_assert_int_eq(regview_open_files(paths, 2, &v, err, sizeof(err)), -EINVAL);
    ck_assert_ptr_null(v);
    ck_assert_ptr_nonnull(strstr(err, "bad-hex.reg:4: "));
}
END_TEST

START_TEST(test_missing_file_is_named)
{
    const char *path = tu_path(dir, "absent.reg");
    struct regview *v = NULL;
    char err[8192], want[8192];
    ck_assert_int_eq(regview_open_files(&path, 1, &v, err, sizeof(err)), -ENOENT);
    ck_assert_ptr_null(v);
    snprintf(want, sizeof(want), "%s: cannot open: %s", path, strerror(ENOENT));
    ck_assert_str_eq(err, want);
}
END_TEST

START_TEST(test_fault_character_is_shown_whole)
{
    struct regview *v;
    char err[256];
    ck_assert_int_eq(open_text("REGEDIT4\n[HKLM\\A]\n\"b\"=hex:01,é2\n", &v, err, sizeof(err)),
                     -EINVAL);
    ck_assert_str_eq(err, "mem.reg:3: bad hex: 'é' is not a hex digit");
    ck_assert_int_eq(open_text("REGEDIT4\n[HKLM\\A]\n\"b\"=dword:1\x01\n", &v, err, sizeof(err)),
                     -EINVAL);
    ck_assert_str_eq(err, "mem.reg:3: bad dword: '\\x01' is not a hex digit");
    ck_assert_int_eq(open_text("REGEDIT4\n[HKLM\\A]\n\"s\"=\"\\Ж\"\n", &v, err, sizeof(err)),
                     -EINVAL);
    ck_assert_str_eq(err,
                     "mem.reg:3: bad escape \"\\Ж\" in string (only \\\\ and \\\" are allowed)");
}
END_TEST

START_TEST(test_long_unknown_hive_is_cut_between_characters)
{
    struct regview *v;
    char err[512];
    /* 39 ASCII bytes then 'é' (2 bytes): 40 bytes would split it. */
    ck_assert_int_eq(open_text("REGEDIT4\n[HKEY_LOCAL_MACHINE_IS_NOT_SPELLED_LIKE_é\\A]\n", &v, err,
                               sizeof(err)),
                     -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "mem.reg:2: unknown hive \"HKEY_LOCAL_MACHINE_IS_NOT_SPELLED_"
                                      "LIKE_\" (expected"));
}
END_TEST

START_TEST(test_deleting_a_hive_root_is_refused)
{
    struct regview *v;
    char err[256];
    ck_assert_int_eq(open_text("REGEDIT4\n\n[-HKEY_LOCAL_MACHINE]\n", &v, err, sizeof(err)),
                     -EINVAL);
    ck_assert_str_eq(err, "mem.reg:3: cannot delete a hive root");
}
END_TEST

START_TEST(test_file_over_64_mib_is_refused)
{
    const char *path = tu_path(dir, "huge.reg");
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(ftruncate(fd, (64 << 20) + 1), 0); /* sparse: no disk, no time */
    close(fd);
    struct regview *v = NULL;
    char err[8192], want[8192];
    ck_assert_int_eq(regview_open_files(&path, 1, &v, err, sizeof(err)), -E2BIG);
    ck_assert_ptr_null(v);
    snprintf(want, sizeof(want), "%s: 67108865 bytes, over the 67108864-byte cap of a .reg file",
             path);
    ck_assert_str_eq(err, want);
}
END_TEST

/* "REGEDIT4\n[HKLM\A]\n" + prefix + n copies of unit + suffix + "\n" */
static char *repeat_text(const char *prefix, const char *unit, size_t n, const char *suffix)
{
    const char *head = "REGEDIT4\n[HKLM\\A]\n";
    size_t ul = strlen(unit);
    size_t len = strlen(head) + strlen(prefix) + ul * n + strlen(suffix) + 2;
    char *t = malloc(len);
    ck_assert_ptr_nonnull(t);
    char *w = t + sprintf(t, "%s%s", head, prefix);
    for (size_t i = 0; i < n; i++, w += ul)
        memcpy(w, unit, ul);
    sprintf(w, "%s\n", suffix);
    return t;
}

START_TEST(test_value_over_1_mib_is_refused)
{
    struct regview *v;
    char err[256];
    /* Exactly 1 MiB of binary is accepted... */
    char *t = repeat_text("\"b\"=hex:", "00,", 1u << 20, "");
    ck_assert_int_eq(open_text(t, &v, err, sizeof(err)), 0);
    struct regview_raw raw;
    ck_assert_int_eq(v->ops->get_raw(v, "HKLM\\A", "b", &raw), 0);
    ck_assert_uint_eq(raw.len, 1u << 20);
    regview_free(v);
    free(t);
    /* ...one byte more is not. */
    t = repeat_text("\"b\"=hex:", "00,", (1u << 20) + 1, "");
    ck_assert_int_eq(open_text(t, &v, err, sizeof(err)), -EINVAL);
    ck_assert_str_eq(err, "mem.reg:3: value data is over the 1048576-byte cap");
    free(t);
    /* 400,000 CJK characters: 1.2 MB of UTF-8 but 800,002 bytes of UTF-16, within the cap. */
    t = repeat_text("\"s\"=\"", "中", 400000, "\"");
    ck_assert_int_eq(open_text(t, &v, err, sizeof(err)), 0);
    ck_assert_int_eq(v->ops->get_raw(v, "HKLM\\A", "s", &raw), 0);
    ck_assert_uint_eq(raw.len, 800002);
    regview_free(v);
    free(t);
    /* A string of 512 Ki characters is 1 MiB + its NUL in UTF-16. */
    t = repeat_text("\"s\"=\"", "x", 1u << 19, "\"");
    ck_assert_int_eq(open_text(t, &v, err, sizeof(err)), -EINVAL);
    ck_assert_str_eq(err, "mem.reg:3: value data is over the 1048576-byte cap");
    free(t);
}
END_TEST

START_TEST(test_name_lengths_and_depth_are_capped)
{
    struct regview *v;
    char err[256];
    char *t = repeat_text("\"", "n", 16383, "\"=dword:1");
    ck_assert_int_eq(open_text(t, &v, err, sizeof(err)), 0);
    regview_free(v);
    free(t);
    t = repeat_text("\"", "n", 16384, "\"=dword:1");
    ck_assert_int_eq(open_text(t, &v, err, sizeof(err)), -EINVAL);
    ck_assert_str_eq(err, "mem.reg:3: value name over 16383 characters");
    free(t);
    /* 255 characters are UTF-16 units: 'é' is one, '😀' two. */
    t = repeat_text("[HKLM\\", "é", 255, "]");
    ck_assert_int_eq(open_text(t, &v, err, sizeof(err)), 0);
    regview_free(v);
    free(t);
    t = repeat_text("[HKLM\\x", "😀", 127, "]");
    ck_assert_int_eq(open_text(t, &v, err, sizeof(err)), 0);
    regview_free(v);
    free(t);
    t = repeat_text("[HKLM\\xx", "😀", 127, "]");
    ck_assert_int_eq(open_text(t, &v, err, sizeof(err)), -EINVAL);
    ck_assert_str_eq(err, "mem.reg:3: key name over 255 characters");
    free(t);
    t = repeat_text("[HKLM", "\\k", 512, "]");
    ck_assert_int_eq(open_text(t, &v, err, sizeof(err)), 0);
    regview_free(v);
    free(t);
    t = repeat_text("[HKLM", "\\k", 513, "]");
    ck_assert_int_eq(open_text(t, &v, err, sizeof(err)), -EINVAL);
    ck_assert_str_eq(err, "mem.reg:3: key path deeper than 512 levels");
    free(t);
}
END_TEST

START_TEST(test_every_allocation_failure_while_parsing_is_enomem_and_no_view)
{
    const char *paths[4] = {format_path("types.reg"), format_path("layer-base.reg"),
                            format_path("layer-over.reg"), format_path("regedit4-ansi.reg")};
    long n;
    for (n = 1;; n++) {
        struct regview *v = (struct regview *)&n;
        char err[8192] = "";
        fail_allocation(n);
        int rc = regview_open_files(paths, 4, &v, err, sizeof(err));
        fail_allocation(0);
        if (rc == 0) {
            assert_dword(v, "HKLM\\SOFTWARE\\Layer", "Override", 2);
            regview_free(v);
            break;
        }
        ck_assert_msg(rc == -ENOMEM, "allocation %ld: %d %s", n, rc, err);
        ck_assert_ptr_null(v);
        ck_assert_msg(strstr(err, "out of memory") != NULL, "allocation %ld: %s", n, err);
    }
    ck_assert_int_gt(n, 200); /* the parse makes 230 allocations: each one failed in turn */
}
END_TEST

START_TEST(test_every_allocation_failure_in_a_getter_is_enomem)
{
    struct regview *v = open_format("types.reg", NULL);
    for (int call = 0; call < 4; call++) {
        long n;
        for (n = 1;; n++) {
            char *s = NULL;
            char **m = NULL;
            fail_allocation(n);
            int rc = call == 0   ? regview_get_string(v, TYPES, "Ünïcödé Имя", &s)
                     : call == 1 ? regview_get_multi(v, TYPES, "Multi", &m)
                     : call == 2 ? regview_list_subkeys(v, "HKLM\\SOFTWARE\\Tlsgate", &m)
                                 : regview_list_values(v, TYPES, &m);
            fail_allocation(0);
            if (rc == 0) {
                free(s);
                regview_strv_free(m);
                break;
            }
            ck_assert_msg(rc == -ENOMEM, "call %d allocation %ld: %d", call, n, rc);
        }
        ck_assert_int_gt(n, 1);
    }
    regview_free(v);
}
END_TEST

START_TEST(test_keys_and_values_are_capped_across_files)
{
    const char *a = "REGEDIT4\n[HKLM\\a\\b\\c]\n\"1\"=dword:1\n\"2\"=dword:2\n[HKLM\\a\\d]\n"
                    "\"3\"=dword:3\n";
    const char *b = "REGEDIT4\n[HKLM\\a\\d]\n\"3\"=dword:4\n\"3\"=-\n\"5\"=dword:5\n"
                    "\"6\"=dword:6\n";
    const char *names[2] = {"a.reg", "b.reg"};
    const void *datas[2] = {a, b};
    size_t lens[2] = {strlen(a), strlen(b)};
    struct regview *v = NULL;
    char err[256];
    /* a.reg makes keys a, b, c, d and values 1, 2, 3: seven entries. */
    ck_assert_int_eq(regfile_open(names, datas, lens, 1, 7, &v, err, sizeof(err)), 0);
    regview_free(v);
    ck_assert_int_eq(regfile_open(names, datas, lens, 1, 6, &v, err, sizeof(err)), -E2BIG);
    ck_assert_ptr_null(v);
    ck_assert_str_eq(err, "a.reg:6: over 6 keys and values in all the files together");
    ck_assert_int_eq(regfile_open(names, datas, lens, 1, 5, &v, err, sizeof(err)), -E2BIG);
    ck_assert_str_eq(err, "a.reg:5: over 5 keys and values in all the files together");
    /* b.reg: replacing "3" is free, deleting it makes room for "5"; "6" is one too many. */
    ck_assert_int_eq(regfile_open(names, datas, lens, 2, 7, &v, err, sizeof(err)), -E2BIG);
    ck_assert_str_eq(err, "b.reg:6: over 7 keys and values in all the files together");
    ck_assert_int_eq(regfile_open(names, datas, lens, 2, 8, &v, err, sizeof(err)), 0);
    assert_dword(v, "HKLM\\a\\d", "6", 6);
    regview_free(v);
    /* The public functions use the default cap. */
    ck_assert_int_eq(regview_open_buffer("a.reg", a, strlen(a), &v, err, sizeof(err)), 0);
    regview_free(v);
    ck_assert_uint_eq(REGFILE_MAX_ENTRIES, 2097152);
}
END_TEST

START_TEST(test_no_files_is_an_empty_registry)
{
    struct regview *v = NULL;
    char err[64];
    ck_assert_int_eq(regview_open_files(NULL, 0, &v, err, sizeof(err)), 0);
    char **m;
    ck_assert_int_eq(regview_list_subkeys(v, "HKLM", &m), 0);
    assert_strv(m, (const char *const[]){NULL});
    regview_free(v);
}
END_TEST

int main(void)
{
    Suite *suite = suite_create("regfile");
    tu_tcase(
        suite, "values", setup, teardown,
        TU_TESTS(test_strings_decode_escapes_and_unicode, test_default_value_is_the_empty_name,
                 test_dword_forms_read_as_numbers, test_qword_is_little_endian,
                 test_expand_sz_and_hex1_read_as_strings, test_multi_sz_over_continuation_lines,
                 test_binary_none_and_unknown_types_keep_their_bytes,
                 test_absent_is_enoent_and_wrong_type_is_einval, test_hive_spellings_are_equivalent,
                 test_lookup_is_case_insensitive_and_keeps_first_spelling,
                 test_list_subkeys_sorted_case_insensitively,
                 test_layered_files_override_and_delete, test_layer_order_decides,
                 test_regedit4_ansi_is_windows_1252, test_regedit4_utf8_with_and_without_bom,
                 test_utf16_with_lf_line_ends, test_mixed_line_ends_count_lines_alike,
                 test_continuation_forms, test_no_files_is_an_empty_registry));

    TCase *bad =
        tu_tcase(suite, "refusals", setup, teardown,
                 TU_TESTS(test_every_malformed_fixture_has_an_expectation,
                          test_malformed_later_file_discards_the_whole_view,
                          test_missing_file_is_named, test_deleting_a_hive_root_is_refused,
                          test_long_unknown_hive_is_cut_between_characters,
                          test_fault_character_is_shown_whole, test_file_over_64_mib_is_refused,
                          test_value_over_1_mib_is_refused, test_name_lengths_and_depth_are_capped,
                          test_keys_and_values_are_capped_across_files,
                          test_every_allocation_failure_while_parsing_is_enomem_and_no_view,
                          test_every_allocation_failure_in_a_getter_is_enomem));
    tcase_add_loop_test(bad, test_malformed_fixture_is_refused_with_file_and_line, 0, N_MALFORMED);

    return tu_run_suite(suite);
}
