"""The data layer: IDX/CIFAR readers, TFDS data sources without TensorFlow, normalisation,
deterministic batches, augmentation, and the offline path (no network, clear errors)."""

from __future__ import annotations

import gzip
import os
import pickle
import shutil
import socket
import time
from pathlib import Path

import numpy as np
import pytest

from eqn.runtime import _data, _data_files
from eqn.runtime._data import (
    NORM_STATS,
    ArrayDataset,
    DatasetUnavailable,
    channel_stats,
    clear_cache,
    flip_crop,
    load_dataset,
    one_hot,
    read_idx,
)

TFDS_FIXTURE = Path(__file__).resolve().parent.parent / "data" / "tfds_fashion_mnist_tiny"


def _fashion_dir() -> Path | None:
    d = Path(os.environ.get("EQN_FASHION_MNIST_DIR") or _data.DEBIAN_FASHION_MNIST_DIR)
    names = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
    ok = all((d / n).is_file() or (d / (n + ".gz")).is_file() for n in names)
    return d if ok else None


FASHION_DIR = _fashion_dir()
needs_fashion = pytest.mark.skipif(
    FASHION_DIR is None,
    reason="Fashion-MNIST IDX files not found: apt-get install dataset-fashion-mnist "
    "(or set EQN_FASHION_MNIST_DIR)",
)


@pytest.fixture(scope="module")
def empty_tfds_dir(tmp_path_factory):
    """A TFDS data_dir with nothing prepared: the TFDS attempt misses and the local files serve."""
    return tmp_path_factory.mktemp("tfds_empty")


@pytest.fixture(scope="module")
def fashion(empty_tfds_dir):
    return {split: load_dataset("fashion_mnist", split, data_dir=empty_tfds_dir) for split in ("train", "test")}


@pytest.fixture(scope="module")
def fashion_raw(empty_tfds_dir):
    return load_dataset("fashion_mnist", "train", data_dir=empty_tfds_dir, normalize=False)


def _write_idx(path: Path, array: np.ndarray, code: int, compress: bool = False):
    header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    big = array.astype(array.dtype.newbyteorder(">")) if array.dtype.itemsize > 1 else array
    data = header + big.tobytes()
    path.write_bytes(gzip.compress(data) if compress else data)


def _synthetic(n=37, shape=(3, 8, 8), classes=5, seed=0) -> ArrayDataset:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, *shape)).astype(np.float32)
    y = rng.integers(0, classes, size=n)
    return ArrayDataset(x, y, classes, name="synthetic", split="train")


# ---------------------------------------------------------------------------------------------
# Readers


def test_read_idx_handmade(tmp_path):
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4) * 7
    _write_idx(tmp_path / "img", images, 0x08)
    _write_idx(tmp_path / "img.gz", images, 0x08, compress=True)
    ints = np.array([-5, 0, 70000, 2**31 - 1], np.int32)
    _write_idx(tmp_path / "ints", ints, 0x0C)
    floats = np.array([[0.5, -1.25]], np.float64)
    _write_idx(tmp_path / "floats", floats, 0x0E)

    for name in ("img", "img.gz"):
        got = read_idx(tmp_path / name)
        assert got.dtype == np.uint8 and got.shape == (2, 3, 4)
        np.testing.assert_array_equal(got, images)
    np.testing.assert_array_equal(read_idx(tmp_path / "ints"), ints)
    np.testing.assert_array_equal(read_idx(tmp_path / "floats"), floats)

    (tmp_path / "short").write_bytes((tmp_path / "img").read_bytes()[:-1])
    with pytest.raises(ValueError, match="IDX header says shape"):
        read_idx(tmp_path / "short")
    (tmp_path / "junk").write_bytes(b"\x89PNG\r\n\x1a\n")
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(tmp_path / "junk")


def test_mnist_from_local_idx_directory(tmp_path, monkeypatch):
    rng = np.random.default_rng(1)
    raw = {}
    for prefix, n in (("train", 6), ("t10k", 4)):
        x = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        y = rng.integers(0, 10, size=n).astype(np.uint8)
        _write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", x, 0x08, compress=True)
        _write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte", y, 0x08)  # one uncompressed, as allowed
        raw[prefix] = (x, y)
    monkeypatch.setenv("EQN_MNIST_DIR", str(tmp_path))
    ds = load_dataset("mnist", "test", data_dir=tmp_path / "tfds", normalize=False)
    assert ds.source == str(tmp_path) and ds.images.shape == (4, 1, 28, 28) and ds.labels.dtype == np.int32
    np.testing.assert_allclose(ds.images[:, 0] * 255, raw["t10k"][0], atol=1e-4)
    np.testing.assert_array_equal(ds.labels, raw["t10k"][1])
    norm = load_dataset("mnist", "train", data_dir=tmp_path / "tfds")
    (mean,), (std,) = NORM_STATS["mnist"]
    np.testing.assert_allclose(norm.images, (raw["train"][0][:, None] / 255 - mean) / std, rtol=1e-5, atol=1e-5)


def test_cifar_from_local_pickles(tmp_path, monkeypatch):
    rng = np.random.default_rng(2)
    c10, c100 = tmp_path / "cifar-10-batches-py", tmp_path / "cifar-100-python"
    c10.mkdir()
    c100.mkdir()
    batches = []
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, size=(2, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, size=2)]
        (c10 / name).write_bytes(pickle.dumps({b"data": data, b"labels": labels}))
        batches.append((data, labels))
    data100 = rng.integers(0, 256, size=(3, 3072), dtype=np.uint8)
    for name in ("train", "test"):
        batch = {b"data": data100, b"fine_labels": [99, 0, 42], b"coarse_labels": [1, 2, 3]}
        (c100 / name).write_bytes(pickle.dumps(batch))
    monkeypatch.setenv("EQN_CIFAR10_DIR", str(c10))
    monkeypatch.setenv("EQN_CIFAR100_DIR", str(c100))

    train = load_dataset("cifar10", "train", data_dir=tmp_path / "tfds", normalize=False)
    assert train.images.shape == (10, 3, 32, 32) and train.num_classes == 10
    expected = np.concatenate([d for d, _ in batches[:5]]).reshape(10, 3, 32, 32)
    np.testing.assert_allclose(train.images * 255, expected, atol=1e-3)
    np.testing.assert_array_equal(train.labels, sum((lab for _, lab in batches[:5]), []))
    test = load_dataset("cifar10", "test", data_dir=tmp_path / "tfds", flatten=True)
    assert test.images.shape == (2, 3072) and test.image_shape == (3, 32, 32)

    c = load_dataset("cifar100", "test", data_dir=tmp_path / "tfds")
    assert c.num_classes == 100 and list(c.labels) == [99, 0, 42]
    mean, std = (np.asarray(v, np.float32)[:, None, None] for v in NORM_STATS["cifar100"])
    np.testing.assert_allclose(c.images, (data100.reshape(3, 3, 32, 32) / 255 - mean) / std, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# Real Fashion-MNIST (Debian's IDX files)


@needs_fashion
def test_fashion_mnist_shapes_labels(fashion):
    train, test = fashion["train"], fashion["test"]
    assert len(train) == 60000 and len(test) == 10000
    for ds in (train, test):
        assert ds.images.shape[1:] == (1, 28, 28) and ds.image_shape == (1, 28, 28)
        assert ds.images.dtype == np.float32 and ds.labels.dtype == np.int32
        assert ds.num_classes == 10 and ds.labels.min() == 0 and ds.labels.max() == 9
        assert ds.source == str(FASHION_DIR)
    np.testing.assert_array_equal(np.bincount(train.labels), [6000] * 10)
    line = train.describe()
    assert "fashion_mnist/train" in line and "60000" in line and "[1, 28, 28]" in line and str(FASHION_DIR) in line
    assert "\n" not in line


@needs_fashion
def test_fashion_mnist_normalisation(fashion, fashion_raw):
    train = fashion["train"]
    assert abs(float(train.images.mean(dtype=np.float64))) < 1e-4
    assert abs(float(train.images.std(dtype=np.float64)) - 1) < 1e-4
    test_mean = float(fashion["test"].images.mean(dtype=np.float64))
    assert abs(test_mean) < 0.05 and test_mean != 0.0  # standardised with the *train* statistics
    assert fashion_raw.images.min() == 0.0 and fashion_raw.images.max() == 1.0 and not fashion_raw.normalized
    mean, std = channel_stats(fashion_raw.images)
    np.testing.assert_allclose(mean, NORM_STATS["fashion_mnist"][0], rtol=1e-6)
    np.testing.assert_allclose(std, NORM_STATS["fashion_mnist"][1], rtol=1e-6)


@needs_fashion
def test_fashion_mnist_flatten(fashion, empty_tfds_dir):
    flat = load_dataset("fashion_mnist", "test", data_dir=empty_tfds_dir, flatten=True)
    assert flat.images.shape == (10000, 784) and flat.flat and flat.image_shape == (1, 28, 28)
    np.testing.assert_array_equal(flat.images, fashion["test"].images.reshape(10000, 784))
    x, y = next(flat.batches(32, seed=0, epoch=0))
    assert x.shape == (32, 784) and y.shape == (32, 10)


@needs_fashion
def test_offline_load_needs_no_network(fashion, tmp_path, monkeypatch, capfd):
    """TFDS has nothing prepared and cannot download; the local files serve, quickly and quietly."""

    def no_network(*args, **kwargs):
        raise AssertionError("the data layer tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    clear_cache()
    start = time.perf_counter()
    ds = load_dataset("fashion_mnist", "train", data_dir=tmp_path / "tfds")
    elapsed = time.perf_counter() - start
    assert elapsed < 10, f"offline load took {elapsed:.1f} s"
    assert len(ds) == 60000 and ds.source == str(FASHION_DIR)
    err = capfd.readouterr()
    assert "Traceback" not in err.out + err.err


# ---------------------------------------------------------------------------------------------
# TFDS, read without TensorFlow


@pytest.fixture
def tiny_tfds_dir(tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")
    version = str(tfds.builder("fashion_mnist").version)
    fixture = TFDS_FIXTURE / "fashion_mnist" / version
    if not fixture.is_dir():
        pytest.skip(f"the tiny TFDS fixture is fashion_mnist 3.0.1; this TFDS builds version {version}")
    target = tmp_path / "tfds" / "fashion_mnist" / version
    target.mkdir(parents=True)
    for f in fixture.iterdir():
        if f.suffix == ".gz":
            (target / f.stem).write_bytes(gzip.decompress(f.read_bytes()))
        else:
            shutil.copy(f, target / f.name)
    return tmp_path / "tfds"


def test_tfds_prepared_array_record(tiny_tfds_dir, capfd):
    ds = load_dataset("fashion_mnist", "train", data_dir=tiny_tfds_dir, source="tfds", normalize=False)
    assert ds.source == "tfds" and str(tiny_tfds_dir) in ds.location and "tfds" in ds.describe()
    assert ds.images.shape == (16, 1, 28, 28) and ds.images.dtype == np.float32 and ds.labels.dtype == np.int32
    assert 0 <= ds.images.min() and ds.images.max() <= 1 and ds.images.max() > 0.5
    norm = load_dataset("fashion_mnist", "train", data_dir=tiny_tfds_dir)  # "auto" finds TFDS first
    assert norm.source == "tfds"
    (mean,), (std,) = NORM_STATS["fashion_mnist"]
    np.testing.assert_allclose(norm.images, (ds.images - mean) / std, rtol=1e-5, atol=1e-5)
    if FASHION_DIR is not None:  # the fixture holds the first 16 IDX examples, in TFDS's own order
        local = load_dataset("fashion_mnist", "train", data_dir=tiny_tfds_dir / "none", normalize=False).subset(16)
        key = lambda d: sorted(x.tobytes() + bytes([int(y)]) for x, y in zip(d.images, d.labels))  # noqa: E731
        assert key(ds) == key(local)
    assert "Traceback" not in "".join(capfd.readouterr())


# ---------------------------------------------------------------------------------------------
# Unavailable datasets


def test_unavailable_mnist_names_what_to_do(tmp_path, monkeypatch):
    monkeypatch.delenv("EQN_MNIST_DIR", raising=False)
    with pytest.raises(DatasetUnavailable) as info:
        load_dataset("mnist", "train", data_dir=tmp_path)
    assert isinstance(info.value, RuntimeError)
    msg = str(info.value)
    assert "EQN_MNIST_DIR" in msg and "tfds build mnist" in msg and "tensorflow-cpu" in msg
    assert "not prepared in" in msg  # what was tried


def test_unavailable_fashion_mnist_names_the_debian_package(tmp_path, monkeypatch):
    monkeypatch.setenv("EQN_FASHION_MNIST_DIR", str(tmp_path / "empty"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetUnavailable, match="apt-get install dataset-fashion-mnist") as info:
        load_dataset("fashion_mnist", "test", data_dir=tmp_path / "tfds")
    assert "missing t10k-images-idx3-ubyte" in str(info.value)
    monkeypatch.delenv("EQN_FASHION_MNIST_DIR")
    monkeypatch.setattr(_data_files, "DEBIAN_FASHION_MNIST_DIR", str(tmp_path / "not-installed"))
    with pytest.raises(DatasetUnavailable, match="apt-get install dataset-fashion-mnist"):
        load_dataset("fashion_mnist", "train", data_dir=tmp_path / "tfds2", source="local")


def test_unknown_dataset_and_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="unknown dataset"):
        load_dataset("svhn", "train")
    with pytest.raises(ValueError, match="source"):
        load_dataset("mnist", "train", source="web")
    with pytest.raises(DatasetUnavailable, match="no local-file reader"):
        load_dataset("imagenet_resized/32x32", "validation", data_dir=tmp_path)


# ---------------------------------------------------------------------------------------------
# Batches, subsets, augmentation


def test_one_hot():
    got = one_hot(np.array([2, 0, 1]), 3)
    np.testing.assert_array_equal(got, [[0, 0, 1], [1, 0, 0], [0, 1, 0]])
    assert got.dtype == np.float32
    with pytest.raises(ValueError):
        one_hot([3], 3)
    with pytest.raises(ValueError):
        one_hot([-1], 3)


def test_subset_is_the_first_k():
    ds = _synthetic()
    sub = ds.subset(10)
    assert len(sub) == 10 and sub.name == ds.name and sub.num_classes == ds.num_classes
    np.testing.assert_array_equal(sub.images, ds.images[:10])
    np.testing.assert_array_equal(sub.labels, ds.labels[:10])
    assert len(ds.subset(0)) == 0
    with pytest.raises(ValueError):
        ds.subset(len(ds) + 1)


def _collect(it):
    return [(x.copy(), y.copy()) for x, y in it]


def test_batches_deterministic_per_seed_and_epoch():
    ds = _synthetic(n=50)
    a = _collect(ds.batches(8, seed=3, epoch=1))
    b = _collect(ds.batches(8, seed=3, epoch=1))
    assert len(a) == ds.num_batches(8) == 6
    for (xa, ya), (xb, yb) in zip(a, b):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    assert not np.array_equal(ds.order(3, 1), ds.order(3, 2))  # another epoch, another order
    assert not np.array_equal(ds.order(3, 1), ds.order(4, 1))
    np.testing.assert_array_equal(ds.order(3, 1, shuffle=False), np.arange(50))
    x0, y0 = a[0]
    idx = ds.order(3, 1)[:8]
    np.testing.assert_array_equal(x0, ds.images[idx])
    np.testing.assert_array_equal(y0, one_hot(ds.labels[idx], ds.num_classes))
    assert x0.dtype == np.float32 and y0.shape == (8, 5)


def test_batches_cover_the_epoch_once():
    ds = _synthetic(n=50)
    full = _collect(ds.batches(8, seed=0, epoch=0, drop_remainder=False))
    assert len(full) == ds.num_batches(8, drop_remainder=False) == 7 and len(full[-1][0]) == 2
    seen = np.concatenate([x for x, _ in full]).reshape(50, -1)
    order = np.lexsort(seen.T)
    np.testing.assert_array_equal(seen[order], ds.images.reshape(50, -1)[np.lexsort(ds.images.reshape(50, -1).T)])
    plain = _collect(ds.batches(10, seed=5, epoch=9, shuffle=False))
    np.testing.assert_array_equal(np.concatenate([x for x, _ in plain]), ds.images)


@pytest.mark.parametrize("augment", [None, "flip_crop"])
def test_skip_equals_dropping_first_batches(augment):
    ds = _synthetic(n=50)
    full = _collect(ds.batches(8, seed=11, epoch=4, augment=augment))
    resumed = _collect(ds.batches(8, seed=11, epoch=4, augment=augment, skip=3))
    assert len(resumed) == len(full) - 3
    for (xa, ya), (xb, yb) in zip(full[3:], resumed):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    assert _collect(ds.batches(8, seed=11, epoch=4, skip=99)) == []


def test_flip_crop_shape_determinism_and_content():
    ds = _synthetic(n=40, shape=(3, 32, 32))
    a = _collect(ds.batches(16, seed=1, epoch=0, augment="flip_crop"))
    b = _collect(ds.batches(16, seed=1, epoch=0, augment="flip_crop"))
    c = _collect(ds.batches(16, seed=1, epoch=1, augment="flip_crop", shuffle=False))
    plain = _collect(ds.batches(16, seed=1, epoch=1, shuffle=False))
    for (xa, _), (xb, _) in zip(a, b):
        assert xa.shape == (16, 3, 32, 32) and xa.dtype == np.float32
        np.testing.assert_array_equal(xa, xb)
    assert not np.array_equal(c[0][0], plain[0][0])
    # Each augmented image is a 32x32 window of the zero-padded (possibly flipped) original.
    for aug, orig in zip(c[0][0][:6], plain[0][0][:6]):
        candidates = []
        for img in (orig, orig[..., ::-1]):
            padded = np.pad(img, ((0, 0), (2, 2), (2, 2)))
            candidates += [padded[:, i:i + 32, j:j + 32] for i in range(5) for j in range(5)]
        assert any(np.array_equal(aug, cand) for cand in candidates)


def test_flip_crop_function_and_flat_datasets():
    rng_x = np.random.default_rng(0).normal(size=(64, 3, 8, 8)).astype(np.float32)
    flipped = flip_crop(rng_x, np.random.default_rng(7), pad=0)
    is_flip = [np.array_equal(f, x[..., ::-1]) for f, x in zip(flipped, rng_x)]
    is_same = [np.array_equal(f, x) for f, x in zip(flipped, rng_x)]
    assert all(f or s for f, s in zip(is_flip, is_same)) and 10 < sum(is_flip) < 54
    flat = _synthetic(n=20, shape=(3, 8, 8)).flatten()
    x, _ = next(flat.batches(5, seed=0, epoch=0, augment="flip_crop"))
    assert x.shape == (5, 192)
    custom, _ = next(flat.batches(5, seed=0, epoch=0, augment=lambda x, rng: x * 0))
    assert custom.shape == (5, 192) and not custom.any()
    with pytest.raises(ValueError, match="unknown augmentation"):
        next(flat.batches(5, seed=0, epoch=0, augment="mixup"))


def test_batch_argument_checks():
    ds = _synthetic(n=10)
    with pytest.raises(ValueError):
        ds.num_batches(0)
    with pytest.raises(ValueError):
        next(ds.batches(2, seed=-1, epoch=0))
    with pytest.raises(TypeError):
        next(ds.batches(2, seed=0.5, epoch=0))
    with pytest.raises(ValueError):
        ArrayDataset(np.zeros((3, 1, 2, 2), np.float32), np.zeros(4), 2)


def test_digits_is_scikit_learns_set_split_in_its_order():
    sklearn_datasets = pytest.importorskip("sklearn.datasets")
    reference = sklearn_datasets.load_digits()
    train = load_dataset("digits", "train", normalize=False)
    test = load_dataset("digits", "test", normalize=False)
    assert (len(train), len(test)) == (_data.DIGITS_TRAIN, 1797 - _data.DIGITS_TRAIN) == (1437, 360)
    assert train.images.shape[1:] == (1, 8, 8) and train.num_classes == 10
    images = np.concatenate([train.images, test.images])[:, 0]
    # 17 grey levels 0..16 scaled to [0, 1], to within the uint8 rounding
    np.testing.assert_allclose(images, reference.images / 16, atol=0.5 / 255)
    np.testing.assert_array_equal(np.concatenate([train.labels, test.labels]), reference.target)
    assert set(test.labels) == set(range(10))  # every class is in the test split
    standardized = load_dataset("digits", "train")
    assert abs(float(standardized.images.mean())) < 1e-5 and abs(float(standardized.images.std()) - 1) < 1e-5
