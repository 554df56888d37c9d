/*
 * Bare-metal start-up for the Cortex-M4F programs run in QEMU (mps2-an386) with
 * ARM semihosting. Linked with --specs=nano.specs --specs=rdimon.specs
 * -nostartfiles and nano33ble.ld.
 *
 * Choices:
 * - The FPU is enabled (CPACR CP10/CP11 full access) before anything else: the
 *   code is built with -mfloat-abi=hard, so the first FP instruction anywhere
 *   (even in newlib's printf) would otherwise raise a UsageFault (NOCP).
 * - initialise_monitor_handles() runs BEFORE __libc_init_array(), so that a
 *   static constructor that prints (C++ glue, tests) already has stdout.
 *   Without it, printf output and the exit status are lost.
 * - main()'s return value goes to exit(), which librdimon turns into a
 *   semihosting SYS_EXIT: QEMU exits with that status, so a failing test
 *   fails the make target.
 * - Every fault and every unexpected interrupt prints what happened (fault
 *   status registers, stacked PC/LR) through raw semihosting calls, which do
 *   not depend on newlib state that the fault may have corrupted, and exits
 *   QEMU with status M4_EXIT_FAULT (3): a crash fails the test instead of
 *   hanging it. QEMU is also wrapped in `timeout` by the Makefile.
 * - SysTick_Handler counts 24-bit SysTick wraps for m4_timer.c.
 */
#include <stdint.h>
#include <stdlib.h>

#include "m4_harness.h"

extern uint32_t __etext;          /* load address of .data in FLASH */
extern uint32_t __data_start__;   /* .data in RAM */
extern uint32_t __data_end__;
extern uint32_t __bss_start__;
extern uint32_t __bss_end__;
extern uint32_t __stack_top__;

extern int main(void);
extern void __libc_init_array(void);
extern void initialise_monitor_handles(void);

/* newlib's __libc_init_array calls _init()/_fini() from crti/crtn, which
 * -nostartfiles leaves out: provide empty ones. */
void _init(void) {}
void _fini(void) {}

/* ---- raw semihosting, usable from fault context ------------------------ */

#define SEMIHOST_SYS_WRITE0 0x04
#define SEMIHOST_SYS_EXIT_EXTENDED 0x20
#define ADP_STOPPED_APPLICATION_EXIT 0x20026

static int semihost_call(int op, const void *arg) {
  register int r0 __asm__("r0") = op;
  register const void *r1 __asm__("r1") = arg;
  __asm__ volatile("bkpt 0xAB" : "+r"(r0) : "r"(r1) : "memory");
  return r0;
}

static void semihost_puts(const char *s) { semihost_call(SEMIHOST_SYS_WRITE0, s); }

static void semihost_put_hex(uint32_t v) {
  char buf[11];
  static const char digits[] = "0123456789abcdef";
  buf[0] = '0';
  buf[1] = 'x';
  for (int i = 0; i < 8; ++i) buf[2 + i] = digits[(v >> (28 - 4 * i)) & 0xF];
  buf[10] = '\0';
  semihost_puts(buf);
}

void m4_semihost_exit(int status) {
  /* SYS_EXIT_EXTENDED carries the status itself (plain SYS_EXIT on 32-bit ARM
   * can only say "success" or "error"). QEMU exits with `status`. */
  uint32_t block[2] = {ADP_STOPPED_APPLICATION_EXIT, (uint32_t)status};
  semihost_call(SEMIHOST_SYS_EXIT_EXTENDED, block);
  for (;;) {
  }
}

/* ---- faults -------------------------------------------------------------- */

#define SCB_CFSR (*(volatile uint32_t *)0xE000ED28u)
#define SCB_HFSR (*(volatile uint32_t *)0xE000ED2Cu)
#define SCB_MMFAR (*(volatile uint32_t *)0xE000ED34u)
#define SCB_BFAR (*(volatile uint32_t *)0xE000ED38u)
#define SCB_ICSR (*(volatile uint32_t *)0xE000ED04u)

/* Called by the naked stubs with the exception stack frame. */
void m4_fault_report(const uint32_t *frame, uint32_t exc_return) __attribute__((used, noreturn));
void m4_fault_report(const uint32_t *frame, uint32_t exc_return) {
  static const char *const names[16] = {
      "?", "Reset", "NMI", "HardFault", "MemManage", "BusFault", "UsageFault", "?",
      "?", "?", "?", "SVCall", "DebugMon", "?", "PendSV", "SysTick"};
  uint32_t exc = SCB_ICSR & 0x1FFu;
  semihost_puts("\n*** M4 FAULT: ");
  if (exc < 16) {
    semihost_puts(names[exc]);
  } else {
    semihost_puts("unexpected IRQ ");
    semihost_put_hex(exc - 16);
  }
  semihost_puts("\n    pc=");
  semihost_put_hex(frame[6]);
  semihost_puts(" lr=");
  semihost_put_hex(frame[5]);
  semihost_puts(" xpsr=");
  semihost_put_hex(frame[7]);
  semihost_puts(" exc_return=");
  semihost_put_hex(exc_return);
  semihost_puts("\n    cfsr=");
  semihost_put_hex(SCB_CFSR);
  semihost_puts(" hfsr=");
  semihost_put_hex(SCB_HFSR);
  semihost_puts(" mmfar=");
  semihost_put_hex(SCB_MMFAR);
  semihost_puts(" bfar=");
  semihost_put_hex(SCB_BFAR);
  semihost_puts("\n");
  m4_semihost_exit(M4_EXIT_FAULT);
}

/* Pick MSP or PSP from EXC_RETURN bit 2 and hand the frame to C. */
__attribute__((naked)) void Fault_Handler(void) {
  __asm__ volatile(
      "tst lr, #4\n"
      "ite eq\n"
      "mrseq r0, msp\n"
      "mrsne r0, psp\n"
      "mov r1, lr\n"
      "b m4_fault_report\n");
}

/* ---- SysTick ------------------------------------------------------------- */

volatile uint32_t m4_systick_wraps;

void SysTick_Handler(void) { m4_systick_wraps++; }

/* ---- reset ----------------------------------------------------------------- */

__attribute__((noreturn)) void Reset_Handler(void) {
  /* CPACR: CP10 and CP11 full access (bits 20-23). */
  *(volatile uint32_t *)0xE000ED88u |= (0xFu << 20);
  /* Report MemManage/BusFault/UsageFault by name instead of escalating them
   * to HardFault (SHCSR bits 16-18), and trap integer division by zero
   * (CCR.DIV_0_TRP), which the core otherwise answers silently with 0.
   * Unaligned word accesses stay allowed: the Cortex-M4 supports them and
   * packed-data kernels may use them on purpose. */
  *(volatile uint32_t *)0xE000ED24u |= (1u << 16) | (1u << 17) | (1u << 18);
  *(volatile uint32_t *)0xE000ED14u |= (1u << 4);
  __asm__ volatile("dsb\n isb" ::: "memory");

  uint32_t *src = &__etext;
  for (uint32_t *dst = &__data_start__; dst < &__data_end__;) *dst++ = *src++;
  for (uint32_t *dst = &__bss_start__; dst < &__bss_end__;) *dst++ = 0;

  initialise_monitor_handles();
  __libc_init_array();
  exit(main());
}

/* ---- vector table ---------------------------------------------------------- */

#define M4_NUM_IRQS 48 /* more than mps2-an386 wires up; all are unexpected */

typedef void (*vector_t)(void);

__attribute__((section(".isr_vector"), used))
const vector_t m4_vector_table[16 + M4_NUM_IRQS] = {
    [0] = (vector_t)&__stack_top__,
    [1] = Reset_Handler,
    [2] = Fault_Handler,  /* NMI */
    [3] = Fault_Handler,  /* HardFault */
    [4] = Fault_Handler,  /* MemManage */
    [5] = Fault_Handler,  /* BusFault */
    [6] = Fault_Handler,  /* UsageFault */
    [11] = Fault_Handler, /* SVCall: nothing here issues SVC */
    [12] = Fault_Handler, /* DebugMon */
    [14] = Fault_Handler, /* PendSV */
    [15] = SysTick_Handler,
    [16 ... 16 + M4_NUM_IRQS - 1] = Fault_Handler,
};
