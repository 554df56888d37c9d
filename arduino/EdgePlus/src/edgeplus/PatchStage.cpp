#include "edgeplus/PatchStage.h"

#include "edgeplus/Stopwatch.h"

namespace edgeplus {

int32_t PatchStage::scratchBytes(const int32_t* program, int32_t words) {
  return edgeplus_patch_stage_get_buffer_size(program, words);
}

edgeplus_status PatchStage::begin(const int32_t* program, int32_t words,
                                  const int8_t* const* filters, void* scratch,
                                  int32_t scratch_bytes) {
  program_ = nullptr;
  if (program == nullptr || filters == nullptr || scratch == nullptr) return EDGEPLUS_ERR_NULL;
  const int32_t need = edgeplus_patch_stage_get_buffer_size(program, words);
  if (need < 0) return static_cast<edgeplus_status>(need);
  if (scratch_bytes < need) return EDGEPLUS_ERR_SCRATCH;
  for (int32_t slot = 0;; ++slot) {  // every weight slot has a filter
    int32_t bytes = 0;
    if (edgeplus_patch_stage_weight_size(program, words, slot, &bytes) != EDGEPLUS_OK) break;
    if (filters[slot] == nullptr) return EDGEPLUS_ERR_NULL;
  }
  program_ = program;
  words_ = words;
  filters_ = filters;
  ctx_.buf = scratch;
  ctx_.size = scratch_bytes;
  return EDGEPLUS_OK;
}

edgeplus_status PatchStage::run(const int8_t* input, int8_t* output) {
  if (program_ == nullptr) return EDGEPLUS_ERR_NULL;  // begin() failed or was not called
  Stopwatch watch;
  const edgeplus_status s = edgeplus_patch_stage(&ctx_, program_, words_, filters_, input, output);
  last_micros_ = watch.elapsedMicros();
  return s;
}

}  // namespace edgeplus
