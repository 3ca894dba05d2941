/* SPDX-License-Identifier: Apache-2.0 */
/*
 * An ordered table of objects named by string ids (sandboxes, containers):
 * insertion order is kept (List RPCs answer in it), and an id is looked up in
 * full or by a unique prefix, as crictl and kubelet pass them. The table
 * holds pointers only; the objects belong to the caller.
 */
#ifndef TINYCRI_CORE_TABLE_H
#define TINYCRI_CORE_TABLE_H

#include <stdbool.h>
#include <stddef.h>

struct table {
    void **items; /* items[0..n-1]; read them directly, change them through the calls below */
    size_t n;
    size_t alloc;
    const char *(*id_of)(const void *item); /* the item's id (borrowed) */
};

#define TABLE_INIT(id_fn)                                                                          \
    {                                                                                              \
        .id_of = (id_fn)                                                                           \
    }

/* Append item. */
void table_add(struct table *t, void *item);

/* Take item out, keeping the others' order; false when it was not in. */
bool table_remove(struct table *t, const void *item);

/* The i-th item, or NULL past the end. */
void *table_at(const struct table *t, size_t i);

/* The item whose id is exactly id, or NULL. */
void *table_find(const struct table *t, const char *id);

/*
 * The item whose id is id_or_prefix, or else the one item whose id starts
 * with it; NULL when none does, when several do (ambiguous), and for NULL or "".
 */
void *table_find_prefix(const struct table *t, const char *id_or_prefix);

/* Free the array (not the items) and empty the table; id_of stays. */
void table_clear(struct table *t);

#endif
