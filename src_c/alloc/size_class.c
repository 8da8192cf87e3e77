/* The size-class table.
 *
 * Classes 0-7 step by 16 B up to 128 B; above that each power of two is split
 * in four steps (160, 192, 224, 256, 320, ...), which bounds internal waste at
 * 25% while keeping hak_class_of() a shift and a count-leading-zeros.
 * Classes up to 1 KiB are "tiny"; the rest, to 64 KiB, the pooled "mid" classes.
 * Units per slab give every class at least 7 blocks per slab. A thread cache
 * holds min(256, 64 KiB / size) blocks of a tiny class and min(256, 1 MiB /
 * size) of a mid class: with 256 KiB, mid churn over 9 classes refilled or
 * flushed a cache every 15 frees, and each batch touches cold blocks (a
 * thread's worst case is ~20 MiB cached in mid classes, 1 MiB in tiny).
 * tests/test_api.py re-derives the rules and checks every size against them.
 */
#include "internal.h"

/* hak_class_of() for tiny sizes, indexed by (size + 15) / 16: one load where
 * the formula took a data-dependent branch (<= 128) and a bit scan. */
const uint8_t hak_tiny_class[HAK_TINY_MAX / 16 + 1] = {
    0,  0,  1,  2,  3,  4,  5,  6,  7,  8,  8,  9,  9,  10, 10, 11, 11,
    12, 12, 12, 12, 13, 13, 13, 13, 14, 14, 14, 14, 15, 15, 15, 15,
    16, 16, 16, 16, 16, 16, 16, 16, 17, 17, 17, 17, 17, 17, 17, 17,
    18, 18, 18, 18, 18, 18, 18, 18, 19, 19, 19, 19, 19, 19, 19, 19,
};

const uint32_t hak_class_size[HAK_CLASSES] = {
    16, 32, 48, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384, 448, 512, 640, 768,
    896, 1024, 1280, 1536, 1792, 2048, 2560, 3072, 3584, 4096, 5120, 6144, 7168, 8192,
    10240, 12288, 14336, 16384, 20480, 24576, 28672, 32768, 40960, 49152, 57344, 65536,
};

const uint8_t hak_class_units[HAK_CLASSES] = {
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 4, 4, 5, 6, 7, 8,
};

const uint16_t hak_class_tcache_limit[HAK_CLASSES] = {
    256, 256, 256, 256, 256, 256, 256, 256, 256, 256, 256, 256, 204, 170, 146, 128, 102,
    85, 73, 64, 256, 256, 256, 256, 256, 256, 256, 256, 204, 170, 146, 128,
    102, 85, 73, 64, 51, 42, 36, 32, 25, 21, 18, 16,
};

HAK_API int hak_size_class(size_t size)
{
    return size > HAK_MID_MAX ? HAK_CLASS_LARGE : hak_class_of(size);
}

HAK_API size_t hak_class_block_size(int size_class)
{
    if (size_class < 0 || size_class >= HAK_CLASSES)
        return 0;
    return hak_class_size[size_class];
}
