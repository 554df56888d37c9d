"""Back-propagation calibration of the integer head, re-quantized to its integer grid.

Two uses: it makes the targets the bit-flip networks learn to imitate (what gradient
descent on the QCore does to the integer weights), and it is the ``bp_finetune`` /
``replay`` baselines of ``benchmarks/continual.py``.

The head is run in float exactly as the integers mean it: ``a = (a_int - zp) * s_in``,
``W = W_int * s_w[o]``, ``b = bias * s_in * s_w[o]``, ReLU where the layer clamps at its
zero point. Adam (``learning_rate``) on the mean cross-entropy over the samples trains the
chosen layers' weights (full batch, ``steps`` steps); the result is rounded back to each
layer's grid with its own scale and saturated to its narrow range: weights that drop
straight into the deployed model.
"""

from __future__ import annotations

import numpy as np

from tfmot_edgeplus.conversion.packing import narrow_range

__all__ = ["bp_finetune"]


def bp_finetune(head, x, y, layers, weights=None, steps: int = 30, learning_rate: float = 0.01):
    """New integer head weights after ``steps`` Adam steps on (``x`` head inputs, ``y``)
    training the head layers in ``layers`` (indices); the others are returned unchanged."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    weights = head.weights() if weights is None else [np.array(w, np.int8) for w in weights]
    layers = sorted({int(l) for l in layers})
    first = head.layers[0]
    a0 = (np.asarray(x, np.float32) - first.input_zero_point) * np.float32(first.input_scale)
    y = np.asarray(y, np.int64)
    ws = [
        w.astype(np.float32) * layer.weight_scale[:, None] for layer, w in zip(head.layers, weights)
    ]
    bs = [
        layer.bias.astype(np.float32) * np.float32(layer.input_scale) * layer.weight_scale
        for layer in head.layers
    ]
    relu = [layer.relu for layer in head.layers]
    m = {l: np.zeros_like(ws[l]) for l in layers}
    v = {l: np.zeros_like(ws[l]) for l in layers}
    b1, b2, eps = 0.9, 0.999, 1e-7
    onehot = np.eye(head.num_classes, dtype=np.float32)[y]
    for t in range(1, steps + 1):
        acts, pre = [a0], []
        for l in range(len(ws)):
            z = acts[-1] @ ws[l].T + bs[l]
            pre.append(z)
            acts.append(np.maximum(z, 0) if relu[l] else z)
        logits = acts[-1]
        p = np.exp(logits - logits.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        delta = (p - onehot) / len(y)
        for l in range(len(ws) - 1, -1, -1):
            if relu[l]:
                delta = delta * (pre[l] > 0)
            if l in m:
                g = delta.T @ acts[l]
                m[l] = b1 * m[l] + (1 - b1) * g
                v[l] = b2 * v[l] + (1 - b2) * g * g
                mh = m[l] / (1 - b1**t)
                vh = v[l] / (1 - b2**t)
                step_l = learning_rate * mh / (np.sqrt(vh) + eps)
            else:
                step_l = None
            if l > 0:
                delta = delta @ ws[l]
            if step_l is not None:
                ws[l] = ws[l] - step_l
    out = []
    for l, (layer, w) in enumerate(zip(head.layers, weights)):
        if l not in m:
            out.append(w)
            continue
        lo, hi = narrow_range(layer.bits)
        q = np.clip(np.round(ws[l] / layer.weight_scale[:, None]), lo, hi)
        out.append(q.astype(np.int8))
    return out
