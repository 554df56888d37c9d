"""TF-MOT's default_n_bit scheme vs the edgeplus scheme at W8A8 / W4A8 / W2A8, end to end.

    python -m benchmarks.qat_bits [--quick] [--out FILE.json] [--bits 8,4,2] [--seed 0]

Data and model: Fashion-MNIST (the Debian package ``dataset-fashion-mnist``, read by
``tfmot_edgeplus.datasets.fashion_mnist``; class-stratified subsets drawn with the seed) and
``tfmot_edgeplus.models.small_cnn`` (about 13k parameters: conv, depthwise, pointwise,
conv, dense). Full run: 20k train / the whole 10k test set, float 5 epochs, QAT 2 epochs.
``--quick``: 4k train / 1k test, float 3 epochs, QAT 1 epoch (same code path).

Method:

1. One float model is trained once (Adam 1e-3, batch 64) and shared by every row.
2. For each scheme and weight bit-width a QAT copy of that float model is fine-tuned with the
   same budget (epochs, Adam 5e-4, batch 64, the same seed so the same batch order):

   - ``tfmot``: ``DefaultNBitQuantizeScheme(num_bits_weight=b, num_bits_activation=8)``
     applied with ``quantize_apply(quantize_annotate_model(model), scheme)`` (min/max
     ranges, per-channel conv weights, per-tensor dense weights);
   - ``edgeplus``: ``EdgePlusQuantizeScheme(b, 8, learnable_scales=True)`` through
     ``quantize_model`` (LSQ trainable per-channel steps).

   Both are symmetric narrow range, so "W2" is ternary (levels -1, 0, +1) in both schemes.
3. Every QAT model is converted with ``tfmot_edgeplus.convert(qat, x_train[:300])``
   (``conversion="edgeplus"``). That is *our* converter for both schemes: it wraps
   ``tf.lite.TFLiteConverter`` and repacks sub-4-bit filters into TFLM's 2-bit LUT
   format, so the ``tfmot`` W2 row with ``conversion="edgeplus"`` shows what TF-MOT's
   QAT gets from our conversion, not from TF-MOT alone. For the plain TF-MOT deployment,
   the TF-MOT rows below 4 bits are also converted with ``lowbit_storage=False``
   (``conversion="tf"``): TF 2.21 stores 2-bit filters in its INT4 container, so they take
   4 bits per weight. (At W8 and W4 the two conversions give the same bytes, so no
   ``tf`` row is added there.)
4. Each flatbuffer runs in the TFLM interpreter (pip ``tflite-micro``, through
   ``tfmot_edgeplus.runtime.TFLMRunner``) on the whole test set.

The float row: Keras accuracy of the float model, and its float32 .tflite (plain
``TFLiteConverter``, no optimizations) run in the same TFLM interpreter (float kernels).

Row keys (one row per model and conversion):
  scheme            "float" | "tfmot" | "edgeplus"
  conversion        "tf" (TFLiteConverter only) | "edgeplus" (tfmot_edgeplus.convert)
  weight_bits, activation_bits   as trained (32/32 for the float row)
  storage           how the filters are stored in the flatbuffer: "FLOAT32", "INT8",
                    "INT4", "LUT2" (2-bit TFLM LUT indices + per-channel tables); "+"-joined
                    in graph order if layers differ
  keras_acc         test accuracy of the Keras model (float, or QAT fake-quant)
  tflm_acc          test accuracy of the flatbuffer in the TFLM interpreter
  agreement         fraction of test images where TFLM and Keras predict the same class
  flatbuffer_bytes  size of the .tflite
  weight_bytes      flash of conv / depthwise / dense filters: data + LUT tables
                    (``tfmot_edgeplus.conversion.weight_bytes``); biases not included
  arena_bytes       TFLM arena used after allocation (``TFLMRunner.arena_bytes``; a host,
                    64-bit figure). LUT rows include the decoded int8 filter of the
                    running layer, which TFLM's DECODE op writes into the arena.
  qat_s             wall time of the QAT fine-tuning (None for the float row; the float
                    training time is in env.fp_train_s)

Seeding: ``tf.keras.utils.set_random_seed(seed)`` before the float training and before
every QAT fine-tuning. TensorFlow's CPU kernels are not forced deterministic (that slows
training), so the last digit of accuracies can move between machines.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from benchmarks._report import write_report

NAME = "qat_bits"
SCHEMES = ("tfmot", "edgeplus")
ALLOWED_BITS = (2, 3, 4, 8)
ROW_KEYS = (
    "scheme",
    "conversion",
    "weight_bits",
    "activation_bits",
    "storage",
    "keras_acc",
    "tflm_acc",
    "agreement",
    "flatbuffer_bytes",
    "weight_bytes",
    "arena_bytes",
    "qat_s",
)


@dataclass(frozen=True)
class Config:
    """Budget of one benchmark run; :meth:`full` and :meth:`quick` are the two presets."""

    train_samples: int | None = 20000  # None: all 60k
    test_samples: int | None = None  # None: the whole 10k test set
    fp_epochs: int = 5
    qat_epochs: int = 2
    batch_size: int = 64
    fp_learning_rate: float = 1e-3
    qat_learning_rate: float = 5e-4
    weight_bits: tuple[int, ...] = (8, 4, 2)
    activation_bits: int = 8
    schemes: tuple[str, ...] = SCHEMES
    tf_raw_conversion: bool = True  # also convert TF-MOT rows below 4 bits with TF's storage
    representative_samples: int = 300
    seed: int = 0

    @classmethod
    def full(cls, **overrides) -> Config:
        return replace(cls(), **overrides)

    @classmethod
    def quick(cls, **overrides) -> Config:
        return replace(
            cls(train_samples=4000, test_samples=1000, fp_epochs=3, qat_epochs=1), **overrides
        )

    def __post_init__(self):
        bad = [b for b in self.weight_bits if b not in ALLOWED_BITS]
        if not self.weight_bits or bad:
            raise ValueError(
                f"weight_bits must be a non-empty tuple of values in {list(ALLOWED_BITS)}, "
                f"got {self.weight_bits!r}; e.g. (8, 4, 2)."
            )
        unknown = [s for s in self.schemes if s not in SCHEMES]
        if not self.schemes or unknown:
            raise ValueError(
                f"schemes must be a non-empty subset of {list(SCHEMES)}, got {self.schemes!r}."
            )
        if self.activation_bits != 8:
            raise ValueError(
                f"activation_bits={self.activation_bits!r}: this benchmark compares A8 only "
                "(builtin TFLite ops run int8 activations); use 8."
            )
        for field in ("fp_epochs", "qat_epochs", "batch_size", "representative_samples"):
            value = getattr(self, field)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{field} must be a positive int, got {value!r}.")


def _say(text: str) -> None:
    print(text, flush=True)


# ----------------------------------------------------------------------------- stages


def load_data(config: Config):
    from tfmot_edgeplus import datasets

    return datasets.fashion_mnist(
        limit_train=config.train_samples, limit_test=config.test_samples, seed=config.seed
    )


def train_float(data, config: Config):
    """Train the shared float model; return (model, seconds)."""
    from tfmot_edgeplus._compat import tf
    from tfmot_edgeplus.models import compile_classifier, small_cnn

    tf.keras.utils.set_random_seed(config.seed)
    start = time.perf_counter()
    model = compile_classifier(
        small_cnn(data.input_shape, data.num_classes), learning_rate=config.fp_learning_rate
    )
    model.fit(
        data.x_train, data.y_train, epochs=config.fp_epochs, batch_size=config.batch_size,
        verbose=0,
    )
    return model, time.perf_counter() - start


def build_qat(fp_model, scheme: str, weight_bits: int, activation_bits: int = 8):
    """A QAT copy of ``fp_model`` (its weights copied, ``fp_model`` untouched)."""
    from tfmot_edgeplus import EdgePlusQuantizeScheme, quantize_model, quantize_scope
    from tfmot_edgeplus._compat import tfmot

    if scheme == "edgeplus":
        return quantize_model(
            fp_model, EdgePlusQuantizeScheme(weight_bits, activation_bits, learnable_scales=True)
        )
    if scheme == "tfmot":
        n_bit = tfmot.quantization.keras.experimental.default_n_bit
        tf_scheme = n_bit.DefaultNBitQuantizeScheme(
            num_bits_weight=weight_bits, num_bits_activation=activation_bits
        )
        with quantize_scope():
            annotated = tfmot.quantization.keras.quantize_annotate_model(fp_model)
            return tfmot.quantization.keras.quantize_apply(annotated, tf_scheme)
    raise ValueError(f"scheme must be one of {list(SCHEMES)}, got {scheme!r}.")


def storage_label(model_bytes: bytes) -> str:
    """How the filters are stored, e.g. "INT4", "LUT2", or "INT8+LUT2" when layers differ."""
    from tfmot_edgeplus.conversion import describe_weights

    labels = []
    for row in describe_weights(model_bytes):
        label = f"LUT{row['bits']}" if row["storage"] == "lut" else str(row["type"])
        if label not in labels:
            labels.append(label)
    return "+".join(labels) if labels else "none"


def _predict_classes(model, x) -> np.ndarray:
    return np.asarray(model.predict(x, batch_size=256, verbose=0)).argmax(axis=1)


def deployment_metrics(model_bytes: bytes, data, keras_pred: np.ndarray) -> dict:
    """Run ``model_bytes`` in the TFLM interpreter on the test set; the byte and arena figures."""
    from tfmot_edgeplus.conversion import weight_bytes
    from tfmot_edgeplus.runtime import TFLMRunner

    runner = TFLMRunner(model_bytes)
    tflm_pred = np.asarray(runner.predict(data.x_test)).argmax(axis=1)
    return {
        "storage": storage_label(model_bytes),
        "tflm_acc": float(np.mean(tflm_pred == data.y_test)),
        "agreement": float(np.mean(tflm_pred == keras_pred)),
        "flatbuffer_bytes": len(model_bytes),
        "weight_bytes": int(weight_bytes(model_bytes)),
        "arena_bytes": int(runner.arena_bytes),
    }


def _row(scheme, conversion, weight_bits, activation_bits, keras_acc, metrics, qat_s) -> dict:
    row = {
        "scheme": scheme,
        "conversion": conversion,
        "weight_bits": int(weight_bits),
        "activation_bits": int(activation_bits),
        "storage": metrics["storage"],
        "keras_acc": float(keras_acc),
        "tflm_acc": metrics["tflm_acc"],
        "agreement": metrics["agreement"],
        "flatbuffer_bytes": metrics["flatbuffer_bytes"],
        "weight_bytes": metrics["weight_bytes"],
        "arena_bytes": metrics["arena_bytes"],
        "qat_s": None if qat_s is None else round(float(qat_s), 2),
    }
    return row


def float_row(fp_model, data) -> dict:
    """The float reference: Keras accuracy and the float32 .tflite in TFLM."""
    from tfmot_edgeplus._compat import tf

    keras_pred = _predict_classes(fp_model, data.x_test)
    model_bytes = bytes(tf.lite.TFLiteConverter.from_keras_model(fp_model).convert())
    metrics = deployment_metrics(model_bytes, data, keras_pred)
    keras_acc = float(np.mean(keras_pred == data.y_test))
    return _row("float", "tf", 32, 32, keras_acc, metrics, None)


def qat_rows(fp_model, data, scheme: str, weight_bits: int, config: Config) -> list[dict]:
    """Fine-tune one QAT copy, convert, run in TFLM; one row per conversion.

    Always the ``edgeplus`` conversion; for ``tfmot`` below 4 bits (and
    ``config.tf_raw_conversion``) also TF's own storage (``lowbit_storage=False``).
    """
    from tfmot_edgeplus._compat import tf
    from tfmot_edgeplus.conversion import convert
    from tfmot_edgeplus.models import compile_classifier

    tf.keras.utils.set_random_seed(config.seed)
    start = time.perf_counter()
    qat = build_qat(fp_model, scheme, weight_bits, config.activation_bits)
    compile_classifier(qat, learning_rate=config.qat_learning_rate)
    qat.fit(
        data.x_train, data.y_train, epochs=config.qat_epochs, batch_size=config.batch_size,
        verbose=0,
    )
    qat_s = time.perf_counter() - start
    keras_pred = _predict_classes(qat, data.x_test)
    keras_acc = float(np.mean(keras_pred == data.y_test))
    representative = data.x_train[: config.representative_samples]

    conversions = [("edgeplus", True)]
    if scheme == "tfmot" and weight_bits < 4 and config.tf_raw_conversion:
        conversions.append(("tf", False))
    rows = []
    for conversion, lowbit_storage in conversions:
        model_bytes = convert(qat, representative, lowbit_storage=lowbit_storage)
        metrics = deployment_metrics(model_bytes, data, keras_pred)
        rows.append(
            _row(scheme, conversion, weight_bits, config.activation_bits, keras_acc, metrics,
                 qat_s)
        )
    return rows


def _progress(index: int, total: int, row: dict, seconds: float) -> None:
    _say(
        f"[{index}/{total}] {row['scheme']:<8} W{row['weight_bits']}A{row['activation_bits']} "
        f"conversion={row['conversion']:<8} storage={row['storage']:<7} "
        f"keras {row['keras_acc']:.4f}  tflm {row['tflm_acc']:.4f}  "
        f"agree {row['agreement']:.4f}  weights {row['weight_bytes']} B  "
        f"flatbuffer {row['flatbuffer_bytes']} B  arena {row['arena_bytes']} B  "
        f"({seconds:.0f} s)"
    )


def run(config: Config) -> tuple[list[dict], dict]:
    """The whole benchmark: (rows, env facts for the report)."""
    data = load_data(config)
    raw = sum(1 for s in config.schemes for b in config.weight_bits
              if s == "tfmot" and b < 4 and config.tf_raw_conversion)
    total = 1 + len(config.schemes) * len(config.weight_bits) + raw
    _say(
        f"{NAME}: small_cnn on Fashion-MNIST, {len(data.x_train)} train / {len(data.x_test)} "
        f"test; float {config.fp_epochs} epochs, QAT {config.qat_epochs} epochs; {total} rows"
    )
    start = time.perf_counter()
    fp_model, fp_s = train_float(data, config)
    rows = [float_row(fp_model, data)]
    _progress(1, total, rows[0], time.perf_counter() - start)
    for scheme in config.schemes:
        for bits in config.weight_bits:
            start = time.perf_counter()
            new = qat_rows(fp_model, data, scheme, bits, config)
            for row in new:
                rows.append(row)
                _progress(len(rows), total, row, time.perf_counter() - start)
    env = {
        "dataset": "fashion_mnist",
        "train_samples": len(data.x_train),
        "test_samples": len(data.x_test),
        "model": "tfmot_edgeplus.models.small_cnn",
        "fp_train_s": round(fp_s, 2),
        "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(config).items()},
        "note": (
            "conversion=edgeplus is tfmot_edgeplus.convert for both schemes (2-bit filters as "
            "TFLM LUT2); conversion=tf is TF's own storage (2-bit filters in INT4)."
        ),
    }
    return rows, env


# ----------------------------------------------------------------------------- output


def plot(rows: list[dict], path: str | Path) -> Path:
    """Accuracy (TFLM) vs weight bits per scheme, and weight bytes vs bits; PNG at ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    fig, (acc_ax, bytes_ax) = plt.subplots(1, 2, figsize=(10, 3.8))
    styles = {
        ("tfmot", "edgeplus"): ("TF-MOT default_n_bit (our conversion)", "#d62", "o", "-"),
        ("tfmot", "tf"): ("TF-MOT default_n_bit (TF conversion)", "#d62", "s", ":"),
        ("edgeplus", "edgeplus"): ("edgeplus (LSQ)", "#37a", "^", "-"),
    }
    for (scheme, conversion), (label, color, marker, line) in styles.items():
        sel = [r for r in rows if r["scheme"] == scheme and r["conversion"] == conversion]
        if scheme == "tfmot" and conversion == "tf":
            # Only the sub-4-bit points differ; complete the line with the shared ones.
            sel += [r for r in rows if r["scheme"] == "tfmot" and r["conversion"] == "edgeplus"
                    and r["weight_bits"] >= 4]
            if not any(r["conversion"] == "tf" for r in sel):
                continue
        sel.sort(key=lambda r: r["weight_bits"])
        if not sel:
            continue
        bits = [r["weight_bits"] for r in sel]
        if conversion == "edgeplus":
            acc_ax.plot(bits, [r["tflm_acc"] for r in sel], line, color=color, marker=marker,
                        label=label.split(" (")[0] if scheme == "tfmot" else label)
        bytes_ax.plot(bits, [r["weight_bytes"] for r in sel], line, color=color,
                      marker=marker, label=label)
    for r in rows:
        if r["scheme"] == "float":
            acc_ax.axhline(r["tflm_acc"], color="#888", linestyle="--", label="float32")
            bytes_ax.axhline(r["weight_bytes"], color="#888", linestyle="--", label="float32")
    for ax in (acc_ax, bytes_ax):
        ax.set_xlabel("weight bits (activations 8)")
        ax.set_xticks(sorted({r["weight_bits"] for r in rows if r["scheme"] != "float"}))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    acc_ax.set_ylabel("test accuracy in TFLM")
    acc_ax.set_title("Fashion-MNIST, small CNN")
    bytes_ax.set_ylabel("filter bytes in the flatbuffer")
    bytes_ax.set_yscale("log")
    bytes_ax.set_title("weight storage")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write(rows: list[dict], quick: bool, out: str | Path | None, env: dict | None = None) -> Path:
    """JSON + markdown (``benchmarks._report.write_report``) and the PNG beside them."""
    json_path = write_report(NAME, quick, rows, out, env_extra=env)
    png = plot(rows, json_path.with_suffix(".png"))
    _say(f"wrote {png}")
    return json_path


def _bits_arg(text: str) -> tuple[int, ...]:
    try:
        bits = tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError:
        bits = ()
    if not bits or any(b not in ALLOWED_BITS for b in bits):
        raise argparse.ArgumentTypeError(
            f"--bits must be a comma-separated list of {list(ALLOWED_BITS)}, got {text!r}; "
            "e.g. --bits 8,4,2"
        )
    return bits


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.qat_bits", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--quick", action="store_true",
        help="4k train / 1k test, float 3 epochs, QAT 1 epoch (under 3 minutes)",
    )
    parser.add_argument(
        "--out", default=None, help="JSON output (default benchmarks/results/qat_bits.json)"
    )
    parser.add_argument("--bits", type=_bits_arg, default=None, help="weight bits, e.g. 8,4,2")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    overrides = {"seed": args.seed}
    if args.bits:
        overrides["weight_bits"] = args.bits
    config = Config.quick(**overrides) if args.quick else Config.full(**overrides)
    start = time.perf_counter()
    rows, env = run(config)
    env["total_s"] = round(time.perf_counter() - start, 1)
    write(rows, args.quick, args.out, env)
    _say(f"total {env['total_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
