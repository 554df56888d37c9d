"""The custom options of each edgeplus custom op, defined once for Python and C.

A custom op in a .tflite file carries its parameters as a flexbuffer map in
``customOptions``. The keys and types of that map are listed here and nowhere else:

* Python encodes and checks options with :meth:`CustomOpSchema.encode` /
  :meth:`CustomOpSchema.decode`;
* the C++ glue (``tflm_ops/tflm/``) includes ``tflm_ops/tflm/edgeplus_op_schema.h``,
  generated from this module by ``python -m tfmot_edgeplus.conversion.op_schema --header``.
  The header holds, per op, an options struct and an X-macro listing every key with its
  type and bounds; the C parser is written over that X-macro, so it reads exactly the
  keys listed here and rejects a map with any other key. ``tests/test_op_schema.py``
  checks that the committed header is the one this module generates.

Choices: options hold only what the tensors cannot say. Scales and zero points live in
the tensors' quantization parameters (as for builtin ops), and the glue derives the
per-channel requantization from them in Prepare. Every value is an integer or a
boolean (no strings, no floats), so the C side needs no parsing beyond flexbuffers'
typed reads, and a map is strict: a missing key, an unknown key, a wrong type or a value
out of bounds is an error on both sides.
"""

from __future__ import annotations

import argparse
import dataclasses
import operator
import sys
from pathlib import Path

__all__ = [
    "CONV_MP",
    "HEADER_PATH",
    "PATCH_STAGE",
    "SCHEMAS",
    "CustomOpSchema",
    "OptionField",
    "get_schema",
    "render_header",
]

_INT32_MIN = -(2**31)
_INT32_MAX = 2**31 - 1

HEADER_PATH = Path(__file__).resolve().parents[2] / "tflm_ops" / "tflm" / "edgeplus_op_schema.h"


@dataclasses.dataclass(frozen=True)
class OptionField:
    """One key of a custom op's options map.

    ``kind`` is ``"int"`` (flexbuffer int, read as int32 in C), ``"bool"`` or ``"blob"``
    (flexbuffer Blob of bytes; in C a pointer and a byte count).
    ``minimum``/``maximum`` bound an int, or a blob's length in bytes (inclusive);
    ``choices`` restricts an int further (checked in Python and, for bit-widths, again in the
    C Prepare with its own message).
    """

    key: str
    kind: str
    doc: str
    minimum: int = _INT32_MIN
    maximum: int = _INT32_MAX
    choices: tuple[int, ...] | None = None

    def __post_init__(self):
        if not self.key.isidentifier() or self.key != self.key.lower():
            raise ValueError(f"option key must be a lower-case C identifier, got {self.key!r}")
        if self.kind not in ("int", "bool", "blob"):
            raise ValueError(
                f"option {self.key!r}: kind must be 'int', 'bool' or 'blob', got {self.kind!r}"
            )
        if not _INT32_MIN <= self.minimum <= self.maximum <= _INT32_MAX:
            raise ValueError(
                f"option {self.key!r}: bounds [{self.minimum}, {self.maximum}] are not int32"
            )

    def check(self, op: str, value) -> int | bool | bytes:
        """Return ``value`` normalised to int/bool/bytes, or raise naming the op, key and value."""
        if self.kind == "blob":
            if not isinstance(value, (bytes, bytearray, memoryview)):
                raise TypeError(f"{op} option {self.key!r} must be bytes, got {type(value)!r}.")
            value = bytes(value)
            if not self.minimum <= len(value) <= self.maximum:
                raise ValueError(
                    f"{op} option {self.key!r} must hold {self.minimum}..{self.maximum} bytes, "
                    f"got {len(value)}."
                )
            return value
        if self.kind == "bool":
            if not isinstance(value, bool):
                raise TypeError(f"{op} option {self.key!r} must be a bool, got {value!r}.")
            return value
        if isinstance(value, bool):
            raise TypeError(f"{op} option {self.key!r} must be an int, got the bool {value!r}.")
        try:
            value = operator.index(value)  # int, numpy integers
        except TypeError:
            raise TypeError(f"{op} option {self.key!r} must be an int, got {value!r}.") from None
        if self.choices is not None and value not in self.choices:
            raise ValueError(
                f"{op} option {self.key!r} must be one of {list(self.choices)}, got {value}."
            )
        if not self.minimum <= value <= self.maximum:
            raise ValueError(
                f"{op} option {self.key!r} must be in [{self.minimum}, {self.maximum}], "
                f"got {value}."
            )
        return value


@dataclasses.dataclass(frozen=True)
class CustomOpSchema:
    """The options map of one custom op (``custom_code``) as an ordered tuple of fields."""

    custom_code: str
    doc: str
    fields: tuple[OptionField, ...]

    def __post_init__(self):
        keys = [f.key for f in self.fields]
        if len(set(keys)) != len(keys):
            raise ValueError(f"{self.custom_code}: duplicate option keys in {keys}")

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(f.key for f in self.fields)

    @property
    def c_prefix(self) -> str:
        """Prefix of the C names, e.g. ``edgeplus_conv_mp`` for ``EDGEPLUS_CONV_MP``."""
        return self.custom_code.lower()

    def validate(self, options: dict) -> dict:
        """Check ``options`` has exactly this schema's keys with valid values; return a copy."""
        if not isinstance(options, dict):
            raise TypeError(
                f"{self.custom_code} options must be a dict, got {type(options).__name__}."
            )
        missing = [k for k in self.keys if k not in options]
        unknown = sorted(str(k) for k in options if k not in self.keys)
        if missing or unknown:
            raise ValueError(
                f"{self.custom_code} options: missing keys {missing}, unknown keys {unknown}; "
                f"expected exactly {list(self.keys)}."
            )
        return {f.key: f.check(self.custom_code, options[f.key]) for f in self.fields}

    def encode(self, options: dict) -> bytes:
        """Validate ``options`` and serialise them as the flexbuffer map for ``customOptions``."""
        from flatbuffers import flexbuffers

        return bytes(flexbuffers.Dumps(self.validate(options)))

    def decode(self, data: bytes) -> dict:
        """Parse and validate a ``customOptions`` flexbuffer written by :meth:`encode`."""
        from flatbuffers import flexbuffers

        try:
            options = flexbuffers.Loads(bytes(data))
        except Exception as err:  # flexbuffers raises assorted errors on garbage
            raise ValueError(
                f"{self.custom_code} custom options are not a valid flexbuffer: {err}"
            ) from err
        return self.validate(options)


_BITS = {"kind": "int", "minimum": 2, "maximum": 8, "choices": (2, 4, 8)}

CONV_MP = CustomOpSchema(
    custom_code="EDGEPLUS_CONV_MP",
    doc=(
        "Mixed-precision 2-D convolution (regular or depthwise): int8/int4/int2 "
        "activations in and out, int8/int4/int2 packed weights, int32 bias, "
        "per-output-channel requantization from the tensors' scales. "
        "Inputs: activations (packed), filter (packed), bias (int32, optional). "
        "Output: activations (packed)."
    ),
    fields=(
        OptionField("in_bits", doc="bits of each input activation (2, 4 or 8)", **_BITS),
        OptionField("w_bits", doc="bits of each weight (2, 4 or 8)", **_BITS),
        OptionField("out_bits", doc="bits of each output activation (2, 4 or 8)", **_BITS),
        OptionField(
            "depthwise", "bool", "depthwise conv (depth multiplier 1) instead of regular conv"
        ),
        OptionField(
            "in_channels", "int", "logical input channels (the packed tensor hides them)", 1, 65535
        ),
        OptionField("out_channels", "int", "logical output channels", 1, 65535),
        OptionField("kernel_h", "int", "filter height", 1, 255),
        OptionField("kernel_w", "int", "filter width", 1, 255),
        OptionField("stride_h", "int", "vertical stride", 1, 255),
        OptionField("stride_w", "int", "horizontal stride", 1, 255),
        OptionField("pad_h", "int", "top padding; bottom follows from the output height", 0, 255),
        OptionField("pad_w", "int", "left padding; right follows from the output width", 0, 255),
        OptionField("dilation_h", "int", "vertical dilation", 1, 255),
        OptionField("dilation_w", "int", "horizontal dilation", 1, 255),
        OptionField("act_min", "int", "fused clamp low, in the output integer domain", -128, 127),
        OptionField("act_max", "int", "fused clamp high, in the output integer domain", -128, 127),
        OptionField(
            "bias_frac_bits", "int",
            "the int32 bias counts 2^-bias_frac_bits steps of in_scale * w_scale (0: TFLite's)",
            0, 16,
        ),
        OptionField(
            "lean_scratch", "bool",
            "request the kernels' lean scratch (at most about 2 KB, a little slower) instead "
            "of their default one",
        ),
    ),
)

PATCH_STAGE = CustomOpSchema(
    custom_code="EDGEPLUS_PATCH_STAGE",
    doc=(
        "QuantMCU patch stage: a chain of conv / depthwise / pad / add steps run patch by "
        "patch with per-patch mixed precision, described by a stage program "
        "(tfmot_edgeplus/core/program.py). Inputs: the stage input (int8), then the "
        "filter of each weight slot (INT8, or INT4 packed). Output: the split tensor (int8)."
    ),
    fields=(
        OptionField("version", "int", "stage program format version", 1, 1),
        OptionField(
            "program", "blob", "the stage program: little-endian int32 words", 32, 1 << 24
        ),
    ),
)

SCHEMAS: dict[str, CustomOpSchema] = {s.custom_code: s for s in (CONV_MP, PATCH_STAGE)}


def get_schema(custom_code: str) -> CustomOpSchema:
    """The schema of ``custom_code``; a clear error lists the known ones."""
    try:
        return SCHEMAS[custom_code]
    except KeyError:
        raise KeyError(
            f"no options schema for custom op {custom_code!r}; known: {sorted(SCHEMAS)}"
        ) from None


def _c_int(v: int) -> str:
    return f"({v})" if v != _INT32_MIN else "(-2147483647 - 1)"


def render_header() -> str:
    """The C header ``tflm_ops/tflm/edgeplus_op_schema.h`` (deterministic text)."""
    out = [
        "/* GENERATED by `python -m tfmot_edgeplus.conversion.op_schema --header`",
        " * from tfmot_edgeplus/conversion/op_schema.py. Do not edit: edit the schema and",
        " * regenerate (tests/test_op_schema.py fails when this file is stale).",
        " *",
        " * Per custom op: its custom code, an options struct, and an X-macro",
        ' * <OP>_OPTIONS(X) calling X(field, "key", KIND, min, max) for every key, KIND',
        " * being INT (flexbuffer int, int32), BOOL, or BLOB (flexbuffer blob: a pointer",
        " * `field` and a byte count `field_bytes`; min/max bound the count). Parsers",
        " * iterate the X-macro, so they read exactly these keys. */",
        "#ifndef EDGEPLUS_OP_SCHEMA_H_",
        "#define EDGEPLUS_OP_SCHEMA_H_",
        "",
        "#include <stdint.h>",
        "",
    ]
    for schema in SCHEMAS.values():
        up = schema.custom_code
        low = schema.c_prefix
        out.append(f"/* {up}: {schema.doc} */")
        out.append(f'#define {up}_CUSTOM_CODE "{up}"')
        out.append(f"#define {up}_NUM_OPTIONS {len(schema.fields)}")
        out.append("")
        out.append("typedef struct {")
        for f in schema.fields:
            if f.kind == "blob":
                out.append(f"  const uint8_t *{f.key}; /* {f.doc} */")
                out.append(f"  int32_t {f.key}_bytes; /* bytes at {f.key} */")
                continue
            ctype = "int32_t" if f.kind == "int" else "uint8_t"
            extra = f"; one of {{{', '.join(map(str, f.choices))}}}" if f.choices else ""
            out.append(f"  {ctype} {f.key}; /* {f.doc}{extra} */")
        out.append(f"}} {low}_options;")
        out.append("")
        out.append(f"#define {up}_OPTIONS(X) \\")
        for i, f in enumerate(schema.fields):
            kind = {"int": "INT", "bool": "BOOL", "blob": "BLOB"}[f.kind]
            lo, hi = (0, 1) if f.kind == "bool" else (f.minimum, f.maximum)
            tail = " \\" if i < len(schema.fields) - 1 else ""
            out.append(f'  X({f.key}, "{f.key}", {kind}, {_c_int(lo)}, {_c_int(hi)}){tail}')
        out.append("")
    out.append("#endif /* EDGEPLUS_OP_SCHEMA_H_ */")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tfmot_edgeplus.conversion.op_schema",
        description="Print or write the C header of the edgeplus custom-op options schema.",
    )
    parser.add_argument("--header", action="store_true", help="emit the C header")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help=f"write the header there instead of stdout (the committed one is {HEADER_PATH})",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="exit 1 if the committed header differs from the generated one",
    )
    args = parser.parse_args(argv)
    text = render_header()
    if args.check:
        current = HEADER_PATH.read_text() if HEADER_PATH.exists() else ""
        if current != text:
            print(
                f"{HEADER_PATH} is stale; regenerate with "
                f"`python -m tfmot_edgeplus.conversion.op_schema --header --out {HEADER_PATH}`",
                file=sys.stderr,
            )
            return 1
        return 0
    if not args.header:
        parser.error("nothing to do: pass --header (optionally with --out FILE) or --check")
    if args.out is None:
        sys.stdout.write(text)
    else:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
