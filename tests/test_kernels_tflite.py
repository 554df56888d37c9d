"""Our int8 conv / depthwise kernels are bit-exact with TFLite Micro's own int8 kernels.

A one-layer Keras Conv2D / DepthwiseConv2D model is converted full-integer int8 by
``tf.lite.TFLiteConverter`` (representative dataset, int8 I/O), run in the pinned
tflite-micro interpreter, and its quantization parameters and weights are read from the
flatbuffer (``tensorflow.lite.tools.flatbuffer_utils``). The multipliers are derived as
TFLite's PopulateConvolutionQuantizationParams does, and our C kernel (via ctypes) and the
NumPy reference must reproduce TFLM's output exactly.
"""

from __future__ import annotations

import numpy as np
import pytest

from tfmot_edgeplus.core import conv_reference as ref
from tfmot_edgeplus.core import intmath
from tfmot_edgeplus.runtime import kernels

runtime = pytest.importorskip("tflite_micro.python.tflite_micro.runtime")

# (name, layer kwargs, input hwc)
CASES = [
    (
        "conv_same_s1_relu",
        {
            "kind": "conv",
            "filters": 5,
            "kernel_size": 3,
            "strides": 1,
            "padding": "same",
            "activation": "relu",
        },
        (9, 10, 3),
    ),
    (
        "conv_valid_s2",
        {
            "kind": "conv",
            "filters": 4,
            "kernel_size": 3,
            "strides": 2,
            "padding": "valid",
            "activation": None,
        },
        (11, 9, 5),
    ),
    (
        "conv_same_s2_1x5",
        {
            "kind": "conv",
            "filters": 3,
            "kernel_size": (1, 5),
            "strides": 2,
            "padding": "same",
            "activation": "relu6",
        },
        (8, 12, 2),
    ),
    # (dilated convs are lowered by the converter to SpaceToBatch + conv + BatchToSpace, so
    # a one-layer model has no dilated CONV_2D to compare with; the reference tests cover it)
    (
        "conv_same_5x5_odd",
        {
            "kind": "conv",
            "filters": 7,
            "kernel_size": 5,
            "strides": 1,
            "padding": "same",
            "activation": None,
        },
        (10, 9, 5),
    ),
    (
        "dw_same_s1",
        {"kind": "dw", "kernel_size": 3, "strides": 1, "padding": "same", "activation": "relu"},
        (9, 9, 6),
    ),
    (
        "dw_valid_s2",
        {"kind": "dw", "kernel_size": 3, "strides": 2, "padding": "valid", "activation": None},
        (12, 11, 3),
    ),
]


def _build_and_convert(kind, hwc, seed, **kw):
    from tfmot_edgeplus._compat import keras, tf

    keras.utils.set_random_seed(seed)
    inp = keras.Input(hwc)
    if kind == "conv":
        layer = keras.layers.Conv2D(kw.pop("filters"), **kw)
    else:
        layer = keras.layers.DepthwiseConv2D(depth_multiplier=1, **kw)
    model = keras.Model(inp, layer(inp))
    # non-trivial biases
    weights = model.get_weights()
    weights[1] = np.random.default_rng(seed).normal(0, 0.3, weights[1].shape).astype(np.float32)
    model.set_weights(weights)
    rng = np.random.default_rng(seed + 1)
    calib = rng.normal(0.2, 1.0, (64, *hwc)).astype(np.float32)

    def rep():
        for i in range(calib.shape[0]):
            yield [calib[i : i + 1]]

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = rep
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    return conv.convert()


def _extract(model_bytes):
    """Params of the single CONV_2D / DEPTHWISE_CONV_2D op, as TFLite's kernel derives them."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(model_bytes))
    sg = model.subgraphs[0]
    ops = [
        op
        for op in sg.operators
        if max(
            model.operatorCodes[op.opcodeIndex].builtinCode,
            model.operatorCodes[op.opcodeIndex].deprecatedBuiltinCode,
        )
        in (schema.BuiltinOperator.CONV_2D, schema.BuiltinOperator.DEPTHWISE_CONV_2D)
    ]
    assert len(ops) == 1, "expected exactly one conv op"
    op = ops[0]
    code = model.operatorCodes[op.opcodeIndex]
    depthwise = (
        max(code.builtinCode, code.deprecatedBuiltinCode)
        == schema.BuiltinOperator.DEPTHWISE_CONV_2D
    )
    t_in, t_w, t_b = (sg.tensors[i] for i in op.inputs[:3])
    t_out = sg.tensors[op.outputs[0]]

    def data(t, dtype):
        return np.frombuffer(bytes(model.buffers[t.buffer].data), dtype=dtype).reshape(t.shape)

    assert t_in.type == schema.TensorType.INT8 and t_w.type == schema.TensorType.INT8
    w = data(t_w, np.int8)
    b = data(t_b, np.int32)
    s_in, zp_in = float(t_in.quantization.scale[0]), int(t_in.quantization.zeroPoint[0])
    s_out, zp_out = float(t_out.quantization.scale[0]), int(t_out.quantization.zeroPoint[0])
    s_w = np.asarray(t_w.quantization.scale, np.float32)
    opt = op.builtinOptions
    # PopulateConvolutionQuantizationParams: double(input_scale) * double(filter_scale[c]) /
    # double(output_scale) -> QuantizeMultiplier
    mult, shift = zip(
        *(
            intmath.quantize_multiplier(float(np.float32(s_in)) * float(sc) / float(np.float32(s_out)))
            for sc in s_w
        )
    )
    act = opt.fusedActivationFunction
    A = schema.ActivationFunctionType
    qmin, qmax = -128, 127
    if act == A.RELU:
        act_min, act_max = max(qmin, zp_out), qmax
    elif act == A.RELU6:
        act_min = max(qmin, zp_out)
        act_max = min(qmax, zp_out + int(np.floor(6.0 / s_out + 0.5)))
    else:
        assert act == A.NONE
        act_min, act_max = qmin, qmax
    padding = "SAME" if opt.padding == schema.Padding.SAME else "VALID"
    stride = (opt.strideH, opt.strideW)
    dilation = (opt.dilationHFactor, opt.dilationWFactor)
    if depthwise:
        assert opt.depthMultiplier == 1
    in_hw = tuple(t_in.shape[1:3])
    params, out_hw = ref.make_conv_params(
        in_hw,
        w.shape[1:3],
        stride=stride,
        padding=padding,
        dilation=dilation,
        input_zero_point=zp_in,
        output_zero_point=zp_out,
        act_min=act_min,
        act_max=act_max,
    )
    assert tuple(out_hw) == tuple(t_out.shape[1:3])
    return {
        "depthwise": depthwise,
        "w": w,
        "b": b,
        "mult": np.array(mult),
        "shift": np.array(shift),
        "params": params,
        "out_hw": out_hw,
        "in_shape": tuple(t_in.shape),
        "s_in": s_in,
        "zp_in": zp_in,
    }


def _first_diffs(got, want, n=8):
    d = np.argwhere(got != want)
    return "; ".join(
        f"{tuple(int(v) for v in i)}: ours {int(got[tuple(i)])} TFLM {int(want[tuple(i)])}"
        for i in d[:n]
    )


@pytest.fixture(scope="module", params=("plain", "emudsp"))
def k(request):
    try:
        return kernels.get_kernels(request.param)
    except kernels.KernelBuildError as e:  # pragma: no cover
        pytest.skip(f"C kernels unavailable: {e}")


_MODELS: dict[str, tuple] = {}


def _model(name, layer, hwc):
    if name not in _MODELS:
        model_bytes = _build_and_convert(
            layer["kind"],
            hwc,
            seed=len(_MODELS) + 3,
            **{kk: v for kk, v in layer.items() if kk != "kind"},
        )
        _MODELS[name] = (model_bytes, _extract(model_bytes))
    return _MODELS[name]


@pytest.mark.parametrize("name,layer,hwc", CASES, ids=[c[0] for c in CASES])
def test_int8_kernel_bit_exact_with_tflm(k, name, layer, hwc):
    model_bytes, q = _model(name, layer, hwc)
    interp = runtime.Interpreter.from_bytes(model_bytes)
    rng = np.random.default_rng(11)
    for trial in range(3):
        x = rng.integers(-128, 128, q["in_shape"]).astype(np.int8)
        if trial == 2:  # a real-valued input quantized as TFLite would
            xf = rng.normal(0.2, 1.0, q["in_shape"]).astype(np.float32)
            x = np.clip(np.round(xf / q["s_in"]) + q["zp_in"], -128, 127).astype(np.int8)
        interp.set_input(x, 0)
        interp.invoke()
        want = interp.get_output(0)
        f = k.depthwise_conv2d if q["depthwise"] else k.conv2d
        got = f(x, q["w"], q["b"], q["mult"], q["shift"], q["params"], output_hw=q["out_hw"])
        assert got.shape == want.shape
        assert (got == want).all(), (
            f"{name}: {int((got != want).sum())} of {got.size} outputs differ from TFLM; first: "
            + _first_diffs(got, want)
        )
        rf = ref.depthwise_conv2d if q["depthwise"] else ref.conv2d
        r = rf(x, q["w"], q["b"], q["mult"], q["shift"], q["params"], output_hw=q["out_hw"])
        assert (r == want).all(), f"{name}: reference differs from TFLM: " + _first_diffs(r, want)
        # outputs are not all clamped (the comparison means something)
        assert len(np.unique(want)) > 10
