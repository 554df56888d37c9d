"""The QuantMCU plan of a model: :func:`plan` and :class:`PatchPlan`.

::

    from tfmot_edgeplus import patching

    p = patching.plan(model, x_calib, sram_budget=256 * 1024)
    print(p.summary())            # per-step table and the totals
    p.plot("plan.png")            # memory per step, bits per map, the patch grid
    text = p.to_json(); patching.PatchPlan.from_json(text) == p
    p.check(model)                # raises if the plan was made for another model

Steps: :class:`~tfmot_edgeplus.patching.planner.PatchPlanner` reads the model and searches
the split tensor and grid with the lowest 8-bit patch-based peak SRAM within
``sram_budget`` (``split``/``grid`` force a choice); with ``calib_data``,
:func:`~tfmot_edgeplus.patching.vdq.vdpc` marks the outlier patches and
:func:`~tfmot_edgeplus.patching.vdq.vdqs` picks the bits of every stage feature map for the
other patches. ``calib_data=None`` skips both (an 8-bit patch-based plan). The models are
described in :mod:`~tfmot_edgeplus.patching.planner` and :mod:`~tfmot_edgeplus.patching.vdq`.
"""

from __future__ import annotations

import json
import numbers
from dataclasses import asdict, dataclass, fields

import numpy as np

from tfmot_edgeplus._compat import optional_import
from tfmot_edgeplus.patching.graph import read_graph
from tfmot_edgeplus.patching.lower import PlanMismatchError, lower
from tfmot_edgeplus.patching.planner import PatchPlanner, _check_int
from tfmot_edgeplus.patching.tflite_graph import TFLiteStageRunner, read_tflite_graph
from tfmot_edgeplus.patching.vdq import (
    CANDIDATE_BITS,
    StageRunner,
    _check_fraction,
    check_calib_data,
    check_saving,
    vdpc,
    vdqs,
)

__all__ = [
    "JSON_FORMAT",
    "LayerRecord",
    "PatchPlan",
    "PlanConfig",
    "PlanMismatchError",
    "layer_plan",
    "plan",
]

JSON_FORMAT = "edgeplus-patch-plan/3"


@dataclass(frozen=True)
class PlanConfig:
    """Settings of :func:`plan`, validated at construction.

    ``sram_budget``: bytes of SRAM for activations (e.g. 256 KB minus what the runtime
    needs); ``phi``: quantile of ``|v|`` above which a value is an outlier, in (0, 1);
    ``lam``: weight of the entropy change against the BitOPs saving in VDQS, in [0, 1];
    ``low_bits``: the bit-widths below 8 VDQS may choose, a subset of (4, 2);
    ``outlier_sample_fraction``: a patch is an outlier patch (8-bit) when it holds a value
    above ``phi``'s in more than this fraction of the calibration samples, in [0, 1] (1
    disables VDPC); a share of samples per patch, not of patches (the plan's
    ``outlier_share`` is that); ``grid``/``split``: force the ``n x n`` grid / the
    split tensor (a layer name); ``max_grid``: largest ``n`` searched; ``weight_bits``: the
    weights' bits in the BitOPs and the instruction model; ``input_resident``: the model input
    is held whole in SRAM during the patch stage; ``batch_size``: of the calibration passes;
    ``max_halo``: the searched grid's modeled M4 instructions of the patch stage at most this
    many times the same stage's layer by layer (halo recomputation bounded; None: no bound;
    a forced ``grid`` is not bounded); ``saving``: what VDQS's Phi counts, ``"bitops"`` (the
    paper's) or ``"instructions"`` (our kernels' cost model,
    :mod:`~tfmot_edgeplus.patching.cost_model`).
    """

    sram_budget: int = 256 * 1024
    phi: float = 0.999
    lam: float = 0.5
    low_bits: tuple = (4, 2)
    outlier_sample_fraction: float = 0.1
    grid: int | None = None
    split: str | None = None
    max_grid: int = 8
    weight_bits: int = 8
    input_resident: bool = True
    batch_size: int = 16
    max_halo: float | None = 1.5
    saving: str = "bitops"

    def __post_init__(self):
        _check_int(self.sram_budget, "sram_budget", 1)
        _check_fraction(self.phi, "phi", True, True)
        _check_fraction(self.lam, "lam", False, False)
        if not set(self.low_bits) <= {4, 2} or isinstance(self.low_bits, (str, bytes)):
            raise ValueError(f"low_bits must be a subset of (4, 2), got {self.low_bits!r}.")
        object.__setattr__(
            self, "low_bits", tuple(sorted({int(b) for b in self.low_bits}, reverse=True))
        )
        _check_fraction(self.outlier_sample_fraction, "outlier_sample_fraction", False, False)
        if self.grid is not None:
            _check_int(self.grid, "grid", 1)
        if self.split is not None and not isinstance(self.split, str):
            raise TypeError(f"split must be a layer name (str) or None, got {self.split!r}.")
        _check_int(self.max_grid, "max_grid", 1)
        if self.weight_bits not in (2, 4, 8) or isinstance(self.weight_bits, bool):
            raise ValueError(f"weight_bits must be 2, 4 or 8, got {self.weight_bits!r}.")
        if not isinstance(self.input_resident, bool):
            raise TypeError(f"input_resident must be True or False, got {self.input_resident!r}.")
        _check_int(self.batch_size, "batch_size", 1)
        check_saving(self.saving)
        if self.max_halo is not None:
            ok = isinstance(self.max_halo, numbers.Real) and not isinstance(self.max_halo, bool)
            if not ok or not self.max_halo >= 1:
                raise ValueError(
                    f"max_halo must be a number >= 1 (the patch stage's modeled instructions "
                    f"over the same stage layer by layer) or None, got {self.max_halo!r}."
                )


@dataclass(frozen=True)
class LayerRecord:
    """One execution step of a plan (see :mod:`~tfmot_edgeplus.patching.planner`).

    ``inputs``: the tensors the step reads; ``bits_normal``/``bits_outlier``: its output's
    activation bits in normal / outlier patches (8 outside the stage); ``layer_bytes``:
    working set layer by layer; ``patch8_bytes``/``patch_bytes``: working set (max over
    patches in the stage) of the 8-bit / planned patch-based execution; ``macs``: layer by
    layer; ``patch_macs``: with the halo recomputation;
    ``bitops_layer``/``bitops_patch8``/``bitops``: 8-bit layer by layer / 8-bit patch based /
    planned.
    """

    step: str
    kind: str
    ops: tuple[str, ...]
    inputs: tuple[str, ...]
    output: str
    output_shape: tuple[int, ...]
    in_stage: bool
    bits_normal: int
    bits_outlier: int
    layer_bytes: int
    patch8_bytes: int
    patch_bytes: int
    macs: int
    patch_macs: int
    bitops_layer: int
    bitops_patch8: int
    bitops: int


@dataclass(frozen=True)
class PatchPlan:
    """A patch plan: split, grid, outlier patches, bits per map and the modeled costs.

    ``windows``: the ``grid x grid`` windows ``(y, x, h, w)`` of the split tensor, row-major,
    and ``outlier``/``exceed_fraction`` per window; ``regions``: per stage tensor (the model
    input ``input_name`` included) the window each patch needs of it, row-major (None: that
    patch does not need the tensor; the halos of the receptive fields included);
    ``ranges``: ``[lo, hi]`` real range of each map below 8 bits in the normal patches
    (VDQS); ``bits``: normal-patch bits of every
    stage map; ``phi_values``: VDPC thresholds; ``scores``: VDQS figures per decision unit
    (tuples over bits 8, 4, 2). Peaks in bytes; ``stage_*`` BitOPs count the patch stage
    only, the others the whole model; ``stage_instructions_*`` are the patch stage's modeled
    M4 instructions (:mod:`~tfmot_edgeplus.patching.cost_model`): layer by layer (1x1), 8-bit
    patches, planned.
    """

    model_name: str
    input_name: str
    input_shape: tuple[int, ...]
    split: str
    grid: int
    windows: tuple[tuple[int, int, int, int], ...]
    regions: dict
    outlier: tuple[bool, ...]
    exceed_fraction: tuple[float, ...]
    bits: dict
    ranges: dict
    phi_values: dict
    scores: dict
    layers: tuple[LayerRecord, ...]
    peak_layer: int
    peak_patch8: int
    peak_planned: int
    bitops_layer: int
    bitops_patch8: int
    bitops_planned: int
    stage_bitops_layer: int
    stage_bitops_patch8: int
    stage_bitops_planned: int
    stage_instructions_layer: float
    stage_instructions_patch8: float
    stage_instructions_planned: float
    config: dict
    signature: tuple

    # ------------------------------------------------------------------ figures

    @property
    def peak_ratio(self) -> float:
        """Layer-by-layer peak / planned patch-based peak."""
        return self.peak_layer / self.peak_planned

    @property
    def bitops_ratio(self) -> float:
        """8-bit patch-based / planned BitOPs of the patch stage."""
        return self.stage_bitops_patch8 / max(self.stage_bitops_planned, 1)

    @property
    def halo(self) -> float:
        """Modeled M4 instructions of the planned patch stage over the stage layer by layer."""
        return self.stage_instructions_planned / max(self.stage_instructions_layer, 1.0)

    @property
    def instructions_ratio(self) -> float:
        """8-bit patch-based / planned modeled M4 instructions of the patch stage."""
        return self.stage_instructions_patch8 / max(self.stage_instructions_planned, 1.0)

    @property
    def outlier_share(self) -> float:
        """The share of the ``grid x grid`` patches that are outlier patches (8-bit)."""
        return sum(self.outlier) / len(self.outlier)

    @property
    def outlier_patches(self) -> tuple[tuple[int, int], ...]:
        """``(row, col)`` of the outlier patches."""
        n = self.grid
        return tuple(divmod(k, n) for k, o in enumerate(self.outlier) if o)

    def summary(self) -> str:
        """A text table, one row per step, then the totals (returned, not printed)."""
        head = (
            f"{'step':<28} {'kind':<9} {'output':<14} {'bits n/o':>8} {'layer B':>9} "
            f"{'patch B':>9} {'MACs':>11} {'patch MACs':>11} {'BitOPs':>14}"
        )
        lines = [
            f"PatchPlan of {self.model_name!r}: split {self.split!r}, {self.grid}x{self.grid} "
            f"patches, {len(self.outlier_patches)} of {len(self.outlier)} outlier patches "
            f"({self.outlier_share:.0%}) "
            f"{list(self.outlier_patches) if self.outlier_patches else ''}".rstrip(),
            head,
            "-" * len(head),
        ]
        for r in self.layers:
            shape = "x".join(map(str, r.output_shape))
            bits = f"{r.bits_normal}/{r.bits_outlier}" if r.in_stage else "8"
            mark = "*" if r.output == self.split else " "
            lines.append(
                f"{r.step[:27] + mark:<28} {r.kind:<9} {shape:<14} {bits:>8} "
                f"{r.layer_bytes:>9,} {r.patch_bytes:>9,} {r.macs:>11,} {r.patch_macs:>11,} "
                f"{r.bitops:>14,}"
            )
        lines += [
            "-" * len(head),
            "(* = split tensor; bits n/o = normal / outlier patches; B = working-set bytes)",
            f"peak SRAM   layer by layer {self.peak_layer:>12,} B",
            f"            patch, 8-bit   {self.peak_patch8:>12,} B",
            (
                f"            planned        {self.peak_planned:>12,} B   "
                f"({self.peak_ratio:.2f}x lower than layer by layer)"
            ),
            (
                f"BitOPs      layer by layer {self.bitops_layer:>16,}   "
                f"(stage {self.stage_bitops_layer:,})"
            ),
            (
                f"            patch, 8-bit   {self.bitops_patch8:>16,}   "
                f"(stage {self.stage_bitops_patch8:,})"
            ),
            (
                f"            planned        {self.bitops_planned:>16,}   "
                f"(stage {self.stage_bitops_planned:,}; {self.bitops_ratio:.2f}x fewer than "
                "8-bit patch based)"
            ),
            (
                f"M4 instr.   stage layer by layer {self.stage_instructions_layer:>14,.0f}   "
                f"(modeled: patching/cost_model.py)"
            ),
            f"            stage 8-bit patches  {self.stage_instructions_patch8:>14,.0f}",
            (
                f"            stage planned        {self.stage_instructions_planned:>14,.0f}   "
                f"({self.halo:.2f}x layer by layer)"
            ),
            (
                f"sram_budget {self.config['sram_budget']:,} B, phi {self.config['phi']}, "
                f"lam {self.config['lam']}, low bits {self.config['low_bits']}, "
                f"outlier_sample_fraction {self.config['outlier_sample_fraction']}, "
                f"weight_bits {self.config['weight_bits']}, "
                f"calib_samples {self.config['calib_samples']}"
            ),
        ]
        return "\n".join(lines)

    def plot(self, path) -> None:
        """Write a figure: memory per step both ways, bits per stage map, the patch grid
        over the split tensor with the outlier patches hatched (matplotlib, Agg)."""
        optional_import("matplotlib", "plots")
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.patches import Rectangle

        fig = Figure(figsize=(14, 4.5), layout="constrained")
        FigureCanvasAgg(fig)
        ax_mem, ax_bits, ax_grid = fig.subplots(1, 3, gridspec_kw={"width_ratios": [2.4, 1.6, 1]})
        x = np.arange(len(self.layers))
        ax_mem.plot(x, [r.layer_bytes / 1024 for r in self.layers], label="layer by layer")
        ax_mem.plot(x, [r.patch_bytes / 1024 for r in self.layers], label="patch based (plan)")
        ax_mem.axhline(
            self.config["sram_budget"] / 1024, color="gray", ls="--", label="sram_budget"
        )
        k = next(i for i, r in enumerate(self.layers) if r.output == self.split)
        ax_mem.axvline(k, color="k", lw=0.8, ls=":", label=f"split {self.split}")
        ax_mem.set_xlabel("step")
        ax_mem.set_ylabel("working set (KiB)")
        ax_mem.set_title(f"peak {self.peak_layer / 1024:.1f} -> {self.peak_planned / 1024:.1f} KiB")
        ax_mem.legend(fontsize=7)

        stage = [r for r in self.layers if r.in_stage]
        xs = np.arange(len(stage))
        ax_bits.bar(xs - 0.2, [r.bits_normal for r in stage], 0.4, label="normal patches")
        ax_bits.bar(xs + 0.2, [r.bits_outlier for r in stage], 0.4, label="outlier patches")
        ax_bits.set_xticks(xs, [r.output for r in stage], rotation=90, fontsize=6)
        ax_bits.set_yticks(list(CANDIDATE_BITS))
        ax_bits.set_ylabel("activation bits")
        ax_bits.set_title(f"bits per stage map ({self.bitops_ratio:.2f}x fewer BitOPs)")
        ax_bits.legend(fontsize=7)

        h, w = self.layers[k].output_shape[:2]
        for (y, x0, ph, pw), out in zip(self.windows, self.outlier, strict=True):
            ax_grid.add_patch(
                Rectangle(
                    (x0, y),
                    pw,
                    ph,
                    fill=out,
                    facecolor="tab:red",
                    alpha=0.5 if out else 1,
                    edgecolor="k",
                    hatch="//" if out else None,
                )
            )
        ax_grid.set_xlim(0, w)
        ax_grid.set_ylim(h, 0)
        ax_grid.set_aspect("equal")
        ax_grid.set_title(
            f"{self.grid}x{self.grid} grid on {self.split}\n(red: outlier)", fontsize=9
        )
        fig.savefig(path, dpi=110)

    # ------------------------------------------------------------------ model check

    def check(self, model) -> None:
        """Raise :class:`PlanMismatchError` unless ``model`` has the layers (names, classes,
        output shapes) and input shape this plan was made for."""
        want_in, want = self.signature
        is_tflite = isinstance(model, (bytes, bytearray, memoryview))
        graph = read_tflite_graph(bytes(model)) if is_tflite else read_graph(model)
        got_in, got = graph.signature()
        label = "the .tflite model" if is_tflite else f"model {model.name!r}"
        if tuple(got_in) != tuple(want_in):
            raise PlanMismatchError(
                f"the plan was made for input shape {tuple(want_in)}, {label} "
                f"takes {tuple(got_in)}. Make a new plan for this model."
            )
        for k, (a, b) in enumerate(zip(want, got, strict=False)):
            if tuple(a) != tuple(b):
                raise PlanMismatchError(
                    f"layer {k} differs: the plan has {a[0]!r} ({a[1]}, output {tuple(a[2])}), "
                    f"{label} has {b[0]!r} ({b[1]}, output {tuple(b[2])}). "
                    "Make a new plan for this model."
                )
        if len(want) != len(got):
            raise PlanMismatchError(
                f"the plan was made for {len(want)} layers, {label} has "
                f"{len(got)}. Make a new plan for this model."
            )

    # ------------------------------------------------------------------ JSON

    def to_json(self) -> str:
        """The plan as JSON (``PatchPlan.from_json`` reads it back equal)."""
        d = asdict(self)
        d["layers"] = [asdict(r) for r in self.layers]
        d["outlier_share"] = self.outlier_share  # derived, for readers of the file
        return json.dumps({"format": JSON_FORMAT, **d}, indent=1)

    @classmethod
    def from_json(cls, text: str) -> PatchPlan:
        d = json.loads(text)
        if not isinstance(d, dict) or d.pop("format", None) != JSON_FORMAT:
            raise ValueError(
                f"not a patch plan: expected a JSON object with format {JSON_FORMAT!r}."
            )
        d.pop("outlier_share", None)  # derived from "outlier"
        names = {f.name for f in fields(cls)}
        if set(d) != names:
            raise ValueError(
                f"patch plan JSON has fields {sorted(set(d) ^ names)} missing or unexpected."
            )
        d["input_shape"] = tuple(d["input_shape"])
        d["windows"] = tuple(tuple(w) for w in d["windows"])
        d["regions"] = {
            t: tuple(None if w is None else tuple(w) for w in ws) for t, ws in d["regions"].items()
        }
        d["outlier"] = tuple(d["outlier"])
        d["exceed_fraction"] = tuple(d["exceed_fraction"])
        d["scores"] = {u: {k: tuple(v) for k, v in s.items()} for u, s in d["scores"].items()}
        d["layers"] = tuple(
            LayerRecord(
                **{
                    **r,
                    "ops": tuple(r["ops"]),
                    "inputs": tuple(r["inputs"]),
                    "output_shape": tuple(r["output_shape"]),
                }
            )
            for r in d["layers"]
        )
        want_in, want = d["signature"]
        d["signature"] = (tuple(want_in), tuple((a, b, tuple(c)) for a, b, c in want))
        return cls(**d)


# ----------------------------------------------------------------------------- entry point


def plan(
    model,
    calib_data,
    sram_budget=256 * 1024,
    phi=0.999,
    lam=0.5,
    grid=None,
    split=None,
    *,
    low_bits=(4, 2),
    outlier_sample_fraction=0.1,
    max_grid=8,
    weight_bits=8,
    input_resident=True,
    batch_size=16,
    max_halo=1.5,
    saving="bitops",
) -> PatchPlan:
    """Plan the patch-based, mixed-precision execution of ``model`` with ``calib_data``
    (``N`` float samples of its input, or None for an 8-bit plan without VDPC/VDQS).

    ``model`` is a built tf_keras Functional or Sequential model (VDPC/VDQS then read the
    float model's stage maps) or the bytes of its full-integer .tflite (the int8 model's own
    maps, :mod:`~tfmot_edgeplus.patching.tflite_graph`). Settings: :class:`PlanConfig`."""
    config = PlanConfig(
        sram_budget=sram_budget,
        phi=phi,
        lam=lam,
        low_bits=low_bits,
        outlier_sample_fraction=outlier_sample_fraction,
        grid=grid,
        split=split,
        max_grid=max_grid,
        weight_bits=weight_bits,
        input_resident=input_resident,
        batch_size=batch_size,
        max_halo=max_halo,
        saving=saving,
    )
    is_tflite = isinstance(model, (bytes, bytearray, memoryview))
    graph = read_tflite_graph(bytes(model)) if is_tflite else model
    planner = PatchPlanner(graph, weight_bits=weight_bits, input_resident=input_resident)
    calib = None
    if calib_data is not None:
        calib = check_calib_data(calib_data, planner.graph.input_shape)
    best = planner.search(sram_budget, split=split, grid=grid, max_grid=max_grid,
                          max_halo=max_halo)  # fmt: skip
    n = best.grid
    outlier = np.zeros((n, n), dtype=bool)
    exceed = np.zeros((n, n))
    bits: dict = {t: 8 for t in planner.stage_tensors(best.split)[1:]}
    phi_values: dict = {}
    scores: dict = {}
    ranges: dict = {}
    if calib is not None:
        if is_tflite:
            lowered = lower(bytes(model), layer_plan(planner, best.split))
            runner = TFLiteStageRunner(lowered, planner, best.split, calib, batch_size)
        else:
            runner = StageRunner(model, planner, best.split, calib, batch_size)
        found = vdpc(runner, n, phi=phi, outlier_sample_fraction=outlier_sample_fraction)
        outlier, exceed, phi_values = found.outlier, found.exceed_fraction, found.phi_values
        chosen = vdqs(runner, n, found, lam=lam, sram_budget=sram_budget,
                      low_bits=config.low_bits, saving=saving)  # fmt: skip
        bits, scores, ranges = chosen.bits, chosen.scores, chosen.ranges
    return _build(
        planner,
        best.split,
        n,
        bits,
        ranges,
        outlier,
        exceed,
        phi_values,
        scores,
        config,
        0 if calib is None else len(calib),
    )


def layer_plan(planner: PatchPlanner, split: str) -> PatchPlan:
    """The 8-bit, 1x1-grid plan of ``split``: the stage run layer by layer."""
    bits = {t: 8 for t in planner.stage_tensors(split)[1:]}
    config = PlanConfig(sram_budget=1 << 40, grid=1, split=split)
    return _build(
        planner, split, 1, bits, {}, np.zeros((1, 1), bool), np.zeros((1, 1)), {}, {}, config, 0
    )


def _build(planner, split, n, bits, ranges, outlier, exceed, phi_values, scores, config, n_calib):
    k = planner.check_split(split)
    mem_layer = planner.layer_memory()
    mem8, _ = planner.patch_memory(split, n)
    mem, _ = planner.patch_memory(split, n, bits, outlier)
    macs_patch = planner.patch_macs(split, n)
    ops_layer = planner.layer_bitops()
    ops8 = planner.patch_bitops(split, n)
    ops = planner.patch_bitops(split, n, bits, outlier)
    instr = {
        "layer": planner.patch_instructions(split, 1).sum(),
        "patch8": planner.patch_instructions(split, n).sum(),
        "planned": planner.patch_instructions(split, n, bits, outlier).sum(),
    }
    layers = []
    for s in planner.steps:
        in_stage = s.index <= k
        layers.append(
            LayerRecord(
                step=s.name,
                kind=s.kind,
                ops=s.ops,
                inputs=tuple(s.inputs),
                output=s.output,
                output_shape=tuple(int(v) for v in s.output_shape),
                in_stage=in_stage,
                bits_normal=int(bits.get(s.output, 8)) if in_stage else 8,
                bits_outlier=8,
                layer_bytes=int(mem_layer[s.index]),
                patch8_bytes=int(mem8[s.index]),
                patch_bytes=int(mem[s.index]),
                macs=int(s.macs),
                patch_macs=int(macs_patch[s.index]),
                bitops_layer=int(ops_layer[s.index]),
                bitops_patch8=int(ops8[s.index]),
                bitops=int(ops[s.index]),
            )
        )
    cfg = {**asdict(config), "calib_samples": int(n_calib)}
    cfg["low_bits"] = list(cfg["low_bits"])
    for key, value in cfg.items():
        if isinstance(value, numbers.Real) and not isinstance(value, (bool, int)):
            cfg[key] = float(value)
    sig_in, sig = planner.graph.signature()
    return PatchPlan(
        model_name=planner.graph.name,
        input_name=planner.graph.input_name,
        input_shape=tuple(int(v) for v in planner.graph.input_shape),
        split=split,
        grid=int(n),
        windows=tuple(tuple(int(v) for v in w) for w in planner.grid_windows(split, n)),
        regions={
            t: tuple(None if w is None else tuple(int(v) for v in w) for row in rows for w in row)
            for t, rows in planner.patch_windows(split, n).items()
        },
        outlier=tuple(bool(v) for v in np.asarray(outlier).ravel()),
        exceed_fraction=tuple(float(v) for v in np.asarray(exceed).ravel()),
        bits={t: int(b) for t, b in bits.items()},
        ranges={t: [float(v) for v in r] for t, r in ranges.items()},
        phi_values={t: float(v) for t, v in phi_values.items()},
        scores={
            u: {name: tuple(float(x) for x in vals) for name, vals in s.items()}
            for u, s in scores.items()
        },
        layers=tuple(layers),
        peak_layer=int(mem_layer.max()),
        peak_patch8=int(mem8.max()),
        peak_planned=int(mem.max()),
        bitops_layer=int(ops_layer.sum()),
        bitops_patch8=int(ops8.sum()),
        bitops_planned=int(ops.sum()),
        stage_bitops_layer=int(ops_layer[: k + 1].sum()),
        stage_bitops_patch8=int(ops8[: k + 1].sum()),
        stage_bitops_planned=int(ops[: k + 1].sum()),
        stage_instructions_layer=float(instr["layer"]),
        stage_instructions_patch8=float(instr["patch8"]),
        stage_instructions_planned=float(instr["planned"]),
        config=cfg,
        signature=(tuple(sig_in), tuple((a, b, tuple(c)) for a, b, c in sig)),
    )
