"""EDGEPLUS_CONV_MP in the pinned TFLM interpreter (pip tflite-micro), bit-exact with the
NumPy reference, and strict about bad models.

The custom-op library is compiled from tflm_ops/tflm + tflm_ops/src against the TFLM
headers of the wheel's commit, so these tests are skipped (with the reason) when
EDGEPLUS_TFLM_ROOT and its siblings are unset.
"""

from __future__ import annotations

import os
import zlib

import numpy as np
import pytest

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

_MISSING = [
    v
    for v in ("EDGEPLUS_TFLM_ROOT", "EDGEPLUS_FLATBUFFERS_ROOT", "EDGEPLUS_GEMMLOWP_ROOT")
    if not os.environ.get(v)
]
pytestmark = pytest.mark.skipif(
    bool(_MISSING),
    reason=f"{', '.join(_MISSING)} unset: the glue must be compiled against the TFLM sources of "
    "the pinned wheel (tflite-micro 90b983c, flatbuffers v25.9.23, gemmlowp fda83bdc)",
)

runtime = pytest.importorskip("tflite_micro.python.tflite_micro.runtime")

from builders.tflite_models import (
    ConvMPSpec,
    build_conv_mp_model,
    pack_activations,
    unpack_activations,
)
from flatbuffers import flexbuffers

from tfmot_edgeplus.conversion import op_schema
from tfmot_edgeplus.core import conv_reference as ref
from tfmot_edgeplus.core import intmath
from tfmot_edgeplus.core.intmath import int_range, narrow_range
from tfmot_edgeplus.runtime.build_lock import build_lock


@pytest.fixture(scope="module")
def registerer() -> str:
    from tfmot_edgeplus.runtime import tflm_ops

    return tflm_ops.load()


def _make_spec(
    rng,
    *,
    in_bits,
    w_bits,
    out_bits,
    depthwise=False,
    shape=(1, 9, 11, 6),
    out_c=5,
    kernel=3,
    stride=1,
    padding="SAME",
    dilation=1,
    bias=True,
    act=None,
    bias_frac_bits=0,
    lean_scratch=True,
) -> tuple[ConvMPSpec, np.ndarray]:
    """A random case whose output spreads over the output range (not all clamped)."""
    _n, _h, _w, c = shape
    oc = c if depthwise else out_c
    wlo, whi = narrow_range(w_bits)
    weights = rng.integers(
        wlo, whi + 1, size=(1, kernel, kernel, c) if depthwise else (oc, kernel, kernel, c)
    )
    ilo, ihi = int_range(in_bits)
    x = rng.integers(ilo, ihi + 1, size=shape)
    in_zp = int(rng.integers(ilo, ihi + 1)) // 2
    in_scale = float(np.float32(rng.uniform(0.01, 0.1)))
    w_scales = tuple(
        float(s) for s in np.float32(rng.uniform(0.5, 1.5, size=oc) / (1 << (w_bits - 1)))
    )
    params, out_hw = ref.make_conv_params(
        shape[1:3],
        (kernel, kernel),
        stride=stride,
        padding=padding,
        dilation=dilation,
        in_bits=in_bits,
        w_bits=w_bits,
        out_bits=out_bits,
        input_zero_point=in_zp,
    )
    acc = ref.conv2d_accumulators(x, weights, params, output_hw=out_hw, depthwise=depthwise)
    real = acc * in_scale * np.asarray(w_scales)
    olo, ohi = int_range(out_bits)
    out_scale = float(np.float32(max(np.std(real), 1e-6) * 2.0 / (ohi - olo + 1) * 2))
    out_zp = int(rng.integers(olo, ohi + 1)) // 2
    top = 4 * (1 << in_bits) << bias_frac_bits
    b = rng.integers(-top, top, size=oc) if bias else None
    spec = ConvMPSpec(
        shape,
        weights,
        in_bits,
        w_bits,
        out_bits,
        in_scale,
        in_zp,
        w_scales,
        out_scale,
        out_zp,
        bias=b,
        stride=stride,
        padding=padding,
        dilation=dilation,
        depthwise=depthwise,
        act_min=None if act is None else act[0],
        act_max=None if act is None else act[1],
        bias_frac_bits=bias_frac_bits,
        lean_scratch=lean_scratch,
    )
    return spec, x


def _glue_multiplier(effective: float, spec: ConvMPSpec) -> tuple[int, int]:
    """The glue's multiplier: TFLite's, but a multiplier below 1 of a layer with an operand
    below 8 bits at shift 0 (one rounding), as edgeplus_conv_mp.cc's Prepare."""
    m, s = intmath.quantize_multiplier(effective)
    low = min(spec.in_bits, spec.w_bits, spec.out_bits) < 8
    if low and s < 0 and effective * 2.0**31 >= 2.0**15:
        return int(effective * 2.0**31 + 0.5), 0
    return m, s


def _reference(spec: ConvMPSpec, x: np.ndarray) -> np.ndarray:
    """K's NumPy reference with TFLite's multiplier derivation (float32 scales -> double;
    the requantization reads acc * 2**bias_frac_bits + bias, so the scale is divided by it)."""
    f32 = lambda v: np.float64(np.float32(v))
    scales = (
        spec.weight_scales
        if len(spec.weight_scales) > 1
        else spec.weight_scales * spec.out_channels
    )
    mult, shift = zip(
        *(
            _glue_multiplier(
                f32(spec.input_scale) * f32(s) / f32(spec.output_scale) / 2**spec.bias_frac_bits,
                spec,
            )
            for s in scales
        )
    )
    opts = spec.options()
    params, out_hw = ref.make_conv_params(
        spec.input_shape[1:3],
        spec.weights.shape[1:3],
        stride=spec.stride,
        padding=spec.padding,
        dilation=spec.dilation,
        in_bits=spec.in_bits,
        w_bits=spec.w_bits,
        out_bits=spec.out_bits,
        input_zero_point=spec.input_zero_point,
        output_zero_point=spec.output_zero_point,
        act_min=opts["act_min"],
        act_max=opts["act_max"],
        bias_frac_bits=spec.bias_frac_bits,
    )
    fn = ref.depthwise_conv2d if spec.depthwise else ref.conv2d
    return fn(
        x, spec.weights, spec.bias, np.asarray(mult), np.asarray(shift), params, output_hw=out_hw
    )


def _run(model: bytes, registerer: str, x_packed: np.ndarray) -> np.ndarray:
    interp = runtime.Interpreter.from_bytes(model, custom_op_registerers=[registerer])
    interp.set_input(x_packed, 0)
    interp.invoke()
    return interp.get_output(0)


CASES = [
    # in, w, out bits; depthwise; input shape; stride; padding; bias
    {"in_bits": 8, "w_bits": 8, "out_bits": 8},
    {"in_bits": 4, "w_bits": 4, "out_bits": 4},
    {"in_bits": 2, "w_bits": 2, "out_bits": 2},
    {"in_bits": 8, "w_bits": 4, "out_bits": 8},  # W4A8
    {"in_bits": 8, "w_bits": 2, "out_bits": 4, "stride": 2},
    {"in_bits": 4, "w_bits": 8, "out_bits": 2, "padding": "VALID", "bias": False},
    {
        "in_bits": 2,
        "w_bits": 4,
        "out_bits": 8,
        "shape": (2, 6, 7, 5),
        "dilation": 2,
    },  # odd C: spare bytes
    {"in_bits": 4, "w_bits": 2, "out_bits": 4, "shape": (1, 5, 5, 3), "out_c": 7, "kernel": 1},
    {"in_bits": 8, "w_bits": 8, "out_bits": 8, "depthwise": True, "shape": (1, 8, 8, 8)},
    {
        "in_bits": 4,
        "w_bits": 4,
        "out_bits": 4,
        "depthwise": True,
        "shape": (1, 9, 7, 6),
        "stride": 2,
    },
    {"in_bits": 2, "w_bits": 2, "out_bits": 2, "depthwise": True, "shape": (1, 6, 6, 5)},
    {
        "in_bits": 8,
        "w_bits": 4,
        "out_bits": 4,
        "depthwise": True,
        "shape": (1, 7, 7, 4),
        "padding": "VALID",
        "bias": False,
    },
    {"in_bits": 8, "w_bits": 8, "out_bits": 4, "act": (-2, 5)},  # fused clamp
    # a fractional bias (what convert(kernels="edgeplus") writes below 8 bits)
    {"in_bits": 4, "w_bits": 4, "out_bits": 4, "bias_frac_bits": 5},
    {"in_bits": 2, "w_bits": 2, "out_bits": 2, "bias_frac_bits": 10, "act": (-2, 0)},
    {
        "in_bits": 4,
        "w_bits": 4,
        "out_bits": 4,
        "depthwise": True,
        "shape": (1, 9, 9, 6),
        "bias_frac_bits": 5,
    },
    {
        "in_bits": 2,
        "w_bits": 2,
        "out_bits": 2,
        "depthwise": True,
        "shape": (1, 6, 6, 5),
        "bias_frac_bits": 16,
    },
    # the kernels' default scratch (the others run lean: the layouts differ, the outputs not)
    {"in_bits": 4, "w_bits": 4, "out_bits": 4, "lean_scratch": False},
    {"in_bits": 2, "w_bits": 2, "out_bits": 8, "kernel": 1, "lean_scratch": False},
    {"in_bits": 4, "w_bits": 4, "out_bits": 4, "depthwise": True, "shape": (1, 9, 9, 6),
     "lean_scratch": False},
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
def test_conv_mp_matches_numpy_reference_bit_exactly(registerer, case):
    rng = np.random.default_rng(zlib.crc32(repr(sorted(case.items())).encode()))
    spec, x = _make_spec(rng, **case)
    expected = _reference(spec, x)
    packed_out = _run(build_conv_mp_model(spec), registerer, pack_activations(x, spec.in_bits))
    got = unpack_activations(packed_out, spec.output_shape, spec.out_bits)
    assert got.shape == expected.shape
    diff = np.argwhere(got != expected)
    assert diff.size == 0, (
        f"{len(diff)} outputs differ, first at {diff[:5].tolist()}: "
        f"got {[int(got[tuple(d)]) for d in diff[:5]]}, "
        f"want {[int(expected[tuple(d)]) for d in diff[:5]]}"
    )
    # the check is only meaningful if the output is not (nearly) constant
    assert len(np.unique(expected)) >= min(3, 1 << spec.out_bits), np.unique(expected)


# ------------------------------------------------------------------- bad models


def _good_case() -> tuple[ConvMPSpec, np.ndarray]:
    return _make_spec(np.random.default_rng(7), in_bits=4, w_bits=4, out_bits=4)


@pytest.fixture(scope="module")
def good_spec() -> ConvMPSpec:
    return _good_case()[0]


def _expect_rejected(model: bytes, registerer: str, capfd, *needles: str) -> None:
    with pytest.raises(RuntimeError):
        runtime.Interpreter.from_bytes(model, custom_op_registerers=[registerer])
    err = capfd.readouterr().err
    for needle in needles:
        assert needle in err, f"expected {needle!r} in the MicroPrintf output:\n{err}"


def test_good_options_are_accepted(registerer, capfd):
    """The options the converter writes: the op prints nothing, and the model runs to the
    reference output (the fixture the rejection tests below corrupt is a working model)."""
    spec, x = _good_case()
    packed_out = _run(build_conv_mp_model(spec), registerer, pack_activations(x, spec.in_bits))
    assert capfd.readouterr().err == ""
    got = unpack_activations(packed_out, spec.output_shape, spec.out_bits)
    np.testing.assert_array_equal(got, _reference(spec, x))


@pytest.mark.parametrize("key", op_schema.CONV_MP.keys)
def test_missing_option_is_rejected(registerer, good_spec, capfd, key):
    opts = good_spec.options()
    del opts[key]
    _expect_rejected(
        build_conv_mp_model(good_spec, options=opts), registerer, capfd, f"'{key}' is missing"
    )


def test_unknown_option_is_rejected(registerer, good_spec, capfd):
    opts = dict(good_spec.options(), groups=2)
    _expect_rejected(
        build_conv_mp_model(good_spec, options=opts),
        registerer,
        capfd,
        "unknown custom option 'groups'",
    )


@pytest.mark.parametrize(
    "key,value,needle",
    [
        ("in_bits", True, "'in_bits' must be an int"),
        ("depthwise", 1, "'depthwise' must be a bool"),
        ("stride_h", "2", "'stride_h' must be an int"),
        ("stride_w", 0, "'stride_w' = 0 is outside [1, 255]"),
        ("pad_h", -1, "'pad_h' = -1 is outside"),
        ("w_bits", 3, "w_bits = 3 not supported"),
        ("out_bits", 16, "'out_bits' = 16 is outside"),
        ("in_channels", 7, "input tensor shape"),
        ("out_channels", 6, "filter tensor shape"),
        ("kernel_h", 5, "filter tensor shape"),
        ("act_min", 8, "act_min/act_max"),  # 4-bit output: act_min must be <= 7
        ("act_max", -9, "act_min/act_max"),
        ("depthwise", True, "depthwise needs in_channels == out_channels"),
        ("bias_frac_bits", 17, "'bias_frac_bits' = 17 is outside [0, 16]"),
    ],
)
def test_bad_option_value_is_rejected(registerer, good_spec, capfd, key, value, needle):
    opts = dict(good_spec.options(), **{key: value})
    _expect_rejected(build_conv_mp_model(good_spec, options=opts), registerer, capfd, needle)


@pytest.mark.parametrize(
    "raw,needle",
    [
        (b"", "custom options are missing"),
        (bytes(range(7, 47)), "not a valid flexbuffer"),
        # a real map, truncated (filled in below): its root is read from the new last bytes,
        # which may or may not verify; either way the options must be refused
        (None, "invalid custom options"),
        (bytes(flexbuffers.Dumps([1, 2, 3])), "must be a flexbuffer map"),
    ],
)
def test_malformed_options_buffer_is_rejected(registerer, good_spec, capfd, raw, needle):
    if raw is None:
        raw = op_schema.CONV_MP.encode(good_spec.options())[:-9]
    _expect_rejected(build_conv_mp_model(good_spec, options=raw), registerer, capfd, needle)


def _retype(model: bytes, tensor_name: str, **changes) -> bytes:
    import flatbuffers
    from tflite_micro.tensorflow.lite.python import schema_py_generated as schema

    m = schema.ModelT.InitFromPackedBuf(bytearray(model), 0)
    for t in m.subgraphs[0].tensors:
        name = t.name.decode() if isinstance(t.name, bytes) else t.name
        if name == tensor_name:
            for k, v in changes.items():
                setattr(t, k, v)
    b = flatbuffers.Builder(1024)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def test_wrong_tensor_type_is_rejected(registerer, good_spec, capfd):
    from tflite_micro.tensorflow.lite.python import schema_py_generated as schema

    model = _retype(build_conv_mp_model(good_spec), "input", type=schema.TensorType.INT16)
    _expect_rejected(model, registerer, capfd, "input tensor type")


def test_wrong_bias_shape_is_rejected(registerer, good_spec, capfd):
    model = _retype(build_conv_mp_model(good_spec), "bias", shape=[good_spec.out_channels + 1])
    _expect_rejected(model, registerer, capfd, "bias must be int32")


def test_nonzero_filter_zero_point_is_rejected(registerer, good_spec, capfd):
    from tflite_micro.tensorflow.lite.python import schema_py_generated as schema

    q = schema.QuantizationParametersT()
    q.scale = list(good_spec.weight_scales)
    q.zeroPoint = [1] * good_spec.out_channels
    model = _retype(build_conv_mp_model(good_spec), "filter", quantization=q)
    _expect_rejected(model, registerer, capfd, "weights must be symmetric")


def test_geometry_the_kernel_rejects_is_reported_in_prepare(registerer, capfd):
    # stride 4 over a 5-wide input with an output 3 wide: the last output column would
    # read outside the input. The kernel's check surfaces in Prepare.
    spec, _ = _make_spec(
        np.random.default_rng(3),
        in_bits=8,
        w_bits=8,
        out_bits=8,
        shape=(1, 5, 5, 4),
        kernel=1,
        padding="VALID",
    )
    model = _retype(
        build_conv_mp_model(spec, options=dict(spec.options(), stride_h=4, stride_w=4)),
        "output",
        shape=[1, 3, 3, spec.out_channels],
    )
    _expect_rejected(model, registerer, capfd, "the kernel rejects this geometry")


def test_corrupted_options_never_crash(registerer, good_spec, capfd):
    """Byte flips / truncations / random bytes in the options: an error or (if the
    corruption happens to leave a valid map) a normal model, never a crash."""
    rng = np.random.default_rng(11)
    valid = bytearray(op_schema.CONV_MP.encode(good_spec.options()))
    variants = []
    for _ in range(120):
        b = bytearray(valid)
        for pos in rng.integers(0, len(b), size=int(rng.integers(1, 4))):
            b[pos] = int(rng.integers(0, 256))
        variants.append(bytes(b))
    variants += [bytes(valid[: int(n)]) for n in rng.integers(1, len(valid), size=20)]
    variants += [
        rng.integers(0, 256, size=int(n), dtype=np.uint8).tobytes() for n in (1, 2, 3, 8, 64, 500)
    ]
    rejected = 0
    for raw in variants:
        try:
            runtime.Interpreter.from_bytes(
                build_conv_mp_model(good_spec, options=raw), custom_op_registerers=[registerer]
            )
        except RuntimeError:
            rejected += 1
    capfd.readouterr()
    assert rejected >= len(variants) // 2, (
        f"only {rejected} of {len(variants)} corruptions rejected"
    )


@pytest.mark.skipif(
    __import__("shutil").which("arm-none-eabi-g++") is None,
    reason="arm-none-eabi-g++ missing (apt-get install gcc-arm-none-eabi "
    "libstdc++-arm-none-eabi-newlib)",
)
def test_same_glue_compiles_for_cortex_m4():
    """The glue (both ops) compiles unchanged with arm-none-eabi-g++ for the Nano's M4F."""
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    with build_lock():
        proc = subprocess.run(
            ["make", "-s", "-f", str(root / "tflm_ops" / "Makefile.tflm"), "m4-object"],
            check=False,
            capture_output=True,
            text=True,
            timeout=600,
            cwd=root,
        )
    assert proc.returncode == 0, proc.stderr[-4000:]
    for name, want in (
        ("edgeplus_conv_mp.o", ["tflite::edgeplus::Register_EDGEPLUS_CONV_MP()"]),
        (
            "edgeplus_patch_stage_op.o",
            ["tflite::edgeplus::Register_EDGEPLUS_PATCH_STAGE()", "edgeplus_patch_stage_check"],
        ),
    ):
        obj = root / "build" / "m4" / "tflm" / name
        header = subprocess.run(
            ["arm-none-eabi-readelf", "-h", "-A", str(obj)],
            check=False,
            capture_output=True,
            text=True,
        ).stdout
        assert "ARM" in header and "Tag_FP_arch: VFPv4-D16" in header, header
        syms = subprocess.run(
            ["arm-none-eabi-nm", "-C", str(obj)], check=False, capture_output=True, text=True
        ).stdout
        for sym in want:
            assert sym in syms, (name, sym)
