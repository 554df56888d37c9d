"""Fashion-MNIST from the Debian package ``dataset-fashion-mnist`` (no download).

The package installs the original IDX files (``train-images-idx3-ubyte.gz``,
``train-labels-idx1-ubyte.gz``, ``t10k-images-idx3-ubyte.gz``, ``t10k-labels-idx1-ubyte.gz``)
under ``/usr/share/datasets/fashion-mnist``. Any folder holding those four files works, gzipped
or not (for instance the copy Keras downloads to ``~/.keras/datasets/fashion-mnist``): pass it
as ``root`` or set ``EDGEPLUS_FASHION_MNIST_ROOT``.

Choices:
- Images are scaled to float32 in [0, 1] (``uint8 / 255``) and given a channel axis:
  (N, 28, 28, 1), the layout Keras' Conv2D and TFLite expect.
- ``limit_train`` / ``limit_test`` take a class-stratified subset drawn with ``seed``
  (see ``_sampling``), returned in file order; the full sets are returned in file order too.
- The decoded uint8 arrays are cached per process (keyed by path, size and modification
  time), so repeated calls skip the ~0.5 s gunzip; returned arrays are always fresh copies.
"""

from __future__ import annotations

import os
import threading

import numpy as np

from ._errors import DatasetCorruptError, DatasetNotFoundError
from ._idx import read_idx
from ._sampling import check_limit, stratified_indices
from ._types import ImageClassificationData

__all__ = ["CLASS_NAMES", "DEFAULT_ROOT", "ROOT_ENV_VAR", "fashion_mnist"]

DEFAULT_ROOT = "/usr/share/datasets/fashion-mnist"
ROOT_ENV_VAR = "EDGEPLUS_FASHION_MNIST_ROOT"
CLASS_NAMES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
_SIZES = {"train": 60000, "test": 10000}
_INSTALL = (
    "Install it with `sudo apt-get install dataset-fashion-mnist` (files land in "
    f"{DEFAULT_ROOT}), or pass root= / set {ROOT_ENV_VAR} to a folder holding the four IDX files."
)
_REINSTALL = "Reinstall it with `sudo apt-get install --reinstall dataset-fashion-mnist`."

_cache: dict[tuple, np.ndarray] = {}
_cache_lock = threading.Lock()


def _resolve_root(root) -> str:
    if root is None:
        root = os.environ.get(ROOT_ENV_VAR) or DEFAULT_ROOT
    return os.fspath(root)


def _find_files(root: str) -> dict[str, str]:
    found, missing = {}, []
    for key, stem in _FILES.items():
        for candidate in (stem + ".gz", stem):
            path = os.path.join(root, candidate)
            if os.path.isfile(path):
                found[key] = path
                break
        else:
            missing.append(stem + ".gz")
    if missing:
        raise DatasetNotFoundError(
            f"Fashion-MNIST not found in {root!r}: missing {', '.join(missing)}. {_INSTALL}"
        )
    return found


def _load_array(path: str) -> np.ndarray:
    st = os.stat(path)
    key = (os.path.realpath(path), st.st_size, st.st_mtime_ns)
    with _cache_lock:
        cached = _cache.get(key)
    if cached is not None:
        return cached
    arr = read_idx(path, fix=_REINSTALL)
    arr.flags.writeable = False
    with _cache_lock:
        # Drop stale entries of the same file (it changed on disk).
        for old in [k for k in _cache if k[0] == key[0]]:
            del _cache[old]
        _cache[key] = arr
    return arr


def _check_pair(images: np.ndarray, labels: np.ndarray, img_path: str, lbl_path: str) -> None:
    if images.ndim != 3 or images.shape[1:] != (28, 28) or images.dtype != np.uint8:
        raise DatasetCorruptError(
            f"{img_path}: expected uint8 images of shape (N, 28, 28), got "
            f"{images.dtype.name} {images.shape}. {_REINSTALL}"
        )
    if labels.ndim != 1 or labels.dtype != np.uint8:
        raise DatasetCorruptError(
            f"{lbl_path}: expected a 1-D uint8 label vector, got {labels.dtype.name} "
            f"{labels.shape}. {_REINSTALL}"
        )
    if len(labels) != len(images):
        raise DatasetCorruptError(
            f"{lbl_path} holds {len(labels)} labels but {img_path} holds {len(images)} "
            f"images. {_REINSTALL}"
        )
    if len(labels) and int(labels.max()) >= len(CLASS_NAMES):
        raise DatasetCorruptError(
            f"{lbl_path}: label {int(labels.max())} out of range [0, {len(CLASS_NAMES)}). "
            + _REINSTALL
        )


def _subset(images, labels, limit, rng):
    if limit is None or limit == len(labels):
        idx = slice(None)
    else:
        idx = stratified_indices(labels, limit, rng)
    x = (images[idx].astype(np.float32) / np.float32(255.0))[..., np.newaxis]
    return x, labels[idx].astype(np.int64)


def fashion_mnist(
    root: str | os.PathLike | None = None,
    limit_train: int | None = None,
    limit_test: int | None = None,
    seed: int = 0,
) -> ImageClassificationData:
    """Load Fashion-MNIST (60 000 train / 10 000 test 28x28 grey images, 10 classes).

    Args:
        root: folder with the four IDX files; default ``$EDGEPLUS_FASHION_MNIST_ROOT`` or
            ``/usr/share/datasets/fashion-mnist`` (Debian ``dataset-fashion-mnist``).
        limit_train, limit_test: if given, a class-stratified random subset of that size.
        seed: seeds the subset draws (train and test from one generator, in that order).

    Returns:
        :class:`ImageClassificationData` with float32 x in [0, 1] of shape (N, 28, 28, 1),
        int64 y, and ``class_names``.

    Raises:
        DatasetNotFoundError: a file is missing (the message says what to install).
        DatasetCorruptError: a file is truncated or not a valid IDX file (names the file).
    """
    root_path = _resolve_root(root)
    limit_train = check_limit("limit_train", limit_train, _SIZES["train"])
    limit_test = check_limit("limit_test", limit_test, _SIZES["test"])
    paths = _find_files(root_path)
    arrays = {key: _load_array(path) for key, path in paths.items()}
    for split in ("train", "test"):
        _check_pair(
            arrays[f"x_{split}"], arrays[f"y_{split}"], paths[f"x_{split}"], paths[f"y_{split}"]
        )
    n_train, n_test = len(arrays["y_train"]), len(arrays["y_test"])
    # The limits were checked against the official sizes; re-check against the files.
    check_limit("limit_train", limit_train, n_train)
    check_limit("limit_test", limit_test, n_test)
    rng = np.random.default_rng(seed)
    x_train, y_train = _subset(arrays["x_train"], arrays["y_train"], limit_train, rng)
    x_test, y_test = _subset(arrays["x_test"], arrays["y_test"], limit_test, rng)
    return ImageClassificationData(x_train, y_train, x_test, y_test, CLASS_NAMES)
