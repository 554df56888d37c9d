/*
 * TFLite Micro registrations of the edgeplus custom ops.
 *
 * On a device (Arduino / any TFLM build):
 *
 *   static tflite::MicroMutableOpResolver<N> resolver;
 *   resolver.AddCustom(EDGEPLUS_CONV_MP_CUSTOM_CODE,
 *                      tflite::edgeplus::Register_EDGEPLUS_CONV_MP());
 *   resolver.AddCustom(EDGEPLUS_PATCH_STAGE_CUSTOM_CODE,
 *                      tflite::edgeplus::Register_EDGEPLUS_PATCH_STAGE());
 *
 * On the host, the pip tflite-micro interpreter loads libedgeplus_tflm.so and calls
 * `extern "C" bool EdgeplusRegister(tflite::PythonOpsResolver*)`
 * (edgeplus_python_registerer.cc; see tfmot_edgeplus/runtime/tflm_ops.py).
 */
#ifndef EDGEPLUS_TFLM_H_
#define EDGEPLUS_TFLM_H_

#include "edgeplus_op_schema.h"
#include "tensorflow/lite/micro/micro_common.h"

namespace tflite {
namespace edgeplus {

// EDGEPLUS_CONV_MP: mixed-precision (int8/int4/int2 activations and weights)
// regular or depthwise convolution. Options: edgeplus_op_schema.h.
// Tensors: see the comment at the top of edgeplus_conv_mp.cc.
TFLMRegistration* Register_EDGEPLUS_CONV_MP();

// EDGEPLUS_PATCH_STAGE: QuantMCU's planned patch stage (conv / depthwise / pad / add run
// patch by patch, per-patch mixed precision). Tensors: edgeplus_patch_stage_op.cc.
TFLMRegistration* Register_EDGEPLUS_PATCH_STAGE();

}  // namespace edgeplus
}  // namespace tflite

#endif  // EDGEPLUS_TFLM_H_
