/* The verdict: the first failing check wins; everything after it is ignored. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

bool hx_fail(struct hx_run *r, const char *check, int64_t op, int thread, int slot,
             const void *ptr, uint64_t expected, uint64_t observed, const char *fmt, ...)
{
    int zero = 0;
    if (!atomic_compare_exchange_strong(&r->failed, &zero, 1))
        return false;
    struct hakx_verdict *v = r->verdict;
    v->status = HAKX_STATUS_FAIL;
    snprintf(v->check, sizeof v->check, "%s", check);
    v->op_index = op;
    v->thread = thread;
    v->slot = slot;
    v->pointer = (uint64_t)(uintptr_t)ptr;
    v->expected = expected;
    v->observed = observed;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(v->message, sizeof v->message, fmt, ap);
    va_end(ap);
    return false;
}

void hx_lock(struct hx_run *r)
{
    if (r->use_lock)
        pthread_mutex_lock(&r->lock);
}

void hx_unlock(struct hx_run *r)
{
    if (r->use_lock)
        pthread_mutex_unlock(&r->lock);
}

bool hx_take_hook(struct hx_run *r, uint32_t hook)
{
    if (!(r->hooks_left & hook))
        return false;
    bool took = false;
    hx_lock(r);
    if (r->hooks_left & hook) {
        r->hooks_left &= ~hook;
        took = true;
    }
    hx_unlock(r);
    return took;
}

bool hx_error(struct hx_run *r, const char *fmt, ...)
{
    int zero = 0;
    if (!atomic_compare_exchange_strong(&r->failed, &zero, 1))
        return false;
    struct hakx_verdict *v = r->verdict;
    v->status = HAKX_STATUS_ERROR;
    snprintf(v->check, sizeof v->check, "executor");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(v->message, sizeof v->message, fmt, ap);
    va_end(ap);
    return false;
}
