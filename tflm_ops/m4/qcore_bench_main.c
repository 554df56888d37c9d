/*
 * Instruction counts of one on-device QCore calibration (edgeplus_qcore_step +
 * edgeplus_qcore_refresh) against the back-propagation baseline it replaces, on the
 * emulated Cortex-M4F (QEMU mps2-an386, -icount shift=0; see m4_harness.h). Driven by
 * benchmarks/_qcore_m4.py, which writes the case and checks every result against the
 * NumPy reference before it reports a count.
 *
 * The case comes from a generated header, qcore_case.h (found through -I$(CASE_DIR)):
 * the head layers (packed weights, bias, requantization, zero points, clamps, and for
 * the baseline the float input scale and per-channel weight scales), the flip nets
 * (NULL for layers not calibrated), the n samples (head inputs int8 + labels, the QCore
 * first), margin, tries, max_steps, the old-domain guard (the first QC_GUARD samples
 * guarded, QC_GUARD_MIN_CORRECT of them kept right; 0, 0: none), the prior miss counts of
 * the unguarded samples, the refresh size and rng seed, and the baseline's trained
 * layers, steps and learning rate. It defines:
 *
 *   QC_NUM_LAYERS, QC_N, QC_IN, QC_CLASSES, QC_MARGIN, QC_TRIES, QC_MAX_STEPS, QC_GUARD,
 *   QC_GUARD_MIN_CORRECT,
 *   QC_REFRESH_SIZE, QC_RNG_SEED, QC_WEIGHT_BYTES (all layers' packed bytes),
 *   QC_BP_STEPS, QC_BP_LR (a float), QC_BP_NUM_TRAINED, QC_MAX_WIDTH (widest layer input
 *   or output); qc_layers[QC_NUM_LAYERS] (qc_layer_desc, below), qc_nets[QC_NUM_LAYERS],
 *   qc_x[QC_N * QC_IN], qc_y[QC_N], qc_prior[QC_N - QC_GUARD],
 *   qc_bp_trained[QC_BP_NUM_TRAINED].
 *
 * Each measured part runs between two counter reads (the reads' own cost subtracted),
 * on a fresh copy of the case's weights, and prints one line:
 *
 *   QCORE instructions=<n> steps=<n> kept=<n> scratch_bytes=<n> checksum=<fnv1a of all
 *         layers' packed weights after> chosen_checksum=<fnv1a of the chosen indices,
 *         int32 little-endian> counts_checksum=<same for their counts> rng_state=<n>
 *     the whole chunk calibration as BitFlipCalibrator.calibrate does it: up to
 *     QC_MAX_STEPS edgeplus_qcore_step calls on the n samples, stopping after the first
 *     step that is rolled back, then edgeplus_qcore_refresh of QC_REFRESH_SIZE of the
 *     unguarded samples [QC_GUARD, n) from their correctness history (the steps' rows of
 *     n bytes, packed to their unguarded part first). scratch_bytes = the larger of the
 *     step's and the refresh's scratch (one buffer serves both) + the history
 *     ((QC_MAX_STEPS + 1) * n bytes) + the chosen indices and counts (8 * QC_REFRESH_SIZE).
 *   QCORE_TRACE step=<s> kept= level= changed= correct_before= correct_after=
 *         margin_before= margin_after= guard_correct_before= guard_correct_after=
 *                                           (one per step of that run, not timed)
 *   QCORE_STEP instructions=<n> scratch_bytes=<step scratch> kept= level= changed=
 *         correct_before= correct_after= margin_before= margin_after=
 *         guard_correct_before= guard_correct_after= checksum=<weights>
 *     one edgeplus_qcore_step on the case's weights.
 *   BP instructions=<n> scratch_bytes=<n> checksum=<fnv1a of all layers' packed weights>
 *     the baseline, a float32 port of tfmot_edgeplus/calibration/backprop.py::bp_finetune
 *     (what a user would otherwise run on the device; it lives here, not in the
 *     library): the head in float exactly as its integers mean it, full-batch softmax
 *     cross-entropy gradients of the trained layers, Adam (0.9, 0.999, 1e-7, bias
 *     corrected) for QC_BP_STEPS steps, then each trained layer rounded to its grid
 *     (half to even) and saturated to its narrow range. scratch_bytes = its float
 *     buffers (float weights and biases of every layer, activations, Adam moments,
 *     two error buffers) + the int8 result.
 *   BP_STEP instructions=<n>   its first Adam iteration (forward, backward, update).
 *   BP_WEIGHTS layer=<l> hex=<the trained layer's int8 levels after, 2 hex digits each>
 *   QBENCH_DONE failures=<n>
 *
 * The same file builds natively on the host (EDGEPLUS_BENCH_HOST: no counter, counts
 * print as 0): the driver compares its results with the M4's and with Python's.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "bench_common.h"
#include "edgeplus/edgeplus_ops.h"

/* One head layer of the case (what the device stores, plus the baseline's scales). */
typedef struct {
  int32_t out_features, in_features, w_bits;
  const int8_t *weights; /* packed at w_bits, [out][in] */
  int32_t weight_bytes;  /* edgeplus_packed_bytes(out * in, w_bits) */
  const int32_t *bias, *multiplier, *shift;
  int32_t input_zero_point, output_zero_point, act_min, act_max;
  float input_scale;          /* baseline only */
  const float *weight_scale;  /* [out], baseline only */
  int32_t relu;               /* the layer clamps at its zero point (baseline's ReLU) */
} qc_layer_desc;

#include "qcore_case.h"

/* One arena for every buffer; the Nano's 256 KB minus stack, heap and globals. */
#define ARENA_BYTES (200 * 1024)
static uint8_t arena[ARENA_BYTES] __attribute__((aligned(8)));
static int32_t arena_used;

static void *arena_take(int32_t bytes) {
  const int32_t aligned = (bytes + 7) & ~7;
  if (bytes < 0 || arena_used + aligned > ARENA_BYTES) return NULL;
  void *p = arena + arena_used;
  arena_used += aligned;
  return p;
}

/* The case's weights (read-only, in flash) are copied here before each run. */
static int8_t weights_ram[QC_WEIGHT_BYTES];

static void reset_weights(void) {
  int32_t off = 0;
  for (int l = 0; l < QC_NUM_LAYERS; ++l) {
    memcpy(weights_ram + off, qc_layers[l].weights, (size_t)qc_layers[l].weight_bytes);
    off += qc_layers[l].weight_bytes;
  }
}

static uint32_t fnv1a_int32(const int32_t *v, int32_t n) {
  uint32_t h = FNV1A_INIT;
  for (int32_t i = 0; i < n; ++i) {
    const uint32_t u = (uint32_t)v[i];
    const uint8_t b[4] = {(uint8_t)u, (uint8_t)(u >> 8), (uint8_t)(u >> 16), (uint8_t)(u >> 24)};
    h = fnv1a_update(h, b, 4);
  }
  return h;
}

static uint64_t overhead_ticks;

/* Instructions between two counter reads; -1 (after a QBENCH_ERROR line) if they do not
 * fit the 32 bits newlib-nano's printf can print. */
static long instructions_between(uint64_t t0, uint64_t t1, const char *what) {
  const uint64_t ticks = t1 - t0 > overhead_ticks ? t1 - t0 - overhead_ticks : 0;
#ifdef EDGEPLUS_BENCH_HOST
  (void)ticks;
  (void)what;
  return 0;
#else
  const uint64_t instr = ticks * M4_INSTR_PER_TICK;
  if (instr > 0x7FFFFFFFull) {
    printf("QBENCH_ERROR %s: instruction count overflows 31 bits\n", what);
    return -1;
  }
  return (long)instr;
#endif
}

static void make_head(edgeplus_fc_layer *layers, edgeplus_qcore_head *head) {
  int32_t off = 0;
  for (int l = 0; l < QC_NUM_LAYERS; ++l) {
    const qc_layer_desc *d = &qc_layers[l];
    layers[l].out_features = d->out_features;
    layers[l].in_features = d->in_features;
    layers[l].w_bits = d->w_bits;
    layers[l].weights = weights_ram + off;
    layers[l].bias = d->bias;
    layers[l].multiplier = d->multiplier;
    layers[l].shift = d->shift;
    layers[l].input_zero_point = d->input_zero_point;
    layers[l].output_zero_point = d->output_zero_point;
    layers[l].act_min = d->act_min;
    layers[l].act_max = d->act_max;
    off += d->weight_bytes;
  }
  head->num_layers = QC_NUM_LAYERS;
  head->layers = layers;
  head->nets = qc_nets;
  head->margin = QC_MARGIN;
  head->tries = QC_TRIES;
}

/* ------------------------------------------------------------------ QCore */

static int run_qcore(void) {
  edgeplus_fc_layer layers[QC_NUM_LAYERS];
  edgeplus_qcore_head head;
  edgeplus_qcore_step_result res[QC_MAX_STEPS];
  reset_weights();
  make_head(layers, &head);
  arena_used = 0;
  const int32_t step_bytes = edgeplus_qcore_step_get_buffer_size(&head, QC_N);
  const int32_t free_n = QC_N - QC_GUARD; /* the unguarded samples the refresh draws from */
  const int32_t refresh_bytes = edgeplus_qcore_refresh_get_buffer_size(free_n);
  if (step_bytes < 0 || refresh_bytes < 0) {
    printf("QBENCH_ERROR QCORE get_buffer_size: step %s, refresh %s\n",
           edgeplus_status_str((edgeplus_status)(step_bytes < 0 ? step_bytes : 0)),
           edgeplus_status_str((edgeplus_status)(refresh_bytes < 0 ? refresh_bytes : 0)));
    return -1;
  }
  const int32_t ctx_bytes = step_bytes > refresh_bytes ? step_bytes : refresh_bytes;
  const int32_t history_bytes = (QC_MAX_STEPS + 1) * QC_N;
  void *ctx_buf = arena_take(ctx_bytes);
  uint8_t *history = (uint8_t *)arena_take(history_bytes);
  int32_t *chosen = (int32_t *)arena_take(4 * QC_REFRESH_SIZE);
  int32_t *counts = (int32_t *)arena_take(4 * QC_REFRESH_SIZE);
  if (ctx_buf == NULL || history == NULL || chosen == NULL || counts == NULL) {
    printf("QBENCH_ERROR QCORE needs %ld scratch bytes, the arena has %d\n",
           (long)(ctx_bytes + history_bytes + 8 * QC_REFRESH_SIZE), ARENA_BYTES);
    return -1;
  }
  const edgeplus_context ctx = {ctx_buf, ctx_bytes};
  uint32_t rng = QC_RNG_SEED;
  int32_t rows = 0, steps = 0, kept = 0;
  edgeplus_status st = EDGEPLUS_OK, st_refresh = EDGEPLUS_OK;

  const uint64_t t0 = counter_now();
  for (int32_t s = 0; s < QC_MAX_STEPS; ++s) {
    /* history row 0: the correctness before the first step; then one row per kept step
     * (a rolled-back candidate's row is written but not counted) */
    uint8_t *before = rows == 0 ? history : NULL;
    uint8_t *after = history + (rows == 0 ? 1 : rows) * QC_N;
    st = edgeplus_qcore_step(&ctx, &head, qc_x, qc_y, QC_N, QC_GUARD, QC_GUARD_MIN_CORRECT,
                             before, after, &res[s]);
    if (st != EDGEPLUS_OK) break;
    if (rows == 0) rows = 1;
    ++steps;
    if (!res[s].kept) break;
    ++kept;
    ++rows;
  }
  if (st == EDGEPLUS_OK) {
    for (int32_t row = 0; QC_GUARD > 0 && row < rows; ++row) /* the unguarded parts, packed */
      memmove(history + row * free_n, history + row * QC_N + QC_GUARD, (size_t)free_n);
    st_refresh = edgeplus_qcore_refresh(&ctx, qc_prior, history, rows, free_n, QC_REFRESH_SIZE,
                                        &rng, chosen, counts);
  }
  const uint64_t t1 = counter_now();

  if (st != EDGEPLUS_OK || st_refresh != EDGEPLUS_OK) {
    printf("QBENCH_ERROR QCORE step %ld: %s, refresh: %s\n", (long)steps,
           edgeplus_status_str(st), edgeplus_status_str(st_refresh));
    return -1;
  }
  const long instr = instructions_between(t0, t1, "QCORE");
  if (instr < 0) return -1;
  printf("QCORE instructions=%ld steps=%ld kept=%ld scratch_bytes=%ld checksum=0x%08lx "
         "chosen_checksum=0x%08lx counts_checksum=0x%08lx rng_state=%lu\n",
         instr, (long)steps, (long)kept, (long)(ctx_bytes + history_bytes + 8 * QC_REFRESH_SIZE),
         (unsigned long)fnv1a_update(FNV1A_INIT, (const uint8_t *)weights_ram, QC_WEIGHT_BYTES),
         (unsigned long)fnv1a_int32(chosen, QC_REFRESH_SIZE),
         (unsigned long)fnv1a_int32(counts, QC_REFRESH_SIZE), (unsigned long)rng);
  for (int32_t s = 0; s < steps; ++s) {
    printf("QCORE_TRACE step=%ld kept=%ld level=%ld changed=%ld correct_before=%ld "
           "correct_after=%ld margin_before=%ld margin_after=%ld guard_correct_before=%ld "
           "guard_correct_after=%ld\n",
           (long)s, (long)res[s].kept, (long)res[s].level, (long)res[s].changed,
           (long)res[s].correct_before, (long)res[s].correct_after, (long)res[s].margin_before,
           (long)res[s].margin_after, (long)res[s].guard_correct_before,
           (long)res[s].guard_correct_after);
  }
  return 0;
}

static int run_qcore_step(void) {
  edgeplus_fc_layer layers[QC_NUM_LAYERS];
  edgeplus_qcore_head head;
  edgeplus_qcore_step_result r;
  reset_weights();
  make_head(layers, &head);
  arena_used = 0;
  const int32_t step_bytes = edgeplus_qcore_step_get_buffer_size(&head, QC_N);
  void *ctx_buf = step_bytes >= 0 ? arena_take(step_bytes) : NULL;
  uint8_t *masks = (uint8_t *)arena_take(2 * QC_N);
  if (ctx_buf == NULL || masks == NULL) {
    printf("QBENCH_ERROR QCORE_STEP scratch: %ld bytes\n", (long)step_bytes);
    return -1;
  }
  const edgeplus_context ctx = {ctx_buf, step_bytes};
  const uint64_t t0 = counter_now();
  const edgeplus_status st =
      edgeplus_qcore_step(&ctx, &head, qc_x, qc_y, QC_N, QC_GUARD, QC_GUARD_MIN_CORRECT, masks,
                          masks + QC_N, &r);
  const uint64_t t1 = counter_now();
  if (st != EDGEPLUS_OK) {
    printf("QBENCH_ERROR QCORE_STEP: %s\n", edgeplus_status_str(st));
    return -1;
  }
  const long instr = instructions_between(t0, t1, "QCORE_STEP");
  if (instr < 0) return -1;
  printf("QCORE_STEP instructions=%ld scratch_bytes=%ld kept=%ld level=%ld changed=%ld "
         "correct_before=%ld correct_after=%ld margin_before=%ld margin_after=%ld "
         "guard_correct_before=%ld guard_correct_after=%ld checksum=0x%08lx\n",
         instr, (long)step_bytes, (long)r.kept, (long)r.level, (long)r.changed,
         (long)r.correct_before, (long)r.correct_after, (long)r.margin_before,
         (long)r.margin_after, (long)r.guard_correct_before, (long)r.guard_correct_after,
         (unsigned long)fnv1a_update(FNV1A_INIT, (const uint8_t *)weights_ram, QC_WEIGHT_BYTES));
  return 0;
}

/* ------------------------------------------------------------------ baseline */

/* The float head and the training state of bp_finetune. */
typedef struct {
  float *w[QC_NUM_LAYERS];   /* [out][in]: W_int * s_w[o] */
  float *b[QC_NUM_LAYERS];   /* [out]: bias * s_in * s_w[o] */
  float *pre[QC_NUM_LAYERS]; /* [n][out]: pre-activations */
  float *act[QC_NUM_LAYERS]; /* [n][out]: outputs (== pre without ReLU) */
  float *m[QC_NUM_LAYERS];   /* Adam moments of the trained layers, else NULL */
  float *v[QC_NUM_LAYERS];
  float *a0;                 /* [n][in]: (x - zp) * s_in */
  float *delta, *delta_next; /* [n][QC_MAX_WIDTH] */
  int32_t first_trained;
} bp_state;

/* Forward through the float head (backprop.py::_gradients' first loop). */
static void bp_forward(bp_state *s) {
  const float *in = s->a0;
  for (int l = 0; l < QC_NUM_LAYERS; ++l) {
    const int32_t out = qc_layers[l].out_features, inp = qc_layers[l].in_features;
    for (int32_t n = 0; n < QC_N; ++n) {
      const float *x = in + n * inp;
      float *z = s->pre[l] + n * out;
      for (int32_t o = 0; o < out; ++o) {
        const float *w = s->w[l] + o * inp;
        float acc = 0.0f;
        for (int32_t i = 0; i < inp; ++i) acc += x[i] * w[i];
        z[o] = acc + s->b[l][o];
      }
      if (qc_layers[l].relu) {
        float *a = s->act[l] + n * out;
        for (int32_t o = 0; o < out; ++o) a[o] = z[o] > 0.0f ? z[o] : 0.0f;
      }
    }
    in = s->act[l];
  }
}

/* One bp_finetune iteration (bc1, bc2: Adam's bias corrections 1 - beta^t): the mean cross-entropy gradient of every
 * trained layer, each applied with Adam once all of the layer's upstream error has been
 * computed from the old weights (the update of layer l follows delta @ W_l). */
static void bp_iteration(bp_state *s, float bc1, float bc2) {
  const float beta1 = 0.9f, beta2 = 0.999f;
  const float one_minus_b1 = (float)(1.0 - 0.9), one_minus_b2 = (float)(1.0 - 0.999);
  const float eps = 1e-7f, lr = QC_BP_LR;
  bp_forward(s);
  /* softmax cross-entropy: delta = (softmax(z) - onehot) / n */
  const int32_t classes = QC_CLASSES;
  const float n_samples = (float)QC_N;
  const float *logits = s->act[QC_NUM_LAYERS - 1];
  for (int32_t n = 0; n < QC_N; ++n) {
    const float *z = logits + n * classes;
    float *d = s->delta + n * classes;
    float zmax = z[0];
    for (int32_t o = 1; o < classes; ++o) zmax = z[o] > zmax ? z[o] : zmax;
    float sum = 0.0f;
    for (int32_t o = 0; o < classes; ++o) {
      d[o] = expf(z[o] - zmax);
      sum += d[o];
    }
    for (int32_t o = 0; o < classes; ++o) {
      const float p = d[o] / sum;
      d[o] = (p - (o == qc_y[n] ? 1.0f : 0.0f)) / n_samples;
    }
  }
  for (int32_t l = QC_NUM_LAYERS - 1; l >= s->first_trained; --l) {
    const int32_t out = qc_layers[l].out_features, inp = qc_layers[l].in_features;
    if (qc_layers[l].relu) {
      for (int32_t k = 0; k < QC_N * out; ++k)
        if (!(s->pre[l][k] > 0.0f)) s->delta[k] = 0.0f;
    }
    const float *x = l == 0 ? s->a0 : s->act[l - 1];
    if (l > s->first_trained) { /* delta_next = delta @ W_l, with the old W_l */
      for (int32_t n = 0; n < QC_N; ++n) {
        const float *d = s->delta + n * out;
        float *dn = s->delta_next + n * inp;
        for (int32_t i = 0; i < inp; ++i) {
          float acc = 0.0f;
          for (int32_t o = 0; o < out; ++o) acc += d[o] * s->w[l][o * inp + i];
          dn[i] = acc;
        }
      }
    }
    if (s->m[l] != NULL) { /* g = delta^T @ x, then Adam */
      for (int32_t o = 0; o < out; ++o) {
        for (int32_t i = 0; i < inp; ++i) {
          float g = 0.0f;
          for (int32_t n = 0; n < QC_N; ++n) g += s->delta[n * out + o] * x[n * inp + i];
          const int32_t k = o * inp + i;
          s->m[l][k] = beta1 * s->m[l][k] + one_minus_b1 * g;
          s->v[l][k] = beta2 * s->v[l][k] + one_minus_b2 * g * g;
          s->w[l][k] = s->w[l][k] - lr * (s->m[l][k] / bc1) / (sqrtf(s->v[l][k] / bc2) + eps);
        }
      }
    }
    float *tmp = s->delta;
    s->delta = s->delta_next;
    s->delta_next = tmp;
  }
}

static int run_bp(void) {
  bp_state s;
  memset(&s, 0, sizeof(s));
  arena_used = 0;
  int8_t *levels = NULL; /* the trained layers' new int8 levels, then packed */
  int32_t max_count = 0;
  for (int l = 0; l < QC_NUM_LAYERS; ++l) {
    const int32_t out = qc_layers[l].out_features, inp = qc_layers[l].in_features;
    s.w[l] = (float *)arena_take(4 * out * inp);
    s.b[l] = (float *)arena_take(4 * out);
    s.pre[l] = (float *)arena_take(4 * QC_N * out);
    s.act[l] = qc_layers[l].relu ? (float *)arena_take(4 * QC_N * out) : s.pre[l];
    if (s.w[l] == NULL || s.b[l] == NULL || s.pre[l] == NULL || s.act[l] == NULL) goto oom;
    if (out * inp > max_count) max_count = out * inp;
  }
  s.first_trained = QC_NUM_LAYERS;
  for (int k = 0; k < QC_BP_NUM_TRAINED; ++k) {
    const int32_t l = qc_bp_trained[k];
    const int32_t count = qc_layers[l].out_features * qc_layers[l].in_features;
    s.m[l] = (float *)arena_take(4 * count);
    s.v[l] = (float *)arena_take(4 * count);
    if (s.m[l] == NULL || s.v[l] == NULL) goto oom;
    if (l < s.first_trained) s.first_trained = l;
  }
  s.a0 = (float *)arena_take(4 * QC_N * QC_IN);
  s.delta = (float *)arena_take(4 * QC_N * QC_MAX_WIDTH);
  s.delta_next = (float *)arena_take(4 * QC_N * QC_MAX_WIDTH);
  levels = (int8_t *)arena_take(2 * max_count); /* levels + their packed copy */
  if (s.a0 == NULL || s.delta == NULL || s.delta_next == NULL || levels == NULL) goto oom;
  const int32_t scratch = arena_used;
  reset_weights();

  const uint64_t t0 = counter_now();
  /* the float head (backprop.py::_float_head, _inputs); W_int unpacked row by row */
  int32_t off = 0;
  for (int l = 0; l < QC_NUM_LAYERS; ++l) {
    const qc_layer_desc *d = &qc_layers[l];
    const int32_t out = d->out_features, inp = d->in_features;
    if (edgeplus_unpack(weights_ram + off, out * inp, d->w_bits, levels) != EDGEPLUS_OK) {
      printf("QBENCH_ERROR BP unpack of layer %d failed\n", l);
      return -1;
    }
    for (int32_t o = 0; o < out; ++o) {
      const float sw = d->weight_scale[o];
      for (int32_t i = 0; i < inp; ++i) s.w[l][o * inp + i] = (float)levels[o * inp + i] * sw;
      s.b[l][o] = (float)d->bias[o] * d->input_scale * sw;
    }
    if (s.m[l] != NULL) {
      memset(s.m[l], 0, (size_t)(4 * out * inp));
      memset(s.v[l], 0, (size_t)(4 * out * inp));
    }
    off += d->weight_bytes;
  }
  for (int32_t k = 0; k < QC_N * QC_IN; ++k)
    s.a0[k] = ((float)qc_x[k] - (float)qc_layers[0].input_zero_point) * qc_layers[0].input_scale;

  uint64_t t_step0 = 0, t_step1 = 0;
  double b1t = 1.0, b2t = 1.0; /* 0.9^t and 0.999^t */
  for (int32_t t = 1; t <= QC_BP_STEPS; ++t) {
    if (t == 1) t_step0 = counter_now();
    b1t *= 0.9;
    b2t *= 0.999;
    bp_iteration(&s, (float)(1.0 - b1t), (float)(1.0 - b2t));
    if (t == 1) t_step1 = counter_now();
  }
  /* round each trained layer to its grid, saturate, pack in place */
  off = 0;
  for (int l = 0; l < QC_NUM_LAYERS; ++l) {
    const qc_layer_desc *d = &qc_layers[l];
    const int32_t out = d->out_features, inp = d->in_features;
    if (s.m[l] != NULL) {
      const int32_t qmax = (1 << (d->w_bits - 1)) - 1;
      for (int32_t o = 0; o < out; ++o) {
        for (int32_t i = 0; i < inp; ++i) {
          float q = rintf(s.w[l][o * inp + i] / d->weight_scale[o]);
          q = q > (float)qmax ? (float)qmax : q < (float)-qmax ? (float)-qmax : q;
          levels[o * inp + i] = (int8_t)q;
        }
      }
      if (edgeplus_pack(levels, out * inp, d->w_bits, levels + max_count) != EDGEPLUS_OK) {
        printf("QBENCH_ERROR BP pack of layer %d failed\n", l);
        return -1;
      }
      memcpy(weights_ram + off, levels + max_count, (size_t)d->weight_bytes);
    }
    off += d->weight_bytes;
  }
  const uint64_t t1 = counter_now();

  const long instr = instructions_between(t0, t1, "BP");
  const long instr_step = instructions_between(t_step0, t_step1, "BP_STEP");
  if (instr < 0 || instr_step < 0) return -1;
  printf("BP instructions=%ld scratch_bytes=%ld checksum=0x%08lx\n", instr, (long)scratch,
         (unsigned long)fnv1a_update(FNV1A_INIT, (const uint8_t *)weights_ram, QC_WEIGHT_BYTES));
  printf("BP_STEP instructions=%ld\n", instr_step);
  off = 0;
  for (int l = 0; l < QC_NUM_LAYERS; ++l) {
    const qc_layer_desc *d = &qc_layers[l];
    const int32_t count = d->out_features * d->in_features;
    if (s.m[l] != NULL) {
      if (edgeplus_unpack(weights_ram + off, count, d->w_bits, levels) != EDGEPLUS_OK) return -1;
      printf("BP_WEIGHTS layer=%d hex=", l);
      for (int32_t k = 0; k < count; ++k) printf("%02x", (unsigned)(uint8_t)levels[k]);
      printf("\n");
    }
    off += d->weight_bytes;
  }
  return 0;

oom:
  printf("QBENCH_ERROR BP needs more than the %d arena bytes\n", ARENA_BYTES);
  return -1;
}

int main(void) {
  overhead_ticks = bench_counter_start();
  int failures = 0;
  if (run_qcore() != 0) ++failures;
  if (run_qcore_step() != 0) ++failures;
  if (run_bp() != 0) ++failures;
  printf("QBENCH_DONE failures=%d\n", failures);
  return failures == 0 ? 0 : 1;
}
