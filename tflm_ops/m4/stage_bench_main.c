/*
 * Cost of patch stages on the Cortex-M4F: runs edgeplus_patch_stage on the programs of a
 * generated stage_case.h (written by benchmarks/_stage_m4.py) and prints, per program,
 *   STAGE name=<s> instructions=<n> scratch_bytes=<n> hash=<fnv1a of the output> ok=<0|1>
 * where ok compares the hash with the NumPy reference's. The case header defines
 * STAGE_NUM_PROGRAMS, stage_names[], stage_programs[] / stage_words[], stage_expected_hash[],
 * STAGE_NUM_SLOTS, stage_filters[] (packed, shared by the programs), stage_input[],
 * STAGE_OUTPUT_BYTES and STAGE_SCRATCH_BYTES (the static scratch, the largest need).
 * Built natively too with EDGEPLUS_BENCH_HOST (counts 0) as the host reference.
 */
#include <stdint.h>
#include <stdio.h>

#include "bench_common.h"
#include "edgeplus/edgeplus_ops.h"
#include "stage_case.h"

#ifdef EDGEPLUS_BENCH_HOST
#define INSTR_PER_TICK 0u
#else
#define INSTR_PER_TICK M4_INSTR_PER_TICK
#endif

static int8_t scratch[STAGE_SCRATCH_BYTES] __attribute__((aligned(4)));
static int8_t output[STAGE_OUTPUT_BYTES] __attribute__((aligned(4)));

int main(void) {
  const uint64_t overhead = bench_counter_start();
  int failures = 0;
  for (int i = 0; i < STAGE_NUM_PROGRAMS; ++i) {
    const int32_t need = edgeplus_patch_stage_get_buffer_size(stage_programs[i], stage_words[i]);
    if (need < 0 || need > (int32_t)sizeof(scratch)) {
      printf("SBENCH_ERROR name=%s need=%ld static=%lu\n", stage_names[i], (long)need,
             (unsigned long)sizeof(scratch));
      ++failures;
      continue;
    }
    edgeplus_context ctx = {scratch, need};
    const uint64_t t0 = counter_now();
    const edgeplus_status st = edgeplus_patch_stage(&ctx, stage_programs[i], stage_words[i],
                                                    stage_filters, stage_input, output);
    const uint64_t t1 = counter_now();
    if (st != EDGEPLUS_OK) {
      printf("SBENCH_ERROR name=%s status=%s\n", stage_names[i], edgeplus_status_str(st));
      ++failures;
      continue;
    }
    const uint64_t ticks = t1 - t0 > overhead ? t1 - t0 - overhead : 0;
    const uint32_t h = fnv1a((const uint8_t *)output, STAGE_OUTPUT_BYTES);
    const int ok = h == stage_expected_hash[i];
    failures += !ok;
    printf("STAGE name=%s instructions=%lu scratch_bytes=%ld hash=%lu ok=%d\n", stage_names[i],
           (unsigned long)(ticks * INSTR_PER_TICK), (long)need,
           (unsigned long)h, ok);
  }
  printf("SBENCH_DONE failures=%d\n", failures);
  return failures ? 1 : 0;
}
