/*
 * Instruction counter from SysTick under QEMU `-icount shift=0`; see
 * m4_harness.h for why ticks * 40 = instructions.
 */
#include "m4_harness.h"

#define SYST_CSR (*(volatile uint32_t *)0xE000E010u)
#define SYST_RVR (*(volatile uint32_t *)0xE000E014u)
#define SYST_CVR (*(volatile uint32_t *)0xE000E018u)

#define SYST_CSR_ENABLE (1u << 0)
#define SYST_CSR_TICKINT (1u << 1)
#define SYST_CSR_CLKSOURCE (1u << 2) /* processor clock (25 MHz on mps2) */
#define SYST_RELOAD 0x00FFFFFFu      /* full 24 bits */

extern volatile uint32_t m4_systick_wraps; /* startup.c's SysTick_Handler */

void m4_counter_start(void) {
  SYST_CSR = 0;
  SYST_RVR = SYST_RELOAD;
  SYST_CVR = 0; /* any write clears the counter; it reloads on the next tick */
  m4_systick_wraps = 0;
  SYST_CSR = SYST_CSR_ENABLE | SYST_CSR_TICKINT | SYST_CSR_CLKSOURCE;
  /* The cleared counter reads 0 until its first tick reloads it (without an
   * interrupt). Wait for that reload, so ticks are monotonic from here on.
   * Bounded: if SysTick does not run (QEMU without -icount), give up and let
   * m4_counter_calibrate() report 0. */
  for (uint32_t spin = 0; SYST_CVR == 0 && spin < 100000u; ++spin) {
  }
  m4_systick_wraps = 0;
}

uint64_t m4_counter_ticks(void) {
  /* SysTick counts down. Read wraps / value / wraps again: if a wrap (and its
   * interrupt) happened between the reads, retry, so the pair is consistent. */
  uint32_t w1, w2, v;
  do {
    w1 = m4_systick_wraps;
    v = SYST_CVR;
    w2 = m4_systick_wraps;
  } while (w1 != w2);
  return (uint64_t)w1 * (SYST_RELOAD + 1u) + (SYST_RELOAD - v);
}

uint32_t m4_counter_calibrate(uint32_t iterations) {
  if (iterations == 0) return 0;
  uint64_t t0 = m4_counter_ticks();
  uint32_t n = iterations;
  /* exactly 4 instructions per iteration */
  __asm__ volatile(
      "1:\n"
      "  subs %0, %0, #1\n"
      "  nop\n"
      "  nop\n"
      "  bne 1b\n"
      : "+r"(n)
      :
      : "cc");
  uint64_t ticks = m4_counter_ticks() - t0;
  if (ticks == 0) return 0;
  uint64_t instr = 4ull * iterations;
  return (uint32_t)((instr * 1000u + ticks / 2u) / ticks);
}
