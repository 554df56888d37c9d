/* edgeplus::PatchStage: a QuantMCU patch stage run directly with the C executor
 * (edgeplus_patch_stage), outside the interpreter. The EDGEPLUS_PATCH_STAGE op runs the same
 * function inside TFLM; use this class to run a stage on its own (for instance to time it,
 * or to feed a split model).
 *
 *   alignas(16) static uint8_t scratch[EDGEPLUS_STAGE_SCRATCH_BYTES];
 *   edgeplus::PatchStage stage;
 *   edgeplus_status s = stage.begin(program, words, filters, scratch, sizeof(scratch));
 *   if (s != EDGEPLUS_OK) Serial.println(edgeplus_status_str(s));
 *   s = stage.run(input, output);               // stage.lastMicros(): its latency
 *
 * program: the stage program's int32 words (spec: tfmot_edgeplus/core/program.py);
 * filters[slot]: the packed filters of its conv/depthwise steps. Both stay in flash. */
#ifndef EDGEPLUS_PATCH_STAGE_H_
#define EDGEPLUS_PATCH_STAGE_H_

#include <stdint.h>

#include "edgeplus/edgeplus_ops.h"

namespace edgeplus {

class PatchStage {
 public:
  // Scratch bytes run() needs (>= 0), or a negative edgeplus_status for a bad program.
  static int32_t scratchBytes(const int32_t* program, int32_t words);

  // Checks the program and that every filter has its slot's size known; keeps the pointers.
  // EDGEPLUS_ERR_SCRATCH when scratch_bytes is below scratchBytes().
  edgeplus_status begin(const int32_t* program, int32_t words, const int8_t* const* filters,
                        void* scratch, int32_t scratch_bytes);

  // input: the stage input, int8 [H][W][C]; output: the split tensor, int8 [H'][W'][C'].
  edgeplus_status run(const int8_t* input, int8_t* output);

  uint32_t lastMicros() const { return last_micros_; }
  int32_t usedScratchBytes() const { return ctx_.size; }

 private:
  const int32_t* program_ = nullptr;
  int32_t words_ = 0;
  const int8_t* const* filters_ = nullptr;
  edgeplus_context ctx_ = {nullptr, 0};
  uint32_t last_micros_ = 0;
};

}  // namespace edgeplus

#endif  // EDGEPLUS_PATCH_STAGE_H_
