/*
 * edgeplus_qcore_step: QCore's on-device calibration step (see edgeplus_ops.h),
 * bit-exact with tfmot_edgeplus/calibration/step.py's qcore_step.
 *
 * Phases: forward of every layer with the old weights (all activations kept, and the
 * int32 accumulators of the first calibrated layer) | output errors of the labels | per
 * calibrated layer, its features and the flip level of every weight (an int8 code:
 * sign(acc2) * min(|acc2| / threshold, 127), so that level k flips the weight by
 * sign(code) exactly when |code| > k, i.e. |acc2| >= (k+1) * threshold) | score before |
 * backup of the calibrated layers' packed bytes | the level loop (apply, forward, score,
 * keep or restore).
 *
 * What makes it cheap (all integer, so every shortcut is exact):
 *  - the level loop never re-runs the first calibrated layer: its accumulators (before
 *    bias) are kept from the first forward and moved from one level's candidate to the
 *    next by the weights that differ (acc[o][s] += d * x~[s][i], up to four weights of a
 *    row per pass); only the rows that moved are requantized, and only the later layers
 *    run in full. Levels are nested (level k's flips are level k-1's minus the codes with
 *    |code| == k), so from level 1 on only those weights move;
 *  - forwards run on a row of weights unpacked to int8 once, the input zero point folded
 *    out of the inner product (sum w (x - zp) = sum w x - zp sum w), SMLAD on the DSP, and
 *    the requantization takes TFLite's one-multiply form (SMMULR) where the layer's
 *    accumulator bound allows it (as the conv kernels do);
 *  - G is computed once, in wrapping uint32 (exact once the overflow bound, checked right
 *    after, holds), over the samples whose error is not 0, and kept per weight until the
 *    features; on the DSP eight columns at once with SMLABB/SMLATB, and A with USADA8;
 *  - the flip network evaluates two weights per pass over its hidden units, with the
 *    one-multiply requantization (SMMLAR) when its accumulators provably fit; divisions
 *    are 32-bit whenever the operands fit;
 *  - the output errors are not stored: a label's error is kept per sample, a rival's
 *    is recomputed from the logits (and a hidden layer's error column from them).
 */
#include "edgeplus_qcore_internal.h"

typedef struct {
    const edgeplus_qcore_head *head;
    const int8_t *x;
    const int32_t *y;
    int32_t n, classes, first;
    int32_t guard; /* samples [0, guard) are guarded: counted apart from the score */
    int32_t off[EDGEPLUS_QCORE_MAX_LAYERS]; /* first activation column of layer l's output */
    int32_t sum_out;
    int8_t *acts;   /* [n][sum_out]: acts + n * off[l] holds layer l's output [n][out_l] */
    int32_t *ecol;  /* [n] */
    int32_t *elab;  /* [n] the label's output error (minus the rivals' sum) */
    int32_t *tmp32; /* [T] */
    int32_t *acc;   /* [out_first][n] accumulators (no bias) of the first calibrated layer */
    int32_t *gbuf;  /* [out*in] scaled G of one calibrated layer, then the backup bytes */
    int8_t *codes;
    int8_t *backup;
    int8_t *a8;
    int8_t *e8;
    int8_t *row; /* [R] one unpacked 4-bit weight row (NULL: no calibrated layer) */
} ep_qstep;

EP_INLINE int8_t *ep_layer_out(const ep_qstep *q, int32_t l)
{
    return q->acts + (int64_t)q->n * q->off[l];
}

EP_INLINE const int8_t *ep_layer_in(const ep_qstep *q, int32_t l)
{
    return l == 0 ? q->x : ep_layer_out(q, l - 1);
}

/* ------------------------------------------------------------------ forward */

/* v clamped to [-128, 127] (one SSAT on the DSP). */
EP_INLINE int32_t ep_sat8(int32_t v)
{
#if EDGEPLUS_DSP && defined(__GNUC__)
    return __ssat(v, 8);
#else
    return v < -128 ? -128 : (v > 127 ? 127 : v);
#endif
}

/* sum_i w[i] x0[i] and sum_i w[i] x1[i] of int8 vectors (|sum| <= len * 2^14 fits int32
 * for the layers the checks accept). */
EP_INLINE void ep_dot8x2(const int8_t *w, const int8_t *x0, const int8_t *x1, int32_t len,
                         int32_t *r0, int32_t *r1)
{
    int32_t a0 = 0, a1 = 0, i = 0;
#if EP_USE_WORDS
    for (; i + 4 <= len; i += 4) {
        const uint32_t wv = ep_ld32(w + i), v0 = ep_ld32(x0 + i), v1 = ep_ld32(x1 + i);
        const uint32_t we = EP_SXTB16(wv), wo = ep_sxtb16_ror8(wv);
        a0 = EP_SMLAD(we, EP_SXTB16(v0), a0);
        a0 = EP_SMLAD(wo, ep_sxtb16_ror8(v0), a0);
        a1 = EP_SMLAD(we, EP_SXTB16(v1), a1);
        a1 = EP_SMLAD(wo, ep_sxtb16_ror8(v1), a1);
    }
#endif
    for (; i < len; i++) {
        a0 += (int32_t)w[i] * x0[i];
        a1 += (int32_t)w[i] * x1[i];
    }
    *r0 = a0;
    *r1 = a1;
}

/* The requantization of one output row o of a layer (ep_rq's rule, edgeplus_internal.h):
 * fast when |acc + bias| * 2^(left+1) < 2^31 for every accumulator the layer can produce
 * (|acc| <= in_features * 255 * 2^(w_bits-1)), then SMMULR and a rounding shift equal
 * TFLite's MultiplyByQuantizedMultiplier; else the literal path. */
typedef struct {
    int32_t fast, mult, bias, shift, lshift, rshift, round, neg, zp, lo, hi;
} ep_row_rq;

static void ep_row_rq_init(ep_row_rq *r, const edgeplus_fc_layer *ly, int32_t o)
{
    const int32_t shift = ly->shift[o], b = ly->bias != NULL ? ly->bias[o] : 0;
    const int32_t left = shift > 0 ? shift : 0, right = shift > 0 ? 0 : -shift;
    const int64_t bound = (int64_t)ly->in_features * 255 * ((int64_t)1 << (ly->w_bits - 1)) +
                          (b < 0 ? -(int64_t)b : (int64_t)b);
    r->fast = bound < ((int64_t)1 << (30 - left));
    r->mult = ly->multiplier[o];
    r->bias = b;
    r->shift = shift;
    r->lshift = left + 1;
    r->rshift = right;
    r->round = right > 0 ? (int32_t)(1u << (right - 1)) : 0;
    r->neg = right > 0 ? 1 : 0;
    r->zp = ly->output_zero_point;
    r->lo = ly->act_min;
    r->hi = ly->act_max;
}

EP_INLINE int8_t ep_row_out(const ep_row_rq *r, int32_t acc)
{
    int32_t v;
    if (r->fast) {
        const int32_t h = ep_smmulr((int32_t)((uint32_t)(acc + r->bias) << r->lshift), r->mult);
        v = (h + r->round - (int32_t)(((uint32_t)h >> 31) & (uint32_t)r->neg)) >> r->rshift;
    } else {
        v = ep_requant(ep_wrap_add(acc, r->bias), r->mult, r->shift);
    }
    return ep_clamp8(v + r->zp, r->lo, r->hi);
}

/* out[s * stride] = the requantized acc[s] for s < n (fast path: the rounding shift's
 * sign term only when it shifts; the common left shift of 0 as a constant). */
static EP_NOINLINE void ep_out_column(const ep_row_rq *r, const int32_t *acc, int8_t *out,
                                      int32_t stride, int32_t n)
{
    const int32_t bias = r->bias, mult = r->mult, zp = r->zp, lo = r->lo, hi = r->hi;
    const int32_t *end = acc + n;
    if (r->fast && r->rshift > 0 && r->lshift == 1 && lo == -128 && hi == 127) {
        const int32_t rs = r->rshift, round = r->round;
        for (; acc < end; acc++, out += stride) {
            const int32_t h = ep_smmulr((int32_t)((uint32_t)(*acc + bias) << 1), mult);
            *out = (int8_t)ep_sat8(((h + round - (int32_t)((uint32_t)h >> 31)) >> rs) + zp);
        }
    } else if (r->fast && r->rshift > 0 && r->lshift == 1) {
        const int32_t rs = r->rshift, round = r->round;
        for (; acc < end; acc++, out += stride) {
            const int32_t h = ep_smmulr((int32_t)((uint32_t)(*acc + bias) << 1), mult);
            int32_t v = ((h + round - (int32_t)((uint32_t)h >> 31)) >> rs) + zp;
            v = v < lo ? lo : v;
            *out = (int8_t)(v > hi ? hi : v);
        }
    } else {
        for (; acc < end; acc++, out += stride) {
            *out = ep_row_out(r, *acc);
        }
    }
}

/* out[s][o] for all n samples. acc_out ([out][n], may be NULL) receives the accumulators
 * before bias; tmp ([n], may be NULL) holds one row's when acc_out is NULL. row:
 * scratch for one unpacked 4-bit row (NULL: load per weight). Without row (4-bit) or
 * accumulator space the plain per-weight loop runs (a head without flip networks). */
static void ep_fc_forward(const edgeplus_fc_layer *ly, const int8_t *in, int8_t *out, int32_t n,
                          int8_t *row, int32_t *acc_out, int32_t *tmp)
{
    const int32_t in_f = ly->in_features, out_f = ly->out_features;
    const int32_t zp = ly->input_zero_point;
    int32_t s, o, i;
    ep_row_rq rq;
    for (o = 0; o < out_f; o++) {
        const int32_t base = o * in_f;
        int32_t *d = acc_out != NULL ? acc_out + (int64_t)o * n : tmp;
        const int8_t *w = NULL;
        int32_t wsum = 0;
        ep_row_rq_init(&rq, ly, o);
        if (ly->w_bits == 8) {
            w = ly->weights + base;
        } else if (row != NULL) {
            for (i = 0; i < in_f; i++) {
                row[i] = (int8_t)ep_load(ly->weights, base + i, 4);
            }
            w = row;
        }
        if (w == NULL || d == NULL) {
            for (s = 0; s < n; s++) {
                const int8_t *xr = in + (int64_t)s * in_f;
                int32_t acc = 0;
                for (i = 0; i < in_f; i++) {
                    acc += ep_load(ly->weights, base + i, ly->w_bits) * ((int32_t)xr[i] - zp);
                }
                out[(int64_t)s * out_f + o] = ep_row_out(&rq, acc);
            }
            continue;
        }
        for (i = 0; i < in_f; i++) {
            wsum += w[i];
        }
        /* sum w x and zp sum w are within the checked accumulator bound, so is their
         * difference (the accumulator) */
        wsum *= zp;
        for (s = 0; s + 1 < n; s += 2) {
            const int8_t *x0 = in + (int64_t)s * in_f;
            int32_t a0, a1;
            ep_dot8x2(w, x0, x0 + in_f, in_f, &a0, &a1);
            d[s] = a0 - wsum;
            d[s + 1] = a1 - wsum;
        }
        if (s < n) {
            const int8_t *x0 = in + (int64_t)s * in_f;
            int32_t a0, a1;
            ep_dot8x2(w, x0, x0, in_f, &a0, &a1);
            d[s] = a0 - wsum;
        }
        ep_out_column(&rq, d, out + o, out_f, n);
    }
}

static void ep_forward_from(const ep_qstep *q, int32_t first)
{
    int32_t l;
    for (l = first; l < q->head->num_layers; l++) {
        ep_fc_forward(&q->head->layers[l], ep_layer_in(q, l), ep_layer_out(q, l), q->n, q->row,
                      l == q->first ? q->acc : NULL, q->first >= 0 ? q->ecol : NULL);
    }
}

/* (correct, sum of margins) of the logits over the unguarded samples [guard, n), and
 * guard_correct over [0, guard); mask[s] = 1 if sample s is right, for all n (mask may
 * be NULL). pred = the first maximum; margin = z[y] - max_{o != y} z[o]. The label's
 * logit is set to -128 while the row's maximum (the rival) is taken, then restored. */
static void ep_score(const ep_qstep *q, uint8_t *mask, int32_t *correct, int32_t *margin,
                     int32_t *guard_correct)
{
    int8_t *z = ep_layer_out(q, q->head->num_layers - 1);
    const int32_t c = q->classes;
    int32_t msum = 0; /* |msum| <= 255 n (EDGEPLUS_QCORE_MAX_N) */
    int32_t s, o, ok_count = 0, guard_count = 0;
    for (s = 0; s < q->n; s++, z += c) {
        const int32_t y = q->y[s], zy = z[y];
        int32_t r0 = -128, r1 = -128, rival, ok;
        z[y] = -128;
        for (o = 0; o + 2 <= c; o += 2) {
            r0 = z[o] > r0 ? z[o] : r0;
            r1 = z[o + 1] > r1 ? z[o + 1] : r1;
        }
        if (o < c) {
            r0 = z[o] > r0 ? z[o] : r0;
        }
        z[y] = (int8_t)zy;
        rival = r0 > r1 ? r0 : r1;
        ok = zy > rival;
        if (zy == rival) { /* a tie: y is the first maximum if it comes first */
            ok = 1;
            for (o = 0; o < y; o++) {
                ok &= z[o] < zy;
            }
        }
        if (s < q->guard) {
            guard_count += ok;
        } else {
            ok_count += ok;
            msum += zy - rival;
        }
        if (mask != NULL) {
            mask[s] = (uint8_t)ok;
        }
    }
    *correct = ok_count;
    *margin = msum;
    *guard_correct = guard_count;
}

/* ------------------------------------------------------------------ errors */

/* The output error of a rival class: clamp(z[o] - z[y] + margin, 0, 2 margin). */
EP_INLINE int32_t ep_rival_error(int32_t zo, int32_t zy, int32_t m)
{
    const int32_t e = zo - zy + m;
    return e < 0 ? 0 : (e > 2 * m ? 2 * m : e);
}

/* q->elab[s] = the label's output error: minus the sum of the rivals' (<= (classes - 1)
 * * 2 * 255 < 2^31). */
static void ep_label_errors(const ep_qstep *q)
{
    const int8_t *z = ep_layer_out(q, q->head->num_layers - 1);
    const int32_t c = q->classes, m = q->head->margin;
    int32_t s, o;
    for (s = 0; s < q->n; s++, z += c) {
        const int32_t y = q->y[s], zy = z[y];
        int32_t sum = 0;
        for (o = 0; o < c; o++) {
            sum += ep_rival_error(z[o], zy, m);
        }
        q->elab[s] = -(sum - ep_rival_error(zy, zy, m));
    }
}

/* step.py feedback_hash (murmur3 finaliser) in uint32; +1 if bit 0 is set, else -1. */
static int32_t ep_feedback_sign(uint32_t layer, uint32_t j, uint32_t o)
{
    uint32_t h = layer * 0x9E3779B1u + j * 0x85EBCA77u + o * 0xC2B2AE3Du;
    h ^= h >> 16;
    h *= 0x85EBCA6Bu;
    h ^= h >> 13;
    h *= 0xC2B2AE35u;
    h ^= h >> 16;
    return (h & 1u) ? 1 : -1;
}

/* q->ecol[s] = the error of unit j of layer l for every sample s. */
static void ep_error_column(const ep_qstep *q, int32_t l, int32_t j)
{
    const int32_t c = q->classes, n = q->n, m = q->head->margin;
    const int8_t *z = ep_layer_out(q, q->head->num_layers - 1);
    int32_t s, o;
    if (l == q->head->num_layers - 1) {
        for (s = 0; s < n; s++) {
            const int8_t *zr = z + (int64_t)s * c;
            const int32_t y = q->y[s];
            q->ecol[s] = j == y ? q->elab[s] : ep_rival_error(zr[j], zr[y], m);
        }
        return;
    }
    for (s = 0; s < n; s++) {
        q->ecol[s] = 0;
    }
    /* |sum| <= sum_o |e[s][o]| <= 2 (classes - 1) * 2 * 255 < 2^31 */
    for (o = 0; o < c; o++) {
        const int32_t sign = ep_feedback_sign((uint32_t)l, (uint32_t)j, (uint32_t)o);
        for (s = 0; s < n; s++) {
            const int8_t *zr = z + (int64_t)s * c;
            const int32_t y = q->y[s];
            const int32_t e = o == y ? q->elab[s] : ep_rival_error(zr[o], zr[y], m);
            q->ecol[s] += sign > 0 ? e : -e;
        }
    }
    {
        const edgeplus_fc_layer *ly = &q->head->layers[l];
        const int8_t *a = ep_layer_out(q, l) + j;
        const int32_t out_f = ly->out_features, zp = ly->output_zero_point;
        for (s = 0; s < n; s++) {
            const int32_t v = q->ecol[s];
            q->ecol[s] = a[(int64_t)s * out_f] > zp ? (v < -127 ? -127 : (v > 127 ? 127 : v)) : 0;
        }
    }
}

/* ------------------------------------------------------------------ features */

#if EP_USE_WORDS
/* acc + sum of the four |a_k - b_k| of unsigned bytes (USADA8). */
EP_INLINE uint32_t ep_usada8(uint32_t a, uint32_t b, uint32_t acc)
{
#if EDGEPLUS_DSP && defined(__GNUC__)
    return __usada8(a, b, acc);
#else
    int k;
    for (k = 0; k < 32; k += 8) {
        const int32_t d = (int32_t)((a >> k) & 0xFFu) - (int32_t)((b >> k) & 0xFFu);
        acc += (uint32_t)(d < 0 ? -d : d);
    }
    return acc;
#endif
}
#endif

/* A[i] = sum_s |x[s][i] - zp| (<= 255 n < 2^31) into a[i], returns max A. On the DSP four
 * samples of a column at once: |x - zp| = |(x + 128) - (zp + 128)| of unsigned bytes. */
static int32_t ep_abs_column_sums(const int8_t *xin, int32_t n, int32_t in_f, int32_t zp,
                                  int32_t *a)
{
    int32_t i, s, vmax = 0;
    for (i = 0; i < in_f; i++) {
        const int8_t *xc = xin + i;
        int32_t sum = 0;
        s = 0;
#if EP_USE_WORDS
        {
            const uint32_t zw = ((uint32_t)(uint8_t)zp ^ 0x80u) * 0x01010101u;
            const uint8_t *p = (const uint8_t *)xc;
            const int32_t in2 = 2 * in_f, in3 = 3 * in_f, in4 = 4 * in_f;
            uint32_t acc = 0;
            for (; s + 4 <= n; s += 4, p += in4) {
                const uint32_t w = (uint32_t)p[0] | ((uint32_t)p[in_f] << 8) |
                                   ((uint32_t)p[in2] << 16) | ((uint32_t)p[in3] << 24);
                acc = ep_usada8(w ^ 0x80808080u, zw, acc);
            }
            sum = (int32_t)acc;
            xc = (const int8_t *)p;
        }
#endif
        for (; s < n; s++, xc += in_f) {
            const int32_t v = (int32_t)*xc - zp;
            sum += v < 0 ? -v : v;
        }
        a[i] = sum;
        vmax = sum > vmax ? sum : vmax;
    }
    return vmax;
}

/* g[i] = sum_s e[s] x[s][i] (uint32, the zero point not yet taken off) over the samples
 * of the error column e (n entries, written over). On the DSP, when no partial sum can
 * leave int32 (n * max|e| * 128 < 2^31, |e| < 2^15, n < 2^16), the nonzero errors are
 * packed with their sample (s << 16 | e) and eight columns at once take SMLABB/SMLATB;
 * else one sample at a time (samples with e = 0 skipped). */
static void ep_g_row(uint32_t *g, int32_t *e, int32_t n, const int8_t *xin, int32_t in_f,
                     int32_t emax_col)
{
    int32_t s, i = 0;
#if EP_USE_WORDS
    if (n < 65536 && emax_col < 32768 && (int64_t)n * emax_col * 128 <= INT32_MAX) {
        int32_t nz = 0, j;
        for (s = 0; s < n; s++) {
            if (e[s] != 0) {
                e[nz++] = (int32_t)(((uint32_t)s << 16) | ((uint32_t)e[s] & 0xFFFFu));
            }
        }
        for (; i + 8 <= in_f; i += 8) {
            int32_t g0 = 0, g1 = 0, g2 = 0, g3 = 0, g4 = 0, g5 = 0, g6 = 0, g7 = 0;
            for (j = 0; j < nz; j++) {
                const uint32_t ew = (uint32_t)e[j];
                const int8_t *xr = xin + (int64_t)(ew >> 16) * in_f + i;
                const uint32_t v0 = ep_ld32(xr), v1 = ep_ld32(xr + 4);
                const uint32_t a0 = EP_SXTB16(v0), b0 = ep_sxtb16_ror8(v0);
                const uint32_t a1 = EP_SXTB16(v1), b1 = ep_sxtb16_ror8(v1);
                g0 = EP_SMLABB(a0, ew, g0);
                g2 = EP_SMLATB(a0, ew, g2);
                g1 = EP_SMLABB(b0, ew, g1);
                g3 = EP_SMLATB(b0, ew, g3);
                g4 = EP_SMLABB(a1, ew, g4);
                g6 = EP_SMLATB(a1, ew, g6);
                g5 = EP_SMLABB(b1, ew, g5);
                g7 = EP_SMLATB(b1, ew, g7);
            }
            g[i] = (uint32_t)g0;
            g[i + 1] = (uint32_t)g1;
            g[i + 2] = (uint32_t)g2;
            g[i + 3] = (uint32_t)g3;
            g[i + 4] = (uint32_t)g4;
            g[i + 5] = (uint32_t)g5;
            g[i + 6] = (uint32_t)g6;
            g[i + 7] = (uint32_t)g7;
        }
        for (; i < in_f; i++) {
            int32_t sum = 0;
            for (j = 0; j < nz; j++) {
                const uint32_t ew = (uint32_t)e[j];
                sum += (int32_t)(int16_t)(ew & 0xFFFFu) * xin[(int64_t)(ew >> 16) * in_f + i];
            }
            g[i] = (uint32_t)sum;
        }
        return;
    }
#else
    (void)emax_col;
#endif
    for (i = 0; i < in_f; i++) {
        g[i] = 0;
    }
    for (s = 0; s < n; s++) {
        const uint32_t eu = (uint32_t)e[s];
        const int8_t *xr = xin + (int64_t)s * in_f;
        if (eu == 0) {
            continue;
        }
        for (i = 0; i + 4 <= in_f; i += 4) {
            const uint32_t g0 = g[i] + eu * (uint32_t)(int32_t)xr[i];
            const uint32_t g1 = g[i + 1] + eu * (uint32_t)(int32_t)xr[i + 1];
            const uint32_t g2 = g[i + 2] + eu * (uint32_t)(int32_t)xr[i + 2];
            const uint32_t g3 = g[i + 3] + eu * (uint32_t)(int32_t)xr[i + 3];
            g[i] = g0;
            g[i + 1] = g1;
            g[i + 2] = g2;
            g[i + 3] = g3;
        }
        for (; i < in_f; i++) {
            g[i] += eu * (uint32_t)(int32_t)xr[i];
        }
    }
}

/* v * 127 / vmax truncated toward zero (C division), 0 when vmax is 0; |v| <= vmax <=
 * 2^31 - 1. 32-bit division unless a * 127 needs more. */
static int32_t ep_norm127(int32_t v, int32_t vmax)
{
    uint32_t a = v < 0 ? 0u - (uint32_t)v : (uint32_t)v;
    if (vmax == 0) {
        return 0;
    }
    if ((uint32_t)vmax <= 0xFFFFFFFFu / 127u) {
        a = a * 127u / (uint32_t)vmax;
    } else {
        a = (uint32_t)((uint64_t)a * 127u / (uint32_t)vmax);
    }
    return v < 0 ? -(int32_t)a : (int32_t)a;
}

/* RoundingDivideByPOT for exponents 0..62 (G's smax - shift reaches 61). */
static int32_t ep_rdbpot64(int32_t x, int32_t exponent)
{
    const int64_t mask = (int64_t)(((uint64_t)1 << exponent) - 1u);
    const int64_t remainder = (int64_t)x & mask;
    const int64_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
    return (int32_t)(((int64_t)x >> exponent) + (remainder > threshold ? 1 : 0));
}

/* G of weight (o, i) before normalisation: g scaled by the row's multiplier relative to
 * the layer's largest shift (no left shift). */
EP_INLINE int32_t ep_g_scaled(int32_t g, int32_t mult, int32_t exponent)
{
    const int32_t h = ep_srdhm(g, mult);
    return exponent <= 31 ? ep_rdbpot(h, exponent) : ep_rdbpot64(h, exponent);
}

/* W feature: sign(w) * (|w| * 127 / qmax), wrapped to int8 like the reference's cast (a
 * stored -8 at 4 bits gives -145 -> 111). */
EP_INLINE int32_t ep_w_feature(int32_t w, int32_t qmax)
{
    const int32_t a = (w < 0 ? -w : w) * 127 / qmax;
    const int32_t v = w < 0 ? -a : a;
    return (int32_t)(((uint32_t)v & 0xFFu) ^ 0x80u) - 0x80;
}

/* The flip network's hidden requantization. fast: every acc1 (features within int8)
 * satisfies |acc1| * 2^(left + 1) < 2^31, so TFLite's
 * RoundingDivideByPOT(SaturatingRoundingDoublingHighMul(acc1 << left, m1), right) is
 * (SMMULR(acc1 << (left + 1), m1) + round) >> right once clamped to [0, 127] (round =
 * 2^(right-1) or 0; a negative product gives <= 0 either way; |SMMULR| < 2^30). */
typedef struct {
    int32_t fast, lshift, rshift, round;
} ep_netq;

static void ep_netq_init(const edgeplus_flipnet *net, ep_netq *nq)
{
    const int32_t left = net->s1 > 0 ? net->s1 : 0;
    int64_t bound = 0;
    int32_t h, k;
    for (h = 0; h < net->hidden; h++) {
        int64_t b = net->b1[h] < 0 ? -(int64_t)net->b1[h] : net->b1[h];
        for (k = 0; k < 4; k++) {
            const int32_t w = net->w1[4 * h + k];
            b += 128 * (int64_t)(w < 0 ? -w : w);
        }
        bound = b > bound ? b : bound;
    }
    nq->fast = (bound << (left + 1)) <= INT32_MAX;
    nq->lshift = left + 1;
    nq->rshift = net->s1 > 0 ? 0 : -net->s1;
    nq->round = nq->rshift > 0 ? (int32_t)(1u << (nq->rshift - 1)) : 0;
}

EP_INLINE int32_t ep_hidden_fast(int32_t acc1, int32_t m1, const ep_netq *nq)
{
    const int32_t h = ep_smmlar((int32_t)((uint32_t)acc1 << nq->lshift), m1, nq->round) >>
                      nq->rshift;
    return h < 0 ? 0 : (h > 127 ? 127 : h);
}

static int32_t ep_flipnet_acc2(const edgeplus_flipnet *net, const ep_netq *nq, int32_t f0,
                               int32_t f1, int32_t f2, int32_t f3)
{
    int32_t acc2 = net->b2, h;
    if (nq->fast) {
        const int32_t m1 = net->m1;
#if EP_USE_WORDS
        const uint32_t p02 = ((uint32_t)f0 & 0xFFFFu) | ((uint32_t)f2 << 16);
        const uint32_t p13 = ((uint32_t)f1 & 0xFFFFu) | ((uint32_t)f3 << 16);
#endif
        for (h = 0; h < net->hidden; h++) {
#if EP_USE_WORDS
            const uint32_t w = ep_ld32(net->w1 + 4 * h);
            int32_t acc1 = EP_SMLAD(EP_SXTB16(w), p02, net->b1[h]);
            acc1 = EP_SMLAD(ep_sxtb16_ror8(w), p13, acc1);
#else
            const int8_t *w = net->w1 + 4 * h;
            const int32_t acc1 = net->b1[h] + w[0] * f0 + w[1] * f1 + w[2] * f2 + w[3] * f3;
#endif
            acc2 += (int32_t)net->w2[h] * ep_hidden_fast(acc1, m1, nq);
        }
        return acc2;
    }
    for (h = 0; h < net->hidden; h++) {
        const int8_t *w = net->w1 + 4 * h;
        /* |acc1| <= 2^30 + 4 * 128 * 128 */
        const int32_t acc1 = net->b1[h] + w[0] * f0 + w[1] * f1 + w[2] * f2 + w[3] * f3;
        int32_t hid = ep_requant(acc1, net->m1, net->s1);
        hid = hid < 0 ? 0 : (hid > 127 ? 127 : hid);
        acc2 += (int32_t)net->w2[h] * hid; /* |acc2| <= 2^30 + 1024 * 128 * 127 */
    }
    return acc2;
}

/* ep_flipnet_acc2 of two feature vectors at once (nq->fast only; fa, fb: G, W, A, E):
 * the network's parameters are loaded once per hidden unit. */
static EP_NOINLINE void ep_flipnet_acc2x2(const edgeplus_flipnet *net, const ep_netq *nq,
                                          const int32_t *fa, const int32_t *fb, int32_t *acc2a,
                                          int32_t *acc2b)
{
    const int32_t m1 = net->m1, ls = nq->lshift, rs = nq->rshift, round = nq->round;
    const int8_t *w1 = net->w1, *w2 = net->w2, *w2_end = net->w2 + net->hidden;
    const int32_t *b1 = net->b1;
    int32_t ra = net->b2, rb = net->b2;
#if EP_USE_WORDS
    const uint32_t a02 = ((uint32_t)fa[0] & 0xFFFFu) | ((uint32_t)fa[2] << 16);
    const uint32_t a13 = ((uint32_t)fa[1] & 0xFFFFu) | ((uint32_t)fa[3] << 16);
    const uint32_t b02 = ((uint32_t)fb[0] & 0xFFFFu) | ((uint32_t)fb[2] << 16);
    const uint32_t b13 = ((uint32_t)fb[1] & 0xFFFFu) | ((uint32_t)fb[3] << 16);
#else
    const int32_t a0 = fa[0], a1 = fa[1], a2 = fa[2], a3 = fa[3];
    const int32_t c0 = fb[0], c1 = fb[1], c2 = fb[2], c3 = fb[3];
#endif
    for (; w2 < w2_end; w1 += 4, b1++, w2++) {
        int32_t ha, hb;
#if EP_USE_WORDS
        const uint32_t w = ep_ld32(w1);
        const uint32_t we = EP_SXTB16(w), wo = ep_sxtb16_ror8(w);
        ha = EP_SMLAD(wo, a13, EP_SMLAD(we, a02, *b1));
        hb = EP_SMLAD(wo, b13, EP_SMLAD(we, b02, *b1));
#else
        ha = *b1 + w1[0] * a0 + w1[1] * a1 + w1[2] * a2 + w1[3] * a3;
        hb = *b1 + w1[0] * c0 + w1[1] * c1 + w1[2] * c2 + w1[3] * c3;
#endif
        ha = ep_smmlar((int32_t)((uint32_t)ha << ls), m1, round) >> rs;
        hb = ep_smmlar((int32_t)((uint32_t)hb << ls), m1, round) >> rs;
        ra += *w2 * (ha < 0 ? 0 : (ha > 127 ? 127 : ha));
        rb += *w2 * (hb < 0 ? 0 : (hb > 127 ? 127 : hb));
    }
    *acc2a = ra;
    *acc2b = rb;
}

EP_INLINE int8_t ep_level_code(int32_t acc2, int32_t threshold)
{
    /* |acc2| < 2^31 (see ep_flipnet_acc2), threshold >= 1 */
    const uint32_t a = acc2 < 0 ? 0u - (uint32_t)acc2 : (uint32_t)acc2;
    uint32_t k = a / (uint32_t)threshold;
    k = k > 127u ? 127u : k;
    return (int8_t)(acc2 < 0 ? -(int32_t)k : (int32_t)k);
}

/* The flip level code of every weight of calibrated layer l into `codes`, or
 * EDGEPLUS_ERR_DIMS when n * max|e| * 255 exceeds int32 (the reference's bound). */
static edgeplus_status ep_layer_codes(const ep_qstep *q, int32_t l, int8_t *codes)
{
    const edgeplus_fc_layer *ly = &q->head->layers[l];
    const edgeplus_flipnet *net = q->head->nets[l];
    const int32_t in_f = ly->in_features, out_f = ly->out_features, n = q->n;
    const int32_t zp = ly->input_zero_point, qmax = ep_qmax(ly->w_bits);
    const int8_t *xin = ep_layer_in(q, l);
    uint32_t *gu = (uint32_t *)q->gbuf;
    int64_t emax = 0, esum_max = 0;
    int32_t s, o, i, smax = ly->shift[0], vmax = 0, gmax = 0;
    ep_netq nq;

    /* A[i] = sum_s |x~[s][i]| (<= 255 n < 2^31) */
    vmax = ep_abs_column_sums(xin, n, in_f, zp, q->tmp32);
    for (i = 0; i < in_f; i++) {
        q->a8[i] = (int8_t)ep_norm127(q->tmp32[i], vmax);
    }
    for (o = 1; o < out_f; o++) {
        smax = ly->shift[o] > smax ? ly->shift[o] : smax;
    }

    /* max|e|, E[o] = sum_s |e[s][o]| and g = sum_s e x~ (in uint32, exact once the bound
     * below holds: |g| <= n * max|e| * 255, and so are sum e x and zp sum e) */
    for (o = 0; o < out_f; o++) {
        uint32_t *g = gu + (int64_t)o * in_f;
        uint32_t esum_signed = 0;
        int64_t esum = 0, emax_col = 0;
        ep_error_column(q, l, o);
        for (s = 0; s < n; s++) {
            const int32_t e = q->ecol[s];
            const int64_t ea = e < 0 ? -(int64_t)e : e;
            esum += ea;
            emax_col = ea > emax_col ? ea : emax_col;
            esum_signed += (uint32_t)e;
        }
        emax = emax_col > emax ? emax_col : emax;
        ep_g_row(g, q->ecol, n, xin, in_f, emax_col > INT32_MAX ? INT32_MAX : (int32_t)emax_col);
        if (zp != 0) {
            const uint32_t corr = (uint32_t)zp * esum_signed;
            for (i = 0; i < in_f; i++) {
                g[i] -= corr;
            }
        }
        q->tmp32[o] = esum > INT32_MAX ? INT32_MAX : (int32_t)esum;
        esum_max = esum > esum_max ? esum : esum_max;
    }
    if ((int64_t)n * emax * 255 > INT32_MAX) {
        return EP_FAIL(EDGEPLUS_ERR_DIMS, "n", -1, n,
                       "n * max|error| * 255 could overflow the step's int32 sums: use fewer "
                       "samples per step (or a smaller margin)");
    }
    /* from here every sum fits int32: E <= n * max|e| */
    for (o = 0; o < out_f; o++) {
        q->e8[o] = (int8_t)ep_norm127(q->tmp32[o], (int32_t)esum_max);
    }
    for (o = 0; o < out_f; o++) {
        int32_t *g = q->gbuf + (int64_t)o * in_f;
        const int32_t mult = ly->multiplier[o], exponent = smax - ly->shift[o];
        for (i = 0; i < in_f; i++) {
            const int32_t gs = ep_g_scaled(g[i], mult, exponent);
            const int32_t ga = gs < 0 ? -gs : gs; /* |gs| <= |g| < 2^31 */
            g[i] = gs;
            gmax = ga > gmax ? ga : gmax;
        }
    }

    /* features (G, W, A, E) and the network's level code per weight */
    ep_netq_init(net, &nq);
    for (o = 0; o < out_f; o++) {
        const int32_t *g = q->gbuf + (int64_t)o * in_f;
        const int32_t fe = q->e8[o];
        i = 0;
        if (nq.fast) {
            for (; i + 1 < in_f; i += 2) {
                const int32_t idx = o * in_f + i;
                int32_t fa[4], fb[4], acc2a, acc2b;
                fa[0] = ep_norm127(g[i], gmax);
                fa[1] = ep_w_feature(ep_load(ly->weights, idx, ly->w_bits), qmax);
                fa[2] = q->a8[i];
                fa[3] = fe;
                fb[0] = ep_norm127(g[i + 1], gmax);
                fb[1] = ep_w_feature(ep_load(ly->weights, idx + 1, ly->w_bits), qmax);
                fb[2] = q->a8[i + 1];
                fb[3] = fe;
                ep_flipnet_acc2x2(net, &nq, fa, fb, &acc2a, &acc2b);
                codes[idx] = ep_level_code(acc2a, net->threshold);
                codes[idx + 1] = ep_level_code(acc2b, net->threshold);
            }
        }
        for (; i < in_f; i++) {
            const int32_t idx = o * in_f + i;
            const int32_t fg = ep_norm127(g[i], gmax);
            const int32_t fw = ep_w_feature(ep_load(ly->weights, idx, ly->w_bits), qmax);
            codes[idx] =
                ep_level_code(ep_flipnet_acc2(net, &nq, fg, fw, q->a8[i], fe), net->threshold);
        }
    }
    return EDGEPLUS_OK;
}

/* ------------------------------------------------------------------ levels */

/* The weights of one calibrated layer moving from level k-1's candidate to level k's,
 * and (the first calibrated layer) the moves still to add to its accumulators of the
 * current row: acc[s] += sum_j d_j (x[s][i_j] - zp), in uint32 (exact: the accumulators
 * stay within the layer's bound). */
typedef struct {
    const edgeplus_fc_layer *ly;
    const int8_t *backup;
    const int8_t *xin;
    uint32_t *acc; /* the row's accumulators, NULL when not tracked */
    int32_t k, qmax, bits, in_f, n, zp;
    int32_t changed, count, moved;
    int32_t col[4], d[4];
} ep_mover;

static void ep_flush_moves(ep_mover *m)
{
    const int8_t *p = m->xin;
    uint32_t *acc = m->acc, *end = m->acc + m->n;
    const int32_t stride = m->in_f;
    const int32_t i0 = m->col[0], i1 = m->col[1], i2 = m->col[2], i3 = m->col[3];
    const int32_t d0 = m->d[0], d1 = m->d[1], d2 = m->d[2], d3 = m->d[3];
    uint32_t cz = 0;
    int32_t j;
    for (j = 0; j < m->count; j++) {
        cz -= (uint32_t)m->zp * (uint32_t)m->d[j];
    }
    switch (m->count) {
    case 4:
        for (; acc < end; acc++, p += stride) {
            *acc += cz + (uint32_t)(d0 * p[i0] + d1 * p[i1] + d2 * p[i2] + d3 * p[i3]);
        }
        break;
    case 3:
        for (; acc < end; acc++, p += stride) {
            *acc += cz + (uint32_t)(d0 * p[i0] + d1 * p[i1] + d2 * p[i2]);
        }
        break;
    case 2:
        for (; acc < end; acc++, p += stride) {
            *acc += cz + (uint32_t)(d0 * p[i0] + d1 * p[i1]);
        }
        break;
    case 1:
        for (; acc < end; acc++, p += stride) {
            *acc += cz + (uint32_t)(d0 * p[i0]);
        }
        break;
    default:
        break;
    }
    m->count = 0;
}

/* Weight (o, i) = flat idx with level code c: its level-k value clamp(old + update_k),
 * stored if it differs from level k-1's. */
EP_INLINE void ep_move_weight(ep_mover *m, int32_t idx, int32_t i, int32_t c)
{
    const int32_t qmax = m->qmax;
    int32_t old, prev, next;
    if (m->k == 0) {
        old = ep_load(m->ly->weights, idx, m->bits);
        prev = old;
        next = old + (c > 0 ? 1 : (c < 0 ? -1 : 0));
    } else { /* |c| == k: level k-1 moved it by sign(c), level k does not */
        old = ep_load(m->backup, idx, m->bits);
        prev = old + (c > 0 ? 1 : -1);
        prev = prev < -qmax ? -qmax : (prev > qmax ? qmax : prev);
        next = old;
    }
    next = next < -qmax ? -qmax : (next > qmax ? qmax : next);
    if (next == prev) {
        return;
    }
    ep_store(m->ly->weights, idx, m->bits, next);
    m->changed += (next != old) - (prev != old);
    if (m->acc != NULL) {
        if (m->count == 4) {
            ep_flush_moves(m);
        }
        m->col[m->count] = i;
        m->d[m->count] = next - prev;
        m->count++;
        m->moved = 1;
    }
}

/* A byte of v equals the byte of pat (pat = b * 0x01010101). */
EP_INLINE int ep_has_byte(uint32_t v, uint32_t pat)
{
    v ^= pat;
    return ((v - 0x01010101u) & ~v & 0x80808080u) != 0;
}

/* Move the calibrated layers' weights from level k-1's candidate (the old weights for
 * k = 0) to level k's: clamp(old + update_k) in the narrow range. Level k differs from
 * level k-1 only where |code| == k. The accumulators of the first calibrated layer
 * follow the weights that move, and its rows that moved are requantized. `changed` is
 * level k-1's count of weights differing from the old ones (0 for k = 0); returns level
 * k's. */
static int32_t ep_apply_level(const ep_qstep *q, int32_t k, int32_t changed)
{
    const int8_t *codes = q->codes;
    const uint32_t pk = (uint32_t)(uint8_t)k * 0x01010101u;
    const uint32_t nk = (uint32_t)(uint8_t)(-k) * 0x01010101u;
    ep_mover m;
    int32_t l, o, i, j;
    m.backup = q->backup;
    m.k = k;
    m.n = q->n;
    m.changed = changed;
    for (l = 0; l < q->head->num_layers; l++) {
        const edgeplus_fc_layer *ly = &q->head->layers[l];
        const int32_t in_f = ly->in_features, out_f = ly->out_features;
        int8_t *out = ep_layer_out(q, l);
        if (!ep_qcore_calibrated(q->head, l)) {
            continue;
        }
        m.ly = ly;
        m.bits = ly->w_bits;
        m.qmax = ep_qmax(ly->w_bits);
        m.in_f = in_f;
        m.zp = ly->input_zero_point;
        m.xin = ep_layer_in(q, l);
        for (o = 0; o < out_f; o++) {
            const int8_t *cr = codes + o * in_f;
            const int32_t base = o * in_f;
            m.acc = l == q->first ? (uint32_t *)q->acc + (int64_t)o * q->n : NULL;
            m.moved = 0;
            m.count = 0;
            if (k == 0) {
                for (i = 0; i < in_f; i++) {
                    ep_move_weight(&m, base + i, i, cr[i]);
                }
            } else {
                for (i = 0; i + 4 <= in_f; i += 4) {
                    const uint32_t v = ep_ld32(cr + i);
                    if (ep_has_byte(v, pk) || ep_has_byte(v, nk)) {
                        for (j = i; j < i + 4; j++) {
                            if (cr[j] == k || cr[j] == -k) {
                                ep_move_weight(&m, base + j, j, cr[j]);
                            }
                        }
                    }
                }
                for (; i < in_f; i++) {
                    if (cr[i] == k || cr[i] == -k) {
                        ep_move_weight(&m, base + i, i, cr[i]);
                    }
                }
            }
            if (m.moved) {
                ep_row_rq rq;
                ep_flush_moves(&m);
                ep_row_rq_init(&rq, ly, o);
                ep_out_column(&rq, (const int32_t *)m.acc, out + o, out_f, q->n);
            }
        }
        codes += out_f * in_f;
        m.backup += edgeplus_packed_bytes(out_f * in_f, ly->w_bits);
    }
    return m.changed;
}

/* Copy the calibrated layers' packed bytes to (save) or from (restore) the backup. */
static void ep_backup(const ep_qstep *q, int save)
{
    int8_t *b = q->backup;
    int32_t l;
    for (l = 0; l < q->head->num_layers; l++) {
        const edgeplus_fc_layer *ly = &q->head->layers[l];
        const size_t bytes = (size_t)edgeplus_packed_bytes(ly->out_features * ly->in_features,
                                                           ly->w_bits);
        if (!ep_qcore_calibrated(q->head, l)) {
            continue;
        }
        if (save) {
            memcpy(b, ly->weights, bytes);
        } else {
            memcpy(ly->weights, b, bytes);
        }
        b += bytes;
    }
}

/* ------------------------------------------------------------------ step */

edgeplus_status edgeplus_qcore_step(const edgeplus_context *ctx,
                                    const edgeplus_qcore_head *head, const int8_t *x,
                                    const int32_t *y, int32_t n, int32_t guard,
                                    int32_t guard_min_correct, uint8_t *correct_before,
                                    uint8_t *correct_after,
                                    edgeplus_qcore_step_result *result)
{
    edgeplus_status st;
    ep_qcore_layout lay;
    ep_qstep q;
    edgeplus_qcore_step_result r;
    uintptr_t base, aligned;
    uint8_t *mem;
    int32_t l, s, k;

    EP_CHECK_NULL(ctx, "ctx");
    EP_CHECK_NULL(head, "head");
    EP_CHECK_NULL(x, "x");
    EP_CHECK_NULL(y, "y");
    EP_CHECK_NULL(result, "result");
    st = edgeplus__qcore_check(head, n);
    if (st != EDGEPLUS_OK) {
        return st;
    }
    if (guard < 0 || guard > n - 1) {
        return EP_FAIL_RANGE(EDGEPLUS_ERR_ARG, "guard", -1, guard, 0, n - 1);
    }
    if (guard_min_correct < 0 || guard_min_correct > guard) {
        return EP_FAIL_RANGE(EDGEPLUS_ERR_ARG, "guard_min_correct", -1, guard_min_correct, 0,
                             guard);
    }
    edgeplus__qcore_layout(head, n, &lay);
    if (lay.total + 4 > INT32_MAX) {
        return EP_FAIL(EDGEPLUS_ERR_DIMS, "n", -1, n, "the scratch bytes must fit int32");
    }
    q.classes = head->layers[head->num_layers - 1].out_features;
    for (s = 0; s < n; s++) {
        if (y[s] < 0 || y[s] >= q.classes) {
            return EP_FAIL_RANGE(EDGEPLUS_ERR_ARG, "y[]", s, y[s], 0, q.classes - 1);
        }
    }
    if (ctx->buf == NULL) {
        return EP_FAIL(EDGEPLUS_ERR_SCRATCH, "ctx->buf", -1, 0, "must not be NULL");
    }
    base = (uintptr_t)ctx->buf;
    aligned = (base + 3u) & ~(uintptr_t)3u;
    if (ctx->size < 0 || (int64_t)ctx->size - (int64_t)(aligned - base) < lay.total) {
        return EP_FAIL_SCRATCH("ctx->size", ctx->size, lay.total + 4);
    }
    mem = (uint8_t *)aligned;

    q.head = head;
    q.x = x;
    q.y = y;
    q.n = n;
    q.guard = guard;
    q.sum_out = 0;
    q.first = -1;
    for (l = 0; l < head->num_layers; l++) {
        q.off[l] = q.sum_out;
        q.sum_out += head->layers[l].out_features;
        if (q.first < 0 && ep_qcore_calibrated(head, l)) {
            q.first = l;
        }
    }
    q.ecol = (int32_t *)(void *)(mem + lay.ecol);
    q.elab = (int32_t *)(void *)(mem + lay.elab);
    q.tmp32 = (int32_t *)(void *)(mem + lay.tmp32);
    q.acc = (int32_t *)(void *)(mem + lay.acc);
    q.gbuf = (int32_t *)(void *)(mem + lay.gbuf);
    q.acts = (int8_t *)(mem + lay.acts);
    q.codes = (int8_t *)(mem + lay.codes);
    q.backup = (int8_t *)(mem + lay.gbuf); /* G is dead once the codes are known */
    q.a8 = (int8_t *)(mem + lay.a8);
    q.e8 = (int8_t *)(mem + lay.e8);
    q.row = q.first >= 0 ? (int8_t *)(mem + lay.row) : NULL;

    /* forward with the old weights, errors, flip levels (nothing is written outside the
     * scratch until they succeed) */
    ep_forward_from(&q, 0);
    if (q.first >= 0) {
        int8_t *codes = q.codes;
        ep_label_errors(&q);
        for (l = q.first; l < head->num_layers; l++) {
            if (ep_qcore_calibrated(head, l)) {
                st = ep_layer_codes(&q, l, codes);
                if (st != EDGEPLUS_OK) {
                    return st;
                }
                codes += head->layers[l].out_features * head->layers[l].in_features;
            }
        }
    }
    ep_score(&q, correct_before, &r.correct_before, &r.margin_before, &r.guard_correct_before);
    if (correct_after != NULL) {
        if (correct_before != NULL) {
            memcpy(correct_after, correct_before, (size_t)n);
        } else {
            ep_score(&q, correct_after, &r.correct_after, &r.margin_after,
                     &r.guard_correct_after);
        }
    }
    r.kept = 0;
    r.level = 0;
    r.changed = 0;
    r.correct_after = r.correct_before;
    r.margin_after = r.margin_before;
    r.guard_correct_after = r.guard_correct_before;

    if (q.first >= 0) {
        int32_t changed = 0;
        ep_backup(&q, 1);
        for (k = 0; k < head->tries; k++) {
            int32_t c_a, m_a, g_a;
            changed = ep_apply_level(&q, k, changed);
            if (changed == 0) {
                break;
            }
            ep_forward_from(&q, q.first + 1);
            ep_score(&q, correct_after, &c_a, &m_a, &g_a);
            r.level = k;
            r.changed = changed;
            r.correct_after = c_a;
            r.margin_after = m_a;
            r.guard_correct_after = g_a;
            r.kept = (c_a > r.correct_before || (c_a == r.correct_before && m_a > r.margin_before))
                     && g_a >= guard_min_correct;
            if (r.kept) {
                break;
            }
        }
        if (!r.kept) {
            ep_backup(&q, 0); /* the old bytes, padding bits included */
        }
    }
    *result = r;
    return EDGEPLUS_OK;
}
