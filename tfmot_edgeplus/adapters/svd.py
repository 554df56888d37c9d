"""The math of CoRa's initialisation and rank allocation, on NumPy arrays (no Keras).

Kernel layout: every supported kernel is stored output-channel-last, ``(..., out)``
(Conv1D ``(k, in, out)``, Conv2D ``(kh, kw, in, out)``, Dense ``(in, out)``). We flatten it
to ``M`` of shape ``(K, out)`` with ``K = prod(kernel.shape[:-1])`` (row-major, so row
``k`` is one (tap, input channel) pair): this is the paper's ``(out, in*kh*kw)`` matrix,
transposed. A rank-``r`` adapter is ``A (K, r)`` then ``B (r, out)``:

    dW_M = U S V^T  (thin SVD)       A = U_r sqrt(S_r)        B = sqrt(S_r) V_r^T

``A`` reshaped to ``kernel.shape[:-1] + (r,)`` is the kernel of a layer of the main layer's
type and geometry with ``r`` filters; ``B`` is the kernel of a 1x1 conv / Dense ``r -> out``.
``A @ B`` is the best rank-``r`` approximation of ``dW_M`` (Eckart-Young), exact at full
rank ``min(K, out)``, and its Frobenius error is ``sqrt(sum_{i>r} s_i^2)``. Splitting
``sqrt(S)`` evenly between the two factors (the paper's choice) gives both the same scale,
which suits quantizing both to 8 bits.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

import numpy as np


def as_matrix(kernel) -> np.ndarray:
    """``kernel (..., out)`` as the ``(K, out)`` matrix the SVD factorises."""
    kernel = np.asarray(kernel, dtype=np.float64)
    if kernel.ndim < 2:
        raise ValueError(f"kernel must have at least 2 axes (..., out), got shape {kernel.shape}.")
    return kernel.reshape(-1, kernel.shape[-1])


def max_rank(kernel_shape) -> int:
    """Largest useful adapter rank of a kernel: ``min(K, out)``."""
    kernel_shape = tuple(int(d) for d in kernel_shape)
    return min(int(np.prod(kernel_shape[:-1])), kernel_shape[-1])


def useful_rank(kernel_shape) -> int:
    """Largest rank whose adapter has no more parameters than the kernel itself,
    ``floor(K * out / (K + out))`` (at most :func:`max_rank`). Beyond it, keeping the layer
    at 8 bits would cost less than the adapter; the allocations stop there."""
    kernel_shape = tuple(int(d) for d in kernel_shape)
    k, out = int(np.prod(kernel_shape[:-1])), kernel_shape[-1]
    return min(max_rank(kernel_shape), (k * out) // (k + out))


def adapter_params(kernel_shape, rank: int) -> int:
    """Parameters of a rank-``rank`` adapter of a kernel: ``rank * (K + out)``."""
    kernel_shape = tuple(int(d) for d in kernel_shape)
    return int(rank) * (int(np.prod(kernel_shape[:-1])) + kernel_shape[-1])


@dataclass(frozen=True)
class ResidualSVD:
    """Thin SVD of one layer's (optionally per-output-channel scaled) residual.

    ``u`` is ``(K, n)``, ``s`` is ``(n,)`` descending, ``vt`` is ``(n, out)``, with
    ``n = min(K, out)``; ``kernel_shape`` is the main kernel's shape."""

    u: np.ndarray
    s: np.ndarray
    vt: np.ndarray
    kernel_shape: tuple

    @property
    def max_rank(self) -> int:
        return int(self.s.shape[0])

    def factors(self, rank: int) -> tuple[np.ndarray, np.ndarray]:
        """``(A_kernel, B_matrix)``: A shaped ``kernel_shape[:-1] + (rank,)``, B ``(rank, out)``."""
        if not 1 <= rank <= self.max_rank:
            raise ValueError(f"rank must be in [1, {self.max_rank}], got {rank}.")
        root = np.sqrt(self.s[:rank])
        a = self.u[:, :rank] * root[None, :]
        b = root[:, None] * self.vt[:rank]
        return (
            a.reshape(tuple(self.kernel_shape[:-1]) + (rank,)).astype(np.float32),
            b.astype(np.float32),
        )

    def truncation(self, rank: int) -> np.ndarray:
        """The best rank-``rank`` approximation of the residual, as a ``(K, out)`` matrix."""
        if rank == 0:
            return np.zeros((self.u.shape[0], self.vt.shape[1]))
        return (self.u[:, :rank] * self.s[:rank]) @ self.vt[:rank]

    def tail_error(self, rank: int) -> float:
        """Frobenius norm of what rank ``rank`` leaves out: ``sqrt(sum_{i>=rank} s_i^2)``."""
        return float(np.sqrt(np.sum(self.s[rank:] ** 2)))


def residual_svd(kernel, quantized_kernel, channel_scale=None) -> ResidualSVD:
    """SVD of ``(kernel - quantized_kernel) * channel_scale`` flattened to ``(K, out)``.

    ``channel_scale`` (shape ``(out,)``) multiplies each output channel; CoRa uses it for a
    BatchNorm after the layer (``gamma / sqrt(var + eps)``), so that the factorised
    residual is the one seen after the BatchNorm, where the adapter's output is added.
    """
    w = as_matrix(kernel)
    q = as_matrix(quantized_kernel)
    if w.shape != q.shape:
        raise ValueError(f"kernel {w.shape} and quantized kernel {q.shape} differ in shape.")
    residual = w - q
    if channel_scale is not None:
        channel_scale = np.asarray(channel_scale, dtype=np.float64).reshape(-1)
        if channel_scale.shape[0] != residual.shape[1]:
            raise ValueError(
                f"channel_scale has {channel_scale.shape[0]} entries, the kernel {residual.shape[1]} "
                "output channels."
            )
        residual = residual * channel_scale[None, :]
    u, s, vt = np.linalg.svd(residual, full_matrices=False)
    return ResidualSVD(u=u, s=s, vt=vt, kernel_shape=tuple(np.shape(kernel)))


def allocate_ranks(svds: dict, budget_params: int) -> dict:
    """Ranks under a parameter budget, greedy by residual energy captured per parameter.

    Each step adds one rank to the layer whose next singular direction captures the largest
    *fraction of that layer's residual energy* (``s_i^2 / sum s^2``) per adapter parameter
    it costs (``K + out``), among the increments that still fit in ``budget_params``; it
    stops when none fits. Singular values decrease, so each layer's gains decrease and the
    greedy order is the optimal order of the fractional knapsack.

    Our choice for the default (the paper learns cutoffs instead: ``rank_search.py``):
    energies are made relative per layer, because layers' residuals live on different scales
    (a first conv's pre-activations are not comparable with a classifier's logits) and an
    absolute criterion would hand the whole budget to the layer with the largest weights.
    Ranks stop at :func:`useful_rank`. Layers with a zero residual get rank 0. Returns ``{name: rank}`` for every layer (0 =
    no adapter).
    """
    ranks = {name: 0 for name in svds}
    heap = []

    def push(name):
        svd = svds[name]
        r = ranks[name]
        energy = float(np.sum(svd.s ** 2))
        if r >= useful_rank(svd.kernel_shape) or energy <= 0.0 or svd.s[r] <= 0.0:
            return
        cost = adapter_params(svd.kernel_shape, 1)
        gain = float(svd.s[r] ** 2) / energy / cost
        heapq.heappush(heap, (-gain, name, cost))

    for name in svds:
        push(name)
    remaining = int(budget_params)
    while heap:
        _, name, cost = heapq.heappop(heap)
        if cost > remaining:
            continue  # this layer's increments never fit again; cheaper layers may
        ranks[name] += 1
        remaining -= cost
        push(name)
    return ranks


__all__ = [
    "ResidualSVD",
    "adapter_params",
    "allocate_ranks",
    "as_matrix",
    "max_rank",
    "residual_svd",
    "useful_rank",
]
