"""Tests of the offline data loaders (tfmot_edgeplus.datasets).

Tests on the real files skip, saying what to install, when the data are not on the machine;
the parser, error and sampling tests use small synthetic files and always run.
"""

from __future__ import annotations

import gzip
import importlib
import importlib.util
import os
import struct

import numpy as np
import pytest

from tfmot_edgeplus.datasets import (
    ChannelStats,
    DatasetCorruptError,
    DatasetNotFoundError,
    IMUWindows,
    channel_stats,
    digits,
    fashion_mnist,
    imu_watch,
    split_by_subject,
)
from tfmot_edgeplus.datasets._idx import parse_idx, read_idx
from tfmot_edgeplus.datasets._sampling import stratified_indices, stratified_split

fm_module = importlib.import_module("tfmot_edgeplus.datasets.fashion_mnist")
imu_module = importlib.import_module("tfmot_edgeplus.datasets.imu_watch")

# --------------------------------------------------------------------------- helpers


def idx_bytes(arr: np.ndarray) -> bytes:
    """Encode an array as IDX (the format's writer, for synthetic test files)."""
    codes = {np.uint8: 0x08, np.int8: 0x09, np.int16: 0x0B, np.int32: 0x0C, np.float32: 0x0D}
    code = codes[arr.dtype.type]
    header = bytes([0, 0, code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return header + arr.astype(arr.dtype.newbyteorder(">")).tobytes()


def write_fake_fashion(root, n_train=30, n_test=20, gz=True, seed=0):
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": (np.arange(n_train) % 10).astype(np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": (np.arange(n_test) % 10).astype(np.uint8),
    }
    paths = {}
    for stem, arr in arrays.items():
        data = idx_bytes(arr)
        if gz:
            path = os.path.join(root, stem + ".gz")
            with gzip.open(path, "wb") as f:
                f.write(data)
        else:
            path = os.path.join(root, stem)
            with open(path, "wb") as f:
                f.write(data)
        paths[stem] = path
    return arrays, paths


@pytest.fixture(scope="module")
def fmnist():
    try:
        return fashion_mnist()
    except DatasetNotFoundError as exc:
        pytest.skip(f"Fashion-MNIST not installed (apt-get install dataset-fashion-mnist): {exc}")


@pytest.fixture(scope="module")
def watch():
    try:
        return imu_watch()
    except DatasetNotFoundError as exc:
        pytest.skip(f"seglearn not installed (pip install seglearn): {exc}")


# --------------------------------------------------------------------------- IDX parser


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32])
def test_parse_idx_round_trips(dtype):
    arr = (np.arange(24).reshape(2, 3, 4) - 5).astype(dtype)
    out = parse_idx(idx_bytes(arr))
    assert out.shape == (2, 3, 4)
    np.testing.assert_array_equal(out, arr)


@pytest.mark.parametrize(
    "data, fragment",
    [
        (b"\x00\x00", "too short"),
        (b"\x01\x00\x08\x01" + struct.pack(">I", 1) + b"\x00", "bad IDX magic"),
        (b"\x00\x00\x42\x01" + struct.pack(">I", 1) + b"\x00", "bad IDX magic"),
        (b"\x00\x00\x08\x03" + struct.pack(">I", 2), "ends after"),
        (b"\x00\x00\x08\x01" + struct.pack(">I", 5) + b"\x00\x01", "truncated or damaged"),
        (b"\x00\x00\x08\x01" + struct.pack(">I", 1) + b"\x00\x01", "truncated or damaged"),
    ],
)
def test_parse_idx_rejects_bad_data_naming_the_file(data, fragment):
    with pytest.raises(DatasetCorruptError, match=fragment) as info:
        parse_idx(data, name="some/file.idx")
    assert "some/file.idx" in str(info.value)


# --------------------------------------------------------------------------- Fashion-MNIST


def test_fashion_mnist_real_files(fmnist):
    d = fmnist
    assert d.x_train.shape == (60000, 28, 28, 1) and d.x_test.shape == (10000, 28, 28, 1)
    assert d.x_train.dtype == np.float32 and d.x_test.dtype == np.float32
    assert d.y_train.dtype == np.int64 and d.y_train.shape == (60000,)
    assert 0.0 == d.x_train.min() and d.x_train.max() == 1.0
    assert 0.0 <= d.x_test.min() and d.x_test.max() <= 1.0
    np.testing.assert_array_equal(np.bincount(d.y_train), [6000] * 10)
    np.testing.assert_array_equal(np.bincount(d.y_test), [1000] * 10)
    assert d.num_classes == 10 and d.class_names[9] == "Ankle boot"
    assert d.input_shape == (28, 28, 1)
    # Known first labels of the official files: train 9 0 0 3 0, test 9 2 1 1 6.
    np.testing.assert_array_equal(d.y_train[:5], [9, 0, 0, 3, 0])
    np.testing.assert_array_equal(d.y_test[:5], [9, 2, 1, 1, 6])
    # Pixels are the raw bytes / 255.
    raw = read_idx(os.path.join(fm_module.DEFAULT_ROOT, "t10k-images-idx3-ubyte.gz"))
    np.testing.assert_array_equal(np.rint(d.x_test[:50, ..., 0] * 255).astype(np.uint8), raw[:50])


def test_fashion_mnist_limits_are_stratified_and_seeded(fmnist):
    a = fashion_mnist(limit_train=1000, limit_test=250, seed=3)
    b = fashion_mnist(limit_train=1000, limit_test=250, seed=3)
    c = fashion_mnist(limit_train=1000, limit_test=250, seed=4)
    assert a.x_train.shape == (1000, 28, 28, 1) and a.x_test.shape == (250, 28, 28, 1)
    np.testing.assert_array_equal(np.bincount(a.y_train, minlength=10), [100] * 10)
    assert sorted(np.bincount(a.y_test, minlength=10)) == [25] * 10
    np.testing.assert_array_equal(a.x_train, b.x_train)
    np.testing.assert_array_equal(a.y_test, b.y_test)
    assert not np.array_equal(a.x_train, c.x_train)
    # A subset is made of real samples of the full set.
    same_class = fmnist.x_train[fmnist.y_train == a.y_train[0]].reshape(6000, -1)
    assert (same_class == a.x_train[0].reshape(1, -1)).all(axis=1).any()


def test_fashion_mnist_missing_names_package_and_command(tmp_path):
    with pytest.raises(DatasetNotFoundError) as info:
        fashion_mnist(root=tmp_path)
    assert isinstance(info.value, FileNotFoundError)
    msg = str(info.value)
    assert "apt-get install dataset-fashion-mnist" in msg
    assert str(tmp_path) in msg and "train-images-idx3-ubyte.gz" in msg


@pytest.mark.parametrize("gz", [True, False])
def test_fashion_mnist_reads_any_folder_gz_or_not(tmp_path, gz):
    arrays, _ = write_fake_fashion(tmp_path, gz=gz)
    d = fashion_mnist(root=tmp_path)
    assert d.x_train.shape == (30, 28, 28, 1) and d.x_test.shape == (20, 28, 28, 1)
    np.testing.assert_allclose(
        d.x_train[..., 0], arrays["train-images-idx3-ubyte"] / np.float32(255), rtol=0, atol=0
    )
    np.testing.assert_array_equal(d.y_test, arrays["t10k-labels-idx1-ubyte"])


def test_fashion_mnist_root_from_environment(tmp_path, monkeypatch):
    write_fake_fashion(tmp_path)
    monkeypatch.setenv(fm_module.ROOT_ENV_VAR, str(tmp_path))
    assert len(fashion_mnist().y_train) == 30


def test_fashion_mnist_truncated_file_is_named(tmp_path):
    _, paths = write_fake_fashion(tmp_path)
    bad = paths["train-images-idx3-ubyte"]
    with open(bad, "rb") as f:
        good = gzip.decompress(f.read())
    with gzip.open(bad, "wb") as f:
        f.write(good[: len(good) - 100])  # valid gzip, short payload
    with pytest.raises(DatasetCorruptError, match="train-images-idx3-ubyte.gz") as info:
        fashion_mnist(root=tmp_path)
    assert "truncated" in str(info.value) and "--reinstall" in str(info.value)


def test_fashion_mnist_damaged_gzip_is_named(tmp_path):
    _, paths = write_fake_fashion(tmp_path)
    bad = paths["t10k-images-idx3-ubyte"]
    with open(bad, "rb") as f:
        blob = f.read()
    with open(bad, "wb") as f:
        f.write(blob[: len(blob) // 2])  # cut the gzip stream itself
    with pytest.raises(DatasetCorruptError, match="t10k-images-idx3-ubyte.gz"):
        fashion_mnist(root=tmp_path)


def test_fashion_mnist_bad_magic_is_named(tmp_path):
    _, paths = write_fake_fashion(tmp_path, gz=False)
    bad = paths["t10k-labels-idx1-ubyte"]
    with open(bad, "rb") as f:
        blob = bytearray(f.read())
    blob[2] = 0x77
    with open(bad, "wb") as f:
        f.write(bytes(blob))
    with pytest.raises(DatasetCorruptError, match="t10k-labels-idx1-ubyte.*magic"):
        fashion_mnist(root=tmp_path)


def test_fashion_mnist_label_image_count_mismatch(tmp_path):
    _, paths = write_fake_fashion(tmp_path, gz=False)
    with open(paths["train-labels-idx1-ubyte"], "wb") as f:
        f.write(idx_bytes(np.zeros(29, np.uint8)))
    with pytest.raises(DatasetCorruptError, match="29 labels.*30 images"):
        fashion_mnist(root=tmp_path)


def test_fashion_mnist_cache_sees_a_changed_file(tmp_path):
    _, paths = write_fake_fashion(tmp_path, gz=False, seed=0)
    first = fashion_mnist(root=tmp_path).x_train.copy()
    arrays, _ = write_fake_fashion(tmp_path, gz=False, seed=1)
    os.utime(paths["train-images-idx3-ubyte"], ns=(1, 1))  # force a different mtime
    second = fashion_mnist(root=tmp_path).x_train
    assert not np.array_equal(first, second)
    np.testing.assert_array_equal(
        np.rint(second[..., 0] * 255).astype(np.uint8), arrays["train-images-idx3-ubyte"]
    )


@pytest.mark.parametrize(
    "kwargs, exc",
    [
        ({"limit_train": 0}, ValueError),
        ({"limit_test": 10001}, ValueError),
        ({"limit_train": 1.5}, TypeError),
        ({"limit_test": True}, TypeError),
    ],
)
def test_fashion_mnist_bad_limits(kwargs, exc, tmp_path):
    write_fake_fashion(tmp_path)
    with pytest.raises(exc, match=next(iter(kwargs))):
        fashion_mnist(root=tmp_path, **kwargs)


def test_fashion_mnist_limit_beyond_file_size(tmp_path):
    write_fake_fashion(tmp_path, n_train=30)
    with pytest.raises(ValueError, match="between 1 and 30"):
        fashion_mnist(root=tmp_path, limit_train=31)


# --------------------------------------------------------------------------- sampling


def test_stratified_indices_follow_class_proportions():
    y = np.repeat(np.arange(4), [100, 50, 30, 20])
    idx = stratified_indices(y, 40, np.random.default_rng(0))
    assert len(idx) == 40 and len(np.unique(idx)) == 40
    assert np.all(np.diff(idx) > 0)
    np.testing.assert_array_equal(np.bincount(y[idx]), [20, 10, 6, 4])
    train, test = stratified_split(y, 0.25, np.random.default_rng(1))
    assert len(np.intersect1d(train, test)) == 0 and len(train) + len(test) == len(y)


# --------------------------------------------------------------------------- IMU watch


def test_imu_watch_windows(watch):
    w = watch
    assert isinstance(w, IMUWindows)
    assert w.x.shape == (4677, 100, 6) and w.x.dtype == np.float32
    assert w.y.dtype == np.int64 and w.subject.shape == (4677,)
    assert (w.window, w.step, w.sample_rate_hz) == (100, 50, 50.0)
    assert w.class_names == ("PEN", "ABD", "FEL", "IR", "ER", "TRAP", "ROW")
    assert w.channel_names == ("ax", "ay", "az", "wx", "wy", "wz")
    assert w.subjects == tuple(range(1, 11))
    counts = np.bincount(w.y, minlength=7)
    assert counts.sum() == 4677 and counts.min() > 400
    assert np.isfinite(w.x).all()
    assert set(np.unique(w.side)) == {0, 1}


def test_imu_watch_windows_are_slices_of_the_recordings(watch):
    raw = np.load(imu_module._default_source(), allow_pickle=True).item()
    w = watch
    for rec_id in (0, 57, 139):
        rows = np.flatnonzero(w.recording == rec_id)
        rec = raw["X"][rec_id]
        assert len(rows) == (len(rec) - 100) // 50 + 1
        for k, row in enumerate(rows):
            np.testing.assert_array_equal(w.x[row], rec[50 * k : 50 * k + 100].astype(np.float32))
        assert (w.y[rows] == raw["y"][rec_id]).all()
        assert (w.subject[rows] == raw["subject"][rec_id]).all()


def test_imu_watch_window_and_overlap_arguments():
    w = imu_watch(window_s=1.0, overlap=0.0)
    assert w.x.shape[1:] == (50, 6) and w.step == 50
    raw = np.load(imu_module._default_source(), allow_pickle=True).item()
    assert len(w) == sum(len(r) // 50 for r in raw["X"])
    w75 = imu_watch(window_s=2.0, overlap=0.75)
    assert w75.step == 25 and len(w75) == sum((len(r) - 100) // 25 + 1 for r in raw["X"])


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"overlap": 1.0}, "overlap"),
        ({"overlap": -0.1}, "overlap"),
        ({"window_s": 0}, "window_s"),
        ({"window_s": 0.001}, "shorter than one sample"),
        ({"window_s": 100.0}, "longer than every recording"),
    ],
)
def test_imu_watch_bad_arguments(kwargs, fragment):
    with pytest.raises(ValueError, match=fragment):
        imu_watch(**kwargs)


def test_split_by_subject_has_no_overlap(watch):
    train, test = split_by_subject(watch, test_subjects=(9, 10))
    assert set(train.subjects) == set(range(1, 9)) and test.subjects == (9, 10)
    assert not set(train.subjects) & set(test.subjects)
    assert not set(np.unique(train.recording)) & set(np.unique(test.recording))
    assert len(train) + len(test) == len(watch)
    assert train.x.shape[1:] == (100, 6)
    one_train, one_test = split_by_subject(watch, 3)
    assert one_test.subjects == (3,) and 3 not in one_train.subjects


@pytest.mark.parametrize(
    "subjects, fragment",
    [((11,), "unknown: \\[11\\]"), ((), "non-empty"), (tuple(range(1, 11)), "every subject")],
)
def test_split_by_subject_bad_subjects(watch, subjects, fragment):
    with pytest.raises(ValueError, match=fragment):
        split_by_subject(watch, test_subjects=subjects)


def test_channel_stats_from_training_subjects_only(watch):
    train, test = split_by_subject(watch, test_subjects=(9, 10))
    stats = channel_stats(train)
    assert isinstance(stats, ChannelStats) and stats.mean.shape == (6,)
    flat = train.x.reshape(-1, 6).astype(np.float64)
    np.testing.assert_allclose(stats.mean, flat.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(stats.std, flat.std(0), rtol=1e-5)
    normed = stats.apply(train)
    z = normed.x.reshape(-1, 6).astype(np.float64)
    np.testing.assert_allclose(z.mean(0), 0.0, atol=1e-4)
    np.testing.assert_allclose(z.std(0), 1.0, atol=1e-4)
    # The test subjects are transformed with the training statistics, not their own.
    normed_test = stats.apply(test)
    np.testing.assert_allclose(normed_test.x, (test.x - stats.mean) / stats.std, rtol=1e-6)
    assert np.abs(normed_test.x.reshape(-1, 6).mean(0)).max() > 1e-3
    d = stats.to_dict()
    assert d["channel_names"] == list(watch.channel_names) and len(d["mean"]) == 6
    with pytest.raises(ValueError, match="channels"):
        stats.apply(np.zeros((2, 100, 5), np.float32))


def test_imu_watch_missing_source(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="pip install seglearn"):
        imu_watch(source=tmp_path / "absent.npy")


def test_imu_watch_without_seglearn(monkeypatch):
    real = importlib.util.find_spec

    def fake(name, *args, **kwargs):
        return None if name == "seglearn" else real(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", fake)
    with pytest.raises(DatasetNotFoundError, match="pip install seglearn") as info:
        imu_watch()
    assert isinstance(info.value, FileNotFoundError)


def test_imu_watch_corrupt_source(tmp_path):
    bad = tmp_path / "watch.npy"
    np.save(bad, np.array({"X": [np.zeros((200, 6))], "y": np.zeros(1)}, dtype=object))
    with pytest.raises(DatasetCorruptError, match="expected a dict with keys"):
        imu_watch(source=bad)
    garbage = tmp_path / "garbage.npy"
    garbage.write_bytes(b"not a numpy file")
    with pytest.raises(DatasetCorruptError, match="garbage.npy"):
        imu_watch(source=garbage)


# --------------------------------------------------------------------------- digits


def test_digits_split():
    d = digits()
    assert d.x_train.shape[1:] == (8, 8, 1) and d.x_train.dtype == np.float32
    assert len(d.y_train) + len(d.y_test) == 1797
    assert len(d.y_test) == round(1797 * 0.25)
    assert d.x_train.min() == 0.0 and d.x_train.max() == 1.0
    assert d.num_classes == 10
    full_counts = np.bincount(np.concatenate([d.y_train, d.y_test]))
    test_counts = np.bincount(d.y_test, minlength=10)
    assert np.abs(test_counts - full_counts * 0.25).max() <= 1
    # x / 16 of sklearn's integer images
    from sklearn.datasets import load_digits

    assert set(np.unique(np.rint(d.x_test * 16))) <= set(range(17))
    assert np.isclose(d.x_train.sum() + d.x_test.sum(), load_digits().images.sum() / 16)


def test_digits_seeded():
    a, b, c = digits(seed=0), digits(seed=0), digits(seed=1)
    np.testing.assert_array_equal(a.x_test, b.x_test)
    assert not np.array_equal(a.y_test, c.y_test)


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.2, 1.5])
def test_digits_bad_fraction(fraction):
    with pytest.raises(ValueError, match="test_fraction"):
        digits(test_fraction=fraction)
