/* Page mappings from the kernel: the only place hakmem asks the OS for memory. */
#include <sys/mman.h>

#include "internal.h"

void *hak_os_map(size_t size)
{
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

/* Over-maps by `align` and trims both ends, so the result is aligned and the
 * trimmed pages go back at once. */
void *hak_os_map_aligned(size_t size, size_t align)
{
    size_t span = size + align;
    uint8_t *raw = hak_os_map(span);
    if (!raw)
        return NULL;
    uintptr_t start = ((uintptr_t)raw + align - 1) & ~(uintptr_t)(align - 1);
    size_t head = start - (uintptr_t)raw;
    size_t tail = span - head - size;
    if (head)
        munmap(raw, head);
    if (tail)
        munmap((void *)(start + size), tail);
    return (void *)start;
}

void hak_os_unmap(void *p, size_t size)
{
    munmap(p, size);
}
