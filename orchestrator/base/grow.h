/*
 * grow: the growable array every in-memory collection of rows uses (git's ALLOC_GROW, as a
 * function): the capacity doubles from a first size, the array moves with realloc, and a
 * failure leaves the array and its capacity as they were, so the caller frees what it had.
 */
#ifndef TLSGATE_GROW_H
#define TLSGATE_GROW_H

#include <stddef.h>

/* The next capacity after `cap`: twice it, or `first` for an empty array. */
size_t grow_cap(size_t cap, size_t first);

/* Reallocates the array whose pointer is at `arrp` (the address of a `T *`, any object type)
 * to `cap` elements of `size` bytes. 0, or -ENOMEM with the array unchanged. */
int grow_to(void *arrp, size_t cap, size_t size);

/* Room for element `n` of the array at `arrp` with *cap elements: when n == *cap, grows it to
 * grow_cap(*cap, first) and updates *cap. 0, or -ENOMEM with both unchanged. */
int grow_room(void *arrp, size_t n, size_t *cap, size_t size, size_t first);

#endif
