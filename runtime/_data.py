"""The data layer: image-classification datasets as in-memory numpy arrays, and their batches.

`load_dataset(name, split)` returns an `ArrayDataset` for mnist, fashion_mnist, cifar10, cifar100,
imagenet_resized/32x32 and digits (scikit-learn's 8×8 handwritten digits, split as `_data_files`
says). Images come out float32, channels-first `[N, C, H, W]` (the layout of the models' conv
inputs), scaled to [0, 1] and, with `normalize=True`, standardised per channel with
the *training-set* mean and std (`NORM_STATS`); `flatten=True` gives `[N, C*H*W]` for MLPs.
Labels are int32.

Where the data comes from, in order (`source="auto"`):

1. tensorflow-datasets, only when the dataset is already *prepared* in `data_dir` (or TFDS's
   default, `$TFDS_DATA_DIR` or ~/tensorflow_datasets). Array-record/parquet datasets are read
   through `builder.as_data_source()`, which needs no TensorFlow (images decode with PIL);
   TFRecord datasets need TensorFlow and are read through `as_dataset` when it is installed.
   Nothing is downloaded unless `download=True`: offline, TFDS's downloader retries for minutes
   (about 200 s measured here) before failing, and preparing a dataset imports TensorFlow.
2. Local files: the IDX files of (Fashion-)MNIST (`$EQN_FASHION_MNIST_DIR`, else Debian's
   `dataset-fashion-mnist` in /usr/share/datasets/fashion-mnist; `$EQN_MNIST_DIR`; Debian has no
   MNIST package) and the "python version" pickles of CIFAR (`$EQN_CIFAR10_DIR` holding
   data_batch_1..5 and test_batch, `$EQN_CIFAR100_DIR` holding train and test).

If neither works, `DatasetUnavailable` says what was tried and what to install or where to put the
files. Offline is a normal case: no TFDS traceback or network access happens on the way.

Batches are deterministic: the order of epoch `e` under seed `s` depends only on `(s, e)` (a numpy
Generator seeded with `SeedSequence([s, e])`) and the augmentation of batch `i` only on `(s, e, i)`,
so a run resumed at batch `i` (`skip=i`) sees exactly the batches it would have seen.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import operator
import os
from typing import Callable, Iterator

import numpy as np

from ._data_files import DEBIAN_FASHION_MNIST_DIR, DIGITS_TRAIN, _first_line, _load_local, _Miss, read_idx

__all__ = [
    "DEBIAN_FASHION_MNIST_DIR",
    "DIGITS_TRAIN",
    "ArrayDataset",
    "DatasetUnavailable",
    "NORM_STATS",
    "channel_stats",
    "clear_cache",
    "flip_crop",
    "load_dataset",
    "one_hot",
    "read_idx",
]


# Per-channel mean and std of the training split, pixels scaled to [0, 1] (population std over all
# pixels of all training images). Fashion-MNIST: computed here from Debian's IDX files (the test
# suite recomputes it). MNIST, CIFAR-10, CIFAR-100: the standard values computed the same way
# (CIFAR's often quoted (0.2023, 0.1994, 0.2010) is a mean of per-image stds, not used here).
# ImageNet32 has no stored constants: they are computed from its training split on first use.
NORM_STATS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "mnist": ((0.1306604762738431,), (0.3081078038564622,)),
    "fashion_mnist": ((0.2860405969887955,), (0.35302424451492254,)),
    "cifar10": ((0.49139968, 0.48215841, 0.44653091), (0.24703223, 0.24348513, 0.26158784)),
    "cifar100": ((0.50707516, 0.48654887, 0.44091784), (0.26733429, 0.25643846, 0.27615047)),
}


class DatasetUnavailable(RuntimeError):
    """The dataset is neither prepared for TFDS nor present as local files; the message says how
    to make it available."""


@dataclasses.dataclass(frozen=True)
class _Spec:
    name: str
    tfds_name: str  # empty: not a TFDS dataset
    num_classes: int
    shape: tuple[int, int, int]  # (C, H, W)
    splits: tuple[str, ...]  # splits of the local files
    env: str | None  # environment variable naming a local directory
    local_kind: str | None  # "idx", "cifar10", "cifar100", "sklearn" or None
    how: str  # how to make it available locally


_FASHION_FILES = ("train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, "
                  "t10k-labels-idx1-ubyte.gz")
_SPECS = {
    "mnist": _Spec(
        "mnist", "mnist", 10, (1, 28, 28), ("train", "test"), "EQN_MNIST_DIR", "idx",
        "set EQN_MNIST_DIR to a directory holding the four MNIST IDX files "
        f"({_FASHION_FILES}; gzipped or not) from http://yann.lecun.com/exdb/mnist/ "
        "(Debian has no MNIST package)",
    ),
    "fashion_mnist": _Spec(
        "fashion_mnist", "fashion_mnist", 10, (1, 28, 28), ("train", "test"), "EQN_FASHION_MNIST_DIR", "idx",
        "apt-get install dataset-fashion-mnist (IDX files in /usr/share/datasets/fashion-mnist), or set "
        f"EQN_FASHION_MNIST_DIR to a directory holding {_FASHION_FILES} "
        "(from https://github.com/zalandoresearch/fashion-mnist)",
    ),
    "cifar10": _Spec(
        "cifar10", "cifar10", 10, (3, 32, 32), ("train", "test"), "EQN_CIFAR10_DIR", "cifar10",
        "set EQN_CIFAR10_DIR to the extracted cifar-10-batches-py directory (data_batch_1..5, test_batch) "
        "of https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
    ),
    "cifar100": _Spec(
        "cifar100", "cifar100", 100, (3, 32, 32), ("train", "test"), "EQN_CIFAR100_DIR", "cifar100",
        "set EQN_CIFAR100_DIR to the extracted cifar-100-python directory (train, test) "
        "of https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
    ),
    "digits": _Spec(
        "digits", "", 10, (1, 8, 8), ("train", "test"), None, "sklearn",
        "pip install scikit-learn (its wheel ships the 1,797 images)",
    ),
    "imagenet_resized/32x32": _Spec(
        "imagenet_resized/32x32", "imagenet_resized/32x32", 1000, (3, 32, 32), (), None, None,
        "ImageNet32 has no local-file reader: it needs a prepared TFDS dataset (manual download of "
        "Imagenet32_train.zip and Imagenet32_val.zip from https://image-net.org into the TFDS manual_dir)",
    ),
}
_ALIASES = {"fashion-mnist": "fashion_mnist", "fmnist": "fashion_mnist", "cifar-10": "cifar10",
            "cifar-100": "cifar100", "imagenet32": "imagenet_resized/32x32"}


def _spec(name: str) -> _Spec:
    key = _ALIASES.get(name.lower(), name.lower())
    if key not in _SPECS:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(_SPECS)}")
    return _SPECS[key]


# --------------------------------------------------------------------------------------------
# Helpers


def one_hot(labels, num_classes: int, dtype=np.float32) -> np.ndarray:
    """`[N]` integer labels → `[N, num_classes]` one-hot rows."""
    labels = np.asarray(labels)
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes}), got [{labels.min()}, {labels.max()}]")
    return np.eye(num_classes, dtype=dtype)[labels]




def channel_stats(images: np.ndarray, chunk: int = 8192) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and (population) std of `[N, C, H, W]` images, in float64. uint8 images
    are scaled to [0, 1] first."""
    scale = 1 / 255 if images.dtype == np.uint8 else 1.0
    c = images.shape[1]
    total = np.zeros(c)
    squares = np.zeros(c)
    for start in range(0, len(images), chunk):
        x = images[start:start + chunk].astype(np.float64) * scale
        total += x.sum(axis=(0, 2, 3))
        squares += (x * x).sum(axis=(0, 2, 3))
    n = len(images) * images.shape[2] * images.shape[3]
    mean = total / n
    return mean, np.sqrt(np.maximum(squares / n - mean**2, 0.0))


def flip_crop(x: np.ndarray, rng: np.random.Generator, *, pad: int = 2) -> np.ndarray:
    """Random horizontal flip (p = 0.5) and random crop back to H×W after `pad` pixels of zero
    padding on each side (holomorphic-ep App. E.2: 32×32 padded to 36×36, cropped to 32×32).
    `x` is `[B, C, H, W]`; zeros are the channel means when `x` is normalised, as in the paper,
    which normalises first and augments after."""
    b, c, h, w = x.shape
    flip = rng.random(b) < 0.5
    x = np.where(flip[:, None, None, None], x[..., ::-1], x)
    if pad <= 0:
        return x
    padded = np.zeros((b, c, h + 2 * pad, w + 2 * pad), x.dtype)
    padded[:, :, pad:pad + h, pad:pad + w] = x
    dy = rng.integers(0, 2 * pad + 1, size=b)
    dx = rng.integers(0, 2 * pad + 1, size=b)
    rows = (dy[:, None] + np.arange(h))[:, None, :, None]
    cols = (dx[:, None] + np.arange(w))[:, None, None, :]
    return padded[np.arange(b)[:, None, None, None], np.arange(c)[None, :, None, None], rows, cols]


def _flip(x, rng):
    return flip_crop(x, rng, pad=0)


_AUGMENTATIONS: dict[str, Callable] = {"flip_crop": flip_crop, "flip": _flip}


def _nonneg_int(value, what: str) -> int:
    try:
        value = operator.index(value)
    except TypeError:
        raise TypeError(f"{what} must be an integer, got {value!r}") from None
    if value < 0:
        raise ValueError(f"{what} must be >= 0, got {value}")
    return value


# --------------------------------------------------------------------------------------------
# The dataset


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class ArrayDataset:
    """Images and labels in memory.

    `images`: float32 `[N, C, H, W]`, or `[N, C*H*W]` when flattened; `labels`: int32 `[N]`;
    `image_shape`: `(C, H, W)` even when flattened (augmentation reshapes through it);
    `source`: "tfds", a local directory, or "memory"; `location`: where TFDS read from.
    """

    images: np.ndarray
    labels: np.ndarray
    num_classes: int
    name: str = "arrays"
    split: str = ""
    source: str = "memory"
    location: str = ""
    normalized: bool = False
    image_shape: tuple[int, ...] | None = None

    def __post_init__(self):
        images = np.asarray(self.images)
        labels = np.asarray(self.labels).astype(np.int32, copy=False)
        if labels.ndim != 1 or len(labels) != len(images):
            raise ValueError(f"{len(images)} images but labels of shape {labels.shape}")
        shape = self.image_shape
        if shape is None:
            shape = tuple(images.shape[1:]) if images.ndim == 4 else None
        elif int(np.prod(shape)) != int(np.prod(images.shape[1:])):
            raise ValueError(f"image_shape {shape} does not match images of shape {images.shape}")
        object.__setattr__(self, "images", images)
        object.__setattr__(self, "labels", labels)
        object.__setattr__(self, "image_shape", None if shape is None else tuple(int(s) for s in shape))

    def __len__(self) -> int:
        return len(self.labels)

    def __repr__(self) -> str:
        return f"ArrayDataset({self.describe()})"

    @property
    def flat(self) -> bool:
        return self.images.ndim == 2

    def describe(self) -> str:
        """One line: name, split, count, shape, classes, normalisation and where it came from."""
        where = self.source if self.source != "tfds" else f"tfds ({self.location})" if self.location else "tfds"
        split = f"/{self.split}" if self.split else ""
        norm = "normalized" if self.normalized else "[0,1]"
        return (f"{self.name}{split}: {len(self)} examples, x [{', '.join(map(str, self.images.shape[1:]))}] "
                f"{self.images.dtype} {norm}, {self.num_classes} classes, source {where}")

    def _replace(self, **changes) -> "ArrayDataset":
        return dataclasses.replace(self, **changes)

    def subset(self, k: int) -> "ArrayDataset":
        """The first `k` examples (deterministic; views, no copy)."""
        k = _nonneg_int(k, "k")
        if k > len(self):
            raise ValueError(f"subset({k}) of a dataset with {len(self)} examples")
        return self._replace(images=self.images[:k], labels=self.labels[:k])

    def flatten(self) -> "ArrayDataset":
        """The same data with images as `[N, C*H*W]`."""
        return self._replace(images=self.images.reshape(len(self.images), -1))

    def num_batches(self, batch_size: int, drop_remainder: bool = True) -> int:
        batch_size = _nonneg_int(batch_size, "batch_size")
        if batch_size == 0:
            raise ValueError("batch_size must be positive")
        return len(self) // batch_size if drop_remainder else -(-len(self) // batch_size)

    def order(self, seed: int, epoch: int, shuffle: bool = True) -> np.ndarray:
        """The example order of `epoch` under `seed`: a function of `(seed, epoch)` only."""
        seed, epoch = _nonneg_int(seed, "seed"), _nonneg_int(epoch, "epoch")
        if not shuffle:
            return np.arange(len(self))
        return np.random.default_rng(np.random.SeedSequence([seed, epoch])).permutation(len(self))

    def batches(self, batch_size: int, *, seed: int, epoch: int, shuffle: bool = True,
                drop_remainder: bool = True, augment: str | Callable | None = None,
                skip: int = 0) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield `(x, y_onehot)` numpy batches of `epoch`, starting at batch index `skip`.

        `augment`: None, "flip_crop" (random horizontal flip + random crop after 2 pixels of zero
        padding), "flip", or a function `f(x [B, C, H, W], rng) -> x`. The random numbers of batch
        `i` come from `SeedSequence([seed, epoch], spawn_key=(1, i))`, so `skip=i` gives exactly
        the batches `i, i+1, ...` of the full epoch.
        """
        n_batches = self.num_batches(batch_size, drop_remainder)
        skip = _nonneg_int(skip, "skip")
        order = self.order(seed, epoch, shuffle)
        if isinstance(augment, str):
            if augment not in _AUGMENTATIONS:
                raise ValueError(f"unknown augmentation {augment!r}; known: {', '.join(_AUGMENTATIONS)}")
            augment = _AUGMENTATIONS[augment]
        if augment is not None and self.image_shape is None:
            raise ValueError("augmentation needs images with a known [C, H, W] shape")
        for i in range(skip, n_batches):
            idx = order[i * batch_size:(i + 1) * batch_size]
            x = self.images[idx]
            if augment is not None:
                rng = np.random.default_rng(np.random.SeedSequence([seed, epoch], spawn_key=(1, i)))
                x = augment(x.reshape((len(idx), *self.image_shape)), rng).reshape(x.shape).astype(x.dtype, copy=False)
            yield x, one_hot(self.labels[idx], self.num_classes)


# --------------------------------------------------------------------------------------------
# Loading


_RAW_CACHE: dict[tuple, tuple[np.ndarray, np.ndarray, str, str]] = {}
_STATS_CACHE: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}


def clear_cache() -> None:
    """Forget the raw arrays and statistics kept from earlier loads in this process."""
    _RAW_CACHE.clear()
    _STATS_CACHE.clear()


def load_dataset(name: str, split: str, *, data_dir=None, normalize: bool = True, flatten: bool | None = None,
                 source: str = "auto", download: bool = False) -> ArrayDataset:
    """Load one split of a dataset as arrays in memory.

    Args:
        name: the TFDS name (mnist, fashion_mnist, cifar10, cifar100, imagenet_resized/32x32), or digits.
        split: "train" or "test" (ImageNet32: "train" or "validation").
        data_dir: the TFDS data directory (default: TFDS's own).
        normalize: standardise each channel with the training set's mean and std (`NORM_STATS`);
            otherwise pixels stay in [0, 1].
        flatten: images as `[N, C*H*W]` (None or False: `[N, C, H, W]`).
        source: "auto" (TFDS, then local files), "tfds" or "local".
        download: let TFDS download and prepare a missing dataset (needs network and TensorFlow;
            off by default because offline it retries for minutes).

    Returns:
        An `ArrayDataset` of float32 images and one-hot labels.

    Raises:
        DatasetUnavailable: no source has the data (the message says what to install).
        ValueError: an unknown name or source.
    """
    spec = _spec(name)
    if source not in ("auto", "tfds", "local"):
        raise ValueError(f"source must be 'auto', 'tfds' or 'local', got {source!r}")
    raw, labels, src, location = _load_raw(spec, split, data_dir, source, download)
    x = raw.astype(np.float32)
    x *= np.float32(1 / 255)
    if normalize:
        mean, std = _stats(spec, data_dir, source, download)
        x -= mean.astype(np.float32)[:, None, None]
        x /= std.astype(np.float32)[:, None, None]
    ds = ArrayDataset(x, labels, spec.num_classes, name=spec.name, split=split, source=src,
                      location=location, normalized=normalize, image_shape=raw.shape[1:])
    return ds.flatten() if flatten else ds


def _stats(spec: _Spec, data_dir, source, download) -> tuple[np.ndarray, np.ndarray]:
    if spec.name in NORM_STATS:
        mean, std = NORM_STATS[spec.name]
        return np.asarray(mean), np.asarray(std)
    key = (spec.name, str(data_dir), source)
    if key not in _STATS_CACHE:
        raw, *_ = _load_raw(spec, "train", data_dir, source, download)
        _STATS_CACHE[key] = channel_stats(raw)
    return _STATS_CACHE[key]


def _load_raw(spec: _Spec, split: str, data_dir, source: str, download: bool):
    """uint8 `[N, C, H, W]` images, int32 labels, source name and location, from the first source
    that has them."""
    env_dir = os.environ.get(spec.env) if spec.env else None
    key = (spec.name, split, str(data_dir), source, env_dir)
    if key in _RAW_CACHE:
        return _RAW_CACHE[key]
    tried = []
    result = None
    if source in ("auto", "tfds") and spec.tfds_name:
        try:
            result = _load_tfds(spec, split, data_dir, download)
        except _Miss as e:
            tried.append(f"tfds: {e}")
    if result is None and source in ("auto", "local"):
        try:
            result = _load_local(spec, split, env_dir)
        except _Miss as e:
            tried.append(f"local files: {e}")
    if result is None:
        raise DatasetUnavailable(_unavailable_message(spec, split, tried))
    raw, labels = result[0], result[1]
    if raw.shape[1:] != spec.shape:
        raise DatasetUnavailable(f"{spec.name}/{split} from {result[2]}: images of shape {raw.shape[1:]}, "
                                 f"expected {spec.shape}")
    if len(labels) and (labels.min() < 0 or labels.max() >= spec.num_classes):
        raise DatasetUnavailable(f"{spec.name}/{split} from {result[2]}: labels outside [0, {spec.num_classes})")
    _RAW_CACHE[key] = result
    return result


def _unavailable_message(spec: _Spec, split: str, tried: list[str]) -> str:
    lines = [f"dataset {spec.name!r} (split {split!r}) is not available on this machine. Tried:"]
    lines += [f"  - {t}" for t in tried]
    lines.append("To make it available, either:")
    if spec.local_kind is not None:
        lines.append(f"  - {spec.how}, or")
    else:
        lines.append(f"  - {spec.how}; then")
    lines.append(f"  - prepare it for tensorflow-datasets where network and TensorFlow are available: "
                 f"`pip install tensorflow-cpu && tfds build {spec.tfds_name} --file_format=array_record "
                 f"--data_dir=DIR`, copy DIR here and pass data_dir=DIR (or set TFDS_DATA_DIR=DIR)"
                 + (", or call load_dataset(..., download=True) when online" if spec.local_kind else ""))
    return "\n".join(lines)


@contextlib.contextmanager
def _quiet_absl():
    """TFDS logs warnings (e.g. 'Variant folder ... has no dataset_info.json') through absl for
    every dataset that is not prepared; a miss is reported by our own message instead."""
    logger = logging.getLogger("absl")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _load_tfds(spec: _Spec, split: str, data_dir, download: bool):
    try:
        import tensorflow_datasets as tfds
    except Exception as e:  # noqa: BLE001 - any import failure means "no TFDS"
        raise _Miss(f"tensorflow-datasets cannot be imported ({type(e).__name__}: {e})") from None
    data_dir = None if data_dir is None else os.fspath(data_dir)
    with _quiet_absl():
        try:
            builder = tfds.builder(spec.tfds_name, data_dir=data_dir)
            prepared = builder.is_prepared()
        except Exception as e:  # noqa: BLE001
            raise _Miss(f"{type(e).__name__}: {_first_line(e)}") from None
        if not prepared and download:
            try:
                builder = tfds.builder(spec.tfds_name, data_dir=data_dir, file_format="array_record")
                builder.download_and_prepare()
                prepared = builder.is_prepared()
            except Exception as e:  # noqa: BLE001
                raise _Miss(f"download_and_prepare failed ({type(e).__name__}: {_first_line(e)})") from None
        if not prepared:
            raise _Miss(f"not prepared in {builder.data_dir} (download disabled)")
        location = os.fspath(builder.data_dir)
        try:
            num_classes = builder.info.features["label"].num_classes
            file_format = str(getattr(builder.info.file_format, "value", builder.info.file_format))
            if file_format in ("array_record", "parquet"):
                images, labels = _read_data_source(builder.as_data_source(split=split))
            else:
                try:
                    import tensorflow  # noqa: F401
                except Exception:  # noqa: BLE001
                    raise _Miss(f"prepared in {location} as {file_format}, which only TensorFlow reads "
                                "(pip install tensorflow-cpu, or re-prepare with --file_format=array_record)") from None
                arrays = tfds.as_numpy(builder.as_dataset(split=split, batch_size=-1))
                images, labels = np.asarray(arrays["image"]), np.asarray(arrays["label"])
        except _Miss:
            raise
        except Exception as e:  # noqa: BLE001
            raise _Miss(f"reading {location} split {split!r} failed ({type(e).__name__}: {_first_line(e)})") from None
    if num_classes != spec.num_classes:
        raise _Miss(f"{location}: {num_classes} classes, expected {spec.num_classes}")
    return _nchw(images), labels.astype(np.int32), "tfds", location


def _read_data_source(ds, chunk: int = 4096):
    n = len(ds)
    images, labels = None, np.empty(n, np.int32)
    for start in range(0, n, chunk):
        idx = list(range(start, min(n, start + chunk)))
        records = ds.__getitems__(idx) if hasattr(ds, "__getitems__") else [ds[i] for i in idx]
        block = np.stack([np.asarray(r["image"]) for r in records])
        if images is None:
            images = np.empty((n, *block.shape[1:]), block.dtype)
        images[start:start + len(idx)] = block
        labels[start:start + len(idx)] = [int(r["label"]) for r in records]
    if images is None:
        raise _Miss("the split is empty")
    return images, labels


def _nchw(images: np.ndarray) -> np.ndarray:
    """TFDS images are `[N, H, W, C]` uint8; ours are `[N, C, H, W]`."""
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., None]
    if images.dtype != np.uint8:
        raise _Miss(f"expected uint8 images, got {images.dtype}")
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2))


