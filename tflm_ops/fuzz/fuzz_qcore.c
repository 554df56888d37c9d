/*
 * Fuzz target: QCore's on-device step and refresh (edgeplus_qcore_step[_get_buffer_size],
 * edgeplus_qcore_refresh[_get_buffer_size]) on arbitrary heads, dims and arguments.
 *
 * Input (ep_rd_int values, fuzz_common.h): what (even: step, odd: refresh), then
 *   step:    num_layers, margin, tries, n, label (0: valid labels, else sample 0's label),
 *            flags (bit 0: no correct_* arrays), seed, guard, guard_min_correct, and per
 *            layer (up to 8): out, in,
 *            w_bits, input/output zero point, act_min, act_max, shift, flags (bit 0 bias,
 *            bit 1 calibrated, bit 2 a negative multiplier), then its net's hidden, m1, s1,
 *            b2, threshold;
 *   refresh: n, steps, size, rng state, a prior count and a history byte put at item 0
 *            (-1: none), seed.
 * Every array the head points to has exactly its documented size (out, hidden, ...), so
 * heads whose arrays would exceed the caps (out or hidden above 4096, weights above 1 MiB)
 * are not passed; every other input goes through _get_buffer_size. When the work is under
 * the caps the call runs at exactly the scratch asked for: a refusal must leave weights,
 * correct_*, result (step) or chosen, counts, rng state (refresh) untouched; a success must
 * be repeated exactly at a misaligned exact scratch (and, step, at a larger one), and 5 bytes
 * less (below the 4 bytes of alignment slack) must be refused with EDGEPLUS_ERR_SCRATCH. A
 * kept step raised the unguarded score and kept at least guard_min_correct of the guarded
 * samples right; the result's counts stay within their samples.
 */
#include "fuzz_common.h"

#define EP_MAX_ARRAY 4096

typedef struct {
    edgeplus_fc_layer layers[EDGEPLUS_QCORE_MAX_LAYERS];
    edgeplus_flipnet nets[EDGEPLUS_QCORE_MAX_LAYERS];
    int64_t wbytes[EDGEPLUS_QCORE_MAX_LAYERS];
    int calibrated[EDGEPLUS_QCORE_MAX_LAYERS];
} ep_head_mem;

static int64_t ep_wbytes(int32_t out, int32_t in, int32_t bits)
{
    const int64_t count = (int64_t)out * in;
    return bits == 4 ? (count + 1) / 2 : count; /* w_bits 8, or a refused one */
}

/* Reads and allocates layer l; 0 when its arrays exceed the caps (nothing allocated). */
static int ep_rd_layer(ep_reader *r, ep_head_mem *m, int32_t l, uint32_t seed)
{
    edgeplus_fc_layer *L = &m->layers[l];
    edgeplus_flipnet *N = &m->nets[l];
    int32_t flags, shift, i;
    int32_t *mult, *sh, *bias, *b1;
    L->out_features = ep_rd_int(r);
    L->in_features = ep_rd_int(r);
    L->w_bits = ep_rd_int(r);
    L->input_zero_point = ep_rd_int(r);
    L->output_zero_point = ep_rd_int(r);
    L->act_min = ep_rd_int(r);
    L->act_max = ep_rd_int(r);
    shift = ep_rd_int(r);
    flags = ep_rd_int(r);
    N->hidden = ep_rd_int(r);
    N->m1 = ep_rd_int(r);
    N->s1 = ep_rd_int(r);
    N->b2 = ep_rd_int(r);
    N->threshold = ep_rd_int(r);
    m->calibrated[l] = (flags >> 1) & 1;
    m->wbytes[l] = ep_wbytes(L->out_features, L->in_features, L->w_bits);
    if (L->out_features > EP_MAX_ARRAY || m->wbytes[l] > FUZZ_MAX_BYTES ||
        (m->calibrated[l] && N->hidden > EP_MAX_ARRAY)) {
        return 0;
    }
    {
        const size_t out = (size_t)(L->out_features > 0 ? L->out_features : 0);
        const size_t hid = (size_t)(m->calibrated[l] && N->hidden > 0 ? N->hidden : 0);
        const size_t wb = (size_t)(m->wbytes[l] > 0 ? m->wbytes[l] : 0);
        L->weights = (int8_t *)ep_xmalloc(wb);
        ep_fill(L->weights, wb, seed + 11u * (uint32_t)l);
        mult = (int32_t *)ep_xmalloc(out * 4);
        sh = (int32_t *)ep_xmalloc(out * 4);
        bias = (flags & 1) ? (int32_t *)ep_xmalloc(out * 4) : NULL;
        ep_fill(mult, out * 4, seed + 13u * (uint32_t)l);
        for (i = 0; i < (int32_t)out; ++i) {
            mult[i] = (int32_t)(((uint32_t)mult[i] >> 2) | (1u << 30));
            sh[i] = shift;
            if (bias != NULL) {
                bias[i] = (int32_t)(i * 37 % 401) - 200;
            }
        }
        if ((flags & 4) && out > 0) {
            mult[out - 1] = -1;
        }
        L->multiplier = mult;
        L->shift = sh;
        L->bias = bias;
        N->w1 = (int8_t *)ep_xmalloc(hid * 4);
        b1 = (int32_t *)ep_xmalloc(hid * 4);
        N->w2 = (int8_t *)ep_xmalloc(hid);
        ep_fill((void *)(uintptr_t)N->w1, hid * 4, seed + 17u * (uint32_t)l);
        ep_fill(b1, hid * 4, seed + 19u * (uint32_t)l);
        ep_fill((void *)(uintptr_t)N->w2, hid, seed + 23u * (uint32_t)l);
        for (i = 0; i < (int32_t)hid; ++i) {
            b1[i] >>= 12;
        }
        N->b1 = b1;
    }
    return 1;
}

static void ep_free_layer(ep_head_mem *m, int32_t l)
{
    free(m->layers[l].weights);
    free((void *)(uintptr_t)m->layers[l].multiplier);
    free((void *)(uintptr_t)m->layers[l].shift);
    free((void *)(uintptr_t)m->layers[l].bias);
    free((void *)(uintptr_t)m->nets[l].w1);
    free((void *)(uintptr_t)m->nets[l].b1);
    free((void *)(uintptr_t)m->nets[l].w2);
}

static int ep_result_eq(const edgeplus_qcore_step_result *a, const edgeplus_qcore_step_result *b)
{
    return a->kept == b->kept && a->level == b->level && a->changed == b->changed &&
           a->correct_before == b->correct_before && a->correct_after == b->correct_after &&
           a->margin_before == b->margin_before && a->margin_after == b->margin_after &&
           a->guard_correct_before == b->guard_correct_before &&
           a->guard_correct_after == b->guard_correct_after;
}

typedef struct {
    edgeplus_qcore_step_result res;
    uint8_t *before, *after;
    int8_t *weights[EDGEPLUS_QCORE_MAX_LAYERS];
    edgeplus_status rc;
} ep_step_out;

/* One step at `size` bytes of scratch (misaligned by `mis`) from the weights `start`. */
static void ep_step_run(const edgeplus_qcore_head *h, ep_head_mem *m, int32_t layers,
                        int8_t *const *start, const int8_t *x, const int32_t *y, int32_t n,
                        const int32_t guard[2], int with_correct, int32_t size, int mis,
                        ep_step_out *o)
{
    ep_scratch s;
    int32_t l;
    for (l = 0; l < layers; ++l) {
        memcpy(m->layers[l].weights, start[l], (size_t)m->wbytes[l]);
    }
    memset(&o->res, FUZZ_CANARY_A, sizeof(o->res));
    memset(o->before, FUZZ_CANARY_A, (size_t)n);
    memset(o->after, FUZZ_CANARY_A, (size_t)n);
    ep_scratch_alloc(&s, size, mis);
    o->rc = edgeplus_qcore_step(&s.ctx, h, x, y, n, guard[0], guard[1],
                                with_correct ? o->before : NULL, with_correct ? o->after : NULL,
                                &o->res);
    FUZZ_RECORDED(o->rc);
    ep_scratch_free(&s);
    for (l = 0; l < layers; ++l) {
        memcpy(o->weights[l], m->layers[l].weights, (size_t)m->wbytes[l]);
    }
}

static int ep_all(const void *p, size_t n, int byte)
{
    const uint8_t *b = (const uint8_t *)p;
    size_t i;
    for (i = 0; i < n; ++i) {
        if (b[i] != (uint8_t)byte) {
            return 0;
        }
    }
    return 1;
}

static void ep_fuzz_step(ep_reader *r)
{
    edgeplus_qcore_head h;
    ep_head_mem m;
    const edgeplus_flipnet *nets[EDGEPLUS_QCORE_MAX_LAYERS];
    int32_t label, flags, layers, l, ok = 1, need, n, classes, i, guard[2];
    uint32_t seed;
    int64_t work, wsum = 0;

    memset(&m, 0, sizeof(m));
    h.num_layers = ep_rd_int(r);
    h.margin = ep_rd_int(r);
    h.tries = ep_rd_int(r);
    n = ep_rd_int(r);
    label = ep_rd_int(r);
    flags = ep_rd_int(r);
    seed = (uint32_t)ep_rd_int(r);
    guard[0] = ep_rd_int(r);
    guard[1] = ep_rd_int(r);
    layers = h.num_layers < 0 ? 0
             : h.num_layers > EDGEPLUS_QCORE_MAX_LAYERS ? EDGEPLUS_QCORE_MAX_LAYERS
                                                        : h.num_layers;
    for (l = 0; l < layers; ++l) {
        if (!ep_rd_layer(r, &m, l, seed)) {
            ok = 0;
            layers = l;
            break;
        }
        nets[l] = m.calibrated[l] ? &m.nets[l] : NULL;
        wsum += ep_mul(m.wbytes[l] > 0 ? m.wbytes[l] : 0,
                       1 + (m.calibrated[l] && m.nets[l].hidden > 0 ? m.nets[l].hidden : 0));
    }
    if (!ok) {
        goto done;
    }
    /* exactly num_layers entries (if num_layers is out of range: as many as are read) */
    h.layers = (edgeplus_fc_layer *)ep_xmalloc((size_t)layers * sizeof(edgeplus_fc_layer));
    memcpy(h.layers, m.layers, (size_t)layers * sizeof(edgeplus_fc_layer));
    h.nets = (const edgeplus_flipnet *const *)ep_xmalloc((size_t)layers * sizeof(nets[0]));
    memcpy((void *)(uintptr_t)h.nets, nets, (size_t)layers * sizeof(nets[0]));
    need = edgeplus_qcore_step_get_buffer_size(&h, n);
    FUZZ_RECORDED(need);
    FUZZ_CHECK(need >= 4 || (need >= EDGEPLUS_ERR_ARG && need <= EDGEPLUS_ERR_NULL),
               "_get_buffer_size returned %d", need);
    work = ep_mul(ep_mul(n > 0 ? n : 0, wsum), h.tries > 0 ? (int64_t)h.tries + 1 : 0);
    if (need >= 0 && n <= EP_MAX_ARRAY && work <= FUZZ_MAX_WORK && need <= 4 * FUZZ_MAX_BYTES) {
        const int32_t in0 = h.layers[0].in_features;
        int8_t *x = (int8_t *)ep_xmalloc((size_t)n * (size_t)in0);
        int32_t *y = (int32_t *)ep_xmalloc((size_t)n * 4);
        int8_t *start[EDGEPLUS_QCORE_MAX_LAYERS];
        ep_step_out o[3];
        const int with_correct = !(flags & 1);
        int k;
        classes = h.layers[layers - 1].out_features;
        ep_fill(x, (size_t)n * (size_t)in0, seed);
        for (i = 0; i < n; ++i) {
            y[i] = (int32_t)(((seed >> 3) + 7u * (uint32_t)i) % (uint32_t)classes);
        }
        if (label != 0) {
            y[0] = label;
        }
        for (l = 0; l < layers; ++l) {
            start[l] = (int8_t *)ep_xmalloc((size_t)m.wbytes[l]);
            memcpy(start[l], m.layers[l].weights, (size_t)m.wbytes[l]);
        }
        for (k = 0; k < 3; ++k) {
            o[k].before = (uint8_t *)ep_xmalloc((size_t)n);
            o[k].after = (uint8_t *)ep_xmalloc((size_t)n);
            for (l = 0; l < layers; ++l) {
                o[k].weights[l] = (int8_t *)ep_xmalloc((size_t)m.wbytes[l]);
            }
        }
        ep_step_run(&h, &m, layers, start, x, y, n, guard, with_correct, need, 0, &o[0]);
        if (o[0].rc != EDGEPLUS_OK) {
            FUZZ_CHECK(ep_all(&o[0].res, sizeof(o[0].res), FUZZ_CANARY_A) &&
                           ep_all(o[0].before, (size_t)n, FUZZ_CANARY_A) &&
                           ep_all(o[0].after, (size_t)n, FUZZ_CANARY_A),
                       "refused (%s) but wrote result or correct_*",
                       edgeplus_status_str(o[0].rc));
            for (l = 0; l < layers; ++l) {
                FUZZ_CHECK(memcmp(o[0].weights[l], start[l], (size_t)m.wbytes[l]) == 0,
                           "refused (%s) but changed layer %d's weights",
                           edgeplus_status_str(o[0].rc), (int)l);
            }
        } else {
            const edgeplus_qcore_step_result *a = &o[0].res;
            const int32_t free_n = n - guard[0];
            FUZZ_CHECK(guard[0] >= 0 && guard[0] < n && guard[1] >= 0 && guard[1] <= guard[0],
                       "accepted guard %d, guard_min_correct %d for n = %d", guard[0], guard[1],
                       n);
            FUZZ_CHECK((a->kept == 0 || a->kept == 1) && a->level >= 0 && a->level < h.tries &&
                           a->correct_before >= 0 && a->correct_before <= free_n &&
                           a->correct_after >= 0 && a->correct_after <= free_n &&
                           a->changed >= 0 && a->guard_correct_before >= 0 &&
                           a->guard_correct_before <= guard[0] && a->guard_correct_after >= 0 &&
                           a->guard_correct_after <= guard[0],
                       "result out of range: kept %d level %d before %d after %d changed %d "
                       "guard %d -> %d",
                       a->kept, a->level, a->correct_before, a->correct_after, a->changed,
                       a->guard_correct_before, a->guard_correct_after);
            FUZZ_CHECK(!a->kept || (a->guard_correct_after >= guard[1] &&
                                    (a->correct_after > a->correct_before ||
                                     (a->correct_after == a->correct_before &&
                                      a->margin_after > a->margin_before))),
                       "kept a level that fails the score or the guard (%d < %d)",
                       a->guard_correct_after, guard[1]);
            if (!a->kept) {
                for (l = 0; l < layers; ++l) {
                    FUZZ_CHECK(memcmp(o[0].weights[l], start[l], (size_t)m.wbytes[l]) == 0,
                               "rolled back but layer %d's weights changed", (int)l);
                }
            }
            if (with_correct) {
                for (i = 0; i < n; ++i) {
                    FUZZ_CHECK(o[0].before[i] <= 1 && o[0].after[i] <= 1,
                               "correct_* of sample %d not written", (int)i);
                }
            }
            ep_step_run(&h, &m, layers, start, x, y, n, guard, with_correct, need,
                        1 + (int)(seed % 3u), &o[1]);
            ep_step_run(&h, &m, layers, start, x, y, n, guard, with_correct, need + 4096, 0,
                        &o[2]);
            for (k = 1; k < 3; ++k) {
                FUZZ_CHECK(o[k].rc == EDGEPLUS_OK && ep_result_eq(&o[k].res, a) &&
                               (!with_correct ||
                                (memcmp(o[k].before, o[0].before, (size_t)n) == 0 &&
                                 memcmp(o[k].after, o[0].after, (size_t)n) == 0)),
                           "the %s scratch gave another result", k == 1 ? "misaligned" : "larger");
                for (l = 0; l < layers; ++l) {
                    FUZZ_CHECK(memcmp(o[k].weights[l], o[0].weights[l], (size_t)m.wbytes[l]) == 0,
                               "the %s scratch gave other weights",
                               k == 1 ? "misaligned" : "larger");
                }
            }
            if (need >= 5) {
                ep_step_run(&h, &m, layers, start, x, y, n, guard, with_correct, need - 5, 0,
                            &o[1]);
                FUZZ_CHECK(o[1].rc == EDGEPLUS_ERR_SCRATCH, "5 bytes below the scratch: %s",
                           edgeplus_status_str(o[1].rc));
            }
        }
        for (k = 0; k < 3; ++k) {
            free(o[k].before);
            free(o[k].after);
            for (l = 0; l < layers; ++l) {
                free(o[k].weights[l]);
            }
        }
        for (l = 0; l < layers; ++l) {
            free(start[l]);
        }
        free(x);
        free(y);
    }
    free(h.layers);
    free((void *)(uintptr_t)h.nets);
done:
    for (l = 0; l < layers; ++l) {
        ep_free_layer(&m, l);
    }
}

static void ep_fuzz_refresh(ep_reader *r)
{
    const int32_t n = ep_rd_int(r), steps = ep_rd_int(r), size = ep_rd_int(r);
    uint32_t rng = (uint32_t)ep_rd_int(r);
    const int32_t prior0 = ep_rd_int(r), hist0 = ep_rd_int(r);
    const uint32_t seed = (uint32_t)ep_rd_int(r);
    const int32_t need = edgeplus_qcore_refresh_get_buffer_size(n);
    FUZZ_RECORDED(need);
    int32_t *prior, *chosen[3], *counts[3], i, k;
    uint8_t *hist;
    uint32_t state[3];
    edgeplus_status rc[3];
    int64_t hbytes;
    int32_t d;

    FUZZ_CHECK(need == EDGEPLUS_ERR_DIMS ? (n < 1 || n > (1 << 29) - 2) : need == 4 + 4 * n,
               "refresh _get_buffer_size(%d) = %d", (int)n, (int)need);
    hbytes = ep_mul(steps > 0 ? steps : 0, n > 0 ? n : 0);
    if (need < 0 || n > EP_MAX_ARRAY || hbytes > FUZZ_MAX_WORK || size > EP_MAX_ARRAY) {
        return;
    }
    d = size > 0 ? size : 0;
    prior = (int32_t *)ep_xmalloc((size_t)n * 4);
    hist = (uint8_t *)ep_xmalloc((size_t)hbytes);
    for (i = 0; i < n; ++i) {
        prior[i] = (int32_t)((seed + 31u * (uint32_t)i) % 50u);
    }
    ep_fill(hist, (size_t)hbytes, seed);
    for (i = 0; i < hbytes; ++i) {
        hist[i] &= 1u;
    }
    if (prior0 != -1) {
        prior[0] = prior0;
    }
    if (hist0 != -1 && hbytes > 0) {
        hist[0] = (uint8_t)hist0;
    }
    for (k = 0; k < 3; ++k) {
        chosen[k] = (int32_t *)ep_xmalloc((size_t)d * 4);
        counts[k] = (int32_t *)ep_xmalloc((size_t)d * 4);
        memset(chosen[k], FUZZ_CANARY_A, (size_t)d * 4);
        memset(counts[k], FUZZ_CANARY_A, (size_t)d * 4);
        state[k] = rng;
    }
    /* exact scratch; then (after a success) misaligned exact; then 5 bytes less */
    for (k = 0; k < 3; ++k) {
        ep_scratch s;
        ep_scratch_alloc(&s, k == 2 ? need - 5 : need, k == 1 ? 1 + (int)(seed % 3u) : 0);
        rc[k] = edgeplus_qcore_refresh(&s.ctx, prior, hist, steps, n, size, &state[k], chosen[k],
                                       counts[k]);
        FUZZ_RECORDED(rc[k]);
        ep_scratch_free(&s);
        if (rc[0] != EDGEPLUS_OK) {
            FUZZ_CHECK(state[0] == rng && ep_all(chosen[0], (size_t)d * 4, FUZZ_CANARY_A) &&
                           ep_all(counts[0], (size_t)d * 4, FUZZ_CANARY_A),
                       "refused (%s) but wrote an output", edgeplus_status_str(rc[0]));
            break;
        }
    }
    if (rc[0] == EDGEPLUS_OK) {
        FUZZ_CHECK(rc[1] == EDGEPLUS_OK && state[1] == state[0] &&
                       memcmp(chosen[1], chosen[0], (size_t)size * 4) == 0 &&
                       memcmp(counts[1], counts[0], (size_t)size * 4) == 0,
                   "misaligned scratch: another result");
        FUZZ_CHECK(rc[2] == EDGEPLUS_ERR_SCRATCH, "5 bytes below the scratch: %s",
                   edgeplus_status_str(rc[2]));
        FUZZ_CHECK(state[0] != 0u, "rng state 0");
        for (i = 0; i < size; ++i) {
            int32_t j;
            FUZZ_CHECK(chosen[0][i] >= 0 && chosen[0][i] < n && counts[0][i] >= 0,
                       "draw %d: item %d count %d", (int)i, (int)chosen[0][i], (int)counts[0][i]);
            for (j = 0; j < i; ++j) {
                FUZZ_CHECK(chosen[0][j] != chosen[0][i], "item %d drawn twice", (int)chosen[0][i]);
            }
        }
    }
    for (k = 0; k < 3; ++k) {
        free(chosen[k]);
        free(counts[k]);
    }
    free(prior);
    free(hist);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ep_reader r = {data, size, 0};
    if (ep_rd_int(&r) & 1) {
        ep_fuzz_refresh(&r);
    } else {
        ep_fuzz_step(&r);
    }
    return 0;
}
