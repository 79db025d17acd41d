/*
 * test_textclean.c — terminal-safe output (suite 'textclean'): the helper itself
 * (orchestrator/base/textclean.h) and every human-readable command on a database whose outside
 * text carries terminal escapes: a host whose OS caption (inventory and report) holds ESC[2J,
 * a waiver reason with CR and BEL, a TLSGATE_USER with an OSC title sequence, and the audit rows
 * they leave. Each command's output must hold no raw control byte (newlines aside) and show the
 * escapes visibly. Real binary, real SQLite file.
 */
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ingest.h"
#include "inventory.h"
#include "rules.h"
#include "store.h"
#include "testutil.h"
#include "textclean.h"

#define NOW_ENV "TLSGATE_NOW=1764072000" /* 2025-11-25T12:00:00Z */

static const char *clean(const char *s)
{
    static char buf[256];
    return textclean(s, buf, sizeof(buf));
}

START_TEST(test_textclean_escapes_controls_visibly)
{
    ck_assert_str_eq(clean("a\x1b[2Jb"), "a\\x1b[2Jb");
    ck_assert_str_eq(clean("late\r\apatch\n"), "late\\r\\x07patch\\n");
    ck_assert_str_eq(clean("tab\there\x7f"), "tab\\there\\x7f");
    ck_assert_str_eq(clean(NULL), "");
}
END_TEST

START_TEST(test_textclean_escapes_c1_bidi_and_bad_utf8)
{
    ck_assert_str_eq(clean("x\xc2\x9b"
                           "31m"),
                     "x\\u009b31m"); /* C1 CSI, UTF-8 */
    ck_assert_str_eq(clean("x\x9b"
                           "31m"),
                     "x\\x9b31m"); /* 8-bit CSI */
    ck_assert_str_eq(clean("ab\xe2\x80\xae"
                           "cd"),
                     "ab\\u202ecd");                            /* RIGHT-TO-LEFT OVERRIDE */
    ck_assert_str_eq(clean("\xe2\x80\xa8"), "\\u2028");         /* LINE SEPARATOR */
    ck_assert_str_eq(clean("\xc0\xaf"), "\\xc0\\xaf");          /* overlong '/' */
    ck_assert_str_eq(clean("\xed\xa0\x80"), "\\xed\\xa0\\x80"); /* surrogate */
    ck_assert_str_eq(clean("\xe2\x82"), "\\xe2\\x82");          /* cut sequence */
}
END_TEST

START_TEST(test_textclean_keeps_ordinary_text)
{
    const char *s = "Microsoft Windows Server 2019 Datacenter — Zürich, HKLM\\SOFTWARE\\x 🙂";
    ck_assert_str_eq(clean(s), s);
    ck_assert_int_eq(textclean_needed(s), 0);
    ck_assert_int_eq(textclean_needed("a\x1b"), 1);
    ck_assert_int_eq(textclean_needed("\xff"), 1);
}
END_TEST

START_TEST(test_textclean_cuts_on_a_whole_piece)
{
    char buf[12];
    /* 7 bytes fit before the reserve for "..." and the NUL: the escape is not split. */
    ck_assert_str_eq(textclean("abcdef\x1bxyz", buf, sizeof(buf)), "abcdef...");
    ck_assert_str_eq(textclean("abcdefgh", buf, sizeof(buf)), "abcdefgh");
    ck_assert_str_eq(textclean("abcdefg\xc3\xa9xyz", buf, sizeof(buf)), "abcdefg...");
    char big[TEXTCLEAN_MAX * 2];
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    const char *out = TEXTCLEAN(big);
    ck_assert_uint_eq(strlen(out), TEXTCLEAN_MAX - 1);
    ck_assert_str_eq(out + TEXTCLEAN_MAX - 4, "...");
}
END_TEST

/* ---- every command on a database full of escapes ---- */

static char *dir, *db;

#define OS_CAPTION "Windows 7\x1b[2J\x1b[1;1HREADY"
#define REASON "vendor patch late\r\aall fine"
#define USER_ENV "TLSGATE_USER=ops\x1b]0;owned\a"

static void make_db(void)
{
    dir = tu_tmpdir();
    db = strdup(tu_path(dir, "t.db"));
    struct store *s;
    char err[1024];
    ck_assert_msg(store_open(db, true, &s, err, sizeof(err)) == 0, "%s", err);
    /* Rows as an older tlsgate or a hand edit could leave them: the OS caption is the host's. */
    ck_assert_msg(store_exec(s, "INSERT INTO site VALUES ('PS1', 'enforce', 1, 'init');"
                                "INSERT INTO host (id, name, site, roles, collector, os, "
                                "added_at, updated_at) VALUES "
                                "(1, 'cl1.example.test', 'PS1', 1, '127.0.0.1:9443', "
                                "'" OS_CAPTION "', 1, 1),"
                                "(2, 'mp1.example.test', 'PS1', 16, '127.0.0.1:9444', "
                                "'Server\x1b[31m', 1, 1)") == 0,
                  "%s", store_errmsg(s));
    struct rules_catalog *c;
    ck_assert_msg(rules_load_default(&c, err, sizeof(err)) == 0, "%s", err);
    char *path = strdup(tu_source_path("tests/fixtures/reports/win7-sp1-x64-unpatched.json"));
    json_error_t je;
    json_t *r = json_load_file(path, 0, &je);
    ck_assert_msg(r != NULL, "%s: %s", path, je.text);
    free(path);
    json_object_set_new(r, "host", json_string("cl1.example.test"));
    json_object_set_new(json_object_get(r, "os"), "product_name", json_string(OS_CAPTION));
    json_array_append_new(json_object_get(r, "hotfixes"), json_string("KB1\x1b[2J"));
    ck_assert_msg(ingest_report(s, c, 1, ROLE_CLIENT, r, 1764072000) == 0, "%s", store_errmsg(s));
    json_decref(r);
    rules_free(c);
    store_close(s);
}

static void free_db(void)
{
    tu_rmtree(dir);
    free(dir);
    free(db);
}

/* No byte of `out` is a control character but newline; names `what` when one is. */
static void assert_clean(const char *what, const char *out)
{
    for (const unsigned char *p = (const unsigned char *)(out ? out : ""); *p; p++)
        ck_assert_msg((*p >= 0x20 && *p != 0x7f && *p != 0x9b) || *p == '\n',
                      "%s: raw byte 0x%02x at offset %ld", what, *p,
                      (long)(p - (const unsigned char *)out));
}

static void run_clean(const char *what, int want, ...)
{
    char *const env[] = {NOW_ENV, USER_ENV, NULL};
    char *out = NULL, *err = NULL;
    va_list ap;
    va_start(ap, want);
    int rc = tu_tlsgatev(db, env, &out, &err, ap);
    va_end(ap);
    ck_assert_msg(rc == want, "%s: exit %d, want %d\n%s%s", what, rc, want, out, err);
    assert_clean(what, out);
    assert_clean(what, err);
    free(out);
    free(err);
}

START_TEST(test_commands_print_no_terminal_escape)
{
    make_db();
    run_clean("waive", 0, "waive", "cl1.example.test", "--reason", REASON, NULL);
    run_clean("inventory list", 0, "inventory", "list", NULL);
    run_clean("inventory show", 0, "inventory", "show", "cl1.example.test", NULL);
    run_clean("inventory deps", 0, "inventory", "deps", "mp1.example.test", NULL);
    run_clean("host show client", 0, "host", "show", "cl1.example.test", NULL);
    run_clean("host show mp", 0, "host", "show", "mp1.example.test", NULL);
    run_clean("gate check", 1, "gate", "check", "mp1.example.test", NULL);
    run_clean("gate list", 0, "gate", "list", NULL);
    run_clean("phase status", 0, "phase", "status", NULL);
    run_clean("rules blockers", 0, "rules", "blockers", NULL);
    run_clean("rules show", 0, "rules", "show", NULL);
    run_clean("unwaive", 0, "unwaive", "cl1.example.test", NULL);
    run_clean("audit", 0, "audit", NULL);
    /* An error quoting bad input is cleaned too. */
    run_clean("error", 3, "waive", "cl1.example.test", "--reason", "x", "--until", "2026\x1b[2J",
              NULL);
    free_db();
}
END_TEST

START_TEST(test_escapes_stay_visible)
{
    make_db();
    char *const env[] = {NOW_ENV, USER_ENV, NULL};
    char *out = NULL;
    ck_assert_int_eq(
        tu_tlsgate_env(db, env, NULL, NULL, "waive", "cl1.example.test", "--reason", REASON, NULL),
        0);
    ck_assert_int_eq(tu_tlsgate_env(db, env, &out, NULL, "host", "show", "cl1.example.test", NULL),
                     0);
    tu_assert_has(out, "Windows 7\\x1b[2J\\x1b[1;1HREADY", "vendor patch late\\r\\x07all fine",
                  "by ops\\x1b]0;owned\\x07");
    free(out);
    ck_assert_int_eq(tu_tlsgate_env(db, env, &out, NULL, "audit", NULL), 0);
    ck_assert_msg(strstr(out, "ops\\x1b]0;owned\\x07"), "%s", out);
    free(out);
    /* JSON keeps the text itself, escaped by JSON's rules. */
    ck_assert_int_eq(tu_tlsgate_env(db, env, &out, NULL, "--json", "inventory", "show",
                                    "cl1.example.test", NULL),
                     0);
    ck_assert_msg(strstr(out, "Windows 7\\u001b[2J"), "%s", out);
    free(out);
    free_db();
}
END_TEST

int main(void)
{
    Suite *s = suite_create("textclean");
    tu_tcase(s, "helper", NULL, NULL,
             TU_TESTS(test_textclean_escapes_controls_visibly,
                      test_textclean_escapes_c1_bidi_and_bad_utf8,
                      test_textclean_keeps_ordinary_text, test_textclean_cuts_on_a_whole_piece));
    TCase *tc =
        tu_tcase(s, "commands", NULL, NULL,
                 TU_TESTS(test_commands_print_no_terminal_escape, test_escapes_stay_visible));
    tcase_set_timeout(tc, 120);
    return tu_run_suite(s);
}
