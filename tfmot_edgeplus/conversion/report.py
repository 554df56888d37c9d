"""What a converted model really stores: bits and bytes per weight tensor, activation notes,
and the flatbuffer bytes CoRa adapters add."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from tfmot_edgeplus.conversion import edgeplus_kernels, lowbit
from tfmot_edgeplus.conversion.converter import layer_weight_bits, trained_activation_bits
from tfmot_edgeplus.core import tflite

# Tensor names of CoRa's layers (tfmot_edgeplus.adapters.insert): <layer>_cora_a / _cora_b
# (the two filters), _cora_main_quant (a requantization of the main output). The Add of main
# and residual is found as the consumer of B's output (the converter may give it the model
# output's name).
_ADAPTER_FILTER = re.compile(r"_cora_[ab]/")
_ADAPTER_REQUANT = re.compile(r"_cora_main_quant/")


@dataclass
class AdapterOverhead:
    """The flatbuffer bytes CoRa adapters take: the model minus the same model with its
    adapter operators, their tensors and buffers removed (each consumer of an adapter Add
    reading the main branch instead), both serialized alike. ``parameter_bytes`` of it are
    the adapters' weight data; the rest is operator and tensor metadata (names, shapes,
    quantization parameters, tables). ``rest_bytes``: the model without the adapters."""

    operators: int
    bytes: int
    parameter_bytes: int
    rest_bytes: int

    @property
    def fraction(self) -> float:
        """The adapters' bytes over the rest of the flatbuffer's."""
        return self.bytes / self.rest_bytes


@dataclass
class ConversionReport:
    """Storage of a converted model, from its bytes (and, if given, the QAT model).

    ``weights``: one row per CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED weight, as
    :func:`tfmot_edgeplus.conversion.lowbit.describe_weights` gives it. ``placements``: where
    each conv / depthwise / fully connected layer runs (our ``EDGEPLUS_CONV_MP`` with its bits
    and its scratch choice and bytes, or builtin with why), as
    :func:`~tfmot_edgeplus.conversion.edgeplus_kernels.describe_placement` gives it.
    ``notes``: what did not deploy as trained, e.g. activations trained below 8 bits that
    builtin ops run in int8.
    """

    flatbuffer_bytes: int
    weight_bytes: int
    weights: list[dict] = field(default_factory=list)
    qat_weight_bits: dict[str, int] = field(default_factory=dict)
    qat_activation_bits: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    adapters: AdapterOverhead | None = None
    placements: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "flatbuffer_bytes": self.flatbuffer_bytes,
            "weight_bytes": self.weight_bytes,
            "adapters": None if self.adapters is None else {
                **vars(self.adapters), "fraction": round(self.adapters.fraction, 4)},
            "weights": [{k: (list(v) if isinstance(v, tuple) else v) for k, v in row.items()}
                        for row in self.weights],
            "qat_weight_bits": self.qat_weight_bits,
            "qat_activation_bits": self.qat_activation_bits,
            "placements": self.placements,
            "notes": self.notes,
        }

    def table(self) -> str:
        lines = [
            "| op | tensor | shape | stored as | bits/weight | data bytes | table bytes |",
            "|---|---|---|---|---|---|---|",
        ]
        for row in self.weights:
            name = row["tensor"].split(";")[0][:48]
            stored = row["type"] if row["storage"] == "dense" else f"LUT ({row['type']} decoded)"
            lines.append(
                f"| {row['op']} | {name} | {'x'.join(map(str, row['shape']))} | {stored} | "
                f"{row['bits']} | {row['data_bytes']} | {row['table_bytes']} |"
            )
        if any(p["runs_on"] != "builtin" for p in self.placements):
            lines += ["", "| op | layer | runs on | in/w/out bits | scratch | why builtin |",
                      "|---|---|---|---|---|---|"]
            lines += [f"| {p['op_index']} {p['op']} | {p['layer'][:48]} | {p['runs_on']} | "
                      f"{p['in_bits']}/{p['w_bits']}/{p['out_bits']} | "
                      f"{_scratch_cell(p)} | {p['why']} |"
                      for p in self.placements]
        lines.append(
            f"\nflatbuffer: {self.flatbuffer_bytes} bytes; weights: {self.weight_bytes} bytes")
        if self.adapters is not None:
            a = self.adapters
            lines.append(
                f"CoRa adapters: {a.operators} ops, {a.bytes} flatbuffer bytes "
                f"({a.parameter_bytes} of parameters, {a.bytes - a.parameter_bytes} of op/tensor metadata) = "
                f"{a.fraction:.1%} over the {a.rest_bytes} bytes of the model without them"
            )
        lines.extend(f"note: {note}" for note in self.notes)
        return "\n".join(lines)


def _scratch_cell(placement: dict) -> str:
    """``fast 1,736 B`` / ``lean 728 B`` for our op, empty for a builtin one."""
    if not placement["scratch"]:
        return ""
    return f"{placement['scratch']} {placement['scratch_bytes']:,} B"


def conversion_report(model_bytes: bytes, qat_model=None) -> ConversionReport:
    """Describe ``model_bytes``; with ``qat_model``, also say what its bits became."""
    report = ConversionReport(
        flatbuffer_bytes=len(model_bytes),
        weight_bytes=lowbit.weight_bytes(model_bytes),
        weights=lowbit.describe_weights(model_bytes),
        adapters=adapter_overhead(model_bytes),
    )
    placements = [p.to_dict() for p in edgeplus_kernels.describe_placement(model_bytes)]
    ours = any(p["runs_on"] != "builtin" for p in placements)
    report.placements = placements if ours else []
    if qat_model is None:
        return report
    report.qat_weight_bits = layer_weight_bits(qat_model)
    report.qat_activation_bits = trained_activation_bits(qat_model)[1]
    low_act = sorted(name for name, bits in report.qat_activation_bits.items() if bits < 8)
    if low_act and ours:
        report.notes.append(
            "activations trained below 8 bits keep their trained grid: packed between two "
            "EDGEPLUS_CONV_MP ops, int8 tensors holding the low-bit levels elsewhere (see the "
            "placement table).")
    elif low_act:
        report.notes.append(
            f"activations of {', '.join(low_act)} were trained at "
            f"{min(report.qat_activation_bits[n] for n in low_act)} bits but builtin TFLite ops "
            "run them in int8 (the trained range, 8-bit grid); sub-8-bit activations deploy "
            "only through edgeplus custom ops."
        )
    return report


def _matches(pattern, op) -> bool:
    return any(pattern.search(t.name or "") for t in op.outputs)


def _strip_adapters(model) -> tuple[int, int]:
    """Remove CoRa's operators, tensors and buffers from ``model`` (the wheel's model_editor
    tree), each consumer of an adapter Add reading the main branch instead; returns (operators
    removed, bytes of the adapters' filter weights). A Conv1D adapter's ops include the
    EXPAND_DIMS / RESHAPE Keras puts around its CONV_2D."""
    removed = params = 0
    for sg in model.subgraphs:
        filters = [op for op in sg.operators if _matches(_ADAPTER_FILTER, op)]
        produced_by_filter = {id(t) for op in filters for t in op.outputs}
        bypass = {}  # id(adapter op output) -> the tensor its consumers read instead
        for op in sg.operators:
            if op not in filters and any(id(t) in produced_by_filter for t in op.inputs):
                main = [t for t in op.inputs if id(t) not in produced_by_filter]
                if len(main) != 1 or len(op.outputs) != 1:
                    raise ValueError(
                        f"operator {op.outputs[0].name!r} reads a CoRa adapter's output but has "
                        f"{len(main)} inputs from outside the adapter, not 1 (and 1 output): not a "
                        "CoRa model as tfmot_edgeplus.adapters builds it")
                bypass[id(op.outputs[0])] = main[0]
            elif _matches(_ADAPTER_REQUANT, op) and len(op.inputs) == 1 and len(op.outputs) == 1:
                bypass[id(op.outputs[0])] = op.inputs[0]
        adapter_ops = {id(op) for op in filters}
        adapter_ops |= {id(op) for op in sg.operators if id(op.outputs[0]) in bypass}
        if not adapter_ops:
            continue

        def resolve(t, bypass=bypass):
            while t is not None and id(t) in bypass:
                t = bypass[id(t)]
            return t

        kept = [op for op in sg.operators if id(op) not in adapter_ops]
        for op in kept:
            op.inputs = [resolve(t) for t in op.inputs]
        sg.outputs = [resolve(t) for t in sg.outputs]
        sg.operators = kept
        removed += len(adapter_ops)
        params += sum(len(op.inputs[1].buffer.data) for op in filters  # not reshapes' shapes
                      if tflite.editor_op_name(model, op) in lowbit.FILTER_OPS
                      and op.inputs[1].buffer)
    tflite.prune(model)
    return removed, params


def adapter_overhead(model_bytes: bytes) -> AdapterOverhead | None:
    """The bytes CoRa adapters take in ``model_bytes`` (see :class:`AdapterOverhead`), or
    None when it has none."""
    try:
        model = tflite.read(model_bytes)
    except tflite.TFLiteModelError as err:
        raise lowbit.LowBitStorageError(str(err)) from None
    whole = len(tflite.build(model))  # laid out as the stripped model is
    operators, params = _strip_adapters(model)
    if not operators:
        return None
    rest = len(tflite.build(model))
    return AdapterOverhead(operators=operators, bytes=whole - rest, parameter_bytes=params,
                           rest_bytes=rest)
