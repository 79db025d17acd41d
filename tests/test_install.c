/*
 * test_install.c — tlsgate as a service: `meson install --destdir` puts every file where it is
 * expected, the installed units pass `systemd-analyze verify` and score well in `systemd-analyze
 * security`, each manual page renders without a groff warning and names every command, option
 * and config key, and the bash completion offers every command, subcommand and option that
 * `tlsgate --help` and each `tlsgate COMMAND --help` list (the command table, walked, not listed
 * here by hand).
 *
 * A tool this machine lacks (systemd-analyze, groff, man) prints a "SKIP:" line and that part
 * passes; everything else runs.
 */
#include <ctype.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testutil.h"

static char *dest;         /* the --destdir of this run */
static char prefix[1024];  /* the build's prefix */
static char dirs[5][1024]; /* bindir, sysconfdir, datadir, mandir, libdir for units (absolute) */
enum { BIN, SYSCONF, DATA, MAN, LIB };

static bool have(const char *tool)
{
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "command -v %s >/dev/null 2>&1", tool);
    return system(cmd) == 0;
}

/* "DEST/ABS" for an absolute installed path. */
static const char *in_dest(const char *abs)
{
    static char bufs[4][4096];
    static int next;
    char *b = bufs[next++ % 4];
    snprintf(b, sizeof(bufs[0]), "%s%s", dest, abs);
    return b;
}

static const char *joined(int which, const char *rel)
{
    static char bufs[8][2048];
    static int next;
    char *b = bufs[next++ % 8];
    snprintf(b, sizeof(bufs[0]), "%s/%s", dirs[which], rel);
    return b;
}

/* The next "--word" of a --help text at or after *pos into `opt` (a bare "--" is skipped);
 * moves *pos past it. false when there is none. */
static bool next_option(const char **pos, char *opt, size_t size)
{
    for (const char *o = *pos; (o = strstr(o, "--"));) {
        int len = 2;
        while (isalnum((unsigned char)o[len]) || o[len] == '-')
            len++;
        *pos = o + len;
        if (len > 2) {
            snprintf(opt, size, "%.*s", len, o);
            return true;
        }
        o += len;
    }
    return false;
}

static void install_once(void)
{
    dest = tu_tmpdir();
    const char *meson = getenv("MESON");
    ck_assert_msg(meson && *meson, "MESON is not set (tests/meson.build sets it)");
    const char *build = getenv("TLSGATE_BUILD_ROOT");
    char *err = NULL, *out = NULL;
    char *argv[] = {(char *)meson, "install",      "-C",      (char *)build, "--destdir",
                    dest,          "--no-rebuild", "--quiet", NULL};
    int rc = tu_run(argv, NULL, NULL, &err);
    ck_assert_msg(rc == 0, "meson install failed (%d): %s", rc, err);
    free(err);
    /* Where this build installs: the options as meson has them. */
    char *intro[] = {(char *)meson, "introspect", (char *)build, "--buildoptions", NULL};
    ck_assert_int_eq(tu_run(intro, NULL, &out, NULL), 0);
    json_error_t je;
    json_t *opts = json_loads(out, 0, &je);
    ck_assert_msg(opts != NULL, "introspect: %s", je.text);
    free(out);
    const char *want[] = {"prefix", "bindir", "sysconfdir", "datadir", "mandir"};
    char vals[5][1024] = {{0}};
    size_t i;
    json_t *o;
    json_array_foreach(opts, i, o)
    {
        const char *name = json_string_value(json_object_get(o, "name"));
        for (int k = 0; k < 5; k++)
            if (name && !strcmp(name, want[k]))
                snprintf(vals[k], sizeof(vals[k]), "%s",
                         json_string_value(json_object_get(o, "value")));
    }
    json_decref(opts);
    snprintf(prefix, sizeof(prefix), "%s", vals[0]);
    for (int k = 1; k < 5; k++) {
        if (vals[k][0] == '/')
            snprintf(dirs[k - 1], sizeof(dirs[0]), "%s", vals[k]);
        else
            snprintf(dirs[k - 1], sizeof(dirs[0]), "%.500s/%.500s", prefix, vals[k]);
    }
    snprintf(dirs[LIB], sizeof(dirs[0]), "%.1000s/lib", prefix);
}

static void drop_install(void)
{
    tu_rmtree(dest);
    free(dest);
}

static void assert_file(const char *abs, bool executable)
{
    struct stat st;
    ck_assert_msg(lstat(in_dest(abs), &st) == 0, "not installed: %s", abs);
    if (S_ISLNK(st.st_mode))
        ck_assert_msg(stat(in_dest(abs), &st) == 0, "dangling link: %s", abs);
    ck_assert_msg(S_ISREG(st.st_mode) && st.st_size > 0, "not a file: %s", abs);
    if (executable)
        ck_assert_msg(st.st_mode & S_IXUSR, "not executable: %s", abs);
}

/* assert_file for each of the NULL-ended names under install folder `which`. */
static void assert_files(int which, bool executable, ...)
{
    va_list ap;
    va_start(ap, executable);
    for (const char *rel; (rel = va_arg(ap, const char *));)
        assert_file(joined(which, rel), executable);
    va_end(ap);
}

/* ------------------------------------------------------------------ the command table */

/* The commands of `tlsgate --help` ("commands:" then "  NAME  summary" lines). */
static int commands(char names[32][32])
{
    char *out = NULL;
    char *argv[] = {(char *)tu_build_path("orchestrator/tlsgate"), "--help", NULL};
    ck_assert_int_eq(tu_run(argv, NULL, &out, NULL), 0);
    int n = 0;
    char *section = strstr(out, "commands:\n");
    ck_assert_ptr_nonnull(section);
    for (char *line = strtok(section + 10, "\n"); line && n < 32; line = strtok(NULL, "\n")) {
        if (strncmp(line, "  ", 2) || !islower((unsigned char)line[2]))
            break;
        sscanf(line, " %31s", names[n++]);
    }
    free(out);
    ck_assert_int_gt(n, 5);
    return n;
}

/* One usage form of a command: its subcommand ("" when none) and its options. */
struct form {
    char sub[32];
    char opts[16][32];
    int nopts;
};

/* The forms of `tlsgate CMD --help`: every line "Usage: tlsgate ... CMD ..." or
 * "       tlsgate ... CMD ...". The subcommand is the lower-case word right after CMD; the
 * options are the --words of the line. */
static int forms_of(const char *cmd, struct form forms[16])
{
    char *out = NULL;
    char *argv[] = {(char *)tu_build_path("orchestrator/tlsgate"), (char *)cmd, "--help", NULL};
    int rc = tu_run(argv, NULL, &out, NULL);
    ck_assert_msg(rc == 0, "tlsgate %s --help: exit %d", cmd, rc);
    int n = 0;
    for (char *line = strtok(out, "\n"); line && n < 16; line = strtok(NULL, "\n")) {
        char *t = line;
        if (!strncasecmp(t, "usage:", 6))
            t += 6;
        while (*t == ' ')
            t++;
        if (strncmp(t, "tlsgate ", 8))
            continue;
        struct form *f = &forms[n++];
        memset(f, 0, sizeof(*f));
        char words[64][64];
        int nw = 0;
        for (char *w = t; *w && nw < 64;) {
            while (*w == ' ')
                w++;
            int len = 0;
            while (w[len] && w[len] != ' ')
                len++;
            if (!len)
                break;
            snprintf(words[nw++], sizeof(words[0]), "%.*s", len, w);
            w += len;
        }
        int at = -1;
        for (int i = 1; i < nw && at < 0; i++)
            if (!strcmp(words[i], cmd))
                at = i;
        ck_assert_msg(at > 0, "usage line without the command: %s", line);
        if (at + 1 < nw && islower((unsigned char)words[at + 1][0]))
            snprintf(f->sub, sizeof(f->sub), "%s", words[at + 1]);
        for (int i = at + 1; i < nw; i++) {
            char *o = strstr(words[i], "--");
            if (!o)
                continue;
            int len = 2;
            while (isalnum((unsigned char)o[len]) || o[len] == '-')
                len++;
            if (len > 2 && f->nopts < 16)
                snprintf(f->opts[f->nopts++], sizeof(f->opts[0]), "%.*s", len, o);
        }
    }
    free(out);
    return n;
}

/* ------------------------------------------------------------------ bash completion */

/* What the installed completion offers for the words typed (the last one being completed). */
static char *complete(const char *words)
{
    char script[4096];
    snprintf(script, sizeof(script),
             "source '%s' || exit 9; COMP_WORDS=(%s); COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); "
             "[[ \"${COMP_WORDS[0]}\" == tlsgate ]] && _tlsgate || _tlsgate_collector; "
             "printf '%%s\\n' \"${COMPREPLY[@]}\"",
             in_dest(joined(DATA, "bash-completion/completions/tlsgate")), words);
    char *argv[] = {"/bin/bash", "--norc", "--noprofile", "-c", script, NULL};
    char *out = NULL, *err = NULL;
    int rc = tu_run(argv, NULL, &out, &err);
    ck_assert_msg(rc == 0, "completion of '%s': exit %d: %s", words, rc, err);
    free(err);
    return out;
}

static bool offers(const char *reply, const char *word)
{
    size_t n = strlen(word);
    for (const char *p = reply; (p = strstr(p, word)); p += n)
        if ((p == reply || p[-1] == '\n') && p[n] == '\n')
            return true;
    return false;
}

START_TEST(install_puts_every_file_where_expected)
{
    assert_files(BIN, true, "tlsgate", "tlsgate-collector", NULL);
    assert_files(LIB, false, "systemd/system/tlsgate.service",
                 "systemd/system/tlsgate-collector.service", "sysusers.d/tlsgate.conf",
                 "tmpfiles.d/tlsgate.conf", NULL);
    assert_files(SYSCONF, false, "tlsgate/tlsgate.json.example", "tlsgate/collector.json.example",
                 NULL);
    assert_files(DATA, false, "bash-completion/completions/tlsgate",
                 "bash-completion/completions/tlsgate-collector", NULL);
    assert_files(MAN, false, "man1/tlsgate.1", "man8/tlsgate-collector.8", "man5/tlsgate.json.5",
                 NULL);

    /* The units run the installed binaries. */
    char *unit = tu_read_file(in_dest(joined(LIB, "systemd/system/tlsgate.service")), NULL);
    char want[2200];
    snprintf(want, sizeof(want), "ExecStart=%s ", joined(BIN, "tlsgate"));
    ck_assert_msg(strstr(unit, want), "no '%s' in tlsgate.service", want);
    ck_assert_ptr_null(strstr(unit, "@BINDIR@"));
    free(unit);
    unit = tu_read_file(in_dest(joined(LIB, "systemd/system/tlsgate-collector.service")), NULL);
    snprintf(want, sizeof(want), "ExecStart=%s ", joined(BIN, "tlsgate-collector"));
    ck_assert_msg(strstr(unit, want), "no '%s' in tlsgate-collector.service", want);
    free(unit);

    /* The installed binary runs, and the sample config is one it accepts. */
    char *dir = tu_tmpdir();
    char *db = strdup(tu_path(dir, "t.db"));
    char *bin = strdup(in_dest(joined(BIN, "tlsgate")));
    char *example = strdup(in_dest(joined(SYSCONF, "tlsgate/tlsgate.json.example")));
    char *err = NULL;
    char *init[] = {bin, "--db", db, "init", NULL};
    ck_assert_int_eq(tu_run(init, NULL, NULL, &err), 0);
    free(err);
    err = NULL;
    char *audit[] = {bin, "--db", db, "--config", example, "audit", NULL};
    int rc = tu_run(audit, NULL, NULL, &err);
    ck_assert_msg(rc == 0, "the sample config is refused: %s", err);
    free(err);
    tu_rmtree(dir);
    free(dir);
    free(db);
    free(bin);
    free(example);
}
END_TEST

START_TEST(units_verify_and_are_hardened)
{
    if (!have("systemd-analyze")) {
        printf("SKIP: systemd-analyze not installed: units not verified\n");
        return;
    }
    /* The installed units, with the installed binaries' paths pointed at this build's (verify
     * checks that ExecStart can run; nothing is installed on this machine). */
    char *dir = tu_tmpdir();
    const char *units[] = {"tlsgate.service", "tlsgate-collector.service"};
    const char *built[] = {"orchestrator/tlsgate", "collectors/tlsgate-collector"};
    const char *names[] = {"tlsgate", "tlsgate-collector"};
    char *paths[2];
    for (int i = 0; i < 2; i++) {
        char rel[256];
        snprintf(rel, sizeof(rel), "systemd/system/%s", units[i]);
        char *text = tu_read_file(in_dest(joined(LIB, rel)), NULL);
        ck_assert_ptr_nonnull(text);
        char from[2200], to[4200];
        snprintf(from, sizeof(from), "ExecStart=%s ", joined(BIN, names[i]));
        snprintf(to, sizeof(to), "ExecStart=%s ", tu_build_path(built[i]));
        char *at = strstr(text, from);
        ck_assert_ptr_nonnull(at);
        char *out = NULL;
        ck_assert_int_ge(asprintf(&out, "%.*s%s%s", (int)(at - text), text, to, at + strlen(from)),
                         0);
        paths[i] = strdup(tu_path(dir, units[i]));
        tu_write_file(paths[i], out, strlen(out));
        free(out);
        free(text);
    }
    /* Documentation=man:... is checked against the installed pages. */
    char manpath[4200];
    snprintf(manpath, sizeof(manpath), "MANPATH=%s", in_dest(dirs[MAN]));
    char *env[] = {manpath, NULL};
    char *err = NULL, *out = NULL;
    char *verify[] = {"/usr/bin/env", "systemd-analyze", "verify", paths[0], paths[1], NULL};
    int rc = tu_run(verify, env, &out, &err);
    ck_assert_msg(rc == 0 && !strstr(err, "tlsgate"), "systemd-analyze verify: exit %d: %s%s", rc,
                  out, err);
    free(err);
    free(out);
    for (int i = 0; i < 2; i++) {
        err = out = NULL;
        char *sec[] = {"/usr/bin/env",  "systemd-analyze", "security",
                       "--offline=yes", paths[i],          NULL};
        rc = tu_run(sec, NULL, &out, &err);
        const char *score = out ? strstr(out, "Overall exposure level for ") : NULL;
        if (rc != 0 || !score) {
            printf("SKIP: systemd-analyze security --offline not available (%s)\n", err ? err : "");
        } else {
            double level = 99;
            const char *colon = strchr(score, ':');
            ck_assert_ptr_nonnull(colon);
            level = strtod(colon + 1, NULL);
            printf("%s: systemd-analyze security exposure %.1f\n", units[i], level);
            ck_assert_msg(level <= 2.0, "%s: exposure %.1f (want at most 2.0):\n%s", units[i],
                          level, out);
        }
        free(out);
        free(err);
    }
    for (int i = 0; i < 2; i++)
        free(paths[i]);
    tu_rmtree(dir);
    free(dir);
}
END_TEST

/* A page as plain text (groff, ASCII, no overstrike), or NULL without groff. */
static char *render(const char *page, char **warnings)
{
    char *argv[] = {"/usr/bin/env", "groff", "-man",       "-ww", "-Tascii",
                    "-P",           "-cbou", (char *)page, NULL};
    char *out = NULL;
    int rc = tu_run(argv, NULL, &out, warnings);
    ck_assert_msg(rc == 0, "groff %s: exit %d", page, rc);
    return out;
}

START_TEST(man_pages_render_and_are_complete)
{
    const char *pages[] = {"man1/tlsgate.1", "man8/tlsgate-collector.8", "man5/tlsgate.json.5"};
    if (!have("groff")) {
        printf("SKIP: groff not installed: man pages not rendered\n");
        return;
    }
    char *text[3];
    for (int i = 0; i < 3; i++) {
        char *page = strdup(in_dest(joined(MAN, pages[i])));
        char *warnings = NULL;
        text[i] = render(page, &warnings);
        ck_assert_msg(!warnings || !warnings[0], "%s: groff warns:\n%s", pages[i], warnings);
        free(warnings);
        char *err = NULL;
        char *zargv[] = {"/usr/bin/env", "groff", "-man", "-ww", "-z", page, NULL};
        ck_assert_int_eq(tu_run(zargv, NULL, NULL, &err), 0);
        ck_assert_msg(!err || !err[0], "%s: groff -ww -z: %s", pages[i], err);
        free(err);
        if (have("man")) {
            char *out = NULL;
            err = NULL;
            char *margv[] = {"/usr/bin/env", "man", "--warnings", "-l", page, NULL};
            char *menv[] = {"MANWIDTH=80", "MANPAGER=cat", "PAGER=cat", NULL};
            int rc = tu_run(margv, menv, &out, &err);
            ck_assert_msg(rc == 0 && out && strlen(out) > 200 && (!err || !err[0]),
                          "man -l %s: exit %d: %s", pages[i], rc, err);
            free(out);
            free(err);
        } else {
            printf("SKIP: man not installed: `man -l` not run\n");
        }
        free(page);
    }

    /* tlsgate(1): every command, and every option of every command's usage. */
    char names[32][32];
    int n = commands(names);
    for (int i = 0; i < n; i++) {
        ck_assert_msg(strstr(text[0], names[i]), "tlsgate.1 does not name command %s", names[i]);
        struct form forms[16];
        int nf = forms_of(names[i], forms);
        for (int f = 0; f < nf; f++) {
            char both[80];
            snprintf(both, sizeof(both), "%.31s %.31s", names[i], forms[f].sub);
            ck_assert_msg(!forms[f].sub[0] || strstr(text[0], both), "tlsgate.1 lacks '%s'", both);
            for (int o = 0; o < forms[f].nopts; o++)
                ck_assert_msg(strstr(text[0], forms[f].opts[o]), "tlsgate.1 lacks %s (of %s)",
                              forms[f].opts[o], both);
        }
    }
    /* tlsgate-collector(8): every option of its --help. */
    char *out = NULL;
    char *cargv[] = {(char *)tu_build_path("collectors/tlsgate-collector"), "--help", NULL};
    ck_assert_int_eq(tu_run(cargv, NULL, &out, NULL), 0);
    int seen = 0;
    char opt[40];
    for (const char *o = out; next_option(&o, opt, sizeof(opt)); seen++)
        ck_assert_msg(strstr(text[1], opt), "tlsgate-collector.8 lacks %s", opt);
    ck_assert_int_gt(seen, 8);
    free(out);
    /* tlsgate.json(5): every key the config knows (the list its unknown-key error gives). */
    char *dir = tu_tmpdir();
    const char *cfg = tu_path(dir, "c.json");
    tu_write_file(cfg, "{\"no_such_key\": 1}", 18);
    char *err = NULL;
    char *kargv[] = {(char *)tu_build_path("orchestrator/tlsgate"),
                     "--db",
                     (char *)tu_path(dir, "x.db"),
                     "--config",
                     (char *)cfg,
                     "audit",
                     NULL};
    ck_assert_int_eq(tu_run(kargv, NULL, NULL, &err), 3);
    char *known = strstr(err, "(known: ");
    ck_assert_msg(known, "no key list in: %s", err);
    int keys = 0;
    for (char *k = strtok(known + 8, ", )\n"); k; k = strtok(NULL, ", )\n")) {
        /* a .TP tag: the key at the tag indent, then its text on the line or the next */
        char tag[64], tag_nl[64];
        snprintf(tag, sizeof(tag), "\n       %s ", k);
        snprintf(tag_nl, sizeof(tag_nl), "\n       %s\n", k);
        ck_assert_msg(strstr(text[2], tag) || strstr(text[2], tag_nl),
                      "tlsgate.json.5 does not describe key %s", k);
        keys++;
    }
    ck_assert_int_ge(keys, 10);
    free(err);
    tu_rmtree(dir);
    free(dir);
    for (int i = 0; i < 3; i++)
        free(text[i]);
}
END_TEST

START_TEST(completion_offers_the_whole_command_table)
{
    char names[32][32];
    int n = commands(names);
    char *reply = complete("tlsgate ''");
    for (int i = 0; i < n; i++)
        ck_assert_msg(offers(reply, names[i]), "'tlsgate <TAB>' does not offer %s:\n%s", names[i],
                      reply);
    free(reply);
    reply = complete("tlsgate --");
    ck_assert(offers(reply, "--db") && offers(reply, "--config") && offers(reply, "--json"));
    free(reply);
    /* Global options anywhere: the command is still found after them. */
    reply = complete("tlsgate --db x.db gate ''");
    ck_assert(offers(reply, "check") && offers(reply, "list"));
    free(reply);

    for (int i = 0; i < n; i++) {
        struct form forms[16];
        int nf = forms_of(names[i], forms);
        for (int f = 0; f < nf; f++) {
            char words[256];
            if (forms[f].sub[0]) {
                snprintf(words, sizeof(words), "tlsgate %.31s ''", names[i]);
                reply = complete(words);
                ck_assert_msg(offers(reply, forms[f].sub), "'%s' does not offer %s:\n%s", words,
                              forms[f].sub, reply);
                free(reply);
            }
            snprintf(words, sizeof(words), "tlsgate %.31s %.31s --", names[i], forms[f].sub);
            reply = complete(words);
            for (int o = 0; o < forms[f].nopts; o++)
                ck_assert_msg(offers(reply, forms[f].opts[o]), "'%s' does not offer %s:\n%s", words,
                              forms[f].opts[o], reply);
            free(reply);
        }
    }
    /* Values where the option takes one. */
    reply = complete("tlsgate export csv --view ''");
    ck_assert(offers(reply, "hosts") && offers(reply, "summary"));
    free(reply);

    /* The collector: every option of its --help. */
    char *out = NULL;
    char *cargv[] = {(char *)tu_build_path("collectors/tlsgate-collector"), "--help", NULL};
    ck_assert_int_eq(tu_run(cargv, NULL, &out, NULL), 0);
    reply = complete("tlsgate-collector --");
    char opt[40];
    for (const char *o = out; next_option(&o, opt, sizeof(opt));)
        ck_assert_msg(offers(reply, opt), "'tlsgate-collector --' does not offer %s", opt);
    free(reply);
    free(out);
}
END_TEST

static Suite *install_suite(void)
{
    Suite *s = suite_create("install");
    TCase *tc = tu_tcase(s, "install", NULL, NULL,
                         TU_TESTS(install_puts_every_file_where_expected,
                                  units_verify_and_are_hardened, man_pages_render_and_are_complete,
                                  completion_offers_the_whole_command_table));
    /* One install for the whole case (unchecked: it runs in the parent, before the forks). */
    tcase_add_unchecked_fixture(tc, install_once, drop_install);
    tcase_set_timeout(tc, 120);
    return s;
}

int main(void) { return tu_run_suite(install_suite()); }
