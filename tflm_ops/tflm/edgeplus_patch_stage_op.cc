/*
 * TFLite Micro glue of EDGEPLUS_PATCH_STAGE: QuantMCU's patch stage as one operator, on
 * top of the pure C executor edgeplus_patch_stage (tflm_ops/include/edgeplus/edgeplus_ops.h).
 *
 * Tensors:
 *   input 0      the stage input, int8 [1, H, W, C] (the program's tensor 0)
 *   input 1 + s  the filter of weight slot s (slots in step order), OHWI / 1HWO, packed
 *                over its flat index at the step's w_bits: kTfLiteInt8 for w_bits 8,
 *                kTfLiteInt4 for w_bits 4 (TFLite's packed INT4 storage, low nibble first
 *                = our packing; TFLM sizes it one byte per element, so its length is
 *                checked as ceil(elements / 2)), and for w_bits 2 (no TFLite type) a
 *                kTfLiteInt8 tensor of the packed bytes. No bias tensors: each variant's
 *                bias is in the program's requantization block.
 *   output 0     the split tensor, int8 [1, H', W', C'] (the program's last tensor)
 * Options (edgeplus_op_schema.h, generated from tfmot_edgeplus/conversion/op_schema.py): a
 * flexbuffer map {"version": 1, "program": blob of little-endian int32 words}; the program
 * (spec: tfmot_edgeplus/core/program.py) holds the geometry, the per-patch regions and
 * bits, and every variant's requantization and bias.
 *
 * Init parses the options strictly and copies the program into 4-byte-aligned persistent
 * memory (it cannot fail the model, so it records what went wrong for Prepare); Prepare
 * checks the program (edgeplus_patch_stage_check), the tensors against it (types, dims,
 * zero points, filter sizes) and requests the executor's scratch; Eval allocates nothing.
 */
// The Arduino builder compiles every file of a library, also for a sketch that uses only the
// TFLM-free parts of EdgePlus (EDGEPLUS_NO_TFLM) and has no TFLM on its include path: this
// file is then empty. With any TFLM on the path it is compiled, and edgeplus_tflm.h stops
// with an #error naming the version needed when that TFLM is not one the glue supports.
#if !defined(__has_include) || \
    __has_include("tensorflow/lite/micro/micro_mutable_op_resolver.h")

// First: it stops a TFLM the glue does not know with an #error naming what to install.
#include "edgeplus_tflm.h"

#include <stdint.h>
#include <string.h>

#include "edgeplus/edgeplus_ops.h"
#include "edgeplus_op_schema.h"
#include "edgeplus_options.h"
#include "edgeplus_refusal.h"
#include "tensorflow/lite/c/common.h"
#include "tensorflow/lite/kernels/kernel_util.h"
#include "tensorflow/lite/micro/kernels/kernel_util.h"
#include "tensorflow/lite/micro/micro_context.h"
#include "tensorflow/lite/micro/micro_log.h"

namespace tflite {
namespace edgeplus {
namespace {

constexpr const char* kOp = EDGEPLUS_PATCH_STAGE_CUSTOM_CODE;

struct OpData {
  int32_t version;
  int32_t* program;  // persistent, 4-byte aligned copy of the words
  int32_t words;
  bool options_ok;
  int32_t scratch_bytes;
  int scratch_index;
  int32_t slots;
  const int8_t** filters;  // persistent, `slots` entries, filled in Eval
};

// Program header / tensor record / step record fields (tfmot_edgeplus/core/program.py);
// read only after edgeplus_patch_stage_check accepted the program.
constexpr int kHeaderWords = 8;
constexpr int kTensorWords = 9;
constexpr int kStepWords = 20;
constexpr int kStepKind = 0;
constexpr int kStepWBits = 11;
constexpr int kStepSlot = 12;
constexpr int32_t kKindConv = 1;
constexpr int32_t kKindDepthwise = 2;

const int32_t* Step(const int32_t* p, int32_t k) {
  return p + kHeaderWords + p[2] * kTensorWords + k * kStepWords;
}

bool HasWeights(const int32_t* step) {
  return step[kStepKind] == kKindConv || step[kStepKind] == kKindDepthwise;
}

// w_bits of weight slot `slot` (0 if no step uses it; the check makes slots 0, 1, ...).
int32_t SlotWBits(const int32_t* p, int32_t slot) {
  for (int32_t k = 0; k < p[3]; ++k) {
    const int32_t* s = Step(p, k);
    if (HasWeights(s) && s[kStepSlot] == slot) return s[kStepWBits];
  }
  return 0;
}

// IsKnownKey and ParseOptions (strict: exactly the schema's keys, each with its type and bounds)
EDGEPLUS_DEFINE_OPTIONS_PARSER(EDGEPLUS_PATCH_STAGE_OPTIONS, EDGEPLUS_PATCH_STAGE_NUM_OPTIONS,
                               edgeplus_patch_stage_options, kOp)

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
    if (t->dims->size == 4) {
      MicroPrintf("%s: %s tensor must be [1, %d, %d, %d] (the program's), got [%d, %d, %d, %d].",
                  kOp, what, static_cast<int>(rec[0]), static_cast<int>(rec[1]),
                  static_cast<int>(rec[2]), d[0], d[1], d[2], d[3]);
    } else {
      MicroPrintf("%s: %s tensor must be [1, %d, %d, %d] (the program's), got %d dims.", kOp,
                  what, static_cast<int>(rec[0]), static_cast<int>(rec[1]),
                  static_cast<int>(rec[2]), t->dims->size);
    }
    return kTfLiteError;
  }
  const auto* q = static_cast<const TfLiteAffineQuantization*>(t->quantization.params);
  if (t->quantization.type != kTfLiteAffineQuantization || q == nullptr ||
      q->zero_point == nullptr || q->zero_point->size != 1) {
    MicroPrintf("%s: %s tensor must be per-tensor quantized with the program's zero point "
                "(%d).",
                kOp, what, static_cast<int>(rec[5]));
    return kTfLiteError;
  }
  if (q->zero_point->data[0] != rec[5]) {
    MicroPrintf("%s: %s tensor's zero point %d differs from the program's (%d); the plan was "
                "lowered for another model.",
                kOp, what, q->zero_point->data[0], static_cast<int>(rec[5]));
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
  for (int32_t s = 0; status == kTfLiteOk && s < data->slots; ++s) {
    int32_t filter_bytes = 0;
    const edgeplus_status st =
        edgeplus_patch_stage_weight_size(data->program, data->words, s, &filter_bytes);
    const int32_t w_bits = SlotWBits(p, s);
    const TfLiteType want = w_bits == 4 ? kTfLiteInt4 : kTfLiteInt8;
    TfLiteTensor* f = mc->AllocateTempInputTensor(node, 1 + s);
    if (st != EDGEPLUS_OK) {
      MicroPrintf("%s: weight slot %d has no size (%s).", kOp, static_cast<int>(s),
                  edgeplus_status_str(st));
      PrintRefusal(kOp);
      status = kTfLiteError;
    } else if (f == nullptr) {
      MicroPrintf("%s: input %d, the filter of weight slot %d, is missing.", kOp,
                  static_cast<int>(1 + s), static_cast<int>(s));
      status = kTfLiteError;
    } else if (f->type != want) {
      MicroPrintf("%s: the filter of weight slot %d has type %s; its %d-bit weights must be %s "
                  "(INT8 for 8 bits, INT4 for 4, INT8 holding the packed bytes for 2).",
                  kOp, static_cast<int>(s), TfLiteTypeGetName(f->type),
                  static_cast<int>(w_bits), TfLiteTypeGetName(want));
      status = kTfLiteError;
    } else {
      // TFLM sizes an INT4 tensor one byte per element; its buffer holds two per byte.
      // (NumElements: tensorflow/lite/kernels/kernel_util.h, in both TFLM APIs; 64-bit.)
      const int64_t count = NumElements(f);
      const int64_t held = f->type == kTfLiteInt4 ? (count + 1) / 2
                                                  : static_cast<int64_t>(f->bytes);
      if (held != filter_bytes) {
        MicroPrintf("%s: the filter of weight slot %d holds %ld packed bytes (%s, %ld "
                    "elements); the program's %d-bit filter takes %d.",
                    kOp, static_cast<int>(s), static_cast<long>(held),
                    TfLiteTypeGetName(f->type), static_cast<long>(count),
                    static_cast<int>(w_bits), static_cast<int>(filter_bytes));
        status = kTfLiteError;
      }
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
    PrintRefusal(kOp);
    return kTfLiteError;
  }
  int32_t slots = 0;
  for (int32_t k = 0; k < data->program[3]; ++k) slots += HasWeights(Step(data->program, k));
  data->slots = slots;
  if (NumInputs(node) != 1 + slots || NumOutputs(node) != 1) {
    MicroPrintf("%s: takes the stage input and %d filters (%d inputs) and 1 output; got %d "
                "inputs, %d outputs.",
                kOp, static_cast<int>(slots), static_cast<int>(1 + slots), NumInputs(node),
                NumOutputs(node));
    return kTfLiteError;
  }
  TF_LITE_ENSURE_OK(context, PrepareTensors(context, node, data));
  if (data->filters == nullptr) {  // Prepare may run again: keep the first table
    data->filters = static_cast<const int8_t**>(context->AllocatePersistentBuffer(
        context, sizeof(const int8_t*) * (slots > 0 ? slots : 1)));
    if (data->filters == nullptr) {
      MicroPrintf("%s: no arena left for the table of %d filters.", kOp, static_cast<int>(slots));
      return kTfLiteError;
    }
  }
  data->scratch_bytes = edgeplus_patch_stage_get_buffer_size(data->program, data->words);
  if (data->scratch_bytes < 0) {
    MicroPrintf("%s: the program's scratch cannot be sized (%s).", kOp,
                edgeplus_status_str(static_cast<edgeplus_status>(data->scratch_bytes)));
    PrintRefusal(kOp);
    return kTfLiteError;
  }
  return context->RequestScratchBufferInArena(context, data->scratch_bytes,
                                              &data->scratch_index);
}

TfLiteStatus Eval(TfLiteContext* context, TfLiteNode* node) {
  const OpData* data = static_cast<const OpData*>(node->user_data);
  TF_LITE_ENSURE(context, data != nullptr && data->program != nullptr &&
                              data->filters != nullptr && NumInputs(node) == 1 + data->slots);
  for (int32_t s = 0; s < data->slots; ++s) {
    const TfLiteEvalTensor* f = micro::GetEvalInput(context, node, 1 + s);
    TF_LITE_ENSURE(context, f != nullptr);
    data->filters[s] = static_cast<const int8_t*>(f->data.data);
  }
  const TfLiteEvalTensor* input = micro::GetEvalInput(context, node, 0);
  TfLiteEvalTensor* output = micro::GetEvalOutput(context, node, 0);
  TF_LITE_ENSURE(context, input != nullptr && output != nullptr);
  edgeplus_context ctx;
  ctx.buf = context->GetScratchBuffer(context, data->scratch_index);
  ctx.size = data->scratch_bytes;
  const edgeplus_status st = edgeplus_patch_stage(
      &ctx, data->program, data->words, data->filters, micro::GetTensorData<int8_t>(input),
      micro::GetTensorData<int8_t>(output));
  if (st != EDGEPLUS_OK) {
    MicroPrintf("%s: the patch stage returned %s.", kOp, edgeplus_status_str(st));
    PrintRefusal(kOp);
    return kTfLiteError;
  }
  return kTfLiteOk;
}

}  // namespace

OpRegistration* Register_EDGEPLUS_PATCH_STAGE() {
  EDGEPLUS_CHECK_REGISTER_OP(Init, Prepare, Eval);
  static OpRegistration r = micro::RegisterOp(Init, Prepare, Eval);
  return &r;
}

}  // namespace edgeplus
}  // namespace tflite

#endif  // TensorFlow Lite Micro available
