/*
 * invimport: the inventory's importer — hosts or explicit edges from CSV or JSON into the
 * `host`, `site` and `edge` tables, all or nothing (invimport.c says how). Part of the inventory
 * module (inventory.h); the command is `tlsgate inventory import` (cli/invcmd.c).
 */
#ifndef TLSGATE_INVIMPORT_H
#define TLSGATE_INVIMPORT_H

#include <stdbool.h>
#include <stdio.h>

#include "store.h"

/* The progress callback of a long import is called every this many rows. */
#define INV_IMPORT_PROGRESS_EVERY 100000

/* One import: what the caller says, and what the importer found. */
struct inv_import {
    const char *path;                       /* named in every message */
    long long now;                          /* added_at / updated_at of the rows */
    const char *user;                       /* entered_by of a new site */
    void (*progress)(void *ctx, long rows); /* may be NULL */
    void *progress_ctx;
    /* Hosts of this site that the file does not list are removed (with their reports, verdicts,
     * poll state and waiver: FK cascade); the file must list at least one host of the site. */
    const char *prune_site;
    /* Record every added and changed host too, for inv_diff_each (a --dry-run's diff); removed
     * hosts are always recorded. */
    bool track;
    /* Out. */
    long rows;             /* hosts or edges read */
    bool edges;            /* the file was an explicit-edges file */
    long long reevaluated; /* stored reports re-evaluated for changed roles */
    long long hosts_before, hosts_after;
    long removed;                /* by prune_site */
    char note[STORE_ERROR_SIZE]; /* what was read but ignored (extra columns), or "" */
    char err[STORE_ERROR_SIZE];  /* the first fault: FILE:LINE:FIELD: why, or the store's */
};

/*
 * Reads hosts (name,site,roles,collector,os) or explicit edges (dependent,server,channel) from
 * `in`, CSV with a header row or a JSON array of the same objects, and upserts them in the
 * caller's IMMEDIATE transaction, then re-evaluates the stored reports of the hosts whose roles
 * changed. CSV as Windows writes it is read too: a "#TYPE" first line (Export-Csv on PowerShell
 * 5.1) is skipped, ';' or tab delimiters are detected, a "SiteCode" column stands for "site",
 * and columns it does not know are ignored and named in im->note. `in` must be seekable (CSV and JSON are told apart by reading ahead). Returns 0,
 * -EINVAL for bad input, or another negative code; the message is in im->err. On failure the
 * caller rolls back; either way it calls inv_import_end() before the transaction ends.
 */
int inv_import(struct store *s, FILE *in, struct inv_import *im);
/* Drops the import's (and inv_remove's) temp tables and triggers. */
void inv_import_end(struct store *s);

/*
 * Removes the hosts `names` (case-insensitive; each must exist: -ENOENT naming the first that
 * does not, nothing removed) in the caller's IMMEDIATE transaction, with their reports,
 * verdicts, poll state, waiver and edges (FK cascade): a removed host no longer blocks any gate.
 * Their last inventory rows are kept for inv_diff_each, so the caller can write them to the
 * audit log. The caller calls inv_import_end() before the transaction ends. 0 or negative, the
 * message on the store.
 */
int inv_remove(struct store *s, const char *const *names, size_t n, long *removed);

/* One line of the diff of an import or removal. */
struct inv_change {
    char kind;        /* '+' added, '~' changed, '-' removed */
    const char *name; /* as stored after the change ('-': before) */
    const char *site;
    const char *detail; /* '+'/'-': "site S, roles R, collector C[, os O]";
                         * '~': the changed fields, "roles client -> management_point; ..." */
};
typedef int (*inv_change_fn)(const struct inv_change *c, void *arg);

/* The diff recorded by inv_import (with `track`: added and changed too) or inv_remove, in its
 * transaction before inv_import_end: added, then changed, then removed, each by name. */
int inv_diff_each(struct store *s, inv_change_fn fn, void *arg);

/* The inventory's change counter (meta "inventory_generation"): every import and removal adds
 * one, so the daemon sees a change without a SIGHUP. 0 when never changed. */
int inv_generation(struct store *s, long long *generation);

#endif
