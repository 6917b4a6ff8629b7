"""The ``tfds:<name>`` source: TensorFlow Datasets image-classification builders.

Any builder with an Image and a ClassLabel feature (``mnist``, ``cifar10``, ...), read
without TensorFlow when it is prepared in the ``array_record`` format. Nothing touches the
network unless ``download=True``.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any, Iterator, Sequence

import numpy as np

from mnemonic_jax import environment
from mnemonic_jax.data.dataset import (
    _KNOWN_STATS, MAX_CLASSES, Dataset, DatasetError, DatasetInfo, DatasetNotPrepared,
    channel_stats)

TFDS_INSTALL_HINT = "pip install 'mnemonic-jax[tfds]'"


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
      environment.reraise(e, where)  # A full disk is not the network's fault.
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
