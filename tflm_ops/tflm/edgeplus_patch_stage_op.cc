/*
 * TFLite Micro glue of EDGEPLUS_PATCH_STAGE: QuantMCU's patch stage as one operator, on
 * top of the pure C executor edgeplus_patch_stage (tflm_ops/include/edgeplus/edgeplus_ops.h).
 *
 * Tensors:
 *   input 0      the stage input, int8 [1, H, W, C] (the program's tensor 0)
 *   input 1 + s  the filter of weight slot s: kTfLiteInt8 (w_bits 8) or kTfLiteInt4
 *                (w_bits 4, TFLite's packed INT4 storage = our packing), OHWI / 1HWO
 *   output 0     the split tensor, int8 [1, H', W', C'] (the program's last tensor)
 * Options (edgeplus_op_schema.h, generated from tfmot_edgeplus/conversion/op_schema.py): a
 * flexbuffer map {"version": 1, "program": blob of little-endian int32 words}; the program
 * (spec: tfmot_edgeplus/patching/program.py) holds the geometry, the per-patch regions and
 * bits, and every variant's requantization and bias.
 *
 * Init parses the options strictly and copies the program into 4-byte-aligned persistent
 * memory (it cannot fail the model, so it records what went wrong for Prepare); Prepare
 * checks the program (edgeplus_patch_stage_check), the tensors against it (types, dims,
 * zero points, filter sizes) and requests the executor's scratch; Eval allocates nothing.
 */
#include <stdint.h>
#include <string.h>

#include "edgeplus/edgeplus_ops.h"
#include "edgeplus_op_schema.h"
#include "edgeplus_options.h"
#include "edgeplus_tflm.h"
#include "flatbuffers/flexbuffers.h"
#include "tensorflow/lite/c/common.h"
#include "tensorflow/lite/kernels/kernel_util.h"
#include "tensorflow/lite/micro/kernels/kernel_util.h"
#include "tensorflow/lite/micro/micro_context.h"
#include "tensorflow/lite/micro/micro_log.h"

namespace tflite {
namespace edgeplus {
namespace {

constexpr const char* kOp = EDGEPLUS_PATCH_STAGE_CUSTOM_CODE;
constexpr int kMaxSlots = 255;

struct OpData {
  int32_t version;
  int32_t* program;  // persistent, 4-byte aligned copy of the words
  int32_t words;
  bool options_ok;
  int32_t scratch_bytes;
  int scratch_index;
};

// Program header / tensor record fields (tfmot_edgeplus/patching/program.py).
constexpr int kHeaderWords = 8;
constexpr int kTensorWords = 9;

bool IsKnownKey(const char* key) {
#define EDGEPLUS_KEY_MATCHES(field, name, kind, lo, hi) \
  if (strcmp(key, name) == 0) return true;
  EDGEPLUS_PATCH_STAGE_OPTIONS(EDGEPLUS_KEY_MATCHES)
#undef EDGEPLUS_KEY_MATCHES
  return false;
}

bool ParseOptions(const char* buffer, size_t length, edgeplus_patch_stage_options* opt) {
  flexbuffers::Map map = flexbuffers::Map::EmptyMap();
  bool ok = true;
  if (!OpenOptionsMap(kOp, buffer, length, EDGEPLUS_PATCH_STAGE_NUM_OPTIONS, IsKnownKey, &map, &ok)) {
    return false;
  }
#define EDGEPLUS_READ(field, name, kind, lo, hi) \
  EDGEPLUS_READ_OPTION_##kind(kOp, map, opt, ok, field, name, lo, hi)
  EDGEPLUS_PATCH_STAGE_OPTIONS(EDGEPLUS_READ)
#undef EDGEPLUS_READ
  return ok;
}

void* Init(TfLiteContext* context, const char* buffer, size_t length) {
  void* raw = context->AllocatePersistentBuffer(context, sizeof(OpData));
  if (raw == nullptr) return nullptr;  // Prepare reports it
  OpData* data = static_cast<OpData*>(raw);
  memset(data, 0, sizeof(OpData));
  data->scratch_index = -1;
  edgeplus_patch_stage_options opt;
  memset(&opt, 0, sizeof(opt));
  data->options_ok = ParseOptions(buffer, length, &opt);
  if (!data->options_ok) return data;
  if (opt.program_bytes % 4 != 0) {
    MicroPrintf("%s: the program blob holds %d bytes, not whole int32 words.", kOp,
                static_cast<int>(opt.program_bytes));
    data->options_ok = false;
    return data;
  }
  void* words = context->AllocatePersistentBuffer(context, opt.program_bytes);
  if (words == nullptr) {
    MicroPrintf("%s: no arena left for the %d-byte program.", kOp,
                static_cast<int>(opt.program_bytes));
    data->options_ok = false;
    return data;
  }
  memcpy(words, opt.program, opt.program_bytes);  // little-endian words on every target
  data->program = static_cast<int32_t*>(words);
  data->words = opt.program_bytes / 4;
  data->version = opt.version;
  return data;
}

TfLiteStatus CheckActivation(const char* what, const TfLiteTensor* t, const int32_t* rec) {
  if (t->type != kTfLiteInt8) {
    MicroPrintf("%s: %s tensor type %s not supported; the stage reads and writes int8.", kOp,
                what, TfLiteTypeGetName(t->type));
    return kTfLiteError;
  }
  const int* d = t->dims->data;
  if (t->dims->size != 4 || d[0] != 1 || d[1] != rec[0] || d[2] != rec[1] || d[3] != rec[2]) {
    MicroPrintf("%s: %s tensor must be [1, %d, %d, %d] (the program's), got %d dims.", kOp,
                what, static_cast<int>(rec[0]), static_cast<int>(rec[1]),
                static_cast<int>(rec[2]), t->dims->size);
    return kTfLiteError;
  }
  const auto* q = static_cast<const TfLiteAffineQuantization*>(t->quantization.params);
  if (t->quantization.type != kTfLiteAffineQuantization || q == nullptr ||
      q->zero_point == nullptr || q->zero_point->size != 1 ||
      q->zero_point->data[0] != rec[5]) {
    MicroPrintf("%s: %s tensor's zero point differs from the program's (%d); the plan was "
                "lowered for another model.",
                kOp, what, static_cast<int>(rec[5]));
    return kTfLiteError;
  }
  return kTfLiteOk;
}

TfLiteStatus PrepareTensors(TfLiteContext* context, TfLiteNode* node, OpData* data) {
  MicroContext* mc = GetMicroContext(context);
  const int32_t* p = data->program;
  const int32_t T = p[2];
  const int32_t* first = p + kHeaderWords;
  const int32_t* last = p + kHeaderWords + (T - 1) * kTensorWords;
  TfLiteStatus status = kTfLiteOk;
  TfLiteTensor* input = mc->AllocateTempInputTensor(node, 0);
  TfLiteTensor* output = mc->AllocateTempOutputTensor(node, 0);
  if (input == nullptr || output == nullptr) {
    MicroPrintf("%s: the input and output tensors are required.", kOp);
    status = kTfLiteError;
  } else {
    status = CheckActivation("input", input, first);
    if (status == kTfLiteOk) status = CheckActivation("output", output, last);
  }
  if (input != nullptr) mc->DeallocateTempTfLiteTensor(input);
  if (output != nullptr) mc->DeallocateTempTfLiteTensor(output);
  for (int s = 0; status == kTfLiteOk && s + 1 < NumInputs(node); ++s) {
    int32_t filter_bytes = 0;
    const edgeplus_status st =
        edgeplus_patch_stage_weight_size(data->program, data->words, s, &filter_bytes);
    TfLiteTensor* f = mc->AllocateTempInputTensor(node, 1 + s);
    if (st != EDGEPLUS_OK || f == nullptr) {
      MicroPrintf("%s: input %d: no weight slot %d in the program, or no tensor (%s).", kOp,
                  1 + s, s, edgeplus_status_str(st));
      status = kTfLiteError;
    } else if (f->type == kTfLiteInt8 ? static_cast<int32_t>(f->bytes) != filter_bytes
                                      : (f->type != kTfLiteInt4 ||
                                         (static_cast<int32_t>(ElementCount(*f->dims)) + 1) / 2 !=
                                             filter_bytes)) {
      MicroPrintf("%s: the filter of slot %d (%s, %d elements) does not hold the program's "
                  "%d packed bytes.",
                  kOp, s, TfLiteTypeGetName(f->type), static_cast<int>(ElementCount(*f->dims)),
                  static_cast<int>(filter_bytes));
      status = kTfLiteError;
    }
    if (f != nullptr) mc->DeallocateTempTfLiteTensor(f);
  }
  return status;
}

TfLiteStatus Prepare(TfLiteContext* context, TfLiteNode* node) {
  OpData* data = static_cast<OpData*>(node->user_data);
  if (data == nullptr) {
    MicroPrintf("%s: arena too small for the op data.", kOp);
    return kTfLiteError;
  }
  if (!data->options_ok) {
    MicroPrintf("%s: invalid custom options (see the messages above).", kOp);
    return kTfLiteError;
  }
  const edgeplus_status st = edgeplus_patch_stage_check(data->program, data->words);
  if (st != EDGEPLUS_OK) {
    MicroPrintf("%s: the stage program is invalid (%s).", kOp, edgeplus_status_str(st));
    return kTfLiteError;
  }
  int slots = 0;
  for (; slots <= kMaxSlots; ++slots) {
    int32_t bytes;
    if (edgeplus_patch_stage_weight_size(data->program, data->words, slots, &bytes) !=
        EDGEPLUS_OK) {
      break;
    }
  }
  if (NumInputs(node) != 1 + slots || NumOutputs(node) != 1) {
    MicroPrintf("%s: takes the stage input and %d filters (%d inputs) and 1 output; got %d "
                "inputs, %d outputs.",
                kOp, slots, 1 + slots, NumInputs(node), NumOutputs(node));
    return kTfLiteError;
  }
  TF_LITE_ENSURE_OK(context, PrepareTensors(context, node, data));
  data->scratch_bytes = edgeplus_patch_stage_get_buffer_size(data->program, data->words);
  if (data->scratch_bytes < 0) {
    MicroPrintf("%s: the program's scratch cannot be sized (%s).", kOp,
                edgeplus_status_str(static_cast<edgeplus_status>(data->scratch_bytes)));
    return kTfLiteError;
  }
  return context->RequestScratchBufferInArena(context, data->scratch_bytes,
                                              &data->scratch_index);
}

TfLiteStatus Eval(TfLiteContext* context, TfLiteNode* node) {
  const OpData* data = static_cast<const OpData*>(node->user_data);
  TF_LITE_ENSURE(context, data != nullptr && data->program != nullptr);
  const int n_filters = NumInputs(node) - 1;
  TF_LITE_ENSURE(context, n_filters >= 0 && n_filters <= kMaxSlots);
  const int8_t* filters[kMaxSlots + 1];
  for (int s = 0; s < n_filters; ++s) {
    const TfLiteEvalTensor* f = micro::GetEvalInput(context, node, 1 + s);
    TF_LITE_ENSURE(context, f != nullptr);
    filters[s] = static_cast<const int8_t*>(f->data.data);
  }
  const TfLiteEvalTensor* input = micro::GetEvalInput(context, node, 0);
  TfLiteEvalTensor* output = micro::GetEvalOutput(context, node, 0);
  TF_LITE_ENSURE(context, input != nullptr && output != nullptr);
  edgeplus_context ctx;
  ctx.buf = context->GetScratchBuffer(context, data->scratch_index);
  ctx.size = data->scratch_bytes;
  const edgeplus_status st =
      edgeplus_patch_stage(&ctx, data->program, data->words, filters,
                           micro::GetTensorData<int8_t>(input), micro::GetTensorData<int8_t>(output));
  if (st != EDGEPLUS_OK) {
    MicroPrintf("%s: the patch stage returned %s.", kOp, edgeplus_status_str(st));
    return kTfLiteError;
  }
  return kTfLiteOk;
}

}  // namespace

TFLMRegistration* Register_EDGEPLUS_PATCH_STAGE() {
  static TFLMRegistration r = micro::RegisterOp(Init, Prepare, Eval);
  return &r;
}

}  // namespace edgeplus
}  // namespace tflite
