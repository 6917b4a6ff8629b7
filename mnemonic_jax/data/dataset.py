"""What every source returns: :class:`Dataset`, :class:`DatasetInfo`, the error types,
and the bounds and statistics the sources share."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from mnemonic_jax import errors

SPLITS = ("train", "test")
#: The most classes any source (or bundle) may declare: a label or class count read from a
#: file beyond it is refused before anything per class is allocated.
MAX_CLASSES = 100_000

# Per-channel (mean, std) of the train images scaled to [0, 1].
_KNOWN_STATS: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "mnist": ((0.1307,), (0.3081,)),
    "fashion_mnist": ((0.2860,), (0.3530,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}


class DatasetError(errors.BadDataset):
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

