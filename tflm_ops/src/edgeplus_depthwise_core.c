/*
 * edgeplus_depthwise_core.c - the planar depthwise kernel behind
 * edgeplus_depthwise_conv2d[_window] (internal, not public API; validation, the
 * requantization table and the scratch check are in edgeplus_conv_core.c).
 *
 * Layout: channels in strips of S (EDGEPLUS_DW_STRIP), output columns in tiles of up to
 * EDGEPLUS_DW_TILE_W pixels. Per (strip, tile) a ring of kh slots holds unpacked input
 * rows in planar form, slot[channel][column] of int16 (x - zp), so each input value is
 * unpacked once per strip and tile (the im2col it replaces unpacked it kh*kw times) and
 * a kernel row of one channel reads consecutive int16 pairs. Padding columns are zeros
 * (written once per tile), padding rows read a shared zero row.
 *
 * Per output row and channel: the int32 accumulators of the tile row, then one
 * requantization pass, written straight into an int8 output (stride c) or staged and
 * packed per row for 2/4-bit outputs (word stores when the run is byte-aligned).
 * Channels on the fast path (ep_dw_fast) start from the pre-shifted bias (ep_rq) with the
 * weights << lshift, so requantization is SMMLAR (rounding and output zero point folded in),
 * a sign correction, a shift and SSAT: no per-output left shift, bias add or clamp pair.
 *
 * 3-wide filters, stride 1 or 2, dilation 1: SMLAD on (x[i], x[i+1]) x (w0, w1) and
 * SMLABT / SMLATB for the third tap, 4 multiplies per 6 MACs, with the weights as the
 * words W01 = (w0, w1), W12 = (w1, w2). On the M4 (EP_M4_ASM) the 3x3 stride-1 kernel
 * (groups of 4 pixels, 37 instructions per 36 MACs) and the requantization (25
 * instructions per 4 outputs) are Thumb-2 assembly; the host emulation runs their C
 * twins. Other filters take a plain C loop over the same planar rows.
 *
 * Emulated Cortex-M4, 3x3 48x48x32 (benchmarks/kernels_m4.py, -Ofast), instructions per
 * MAC: W8A8 2.28, W4A4 2.56, W2A2 2.55 (was about 13.4 with the per-pixel im2col):
 * MACs 1.04, requantization 0.70, unpacking 0.37, the rest per-channel overhead.
 */
#include "edgeplus_conv_helpers.h"

static int32_t ep_gcd(int32_t a, int32_t b)
{
    while (b != 0) {
        const int32_t t = a % b;
        a = b;
        b = t;
    }
    return a;
}

/* ------------------------------------------------------------------ geometry */

void edgeplus__dw_geom(const edgeplus_conv_params *params, const edgeplus_dims *input_dims,
                       const edgeplus_dims *filter_dims, int lean, ep_dw_geom *d)
{
    const int64_t c = input_dims->c;
    const int64_t kh = filter_dims->h, kw = filter_dims->w;
    const int64_t sw = params->stride_w;
    const int64_t dw = params->dilation_w > 0 ? params->dilation_w : 1;
    const int64_t max_ow = ((int64_t)input_dims->w - 1 + params->pad_w) / sw + 1;
    const int64_t strip = lean ? EDGEPLUS_DW_LEAN_STRIP : EDGEPLUS_DW_STRIP;
    const int64_t tw = max_ow < EDGEPLUS_DW_TILE_W ? max_ow : EDGEPLUS_DW_TILE_W;
    const int64_t s = c < strip ? c : strip;
    const int64_t rw = (tw - 1) * sw + (kw - 1) * dw + 1;
    /* slack: the 3x3 kernel computes whole groups of 4 pixels (reads 3 past the tile) */
    const int64_t rwp = (rw + 6) & ~(int64_t)1;
    const int64_t wrow = kw < 4 ? 4 : (kw + 1) & ~(int64_t)1;
    /* accumulators: whole groups of 4, then 8 words for the 3x3 kernel's weights+bias */
    const int64_t accw = ((tw + 3) & ~(int64_t)3) + 8;
    /* int8 output staging of one tile row (2/4-bit outputs; the default layout has it
     * for 8-bit outputs too, unused) */
    const int64_t stage = lean && params->out_bits == 8 ? 0 : (tw * s + 3) & ~(int64_t)3;
    const int64_t bytes =
        s * kh * wrow * 2 + accw * 4 + stage + kh * 8 + rwp * 2 + kh * s * rwp * 2;
    d->planar = bytes <= EDGEPLUS_DW_PLANAR_MAX;
    d->strip = (int32_t)s;
    d->tile_w = (int32_t)tw;
    d->rw = d->planar ? (int32_t)rw : 0;
    d->rwp = d->planar ? (int32_t)rwp : 0;
    d->wrow = (int32_t)wrow;
    d->stage = (int32_t)stage;
    if (d->planar) {
        d->bytes = bytes; /* the strip's requantization table is on the stack */
    } else {
        /* fallback: the requantization table + output staging + one im2col column + the
         * unpacked filter */
        d->bytes = c * (int64_t)sizeof(ep_rq) + ((c + 3) & ~(int64_t)3) +
                   2 * (int64_t)ep_kpad(input_dims, filter_dims) * 2;
    }
}

int32_t edgeplus__dw_buffer_size(const edgeplus_conv_params *params,
                                 const edgeplus_dims *input_dims,
                                 const edgeplus_dims *filter_dims,
                                 const edgeplus_dims *output_dims, int lean)
{
    ep_dw_geom d, full;
    int64_t bytes;
    const edgeplus_status st =
        edgeplus__check_conv_args(params, input_dims, filter_dims, output_dims, 1);
    if (st != EDGEPLUS_OK) {
        return (int32_t)st;
    }
    edgeplus__dw_geom(params, input_dims, filter_dims, 0, &full);
    edgeplus__dw_geom(params, input_dims, filter_dims, lean, &d);
    /* the kernels take the default layout whenever it fits */
    bytes = 8 + (d.bytes < full.bytes ? d.bytes : full.bytes);
    if (bytes > INT32_MAX) {
        return (int32_t)EP_FAIL(EDGEPLUS_ERR_DIMS, "input_dims", -1, input_dims->c,
                                "the scratch bytes must fit int32");
    }
    return (int32_t)bytes;
}

#if EP_USE_WORDS
/* ep_dw_fill_row for 4-bit (bits 4) or 2-bit (bits 2) input, groups of 4 channels of a
 * pixel pair: the two pixels' 4 fields (16 or 8 bits each) go to the two halfwords of
 * one word, then field k of both is (t >> k*bits) & mask, and one SSUB16 gives the
 * (pixel x, pixel x+1) int16 word of row k. src: the byte of (pixel xa, channel c0). */
EP_INLINE void ep_dw_fill_lowbit(const uint8_t *src, int32_t pstride, int32_t xa, int32_t xb,
                                 int32_t s, int32_t zp, int32_t bits, int16_t *dst, int32_t rwp)
{
    const uint32_t fm = bits == 4 ? 0x000F000Fu : 0x00030003u;
    const uint32_t flip = bits == 4 ? 0x88888888u : 0xAAAAAAAAu; /* fields + 2^(bits-1) */
    const uint32_t kk = ((uint32_t)((1 << (bits - 1)) + zp) & 0xFFFFu) * 0x00010001u;
    const int32_t gbytes = bits / 2; /* bytes per group of 4 channels */
    int32_t j, x;
    for (j = 0; j < s; j += 4) {
        const uint8_t *sp = src + (j / 4) * gbytes;
        int16_t *d0 = dst + j * rwp + xa;
        int16_t *d1 = d0 + rwp;
        int16_t *d2 = d1 + rwp;
        int16_t *d3 = d2 + rwp;
        for (x = xa; x + 1 < xb; x += 2) {
            uint32_t t;
            if (bits == 4) {
                uint16_t ha, hb;
                memcpy(&ha, sp, 2);
                memcpy(&hb, sp + pstride, 2);
                t = ((uint32_t)ha | ((uint32_t)hb << 16)) ^ flip;
            } else {
                t = ((uint32_t)sp[0] | ((uint32_t)sp[pstride] << 16)) ^ flip;
            }
            ep_st32(d0, EP_SSUB16(t & fm, kk));
            ep_st32(d1, EP_SSUB16((t >> bits) & fm, kk));
            ep_st32(d2, EP_SSUB16((t >> (2 * bits)) & fm, kk));
            ep_st32(d3, EP_SSUB16((t >> (3 * bits)) & fm, kk));
            sp += 2 * pstride;
            d0 += 2;
            d1 += 2;
            d2 += 2;
            d3 += 2;
        }
        if (x < xb) {
            uint32_t t;
            if (bits == 4) {
                uint16_t ha;
                memcpy(&ha, sp, 2);
                t = (uint32_t)ha ^ flip;
            } else {
                t = (uint32_t)sp[0] ^ flip;
            }
            d0[0] = (int16_t)EP_SSUB16(t & fm, kk);
            d1[0] = (int16_t)EP_SSUB16((t >> bits) & fm, kk);
            d2[0] = (int16_t)EP_SSUB16((t >> (2 * bits)) & fm, kk);
            d3[0] = (int16_t)EP_SSUB16((t >> (3 * bits)) & fm, kk);
        }
    }
}
#endif

/* Input row iy, columns [ixs, ixs + rw), channels [c0, c0 + s) -> s planar int16 rows
 * of x - zp, row j at dst + j * rwp. Writes only the columns inside the input: the
 * caller zeroes the padding columns and the slack once per tile. */
EP_NOINLINE static void ep_dw_fill_row(const ep_im2col *g, int32_t n, int32_t iy, int32_t ixs,
                                      int32_t rw, int32_t c0, int32_t s, int16_t *dst,
                                      int32_t rwp)
{
    const int32_t c = g->in_c;
    const int32_t xa = ixs < 0 ? (-ixs < rw ? -ixs : rw) : 0;
    const int32_t xe = g->in_w - ixs;
    const int32_t xb = xe < rw ? (xe > xa ? xe : xa) : rw;
    /* flat index of (iy, ixs + xa, c0) in the input buffer */
    const int32_t start = ((n * g->rh + (iy - g->ry)) * g->rw + (ixs + xa - g->rx)) * c + c0;
    int32_t j, x;
    if (xb <= xa) {
        return; /* the tile row lies in the padding (not reached by valid geometry) */
    }
#if EP_USE_WORDS
    if (g->in_bits == 8 && (s & 3) == 0) {
        const uint32_t zz = ((uint32_t)g->in_zp & 0xFFFFu) * 0x00010001u;
        for (j = 0; j < s; j += 4) {
            const int8_t *src = g->input + start + j;
            int16_t *d0 = dst + j * rwp + xa;
            int16_t *d1 = d0 + rwp;
            int16_t *d2 = d1 + rwp;
            int16_t *d3 = d2 + rwp;
            for (x = xa; x + 1 < xb; x += 2) {
                const uint32_t w0 = ep_ld32(src), w1 = ep_ld32(src + c);
                const uint32_t e0 = EP_SSUB16(EP_SXTB16(w0), zz);      /* ch 0, 2 */
                const uint32_t e1 = EP_SSUB16(EP_SXTB16(w1), zz);
                const uint32_t o0 = EP_SSUB16(ep_sxtb16_ror8(w0), zz); /* ch 1, 3 */
                const uint32_t o1 = EP_SSUB16(ep_sxtb16_ror8(w1), zz);
                ep_st32(d0, ep_pkhbt16(e0, e1));
                ep_st32(d1, ep_pkhbt16(o0, o1));
                ep_st32(d2, ep_pkhtb16(e1, e0));
                ep_st32(d3, ep_pkhtb16(o1, o0));
                src += 2 * c;
                d0 += 2;
                d1 += 2;
                d2 += 2;
                d3 += 2;
            }
            if (x < xb) {
                d0[0] = (int16_t)(src[0] - g->in_zp);
                d1[0] = (int16_t)(src[1] - g->in_zp);
                d2[0] = (int16_t)(src[2] - g->in_zp);
                d3[0] = (int16_t)(src[3] - g->in_zp);
            }
        }
        return;
    }
    /* whole bytes per pixel and per group of 4 channels (start is then byte-aligned) */
    if (g->in_bits == 4 && (c & 1) == 0 && (s & 3) == 0) {
        ep_dw_fill_lowbit((const uint8_t *)g->input + (start >> 1), c / 2, xa, xb, s, g->in_zp,
                          4, dst, rwp);
        return;
    }
    if (g->in_bits == 2 && (c & 3) == 0 && (s & 3) == 0) {
        ep_dw_fill_lowbit((const uint8_t *)g->input + (start >> 2), c / 4, xa, xb, s, g->in_zp,
                          2, dst, rwp);
        return;
    }
#endif
    {
        /* two pixels at a time: unpack both runs (word unpackers), then write channel
         * pairs as (pixel x, pixel x+1) words: PKHBT / PKHTB */
        int16_t ta[EDGEPLUS_DW_STRIP], tb[EDGEPLUS_DW_STRIP];
        const int32_t sp = s & ~1;
        for (x = xa; x + 1 < xb; x += 2) {
            int16_t *d = dst + x;
            ep_unpack_s16(g->input, start + (x - xa) * c, s, g->in_bits, g->in_zp, ta);
            ep_unpack_s16(g->input, start + (x + 1 - xa) * c, s, g->in_bits, g->in_zp,
                                 tb);
            for (j = 0; j < sp; j += 2) {
                const uint32_t a = ep_ld32(ta + j), b = ep_ld32(tb + j);
                ep_st32(d, ep_pkhbt16(a, b));
                ep_st32(d + rwp, ep_pkhtb16(b, a));
                d += 2 * rwp;
            }
            if (sp < s) {
                d[0] = ta[sp];
                d[1] = tb[sp];
            }
        }
        if (x < xb) {
            ep_unpack_s16(g->input, start + (x - xa) * c, s, g->in_bits, g->in_zp, ta);
            for (j = 0; j < s; j++) {
                dst[j * rwp + x] = ta[j];
            }
        }
    }
}

/* Accumulators of one tile row, generic filter: acc[p] = sum over ky, kx of
 * rows[ky][p * sw + kx * dw] * w[ky * wrow + kx]. */
static void ep_dw_mac_generic(const int16_t *const *rows, const int16_t *w, int32_t kh,
                              int32_t kw, int32_t wrow, int32_t sw, int32_t dw, int32_t tw,
                              int32_t init, int32_t *acc)
{
    int32_t p, ky, kx;
    for (p = 0; p < tw; p++) {
        int32_t s = init;
        for (ky = 0; ky < kh; ky++) {
            const int16_t *r = rows[ky] + p * sw;
            const int16_t *wk = w + ky * wrow;
            for (kx = 0; kx < kw; kx++) {
                s += (int32_t)r[kx * dw] * wk[kx];
            }
        }
        acc[p] = s;
    }
}

#if EP_USE_WORDS
/* Accumulators of one tile row for a 3-wide filter row, stride 1 or 2, dilation 1, with
 * the weights of row ky as words W01 = (w0, w1), W12 = (w1, w2). Two pixels per step:
 * stride 1 reads A = (x0, x1), B = (x2, x3): p0 = SMLAD(A, W01) + x2*w2 (SMLABT),
 * p1 = x1*w0 (SMLATB) + SMLAD(B, W12); stride 2 reads A, B, C = (x4, x5):
 * p0 = SMLAD(A, W01) + x2*w2, p1 = SMLAD(B, W01) + x4*w2. 4 multiplies per 6 MACs.
 * first != 0 starts the sums at 0, else adds to acc. */
EP_NOINLINE static void ep_dw_mac3_row(const int16_t *r, uint32_t w01, uint32_t w12,
                                       int32_t sw, int32_t tw, int32_t *acc, int first,
                                       int32_t init)
{
    int32_t p = 0;
    if (sw == 1) {
        for (; p + 1 < tw; p += 2) {
            const uint32_t a = ep_ld32(r + p), b = ep_ld32(r + p + 2);
            int32_t s0 = first ? init : acc[p], s1 = first ? init : acc[p + 1];
            s0 = EP_SMLAD(a, w01, s0);
            s0 = EP_SMLABT(b, w12, s0);
            s1 = EP_SMLATB(a, w01, s1);
            s1 = EP_SMLAD(b, w12, s1);
            acc[p] = s0;
            acc[p + 1] = s1;
        }
    } else {
        for (; p + 1 < tw; p += 2) {
            const uint32_t a = ep_ld32(r + 2 * p), b = ep_ld32(r + 2 * p + 2);
            const uint32_t cc = ep_ld32(r + 2 * p + 4);
            int32_t s0 = first ? init : acc[p], s1 = first ? init : acc[p + 1];
            s0 = EP_SMLAD(a, w01, s0);
            s0 = EP_SMLABT(b, w12, s0);
            s1 = EP_SMLAD(b, w01, s1);
            s1 = EP_SMLABT(cc, w12, s1);
            acc[p] = s0;
            acc[p + 1] = s1;
        }
    }
    if (p < tw) {
        const uint32_t a = ep_ld32(r + p * sw), b = ep_ld32(r + p * sw + 2);
        int32_t s0 = first ? init : acc[p];
        s0 = EP_SMLAD(a, w01, s0);
        s0 = EP_SMLABT(b, w12, s0);
        acc[p] = s0;
    }
}

/* 3x3, stride 1, dilation 1, in groups of 4 pixels (whole groups: up to 3 pixels past
 * tw are computed and ignored). w: the 3 rows' (W01, W12) words; the sums start at
 * init. Per group and kernel row 2 data loads, 1 weight load and 8 multiplies:
 * p0 = SMLAD(A, W01) + SMLABT(B, W12), p1 = SMLATB(A, W01) + SMLAD(B, W12),
 * p2 = SMLAD(B, W01) + SMLABT(C, W12), p3 = SMLATB(B, W01) + SMLAD(C, W12) with
 * A = (x0, x1), B = (x2, x3), C = (x4, x5). */
#if EP_M4_ASM
/* The same in Thumb-2 assembly (all 14 free registers): acc..end is whole groups of
 * 4 words; end[0..5] hold the weight words, end[6] the initial sum. */
void edgeplus__dw33s1_m4(int32_t *acc, const int32_t *end, const int16_t *const *rows);
__asm__(
    ".syntax unified\n"
    ".thumb\n"
    ".text\n"
    ".p2align 2\n"
    ".global edgeplus__dw33s1_m4\n"
    ".type edgeplus__dw33s1_m4, %function\n"
    ".thumb_func\n"
    "edgeplus__dw33s1_m4:\n"
    "  push {r4-r11, lr}\n"
    "  ldr r4, [r2, #8]\n"
    "  ldr r3, [r2, #4]\n"
    "  ldr r2, [r2, #0]\n"
    "1:\n"
    "  ldr r11, [r1, #24]\n"
    "  ldrd r9, r10, [r2], #8\n"
    "  ldrd r12, lr, [r1, #0]\n"
    "  smlad r5, r9, r12, r11\n"
    "  smlatb r6, r9, r12, r11\n"
    "  smlad r7, r10, r12, r11\n"
    "  smlatb r8, r10, r12, r11\n"
    "  ldr r11, [r2]\n"
    "  smlabt r5, r10, lr, r5\n"
    "  smlad r6, r10, lr, r6\n"
    "  smlabt r7, r11, lr, r7\n"
    "  smlad r8, r11, lr, r8\n"
    "  ldrd r9, r10, [r3], #8\n"
    "  ldr r11, [r3]\n"
    "  ldrd r12, lr, [r1, #8]\n"
    "  smlad r5, r9, r12, r5\n"
    "  smlatb r6, r9, r12, r6\n"
    "  smlad r7, r10, r12, r7\n"
    "  smlatb r8, r10, r12, r8\n"
    "  smlabt r5, r10, lr, r5\n"
    "  smlad r6, r10, lr, r6\n"
    "  smlabt r7, r11, lr, r7\n"
    "  smlad r8, r11, lr, r8\n"
    "  ldrd r9, r10, [r4], #8\n"
    "  ldr r11, [r4]\n"
    "  ldrd r12, lr, [r1, #16]\n"
    "  smlad r5, r9, r12, r5\n"
    "  smlatb r6, r9, r12, r6\n"
    "  smlad r7, r10, r12, r7\n"
    "  smlatb r8, r10, r12, r8\n"
    "  smlabt r5, r10, lr, r5\n"
    "  smlad r6, r10, lr, r6\n"
    "  smlabt r7, r11, lr, r7\n"
    "  smlad r8, r11, lr, r8\n"
    "  stmia r0!, {r5-r8}\n"
    "  cmp r0, r1\n"
    "  blo 1b\n"
    "  pop {r4-r11, pc}\n"
    ".size edgeplus__dw33s1_m4, .-edgeplus__dw33s1_m4\n");
#endif

#if !EP_M4_ASM
/* The C twin of edgeplus__dw33s1_m4 (host emulation of the DSP path; the M4 uses the
 * assembly through ep_dw_row33_m4). */
EP_NOINLINE static void ep_dw_mac33_s1(const int16_t *r0, const int16_t *r1, const int16_t *r2,
                                       const int16_t *w, int32_t tw, int32_t init, int32_t *acc)
{
    const uint32_t a01 = ep_ld32(w), a12 = ep_ld32(w + 2);
    const uint32_t b01 = ep_ld32(w + 4), b12 = ep_ld32(w + 6);
    const uint32_t c01 = ep_ld32(w + 8), c12 = ep_ld32(w + 10);
    int32_t p;
    for (p = 0; p < tw; p += 4) {
        int32_t s0 = init, s1 = init, s2 = init, s3 = init, k;
        for (k = 0; k < 3; k++) {
            const int16_t *r = k == 0 ? r0 : (k == 1 ? r1 : r2);
            const uint32_t w01 = k == 0 ? a01 : (k == 1 ? b01 : c01);
            const uint32_t w12 = k == 0 ? a12 : (k == 1 ? b12 : c12);
            const uint32_t a = ep_ld32(r + p), b = ep_ld32(r + p + 2), cc = ep_ld32(r + p + 4);
            s0 = EP_SMLAD(a, w01, s0);
            s0 = EP_SMLABT(b, w12, s0);
            s1 = EP_SMLATB(a, w01, s1);
            s1 = EP_SMLAD(b, w12, s1);
            s2 = EP_SMLAD(b, w01, s2);
            s2 = EP_SMLABT(cc, w12, s2);
            s3 = EP_SMLATB(b, w01, s3);
            s3 = EP_SMLAD(cc, w12, s3);
        }
        acc[p] = s0;
        acc[p + 1] = s1;
        acc[p + 2] = s2;
        acc[p + 3] = s3;
    }
}
#endif
#endif

/* Depthwise fast channels: the ep_rq fast path (q->lshift >= 0) whose weights still fit
 * int16 after << lshift and whose right shift is at most 22. Their accumulators are
 * x = (acc << lshift) + q->bias (see ep_rq), from pre-shifted weights and that bias, and
 *   v = (SMMLAR(x, m, round + (zp << r)) + (x >> 31)) >> r     (r >= 1)
 *   v = SMMLAR(x, m, zp)                                       (r == 0)
 * equals TFLite's (h + round - (h < 0)) >> r + zp with h = SMMULR(x, m): h has the
 * sign of x unless h == 0, where both give zp (round - 1 < 2^r); |zp << r| < 2^30 and
 * |h| <= 2^30 keep the sums in range. Other channels take ep_out_value. */
EP_INLINE int ep_dw_fast(const ep_rq *q, int32_t w_bits)
{
    return q->lshift >= 0 && q->lshift <= 15 - w_bits && q->rshift <= 22;
}

#define EP_DW_CLAMP_LOHI(v) ((v) < lo ? lo : ((v) > hi ? hi : (v)))
#define EP_DW_CLAMP_LOHI_FULL(v, bits)                \
    ((v) < ep_qmin(bits) ? ep_qmin(bits) : ((v) > ep_qmax(bits) ? ep_qmax(bits) : (v)))

#if EP_M4_ASM
/* The fast requantization loop (r >= 1, clamp = the full range of `bits`) in Thumb-2
 * assembly, 4 accumulators per step: acc..end (whole groups of 4) -> dst[p * step];
 * prm = {step, m, rnd, r}. 25 instructions per 4 outputs. */
#define EP_DW_RQ_ASM(NAME, BITS)                                                          \
    void NAME(const int32_t *acc, const int32_t *end, int8_t *dst, const int32_t *prm);   \
    __asm__(".syntax unified\n.thumb\n.text\n.p2align 2\n.global " #NAME "\n"            \
            ".type " #NAME ", %function\n.thumb_func\n" #NAME ":\n"                      \
            "  push {r4-r11, lr}\n"                                                       \
            "  ldm r3, {r3, r4, r5, r6}\n"                                                \
            "1:\n"                                                                        \
            "  ldmia r0!, {r8-r11}\n"                                                     \
            "  add r7, r5, r8, asr #31\n"                                                 \
            "  smmlar r8, r8, r4, r7\n"                                                   \
            "  asr r8, r8, r6\n"                                                          \
            "  ssat r8, #" #BITS ", r8\n"                                                 \
            "  strb r8, [r2]\n"                                                           \
            "  add r7, r5, r9, asr #31\n"                                                 \
            "  smmlar r9, r9, r4, r7\n"                                                   \
            "  asr r9, r9, r6\n"                                                          \
            "  ssat r9, #" #BITS ", r9\n"                                                 \
            "  strb r9, [r2, r3]\n"                                                       \
            "  add r2, r2, r3, lsl #1\n"                                                  \
            "  add r7, r5, r10, asr #31\n"                                                \
            "  smmlar r10, r10, r4, r7\n"                                                 \
            "  asr r10, r10, r6\n"                                                        \
            "  ssat r10, #" #BITS ", r10\n"                                               \
            "  strb r10, [r2]\n"                                                          \
            "  add r7, r5, r11, asr #31\n"                                                \
            "  smmlar r11, r11, r4, r7\n"                                                 \
            "  asr r11, r11, r6\n"                                                        \
            "  ssat r11, #" #BITS ", r11\n"                                               \
            "  strb r11, [r2, r3]\n"                                                      \
            "  add r2, r2, r3, lsl #1\n"                                                  \
            "  cmp r0, r1\n"                                                              \
            "  blo 1b\n"                                                                  \
            "  pop {r4-r11, pc}\n"                                                        \
            ".size " #NAME ", .-" #NAME "\n")
EP_DW_RQ_ASM(edgeplus__dw_rq8_m4, 8);
EP_DW_RQ_ASM(edgeplus__dw_rq4_m4, 4);
EP_DW_RQ_ASM(edgeplus__dw_rq2_m4, 2);
#endif

/* Requantize `count` accumulators of one channel into dst[p * step] (int8). fast:
 * the channel is ep_dw_fast and acc holds (acc << lshift) + q->bias (see there); else acc
 * is the plain sum and ep_out_value adds the bias. */
EP_NOINLINE static void ep_dw_requant(const ep_out *o, const ep_rq *q, const int32_t *acc,
                                      int32_t count, int8_t *dst, int32_t step, int fast)
{
    const int32_t lo = o->act_min, hi = o->act_max;
    int32_t p = 0;
    if (fast) {
        const int32_t m = q->mult, r = q->rshift;
        const int32_t rnd =
            r == 0 ? o->zp : (int32_t)((uint32_t)q->round + ((uint32_t)o->zp << r));
#if EP_M4_ASM
        const int full = lo == ep_qmin(o->bits) && hi == ep_qmax(o->bits);
        if (full && r > 0 && count >= 4) {
            int32_t prm[4];
            prm[0] = step;
            prm[1] = m;
            prm[2] = rnd;
            prm[3] = r;
            p = count & ~3;
            if (o->bits == 8) {
                edgeplus__dw_rq8_m4(acc, acc + p, dst, prm);
            } else if (o->bits == 4) {
                edgeplus__dw_rq4_m4(acc, acc + p, dst, prm);
            } else {
                edgeplus__dw_rq2_m4(acc, acc + p, dst, prm);
            }
            dst += p * step;
            for (; p < count; p++) {
                const int32_t x = acc[p];
                const int32_t v = (ep_smmlar(x, m, rnd) + (x >> 31)) >> r;
                *dst = (int8_t)EP_DW_CLAMP_LOHI(v); /* lo, hi: the full range */
                dst += step;
            }
            return;
        }
#endif
        /* two outputs per step */
        if (r == 0) {
            for (p = 0; p + 1 < count; p += 2) {
                const int32_t v0 = ep_smmlar(acc[p], m, rnd);
                const int32_t v1 = ep_smmlar(acc[p + 1], m, rnd);
                dst[0] = (int8_t)EP_DW_CLAMP_LOHI(v0);
                dst[step] = (int8_t)EP_DW_CLAMP_LOHI(v1);
                dst += 2 * step;
            }
        } else {
            for (p = 0; p + 1 < count; p += 2) {
                const int32_t x0 = acc[p], x1 = acc[p + 1];
                const int32_t v0 = (ep_smmlar(x0, m, rnd) + (x0 >> 31)) >> r;
                const int32_t v1 = (ep_smmlar(x1, m, rnd) + (x1 >> 31)) >> r;
                dst[0] = (int8_t)EP_DW_CLAMP_LOHI(v0);
                dst[step] = (int8_t)EP_DW_CLAMP_LOHI(v1);
                dst += 2 * step;
            }
        }
        if (p < count) {
            const int32_t x = acc[p];
            const int32_t v =
                r == 0 ? ep_smmlar(x, m, rnd) : (ep_smmlar(x, m, rnd) + (x >> 31)) >> r;
            *dst = (int8_t)EP_DW_CLAMP_LOHI(v);
        }
        return;
    }
    for (p = 0; p < count; p++) {
        dst[p * step] = ep_out_value(o, q, acc[p]);
    }
}

#if EP_M4_ASM
/* Per-channel block of the M4 3x3 path, prepared once per strip: the kernel's weight
 * words and initial sum (copied behind the accumulators for edgeplus__dw33s1_m4),
 * then {step, m, rnd, r} for edgeplus__dw_rqN_m4 and whether the channel takes it. */
typedef struct {
    int32_t w[6];
    int32_t init;
    int32_t asm_rq;
    int32_t prm[4];
} ep_dw_m4ch;

/* All s channels of one output row of a strip, 3x3 stride 1 on the M4: row ky of
 * channel j at rb[ky] + j * rs[ky]; outputs at dst + j, dst + j + step, ... */
static void ep_dw_row33_m4(const ep_out *o, const ep_rq *rq, const ep_dw_m4ch *blk,
                           const int16_t *const *rb, const int32_t *rs, int32_t s, int32_t tw,
                           int32_t *acc, int8_t *dst, int32_t step, int32_t w_bits)
{
    int32_t *end = acc + ((tw + 3) & ~3);
    const int32_t t4 = tw & ~3;
    const int32_t bits = o->bits;
    const int16_t *rows[3];
    int32_t j;
    rows[0] = rb[0];
    rows[1] = rb[1];
    rows[2] = rb[2];
    for (j = 0; j < s; j++) {
        const ep_dw_m4ch *b = blk + j;
        memcpy(end, b->w, 7 * sizeof(int32_t));
        edgeplus__dw33s1_m4(acc, end, rows);
        rows[0] += rs[0];
        rows[1] += rs[1];
        rows[2] += rs[2];
        if (b->asm_rq && t4 > 0) {
            int32_t p;
            if (bits == 8) {
                edgeplus__dw_rq8_m4(acc, acc + t4, dst + j, b->prm);
            } else if (bits == 4) {
                edgeplus__dw_rq4_m4(acc, acc + t4, dst + j, b->prm);
            } else {
                edgeplus__dw_rq2_m4(acc, acc + t4, dst + j, b->prm);
            }
            for (p = t4; p < tw; p++) {
                const int32_t x = acc[p];
                const int32_t v = (ep_smmlar(x, b->prm[1], b->prm[2]) + (x >> 31)) >> b->prm[3];
                dst[j + p * step] = (int8_t)EP_DW_CLAMP_LOHI_FULL(v, bits);
            }
        } else {
            ep_dw_requant(o, rq + j, acc, tw, dst + j, step, ep_dw_fast(rq + j, w_bits));
        }
    }
}
#endif

/* Bytes 0 and 2 of x as the two halfwords (UXTB16 on the M4). */
#if EP_M4_ASM
#define EP_UXTB16(x) __uxtb16(x)
#else
#define EP_UXTB16(x) ((x)&0x00FF00FFu)
#endif

/* The staged int8 outputs of one tile row of a strip, stage[p * s + j], into the packed
 * output at flat index start + p * oc + j. Whole-byte runs (start and oc multiples of
 * 8 / bits, s a multiple of 32 / bits) take word stores, the rest ep_pack_run. */
EP_NOINLINE static void ep_dw_pack_row(int8_t *buf, int32_t start, int32_t oc,
                                       const int8_t *stage, int32_t s, int32_t tw, int32_t bits)
{
    int32_t p, i;
    if (bits == 4 && (start & 1) == 0 && (oc & 1) == 0 && (s & 7) == 0) {
        uint8_t *d = (uint8_t *)buf + (start >> 1);
        for (p = 0; p < tw; p++) {
            const int8_t *v = stage + p * s;
            for (i = 0; i < s; i += 8) {
                uint32_t t0 = ep_ld32(v + i) & 0x0F0F0F0Fu;
                uint32_t t1 = ep_ld32(v + i + 4) & 0x0F0F0F0Fu;
                t0 = EP_UXTB16(t0 | (t0 >> 4)); /* halfwords: (v0, v1), (v2, v3) */
                t1 = EP_UXTB16(t1 | (t1 >> 4));
                ep_st32(d + i / 2, ep_pkhbt16(t0 | (t0 >> 8), t1 | (t1 >> 8)));
            }
            d += oc >> 1;
        }
        return;
    }
    if (bits == 2 && (start & 3) == 0 && (oc & 3) == 0 && (s & 15) == 0) {
        uint8_t *d = (uint8_t *)buf + (start >> 2);
        for (p = 0; p < tw; p++) {
            const int8_t *v = stage + p * s;
            for (i = 0; i < s; i += 16) {
                uint32_t t0 = ep_ld32(v + i) & 0x03030303u;
                uint32_t t1 = ep_ld32(v + i + 4) & 0x03030303u;
                uint32_t t2 = ep_ld32(v + i + 8) & 0x03030303u;
                uint32_t t3 = ep_ld32(v + i + 12) & 0x03030303u;
                t0 |= t0 >> 6;
                t1 |= t1 >> 6;
                t2 |= t2 >> 6;
                t3 |= t3 >> 6;
                t0 |= t0 >> 12;
                t1 |= t1 >> 12;
                t2 |= t2 >> 12;
                t3 |= t3 >> 12;
                ep_st32(d + i / 4, (t0 & 0xFFu) | ((t1 & 0xFFu) << 8) | ((t2 & 0xFFu) << 16) |
                                       (t3 << 24));
            }
            d += oc >> 2;
        }
        return;
    }
    /* narrow (lean) strips: 4 channels = one halfword (4-bit) or one byte (2-bit) */
    if (bits == 4 && (start & 1) == 0 && (oc & 1) == 0 && (s & 3) == 0) {
        uint8_t *d = (uint8_t *)buf + (start >> 1);
        for (p = 0; p < tw; p++) {
            const int8_t *v = stage + p * s;
            for (i = 0; i < s; i += 4) {
                uint32_t t = ep_ld32(v + i) & 0x0F0F0F0Fu;
                t |= t >> 4; /* bytes 0, 2: (v0, v1), (v2, v3) */
                d[i / 2] = (uint8_t)t;
                d[i / 2 + 1] = (uint8_t)(t >> 16);
            }
            d += oc >> 1;
        }
        return;
    }
    if (bits == 2 && (start & 3) == 0 && (oc & 3) == 0 && (s & 3) == 0) {
        uint8_t *d = (uint8_t *)buf + (start >> 2);
        for (p = 0; p < tw; p++) {
            const int8_t *v = stage + p * s;
            for (i = 0; i < s; i += 4) {
                uint32_t t = ep_ld32(v + i) & 0x03030303u;
                t |= t >> 6;  /* bytes 0, 2: (v0, v1), (v2, v3) */
                t |= t >> 12; /* byte 0: v0 v1 v2 v3 */
                d[i / 4] = (uint8_t)t;
            }
            d += oc >> 2;
        }
        return;
    }
    for (p = 0; p < tw; p++) {
        ep_pack_run(buf, start + p * oc, stage + p * s, s, bits);
    }
}

/* Planar depthwise: channel strips x tiles of output columns x output rows, with a
 * ring of kh unpacked input rows per (strip, tile) so each input row is unpacked once
 * per strip and tile (see the top of this file). Scratch layout after the
 * requantization table: per-strip weights | int32 accumulators of one tile row (whole
 * groups of 4, then 8 words for the 3x3 kernel's weights + initial sum) | int8 output
 * staging (2/4-bit outputs) | kh slot rows | kh slot offsets | a zero row | kh slots of
 * S planar rows of rwp int16. */
void edgeplus__dw_planar(const ep_im2col *g, const ep_out *o, int64_t acc_bound,
                         const edgeplus_window *win, int32_t batches, const int8_t *filter,
                         int32_t w_bits, const ep_dw_geom *d, uint8_t *mem)
{
    const int32_t c = g->in_c, kh = g->kh, kw = g->kw, S = d->strip, rwp = d->rwp;
    const int32_t wrow = d->wrow;
    ep_rq rq[EDGEPLUS_DW_STRIP]; /* the strip's requantization table */
    int16_t *wts = (int16_t *)(void *)mem;
    int32_t *acc = (int32_t *)(void *)(wts + S * kh * wrow);
    int8_t *stage = (int8_t *)(acc + ((d->tile_w + 3) & ~3) + 8);
    int32_t *slot_row = (int32_t *)(void *)(stage + d->stage);
    int32_t *row_of = slot_row + kh; /* per ky: slot index, or -1 for a padding row */
    int16_t *zero = (int16_t *)(void *)(row_of + kh);
    int16_t *slots = zero + rwp;
    const int special = EP_USE_WORDS && kw == 3 && g->dw == 1 && (g->sw == 1 || g->sw == 2);
    const int rolling = ep_gcd(g->dh, kh) == 1;
    const int32_t ntiles = (win->w + d->tile_w - 1) / d->tile_w;
    const int16_t *rows_small[8];
#if EP_M4_ASM
    /* the M4 3x3 stride-1 path: its per-channel blocks of the strip live on the stack
     * (EDGEPLUS_DW_STRIP x 48 bytes) */
    const int m4 = special && kh == 3 && g->sw == 1;
    ep_dw_m4ch blk[EDGEPLUS_DW_STRIP];
    int32_t rs[3];
    const int16_t *rb[3];
    const int full = o->act_min == ep_qmin(o->bits) && o->act_max == ep_qmax(o->bits);
#endif
    int32_t c0, n, t, oy, ky, kx, j, p;
    memset(zero, 0, (size_t)rwp * sizeof(int16_t));
    for (c0 = 0; c0 < c; c0 += S) {
        const int32_t s = c - c0 < S ? c - c0 : S;
        {
            edgeplus_quant_params q;
            q.multiplier = o->mult + c0;
            q.shift = o->shift + c0;
            edgeplus__rq_prepare(rq, &q, o->bias != NULL ? o->bias + c0 : NULL, s, acc_bound,
                                 o->frac);
        }
        /* weights of the strip: channel j, row ky at wts + (j * kh + ky) * wrow; the
         * 3-wide DSP layout is (w0, w1, w1, w2), else w0 .. w(kw-1) */
        for (j = 0; j < s; j++) {
            /* fast channels: weights << lshift (see ep_dw_fast) */
            const ep_rq *q = rq + j;
            const int32_t sh = ep_dw_fast(q, w_bits) ? q->lshift : 0;
            for (ky = 0; ky < kh; ky++) {
                int16_t *wk = wts + (j * kh + ky) * wrow;
                const int32_t f0 = (ky * kw) * c + c0 + j;
                if (special) {
                    wk[0] = (int16_t)(ep_load(filter, f0, w_bits) * (1 << sh));
                    wk[1] = (int16_t)(ep_load(filter, f0 + c, w_bits) * (1 << sh));
                    wk[2] = wk[1];
                    wk[3] = (int16_t)(ep_load(filter, f0 + 2 * c, w_bits) * (1 << sh));
                } else {
                    for (kx = 0; kx < kw; kx++) {
                        wk[kx] = (int16_t)(ep_load(filter, f0 + kx * c, w_bits) * (1 << sh));
                    }
                }
            }
        }
#if EP_M4_ASM
        if (m4) {
            for (j = 0; j < s; j++) {
                const ep_rq *q = rq + j;
                const int fast = ep_dw_fast(q, w_bits);
                memcpy(blk[j].w, wts + j * 3 * wrow, 6 * sizeof(int32_t));
                blk[j].init = fast ? q->bias : 0;
                blk[j].asm_rq = fast && full && q->rshift > 0;
                blk[j].prm[0] = o->bits == 8 ? o->oc : s;
                blk[j].prm[1] = q->mult;
                blk[j].prm[2] =
                    (int32_t)((uint32_t)q->round + ((uint32_t)o->zp << q->rshift));
                blk[j].prm[3] = q->rshift;
            }
        }
#endif
        for (n = 0; n < batches; n++) {
            for (t = 0; t < ntiles; t++) {
                /* balanced tiles: tile t covers window columns [x0, x1) */
                const int32_t x0 = win->x + (int32_t)((int64_t)win->w * t / ntiles);
                const int32_t x1 = win->x + (int32_t)((int64_t)win->w * (t + 1) / ntiles);
                const int32_t tw = x1 - x0;
                /* the true value is in int32 (>= -pad, < in_w), not x0 * stride */
                const int32_t ixs = (int32_t)((int64_t)x0 * g->sw - g->pw);
                const int32_t rw = (tw - 1) * g->sw + (kw - 1) * g->dw + 1;
                for (ky = 0; ky < kh; ky++) {
                    slot_row[ky] = -1;
                }
                /* padding columns and slack are the same for every row of the tile:
                 * zero them once, ep_dw_fill_row writes only the input columns */
                memset(slots, 0, (size_t)(kh * S * rwp) * sizeof(int16_t));
                for (oy = win->y; oy < win->y + win->h; oy++) {
                    /* int64: the dilation is not bounded by the planar layout */
                    const int64_t iy0 = (int64_t)oy * g->sh - g->ph;
                    for (ky = 0; ky < kh; ky++) {
                        const int64_t iy64 = iy0 + (int64_t)ky * g->dh;
                        int32_t sl, iy;
                        if (iy64 < 0 || iy64 >= g->in_h) {
                            row_of[ky] = -1;
                            continue;
                        }
                        iy = (int32_t)iy64;
                        sl = rolling ? iy % kh : ky;
                        if (slot_row[sl] != iy) {
                            ep_dw_fill_row(g, n, iy, ixs, rw, c0, s, slots + sl * S * rwp, rwp);
                            slot_row[sl] = iy;
                        }
                        row_of[ky] = sl;
                    }
#if EP_M4_ASM
                    if (m4) {
                        for (ky = 0; ky < 3; ky++) {
                            rb[ky] = row_of[ky] < 0 ? zero : slots + row_of[ky] * S * rwp;
                            rs[ky] = row_of[ky] < 0 ? 0 : rwp;
                        }
                        ep_dw_row33_m4(o, rq, blk, rb, rs, s, tw, acc,
                                       o->bits == 8 ? o->output + ep_out_index(o, n, oy, x0) + c0
                                                    : stage,
                                       o->bits == 8 ? o->oc : s, w_bits);
                        j = s; /* done */
                    } else {
                        j = 0;
                    }
#else
                    j = 0;
#endif
                    for (; j < s; j++) {
                        const int16_t *wj = wts + j * kh * wrow;
                        const ep_rq *q = rq + j;
                        /* fast channels start from the shifted bias (see ep_dw_fast) */
                        const int fast = ep_dw_fast(q, w_bits);
                        const int32_t init = fast ? q->bias : 0;
                        int8_t *dst;
                        int32_t step;
#define EP_DW_ROW(k) \
    (row_of[k] < 0 ? zero : slots + (row_of[k] * S + j) * rwp)
#if EP_USE_WORDS
#if !EP_M4_ASM
                        if (special && kh == 3 && g->sw == 1) {
                            ep_dw_mac33_s1(EP_DW_ROW(0), EP_DW_ROW(1), EP_DW_ROW(2), wj, tw, init,
                                           acc);
                        } else
#endif
                        if (special) {
                            for (ky = 0; ky < kh; ky++) {
                                const int16_t *wk = wj + ky * wrow;
                                ep_dw_mac3_row(EP_DW_ROW(ky), ep_ld32(wk), ep_ld32(wk + 2), g->sw,
                                               tw, acc, ky == 0, init);
                            }
                        } else
#endif
                        if (kh <= 8) {
                            for (ky = 0; ky < kh; ky++) {
                                rows_small[ky] = EP_DW_ROW(ky);
                            }
                            ep_dw_mac_generic(rows_small, wj, kh, kw, wrow, g->sw, g->dw, tw,
                                              init, acc);
                        } else {
                            /* tall filters: one kernel row at a time */
                            for (p = 0; p < tw; p++) {
                                acc[p] = init;
                            }
                            for (ky = 0; ky < kh; ky++) {
                                const int16_t *r = EP_DW_ROW(ky);
                                const int16_t *wk = wj + ky * wrow;
                                for (p = 0; p < tw; p++) {
                                    int32_t sacc = acc[p];
                                    for (kx = 0; kx < kw; kx++) {
                                        sacc += (int32_t)r[p * g->sw + kx * g->dw] * wk[kx];
                                    }
                                    acc[p] = sacc;
                                }
                            }
                        }
#undef EP_DW_ROW
                        if (o->bits == 8) {
                            dst = o->output + ep_out_index(o, n, oy, x0) + c0 + j;
                            step = o->oc;
                        } else {
                            dst = stage + j;
                            step = s;
                        }
                        ep_dw_requant(o, q, acc, tw, dst, step, fast);
                    }
                    if (o->bits != 8) {
                        ep_dw_pack_row(o->output, ep_out_index(o, n, oy, x0) + c0, o->oc,
                                       stage, s, tw, o->bits);
                    }
                }
            }
        }
    }
}

/* ------------------------------------------------------------------ per-pixel fallback */

/* Geometries whose planar scratch would exceed EDGEPLUS_DW_PLANAR_MAX (huge dilations):
 * one im2col column per output pixel ([ky][kx][c], the filter unpacked once,
 * SMLABB/SMLATT on channel pairs). */
static void ep_depthwise_loop(const ep_im2col *g, const ep_out *o, const ep_rq *rq,
                              const edgeplus_window *win, int32_t batches, const int8_t *filter,
                              int32_t w_bits, int8_t *stage, int16_t *col)
{
    const int32_t c = g->in_c;
    const int32_t kk = g->kh * g->kw;
    int16_t *wbuf = col + g->kpad;
    int32_t n, oy, ox, ch;
    ep_unpack_s16(filter, 0, g->kc, w_bits, 0, wbuf);
    for (n = 0; n < batches; n++) {
        for (oy = win->y; oy < win->y + win->h; oy++) {
            for (ox = win->x; ox < win->x + win->w; ox++) {
                const int32_t base = ep_out_index(o, n, oy, ox);
                int8_t *dst = o->bits == 8 ? o->output + base : stage;
                ep_im2col_pixel(g, n, oy, ox, col);
                ch = 0;
#if EP_USE_WORDS
                if ((c & 1) == 0) {
                    /* channel pairs: col/weights at k*c + ch are 4-byte aligned */
                    for (; ch < c; ch += 2) {
                        int32_t s0 = 0, s1 = 0, k;
                        for (k = 0; k < kk; k++) {
                            const uint32_t x = ep_ld32(col + k * c + ch);
                            const uint32_t y = ep_ld32(wbuf + k * c + ch);
                            s0 = EP_SMLABB(x, y, s0);
                            s1 = EP_SMLATT(x, y, s1);
                        }
                        dst[ch] = ep_out_value(o, rq + ch, s0);
                        dst[ch + 1] = ep_out_value(o, rq + ch + 1, s1);
                    }
                }
#endif
                for (; ch < c; ch++) {
                    int32_t s = 0, k;
                    for (k = 0; k < kk; k++) {
                        s += (int32_t)col[k * c + ch] * wbuf[k * c + ch];
                    }
                    dst[ch] = ep_out_value(o, rq + ch, s);
                }
                if (o->bits != 8) {
                    ep_pack_run(o->output, base, stage, c, o->bits);
                }
            }
        }
    }
}

/* ------------------------------------------------------------------ entry */

edgeplus_status edgeplus__depthwise_core(const ep_conv_args *a)
{
    ep_conv_setup s;
    ep_dw_geom d;
    const edgeplus_status st = edgeplus__conv_setup(a, 1, &s);
    if (st != EDGEPLUS_OK) {
        return st;
    }
    /* the default layout, or the lean one when the scratch is smaller */
    edgeplus__dw_geom(a->params, a->input_dims, a->filter_dims, 0, &d);
    if (s.avail < d.bytes) {
        edgeplus__dw_geom(a->params, a->input_dims, a->filter_dims, 1, &d);
    }
    if (s.avail < d.bytes) {
        return EP_FAIL_SCRATCH("ctx->size", a->ctx->size, a->ctx->size - s.avail + d.bytes);
    }
    if (d.planar) {
        edgeplus__dw_planar(&s.g, &s.o, s.acc_bound, a->window, a->input_dims->n, a->filter,
                            a->params->w_bits, &d, s.mem);
    } else {
        ep_rq *rq = (ep_rq *)(void *)s.mem;
        int8_t *stage = (int8_t *)(rq + s.o.oc);
        const int32_t stage_bytes = (s.o.oc + 3) & ~3;
        edgeplus__rq_prepare(rq, a->quant, a->bias, s.o.oc, s.acc_bound, s.o.frac);
        ep_depthwise_loop(&s.g, &s.o, rq, a->window, a->input_dims->n, a->filter,
                          a->params->w_bits, stage, (int16_t *)(void *)(stage + stage_bytes));
    }
    return EDGEPLUS_OK;
}
