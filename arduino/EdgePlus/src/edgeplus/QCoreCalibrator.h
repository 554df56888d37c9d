/* edgeplus::QCoreCalibrator: QCore's on-device calibration of a deployed model's classifier
 * head (a chain of int8 FULLY_CONNECTED layers at W4 or W8), without back-propagation.
 *
 * The TFLM model on the device is the backbone: its int8 output is the head's input (the
 * "features"). The head's weights live in RAM (a copy of the deployed ones, calibration
 * changes them), with the QCore (a few stored labeled feature vectors and their miss counts)
 * and the samples labeled since the last calibration. `edgeplus export arduino --qcore`
 * writes the QCoreSpec (edgeplus_qcore.h). The steps are the C kernels edgeplus_qcore_step /
 * edgeplus_qcore_refresh, bit-exact with tfmot_edgeplus.calibration.BitFlipCalibrator:
 *
 *   alignas(16) static uint8_t ram[EDGEPLUS_QCORE_RAM_BYTES];   // QCoreCalibrator::ramBytes
 *   edgeplus::QCoreCalibrator cal;
 *   cal.begin(kEdgePlusQCore, ram, sizeof(ram), EDGEPLUS_QCORE_CHUNK);
 *   int cls = cal.classify(features);                 // features: the backbone's int8 output
 *   cal.addSample(features, label);                   // a labeled sample, kept for the next step
 *   edgeplus::QCoreReport r;
 *   cal.calibrate(&r);   // up to max_steps bit-flip steps on QCore + samples, each kept only if
 *                        // it gets more of them right; then the QCore is refreshed from them
 */
#ifndef EDGEPLUS_QCORE_CALIBRATOR_H_
#define EDGEPLUS_QCORE_CALIBRATOR_H_

#include <Arduino.h>  // Print (Serial is one)
#include <stdint.h>

#include "edgeplus/edgeplus_ops.h"

namespace edgeplus {

// One head layer as exported (flash): the deployed weights, requantization and its flip
// network (nullptr: the layer is not calibrated).
struct QCoreLayerSpec {
  int32_t out_features, in_features;
  int32_t w_bits;             // 4 or 8, weights packed at w_bits, [out][in]
  const int8_t* weights;      // edgeplus_packed_bytes(out * in, w_bits) bytes
  const int32_t* bias;        // [out] or nullptr
  const int32_t* multiplier;  // [out]
  const int32_t* shift;       // [out]
  int32_t input_zero_point, output_zero_point, act_min, act_max;
  const edgeplus_flipnet* net;
};

// Everything `edgeplus export arduino --qcore` stores about a QCore calibrator.
struct QCoreSpec {
  int32_t num_layers;  // 1..EDGEPLUS_QCORE_MAX_LAYERS
  const QCoreLayerSpec* layers;
  int32_t margin, tries, max_steps;
  int32_t core_size;     // QCore capacity
  int32_t core_items;    // stored items (<= core_size)
  const int8_t* core_x;  // [core_items][layers[0].in_features]
  const int32_t* core_y;       // [core_items]
  const int32_t* core_counts;  // [core_items] miss counts
  uint32_t rng_state;          // the refresh's xorshift32 state (nonzero)
};

// What one calibrate() did (BitFlipCalibrator.calibrate's ChunkReport).
struct QCoreReport {
  int32_t samples;         // QCore items + new samples the steps saw
  int32_t steps;           // bit-flip steps run
  int32_t kept;            // steps kept (each got more right, or as many with a larger margin)
  int32_t rolled_back;     // steps whose candidate changed weights but was rolled back
  int32_t changed;         // weights changed by the kept steps
  int32_t correct_before;  // of `samples`, right before the first step
  int32_t correct_after;   // ... with the last candidate tried
  int32_t core_from_chunk; // QCore items now coming from the new samples
  uint32_t micros;         // wall time of the steps and the refresh
};

// Prints one line: "QCore: 3 of 4 steps kept, 240 weights changed, 10 -> 12 of 16 right, 5517 us".
void printReport(Print& out, const QCoreReport& report);

class QCoreCalibrator {
 public:
  // RAM bytes begin() needs for `chunk_capacity` new samples between calibrations (> 0), or
  // a negative edgeplus_status when the spec is invalid.
  static int32_t ramBytes(const QCoreSpec& spec, int32_t chunk_capacity);

  // Copies the head weights and the QCore into `ram` (16-byte alignment not needed).
  edgeplus_status begin(const QCoreSpec& spec, void* ram, int32_t ram_bytes,
                        int32_t chunk_capacity);

  int32_t inputSize() const { return head_.num_layers ? layers_[0].in_features : 0; }
  int32_t numClasses() const {
    return head_.num_layers ? layers_[head_.num_layers - 1].out_features : 0;
  }

  // int8 logits [numClasses()] of one feature vector [inputSize()] with the current weights.
  edgeplus_status predict(const int8_t* features, int8_t* logits);
  // The predicted class (first maximum), or a negative edgeplus_status.
  int32_t classify(const int8_t* features);

  // Keep a labeled sample for the next calibrate(). EDGEPLUS_ERR_ARG for a label outside
  // [0, numClasses()), EDGEPLUS_ERR_DIMS when chunk_capacity samples are already pending.
  edgeplus_status addSample(const int8_t* features, int32_t label);
  int32_t pendingSamples() const { return pending_; }
  int32_t chunkCapacity() const { return chunk_capacity_; }

  // One calibration on QCore + the pending samples (EDGEPLUS_ERR_DIMS if none is pending);
  // the pending samples are used up. On an error the QCore and the pending samples stay as
  // they were, and the weights are those of the last step kept before it.
  edgeplus_status calibrate(QCoreReport* report);

  // State, for checks and for saving: the QCore and the head weights (packed, as exported).
  int32_t coreItems() const { return core_n_; }
  const int8_t* coreFeatures(int32_t i) const { return items_x_ + i * inputSize(); }
  int32_t coreLabel(int32_t i) const { return items_y_[i]; }
  int32_t coreCount(int32_t i) const { return prior_[i]; }
  uint32_t rngState() const { return rng_; }
  const int8_t* layerWeights(int32_t l) const { return layers_[l].weights; }
  int32_t layerWeightBytes(int32_t l) const;
  const edgeplus_qcore_head& head() const { return head_; }

 private:
  edgeplus_fc_layer layers_[EDGEPLUS_QCORE_MAX_LAYERS];
  const edgeplus_flipnet* nets_[EDGEPLUS_QCORE_MAX_LAYERS];
  edgeplus_qcore_head head_ = {0, nullptr, nullptr, 0, 0};
  int32_t max_steps_ = 0, core_size_ = 0, chunk_capacity_ = 0;
  int32_t core_n_ = 0, pending_ = 0;
  uint32_t rng_ = 0;
  int8_t* items_x_ = nullptr;   // [core_size + chunk_capacity][in]: QCore rows, then pending
  int32_t* items_y_ = nullptr;  // [core_size + chunk_capacity]
  int32_t* prior_ = nullptr;    // [core_size + chunk_capacity] miss counts (0 for new samples)
  uint8_t* history_ = nullptr;  // [(max_steps + 1) * (core_size + chunk_capacity)]
  int32_t* chosen_ = nullptr;   // [core_size]
  int32_t* counts_ = nullptr;   // [core_size]
  int8_t* next_x_ = nullptr;    // [core_size][in]: the refreshed QCore before it is moved in
  int32_t* next_y_ = nullptr;   // [core_size]
  int8_t* act_ = nullptr;       // [2][widest layer]: predict()'s activations
  int32_t widest_ = 0;
  edgeplus_context ctx_ = {nullptr, 0};
};

}  // namespace edgeplus

#endif  // EDGEPLUS_QCORE_CALIBRATOR_H_
