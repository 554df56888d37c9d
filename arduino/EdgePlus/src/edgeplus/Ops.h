/* edgeplus::AddOps: register the tfmot_edgeplus custom ops into a TFLM op resolver.
 *
 *   static tflite::MicroMutableOpResolver<3 + edgeplus::kNumOps> resolver;
 *   resolver.AddConv2D(); ...                      // the model's builtin ops
 *   if (edgeplus::AddOps(resolver) != kTfLiteOk) { ...print and stop... }
 *
 * A sketch made by `edgeplus export arduino` gets EdgePlusAddModelOps(resolver) in its
 * edgeplus_model.h, which adds the model's builtins and these. */
#ifndef EDGEPLUS_OPS_H_
#define EDGEPLUS_OPS_H_

#include "edgeplus/tflm/edgeplus_tflm.h"
#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"

namespace edgeplus {

// How many resolver slots AddOps takes.
constexpr unsigned int kNumOps = 2;

template <unsigned int N>
TfLiteStatus AddOps(tflite::MicroMutableOpResolver<N>& resolver) {
  TfLiteStatus s = resolver.AddCustom(EDGEPLUS_CONV_MP_CUSTOM_CODE,
                                      tflite::edgeplus::Register_EDGEPLUS_CONV_MP());
  if (s != kTfLiteOk) return s;
  return resolver.AddCustom(EDGEPLUS_PATCH_STAGE_CUSTOM_CODE,
                            tflite::edgeplus::Register_EDGEPLUS_PATCH_STAGE());
}

}  // namespace edgeplus

#endif  // EDGEPLUS_OPS_H_
