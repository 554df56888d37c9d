"""scikit-learn's 8x8 handwritten digits (1797 images, 10 classes): fast unit-test data.

``sklearn.datasets.load_digits`` reads a file bundled with scikit-learn (no download).
Pixels are integers 0..16; we divide by 16 to get float32 in [0, 1] and add a channel
axis: (N, 8, 8, 1). The train/test split is class-stratified and seeded (see
``_sampling``): the same seed always gives the same split. Too small for accuracy claims;
use Fashion-MNIST or the IMU set for those.
"""

from __future__ import annotations

import numbers

import numpy as np

from ._errors import DatasetNotFoundError
from ._sampling import stratified_split
from ._types import ImageClassificationData

__all__ = ["CLASS_NAMES", "digits"]

CLASS_NAMES = tuple(str(d) for d in range(10))


def digits(test_fraction: float = 0.25, seed: int = 0) -> ImageClassificationData:
    """Load the 8x8 digits with a seeded, stratified train/test split.

    Args:
        test_fraction: share of the 1797 images in the test set, in (0, 1).
        seed: seeds the split.

    Returns:
        :class:`ImageClassificationData`, x float32 (N, 8, 8, 1) in [0, 1], y int64.
    """
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, numbers.Real):
        raise TypeError(f"test_fraction must be a float in (0, 1), got {test_fraction!r}")
    if not 0.0 < float(test_fraction) < 1.0:
        raise ValueError(
            f"test_fraction must be strictly between 0 and 1, got {test_fraction}. "
            "Example: digits(test_fraction=0.25)."
        )
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:
        raise DatasetNotFoundError(
            "digits needs scikit-learn, which is not installed: "
            "`pip install 'tfmot_edgeplus[datasets]'` (or `pip install scikit-learn`) "
            f"(import failed: {exc})."
        ) from exc
    bunch = load_digits()
    x = (np.asarray(bunch.images, dtype=np.float32) / np.float32(16.0))[..., np.newaxis]
    y = np.asarray(bunch.target, dtype=np.int64)
    train, test = stratified_split(y, float(test_fraction), np.random.default_rng(seed))
    if len(train) == 0 or len(test) == 0:
        raise ValueError(
            f"test_fraction={test_fraction} leaves an empty train or test set of {len(y)} "
            "images; use a value such as 0.25."
        )
    return ImageClassificationData(x[train], y[train], x[test], y[test], CLASS_NAMES)
