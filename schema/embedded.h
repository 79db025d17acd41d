/* Files embedded into the binaries at build time by tools/embed.c. */
#ifndef TLSGATE_EMBEDDED_H
#define TLSGATE_EMBEDDED_H

#include <stddef.h>

struct embedded_file {
    const char *name; /* base name, e.g. "001_init.sql" */
    const char *data; /* NUL-terminated */
    size_t size;      /* without the NUL */
};

/* SQL migrations in apply order (file names sort by their NNN_ prefix); ends with {NULL}. */
extern const struct embedded_file schema_migrations[];
/* The default rule catalog (schema/rules.json); ends with {NULL}. */
extern const struct embedded_file schema_catalogs[];

#endif
