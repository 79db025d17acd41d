/*
 * test_cli.c — the CLI contract every command keeps (suite 'cli'), walked over the binary's own
 * command table (`tlsgate --commands`), never a list written here: --help answers with the
 * usage on stdout and exit 0, an unknown option is exit 2 naming the closest option, --json is
 * refused (exit 2) where the command prints no data. And the one table printer: long host names
 * on a narrow terminal stay aligned, off a terminal values are whole.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fixture.h"
#include "testutil.h"

static char *dir;
static char db[4096];

static void setup(void) { dir = tu_tmpdir_with_db(db, sizeof(db)); }
static void teardown(void) { tu_tmpdir_drop(&dir); }

/* Runs tlsgate with `line`'s words (a command and maybe its subcommand) and up to two more. */
static int run_words(const char *line, const char *extra1, const char *extra2, char **out,
                     char **err)
{
    char words[128];
    snprintf(words, sizeof(words), "%s", line);
    char *w1 = strtok(words, " "), *w2 = strtok(NULL, " ");
    if (w2)
        return tu_tlsgate(db, out, err, w1, w2, extra1, extra2, NULL);
    return tu_tlsgate(db, out, err, w1, extra1, extra2, NULL);
}

struct command_line {
    char name[64];
    bool json;
};

/* The binary's command table: every command and subcommand with whether --json applies. */
static size_t command_table(struct command_line *rows, size_t max)
{
    char *out, *err;
    ck_assert_int_eq(tu_tlsgate(db, &out, &err, "--commands", NULL), 0);
    size_t n = 0;
    for (char *line = strtok(out, "\n"); line && n < max; line = strtok(NULL, "\n")) {
        char *tab = strchr(line, '\t');
        ck_assert_msg(tab != NULL, "--commands line without a tab: %s", line);
        *tab = '\0';
        snprintf(rows[n].name, sizeof(rows[n].name), "%s", line);
        rows[n].json = !strcmp(tab + 1, "json");
        n++;
    }
    free(out);
    free(err);
    ck_assert_uint_ge(n, 12); /* at least one line per command */
    return n;
}

START_TEST(test_every_command_answers_help_with_its_usage)
{
    struct command_line rows[64];
    size_t n = command_table(rows, 64);
    for (size_t i = 0; i < n; i++) {
        const char *forms[] = {"--help", "-h"};
        for (size_t f = 0; f < 2; f++) {
            char *out, *err;
            int code = run_words(rows[i].name, forms[f], NULL, &out, &err);
            ck_assert_msg(code == 0, "`tlsgate %s %s` exit %d: %s", rows[i].name, forms[f], code,
                          err);
            ck_assert_msg(!strncmp(out, "Usage: ", 7), "`tlsgate %s %s` printed: %s", rows[i].name,
                          forms[f], out);
            ck_assert_msg(strstr(out, rows[i].name) != NULL, "usage of %s does not name it: %s",
                          rows[i].name, out);
            ck_assert_str_eq(err, "");
            free(out);
            free(err);
        }
        /* --help after an argument is still --help, not an argument */
        char *out, *err;
        ck_assert_int_eq(run_words(rows[i].name, "some-argument", "--help", &out, &err), 0);
        ck_assert_msg(!strncmp(out, "Usage: ", 7), "%s", rows[i].name);
        free(out);
        free(err);
    }
}
END_TEST

START_TEST(test_every_command_refuses_an_unknown_option_with_exit_2)
{
    struct command_line rows[64];
    size_t n = command_table(rows, 64);
    for (size_t i = 0; i < n; i++) {
        char *out, *err;
        int code = run_words(rows[i].name, "--no-such-option", NULL, &out, &err);
        ck_assert_msg(code == 2, "`tlsgate %s --no-such-option` exit %d", rows[i].name, code);
        ck_assert_msg(strstr(err, "unknown option --no-such-option") != NULL, "%s: %s",
                      rows[i].name, err);
        ck_assert_str_eq(out, "");
        free(out);
        free(err);
        /* --json where the command prints no data: a usage error too */
        if (!rows[i].json) {
            code = run_words(rows[i].name, "--json", NULL, &out, &err);
            ck_assert_msg(code == 2, "`tlsgate %s --json` exit %d", rows[i].name, code);
            ck_assert_msg(strstr(err, "--json does not apply") != NULL, "%s: %s", rows[i].name,
                          err);
            free(out);
            free(err);
        }
    }
}
END_TEST

START_TEST(test_unknown_option_names_the_closest_one)
{
    char *err;
    ck_assert_int_eq(tu_tlsgate(db, NULL, &err, "gate", "list", "--sitee", "P01", NULL), 2);
    ck_assert_str_eq(err, "tlsgate: gate list: unknown option --sitee; did you mean --site?\n");
    free(err);
    ck_assert_int_eq(tu_tlsgate(db, NULL, &err, "phase", "advance", "--dryrun", NULL), 2);
    ck_assert_ptr_nonnull(strstr(err, "did you mean --dry-run?"));
    free(err);
    ck_assert_int_eq(tu_tlsgate(db, NULL, &err, "gate", "lsit", NULL), 2);
    ck_assert_ptr_nonnull(strstr(err, "unknown subcommand 'lsit'; did you mean 'list'?"));
    free(err);
}
END_TEST

START_TEST(test_bad_dates_are_bad_input_exit_3)
{
    struct store *s = fx_open(db);
    fx_site(s, "P01", "clients");
    fx_host(s, "pc1.p01.example", "P01", ROLE_CLIENT);
    store_close(s);
    char *err;
    ck_assert_int_eq(fx_run(db, NULL, &err, "waive", "pc1.p01.example", "--reason", "r", "--until",
                            "31/12/2026", NULL),
                     3);
    ck_assert_ptr_nonnull(strstr(err, "'31/12/2026' is not a date"));
    free(err);
    ck_assert_int_eq(tu_db_int(db, "SELECT count(*) FROM waiver", NULL), 0);
}
END_TEST

/* ---- the table printer ---- */

#define LONG_NAME "a-very-long-host-name-that-goes-on-and-on.site-p01.corp.example"

static void long_names_db(void)
{
    struct store *s = fx_open(db);
    fx_site(s, "P01", "clients");
    fx_host(s, LONG_NAME, "P01", ROLE_CLIENT);
    fx_host(s, "pc2.p01.example", "P01", ROLE_CLIENT);
    fx_host(s, "mp1.p01.example", "P01", ROLE_MANAGEMENT_POINT | ROLE_DISTRIBUTION_POINT);
    store_close(s);
}

/* Column starts of a line, as the offsets (in characters, "…" counted once) after runs of
 * spaces; the first column starts at 0. */
static int column_start(const char *line, int column)
{
    int col = 0, chars = 0;
    bool in_space = false;
    for (const char *p = line; *p && *p != '\n'; p++) {
        if (((unsigned char)*p & 0xC0) == 0x80)
            continue;
        if (*p == ' ')
            in_space = true;
        else if (in_space) {
            in_space = false;
            if (++col == column)
                return chars;
        }
        chars++;
    }
    return -1;
}

static int line_width(const char *line)
{
    int chars = 0;
    for (const char *p = line; *p && *p != '\n'; p++)
        chars += ((unsigned char)*p & 0xC0) != 0x80;
    return chars;
}

START_TEST(test_tables_fit_a_narrow_terminal_and_stay_aligned)
{
    long_names_db();
    const char *widths[] = {"COLUMNS=80", "COLUMNS=100", "COLUMNS=60"};
    for (size_t w = 0; w < 3; w++) {
        char clock[64];
        snprintf(clock, sizeof(clock), "TLSGATE_NOW=%lld", FX_NOW);
        char *env[] = {clock, "TLSGATE_TTY=1", (char *)widths[w], NULL};
        char *out, *err;
        ck_assert_int_eq(tu_tlsgate_env(db, env, &out, &err, "inventory", "list", NULL), 0);
        int cols = atoi(widths[w] + strlen("COLUMNS="));
        /* every line fits, the long name is cut with an ellipsis, and SITE starts at the
         * same place on every line */
        ck_assert_ptr_null(strstr(out, LONG_NAME));
        ck_assert_ptr_nonnull(strstr(out, "\u2026"));
        int site_at = column_start(out, 1);
        ck_assert_int_gt(site_at, 0);
        for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n")) {
            ck_assert_msg(line_width(line) < cols, "%s: line wider than the terminal: %s",
                          widths[w], line);
            ck_assert_msg(column_start(line, 1) == site_at, "%s: misaligned: %s", widths[w], line);
        }
        free(out);
        free(err);
    }
}
END_TEST

START_TEST(test_tables_off_a_terminal_print_whole_values)
{
    long_names_db();
    char *env[] = {"TLSGATE_TTY=0", "COLUMNS=60", NULL};
    char *out, *err;
    ck_assert_int_eq(tu_tlsgate_env(db, env, &out, &err, "inventory", "list", NULL), 0);
    ck_assert_ptr_nonnull(strstr(out, LONG_NAME " P01"));
    ck_assert_ptr_null(strstr(out, "\u2026"));
    ck_assert_ptr_nonnull(strstr(out, "management_point;distribution_point"));
    free(out);
    free(err);
}
END_TEST

/* The front binary (cli/main.c "FRONT") starts without the network stack: none of the
 * libraries only tlsgate-net needs is in its ELF NEEDED list, and tlsgate-net has them all. */
START_TEST(test_front_binary_links_no_network_library)
{
    static const char *const net_libs[] = {"libcurl",   "libssl", "libcrypto",
                                           "libgnutls", "libuv",  "libmicrohttpd"};
    const char *bins[] = {tu_build_path("orchestrator/tlsgate"),
                          tu_build_path("orchestrator/tlsgate-net")};
    for (int b = 0; b < 2; b++) {
        char *argv[] = {"/usr/bin/env", "readelf", "-d", (char *)bins[b], NULL};
        char *out;
        ck_assert_int_eq(tu_run(argv, NULL, &out, NULL), 0);
        ck_assert_ptr_nonnull(strstr(out, "libsqlite3"));
        for (size_t i = 0; i < sizeof(net_libs) / sizeof(net_libs[0]); i++)
            ck_assert_msg(!strstr(out, net_libs[i]) == !b, "%s %s %s", bins[b],
                          b ? "lacks" : "links", net_libs[i]);
        free(out);
    }
}
END_TEST

static Suite *cli_suite(void)
{
    Suite *s = suite_create("cli");
    TCase *t = tu_tcase(s, "contract", setup, teardown,
                        TU_TESTS(test_every_command_answers_help_with_its_usage,
                                 test_every_command_refuses_an_unknown_option_with_exit_2,
                                 test_unknown_option_names_the_closest_one,
                                 test_bad_dates_are_bad_input_exit_3,
                                 test_tables_fit_a_narrow_terminal_and_stay_aligned,
                                 test_tables_off_a_terminal_print_whole_values,
                                 test_front_binary_links_no_network_library));
    tcase_set_timeout(t, 120);
    return s;
}

int main(void) { return tu_run_suite(cli_suite()); }
