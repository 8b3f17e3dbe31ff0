"""The data layer's local files: the IDX files of (Fashion-)MNIST, the python pickles of CIFAR, and
scikit-learn's bundled handwritten digits (`digits`).

The digits set is the UCI "Optical Recognition of Handwritten Digits" test set that scikit-learn
ships: 1,797 images of 8×8 pixels with 17 grey levels (0–16), written by 13 people. It is split
without shuffling, in scikit-learn's order: the first 1,437 images are `train`, the last 360 `test`
(an 80/20 split, `DIGITS_TRAIN`). Pixels are stored as uint8 `round(v · 255 / 16)`, so that the
data layer's `/255` scaling gives the same [0, 1] range as the other datasets.
"""

from __future__ import annotations

import gzip
import os
import pickle
from pathlib import Path

import numpy as np

DEBIAN_FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
DIGITS_TRAIN = 1437  # images of scikit-learn's digits in the train split; the remaining 360 are test

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


class _Miss(Exception):
    """One source could not provide the dataset; the message says why."""


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else ""


def read_idx(path) -> np.ndarray:
    """Read an IDX file (the format of the MNIST files), gzipped or not, into a numpy array."""
    path = Path(path)
    with open(path, "rb") as f:
        data = f.read()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise ValueError(f"{path}: not an IDX file (magic {data[:4].hex()})")
    dtype = np.dtype(_IDX_DTYPES[data[2]])
    ndim = data[3]
    header = 4 + 4 * ndim
    dims = tuple(int(d) for d in np.frombuffer(data, ">u4", count=ndim, offset=4)) if ndim else ()
    count = int(np.prod(dims, dtype=np.int64))
    if len(data) != header + count * dtype.itemsize:
        raise ValueError(f"{path}: IDX header says shape {dims} ({count * dtype.itemsize} bytes of data), "
                         f"the file holds {len(data) - header}")
    array = np.frombuffer(data, dtype, count=count, offset=header).reshape(dims)
    return array.astype(dtype.newbyteorder("="))


_IDX_NAMES = {"train": "train", "test": "t10k"}


def _find(directory: Path, stem: str) -> Path | None:
    for candidate in (stem + ".gz", stem, stem.replace("-idx", ".idx") + ".gz", stem.replace("-idx", ".idx")):
        if (directory / candidate).is_file():
            return directory / candidate
    return None


def _load_local(spec, split: str, env_dir: str | None):
    """Images, labels, source and location of one split from local files (`spec`: the dataset's `_Spec`)."""
    if spec.local_kind is None:
        raise _Miss(f"no local-file reader for {spec.name}")
    if split not in spec.splits:
        raise _Miss(f"local files have splits {', '.join(spec.splits)}, not {split!r}")
    if spec.local_kind == "sklearn":
        return _read_digits(split)
    if env_dir:
        directory, origin = Path(env_dir), f"${spec.env}"
    elif spec.name == "fashion_mnist":
        directory, origin = Path(DEBIAN_FASHION_MNIST_DIR), "Debian's dataset-fashion-mnist"
    else:
        raise _Miss(f"${spec.env} is not set")
    if not directory.is_dir():
        raise _Miss(f"{directory} ({origin}) is not a directory")
    try:
        if spec.local_kind == "idx":
            images, labels = _read_idx_split(directory, split)
        else:
            images, labels = _read_cifar_split(directory, split, spec.local_kind)
    except _Miss as e:
        raise _Miss(f"{directory} ({origin}): {e}") from None
    except (OSError, ValueError, EOFError, KeyError, pickle.UnpicklingError) as e:
        raise _Miss(f"{directory} ({origin}): cannot read ({type(e).__name__}: {_first_line(e)})") from None
    return images, labels, os.fspath(directory), os.fspath(directory)


def _read_idx_split(directory: Path, split: str):
    prefix = _IDX_NAMES[split]
    paths = {kind: _find(directory, f"{prefix}-{kind}-idx{nd}-ubyte") for kind, nd in (("images", 3), ("labels", 1))}
    missing = [f"{prefix}-{kind}-idx{nd}-ubyte[.gz]" for (kind, nd) in (("images", 3), ("labels", 1))
               if paths[kind] is None]
    if missing:
        raise _Miss(f"missing {', '.join(missing)}")
    images, labels = read_idx(paths["images"]), read_idx(paths["labels"])
    if images.ndim != 3 or images.dtype != np.uint8 or labels.ndim != 1 or len(labels) != len(images):
        raise _Miss(f"unexpected IDX contents: images {images.shape} {images.dtype}, labels {labels.shape}")
    return np.ascontiguousarray(images[:, None]), labels.astype(np.int32)


def _read_cifar_split(directory: Path, split: str, kind: str):
    if kind == "cifar10":
        names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
        label_key = b"labels"
    else:
        names = [split]
        label_key = b"fine_labels"
    missing = [n for n in names if not (directory / n).is_file()]
    if missing:
        raise _Miss(f"missing {', '.join(missing)}")
    images, labels = [], []
    for n in names:
        with open(directory / n, "rb") as f:
            batch = pickle.load(f, encoding="bytes")
        images.append(np.asarray(batch[b"data"], np.uint8).reshape(-1, 3, 32, 32))
        labels.append(np.asarray(batch[label_key], np.int32))
    return np.concatenate(images), np.concatenate(labels)


def _read_digits(split: str):
    """scikit-learn's bundled digits, split as the module docstring says."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as e:
        raise _Miss(f"scikit-learn cannot be imported ({_first_line(e)}): pip install scikit-learn") from None
    digits = load_digits()
    images = np.rint(digits.images * (255 / 16)).astype(np.uint8)[:, None]
    labels = digits.target.astype(np.int32)
    part = slice(None, DIGITS_TRAIN) if split == "train" else slice(DIGITS_TRAIN, None)
    return np.ascontiguousarray(images[part]), labels[part], "scikit-learn", "sklearn.datasets.load_digits"
