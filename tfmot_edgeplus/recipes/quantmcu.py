"""QuantMCU end to end on real data: a MobileNetV2-style model on Fashion-MNIST, planned,
deployed patch by patch, and measured.

::

    run = quantmcu_pipeline(QuantMCUConfig(), verbose=1)
    run.plan.summary(); run.summary()

The recipe (what ``benchmarks/patching.py`` and the demo run):

1. **Data.** Fashion-MNIST (the Debian package), ``train_samples`` / ``test_samples``
   stratified, upsampled to ``input_size`` x ``input_size`` (bilinear, ``tf.image.resize``)
   and scaled to [-1, 1], one channel. The calibration set is ``calib_samples`` training
   images the model never trained on.
2. **Model.** ``keras.applications.MobileNetV2(alpha=alpha, weights=None)`` on that input,
   logits out (:func:`tfmot_edgeplus.models.mobilenet_v2`; BatchNormalization momentum 0.9 instead of 0.999 so its
   statistics follow a short training). ``epochs`` of Adam, then TF-MOT's default 8-bit
   QAT for ``qat_epochs`` and full-integer conversion
   (:func:`tfmot_edgeplus.conversion.converter.convert`): the ``layer_int8`` model. The QAT
   never ends worse than it started: :class:`~tfmot_edgeplus.quantization.BestWeights`
   judges top-1 on the calibration images (held out of training, with their labels) before
   and after each QAT epoch and keeps the best weights (``run.qat_best``, printed).
3. **Plans**, from the .tflite itself (``patching.plan(tflite_bytes, ...)``): ``patch_int8``,
   the lowest-peak 8-bit patch plan within ``sram_budget`` whose patch stage costs at most
   ``max_halo`` times the stage's modeled M4 instructions layer by layer (the halo
   recomputation bounded); ``patch_vdpc_vdqs``, the same split and grid with VDPC (``phi``,
   ``outlier_sample_fraction``) and VDQS (``lam``) on the calibration images, read from the
   int8 model's own stage maps, VDQS's Phi counting ``saving`` (default ``"instructions"``:
   our kernels' cost model, :mod:`~tfmot_edgeplus.patching.cost_model`, so a map goes below
   8 bits only where that is measured to save instructions; ``"bitops"`` is the paper's).
4. **Runs.** ``layer_int8`` in TFLM; the patch plans lowered onto the .tflite and run with
   the stage in the NumPy simulator (bit-exact with the C kernels and the custom op) and
   the rest in TFLM.

Deviations from the paper (QuantMCU; the method's are listed in :mod:`tfmot_edgeplus.patching`):

* The bed: MobileNetV2 alpha 0.35 on Fashion-MNIST upsampled to 96x96 (one channel) and a
  2,000-image test set, where the paper uses ImageNet and VOC models.
* ``tune_plan`` picks ``phi``, ``outlier_sample_fraction``, ``lam`` and the low bits from
  :data:`SEARCH` by agreement with the int8 model on calibration images; the paper gives no
  such search. Mostly 4-bit maps: 2-bit maps cost the most accuracy on this model.
* Keeping the best QAT weights by the calibration images (step 2) is ours.
"""

from __future__ import annotations

import dataclasses
import numbers
import time

import numpy as np

from tfmot_edgeplus import datasets, patching
from tfmot_edgeplus._compat import keras, tf, tfmot
from tfmot_edgeplus.conversion.converter import convert
from tfmot_edgeplus.models import mobilenet_v2
from tfmot_edgeplus.patching.patch_runner import PatchStageRunner
from tfmot_edgeplus.quantization import BestWeights
from tfmot_edgeplus.runtime.tflm import TFLMRunner

__all__ = [
    "SEARCH",
    "QuantMCUConfig",
    "QuantMCURun",
    "quantmcu_pipeline",
    "top1_predictions",
    "tune_plan",
    "upsample",
]

# (phi, outlier_sample_fraction, lam, low_bits) candidates of tune_plan: mostly 4-bit maps,
# since 2-bit maps cost the most accuracy on these models
SEARCH = (
    (0.9999, 0.1, 0.5, (4,)),
    (0.9999, 0.3, 0.3, (4,)),
    (0.999, 1.0, 0.5, (4,)),
    (0.999, 1.0, 0.3, (4,)),
    (0.999, 1.0, 0.1, (4,)),
    (0.999, 1.0, 0.0, (4,)),
    (0.9999, 0.1, 0.5, (4, 2)),
    (0.999, 1.0, 0.5, (4, 2)),
)


@dataclasses.dataclass(frozen=True)
class QuantMCUConfig:
    """Settings of :func:`quantmcu_pipeline`, validated at construction (the module docstring
    says what each step does with them)."""

    input_size: int = 96
    alpha: float = 0.35
    train_samples: int = 10000
    test_samples: int = 2000
    calib_samples: int = 256
    epochs: int = 5
    qat_epochs: int = 1
    batch_size: int = 64
    sram_budget: int = 256 * 1024
    phi: float = 0.999
    lam: float = 0.5
    outlier_sample_fraction: float = 0.1
    max_halo: float = 1.5
    saving: str = "instructions"
    seed: int = 0

    def __post_init__(self):
        for name in ("input_size", "train_samples", "test_samples", "calib_samples", "epochs",
                     "batch_size", "sram_budget"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        if isinstance(self.qat_epochs, bool) or not isinstance(self.qat_epochs, numbers.Integral) \
                or self.qat_epochs < 0:
            raise ValueError(f"qat_epochs must be an int >= 0, got {self.qat_epochs!r}")
        if not 0 < self.alpha:
            raise ValueError(f"alpha must be > 0 (MobileNetV2's width), got {self.alpha!r}")
        # phi, lam, outlier_sample_fraction, max_halo and saving are checked by patching.plan


def upsample(x, size: int, batch: int = 500) -> np.ndarray:
    """(N, 28, 28, 1) images in [0, 1] -> (N, size, size, 1) float32 in [-1, 1] (bilinear)."""
    out = [
        tf.image.resize(np.asarray(x[i : i + batch], np.float32), (size, size)).numpy()
        for i in range(0, len(x), batch)
    ]
    return (np.concatenate(out) * 2.0 - 1.0).astype(np.float32)


@dataclasses.dataclass
class QuantMCURun:
    """What :func:`quantmcu_pipeline` returns: the int8 model, its 8-bit and VDPC/VDQS plans,
    the data they were made on, and the float and QAT accuracies."""

    config: QuantMCUConfig
    tflite: bytes
    plan8: object
    plan: object
    x_calib: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    float_acc: float
    qat_acc: float
    seconds: dict = dataclasses.field(default_factory=dict)
    qat_best: dict | None = None  # BestWeights.summary() of the QAT on the calibration images

    def summary(self) -> dict:
        return {
            "config": dataclasses.asdict(self.config),
            "float_acc": self.float_acc,
            "qat_acc": self.qat_acc,
            "qat_best": self.qat_best,
            "tflite_bytes": len(self.tflite),
            "plan8": {"split": self.plan8.split, "grid": self.plan8.grid,
                      "peak_bytes": self.plan8.peak_planned, "halo": round(self.plan8.halo, 3)},
            "plan": {"bits": dict(self.plan.bits), "bitops_ratio": self.plan.bitops_ratio,
                     "instructions_ratio": round(self.plan.instructions_ratio, 3),
                     "outlier_patches": len(self.plan.outlier_patches)},
            "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
        }


def _say(verbose, text):
    if verbose:
        print(text, flush=True)


def quantmcu_pipeline(config: QuantMCUConfig | None = None, verbose: int = 1) -> QuantMCURun:
    """Steps 1-3 of the module docstring; returns a :class:`QuantMCURun`."""

    c = QuantMCUConfig() if config is None else config
    if not isinstance(c, QuantMCUConfig):
        raise TypeError(f"config must be a QuantMCUConfig or None, got {type(c).__name__}")
    seconds, t0 = {}, time.perf_counter()
    data = datasets.fashion_mnist(
        limit_train=c.train_samples + c.calib_samples, limit_test=c.test_samples, seed=c.seed
    )
    _say(verbose, f"[quantmcu] Fashion-MNIST upsampled to {c.input_size}x{c.input_size}")
    x = upsample(data.x_train, c.input_size)
    x_train, y_train = x[: c.train_samples], data.y_train[: c.train_samples]
    x_calib = x[c.train_samples :]
    x_test = upsample(data.x_test, c.input_size)
    keras.utils.set_random_seed(c.seed)
    model = mobilenet_v2((c.input_size, c.input_size, 1), c.alpha)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile(keras.optimizers.Adam(2e-3), loss, metrics=["accuracy"])
    _say(verbose, f"[quantmcu] training {model.name} ({model.count_params():,} parameters)")
    model.fit(x_train, y_train, epochs=c.epochs, batch_size=c.batch_size, verbose=verbose)
    float_acc = float(model.evaluate(x_test, data.y_test, verbose=0)[1])
    qat = tfmot.quantization.keras.quantize_model(model)
    qat.compile(keras.optimizers.Adam(2e-4), loss, metrics=["accuracy"])
    best = BestWeights(x_calib, data.y_train[c.train_samples :])
    qat.fit(x_train, y_train, epochs=c.qat_epochs, batch_size=c.batch_size, verbose=verbose,
            callbacks=[best])
    _say(verbose, f"[quantmcu] 8-bit QAT, best weights kept by the {len(x_calib)} calibration "
                  f"images (never trained on): {best.describe()}")
    qat_acc = float(qat.evaluate(x_test, data.y_test, verbose=0)[1])
    tflite = convert(qat, x_calib)
    seconds["train_qat_convert"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    _say(verbose, f"[quantmcu] float {float_acc:.4f}, QAT {qat_acc:.4f}; planning")
    plan8 = patching.plan(tflite, None, sram_budget=c.sram_budget, max_halo=c.max_halo)
    plan = patching.plan(
        tflite,
        x_calib,
        sram_budget=c.sram_budget,
        phi=c.phi,
        lam=c.lam,
        outlier_sample_fraction=c.outlier_sample_fraction,
        split=plan8.split,
        grid=plan8.grid,
        saving=c.saving,
    )
    seconds["plan"] = time.perf_counter() - t0
    return QuantMCURun(
        config=c,
        tflite=tflite,
        plan8=plan8,
        plan=plan,
        x_calib=x_calib,
        x_test=x_test,
        y_test=np.asarray(data.y_test),
        float_acc=float_acc,
        qat_acc=qat_acc,
        seconds=seconds,
        qat_best=best.summary(),
    )


def top1_predictions(predict, x, batch: int = 100) -> np.ndarray:
    """argmax of ``predict`` over ``x``, batch by batch."""
    return np.concatenate(
        [np.argmax(predict(x[i : i + batch]), -1) for i in range(0, len(x), batch)]
    )


def tune_plan(tflite, x_calib, plan8, search=SEARCH, min_agreement: float = 0.95, say=None,
              saving: str = "instructions"):  # fmt: skip
    """Pick the VDPC/VDQS settings for a model: each ``(phi, outlier_sample_fraction, lam,
    low_bits)`` of ``search`` is planned with the 8-bit plan ``plan8``'s split and grid (VDQS's
    Phi counting ``saving``), and the plan with the fewest modeled stage instructions (then
    BitOPs) among those whose top-1 predictions on ``x_calib`` agree with the int8 model's
    (TFLM) on at least ``min_agreement`` is returned (``plan8`` if none does), with one dict per
    candidate. Calibration images only: the test set stays unseen.
    """

    ref = top1_predictions(TFLMRunner(tflite).predict, x_calib)
    best, tried = None, []
    for phi, rate, lam, low_bits in search:
        p = patching.plan(
            tflite, x_calib, phi=phi, outlier_sample_fraction=rate, lam=lam, low_bits=low_bits,
            split=plan8.split, grid=plan8.grid, sram_budget=plan8.config["sram_budget"],
            saving=saving,
        )  # fmt: skip
        runner = PatchStageRunner(tflite, p, backend="numpy")
        agree = float((top1_predictions(runner.predict, x_calib) == ref).mean())
        row = {
            "phi": phi, "outlier_sample_fraction": rate, "lam": lam,
            "low_bits": "/".join(map(str, low_bits)), "calib_agreement": agree,
            "stage_bitops_ratio": round(p.bitops_ratio, 3),
            "stage_instructions_ratio": round(p.instructions_ratio, 3),
            "normal_patches": int(p.grid**2 - len(p.outlier_patches)),
            "bits": "/".join(str(b) for b in p.bits.values()),
        }  # fmt: skip
        tried.append(row)
        if say is not None:
            say(f"[quantmcu] candidate {row}")
        key = (p.instructions_ratio, p.bitops_ratio, agree)
        if agree >= min_agreement and (best is None or key > best[1]):
            best = (p, key)
    return (best[0] if best else plan8), tried


def accuracy(predict, x, y, batch: int = 100) -> float:
    """Top-1 accuracy of ``predict`` (a function of a batch) over ``x``, ``y``."""
    correct = 0
    for i in range(0, len(x), batch):
        correct += int((np.argmax(predict(x[i : i + batch]), axis=-1) == y[i : i + batch]).sum())
    return correct / len(x)
