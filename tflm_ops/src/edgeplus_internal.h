/*
 * edgeplus_internal.h - the conv / depthwise kernels' shared structures and internal
 * functions (not public API). The inline helpers every kernel uses (requantization,
 * packed element access, DSP intrinsics, range checks, error reports) are in
 * edgeplus_support.h.
 */
#ifndef EDGEPLUS_INTERNAL_H
#define EDGEPLUS_INTERNAL_H

#include "edgeplus_support.h"

/* Output pixels whose im2col columns are kept at once (per output row). More
 * pixels amortise the weight unpacking better; fewer need less scratch. */
#ifndef EDGEPLUS_CONV_PIXEL_BLOCK
#define EDGEPLUS_CONV_PIXEL_BLOCK 32
#endif

/* Lean conv scratch (edgeplus_conv2d_get_buffer_size_lean): blocks of output pixels with
 * at least this many MACs per channel (4 to EDGEPLUS_CONV_PIXEL_BLOCK pixels); the
 * requantization constants are prepared per channel and block instead of kept in a
 * table, and an 8-bit output needs no staging. */
#ifndef EDGEPLUS_CONV_LEAN_MACS
#define EDGEPLUS_CONV_LEAN_MACS 512
#endif

/* Depthwise planar layout (see edgeplus_depthwise_core.c): channels per strip, output
 * pixels per tile row, and the largest scratch (bytes) it may ask for; geometries
 * needing more (huge dilations) take the per-pixel im2col fallback. The lean layout
 * (edgeplus_depthwise_conv2d_get_buffer_size_lean) has narrower strips and tiles. */
#ifndef EDGEPLUS_DW_STRIP
#define EDGEPLUS_DW_STRIP 16
#endif
#ifndef EDGEPLUS_DW_TILE_W
#define EDGEPLUS_DW_TILE_W 64
#endif
#ifndef EDGEPLUS_DW_LEAN_STRIP
#define EDGEPLUS_DW_LEAN_STRIP 4
#endif
#if EDGEPLUS_DW_LEAN_STRIP > EDGEPLUS_DW_STRIP
#error "EDGEPLUS_DW_LEAN_STRIP must not exceed EDGEPLUS_DW_STRIP"
#endif
#ifndef EDGEPLUS_DW_PLANAR_MAX
#define EDGEPLUS_DW_PLANAR_MAX 32768
#endif

/* 2-bit x 2-bit DSP path: two products share one 16-bit lane (see conv core);
 * its 32-bit accumulators are decoded and cleared every this many words. */
#define EDGEPLUS_W2A2_FLUSH 160

/* ------------------------------------------------------------------ kernel cores */
/* Shared by edgeplus_conv_core.c and edgeplus_depthwise_core.c (not public API). */

EP_INLINE int32_t ep_kpad(const edgeplus_dims *input_dims, const edgeplus_dims *filter_dims)
{
    const int32_t kc = filter_dims->h * filter_dims->w * input_dims->c;
    return (kc + 15) & ~15; /* multiple of 16: whole 4-word steps in every layout */
}

typedef struct {
    const int8_t *input;
    int32_t in_h, in_w, in_c, in_bits, in_zp;
    int32_t ry, rx, rh, rw; /* input buffer region */
    int32_t kh, kw;
    int32_t sh, sw, ph, pw, dh, dw;
    int32_t kc, kpad;
    int lanes; /* write paired 2-bit lanes directly (needs in_c % 4 == 0) */
} ep_im2col;

typedef struct {
    int8_t *output;
    int32_t oc, bits, zp, act_min, act_max;
    int32_t ry, rx, rh, rw; /* output buffer region */
    const int32_t *mult, *shift, *bias;
    int32_t frac; /* bias_frac_bits: requantization reads acc * 2^frac + bias */
} ep_out;

/* Per-channel requantization of x = acc * 2^frac + bias, prepared once per call. When the
 * bound A (K*C * max|x - zp| * max|w| * 2^frac + |bias|) satisfies A * 2^(left+1) < 2^31,
 * TFLite's
 *   h = SaturatingRoundingDoublingHighMul(x << left, m) = (x*2^left*m + 2^30) >> 31
 * equals SMMULR(x << (left+1), m) = (x*2^(left+1)*m + 2^31) >> 32 (one instruction),
 * and RoundingDivideByPOT(h, r) equals (h + 2^(r-1) - (h < 0)) >> r for r >= 1 (no
 * overflow: |h| < 2^30). Otherwise the channel takes the literal path. */
typedef struct {
    int32_t mult;
    int32_t bias;   /* fast: bias << (left + 1), so x << (left + 1) = (acc << lshift) + bias;
                       slow: bias */
    int32_t round;  /* fast: 2^(rshift-1) or 0; slow: the TFLite shift */
    int16_t lshift; /* fast: frac + left + 1; slow: -1 */
    int16_t rshift; /* fast: the right shift; slow: frac */
} ep_rq;

EP_INLINE int32_t ep_rq_apply(int32_t acc, const ep_rq *q)
{
    if (q->lshift >= 0) {
        const int32_t h =
            ep_smmulr((int32_t)(((uint32_t)acc << q->lshift) + (uint32_t)q->bias), q->mult);
        if (q->rshift == 0) {
            return h;
        }
        return (h + q->round - (int32_t)((uint32_t)h >> 31)) >> q->rshift;
    }
    return ep_requant_nn(ep_wrap_add((int32_t)((uint32_t)acc << q->rshift), q->bias), q->mult,
                         q->round);
}

/* Requantize + offset + clamp, as int8. */
EP_INLINE int8_t ep_out_value(const ep_out *o, const ep_rq *q, int32_t acc)
{
    int32_t v = ep_rq_apply(acc, q) + o->zp;
    v = v < o->act_min ? o->act_min : (v > o->act_max ? o->act_max : v);
    return (int8_t)v;
}

EP_INLINE int32_t ep_out_index(const ep_out *o, int32_t n, int32_t oy, int32_t ox)
{
    return ((n * o->rh + (oy - o->ry)) * o->rw + (ox - o->rx)) * o->oc;
}

/* Planar depthwise (the default layout; see edgeplus_depthwise_core.c). Scratch:
 * per-strip weights | int32 accumulators of one tile row | int8 output staging (2/4-bit
 * outputs) | kh slot bookkeeping | a zero row | kh slots of S planar input rows. Every
 * part is a multiple of 4 bytes. The strip's requantization table is on the stack
 * (EDGEPLUS_DW_STRIP x 16 bytes). */
typedef struct {
    int32_t strip;  /* channels per strip, S */
    int32_t tile_w; /* output pixels per tile row, TW */
    int32_t rw;     /* input columns one tile row reads */
    int32_t rwp;    /* int16 per planar row: rw + >= 2 slack, even */
    int32_t wrow;   /* int16 weights per kernel row and channel (>= 4, even) */
    int32_t stage;  /* bytes of int8 output staging */
    int32_t planar; /* 1: planar layout; 0: the per-pixel im2col fallback */
    int64_t bytes;  /* scratch bytes (requantization table included), no slack */
} ep_dw_geom;

/* The depthwise geometry of a call (args already validated); lean: the lean layout. */
void edgeplus__dw_geom(const edgeplus_conv_params *params, const edgeplus_dims *input_dims,
                       const edgeplus_dims *filter_dims, int lean, ep_dw_geom *d);

/* Planar depthwise over `win` (d->planar set; mem: d->bytes of 4-byte aligned scratch;
 * acc_bound: the accumulator bound of the strips' requantization tables). */
void edgeplus__dw_planar(const ep_im2col *g, const ep_out *o, int64_t acc_bound,
                         const edgeplus_window *win, int32_t batches, const int8_t *filter,
                         int32_t w_bits, const ep_dw_geom *d, uint8_t *mem);

/* A conv / depthwise call's arguments (the public functions' parameters). */
typedef struct {
    const edgeplus_context *ctx;
    const edgeplus_conv_params *params;
    const edgeplus_quant_params *quant;
    const edgeplus_dims *input_dims;
    const edgeplus_window *input_region;
    const int8_t *input;
    const edgeplus_dims *filter_dims;
    const int8_t *filter;
    const int32_t *bias;
    const edgeplus_dims *output_dims;
    const edgeplus_window *output_region;
    int8_t *output;
    const edgeplus_window *window;
} ep_conv_args;

/* What edgeplus__conv_setup prepared: the im2col geometry, the output, the 4-byte aligned
 * start of the scratch, the scratch bytes from there (int64: the cores add out_c * 16 and
 * more to it) and the accumulator bound. */
typedef struct {
    ep_im2col g;
    ep_out o;
    uint8_t *mem;
    int64_t avail;
    int64_t acc_bound;
} ep_conv_setup;

/* 2-bit x 2-bit conv on the DSP path: products paired in 16-bit lanes. */
EP_INLINE int ep_conv_pairs(const edgeplus_conv_params *params)
{
    return EP_USE_WORDS && params->in_bits == 2 && params->w_bits == 2;
}

/* Every check of a conv / depthwise call (records the refusal) and its setup. */
edgeplus_status edgeplus__conv_setup(const ep_conv_args *a, int depthwise, ep_conv_setup *s);

/* The per-channel requantization table (ep_rq). */
void edgeplus__rq_prepare(ep_rq *rq, const edgeplus_quant_params *quant, const int32_t *bias,
                          int32_t channels, int64_t acc_bound, int32_t frac);

/* The conv core (edgeplus_conv_core.c) and the depthwise core (edgeplus_depthwise_core.c). */
edgeplus_status edgeplus__conv_core(const ep_conv_args *a);
edgeplus_status edgeplus__depthwise_core(const ep_conv_args *a);

/* Validation of params + dims shared with the _get_buffer_size companions. */
edgeplus_status edgeplus__check_conv_args(const edgeplus_conv_params *params,
                                          const edgeplus_dims *input_dims,
                                          const edgeplus_dims *filter_dims,
                                          const edgeplus_dims *output_dims, int depthwise);

/* Bytes of the optional conv weight cache (all rows unpacked). The host build has no
 * paired lanes, so it may ask a few bytes too many for 2-bit x 2-bit: harmless. */
int32_t edgeplus__conv_wcache_bytes(const edgeplus_conv_params *params,
                                    const edgeplus_dims *input_dims,
                                    const edgeplus_dims *filter_dims);

/* Conv scratch bytes for pixel blocks of `pixels` (args already validated): the default
 * layout (with the requantization table), or lean (without it, no staging for 8-bit
 * outputs); EDGEPLUS_ERR_DIMS when they exceed int32. */
int32_t edgeplus__conv_scratch_bytes(const edgeplus_conv_params *params,
                                     const edgeplus_dims *input_dims,
                                     const edgeplus_dims *filter_dims, int32_t pixels,
                                     int lean);

/* Scratch bytes of the depthwise kernels' default or lean layout, or the status of the
 * arguments' first problem (EDGEPLUS_ERR_DIMS also when the bytes exceed int32): the two
 * _get_buffer_size functions. */
int32_t edgeplus__dw_buffer_size(const edgeplus_conv_params *params,
                                 const edgeplus_dims *input_dims,
                                 const edgeplus_dims *filter_dims,
                                 const edgeplus_dims *output_dims, int lean);

#endif /* EDGEPLUS_INTERNAL_H */
