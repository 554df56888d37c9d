"""Write the committed seed corpus of the libFuzzer targets (tflm_ops/fuzz/corpus/<target>/):
valid inputs of every kind plus a few edge cases, in each target's input format (see the
fuzz_<target>.c headers). Run from the repo root: ``python tflm_ops/fuzz/make_seeds.py``.
Regression inputs (crashes found, named crash-*) are kept; the seeds named seed-* are
rewritten."""

from __future__ import annotations

import struct
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "tflm_ops" / "fuzz" / "corpus"


def enc(*values: int) -> bytes:
    """fuzz_common.h's ep_rd_int encoding: one byte for -127..127, else 0x80 + 4 bytes."""
    out = bytearray()
    for v in values:
        v = int(v)
        if -127 <= v <= 127:
            out += struct.pack("<b", v)
        else:
            out += b"\x80" + struct.pack("<I", v & 0xFFFFFFFF)
    return bytes(out)


def stage_seeds() -> dict[str, bytes]:
    sys.path.insert(0, str(ROOT / "tests"))
    from builders.golden import golden_stage_case
    from stage_helpers import random_program

    seeds = {"golden": golden_stage_case()[0].to_words().tobytes()}
    for i in range(8):
        rng = np.random.default_rng(100 + i)
        program, _ = random_program(rng, size=int(rng.integers(6, 10)), grid=1 + i % 3,
                                    low_bit_outliers=i % 2 == 1)  # fmt: skip
        seeds[f"random{i}"] = program.to_words().tobytes()
    words = np.frombuffer(seeds["golden"], dtype=np.int32)
    seeds["truncated"] = words[: len(words) // 2].tobytes()
    seeds["header_only"] = words[:8].tobytes()
    huge = words.copy()
    huge[8 : 8 + 3] = (1 << 30, 16, 1 << 30)  # tensor 0 dims whose product wraps to 0
    seeds["dims_wrap"] = huge.tobytes()
    return seeds


def conv_case(mode, params, di, df, do, ireg=(0, 0, 0, 0), oreg=(0, 0, 0, 0), win=(0, 0, 0, 0),
              shift=-8, seed=1):  # fmt: skip
    return enc(mode, *params, *di, *df, *do, *ireg, *oreg, *win, shift, seed)


def conv_seeds() -> dict[str, bytes]:
    seeds = {}
    # params: stride h/w, pad h/w, dilation h/w, in zp, out zp, act min/max, in/w/out bits
    for i, (ib, wb, ob) in enumerate([(8, 8, 8), (4, 4, 4), (2, 2, 2), (8, 4, 2), (2, 8, 4)]):
        lo, hi = -(1 << (ob - 1)), (1 << (ob - 1)) - 1
        p = (1, 1, 1, 1, 1, 1, -1, 0, lo, hi, ib, wb, ob)
        seeds[f"conv3x3_same_{ib}{wb}{ob}"] = conv_case(0, p, (1, 7, 7, 3), (4, 3, 3, 3),
                                                         (1, 7, 7, 4), seed=i)  # fmt: skip
        seeds[f"dw3x3_same_{ib}{wb}{ob}"] = conv_case(1, p, (1, 7, 7, 5), (1, 3, 3, 5),
                                                       (1, 7, 7, 5), seed=i)  # fmt: skip
    p = (2, 2, 0, 0, 1, 1, 3, -2, -128, 127, 8, 8, 8)
    seeds["conv_stride2_valid"] = conv_case(4, p, (2, 9, 9, 2), (3, 3, 3, 2), (2, 4, 4, 3))
    p = (1, 1, 2, 2, 2, 2, 0, 0, -8, 7, 4, 4, 4)
    seeds["dw_dilation2"] = conv_case(1, p, (1, 8, 8, 3), (1, 3, 3, 3), (1, 8, 8, 3))
    p = (1, 1, 1, 1, 1, 1, 0, 1, -2, 1, 8, 2, 2)
    seeds["conv_window_regions"] = conv_case(2 | 8 | 16, p, (1, 8, 8, 3), (2, 3, 3, 3),
                                             (1, 8, 8, 2), ireg=(0, 0, 8, 8),
                                             oreg=(2, 2, 5, 5), win=(3, 3, 2, 3))  # fmt: skip
    seeds["dw_window"] = conv_case(3, (1, 1, 1, 1, 1, 1, 0, 0, -8, 7, 4, 8, 4), (1, 6, 6, 4),
                                   (1, 3, 3, 4), (1, 6, 6, 4), win=(1, 2, 3, 3))  # fmt: skip
    # a fractional bias (mode bits 5..9: bias_frac_bits)
    p = (1, 1, 1, 1, 1, 1, -3, 1, -8, 7, 4, 4, 4)
    seeds["conv3x3_bias_frac6"] = conv_case(6 << 5, p, (1, 7, 7, 3), (4, 3, 3, 3), (1, 7, 7, 4))
    p = (1, 1, 1, 1, 1, 1, -1, 0, -2, 1, 2, 2, 2)
    seeds["dw3x3_bias_frac8"] = conv_case(1 | 8 << 5, p, (1, 7, 7, 5), (1, 3, 3, 5),
                                          (1, 7, 7, 5))  # fmt: skip
    seeds["huge_dims"] = conv_case(0, (1, 1, 0, 0, 1, 1, 0, 0, -128, 127, 8, 8, 8),
                                   (1, 1 << 30, 16, 1 << 30), (1, 1, 1, 1 << 30),
                                   (1, 1 << 30, 16, 1))  # fmt: skip
    seeds["int32_edges"] = conv_case(0, (0x7FFFFFFF, 1, -(1 << 31), 0, 0, 1, 0, 0, 0, 0, 8, 8, 8),
                                     (1, 3, 3, 1), (1, 1, 1, 1), (1, 0x7FFFFFFF, 1, 1))
    return seeds


def qcore_layer(out, inp, w_bits, *, calibrated=True, bias=True, hidden=8, shift=-8,
                zp=(-3, 2), act=(-128, 127)):  # fmt: skip
    flags = int(bias) | (int(calibrated) << 1)
    # net: hidden, m1, s1, b2, threshold
    return enc(out, inp, w_bits, *zp, *act, shift, flags, hidden, 1 << 30, -8, 0, 64)


def qcore_step(layers, *, margin=8, tries=3, n=8, label=0, flags=0, seed=5, num_layers=None,
               guard=0, guard_min_correct=0):  # fmt: skip
    count = len(layers) if num_layers is None else num_layers
    head = enc(0, count, margin, tries, n, label, flags, seed, guard, guard_min_correct)
    return head + b"".join(layers)


def qcore_refresh(n, steps, size, rng, prior0=-1, hist0=-1, seed=3):
    return enc(1, n, steps, size, rng, prior0, hist0, seed)


def qcore_seeds() -> dict[str, bytes]:
    return {
        "step_one_layer_w4": qcore_step([qcore_layer(4, 16, 4)]),
        "step_two_layers": qcore_step([qcore_layer(8, 12, 8), qcore_layer(3, 8, 4)], n=6),
        "step_first_frozen": qcore_step(
            [qcore_layer(6, 10, 4, calibrated=False, bias=False), qcore_layer(4, 6, 8)], tries=5
        ),
        "step_none_calibrated": qcore_step([qcore_layer(5, 9, 8, calibrated=False)], flags=1),
        "step_bad_label": qcore_step([qcore_layer(4, 16, 4)], label=9),
        "step_nine_layers": qcore_step([qcore_layer(4, 4, 8)] * 8, num_layers=9),
        "step_huge_n": qcore_step([qcore_layer(4, 16, 4)], n=(1 << 31) - 1),
        "step_guarded": qcore_step(
            [qcore_layer(8, 12, 8), qcore_layer(3, 8, 4)], n=10, guard=4, guard_min_correct=2
        ),
        "step_guard_max": qcore_step([qcore_layer(4, 16, 4)], guard=7, guard_min_correct=7),
        "step_guard_n": qcore_step([qcore_layer(4, 16, 4)], guard=8),
        "step_guard_min_above": qcore_step([qcore_layer(4, 16, 4)], guard=3, guard_min_correct=4),
        "refresh": qcore_refresh(10, 4, 3, 12345),
        "refresh_one": qcore_refresh(1, 1, 1, 1),
        "refresh_all": qcore_refresh(60, 8, 60, 7, prior0=5),
        "refresh_size_above_n": qcore_refresh(4, 2, 5, 9),
        "refresh_rng_zero": qcore_refresh(4, 2, 2, 0),
        "refresh_bad_history": qcore_refresh(4, 2, 2, 9, hist0=2),
        "refresh_huge": qcore_refresh((1 << 29) - 2, (1 << 31) - 1, 1, 9),
    }


def options_seeds(stage: dict[str, bytes]) -> dict[str, bytes]:
    from flatbuffers import flexbuffers

    from tfmot_edgeplus.conversion.op_schema import CONV_MP, PATCH_STAGE

    conv = dict(in_bits=4, w_bits=2, out_bits=8, depthwise=False, in_channels=3,
                out_channels=8, kernel_h=3, kernel_w=3, stride_h=1, stride_w=2, pad_h=1,
                pad_w=0, dilation_h=1, dilation_w=2, act_min=-128, act_max=127,
                bias_frac_bits=7)  # fmt: skip
    seeds = {
        "conv_mp": CONV_MP.encode(conv),
        "conv_mp_depthwise": CONV_MP.encode({**conv, "depthwise": True, "out_channels": 3}),
        "patch_stage_golden": PATCH_STAGE.encode({"version": 1, "program": stage["golden"]}),
        "patch_stage_random0": PATCH_STAGE.encode({"version": 1, "program": stage["random0"]}),
        "conv_mp_extra_key": bytes(flexbuffers.Dumps({**conv, "extra": 1})),
        "conv_mp_bool_as_int": bytes(flexbuffers.Dumps({**conv, "depthwise": 0})),
        "conv_mp_out_of_range": bytes(flexbuffers.Dumps({**conv, "kernel_h": 256})),
        "patch_stage_int_program": bytes(flexbuffers.Dumps({"version": 1, "program": 5})),
        "vector": bytes(flexbuffers.Dumps([1, 2, 3])),
        "empty": b"",
    }
    seeds["conv_mp_truncated"] = seeds["conv_mp"][: len(seeds["conv_mp"]) // 2]
    return seeds


def main() -> int:
    groups = {"patch_stage": stage_seeds(), "conv": conv_seeds(), "qcore": qcore_seeds()}
    groups["options"] = options_seeds(groups["patch_stage"])
    for target, seeds in groups.items():
        folder = CORPUS / target
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("seed-*"):
            old.unlink()
        for name, blob in seeds.items():
            (folder / f"seed-{name}").write_bytes(blob)
        print(f"{folder.relative_to(ROOT)}: {len(seeds)} seeds")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
