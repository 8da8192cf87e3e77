/* The target table: this library's hak_* functions (white-box capable) or any
 * shared library exporting the malloc family under a prefix (black-box only).
 * Every op goes through struct hx_target. */
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

#include "hakmem.h"
#include "internal.h"

/* Weak: the executor also links (for tests) without the allocator. */
#pragma weak hak_malloc
#pragma weak hak_free
#pragma weak hak_calloc
#pragma weak hak_realloc
#pragma weak hak_aligned_alloc
#pragma weak hak_usable_size

static void *hk_malloc(size_t n) { return hak_malloc(n); }
static void hk_free(void *p) { hak_free(p); }
static void *hk_calloc(size_t c, size_t n) { return hak_calloc(c, n); }
static void *hk_realloc(void *p, size_t n) { return hak_realloc(p, n); }
static void *hk_aligned(size_t a, size_t n) { return hak_aligned_alloc(a, n); }
static size_t hk_usable(void *p) { return hak_usable_size(p); }

static const struct hx_target hakmem_target = {
    .malloc = hk_malloc,
    .free = hk_free,
    .calloc = hk_calloc,
    .realloc = hk_realloc,
    .aligned_alloc = hk_aligned,
    .usable_size = hk_usable,
    .hakmem = true,
    .strict_zero = true,
    .always16 = true,
    .name = "hakmem (this library)",
};

#define HX_MAX_FOREIGN 16
static struct hx_target foreign[HX_MAX_FOREIGN];
static char foreign_key[HX_MAX_FOREIGN][512];
static int nforeign;
static pthread_mutex_t foreign_lock = PTHREAD_MUTEX_INITIALIZER;

static void *sym(void *h, const char *prefix, const char *name)
{
    char buf[256];
    snprintf(buf, sizeof buf, "%s%s", prefix, name);
    return dlsym(h, buf);
}

const struct hx_target *hx_target_get(const char *path, const char *prefix, char *err,
                                      size_t errlen)
{
    if (!path) {
        if (!hak_malloc || !hak_free || !hak_calloc || !hak_realloc) {
            snprintf(err, errlen, "this library has no hak_* allocator linked in");
            return NULL;
        }
        return &hakmem_target;
    }
    if (!prefix)
        prefix = "";
    char key[512];
    snprintf(key, sizeof key, "%s\n%s", path, prefix);
    pthread_mutex_lock(&foreign_lock);
    for (int i = 0; i < nforeign; i++)
        if (!strcmp(foreign_key[i], key)) {
            pthread_mutex_unlock(&foreign_lock);
            return &foreign[i];
        }
    const struct hx_target *res = NULL;
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        snprintf(err, errlen, "dlopen(%s): %s", path, dlerror());
        goto out;
    }
    if (nforeign == HX_MAX_FOREIGN) {
        snprintf(err, errlen, "too many foreign targets");
        goto out;
    }
    struct hx_target t = {0};
    *(void **)&t.malloc = sym(h, prefix, "malloc");
    *(void **)&t.free = sym(h, prefix, "free");
    *(void **)&t.calloc = sym(h, prefix, "calloc");
    *(void **)&t.realloc = sym(h, prefix, "realloc");
    if (!t.malloc || !t.free || !t.calloc || !t.realloc) {
        snprintf(err, errlen, "%s: missing %smalloc/%sfree/%scalloc/%srealloc", path, prefix,
                 prefix, prefix, prefix);
        goto out;
    }
    *(void **)&t.posix_memalign = sym(h, prefix, "posix_memalign");
    *(void **)&t.memalign = sym(h, prefix, "memalign");
    *(void **)&t.aligned_alloc = sym(h, prefix, "aligned_alloc");
    *(void **)&t.usable_size = sym(h, prefix, "malloc_usable_size");
    if (!t.usable_size)
        *(void **)&t.usable_size = sym(h, prefix, "usable_size");
    snprintf(t.name, sizeof t.name, "%s (prefix \"%s\")", path, prefix);
    foreign[nforeign] = t;
    snprintf(foreign_key[nforeign], sizeof foreign_key[0], "%s", key);
    res = &foreign[nforeign++];
out:
    pthread_mutex_unlock(&foreign_lock);
    return res;
}

bool hx_target_has_aligned(const struct hx_target *t)
{
    return t->posix_memalign || t->memalign || t->aligned_alloc;
}

/* Alignments below sizeof(void *) are raised to it: programs exercise alignment,
 * not posix_memalign's EINVAL rule. */
void *hx_target_aligned(const struct hx_target *t, size_t align, size_t size)
{
    if (align < sizeof(void *))
        align = sizeof(void *);
    if (t->posix_memalign) {
        void *p = NULL;
        return t->posix_memalign(&p, align, size) == 0 ? p : NULL;
    }
    if (t->memalign)
        return t->memalign(align, size);
    return t->aligned_alloc(align, size);
}
