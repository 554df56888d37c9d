// Shim of TFLM's micro_log.h for fuzz_options.cc: the options parser
// (tflm_ops/tflm/edgeplus_options.h) needs only MicroPrintf, which fuzz_options.cc defines
// (formatting every message, so a bad format argument is a sanitizer report). Not TFLM code.
#ifndef TENSORFLOW_LITE_MICRO_MICRO_LOG_H_
#define TENSORFLOW_LITE_MICRO_MICRO_LOG_H_

void MicroPrintf(const char* format, ...) __attribute__((format(printf, 1, 2)));

#endif  // TENSORFLOW_LITE_MICRO_MICRO_LOG_H_
