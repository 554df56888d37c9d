/* An exported sketch's model in the Arduino TFLM library (Chirale_TensorFLowLite, compiled with
 * the core's recipes) on the emulated Cortex-M4F, as the sketch runs it: EdgePlusAddModelOps,
 * a MicroInterpreter on the exported arena size, the exported test input, one Invoke
 * (tests/test_arduino.py builds it with the sketch's edgeplus_model.h/.cpp, compares the output
 * with the host TFLM's bit for bit).
 *
 * Output lines: "ARENA used=N exported=N", "OUTPUT <hex of the int8 output>", "INVOKE_US us=N"
 * (instructions / 64: an estimate of the Nano's 64 MHz, not a board measurement), "DONE";
 * "ERROR ..." on a failure. */
#include <stdio.h>
#include <string.h>

#include <new>

#include "edgeplus_model.h"
#include "m4_harness.h"
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"
#include "tensorflow/lite/schema/schema_generated.h"

// The TFLM library's log sink (its own, Serial, is left out of a bare-metal build).
extern "C" void DebugLog(const char* s) { printf("%s", s); }

namespace {
using Resolver = tflite::MicroMutableOpResolver<EDGEPLUS_MODEL_OPS>;
alignas(16) uint8_t tensor_arena[EDGEPLUS_ARENA_BYTES];
// Built in place and never destroyed, as a sketch's statics: no atexit registration (this
// bare-metal program has no __dso_handle).
alignas(Resolver) uint8_t resolver_memory[sizeof(Resolver)];
alignas(tflite::MicroInterpreter) uint8_t interpreter_memory[sizeof(tflite::MicroInterpreter)];

int fail(const char* what) {
  printf("ERROR %s\n", what);
  return 1;
}
}  // namespace

int main() {
  const tflite::Model* model = tflite::GetModel(edgeplus_model);
  if (model->version() != TFLITE_SCHEMA_VERSION) return fail("schema version");
  Resolver& resolver = *new (resolver_memory) Resolver();
  if (EdgePlusAddModelOps(resolver) != kTfLiteOk) return fail("EdgePlusAddModelOps");
  tflite::MicroInterpreter& interpreter = *new (interpreter_memory)
      tflite::MicroInterpreter(model, resolver, tensor_arena, sizeof(tensor_arena));
  if (interpreter.AllocateTensors() != kTfLiteOk) return fail("AllocateTensors");
  printf("ARENA used=%lu exported=%lu\n",
         static_cast<unsigned long>(interpreter.arena_used_bytes()),
         static_cast<unsigned long>(sizeof(tensor_arena)));
  TfLiteTensor* input = interpreter.input(0);
  if (input->type != kTfLiteInt8 || input->bytes != EDGEPLUS_INPUT_ELEMENTS) {
    return fail("the input is not the exported int8 tensor");
  }
  memcpy(input->data.int8, edgeplus_test_input, EDGEPLUS_INPUT_ELEMENTS);
  m4_counter_start();
  const uint64_t t0 = m4_counter_ticks();
  if (interpreter.Invoke() != kTfLiteOk) return fail("Invoke");
  const uint64_t ticks = m4_counter_ticks() - t0;
  const TfLiteTensor* out = interpreter.output(0);
  printf("OUTPUT ");
  for (size_t i = 0; i < out->bytes; ++i) {
    printf("%02x", static_cast<unsigned>(static_cast<uint8_t>(out->data.int8[i])));
  }
  printf("\nINVOKE_US us=%lu\n",
         static_cast<unsigned long>(ticks * M4_INSTR_PER_TICK / 64u));
  printf("DONE\n");
  return 0;
}
