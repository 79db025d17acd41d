/*
 * store_int.h — what store.c and backup.c share and nobody else sees: the store itself.
 */
#ifndef TLSGATE_STORE_INT_H
#define TLSGATE_STORE_INT_H

#include "store.h"

/* 'TLSG': marks the file as ours, so `tlsgate --db some-other.sqlite` is refused, not migrated. */
#define STORE_APPLICATION_ID 0x544c5347

struct store {
    sqlite3 *db;
    char *path;
    char msg[STORE_ERROR_SIZE];
};

/* Copies the whole database to `dest` (a new file: -EEXIST when it exists) in one step, inside
 * the caller's transaction: migrate() backs up exactly what it is about to change. */
int store__backup_locked(struct store *s, const char *dest);

#endif
