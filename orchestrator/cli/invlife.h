/*
 * invlife.h — the inventory lifecycle helpers of the inventory command (invlife.c): the diff of
 * an import or removal, and `inventory remove`. Command layer only.
 */
#ifndef TLSGATE_INVLIFE_H
#define TLSGATE_INVLIFE_H

#include <stdbool.h>

struct cli;

#include "poll.h"

/* How soon a running daemon sees an inventory change (the change counter's check). */
#define INVLIFE_DAEMON_NOTICE_S ((POLL_INVENTORY_CHECK_MS + 999) / 1000)

/* Walks the diff recorded in the current transaction (inv_diff_each): a dry run prints every
 * line ("+ NAME  ...", "~ NAME  field a -> b", "- NAME  ..."), a real one audits every removed
 * host (with `why`). counts gets added, changed, removed. 0 or the store's code. */
int invlife_diff(struct cli *cli, bool dry_run, const char *why, long counts[3]);

/* `tlsgate inventory remove HOST... [--dry-run]`: the n hosts `names`, all or none. */
int invlife_remove(struct cli *cli, char **names, int n, bool dry_run);

#endif
