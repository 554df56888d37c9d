/*
 * Self-test of the bare-metal harness itself, independent of the kernels:
 * printf via semihosting, .data/.bss initialisation, hard-float (FPU enabled),
 * the DSP extension, the instruction counter, and the exit status.
 *
 * Built three times by the Makefile: normally (must print "SELFTEST OK" and exit
 * 0), with -DM4_SELFTEST_FAIL=1 (main returns a failure: QEMU must exit with
 * M4_EXIT_TEST_FAILED, so a failing test fails make) and with -DM4_SELFTEST_FAULT=1
 * (crashes on purpose: the fault handler must make QEMU exit with M4_EXIT_FAULT
 * instead of hanging).
 */
#include <stdint.h>
#include <stdio.h>

#include "m4_harness.h"

#ifndef __ARM_FEATURE_DSP
#error "built without the DSP extension: use -mcpu=cortex-m4"
#endif
#if !defined(__ARM_FP) || !defined(__ARM_PCS_VFP)
#error "built without hard-float: use -mfpu=fpv4-sp-d16 -mfloat-abi=hard"
#endif

static int initialised_data = 12345; /* checks the .data copy */
static int zeroed_bss[64];           /* checks the .bss clear */

static volatile float fa = 1.5f, fb = 2.25f;

int main(void) {
  int failures = 0;
  if (initialised_data != 12345) {
    printf("FAIL: .data not copied (%d)\n", initialised_data);
    ++failures;
  }
  for (int i = 0; i < 64; ++i) {
    if (zeroed_bss[i] != 0) {
      printf("FAIL: .bss not zeroed at %d\n", i);
      ++failures;
      break;
    }
  }
  float prod = fa * fb; /* a VFP instruction: faults if CPACR was not set */
  if (prod != 3.375f) {
    printf("FAIL: float product %f\n", (double)prod);
    ++failures;
  }
  /* SMLAD: 2*3 + 4*5 + 7 = 33 */
  int32_t x = (int32_t)((4u << 16) | 2u), y = (int32_t)((5u << 16) | 3u), acc = 7;
  __asm__("smlad %0, %1, %2, %0" : "+r"(acc) : "r"(x), "r"(y));
  if (acc != 33) {
    printf("FAIL: smlad gave %ld\n", (long)acc);
    ++failures;
  }
  m4_counter_start();
  uint32_t ipt = m4_counter_calibrate(200000);
  printf("instr_per_tick_x1000=%lu\n", (unsigned long)ipt);
  if (ipt < 39900 || ipt > 40100) {
    printf("FAIL: SysTick does not tick once per 40 instructions (run QEMU with -icount shift=0)\n");
    ++failures;
  }
#if defined(M4_SELFTEST_FAULT) && M4_SELFTEST_FAULT
  printf("about to fault on purpose\n");
  fflush(stdout);
  volatile uint32_t *bad = (volatile uint32_t *)0xFFFFFFF0u; /* unmapped */
  *bad = 1u;
  printf("FAIL: no fault\n");
  return 0;
#elif defined(M4_SELFTEST_FAIL) && M4_SELFTEST_FAIL
  printf("failing on purpose\n");
  (void)failures;
  return M4_EXIT_TEST_FAILED;
#else
  if (failures == 0) printf("SELFTEST OK\n");
  return failures == 0 ? M4_EXIT_OK : M4_EXIT_TEST_FAILED;
#endif
}
