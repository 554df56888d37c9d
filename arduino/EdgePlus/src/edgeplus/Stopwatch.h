/* edgeplus::Stopwatch: elapsed microseconds from Arduino's micros() (wraps after 71 minutes;
 * unsigned subtraction keeps a single interval right across the wrap). */
#ifndef EDGEPLUS_STOPWATCH_H_
#define EDGEPLUS_STOPWATCH_H_

#include <Arduino.h>
#include <stdint.h>

namespace edgeplus {

class Stopwatch {
 public:
  Stopwatch() : start_(micros()) {}
  void restart() { start_ = micros(); }
  uint32_t elapsedMicros() const { return static_cast<uint32_t>(micros() - start_); }

 private:
  uint32_t start_;
};

}  // namespace edgeplus

#endif  // EDGEPLUS_STOPWATCH_H_
