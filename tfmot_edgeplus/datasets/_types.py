"""Result types of the loaders."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["ImageClassificationData"]


@dataclass(frozen=True, eq=False)
class ImageClassificationData:
    """A train/test classification set (images, or IMU windows), ready for ``model.fit``.

    Attributes:
        x_train, x_test: float32 samples: images in [0, 1] (N, H, W, C), or normalised IMU
            windows (N, samples, channels).
        y_train, y_test: int64 class indices in [0, num_classes).
        class_names: human-readable names, indexed by class.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple[str, ...]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one sample, e.g. (28, 28, 1): what ``keras.Input(shape=...)`` takes."""
        return tuple(self.x_train.shape[1:])

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(train={len(self.x_train)}, test={len(self.x_test)}, "
            f"input_shape={self.input_shape}, num_classes={self.num_classes})"
        )
