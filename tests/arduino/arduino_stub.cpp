/* Implementation of the Arduino.h stand-in for the test programs: Serial writes to stdout
 * (QEMU's semihosting console on the M4) and reads nothing. micros() on the M4 is the
 * harness's instruction counter converted at one instruction per cycle at the Nano's 64 MHz
 * (an instruction count in virtual time, not a measured latency); on the host (the sanitizer
 * build of the same program) it is the monotonic clock. */
#include <stdio.h>

#include "Arduino.h"

SerialStandIn Serial;

#if defined(__arm__)
#include "m4_harness.h"

static bool counter_started = false;

unsigned long micros(void) {
  if (!counter_started) {
    m4_counter_start();
    counter_started = true;
  }
  return static_cast<unsigned long>(m4_counter_ticks() * M4_INSTR_PER_TICK / 64u);
}
#else
#include <time.h>

unsigned long micros(void) {
  timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return static_cast<unsigned long>(t.tv_sec * 1000000ull + t.tv_nsec / 1000);
}
#endif
unsigned long millis(void) { return micros() / 1000u; }
void delay(unsigned long ms) {
  const unsigned long t0 = millis();
  while (millis() - t0 < ms) {
  }
}
void pinMode(int, int) {}
void digitalWrite(int, int) {}

size_t Print::print(const char* s) {
  return fputs(s, stdout) >= 0 ? strlen(s) : 0;
}
size_t Print::print(char c) { return putchar(c) == EOF ? 0 : 1; }
size_t Print::print(int v) { return static_cast<size_t>(printf("%d", v)); }
size_t Print::print(unsigned int v) { return static_cast<size_t>(printf("%u", v)); }
size_t Print::print(long v) { return static_cast<size_t>(printf("%ld", v)); }
size_t Print::print(unsigned long v) { return static_cast<size_t>(printf("%lu", v)); }
size_t Print::print(double v, int digits) { return static_cast<size_t>(printf("%.*f", digits, v)); }
size_t Print::println() { return print('\n'); }

void SerialStandIn::begin(unsigned long) {}
int SerialStandIn::available() { return 0; }
int SerialStandIn::read() { return -1; }
int SerialStandIn::peek() { return -1; }
long SerialStandIn::parseInt() { return 0; }
