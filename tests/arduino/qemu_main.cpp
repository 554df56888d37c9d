/* The EdgePlus library's TFLM-free code paths on the emulated Cortex-M4F, linked against the
 * Nano's clamped 1 MB / 256 KB script (tests/test_arduino.py builds and runs it, and compares
 * every line with the host reference):
 *
 *   - edgeplus::PatchStage on a lowered stage program (arduino_case.h: program, filters, input);
 *   - edgeplus::QCoreCalibrator on an exported sketch's edgeplus_qcore.h: ramBytes, predict of
 *     every sample, then per chunk of EDGEPLUS_QCORE_CHUNK samples addSample and calibrate
 *     (the second chunk's calibration sees the memory the first one left), then the head
 *     weights, QCore, memory and rng state; a begin() with a QCore of another head, refused.
 *
 * Output lines: "KEY k=v ..." with byte buffers as hex; "DONE" last. The *_US lines are
 * micros() of the Arduino.h stand-in: instructions / 64 (one per cycle at the Nano's 64 MHz),
 * an estimate, not a latency measured on the board. */
#define EDGEPLUS_NO_TFLM 1
#include <Arduino.h>
#include <EdgePlus.h>
#include <stdio.h>

#include "arduino_case.h"
#include "edgeplus_qcore.h"

static void hex(const char* key, const int8_t* v, int32_t n) {
  printf("%s ", key);
  for (int32_t i = 0; i < n; ++i) printf("%02x", static_cast<unsigned>(static_cast<uint8_t>(v[i])));
  printf("\n");
}

static int fail(const char* what, edgeplus_status s) {
  printf("ERROR %s: %s\n", what, edgeplus_status_str(s));
  return 1;
}

alignas(16) static uint8_t stage_scratch[CASE_STAGE_SCRATCH_BYTES];
static int8_t stage_output[CASE_STAGE_OUTPUT_BYTES];
alignas(16) static uint8_t qcore_ram[EDGEPLUS_QCORE_RAM_BYTES];

static int run_stage() {
  edgeplus::PatchStage stage;
  const int32_t need = edgeplus::PatchStage::scratchBytes(case_program, CASE_STAGE_WORDS);
  printf("STAGE_SCRATCH bytes=%ld\n", static_cast<long>(need));
  edgeplus_status s = stage.begin(case_program, CASE_STAGE_WORDS, case_filters, stage_scratch,
                                  sizeof(stage_scratch));
  if (s != EDGEPLUS_OK) return fail("PatchStage::begin", s);
  s = stage.run(case_stage_input, stage_output);
  if (s != EDGEPLUS_OK) return fail("PatchStage::run", s);
  hex("STAGE_OUTPUT", stage_output, CASE_STAGE_OUTPUT_BYTES);
  printf("STAGE_US us=%lu\n", static_cast<unsigned long>(stage.lastMicros()));
  return 0;
}

static void print_report(const edgeplus::QCoreReport& r) {
  printf("REPORT samples=%ld steps=%ld kept=%ld rolled_back=%ld changed=%ld correct_before=%ld "
         "correct_after=%ld guard_correct=%ld guard_items=%ld memory_from_chunk=%ld\n",
         static_cast<long>(r.samples), static_cast<long>(r.steps), static_cast<long>(r.kept),
         static_cast<long>(r.rolled_back), static_cast<long>(r.changed),
         static_cast<long>(r.correct_before), static_cast<long>(r.correct_after),
         static_cast<long>(r.guard_correct), static_cast<long>(r.guard_items),
         static_cast<long>(r.memory_from_chunk));
  printf("CALIBRATE_US us=%lu\n", static_cast<unsigned long>(r.micros));
  edgeplus::printReport(Serial, r);
}

static int run_qcore() {
  edgeplus::QCoreCalibrator cal;
  const int32_t need = edgeplus::QCoreCalibrator::ramBytes(kEdgePlusQCore, EDGEPLUS_QCORE_CHUNK);
  printf("QCORE_RAM bytes=%ld exported=%ld\n", static_cast<long>(need),
         static_cast<long>(EDGEPLUS_QCORE_RAM_BYTES));
  edgeplus_status s = cal.begin(kEdgePlusQCore, qcore_ram, sizeof(qcore_ram), EDGEPLUS_QCORE_CHUNK);
  if (s != EDGEPLUS_OK) return fail("QCoreCalibrator::begin", s);
  int8_t logits[EDGEPLUS_QCORE_CLASSES];
  edgeplus::QCoreReport r;
  for (int32_t i = 0; i < CASE_CHUNK_N; ++i) {
    const int8_t* x = case_chunk_x + i * EDGEPLUS_QCORE_FEATURES;
    s = cal.predict(x, logits);
    if (s != EDGEPLUS_OK) return fail("QCoreCalibrator::predict", s);
    hex("LOGITS", logits, EDGEPLUS_QCORE_CLASSES);
    s = cal.addSample(x, case_chunk_y[i]);
    if (s != EDGEPLUS_OK) return fail("QCoreCalibrator::addSample", s);
    if (cal.pendingSamples() < cal.chunkCapacity() && i + 1 < CASE_CHUNK_N) continue;
    s = cal.calibrate(&r);
    if (s != EDGEPLUS_OK) return fail("QCoreCalibrator::calibrate", s);
    print_report(r);
  }
  for (int32_t l = 0; l < cal.head().num_layers; ++l) {
    hex("WEIGHTS", cal.layerWeights(l), cal.layerWeightBytes(l));
  }
  printf("CORE guard_min_correct=%ld labels=", static_cast<long>(cal.guardMinCorrect()));
  for (int32_t i = 0; i < cal.coreItems(); ++i) printf("%ld,", static_cast<long>(cal.coreLabel(i)));
  printf("\n");
  hex("CORE_X", cal.coreFeatures(0), cal.coreItems() * EDGEPLUS_QCORE_FEATURES);
  printf("MEMORY rng=%lu labels=", static_cast<unsigned long>(cal.rngState()));
  for (int32_t i = 0; i < cal.memoryItems(); ++i) {
    printf("%ld,", static_cast<long>(cal.memoryLabel(i)));
  }
  printf(" counts=");
  for (int32_t i = 0; i < cal.memoryItems(); ++i) {
    printf("%ld,", static_cast<long>(cal.memoryCount(i)));
  }
  printf("\n");
  hex("MEMORY_X", cal.memoryFeatures(0), cal.memoryItems() * EDGEPLUS_QCORE_FEATURES);
  // what a device must refuse: an empty chunk, a label out of range, a QCore stored for
  // another head (its weights and items stay)
  s = cal.calibrate(&r);
  printf("EMPTY_CHUNK %s\n", edgeplus_status_str(s));
  s = cal.addSample(case_chunk_x, EDGEPLUS_QCORE_CLASSES);
  printf("BAD_LABEL %s\n", edgeplus_status_str(s));
  edgeplus::QCoreSpec other = kEdgePlusQCore;
  other.features += 1;
  s = cal.begin(other, qcore_ram, sizeof(qcore_ram), EDGEPLUS_QCORE_CHUNK);
  printf("OTHER_HEAD %s\n", edgeplus_status_str(s));
  for (int32_t l = 0; l < cal.head().num_layers; ++l) {
    hex("WEIGHTS_AFTER_REFUSAL", cal.layerWeights(l), cal.layerWeightBytes(l));
  }
  return 0;
}

static void refused(const char* what, edgeplus_status s) {
  printf(" %s=%s", what, edgeplus_status_str(s));
}

// What the library must refuse, with a status, without touching anything.
static void run_refusals() {
  edgeplus::PatchStage stage;
  const int32_t words = CASE_STAGE_WORDS;
  const int32_t need = edgeplus::PatchStage::scratchBytes(case_program, words);
  printf("REFUSE");
  refused("stage_run_before_begin", stage.run(case_stage_input, stage_output));
  refused("stage_small_scratch",
          stage.begin(case_program, words, case_filters, stage_scratch, need - 1));
  refused("stage_truncated", stage.begin(case_program, words - 1, case_filters, stage_scratch,
                                         sizeof(stage_scratch)));
  edgeplus::QCoreCalibrator cal;
  const int32_t chunk = EDGEPLUS_QCORE_CHUNK;
  const int32_t ram = edgeplus::QCoreCalibrator::ramBytes(kEdgePlusQCore, chunk);
  refused("qcore_small_ram", cal.begin(kEdgePlusQCore, qcore_ram, ram - 1, chunk));
  refused("qcore_chunk_0", cal.begin(kEdgePlusQCore, qcore_ram, ram, 0));
  edgeplus::QCoreSpec bad = kEdgePlusQCore;
  bad.rng_state = 0;
  refused("qcore_rng_0", cal.begin(bad, qcore_ram, ram, chunk));
  bad = kEdgePlusQCore;
  bad.core_items = bad.core_size + 1;
  refused("qcore_core_items", cal.begin(bad, qcore_ram, ram, chunk));
  bad = kEdgePlusQCore;
  bad.classes += 1;
  refused("qcore_other_classes", cal.begin(bad, qcore_ram, ram, chunk));
  bad = kEdgePlusQCore;
  bad.guard_min_correct = bad.core_items + 1;
  refused("qcore_guard_over_core", cal.begin(bad, qcore_ram, ram, chunk));
  bad = kEdgePlusQCore;
  bad.guard_slack = -1;
  refused("qcore_guard_slack", cal.begin(bad, qcore_ram, ram, chunk));
  bad = kEdgePlusQCore;
  bad.memory_x = nullptr;  // the case's memory is not empty
  refused("qcore_memory_null", cal.begin(bad, qcore_ram, ram, chunk));
  int8_t logits[EDGEPLUS_QCORE_CLASSES];
  refused("qcore_predict_before_begin", cal.predict(case_chunk_x, logits));
  printf("\n");
}

int main(void) {
  run_refusals();
  const int failures = run_stage() + run_qcore();
  printf("DONE\n");
  return failures;
}
