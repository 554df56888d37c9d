"""QCore's quantization-miss tracker: a Keras callback that counts, per sample, how often
low-bit copies of the model being trained forget it (ALGORITHMS.md section 2).

Usage::

    tracker = QuantMissTracker(x, y, bits=(2, 3, 4, 5, 8), every=5)
    fp_model.fit(x, y, epochs=50, callbacks=[tracker])
    core_idx = tracker.sample(20)         # seeded draw, probability ~ miss counts
    xc, yc = tracker.core(20)             # the same draw as arrays

Semantics, with every choice the paper (Campos et al., PVLDB 2024) leaves open:

- **When.** A check runs at the end of every epoch ``e`` with ``(e + 1) % every == 0``
  and also at the end of the last epoch of ``fit`` (``epoch + 1 == self.params["epochs"]``,
  the ``epochs`` Keras gives the callback; with ``initial_epoch`` the epoch indices are
  absolute, as in Keras). The last-epoch check is made once even when it also falls on
  the ``every`` grid. The paper's public code checks during epochs 0, 5, 10, ..., batch
  by batch as the model trains; we check the model as it stands at the end of the epoch.
- **Quantized copies.** One clone per bit-width (``keras.models.clone_model``) is built
  the first time a model is checked and cached; each check copies the current weights
  into it with ``set_weights``. Weights are fake-quantized in NumPy (float64, cast back
  to the variable's dtype): symmetric, narrow range ``q in [-(2^(b-1) - 1), 2^(b-1) - 1]``,
  ``scale = max|w| / qmax`` per output channel, ``w_q = clip(rint(w / scale)) * scale``
  (``rint`` rounds half to even, like ``tf.round``). Per output channel for every layer
  kind (we chose it for Dense too, rather than per tensor): ``kernel`` of Dense and
  Conv1D/2D/3D per its last axis; Conv1D/2D/3DTranspose per axis -2 (their output
  axis); ``depthwise_kernel`` of DepthwiseConv1D/2D and SeparableConv1D/2D
  ``(..., c, m)`` per ``(c, m)`` pair, i.e. per output channel of the depthwise stage;
  ``pointwise_kernel`` per its last axis. A channel that is all zeros stays zero. Every
  other weight stays float: biases, BatchNorm/LayerNorm parameters and statistics,
  embeddings, recurrent kernels. Activations stay float: weight-only quantization (the
  paper's public code also quantizes activations at the same bit-width; that would need
  an activation-range calibration pass per copy at every check).
- **FP too.** The model being fit is also checked as is, under the key ``32``, as the
  paper's code logs it with the bit-widths; its misses count in :attr:`counts`.
- **Prediction.** The whole set is predicted in batches of ``batch_size``, all copies
  on the same batch in one traced function (:class:`~tfmot_edgeplus.coreset.scoring.
  LogitsPredictor`, ``training=False``); a sample is correct when the argmax of the
  outputs equals its label.
- **Misses.** A miss is a correct -> incorrect transition between two consecutive checks
  at the same bit-width (incorrect -> correct is not counted). A sample never correct
  at a bit-width over all checks so far gets the maximum count there, the number of
  checks: a sample can be forgotten at most ``floor(checks / 2)`` times, so an unlearned
  sample is never less likely to be drawn than any forgotten one. :attr:`counts` is the
  sum over the bit-widths (and FP). :func:`count_misses` is the same rule as a pure
  function of a correctness history.
- **Sampling.** :meth:`sample` draws ``size`` distinct indices with probability
  proportional to :attr:`counts` (``numpy.random.default_rng(seed).choice(N, size,
  replace=False, p=counts / counts.sum())``). Samples with count 0 are never drawn while
  enough samples have a positive count (as in the paper); when fewer than ``size`` have
  one, all of those are taken and the rest is filled uniformly at random, without
  replacement, from the zero-count samples (the paper's code falls back to drawing
  with replacement instead). Same seed -> same indices. Indices are returned sorted.
- **Several fits.** Counts, the last correctness and the history are kept across
  ``fit`` calls on the same tracker (continued training): the first check of a later
  fit is compared with the last check of the earlier one. ``on_train_begin`` resets
  only per-fit bookkeeping; :meth:`reset` clears the counts.
- **Refresh later.** :attr:`counts` and :attr:`last_correct` (bits -> bool array) are
  what an on-device refresh needs (the core items' counts become their prior weights);
  :meth:`state` / :meth:`load_state` / :meth:`from_state` save and restore the tracker.
- **Logs.** At each epoch end the callback writes into ``logs`` (so History, CSVLogger
  and TensorBoard see them): ``qcore_checks`` (checks so far), ``qcore_mean_misses``
  (mean of :attr:`counts`) and ``qcore_acc_w{b}`` (accuracy of the copy at ``b`` bits,
  ``qcore_acc_w32`` for FP) -- the accuracies are NaN at epochs without a check. They
  are written at every epoch, not only at checks, so History's lists stay aligned with
  the epochs and CSVLogger (which fixes its columns at the first epoch) keeps them.
- **Data.** ``x`` a NumPy array ``(N, ...)`` and ``y`` integer class indices ``(N,)``,
  or ``dataset=`` a finite ``tf.data.Dataset`` of ``(x, y)`` materialised once with
  :func:`~tfmot_edgeplus.coreset.scoring.as_arrays`. Labels beyond the model's output
  width are refused at each check.
"""

from __future__ import annotations

import copy
import numbers
import warnings

import numpy as np

from tfmot_edgeplus._compat import keras
from tfmot_edgeplus.coreset.scoring import LogitsPredictor, labeled_arrays

__all__ = ["FP_BITS", "QuantMissTracker", "count_misses", "fake_quantize"]

FP_BITS = 32
"""Key of the unquantized (float) model in the per-bit-width dicts."""

_ALLOWED_BITS = (2, 3, 4, 5, 6, 7, 8)


def _check_int(name: str, value, minimum: int, fix: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}. {fix}")
    return int(value)


def _check_bits(bits) -> tuple[int, ...]:
    if isinstance(bits, numbers.Integral) and not isinstance(bits, bool):
        bits = (bits,)
    try:
        bits = tuple(bits)
    except TypeError:
        raise ValueError(
            f"bits must be a sequence of weight bit-widths in {set(_ALLOWED_BITS)}, got "
            f"{bits!r}. Example: bits=(2, 3, 4, 5, 8)."
        ) from None
    if not bits:
        raise ValueError(
            "bits is empty; give at least one weight bit-width, e.g. bits=(2, 3, 4, 5, 8)."
        )
    for b in bits:
        if (
            isinstance(b, bool)
            or not isinstance(b, numbers.Integral)
            or int(b) not in _ALLOWED_BITS
        ):
            extra = (
                " The float model (key 32) is always tracked; leave it out of bits."
                if b == FP_BITS
                else ""
            )
            raise ValueError(
                f"bits holds {b!r}; each bit-width must be an int in {set(_ALLOWED_BITS)}. "
                f"Example: bits=(2, 3, 4, 5, 8).{extra}"
            )
    if len(set(bits)) != len(bits):
        raise ValueError(f"bits={bits!r} has duplicates; list each bit-width once.")
    return tuple(sorted(int(b) for b in bits))


# ----- pure functions ------------------------------------------------------------------
def fake_quantize(w, bits: int, channel_axes=(-1,)) -> np.ndarray:
    """Symmetric narrow-range fake quantization of ``w``, one scale per channel.

    ``qmax = 2^(bits-1) - 1``, ``scale = max|w| / qmax`` over every axis but
    ``channel_axes`` (``()`` for one scale per tensor), ``w_q = clip(rint(w / scale),
    -qmax, qmax) * scale``. All-zero channels stay zero. Returns an array of ``w``'s dtype.

    Args:
        w: a float array (a kernel).
        bits: 2..8.
        channel_axes: the axes that index the output channel, e.g. ``(-1,)`` for a Dense
            or Conv2D kernel, ``(-2, -1)`` for a DepthwiseConv2D kernel ``(h, w, c, m)``.
    """
    bits = _check_bits(bits)
    if len(bits) != 1:
        raise ValueError(f"fake_quantize takes one bit-width, got bits={bits!r}.")
    w = np.asarray(w)
    if w.dtype.kind != "f":
        raise ValueError(f"w must be a float array, got dtype {w.dtype}.")
    keep = {a % w.ndim for a in channel_axes} if w.ndim else set()
    reduce = tuple(a for a in range(w.ndim) if a not in keep)
    qmax = 2.0 ** (bits[0] - 1) - 1.0
    w64 = w.astype(np.float64)
    scale = np.max(np.abs(w64), axis=reduce, keepdims=True) / qmax
    scale = np.where(scale > 0, scale, 1.0)
    q = np.clip(np.rint(w64 / scale), -qmax, qmax)
    return (q * scale).astype(w.dtype)


def count_misses(correct_history) -> np.ndarray:
    """Quantization-miss counts from a history of correctness vectors (one bit-width).

    Args:
        correct_history: ``(checks, N)`` booleans (a list of per-check vectors), row ``t``
            saying which samples were classified correctly at check ``t``.

    Returns:
        ``(N,)`` int64: the number of correct -> incorrect transitions between consecutive
        checks; samples never correct get ``checks`` (the maximum).
    """
    h = np.asarray(correct_history)
    if h.ndim != 2 or h.shape[0] == 0:
        raise ValueError(
            f"correct_history must be (checks, N) booleans with at least one check, got shape "
            f"{h.shape}. Pass a list of per-check correctness vectors."
        )
    if h.dtype != bool:
        if not np.isin(h, (0, 1)).all():
            raise ValueError("correct_history must hold booleans (or 0/1).")
        h = h.astype(bool)
    misses = (h[:-1] & ~h[1:]).sum(axis=0)
    return np.where(h.any(axis=0), misses, h.shape[0]).astype(np.int64)


# ----- which weights to quantize --------------------------------------------------------
def _kernel_rules(layer) -> list[tuple[str, tuple[int, ...]]]:
    """(attribute, output-channel axes) of the weights of ``layer`` that are quantized."""
    L = keras.layers
    transposes = (L.Conv1DTranspose, L.Conv2DTranspose, L.Conv3DTranspose)
    if isinstance(layer, (L.DepthwiseConv1D, L.DepthwiseConv2D)):
        return [("depthwise_kernel", (-2, -1))]
    if isinstance(layer, (L.SeparableConv1D, L.SeparableConv2D)):
        return [("depthwise_kernel", (-2, -1)), ("pointwise_kernel", (-1,))]
    if isinstance(layer, transposes):
        return [("kernel", (-2,))]
    if isinstance(layer, (L.Dense, L.Conv1D, L.Conv2D, L.Conv3D)):
        return [("kernel", (-1,))]
    return []


def _weight_axes(model) -> list[tuple[int, ...] | None]:
    """For each entry of ``model.get_weights()``: its output-channel axes, or None (float)."""
    rules: dict[int, tuple[int, ...]] = {}
    for layer in model.submodules:
        for attr, axes in _kernel_rules(layer):
            var = getattr(layer, attr, None)
            if var is not None:
                rules[id(var)] = axes
    return [rules.get(id(v)) for v in model.weights]


class _Copies:
    """The clones of one model (one per bit-width) and the predictor running them all."""

    def __init__(self, model, bits: tuple[int, ...]):
        fix = (
            "Use a Sequential or Functional model (keras.Sequential([...]) or "
            "keras.Model(inputs, outputs)); custom layers need get_config."
        )
        if not (isinstance(model, keras.Sequential) or getattr(model, "_is_graph_network", False)):
            raise TypeError(
                f"QuantMissTracker cannot copy model {model.name!r}: it is a subclassed model "
                f"({type(model).__name__}), which keras.models.clone_model cannot rebuild. {fix}"
            )
        try:
            self.clones = {b: keras.models.clone_model(model) for b in bits}
        except (ValueError, TypeError, NotImplementedError) as exc:
            raise TypeError(
                f"QuantMissTracker cannot copy model {model.name!r} ({type(model).__name__}) "
                f"with keras.models.clone_model: {exc}. {fix}"
            ) from exc
        self.model = model
        self.axes = _weight_axes(model)
        if not any(a is not None for a in self.axes):
            warnings.warn(
                f"Model {model.name!r} has no Dense/Conv/DepthwiseConv/SeparableConv kernel to "
                "quantize: its quantized copies equal the float model, so the misses only "
                "reflect the float model's forgetting.",
                stacklevel=4,
            )
        self.predictor = LogitsPredictor([model, *self.clones.values()])

    def load(self) -> None:
        """Copy the model's current weights, fake-quantized, into every clone."""
        weights = self.model.get_weights()
        for b, clone in self.clones.items():
            clone.set_weights(
                [w if a is None else fake_quantize(w, b, a) for w, a in zip(weights, self.axes)]
            )


# ----- the tracker ----------------------------------------------------------------------
class QuantMissTracker(keras.callbacks.Callback):
    """Counts QCore quantization misses per sample while a float model trains; a Keras
    callback (see the module docstring for the semantics).

    Args:
        x, y: samples ``(N, ...)`` and integer class labels ``(N,)`` (the training set).
        bits: weight bit-widths of the quantized copies, each in 2..8. The float model is
            always tracked too, under key 32.
        every: check every ``every`` epochs (and at the last epoch of each fit).
        batch_size: prediction batch size.
        seed: default seed of :meth:`sample` / :meth:`core`.
        dataset: a finite ``tf.data.Dataset`` of ``(x, y)`` instead of x and y
            (materialised once).

    Attributes:
        counts: ``(N,)`` int64, the miss counts summed over bit-widths (and FP).
        counts_per_bits: dict bits -> ``(N,)`` int64 counts (keys ``bits`` and 32).
        last_correct: dict bits -> ``(N,)`` bool correctness at the latest check.
        history: one dict per check: ``check`` (1-based), ``epoch`` (or None),
            ``acc`` (dict bits -> accuracy) and ``mean_misses``.
        checks: number of checks so far.
    """

    def __init__(
        self,
        x=None,
        y=None,
        bits=(2, 3, 4, 5, 8),
        every: int = 5,
        batch_size: int = 256,
        seed: int | None = 0,
        *,
        dataset=None,
    ):
        super().__init__()
        x, y = labeled_arrays(x, y, dataset, "the tracker needs the training set")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral)):
            raise ValueError(f"seed must be an int or None, got {seed!r}.")
        self.x = x
        self.y = y
        self.bits = _check_bits(bits)
        self.every = _check_int(
            "every", every, 1, "It is the number of epochs between checks (the paper uses 5)."
        )
        self.batch_size = _check_int(
            "batch_size", batch_size, 1, "It is the prediction batch size."
        )
        self.seed = seed
        self._copies: dict[int, _Copies] = {}
        self._fit_epochs: int | None = None
        self.reset()

    # ----- state ----------------------------------------------------------------------
    @property
    def tracked_bits(self) -> tuple[int, ...]:
        """The keys of the per-bit-width dicts: ``bits`` then 32 (the float model)."""
        return (*self.bits, FP_BITS)

    def reset(self) -> None:
        """Forget every check: counts to zero, empty history (the clones are kept)."""
        n = len(self.y)
        self.checks = 0
        self.history: list[dict] = []
        self._misses = {b: np.zeros(n, np.int64) for b in self.tracked_bits}
        self._ever = {b: np.zeros(n, bool) for b in self.tracked_bits}
        self._last: dict[int, np.ndarray] = {}

    @property
    def counts_per_bits(self) -> dict[int, np.ndarray]:
        """bits -> ``(N,)`` int64 miss counts; never-correct samples get ``checks``."""
        return {
            b: np.where(self._ever[b], self._misses[b], self.checks).astype(np.int64)
            for b in self.tracked_bits
        }

    @property
    def counts(self) -> np.ndarray:
        """``(N,)`` int64 miss counts summed over the bit-widths and FP (zeros before a check)."""
        return np.sum(list(self.counts_per_bits.values()), axis=0).astype(np.int64)

    @property
    def last_correct(self) -> dict[int, np.ndarray]:
        """bits -> ``(N,)`` bool correctness at the latest check (empty before any)."""
        return {b: v.copy() for b, v in self._last.items()}

    def state(self) -> dict:
        """Everything needed to resume counting: plain ints, lists and NumPy arrays."""
        return {
            "n": len(self.y),
            "bits": self.bits,
            "every": self.every,
            "batch_size": self.batch_size,
            "seed": self.seed,
            "checks": self.checks,
            "misses": {b: v.copy() for b, v in self._misses.items()},
            "ever_correct": {b: v.copy() for b, v in self._ever.items()},
            "last_correct": self.last_correct,
            "history": copy.deepcopy(self.history),
        }

    def load_state(self, state: dict) -> None:
        """Restore what :meth:`state` returned (same number of samples and bit-widths)."""
        try:
            n, bits, checks = int(state["n"]), tuple(state["bits"]), int(state["checks"])
            misses, ever, last = state["misses"], state["ever_correct"], state["last_correct"]
            history = state["history"]
        except (KeyError, TypeError) as exc:
            raise ValueError(
                f"state is not a QuantMissTracker.state() dict (missing {exc}); save it with "
                "tracker.state()."
            ) from None
        if n != len(self.y):
            raise ValueError(
                f"state covers {n} samples but this tracker has {len(self.y)}; load it into a "
                "tracker built on the same x, y."
            )
        if bits != self.bits:
            raise ValueError(
                f"state has bits={bits} but this tracker has bits={self.bits}; build the tracker "
                f"with bits={bits} (or use QuantMissTracker.from_state)."
            )
        keys = set(self.tracked_bits)
        for name, d in (("misses", misses), ("ever_correct", ever)):
            if set(d) != keys or any(np.shape(v) != (n,) for v in d.values()):
                raise ValueError(f"state[{name!r}] must map {sorted(keys)} to ({n},) arrays.")
        if checks > 0 and (set(last) != keys or any(np.shape(v) != (n,) for v in last.values())):
            raise ValueError(f"state['last_correct'] must map {sorted(keys)} to ({n},) arrays.")
        self.checks = checks
        self._misses = {b: np.asarray(misses[b], np.int64).copy() for b in self.tracked_bits}
        self._ever = {b: np.asarray(ever[b], bool).copy() for b in self.tracked_bits}
        self._last = {b: np.asarray(v, bool).copy() for b, v in last.items()} if checks else {}
        self.history = copy.deepcopy(list(history))

    @classmethod
    def from_state(cls, state: dict, x=None, y=None, *, dataset=None) -> QuantMissTracker:
        """A tracker on ``x, y`` (or ``dataset``) with the settings and counts of ``state``."""
        tracker = cls(
            x,
            y,
            bits=state["bits"],
            every=state["every"],
            batch_size=state["batch_size"],
            seed=state["seed"],
            dataset=dataset,
        )
        tracker.load_state(state)
        return tracker

    # ----- checking -------------------------------------------------------------------
    def _copies_of(self, model) -> _Copies:
        entry = self._copies.get(id(model))
        if entry is None or entry.model is not model:
            entry = _Copies(model, self.bits)
            self._copies[id(model)] = entry
        return entry

    def check(self, model, epoch: int | None = None) -> dict:
        """Quantize ``model`` at every bit-width, predict the whole set, update the counts.

        The callback calls this; it can also be called directly (e.g. without fit).

        Args:
            model: a tf_keras classifier (Sequential or Functional) giving
                ``(batch, classes)`` outputs; argmax is the predicted class.
            epoch: recorded in :attr:`history` (the callback passes the 0-based epoch).

        Returns:
            The :attr:`history` entry of this check.
        """
        if not isinstance(model, keras.Model):
            raise TypeError(
                f"model must be a tf_keras Model giving (batch, classes) outputs, got "
                f"{type(model).__name__}."
            )
        copies = self._copies_of(model)
        copies.load()
        outputs = copies.predictor(self.x, self.batch_size)
        width = outputs[0].shape[1]
        if int(self.y.max()) >= width:
            raise ValueError(
                f"y has class index {int(self.y.max())} but model {model.name!r} outputs {width} "
                f"classes; labels must be integer class indices in [0, {width}). Pass the labels "
                "the model is trained on."
            )
        acc = {}
        for b, out in zip((FP_BITS, *self.bits), outputs):
            correct = out.argmax(axis=1) == self.y
            if self.checks:
                self._misses[b] += self._last[b] & ~correct
            self._ever[b] |= correct
            self._last[b] = correct
            acc[b] = float(correct.mean())
        self.checks += 1
        entry = {
            "check": self.checks,
            "epoch": None if epoch is None else int(epoch),
            "acc": {b: acc[b] for b in self.tracked_bits},
            "mean_misses": float(self.counts.mean()),
        }
        self.history.append(entry)
        return entry

    # ----- sampling -------------------------------------------------------------------
    def sample(self, size: int, seed: int | None = None) -> np.ndarray:
        """Draw ``size`` distinct sample indices with probability proportional to
        :attr:`counts` (zero-count samples only fill up when too few have a count).

        Args:
            size: core size, in [1, N] (the paper uses 20).
            seed: default the tracker's ``seed``; the same seed gives the same indices.

        Returns:
            Sorted int64 indices into ``x``/``y``.
        """
        n = len(self.y)
        if isinstance(size, bool) or not isinstance(size, numbers.Integral) or not 1 <= size <= n:
            raise ValueError(
                f"size must be an int in [1, {n}] (the number of samples), got {size!r}. "
                "The paper's core holds 20 samples."
            )
        if self.checks == 0:
            raise ValueError(
                "No check has run yet (checks=0), so there are no miss counts to sample from: "
                "call fit with the tracker first, or tracker.check(model) yourself."
            )
        seed = self.seed if seed is None else seed
        rng = np.random.default_rng(seed)
        counts = self.counts.astype(np.float64)
        positive = np.flatnonzero(counts > 0)
        if len(positive) >= size:
            idx = rng.choice(n, size=int(size), replace=False, p=counts / counts.sum())
        else:
            zeros = np.flatnonzero(counts == 0)
            fill = rng.choice(zeros, size=int(size) - len(positive), replace=False)
            idx = np.concatenate([positive, fill])
        return np.sort(idx).astype(np.int64)

    def core(self, size: int, seed: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(x[idx], y[idx])`` for ``idx = sample(size, seed)``."""
        idx = self.sample(size, seed)
        return self.x[idx], self.y[idx]

    # ----- Keras callback -------------------------------------------------------------
    def on_train_begin(self, logs=None):
        # Counts persist across fits (continued training); only per-fit bookkeeping resets.
        self._fit_epochs = (self.params or {}).get("epochs")

    def _due(self, epoch: int) -> bool:
        return (epoch + 1) % self.every == 0 or (
            self._fit_epochs is not None and epoch + 1 == self._fit_epochs
        )

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            logs = {}
        acc = self.check(self.model, epoch)["acc"] if self._due(epoch) else None
        logs["qcore_checks"] = float(self.checks)
        logs["qcore_mean_misses"] = float(self.counts.mean())
        for b in self.tracked_bits:
            logs[f"qcore_acc_w{b}"] = float("nan") if acc is None else acc[b]
