"""The ``idx:<dir>`` and ``fashion_mnist`` sources: MNIST-format idx files.

``fashion_mnist`` is ``idx:/usr/share/datasets/fashion-mnist`` (the Debian package
``dataset-fashion-mnist``) with the dataset's class names and training statistics.
Every size a file's header declares is checked against the file before it is allocated,
and every file is opened without blocking and checked to be a regular file first
(:mod:`mnemonic_jax._files`: a FIFO or a link to a device is refused).
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from typing import Sequence

import numpy as np

from mnemonic_jax import _files
from mnemonic_jax.data.dataset import (
    _KNOWN_STATS, MAX_CLASSES, Dataset, DatasetError, DatasetInfo, _check_split,
    channel_stats)

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
#: load_idx infers at most max(this, number of labelled examples) classes from labels.
_MIN_CLASS_BOUND = 1000
_IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_IDX_PREFIX = {"train": "train", "test": "t10k"}
#: The most deflate can expand its input (a gzip member of zeros): ~1032:1.
_GZIP_MAX_RATIO = 1032
#: The most bytes one idx file may hold (decompressed): far above any MNIST-format set.
MAX_IDX_BYTES = 16 << 30


def load_fashion_mnist(split: str) -> Dataset:
  """One split of Fashion-MNIST from the Debian package's idx files.

  Args:
    split: ``"train"`` or ``"test"``.

  Returns:
    A :class:`Dataset` of 28x28x1 images with the dataset's class names and its training
    split's mean and std.

  Raises:
    DatasetError: the package is not installed, or its files are unreadable.
  """
  if not os.path.isdir(FASHION_MNIST_DIR):
    raise DatasetError(
        f"Fashion-MNIST is not installed at {FASHION_MNIST_DIR}: run "
        "'apt-get install -y dataset-fashion-mnist', or use 'tfds:fashion_mnist' (which "
        "tfds can download)")
  mean, std = _KNOWN_STATS["fashion_mnist"]
  return load_idx(FASHION_MNIST_DIR, split, name="fashion_mnist",
                  class_names=FASHION_MNIST_CLASSES, mean=mean, std=std)


def read_idx(path: str | os.PathLike) -> np.ndarray:
  """Reads one idx file (the MNIST format), gzipped when its name ends in ``.gz``.

  The file is opened once, without blocking, and checked to be a regular file (a FIFO
  or a link to ``/dev/zero`` is refused). The header's dimensions are checked against the
  file's size before anything is allocated: a plain file must hold exactly the bytes they
  declare, and a gzipped one at most what deflate can expand it to
  (:data:`_GZIP_MAX_RATIO` times its size), never more than :data:`MAX_IDX_BYTES`; the
  data is then read in one piece of that size, so neither a hostile header nor a gzip
  bomb makes it allocate more than the file can really hold.

  Args:
    path: the file.

  Returns:
    The array with the dimensions and dtype its header declares (native byte order).

  Raises:
    DatasetError: the file cannot be read, is not a regular file, is truncated or longer
      than its header declares, or its header is not idx or declares more data than the
      file can hold.
  """
  path = os.fspath(path)
  fix = "replace it with an intact copy"
  gz = path.endswith(".gz")
  try:
    raw_file = _files.open_regular(path, max_bytes=MAX_IDX_BYTES, error=DatasetError, fix=fix,
                                   what="an idx file")
    size = os.fstat(raw_file.fileno()).st_size
    with raw_file, (gzip.GzipFile(fileobj=raw_file, mode="rb") if gz else raw_file) as f:
      magic = f.read(4)
      if (len(magic) < 4 or magic[0] != 0 or magic[1] != 0 or magic[2] not in _IDX_DTYPES
          or magic[3] == 0):
        raise DatasetError(
            f"{path} is not an idx file (bad magic number {magic.hex() or 'empty'}); "
            "expected MNIST-format files")
      dtype, ndim = _IDX_DTYPES[magic[2]], magic[3]
      raw_dims = f.read(4 * ndim)
      if len(raw_dims) < 4 * ndim:
        raise DatasetError(f"{path} is truncated inside its header; {fix}")
      dims = struct.unpack(f">{ndim}I", raw_dims)
      header = 4 + 4 * ndim
      needed = math.prod(dims) * dtype.itemsize
      room = min(_GZIP_MAX_RATIO * size, MAX_IDX_BYTES) if gz else size - header
      if needed > room:
        raise DatasetError(
            f"{path}: its header declares dimensions {dims} ({needed} bytes of data), more "
            f"than its {size} bytes can hold{' once decompressed' if gz else ''} "
            f"(truncated or corrupt); {fix}")
      raw = f.read(needed)
      extra = f.read(1)
  except DatasetError:
    raise
  except (OSError, EOFError, zlib.error) as e:
    raise DatasetError(f"cannot read idx file {path}: {e}; {fix}") from None
  if len(raw) != needed or extra:
    total = header + len(raw) + (1 if extra else 0)
    raise DatasetError(
        f"{path} holds {'more than ' if extra else ''}{total} bytes"
        f"{' once decompressed' if gz else ''} but its header {dims} needs "
        f"{header + needed} (truncated or corrupt); {fix}")
  data = np.frombuffer(raw, dtype).reshape(dims)
  return data.astype(dtype.newbyteorder("="), copy=not data.flags.writeable)


def _find_idx_file(directory: str, split: str, kind: str, name: str) -> str | None:
  """The one file of ``split``'s ``kind`` in ``directory`` (None if there is none).

  Raises:
    DatasetError: several (``X`` beside ``X.gz``, or both name styles): they may differ,
      and reading one of them silently could train or score on the other's labels.
  """
  prefix, ndim = _IDX_PREFIX[split], 3 if kind == "images" else 1
  found = [path for sep in ("-", ".") for ext in ("", ".gz")
           if os.path.isfile(path := os.path.join(directory,
                                                  f"{prefix}-{kind}{sep}idx{ndim}-ubyte{ext}"))]
  if len(found) > 1:
    raise DatasetError(
        f"{name}: {directory} holds {len(found)} files of the {split} {kind} ("
        f"{', '.join(os.path.basename(f) for f in found)}), which may differ; keep one")
  return found[0] if found else None


def _read_idx_split(directory: str, split: str, name: str) -> tuple[np.ndarray, np.ndarray]:
  """Reads and validates the (images, labels) idx pair of one split."""
  paths = {}
  for kind in ("images", "labels"):
    paths[kind] = _find_idx_file(directory, split, kind, name)
    if paths[kind] is None:
      ndim = 3 if kind == "images" else 1
      raise DatasetError(
          f"{name}: no {split} {kind} in {directory} (expected "
          f"{_IDX_PREFIX[split]}-{kind}-idx{ndim}-ubyte[.gz]); point idx:<dir> at a "
          "directory holding MNIST-format files")
  images, labels = read_idx(paths["images"]), read_idx(paths["labels"])
  if images.dtype != np.uint8 or images.ndim not in (3, 4):
    raise DatasetError(
        f"{paths['images']}: expected uint8 images (N, H, W[, C]), got {images.dtype} "
        f"{images.shape}")
  if labels.ndim != 1 or labels.dtype.kind not in "iu":
    raise DatasetError(
        f"{paths['labels']}: expected integer labels (N,), got {labels.dtype} {labels.shape}")
  if labels.shape[0] != images.shape[0]:
    raise DatasetError(
        f"{name}: {images.shape[0]} {split} images but {labels.shape[0]} labels; "
        "the idx files do not belong together")
  if labels.size and labels.min() < 0:
    raise DatasetError(f"{paths['labels']}: negative label {labels.min()}")
  if labels.size and labels.max() >= MAX_CLASSES:
    raise DatasetError(
        f"{paths['labels']}: label {labels.max()} would make {int(labels.max()) + 1} classes, "
        f"more than the {MAX_CLASSES} supported (corrupt?); replace it with an intact copy")
  if images.ndim == 3:
    images = images[..., None]
  return images, labels.astype(np.int32)


def load_idx(
    directory: str | os.PathLike,
    split: str = "train",
    *,
    name: str | None = None,
    class_names: Sequence[str] | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> Dataset:
  """Loads one split from MNIST-format idx files.

  Files are looked up as ``train-images-idx3-ubyte[.gz]``/``train-labels-idx1-ubyte[.gz]``
  for ``"train"`` and ``t10k-...`` for ``"test"`` (``train-images.idx3-ubyte`` also
  works).

  Args:
    directory: the directory holding the files.
    split: ``"train"`` or ``"test"``.
    name: name recorded in :class:`DatasetInfo` (default ``"idx:<directory>"``).
    class_names: one name per class; default ``"0"`` .. ``"C-1"`` where ``C`` is one
      more than the largest label (train and loaded split), at most
      ``max(1000, number of labelled examples)``: more is taken for a corrupt label file.
    mean: per-channel mean; computed from the train images when omitted (from the loaded
      split's images if the directory has no train files).
    std: per-channel standard deviation, like ``mean``.

  Returns:
    A :class:`Dataset`.

  Raises:
    DatasetError: missing, truncated or inconsistent files, a header declaring more data
      than its file holds, a label of :data:`MAX_CLASSES` or more (or, without
      ``class_names``, one making more classes than the bound above), or an unknown
      split.
  """
  directory = os.fspath(directory)
  name = name or f"idx:{directory}"
  _check_split(name, split)
  fix = "point idx:<dir> at the directory holding the idx files"
  if not os.path.exists(directory):  # Missing, a link loop or to nothing: in its words.
    raise DatasetError(f"{name}: {_files.missing_line(directory, fix)}")
  if not os.path.isdir(directory):
    raise DatasetError(f"{name}: {directory} is not a directory; {fix}")
  images, labels = _read_idx_split(directory, split, name)
  reference = (images, labels)
  if (class_names is None or mean is None or std is None) and split != "train":
    if _find_idx_file(directory, "train", "images", name) is not None:
      reference = _read_idx_split(directory, "train", name)
  inferred = class_names is None
  if inferred:
    num_classes = int(max(reference[1].max(initial=-1), labels.max(initial=-1))) + 1
    examples = len(reference[1]) + (len(labels) if reference[1] is not labels else 0)
    bound = max(_MIN_CLASS_BOUND, examples)
    if num_classes > bound:
      raise DatasetError(
          f"{name}: the largest label, {num_classes - 1}, makes {num_classes} classes for "
          f"only {examples} labelled examples (at most max({_MIN_CLASS_BOUND}, examples) "
          "classes are inferred); the label files are probably corrupt; pass class_names "
          "to load_idx if the classes are right")
    class_names = tuple(str(c) for c in range(num_classes))
  if mean is None or std is None:
    mean, std = channel_stats(reference[0])
  info = DatasetInfo(
      name=name, num_classes=len(class_names), shape=tuple(images.shape[1:]),
      class_names=tuple(class_names), mean=tuple(float(m) for m in mean),
      std=tuple(float(s) for s in std), classes_from_labels=inferred)
  return Dataset(images, labels, info)

