/*
 * Fuzz target: the stage-program check and executor (edgeplus_patch_stage_check,
 * edgeplus_patch_stage_get_buffer_size, edgeplus_patch_stage_weight_size,
 * edgeplus_patch_stage). The input is the program: little-endian int32 words.
 *
 * On every input: the check and _get_buffer_size run (on an exact-size copy of the words,
 * so ASan sees any read past `words`) and agree. On every accepted program whose work is
 * under the caps of fuzz_common.h, the executor runs
 *   1. at exactly the scratch it asks for (an exact malloc block), output filled with
 *      canary A;
 *   2. again at exactly that scratch, 1-3 bytes off alignment, output filled with canary B;
 *   3. with 64 KiB more scratch (bigger conv blocks), output filled with canary A;
 * each must return EDGEPLUS_OK and the three outputs must be identical: every output
 * element written, the result independent of the scratch given. One byte less scratch
 * must give EDGEPLUS_ERR_SCRATCH.
 */
#include "edgeplus_stage_internal.h"
#include "fuzz_common.h"

/* Work of the executor on a checked program: output elements times the MACs each takes,
 * over every patch and step; stops counting past the cap. */
static int64_t ep_stage_work(const int32_t *p, const ep_stage *st)
{
    int64_t work = 0;
    int32_t q, k;
    for (q = 0; q < st->P && work <= FUZZ_MAX_WORK; ++q) {
        const int32_t *rec = ep_st_patch(p, st, q);
        for (k = 0; k < st->S && work <= FUZZ_MAX_WORK; ++k) {
            const int32_t *s = ep_st_step(p, st, k);
            const int32_t *r = rec + 1 + 4 * (k + 1);
            const int32_t *in = ep_st_tensor(p, st, s[EP_S_IN0]);
            const int32_t *out = ep_st_tensor(p, st, k + 1);
            int64_t per = 1;
            if (s[EP_S_KIND] == EP_ST_KIND_CONV) {
                per = (int64_t)s[EP_S_KH] * s[EP_S_KW] * in[EP_T_C];
            } else if (s[EP_S_KIND] == EP_ST_KIND_DW) {
                per = (int64_t)s[EP_S_KH] * s[EP_S_KW];
            }
            work += ep_mul((int64_t)r[2] * r[3] * out[EP_T_C], per);
        }
    }
    return work;
}

static int64_t ep_tensor_elems(const int32_t *p, const ep_stage *st, int32_t i)
{
    const int32_t *t = ep_st_tensor(p, st, i);
    return (int64_t)t[EP_T_H] * t[EP_T_W] * t[EP_T_C];
}

static void ep_run(const int32_t *program, int32_t words, const int8_t *const *filters,
                   const int8_t *input, int8_t *output, int64_t out_bytes, int32_t size,
                   int misalign, int canary, const char *what)
{
    ep_scratch s;
    edgeplus_status rc;
    ep_scratch_alloc(&s, size, misalign);
    memset(output, canary, (size_t)out_bytes);
    rc = edgeplus_patch_stage(&s.ctx, program, words, filters, input, output);
    FUZZ_CHECK(rc == EDGEPLUS_OK, "%s: an accepted program returned %s", what,
               edgeplus_status_str(rc));
    ep_scratch_free(&s);
}

static void ep_compare(const int8_t *a, const int8_t *b, int64_t n, const char *what)
{
    int64_t i;
    for (i = 0; i < n; ++i) {
        FUZZ_CHECK(a[i] == b[i], "%s: output byte %lld differs (%d vs %d)", what, (long long)i,
                   a[i], b[i]);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const int32_t words = (int32_t)(size / 4 < 65536 ? size / 4 : 65536);
    int32_t *program = (int32_t *)ep_xmalloc((size_t)words * 4);
    edgeplus_status rc;
    int32_t need, k, slots = 0;
    int64_t in_bytes, out_bytes;
    ep_stage st;
    const int8_t **filters = NULL;
    int32_t *filter_bytes = NULL;
    int8_t *input, *out1, *out2, *out3;
    uint32_t seed = 2166136261u;
    size_t i;

    memcpy(program, data, (size_t)words * 4);
    for (i = 0; i < size; ++i) {
        seed = (seed ^ data[i]) * 16777619u;
    }
    rc = edgeplus_patch_stage_check(program, words);
    FUZZ_RECORDED(rc);
    need = edgeplus_patch_stage_get_buffer_size(program, words);
    FUZZ_RECORDED(need);
    FUZZ_CHECK(rc == EDGEPLUS_OK ? (need >= 0 || need == EDGEPLUS_ERR_DIMS) : need == (int32_t)rc,
               "check %s but _get_buffer_size %d", edgeplus_status_str(rc), need);
    if (rc != EDGEPLUS_OK || need < 0) {
        goto done;
    }
    FUZZ_CHECK(edgeplus__stage_layout(program, words, &st) == EDGEPLUS_OK, "layout");
    for (k = 0; k < st.S; ++k) {
        const int32_t kind = ep_st_step(program, &st, k)[EP_S_KIND];
        slots += kind == EP_ST_KIND_CONV || kind == EP_ST_KIND_DW;
    }
    filter_bytes = (int32_t *)ep_xmalloc((size_t)slots * sizeof(int32_t));
    for (k = 0; k < slots; ++k) {
        rc = edgeplus_patch_stage_weight_size(program, words, k, &filter_bytes[k]);
        FUZZ_CHECK(rc == EDGEPLUS_OK && filter_bytes[k] > 0, "weight_size of slot %d: %s",
                   (int)k, edgeplus_status_str(rc));
        if (filter_bytes[k] > FUZZ_MAX_BYTES) {
            goto done;
        }
    }
    in_bytes = ep_tensor_elems(program, &st, 0);
    out_bytes = ep_tensor_elems(program, &st, st.T - 1);
    if (in_bytes > FUZZ_MAX_BYTES || out_bytes > FUZZ_MAX_BYTES || need > 4 * FUZZ_MAX_BYTES ||
        ep_stage_work(program, &st) > FUZZ_MAX_WORK) {
        goto done;
    }
    filters = (const int8_t **)ep_xmalloc((size_t)slots * sizeof(*filters));
    for (k = 0; k < slots; ++k) {
        int8_t *f = (int8_t *)ep_xmalloc((size_t)filter_bytes[k]);
        ep_fill(f, (size_t)filter_bytes[k], seed + 7u * (uint32_t)k);
        filters[k] = f;
    }
    input = (int8_t *)ep_xmalloc((size_t)in_bytes);
    ep_fill(input, (size_t)in_bytes, seed);
    out1 = (int8_t *)ep_xmalloc((size_t)out_bytes);
    out2 = (int8_t *)ep_xmalloc((size_t)out_bytes);
    out3 = (int8_t *)ep_xmalloc((size_t)out_bytes);
    if (need > 0) {
        ep_scratch s;
        ep_scratch_alloc(&s, need - 1, 0);
        memset(out1, FUZZ_CANARY_A, (size_t)out_bytes);
        rc = edgeplus_patch_stage(&s.ctx, program, words, filters, input, out1);
        FUZZ_CHECK(rc == EDGEPLUS_ERR_SCRATCH, "one byte below the scratch asked: %s",
                   edgeplus_status_str(rc));
        for (i = 0; i < (size_t)out_bytes; ++i) {
            FUZZ_CHECK((uint8_t)out1[i] == FUZZ_CANARY_A, "a refused call wrote the output");
        }
        ep_scratch_free(&s);
    }
    ep_run(program, words, filters, input, out1, out_bytes, need, 0, FUZZ_CANARY_A,
           "exact scratch");
    ep_run(program, words, filters, input, out2, out_bytes, need, 1 + (int)(seed % 3u),
           FUZZ_CANARY_B, "exact scratch, misaligned");
    ep_compare(out1, out2, out_bytes, "output not fully written (canaries A and B)");
    ep_run(program, words, filters, input, out3, out_bytes,
           need <= INT32_MAX - 65536 ? need + 65536 : INT32_MAX, 0, FUZZ_CANARY_A,
           "64 KiB more scratch");
    ep_compare(out1, out3, out_bytes, "result depends on the scratch size");
    free(out1);
    free(out2);
    free(out3);
    free(input);
    for (k = 0; k < slots; ++k) {
        free((void *)(uintptr_t)filters[k]);
    }
done:
    if (filters != NULL) {
        free((void *)filters);
    }
    if (filter_bytes != NULL) {
        free(filter_bytes);
    }
    free(program);
    return 0;
}
