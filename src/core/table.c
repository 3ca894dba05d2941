/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Implementation of table.h.
 */
#include "autoconf.h"

#include <stdlib.h>
#include <string.h>

#include "core/table.h"
#include "core/util.h"

void table_add(struct table *t, void *item)
{
    if (t->n == t->alloc) {
        t->alloc = t->alloc ? 2 * t->alloc : 16;
        t->items = xrealloc(t->items, t->alloc * sizeof(*t->items));
    }
    t->items[t->n++] = item;
}

bool table_remove(struct table *t, const void *item)
{
    for (size_t i = 0; i < t->n; i++) {
        if (t->items[i] == item) {
            memmove(&t->items[i], &t->items[i + 1], (t->n - i - 1) * sizeof(*t->items));
            t->n--;
            return true;
        }
    }
    return false;
}

void *table_at(const struct table *t, size_t i)
{
    return i < t->n ? t->items[i] : NULL;
}

void *table_find(const struct table *t, const char *id)
{
    for (size_t i = 0; id && i < t->n; i++) {
        if (strcmp(t->id_of(t->items[i]), id) == 0)
            return t->items[i];
    }
    return NULL;
}

void *table_find_prefix(const struct table *t, const char *id_or_prefix)
{
    if (!id_or_prefix || !*id_or_prefix)
        return NULL;
    void *exact = table_find(t, id_or_prefix);
    if (exact)
        return exact;
    void *found = NULL;
    for (size_t i = 0; i < t->n; i++) {
        if (str_has_prefix(t->id_of(t->items[i]), id_or_prefix)) {
            if (found)
                return NULL;
            found = t->items[i];
        }
    }
    return found;
}

void table_clear(struct table *t)
{
    free(t->items);
    t->items = NULL;
    t->n = t->alloc = 0;
}
