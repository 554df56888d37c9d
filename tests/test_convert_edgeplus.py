"""convert(kernels="edgeplus" | "edgeplus_all"): low-bit layers on EDGEPLUS_CONV_MP.

Structural checks (operators, packed shapes, options, quantization, refusals) run anywhere;
the TFLM runs need the glue compiled against the pinned wheel's TFLM sources and skip, saying
so, when EDGEPLUS_TFLM_ROOT and its siblings (or a prebuilt EDGEPLUS_TFLM_LIB) are unset.
Three QAT models (the digits small_cnn mixed W4A4/W2A2 and W8A8, a model with a depth
multiplier of 2; activation ranges from one training batch, no fine-tuning), each converted
once by TF's converter; the W8A8 variants are
:func:`~tfmot_edgeplus.conversion.edgeplus_kernels.place_on_edgeplus` on its builtin bytes,
what ``convert`` runs after TF's converter.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from tfmot_edgeplus import EdgePlusQuantizeScheme, conversion_report, convert, quantize_model
from tfmot_edgeplus._compat import keras
from tfmot_edgeplus.conversion import edgeplus_kernels
from tfmot_edgeplus.conversion.converter import float_biases, trained_activation_bits
from tfmot_edgeplus.conversion.op_schema import CONV_MP
from tfmot_edgeplus.core import tflite
from tfmot_edgeplus.core.conv_reference import max_kc
from tfmot_edgeplus.core.intmath import int_range

_GLUE_MISSING = not os.environ.get("EDGEPLUS_TFLM_LIB") and not all(
    os.environ.get(v)
    for v in ("EDGEPLUS_TFLM_ROOT", "EDGEPLUS_FLATBUFFERS_ROOT", "EDGEPLUS_GEMMLOWP_ROOT"))
needs_glue = pytest.mark.skipif(
    _GLUE_MISSING,
    reason="EDGEPLUS_TFLM_ROOT / EDGEPLUS_FLATBUFFERS_ROOT / EDGEPLUS_GEMMLOWP_ROOT (or a "
    "prebuilt EDGEPLUS_TFLM_LIB) unset: EDGEPLUS_CONV_MP must be compiled against the TFLM "
    "sources of the pinned wheel to run in the interpreter")

# The digits small_cnn at W4A4 with one layer at W2 (pw2), the dw2 -> pw2 tensor at 2 bits and
# 8-bit logits: every kind of operand our op takes, in one conversion.
_MIXED = {"pw2": {"weight_bits": 2}, "relu_dw2": {"activation_bits": 2},
          "logits": {"activation_bits": 8}}


@pytest.fixture(scope="module")
def qat(digits_fp):
    """``make(w, a, per_layer)`` -> (QAT model, data): the digits model quantized, its activation
    ranges set by one training batch (no fine-tuning); cached."""
    fp, data = digits_fp
    cache = {}

    def make(w, a, per_layer=None):
        key = (w, a, repr(per_layer))
        if key not in cache:
            q = quantize_model(fp, EdgePlusQuantizeScheme(
                weight_bits=w, activation_bits=a, per_layer=per_layer))
            q(data.x_train[:512], training=True)
            cache[key] = q
        return cache[key], data

    return make


@pytest.fixture(scope="module")
def mixed(qat):
    """(QAT model, data, builtin bytes without LUT packing) of the mixed W4A4 model."""
    q, data = qat(4, 4, _MIXED)
    return q, data, convert(q, data.x_train[:100], lowbit_storage=False)


@pytest.fixture(scope="module")
def int8(qat):
    """(QAT model, data, builtin bytes) of the W8A8 model."""
    q, data = qat(8, 8)
    return q, data, convert(q, data.x_train[:100])


_FLOAT_BIASES = {}


def _place(q, model_bytes, include_int8=False, pack_activations=True, scratch="auto"):
    """What convert(kernels=...) does after TF's converter, on converted bytes."""
    input_bits, layer_bits = trained_activation_bits(q)
    if id(q) not in _FLOAT_BIASES:
        _FLOAT_BIASES[id(q)] = float_biases(q)
    placed, _ = edgeplus_kernels.place_on_edgeplus(model_bytes, layer_bits, input_bits,
                                                   include_int8=include_int8,
                                                   pack_activations=pack_activations,
                                                   scratch=scratch,
                                                   float_biases=_FLOAT_BIASES[id(q)])
    return placed


def _ops(model_bytes):
    g = tflite.TFLiteGraph(model_bytes)
    return g, [g.op_name(op) for op in g.operators]


def _packed(channels, bits):
    return -(-channels * bits // 8)


def test_low_bit_layers_run_on_ours_with_packed_activations(mixed):
    q, _, builtin = mixed
    model = _place(q, builtin)
    g, names = _ops(model)
    assert not set(names) & set(edgeplus_kernels.FILTER_OPS), names
    rows = {p.op_index: p for p in edgeplus_kernels.describe_placement(model)}
    assert [(p.in_bits, p.w_bits, p.out_bits) for p in rows.values()] == [
        (8, 4, 8), (8, 4, 2), (2, 2, 8), (8, 4, 8), (8, 4, 8)]  # conv1 dw2 pw2 conv3 logits
    assert all(p.runs_on == CONV_MP.custom_code and p.why == "" for p in rows.values())
    for k, p in rows.items():
        op = g.operators[k]
        o = CONV_MP.decode(bytes(op.customOptions))
        assert (o["in_bits"], o["w_bits"], o["out_bits"]) == (p.in_bits, p.w_bits, p.out_bits)
        x, f, out = (int(t) for t in (op.inputs[0], op.inputs[1], op.outputs[0]))
        assert g.shape(x)[-1] == _packed(o["in_channels"], o["in_bits"])
        assert g.shape(out)[-1] == _packed(o["out_channels"], o["out_bits"])
        wc = o["out_channels"] if o["depthwise"] else o["in_channels"]
        assert g.shape(f)[-1] == _packed(wc, o["w_bits"]) and g.type_name(f) == "INT8"
        # An activation trained at b < 8 bits holds b-bit levels (zero point, clamp), packed
        # or not; the logits were trained at 8 bits.
        b = 8 if k == max(rows) else 2 if o["out_bits"] == 2 else 4
        lo, hi = int_range(b)
        assert lo <= g.quant(out)[1][0] <= hi and lo <= o["act_min"] <= o["act_max"] <= hi
        # Every layer reads a tensor trained below 8 bits, its accumulator step 17 (4-bit
        # input) or 85 * 7 (2-bit input, 2-bit weights) times the int8 model's: the bias
        # counts 2^-F steps (bias scale = s_in * s_w / 2^F), F as large as the kernel's
        # one-instruction requantization allows, and is the float bias to half of one.
        s_b = g.quant(int(op.inputs[2]))[0]
        np.testing.assert_allclose(
            s_b * 2 ** o["bias_frac_bits"], g.quant(x)[0][0] * g.quant(f)[0], rtol=1e-5)
        bias = g.data(int(op.inputs[2])).view("<i4").astype(np.float64)
        kc = o["kernel_h"] * o["kernel_w"] * (1 if o["depthwise"] else o["in_channels"])
        acc = kc * (2 ** o["in_bits"] - 1) * 2 ** (o["w_bits"] - 1)
        assert (acc << o["bias_frac_bits"]) + np.abs(bias).max() < 2**30, o
        assert o["bias_frac_bits"] >= 8, o
        exact = _FLOAT_BIASES[id(q)][list(rows).index(k)]
        assert np.all(np.abs(bias * s_b - exact) <= 0.5001 * s_b), (k, bias * s_b - exact)
    # The model input was trained at 4 bits: its tensor carries the 4-bit quantization.
    s_in, z_in = g.quant(int(g.subgraph.inputs[0]))
    assert np.isclose(s_in[0], 1 / 15, rtol=1e-5) and z_in[0] == -8
    report = conversion_report(model, q)
    assert len(report.placements) == 5
    assert report.table().count("| EDGEPLUS_CONV_MP | 2/2/8 |") == 1  # pw2


def test_bias_frac_bits_is_the_most_the_one_instruction_requantization_allows():
    frac = edgeplus_kernels.bias_frac_bits
    assert frac(1.0, 9, 8, 8) == 0  # the step did not grow: TFLite's integer bias
    # (max|acc| + max|bias|) * 2^F < 2^30: max|acc| = K*C * (2^in_bits - 1) * 2^(w_bits - 1)
    assert frac(17.0, 9, 4, 4) == 16  # 1080 * 2^16 < 2^30: EDGEPLUS_MAX_BIAS_FRAC_BITS
    assert frac(17.0, 288, 4, 4) == 14  # 34,560 * 2^14 < 2^30 <= 34,560 * 2^15
    assert frac(17.0, 288, 4, 4, bias_steps=30_000.0) == 14  # 64,560 * 2^14 < 2^30
    assert frac(17.0, 288, 4, 4, bias_steps=31_000.0) == 13  # 65,560 * 2^14 >= 2^30
    assert frac(17.0, max_kc(4, 4) // 2, 4, 4) == 0  # max|acc| * 2 >= 2^30
    assert frac(595.0, 9, 2, 2) == 16


def test_8_bit_model_is_never_run_at_4_and_int8_layers_stay_builtin(int8):
    q, _, builtin = int8
    rows = edgeplus_kernels.describe_placement(_place(q, builtin))
    assert len(rows) == 5 and all(p.runs_on == "builtin" and "int8 layer" in p.why
                                  for p in rows)
    every = _place(q, builtin, include_int8=True)
    assert [(p.runs_on, p.in_bits, p.w_bits, p.out_bits)
            for p in edgeplus_kernels.describe_placement(every)] == \
        [(CONV_MP.custom_code, 8, 8, 8)] * 5
    # Same activation tensors with the same quantization as the builtin model.
    g0, _ = _ops(builtin)
    g, _ = _ops(every)

    def acts(g):
        return [(g.shape(t), *map(tuple, g.quant(t))) for op in g.operators for t in op.outputs]

    assert acts(g0) == acts(g)


def test_a_layer_ours_cannot_run_stays_builtin_and_says_why(digits_fp):
    _, data = digits_fp
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv1")(inputs)
    x = keras.layers.DepthwiseConv2D(3, padding="same", depth_multiplier=2, activation="relu",
                                     name="dw_x2")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    model = keras.Model(inputs, keras.layers.Dense(10, name="logits")(x))
    q = quantize_model(model, EdgePlusQuantizeScheme(weight_bits=2, activation_bits=4))
    q(data.x_train[:64], training=True)  # set the activation ranges
    converted = convert(q, data.x_train[:100], kernels="edgeplus")
    rows = edgeplus_kernels.describe_placement(converted)
    dw = [p for p in rows if p.op == "DEPTHWISE_CONV_2D"]
    assert len(dw) == 1 and dw[0].runs_on == "builtin"
    assert "depth multiplier 2" in dw[0].why
    assert [p.w_bits for p in rows if p.runs_on == CONV_MP.custom_code] == [2, 2]
    report = conversion_report(converted, q)
    assert "depth multiplier 2 (ours: 1)" in report.table()
    # The 2-bit layer left builtin is stored as convert's LUT, the ones on ours packed.
    assert [w["storage"] for w in report.weights] == ["lut"]


def test_plan_peak_is_tflms_greedy_plan_and_auto_keeps_it():
    ek = edgeplus_kernels
    # largest first: the 400 B tensor reuses the 512 B one's place (their lifetimes do not
    # overlap), the 256 B one goes above both; when they overlap it goes above them
    assert ek.plan_peak([(512, 0, 1), (256, 1, 3), (400, 2, 3)]) == 768
    assert ek.plan_peak([(512, 0, 2), (256, 1, 3), (400, 2, 3)]) == 1168
    assert ek.plan_peak([]) == 0
    # ops 0 and 2 run at times 1 and 3; all lean: 512@0, 256@512, 96 (t3)@0, 48 (t1)@768
    buffers = [(512, 0, 1), (256, 1, 3)]
    sizes = {0: (304, 48), 2: (400, 100)}  # op 1 is builtin
    # op 0's default scratch would sit above the two tensors (1072 > 816 B); op 2's fits in
    # the hole the first tensor leaves
    assert ek.choose_scratch(buffers, sizes) == {0: True, 2: False}
    assert ek.choose_scratch(buffers, {0: (48, 48), 2: (513, 100)}) == {0: False, 2: True}
    assert ek.choose_scratch(buffers, sizes, "fast") == {0: False, 2: False}
    assert ek.choose_scratch(buffers, sizes, "lean") == {0: True, 2: True}
    with pytest.raises(ValueError, match=r"scratch must be one of 'auto', 'fast', 'lean', "
                       r"got 'small'"):
        ek.choose_scratch(buffers, sizes, "small")


def _planned_arena(model):
    """plan_peak of ``model``'s activations and our ops' scratch (what TFLM's head holds)."""
    ek = edgeplus_kernels
    scratch = [(-(-p.scratch_bytes // 16) * 16, p.op_index + 1, p.op_index + 1)
               for p in ek.describe_placement(model) if p.scratch]
    return ek.plan_peak(ek.arena_buffers(tflite.TFLiteGraph(model)) + scratch)


def test_scratch_choice_per_op_in_the_options_and_the_report(mixed):
    q, _, builtin = mixed
    rows, models = {}, {}
    for mode in edgeplus_kernels.SCRATCH:
        model = models[mode] = _place(q, builtin, scratch=mode)
        g, _ = _ops(model)
        rows[mode] = edgeplus_kernels.describe_placement(model)
        for p in rows[mode]:
            lean = CONV_MP.decode(bytes(g.operators[p.op_index].customOptions))["lean_scratch"]
            assert p.scratch == ("lean" if lean else "fast"), (mode, p)
    assert {p.scratch for p in rows["fast"]} == {"fast"}
    assert {p.scratch for p in rows["lean"]} == {"lean"}
    fast = [p.scratch_bytes for p in rows["fast"]]
    lean = [p.scratch_bytes for p in rows["lean"]]
    assert all(0 < b <= a for a, b in zip(fast, lean)) and sum(lean) < sum(fast), (fast, lean)
    auto = rows["auto"]
    assert [p.scratch_bytes for p in auto] == [
        f if p.scratch == "fast" else b for p, f, b in zip(auto, fast, lean)]
    # auto: the default scratch where it costs no arena, the lean one where it would raise it
    planned = {mode: _planned_arena(m) for mode, m in models.items()}
    assert planned["auto"] == planned["lean"] < planned["fast"], planned
    assert {p.scratch for p in auto} == {"fast", "lean"}, auto
    table = conversion_report(models["lean"], q).table()
    assert f"| lean {lean[0]:,} B |" in table


def test_bad_scratch_value_is_refused(int8):
    q, data, _ = int8
    with pytest.raises(ValueError, match=r"scratch must be one of 'auto', 'fast', 'lean', "
                       r"got 'tiny'"):
        convert(q, data.x_train[:10], kernels="edgeplus", scratch="tiny")


def test_bad_kernels_value_is_refused(int8):
    q, data, _ = int8
    with pytest.raises(ValueError, match=r"kernels must be one of \['builtin', 'edgeplus', "
                       r"'edgeplus_all'\], got 'cmsis'"):
        convert(q, data.x_train[:10], kernels="cmsis")


# ------------------------------------------------------------------------------ in TFLM


@pytest.fixture(scope="module")
def registerer():
    from tfmot_edgeplus.runtime import tflm_ops

    return tflm_ops.load()


def _run(model, x, registerer):
    from tfmot_edgeplus.runtime import TFLMRunner

    runner = TFLMRunner(model, custom_op_registerers=[registerer])
    return runner, runner.predict(x, dequantize=False)


@needs_glue
def test_int8_on_ours_equals_the_builtin_model(int8, registerer):
    """Our kernels are TFLite's arithmetic: the same integers out as the builtin ops."""
    q, data, builtin = int8
    _, ours = _run(_place(q, builtin, include_int8=True), data.x_test, registerer)
    _, theirs = _run(builtin, data.x_test, registerer)
    np.testing.assert_array_equal(ours, theirs)
    keras_top1 = q.predict(data.x_test, verbose=0).argmax(1)
    assert (ours.argmax(1) == keras_top1).mean() >= 0.99


@needs_glue
def test_packed_activations_are_lossless_in_tflm(mixed, registerer):
    q, data, builtin = mixed
    runner, out = _run(_place(q, builtin), data.x_test, registerer)
    # The same model with every tensor in int8 (the same levels, unpacked): packing is lossless.
    runner8, out8 = _run(_place(q, builtin, pack_activations=False), data.x_test, registerer)
    np.testing.assert_array_equal(out, out8)
    # Here the arena's peak is elsewhere (conv1's 8x8 maps, the kernels' scratch): not larger.
    assert runner.arena_bytes <= runner8.arena_bytes, (runner.arena_bytes, runner8.arena_bytes)
    # Keras's logit levels, measured all equal on these 449 images (no fine-tuning, a 2-bit
    # tensor in the middle): top-1 agreement 1.0; with biases rounded from the int8 model's
    # 24 % of the logits differed (agreement 0.984), with integer biases at the 4- or 2-bit
    # input's step (bias_frac_bits 0) agreement 0.884.
    keras = q.predict(data.x_test, verbose=0)
    s, z = runner.output_details[0]["quantization"]
    assert np.mean(np.round(keras / s) + z != out) <= 0.01
    assert (out.argmax(1) == keras.argmax(1)).mean() >= 0.995


@needs_glue
def test_scratch_choice_changes_the_arena_not_the_outputs(mixed, registerer):
    q, data, builtin = mixed
    x = data.x_test[:64]
    runs = {mode: _run(_place(q, builtin, scratch=mode), x, registerer)
            for mode in edgeplus_kernels.SCRATCH}
    for mode in ("fast", "lean"):
        np.testing.assert_array_equal(runs[mode][1], runs["auto"][1])
    arena = {mode: runner.arena_bytes for mode, (runner, _) in runs.items()}
    assert arena["lean"] == arena["auto"] < arena["fast"], arena
    # the Python plan is TFLM's: the arena's non-persistent head, scratch included
    for mode, (runner, _) in runs.items():
        assert runner.arena_head_bytes == _planned_arena(_place(q, builtin, scratch=mode)), mode
