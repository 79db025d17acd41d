/*
 * wireprint.c — the wire lines of `host show` and `gate check` (what the last probe found, and
 * which clients spoke legacy TLS to the server lately), from domain/wire.h.
 *
 * A file of its own, not part of probecmd.c: the probe's handshakes (wire/probe.c) need OpenSSL,
 * and the read-only commands that print these lines are linked without it (main.c "FRONT").
 */
#include <stdbool.h>
#include <stdio.h>

#include "cli.h"
#include "jsonout.h"
#include "store.h"
#include "utc.h"
#include "wire.h"

int cli_print_wire(struct cli *cli, struct store *s, long long id, const char *name,
                   bool legacy_disabled, const char *indent)
{
    struct wire_summary w;
    long long now = utc_now();
    long seen = 0;
    int rc = wire_summary_get(s, id, &w);
    if (!rc)
        rc = wire_legacy_blockers(s, name, now - cli->config.evidence_window, now, &seen, NULL,
                                  NULL);
    if (rc)
        return rc;
    char when[UTC_ISO8601_SIZE];
    utc_iso8601(w.at, when, sizeof(when));
    bool restart = w.legacy_accepted && legacy_disabled;
    if (cli->json) {
        printf(",\"wire\":{\"probed\":%s,\"at\":", w.probed ? "true" : "false");
        if (w.probed)
            printf("\"%s\"", when);
        else
            fputs("null", stdout);
        fputs(",\"legacy_accepted\":", stdout);
        jsonout_string(stdout, w.detail);
        printf(",\"restart_pending\":%s,\"legacy_clients\":%ld}", restart ? "true" : "false", seen);
        return 0;
    }
    if (!w.probed)
        printf("%swire: never probed (`tlsgate probe %s`)\n", indent, name);
    else if (!w.legacy_accepted)
        printf("%swire: probe at %s found no legacy protocol accepted\n", indent, when);
    else
        printf("%swire: probe at %s found %s accepted%s\n", indent, when, w.detail,
               restart ? ": RESTART PENDING (the registry says they are off; SCHANNEL reads it "
                         "at boot: restart the server, then probe again)"
                       : "");
    if (seen)
        printf("%swire: %ld client address%s spoke legacy TLS to it in the last %ld days "
               "(`tlsgate evidence list --server %s --legacy`)\n",
               indent, seen, seen == 1 ? "" : "es", cli->config.evidence_window / 86400, name);
    return 0;
}
