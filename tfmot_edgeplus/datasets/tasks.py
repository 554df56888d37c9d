"""The bundled classification tasks by name, as train/test arrays ready for ``fit``.

Used by the CLI (``--data``) and the benchmarks so that each task is prepared one way:

- ``"fashion_mnist"``: :func:`fashion_mnist` (class-stratified subsets with ``limit_*``).
- ``"imu_watch"``: :func:`imu_watch` windows (2 s, 50 % overlap), subjects 9 and 10 held
  out for test (no subject on both sides), per-channel normalisation from the training
  subjects only. ``limit_*`` take seeded random subsets.
"""

from __future__ import annotations

import numpy as np

from ._types import ImageClassificationData
from .fashion_mnist import fashion_mnist
from .imu_watch import channel_stats, imu_watch, split_by_subject

__all__ = ["IMU_TEST_SUBJECTS", "TASKS", "classification_task"]

TASKS = ("fashion_mnist", "imu_watch")
IMU_TEST_SUBJECTS = (9, 10)


def _subset(x, y, limit, rng):
    if limit is None or limit >= len(x):
        return x, y
    keep = np.sort(rng.permutation(len(x))[:limit])
    return x[keep], y[keep]


def classification_task(
    name: str, limit_train: int | None = None, limit_test: int | None = None, seed: int = 0
) -> ImageClassificationData:
    """Load task ``name`` (one of :data:`TASKS`) as :class:`ImageClassificationData`."""
    if name == "fashion_mnist":
        return fashion_mnist(limit_train=limit_train, limit_test=limit_test, seed=seed)
    if name == "imu_watch":
        train, test = split_by_subject(imu_watch(), IMU_TEST_SUBJECTS)
        stats = channel_stats(train)
        train, test = stats.apply(train), stats.apply(test)
        rng = np.random.default_rng(seed)
        x_train, y_train = _subset(train.x, train.y, limit_train, rng)
        x_test, y_test = _subset(test.x, test.y, limit_test, rng)
        return ImageClassificationData(x_train, y_train, x_test, y_test, train.class_names)
    raise ValueError(f"Unknown task {name!r}; choose one of {', '.join(TASKS)}.")
