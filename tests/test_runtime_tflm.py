"""TFLMRunner (tfmot_edgeplus.runtime.tflm) against TensorFlow Lite on real converted models.

A small CNN over the 8x8 digits (Conv2D, DepthwiseConv2D, MaxPool, Dense, softmax) is
trained for a few epochs and converted full-integer (int8 in/out) with a representative
dataset; TFLM must give exactly TFLite's int8 outputs (TFLite's reference kernels), and the
float input path must agree with TFLite's own QUANTIZE op.

Found while writing these tests (TF 2.21 vs the pinned TFLM): with per-channel Dense weights
(the converter's default) TFLite's FULLY_CONNECTED and TFLM's differ by 1 LSB on a few
outputs, which softmax can widen to a few LSB. Per-tensor Dense weights match exactly, so the
main model uses them and a separate test bounds the per-channel difference.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np
import pytest

from tfmot_edgeplus.core.intmath import dequantize, quantize
from tfmot_edgeplus.runtime.tflm import MIN_ARENA_SIZE, TFLMError, TFLMRunner

pytest.importorskip("tflite_micro", reason="needs the tflite-micro wheel (see setup.cfg)")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _digits():
    # Real images (sklearn digits): training, representative data and test input.
    from tfmot_edgeplus.datasets import digits

    return digits(seed=0)


def _keras_model(batch_size=None):
    from tfmot_edgeplus._compat import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 1), batch_size=batch_size, name="image")
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inputs)
    x = keras.layers.DepthwiseConv2D(3, activation="relu")(x)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(16, activation="relu")(x)
    outputs = keras.layers.Dense(10, activation="softmax")(x)
    return keras.Model(inputs, outputs)


def _convert(model, rep, int_io=True, per_channel_dense=False):
    from tfmot_edgeplus._compat import tf

    batch = model.inputs[0].shape[0] or 1

    def representative():
        for i in range(0, len(rep) - batch + 1, batch):
            yield [rep[i : i + batch]]

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = representative
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    # Per-tensor Dense weights: TFLite's per-channel FULLY_CONNECTED can differ from TFLM's by
    # 1 LSB (see test_per_channel_dense_differs_by_at_most_one_lsb); everything else is exact.
    conv._experimental_disable_per_channel_quantization_for_dense_layers = not per_channel_dense
    if int_io:
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
    return conv.convert()


@pytest.fixture(scope="module")
def models():
    d = _digits()
    rep = d.x_train[:64]
    model = _keras_model()
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(d.x_train, d.y_train, epochs=8, batch_size=32, verbose=0)
    keras_acc = model.evaluate(d.x_test, d.y_test, verbose=0)[1]
    batch4 = _keras_model(batch_size=4)
    batch4.set_weights(model.get_weights())
    return {
        "int8": _convert(model, rep, int_io=True),
        "float_io": _convert(model, rep, int_io=False),
        "batch4": _convert(batch4, rep, int_io=True),
        "x": d.x_test[:64],
        "x_test": d.x_test,
        "y_test": d.y_test,
        "keras_acc": keras_acc,
    }


@pytest.fixture(scope="module")
def runner(models):
    return TFLMRunner(models["int8"])


def _tflite_outputs(model_bytes, x_int):
    from tfmot_edgeplus._compat import tf

    interp = tf.lite.Interpreter(
        model_content=model_bytes,
        experimental_op_resolver_type=tf.lite.experimental.OpResolverType.BUILTIN_REF,
    )
    interp.allocate_tensors()
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    results = []
    for sample in x_int:
        interp.set_tensor(inp["index"], sample[np.newaxis])
        interp.invoke()
        results.append(interp.get_tensor(out["index"])[0])
    return np.stack(results)


# --------------------------------------------------------------------------- agreement


def test_matches_tflite_int8_exactly(models, runner):
    x = models["x"]
    x_int = runner.predict(x[:0], dequantize=False)  # empty input -> empty output
    assert x_int.shape == (0, 10) and x_int.dtype == np.int8
    scale, zp = runner.input_details[0]["quantization"]
    xq = quantize(x, scale, zp, np.int8)
    got = runner.predict(xq, dequantize=False)
    want = _tflite_outputs(models["int8"], xq)
    assert got.dtype == np.int8 and got.shape == (len(x), 10)
    np.testing.assert_array_equal(got, want)
    assert len(np.unique(got)) > 20  # a trained model, not a constant output


def test_int8_model_keeps_keras_accuracy(models, runner):
    probs = runner.predict(models["x_test"])
    acc = float((probs.argmax(axis=1) == models["y_test"]).mean())
    assert models["keras_acc"] > 0.8, "the tiny CNN did not train; the fixture is broken"
    assert acc >= models["keras_acc"] - 0.03, (acc, models["keras_acc"])


def test_float_and_int8_inputs_agree(models, runner):
    x = models["x"]
    scale, zp = runner.input_details[0]["quantization"]
    from_float = runner.predict(x, dequantize=False)
    from_int8 = runner.predict(quantize(x, scale, zp, np.int8), dequantize=False)
    np.testing.assert_array_equal(from_float, from_int8)
    # TFLite's own QUANTIZE/DEQUANTIZE ops (float-I/O model) give the same numbers.
    float_io = TFLMRunner(models["float_io"])
    assert float_io.input_details[0]["dtype"] == np.float32
    np.testing.assert_array_equal(float_io.predict(x), runner.predict(x))


def test_dequantized_outputs(runner, models):
    x = models["x"][:8]
    raw = runner.predict(x, dequantize=False)
    out = runner.predict(x)
    scale, zp = runner.output_details[0]["quantization"]
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, (raw.astype(np.float32) - zp) * np.float32(scale), rtol=0)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, atol=0.05)  # softmax survives int8


def test_fixed_batch_model_runs_in_groups(models, runner):
    b4 = TFLMRunner(models["batch4"])
    assert b4.input_details[0]["shape"] == (4, 8, 8, 1)
    x = models["x"][:10]  # 10 = 4 + 4 + 2 (the last group is padded)
    got = b4.predict(x, dequantize=False)
    assert got.shape == (10, 10)
    # Same weights and calibration data: each sample's result matches the batch-1 model.
    np.testing.assert_array_equal(got, runner.predict(x, dequantize=False))
    with pytest.raises(ValueError, match="fixed batch size of 4"):
        b4.predict(x, batch_size=2)
    assert b4.predict(x, batch_size=4).shape == (10, 10)


# --------------------------------------------------------------------------- details, arena


def test_details(runner):
    (inp,) = runner.input_details
    (out,) = runner.output_details
    assert inp["shape"] == (1, 8, 8, 1) and inp["dtype"] == np.int8
    assert "image" in inp["name"]
    scale, zp = inp["quantization"]
    assert scale > 0 and -128 <= zp <= 127
    assert out["shape"] == (1, 10) and out["dtype"] == np.int8
    # softmax output: TFLite fixes scale 1/256, zero point -128
    assert out["quantization"] == (pytest.approx(1 / 256), -128)
    runner.input_details[0]["shape"] = "mutated"
    assert runner.input_details[0]["shape"] == (1, 8, 8, 1)


def test_arena(models, runner):
    assert runner.arena_bytes > 0
    assert runner.arena_bytes <= runner.arena_size
    smallest = runner.min_arena_size()
    assert max(runner.arena_bytes, MIN_ARENA_SIZE) <= smallest <= runner.arena_size
    assert smallest % 16 == 0
    tight = TFLMRunner(models["int8"], arena_size=smallest)
    x = models["x"][:4]
    np.testing.assert_array_equal(tight.predict(x), runner.predict(x))
    if smallest - 16 >= MIN_ARENA_SIZE:
        with pytest.raises(TFLMError, match="too small") as info:
            TFLMRunner(models["int8"], arena_size=smallest - 16)
        assert "TFLM log" in str(info.value)


def test_arena_sizes_where_tflm_crashes_are_probed_in_a_child(models, runner, tmp_path):
    """Above MIN_ARENA_SIZE, some arenas too small for this model crash the wheel (a kernel's
    unchecked persistent allocation): tried in a forked child, they are a clean error."""
    sizes = range(MIN_ARENA_SIZE, runner.arena_bytes, 16)
    outcome = {size: runner.probe_arena_size(size) for size in sizes}
    crashing = [size for size, o in outcome.items() if o == "crashed"]
    assert crashing, f"no crash between {MIN_ARENA_SIZE} and {runner.arena_bytes} bytes: {outcome}"
    assert "too small" in outcome.values() and "ok" not in outcome.values()
    # The wheel itself, in a subprocess: that size kills the process.
    path = tmp_path / "m.tflite"
    path.write_bytes(models["int8"])
    script = (f"from tflite_micro.python.tflite_micro import runtime\n"
              f"runtime.Interpreter.from_bytes(open({str(path)!r}, 'rb').read(), "
              f"arena_size={crashing[0]})\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120,
                          check=False)
    assert proc.returncode == -signal.SIGSEGV, proc.returncode
    with pytest.raises(TFLMError, match=f"arena_size={crashing[0]} bytes is too small .*crashes"):
        TFLMRunner(models["int8"], arena_size=crashing[0])
    assert runner.probe_arena_size(runner.min_arena_size()) == "ok"


def test_arena_below_floor_is_refused(models):
    with pytest.raises(ValueError, match="arena_size=400 bytes is below the minimum"):
        TFLMRunner(models["int8"], arena_size=400)
    with pytest.raises(TypeError, match="arena_size"):
        TFLMRunner(models["int8"], arena_size=4096.0)


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "blob, fragment",
    [
        (b"", "received 0 bytes"),
        (b"abc", "too short"),
        (b"\x1c\x00\x00\x00TFL2" + bytes(40), "instead of the TFLite identifier"),
        (bytes(range(256)) * 4, "instead of the TFLite identifier"),
        (b"\xff\xff\x00\x00TFL3" + bytes(8), "root table offset"),
    ],
)
def test_bad_bytes_are_refused(blob, fragment):
    with pytest.raises(ValueError, match=fragment) as info:
        TFLMRunner(blob)
    assert "TFLiteConverter.convert()" in str(info.value)


@pytest.mark.parametrize("keep", [0.1, 0.5, 0.97])
def test_truncated_model_is_refused(models, keep):
    blob = models["int8"]
    with pytest.raises(ValueError, match="Damaged TFLite model"):
        TFLMRunner(blob[: int(len(blob) * keep)])


def test_wrong_types_are_refused(models, tmp_path):
    with pytest.raises(TypeError, match="from_file"):
        TFLMRunner(str(tmp_path / "m.tflite"))
    with pytest.raises(TypeError, match="received list"):
        TFLMRunner([1, 2, 3])
    with pytest.raises(TypeError, match="custom_op_registerers"):
        TFLMRunner(models["int8"], custom_op_registerers=[3])
    path = tmp_path / "m.tflite"
    path.write_bytes(models["int8"])
    assert TFLMRunner.from_file(path).input_details[0]["shape"] == (1, 8, 8, 1)


# Each kind of damage, and what it must give: ("ran", same outputs?) or (error type, a
# fragment of its message). The model check refuses what would send TFLM out of bounds; TFLM
# refuses what it cannot prepare; a changed weight or name is still a valid model.
CORRUPTIONS = {
    "weight_byte": ("ran", False),
    "tensor_name": ("ran", True),
    "identifier": ("ValueError", "instead of the TFLite identifier"),
    "truncated": ("ValueError", "cannot be decoded"),
    "buffer_index": ("ValueError", "points at missing buffer"),
    "opcode_index": ("ValueError", "operator 0 has opcode index 99"),
    "tensor_index": ("ValueError", "operator 0 uses tensor 999"),
    "output_index": ("ValueError", "output tensor 999 out of range"),
    "input_shape": ("ValueError", "expects shape ('N', 9, 8, 1)"),
    "conv_as_depthwise": ("TFLMError", "depthwise_conv"),
    "no_quantization": ("TFLMError", "TFLM could not prepare the model"),
}


def test_each_kind_of_corruption_gives_its_error_or_a_valid_run(models, tmp_path):
    """Damage of each kind (edited through the schema, so only that field changes) gives
    the error that names it, or a run, and never a crash (in a subprocess)."""
    path = tmp_path / "m.tflite"
    path.write_bytes(models["int8"])
    # Load tflm.py by path: it needs only NumPy and tflite-micro, so the child skips the
    # package __init__ (TensorFlow) and starts in a fraction of a second.
    module_path = os.path.join(REPO, "tfmot_edgeplus", "runtime", "tflm.py")
    script = textwrap.dedent(
        f"""
        import importlib.util, json
        import flatbuffers
        import numpy as np
        from tflite_micro.tensorflow.lite.python import schema_py_generated as schema
        spec = importlib.util.spec_from_file_location("tflm", {module_path!r})
        tflm = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(tflm)
        good = open({str(path)!r}, "rb").read()
        x = np.random.default_rng(0).uniform(0, 1, (4, 8, 8, 1)).astype(np.float32)
        reference = tflm.TFLMRunner(good).predict(x)

        def edited(change):
            m = schema.ModelT.InitFromPackedBuf(good, 0)
            sg = m.subgraphs[0]
            change(m, sg, sg.operators[0])
            builder = flatbuffers.Builder(0)
            builder.Finish(m.Pack(builder), file_identifier=b"TFL3")
            return bytes(builder.Output())

        def weight_byte(m, sg, op):
            buf = m.buffers[sg.tensors[op.inputs[1]].buffer]
            buf.data = np.array(buf.data).copy()
            buf.data[0] = (int(buf.data[0]) + 100) % 256

        def op_code(m, sg, op, code):
            m.operatorCodes[op.opcodeIndex].builtinCode = code
            m.operatorCodes[op.opcodeIndex].deprecatedBuiltinCode = code

        changes = {{
            "weight_byte": weight_byte,
            "tensor_name": lambda m, sg, op: setattr(sg.tensors[0], "name", b"renamed"),
            "buffer_index": lambda m, sg, op: setattr(
                sg.tensors[op.inputs[1]], "buffer", len(m.buffers) + 5),
            "opcode_index": lambda m, sg, op: setattr(op, "opcodeIndex", 99),
            "tensor_index": lambda m, sg, op: setattr(
                op, "inputs", np.array([999, *op.inputs[1:]], np.int32)),
            "output_index": lambda m, sg, op: setattr(sg, "outputs", np.array([999], np.int32)),
            "input_shape": lambda m, sg, op: setattr(
                sg.tensors[sg.inputs[0]], "shape", np.array([1, 9, 8, 1], np.int32)),
            "conv_as_depthwise": lambda m, sg, op: op_code(m, sg, op, 4),
            "no_quantization": lambda m, sg, op: setattr(
                sg.tensors[op.outputs[0]], "quantization", None),
        }}
        cases = {{kind: edited(change) for kind, change in changes.items()}}
        cases["identifier"] = good[:4] + b"TFL2" + good[8:]
        cases["truncated"] = good[: len(good) // 2]
        outcomes = {{}}
        for kind, blob in cases.items():
            try:
                out = tflm.TFLMRunner(blob).predict(x)
                outcomes[kind] = ["ran", bool(np.array_equal(out, reference))]
            except (ValueError, tflm.TFLMError) as exc:
                outcomes[kind] = [type(exc).__name__, str(exc)]
        print(json.dumps(outcomes))
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, f"crashed (rc {proc.returncode}): {proc.stderr[-2000:]}"
    outcomes = json.loads(proc.stdout.strip().splitlines()[-1])
    assert set(outcomes) == set(CORRUPTIONS)
    for kind, (what, detail) in CORRUPTIONS.items():
        got, message = outcomes[kind]
        assert got == what, (kind, outcomes[kind])
        if what == "ran":
            assert message is detail, (kind, "same outputs" if message else "other outputs")
        else:
            assert detail in message, (kind, message)


def test_wrong_input_shape_names_expected_and_received(runner, models):
    x = models["x"]
    with pytest.raises(
        ValueError,
        match=r"expects shape \('N', 8, 8, 1\).*received shape "
        r"\(8, 8, 1\).*x\[np.newaxis\]",
    ):
        runner.predict(x[0])
    with pytest.raises(ValueError, match=r"received shape \(3, 8, 8, 2\)"):
        runner.predict(np.zeros((3, 8, 8, 2), np.float32))
    with pytest.raises(ValueError, match="1 input\\(s\\) but predict received 2"):
        runner.predict([x, x])


def test_wrong_input_dtype(runner, models):
    with pytest.raises(ValueError, match="is int8; received int64.*astype\\(np.int8\\)"):
        runner.predict(np.zeros((2, 8, 8, 1), np.int64))
    bad = models["x"][:2].copy()
    bad[1, 3, 3, 0] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        runner.predict(bad)


def test_unknown_registerer(models):
    with pytest.raises(TFLMError, match="ctypes.CDLL") as info:
        TFLMRunner(models["int8"], custom_op_registerers=["EdgePlusNoSuchRegisterer"])
    assert "EdgePlusNoSuchRegisterer" in str(info.value)


def test_unregistered_custom_op(models):
    from tensorflow.lite.python import schema_py_generated as schema_fb
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(models["int8"]))
    code = model.operatorCodes[model.subgraphs[0].operators[0].opcodeIndex]
    code.builtinCode = code.deprecatedBuiltinCode = schema_fb.BuiltinOperator.CUSTOM
    code.customCode = "EDGEPLUS_NOT_REGISTERED"
    blob = bytes(flatbuffer_utils.convert_object_to_bytearray(model))
    with pytest.raises(TFLMError, match="custom_op_registerers") as info:
        TFLMRunner(blob)
    assert "EDGEPLUS_NOT_REGISTERED" in str(info.value)


# --------------------------------------------------------------------------- quantize helpers


def test_quantize_rounds_half_away_from_zero_and_clips():
    x = np.array([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 0.49999997, 1000.0, -1000.0], np.float32)
    q = quantize(x, 1.0, 0, np.int8)
    np.testing.assert_array_equal(q, [1, 2, 3, -1, -2, -3, 0, 127, -128])
    np.testing.assert_array_equal(quantize([0.0, 0.25], 0.5, -128, np.int8), [-128, -127])
    np.testing.assert_array_equal(dequantize(np.array([-128, 0], np.int8), 0.5, -128), [0.0, 64.0])
    with pytest.raises(ValueError, match="scale"):
        quantize([1.0], 0.0, 0, np.int8)
    with pytest.raises(ValueError, match="integer"):
        quantize([1.0], 1.0, 0, np.float32)


def test_per_channel_dense_differs_by_at_most_one_lsb(models):
    """TFLite vs TFLM on per-channel FULLY_CONNECTED: rare 1-LSB differences, no more."""
    from tfmot_edgeplus._compat import keras

    keras.utils.set_random_seed(1)
    d = _digits()
    model = keras.Sequential(
        [keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(10)]
    )
    blob = _convert(model, d.x_train[:64], per_channel_dense=True)
    run = TFLMRunner(blob)
    scale, zp = run.input_details[0]["quantization"]
    xq = quantize(d.x_test, scale, zp, np.int8)
    got = run.predict(xq, dequantize=False).astype(np.int32)
    want = _tflite_outputs(blob, xq).astype(np.int32)
    diff = np.abs(got - want)
    assert diff.max() <= 1
    assert (diff > 0).mean() < 0.01


@pytest.mark.skipif(not hasattr(os, "fork"), reason="the arena probe forks (POSIX only)")
def test_a_stuck_probe_child_is_killed_not_waited_for():
    """probe_arena_size waits for its child with a deadline: a child that never exits (as a
    fork of a threaded process can deadlock) is killed and reported, the parent goes on."""
    from tfmot_edgeplus.runtime.tflm import _wait_child

    pid = os.fork()
    if pid == 0:  # the child: sleeps far past the deadline
        time.sleep(30)
        os._exit(0)
    start = time.monotonic()
    assert _wait_child(pid, 0.2) is None
    assert time.monotonic() - start < 10
    with pytest.raises(ChildProcessError):  # killed and reaped
        os.waitpid(pid, os.WNOHANG)
    pid = os.fork()
    if pid == 0:
        os._exit(3)
    status = _wait_child(pid, 10)
    assert status is not None and os.WEXITSTATUS(status) == 3
