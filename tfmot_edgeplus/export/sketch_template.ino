/*
  EdgePlus sketch, written by `edgeplus export arduino` (tfmot_edgeplus).

  What it does: runs the exported model (edgeplus_model.h: the flatbuffer, with a planned
  QuantMCU patch stage as one EDGEPLUS_PATCH_STAGE op when the export had a plan) in
  TensorFlow Lite Micro on the test input stored in flash, and prints the predicted class, the
  latency and the tensor arena used. With a QCore (edgeplus_qcore.h), the model ends at the
  classifier head's input and the head runs in edgeplus::QCoreCalibrator; if the test input
  has a label, one QCore bit-flip calibration then runs on it and is reported.
  Put your own input into the input tensor (and your labels into calibrator.addSample) in
  place of the test input.

  Needs: an Arduino Nano 33 BLE (board package arduino:mbed_nano), the libraries EdgePlus
  (`make arduino` in tfmot_edgeplus) and Chirale_TensorFLowLite 2.0.0 (its header:
  Chirale_TensorFlowLite.h). Serial at 115200 baud.
*/
#include <Chirale_TensorFlowLite.h>
#include <EdgePlus.h>

#include "edgeplus_model.h"
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"
#include "tensorflow/lite/schema/schema_generated.h"
#if __has_include("edgeplus_qcore.h")
#include "edgeplus_qcore.h"
#define SKETCH_HAS_QCORE 1
#endif

namespace {

alignas(16) uint8_t tensor_arena[EDGEPLUS_ARENA_BYTES];
tflite::MicroMutableOpResolver<EDGEPLUS_MODEL_OPS> resolver;
tflite::MicroInterpreter* interpreter = nullptr;
#ifdef SKETCH_HAS_QCORE
alignas(16) uint8_t qcore_ram[EDGEPLUS_QCORE_RAM_BYTES];
edgeplus::QCoreCalibrator calibrator;
#endif

void fail(const char* what, const char* detail) {
  Serial.print("ERROR: ");
  Serial.print(what);
  if (detail != nullptr) {
    Serial.print(": ");
    Serial.print(detail);
  }
  Serial.println();
}

#ifndef SKETCH_HAS_QCORE
// The first maximum of n int8 scores (with a QCore, the calibrator classifies).
int argmax(const int8_t* v, int n) {
  int best = 0;
  for (int i = 1; i < n; ++i) {
    if (v[i] > v[best]) best = i;
  }
  return best;
}
#endif

bool setUpModel() {
  const tflite::Model* model = tflite::GetModel(edgeplus_model);
  if (model->version() != TFLITE_SCHEMA_VERSION) {
    fail("the model's schema version differs from this TFLM's", "export it again");
    return false;
  }
  if (EdgePlusAddModelOps(resolver) != kTfLiteOk) {
    fail("registering the model's operators", "see the TFLM message above");
    return false;
  }
  static tflite::MicroInterpreter static_interpreter(model, resolver, tensor_arena,
                                                     sizeof(tensor_arena));
  interpreter = &static_interpreter;
  if (interpreter->AllocateTensors() != kTfLiteOk) {
    fail("AllocateTensors", "see the TFLM message above (arena too small, or a bad model)");
    return false;
  }
  TfLiteTensor* input = interpreter->input(0);
  if (input->type != kTfLiteInt8 || input->bytes != EDGEPLUS_INPUT_ELEMENTS) {
    fail("the model's input is not the exported int8 tensor", "export it again");
    return false;
  }
  return true;
}

}  // namespace

void setup() {
  Serial.begin(115200);
  while (!Serial && millis() < 5000) {
  }
  if (!setUpModel()) return;
#ifdef SKETCH_HAS_QCORE
  const edgeplus_status qs =
      calibrator.begin(kEdgePlusQCore, qcore_ram, sizeof(qcore_ram), EDGEPLUS_QCORE_CHUNK);
  if (qs != EDGEPLUS_OK) {
    fail("QCoreCalibrator::begin", edgeplus_status_str(qs));
    return;
  }
#endif

  memcpy(interpreter->input(0)->data.int8, edgeplus_test_input, EDGEPLUS_INPUT_ELEMENTS);
  edgeplus::Stopwatch watch;
  if (interpreter->Invoke() != kTfLiteOk) {
    fail("Invoke", "see the TFLM message above");
    return;
  }
  const uint32_t us = watch.elapsedMicros();
  const int8_t* out = interpreter->output(0)->data.int8;
#ifdef SKETCH_HAS_QCORE
  const int32_t cls = calibrator.classify(out);
  if (cls < 0) {
    fail("QCoreCalibrator::classify", edgeplus_status_str(static_cast<edgeplus_status>(cls)));
    return;
  }
#else
  const int cls = argmax(out, EDGEPLUS_OUTPUT_ELEMENTS);
#endif
  Serial.print("class ");
  Serial.print(static_cast<int>(cls));
  Serial.print(" (label ");
  Serial.print(EDGEPLUS_TEST_LABEL);
  Serial.print("), ");
  Serial.print(static_cast<unsigned long>(us));
  Serial.print(" us, arena ");
  Serial.print(static_cast<unsigned long>(interpreter->arena_used_bytes()));
  Serial.print(" of ");
  Serial.print(static_cast<unsigned long>(sizeof(tensor_arena)));
  Serial.println(" bytes");

#ifdef SKETCH_HAS_QCORE
  if (EDGEPLUS_TEST_LABEL >= 0) {
    edgeplus::QCoreReport report;
    edgeplus_status s = calibrator.addSample(out, EDGEPLUS_TEST_LABEL);
    if (s == EDGEPLUS_OK) s = calibrator.calibrate(&report);
    if (s != EDGEPLUS_OK) {
      fail("QCore calibration", edgeplus_status_str(s));
      return;
    }
    edgeplus::printReport(Serial, report);
  }
#endif
}

void loop() { delay(1000); }
