/* The live blocks [start, end), at most one per slot, packed in any order: insert
 * scans all of them (a branch-free, vectorised loop: the addresses are
 * unpredictable, a binary search mispredicts); remove moves the last into the hole. */
#include "internal.h"

HX_CLONES int hx_iv_insert(struct hx_intervals *s, uintptr_t start, uintptr_t end, int slot)
{
    int64_t a = (int64_t)start, b = (int64_t)end;
    int n = s->n, clash = 0;
    for (int k = 0; k < n; k++)
        clash |= (a < s->end[k]) & (s->start[k] < b);
    if (clash) {
        for (int k = 0; k < n; k++)
            if (a < s->end[k] && s->start[k] < b)
                return s->slot_of[k];
    }
    if (n >= HAKX_SLOTS || s->pos_of[slot])
        return s->pos_of[slot] ? slot : s->slot_of[0]; /* cannot happen: one block per slot */
    s->start[n] = a;
    s->end[n] = b;
    s->slot_of[n] = (int8_t)slot;
    s->pos_of[slot] = (int8_t)(n + 1);
    s->n = n + 1;
    return -1;
}

void hx_iv_remove(struct hx_intervals *s, int slot)
{
    int i = s->pos_of[slot] - 1;
    if (i < 0)
        return;
    int last = --s->n;
    s->start[i] = s->start[last];
    s->end[i] = s->end[last];
    s->slot_of[i] = s->slot_of[last];
    s->pos_of[s->slot_of[i]] = (int8_t)(i + 1);
    s->pos_of[slot] = 0;
}

bool hx_iv_get(const struct hx_intervals *s, int slot, uintptr_t *start, uintptr_t *end)
{
    int i = s->pos_of[slot] - 1;
    if (i < 0)
        return false;
    *start = (uintptr_t)s->start[i];
    *end = (uintptr_t)s->end[i];
    return true;
}
