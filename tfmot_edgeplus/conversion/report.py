"""What a converted model really stores: bits and bytes per weight tensor, activation notes."""

from __future__ import annotations

from dataclasses import dataclass, field

from tfmot_edgeplus.conversion import lowbit


@dataclass
class ConversionReport:
    """Storage of a converted model, from its bytes (and, if given, the QAT model).

    ``weights``: one row per CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED weight, as
    :func:`tfmot_edgeplus.conversion.lowbit.describe_weights` gives it. ``notes``: what did
    not deploy as trained, e.g. activations trained below 8 bits that builtin ops run in int8.
    """

    flatbuffer_bytes: int
    weight_bytes: int
    weights: list[dict] = field(default_factory=list)
    qat_weight_bits: dict[str, int] = field(default_factory=dict)
    qat_activation_bits: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "flatbuffer_bytes": self.flatbuffer_bytes,
            "weight_bytes": self.weight_bytes,
            "weights": [{k: (list(v) if isinstance(v, tuple) else v) for k, v in row.items()}
                        for row in self.weights],
            "qat_weight_bits": self.qat_weight_bits,
            "qat_activation_bits": self.qat_activation_bits,
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
        lines.append(f"\nflatbuffer: {self.flatbuffer_bytes} bytes; weights: {self.weight_bytes} bytes")
        lines.extend(f"note: {note}" for note in self.notes)
        return "\n".join(lines)


def conversion_report(model_bytes: bytes, qat_model=None) -> ConversionReport:
    """Describe ``model_bytes``; with ``qat_model``, also say what its bits became."""
    from tfmot_edgeplus.conversion.converter import layer_activation_bits, layer_weight_bits

    report = ConversionReport(
        flatbuffer_bytes=len(model_bytes),
        weight_bytes=lowbit.weight_bytes(model_bytes),
        weights=lowbit.describe_weights(model_bytes),
    )
    if qat_model is None:
        return report
    report.qat_weight_bits = layer_weight_bits(qat_model)
    report.qat_activation_bits = layer_activation_bits(qat_model)
    low_act = sorted(name for name, bits in report.qat_activation_bits.items() if bits < 8)
    if low_act:
        report.notes.append(
            f"activations of {', '.join(low_act)} were trained at "
            f"{min(report.qat_activation_bits[n] for n in low_act)} bits but builtin TFLite ops "
            "run them in int8 (the trained range, 8-bit grid); sub-8-bit activations deploy "
            "only through edgeplus custom ops."
        )
    return report
