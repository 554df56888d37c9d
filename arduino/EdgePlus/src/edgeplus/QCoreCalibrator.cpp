#include "edgeplus/QCoreCalibrator.h"

#include <string.h>

#include "edgeplus/Stopwatch.h"

namespace edgeplus {
namespace {

int32_t align4(int32_t v) { return (v + 3) & ~3; }

// Byte offsets of everything begin() carves out of the RAM block (after 4-aligning its base);
// tfmot_edgeplus/calibration/device.py's device_bytes is the same formula.
struct Layout {
  int32_t weights[EDGEPLUS_QCORE_MAX_LAYERS];
  int32_t items_x, items_y, prior, history, chosen, counts, next_x, next_y, act, ctx;
  int32_t ctx_bytes, widest, total;
};

void conv_params(const edgeplus_fc_layer& l, edgeplus_conv_params* p) {
  memset(p, 0, sizeof(*p));
  p->stride_h = p->stride_w = 1;
  p->dilation_h = p->dilation_w = 1;
  p->input_zero_point = l.input_zero_point;
  p->output_zero_point = l.output_zero_point;
  p->act_min = l.act_min;
  p->act_max = l.act_max;
  p->in_bits = 8;
  p->w_bits = l.w_bits;
  p->out_bits = 8;
}

void fc_dims(const edgeplus_fc_layer& l, edgeplus_dims* in, edgeplus_dims* filter,
             edgeplus_dims* out) {
  *in = {1, 1, 1, l.in_features};
  *filter = {l.out_features, 1, 1, l.in_features};
  *out = {1, 1, 1, l.out_features};
}

void to_fc_layer(const QCoreLayerSpec& s, int8_t* weights, edgeplus_fc_layer* l) {
  l->out_features = s.out_features;
  l->in_features = s.in_features;
  l->w_bits = s.w_bits;
  l->weights = weights;
  l->bias = s.bias;
  l->multiplier = s.multiplier;
  l->shift = s.shift;
  l->input_zero_point = s.input_zero_point;
  l->output_zero_point = s.output_zero_point;
  l->act_min = s.act_min;
  l->act_max = s.act_max;
}

// Labels in [0, classes), counts (if given) in [0, 2^30].
bool valid_items(const int32_t* y, const int32_t* counts, int32_t items, int32_t classes) {
  for (int32_t i = 0; i < items; ++i) {
    if (y[i] < 0 || y[i] >= classes) return false;
    if (counts != nullptr && (counts[i] < 0 || counts[i] > (1 << 30))) return false;
  }
  return true;
}

// Checks the spec and computes the layout; EDGEPLUS_OK or the first problem.
edgeplus_status plan(const QCoreSpec& spec, int32_t chunk_capacity, Layout* lay) {
  if (spec.layers == nullptr ||
      (spec.core_items > 0 && (spec.core_x == nullptr || spec.core_y == nullptr)) ||
      (spec.memory_items > 0 && (spec.memory_x == nullptr || spec.memory_y == nullptr ||
                                 spec.memory_counts == nullptr)))
    return EDGEPLUS_ERR_NULL;
  if (spec.num_layers < 1 || spec.num_layers > EDGEPLUS_QCORE_MAX_LAYERS) return EDGEPLUS_ERR_DIMS;
  if (chunk_capacity < 1 || chunk_capacity > 65536 || spec.core_size < 0 || spec.core_items < 0 ||
      spec.core_items > spec.core_size || spec.memory_size < 0 || spec.memory_items < 0 ||
      spec.memory_items > spec.memory_size || spec.core_size > 65536 || spec.memory_size > 65536)
    return EDGEPLUS_ERR_DIMS;  // each <= 2^16: the sums below stay far from int32's limit
  if (spec.max_steps < 1 || spec.max_steps > 1000 || spec.rng_state == 0 ||
      spec.guard_min_correct < 0 || spec.guard_min_correct > spec.core_items ||
      spec.guard_slack < 0 || spec.guard_slack > spec.core_items)
    return EDGEPLUS_ERR_ARG;
  const int32_t cap = spec.core_size + spec.memory_size + chunk_capacity;
  const int32_t refreshed = spec.memory_size + chunk_capacity;
  const int32_t in = spec.layers[0].in_features;
  const int32_t classes = spec.layers[spec.num_layers - 1].out_features;
  if (in < 1 || cap > 65536 || static_cast<int64_t>(cap) * in > (1 << 24))
    return EDGEPLUS_ERR_DIMS;
  if (spec.features != in || spec.classes != classes) return EDGEPLUS_ERR_DIMS;  // another head
  if (!valid_items(spec.core_y, nullptr, spec.core_items, classes) ||
      !valid_items(spec.memory_y, spec.memory_counts, spec.memory_items, classes))
    return EDGEPLUS_ERR_ARG;
  // the kernels' own checks of the head, on a head pointing at the flash weights
  edgeplus_fc_layer layers[EDGEPLUS_QCORE_MAX_LAYERS];
  const edgeplus_flipnet* nets[EDGEPLUS_QCORE_MAX_LAYERS];
  int32_t off = 0, widest = 0, conv_scratch = 0;
  for (int32_t l = 0; l < spec.num_layers; ++l) {
    const QCoreLayerSpec& s = spec.layers[l];
    if (s.weights == nullptr) return EDGEPLUS_ERR_NULL;
    to_fc_layer(s, const_cast<int8_t*>(s.weights), &layers[l]);
    nets[l] = s.net;
    const int64_t count = static_cast<int64_t>(s.out_features) * s.in_features;
    if (s.out_features < 1 || s.in_features < 1 || count > (1 << 24)) return EDGEPLUS_ERR_DIMS;
    const int32_t bytes = edgeplus_packed_bytes(static_cast<int32_t>(count), s.w_bits);
    if (bytes < 0) return EDGEPLUS_ERR_BITS;
    lay->weights[l] = off;
    off += align4(bytes);
    if (s.out_features > widest) widest = s.out_features;
    edgeplus_conv_params p;
    edgeplus_dims di, df, dout;
    conv_params(layers[l], &p);
    fc_dims(layers[l], &di, &df, &dout);
    const int32_t need = edgeplus_conv2d_get_buffer_size(&p, &di, &df, &dout);
    if (need < 0) return static_cast<edgeplus_status>(need);
    if (need > conv_scratch) conv_scratch = need;
  }
  if (in > widest) widest = in;
  const edgeplus_qcore_head head = {spec.num_layers, layers, nets, spec.margin, spec.tries};
  const int32_t step = edgeplus_qcore_step_get_buffer_size(&head, cap);
  if (step < 0) return static_cast<edgeplus_status>(step);
  const int32_t refresh = edgeplus_qcore_refresh_get_buffer_size(refreshed);
  if (refresh < 0) return static_cast<edgeplus_status>(refresh);
  int32_t ctx = step > refresh ? step : refresh;
  if (conv_scratch > ctx) ctx = conv_scratch;
  const int64_t history = static_cast<int64_t>(spec.max_steps + 1) * cap;
  lay->items_x = off;
  off += align4(cap * in);
  lay->items_y = off;
  off += 4 * cap;
  lay->prior = off;
  off += 4 * refreshed;
  lay->history = off;
  if (history > (1 << 24)) return EDGEPLUS_ERR_DIMS;
  off += align4(static_cast<int32_t>(history));
  lay->chosen = off;
  off += 4 * spec.memory_size;
  lay->counts = off;
  off += 4 * spec.memory_size;
  lay->next_x = off;
  off += align4(spec.memory_size * in);
  lay->next_y = off;
  off += 4 * spec.memory_size;
  lay->act = off;
  off += align4(2 * widest);
  lay->ctx = off;
  if (static_cast<int64_t>(off) + ctx + 4 > INT32_MAX) return EDGEPLUS_ERR_DIMS;
  lay->ctx_bytes = ctx;
  lay->widest = widest;
  lay->total = off + ctx + 4;  // + alignment slack of the RAM block's base
  return EDGEPLUS_OK;
}

}  // namespace

int32_t QCoreCalibrator::ramBytes(const QCoreSpec& spec, int32_t chunk_capacity) {
  Layout lay;
  const edgeplus_status s = plan(spec, chunk_capacity, &lay);
  return s == EDGEPLUS_OK ? lay.total : static_cast<int32_t>(s);
}

edgeplus_status QCoreCalibrator::begin(const QCoreSpec& spec, void* ram, int32_t ram_bytes,
                                       int32_t chunk_capacity) {
  Layout lay;  // a refused spec leaves the calibrator as it was (weights, items)
  const edgeplus_status s = plan(spec, chunk_capacity, &lay);
  if (s != EDGEPLUS_OK) return s;
  if (ram == nullptr) return EDGEPLUS_ERR_NULL;
  if (ram_bytes < lay.total) return EDGEPLUS_ERR_SCRATCH;
  uint8_t* base = static_cast<uint8_t*>(ram);
  base += (4 - (reinterpret_cast<uintptr_t>(base) & 3)) & 3;
  const int32_t in = spec.layers[0].in_features;
  for (int32_t l = 0; l < spec.num_layers; ++l) {
    const QCoreLayerSpec& ls = spec.layers[l];
    int8_t* w = reinterpret_cast<int8_t*>(base + lay.weights[l]);
    memcpy(w, ls.weights, edgeplus_packed_bytes(ls.out_features * ls.in_features, ls.w_bits));
    to_fc_layer(ls, w, &layers_[l]);
    nets_[l] = ls.net;
  }
  items_x_ = reinterpret_cast<int8_t*>(base + lay.items_x);
  items_y_ = reinterpret_cast<int32_t*>(base + lay.items_y);
  prior_ = reinterpret_cast<int32_t*>(base + lay.prior);
  history_ = base + lay.history;
  chosen_ = reinterpret_cast<int32_t*>(base + lay.chosen);
  counts_ = reinterpret_cast<int32_t*>(base + lay.counts);
  next_x_ = reinterpret_cast<int8_t*>(base + lay.next_x);
  next_y_ = reinterpret_cast<int32_t*>(base + lay.next_y);
  act_ = reinterpret_cast<int8_t*>(base + lay.act);
  ctx_.buf = base + lay.ctx;
  ctx_.size = lay.ctx_bytes;
  widest_ = lay.widest;
  const int32_t core = spec.core_items, memory = spec.memory_items;
  if (core > 0) memcpy(items_x_, spec.core_x, static_cast<size_t>(core) * in);
  if (memory > 0) memcpy(items_x_ + core * in, spec.memory_x, static_cast<size_t>(memory) * in);
  for (int32_t i = 0; i < core; ++i) items_y_[i] = spec.core_y[i];
  for (int32_t i = 0; i < memory; ++i) {
    items_y_[core + i] = spec.memory_y[i];
    prior_[i] = spec.memory_counts[i];
  }
  core_n_ = core;
  memory_n_ = memory;
  pending_ = 0;
  memory_size_ = spec.memory_size;
  guard_min_correct_ = spec.guard_min_correct;
  guard_slack_ = spec.guard_slack;
  chunk_capacity_ = chunk_capacity;
  max_steps_ = spec.max_steps;
  rng_ = spec.rng_state;
  head_ = {spec.num_layers, layers_, nets_, spec.margin, spec.tries};
  return EDGEPLUS_OK;
}

int32_t QCoreCalibrator::layerWeightBytes(int32_t l) const {
  if (l < 0 || l >= head_.num_layers) return EDGEPLUS_ERR_ARG;
  return edgeplus_packed_bytes(layers_[l].out_features * layers_[l].in_features,
                               layers_[l].w_bits);
}

edgeplus_status QCoreCalibrator::predict(const int8_t* features, int8_t* logits) {
  if (head_.num_layers == 0) return EDGEPLUS_ERR_NULL;  // begin() failed or was not called
  if (features == nullptr || logits == nullptr) return EDGEPLUS_ERR_NULL;
  const int8_t* x = features;
  for (int32_t l = 0; l < head_.num_layers; ++l) {
    const edgeplus_fc_layer& layer = layers_[l];
    int8_t* y = l == head_.num_layers - 1 ? logits : act_ + (l & 1) * widest_;
    edgeplus_conv_params p;
    edgeplus_dims di, df, dout;
    conv_params(layer, &p);
    fc_dims(layer, &di, &df, &dout);
    const edgeplus_quant_params q = {layer.multiplier, layer.shift};
    const edgeplus_status s =
        edgeplus_conv2d(&ctx_, &p, &q, &di, x, &df, layer.weights, layer.bias, &dout, y);
    if (s != EDGEPLUS_OK) return s;
    x = y;
  }
  return EDGEPLUS_OK;
}

int32_t QCoreCalibrator::classify(const int8_t* features) {
  int8_t logits[256];
  const int32_t classes = numClasses();
  if (classes > 256) return EDGEPLUS_ERR_DIMS;  // use predict() with your own buffer
  const edgeplus_status s = predict(features, logits);
  if (s != EDGEPLUS_OK) return s;
  int32_t best = 0;
  for (int32_t o = 1; o < classes; ++o) {
    if (logits[o] > logits[best]) best = o;
  }
  return best;
}

edgeplus_status QCoreCalibrator::addSample(const int8_t* features, int32_t label) {
  if (head_.num_layers == 0 || features == nullptr) return EDGEPLUS_ERR_NULL;
  if (label < 0 || label >= numClasses()) return EDGEPLUS_ERR_ARG;
  if (pending_ >= chunk_capacity_) return EDGEPLUS_ERR_DIMS;
  const int32_t row = core_n_ + memory_n_ + pending_;
  memcpy(items_x_ + row * inputSize(), features, static_cast<size_t>(inputSize()));
  items_y_[row] = label;
  prior_[memory_n_ + pending_] = 0;
  ++pending_;
  return EDGEPLUS_OK;
}

edgeplus_status QCoreCalibrator::calibrate(QCoreReport* report) {
  if (head_.num_layers == 0 || report == nullptr) return EDGEPLUS_ERR_NULL;
  if (pending_ == 0) return EDGEPLUS_ERR_DIMS;  // addSample() first
  Stopwatch watch;
  const int32_t n = core_n_ + memory_n_ + pending_;
  const int32_t in = inputSize();
  edgeplus_qcore_step_result r;
  QCoreReport rep = {n, 0, 0, 0, 0, 0, 0, 0, core_n_, 0, 0};
  // history row 0: correctness of every item before the first step; then one row per kept
  // step (a rolled-back candidate's row is written after them but not counted)
  int32_t rows = 0;
  for (int32_t s = 0; s < max_steps_; ++s) {
    uint8_t* before = rows == 0 ? history_ : nullptr;
    uint8_t* after = history_ + (rows == 0 ? 1 : rows) * n;
    const edgeplus_status st = edgeplus_qcore_step(&ctx_, &head_, items_x_, items_y_, n, core_n_,
                                                   guard_min_correct_, before, after, &r);
    if (st != EDGEPLUS_OK) return st;  // the step left the weights as they were
    if (rows == 0) {
      rows = 1;
      rep.correct_before = r.correct_before;
    }
    ++rep.steps;
    rep.correct_after = r.correct_after;
    rep.guard_correct = r.kept ? r.guard_correct_after : r.guard_correct_before;
    if (!r.kept) {
      if (r.changed > 0) ++rep.rolled_back;
      break;
    }
    ++rep.kept;
    rep.changed += r.changed;
    ++rows;
  }
  // the refresh sees the columns after the QCore: each history row's tail, packed in place
  const int32_t m = memory_n_ + pending_;
  for (int32_t row = 0; row < rows; ++row) {
    memmove(history_ + row * m, history_ + row * n + core_n_, static_cast<size_t>(m));
  }
  const int32_t size = m < memory_size_ ? m : memory_size_;
  uint32_t rng = rng_;
  if (size > 0) {
    const edgeplus_status st =
        edgeplus_qcore_refresh(&ctx_, prior_, history_, rows, m, size, &rng, chosen_, counts_);
    if (st != EDGEPLUS_OK) return st;  // cannot happen after a valid step; nothing moved yet
  }
  int8_t* memory_x = items_x_ + core_n_ * in;
  int32_t* memory_y = items_y_ + core_n_;
  for (int32_t d = 0; d < size; ++d) {
    memcpy(next_x_ + d * in, memory_x + chosen_[d] * in, static_cast<size_t>(in));
    next_y_[d] = memory_y[chosen_[d]];
    if (chosen_[d] >= memory_n_) ++rep.memory_from_chunk;
  }
  memcpy(memory_x, next_x_, static_cast<size_t>(size) * in);
  for (int32_t d = 0; d < size; ++d) {
    memory_y[d] = next_y_[d];
    prior_[d] = counts_[d];
  }
  memory_n_ = size;
  pending_ = 0;
  rng_ = rng;
  // the guard ratchets: what the QCore gets right now stays right (less the slack)
  if (rep.guard_correct - guard_slack_ > guard_min_correct_) {
    guard_min_correct_ = rep.guard_correct - guard_slack_;
  }
  rep.micros = watch.elapsedMicros();
  *report = rep;
  return EDGEPLUS_OK;
}

void printReport(Print& out, const QCoreReport& r) {
  out.print("QCore: ");
  out.print(r.kept);
  out.print(" of ");
  out.print(r.steps);
  out.print(" steps kept, ");
  out.print(r.changed);
  out.print(" weights changed, ");
  out.print(r.correct_before);
  out.print(" -> ");
  out.print(r.correct_after);
  out.print(" of ");
  out.print(r.samples - r.guard_items);
  out.print(" new right, old ");
  out.print(r.guard_correct);
  out.print("/");
  out.print(r.guard_items);
  out.print(", ");
  out.print(static_cast<unsigned long>(r.micros));
  out.println(" us");
}

}  // namespace edgeplus
