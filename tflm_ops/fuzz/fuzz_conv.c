/*
 * Fuzz target: the conv / depthwise argument checks and kernels (edgeplus_conv2d[_window],
 * edgeplus_depthwise_conv2d[_window], their _get_buffer_size and _get_buffer_size_lean,
 * and edgeplus_conv2d_get_buffer_size_fast), on arbitrary geometry.
 *
 * Input (ep_rd_int values, fuzz_common.h): mode (bit 0 depthwise, bit 1 window variant,
 * bit 2 no bias, bit 3 an input_region, bit 4 an output_region, bits 5..9 bias_frac_bits), the
 * other 13 edgeplus_conv_params fields, input / filter / output dims (n, h, w, c), input_region, output_region, window
 * (y, x, h, w), the requantization shift, a seed for the data.
 *
 * On every input: the _get_buffer_size functions run, and the kernel runs with a scratch of
 * 0 bytes (it must refuse, touching nothing: every data buffer is a 0-byte block). When
 * the scratch asked is >= 0 and the buffers and work are under the caps: the kernel runs at
 * exactly that scratch (exact malloc blocks for every buffer) with the output prefilled with
 * canary A. If it succeeds it runs again at exactly that scratch, misaligned, canary B,
 * and (conv) at the _fast scratch, then at the lean scratch, at the minimum (the lean
 * scratch of a 1x1 output) and at a size between the minimum and the default: every
 * element of the window must be written and equal in all runs, every other element of the
 * output buffer keep its canary. 9 bytes below the minimum the kernel must refuse
 * (EDGEPLUS_ERR_SCRATCH) and leave the output all canary. If the first run refuses, the
 * output must still be all canary. The lean sizes must agree with the default one (the
 * same status for bad arguments, else 0 <= minimum <= lean <= default).
 */
#include "fuzz_common.h"

typedef struct {
    int depthwise, window_variant, no_bias, has_ireg, has_oreg;
    edgeplus_conv_params p;
    edgeplus_dims di, df, dout;
    edgeplus_window ireg, oreg, win;
    int32_t shift;
    uint32_t seed;
} ep_conv_case;

static void ep_rd_case(ep_reader *r, ep_conv_case *c)
{
    int32_t *const fields[] = {
        &c->p.stride_h, &c->p.stride_w, &c->p.pad_h, &c->p.pad_w, &c->p.dilation_h,
        &c->p.dilation_w, &c->p.input_zero_point, &c->p.output_zero_point, &c->p.act_min,
        &c->p.act_max, &c->p.in_bits, &c->p.w_bits, &c->p.out_bits,
        &c->di.n, &c->di.h, &c->di.w, &c->di.c, &c->df.n, &c->df.h, &c->df.w, &c->df.c,
        &c->dout.n, &c->dout.h, &c->dout.w, &c->dout.c,
        &c->ireg.y, &c->ireg.x, &c->ireg.h, &c->ireg.w, &c->oreg.y, &c->oreg.x, &c->oreg.h,
        &c->oreg.w, &c->win.y, &c->win.x, &c->win.h, &c->win.w, &c->shift};
    const int32_t mode = ep_rd_int(r);
    size_t i;
    c->depthwise = mode & 1;
    c->window_variant = (mode >> 1) & 1;
    c->no_bias = (mode >> 2) & 1;
    c->has_ireg = (mode >> 3) & 1;
    c->has_oreg = (mode >> 4) & 1;
    c->p.bias_frac_bits = (mode >> 5) & 31; /* 17..31: refused */
    for (i = 0; i < sizeof(fields) / sizeof(fields[0]); ++i) {
        *fields[i] = ep_rd_int(r);
    }
    c->seed = (uint32_t)ep_rd_int(r);
}

static int64_t ep_pos(int32_t v) { return v > 0 ? v : 0; }

/* Packed bytes of a buffer of `elems` elements at `bits` (0 for bad bits: the kernel must
 * refuse those before reading). */
static int64_t ep_bytes(int64_t elems, int32_t bits)
{
    return bits == 2 || bits == 4 || bits == 8 ? (ep_mul(elems, bits) + 7) / 8 : 0;
}

static edgeplus_status ep_call(const ep_conv_case *c, const edgeplus_context *ctx,
                               const edgeplus_quant_params *q, const int8_t *in,
                               const int8_t *f, const int32_t *bias, int8_t *out)
{
    const edgeplus_window *ir = c->has_ireg ? &c->ireg : NULL;
    const edgeplus_window *orr = c->has_oreg ? &c->oreg : NULL;
    if (c->window_variant) {
        return (c->depthwise ? edgeplus_depthwise_conv2d_window : edgeplus_conv2d_window)(
            ctx, &c->p, q, &c->di, ir, in, &c->df, f, bias, &c->dout, orr, out, &c->win);
    }
    return (c->depthwise ? edgeplus_depthwise_conv2d : edgeplus_conv2d)(
        ctx, &c->p, q, &c->di, in, &c->df, f, bias, &c->dout, out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ep_reader r = {data, size, 0};
    ep_conv_case c;
    int32_t need, fast = -1, lean, least, out_c;
    edgeplus_status rc;
    edgeplus_context none;
    edgeplus_quant_params q;
    int64_t in_h, in_w, out_h, out_w, oy, ox, wy, wx, wh, ww;
    int64_t in_bytes, f_bytes, out_elems, out_bytes, pixels, work;
    int8_t *in, *f, *o1, *o2 = NULL, *o3 = NULL, *o4 = NULL, *o5 = NULL, *o6 = NULL;
    int32_t *bias, *mult, *shift;
    int64_t i;
    int k;

    ep_rd_case(&r, &c);
    if (c.depthwise) {
        need = edgeplus_depthwise_conv2d_get_buffer_size(&c.p, &c.di, &c.df, &c.dout);
        FUZZ_RECORDED(need);
    } else {
        need = edgeplus_conv2d_get_buffer_size(&c.p, &c.di, &c.df, &c.dout);
        FUZZ_RECORDED(need);
        fast = edgeplus_conv2d_get_buffer_size_fast(&c.p, &c.di, &c.df, &c.dout);
        FUZZ_RECORDED(fast);
        FUZZ_CHECK((need < 0) == (fast < 0) && (need < 0 ? fast == need : fast >= need),
                   "_get_buffer_size %d but _fast %d", need, fast);
    }
    FUZZ_CHECK(need >= 0 || (need >= EDGEPLUS_ERR_ARG && need <= EDGEPLUS_ERR_NULL),
               "_get_buffer_size returned %d, neither a size nor a status", need);
    {
        edgeplus_dims one = c.dout;
        one.h = 1;
        one.w = 1;
        lean = (c.depthwise ? edgeplus_depthwise_conv2d_get_buffer_size_lean
                            : edgeplus_conv2d_get_buffer_size_lean)(&c.p, &c.di, &c.df, &c.dout);
        FUZZ_RECORDED(lean);
        least = (c.depthwise ? edgeplus_depthwise_conv2d_get_buffer_size_lean
                             : edgeplus_conv2d_get_buffer_size_lean)(&c.p, &c.di, &c.df, &one);
        FUZZ_RECORDED(least);
        FUZZ_CHECK(need < 0 ? lean == need : 0 <= lean && lean <= need,
                   "_get_buffer_size %d but _lean %d", need, lean);
        FUZZ_CHECK(need < 0 || (0 <= least && least <= lean), "_lean %d but for 1x1 %d", lean,
                   least);
    }

    /* data buffer sizes (64-bit; regions of the buffers when given) */
    out_c = c.dout.c;
    in_h = c.has_ireg && c.window_variant ? ep_pos(c.ireg.h) : ep_pos(c.di.h);
    in_w = c.has_ireg && c.window_variant ? ep_pos(c.ireg.w) : ep_pos(c.di.w);
    out_h = c.has_oreg && c.window_variant ? ep_pos(c.oreg.h) : ep_pos(c.dout.h);
    out_w = c.has_oreg && c.window_variant ? ep_pos(c.oreg.w) : ep_pos(c.dout.w);
    oy = c.has_oreg && c.window_variant ? c.oreg.y : 0;
    ox = c.has_oreg && c.window_variant ? c.oreg.x : 0;
    wy = c.window_variant ? c.win.y : 0;
    wx = c.window_variant ? c.win.x : 0;
    wh = c.window_variant ? ep_pos(c.win.h) : ep_pos(c.dout.h);
    ww = c.window_variant ? ep_pos(c.win.w) : ep_pos(c.dout.w);
    in_bytes = ep_bytes(ep_mul(ep_mul(ep_pos(c.di.n), in_h), ep_mul(in_w, ep_pos(c.di.c))),
                        c.p.in_bits);
    f_bytes = ep_bytes(ep_mul(ep_mul(ep_pos(c.df.n), ep_pos(c.df.h)),
                              ep_mul(ep_pos(c.df.w), ep_pos(c.df.c))),
                       c.p.w_bits);
    out_elems = ep_mul(ep_mul(ep_pos(c.dout.n), out_h), ep_mul(out_w, ep_pos(out_c)));
    out_bytes = ep_bytes(out_elems, c.p.out_bits);
    pixels = ep_mul(ep_pos(c.dout.n), ep_mul(wh, ww));
    work = ep_mul(ep_mul(pixels, ep_pos(out_c)),
                  ep_mul(ep_mul(ep_pos(c.df.h), ep_pos(c.df.w)),
                         c.depthwise ? 1 : ep_pos(c.df.c)));

    if (need < 0 || out_c > FUZZ_MAX_BYTES / 4) {
        return 0;
    }
    bias = (int32_t *)ep_xmalloc((size_t)ep_pos(out_c) * 4);
    mult = (int32_t *)ep_xmalloc((size_t)ep_pos(out_c) * 4);
    shift = (int32_t *)ep_xmalloc((size_t)ep_pos(out_c) * 4);
    ep_fill(bias, (size_t)ep_pos(out_c) * 4, c.seed + 2u);
    ep_fill(mult, (size_t)ep_pos(out_c) * 4, c.seed + 3u);
    for (i = 0; i < ep_pos(out_c); ++i) {
        bias[i] >>= 12; /* |bias| < 2^20 */
        mult[i] = (int32_t)(((uint32_t)mult[i] >> 2) | (1u << 30)); /* [2^30, 2^31) */
        shift[i] = (int32_t)((uint32_t)c.shift + (uint32_t)(i % 3)); /* may be out of range */
    }
    q.multiplier = mult;
    q.shift = shift;
    /* the kernel with no scratch: refused, no data touched (0-byte data blocks) */
    none.buf = NULL;
    none.size = 0;
    {
        int8_t *z = (int8_t *)ep_xmalloc(0);
        rc = ep_call(&c, &none, &q, z, z, c.no_bias ? NULL : bias, z);
        FUZZ_RECORDED(rc);
        FUZZ_CHECK(rc != EDGEPLUS_OK, "no scratch, but the kernel returned EDGEPLUS_OK");
        free(z);
    }
    if (in_bytes > FUZZ_MAX_BYTES || f_bytes > FUZZ_MAX_BYTES || out_bytes > FUZZ_MAX_BYTES ||
        need > 4 * FUZZ_MAX_BYTES || fast > 4 * FUZZ_MAX_BYTES || pixels > FUZZ_MAX_WORK ||
        work > FUZZ_MAX_WORK) {
        goto free_quant;
    }
    in = (int8_t *)ep_xmalloc((size_t)in_bytes);
    f = (int8_t *)ep_xmalloc((size_t)f_bytes);
    ep_fill(in, (size_t)in_bytes, c.seed);
    ep_fill(f, (size_t)f_bytes, c.seed + 1u);
    q.multiplier = mult;
    q.shift = shift;
    o1 = (int8_t *)ep_xmalloc((size_t)out_bytes);
    {
        ep_scratch s;
        ep_scratch_alloc(&s, need, 0);
        memset(o1, FUZZ_CANARY_A, (size_t)out_bytes);
        rc = ep_call(&c, &s.ctx, &q, in, f, c.no_bias ? NULL : bias, o1);
        FUZZ_RECORDED(rc);
        ep_scratch_free(&s);
    }
    if (rc != EDGEPLUS_OK) {
        for (i = 0; i < out_bytes; ++i) {
            FUZZ_CHECK((uint8_t)o1[i] == FUZZ_CANARY_A, "refused (%s) but wrote output byte %lld",
                       edgeplus_status_str(rc), (long long)i);
        }
        goto done;
    }
    o2 = (int8_t *)ep_xmalloc((size_t)out_bytes);
    o3 = (int8_t *)ep_xmalloc((size_t)out_bytes);
    o4 = (int8_t *)ep_xmalloc((size_t)out_bytes);
    o5 = (int8_t *)ep_xmalloc((size_t)out_bytes);
    o6 = (int8_t *)ep_xmalloc((size_t)out_bytes);
    for (k = 0; k < 5; ++k) {
        /* misaligned default, larger (the _fast), lean, the minimum, between the two */
        static const char *const what[] = {"misaligned", "larger", "lean", "minimum",
                                           "reduced"};
        int8_t *const outs[] = {o2, o3, o4, o5, o6};
        const int32_t sizes[] = {need, fast >= 0 ? fast : need + 4096, lean, least,
                                 least + (int32_t)(c.seed % (uint32_t)(need - least + 1))};
        ep_scratch s;
        const int misalign = k == 0 ? 1 + (int)(c.seed % 3u) : 0;
        ep_scratch_alloc(&s, sizes[k], misalign);
        memset(outs[k], k == 0 ? FUZZ_CANARY_B : FUZZ_CANARY_A, (size_t)out_bytes);
        rc = ep_call(&c, &s.ctx, &q, in, f, c.no_bias ? NULL : bias, outs[k]);
        FUZZ_CHECK(rc == EDGEPLUS_OK, "%s scratch %d: %s after EDGEPLUS_OK at the default",
                   what[k], sizes[k], edgeplus_status_str(rc));
        ep_scratch_free(&s);
    }
    if (least >= 9) {
        /* below the minimum (less its 8 bytes of alignment slack): refused, untouched */
        ep_scratch s;
        int8_t *o = (int8_t *)ep_xmalloc((size_t)out_bytes);
        ep_scratch_alloc(&s, least - 9, 0);
        memset(o, FUZZ_CANARY_A, (size_t)out_bytes);
        rc = ep_call(&c, &s.ctx, &q, in, f, c.no_bias ? NULL : bias, o);
        FUZZ_CHECK(rc == EDGEPLUS_ERR_SCRATCH, "scratch %d below the minimum %d: %s",
                   least - 9, least, edgeplus_status_str(rc));
        for (i = 0; i < out_bytes; ++i) {
            FUZZ_CHECK((uint8_t)o[i] == FUZZ_CANARY_A, "refused but wrote output byte %lld",
                       (long long)i);
        }
        ep_scratch_free(&s);
        free(o);
    }
    /* element by element: inside the window written and equal, outside kept */
    for (i = 0; i < out_elems; ++i) {
        const int64_t pix = i / out_c, x = ox + pix % out_w, y = oy + (pix / out_w) % out_h;
        const int inside = y >= wy && y < wy + wh && x >= wx && x < wx + ww;
        const int32_t b = c.p.out_bits;
        const int32_t a = ep_field(o1, i, b), e = ep_field(o2, i, b), g = ep_field(o3, i, b);
        const int32_t l = ep_field(o4, i, b), m = ep_field(o5, i, b), h = ep_field(o6, i, b);
        const int32_t ca = ep_field((const int8_t *)"\x5A", i % (8 / b), b);
        if (inside) {
            FUZZ_CHECK(a == e && a == g && a == l && a == m && a == h,
                       "window element %lld not written or scratch-dependent "
                       "(%d, %d, %d, lean %d, %d, %d)", (long long)i, a, e, g, l, m, h);
        } else {
            FUZZ_CHECK(a == ca && e == ep_field((const int8_t *)"\xA5", i % (8 / b), b) &&
                           g == ca && l == ca && m == ca && h == ca,
                       "element %lld outside the window was changed", (long long)i);
        }
    }
done:
    free(o1);
    if (o2 != NULL) {
        free(o2);
        free(o3);
        free(o4);
        free(o5);
        free(o6);
    }
    free(in);
    free(f);
free_quant:
    free(bias);
    free(mult);
    free(shift);
    return 0;
}
