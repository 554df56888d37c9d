/* edgeplus_patch_stage: run a stage program patch by patch (QuantMCU). */
#include "edgeplus_stage_internal.h"

typedef struct {
    int8_t *buf;      /* the tensor's buffer (region buffer, or the whole input/output) */
    int32_t y, x, w;  /* the buffer's region origin and width (whole tensor: 0, 0, W) */
    int32_t c, bits, zp;
} ep_view;

static void ep_view_of(const int32_t *p, const ep_stage *st, const int32_t *rec, int32_t i,
                       int32_t v, int8_t *arena, const int8_t *input, int8_t *output,
                       ep_view *out)
{
    const int32_t *t = ep_st_tensor(p, st, i);
    out->c = t[EP_T_C];
    out->bits = t[EP_T_BITS0 + v];
    out->zp = t[EP_T_ZP0 + v];
    if (i == 0 || i == st->T - 1) {
        out->buf = i == 0 ? (int8_t *)(uintptr_t)input : output;
        out->y = 0;
        out->x = 0;
        out->w = t[EP_T_W];
    } else {
        const int32_t *r = rec + 1 + 4 * i;
        out->buf = arena + t[EP_T_OFF];
        out->y = r[0];
        out->x = r[1];
        out->w = r[3];
    }
}

EP_INLINE int32_t ep_index(const ep_view *vw, int32_t y, int32_t x, int32_t ch)
{
    return ((y - vw->y) * vw->w + (x - vw->x)) * vw->c + ch;
}

static void ep_run_pad(const int32_t *s, const edgeplus_window *R, const ep_view *in,
                       const ep_view *out, int32_t in_h, int32_t in_w)
{
    int32_t y, x, ch;
    for (y = R->y; y < R->y + R->h; ++y) {
        const int32_t iy = y - s[EP_S_PH];
        for (x = R->x; x < R->x + R->w; ++x) {
            const int32_t ix = x - s[EP_S_PW];
            const int inside = iy >= 0 && iy < in_h && ix >= 0 && ix < in_w;
            for (ch = 0; ch < out->c; ++ch) {
                const int32_t val = inside ? ep_load(in->buf, ep_index(in, iy, ix, ch), in->bits)
                                           : out->zp;
                ep_store(out->buf, ep_index(out, y, x, ch), out->bits, val);
            }
        }
    }
}

static void ep_run_add(const int32_t *q, int32_t amin, int32_t amax, const edgeplus_window *R,
                       const ep_view *a, const ep_view *b, const ep_view *out)
{
    const int32_t left = q[0];
    int32_t y, x, ch;
    for (y = R->y; y < R->y + R->h; ++y) {
        for (x = R->x; x < R->x + R->w; ++x) {
            for (ch = 0; ch < out->c; ++ch) {
                const int32_t va = ep_load(a->buf, ep_index(a, y, x, ch), a->bits) - a->zp;
                const int32_t vb = ep_load(b->buf, ep_index(b, y, x, ch), b->bits) - b->zp;
                const int32_t sa = edgeplus_requantize((int32_t)((uint32_t)va << left), q[1], q[2]);
                const int32_t sb = edgeplus_requantize((int32_t)((uint32_t)vb << left), q[3], q[4]);
                int32_t r = edgeplus_requantize((int32_t)((uint32_t)sa + (uint32_t)sb), q[5], q[6]);
                r += out->zp;
                r = r < amin ? amin : (r > amax ? amax : r);
                ep_store(out->buf, ep_index(out, y, x, ch), out->bits, r);
            }
        }
    }
}

edgeplus_status edgeplus_patch_stage(const edgeplus_context *ctx, const int32_t *program,
                                     int32_t words, const int8_t *const *filters,
                                     const int8_t *input, int8_t *output)
{
    ep_stage st;
    int32_t q, k, need;
    int8_t *arena;
    edgeplus_context kctx;
    edgeplus_status rc;
    EP_CHECK_NULL(ctx, "ctx");
    EP_CHECK_NULL(program, "program");
    EP_CHECK_NULL(filters, "filters");
    EP_CHECK_NULL(input, "input");
    EP_CHECK_NULL(output, "output");
    need = edgeplus_patch_stage_get_buffer_size(program, words); /* checks the program */
    if (need < 0) {
        return (edgeplus_status)need;
    }
    edgeplus__stage_layout(program, words, &st);
    for (k = 0; k < st.S; ++k) {
        const int32_t *s = ep_st_step(program, &st, k);
        if ((s[EP_S_KIND] == EP_ST_KIND_CONV || s[EP_S_KIND] == EP_ST_KIND_DW) &&
            filters[s[EP_S_SLOT]] == NULL) {
            return EP_FAIL(EDGEPLUS_ERR_NULL, "filters[]", s[EP_S_SLOT], 0, "must not be NULL");
        }
    }
    if (ctx->buf == NULL) {
        return EP_FAIL(EDGEPLUS_ERR_SCRATCH, "ctx->buf", -1, 0, "must not be NULL");
    }
    if (ctx->size < need) {
        return EP_FAIL_SCRATCH("ctx->size", ctx->size, need);
    }
    arena = (int8_t *)(((uintptr_t)ctx->buf + 3u) & ~(uintptr_t)3u);
    kctx.buf = arena + ((st.arena + 3) & ~3);
    kctx.size = (int32_t)((int8_t *)ctx->buf + ctx->size - (int8_t *)kctx.buf);
    for (q = 0; q < st.P; ++q) {
        const int32_t *rec = ep_st_patch(program, &st, q);
        const int32_t v = rec[0];
        for (k = 0; k < st.S; ++k) {
            const int32_t *s = ep_st_step(program, &st, k);
            const int32_t *r = rec + 1 + 4 * (k + 1);
            const int32_t kind = s[EP_S_KIND];
            const int last = k + 1 == st.T - 1;
            const edgeplus_window R = ep_st_window(r);
            ep_view in, out;
            if (r[2] == 0) {
                continue;
            }
            ep_view_of(program, &st, rec, s[EP_S_IN0], v, arena, input, output, &in);
            ep_view_of(program, &st, rec, k + 1, v, arena, input, output, &out);
            if (kind == EP_ST_KIND_CONV || kind == EP_ST_KIND_DW) {
                const int32_t *qb = program + s[EP_S_Q0 + v];
                const int32_t c = out.c;
                edgeplus_conv_params cp;
                edgeplus_quant_params qp;
                edgeplus_dims di, df, dout;
                const edgeplus_window in_region = ep_st_window(rec + 1 + 4 * s[EP_S_IN0]);
                edgeplus__stage_conv_params(program, &st, k, v, &cp);
                edgeplus__stage_dims(program, &st, s[EP_S_IN0], &di);
                edgeplus__stage_filter_dims(program, &st, k, &df);
                edgeplus__stage_dims(program, &st, k + 1, &dout);
                qp.multiplier = qb;
                qp.shift = qb + c;
                rc = (kind == EP_ST_KIND_CONV ? edgeplus_conv2d_window
                                              : edgeplus_depthwise_conv2d_window)(
                    &kctx, &cp, &qp, &di, s[EP_S_IN0] == 0 ? NULL : &in_region, in.buf, &df,
                    filters[s[EP_S_SLOT]], qb + 2 * c, &dout, last ? NULL : &R, out.buf, &R);
                if (rc != EDGEPLUS_OK) {
                    return rc; /* not reached for a checked program */
                }
            } else if (kind == EP_ST_KIND_PAD) {
                const int32_t *t = ep_st_tensor(program, &st, s[EP_S_IN0]);
                ep_run_pad(s, &R, &in, &out, t[EP_T_H], t[EP_T_W]);
            } else {
                ep_view b;
                ep_view_of(program, &st, rec, s[EP_S_IN1], v, arena, input, output, &b);
                ep_run_add(program + s[EP_S_Q0 + v], s[EP_S_AMIN0 + 2 * v],
                           s[EP_S_AMAX0 + 2 * v], &R, &in, &b, &out);
            }
        }
    }
    return EDGEPLUS_OK;
}
