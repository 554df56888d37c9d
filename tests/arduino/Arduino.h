/* A minimal stand-in for the Arduino core's Arduino.h, so that the EdgePlus library, its
 * examples and exported sketches compile with plain arm-none-eabi-g++ (tests/test_arduino.py)
 * and the TFLM-free parts run in QEMU. It declares only what those sources use; timing and
 * Serial are implemented in arduino_stub.cpp (semihosting printf, the M4 harness's SysTick
 * counter). Not a port of the Arduino core. */
#ifndef EDGEPLUS_TEST_ARDUINO_H_
#define EDGEPLUS_TEST_ARDUINO_H_

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define HIGH 1
#define LOW 0
#define OUTPUT 1
#define INPUT 0
#define LED_BUILTIN 13

unsigned long micros(void);
unsigned long millis(void);
void delay(unsigned long ms);
void pinMode(int pin, int mode);
void digitalWrite(int pin, int value);

#ifdef __cplusplus
class Print {
 public:
  size_t print(const char* s);
  size_t print(char c);
  size_t print(int v);
  size_t print(unsigned int v);
  size_t print(long v);
  size_t print(unsigned long v);
  size_t print(double v, int digits = 2);
  size_t println();
  template <typename T>
  size_t println(T v) {
    size_t n = print(v);
    return n + println();
  }
  size_t println(double v, int digits) {
    size_t n = print(v, digits);
    return n + println();
  }
};

class SerialStandIn : public Print {
 public:
  void begin(unsigned long baud);
  explicit operator bool() const { return true; }
  int available();
  int read();
  int peek();
  long parseInt();
  void flush() {}
};

extern SerialStandIn Serial;
#endif

#endif  // EDGEPLUS_TEST_ARDUINO_H_
