/*
 * Host-only entry point for the pip tflite-micro interpreter:
 *
 *   runtime.Interpreter.from_bytes(model, custom_op_registerers=["EdgeplusRegister"])
 *
 * after the library was loaded with ctypes.CDLL(path, mode=RTLD_GLOBAL)
 * (tfmot_edgeplus/runtime/tflm_ops.py). The only exported symbol of
 * libedgeplus_tflm.so (built with -fvisibility=hidden). AddCustom keeps the name
 * pointer, so it is a string literal.
 */
#include "edgeplus_op_schema.h"
#include "edgeplus_tflm.h"
#include "python/tflite_micro/python_ops_resolver.h"

extern "C" __attribute__((visibility("default"))) bool EdgeplusRegister(
    tflite::PythonOpsResolver* resolver) {
  if (resolver == nullptr) return false;
  return resolver->AddCustom(EDGEPLUS_CONV_MP_CUSTOM_CODE,
                             tflite::edgeplus::Register_EDGEPLUS_CONV_MP()) == kTfLiteOk &&
         resolver->AddCustom(EDGEPLUS_PATCH_STAGE_CUSTOM_CODE,
                             tflite::edgeplus::Register_EDGEPLUS_PATCH_STAGE()) == kTfLiteOk;
}
