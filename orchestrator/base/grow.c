/*
 * grow.c — growable arrays (grow.h).
 */
#include "grow.h"

#include <assert.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

size_t grow_cap(size_t cap, size_t first) { return cap ? cap * 2 : first; }

int grow_to(void *arrp, size_t cap, size_t size)
{
    assert(size > 0);
    if (cap > SIZE_MAX / size)
        return -ENOMEM;
    /* The pointer is copied in and out with memcpy: arrp points at a `T *`, not a `void *`. */
    void *old, *grown;
    memcpy(&old, arrp, sizeof(old));
    if (!(grown = realloc(old, cap * size)))
        return -ENOMEM;
    memcpy(arrp, &grown, sizeof(grown));
    return 0;
}

int grow_room(void *arrp, size_t n, size_t *cap, size_t size, size_t first)
{
    assert(n <= *cap);
    if (n < *cap)
        return 0;
    size_t want = grow_cap(*cap, first);
    int rc = grow_to(arrp, want, size);
    if (!rc)
        *cap = want;
    return rc;
}
