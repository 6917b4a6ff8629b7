"""Datasets as numpy arrays, and the input pipeline that feeds them to a train step.

Sources (see :mod:`mnemonic_jax.data.sources`): ``digits`` (bundled, offline),
``fashion_mnist`` (Debian package ``dataset-fashion-mnist``), ``idx:<dir>`` (MNIST-format
files) and ``tfds:<name>`` (TensorFlow Datasets, read without TensorFlow when prepared as
array_record).

Example:
  >>> from mnemonic_jax.data import load_dataset, iterate_batches
  >>> ds = load_dataset("digits", split="train")
  >>> ds.images.shape[1:], ds.info.num_classes
  ((8, 8, 1), 10)
"""

from mnemonic_jax.data.pipeline import (
    augment_crop_flip,
    batch_indices,
    epoch_permutation,
    iterate_batches,
    tfds_batches,
)
from mnemonic_jax.data.sources import (
    FASHION_MNIST_CLASSES,
    Dataset,
    DatasetError,
    DatasetInfo,
    DatasetNotPrepared,
    TfdsSource,
    channel_stats,
    load_dataset,
    load_idx,
    load_tfds,
    open_tfds,
    read_idx,
)

__all__ = [
    "FASHION_MNIST_CLASSES",
    "Dataset",
    "DatasetError",
    "DatasetInfo",
    "DatasetNotPrepared",
    "TfdsSource",
    "augment_crop_flip",
    "batch_indices",
    "channel_stats",
    "epoch_permutation",
    "iterate_batches",
    "load_dataset",
    "load_idx",
    "load_tfds",
    "open_tfds",
    "read_idx",
    "tfds_batches",
]
