/* edgeplus_qcore_refresh: the QCore refresh (miss counts + seeded weighted draw without
 * replacement), bit-exact with tfmot_edgeplus/calibration/step.py's qcore_refresh. */
#include "edgeplus_qcore_internal.h"

static uint32_t ep_xorshift32(uint32_t x)
{
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return x;
}

edgeplus_status edgeplus_qcore_refresh(const edgeplus_context *ctx, const int32_t *prior_counts,
                                       const uint8_t *history, int32_t steps, int32_t n,
                                       int32_t size, uint32_t *rng_state, int32_t *chosen,
                                       int32_t *counts)
{
    uintptr_t base, aligned;
    int32_t *count; /* [n]: the item's count, -1 once chosen (weight 0) */
    int64_t total = 0;
    uint32_t state;
    int32_t i, t, d;

    EP_CHECK_NULL(ctx, "ctx");
    EP_CHECK_NULL(prior_counts, "prior_counts");
    EP_CHECK_NULL(history, "history");
    EP_CHECK_NULL(rng_state, "rng_state");
    EP_CHECK_NULL(chosen, "chosen");
    EP_CHECK_NULL(counts, "counts");
    if (n < 1) {
        return EP_FAIL_RANGE(EDGEPLUS_ERR_DIMS, "n", -1, n, 1, INT32_MAX);
    }
    if (steps < 1 || (int64_t)steps * n > INT32_MAX) {
        return EP_FAIL_RANGE(EDGEPLUS_ERR_DIMS, "steps", -1, steps, 1, INT32_MAX / n);
    }
    if (size < 1 || size > n) {
        return EP_FAIL_RANGE(EDGEPLUS_ERR_DIMS, "size", -1, size, 1, n);
    }
    if (*rng_state == 0u) { /* xorshift32 never leaves 0 */
        return EP_FAIL_RANGE(EDGEPLUS_ERR_ARG, "*rng_state", -1, 0, 1, UINT32_MAX);
    }
    for (i = 0; i < n; i++) {
        if (prior_counts[i] < 0 || prior_counts[i] > INT32_MAX - steps) {
            return EP_FAIL_RANGE(EDGEPLUS_ERR_ARG, "prior_counts[]", i, prior_counts[i], 0,
                                 INT32_MAX - steps);
        }
    }
    for (i = 0; i < steps * n; i++) {
        if (history[i] > 1u) {
            return EP_FAIL_RANGE(EDGEPLUS_ERR_ARG, "history[]", i, history[i], 0, 1);
        }
    }
    if (ctx->buf == NULL) {
        return EP_FAIL(EDGEPLUS_ERR_SCRATCH, "ctx->buf", -1, 0, "must not be NULL");
    }
    if (n > (INT32_MAX - 4) / 4) {
        return EP_FAIL_RANGE(EDGEPLUS_ERR_SCRATCH, "n", -1, n, 1, (INT32_MAX - 4) / 4);
    }
    if (ctx->size < 0) {
        return EP_FAIL_SCRATCH("ctx->size", ctx->size, 4 + 4 * (int64_t)n);
    }
    base = (uintptr_t)ctx->buf;
    aligned = (base + 3u) & ~(uintptr_t)3u;
    if ((int64_t)ctx->size - (int64_t)(aligned - base) < 4 * (int64_t)n) {
        return EP_FAIL_SCRATCH("ctx->size", ctx->size, 4 + 4 * (int64_t)n);
    }
    count = (int32_t *)(void *)aligned;

    /* counts: prior + correct -> incorrect transitions; never correct: steps */
    for (i = 0; i < n; i++) {
        int32_t misses = 0, ever = history[i];
        for (t = 1; t < steps; t++) {
            const uint8_t now = history[(int64_t)t * n + i];
            misses += history[(int64_t)(t - 1) * n + i] & (uint8_t)(now ^ 1u);
            ever |= now;
        }
        count[i] = prior_counts[i] + (ever ? misses : steps);
        total += (int64_t)count[i] + 1;
    }

    /* draws: weight count + 1, chosen items 0 */
    state = *rng_state;
    for (d = 0; d < size; d++) {
        uint64_t r, run = 0;
        state = ep_xorshift32(state);
        r = (uint64_t)state % (uint64_t)total;
        for (i = 0; i < n; i++) {
            if (count[i] >= 0) {
                run += (uint64_t)count[i] + 1u;
                if (run > r) {
                    break;
                }
            }
        }
        /* r < total, so some item is reached (i < n) */
        chosen[d] = i;
        counts[d] = count[i];
        total -= (int64_t)count[i] + 1;
        count[i] = -1;
    }
    *rng_state = state;
    return EDGEPLUS_OK;
}
