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
    /* Out. */
    long rows;             /* hosts or edges read */
    bool edges;            /* the file was an explicit-edges file */
    long long reevaluated; /* stored reports re-evaluated for changed roles */
    long long hosts_before, hosts_after;
    char err[STORE_ERROR_SIZE]; /* the first fault: FILE:LINE:FIELD: why, or the store's */
};

/*
 * Reads hosts (name,site,roles,collector,os) or explicit edges (dependent,server,channel) from
 * `in`, CSV with a header row or a JSON array of the same objects, and upserts them in the
 * caller's IMMEDIATE transaction, then re-evaluates the stored reports of the hosts whose roles
 * changed. `in` must be seekable (CSV and JSON are told apart by reading ahead). Returns 0,
 * -EINVAL for bad input, or another negative code; the message is in im->err. On failure the
 * caller rolls back; either way it calls inv_import_end() before the transaction ends.
 */
int inv_import(struct store *s, FILE *in, struct inv_import *im);
/* Drops the import's temp tables and trigger. */
void inv_import_end(struct store *s);

#endif
