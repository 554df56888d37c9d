/*
 * Shared by the benchmark programs (bench_main.c, qcore_bench_main.c), which also build
 * natively on the host with EDGEPLUS_BENCH_HOST (no counter there: every count is 0).
 */
#ifndef EDGEPLUS_BENCH_COMMON_H_
#define EDGEPLUS_BENCH_COMMON_H_

#include <stdint.h>
#include <stdio.h>

#ifndef EDGEPLUS_BENCH_HOST
#include "m4_harness.h"
#endif

#define FNV1A_INIT 2166136261u

/* FNV-1a over n bytes, continuing from h (FNV1A_INIT to start). */
static inline uint32_t fnv1a_update(uint32_t h, const uint8_t *p, int32_t n) {
  for (int32_t i = 0; i < n; ++i) {
    h ^= p[i];
    h *= 16777619u;
  }
  return h;
}

static inline uint32_t fnv1a(const uint8_t *p, int32_t n) { return fnv1a_update(FNV1A_INIT, p, n); }

static inline uint64_t counter_now(void) {
#ifdef EDGEPLUS_BENCH_HOST
  return 0;
#else
  return m4_counter_ticks();
#endif
}

/* Start the counter, print the `CALIB instr_per_tick_x1000=<n>` line the drivers check,
 * and return the ticks two back-to-back counter reads cost (0 on the host). */
static inline uint64_t bench_counter_start(void) {
#ifdef EDGEPLUS_BENCH_HOST
  return 0;
#else
  m4_counter_start();
  printf("CALIB instr_per_tick_x1000=%lu\n", (unsigned long)m4_counter_calibrate(100000));
  const uint64_t a = counter_now();
  const uint64_t b = counter_now();
  return b - a;
#endif
}

#endif /* EDGEPLUS_BENCH_COMMON_H_ */
