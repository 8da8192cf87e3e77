/* The ordered set of live blocks [start, end): a sorted array (at most one block
 * per slot), binary search, overlap = a neighbour intersects. */
#include <string.h>

#include "internal.h"

static int lower_bound(const struct hx_intervals *s, uintptr_t start)
{
    int lo = 0, hi = s->n;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (s->v[mid].start < start)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

int hx_iv_insert(struct hx_intervals *s, uintptr_t start, uintptr_t end, int slot)
{
    int i = lower_bound(s, start);
    if (i > 0 && s->v[i - 1].end > start)
        return i - 1;
    if (i < s->n && s->v[i].start < end)
        return i;
    if (s->n >= (int)(sizeof s->v / sizeof s->v[0]))
        return i < s->n ? i : s->n - 1; /* cannot happen: one block per slot */
    memmove(&s->v[i + 1], &s->v[i], (size_t)(s->n - i) * sizeof s->v[0]);
    s->v[i] = (struct hx_interval){start, end, slot};
    s->n++;
    return -1;
}

void hx_iv_remove(struct hx_intervals *s, uintptr_t start)
{
    int i = lower_bound(s, start);
    if (i < s->n && s->v[i].start == start) {
        memmove(&s->v[i], &s->v[i + 1], (size_t)(s->n - i - 1) * sizeof s->v[0]);
        s->n--;
    }
}
