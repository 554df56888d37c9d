/*
 * edgeplus_conv_core.c - the implementation of edgeplus_conv2d[_window] (internal, not
 * public API).
 *
 * Conv algorithm (both paths): for each output row of the window, output pixels are
 * taken in blocks of P (even, <= EDGEPLUS_CONV_PIXEL_BLOCK, limited by the scratch).
 * Each pixel's im2col column is unpacked once into int16 as (x - input_zp) (padding
 * = 0; length kpad = K*C rounded up to 16 with zeros) and stored interleaved with the
 * other pixel of its pair, one 32-bit word (two int16) at a time. For each pair of
 * output channels the two weight rows are unpacked once, interleaved the same way,
 * and every pixel pair of the block is reduced 2x2 (two pixels x two channels): the
 * inner loop loads one word pair of each stream (LDRD) and issues 4 SMLAD = 8 MACs.
 * Weight unpacking costs 1/P per MAC, the im2col 1/out_c per MAC.
 *
 * 2-bit activations x 2-bit weights: two products share one 16-bit lane. The column
 * holds halfwords A = a0 + a1*2^13 and the weight row B = b1 + b0*2^13 (|a| <= 3,
 * |b| <= 2, so both fit int16), and A*B = a0*b1 + (a0*b0 + a1*b1)*2^13 + a1*b0*2^26:
 * one SMLAD adds four MACs into the field at 2^13. Field bounds: per SMLAD the low
 * field moves by at most 2*3*2 = 12 and the middle one by at most 4*6 = 24; both must
 * stay inside (-2^12, 2^12) to be decoded, which holds for up to 170 SMLADs: the
 * accumulators are decoded (sign-extended bits 13..25 after adding 2^12) and
 * cleared every EDGEPLUS_W2A2_FLUSH (160) words. Bits above 26 wrap harmlessly. When K*C
 * is a multiple of 4 the weight rows are not unpacked at all: each packed weight byte is
 * its lane word through a 256-entry table (EP_LANE_W), against 4 pixels at a time
 * (ep_dot_lanes4, the lean layout's kernel with the requantization table), and on windows
 * of 64 pixels or more a 2-bit output is requantized by three per-channel thresholds
 * found with the channel's own requantization (ep_rq_thresholds: bit-exact).
 *
 * Lean layout (a scratch below _get_buffer_size, see edgeplus_ops.h): no requantization
 * table and, when the weight rows start on a byte, no weight unpacking at all: the rows
 * are read packed from the filter, one 32-bit word per group of 32 / w_bits weights,
 * widened by SXTB16 (4-bit and 2-bit fields first masked to the top of their byte, so the
 * sums are x16 / x64 and shifted back before requantization), against columns stored in
 * the order those words unpack in, 4 pixels x 1 channel per dot product (assembly on the
 * M4: 14 / 30 / 58 instructions per 16 / 32 / 64 MACs). Otherwise the default algorithm
 * runs with smaller blocks.
 *
 * Accumulators: every lane product is |x - zp| * |w| <= (2^in_bits - 1) *
 * 2^(w_bits-1) and K*C <= EDGEPLUS_MAX_KC(in_bits, w_bits) is checked at entry, so
 * the int32 sums cannot overflow (SMLAD adds two such products at a time).
 *
 * Depthwise is edgeplus_depthwise_core.c; the two cores share the checks and setup
 * (edgeplus_conv_common.c) and the unpacking / im2col helpers (edgeplus_conv_helpers.h),
 * and neither calls the other.
 *
 * The DSP path's word operations (SMLAD, SXTB16, SSUB8, ...) are ACLE intrinsics on
 * the M4; EDGEPLUS_EMULATE_DSP replaces them with C so the host tests (and the
 * sanitizers) run the same code (edgeplus_internal.h).
 */
#include <string.h>

#include "edgeplus_conv_helpers.h"

int32_t edgeplus__conv_wcache_bytes(const edgeplus_conv_params *params,
                                    const edgeplus_dims *input_dims,
                                    const edgeplus_dims *filter_dims)
{
    /* words per member: 2-bit x 2-bit lanes hold 4 values per word, int16 two */
    const int64_t kpad = ep_kpad(input_dims, filter_dims);
    const int pairs = params->in_bits == 2 && params->w_bits == 2;
    const int64_t mw = pairs ? kpad / 4 : kpad / 2;
    const int64_t bytes = (int64_t)((filter_dims->n + 1) & ~1) * mw * 4;
    if (bytes > INT32_MAX) {
        return (int32_t)EP_FAIL(EDGEPLUS_ERR_DIMS, "filter_dims", -1, filter_dims->n,
                                "the scratch bytes must fit int32");
    }
    return (int32_t)bytes;
}

int32_t edgeplus__conv_scratch_bytes(const edgeplus_conv_params *params,
                                     const edgeplus_dims *input_dims,
                                     const edgeplus_dims *filter_dims, int32_t pixels,
                                     int lean)
{
    /* 8 (alignment slack) + the per-channel requantization table (16 B/channel; lean:
     * none) + output staging (pixels x channels int8; lean: none for an 8-bit output) +
     * int16 columns: a temp column, a weight-row pair and an even number of im2col
     * columns (lean: see below). */
    const int64_t kpad = ep_kpad(input_dims, filter_dims);
    const int64_t oc = filter_dims->n;
    const int64_t px = (int64_t)((pixels + 1) & ~1);
    const int64_t table = lean ? 0 : oc * (int64_t)sizeof(ep_rq);
    const int64_t stage = lean && params->out_bits == 8 ? 0 : (px * oc + 3) & ~(int64_t)3;
    /* lean: px (a multiple of 4) columns of the raw-weight path and its temp column, or
     * px - 2 of the unpacking path and its 3 */
    const int64_t bytes = 8 + table + stage + (px + (lean ? 1 : 3)) * kpad * 2;
    if (bytes > INT32_MAX) {
        return (int32_t)EP_FAIL(EDGEPLUS_ERR_DIMS, "filter_dims", -1, filter_dims->n,
                                "the scratch bytes must fit int32");
    }
    return (int32_t)bytes;
}

/* In-place: int16 values v[0..n) (n even) -> n/2 paired lanes (see ep_unpack2_lanes). */
static void ep_pair_lanes(int16_t *v, int32_t n, int swap)
{
    int32_t j;
    for (j = 0; j < n / 2; j++) {
        const int32_t a = v[2 * j];
        const int32_t b = v[2 * j + 1];
        v[j] = (int16_t)(swap ? (b + a * (1 << EP_LANE_SHIFT)) : (a + b * (1 << EP_LANE_SHIFT)));
    }
}

/* Store `words` words of src into slot `slot` (0/1) of an interleaved pair buffer. */
static void ep_interleave(uint32_t *pair, int slot, const int16_t *src, int32_t words)
{
    uint32_t *d = pair + slot;
    int32_t i;
    for (i = 0; i < words; i++) {
        d[2 * i] = ep_ld32(src + 2 * i);
    }
}

/* ------------------------------------------------------------------ dot products */

/* Decode the middle field of a paired-lane accumulator. */
EP_INLINE int32_t ep_lane_decode(int32_t acc)
{
    /* bits 13..25 of acc + 2^12, sign-extended (SBFX); >> of a negative int32 is
     * arithmetic on every compiler the kernels support */
    const uint32_t t = (uint32_t)acc + (1u << (EP_LANE_SHIFT - 1));
    return (int32_t)(t << (32 - 2 * EP_LANE_SHIFT)) >> (32 - EP_LANE_SHIFT);
}

/* 2x2 dot products of interleaved pairs: a = pixel pair, b = channel pair, each
 * `mw` words (two int16) per member, mw a multiple of 4 (>= 4).
 * out = {p0c0, p0c1, p1c0, p1c1}. */
#if EP_USE_WORDS && defined(__ARM_FEATURE_DSP) && !defined(EDGEPLUS_NO_DSP) && \
    defined(__GNUC__) && !defined(EDGEPLUS_NO_ASM)
#define EP_DOT_ASM 1
#else
#define EP_DOT_ASM 0
#endif

/* s[0..3] += 2x2 dot products of interleaved pairs: a = pixel pair, b = channel pair,
 * `mw` words per member (a multiple of 4, >= 4); s = {p0c0, p0c1, p1c0, p1c1}. */
EP_INLINE void ep_dot_il_acc(const uint32_t *a, const uint32_t *b, int32_t mw, int32_t *s)
{
    int32_t s00 = s[0], s01 = s[1], s10 = s[2], s11 = s[3];
    const uint32_t *end = a + 2 * mw;
#if EP_DOT_ASM
    /* GCC splits the loads into single LDRs; LDRD halves the load count:
     * 8 LDRD + 16 SMLAD + 2 loop = 26 instructions per 16 SMLAD. */
    uint32_t a0, a1, b0, b1;
    __asm__ volatile(
        "1:\n\t"
        "ldrd %[a0], %[a1], [%[pa]], #8\n\t"
        "ldrd %[b0], %[b1], [%[pb]], #8\n\t"
        "smlad %[s00], %[a0], %[b0], %[s00]\n\t"
        "smlad %[s01], %[a0], %[b1], %[s01]\n\t"
        "smlad %[s10], %[a1], %[b0], %[s10]\n\t"
        "smlad %[s11], %[a1], %[b1], %[s11]\n\t"
        "ldrd %[a0], %[a1], [%[pa]], #8\n\t"
        "ldrd %[b0], %[b1], [%[pb]], #8\n\t"
        "smlad %[s00], %[a0], %[b0], %[s00]\n\t"
        "smlad %[s01], %[a0], %[b1], %[s01]\n\t"
        "smlad %[s10], %[a1], %[b0], %[s10]\n\t"
        "smlad %[s11], %[a1], %[b1], %[s11]\n\t"
        "ldrd %[a0], %[a1], [%[pa]], #8\n\t"
        "ldrd %[b0], %[b1], [%[pb]], #8\n\t"
        "smlad %[s00], %[a0], %[b0], %[s00]\n\t"
        "smlad %[s01], %[a0], %[b1], %[s01]\n\t"
        "smlad %[s10], %[a1], %[b0], %[s10]\n\t"
        "smlad %[s11], %[a1], %[b1], %[s11]\n\t"
        "ldrd %[a0], %[a1], [%[pa]], #8\n\t"
        "ldrd %[b0], %[b1], [%[pb]], #8\n\t"
        "smlad %[s00], %[a0], %[b0], %[s00]\n\t"
        "smlad %[s01], %[a0], %[b1], %[s01]\n\t"
        "smlad %[s10], %[a1], %[b0], %[s10]\n\t"
        "smlad %[s11], %[a1], %[b1], %[s11]\n\t"
        "cmp %[pa], %[end]\n\t"
        "blo 1b\n\t"
        : [s00] "+r"(s00), [s01] "+r"(s01), [s10] "+r"(s10), [s11] "+r"(s11), [pa] "+r"(a),
          [pb] "+r"(b), [a0] "=&r"(a0), [a1] "=&r"(a1), [b0] "=&r"(b0), [b1] "=&r"(b1)
        : [end] "r"(end)
        : "cc", "memory");
#elif EP_USE_WORDS
    do {
        int i;
        for (i = 0; i < 4; i++) {
            const uint32_t a0 = a[2 * i], a1 = a[2 * i + 1], b0 = b[2 * i], b1 = b[2 * i + 1];
            s00 = EP_SMLAD(a0, b0, s00);
            s01 = EP_SMLAD(a0, b1, s01);
            s10 = EP_SMLAD(a1, b0, s10);
            s11 = EP_SMLAD(a1, b1, s11);
        }
        a += 8;
        b += 8;
    } while (a < end);
#else
    do {
        const int32_t x0 = (int16_t)(a[0] & 0xFFFFu), x1 = (int16_t)(a[0] >> 16);
        const int32_t y0 = (int16_t)(a[1] & 0xFFFFu), y1 = (int16_t)(a[1] >> 16);
        const int32_t u0 = (int16_t)(b[0] & 0xFFFFu), u1 = (int16_t)(b[0] >> 16);
        const int32_t v0 = (int16_t)(b[1] & 0xFFFFu), v1 = (int16_t)(b[1] >> 16);
        s00 += x0 * u0 + x1 * u1;
        s01 += x0 * v0 + x1 * v1;
        s10 += y0 * u0 + y1 * u1;
        s11 += y0 * v0 + y1 * v1;
        a += 2;
        b += 2;
    } while (a < end);
#endif
    s[0] = s00;
    s[1] = s01;
    s[2] = s10;
    s[3] = s11;
}

/* out = 2x2 dot products (int16 lanes). */
#if defined(__GNUC__)
__attribute__((noinline))
#endif
static void ep_dot_il(const uint32_t *a, const uint32_t *b, int32_t mw, int32_t *out)
{
    out[0] = out[1] = out[2] = out[3] = 0;
    ep_dot_il_acc(a, b, mw, out);
}

#if EP_USE_WORDS
/* Paired-lane (2-bit x 2-bit) variant: each SMLAD adds 4 MACs to the middle field;
 * decoded and cleared every EDGEPLUS_W2A2_FLUSH words. */
#if defined(__GNUC__)
__attribute__((noinline))
#endif
static void ep_dot_il_lanes(const uint32_t *a, const uint32_t *b, int32_t mw, int32_t *out)
{
    int32_t t[4] = {0, 0, 0, 0};
    int32_t s[4];
    while (mw > 0) {
        const int32_t chunk = mw < EDGEPLUS_W2A2_FLUSH ? mw : EDGEPLUS_W2A2_FLUSH;
        s[0] = s[1] = s[2] = s[3] = 0;
        ep_dot_il_acc(a, b, chunk, s);
        t[0] += ep_lane_decode(s[0]);
        t[1] += ep_lane_decode(s[1]);
        t[2] += ep_lane_decode(s[2]);
        t[3] += ep_lane_decode(s[3]);
        a += 2 * chunk;
        b += 2 * chunk;
        mw -= chunk;
    }
    out[0] = t[0];
    out[1] = t[1];
    out[2] = t[2];
    out[3] = t[3];
}
#endif

/* ------------------------------------------------------------------ output */

/* Fast-path requantization with the channel's constants in registers. */
EP_INLINE int32_t ep_rq_fast(int32_t acc, int32_t bias, int32_t lshift, int32_t mult,
                             int32_t rshift, int32_t round)
{
    const int32_t h = ep_smmulr((int32_t)(((uint32_t)acc << lshift) + (uint32_t)bias), mult);
    if (rshift == 0) {
        return h;
    }
    return (h + round - (int32_t)((uint32_t)h >> 31)) >> rshift;
}

/* The four results of a 2x2 block, acc = {p0c0, p0c1, p1c0, p1c1}, as int8 at d0[0..1]
 * (pixel 0, channels oc / oc+1) and d1[0..1] (pixel 1; d1 NULL: none). d0/d1 point
 * into the int8 output or into the staging rows of a 2/4-bit output. Everything is
 * loaded before the first store (an int8 store may alias anything). */
#if defined(__GNUC__)
__attribute__((noinline))
#endif
static void ep_emit_block(const ep_out *o, const ep_rq *q, const int32_t *acc, int8_t *d0,
                          int8_t *d1, int two_ch)
{
    const int32_t zp = o->zp, lo = o->act_min, hi = o->act_max;
    const ep_rq *q1 = two_ch ? q + 1 : q;
    const int32_t a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3];
    int32_t v00, v01, v10, v11;
    if (q->lshift >= 0 && q1->lshift >= 0) {
        const int32_t m0 = q->mult, b0 = q->bias, l0 = q->lshift, r0 = q->rshift, n0 = q->round;
        const int32_t m1 = q1->mult, b1 = q1->bias, l1 = q1->lshift, r1 = q1->rshift,
                      n1 = q1->round;
        v00 = ep_rq_fast(a0, b0, l0, m0, r0, n0);
        v10 = ep_rq_fast(a2, b0, l0, m0, r0, n0);
        v01 = ep_rq_fast(a1, b1, l1, m1, r1, n1);
        v11 = ep_rq_fast(a3, b1, l1, m1, r1, n1);
    } else {
        v00 = ep_rq_apply(a0, q);
        v10 = ep_rq_apply(a2, q);
        v01 = ep_rq_apply(a1, q1);
        v11 = ep_rq_apply(a3, q1);
    }
    d0[0] = ep_clamp8(v00 + zp, lo, hi);
    if (two_ch) {
        d0[1] = ep_clamp8(v01 + zp, lo, hi);
    }
    if (d1 != NULL) {
        d1[0] = ep_clamp8(v10 + zp, lo, hi);
        if (two_ch) {
            d1[1] = ep_clamp8(v11 + zp, lo, hi);
        }
    }
}

/* Pack `count` int8 values into a buffer at `bits` starting at flat index `start`
 * (read-modify-write only at the run's ends). */
/* ------------------------------------------------------------------ compute loops */

/* Unpack weight rows oc and oc+1 (or oc twice) into the interleaved pair `wpair`. */
static void ep_weight_pair(const ep_im2col *g, const int8_t *filter, int32_t w_bits, int pairs,
                           int32_t oc, int two_ch, int16_t *tmp, uint32_t *wpair, int32_t mw)
{
    int ci;
    for (ci = 0; ci < 2; ci++) {
        const int32_t ch = oc + ci;
        if (ci == 1 && !two_ch) {
            ep_interleave(wpair, 1, tmp, mw); /* lone last channel */
            break;
        }
#if EP_USE_WORDS
        if (pairs && g->lanes) {
            /* in_c % 4 == 0: the row starts on a byte, kc is a multiple of 4 */
            ep_unpack2_lanes(filter + ((ch * g->kc) >> 2), g->kc, 0, 1, tmp);
            memset(tmp + g->kc / 2, 0, (size_t)(g->kpad - g->kc) / 2 * 2);
        } else
#endif
        {
            ep_unpack_s16(filter, ch * g->kc, g->kc, w_bits, 0, tmp);
            memset(tmp + g->kc, 0, (size_t)(g->kpad - g->kc) * sizeof(int16_t));
            if (pairs) {
                ep_pair_lanes(tmp, g->kpad, 1);
            }
        }
        ep_interleave(wpair, ci, tmp, mw);
    }
}

/* Bytes of the optional weight cache: all rows, unpacked and interleaved by pairs. */
static int64_t ep_wcache_bytes(int32_t oc, int32_t kpad, int pairs)
{
    const int64_t mw = pairs ? kpad / 4 : kpad / 2;
    return (int64_t)((oc + 1) & ~1) * mw * 4;
}

/* What the lean layout needs to prepare requantization constants on the fly. */
typedef struct {
    int64_t acc_bound;
} ep_conv_lean;

/* The requantization constants of channels oc (and oc + 1) into pair (lean scratch). */
static const ep_rq *ep_rq_pair(const ep_out *o, const ep_conv_lean *ln, int32_t oc,
                               int two_ch, ep_rq *pair)
{
    edgeplus_quant_params q;
    q.multiplier = o->mult + oc;
    q.shift = o->shift + oc;
    edgeplus__rq_prepare(pair, &q, o->bias != NULL ? o->bias + oc : NULL, two_ch ? 2 : 1,
                         ln->acc_bound, o->frac);
    return pair;
}

/* rq: the requantization table; lean (a constant: the two layouts get their own copy of
 * the loop): none, the constants are prepared per channel pair and block. */
EP_INLINE void ep_conv_loop(const ep_im2col *g, const ep_out *o, const ep_rq *rq, int lean,
                            const ep_conv_lean *ln, const edgeplus_window *win,
                            int32_t batches, const int8_t *filter, int32_t w_bits, int pairs,
                            int8_t *stage, int16_t *tmp, int32_t block, uint32_t *wcache)
{
    /* scratch: tmp column | weight-row pair | block of interleaved column pairs
     * [| weight cache] */
    uint32_t *wpair = (uint32_t *)(void *)(tmp + g->kpad);
    uint32_t *blk = wpair + g->kpad;
    /* words per member: int16 values two per word; paired lanes four per word */
    const int32_t mw = pairs ? g->kpad / 4 : g->kpad / 2;
    const int direct = (o->bits == 8);
    const int32_t total = win->h * win->w; /* <= the output's h * w <= INT32_MAX */
    int32_t obase[EDGEPLUS_CONV_PIXEL_BLOCK];
    int32_t n;
    int64_t f; /* f + block may pass INT32_MAX */
    if (wcache != NULL) {
        int32_t oc;
        for (oc = 0; oc < o->oc; oc += 2) {
            ep_weight_pair(g, filter, w_bits, pairs, oc, oc + 1 < o->oc, tmp,
                           wcache + (oc >> 1) * 2 * mw, mw);
        }
    }
    for (n = 0; n < batches; n++) {
        /* blocks of `block` window pixels in raster order (a block may span rows, so
         * narrow patch windows still fill it) */
        int32_t oy = win->y, ox = win->x;
        for (f = 0; f < total; f += block) {
            {
                int32_t np = (int32_t)(total - f);
                int32_t p, oc;
                if (np > block) {
                    np = block;
                }
                for (p = 0; p < np; p++) {
                    uint32_t *slot_pair = blk + (p >> 1) * 2 * mw;
                    ep_im2col_pixel(g, n, oy, ox, tmp);
                    if (pairs && !g->lanes) {
                        ep_pair_lanes(tmp, g->kpad, 0);
                    }
                    ep_interleave(slot_pair, p & 1, tmp, mw);
                    if ((p & 1) == 0 && p + 1 == np) {
                        ep_interleave(slot_pair, 1, tmp, mw); /* lone last pixel */
                    }
                    obase[p] = ep_out_index(o, n, oy, ox);
                    if (++ox == win->x + win->w) {
                        ox = win->x;
                        oy++;
                    }
                }
                for (oc = 0; oc < o->oc; oc += 2) {
                    const int two_ch = (oc + 1 < o->oc);
                    ep_rq pair[2];
                    const ep_rq *q =
                        lean ? ep_rq_pair(o, ln, oc, two_ch, pair) : rq + oc;
                    const uint32_t *wp = wcache != NULL ? wcache + (oc >> 1) * 2 * mw : wpair;
                    if (wcache == NULL) {
                        ep_weight_pair(g, filter, w_bits, pairs, oc, two_ch, tmp, wpair, mw);
                    }
                    for (p = 0; p < np; p += 2) {
                        const uint32_t *a = blk + (p >> 1) * 2 * mw;
                        const int two_px = (p + 1 < np);
                        int8_t *d0 = direct ? o->output + obase[p] + oc : stage + p * o->oc + oc;
                        int8_t *d1 = !two_px ? NULL
                                     : direct ? o->output + obase[p + 1] + oc
                                              : stage + (p + 1) * o->oc + oc;
                        int32_t acc[4];
#if EP_USE_WORDS
                        if (pairs) {
                            ep_dot_il_lanes(a, wp, mw, acc);
                        } else
#endif
                        {
                            ep_dot_il(a, wp, mw, acc);
                        }
                        ep_emit_block(o, q, acc, d0, d1, two_ch);
                    }
                }
                if (!direct) {
                    for (p = 0; p < np; p++) {
                        ep_pack_run(o->output, obase[p], stage + p * o->oc, o->oc, o->bits);
                    }
                }
            }
        }
    }
}

/* ------------------------------------------------------------------ entry */

/* The lean layout's unpacking path: ep_conv_loop's lean copy, in a function of its own so
 * that the default copy inlined into edgeplus__conv_core keeps its code. */
EP_NOINLINE static void ep_conv_loop_lean(const ep_im2col *g, const ep_out *o,
                                          const ep_conv_lean *ln, const edgeplus_window *win,
                                          int32_t batches, const int8_t *filter,
                                          int32_t w_bits, int pairs, int8_t *stage,
                                          int16_t *tmp, int32_t block)
{
    ep_conv_loop(g, o, NULL, 1, ln, win, batches, filter, w_bits, pairs, stage, tmp, block,
                 NULL);
}

/* ------------------------------------------------------------------ lean: raw weights */

/* The lean layout's main path (DSP path): the weight rows are read packed, straight from
 * the filter, one 32-bit word per group of G = 32 / w_bits values, and widened in
 * registers by SXTB16: int8 as is, 4-bit fields moved to the top of their byte (x16),
 * 2-bit fields likewise (x64). The columns are stored in the order those words unpack in
 * (ep_interleave_raw), so no weight row is ever unpacked into scratch; the dot products
 * take 4 pixels x 1 channel (ep_dot_raw4). The x16 / x64 sums are exact while
 * acc_bound x 16 (x64) < 2^31 (ep_raw_ok) and are shifted back before requantization. */

#if EP_USE_WORDS
/* log2 of the raw path's weight scale: 0, 4 or 6. */
EP_INLINE int32_t ep_raw_lg(int32_t w_bits) { return w_bits == 8 ? 0 : (w_bits == 4 ? 4 : 6); }

/* Whether the raw path can run: rows start on a byte, the scaled sums fit int32 (paired
 * 2-bit lanes: decoded sums, unscaled). */
static int ep_raw_ok(int32_t kc, int32_t w_bits, int64_t acc_bound, int pairs)
{
    return ((int64_t)kc * w_bits) % 8 == 0 &&
           (pairs || (acc_bound << ep_raw_lg(w_bits)) <= INT32_MAX);
}

/* Natural-order int16 column src (kpad values) -> slot `slot` (0..3) of a 4-pixel quad
 * (word i of pixel p at quad[4 i + p]), each group of G values permuted to the raw weight
 * word's order: G = 4 (w8): (x0,x2)(x1,x3); G = 8 (w4): (x0,x4)(x2,x6)(x1,x5)(x3,x7);
 * G = 16 (w2): (x0,x8)(x4,x12)(x1,x9)(x5,x13)(x2,x10)(x6,x14)(x3,x11)(x7,x15). */
static void ep_interleave_raw(uint32_t *quad, int slot, const int16_t *src, int32_t kpad,
                              int32_t w_bits)
{
    uint32_t *d = quad + slot;
    int32_t i;
    if (w_bits == 8) {
        for (i = 0; i < kpad; i += 4) {
            const uint32_t u0 = ep_ld32(src + i), u1 = ep_ld32(src + i + 2);
            d[0] = ep_pkhbt16(u0, u1);
            d[4] = ep_pkhtb16(u1, u0);
            d += 8;
        }
    } else if (w_bits == 4) {
        for (i = 0; i < kpad; i += 8) {
            const uint32_t u0 = ep_ld32(src + i), u1 = ep_ld32(src + i + 2);
            const uint32_t u2 = ep_ld32(src + i + 4), u3 = ep_ld32(src + i + 6);
            d[0] = ep_pkhbt16(u0, u2);
            d[4] = ep_pkhbt16(u1, u3);
            d[8] = ep_pkhtb16(u2, u0);
            d[12] = ep_pkhtb16(u3, u1);
            d += 16;
        }
    } else {
        for (i = 0; i < kpad; i += 16) {
            const uint32_t u0 = ep_ld32(src + i), u1 = ep_ld32(src + i + 2);
            const uint32_t u2 = ep_ld32(src + i + 4), u3 = ep_ld32(src + i + 6);
            const uint32_t u4 = ep_ld32(src + i + 8), u5 = ep_ld32(src + i + 10);
            const uint32_t u6 = ep_ld32(src + i + 12), u7 = ep_ld32(src + i + 14);
            d[0] = ep_pkhbt16(u0, u4);
            d[4] = ep_pkhbt16(u2, u6);
            d[8] = ep_pkhtb16(u4, u0);
            d[12] = ep_pkhtb16(u6, u2);
            d[16] = ep_pkhbt16(u1, u5);
            d[20] = ep_pkhbt16(u3, u7);
            d[24] = ep_pkhtb16(u5, u1);
            d[28] = ep_pkhtb16(u7, u3);
            d += 32;
        }
    }
}

/* SMLADs of column word k of the 4 pixels (quad a) with c. */
#define EP_RAW4(c, k)                               \
    do {                                            \
        s[0] = EP_SMLAD(a[4 * (k)], (c), s[0]);     \
        s[1] = EP_SMLAD(a[4 * (k) + 1], (c), s[1]); \
        s[2] = EP_SMLAD(a[4 * (k) + 2], (c), s[2]); \
        s[3] = EP_SMLAD(a[4 * (k) + 3], (c), s[3]); \
    } while (0)

/* s[0..3] += one group: the weight word w against the next G column values of the quad
 * a; returns the quad's next group. */
static const uint32_t *ep_raw_group(const uint32_t *a, uint32_t w, int32_t w_bits, int32_t *s)
{
    if (w_bits == 8) {
        EP_RAW4(EP_SXTB16(w), 0);
        EP_RAW4(ep_sxtb16_ror8(w), 1);
        return a + 8;
    }
    if (w_bits == 4) {
        const uint32_t lo = (w << 4) & 0xF0F0F0F0u, hi = w & 0xF0F0F0F0u;
        EP_RAW4(EP_SXTB16(lo), 0);
        EP_RAW4(ep_sxtb16_ror8(lo), 1);
        EP_RAW4(EP_SXTB16(hi), 2);
        EP_RAW4(ep_sxtb16_ror8(hi), 3);
        return a + 16;
    }
    {
        int32_t f;
        for (f = 0; f < 4; f++) {
            const uint32_t t = (w << (6 - 2 * f)) & 0xC0C0C0C0u;
            EP_RAW4(EP_SXTB16(t), 2 * f);
            EP_RAW4(ep_sxtb16_ror8(t), 2 * f + 1);
        }
        return a + 32;
    }
}
#undef EP_RAW4

#if EP_M4_ASM
/* The whole groups in Thumb-2 assembly: s[0..3] = (quad cols) x (weight words w..wend),
 * w < wend (w8: an even number of words). Per group 14 (w8), 30 (w4), 58 (w2)
 * instructions for 16, 32, 64 MACs. */
void edgeplus__raw4_w8_m4(const uint32_t *cols, const int8_t *w, const int8_t *wend,
                          int32_t *s);
void edgeplus__raw4_w4_m4(const uint32_t *cols, const int8_t *w, const int8_t *wend,
                          int32_t *s);
void edgeplus__raw4_w2_m4(const uint32_t *cols, const int8_t *w, const int8_t *wend,
                          int32_t *s);
#define EP_RAW_HEAD(NAME)                                                       \
    ".syntax unified\n.thumb\n.text\n.p2align 2\n.global " NAME "\n.type " NAME \
    ", %function\n.thumb_func\n" NAME ":\n"                                     \
    "  push {r3-r11, lr}\n"                                                     \
    "  movs r4, #0\n  movs r5, #0\n  movs r6, #0\n  movs r7, #0\n"              \
    "1:\n"                                                                      \
    "  ldr r12, [r1], #4\n"
#define EP_RAW_TAIL(NAME)                                                       \
    "  cmp r1, r2\n  blo 1b\n"                                                  \
    "  ldr r3, [sp]\n  stmia r3, {r4-r7}\n"                                     \
    "  pop {r3-r11, pc}\n.size " NAME ", .-" NAME "\n"
/* lr = c: four SMLADs with the next column word of the 4 pixels */
#define EP_RAW_SMLAD4                                                           \
    "  ldmia r0!, {r8-r11}\n"                                                   \
    "  smlad r4, r8, lr, r4\n  smlad r5, r9, lr, r5\n"                          \
    "  smlad r6, r10, lr, r6\n  smlad r7, r11, lr, r7\n"
/* w8: two groups per iteration (an even number of groups) */
__asm__(EP_RAW_HEAD("edgeplus__raw4_w8_m4")
        "  sxtb16 lr, r12\n" EP_RAW_SMLAD4
        "  sxtb16 lr, r12, ror #8\n" EP_RAW_SMLAD4
        "  ldr r12, [r1], #4\n"
        "  sxtb16 lr, r12\n" EP_RAW_SMLAD4
        "  sxtb16 lr, r12, ror #8\n" EP_RAW_SMLAD4
        EP_RAW_TAIL("edgeplus__raw4_w8_m4"));
__asm__(EP_RAW_HEAD("edgeplus__raw4_w4_m4")
        "  lsl r3, r12, #4\n  and r3, r3, #0xF0F0F0F0\n  and r12, r12, #0xF0F0F0F0\n"
        "  sxtb16 lr, r3\n" EP_RAW_SMLAD4
        "  sxtb16 lr, r3, ror #8\n" EP_RAW_SMLAD4
        "  sxtb16 lr, r12\n" EP_RAW_SMLAD4
        "  sxtb16 lr, r12, ror #8\n" EP_RAW_SMLAD4
        EP_RAW_TAIL("edgeplus__raw4_w4_m4"));
#define EP_RAW_W2(SH)                                         \
    "  lsl r3, r12, #" SH "\n  and r3, r3, #0xC0C0C0C0\n"     \
    "  sxtb16 lr, r3\n" EP_RAW_SMLAD4 "  sxtb16 lr, r3, ror #8\n" EP_RAW_SMLAD4
__asm__(EP_RAW_HEAD("edgeplus__raw4_w2_m4")
        EP_RAW_W2("6") EP_RAW_W2("4") EP_RAW_W2("2")
        "  and r3, r12, #0xC0C0C0C0\n"
        "  sxtb16 lr, r3\n" EP_RAW_SMLAD4 "  sxtb16 lr, r3, ror #8\n" EP_RAW_SMLAD4
        EP_RAW_TAIL("edgeplus__raw4_w2_m4"));
#undef EP_RAW_W2
#undef EP_RAW_SMLAD4
#undef EP_RAW_TAIL
#undef EP_RAW_HEAD
#endif

/* s[0..3] = the raw weight row w (kc values packed at w_bits, starting on a byte) times
 * the columns of the quad a (permuted by ep_interleave_raw), x 2^ep_raw_lg. Reads exactly
 * the row's bytes (the last partial word is assembled bytewise). */
EP_NOINLINE static void ep_dot_raw4(const uint32_t *a, const int8_t *w, int32_t kc,
                                    int32_t w_bits, int32_t *s)
{
    const int32_t g = 32 / w_bits;
    const int32_t full = kc / g, rest = kc - full * g;
    int32_t i = 0;
    s[0] = s[1] = s[2] = s[3] = 0;
#if EP_M4_ASM
    i = w_bits == 8 ? full & ~1 : full;
    if (i > 0) {
        if (w_bits == 8) {
            edgeplus__raw4_w8_m4(a, w, w + 4 * i, s);
        } else if (w_bits == 4) {
            edgeplus__raw4_w4_m4(a, w, w + 4 * i, s);
        } else {
            edgeplus__raw4_w2_m4(a, w, w + 4 * i, s);
        }
        a += 2 * g * i; /* 4 pixels x g/2 words per group */
        w += 4 * i;
    }
#endif
    for (; i < full; i++) {
        a = ep_raw_group(a, ep_ld32(w), w_bits, s);
        w += 4;
    }
    if (rest > 0) {
        uint32_t ww = 0;
        memcpy(&ww, w, (size_t)(rest * w_bits + 7) / 8); /* little-endian, like ep_ld32 */
        (void)ep_raw_group(a, ww, w_bits, s);
    }
}

/* 2-bit x 2-bit lean: the paired lanes of the default path (two products per 16-bit lane,
 * see the top of this file) with packed weights: one weight byte (4 weights) is one lane
 * word (b1 + b0 2^13, b3 + b2 2^13), looked up in EP_LANE_W, against one lane word of each
 * of 4 pixels: 4 SMLADs = 16 MACs. */
#define EP_LV(f) ((int32_t)(((f) & 3u) ^ 2u) - 2)
#define EP_LH(a, b) ((uint32_t)(EP_LV(b) + EP_LV(a) * (1 << EP_LANE_SHIFT)) & 0xFFFFu)
#define EP_LW(x) (EP_LH((x), (x) >> 2) | (EP_LH((x) >> 4, (x) >> 6) << 16))
#define EP_LW4(x) EP_LW(x), EP_LW((x) + 1u), EP_LW((x) + 2u), EP_LW((x) + 3u)
#define EP_LW16(x) EP_LW4(x), EP_LW4((x) + 4u), EP_LW4((x) + 8u), EP_LW4((x) + 12u)
#define EP_LW64(x) EP_LW16(x), EP_LW16((x) + 16u), EP_LW16((x) + 32u), EP_LW16((x) + 48u)
static const uint32_t EP_LANE_W[256] = {EP_LW64(0u), EP_LW64(64u), EP_LW64(128u),
                                        EP_LW64(192u)};
#undef EP_LW64
#undef EP_LW16
#undef EP_LW4
#undef EP_LW
#undef EP_LH
#undef EP_LV

/* Column words (lane or int16 words) of a pixel -> slot `slot` of a 4-pixel quad. */
static void ep_interleave_quad(uint32_t *quad, int slot, const int16_t *src, int32_t words)
{
    uint32_t *d = quad + slot;
    int32_t i;
    for (i = 0; i < words; i++) {
        d[4 * i] = ep_ld32(src + 2 * i);
    }
}

#if EP_M4_ASM
/* s[0..3] = raw lane sums of the quad cols x the weight bytes w..wend (a multiple of 4
 * bytes, at most EDGEPLUS_W2A2_FLUSH): 30 instructions per 4 bytes = 64 MACs. */
void edgeplus__lanes4_m4(const uint32_t *cols, const uint8_t *w, const uint8_t *wend,
                         const uint32_t *table, int32_t *s);
#define EP_LANES_BYTE                                                           \
    "  ldrb r12, [r1], #1\n  ldr lr, [r3, r12, lsl #2]\n"                       \
    "  ldmia r0!, {r8-r11}\n"                                                   \
    "  smlad r4, r8, lr, r4\n  smlad r5, r9, lr, r5\n"                          \
    "  smlad r6, r10, lr, r6\n  smlad r7, r11, lr, r7\n"
/* the raw sums in r4..r7; [sp, #36]: the fifth argument */
#define EP_LANES_LOOP(NAME)                                                     \
    ".syntax unified\n.thumb\n.text\n.p2align 2\n.global " NAME "\n"           \
    ".type " NAME ", %function\n.thumb_func\n" NAME ":\n"                      \
    "  push {r4-r11, lr}\n"                                                     \
    "  movs r4, #0\n  movs r5, #0\n  movs r6, #0\n  movs r7, #0\n"              \
    "1:\n" EP_LANES_BYTE EP_LANES_BYTE EP_LANES_BYTE EP_LANES_BYTE               \
    "  cmp r1, r2\n  blo 1b\n"
__asm__(EP_LANES_LOOP("edgeplus__lanes4_m4")
        "  ldr r12, [sp, #36]\n  stmia r12, {r4-r7}\n"
        "  pop {r4-r11, pc}\n.size edgeplus__lanes4_m4, .-edgeplus__lanes4_m4\n");

/* The same dot products, decoded (ep_lane_decode) and written as 2-bit outputs by
 * thresholds (ep_emit_quad's threshold branch) for a whole quad: 13 instructions per
 * output instead of a round trip through memory and C. */
typedef struct {
    int32_t t[3], lo;
    int8_t *const *dst;
    int32_t oc;
} ep_lanes_thr;
void edgeplus__lanes4_thr_m4(const uint32_t *cols, const uint8_t *w, const uint8_t *wend,
                             const uint32_t *table, const ep_lanes_thr *t);
/* output of the raw sum R: r10 = lo + (a >= t0) + (a >= t1) + (a >= t2), to *dst++ + oc */
#define EP_LANES_THR(R)                                                         \
    "  add " R ", " R ", #4096\n  sbfx " R ", " R ", #13, #13\n  mov r10, r3\n"     \
    "  cmp " R ", r0\n  it ge\n  addge r10, r10, #1\n"                          \
    "  cmp " R ", r1\n  it ge\n  addge r10, r10, #1\n"                          \
    "  cmp " R ", r2\n  it ge\n  addge r10, r10, #1\n"                          \
    "  ldr r11, [r8], #4\n  strb r10, [r11, r9]\n"
__asm__(EP_LANES_LOOP("edgeplus__lanes4_thr_m4")
        "  ldr r12, [sp, #36]\n  ldm r12, {r0-r3, r8, r9}\n"
        EP_LANES_THR("r4") EP_LANES_THR("r5") EP_LANES_THR("r6") EP_LANES_THR("r7")
        "  pop {r4-r11, pc}\n.size edgeplus__lanes4_thr_m4, .-edgeplus__lanes4_thr_m4\n");
#undef EP_LANES_THR
#undef EP_LANES_LOOP
#undef EP_LANES_BYTE
#endif

/* s[0..3] = the 2-bit weight row w (kc values, kc a multiple of 4, starting on a byte)
 * times the lane columns of the quad a, decoded every EDGEPLUS_W2A2_FLUSH bytes. */
EP_INLINE void ep_dot_lanes4(const uint32_t *a, const uint8_t *w, int32_t kc, int32_t *s)
{
    int32_t bytes = kc / 4, p;
#if EP_M4_ASM
    if (bytes <= EDGEPLUS_W2A2_FLUSH && (bytes & 3) == 0) {
        /* one chunk of whole steps (bytes: a positive multiple of 4) */
        edgeplus__lanes4_m4(a, w, w + bytes, EP_LANE_W, s);
        s[0] = ep_lane_decode(s[0]);
        s[1] = ep_lane_decode(s[1]);
        s[2] = ep_lane_decode(s[2]);
        s[3] = ep_lane_decode(s[3]);
        return;
    }
#endif
    s[0] = s[1] = s[2] = s[3] = 0;
    while (bytes > 0) {
        const int32_t chunk = bytes < EDGEPLUS_W2A2_FLUSH ? bytes : EDGEPLUS_W2A2_FLUSH;
        int32_t t[4] = {0, 0, 0, 0};
        int32_t j = 0;
#if EP_M4_ASM
        j = chunk & ~3;
        if (j > 0) {
            edgeplus__lanes4_m4(a, w, w + j, EP_LANE_W, t);
        }
#endif
        for (; j < chunk; j++) {
            const uint32_t lw = EP_LANE_W[w[j]];
            for (p = 0; p < 4; p++) {
                t[p] = EP_SMLAD(a[4 * j + p], lw, t[p]);
            }
        }
        for (p = 0; p < 4; p++) {
            s[p] += ep_lane_decode(t[p]);
        }
        a += 4 * chunk;
        w += chunk;
        bytes -= chunk;
    }
}

/* A requantization entry turned into thresholds (ep_rq_thresholds): lshift holds this,
 * mult, bias and round the three thresholds. */
#define EP_RQ_THRESHOLDS (-2)

/* 2-bit outputs of a fast-path channel: the output is monotone in the accumulator (no
 * wrap-around: the fast path's bound), so it is act_min + the number of thresholds t_k
 * <= acc, t_k the least accumulator in [-bound, bound] whose output reaches act_min + k
 * (binary search with the channel's own requantization, so bit-exact; INT32_MAX when
 * none does: |acc| <= bound < 2^30). */
static void ep_rq_thresholds(ep_rq *q, const ep_out *o, int64_t bound)
{
    const ep_rq r = *q;
    int32_t t[3];
    int32_t k;
    for (k = 0; k < 3; k++) {
        const int32_t level = o->act_min + 1 + k;
        int64_t lo = -bound, hi = bound + 1;
        while (level <= o->act_max && lo < hi) {
            const int64_t mid = lo + (hi - lo) / 2;
            if (ep_out_value(o, &r, (int32_t)mid) >= level) {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        t[k] = level > o->act_max || hi > bound ? INT32_MAX : (int32_t)hi;
    }
    q->mult = t[0];
    q->bias = t[1];
    q->round = t[2];
    q->lshift = EP_RQ_THRESHOLDS;
}

/* A requantization table's fast-path channels as thresholds when the output is 2-bit and
 * the window has 64 pixels or more (fewer do not repay the searches). */
static void ep_rq_table_thresholds(ep_rq *rq, const ep_out *o, const edgeplus_window *win,
                                   int64_t bound)
{
    int32_t ch;
    if (o->bits == 2 && (int64_t)win->h * win->w >= 64) {
        for (ch = 0; ch < o->oc; ch++) {
            if (rq[ch].lshift >= 0) {
                ep_rq_thresholds(rq + ch, o, bound);
            }
        }
    }
}

/* The cnt (1..4) results of a quad for channel oc, x 2^lg, as int8 at dst[i][oc]. */
EP_INLINE void ep_emit_quad(const ep_out *o, const ep_rq *q, const int32_t *acc, int32_t lg,
                            int8_t *const *dst, int32_t oc, int32_t cnt)
{
    int32_t i;
    if (q->lshift == EP_RQ_THRESHOLDS) {
        const int32_t t0 = q->mult, t1 = q->bias, t2 = q->round, lo = o->act_min;
        for (i = 0; i < cnt; i++) {
            const int32_t a = acc[i] >> lg;
            dst[i][oc] = (int8_t)(lo + (a >= t0) + (a >= t1) + (a >= t2));
        }
        return;
    }
    if (q->lshift >= 0) {
        const int32_t zp = o->zp, lo = o->act_min, hi = o->act_max;
        const int32_t m = q->mult, b = q->bias, l = q->lshift, r = q->rshift, n = q->round;
        for (i = 0; i < cnt; i++) {
            dst[i][oc] = ep_clamp8(ep_rq_fast(acc[i] >> lg, b, l, m, r, n) + zp, lo, hi);
        }
        return;
    }
    for (i = 0; i < cnt; i++) {
        dst[i][oc] = ep_out_value(o, q, acc[i] >> lg);
    }
}

/* ep_emit_quad as a call of its own (the raw path's loop keeps its registers), in one
 * copy (GCC would clone it for the 4-bit field path's constant lg). */
#if defined(__GNUC__) && !defined(__clang__)
__attribute__((noclone))
#endif
EP_NOINLINE static void ep_emit_quad_call(const ep_out *o, const ep_rq *q, const int32_t *acc,
                                          int32_t lg, int8_t *const *dst, int32_t oc,
                                          int32_t cnt)
{
    ep_emit_quad(o, q, acc, lg, dst, oc, cnt);
}

/* One quad of the 2-bit x 2-bit lane path: dot products and outputs (the M4's whole quads
 * with threshold outputs take edgeplus__lanes4_thr_m4). */
EP_NOINLINE static void ep_quad_lanes(const uint32_t *a, const uint8_t *w, int32_t kc,
                                      const ep_out *o, const ep_rq *q, int8_t *const *dst,
                                      int32_t oc, int32_t cnt)
{
    int32_t acc[4];
    ep_dot_lanes4(a, w, kc, acc);
    ep_emit_quad_call(o, q, acc, 0, dst, oc, cnt);
}

/* ------------------------------------------------------------------ 4-bit x 4-bit fields */

/* 4-bit activations x narrow-range 4-bit weights: four products per SMLAL. A column word
 * holds a pixel pair, X = a0 + a1 2^14 (|a| = |x - zp| <= 15), a weight word a channel
 * pair, W = b0 + b1 2^28 (|b| <= 7, so W fits int32: ep_f4_narrow), and the 64-bit
 * X * W = a0 b0 + a1 b0 2^14 + a0 b1 2^28 + a1 b1 2^42 holds all four dot products of the
 * 2x2 block in fields of 14 bits (the top one open). SMLAL sums them exactly; the sums
 * start at 2^13 in each of the three low fields and are decoded (field - 2^13) every
 * `cap` words, while cap * max|a| * 7 < 2^13 keeps each field in range (ep_f4_cap: 76 to
 * 144 words). Columns are stored by 4 pixels, (XA_k, XB_k) per k for the pairs
 * A = (p0, p1), B = (p2, p3), so one LDM reads both pairs' words of two k and one LDRD
 * the weight words: 14 instructions per 32 MACs on the M4 (SMLAD's int16 lanes: 26). A
 * filter holding -8, or with rows not starting on a byte (K*C odd), takes the int16 path. */
#define EP_F4_SHIFT 14
#define EP_F4_HALF (1 << (EP_F4_SHIFT - 1))
/* the 64-bit start value (lo, hi words): 2^13 in the fields at bits 0, 14 and 28 */
#define EP_F4_LO0 ((uint32_t)EP_F4_HALF * (1u + (1u << EP_F4_SHIFT)))
#define EP_F4_HI0 ((uint32_t)EP_F4_HALF >> (32 - 2 * EP_F4_SHIFT))

/* Words per decoded chunk (a multiple of 4: 76 to 144). */
static int32_t ep_f4_cap(const ep_im2col *g)
{
    const int32_t up = ep_qmax(4) - g->in_zp, down = g->in_zp - ep_qmin(4);
    const int32_t xmax = up > down ? up : down; /* 8..15: the zero point is in range */
    return ((EP_F4_HALF - 1) / (xmax * 7)) & ~3;
}

/* Whether the `count` 4-bit weights of the filter are all in [-7, 7] (no nibble 8). */
static int ep_f4_narrow(const int8_t *filter, int32_t count)
{
    int32_t i = 0;
    for (; i + 8 <= count; i += 8) {
        const uint32_t t = ep_ld32(filter + i / 2) ^ 0x88888888u; /* a zero nibble: -8 */
        if (((t - 0x11111111u) & ~t & 0x88888888u) != 0) {
            return 0;
        }
    }
    for (; i < count; i++) {
        if (ep_load(filter, i, 4) == -8) {
            return 0;
        }
    }
    return 1;
}

/* s[0], s[1], s[4], s[5] += the fields p0c0, p1c0, p0c1, p1c1 of the 64-bit sum (lo, hi)
 * of a pixel pair (the low three still + 2^13). */
EP_INLINE void ep_f4_decode(uint32_t lo, uint32_t hi, int32_t *s)
{
    const uint32_t m = (1u << EP_F4_SHIFT) - 1u;
    s[0] += (int32_t)(lo & m);
    s[1] += (int32_t)((lo >> EP_F4_SHIFT) & m);
    s[4] += (int32_t)(((lo >> 2 * EP_F4_SHIFT) | (hi << (32 - 2 * EP_F4_SHIFT))) & m);
    s[5] += (int32_t)hi >> (3 * EP_F4_SHIFT - 32);
}

#if EP_M4_ASM
/* s[0..7] += the decoded chunks (ep_f4_decode: low fields + 2^13 each) of the quad's
 * column words x the weight words w..wend, chunks of cap_bytes / 4 words (multiples of
 * 4): per 4 words 14 instructions = 32 MACs, per chunk 36 more. */
void edgeplus__f4_m4(const uint32_t *cols, const uint32_t *w, const uint32_t *wend,
                     int32_t *s, int32_t cap_bytes);
#define EP_F4_STEP                                                              \
    "  ldmia r0!, {r8-r11}\n  ldrd r12, lr, [r1], #8\n"                         \
    "  smlal r4, r5, r8, r12\n  smlal r6, r7, r9, r12\n"                        \
    "  smlal r4, r5, r10, lr\n  smlal r6, r7, r11, lr\n"
/* the fields of (LO, HI) -> r8 (p0c0), r9 (p1c0), r10 (p0c1), r11 (p1c1) */
#define EP_F4_FIELDS(LO, HI)                                                    \
    "  ubfx r8, " LO ", #0, #14\n  ubfx r9, " LO ", #14, #14\n"                 \
    "  lsr r10, " LO ", #28\n  orr r10, r10, " HI ", lsl #4\n"                  \
    "  ubfx r10, r10, #0, #14\n  asr r11, " HI ", #10\n"
#define EP_F4_ADD(OFF)                                                          \
    "  ldrd r12, lr, [r3, #" OFF "]\n  add r12, r12, r8\n  add lr, lr, r9\n"    \
    "  strd r12, lr, [r3, #" OFF "]\n"                                          \
    "  ldrd r12, lr, [r3, #" OFF "+16]\n  add r12, r12, r10\n  add lr, lr, r11\n" \
    "  strd r12, lr, [r3, #" OFF "+16]\n"
__asm__(".syntax unified\n.thumb\n.text\n.p2align 2\n.global edgeplus__f4_m4\n"
        ".type edgeplus__f4_m4, %function\n.thumb_func\nedgeplus__f4_m4:\n"
        "  push {r2, r4-r11, lr}\n" /* [sp]: the end; [sp, #40]: cap_bytes */
        "2:\n"
        "  ldr r12, [sp, #40]\n  ldr lr, [sp]\n  add r2, r1, r12\n"
        "  cmp r2, lr\n  it hi\n  movhi r2, lr\n"
        "  movw r4, #0x2000\n  movt r4, #0x0800\n  mov r5, #512\n"
        "  mov r6, r4\n  mov r7, r5\n"
        "1:\n" EP_F4_STEP EP_F4_STEP
        "  cmp r1, r2\n  blo 1b\n"
        EP_F4_FIELDS("r4", "r5") EP_F4_ADD("0")
        EP_F4_FIELDS("r6", "r7") EP_F4_ADD("8")
        "  ldr lr, [sp]\n  cmp r1, lr\n  blo 2b\n"
        "  pop {r2, r4-r11, pc}\n.size edgeplus__f4_m4, .-edgeplus__f4_m4\n");
#undef EP_F4_ADD
#undef EP_F4_FIELDS
#undef EP_F4_STEP
#endif

/* s[0..7] = the quad a (pixels 0..3) against the channel-pair weight words w, kpad words,
 * decoded every cap words: s[p] channel 0, s[4 + p] channel 1. */
EP_INLINE void ep_dot_f4(const uint32_t *a, const uint32_t *w, int32_t kpad, int32_t cap,
                         int32_t *s)
{
    /* the low fields' 2^13 per chunk, taken off in advance */
    const int32_t off = -((kpad + cap - 1) / cap) * EP_F4_HALF;
    s[0] = s[1] = s[2] = s[3] = s[4] = s[6] = off;
    s[5] = s[7] = 0;
#if EP_M4_ASM
    edgeplus__f4_m4(a, w, w + kpad, s, 4 * cap);
#else
    {
        int32_t k, i;
        for (k = 0; k < kpad; k += cap) {
            const int32_t n = kpad - k < cap ? kpad - k : cap;
            const int64_t s0 = (int64_t)(((uint64_t)EP_F4_HI0 << 32) | EP_F4_LO0);
            int64_t sa = s0, sb = s0;
            for (i = k; i < k + n; i++) {
                const int64_t wk = (int32_t)w[i];
                sa += (int32_t)a[2 * i] * wk;
                sb += (int32_t)a[2 * i + 1] * wk;
            }
            ep_f4_decode((uint32_t)sa, (uint32_t)((uint64_t)sa >> 32), s);
            ep_f4_decode((uint32_t)sb, (uint32_t)((uint64_t)sb >> 32), s + 2);
        }
    }
#endif
}

/* The field words X_k = a0 + a1 2^14 of the pixel pair (c0, c1) (int16 columns, kpad
 * values) into pair slot d (word k at d[2 k]). */
EP_NOINLINE static void ep_f4_pair(uint32_t *d, const int16_t *c0, const int16_t *c1,
                                   int32_t kpad)
{
    const uint32_t one = 1u << EP_F4_SHIFT; /* SMLABB / SMLATB: a1 2^14 + a0 */
    int32_t k;
    for (k = 0; k < kpad; k += 2) {
        const uint32_t u = ep_ld32(c0 + k), v = ep_ld32(c1 + k);
        d[2 * k] = (uint32_t)EP_SMLABB(v, one, (int32_t)(int16_t)(u & 0xFFFFu));
        d[2 * k + 2] = (uint32_t)EP_SMLATB(v, one, (int32_t)u >> 16);
    }
}

/* The weight words of channels oc and oc + 1 (0 when !two_ch): w[k] = b0 + b1 2^28, read
 * from the packed rows (kc even: each starts on a byte). */
static void ep_f4_weights(const ep_im2col *g, const int8_t *filter, int32_t oc, int two_ch,
                          uint32_t *w)
{
    const int32_t kc = g->kc;
    const uint8_t *r0 = (const uint8_t *)filter + (oc * kc) / 2;
    const uint8_t *r1 = two_ch ? r0 + kc / 2 : r0;
    const uint32_t cm = two_ch ? 0xFFFFFFFFu : 0u;
    int32_t k = 0;
/* weight k + j from nibble j of b (channel oc) and c (channel oc + 1) */
#define EP_F4_W(j)                                                                   \
    w[k + (j)] = (uint32_t)((int32_t)(b << (28 - 4 * (j))) >> 28) +                  \
                 ((uint32_t)((int32_t)(c << (28 - 4 * (j))) >> 28) << (2 * EP_F4_SHIFT))
    for (; k + 8 <= kc; k += 8) {
        const uint32_t b = ep_ld32(r0 + (k >> 1)), c = ep_ld32(r1 + (k >> 1)) & cm;
        EP_F4_W(0);
        EP_F4_W(1);
        EP_F4_W(2);
        EP_F4_W(3);
        EP_F4_W(4);
        EP_F4_W(5);
        EP_F4_W(6);
        EP_F4_W(7);
    }
    for (; k < kc; k += 2) {
        const uint32_t b = r0[k >> 1], c = r1[k >> 1] & cm;
        EP_F4_W(0);
        EP_F4_W(1);
    }
#undef EP_F4_W
    for (; k < g->kpad; k++) {
        w[k] = 0;
    }
}

/* The default layout for 4-bit x 4-bit: blocks of `block` pixels (a multiple of 4) as
 * quads of field columns (block x kpad words after the weight words, the space of the
 * int16 columns and weight-row pair), outputs by ep_emit_quad per channel. */
static void ep_conv_loop_f4(const ep_im2col *g, const ep_out *o, const ep_rq *rq,
                            const edgeplus_window *win, int32_t batches, const int8_t *filter,
                            int8_t *stage, int16_t *tmp, int32_t block, int32_t cap)
{
    const int32_t kpad = g->kpad;
    uint32_t *wq = (uint32_t *)(void *)(tmp + kpad);
    int16_t *ta = (int16_t *)(void *)wq; /* a second column while the block is built */
    uint32_t *blk = wq + kpad;
    const int direct = (o->bits == 8);
    const int32_t total = win->h * win->w;
    int32_t obase[EDGEPLUS_CONV_PIXEL_BLOCK];
    int8_t *dst[EDGEPLUS_CONV_PIXEL_BLOCK]; /* each pixel's int8 row: output or staging */
    int32_t n;
    int64_t f;
#define EP_F4_NEXT()                \
    do {                            \
        if (++ox == win->x + win->w) { \
            ox = win->x;            \
            oy++;                   \
        }                           \
    } while (0)
    for (n = 0; n < batches; n++) {
        int32_t oy = win->y, ox = win->x;
        for (f = 0; f < total; f += block) {
            const int32_t np = total - f < block ? (int32_t)(total - f) : block;
            const int32_t np4 = (np + 3) & ~3;
            int32_t p, oc;
            const int16_t *last = tmp;
            for (p = 0; p < np4; p += 2) {
                /* past np: the last column again (its results are not stored) */
                const int16_t *c0 = last, *c1;
                if (p < np) {
                    ep_im2col_pixel(g, n, oy, ox, ta);
                    obase[p] = ep_out_index(o, n, oy, ox);
                    dst[p] = direct ? o->output + obase[p] : stage + p * o->oc;
                    EP_F4_NEXT();
                    c0 = ta;
                }
                c1 = c0;
                if (p + 1 < np) {
                    ep_im2col_pixel(g, n, oy, ox, tmp);
                    obase[p + 1] = ep_out_index(o, n, oy, ox);
                    dst[p + 1] = direct ? o->output + obase[p + 1] : stage + (p + 1) * o->oc;
                    EP_F4_NEXT();
                    c1 = tmp;
                }
                last = c1;
                ep_f4_pair(blk + (p >> 2) * 2 * kpad + ((p >> 1) & 1), c0, c1, kpad);
            }
            for (oc = 0; oc < o->oc; oc += 2) {
                const int two_ch = (oc + 1 < o->oc);
                ep_f4_weights(g, filter, oc, two_ch, wq);
                for (p = 0; p < np; p += 4) {
                    const int32_t cnt = np - p < 4 ? np - p : 4;
                    int32_t acc[8];
                    ep_dot_f4(blk + (p >> 2) * 2 * kpad, wq, kpad, cap, acc);
                    ep_emit_quad_call(o, rq + oc, acc, 0, dst + p, oc, cnt);
                    if (two_ch) {
                        ep_emit_quad_call(o, rq + oc + 1, acc + 4, 0, dst + p, oc + 1, cnt);
                    }
                }
            }
            if (!direct) {
                for (p = 0; p < np; p++) {
                    ep_pack_run(o->output, obase[p], stage + p * o->oc, o->oc, o->bits);
                }
            }
        }
    }
#undef EP_F4_NEXT
}

/* The lean layout with raw weights: blocks of `block` pixels (a multiple of 4), their
 * columns at blk (quads of 4 x mw words: permuted int16, or paired 2-bit lanes when
 * `pairs`), tmp one column. */
static void ep_conv_loop_raw(const ep_im2col *g, const ep_out *o, const ep_rq *rq,
                             const ep_conv_lean *ln, const edgeplus_window *win,
                             int32_t batches, const int8_t *filter, int32_t w_bits, int pairs,
                             int8_t *stage, int16_t *tmp, int32_t block, uint32_t *blk)
{
    const int32_t mw = pairs ? g->kpad / 4 : g->kpad / 2;
    const int32_t lg = pairs ? 0 : ep_raw_lg(w_bits);
    const int direct = (o->bits == 8);
    const int32_t total = win->h * win->w;
    const int32_t row_bytes = g->kc * w_bits / 8; /* int32: kc * 8 <= INT32_MAX (checked) */
    int32_t obase[EDGEPLUS_CONV_PIXEL_BLOCK];
    int8_t *dst[EDGEPLUS_CONV_PIXEL_BLOCK]; /* each pixel's int8 row: output or staging */
    int32_t n;
    int64_t f;
    for (n = 0; n < batches; n++) {
        int32_t oy = win->y, ox = win->x;
        for (f = 0; f < total; f += block) {
            const int32_t np = total - f < block ? (int32_t)(total - f) : block;
            const int32_t np4 = (np + 3) & ~3;
            int32_t p, oc;
            for (p = 0; p < np4; p++) {
                if (p < np) {
                    ep_im2col_pixel(g, n, oy, ox, tmp);
                    obase[p] = ep_out_index(o, n, oy, ox);
                    dst[p] = direct ? o->output + obase[p] : stage + p * o->oc;
                    if (++ox == win->x + win->w) {
                        ox = win->x;
                        oy++;
                    }
                } /* past np: the last column again (its results are not stored) */
                if (pairs) {
                    if (p < np && !g->lanes) {
                        ep_pair_lanes(tmp, g->kpad, 0);
                    }
                    ep_interleave_quad(blk + (p >> 2) * 4 * mw, p & 3, tmp, mw);
                } else {
                    ep_interleave_raw(blk + (p >> 2) * 4 * mw, p & 3, tmp, g->kpad, w_bits);
                }
            }
            for (oc = 0; oc < o->oc; oc++) {
                ep_rq qc;
                const ep_rq *q = rq != NULL ? rq + oc : &qc;
                const int8_t *wrow = filter + (int64_t)oc * row_bytes;
#if EP_M4_ASM
                /* whole quads of 2-bit lanes with threshold outputs: one assembly call */
                ep_lanes_thr thr;
                int fused;
#endif
                if (rq == NULL) {
                    edgeplus_quant_params qp;
                    qp.multiplier = o->mult + oc;
                    qp.shift = o->shift + oc;
                    edgeplus__rq_prepare(&qc, &qp, o->bias != NULL ? o->bias + oc : NULL, 1,
                                         ln->acc_bound, o->frac);
                }
#if EP_M4_ASM
                fused = pairs && q->lshift == EP_RQ_THRESHOLDS &&
                        g->kc / 4 <= EDGEPLUS_W2A2_FLUSH && ((g->kc / 4) & 3) == 0;
                thr.t[0] = q->mult;
                thr.t[1] = q->bias;
                thr.t[2] = q->round;
                thr.lo = o->act_min;
                thr.oc = oc;
#endif
                for (p = 0; p < np; p += 4) {
                    const int32_t cnt = np - p < 4 ? np - p : 4;
#if EP_M4_ASM
                    if (fused && cnt == 4) {
                        thr.dst = dst + p;
                        edgeplus__lanes4_thr_m4(blk + (p >> 2) * 4 * mw, (const uint8_t *)wrow,
                                                (const uint8_t *)wrow + g->kc / 4, EP_LANE_W,
                                                &thr);
                        continue;
                    }
#endif
                    if (pairs) {
                        ep_quad_lanes(blk + (p >> 2) * 4 * mw, (const uint8_t *)wrow, g->kc, o,
                                      q, dst + p, oc, cnt);
                    } else {
                        int32_t acc[4];
                        ep_dot_raw4(blk + (p >> 2) * 4 * mw, wrow, g->kc, w_bits, acc);
                        ep_emit_quad_call(o, q, acc, lg, dst + p, oc, cnt);
                    }
                }
            }
            if (!direct) {
                for (p = 0; p < np; p++) {
                    ep_pack_run(o->output, obase[p], stage + p * o->oc, o->oc, o->bits);
                }
            }
        }
    }
}
#endif

/* The largest even pixel block <= pmax whose staging (stage_px bytes per pixel) and int16
 * columns fit `avail` bytes next to the temp column and the weight-row pair; 0 if none. */
static int32_t ep_conv_block(int64_t avail, int64_t kpad, int64_t stage_px, int64_t pmax)
{
    int64_t b;
    avail -= 3 * kpad * 2;
    b = avail > 0 ? (avail / (kpad * 2 + stage_px)) & ~(int64_t)1 : 0;
    if (b > pmax) {
        b = pmax;
    }
    while (b >= 2 && ((b * stage_px + 3) & ~(int64_t)3) + b * kpad * 2 > avail) {
        b -= 2;
    }
    return (int32_t)(b < 2 ? 0 : b); /* <= EDGEPLUS_CONV_PIXEL_BLOCK */
}

edgeplus_status edgeplus__conv_core(const ep_conv_args *a)
{
    ep_conv_setup s;
    ep_im2col g; /* copies the compiler keeps in registers (s escapes to the setup) */
    ep_out o;
    const edgeplus_window *window;
    int64_t table, stage_px, pmax, avail;
    ep_conv_lean ln;
    ln.acc_bound = 0;
    int32_t block;
    int pairs;
    const edgeplus_status st = edgeplus__conv_setup(a, 0, &s);
    if (st != EDGEPLUS_OK) {
        return st;
    }
    g = s.g;
    o = s.o;
    window = a->window;
    pairs = ep_conv_pairs(a->params);
    g.lanes = pairs && (g.in_c % 4) == 0; /* write paired lanes directly */
    /* Default layout: requantization table | staging | columns [| weight cache], with
     * blocks of pmax pixels. A smaller scratch takes the lean layout: no table (prepared
     * per channel pair), no staging for an 8-bit output, blocks as large as fit. All in
     * int64: out_c alone may be near INT32_MAX. */
    pmax = ((int64_t)window->h * window->w + 1) & ~(int64_t)1;
    if (pmax > (EDGEPLUS_CONV_PIXEL_BLOCK & ~1)) {
        pmax = EDGEPLUS_CONV_PIXEL_BLOCK & ~1;
    }
    table = (int64_t)o.oc * (int64_t)sizeof(ep_rq);
    stage_px = o.oc;
    block = ep_conv_block(s.avail - table, g.kpad, stage_px, pmax);
    if (block < pmax) {
        table = 0;
        stage_px = o.bits == 8 ? 0 : o.oc;
        ln.acc_bound = s.acc_bound;
        /* the minimum: 4 pixels of the raw-weight path (2 of the unpacking path) */
        if (((4 * stage_px + 3) & ~(int64_t)3) + 5 * (int64_t)g.kpad * 2 > s.avail) {
            return EP_FAIL(EDGEPLUS_ERR_SCRATCH, "ctx->size", -1, a->ctx->size,
                           "at least the _get_buffer_size_lean for a 1x1 output");
        }
#if EP_USE_WORDS
        if (ep_raw_ok(g.kc, a->params->w_bits, s.acc_bound, pairs)) {
            /* raw weights: blocks of a multiple of 4 pixels, columns + one temp column */
            const int64_t p4 = ((int64_t)window->h * window->w + 3) & ~(int64_t)3;
            int64_t b = EDGEPLUS_CONV_PIXEL_BLOCK & ~3;
            b = b < p4 ? b : p4;
            if (pairs) {
                /* lane columns are half as wide as int16 ones: the requantization table
                 * (2-bit outputs: thresholds) often fits next to blocks of 4+ pixels */
                const int64_t tbl = (int64_t)o.oc * (int64_t)sizeof(ep_rq);
                int64_t bt = b;
                while (bt >= 4 &&
                       tbl + ((bt * stage_px + 3) & ~(int64_t)3) + (2 + bt) * g.kpad > s.avail) {
                    bt -= 4;
                }
                if (bt >= 4) {
                    ep_rq *rq = (ep_rq *)(void *)s.mem;
                    int8_t *stage = (int8_t *)(s.mem + tbl);
                    int16_t *tmp =
                        (int16_t *)(void *)(stage + (((bt * stage_px) + 3) & ~(int64_t)3));
                    edgeplus__rq_prepare(rq, a->quant, a->bias, o.oc, s.acc_bound, o.frac);
                    ep_rq_table_thresholds(rq, &o, window, s.acc_bound);
                    ep_conv_loop_raw(&g, &o, rq, &ln, window, a->input_dims->n, a->filter,
                                     a->params->w_bits, pairs, stage, tmp, (int32_t)bt,
                                     (uint32_t *)(void *)(tmp + g.kpad));
                    return EDGEPLUS_OK;
                }
            }
            while (b >= 4 && ((b * stage_px + 3) & ~(int64_t)3) + (b + 1) * g.kpad * 2 > s.avail) {
                b -= 4;
            }
            if (b >= 4) {
                int8_t *stage = (int8_t *)s.mem;
                int16_t *tmp = (int16_t *)(void *)(stage + (((b * stage_px) + 3) & ~(int64_t)3));
                ep_conv_loop_raw(&g, &o, NULL, &ln, window, a->input_dims->n, a->filter,
                                 a->params->w_bits, pairs, stage, tmp, (int32_t)b,
                                 (uint32_t *)(void *)(tmp + g.kpad));
                return EDGEPLUS_OK;
            }
        }
#endif
        block = ep_conv_block(s.avail, g.kpad, stage_px, pmax);
    }
    if (block < 2) {
        return EP_FAIL(EDGEPLUS_ERR_SCRATCH, "ctx->size", -1, a->ctx->size,
                       "at least the _get_buffer_size_lean for a 1x1 output");
    }
    avail = s.avail - table;
    {
        /* the weight cache, when the rest of the scratch holds it (default layout) */
        ep_rq *rq = table > 0 ? (ep_rq *)(void *)s.mem : NULL;
        int8_t *stage = (int8_t *)(s.mem + table);
        const int64_t stage_bytes = ((int64_t)block * stage_px + 3) & ~(int64_t)3;
        int16_t *tmp = (int16_t *)(void *)(stage + stage_bytes);
        uint32_t *wcache = (uint32_t *)(void *)(tmp + (3 + block) * g.kpad);
        const int64_t rest = avail - stage_bytes - (int64_t)(3 + block) * g.kpad * 2;
        if (rq == NULL || rest < ep_wcache_bytes(o.oc, g.kpad, pairs)) {
            wcache = NULL;
        }
        if (rq != NULL) {
            edgeplus__rq_prepare(rq, a->quant, a->bias, o.oc, s.acc_bound, o.frac);
        }
#if EP_USE_WORDS
        if (rq != NULL && pairs && wcache == NULL && g.kc % 4 == 0) {
            /* 2-bit x 2-bit: packed weights through the lane table (no weight-row
             * unpacking; the lane columns fit the default layout's int16 ones); 2-bit
             * outputs of windows of 64 pixels or more by thresholds */
            ep_rq_table_thresholds(rq, &o, window, s.acc_bound);
            ep_conv_loop_raw(&g, &o, rq, &ln, window, a->input_dims->n, a->filter,
                             a->params->w_bits, pairs, stage, tmp, block,
                             (uint32_t *)(void *)(tmp + g.kpad));
        } else if (rq != NULL && a->params->in_bits == 4 && a->params->w_bits == 4 &&
                   block >= 4 && (g.kc & 1) == 0 && ep_f4_narrow(a->filter, o.oc * g.kc)) {
            ep_conv_loop_f4(&g, &o, rq, window, a->input_dims->n, a->filter, stage, tmp,
                            block & ~3, ep_f4_cap(&g));
        } else
#endif
        if (rq != NULL) {
            ep_conv_loop(&g, &o, rq, 0, &ln, window, a->input_dims->n, a->filter,
                         a->params->w_bits, pairs, stage, tmp, block, wcache);
        } else {
            ep_conv_loop_lean(&g, &o, &ln, window, a->input_dims->n, a->filter,
                              a->params->w_bits, pairs, stage, tmp, block);
        }
    }
    return EDGEPLUS_OK;
}
