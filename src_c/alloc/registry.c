/* The registry of address ranges hakmem owns.
 *
 * One byte per 2 MiB chunk of the 47-bit user address space: 64 MiB of
 * zero-initialised static storage, of which only the pages covering chunks
 * ever registered are touched (the rest stays unbacked). A chunk's byte is 1
 * exactly while a superslab is mapped there. hak_superslab_of() reads it
 * before it dereferences anything, so a foreign pointer costs one load and is
 * never followed, and the map needs no initialisation: free() before the
 * first malloc() works.
 */
#include "internal.h"

_Atomic uint8_t hak_registry_map[HAK_REGISTRY_CHUNKS];

void hak_registry_set(uintptr_t ss, bool owned)
{
    atomic_store_explicit(&hak_registry_map[ss >> HAK_SS_SHIFT], owned ? 1 : 0,
                          memory_order_release);
}
