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

// The two TFLM APIs the glue builds against, told apart by their headers:
//  - TFLM of 2023 and later, e.g. commit 90b983c of the pinned tflite-micro wheel: ops are
//    TFLMRegistration (tensorflow/lite/micro/micro_common.h);
//  - Chirale_TensorFLowLite 2.0.0 (the Arduino library, an older TFLM): ops are
//    TfLiteRegistration (tensorflow/lite/c/common.h), with MicroContext and MicroPrintf.
// Older TFLMs (no micro_context.h / micro_log.h) and a TFLM without any of these headers stop
// here with what was found and what is needed.
#if !defined(__has_include)
#error "EdgePlus's TFLM glue needs a compiler with __has_include (GCC >= 5, Clang)"
#elif __has_include("tensorflow/lite/micro/micro_common.h")
#include "tensorflow/lite/micro/micro_common.h"
#define EDGEPLUS_TFLM_API_NAME "TFLM with micro_common.h (TFLMRegistration)"
#define EDGEPLUS_TFLM_REGISTRATION TFLMRegistration
#elif __has_include("tensorflow/lite/micro/micro_context.h") && \
    __has_include("tensorflow/lite/micro/micro_log.h")
#include "tensorflow/lite/c/common.h"
#define EDGEPLUS_TFLM_API_NAME "Chirale_TensorFLowLite 2.0.0 (TfLiteRegistration)"
#define EDGEPLUS_TFLM_REGISTRATION TfLiteRegistration
#elif __has_include("tensorflow/lite/micro/micro_mutable_op_resolver.h")
#error "EdgePlus: the TensorFlow Lite Micro found (tensorflow/lite/micro/micro_mutable_op_resolver.h, but no micro_context.h / micro_log.h) is too old: install Chirale_TensorFLowLite 2.0.0 (arduino-cli lib install Chirale_TensorFLowLite@2.0.0) or build with a TFLM of 2023 or later (commit 90b983c of the tflite-micro wheel)"
#else
#error "EdgePlus: TensorFlow Lite Micro not found (no tensorflow/lite/micro/micro_mutable_op_resolver.h on the include path): install Chirale_TensorFLowLite 2.0.0 (arduino-cli lib install Chirale_TensorFLowLite@2.0.0) and #include <Chirale_TensorFlowLite.h> first, or put a TFLM of 2023 or later (commit 90b983c) on the include path"
#endif

#include <type_traits>

namespace tflite {
namespace edgeplus {

// What the TFLM in use registers an op with (see above).
using OpRegistration = EDGEPLUS_TFLM_REGISTRATION;

// In an op's Register_*: a TFLM whose micro::RegisterOp returns another type (newer than the
// glue) stops here rather than in a conversion error.
#define EDGEPLUS_CHECK_REGISTER_OP(init, prepare, eval)                                        \
  static_assert(std::is_same<decltype(micro::RegisterOp(init, prepare, eval)),                \
                             OpRegistration>::value,                                          \
                "EdgePlus: this TFLM's micro::RegisterOp does not return the registration of " \
                EDGEPLUS_TFLM_API_NAME ": it is newer than the glue supports; use "            \
                "Chirale_TensorFLowLite 2.0.0 or TFLM commit 90b983c")

// EDGEPLUS_CONV_MP: mixed-precision (int8/int4/int2 activations and weights)
// regular or depthwise convolution. Options: edgeplus_op_schema.h.
// Tensors: see the comment at the top of edgeplus_conv_mp.cc.
OpRegistration* Register_EDGEPLUS_CONV_MP();

// EDGEPLUS_PATCH_STAGE: QuantMCU's planned patch stage (conv / depthwise / pad / add run
// patch by patch, per-patch mixed precision). Tensors: edgeplus_patch_stage_op.cc.
OpRegistration* Register_EDGEPLUS_PATCH_STAGE();

}  // namespace edgeplus
}  // namespace tflite

#endif  // EDGEPLUS_TFLM_H_
