"""Back-propagation calibration of the integer head, re-quantized to its integer grid.

Two uses: :func:`bp_flip_target` makes the targets the bit-flip networks learn to imitate
(what a back-propagation step on the QCore does to the integer weights), and
:func:`bp_finetune` is the ``bp_finetune`` / ``replay`` baselines of
``benchmarks/continual.py``.

The head is run in float exactly as the integers mean it: ``a = (a_int - zp) * s_in``,
``W = W_int * s_w[o]``, ``b = bias * s_in * s_w[o]``, ReLU where the layer clamps at its
zero point. Adam (``learning_rate``) on the mean cross-entropy over the samples trains the
chosen layers' weights (full batch, ``steps`` steps); the result is rounded back to each
layer's grid with its own scale and saturated to its narrow range: weights that drop
straight into the deployed model.

The flip target is one step of that gradient on the integer grid itself: the gradient with
respect to an integer weight is ``dL/dW[o, i] * s_w[o]``; the step moves the weights whose
gradient is at least a fraction ``tau`` of the layer's largest by one level against its
sign, and ``tau`` is searched (a line search over the step's size): the target is the
candidate that scores best on the samples (more right, then a larger total int8 margin),
or no change when none beats the current weights.
"""

from __future__ import annotations

import numpy as np

from tfmot_edgeplus.calibration.step import score
from tfmot_edgeplus.core.intmath import narrow_range

__all__ = ["bp_finetune", "bp_flip_target", "bp_memory_bytes"]


def _float_head(head, weights):
    ws = [w.astype(np.float32) * l.weight_scale[:, None] for l, w in zip(head.layers, weights)]
    bs = [
        l.bias.astype(np.float32) * np.float32(l.input_scale) * l.weight_scale for l in head.layers
    ]
    return ws, bs


def _gradients(head, ws, bs, a0, onehot, layers) -> dict[int, np.ndarray]:
    """Mean cross-entropy gradients with respect to the float weights of ``layers``."""
    acts, pre = [a0], []
    for l, layer in enumerate(head.layers):
        z = acts[-1] @ ws[l].T + bs[l]
        pre.append(z)
        acts.append(np.maximum(z, 0) if layer.relu else z)
    logits = acts[-1]
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    delta = (p - onehot) / len(onehot)
    grads = {}
    for l in range(len(ws) - 1, min(layers) - 1, -1):
        if head.layers[l].relu:
            delta = delta * (pre[l] > 0)
        if l in layers:
            grads[l] = delta.T @ acts[l]
        delta = delta @ ws[l]
    return grads


def _inputs(head, x, y):
    first = head.layers[0]
    a0 = (np.asarray(x, np.float32) - first.input_zero_point) * np.float32(first.input_scale)
    onehot = np.eye(head.num_classes, dtype=np.float32)[np.asarray(y, np.int64)]
    return a0, onehot


def bp_finetune(head, x, y, layers, weights=None, steps: int = 30, learning_rate: float = 0.01):
    """New integer head weights after ``steps`` Adam steps on (``x`` head inputs, ``y``)
    training the head layers in ``layers`` (indices); the others are returned unchanged."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    weights = head.weights() if weights is None else [np.array(w, np.int8) for w in weights]
    layers = sorted({int(l) for l in layers})
    a0, onehot = _inputs(head, x, y)
    ws, bs = _float_head(head, weights)
    m = {l: np.zeros_like(ws[l]) for l in layers}
    v = {l: np.zeros_like(ws[l]) for l in layers}
    b1, b2, eps = 0.9, 0.999, 1e-7
    for t in range(1, steps + 1):
        for l, g in _gradients(head, ws, bs, a0, onehot, layers).items():
            m[l] = b1 * m[l] + (1 - b1) * g
            v[l] = b2 * v[l] + (1 - b2) * g * g
            ws[l] = ws[l] - learning_rate * (m[l] / (1 - b1**t)) / (
                np.sqrt(v[l] / (1 - b2**t)) + eps
            )
    out = []
    for l, (layer, w) in enumerate(zip(head.layers, weights)):
        if l not in m:
            out.append(w)
            continue
        lo, hi = narrow_range(layer.bits)
        q = np.clip(np.round(ws[l] / layer.weight_scale[:, None]), lo, hi)
        out.append(q.astype(np.int8))
    return out


def bp_flip_target(
    head, x, y, layers, weights=None, fractions=(0.9, 0.7, 0.5, 0.3, 0.2, 0.1)
) -> dict[int, np.ndarray]:
    """Per layer in ``layers``, the int8 -1/0/+1 update of the best integer gradient step
    on (``x`` head inputs, ``y``), see the module doc."""

    weights = head.weights() if weights is None else [np.array(w, np.int8) for w in weights]
    layers = sorted({int(l) for l in layers})
    a0, onehot = _inputs(head, x, y)
    ws, bs = _float_head(head, weights)
    grads = {
        l: g * head.layers[l].weight_scale[:, None]
        for l, g in _gradients(head, ws, bs, a0, onehot, layers).items()
    }
    _, c, m = score(head.forward(x, weights), y)
    best, best_score = {l: np.zeros_like(weights[l]) for l in layers}, (c, m)
    for tau in fractions:
        ups = {
            l: np.where(np.abs(g) >= tau * np.abs(g).max(), -np.sign(g), 0).astype(np.int8)
            for l, g in grads.items()
        }
        new = list(weights)
        for l, up in ups.items():
            lo, hi = narrow_range(head.layers[l].bits)
            new[l] = np.clip(weights[l].astype(np.int32) + up, lo, hi).astype(np.int8)
        _, c, m = score(head.forward(x, new), y)
        if (c, m) > best_score:
            best, best_score = ups, (c, m)
    return best


def bp_memory_bytes(head, layers, n: int, buffer_items: int) -> int:
    """Device bytes :func:`bp_finetune` needs on ``n`` samples of which ``buffer_items`` are
    kept between chunks: the buffer (int8 head inputs + a label byte each), float32 copies of
    the trained layers' weights and biases, Adam's two moments and one gradient, and the
    float32 activations of every layer plus the back-propagated error for the ``n`` samples.
    """
    trained = [head.layers[l] for l in sorted({int(l) for l in layers})]
    weights = sum(l.shape[0] * l.shape[1] for l in trained)
    biases = sum(l.shape[0] for l in trained)
    widths = [head.input_size] + [l.shape[0] for l in head.layers]
    return int(
        buffer_items * (head.input_size + 1)
        + 4 * (weights + biases)
        + 8 * weights
        + 4 * max(l.shape[0] * l.shape[1] for l in trained)
        + 4 * n * (sum(widths) + max(widths))
    )
