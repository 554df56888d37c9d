/*
  PatchInference: a mixed-precision, patch-based model on the Arduino Nano 33 BLE.

  What it does: runs a small MobileNetV2-style Fashion-MNIST classifier (48x48 grey images)
  whose memory-hungry first layers were planned by tfmot_edgeplus (QuantMCU): they run patch
  by patch, some patches with 4- or 2-bit activations, inside one EDGEPLUS_PATCH_STAGE
  operator; the rest runs as ordinary TFLM int8 operators. Every two seconds it classifies the
  test image stored in flash and prints the class, the latency and the tensor arena used.
  The model and its figures (accuracy, arena) are in edgeplus_model.h; regenerate them with
  `python -m tfmot_edgeplus.export.examples`, or export your own model with
  `edgeplus export arduino --model m.tflite --plan m_plan.json --out MySketch`.

  Needs: an Arduino Nano 33 BLE (board package arduino:mbed_nano) and the libraries EdgePlus
  and Chirale_TensorFLowLite (2.0.0). Serial Monitor at 115200 baud.
*/
#include <Chirale_TensorFlowLite.h>
#include <EdgePlus.h>

#include "edgeplus_model.h"
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"
#include "tensorflow/lite/schema/schema_generated.h"

namespace {

alignas(16) uint8_t tensor_arena[EDGEPLUS_ARENA_BYTES];
tflite::MicroMutableOpResolver<EDGEPLUS_MODEL_OPS> resolver;
tflite::MicroInterpreter* interpreter = nullptr;
bool ready = false;

void fail(const char* what) {
  Serial.print("ERROR: ");
  Serial.println(what);
}

const char* className(int c) {
  return (c >= 0 && c < EDGEPLUS_CLASS_COUNT) ? edgeplus_class_names[c] : "?";
}

}  // namespace

void setup() {
  Serial.begin(115200);
  while (!Serial && millis() < 5000) {
  }
  Serial.println("EdgePlus PatchInference");

  const tflite::Model* model = tflite::GetModel(edgeplus_model);
  if (model->version() != TFLITE_SCHEMA_VERSION) {
    fail("the model's schema version is not this TFLM's; export the model again");
    return;
  }
  if (EdgePlusAddModelOps(resolver) != kTfLiteOk) {
    fail("could not register the model's operators (see the message above)");
    return;
  }
  static tflite::MicroInterpreter static_interpreter(model, resolver, tensor_arena,
                                                     sizeof(tensor_arena));
  interpreter = &static_interpreter;
  if (interpreter->AllocateTensors() != kTfLiteOk) {
    fail("AllocateTensors failed: the arena is too small or the model is malformed (see above)");
    return;
  }
  const TfLiteTensor* input = interpreter->input(0);
  if (input->type != kTfLiteInt8 || input->bytes != EDGEPLUS_INPUT_ELEMENTS) {
    fail("the model's input is not the int8 tensor edgeplus_model.h describes");
    return;
  }
  Serial.print("model ");
  Serial.print(static_cast<unsigned long>(EDGEPLUS_MODEL_BYTES));
  Serial.print(" B in flash, patch stage: ");
  Serial.print(EDGEPLUS_HAS_PATCH_STAGE ? "yes" : "no");
  Serial.print(", arena used ");
  Serial.print(static_cast<unsigned long>(interpreter->arena_used_bytes()));
  Serial.print(" of ");
  Serial.print(static_cast<unsigned long>(sizeof(tensor_arena)));
  Serial.println(" B");
  ready = true;
}

void loop() {
  if (!ready) {  // setup() printed why
    delay(1000);
    return;
  }
  memcpy(interpreter->input(0)->data.int8, edgeplus_test_input, EDGEPLUS_INPUT_ELEMENTS);
  edgeplus::Stopwatch watch;
  if (interpreter->Invoke() != kTfLiteOk) {
    fail("Invoke failed (see the message above)");
    ready = false;
    return;
  }
  const uint32_t us = watch.elapsedMicros();
  const int8_t* scores = interpreter->output(0)->data.int8;
  int best = 0;
  for (int c = 1; c < EDGEPLUS_OUTPUT_ELEMENTS; ++c) {
    if (scores[c] > scores[best]) best = c;
  }
  Serial.print("class ");
  Serial.print(best);
  Serial.print(" (");
  Serial.print(className(best));
  Serial.print("), label ");
  Serial.print(EDGEPLUS_TEST_LABEL);
  Serial.print(" (");
  Serial.print(className(EDGEPLUS_TEST_LABEL));
  Serial.print("), ");
  Serial.print(static_cast<unsigned long>(us));
  Serial.println(" us");
  delay(2000);
}
