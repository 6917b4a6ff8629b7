"""Dataset sources: one name in, numpy arrays out.

``load_dataset(name, split)`` dispatches on the name:

* ``digits``: scikit-learn's bundled 8x8 digits (1797 real images, offline, the default).
* ``fashion_mnist``: the Fashion-MNIST idx files of the Debian package
  ``dataset-fashion-mnist`` (alias of ``idx:/usr/share/datasets/fashion-mnist``).
* ``idx:<dir>``: MNIST-format idx files (gzipped or not) in ``<dir>``.
* ``tfds:<name>``: any TensorFlow Datasets image-classification builder (``mnist``,
  ``cifar10``, ...) with ``image`` and ``label`` features, read without TensorFlow when it
  is prepared in the ``array_record`` format.

Every source returns a :class:`Dataset` of ``uint8`` NHWC images and ``int32`` labels
with a :class:`DatasetInfo` that carries the per-channel statistics used to normalise
inputs. Every user error raises :class:`DatasetError` with one line naming the problem and
the fix.
"""

from __future__ import annotations

import dataclasses
import gzip
import importlib.util
import math
import os
import struct
import zlib
from typing import Any, Iterator, Sequence

import numpy as np

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
SPLITS = ("train", "test")
#: The most classes any source (or bundle) may declare: a label or class count read from a
#: file beyond it is refused before anything per class is allocated.
MAX_CLASSES = 100_000
#: load_idx infers at most max(this, number of labelled examples) classes from labels.
_MIN_CLASS_BOUND = 1000
TFDS_INSTALL_HINT = "pip install 'mnemonic-jax[tfds]'"

# Per-channel (mean, std) of the train images scaled to [0, 1].
_KNOWN_STATS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "mnist": ((0.1307,), (0.3081,)),
    "fashion_mnist": ((0.2860,), (0.3530,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}
_DIGITS_TEST_FRACTION = 0.2
_DIGITS_SEED = 0
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
_SOURCES_HINT = "use 'digits', 'fashion_mnist', 'idx:<dir>' or 'tfds:<name>'"


class DatasetError(ValueError):
  """A dataset cannot be loaded because of the user's input or environment.

  The message is one line naming the problem and the fix.
  """


class DatasetNotPrepared(DatasetError):
  """A ``tfds:`` dataset that is not prepared where it is looked for, and may not be fetched.

  The message names the library's fixes (``download=True``, ``data_dir``); a command line
  names its own options with :meth:`with_fix`.

  Attributes:
    name: the dataset, e.g. ``"tfds:mnist"``.
    where: the directory it was looked for in.
  """

  def __init__(self, name: str, where: str,
               fix: str = "rerun with download=True on a machine with internet, or pass "
                          "the data_dir of a prepared copy"):
    super().__init__(f"{name} is not prepared at {where}; {fix}")
    self.name, self.where = name, where

  def with_fix(self, fix: str) -> "DatasetNotPrepared":
    """The same error, its message ending with ``fix`` instead."""
    return DatasetNotPrepared(self.name, self.where, fix)


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  """What a model needs to know about a dataset.

  Attributes:
    name: the name given to :func:`load_dataset`, e.g. ``"digits"`` or ``"tfds:cifar10"``.
    num_classes: number of classes; labels lie in ``[0, num_classes)``.
    shape: shape of one image, ``(height, width, channels)``.
    class_names: one human-readable name per class.
    mean: per-channel mean of the train images scaled to [0, 1].
    std: per-channel standard deviation of the train images scaled to [0, 1].
    classes_from_labels: ``num_classes`` was inferred from the largest label (idx files
      without class names), so it is a lower bound: a model may have classes this
      dataset never shows.
  """

  name: str
  num_classes: int
  shape: tuple[int, ...]
  class_names: tuple[str, ...]
  mean: tuple[float, ...]
  std: tuple[float, ...]
  classes_from_labels: bool = False


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
  """One split of an image-classification dataset, in host memory.

  Attributes:
    images: ``uint8`` array of shape ``(N, height, width, channels)``.
    labels: ``int32`` array of shape ``(N,)``.
    info: the dataset's :class:`DatasetInfo`.

  Example:
    >>> ds = load_dataset("digits", split="test")
    >>> ds.images.shape[1:], ds.info.num_classes
    ((8, 8, 1), 10)
  """

  images: np.ndarray
  labels: np.ndarray
  info: DatasetInfo

  def __post_init__(self):
    images, labels, info = self.images, self.labels, self.info
    if images.dtype != np.uint8 or images.ndim != 4:
      raise DatasetError(
          f"{info.name}: images must be uint8 NHWC, got {images.dtype} {images.shape}")
    if labels.dtype != np.int32 or labels.shape != images.shape[:1]:
      raise DatasetError(
          f"{info.name}: labels must be int32 of shape {images.shape[:1]}, "
          f"got {labels.dtype} {labels.shape}")
    if tuple(images.shape[1:]) != tuple(info.shape):
      raise DatasetError(
          f"{info.name}: images of shape {images.shape[1:]} do not match info.shape "
          f"{info.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= info.num_classes):
      raise DatasetError(
          f"{info.name}: labels must lie in [0, {info.num_classes}), got "
          f"[{labels.min()}, {labels.max()}]")

  def __len__(self) -> int:
    return int(self.labels.shape[0])

  @property
  def num_examples(self) -> int:
    return len(self)

  def subset(self, indices: Any) -> "Dataset":
    """The examples at ``indices`` (integer indices or a boolean mask), same info.

    Args:
      indices: anything numpy accepts as an index along the first axis.

    Returns:
      A new :class:`Dataset` holding copies of the selected examples.
    """
    indices = np.asarray(indices)
    return Dataset(self.images[indices], self.labels[indices], self.info)


def load_dataset(
    name: str,
    split: str = "train",
    data_dir: str | os.PathLike | None = None,
    download: bool = False,
) -> Dataset:
  """Loads one split of a dataset into host memory.

  Args:
    name: ``"digits"``, ``"fashion_mnist"``, ``"idx:<dir>"`` or ``"tfds:<name>"`` (see
      the module docstring).
    split: ``"train"`` or ``"test"``; ``tfds:`` sources accept any split tfds knows,
      including slices such as ``"train[:10%]"``.
    data_dir: where tfds keeps its prepared data (``tfds:`` only; tfds' default,
      ``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``, when ``None``).
    download: whether a ``tfds:`` source that is not prepared in ``data_dir`` may be
      downloaded and prepared (needs internet and TensorFlow). With ``False`` a missing
      dataset fails at once instead of touching the network.

  Returns:
    A :class:`Dataset`. ``info.mean``/``info.std`` describe the *train* split whichever
    split is loaded.

  Raises:
    DatasetError: unknown source or split, missing or corrupt files, data not prepared
      while ``download=False``, or TensorFlow needed but not installed.

  Example:
    >>> train = load_dataset("digits", split="train")
    >>> train.images.dtype, train.labels.dtype
    (dtype('uint8'), dtype('int32'))
  """
  if not isinstance(name, str) or not name:
    raise DatasetError(f"dataset name must be a non-empty string, got {name!r}; {_SOURCES_HINT}")
  if name.startswith("tfds:"):
    return load_tfds(name[len("tfds:"):], split, data_dir=data_dir, download=download)
  _check_split(name, split)
  if name == "digits":
    return _load_digits(split)
  if name == "fashion_mnist":
    if not os.path.isdir(FASHION_MNIST_DIR):
      raise DatasetError(
          f"Fashion-MNIST is not installed at {FASHION_MNIST_DIR}: run "
          "'apt-get install -y dataset-fashion-mnist', or use 'tfds:fashion_mnist' (which "
          "tfds can download)")
    mean, std = _KNOWN_STATS["fashion_mnist"]
    return load_idx(FASHION_MNIST_DIR, split, name=name, class_names=FASHION_MNIST_CLASSES,
                    mean=mean, std=std)
  if name.startswith("idx:"):
    directory = name[len("idx:"):]
    if not directory:
      raise DatasetError(f"{name!r} names no directory; write 'idx:/path/to/dir'")
    return load_idx(directory, split, name=name)
  hint = f"did you mean 'tfds:{name}'? " if name in _KNOWN_STATS else ""
  raise DatasetError(f"unknown dataset {name!r}; {hint}{_SOURCES_HINT}")


def _check_split(name: str, split: str) -> None:
  if split not in SPLITS:
    raise DatasetError(f"unknown split {split!r} for {name!r}; choose from {list(SPLITS)}")


def channel_stats(images: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
  """Exact per-channel mean and standard deviation of uint8 images scaled to [0, 1].

  Uses a 256-bin histogram per channel, so it is fast and needs no float copy.

  Args:
    images: ``uint8`` array ``(N, height, width, channels)``.

  Returns:
    ``(mean, std)``, each a tuple with one float per channel.
  """
  values = np.arange(256, dtype=np.float64) / 255.0
  means, stds = [], []
  for c in range(images.shape[-1]):
    counts = np.bincount(images[..., c].ravel(), minlength=256).astype(np.float64)
    total = max(counts.sum(), 1.0)
    mean = float(counts @ values / total)
    var = float(counts @ (values - mean) ** 2 / total)
    means.append(round(mean, 6))
    stds.append(round(max(var, 0.0) ** 0.5 or 1.0, 6))
  return tuple(means), tuple(stds)


# ----------------------------------------------------------------------------- digits


def _load_digits(split: str) -> Dataset:
  from sklearn.datasets import load_digits  # pylint: disable=import-outside-toplevel

  bunch = load_digits()
  images = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
  labels = bunch.target.astype(np.int32)
  train_idx, test_idx = _stratified_split(labels, _DIGITS_TEST_FRACTION, _DIGITS_SEED)
  mean, std = channel_stats(images[train_idx])
  info = DatasetInfo(
      name="digits", num_classes=10, shape=(8, 8, 1),
      class_names=tuple(str(c) for c in range(10)), mean=mean, std=std)
  idx = train_idx if split == "train" else test_idx
  return Dataset(images[idx], labels[idx], info)


def _stratified_split(
    labels: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
  """Deterministic per-class split; returns sorted (train, test) indices."""
  rng = np.random.RandomState(seed)  # Legacy generator: its stream never changes.
  train, test = [], []
  for c in np.unique(labels):
    members = rng.permutation(np.flatnonzero(labels == c))
    n_test = int(round(test_fraction * members.size))
    test.append(members[:n_test])
    train.append(members[n_test:])
  return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


# ----------------------------------------------------------------------------- idx files


def read_idx(path: str | os.PathLike) -> np.ndarray:
  """Reads one idx file (the MNIST format), gzipped when its name ends in ``.gz``.

  The header's dimensions are checked against the file's size before anything is
  allocated: a plain file must hold exactly the bytes they declare, and a gzipped one at
  most what deflate can expand it to (:data:`_GZIP_MAX_RATIO` times its size); the data is
  then read in one piece of that size, so neither a hostile header nor a gzip bomb makes
  it allocate more than the file can really hold.

  Args:
    path: the file.

  Returns:
    The array with the dimensions and dtype its header declares (native byte order).

  Raises:
    DatasetError: the file cannot be read, is truncated or longer than its header
      declares, or its header is not idx or declares more data than the file can hold.
  """
  path = os.fspath(path)
  fix = "replace it with an intact copy"
  gz = path.endswith(".gz")
  try:
    size = os.path.getsize(path)
    with (gzip.open if gz else open)(path, "rb") as f:
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
      room = _GZIP_MAX_RATIO * size if gz else size - header
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


def _find_idx_file(directory: str, split: str, kind: str) -> str | None:
  prefix, ndim = _IDX_PREFIX[split], 3 if kind == "images" else 1
  for sep in ("-", "."):
    for ext in ("", ".gz"):
      path = os.path.join(directory, f"{prefix}-{kind}{sep}idx{ndim}-ubyte{ext}")
      if os.path.isfile(path):
        return path
  return None


def _read_idx_split(directory: str, split: str, name: str) -> tuple[np.ndarray, np.ndarray]:
  """Reads and validates the (images, labels) idx pair of one split."""
  paths = {}
  for kind in ("images", "labels"):
    paths[kind] = _find_idx_file(directory, split, kind)
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
  if not os.path.isdir(directory):
    raise DatasetError(f"{name}: {directory} is not a directory; point idx:<dir> at the "
                       "directory holding the idx files")
  images, labels = _read_idx_split(directory, split, name)
  reference = (images, labels)
  if (class_names is None or mean is None or std is None) and split != "train":
    if _find_idx_file(directory, "train", "images") is not None:
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


# ----------------------------------------------------------------------------- tfds


def _import_tfds():
  try:
    import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
  except ImportError:
    raise DatasetError(
        f"tfds: sources need tensorflow-datasets, which is not installed: {TFDS_INSTALL_HINT}"
    ) from None
  return tfds


def _has_tensorflow() -> bool:
  return importlib.util.find_spec("tensorflow") is not None


class TfdsSource:
  """A prepared tfds image-classification split, readable in chunks.

  Reads through ``builder.as_data_source`` (array_record, no TensorFlow) when the data is
  prepared in a random-access format, and through ``builder.as_dataset`` (TensorFlow)
  otherwise. Build one with :func:`open_tfds`.

  Attributes:
    name: ``"tfds:<builder name>"``.
    num_classes: number of classes of the ClassLabel feature.
    class_names: the ClassLabel's names.
    shape: image shape declared by the Image feature (``None`` for a free dimension).
  """

  def __init__(self, tfds: Any, builder: Any, split: str, name: str, image_key: str,
               label_key: str):
    self._tfds, self._builder, self._split = tfds, builder, split
    self._image_key, self._label_key = image_key, label_key
    self.name = name
    features = builder.info.features
    label = features[label_key]
    self.num_classes = int(label.num_classes)
    if not 1 <= self.num_classes <= MAX_CLASSES:
      raise DatasetError(
          f"{name}: its ClassLabel declares {self.num_classes} classes, not in [1, "
          f"{MAX_CLASSES}]; the prepared dataset's metadata is corrupt, prepare it again")
    self.class_names = tuple(str(n) for n in label.names)
    self.shape = tuple(features[image_key].shape)
    self._source = self._open_data_source(split)

  def _open_data_source(self, split: str):
    """The random-access source of ``split``, or ``None`` when TensorFlow must read it."""
    try:
      return self._builder.as_data_source(split=split)
    except NotImplementedError:  # Prepared as tfrecord: no random access.
      if not _has_tensorflow():
        raise DatasetError(
            f"{self.name} is prepared at {self._builder.data_dir} in a format that needs "
            f"TensorFlow to read: {TFDS_INSTALL_HINT}") from None
      return None
    except (ValueError, KeyError) as e:
      raise DatasetError(
          f"{self.name}: cannot read split {split!r}: {_first_line(e)}") from None

  def __len__(self) -> int:
    if self._source is not None:
      return len(self._source)
    return int(self._builder.info.splits[self._split].num_examples)

  @property
  def num_examples(self) -> int:
    return len(self)

  def read(self, indices: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Decodes the examples at ``indices`` (random-access sources only).

    Args:
      indices: example positions in the split.

    Returns:
      ``(images uint8 NHWC, labels int32)``.
    """
    if self._source is None:
      raise DatasetError(f"{self.name}: random access needs data prepared as array_record")
    indices = [int(i) for i in indices]
    examples = None
    getitems = getattr(self._source, "__getitems__", None)
    if getitems is not None:
      try:
        examples = getitems(indices)
      except TypeError:  # tfds.testing.mock_data's source lacks a working __getitems__.
        examples = None
    if examples is None:
      examples = [self._source[i] for i in indices]
    return self._stack(examples)

  def _stack(self, examples: Sequence[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    if not examples:
      return np.zeros((0, *self.shape), np.uint8), np.zeros((0,), np.int32)
    try:
      images = np.stack([np.asarray(ex[self._image_key]) for ex in examples])
    except ValueError:
      raise DatasetError(
          f"{self.name}: images have different shapes; only fixed-size images are "
          "supported (resize them in a custom tfds builder)") from None
    labels = np.asarray([ex[self._label_key] for ex in examples]).astype(np.int32)
    if images.ndim == 3:
      images = images[..., None]
    return images.astype(np.uint8, copy=False), labels.reshape(-1)

  def iter_batches(
      self,
      batch_size: int,
      order: np.ndarray | None = None,
      *,
      seed: int | None = None,
      drop_remainder: bool = False,
  ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yields ``(images uint8, labels int32)`` batches, reading one batch at a time.

    Args:
      batch_size: examples per batch.
      order: permutation of ``range(len(self))`` to read in (sequential when ``None``);
        used by random-access (array_record) sources.
      seed: shuffle seed for TensorFlow-read sources (a 10,000-example shuffle buffer);
        they read in file order when ``None``.
      drop_remainder: drop the last, smaller batch.

    Yields:
      numpy batches.
    """
    if batch_size <= 0:
      raise DatasetError(f"batch_size must be positive, got {batch_size}")
    if self._source is not None:
      n = len(self)
      order = np.arange(n) if order is None else np.asarray(order)
      stop = n - n % batch_size if drop_remainder else n
      for start in range(0, stop, batch_size):
        yield self.read(order[start:start + batch_size])
      return
    read_config = self._tfds.ReadConfig(shuffle_seed=seed) if seed is not None else None
    ds = self._builder.as_dataset(
        split=self._split, shuffle_files=seed is not None, read_config=read_config)
    if seed is not None:
      ds = ds.shuffle(10_000, seed=seed, reshuffle_each_iteration=False)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    for batch in self._tfds.as_numpy(ds):
      yield self._stack_batch(batch)

  def _stack_batch(self, batch: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    images = np.asarray(batch[self._image_key])
    if images.ndim == 3:
      images = images[..., None]
    return images.astype(np.uint8, copy=False), np.asarray(batch[self._label_key], np.int32)

  def load(self, chunk_size: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Reads the whole split into memory.

    Args:
      chunk_size: examples decoded per read.

    Returns:
      ``(images uint8 NHWC, labels int32)``.
    """
    parts = list(self.iter_batches(chunk_size))
    if not parts:
      return self._stack([])
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

  def stats(self, images: np.ndarray | None = None) -> tuple[tuple[float, ...], ...]:
    """Per-channel (mean, std) of the train split in [0, 1].

    Known constants for mnist, fashion_mnist, cifar10 and cifar100; otherwise computed
    from ``images`` when this source is the train split, else by reading the train split.

    Args:
      images: this split's images, if already loaded.

    Returns:
      ``(mean, std)``.
    """
    base = self._builder.name
    if base in _KNOWN_STATS:
      return _KNOWN_STATS[base]
    if self._split == "train" and images is not None:
      return channel_stats(images)
    train = self if self._split == "train" else TfdsSource(
        self._tfds, self._builder, "train", self.name, self._image_key, self._label_key)
    return channel_stats(train.load()[0])

  def info(self, images: np.ndarray | None = None) -> DatasetInfo:
    """The :class:`DatasetInfo` of this source (see :meth:`stats`)."""
    mean, std = self.stats(images)
    shape = self.shape if images is None else tuple(images.shape[1:])
    return DatasetInfo(name=self.name, num_classes=self.num_classes, shape=shape,
                       class_names=self.class_names, mean=mean, std=std)


def _first_line(error: BaseException) -> str:
  text = str(error).strip()
  return text.splitlines()[0] if text else type(error).__name__


def _image_label_keys(tfds, builder, name: str) -> tuple[str, str]:
  features = builder.info.features
  keys = builder.info.supervised_keys
  candidates = [tuple(keys)] if isinstance(keys, (tuple, list)) and len(keys) == 2 else []
  candidates.append(("image", "label"))
  for image_key, label_key in candidates:
    if not (isinstance(image_key, str) and isinstance(label_key, str)):
      continue
    if image_key in features and label_key in features:
      if (isinstance(features[image_key], tfds.features.Image)
          and isinstance(features[label_key], tfds.features.ClassLabel)):
        return image_key, label_key
  raise DatasetError(
      f"{name} is not an image-classification dataset (needs an Image feature 'image' and a "
      "ClassLabel feature 'label'); choose another tfds builder")


def open_tfds(
    name: str,
    split: str = "train",
    data_dir: str | os.PathLike | None = None,
    download: bool = False,
) -> TfdsSource:
  """Opens a tfds split for reading, preparing it first only when allowed.

  Never touches the network unless ``download=True`` and the data is not prepared.

  Args:
    name: tfds builder name, optionally with config/version (``"cifar10"``,
      ``"mnist:3.*.*"``); a leading ``"tfds:"`` is accepted.
    split: tfds split, e.g. ``"train"``, ``"test"``, ``"train[:10%]"``.
    data_dir: tfds data directory (tfds' default when ``None``).
    download: allow download_and_prepare (needs internet and TensorFlow); data is
      prepared as array_record, so later reads need no TensorFlow.

  Returns:
    A :class:`TfdsSource`.

  Raises:
    DatasetError: unknown builder, not an image-classification builder, data not prepared
      while ``download=False``, TensorFlow needed but missing, or a failed download.
  """
  name = name[len("tfds:"):] if name.startswith("tfds:") else name
  full_name = f"tfds:{name}"
  if not name:
    raise DatasetError("'tfds:' names no dataset; write e.g. 'tfds:mnist'")
  tfds = _import_tfds()
  data_dir = None if data_dir is None else os.fspath(data_dir)
  try:
    builder = tfds.builder(name, data_dir=data_dir)
  except tfds.core.registered.DatasetNotFoundError:
    raise DatasetError(
        f"unknown tfds dataset {name!r}; see https://www.tensorflow.org/datasets/catalog "
        "for the names") from None
  except (ValueError, TypeError) as e:
    raise DatasetError(f"cannot open {full_name}: {_first_line(e)}") from None
  image_key, label_key = _image_label_keys(tfds, builder, full_name)
  if not builder.is_prepared():
    where = str(builder.data_path)
    if not download:
      raise DatasetNotPrepared(full_name, where)
    if not _has_tensorflow():
      raise DatasetError(
          f"downloading and preparing {full_name} needs TensorFlow, which is not installed: "
          f"{TFDS_INSTALL_HINT} (or copy a data_dir prepared elsewhere)")
    try:
      builder.download_and_prepare(file_format="array_record")
    except Exception as e:  # pylint: disable=broad-except
      raise DatasetError(
          f"could not download and prepare {full_name} into {where} "
          f"({type(e).__name__}: {_first_line(e)}); check the internet connection, or copy "
          "a prepared data_dir") from e
  return TfdsSource(tfds, builder, split, full_name, image_key, label_key)


def load_tfds(
    name: str,
    split: str = "train",
    data_dir: str | os.PathLike | None = None,
    download: bool = False,
) -> Dataset:
  """Loads a whole tfds split into memory (see :func:`open_tfds` for the arguments).

  Returns:
    A :class:`Dataset`; grayscale images keep their single channel.
  """
  source = open_tfds(name, split, data_dir=data_dir, download=download)
  images, labels = source.load()
  return Dataset(images, labels, source.info(images))
