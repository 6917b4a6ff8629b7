"""The input pipeline: per-epoch shuffling, batching and augmentation.

Pure functions of a PRNG key (typed keys from ``jax.random.key``): the same key gives the
same epoch order and the same augmentation. Batches leave the host as ``uint8`` images and
``int32`` labels; normalisation (``mnemonic_jax.bundle.normalize``) and augmentation run on
the device inside the jitted train step.

Example:
  >>> ds = load_dataset("digits")
  >>> key = jax.random.key(0)
  >>> for epoch in range(2):
  ...   for images, labels in iterate_batches(ds, 128, jax.random.fold_in(key, epoch)):
  ...     pass
"""

from __future__ import annotations

import functools
import os
from typing import Iterator

import chex
import jax
import jax.numpy as jnp
import numpy as np

from mnemonic_jax.data.sources import Dataset, DatasetError, open_tfds

Batch = tuple[np.ndarray, np.ndarray]


def epoch_permutation(key: jax.Array, num_examples: int) -> jax.Array:
  """A random order of ``range(num_examples)`` for one epoch.

  Args:
    key: PRNG key of this epoch (e.g. ``jax.random.fold_in(key, epoch)``).
    num_examples: dataset size.

  Returns:
    ``int32`` array ``(num_examples,)`` holding each index exactly once.
  """
  return jax.random.permutation(key, num_examples)


def batch_indices(
    key: jax.Array | None,
    num_examples: int,
    batch_size: int,
    drop_remainder: bool = True,
) -> np.ndarray:
  """Example indices of every batch of one epoch.

  Args:
    key: PRNG key of this epoch; ``None`` keeps the dataset order.
    num_examples: dataset size.
    batch_size: examples per batch.
    drop_remainder: drop the last ``num_examples % batch_size`` examples of the
      permutation so every batch is full. With ``False`` the last batch is completed with
      the first indices of the permutation: every example appears at least once and a few
      twice, and all batches keep one shape (no re-jit).

  Returns:
    ``np.ndarray`` of shape ``(num_batches, batch_size)``.

  Example:
    >>> batch_indices(jax.random.key(0), 10, 4).shape
    (2, 4)
  """
  if batch_size <= 0:
    raise DatasetError(f"batch_size must be positive, got {batch_size}")
  if num_examples < 0:
    raise DatasetError(f"num_examples must be >= 0, got {num_examples}")
  if key is None:
    order = np.arange(num_examples)
  else:
    order = np.asarray(epoch_permutation(key, num_examples))
  if drop_remainder:
    num_batches = num_examples // batch_size
    return order[:num_batches * batch_size].reshape(num_batches, batch_size)
  num_batches = -(-num_examples // batch_size)
  if num_batches == 0:
    return order.reshape(0, batch_size)
  padded = np.resize(order, num_batches * batch_size)  # np.resize repeats from the start.
  return padded.reshape(num_batches, batch_size)


def _crop_flip_one(key: jax.Array, image: jax.Array, padding: int, pad_mode: str) -> jax.Array:
  crop_key, flip_key = jax.random.split(key)
  height, width, channels = image.shape
  padded = jnp.pad(image, ((padding, padding), (padding, padding), (0, 0)), mode=pad_mode)
  offsets = jax.random.randint(crop_key, (2,), 0, 2 * padding + 1)
  cropped = jax.lax.dynamic_slice(
      padded, (offsets[0], offsets[1], 0), (height, width, channels))
  flip = jax.random.bernoulli(flip_key)
  return jnp.where(flip, cropped[:, ::-1, :], cropped)


def augment_crop_flip(
    key: jax.Array,
    images: chex.Array,
    padding: int = 4,
    pad_mode: str = "constant",
) -> jax.Array:
  """Random crop after padding, and random horizontal flip, independently per image.

  The standard CIFAR augmentation: pad ``padding`` pixels on each side, crop a random
  window of the original size, flip left-right with probability 1/2. Padding is with
  zeros (``pad_mode="constant"``) in whatever space the images are in: apply it after
  normalisation to pad with the mean colour, before to pad with black.
  ``pad_mode="reflect"`` or ``"edge"`` pad with image content instead.

  Jittable (shapes are static) and usable inside a jitted train step; use
  ``jax.random.fold_in(key, step)`` for a fresh key per step.

  Args:
    key: PRNG key; one sub-key per image is split from it.
    images: NHWC batch (float, or any dtype ``jnp.pad`` accepts).
    padding: pixels padded on each side; the crop offset is uniform in
      ``[0, 2 * padding]`` along each axis.
    pad_mode: ``jnp.pad`` mode: ``"constant"`` (zeros), ``"reflect"`` or ``"edge"``.

  Returns:
    Array of the same shape and dtype as ``images``.

  Example:
    >>> x = jnp.zeros((8, 32, 32, 3))
    >>> augment_crop_flip(jax.random.key(0), x).shape
    (8, 32, 32, 3)
  """
  images = jnp.asarray(images)
  if images.ndim != 4:
    raise DatasetError(f"augment_crop_flip expects NHWC images, got shape {images.shape}")
  if padding < 0:
    raise DatasetError(f"padding must be >= 0, got {padding}")
  return _crop_flip(key, images, padding, pad_mode)


@functools.partial(jax.jit, static_argnums=(2, 3))
def _crop_flip(key: jax.Array, images: jax.Array, padding: int, pad_mode: str) -> jax.Array:
  """One program for the batch (run eagerly, the vmapped ops each compiled one)."""
  keys = jax.random.split(key, images.shape[0])
  return jax.vmap(_crop_flip_one, in_axes=(0, 0, None, None))(keys, images, padding, pad_mode)


def iterate_batches(
    data: Dataset | tuple[np.ndarray, np.ndarray],
    batch_size: int,
    key: jax.Array | None = None,
    *,
    drop_remainder: bool | None = None,
) -> Iterator[Batch]:
  """Yields the ``(images, labels)`` numpy batches of one epoch.

  Args:
    data: a :class:`Dataset` or a pair ``(images, labels)`` of equal-length arrays.
    batch_size: examples per batch.
    key: PRNG key of this epoch for shuffling; ``None`` keeps the dataset order (for
      evaluation).
    drop_remainder: drop the last, smaller batch. Defaults to ``True`` when shuffling
      (training: one batch shape, one compilation) and ``False`` without a key
      (evaluation: every example exactly once; the last batch may be smaller).

  Yields:
    ``(images, labels)``: ``images`` as stored (``uint8`` NHWC for a :class:`Dataset`),
    ``labels`` ``int32``.

  Example:
    >>> ds = load_dataset("digits", split="test")
    >>> sum(len(y) for _, y in iterate_batches(ds, 100)) == len(ds)
    True
  """
  if isinstance(data, Dataset):
    images, labels = data.images, data.labels
  else:
    images, labels = data
    images, labels = np.asarray(images), np.asarray(labels)
    if images.shape[:1] != labels.shape[:1]:
      raise DatasetError(
          f"images and labels differ in length: {images.shape[0]} vs {labels.shape[0]}")
  if batch_size <= 0:
    raise DatasetError(f"batch_size must be positive, got {batch_size}")
  if drop_remainder is None:
    drop_remainder = key is not None
  num_examples = labels.shape[0]
  order = np.arange(num_examples) if key is None else np.asarray(
      epoch_permutation(key, num_examples))
  stop = num_examples - num_examples % batch_size if drop_remainder else num_examples
  for start in range(0, stop, batch_size):
    idx = order[start:start + batch_size]
    if key is None:
      idx = slice(start, start + len(idx))  # Contiguous: a view, no copy.
    yield images[idx], labels[idx].astype(np.int32, copy=False)


def tfds_batches(
    name: str,
    split: str,
    batch_size: int,
    data_dir: str | os.PathLike | None = None,
    *,
    key: jax.Array | None = None,
    drop_remainder: bool | None = None,
    download: bool = False,
) -> Iterator[Batch]:
  """Streams one epoch of a tfds split in ``(images uint8 NHWC, labels int32)`` batches.

  For data larger than memory: only one batch is decoded at a time. Data prepared as
  array_record is read by random access without TensorFlow (an exact shuffle from
  ``key``); data prepared as tfrecord is read through TensorFlow (a 10,000-example
  shuffle buffer seeded from ``key``).

  Args:
    name: tfds builder name, with or without the ``"tfds:"`` prefix.
    split: tfds split (``"train"``, ``"test"``, ``"train[:10%]"``, ...).
    batch_size: examples per batch.
    data_dir: tfds data directory (tfds' default when ``None``).
    key: PRNG key of this epoch for shuffling; ``None`` reads in order.
    drop_remainder: drop the last, smaller batch; defaults as in :func:`iterate_batches`.
    download: allow downloading and preparing the dataset (see
      :func:`mnemonic_jax.data.load_dataset`).

  Yields:
    numpy batches.

  Raises:
    DatasetError: as :func:`mnemonic_jax.data.load_dataset`; raised on the first
      ``next()``.
  """
  if batch_size <= 0:
    raise DatasetError(f"batch_size must be positive, got {batch_size}")
  if drop_remainder is None:
    drop_remainder = key is not None
  source = open_tfds(name, split, data_dir=data_dir, download=download)
  order, seed = None, None
  if key is not None:
    order_key, seed_key = jax.random.split(key)
    order = np.asarray(epoch_permutation(order_key, len(source)))
    seed = int(jax.random.randint(seed_key, (), 0, np.iinfo(np.int32).max))
  yield from source.iter_batches(batch_size, order, seed=seed, drop_remainder=drop_remainder)


class ArrayEpochs:
  """Training epochs over in-memory arrays: a shuffle per epoch key, full batches only.

  The sources :func:`mnemonic_jax.training.fit` reads share this interface:
  ``num_examples`` and ``epoch(key, batch_size, skip=0)``.
  """

  def __init__(self, images: np.ndarray, labels: np.ndarray):
    if len(images) != len(labels):
      raise DatasetError(f"images and labels differ in length: {len(images)} vs {len(labels)}")
    self.images, self.labels = images, np.asarray(labels, np.int32)
    self.num_examples = len(labels)

  def epoch(self, key: jax.Array, batch_size: int, skip: int = 0,
            rows: slice | None = None) -> Iterator[Batch]:
    """The epoch's batches, the first ``skip`` left out (to resume inside an epoch).

    Args:
      key: PRNG key of this epoch (its shuffle).
      batch_size: examples per (global) batch.
      skip: batches left out at the start.
      rows: read only these rows of every batch (one process's share of a global batch,
        :func:`mnemonic_jax.parallel.process_rows`); all rows when None.

    Yields:
      ``(images, labels)`` numpy batches of ``batch_size`` rows, or of the ``rows``.
    """
    for idx in batch_indices(key, self.num_examples, batch_size)[skip:]:
      if rows is not None:
        idx = idx[rows]
      yield self.images[idx], self.labels[idx]


class TfdsEpochs:
  """Training epochs streamed from a prepared tfds split: one batch in memory at a time.

  For data larger than memory; :func:`mnemonic_jax.training.fit` takes it in place of
  arrays. ``transform`` maps each uint8 image batch (e.g. padding to the model's size).
  """

  def __init__(self, name: str, split: str = "train", data_dir: str | os.PathLike | None = None,
               transform=None):
    self.name, self.split, self.data_dir = name, split, data_dir
    self.source = open_tfds(name, split, data_dir=data_dir)
    self.num_examples = len(self.source)
    self.transform = transform

  def epoch(self, key: jax.Array, batch_size: int, skip: int = 0,
            rows: slice | None = None) -> Iterator[Batch]:
    """The epoch's batches, the first ``skip`` read and left out (to resume).

    Args:
      key: PRNG key of this epoch (its shuffle).
      batch_size: examples per (global) batch.
      skip: batches left out at the start.
      rows: read only these rows of every batch (one process's share of a global
        batch); all rows when None. Data prepared as array_record is read by random
        access, only these rows; data read through TensorFlow is read whole and sliced
        (the same examples, more decoding).

    Yields:
      ``(images, labels)`` numpy batches.
    """
    if rows is not None and rows != slice(0, batch_size) and self._random_access():
      yield from self._rows_by_random_access(key, batch_size, skip, rows)
      return
    batches = tfds_batches(self.name, self.split, batch_size, self.data_dir, key=key,
                           drop_remainder=True)
    for i, (images, labels) in enumerate(batches):
      if i >= skip:
        if rows is not None:
          images, labels = images[rows], labels[rows]
        yield (images if self.transform is None else self.transform(images)), labels

  def _random_access(self) -> bool:
    try:
      self.source.read([])
    except DatasetError:  # Prepared as tfrecord: read through TensorFlow.
      return False
    return True

  def _rows_by_random_access(self, key, batch_size, skip, rows) -> Iterator[Batch]:
    """The ``rows`` of every batch as :func:`tfds_batches` orders them (array_record)."""
    order = np.asarray(epoch_permutation(jax.random.split(key)[0], self.num_examples))
    for idx in batch_indices(None, self.num_examples, batch_size)[skip:]:
      images, labels = self.source.read(order[idx][rows])
      yield (images if self.transform is None else self.transform(images)), labels
