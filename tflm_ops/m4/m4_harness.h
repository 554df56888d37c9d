/*
 * Services of the bare-metal Cortex-M4F harness (startup.c, m4_timer.c) for
 * programs run in QEMU mps2-an386 with semihosting.
 */
#ifndef EDGEPLUS_M4_HARNESS_H_
#define EDGEPLUS_M4_HARNESS_H_

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Exit statuses seen by the host (QEMU's own exit status). */
#define M4_EXIT_OK 0
#define M4_EXIT_TEST_FAILED 1
#define M4_EXIT_FAULT 3 /* fault or unexpected interrupt, reported by startup.c */

/* Exit QEMU immediately with `status` via semihosting (no atexit, no flush). */
void m4_semihost_exit(int status) __attribute__((noreturn));

/*
 * Instruction counter.
 *
 * QEMU has no DWT cycle counter. Run with `-icount shift=0`: then every
 * instruction advances virtual time by exactly 1 ns, and the SysTick, clocked
 * from mps2-an386's 25 MHz system clock, ticks once per 40 instructions.
 * m4_counter_start() runs SysTick free with the full 24-bit reload and an
 * interrupt counting wraps, so m4_counter_ticks() is a 64-bit monotonic tick
 * count. Resolution is one tick (40 instructions); the count is exact and
 * identical run to run. These are instructions, not cycles: QEMU models no
 * pipeline, no flash wait states. M4_INSTR_PER_TICK is checked at run time by
 * m4_counter_calibrate() against a loop of known instruction count.
 */
#define M4_INSTR_PER_TICK 40u

void m4_counter_start(void);
uint64_t m4_counter_ticks(void);

/* Ticks spent in an assembly loop of exactly `4 * iterations + small` instructions.
 * Returns the measured instructions per tick * 1000 (40000 expected with
 * -icount shift=0); 0 when SysTick does not run. */
uint32_t m4_counter_calibrate(uint32_t iterations);

#ifdef __cplusplus
}
#endif

#endif /* EDGEPLUS_M4_HARNESS_H_ */
