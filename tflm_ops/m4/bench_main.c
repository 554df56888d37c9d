/*
 * Instruction counts of the edgeplus conv kernels on the emulated Cortex-M4F
 * (QEMU mps2-an386, -icount shift=0; see m4_harness.h), driven by
 * benchmarks/kernels_m4.py.
 *
 * The same file also builds natively on the host (EDGEPLUS_BENCH_HOST, the kernels'
 * plain-C path, no counter): the benchmark compares the output checksums of both,
 * so it never reports the speed of a kernel whose M4 (DSP path) output is wrong.
 *
 * For every case of a fixed layer set x bit-width combination it generates
 * deterministic pseudo-random data in range (xorshift32, seeded by the case),
 * packs it with the library's own packers, runs the kernel once between two
 * counter reads and prints one line:
 *
 *   BENCH layer=<name> w_bits=<b> a_bits=<b> scratch_mode=<default|lean> macs=<n>
 *         instructions=<n> scratch_bytes=<n> status=<edgeplus status>
 *         checksum=<fnv1a32 of the output>
 *
 * Every case runs twice: with the kernel's _get_buffer_size scratch (scratch_mode=default)
 * and with its _get_buffer_size_lean scratch (lean).
 *
 * The requantization multipliers/shifts are chosen per case so outputs spread
 * over the output range instead of saturating (a checksum of all-clamped output
 * would hide errors). BENCH_QUICK builds a smaller case set: the 1x1 layer at
 * every bit-width and the 3x3 conv at W8A8 (same code path).
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "bench_common.h"
#include "edgeplus/edgeplus_ops.h"

typedef struct {
  const char *name;
  int depthwise;
  int32_t in_h, in_w, in_c, out_c, k, stride, pad;
} layer_t;

typedef struct {
  int32_t w_bits, a_bits;
} bits_t;

static const layer_t kLayers[] = {
    {"conv3x3_32x32x16_32", 0, 32, 32, 16, 32, 3, 1, 1},
    {"dw3x3_48x48x32", 1, 48, 48, 32, 32, 3, 1, 1},
    {"pw1x1_16x16x64_64", 0, 16, 16, 64, 64, 1, 1, 0},
};
static const bits_t kBits[] = {{8, 8}, {4, 4}, {2, 2}, {4, 8}};

/* One arena for every buffer of a case; the Nano's 256 KB minus stack, heap and
 * globals. The largest case (dw 48x48x32 at 8 bits) needs 2 x 72 KB + scratch. */
#define ARENA_BYTES (200 * 1024)
static uint8_t arena[ARENA_BYTES] __attribute__((aligned(8)));

static uint32_t rng_state;
static uint32_t rng_next(void) {
  uint32_t x = rng_state;
  x ^= x << 13;
  x ^= x >> 17;
  x ^= x << 5;
  rng_state = x;
  return x;
}
/* uniform in [lo, hi] */
static int32_t rng_range(int32_t lo, int32_t hi) {
  return lo + (int32_t)(rng_next() % (uint32_t)(hi - lo + 1));
}

static int32_t align8(int32_t n) { return (n + 7) & ~7; }

/* Fill `count` values in [lo, hi] into tmp, then pack them at `bits` into dst. */
static int fill_packed(int8_t *tmp, int8_t *dst, int32_t count, int32_t bits, int32_t lo,
                       int32_t hi) {
  for (int32_t i = 0; i < count; ++i) tmp[i] = (int8_t)rng_range(lo, hi);
  return edgeplus_pack(tmp, count, bits, dst) == EDGEPLUS_OK ? 0 : -1;
}

static int32_t ceil_log2(uint32_t v) {
  int32_t r = 0;
  while ((1u << r) < v && r < 31) ++r;
  return r;
}

static const char *const kModes[] = {"default", "lean"};

static int run_case(const layer_t *L, const bits_t *B, int lean, uint64_t overhead_ticks) {
  const int32_t in_bits = B->a_bits, out_bits = B->a_bits, w_bits = B->w_bits;
  const int32_t out_h = (L->in_h + 2 * L->pad - L->k) / L->stride + 1;
  const int32_t out_w = (L->in_w + 2 * L->pad - L->k) / L->stride + 1;
  edgeplus_dims in_dims = {1, L->in_h, L->in_w, L->in_c};
  edgeplus_dims out_dims = {1, out_h, out_w, L->out_c};
  edgeplus_dims f_dims = L->depthwise ? (edgeplus_dims){1, L->k, L->k, L->out_c}
                                      : (edgeplus_dims){L->out_c, L->k, L->k, L->in_c};
  const int32_t n_in = in_dims.h * in_dims.w * in_dims.c;
  const int32_t n_out = out_dims.h * out_dims.w * out_dims.c;
  const int32_t n_f = f_dims.n * f_dims.h * f_dims.w * f_dims.c;
  const int32_t kc = L->k * L->k * (L->depthwise ? 1 : L->in_c);
  const int64_t macs = (int64_t)n_out * kc;

  rng_state = 0x9E3779B9u ^ (uint32_t)(L->in_h * 7919 + L->out_c * 131 + w_bits * 17 + in_bits);

  edgeplus_conv_params p;
  memset(&p, 0, sizeof(p));
  p.stride_h = p.stride_w = L->stride;
  p.pad_h = p.pad_w = L->pad;
  p.dilation_h = p.dilation_w = 1;
  p.in_bits = in_bits;
  p.w_bits = w_bits;
  p.out_bits = out_bits;
  p.input_zero_point = in_bits == 2 ? -1 : -3;
  p.output_zero_point = out_bits == 2 ? 0 : 1;
  p.act_min = -(1 << (out_bits - 1));
  p.act_max = (1 << (out_bits - 1)) - 1;

  const int32_t scratch =
      L->depthwise
          ? (lean ? edgeplus_depthwise_conv2d_get_buffer_size_lean
                  : edgeplus_depthwise_conv2d_get_buffer_size)(&p, &in_dims, &f_dims, &out_dims)
          : (lean ? edgeplus_conv2d_get_buffer_size_lean
                  : edgeplus_conv2d_get_buffer_size)(&p, &in_dims, &f_dims, &out_dims);
  if (scratch < 0) {
    printf("BENCH_ERROR layer=%s w_bits=%ld a_bits=%ld get_buffer_size: %s\n", L->name,
           (long)w_bits, (long)in_bits, edgeplus_status_str((edgeplus_status)scratch));
    return -1;
  }

  /* Arena layout: input | filter | bias | mult | shift | output | scratch. */
  const int32_t in_bytes = edgeplus_packed_bytes(n_in, in_bits);
  const int32_t f_bytes = edgeplus_packed_bytes(n_f, w_bits);
  const int32_t out_bytes = edgeplus_packed_bytes(n_out, out_bits);
  int32_t off = 0;
  int8_t *input = (int8_t *)(arena + off);
  off += align8(in_bytes);
  int8_t *filter = (int8_t *)(arena + off);
  off += align8(f_bytes);
  int32_t *bias = (int32_t *)(arena + off);
  off += align8(4 * L->out_c);
  int32_t *mult = (int32_t *)(arena + off);
  off += align8(4 * L->out_c);
  int32_t *shift = (int32_t *)(arena + off);
  off += align8(4 * L->out_c);
  int8_t *output = (int8_t *)(arena + off);
  /* unpacked staging for the generator uses the output + scratch area */
  const int32_t stage = n_in > n_f ? n_in : n_f;
  const int32_t tail = align8(out_bytes) + scratch > stage ? align8(out_bytes) + scratch : stage;
  if (off + tail > ARENA_BYTES) {
    printf("BENCH_ERROR layer=%s w_bits=%ld a_bits=%ld needs %ld arena bytes, have %d\n",
           L->name, (long)w_bits, (long)in_bits, (long)(off + tail), ARENA_BYTES);
    return -1;
  }
  int8_t *staging = output;
  void *scratch_buf = arena + off + align8(out_bytes);

  if (fill_packed(staging, input, n_in, in_bits, -(1 << (in_bits - 1)),
                  (1 << (in_bits - 1)) - 1) != 0 ||
      fill_packed(staging, filter, n_f, w_bits, -(1 << (w_bits - 1)) + 1,
                  (1 << (w_bits - 1)) - 1) != 0) {
    printf("BENCH_ERROR layer=%s packing failed\n", L->name);
    return -1;
  }
  /* Accumulator scale: ~sqrt(kc) * |x| * |w|; map it onto the output range. */
  const int32_t acc_log2 = (ceil_log2((uint32_t)kc) + 1) / 2 + (in_bits - 1) + (w_bits - 1);
  const int32_t bias_mag = 1 << (acc_log2 > 2 ? acc_log2 - 1 : 1);
  for (int32_t c = 0; c < L->out_c; ++c) {
    bias[c] = rng_range(-bias_mag, bias_mag);
    mult[c] = (int32_t)(0x40000000u + (rng_next() & 0x3FFFFFFFu)); /* [2^30, 2^31) */
    shift[c] = (out_bits - 1) - acc_log2 + 1;                      /* real ~ 2^(shift-1) */
  }
  memset(output, 0, (size_t)out_bytes);

  edgeplus_context ctx = {scratch_buf, scratch};
  edgeplus_quant_params q = {mult, shift};
  const uint64_t t0 = counter_now();
  const edgeplus_status st =
      L->depthwise
          ? edgeplus_depthwise_conv2d(&ctx, &p, &q, &in_dims, input, &f_dims, filter, bias,
                                      &out_dims, output)
          : edgeplus_conv2d(&ctx, &p, &q, &in_dims, input, &f_dims, filter, bias, &out_dims,
                            output);
  const uint64_t t1 = counter_now();
  const uint64_t ticks = t1 - t0 > overhead_ticks ? t1 - t0 - overhead_ticks : 0;
#ifdef EDGEPLUS_BENCH_HOST
  const unsigned long instructions = 0;
  (void)ticks;
#else
  /* newlib-nano's printf has no %llu: counts stay below 2^32 (checked). */
  const uint64_t instr64 = ticks * M4_INSTR_PER_TICK;
  if (instr64 > 0xFFFFFFFFull) {
    printf("BENCH_ERROR layer=%s instruction count overflows 32 bits\n", L->name);
    return -1;
  }
  const unsigned long instructions = (unsigned long)instr64;
#endif
  printf("BENCH layer=%s w_bits=%ld a_bits=%ld scratch_mode=%s macs=%lu instructions=%lu "
         "scratch_bytes=%ld status=%s checksum=0x%08lx\n",
         L->name, (long)w_bits, (long)in_bits, kModes[lean], (unsigned long)macs, instructions,
         (long)scratch,
         edgeplus_status_str(st), (unsigned long)fnv1a((const uint8_t *)output, out_bytes));
  return st == EDGEPLUS_OK ? 0 : -1;
}

int main(void) {
  const uint64_t overhead = bench_counter_start();
  int failures = 0;
  const int n_layers = (int)(sizeof(kLayers) / sizeof(kLayers[0]));
  const int n_bits = (int)(sizeof(kBits) / sizeof(kBits[0]));
  for (int li = 0; li < n_layers; ++li) {
    for (int bi = 0; bi < n_bits; ++bi) {
#ifdef BENCH_QUICK
      if (!(li == 2 || (li == 0 && bi == 0))) continue;
#endif
      for (int lean = 0; lean < 2; ++lean) {
        if (run_case(&kLayers[li], &kBits[bi], lean, overhead) != 0) ++failures;
      }
    }
  }
  printf("BENCH_DONE failures=%d\n", failures);
  return failures == 0 ? 0 : 1;
}
