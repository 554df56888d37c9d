/*
 * edgeplus_qcore_step: QCore's on-device calibration step (see edgeplus_ops.h),
 * bit-exact with tfmot_edgeplus/calibration/step.py's qcore_step.
 *
 * Phases: forward of every layer with the old weights (all activations kept) | output
 * errors | per calibrated layer, its features and the flip level of every weight (an
 * int8 code: sign(acc2) * min(|acc2| / threshold, 127), so that level k flips the weight
 * by sign(code) exactly when |code| > k, i.e. |acc2| >= (k+1) * threshold) | score
 * before | backup of the calibrated layers' packed bytes | the level loop (apply,
 * forward from the first calibrated layer on, score, keep or restore).
 *
 * A hidden layer's error column (one unit, all samples) is recomputed from the output
 * errors when needed instead of being stored, and G twice (once for its maximum, once
 * for the features) instead of keeping an int32 per weight.
 */
#include "edgeplus_qcore_internal.h"

typedef struct {
    const edgeplus_qcore_head *head;
    const int8_t *x;
    const int32_t *y;
    int32_t n, classes;
    int32_t off[EDGEPLUS_QCORE_MAX_LAYERS]; /* first activation column of layer l's output */
    int32_t sum_out;
    int8_t *acts;   /* [n][sum_out]: acts + n * off[l] holds layer l's output [n][out_l] */
    int32_t *e_out; /* [n][classes] */
    int32_t *ecol;  /* [n] */
    int32_t *tmp32;
    int8_t *codes;
    int8_t *backup;
    int8_t *a8;
    int8_t *e8;
} ep_qstep;

EP_INLINE const int8_t *ep_layer_out(const ep_qstep *q, int32_t l)
{
    return q->acts + (int64_t)q->n * q->off[l];
}

EP_INLINE const int8_t *ep_layer_in(const ep_qstep *q, int32_t l)
{
    return l == 0 ? q->x : ep_layer_out(q, l - 1);
}

/* ------------------------------------------------------------------ forward */

static void ep_fc_forward(const edgeplus_fc_layer *ly, const int8_t *in, int8_t *out, int32_t n)
{
    const int32_t in_f = ly->in_features, out_f = ly->out_features;
    const int32_t zp = ly->input_zero_point;
    int32_t s, o, i;
    for (s = 0; s < n; s++) {
        const int8_t *xr = in + (int64_t)s * in_f;
        int8_t *yr = out + (int64_t)s * out_f;
        for (o = 0; o < out_f; o++) {
            int32_t acc = 0, v;
            if (ly->w_bits == 8) {
                const int8_t *w = ly->weights + (int64_t)o * in_f;
                for (i = 0; i < in_f; i++) {
                    acc += (int32_t)w[i] * ((int32_t)xr[i] - zp);
                }
            } else {
                const int32_t base = o * in_f;
                for (i = 0; i < in_f; i++) {
                    acc += ep_load(ly->weights, base + i, 4) * ((int32_t)xr[i] - zp);
                }
            }
            if (ly->bias != NULL) {
                acc = ep_wrap_add(acc, ly->bias[o]);
            }
            v = ep_requant(acc, ly->multiplier[o], ly->shift[o]) + ly->output_zero_point;
            yr[o] = ep_clamp8(v, ly->act_min, ly->act_max);
        }
    }
}

static void ep_forward_from(const ep_qstep *q, int32_t first)
{
    int32_t l;
    for (l = first; l < q->head->num_layers; l++) {
        ep_fc_forward(&q->head->layers[l], ep_layer_in(q, l), (int8_t *)ep_layer_out(q, l), q->n);
    }
}

/* (correct, sum of margins) of the logits; mask[s] = 1 if sample s is right (mask may
 * be NULL). pred = the first maximum; margin = z[y] - max_{o != y} z[o]. */
static void ep_score(const ep_qstep *q, uint8_t *mask, int32_t *correct, int32_t *margin)
{
    const int8_t *z = ep_layer_out(q, q->head->num_layers - 1);
    const int32_t c = q->classes;
    int64_t msum = 0;
    int32_t s, o, ok_count = 0;
    for (s = 0; s < q->n; s++) {
        const int8_t *zr = z + (int64_t)s * c;
        const int32_t y = q->y[s];
        int32_t best = 0, rival = INT32_MIN, ok;
        for (o = 0; o < c; o++) {
            if (zr[o] > zr[best]) {
                best = o;
            }
            if (o != y && zr[o] > rival) {
                rival = zr[o];
            }
        }
        ok = best == y;
        ok_count += ok;
        msum += (int32_t)zr[y] - rival;
        if (mask != NULL) {
            mask[s] = (uint8_t)ok;
        }
    }
    *correct = ok_count;
    *margin = (int32_t)msum; /* |msum| <= 255 n (EDGEPLUS_QCORE_MAX_N) */
}

/* ------------------------------------------------------------------ errors */

static void ep_output_errors(const ep_qstep *q)
{
    const int8_t *z = ep_layer_out(q, q->head->num_layers - 1);
    const int32_t c = q->classes, m = q->head->margin;
    int32_t s, o;
    for (s = 0; s < q->n; s++) {
        const int8_t *zr = z + (int64_t)s * c;
        int32_t *er = q->e_out + (int64_t)s * c;
        const int32_t y = q->y[s];
        int32_t sum = 0; /* <= (classes - 1) * 2 * 255 < 2^31 */
        for (o = 0; o < c; o++) {
            int32_t e = 0;
            if (o != y) {
                e = (int32_t)zr[o] - zr[y] + m;
                e = e < 0 ? 0 : (e > 2 * m ? 2 * m : e);
                sum += e;
            }
            er[o] = e;
        }
        er[y] = -sum;
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
    const int32_t c = q->classes, n = q->n;
    int32_t s, o;
    if (l == q->head->num_layers - 1) {
        for (s = 0; s < n; s++) {
            q->ecol[s] = q->e_out[(int64_t)s * c + j];
        }
        return;
    }
    for (s = 0; s < n; s++) {
        q->ecol[s] = 0;
    }
    /* |sum| <= sum_o |e[s][o]| <= 2 (classes - 1) * 2 * 255 < 2^31 */
    for (o = 0; o < c; o++) {
        const int32_t *e = q->e_out + o;
        if (ep_feedback_sign((uint32_t)l, (uint32_t)j, (uint32_t)o) > 0) {
            for (s = 0; s < n; s++) {
                q->ecol[s] += e[(int64_t)s * c];
            }
        } else {
            for (s = 0; s < n; s++) {
                q->ecol[s] -= e[(int64_t)s * c];
            }
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

/* v * 127 / vmax truncated toward zero (C division), 0 when vmax is 0; |v| <= vmax. */
static int32_t ep_norm127(int64_t v, int64_t vmax)
{
    int64_t a;
    if (vmax == 0) {
        return 0;
    }
    a = (v < 0 ? -v : v) * 127 / vmax;
    return (int32_t)(v < 0 ? -a : a);
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
EP_INLINE int32_t ep_g_scaled(int32_t g, const edgeplus_fc_layer *ly, int32_t o, int32_t smax)
{
    return ep_rdbpot64(ep_srdhm(g, ly->multiplier[o]), smax - ly->shift[o]);
}

/* W feature: sign(w) * (|w| * 127 / qmax), wrapped to int8 like the reference's cast (a
 * stored -8 at 4 bits gives -145 -> 111). */
EP_INLINE int32_t ep_w_feature(int32_t w, int32_t qmax)
{
    const int32_t a = (w < 0 ? -w : w) * 127 / qmax;
    const int32_t v = w < 0 ? -a : a;
    return (int32_t)(((uint32_t)v & 0xFFu) ^ 0x80u) - 0x80;
}

static int32_t ep_flipnet_acc2(const edgeplus_flipnet *net, int32_t f0, int32_t f1, int32_t f2,
                               int32_t f3)
{
    int32_t acc2 = net->b2, h;
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

EP_INLINE int8_t ep_level_code(int32_t acc2, int32_t threshold)
{
    const int64_t a = acc2 < 0 ? -(int64_t)acc2 : (int64_t)acc2;
    int64_t k = a / threshold;
    k = k > 127 ? 127 : k;
    return (int8_t)(acc2 < 0 ? -k : k);
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
    int64_t vmax = 0, gmax = 0;
    int32_t s, o, i, smax = ly->shift[0], emax = 0;

    /* A[i] = sum_s |x~[s][i]| (<= 255 n) */
    for (i = 0; i < in_f; i++) {
        int32_t a = 0;
        for (s = 0; s < n; s++) {
            const int32_t v = (int32_t)xin[(int64_t)s * in_f + i] - zp;
            a += v < 0 ? -v : v;
        }
        q->tmp32[i] = a;
        vmax = a > vmax ? a : vmax;
    }
    for (i = 0; i < in_f; i++) {
        q->a8[i] = (int8_t)ep_norm127(q->tmp32[i], vmax);
    }
    for (o = 1; o < out_f; o++) {
        smax = ly->shift[o] > smax ? ly->shift[o] : smax;
    }

    /* pass 1: max|e|, E[o] = sum_s |e[s][o]| and max|G|, in int64 (the bound is checked
     * once max|e| is known) */
    vmax = 0;
    for (o = 0; o < out_f; o++) {
        int64_t esum = 0;
        ep_error_column(q, l, o);
        for (s = 0; s < n; s++) {
            const int32_t e = q->ecol[s] < 0 ? -q->ecol[s] : q->ecol[s];
            esum += e;
            emax = e > emax ? e : emax;
        }
        q->tmp32[o] = esum > INT32_MAX ? INT32_MAX : (int32_t)esum;
        vmax = esum > vmax ? esum : vmax;
        for (i = 0; i < in_f; i++) {
            int64_t g = 0;
            for (s = 0; s < n; s++) {
                g += (int64_t)q->ecol[s] * ((int32_t)xin[(int64_t)s * in_f + i] - zp);
            }
            if (g >= -(int64_t)INT32_MAX && g <= INT32_MAX) { /* else the bound fails below */
                const int32_t gs = ep_g_scaled((int32_t)g, ly, o, smax);
                const int64_t ga = gs < 0 ? -(int64_t)gs : gs;
                gmax = ga > gmax ? ga : gmax;
            }
        }
    }
    if ((int64_t)n * emax * 255 > INT32_MAX) {
        return EDGEPLUS_ERR_DIMS;
    }
    for (o = 0; o < out_f; o++) {
        q->e8[o] = (int8_t)ep_norm127(q->tmp32[o], vmax);
    }

    /* pass 2: features (G, W, A, E) and the network's level code per weight; the sums now
     * fit int32 (|g| <= n * max|e| * 255) */
    for (o = 0; o < out_f; o++) {
        ep_error_column(q, l, o);
        for (i = 0; i < in_f; i++) {
            const int32_t idx = o * in_f + i;
            int32_t g = 0, fg, fw;
            for (s = 0; s < n; s++) {
                g += q->ecol[s] * ((int32_t)xin[(int64_t)s * in_f + i] - zp);
            }
            fg = ep_norm127(ep_g_scaled(g, ly, o, smax), gmax);
            fw = ep_w_feature(ep_load(ly->weights, idx, ly->w_bits), qmax);
            codes[idx] = ep_level_code(ep_flipnet_acc2(net, fg, fw, q->a8[i], q->e8[o]),
                                       net->threshold);
        }
    }
    return EDGEPLUS_OK;
}

/* ------------------------------------------------------------------ levels */

/* Apply level k to every calibrated layer (weights hold the old values); returns how
 * many weights changed. */
static int32_t ep_apply_level(const ep_qstep *q, int32_t k)
{
    const int8_t *codes = q->codes;
    int32_t l, idx, changed = 0;
    for (l = 0; l < q->head->num_layers; l++) {
        const edgeplus_fc_layer *ly = &q->head->layers[l];
        const int32_t count = ly->out_features * ly->in_features, qmax = ep_qmax(ly->w_bits);
        if (!ep_qcore_calibrated(q->head, l)) {
            continue;
        }
        for (idx = 0; idx < count; idx++) {
            const int32_t c = codes[idx];
            const int32_t w = ep_load(ly->weights, idx, ly->w_bits);
            int32_t v = w + (c > k ? 1 : (c < -k ? -1 : 0));
            v = v < -qmax ? -qmax : (v > qmax ? qmax : v);
            if (v != w) {
                ep_store(ly->weights, idx, ly->w_bits, v);
                changed++;
            }
        }
        codes += count;
    }
    return changed;
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
                                    const int32_t *y, int32_t n, uint8_t *correct_before,
                                    uint8_t *correct_after,
                                    edgeplus_qcore_step_result *result)
{
    edgeplus_status st;
    ep_qcore_layout lay;
    ep_qstep q;
    edgeplus_qcore_step_result r;
    uintptr_t base, aligned;
    uint8_t *mem;
    int32_t l, s, k, first = -1, dirty = 0;

    if (ctx == NULL || head == NULL || x == NULL || y == NULL || result == NULL) {
        return EDGEPLUS_ERR_NULL;
    }
    st = edgeplus__qcore_check(head, n);
    if (st != EDGEPLUS_OK) {
        return st;
    }
    edgeplus__qcore_layout(head, n, &lay);
    if (lay.total + 4 > INT32_MAX) {
        return EDGEPLUS_ERR_DIMS;
    }
    q.classes = head->layers[head->num_layers - 1].out_features;
    for (s = 0; s < n; s++) {
        if (y[s] < 0 || y[s] >= q.classes) {
            return EDGEPLUS_ERR_ARG;
        }
    }
    if (ctx->buf == NULL || ctx->size < 0) {
        return EDGEPLUS_ERR_SCRATCH;
    }
    base = (uintptr_t)ctx->buf;
    aligned = (base + 3u) & ~(uintptr_t)3u;
    if ((int64_t)ctx->size - (int64_t)(aligned - base) < lay.total) {
        return EDGEPLUS_ERR_SCRATCH;
    }
    mem = (uint8_t *)aligned;

    q.head = head;
    q.x = x;
    q.y = y;
    q.n = n;
    q.sum_out = 0;
    for (l = 0; l < head->num_layers; l++) {
        q.off[l] = q.sum_out;
        q.sum_out += head->layers[l].out_features;
        if (first < 0 && ep_qcore_calibrated(head, l)) {
            first = l;
        }
    }
    q.e_out = (int32_t *)(void *)(mem + lay.e_out);
    q.ecol = (int32_t *)(void *)(mem + lay.ecol);
    q.tmp32 = (int32_t *)(void *)(mem + lay.tmp32);
    q.acts = (int8_t *)(mem + lay.acts);
    q.codes = (int8_t *)(mem + lay.codes);
    q.backup = (int8_t *)(mem + lay.backup);
    q.a8 = (int8_t *)(mem + lay.a8);
    q.e8 = (int8_t *)(mem + lay.e8);

    /* forward with the old weights, errors, flip levels (nothing is written outside the
     * scratch until they succeed) */
    ep_forward_from(&q, 0);
    if (first >= 0) {
        int8_t *codes = q.codes;
        ep_output_errors(&q);
        for (l = first; l < head->num_layers; l++) {
            if (ep_qcore_calibrated(head, l)) {
                st = ep_layer_codes(&q, l, codes);
                if (st != EDGEPLUS_OK) {
                    return st;
                }
                codes += head->layers[l].out_features * head->layers[l].in_features;
            }
        }
    }
    ep_score(&q, correct_before, &r.correct_before, &r.margin_before);
    if (correct_after != NULL) {
        ep_score(&q, correct_after, &r.correct_after, &r.margin_after);
    }
    r.kept = 0;
    r.level = 0;
    r.changed = 0;
    r.correct_after = r.correct_before;
    r.margin_after = r.margin_before;

    if (first >= 0) {
        ep_backup(&q, 1);
        for (k = 0; k < head->tries; k++) {
            int32_t changed, c_a, m_a;
            if (dirty) {
                ep_backup(&q, 0);
                dirty = 0;
            }
            changed = ep_apply_level(&q, k);
            if (changed == 0) {
                break;
            }
            dirty = 1;
            ep_forward_from(&q, first);
            ep_score(&q, correct_after, &c_a, &m_a);
            r.level = k;
            r.changed = changed;
            r.correct_after = c_a;
            r.margin_after = m_a;
            r.kept = c_a > r.correct_before || (c_a == r.correct_before && m_a > r.margin_before);
            if (r.kept) {
                dirty = 0;
                break;
            }
        }
        if (dirty) {
            ep_backup(&q, 0);
        }
    }
    *result = r;
    return EDGEPLUS_OK;
}
