/* edgeplus_requantize: TFLite's MultiplyByQuantizedMultiplier (double rounding). */
#include "edgeplus_internal.h"

int32_t edgeplus_requantize(int32_t acc, int32_t multiplier, int32_t shift)
{
    if (shift > 30) {
        shift = 30;
    } else if (shift < -31) {
        shift = -31;
    }
    return ep_requant(acc, multiplier, shift);
}
