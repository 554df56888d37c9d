/* edgeplus_packed_bytes: bytes for `count` values packed at `bits`. */
#include "edgeplus_internal.h"

int32_t edgeplus_packed_bytes(int32_t count, int32_t bits)
{
    if (count < 0 || !ep_bits_ok(bits)) {
        return -1;
    }
    return (int32_t)(((int64_t)count * bits + 7) / 8);
}
