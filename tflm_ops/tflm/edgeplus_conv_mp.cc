/*
 * TFLite Micro glue of EDGEPLUS_CONV_MP: mixed-precision regular / depthwise conv
 * on top of the pure C kernels (tflm_ops/include/edgeplus/edgeplus_ops.h).
 *
 * Tensors (all activations and weights are kTfLiteInt8 tensors holding PACKED
 * data: b-bit values, low bits first, packed over the flat NHWC / OHWI index, as
 * documented in edgeplus_ops.h):
 *   input 0  activations, shape [N, H, W, packed(C_in)]       per-tensor scale/zp
 *   input 1  filter, conv [C_out, KH, KW, packed(C_in)],      per-channel scales
 *                    depthwise [1, KH, KW, packed(C)]          (C_out or 1), zp 0
 *   input 2  bias, int32 [C_out] (optional: absent or index -1), in steps of
 *            in_scale * w_scale[c] / 2^bias_frac_bits (option; 0: TFLite's bias)
 *   output 0 activations, shape [N, OH, OW, packed(C_out)]   per-tensor scale/zp
 * A 1x1 conv with no padding (a fully connected layer: tfmot_edgeplus's convert(kernels=...)
 * writes one so) may also read and write 2-D [N, packed(C)] tensors, taken as [N, 1, 1, C].
 * where packed(C) = ceil(C * bits / 8). The logical channel counts, bit-widths and
 * geometry come from the custom options (edgeplus_op_schema.h, generated from
 * tfmot_edgeplus/conversion/op_schema.py). When C * bits is not a multiple of 8
 * the tensor has a few spare bytes: the packed data starts at byte 0 and runs
 * over the flat index; the rest is ignored on input and left as is on output.
 *
 * Shape, as every TFLM kernel: Init allocates the op's persistent data; Prepare
 * parses the options (node->custom_initial_data: they are not kept, the arena's
 * persistent tail holds only what Eval reads), validates everything with MicroPrintf
 * messages and kTfLiteError, precomputes the per-channel multipliers (TFLite's
 * QuantizeMultiplier of in_scale * w_scale[c] / out_scale) and requests the
 * kernel's lean or default scratch (option lean_scratch); Eval allocates nothing and calls
 * the kernel.
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
#include "tensorflow/lite/kernels/internal/quantization_util.h"
#include "tensorflow/lite/kernels/kernel_util.h"
#include "tensorflow/lite/micro/kernels/kernel_util.h"
#include "tensorflow/lite/micro/micro_context.h"
#include "tensorflow/lite/micro/micro_log.h"

namespace tflite {
namespace edgeplus {
namespace {

constexpr const char* kOp = EDGEPLUS_CONV_MP_CUSTOM_CODE;
constexpr int kInputTensor = 0;
constexpr int kFilterTensor = 1;
constexpr int kBiasTensor = 2;
constexpr int kOutputTensor = 0;

// What Eval reads (persistent: filled by Prepare).
struct OpData {
  bool depthwise;
  edgeplus_conv_params params;
  edgeplus_dims input_dims;
  edgeplus_dims filter_dims;
  edgeplus_dims output_dims;
  int32_t* multiplier;  // [out_channels], persistent
  int32_t* shift;       // [out_channels], persistent
  int32_t scratch_bytes;
  int scratch_index;
};

// ---------------------------------------------------------------- options

// IsKnownKey and ParseOptions (strict: exactly the schema's keys, each with its type and bounds)
EDGEPLUS_DEFINE_OPTIONS_PARSER(EDGEPLUS_CONV_MP_OPTIONS, EDGEPLUS_CONV_MP_NUM_OPTIONS,
                               edgeplus_conv_mp_options, kOp)

void* Init(TfLiteContext* context, const char* buffer, size_t length) {
  (void)buffer;  // Prepare parses the options
  (void)length;
  void* raw = context->AllocatePersistentBuffer(context, sizeof(OpData));
  if (raw == nullptr) return nullptr;  // Prepare reports it
  OpData* data = static_cast<OpData*>(raw);
  memset(data, 0, sizeof(OpData));
  data->scratch_index = -1;
  return data;
}

// ---------------------------------------------------------------- prepare

bool ValidBits(int32_t bits) { return bits == 2 || bits == 4 || bits == 8; }
int32_t BitsMin(int32_t bits) { return -(1 << (bits - 1)); }
int32_t BitsMax(int32_t bits) { return (1 << (bits - 1)) - 1; }

// The [N, H, W, C] of a tensor: its dims when 4-D; [N, 1, 1, C] for a 2-D [N, C] tensor when
// allow_2d (a fully connected layer run as a 1x1 conv). False for any other rank.
bool Dims4(const TfLiteTensor* t, bool allow_2d, int d[4]) {
  if (t->dims == nullptr) return false;
  if (t->dims->size == 4) {
    for (int i = 0; i < 4; ++i) d[i] = t->dims->data[i];
    return true;
  }
  if (allow_2d && t->dims->size == 2) {
    d[0] = t->dims->data[0];
    d[1] = d[2] = 1;
    d[3] = t->dims->data[1];
    return true;
  }
  return false;
}

// Checks a packed activation/filter tensor: int8, 4-D (or 2-D [N, C] when allow_2d), last
// dim = packed(channels); d receives its [N, H, W, C].
TfLiteStatus CheckPackedTensor(const char* what, const TfLiteTensor* t, int32_t d0,
                               int32_t d1, int32_t d2, int32_t channels, int32_t bits,
                               bool allow_2d, int d[4]) {
  if (t->type != kTfLiteInt8) {
    MicroPrintf("%s: %s tensor type %s (%d) not supported; packed data is kTfLiteInt8.",
                kOp, what, TfLiteTypeGetName(t->type), t->type);
    return kTfLiteError;
  }
  if (!Dims4(t, allow_2d, d)) {
    MicroPrintf("%s: %s tensor must be 4-D%s, has %d dims.", kOp, what,
                allow_2d ? " or 2-D [N, C] (a 1x1 conv with no padding)" : "",
                t->dims == nullptr ? 0 : t->dims->size);
    return kTfLiteError;
  }
  const int32_t packed = edgeplus_packed_bytes(channels, bits);
  const bool ok = (d0 < 0 || d[0] == d0) && (d1 < 0 || d[1] == d1) &&
                  (d2 < 0 || d[2] == d2) && d[3] == packed && d[0] > 0 && d[1] > 0 &&
                  d[2] > 0;
  if (!ok) {
    MicroPrintf("%s: %s tensor shape [%d, %d, %d, %d] does not match the options: expected "
                "[%d, %d, %d, %d] (last dim = ceil(%d channels * %d bits / 8); -1 = any).",
                kOp, what, d[0], d[1], d[2], d[3], static_cast<int>(d0),
                static_cast<int>(d1), static_cast<int>(d2), static_cast<int>(packed),
                static_cast<int>(channels), static_cast<int>(bits));
    return kTfLiteError;
  }
  return kTfLiteOk;
}

// Per-tensor affine quantization of an activation tensor; the zero point must fit
// the bit-width.
TfLiteStatus GetActivationQuant(const char* what, const TfLiteTensor* t, int32_t bits,
                                float* scale, int32_t* zero_point) {
  const auto* q = static_cast<const TfLiteAffineQuantization*>(t->quantization.params);
  if (t->quantization.type != kTfLiteAffineQuantization || q == nullptr ||
      q->scale == nullptr || q->scale->size != 1 || q->zero_point == nullptr ||
      q->zero_point->size != 1) {
    MicroPrintf("%s: %s tensor needs per-tensor affine quantization (one scale, one zero "
                "point).",
                kOp, what);
    return kTfLiteError;
  }
  *scale = q->scale->data[0];
  *zero_point = q->zero_point->data[0];
  if (!(*scale > 0.0f)) {
    MicroPrintf("%s: %s scale must be > 0.", kOp, what);
    return kTfLiteError;
  }
  if (*zero_point < BitsMin(bits) || *zero_point > BitsMax(bits)) {
    MicroPrintf("%s: %s zero point %d is outside the %d-bit range [%d, %d].", kOp, what,
                static_cast<int>(*zero_point), static_cast<int>(bits),
                static_cast<int>(BitsMin(bits)), static_cast<int>(BitsMax(bits)));
    return kTfLiteError;
  }
  return kTfLiteOk;
}

TfLiteStatus PrepareWithTensors(TfLiteContext* context, TfLiteNode* node, OpData* data,
                                const edgeplus_conv_mp_options& o, const TfLiteTensor* input,
                                const TfLiteTensor* filter, const TfLiteTensor* bias,
                                const TfLiteTensor* output) {
  // The schema bounds bit-widths to [2, 8]; only 2, 4 and 8 exist. (#field names the
  // option: the struct members are the generated keys.)
#define EDGEPLUS_CHECK_BITS(field)                                                  \
  if (!ValidBits(o.field)) {                                                        \
    MicroPrintf("%s: %s = %d not supported; use 2, 4 or 8.", kOp, #field,           \
                static_cast<int>(o.field));                                         \
    return kTfLiteError;                                                            \
  }
  EDGEPLUS_CHECK_BITS(in_bits)
  EDGEPLUS_CHECK_BITS(w_bits)
  EDGEPLUS_CHECK_BITS(out_bits)
#undef EDGEPLUS_CHECK_BITS
  if (o.depthwise && o.in_channels != o.out_channels) {
    MicroPrintf("%s: depthwise needs in_channels == out_channels (depth multiplier 1), "
                "got %d and %d.",
                kOp, static_cast<int>(o.in_channels), static_cast<int>(o.out_channels));
    return kTfLiteError;
  }
  if (o.act_min > o.act_max || o.act_min < BitsMin(o.out_bits) ||
      o.act_max > BitsMax(o.out_bits)) {
    MicroPrintf("%s: act_min/act_max = %d/%d must satisfy %d <= act_min <= act_max <= %d "
                "for out_bits = %d.",
                kOp, static_cast<int>(o.act_min), static_cast<int>(o.act_max),
                static_cast<int>(BitsMin(o.out_bits)), static_cast<int>(BitsMax(o.out_bits)),
                static_cast<int>(o.out_bits));
    return kTfLiteError;
  }

  // A fully connected layer is a 1x1 conv on [N, 1, 1, C]: its [N, C] tensors are accepted.
  const bool allow_2d = !o.depthwise && o.kernel_h == 1 && o.kernel_w == 1 && o.pad_h == 0 &&
                        o.pad_w == 0;
  int in_d[4], out_d[4], filter_d[4];
  TF_LITE_ENSURE_OK(context, CheckPackedTensor("input", input, -1, -1, -1, o.in_channels,
                                               o.in_bits, allow_2d, in_d));
  const int batches = in_d[0];
  TF_LITE_ENSURE_OK(context, CheckPackedTensor("output", output, batches, -1, -1,
                                               o.out_channels, o.out_bits, allow_2d, out_d));
  if (o.depthwise) {
    TF_LITE_ENSURE_OK(context, CheckPackedTensor("filter", filter, 1, o.kernel_h, o.kernel_w,
                                                 o.out_channels, o.w_bits, false, filter_d));
  } else {
    TF_LITE_ENSURE_OK(context, CheckPackedTensor("filter", filter, o.out_channels, o.kernel_h,
                                                 o.kernel_w, o.in_channels, o.w_bits, false,
                                                 filter_d));
  }
  if (bias != nullptr) {
    if (bias->type != kTfLiteInt32 || bias->dims == nullptr || bias->dims->size != 1 ||
        bias->dims->data[0] != o.out_channels) {
      MicroPrintf("%s: bias must be int32 [%d], got %s with %d dims.", kOp,
                  static_cast<int>(o.out_channels), TfLiteTypeGetName(bias->type),
                  bias->dims == nullptr ? 0 : bias->dims->size);
      return kTfLiteError;
    }
  }

  float in_scale, out_scale;
  int32_t in_zp, out_zp;
  TF_LITE_ENSURE_OK(context, GetActivationQuant("input", input, o.in_bits, &in_scale, &in_zp));
  TF_LITE_ENSURE_OK(context,
                    GetActivationQuant("output", output, o.out_bits, &out_scale, &out_zp));
  const auto* fq = static_cast<const TfLiteAffineQuantization*>(filter->quantization.params);
  if (filter->quantization.type != kTfLiteAffineQuantization || fq == nullptr ||
      fq->scale == nullptr ||
      (fq->scale->size != 1 && fq->scale->size != o.out_channels)) {
    MicroPrintf("%s: filter needs affine quantization with 1 or %d (out_channels) scales.",
                kOp, static_cast<int>(o.out_channels));
    return kTfLiteError;
  }
  if (fq->zero_point != nullptr) {
    for (int i = 0; i < fq->zero_point->size; ++i) {
      if (fq->zero_point->data[i] != 0) {
        MicroPrintf("%s: filter zero point %d at channel %d; weights must be symmetric (0).",
                    kOp, fq->zero_point->data[i], i);
        return kTfLiteError;
      }
    }
  }

  edgeplus_conv_params& p = data->params;
  p.stride_h = o.stride_h;
  p.stride_w = o.stride_w;
  p.pad_h = o.pad_h;
  p.pad_w = o.pad_w;
  p.dilation_h = o.dilation_h;
  p.dilation_w = o.dilation_w;
  p.input_zero_point = in_zp;
  p.output_zero_point = out_zp;
  p.act_min = o.act_min;
  p.act_max = o.act_max;
  p.in_bits = o.in_bits;
  p.w_bits = o.w_bits;
  p.out_bits = o.out_bits;
  p.bias_frac_bits = o.bias_frac_bits;
  data->depthwise = o.depthwise;
  data->input_dims = {batches, in_d[1], in_d[2], o.in_channels};
  data->output_dims = {batches, out_d[1], out_d[2], o.out_channels};
  if (o.depthwise) {
    data->filter_dims = {1, o.kernel_h, o.kernel_w, o.out_channels};
  } else {
    data->filter_dims = {o.out_channels, o.kernel_h, o.kernel_w, o.in_channels};
  }

  // The kernel validates the geometry (output reachable from the input, accumulator
  // bound); ask it now so a bad model fails here rather than in Eval. With lean_scratch the
  // op takes the lean scratch (edgeplus_ops.h: at most about 2 KB, a few per cent more
  // instructions; the kernel runs its lean layout when given less than the default size),
  // otherwise the default one (the converter chooses per op: lean where the default would
  // raise the model's memory peak).
  const edgeplus_dims *in = &data->input_dims, *filt = &data->filter_dims;
  const edgeplus_dims *out = &data->output_dims;
  int32_t scratch;
  if (o.depthwise) {
    scratch = o.lean_scratch ? edgeplus_depthwise_conv2d_get_buffer_size_lean(&p, in, filt, out)
                             : edgeplus_depthwise_conv2d_get_buffer_size(&p, in, filt, out);
  } else {
    scratch = o.lean_scratch ? edgeplus_conv2d_get_buffer_size_lean(&p, in, filt, out)
                             : edgeplus_conv2d_get_buffer_size(&p, in, filt, out);
  }
  if (scratch < 0) {
    MicroPrintf("%s: the kernel rejects this geometry (%s): input %dx%dx%d, filter %dx%d, "
                "output %dx%dx%d, stride %d/%d, pad %d/%d, dilation %d/%d.",
                kOp, edgeplus_status_str(static_cast<edgeplus_status>(scratch)),
                static_cast<int>(data->input_dims.h), static_cast<int>(data->input_dims.w),
                static_cast<int>(o.in_channels), static_cast<int>(o.kernel_h),
                static_cast<int>(o.kernel_w), static_cast<int>(data->output_dims.h),
                static_cast<int>(data->output_dims.w), static_cast<int>(o.out_channels),
                static_cast<int>(o.stride_h), static_cast<int>(o.stride_w),
                static_cast<int>(o.pad_h), static_cast<int>(o.pad_w),
                static_cast<int>(o.dilation_h), static_cast<int>(o.dilation_w));
    PrintRefusal(kOp);
    return kTfLiteError;
  }

  // Per-channel requantization, as TFLite's PopulateConvolutionQuantizationParams:
  // double(in_scale) * double(w_scale[c]) / double(out_scale) -> QuantizeMultiplier.
  // A layer with any operand below 8 bits has tiny accumulators (a 2-bit 3x3 conv: |acc| <= 27),
  // for which TFLite's double rounding (SaturatingRoundingDoublingHighMul of the accumulator
  // itself, then RoundingDivideByPOT) is coarse: acc = 1 at 0.283 gives 1, not 0 (20 % of a
  // W2A2 conv's outputs off by one level against Keras, measured). There a multiplier below
  // 1 is given at shift 0, m = round(effective * 2^31) (kept above 2^15 for 16 bits of
  // precision): the kernel then rounds acc * effective once, as Keras's float math does.
  // The kernel requantizes acc * 2^bias_frac_bits + bias: effective is divided by that.
  const double frac_scale = static_cast<double>(1 << o.bias_frac_bits);
  const size_t n = static_cast<size_t>(o.out_channels);
  data->multiplier = static_cast<int32_t*>(
      context->AllocatePersistentBuffer(context, n * sizeof(int32_t)));
  data->shift = static_cast<int32_t*>(
      context->AllocatePersistentBuffer(context, n * sizeof(int32_t)));
  if (data->multiplier == nullptr || data->shift == nullptr) {
    MicroPrintf("%s: arena too small for %d per-channel multipliers.", kOp,
                static_cast<int>(n));
    return kTfLiteError;
  }
  for (size_t c = 0; c < n; ++c) {
    const float w_scale = fq->scale->data[fq->scale->size == 1 ? 0 : c];
    if (!(w_scale > 0.0f)) {
      MicroPrintf("%s: filter scale of channel %d must be > 0.", kOp, static_cast<int>(c));
      return kTfLiteError;
    }
    const double effective = static_cast<double>(in_scale) * static_cast<double>(w_scale) /
                             static_cast<double>(out_scale) / frac_scale;
    int32_t m = 0;
    int s = 0;
    QuantizeMultiplier(effective, &m, &s);
    if (s > 30) {
      MicroPrintf("%s: effective scale %f of channel %d is too large (>= 2^30).", kOp,
                  effective, static_cast<int>(c));
      return kTfLiteError;
    }
    const double single = effective * 2147483648.0;
    if ((o.in_bits < 8 || o.w_bits < 8 || o.out_bits < 8) && s < 0 && single >= 32768.0) {
      m = static_cast<int32_t>(single + 0.5);
      s = 0;
    }
    data->multiplier[c] = m;
    data->shift[c] = s;
  }

  data->scratch_bytes = scratch;
  data->scratch_index = -1;
  if (scratch > 0) {
    TF_LITE_ENSURE_OK(context, context->RequestScratchBufferInArena(
                                   context, static_cast<size_t>(scratch),
                                   &data->scratch_index));
  }
  (void)node;
  return kTfLiteOk;
}

TfLiteStatus Prepare(TfLiteContext* context, TfLiteNode* node) {
  OpData* data = static_cast<OpData*>(node->user_data);
  if (data == nullptr) {
    MicroPrintf("%s: arena too small for the op data.", kOp);
    return kTfLiteError;
  }
  edgeplus_conv_mp_options options = {};  // ParseOptions fills every key or fails
  if (!ParseOptions(static_cast<const char*>(node->custom_initial_data),
                    static_cast<size_t>(node->custom_initial_data_size), &options)) {
    MicroPrintf("%s: invalid custom options (see the messages above).", kOp);
    return kTfLiteError;
  }
  if (NumInputs(node) != 2 && NumInputs(node) != 3) {
    MicroPrintf("%s: takes 2 or 3 inputs (activations, filter[, bias]), got %d.", kOp,
                NumInputs(node));
    return kTfLiteError;
  }
  if (NumOutputs(node) != 1) {
    MicroPrintf("%s: has 1 output, got %d.", kOp, NumOutputs(node));
    return kTfLiteError;
  }

  MicroContext* mc = GetMicroContext(context);
  TfLiteTensor* input = mc->AllocateTempInputTensor(node, kInputTensor);
  TfLiteTensor* filter = mc->AllocateTempInputTensor(node, kFilterTensor);
  TfLiteTensor* bias =
      NumInputs(node) == 3 ? mc->AllocateTempInputTensor(node, kBiasTensor) : nullptr;
  TfLiteTensor* output = mc->AllocateTempOutputTensor(node, kOutputTensor);
  TfLiteStatus status = kTfLiteError;
  if (input == nullptr || filter == nullptr || output == nullptr) {
    MicroPrintf("%s: the activations, filter and output tensors are required.", kOp);
  } else {
    status = PrepareWithTensors(context, node, data, options, input, filter, bias, output);
  }
  if (input != nullptr) mc->DeallocateTempTfLiteTensor(input);
  if (filter != nullptr) mc->DeallocateTempTfLiteTensor(filter);
  if (bias != nullptr) mc->DeallocateTempTfLiteTensor(bias);
  if (output != nullptr) mc->DeallocateTempTfLiteTensor(output);
  return status;
}

// ---------------------------------------------------------------- eval

TfLiteStatus Eval(TfLiteContext* context, TfLiteNode* node) {
  const OpData* data = static_cast<const OpData*>(node->user_data);
  TF_LITE_ENSURE(context, data != nullptr && data->multiplier != nullptr);
  const TfLiteEvalTensor* input = micro::GetEvalInput(context, node, kInputTensor);
  const TfLiteEvalTensor* filter = micro::GetEvalInput(context, node, kFilterTensor);
  const TfLiteEvalTensor* bias =
      NumInputs(node) == 3 ? micro::GetEvalInput(context, node, kBiasTensor) : nullptr;
  TfLiteEvalTensor* output = micro::GetEvalOutput(context, node, kOutputTensor);
  TF_LITE_ENSURE(context, input != nullptr && filter != nullptr && output != nullptr);

  edgeplus_context ctx;
  ctx.buf = data->scratch_index >= 0 ? context->GetScratchBuffer(context, data->scratch_index)
                                     : nullptr;
  ctx.size = data->scratch_index >= 0 ? data->scratch_bytes : 0;
  edgeplus_quant_params quant;
  quant.multiplier = data->multiplier;
  quant.shift = data->shift;
  const int32_t* bias_data = bias != nullptr ? micro::GetTensorData<int32_t>(bias) : nullptr;

  const edgeplus_status st =
      data->depthwise
          ? edgeplus_depthwise_conv2d(&ctx, &data->params, &quant, &data->input_dims,
                                      micro::GetTensorData<int8_t>(input), &data->filter_dims,
                                      micro::GetTensorData<int8_t>(filter), bias_data,
                                      &data->output_dims, micro::GetTensorData<int8_t>(output))
          : edgeplus_conv2d(&ctx, &data->params, &quant, &data->input_dims,
                            micro::GetTensorData<int8_t>(input), &data->filter_dims,
                            micro::GetTensorData<int8_t>(filter), bias_data,
                            &data->output_dims, micro::GetTensorData<int8_t>(output));
  if (st != EDGEPLUS_OK) {
    MicroPrintf("%s: kernel returned %s.", kOp, edgeplus_status_str(st));
    PrintRefusal(kOp);
    return kTfLiteError;
  }
  return kTfLiteOk;
}

}  // namespace

OpRegistration* Register_EDGEPLUS_CONV_MP() {
  EDGEPLUS_CHECK_REGISTER_OP(Init, Prepare, Eval);
  static OpRegistration r = micro::RegisterOp(Init, Prepare, Eval);
  return &r;
}

}  // namespace edgeplus
}  // namespace tflite

#endif  // TensorFlow Lite Micro available
