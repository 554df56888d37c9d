"""Fuzzing of the Python readers of untrusted bytes (hypothesis): TFLMRunner's model
validation, the low-bit weight readers (conversion/lowbit.py) and unpacking
(core/packing.py), and QCore's split_head. The promise: any bytes give a valid result
or an exception of the documented type naming the problem (ValueError and its subclasses,
TFLMError from the interpreter) - never another exception type, never a crash.

Inputs are mutations (byte flips, interesting values, truncations, insertions, splices) of
small valid .tflite models built once per module: an int8 MLP (two FULLY_CONNECTED layers)
and the same model with one layer stored as a 2-bit LUT (TFLM_DECODE). A short
derandomized run is part of the suite; ``make fuzz`` runs each target for
EDGEPLUS_FUZZ_SECONDS (and at least EDGEPLUS_FUZZ_EXAMPLES inputs) and prints the count.
Inputs that once broke a reader are replayed first (REGRESSIONS)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

hypothesis = pytest.importorskip(
    "hypothesis", reason="hypothesis is not installed (pip install -e '.[test]')"
)
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import seed as hyp_seed  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

LONG_SECONDS = float(os.environ.get("EDGEPLUS_FUZZ_SECONDS", "0"))
LONG_EXAMPLES = int(os.environ.get("EDGEPLUS_FUZZ_EXAMPLES", "0"))
SHORT_EXAMPLES = 150
BATCH = 1000

# Models that once crashed a reader (segfault in the TFLM wheel, or another exception type):
# each reader must now give a result or a ValueError.
PYTHON_CORPUS = Path(__file__).resolve().parents[1] / "tflm_ops" / "fuzz" / "corpus" / "python"
REGRESSIONS = sorted(PYTHON_CORPUS.glob("*.tflite"))


@pytest.fixture(scope="module")
def models() -> list[bytes]:
    return small_models()


def small_models() -> list[bytes]:
    """An int8 16 -> 8 (ReLU) -> 4 MLP with ternary weights, and that model with its last
    layer stored as a 2-bit LUT."""
    from tfmot_edgeplus._compat import keras, tf
    from tfmot_edgeplus.conversion.lowbit import pack_lowbit_weights

    rng = np.random.default_rng(0)
    inputs = keras.Input((16,))
    h = keras.layers.Dense(8, activation="relu", name="body")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(4, name="fc")(h))
    for layer in model.layers[1:]:
        w, b = layer.get_weights()
        layer.set_weights([rng.choice([-0.5, 0.0, 0.5], w.shape).astype(np.float32), b])
    x = rng.normal(0, 1, (32, 16)).astype(np.float32)
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([x[i : i + 1]] for i in range(len(x)))
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    int8 = conv.convert()
    return [int8, pack_lowbit_weights(int8, {"fc": 2})]


_INTERESTING = (0, 1, 0x7F, 0x80, 0xFF)
_EDIT = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 1 << 16), st.integers(0, 7)),
    st.tuples(st.just("set"), st.integers(0, 1 << 16), st.sampled_from(_INTERESTING)),
    st.tuples(st.just("byte"), st.integers(0, 1 << 16), st.integers(0, 255)),
    st.tuples(st.just("int32"), st.integers(0, 1 << 16),
              st.sampled_from((0, 1, -1, 0x7FFFFFFF, -(1 << 31), 1 << 16))),  # fmt: skip
    st.tuples(st.just("truncate"), st.integers(0, 1 << 16), st.just(0)),
    st.tuples(st.just("insert"), st.integers(0, 1 << 16), st.integers(0, 255)),
)
MUTATION = st.tuples(st.integers(0, 1), st.lists(_EDIT, min_size=1, max_size=6))


def mutate(data: bytes, edits) -> bytes:
    b = bytearray(data)
    for kind, pos, val in edits:
        if not b:
            break
        i = pos % len(b)
        if kind == "flip":
            b[i] ^= 1 << val
        elif kind in ("set", "byte"):
            b[i] = val
        elif kind == "int32":
            b[i : i + 4] = int(val).to_bytes(4, "little", signed=True)
        elif kind == "truncate":
            del b[i:]
        else:
            b.insert(i, val)
    return bytes(b)


def _fuzz(prop, strategy, name: str, capsys=None):
    """Run ``prop`` on ``strategy``: a short derandomized run, or (EDGEPLUS_FUZZ_SECONDS set)
    batches of fresh seeds until the time is up and at least EDGEPLUS_FUZZ_EXAMPLES ran."""
    count = [0]

    def counted(value):
        count[0] += 1
        prop(value)

    common = dict(database=None, deadline=None, suppress_health_check=list(HealthCheck))
    if not LONG_SECONDS:
        short = settings(max_examples=SHORT_EXAMPLES, derandomize=True, **common)
        short(given(strategy)(counted))()
        return count[0]
    start, batch = time.monotonic(), 0
    while time.monotonic() - start < LONG_SECONDS or count[0] < LONG_EXAMPLES:
        run = hyp_seed(batch)(settings(max_examples=BATCH, **common)(given(strategy)(counted)))
        run()
        batch += 1
    seconds = time.monotonic() - start
    line = f"{name}: {count[0]} inputs in {seconds:.0f} s, {count[0] / seconds:.0f} exec/s"
    if capsys is not None:
        with capsys.disabled():
            print("\n" + line)
    return count[0]


def _expect(call, allowed, data: bytes):
    """``call()`` returns, or raises one of ``allowed`` with a message."""
    try:
        return call()
    except allowed as err:
        assert str(err), f"{type(err).__name__} without a message on {len(data)} bytes"
    except Exception as err:  # noqa: BLE001 - the point: no other type may escape
        pytest.fail(
            f"{type(err).__name__}: {err} on {len(data)} bytes (starting {data[:16]!r}); "
            f"expected {[a.__name__ for a in allowed]}"
        )
    return None


def read_as_tflm_runner(data: bytes):
    """What TFLMRunner checks before it hands the bytes to the TFLM interpreter: the decoded
    model, or None if refused. (Not the interpreter itself: the pinned wheel aborts on
    crafted models no check of ours foresees, e.g. an ADD whose scales make TFLM's
    QuantizeMultiplierSmallerThanOneExp assert.)"""
    from tfmot_edgeplus.core.tflite import check_model
    from tfmot_edgeplus.runtime import tflm

    model = _expect(lambda: check_model(tflm._as_model_bytes(data)), (ValueError,), data)
    if model is not None:  # TFLMRunner's next reader of the decoded model
        assert tflm._runtime().count_resource_variables(model) >= 0
    return model


def read_lowbit(data: bytes):
    """describe_weights and weight_bytes: their results, or None if refused."""
    from tfmot_edgeplus.conversion.lowbit import describe_weights, weight_bytes

    rows = _expect(lambda: describe_weights(data), (ValueError,), data)
    if rows is None:
        return None
    assert isinstance(rows, list)
    n = _expect(lambda: weight_bytes(data), (ValueError,), data)
    assert n is None or n >= 0
    return rows


def read_split_head(data: bytes, layers: int):
    """split_head's IntHead, or None if refused."""
    from tfmot_edgeplus.calibration.head import split_head

    head = _expect(lambda: split_head(data, layers=layers), (ValueError,), data)
    assert head is None or len(head.layers) == layers
    return head


@pytest.mark.parametrize("path", REGRESSIONS, ids=lambda p: p.stem)
def test_regression_inputs_are_read_cleanly(path):
    """Each once crashed a reader or raised another exception type."""
    data = path.read_bytes()
    read_as_tflm_runner(data)
    read_lowbit(data)
    for layers in (1, 2):
        read_split_head(data, layers)


def test_tflm_runner_validation(models, capsys):
    def prop(case):
        read_as_tflm_runner(mutate(models[case[0]], case[1]))

    assert _fuzz(prop, MUTATION, "TFLMRunner", capsys) >= SHORT_EXAMPLES


def test_lowbit_readers(models, capsys):
    def prop(case):
        read_lowbit(mutate(models[case[0]], case[1]))

    assert _fuzz(prop, MUTATION, "lowbit", capsys) >= SHORT_EXAMPLES


UNPACK = st.tuples(st.binary(max_size=64), st.sampled_from((2, 4, 8, 0, 1, 3, 16, -4)),
                   st.one_of(st.none(), st.integers(-4, 600)))  # fmt: skip


def test_unpack_any_bytes(capsys):
    from tfmot_edgeplus.core.packing import pack, unpack

    def prop(case):
        raw, bits, count = case
        arr = np.frombuffer(raw, np.uint8)
        out = _expect(lambda: unpack(arr, bits, count), (ValueError,), raw)
        if out is not None:
            per = 8 // bits
            assert out.dtype == np.int8 and out.size == (len(raw) * per if count is None else count)
            lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
            assert out.size == 0 or (out.min() >= lo and out.max() <= hi)
            if count is None:  # every byte's fields round-trip
                assert bytes(pack(out, bits).view(np.uint8)) == raw

    assert _fuzz(prop, UNPACK, "unpack", capsys) >= SHORT_EXAMPLES


def test_split_head(models, capsys):
    def prop(case):
        (which, edits), layers = case
        read_split_head(mutate(models[which], edits), layers)

    cases = st.tuples(MUTATION, st.integers(1, 2))
    assert _fuzz(prop, cases, "split_head", capsys) >= SHORT_EXAMPLES
