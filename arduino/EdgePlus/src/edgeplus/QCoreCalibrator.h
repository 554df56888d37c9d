/* edgeplus::QCoreCalibrator: QCore's on-device calibration of a deployed model's classifier
 * head (a chain of int8 FULLY_CONNECTED layers at W4 or W8), without back-propagation.
 *
 * The TFLM model on the device is the backbone: its int8 output is the head's input (the
 * "features"). The head's weights live in RAM (a copy of the deployed ones, calibration
 * changes them), with the items a calibration sees: the QCore (labeled feature vectors drawn
 * from the training data, fixed: the device's memory of what the model knew), the new-data
 * memory (items kept from earlier calibrations, with their miss counts) and the samples
 * labeled since the last calibration. `edgeplus export arduino --qcore` writes the QCoreSpec
 * (edgeplus_qcore.h). The steps are the C kernels edgeplus_qcore_step (the QCore guarded: a
 * step is kept only if it raises the score on the new samples and leaves at least
 * guard_min_correct QCore items right; after each calibration the guard ratchets up to the
 * QCore items then right, less guard_slack) and edgeplus_qcore_refresh (over the memory and
 * the new samples), bit-exact with tfmot_edgeplus.calibration.BitFlipCalibrator.calibrate_features:
 *
 *   alignas(16) static uint8_t ram[EDGEPLUS_QCORE_RAM_BYTES];   // QCoreCalibrator::ramBytes
 *   edgeplus::QCoreCalibrator cal;
 *   cal.begin(kEdgePlusQCore, ram, sizeof(ram), EDGEPLUS_QCORE_CHUNK);
 *   int cls = cal.classify(features);                 // features: the backbone's int8 output
 *   cal.addSample(features, label);                   // a labeled sample, kept for the next step
 *   edgeplus::QCoreReport r;
 *   cal.calibrate(&r);   // up to max_steps bit-flip steps on QCore + memory + samples, each
 *                        // kept only if it gets more new items right without losing the
 *                        // QCore; then the memory is refreshed from itself and the samples
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
  int32_t features, classes;  // the head the items were stored for: layers[0].in_features,
                              // the last layer's out_features (else begin: EDGEPLUS_ERR_DIMS)
  // the QCore: items of the training data, fixed (never refreshed)
  int32_t core_size;           // capacity
  int32_t core_items;          // stored items (<= core_size)
  const int8_t* core_x;        // [core_items][features]
  const int32_t* core_y;       // [core_items]
  int32_t guard_min_correct;   // a step is kept only if >= this many QCore items stay right
  int32_t guard_slack;         // after each calibrate(): guard_min_correct = max(itself,
                               // QCore items right - guard_slack) (0..core_items)
  // the new-data memory: items the refresh kept from earlier calibrations
  int32_t memory_size;           // capacity
  int32_t memory_items;          // stored items (<= memory_size)
  const int8_t* memory_x;        // [memory_items][features] (nullptr when memory_items == 0)
  const int32_t* memory_y;       // [memory_items]
  const int32_t* memory_counts;  // [memory_items] miss counts, 0..2^30
  uint32_t rng_state;            // the refresh's xorshift32 state (nonzero)
};

// What one calibrate() did (BitFlipCalibrator.calibrate's ChunkReport).
struct QCoreReport {
  int32_t samples;         // QCore + memory items + new samples the steps saw
  int32_t steps;           // bit-flip steps run
  int32_t kept;            // steps kept (each got more of the unguarded items right, or as
                           // many with a larger margin, and kept the QCore's guard)
  int32_t rolled_back;     // steps whose candidate changed weights but was rolled back
  int32_t changed;         // weights changed by the kept steps
  int32_t correct_before;  // of the samples - guard_items unguarded items (memory + new),
                           // right before the first step
  int32_t correct_after;   // ... with the last candidate tried
  int32_t guard_correct;   // QCore items right with the weights the calibration leaves
  int32_t guard_items;     // QCore items (the guarded ones)
  int32_t memory_from_chunk;  // memory items now coming from the new samples
  uint32_t micros;         // wall time of the steps and the refresh
};

// Prints one line: "QCore: 3 of 4 steps kept, 240 weights changed, 10 -> 12 of 16 new right,
// old 18/20, 5517 us".
void printReport(Print& out, const QCoreReport& report);

class QCoreCalibrator {
 public:
  // RAM bytes begin() needs for `chunk_capacity` new samples between calibrations (1..65536), or
  // a negative edgeplus_status when the spec is invalid.
  static int32_t ramBytes(const QCoreSpec& spec, int32_t chunk_capacity);

  // Copies the head weights, the QCore and the memory into `ram` (16-byte alignment not
  // needed). EDGEPLUS_ERR_DIMS for a QCore stored for another head (features, classes); a
  // refused begin() leaves the calibrator (weights, items) as it was.
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

  // One calibration on QCore + memory + the pending samples (EDGEPLUS_ERR_DIMS if none is
  // pending); the pending samples are used up and the memory refreshed from itself and them.
  // On an error the memory and the pending samples stay as they were, and the weights are
  // those of the last step kept before it.
  edgeplus_status calibrate(QCoreReport* report);

  // State, for checks and for saving: the QCore, the memory, the head weights (packed, as
  // exported).
  int32_t coreItems() const { return core_n_; }
  const int8_t* coreFeatures(int32_t i) const { return items_x_ + i * inputSize(); }
  int32_t coreLabel(int32_t i) const { return items_y_[i]; }
  int32_t guardMinCorrect() const { return guard_min_correct_; }
  int32_t memoryItems() const { return memory_n_; }
  const int8_t* memoryFeatures(int32_t i) const { return coreFeatures(core_n_ + i); }
  int32_t memoryLabel(int32_t i) const { return items_y_[core_n_ + i]; }
  int32_t memoryCount(int32_t i) const { return prior_[i]; }
  uint32_t rngState() const { return rng_; }
  const int8_t* layerWeights(int32_t l) const { return layers_[l].weights; }
  int32_t layerWeightBytes(int32_t l) const;
  const edgeplus_qcore_head& head() const { return head_; }

 private:
  edgeplus_fc_layer layers_[EDGEPLUS_QCORE_MAX_LAYERS];
  const edgeplus_flipnet* nets_[EDGEPLUS_QCORE_MAX_LAYERS];
  edgeplus_qcore_head head_ = {0, nullptr, nullptr, 0, 0};
  int32_t max_steps_ = 0, memory_size_ = 0, chunk_capacity_ = 0, guard_min_correct_ = 0;
  int32_t guard_slack_ = 0;
  int32_t core_n_ = 0, memory_n_ = 0, pending_ = 0;
  uint32_t rng_ = 0;
  // items: cap = core_size + memory_size + chunk_capacity rows: QCore, memory, then pending
  int8_t* items_x_ = nullptr;   // [cap][in]
  int32_t* items_y_ = nullptr;  // [cap]
  int32_t* prior_ = nullptr;    // [memory_size + chunk_capacity] miss counts of the rows after
                                // the QCore (0 for new samples)
  uint8_t* history_ = nullptr;  // [(max_steps + 1) * cap]
  int32_t* chosen_ = nullptr;   // [memory_size]
  int32_t* counts_ = nullptr;   // [memory_size]
  int8_t* next_x_ = nullptr;    // [memory_size][in]: the refreshed memory before it is moved in
  int32_t* next_y_ = nullptr;   // [memory_size]
  int8_t* act_ = nullptr;       // [2][widest layer]: predict()'s activations
  int32_t widest_ = 0;
  edgeplus_context ctx_ = {nullptr, 0};
};

}  // namespace edgeplus

#endif  // EDGEPLUS_QCORE_CALIBRATOR_H_
