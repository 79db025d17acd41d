/*
 * fuzz_collector_config.c — libFuzzer target for the collector's config file
 * (`tlsgate-collector --config FILE`): the options parser of collectors/collector.c, included
 * here so its static functions (parse_options, load_config, parse_listen) are exercised exactly
 * as the collector runs them, from a real file, before anything would listen.
 *
 * Contract: the file is refused with exit code 2 (usage: something required is missing) or 3
 * (bad input) and an error line in the collector's log that names the file or the missing
 * option; or accepted, and then the options are complete: listen, cert, key, ca and the client
 * CN set, exactly one source (1..64 .reg files or a facts file), an interval from 1 s to a week,
 * every path absolute or under the config's folder, and the listen value either parses into an
 * address and port or is refused. Anything else is abort().
 */
#include "../../collectors/collector.c"

#include "fuzzutil.h"

static char *cfg_path, *cfg_dir;
static char last_error[1024];
static int errors;

static void sink(int level, const char *line, void *arg)
{
    (void)arg;
    if (level == COLLECTOR_LOG_ERROR) {
        errors++;
        snprintf(last_error, sizeof(last_error), "%s", line);
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    cfg_path = fuzz_temp_path("collector.json");
    cfg_dir = fuzz_temp_path("");
    collector_set_log_sink(sink, NULL);
    return 0;
}

static void check_path(const char *p)
{
    if (!p || !*p || (p[0] != '/' && strncmp(p, cfg_dir, strlen(cfg_dir)) != 0))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_write_file(cfg_path, data, size);
    char *argv[] = {"tlsgate-collector", "--config", cfg_path, NULL};
    struct options o;
    memset(&o, 0, sizeof(o));
    errors = 0;
    last_error[0] = '\0';
    optind = 1;
    int rc = parse_options(3, argv, &o);
    if (rc != 0) {
        if ((rc != EXIT_USAGE && rc != EXIT_INPUT) || errors != 1 ||
            (!strstr(last_error, cfg_path) && !strstr(last_error, "required") &&
             !strstr(last_error, "source")))
            fuzz_die("refusal %d without a message naming the file: %s", rc, last_error);
        options_release(&o);
        return 0;
    }
    if (errors || !o.listen || !o.client_cn || o.interval < 1 || o.interval > MAX_INTERVAL ||
        o.nregfiles > MAX_REGFILES || (o.nregfiles > 0) + (o.facts != NULL) != 1 ||
        o.source != (o.facts ? SOURCE_FACTS : SOURCE_REGFILE))
        abort();
    check_path(o.cert);
    check_path(o.key);
    check_path(o.ca);
    if (o.facts)
        check_path(o.facts);
    for (size_t i = 0; i < o.nregfiles; i++)
        check_path(o.regfiles[i]);
    char addr[64];
    uint16_t port;
    /* parse_listen only splits ADDRESS:PORT; the address itself is checked when it is bound
     * (server_start refuses what inet_pton does not take, with a message). */
    if (parse_listen(o.listen, addr, sizeof(addr), &port) == 0 &&
        (strlen(addr) == 0 || strlen(addr) >= sizeof(addr)))
        fuzz_die("listen \"%s\" split into an empty or overlong address", o.listen);
    options_release(&o);
    return 0;
}
