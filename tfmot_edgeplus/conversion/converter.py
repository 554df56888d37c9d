"""``convert()``: a QAT model to a full-integer TFLite flatbuffer that keeps its low bits.

We wrap ``tf.lite.TFLiteConverter`` (full-integer, int8 input/output, builtin int8 ops) and
never replace it. Around it:

1. activations trained below 8 bits are traced at 8 bits over their trained ranges (builtin
   ops run int8 activations only);
2. TF 2.21 stores 2-, 3- and 4-bit filters of CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED
   as TFLite INT4 (two per byte), 4-bit layers keep that; 3-bit levels, which it moves off
   their grid, are put back (:func:`~tfmot_edgeplus.conversion.lowbit.restore_int4_levels`);
3. layers quantized below 4 bits are repacked by :mod:`tfmot_edgeplus.conversion.lowbit` so
   that they take 2 or 3 bits per weight (see that module for the format and why).
"""

from __future__ import annotations

import contextlib

import numpy as np

from tfmot_edgeplus import _tfmot
from tfmot_edgeplus._compat import check_keras2_model, tf, tfmot
from tfmot_edgeplus.conversion import edgeplus_kernels, lowbit
from tfmot_edgeplus.quantization.quantizers import q_max
from tfmot_edgeplus.quantization.scheme import initialize_learned_scales

_QuantizeWrapper = tfmot.quantization.keras.QuantizeWrapperV2


def _as_sample_iterator(representative_data, input_shape):
    """Validate ``representative_data`` and return a callable yielding one-sample batches."""
    expected = tuple(int(d) if d is not None else None for d in input_shape[1:])
    if callable(representative_data) and not isinstance(representative_data, np.ndarray):
        return representative_data
    if isinstance(representative_data, tf.data.Dataset):
        def from_dataset():
            for item in representative_data.unbatch().take(500):
                x = item[0] if isinstance(item, (tuple, list)) else item
                yield [tf.cast(tf.expand_dims(x, 0), tf.float32)]
        return from_dataset
    data = np.asarray(representative_data, dtype=np.float32)
    if data.size == 0 or data.ndim == 0 or len(data) == 0:
        raise ValueError(
            f"representative_data is empty (shape {data.shape}); pass a few hundred real input "
            f"samples shaped (N, {', '.join(map(str, expected))})."
        )
    if data.shape[1:] != tuple(d if d is not None else s for d, s in zip(expected, data.shape[1:])):
        raise ValueError(
            f"representative_data has samples of shape {data.shape[1:]}, but the model's input "
            f"is {expected} (per sample); pass an array shaped (N, {', '.join(map(str, expected))})."
        )
    if not np.all(np.isfinite(data)):
        raise ValueError("representative_data contains NaN or infinite values; pass real samples.")
    sample = data[: min(len(data), 500)]

    def from_array():
        for row in sample:
            yield [row[None, ...]]

    return from_array


def layer_weight_bits(qat_model) -> dict[str, int]:
    """Weight bits of every layer whose weights are quantized, by original layer name."""
    bits = {}
    for layer in qat_model.layers:
        if not isinstance(layer, _QuantizeWrapper):
            continue
        for _, quantizer, _ in _tfmot.weight_vars(layer):
            num_bits = getattr(quantizer, "num_bits", None)
            if num_bits is not None:
                bits[layer.layer.name] = int(num_bits)
    return bits


def _off_grid_top_levels(qat_model) -> dict[str, int]:
    """Layers whose INT4 values the converter takes off their grid, with their top level.

    TF 2.21 maps a ``b``-bit fake-quant range ``[-Qp*s, Qp*s]`` onto INT4's ``[-7, 7]``, i.e.
    stores ``round(7 * level / Qp)``: exact for 2 bits (Qp = 1) and 4 bits (Qp = 7), off the
    grid for 3 bits (Qp = 3).
    """
    return {
        name: q_max(bits)
        for name, bits in layer_weight_bits(qat_model).items()
        if bits <= 4 and 7 % q_max(bits) != 0
    }


def _activation_quantizers(qat_model) -> list:
    """Every quantizer of an activation, output or model input (not of a weight)."""
    found = []
    for layer in qat_model.layers:
        found.extend(_tfmot.activation_quantizers(layer))
    unique = {id(q): q for q in found if q is not None and hasattr(q, "num_bits")}
    return list(unique.values())


@contextlib.contextmanager
def _activations_traced_at_8_bits(qat_model):
    """Trace sub-8-bit activation quantizers at 8 bits (same trained ranges), then restore.

    Builtin TFLite ops run int8 activations only: a 4-bit fake-quant activation would make
    the converter emit int4 activation tensors that CONV_2D and friends refuse.
    """
    lowered = [(q, q.num_bits) for q in _activation_quantizers(qat_model) if q.num_bits < 8]
    try:
        for quantizer, _ in lowered:
            quantizer.num_bits = 8
        yield
    finally:
        for quantizer, bits in lowered:
            quantizer.num_bits = bits


def is_quantized(model) -> bool:
    return any(isinstance(layer, _QuantizeWrapper) for layer in model.layers)


def trained_activation_bits(qat_model) -> tuple[int, dict[str, int]]:
    """The bits each activation was trained at: ``(input_bits, {layer: bits})``, the model
    input's quantizer and, per layer, the last quantizer it applies to its activation or
    output (what its output tensor holds); layers that quantize nothing are absent."""
    input_bits, bits = 8, {}
    for layer in qat_model.layers:
        found = [q for q in _tfmot.activation_quantizers(layer) if hasattr(q, "num_bits")]
        if not found:
            continue
        if isinstance(layer, _QuantizeWrapper):
            bits[layer.layer.name] = int(found[-1].num_bits)
        else:  # TF-MOT's QuantizeLayer: the model input
            input_bits = int(found[-1].num_bits)
    return input_bits, bits


def float_biases(qat_model) -> list:
    """The float bias of every conv / depthwise / fully connected layer of ``qat_model``
    (BatchNorm folded by TF's converter, in a float conversion), in graph order: a layer whose
    accumulator step grows on our op takes its bias from these, not from the int8 model's
    rounding (:func:`~tfmot_edgeplus.conversion.edgeplus_kernels.place_on_edgeplus`)."""
    with _activations_traced_at_8_bits(qat_model):
        model_bytes = bytes(tf.lite.TFLiteConverter.from_keras_model(qat_model).convert())
    return edgeplus_kernels.filter_biases(model_bytes)


def _kernel_choice(kernels) -> str:
    if kernels not in edgeplus_kernels.KERNELS:
        raise ValueError(
            f"kernels must be one of {list(edgeplus_kernels.KERNELS)}, got {kernels!r}: "
            "'builtin' (TFLite's ops), 'edgeplus' (layers with weights or activations below "
            "8 bits on EDGEPLUS_CONV_MP) or 'edgeplus_all' (every conv / depthwise / fully "
            "connected layer on EDGEPLUS_CONV_MP)."
        )
    return kernels


def convert(qat_model, representative_data, *, lowbit_storage: bool = True,
            kernels: str = "builtin", scratch: str = "auto") -> bytes:
    """Convert a QAT model to a full-integer TFLite flatbuffer (int8 I/O) and return its bytes.

    Args:
      qat_model: a model from :func:`tfmot_edgeplus.quantize_model` or TF-MOT's
        ``quantize_apply`` (any scheme). A float model is refused: quantize it first.
      representative_data: real input samples, an array ``(N, *input_shape)``, a
        ``tf.data.Dataset`` of ``x`` or ``(x, y)``, or a callable yielding ``[batch_of_one]``
        as TFLite expects. Used by the converter to fix the activation ranges the QAT model
        did not record (input, and any unquantized tensor).
      lowbit_storage: repack 2- and 3-bit layers to 2 / 3 bits per weight (default). With
        False they stay in the INT4 container TF emits.
      kernels: ``"builtin"`` (default): TFLite's builtin ops only. ``"edgeplus"``: every
        conv / depthwise / fully connected layer whose weights or activations were trained
        below 8 bits runs on our kernels as an ``EDGEPLUS_CONV_MP`` custom op (packed 2/4-bit
        weights; activations on their trained 2/4-bit grid, packed between two of our ops),
        the int8 layers stay builtin. ``"edgeplus_all"``: the int8 layers on ours too. A
        layer our kernels cannot run stays builtin;
        :func:`~tfmot_edgeplus.conversion.report.conversion_report` says where each layer
        runs and why (:mod:`~tfmot_edgeplus.conversion.edgeplus_kernels`). The interpreter
        needs the op registered (``EdgePlus`` on the board, ``tflm_ops.load()`` on the host).
      scratch: the scratch each of our ops requests (with ``kernels`` other than ``"builtin"``):
        ``"auto"`` (default): the kernels' default (fastest) scratch where it costs no
        arena in TFLM's memory plan, their lean one (about 2 KB at most, a few per cent
        slower) where it would raise the arena;
        ``"fast"``: the default everywhere; ``"lean"``: the lean one everywhere
        (:func:`~tfmot_edgeplus.conversion.edgeplus_kernels.choose_scratch`).

    Activations trained below 8 bits are converted at 8 bits over their trained ranges:
    builtin ops run int8 activations only (the conversion report notes it).

    3-bit filters are first put back on their quantizer's exact grid
    (:func:`~tfmot_edgeplus.conversion.lowbit.restore_int4_levels`): the converter re-rounds
    their levels -3..3 onto INT4's -7..7.
    """
    check_keras2_model(qat_model, "qat_model")
    kernels = _kernel_choice(kernels)
    edgeplus_kernels.scratch_choice(scratch)
    if not is_quantized(qat_model):
        raise ValueError(
            f"qat_model {qat_model.name!r} has no quantized layers: it is a float model. "
            "Quantize it first: tfmot_edgeplus.quantize_model(model, EdgePlusQuantizeScheme(...))."
        )
    samples = _as_sample_iterator(representative_data, qat_model.inputs[0].shape)
    # Unset LSQ steps (a bare quantize_apply, never trained) become what inference derives
    # anyway, stored, so that the converter sees constants.
    initialize_learned_scales(qat_model)
    with _activations_traced_at_8_bits(qat_model):
        converter = tf.lite.TFLiteConverter.from_keras_model(qat_model)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = samples
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
        model_bytes = bytes(converter.convert())
    model_bytes = lowbit.restore_int4_levels(model_bytes, _off_grid_top_levels(qat_model))
    low = {name: b for name, b in layer_weight_bits(qat_model).items() if b < 4}
    if kernels != "builtin":
        input_bits, act_bits = trained_activation_bits(qat_model)
        model_bytes, placements = edgeplus_kernels.place_on_edgeplus(
            model_bytes, act_bits, input_bits, include_int8=kernels == "edgeplus_all",
            scratch=scratch, float_biases=float_biases(qat_model))
        builtin = [p.filter for p in placements if p.why]
        low = {name: b for name, b in low.items()
               if any(edgeplus_kernels.names_layer(f, name) for f in builtin)}
    if lowbit_storage and low:
        model_bytes = lowbit.pack_lowbit_weights(model_bytes, low)
    return model_bytes


__all__ = [
    "convert",
    "float_biases",
    "is_quantized",
    "layer_weight_bits",
    "trained_activation_bits",
]
