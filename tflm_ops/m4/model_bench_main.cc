/* A whole converted model in the Arduino TFLM library (Chirale_TensorFLowLite, with its
 * CMSIS-NN kernels, compiled with the Nano 33 BLE core's recipes) on the emulated Cortex-M4F,
 * as a sketch runs it: EdgePlusAddModelOps (the model's builtins and our custom ops), a
 * MicroInterpreter on the exported arena size, one Invoke per input sample with the
 * instruction count around it. Built with an exported sketch's edgeplus_model.h/.cpp and either
 * a generated bench_samples.h (benchmarks/deploy_m4.py: test samples) or none (the sketch's own
 * test input: tests/test_arduino.py); the callers compare every output with the host TFLM's
 * (benchmarks.deploy_m4.parse_output reads the lines).
 *
 * Output lines:
 *   CALIB instr_per_tick_x1000=<n>               (40000 with -icount shift=0)
 *   MODEL_ARENA used=<n> size=<n>                (arena_used_bytes after AllocateTensors)
 *   MODEL_RUN sample=<i> instructions=<n> output=<hex of the int8 output>
 *   MODEL_DONE samples=<n>
 *   MODEL_ERROR what=<...>                       on a failure (exit status 1)
 * Instructions, not cycles: QEMU models no pipeline and no flash wait states. */
#include <stdio.h>
#include <string.h>

#include <new>

#include "bench_common.h"
#include "edgeplus_model.h"
#if __has_include("bench_samples.h")
#include "bench_samples.h"
#else  // the exported sketch's test input
#define BENCH_SAMPLES 1u
#define BENCH_SAMPLE_ELEMENTS EDGEPLUS_INPUT_ELEMENTS
#define bench_samples edgeplus_test_input
#endif
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"
#include "tensorflow/lite/schema/schema_generated.h"

// The TFLM library's log sink (its own, Serial, is left out of a bare-metal build).
extern "C" void DebugLog(const char* s) { printf("%s", s); }

namespace {
using Resolver = tflite::MicroMutableOpResolver<EDGEPLUS_MODEL_OPS>;
alignas(16) uint8_t tensor_arena[EDGEPLUS_ARENA_BYTES];
// Built in place and never destroyed: no atexit registration (this bare-metal program has no
// __dso_handle).
alignas(Resolver) uint8_t resolver_memory[sizeof(Resolver)];
alignas(tflite::MicroInterpreter) uint8_t interpreter_memory[sizeof(tflite::MicroInterpreter)];

int fail(const char* what) {
  printf("MODEL_ERROR what=%s\n", what);
  return 1;
}
}  // namespace

int main() {
  const uint64_t overhead = bench_counter_start();
  const tflite::Model* model = tflite::GetModel(edgeplus_model);
  if (model->version() != TFLITE_SCHEMA_VERSION) return fail("schema_version");
  Resolver& resolver = *new (resolver_memory) Resolver();
  if (EdgePlusAddModelOps(resolver) != kTfLiteOk) return fail("EdgePlusAddModelOps");
  tflite::MicroInterpreter& interpreter = *new (interpreter_memory)
      tflite::MicroInterpreter(model, resolver, tensor_arena, sizeof(tensor_arena));
  if (interpreter.AllocateTensors() != kTfLiteOk) return fail("AllocateTensors");
  printf("MODEL_ARENA used=%lu size=%lu\n",
         static_cast<unsigned long>(interpreter.arena_used_bytes()),
         static_cast<unsigned long>(sizeof(tensor_arena)));
  TfLiteTensor* input = interpreter.input(0);
  if (input->type != kTfLiteInt8 || input->bytes != EDGEPLUS_INPUT_ELEMENTS ||
      EDGEPLUS_INPUT_ELEMENTS != BENCH_SAMPLE_ELEMENTS) {
    return fail("input_not_the_samples_int8_tensor");
  }
  for (unsigned i = 0; i < BENCH_SAMPLES; ++i) {
    memcpy(input->data.int8, bench_samples + i * BENCH_SAMPLE_ELEMENTS, BENCH_SAMPLE_ELEMENTS);
    const uint64_t t0 = counter_now();
    const TfLiteStatus status = interpreter.Invoke();
    const uint64_t t1 = counter_now();
    if (status != kTfLiteOk) return fail("Invoke");
    const uint64_t ticks = t1 - t0 > overhead ? t1 - t0 - overhead : 0;
    // printed as 32 bits (newlib-nano's printf has no %llu)
    if (ticks > 0xFFFFFFFFull / M4_INSTR_PER_TICK) return fail("instructions_over_32_bits");
    const TfLiteTensor* out = interpreter.output(0);
    if (out->type != kTfLiteInt8) return fail("output_not_int8");
    printf("MODEL_RUN sample=%u instructions=%lu output=", i,
           static_cast<unsigned long>(ticks * M4_INSTR_PER_TICK));
    for (size_t k = 0; k < out->bytes; ++k) {
      printf("%02x", static_cast<unsigned>(static_cast<uint8_t>(out->data.int8[k])));
    }
    printf("\n");
  }
  printf("MODEL_DONE samples=%u\n", static_cast<unsigned>(BENCH_SAMPLES));
  return 0;
}
