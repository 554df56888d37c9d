/*
 * What the edgeplus C kernels' last refusal named (edgeplus_last_error in edgeplus_ops.h),
 * printed by the ops' glue with MicroPrintf after a kernel returns an error status.
 */
#ifndef EDGEPLUS_REFUSAL_H_
#define EDGEPLUS_REFUSAL_H_

#include <stdint.h>

#include "edgeplus/edgeplus_ops.h"
#include "tensorflow/lite/micro/micro_log.h"

namespace tflite {
namespace edgeplus {

// MicroPrintf's %d takes an int: values beyond it print as the nearest int.
inline int RefusalInt(int64_t v) {
  return v > INT32_MAX ? INT32_MAX : (v < INT32_MIN ? INT32_MIN : static_cast<int>(v));
}

// One line: the op, the status, the argument (with its index), its value and the range or
// rule it breaks; then the record is cleared. Nothing when no refusal was recorded (a
// library built with -DEDGEPLUS_ERROR_DETAIL=0).
inline void PrintRefusal(const char* op) {
  const edgeplus_error* e = edgeplus_last_error();
  if (e->status == EDGEPLUS_OK || e->argument == nullptr) {
    return;
  }
  if (e->min <= e->max) {
    MicroPrintf("%s: %s: argument %s (index %d) = %d must lie in [%d, %d].", op,
                edgeplus_status_str(e->status), e->argument, static_cast<int>(e->index),
                RefusalInt(e->value), RefusalInt(e->min), RefusalInt(e->max));
  } else {
    MicroPrintf("%s: %s: argument %s (index %d) = %d: %s.", op, edgeplus_status_str(e->status),
                e->argument, static_cast<int>(e->index), RefusalInt(e->value), e->expected);
  }
  edgeplus_clear_error();
}

}  // namespace edgeplus
}  // namespace tflite

#endif  // EDGEPLUS_REFUSAL_H_
