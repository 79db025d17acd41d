/*
 * waivecmd.c — `tlsgate waive HOST --reason R [--until DATE]` and `tlsgate unwaive HOST`: the
 * commands over the waiver table (domain/waiver.h says what a waiver means). Each change is
 * written with its audit row in one transaction.
 */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "inventory.h"
#include "store.h"
#include "waiver.h"

/*
 * DATE: what utc_parse_time takes (YYYY-MM-DD, YYYY-MM-DDTHH:MM:SSZ), or RFC 3339 with a
 * fraction and/or a numeric offset (2026-12-31T18:00:00.5+02:00). Returns 0 or -EINVAL.
 */
static int parse_until(const char *text, long long *t)
{
    if (!utc_parse_time(text, t))
        return 0;
    size_t len = strlen(text);
    if (len < 20 || len > 40 || (text[10] != 'T' && text[10] != 't' && text[10] != ' '))
        return -EINVAL;
    char base[21];
    memcpy(base, text, 19);
    base[10] = 'T';
    base[19] = 'Z';
    base[20] = '\0';
    if (utc_parse_time(base, t))
        return -EINVAL;
    const char *p = text + 19;
    if (*p == '.') {
        p++;
        if (!isdigit((unsigned char)*p))
            return -EINVAL;
        while (isdigit((unsigned char)*p))
            p++; /* a waiver is not finer than a second */
    }
    if ((*p == 'Z' || *p == 'z') && p[1] == '\0')
        return 0;
    if ((*p != '+' && *p != '-') || strlen(p) != 6 || p[3] != ':' ||
        !isdigit((unsigned char)p[1]) || !isdigit((unsigned char)p[2]) ||
        !isdigit((unsigned char)p[4]) || !isdigit((unsigned char)p[5]))
        return -EINVAL;
    int hours = (p[1] - '0') * 10 + (p[2] - '0'), minutes = (p[4] - '0') * 10 + (p[5] - '0');
    if (hours > 23 || minutes > 59)
        return -EINVAL;
    long long offset = hours * 3600LL + minutes * 60LL;
    *t += *p == '+' ? -offset : offset; /* local time minus its offset is UTC */
    return 0;
}

static int fail(struct store *s, int rc)
{
    cli_error("%s", store_errmsg(s));
    store_rollback(s);
    return rc == -ENOENT ? EXIT_BADINPUT : EXIT_SYSTEM;
}

/* Opens the store, takes the write lock and finds `host`: EXIT_OK, or the exit code with the
 * message printed and nothing changed. */
static int begin_on_host(struct cli *cli, const char *host, struct store **out, struct inv_host *h)
{
    int code;
    struct store *s = cli_store(cli, false, &code);
    if (!s)
        return code;
    *out = s;
    int rc = store_begin(s, true);
    if (rc || (rc = inv_host_get(s, host, 0, h)))
        return fail(s, rc);
    return EXIT_OK;
}

static const struct cli_option waive_options[] = {{"reason", "R"}, {"until", "DATE"}, {NULL}};
static const struct cli_spec waive_spec = {
    .name = "waive",
    .usage = "Usage: tlsgate waive HOST --reason R [--until DATE] [--json]\n\n"
             "The host stops blocking gates and phases until DATE (YYYY-MM-DD, or RFC 3339\n"
             "such as 2026-12-31T18:00:00Z or 2026-12-31T18:00:00+02:00) or until\n"
             "`tlsgate unwaive HOST`. Waiving again replaces the waiver. A server's own\n"
             "waiver never opens its own gate. A DATE that is not a date, or not in the\n"
             "future, is bad input (exit 3).\n",
    .options = waive_options,
    .min_args = 1,
    .max_args = 1,
    .json = true,
};
const struct cli_spec *const waive_specs[] = {&waive_spec, NULL};

static const struct cli_spec unwaive_spec = {
    .name = "unwaive",
    .usage = "Usage: tlsgate unwaive HOST [--json]\n\n"
             "Removes the host's waiver: it blocks again whenever it is not ready.\n",
    .min_args = 1,
    .max_args = 1,
    .json = true,
};
const struct cli_spec *const unwaive_specs[] = {&unwaive_spec, NULL};

int cmd_waive(struct cli *cli, int argc, char **argv)
{
    struct cli_args a;
    int parsed = cli_parse(cli, &waive_spec, argc, argv, &a);
    if (parsed != CLI_RUN)
        return parsed;
    const char *host = a.argv[0], *reason = cli_value(&waive_spec, &a, "reason");
    const char *until = cli_value(&waive_spec, &a, "until");
    if (!reason) {
        cli_error("waive: --reason is required (see `tlsgate waive --help`)");
        return EXIT_USAGE;
    }
    if (strlen(reason) > WAIVER_REASON_MAX) {
        cli_error("waive: --reason is longer than %d bytes", WAIVER_REASON_MAX);
        return EXIT_BADINPUT;
    }
    long long until_at = 0, now = utc_now();
    if (until) {
        if (parse_until(until, &until_at)) {
            cli_error("waive: --until '%s' is not a date (YYYY-MM-DD or RFC 3339)", until);
            return EXIT_BADINPUT;
        }
        if (until_at <= now) {
            cli_error("waive: --until '%s' is not in the future: such a waiver would never count",
                      until);
            return EXIT_BADINPUT;
        }
    }

    struct store *s;
    struct inv_host h;
    int code = begin_on_host(cli, host, &s, &h);
    if (code)
        return code;
    int rc = waiver_set(s, h.id, reason, until ? until_at : 0, now, cli_user());
    char iso[24], outcome[96];
    if (until)
        snprintf(outcome, sizeof(outcome), "ok: waived until %s",
                 utc_iso8601(until_at, iso, sizeof(iso)));
    else
        snprintf(outcome, sizeof(outcome), "ok: waived until unwaived");
    if (rc || (rc = cli_audit(cli, outcome)) || (rc = store_commit(s)))
        return fail(s, rc);
    if (cli->json) {
        jsonout_print(stdout,
                      json_pack("{s:o, s:b, s:o, s:o}", "host", jsonout_text(h.name), "waived", 1,
                                "until", until ? json_string(iso) : json_null(), "reason",
                                jsonout_text(reason)));
    } else {
        printf("%s waived %s\n", TEXTCLEAN(h.name),
               until ? outcome + strlen("ok: waived ") : "until unwaived");
    }
    return EXIT_OK;
}

int cmd_unwaive(struct cli *cli, int argc, char **argv)
{
    struct cli_args a;
    int parsed = cli_parse(cli, &unwaive_spec, argc, argv, &a);
    if (parsed != CLI_RUN)
        return parsed;
    const char *host = a.argv[0];
    struct store *s;
    struct inv_host h;
    int code = begin_on_host(cli, host, &s, &h);
    if (code)
        return code;
    bool had = false;
    int rc = waiver_clear(s, h.id, &had);
    if (rc || (rc = cli_audit(cli, had ? "ok: unwaived" : "ok: had no waiver")) ||
        (rc = store_commit(s)))
        return fail(s, rc);
    if (cli->json) {
        jsonout_print(stdout, json_pack("{s:o, s:b, s:b}", "host", jsonout_text(h.name), "waived",
                                        0, "had_waiver", had));
    } else {
        printf("%s %s\n", TEXTCLEAN(h.name), had ? "unwaived" : "had no waiver");
    }
    return EXIT_OK;
}
