"""Instruction counts of one QCore chunk calibration against back-propagation, on the
emulated Cortex-M4F (the Arduino Nano 33 BLE's core).

::

    cost = m4_calibration_cost(cal, x_items, y_items, prior_counts,
                               bp_layers=[1], bp_steps=30, bp_learning_rate=0.01,
                               guard=n_old, guard_min_correct=cal.guard_min_correct)

``cal`` is a fitted :class:`~tfmot_edgeplus.calibration.BitFlipCalibrator`; ``x_items`` /
``y_items`` are the head inputs (int8) and labels of the chunk's items (the QCore, the
memory, then the chunk), the first ``guard`` of them guarded in every step with
``guard_min_correct`` (``step.qcore_step``'s old-domain guard; default 0, 0: none);
``prior_counts`` are the miss counts of the unguarded items ``[guard, n)`` carried into
the chunk (the memory's, then 0 for the new samples), which the refresh redraws from.
The weights the chunk starts from are ``weights`` (default: ``cal.weights``).

What runs: ``tflm_ops/m4/qcore_bench_main.c`` on a generated ``qcore_case.h`` (written
under ``build/qcore-m4<opt>[-softfp]/case``), built with arm-none-eabi-gcc at ``float_abi``
(``hard``; ``softfp`` with ``-Os`` is the Arduino mbed core's) and ``opt`` (default
``-Ofast``, the benchmarks' flag) and run in ``qemu-system-arm -M mps2-an386 -icount
shift=0``, where SysTick read around a call gives its exact instruction count (see
``benchmarks/kernels_m4.py``). Instructions, not cycles. Measured:

- ``QCORE``: the whole chunk as ``BitFlipCalibrator.calibrate`` runs it on the device:
  up to ``cal.max_steps`` calls of ``edgeplus_qcore_step`` on the items (stopping after
  the first rolled-back step), then ``edgeplus_qcore_refresh`` of
  ``min(cal.memory_size, n - guard)`` of the unguarded items; and one
  ``edgeplus_qcore_step`` on its own.
- ``BP``: the baseline, a float32 C port of ``bp_finetune`` (``bp_steps`` full-batch Adam
  steps on the cross-entropy of ``bp_layers``, then rounding to the integer grid), and
  one of its Adam iterations.

Nothing is reported unless it is right: the M4's QCore weights, step results, chosen
QCore indices, counts and rng state must equal the NumPy reference's (the same loop run
with ``step.qcore_step`` / ``step.qcore_refresh``) and the host build's, bit for bit; the
baseline's integer weights must agree with ``bp_finetune``'s on at least 99 % of the
trained weights (float32 sums in another order may round a few weights the other way);
otherwise :class:`~benchmarks.kernels_m4.BenchmarkError` says what differs. A missing
arm-none-eabi-gcc or qemu-system-arm raises the same error naming the tool (the caller
decides to skip).

Returned keys: ``qcore_instructions``, ``qcore_steps``, ``qcore_kept``,
``qcore_step_instructions``, ``qcore_scratch_bytes`` (the step's / refresh's shared
scratch + the correctness history + the chosen indices and counts),
``qcore_step_scratch_bytes`` (``edgeplus_qcore_step_get_buffer_size``), ``bp_instructions``,
``bp_step_instructions``, ``bp_scratch_bytes`` (the baseline's float buffers: every
layer's float weights and biases, activations, Adam moments, two error buffers, the int8
result), ``bp_weights_agree`` (fraction of the trained layers' integer weights equal to
``bp_finetune``'s), ``bp_weights_agree_host`` (the same for the host build of the C
baseline), ``text_bytes`` (code of the four QCore library functions, libc/libgcc helpers
included: a ``--gc-sections`` link rooted at them), ``n``, ``calibrated_layers``,
``bp_layers``, ``bp_steps``, ``guard``, ``guard_min_correct``, ``opt``, ``cflags``.
"""

from __future__ import annotations

import re

import numpy as np

from benchmarks.kernels_m4 import (
    INSTR_PER_TICK,
    M4_DIR,
    BenchmarkError,
    M4Flags,
    _run,
    _text_bytes,
    _tool,
    run_qemu,
)
from tfmot_edgeplus.export.c_arrays import c_float as _c_float
from tfmot_edgeplus.export.c_arrays import c_int as _c_int
from tfmot_edgeplus.runtime.build_lock import build_lock

__all__ = ["m4_calibration_cost", "parse_qcore_output", "write_case_header"]

QCORE_ENTRIES = (
    "edgeplus_qcore_step",
    "edgeplus_qcore_step_get_buffer_size",
    "edgeplus_qcore_refresh",
    "edgeplus_qcore_refresh_get_buffer_size",
)
BP_MIN_AGREEMENT = 0.99
_LINE = re.compile(
    r"^(QCORE|QCORE_TRACE|QCORE_STEP|BP|BP_STEP|BP_WEIGHTS|QBENCH_ERROR|QBENCH_DONE|CALIB)\b(.*)$"
)
_STEP_FIELDS = (
    "kept",
    "level",
    "changed",
    "correct_before",
    "correct_after",
    "margin_before",
    "margin_after",
    "guard_correct_before",
    "guard_correct_after",
)


def _fnv1a(data: bytes) -> int:
    h = 2166136261
    for b in data:
        h = ((h ^ b) * 16777619) & 0xFFFFFFFF
    return h


def _packed(weights, head) -> bytes:
    from tfmot_edgeplus.core.packing import pack

    return b"".join(
        pack(np.asarray(w, np.int8), layer.bits).tobytes() for w, layer in zip(weights, head.layers)
    )


# ------------------------------------------------------------------ the case header


def _array(ctype: str, name: str, values, fmt=_c_int) -> str:
    """A C99 ``static const`` array (the case header is included by C)."""
    vals = [fmt(v) for v in np.asarray(values).reshape(-1)]
    lines = [", ".join(vals[i : i + 16]) for i in range(0, len(vals), 16)] or ["0"]
    body = ",\n  ".join(lines)
    return f"static const {ctype} {name}[{max(len(vals), 1)}] = {{\n  {body}\n}};\n"


def write_case_header(
    head,
    nets: dict,
    weights,
    x,
    y,
    prior_counts,
    *,
    margin: int,
    tries: int,
    max_steps: int,
    guard: int,
    guard_min_correct: int,
    refresh_size: int,
    seed: int,
    bp_layers,
    bp_steps: int,
    bp_learning_rate: float,
) -> str:
    """The text of ``qcore_case.h`` for ``qcore_bench_main.c`` (see its header comment)."""
    from tfmot_edgeplus.core.packing import pack

    n, inp = x.shape
    widths = [head.input_size] + [layer.shape[0] for layer in head.layers]
    parts = [
        "/* Generated by benchmarks/_qcore_m4.py: one QCore calibration case. */\n",
        "#ifndef QCORE_CASE_H_\n#define QCORE_CASE_H_\n\n",
        f"#define QC_NUM_LAYERS {len(head.layers)}\n",
        f"#define QC_N {n}\n#define QC_IN {inp}\n#define QC_CLASSES {head.num_classes}\n",
        f"#define QC_MARGIN {int(margin)}\n#define QC_TRIES {int(tries)}\n",
        f"#define QC_MAX_STEPS {int(max_steps)}\n#define QC_REFRESH_SIZE {int(refresh_size)}\n",
        f"#define QC_GUARD {int(guard)}\n#define QC_GUARD_MIN_CORRECT {int(guard_min_correct)}\n",
        f"#define QC_RNG_SEED {int(seed) & 0xFFFFFFFF}u\n",
        f"#define QC_WEIGHT_BYTES {len(_packed(weights, head))}\n",
        f"#define QC_MAX_WIDTH {max(widths)}\n",
        f"#define QC_BP_STEPS {int(bp_steps)}\n#define QC_BP_LR {_c_float(bp_learning_rate)}\n",
        f"#define QC_BP_NUM_TRAINED {len(bp_layers)}\n\n",
        _array("int32_t", "qc_bp_trained", bp_layers),
    ]
    descs = []
    for l, (layer, w) in enumerate(zip(head.layers, weights)):
        out, fan_in = layer.shape
        packed = pack(np.asarray(w, np.int8), layer.bits)
        parts += [
            f"\n/* layer {l}: {layer.name}, {out} x {fan_in}, W{layer.bits} */\n",
            _array("int8_t", f"qc_w{l}", packed),
            _array("int32_t", f"qc_bias{l}", layer.bias),
            _array("int32_t", f"qc_mult{l}", layer.multiplier),
            _array("int32_t", f"qc_shift{l}", layer.shift),
            _array("float", f"qc_wscale{l}", layer.weight_scale, _c_float),
        ]
        descs.append(
            f"  {{{out}, {fan_in}, {layer.bits}, qc_w{l}, {packed.size}, qc_bias{l}, "
            f"qc_mult{l}, qc_shift{l}, {int(layer.input_zero_point)}, "
            f"{int(layer.output_zero_point)}, {int(layer.act_min)}, {int(layer.act_max)}, "
            f"{_c_float(layer.input_scale)}, qc_wscale{l}, {int(bool(layer.relu))}}}"
        )
    parts.append(
        "\nstatic const qc_layer_desc qc_layers[QC_NUM_LAYERS] = {\n" + ",\n".join(descs) + "\n};\n"
    )
    refs = []
    for l in range(len(head.layers)):
        net = nets.get(l)
        if net is None:
            refs.append("NULL")
            continue
        parts += [
            f"\n/* flip net of layer {l} */\n",
            _array("int8_t", f"qc_net{l}_w1", net.w1),
            _array("int32_t", f"qc_net{l}_b1", net.b1),
            _array("int8_t", f"qc_net{l}_w2", net.w2),
            (
                f"static const edgeplus_flipnet qc_net{l} = {{{net.hidden}, qc_net{l}_w1, "
                f"qc_net{l}_b1, {_c_int(net.m1)}, {_c_int(net.s1)}, qc_net{l}_w2, "
                f"{_c_int(net.b2)}, {_c_int(net.threshold)}}};\n"
            ),
        ]
        refs.append(f"&qc_net{l}")
    parts += [
        "\nstatic const edgeplus_flipnet *const qc_nets[QC_NUM_LAYERS] = {"
        + ", ".join(refs)
        + "};\n\n",
        _array("int8_t", "qc_x", x),
        _array("int32_t", "qc_y", y),
        _array("int32_t", "qc_prior", prior_counts),
        "\n#endif /* QCORE_CASE_H_ */\n",
    ]
    return "".join(parts)


# ------------------------------------------------------------------ parsing


def parse_qcore_output(text: str) -> dict:
    """Parse qcore_bench_main.c's lines into ``{kind: fields}`` (``QCORE_TRACE`` and
    ``BP_WEIGHTS`` as lists); raise on ``QBENCH_ERROR`` or a missing ``QBENCH_DONE``."""
    out: dict = {"QCORE_TRACE": [], "BP_WEIGHTS": []}
    errors = []
    for raw in text.splitlines():
        m = _LINE.match(raw.strip())
        if not m:
            continue
        kind, rest = m.groups()
        if kind == "QBENCH_ERROR":
            errors.append(raw.strip())
            continue
        fields = dict(tok.split("=", 1) for tok in rest.split() if "=" in tok)
        if kind in ("QCORE_TRACE", "BP_WEIGHTS"):
            out[kind].append(fields)
        else:
            out[kind] = fields
    if errors:
        raise BenchmarkError("the QCore benchmark program reported errors:\n" + "\n".join(errors))
    if "QBENCH_DONE" not in out:
        raise BenchmarkError(
            "the QCore benchmark program stopped before QBENCH_DONE:\n" + text[-2000:]
        )
    missing = [k for k in ("QCORE", "QCORE_STEP", "BP", "BP_STEP") if k not in out]
    if missing:
        raise BenchmarkError(f"the QCore benchmark program printed no {', '.join(missing)} line")
    return out


def _bp_weights(parsed: dict, head, bp_layers) -> dict[int, np.ndarray]:
    got = {}
    for f in parsed["BP_WEIGHTS"]:
        l = int(f["layer"])
        got[l] = np.frombuffer(bytes.fromhex(f["hex"]), np.int8).reshape(head.layers[l].shape)
    if sorted(got) != list(bp_layers):
        raise BenchmarkError(f"BP_WEIGHTS for layers {sorted(got)}, expected {list(bp_layers)}")
    return got


# ------------------------------------------------------------------ reference


def _reference(cal, x, y, prior, weights, guard):
    """The chunk loop of BitFlipCalibrator.calibrate with step.qcore_step / qcore_refresh
    (``guard``: qcore_step's guard and guard_min_correct keywords; the history and the
    refresh cover the unguarded items)."""
    from tfmot_edgeplus.calibration.step import qcore_refresh, qcore_step

    steps, history = [], []
    w = weights
    n_old = guard["guard"]
    for _ in range(cal.max_steps):
        r = qcore_step(cal.head, cal.nets, x, y, w, cal.margin, cal.tries, **guard)
        if not history:
            history.append(r.correct_mask_before[n_old:])
        steps.append(r)
        if not r.kept:
            break
        w = r.weights
        history.append(r.correct_mask_after[n_old:])
    size = min(cal.memory_size, len(prior))
    idx, counts, state = qcore_refresh(prior, history, size, cal._rng_state)
    return steps, w, idx, counts, state, size


def _step_fields(r) -> dict:
    return {f: int(getattr(r, f)) for f in _STEP_FIELDS}


def _check_qcore(where: str, parsed: dict, ref, head, ref_step) -> list[str]:
    """Differences between one run's QCore lines and the NumPy reference."""
    steps, w, idx, counts, state, _ = ref
    q = parsed["QCORE"]
    bad = []
    expect = {
        "steps": len(steps),
        "kept": sum(int(s.kept) for s in steps),
        "checksum": _fnv1a(_packed(w, head)),
        "chosen_checksum": _fnv1a(np.asarray(idx, "<i4").tobytes()),
        "counts_checksum": _fnv1a(np.asarray(counts, "<i4").tobytes()),
        "rng_state": int(state),
    }
    for key, want in expect.items():
        got = int(q[key], 0)
        if got != want:
            bad.append(f"{where} QCORE {key}: {got:#x} != reference {want:#x}")
    trace = parsed["QCORE_TRACE"]
    if len(trace) != len(steps):
        bad.append(f"{where}: {len(trace)} QCORE_TRACE lines for {len(steps)} reference steps")
    for s, (t, r) in enumerate(zip(trace, steps)):
        for key, want in _step_fields(r).items():
            if int(t[key]) != want:
                bad.append(f"{where} QCORE step {s} {key}: {t[key]} != reference {want}")
    one = parsed["QCORE_STEP"]
    for key, want in _step_fields(ref_step).items():
        if int(one[key]) != want:
            bad.append(f"{where} QCORE_STEP {key}: {one[key]} != reference {want}")
    want = _fnv1a(_packed(ref_step.weights, head))
    if int(one["checksum"], 0) != want:
        bad.append(f"{where} QCORE_STEP weights checksum {one['checksum']} != {want:#010x}")
    return bad


# ------------------------------------------------------------------ driver


def _check_inputs(cal, x, y, prior, guard, bp_layers, bp_steps, bp_learning_rate):
    head = cal.head
    if not getattr(cal, "nets", None):
        raise ValueError("cal has no flip networks: fit() the calibrator first")
    x = np.asarray(x)
    y = np.asarray(y)
    if x.ndim != 2 or x.shape[1] != head.input_size or len(x) == 0:
        raise ValueError(
            f"x_items must be head inputs of shape (N, {head.input_size}), N >= 1, got {x.shape}"
        )
    if x.dtype.kind not in "iu" or x.min() < -128 or x.max() > 127:
        raise ValueError("x_items must be int8 head inputs (integers in [-128, 127])")
    if y.shape != (len(x),) or y.dtype.kind not in "iu":
        raise ValueError(f"y_items must be {len(x)} integer labels, got {y.shape} {y.dtype}")
    if not isinstance(guard, int) or not 0 <= guard < len(x):
        raise ValueError(
            f"guard must be an int in [0, n - 1] = [0, {len(x) - 1}] (guarded items), got {guard!r}"
        )
    prior = np.asarray(prior)
    free = len(x) - guard
    if prior.shape != (free,) or prior.dtype.kind not in "iu" or (prior < 0).any():
        raise ValueError(
            f"prior_counts must be {free} non-negative integers (one per unguarded item), got "
            f"shape {prior.shape}"
        )
    layers = sorted({int(l) for l in bp_layers})
    if not layers or layers[0] < 0 or layers[-1] >= len(head.layers):
        raise ValueError(
            f"bp_layers must name head layers in [0, {len(head.layers) - 1}], got {bp_layers!r}"
        )
    if not isinstance(bp_steps, int) or bp_steps < 1:
        raise ValueError(f"bp_steps must be an int >= 1, got {bp_steps!r}")
    if not np.isfinite(bp_learning_rate) or bp_learning_rate <= 0:
        raise ValueError(f"bp_learning_rate must be > 0, got {bp_learning_rate!r}")
    return x.astype(np.int8), y.astype(np.int64), prior.astype(np.int64), layers


def m4_calibration_cost(
    cal,
    x_items,
    y_items,
    prior_counts,
    bp_layers,
    bp_steps: int,
    bp_learning_rate: float,
    weights=None,
    opt: str = "-Ofast",
    float_abi: str = "hard",
    library_pragma: bool = False,
    timeout: float = 300.0,
    guard: int = 0,
    guard_min_correct: int = 0,
) -> dict:
    """Instruction counts of one QCore chunk calibration and of the back-propagation
    baseline on the emulated Cortex-M4F, checked against NumPy (see the module doc)."""
    from tfmot_edgeplus.calibration.backprop import bp_finetune
    from tfmot_edgeplus.calibration.step import qcore_step

    _tool("arm-none-eabi-gcc", "gcc-arm-none-eabi (+ libnewlib-arm-none-eabi)")
    qemu = _tool("qemu-system-arm", "qemu-system-arm")
    _tool("make", "make")
    flags = M4Flags(opt, float_abi, library_pragma)
    head = cal.head
    weights = [np.array(w, np.int8) for w in (cal.weights if weights is None else weights)]
    x, y, prior, layers = _check_inputs(
        cal, x_items, y_items, prior_counts, guard, bp_layers, bp_steps, bp_learning_rate
    )

    guards = {"guard": guard, "guard_min_correct": guard_min_correct}
    ref = _reference(cal, x, y, prior, weights, guards)  # refuses bad guard arguments
    ref_step = qcore_step(head, cal.nets, x, y, weights, cal.margin, cal.tries, **guards)
    ref_bp = bp_finetune(head, x, y, layers, weights, bp_steps, bp_learning_rate)

    with build_lock():  # the case header, the build and the run: one test process at a time
        build = flags.build_dir("qcore-m4")
        case_dir = build / "case"
        case_dir.mkdir(parents=True, exist_ok=True)
        text = write_case_header(
            head,
            cal.nets,
            weights,
            x,
            y,
            prior,
            margin=cal.margin,
            tries=cal.tries,
            max_steps=cal.max_steps,
            guard=guard,
            guard_min_correct=guard_min_correct,
            refresh_size=ref[5],
            seed=cal._rng_state,
            bp_layers=layers,
            bp_steps=bp_steps,
            bp_learning_rate=bp_learning_rate,
        )
        case = case_dir / "qcore_case.h"
        if not case.exists() or case.read_text() != text:  # unchanged: make rebuilds nothing
            case.write_text(text)
        _run(
            [
                "make",
                "-s",
                "-C",
                str(M4_DIR),
                "qcore-bench",
                f"BUILD={build}",
                f"CASE_DIR={case_dir}",
                *flags.make_args,
            ],
            600,
            "make qcore-bench",
        )
        m4_text = run_qemu(qemu, build / "qcore_bench.elf", timeout)
    m4 = parse_qcore_output(m4_text)
    calib = int(m4.get("CALIB", {}).get("instr_per_tick_x1000", 0))
    if abs(calib - INSTR_PER_TICK * 1000) > 100:
        raise BenchmarkError(
            f"SysTick calibration gave {calib} instructions/tick x1000, expected "
            f"{INSTR_PER_TICK * 1000}: the counter is not an instruction count on this QEMU."
        )
    host = parse_qcore_output(_run([str(build / "qcore_bench_host")], timeout, "host run"))

    bad = _check_qcore("M4", m4, ref, head, ref_step) + _check_qcore(
        "host", host, ref, head, ref_step
    )
    if bad:
        raise BenchmarkError(
            "the QCore calibration on the M4 differs from the NumPy reference; refusing to "
            "report its cost:\n  " + "\n  ".join(bad)
        )

    def agreement(parsed) -> float:
        got = _bp_weights(parsed, head, layers)
        same = sum(int((got[l] == ref_bp[l]).sum()) for l in layers)
        return same / sum(ref_bp[l].size for l in layers)

    agree, agree_host = agreement(m4), agreement(host)
    if agree < BP_MIN_AGREEMENT:
        raise BenchmarkError(
            f"the C back-propagation baseline on the M4 agrees with bp_finetune on only "
            f"{agree:.2%} of the trained integer weights (host build: {agree_host:.2%}; at least "
            f"{BP_MIN_AGREEMENT:.0%} expected); refusing to report its cost"
        )
    return {
        "qcore_instructions": int(m4["QCORE"]["instructions"]),
        "qcore_steps": int(m4["QCORE"]["steps"]),
        "qcore_kept": int(m4["QCORE"]["kept"]),
        "qcore_step_instructions": int(m4["QCORE_STEP"]["instructions"]),
        "qcore_scratch_bytes": int(m4["QCORE"]["scratch_bytes"]),
        "qcore_step_scratch_bytes": int(m4["QCORE_STEP"]["scratch_bytes"]),
        "bp_instructions": int(m4["BP"]["instructions"]),
        "bp_step_instructions": int(m4["BP_STEP"]["instructions"]),
        "bp_scratch_bytes": int(m4["BP"]["scratch_bytes"]),
        "bp_weights_agree": agree,
        "bp_weights_agree_host": agree_host,
        "text_bytes": _text_bytes(build / "obj", QCORE_ENTRIES, build, flags),
        "n": len(y),
        "calibrated_layers": sorted(int(l) for l in cal.nets),
        "bp_layers": layers,
        "bp_steps": bp_steps,
        "guard": guard,
        "guard_min_correct": guard_min_correct,
        "opt": opt,
        "cflags": flags.label,
    }
