/*
  MotionContinualCalibration: a watch-style exercise classifier that recalibrates itself on
  the Arduino Nano 33 BLE, without back-propagation.

  What it does: samples the on-board LSM9DS1 (accelerometer + gyroscope) at 50 Hz into 2 s
  windows (a new window every second), normalises and quantizes each window, runs the model's
  backbone in TFLM and its 4-bit classifier head in edgeplus::QCoreCalibrator, and prints the
  predicted exercise. Tell it what you are doing by sending the class number over Serial
  ("0".."6", see the list printed at start; "-" stops labelling, "c" calibrates now): every
  labeled window is scored and kept, and when EDGEPLUS_QCORE_CHUNK of them are kept, one QCore
  calibration runs (bit-flip networks flip 4-bit weights by -1/0/+1 on the stored QCore, the
  memory of your earlier windows and the new ones; a step is kept only if it gets more of your
  windows right without getting the QCore's training windows wrong) and its report is
  printed: your windows right before -> after, and how many of the QCore stay right ("old").

  The model, its QCore and flip networks come from the QCore recipe of tfmot_edgeplus on the
  smartwatch exercise data (seglearn's watch set, 7 shoulder exercises, subjects 1-4);
  edgeplus_model.h / edgeplus_qcore.h record how they were made. That data was recorded with
  the accelerometer in g and the gyroscope in rad/s (inferred from the data: |a| is about 1 at
  rest), so the gyroscope's degrees per second are converted. A watch on the wrist is not a
  board in the hand: expect the uncalibrated accuracy to be low, which is what calibration is
  for.

  Needs: an Arduino Nano 33 BLE (board package arduino:mbed_nano) and the libraries EdgePlus,
  Chirale_TensorFLowLite (2.0.0) and Arduino_LSM9DS1. Serial Monitor at 115200 baud, newline ending.
*/
#include <Arduino_LSM9DS1.h>
#include <Chirale_TensorFlowLite.h>
#include <EdgePlus.h>

#include "edgeplus_model.h"
#include "edgeplus_qcore.h"
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"
#include "tensorflow/lite/schema/schema_generated.h"

namespace {

constexpr int kChannels = EDGEPLUS_INPUT_CHANNELS;  // ax ay az wx wy wz
constexpr int kWindow = EDGEPLUS_INPUT_ELEMENTS / kChannels;
constexpr int kStep = kWindow / 2;
constexpr unsigned long kSamplePeriodUs = 20000;  // 50 Hz
constexpr float kDegToRad = 0.017453292f;

alignas(16) uint8_t tensor_arena[EDGEPLUS_ARENA_BYTES];
alignas(16) uint8_t qcore_ram[EDGEPLUS_QCORE_RAM_BYTES];
tflite::MicroMutableOpResolver<EDGEPLUS_MODEL_OPS> resolver;
tflite::MicroInterpreter* interpreter = nullptr;
edgeplus::QCoreCalibrator calibrator;
bool ready = false;

float window[kWindow][kChannels];
int filled = 0;
unsigned long last_sample_us = 0;
float latest[kChannels];
int label = -1;                   // what the user says they are doing (-1: unknown)
int chunk_right = 0, chunk_seen = 0;  // predictions on the labeled windows since calibrating

void fail(const char* what, const char* detail = nullptr) {
  Serial.print("ERROR: ");
  Serial.print(what);
  if (detail != nullptr) {
    Serial.print(": ");
    Serial.print(detail);
  }
  Serial.println();
}

const char* className(int c) {
  return (c >= 0 && c < EDGEPLUS_CLASS_COUNT) ? edgeplus_class_names[c] : "?";
}

bool setUpModel() {
  const tflite::Model* model = tflite::GetModel(edgeplus_model);
  if (model->version() != TFLITE_SCHEMA_VERSION) {
    fail("the model's schema version is not this TFLM's; export the model again");
    return false;
  }
  if (EdgePlusAddModelOps(resolver) != kTfLiteOk) {
    fail("could not register the model's operators (see the message above)");
    return false;
  }
  static tflite::MicroInterpreter static_interpreter(model, resolver, tensor_arena,
                                                     sizeof(tensor_arena));
  interpreter = &static_interpreter;
  if (interpreter->AllocateTensors() != kTfLiteOk) {
    fail("AllocateTensors failed (see the message above)");
    return false;
  }
  if (interpreter->input(0)->bytes != EDGEPLUS_INPUT_ELEMENTS ||
      interpreter->output(0)->bytes != EDGEPLUS_QCORE_FEATURES) {
    fail("the model does not match edgeplus_model.h / edgeplus_qcore.h; export them together");
    return false;
  }
  const edgeplus_status s =
      calibrator.begin(kEdgePlusQCore, qcore_ram, sizeof(qcore_ram), EDGEPLUS_QCORE_CHUNK);
  if (s != EDGEPLUS_OK) {
    fail("QCoreCalibrator::begin", edgeplus_status_str(s));
    return false;
  }
  return true;
}

// Normalise and quantize the window into the model's int8 input.
void fillInput() {
  int8_t* in = interpreter->input(0)->data.int8;
  for (int t = 0; t < kWindow; ++t) {
    for (int c = 0; c < kChannels; ++c) {
      const float z = (window[t][c] - edgeplus_input_mean[c]) / edgeplus_input_std[c];
      long q = lroundf(z / EDGEPLUS_INPUT_SCALE) + EDGEPLUS_INPUT_ZERO_POINT;
      in[t * kChannels + c] = static_cast<int8_t>(q < -128 ? -128 : (q > 127 ? 127 : q));
    }
  }
}

void calibrateNow() {
  if (calibrator.pendingSamples() == 0) {
    Serial.println("nothing to calibrate on: label some windows first");
    return;
  }
  edgeplus::QCoreReport r;
  const edgeplus_status s = calibrator.calibrate(&r);
  if (s != EDGEPLUS_OK) {
    fail("QCore calibration", edgeplus_status_str(s));
    return;
  }
  Serial.print("live accuracy on the labeled windows since the last calibration: ");
  Serial.print(chunk_seen ? 100.0 * chunk_right / chunk_seen : 0.0, 1);
  Serial.println(" %");
  edgeplus::printReport(Serial, r);
  chunk_right = chunk_seen = 0;
}

void readCommands() {
  while (Serial.available() > 0) {
    const int ch = Serial.read();
    if (ch >= '0' && ch < '0' + EDGEPLUS_QCORE_CLASSES) {
      label = ch - '0';
      Serial.print("labelling windows as ");
      Serial.println(className(label));
    } else if (ch == '-') {
      label = -1;
      Serial.println("not labelling");
    } else if (ch == 'c') {
      calibrateNow();
    }
  }
}

void classifyWindow() {
  fillInput();
  edgeplus::Stopwatch watch;
  if (interpreter->Invoke() != kTfLiteOk) {
    fail("Invoke failed (see the message above)");
    ready = false;
    return;
  }
  const int8_t* features = interpreter->output(0)->data.int8;
  const int32_t predicted = calibrator.classify(features);
  const uint32_t us = watch.elapsedMicros();
  if (predicted < 0) {
    fail("QCoreCalibrator::classify", edgeplus_status_str(static_cast<edgeplus_status>(predicted)));
    ready = false;
    return;
  }
  Serial.print(className(predicted));
  Serial.print(" (");
  Serial.print(static_cast<unsigned long>(us));
  Serial.print(" us)");
  if (label >= 0) {
    chunk_seen += 1;
    chunk_right += predicted == label;
    const edgeplus_status s = calibrator.addSample(features, label);
    if (s != EDGEPLUS_OK) fail("QCoreCalibrator::addSample", edgeplus_status_str(s));
    Serial.print(predicted == label ? " right" : " wrong");
  }
  Serial.println();
  if (calibrator.pendingSamples() == calibrator.chunkCapacity()) calibrateNow();
}

}  // namespace

void setup() {
  Serial.begin(115200);
  while (!Serial && millis() < 5000) {
  }
  Serial.println("EdgePlus MotionContinualCalibration");
  if (!IMU.begin()) {
    fail("the LSM9DS1 IMU did not start (is this a Nano 33 BLE, rev 1?)");
    return;
  }
  if (!setUpModel()) return;
  Serial.print("classes:");
  for (int c = 0; c < EDGEPLUS_QCORE_CLASSES; ++c) {
    Serial.print(' ');
    Serial.print(c);
    Serial.print('=');
    Serial.print(className(c));
  }
  Serial.println();
  Serial.println("send a class number while you do that exercise, '-' to stop, 'c' to calibrate");
  ready = true;
}

void loop() {
  if (!ready) {  // setup() printed why
    delay(1000);
    return;
  }
  readCommands();
  float x, y, z;
  if (IMU.accelerationAvailable() && IMU.readAcceleration(x, y, z)) {
    latest[0] = x;  // g
    latest[1] = y;
    latest[2] = z;
  }
  if (IMU.gyroscopeAvailable() && IMU.readGyroscope(x, y, z)) {
    latest[3] = x * kDegToRad;  // degrees/s -> rad/s
    latest[4] = y * kDegToRad;
    latest[5] = z * kDegToRad;
  }
  const unsigned long now = micros();
  if (now - last_sample_us < kSamplePeriodUs) return;
  last_sample_us = now;
  memcpy(window[filled], latest, sizeof(latest));
  if (++filled < kWindow) return;
  classifyWindow();
  // keep the last half: the next window overlaps this one by 50 %
  memmove(window[0], window[kStep], sizeof(float) * kChannels * (kWindow - kStep));
  filled = kWindow - kStep;
}
