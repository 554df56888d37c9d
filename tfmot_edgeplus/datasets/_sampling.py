"""Seeded, stratified index selection shared by the loaders.

Choice: proportional allocation with largest remainders. Each class gets
``floor(n * count_c / N)`` samples; the samples still missing go to the classes with the
largest fractional parts (ties broken by the seeded generator), so the subset's class
proportions match the full set's as closely as integers allow. Within a class the samples
are drawn without replacement by the same generator. Indices come back sorted (file order),
so the same seed always gives the same subset in the same order.
"""

from __future__ import annotations

import numbers

import numpy as np

__all__ = ["check_limit", "stratified_indices", "stratified_split"]


def check_limit(name: str, value, total: int) -> int | None:
    """Validate a ``limit_*`` argument: None, or an int in [1, total]."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be None or an int, got {value!r} ({type(value).__name__})")
    value = int(value)
    if not 1 <= value <= total:
        raise ValueError(
            f"{name} must be between 1 and {total} (the number of samples available), "
            f"got {value}. Use None for all samples."
        )
    return value


def _allocate(counts: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    total = int(counts.sum())
    exact = counts * (n / total)
    alloc = np.floor(exact).astype(np.int64)
    missing = n - int(alloc.sum())
    if missing > 0:
        frac = exact - alloc
        # Sort by fractional part, descending; random tie-break via a secondary key.
        order = np.lexsort((rng.random(len(counts)), -frac))
        alloc[order[:missing]] += 1
    return np.minimum(alloc, counts)


def stratified_indices(y: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Return ``n`` sorted indices into ``y`` whose class proportions follow ``y``'s."""
    y = np.asarray(y)
    classes, inverse, counts = np.unique(y, return_inverse=True, return_counts=True)
    alloc = _allocate(counts, n, rng)
    picked = []
    for c in range(len(classes)):
        members = np.flatnonzero(inverse == c)
        if alloc[c]:
            picked.append(rng.choice(members, size=int(alloc[c]), replace=False))
    return np.sort(np.concatenate(picked)) if picked else np.empty(0, np.int64)


def stratified_split(
    y: np.ndarray, test_fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Split ``range(len(y))`` into (train, test) sorted index arrays, stratified by class."""
    n_test = round(len(y) * test_fraction)
    test = stratified_indices(y, n_test, rng)
    mask = np.ones(len(y), dtype=bool)
    mask[test] = False
    return np.flatnonzero(mask), test
