"""Real data sets, loaded offline from installed packages (no download at run time).

- :func:`fashion_mnist`: Debian ``dataset-fashion-mnist``, 28x28x1 images, 10 classes.
- :func:`imu_watch`: PyPI ``seglearn``'s smartwatch exercises, 6-axis IMU windows, 7
  classes, 10 subjects; :func:`split_by_subject` and :func:`channel_stats` for subject-wise
  evaluation and training-only normalisation.
- :func:`digits`: scikit-learn's 8x8 digits, for fast tests.
- :func:`classification_task`: ``"fashion_mnist"`` or ``"imu_watch"`` by name, as train/test
  arrays (the IMU set split by subject and normalised).

A missing data set raises :class:`DatasetNotFoundError` (a ``FileNotFoundError``) that
names the package to install; damaged files raise :class:`DatasetCorruptError`.
"""

from ._errors import DatasetCorruptError, DatasetError, DatasetNotFoundError
from ._types import ImageClassificationData
from .digits import digits
from .fashion_mnist import fashion_mnist
from .imu_watch import ChannelStats, IMUWindows, channel_stats, imu_watch, split_by_subject
from .tasks import TASKS, classification_task

__all__ = [
    "TASKS",
    "ChannelStats",
    "DatasetCorruptError",
    "DatasetError",
    "DatasetNotFoundError",
    "IMUWindows",
    "ImageClassificationData",
    "channel_stats",
    "classification_task",
    "digits",
    "fashion_mnist",
    "imu_watch",
    "split_by_subject",
]
