/* Misuse reports: a double free, a foreign or interior pointer.
 *
 * Debug builds print the address and abort, so the harness sees the bug at
 * the call that made it; other builds ignore the call (the safe choice for a
 * drop-in allocator, which may be handed pointers from ld.so's early
 * allocator). Formats by hand: this may run inside a broken malloc. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

void hak_report_misuse(const char *what, const void *ptr)
{
    if (!HAK_DEBUG)
        return;
    char buf[160] = "hakmem: ";
    size_t n = strlen(buf);
    size_t w = strlen(what);
    if (w > 100)
        w = 100;
    memcpy(buf + n, what, w);
    n += w;
    memcpy(buf + n, " at 0x", 6);
    n += 6;
    uintptr_t a = (uintptr_t)ptr;
    for (int shift = 60; shift >= 0; shift -= 4)
        buf[n++] = "0123456789abcdef"[(a >> shift) & 15];
    buf[n++] = '\n';
    ssize_t ignored = write(2, buf, n);
    (void)ignored;
    abort();
}
