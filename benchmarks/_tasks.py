"""The benchmark bed: every accuracy benchmark's tasks, data and float models, in one place.

Tasks (``TASKS``; a benchmark's ``tasks`` config names a subset):

- ``fashion_mnist``: Fashion-MNIST 28x28 in [0, 1], ``models.small_cnn`` (13k parameters);
- ``imu_watch``: the IMU watch set (subjects 9 and 10 held out for test), ``models.imu_cnn``;
- ``fashion_mbv2`` (deeper): Fashion-MNIST upsampled to 32x32 in [-1, 1]
  (``recipes.quantmcu.upsample``), Keras' MobileNetV2 alpha 0.35 (``models.mobilenet_v2``,
  423k parameters, 52 conv layers). Measured on 2 shared cores (5k images, batch 64): a float
  epoch 12 s, a QAT epoch 103 s and ``quantize_model`` + calibration 47 s, against 0.9 s,
  3 s and 2 s for ``small_cnn``;
- ``imu_deep`` (deeper): the IMU watch set, ``models.imu_deep_cnn`` (six Conv1D +
  BatchNorm layers, 56k parameters).

``load(task, config)`` reads ``fashion_train`` / ``fashion_test`` (the Fashion-MNIST pool
and test sizes, class-stratified, seed 0) from the benchmark's config. ``train_float(data,
task, config, seed)`` trains the float model (Adam 1e-3, ``config.batch_size``,
``config.fp_epochs[task]`` or ``FP_EPOCHS``) once per seed and caches it on disk:
``<cache_dir>/<task>-s<seed>-<key>.h5`` with the config it was trained with in a ``.json``
beside it, ``key`` the first 12 hex digits of that config's SHA-256 (task, model, seed,
epochs, batch size, learning rate, and a SHA-256 of the training arrays). Another config
is another key, so a rerun with other settings trains anew and never reads a stale model;
a ``.json`` that does not match its key (copied or edited by hand) is an error naming the
value and the fix. ``cache_dir`` is ``config.cache_dir`` or ``build/bench_cache``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CACHE_DIR = Path(__file__).resolve().parent.parent / "build" / "bench_cache"
FP_LEARNING_RATE = 1e-3


@dataclass(frozen=True)
class Task:
    dataset: str  # tfmot_edgeplus.datasets.classification_task name
    model: str  # tfmot_edgeplus.models function
    fp_epochs: int
    image_size: int | None = None  # Fashion-MNIST upsampled to this size (recipes.quantmcu)


TASK_SPECS = {
    "fashion_mnist": Task("fashion_mnist", "small_cnn", 5),
    "imu_watch": Task("imu_watch", "imu_cnn", 30),
    "fashion_mbv2": Task("fashion_mnist", "mobilenet_v2", 10, image_size=32),
    "imu_deep": Task("imu_watch", "imu_deep_cnn", 30),
}
TASKS = tuple(TASK_SPECS)
DEEP_TASKS = ("fashion_mbv2", "imu_deep")
FP_EPOCHS = {name: spec.fp_epochs for name, spec in TASK_SPECS.items()}


def say(text: str) -> None:
    print(text, flush=True)


def task(name: str) -> Task:
    """The spec of task ``name``; an unknown name is an error listing the known ones."""
    if name not in TASK_SPECS:
        raise ValueError(f"Unknown benchmark task {name!r}; choose from {', '.join(TASKS)} "
                         "(benchmarks._tasks.TASKS).")
    return TASK_SPECS[name]


def check_tasks(names) -> tuple[str, ...]:
    """``names`` as a non-empty tuple of known tasks, or an error naming the bad one."""
    names = tuple(names)
    if not names:
        raise ValueError(f"tasks must name at least one task of {TASKS}, got ().")
    for name in names:
        task(name)
    return names


def load(name: str, config):
    """The data of task ``name`` (``ImageClassificationData``)."""
    from tfmot_edgeplus.datasets import ImageClassificationData, classification_task

    spec = task(name)
    if spec.dataset != "fashion_mnist":
        return classification_task(spec.dataset)
    data = classification_task(spec.dataset, config.fashion_train, config.fashion_test, seed=0)
    if spec.image_size is None:
        return data
    from tfmot_edgeplus.recipes.quantmcu import upsample

    return ImageClassificationData(upsample(data.x_train, spec.image_size), data.y_train,
                                   upsample(data.x_test, spec.image_size), data.y_test,
                                   data.class_names)


def check_fraction(data, fraction: float, name: str) -> None:
    """A coreset ``fraction`` of the pool must give every class one sample under the
    per-class quotas (the coresets' own rule: a stratified draw is made and dropped); else an
    error naming the task, the fraction and the fraction that does."""
    from tfmot_edgeplus.coreset import RandomCoreset

    try:
        RandomCoreset(data.x_train, data.y_train, fraction=fraction, stratified=True)
    except ValueError as err:
        raise ValueError(f"task {name!r}: {err}") from None


def build_model(name: str, data):
    """A fresh float model of task ``name`` for ``data``'s inputs and classes."""
    from tfmot_edgeplus import models

    spec = task(name)
    shape, classes = tuple(data.input_shape), data.num_classes
    if spec.model == "small_cnn":
        return models.small_cnn(shape, classes)
    if spec.model == "mobilenet_v2":
        return models.mobilenet_v2(shape, alpha=0.35, classes=classes)
    return getattr(models, spec.model)(shape[0], shape[1], classes)


def float_config(name: str, data, config, seed: int) -> dict:
    """What decides the float model of ``name`` at ``seed``: the cache's key material."""
    digest = hashlib.sha256()
    for array in (data.x_train, data.y_train):
        digest.update(np.ascontiguousarray(array).tobytes())
    return {"task": name, "model": task(name).model, "seed": int(seed),
            "fp_epochs": int((config.fp_epochs or FP_EPOCHS)[name]),
            "batch_size": int(config.batch_size), "learning_rate": FP_LEARNING_RATE,
            "train_samples": len(data.x_train), "data_sha256": digest.hexdigest()}


def cache_path(name: str, settings: dict, cache_dir=None) -> Path:
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
    return Path(cache_dir or CACHE_DIR) / f"{name}-s{settings['seed']}-{key}.h5"


def _check_cached(meta_path: Path, settings: dict) -> None:
    cached = json.loads(meta_path.read_text())
    for key, value in settings.items():
        if cached.get(key) != value:
            raise ValueError(
                f"The cached float model {meta_path.with_suffix('.h5')} was written by another "
                f"config: {key}={cached.get(key)!r}, this run has {key}={value!r}. Delete "
                f"{meta_path.with_suffix('.h5')} and {meta_path} to retrain it.")


def train_float(data, name: str, config, seed: int = 0):
    """The float model of task ``name`` at ``seed``: from the cache, or trained and cached."""
    from tfmot_edgeplus._compat import keras, tf
    from tfmot_edgeplus.models import compile_classifier

    settings = float_config(name, data, config, seed)
    path = cache_path(name, settings, getattr(config, "cache_dir", None))
    meta = path.with_suffix(".json")
    if path.exists() and meta.exists():
        _check_cached(meta, settings)
        return keras.models.load_model(path, compile=False)
    tf.keras.utils.set_random_seed(seed)
    model = compile_classifier(build_model(name, data), learning_rate=FP_LEARNING_RATE)
    model.fit(data.x_train, data.y_train, epochs=settings["fp_epochs"],
              batch_size=config.batch_size, verbose=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save(path, include_optimizer=False)
    meta.write_text(json.dumps(settings, indent=1, sort_keys=True) + "\n")
    return model
