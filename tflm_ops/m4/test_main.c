/*
 * Cortex-M4F entry point of the tflm_ops C tests: runs edgeplus_run_tests()
 * (tflm_ops/tests) on the emulated core and turns its result into QEMU's exit
 * status, so `make -C tflm_ops/m4 test` fails on any mismatch. A crash is
 * reported by startup.c's fault handler (exit status 3), a hang by `timeout`.
 */
#include <stdio.h>

#include "m4_harness.h"

#ifndef __ARM_FEATURE_DSP
#error "the M4 tests must exercise the DSP path: build with -mcpu=cortex-m4"
#endif

int edgeplus_run_tests(void); /* tflm_ops/tests: number of failed checks */

int main(void) {
  printf("tflm_ops C tests on Cortex-M4F (QEMU mps2-an386)\n");
  int failures = edgeplus_run_tests();
  if (failures != 0) {
    printf("M4 TESTS FAILED: %d failure(s)\n", failures);
    return M4_EXIT_TEST_FAILED;
  }
  printf("M4 TESTS PASSED\n");
  return M4_EXIT_OK;
}
