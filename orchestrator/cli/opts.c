/*
 * opts.c — the one option parser of every command and subcommand (cli.h, "OPTIONS"): a table
 * of options per command (struct cli_spec) fed to getopt_long, so every command answers
 * --help / -h the same way (usage on stdout, exit 0), refuses an unknown option the same way
 * (exit 2, "did you mean" the closest option of that command), takes `--opt VALUE` and
 * `--opt=VALUE` anywhere among its arguments, and refuses the global --json where it prints
 * no data.
 */
#include "cli.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

/* Levenshtein distance of two short option names (capped: longer names just differ). */
static size_t edit_distance(const char *a, const char *b)
{
    enum { MAX = 64 };
    size_t la = strnlen(a, MAX - 1), lb = strnlen(b, MAX - 1);
    size_t row[MAX];
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

static void valid_options(const struct cli_spec *spec, char *buf, size_t size)
{
    size_t used = (size_t)snprintf(buf, size, "--help");
    for (const struct cli_option *o = spec->options; o && o->name && used < size; o++)
        used += (size_t)snprintf(buf + used, size - used, ", --%s%s%s", o->name, o->arg ? " " : "",
                                 o->arg ? o->arg : "");
    if (spec->json && used < size)
        snprintf(buf + used, size - used, ", --json");
}

/* "unknown option --x; did you mean --y?" naming the closest option of `spec`. */
static void unknown_option(const struct cli_spec *spec, const char *given)
{
    char name[64];
    const char *bare = given;
    while (*bare == '-')
        bare++;
    snprintf(name, sizeof(name), "%.*s", (int)strcspn(bare, "="), bare);
    const char *best = NULL;
    size_t best_d = (size_t)-1;
    const char *extra[] = {"help", spec->json ? "json" : NULL};
    for (const struct cli_option *o = spec->options; o && o->name; o++) {
        size_t d = edit_distance(name, o->name);
        if (d < best_d)
            best_d = d, best = o->name;
    }
    for (size_t i = 0; i < 2; i++) {
        if (extra[i] && edit_distance(name, extra[i]) < best_d)
            best_d = edit_distance(name, extra[i]), best = extra[i];
    }
    size_t len = strlen(name);
    if (best && best_d <= (len < 6 ? 2 : len / 3)) {
        cli_error("%s: unknown option %.*s; did you mean --%s?", spec->name,
                  (int)strcspn(given, "="), given, best);
    } else {
        char valid[512];
        valid_options(spec, valid, sizeof(valid));
        cli_error("%s: unknown option %.*s (valid: %s)", spec->name, (int)strcspn(given, "="),
                  given, valid);
    }
}

void cli_usage(const struct cli_spec *spec, FILE *out) { fputs(spec->usage, out); }

int cli_parse(struct cli *cli, const struct cli_spec *spec, int argc, char **argv,
              struct cli_args *a)
{
    memset(a, 0, sizeof(*a));
    struct option longopts[CLI_MAX_OPTIONS + 2];
    int n = 0;
    for (const struct cli_option *o = spec->options; o && o->name; o++) {
        if (n >= CLI_MAX_OPTIONS) {
            cli_error("%s: too many options in its table", spec->name); /* a programming error */
            return EXIT_SYSTEM;
        }
        longopts[n] = (struct option){o->name, o->arg ? required_argument : no_argument, NULL, n};
        n++;
    }
    longopts[n++] = (struct option){"help", no_argument, NULL, 'h'};
    longopts[n] = (struct option){NULL, 0, NULL, 0};

    /* argv[0] is the (sub)command word; getopt starts after it. optind = 0 re-initialises
     * GNU getopt, which then permutes: options may follow the arguments. */
    opterr = 0;
    optind = 0;
    int c, index;
    while ((c = getopt_long(argc, argv, ":h", longopts, &index)) != -1) {
        if (c == 'h') {
            cli_usage(spec, stdout);
            return EXIT_OK;
        }
        if (c == '?') {
            char shortopt[3] = {'-', (char)optopt, '\0'};
            unknown_option(spec, optopt ? shortopt : argv[optind - 1]);
            return EXIT_USAGE;
        }
        if (c == ':') {
            cli_error("%s: %s needs a value (see `tlsgate %s --help`)", spec->name,
                      argv[optind - 1], spec->name);
            return EXIT_USAGE;
        }
        const struct cli_option *o = &spec->options[c];
        if (o->arg && !*optarg) {
            cli_error("%s: --%s needs a non-empty value", spec->name, o->name);
            return EXIT_USAGE;
        }
        a->given[c] = true;
        a->value[c] = o->arg ? optarg : NULL;
    }
    a->argc = argc - optind;
    a->argv = argv + optind;
    if (cli && cli->json && !spec->json) {
        cli_error("%s: --json does not apply here (it prints no data to read)", spec->name);
        return EXIT_USAGE;
    }
    if (a->argc < spec->min_args) {
        cli_error("%s: missing argument (see `tlsgate %s --help`)", spec->name, spec->name);
        return EXIT_USAGE;
    }
    if (spec->max_args >= 0 && a->argc > spec->max_args) {
        cli_error("%s: unexpected argument '%s' (see `tlsgate %s --help`)", spec->name,
                  a->argv[spec->max_args], spec->name);
        return EXIT_USAGE;
    }
    return CLI_RUN;
}

static const struct cli_option *find_option(const struct cli_spec *spec, const char *name,
                                            int *index)
{
    for (int i = 0; spec->options && spec->options[i].name; i++)
        if (!strcmp(spec->options[i].name, name)) {
            *index = i;
            return &spec->options[i];
        }
    return NULL;
}

const char *cli_value(const struct cli_spec *spec, const struct cli_args *a, const char *name)
{
    int i;
    return find_option(spec, name, &i) ? a->value[i] : NULL;
}

bool cli_given(const struct cli_spec *spec, const struct cli_args *a, const char *name)
{
    int i;
    return find_option(spec, name, &i) && a->given[i];
}

int cli_pick(const char *command, const char *usage, const struct cli_spec *const subs[], int argc,
             char **argv)
{
    if (argc < 2) {
        fputs(usage, stderr);
        return -EXIT_USAGE - 1;
    }
    const char *word = argv[1];
    if (!strcmp(word, "--help") || !strcmp(word, "-h") || !strcmp(word, "help")) {
        fputs(usage, stdout);
        return -EXIT_OK - 1;
    }
    const char *best = NULL;
    size_t best_d = (size_t)-1;
    char list[256] = "";
    size_t used = 0;
    for (int i = 0; subs[i]; i++) {
        if (!strcmp(word, subs[i]->word))
            return i;
        size_t d = edit_distance(word, subs[i]->word);
        if (d < best_d)
            best_d = d, best = subs[i]->word;
        used += (size_t)snprintf(list + used, used < sizeof(list) ? sizeof(list) - used : 0, "%s%s",
                                 i ? ", " : "", subs[i]->word);
    }
    if (word[0] == '-')
        cli_error("%s: %s before the subcommand (%s)", command, word, list);
    else if (best && best_d <= 2)
        cli_error("%s: unknown subcommand '%s'; did you mean '%s'?", command, word, best);
    else
        cli_error("%s: unknown subcommand '%s' (%s)", command, word, list);
    return -EXIT_USAGE - 1;
}

int cli_parse_sub(struct cli *cli, const char *command, const char *usage,
                  const struct cli_spec *const subs[], int argc, char **argv,
                  const struct cli_spec **spec, struct cli_args *a)
{
    int i = cli_pick(command, usage, subs, argc, argv);
    if (i < 0)
        return -i - 1;
    *spec = subs[i];
    return cli_parse(cli, subs[i], argc - 1, argv + 1, a);
}
