/* The total decoder: every byte string is a program (layout in hakx.h). */
#include "internal.h"

uint64_t hx_decode_size(uint8_t sel, uint8_t v0, uint8_t v1, uint8_t v2)
{
    uint32_t v = (uint32_t)v0 | (uint32_t)v1 << 8 | (uint32_t)v2 << 16;
    switch (sel % 8) {
    case 0:
        return 0;
    case 1:
        return 1 + v % 1024;
    case 2: {
        unsigned e = 4 + v0 % 21;
        uint64_t p = (uint64_t)1 << e;
        return p + (v1 % 4) * (p / 4) + (uint64_t)(v2 % 3) - 1;
    }
    case 3:
        return 1025 + v % 64512;
    case 4:
        return 65537 + v % 8323072;
    case 5:
        return v;
    case 6:
        return UINT64_MAX - v;
    default:
        return (uint64_t)1 << (47 + v0 % 17);
    }
}

HAKX_API size_t hakx_decode(const uint8_t *data, size_t len, struct hakx_op *ops, size_t cap,
                            uint32_t *threads)
{
    unsigned nt = len ? 1u + data[0] % HAKX_MAX_THREADS : 1u;
    size_t n = len > HAKX_HEADER ? (len - HAKX_HEADER) / HAKX_RECORD : 0;
    if (threads)
        *threads = nt;
    hx_decode_range(data, nt, ops, 0, n < cap ? n : cap);
    return n;
}

void hx_decode_range(const uint8_t *data, unsigned nt, struct hakx_op *ops, size_t from,
                     size_t to)
{
    for (size_t i = from; i < to; i++) {
        const uint8_t *b = data + HAKX_HEADER + i * HAKX_RECORD;
        struct hakx_op o = {0};
        o.op = b[0] % HAKX_NUM_OPCODES;
        o.thread = (uint8_t)(b[1] % nt);
        switch (o.op) {
        case HAKX_OP_MALLOC:
        case HAKX_OP_REALLOC:
            o.slot = b[2] % HAKX_SLOTS;
            o.size = hx_decode_size(b[3], b[4], b[5], b[6]);
            break;
        case HAKX_OP_CALLOC:
            o.slot = b[2] % HAKX_SLOTS;
            o.size = hx_decode_size(b[3], b[4], b[5], b[6]);
            o.aux = b[7] % 5;
            break;
        case HAKX_OP_ALIGNED_ALLOC:
            o.slot = b[2] % HAKX_SLOTS;
            o.size = hx_decode_size(b[3], b[4], b[5], b[6]);
            o.aux = (uint32_t)1 << (b[7] % 21);
            break;
        case HAKX_OP_FREE:
        case HAKX_OP_WRITE:
            o.slot = b[2] % HAKX_SLOTS;
            break;
        case HAKX_OP_BARRIER:
            o.thread = 0;
            break;
        default: /* thread_exit, flush: thread only */
            break;
        }
        ops[i] = o;
    }
}

HAKX_API int hakx_version(void)
{
    return HAKX_VERSION;
}
