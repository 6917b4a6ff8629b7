"""Dataset sources: one name in, numpy arrays out, through one registry.

``load_dataset(name, split)`` looks the name up in :data:`SOURCES`:

* ``digits`` (:mod:`~mnemonic_jax.data.digits`): scikit-learn's bundled 8x8 digits (1797
  real images, offline, the default).
* ``fashion_mnist`` (:mod:`~mnemonic_jax.data.idx`): the Fashion-MNIST idx files of the
  Debian package ``dataset-fashion-mnist`` (alias of
  ``idx:/usr/share/datasets/fashion-mnist``).
* ``idx:<dir>`` (:mod:`~mnemonic_jax.data.idx`): MNIST-format idx files (gzipped or not) in
  ``<dir>``.
* ``tfds:<name>`` (:mod:`~mnemonic_jax.data.tfds_source`): any TensorFlow Datasets
  image-classification builder (``mnist``, ``cifar10``, ...) with ``image`` and ``label``
  features, read without TensorFlow when it is prepared in the ``array_record`` format.

Every source returns a :class:`~mnemonic_jax.data.dataset.Dataset` of ``uint8`` NHWC
images and ``int32`` labels with a :class:`~mnemonic_jax.data.dataset.DatasetInfo` that
carries the per-channel statistics used to normalise inputs. Every user error raises
:class:`~mnemonic_jax.data.dataset.DatasetError` with one line naming the problem and the
fix. This module also re-exports the sources' public names.
"""

from __future__ import annotations

import os
from typing import Callable

from mnemonic_jax.data import digits, idx, tfds_source
from mnemonic_jax.data.dataset import (
    _KNOWN_STATS, MAX_CLASSES, SPLITS, Dataset, DatasetError, DatasetInfo, DatasetNotPrepared,
    _check_split, channel_stats)
from mnemonic_jax.data.idx import (
    FASHION_MNIST_CLASSES, FASHION_MNIST_DIR, load_idx, read_idx)
from mnemonic_jax.data.tfds_source import (
    TFDS_INSTALL_HINT, TfdsSource, load_tfds, open_tfds)

#: A source's loader: ``(argument, split, data_dir, download) -> Dataset``, where
#: ``argument`` is what follows a prefix (``"/data/mnist"`` of ``"idx:/data/mnist"``;
#: ``""`` for a plain name).
Loader = Callable[[str, str, "str | os.PathLike | None", bool], Dataset]


def _digits(_: str, split: str, data_dir, download) -> Dataset:
  del data_dir, download  # Bundled with scikit-learn.
  _check_split("digits", split)
  return digits.load_digits_split(split)


def _fashion_mnist(_: str, split: str, data_dir, download) -> Dataset:
  del data_dir, download  # The Debian package's fixed location.
  _check_split("fashion_mnist", split)
  return idx.load_fashion_mnist(split)


def _idx(directory: str, split: str, data_dir, download) -> Dataset:
  del data_dir, download  # The directory is in the name.
  _check_split(f"idx:{directory}", split)
  if not directory:
    raise DatasetError("'idx:' names no directory; write 'idx:/path/to/dir'")
  return idx.load_idx(directory, split, name=f"idx:{directory}")


def _tfds(name: str, split: str, data_dir, download) -> Dataset:
  return tfds_source.load_tfds(name, split, data_dir=data_dir, download=download)


#: Source names, and prefixes (ending in ``:``) followed by an argument, to their loaders.
SOURCES: dict[str, Loader] = {
    "digits": _digits,
    "fashion_mnist": _fashion_mnist,
    "idx:": _idx,
    "tfds:": _tfds,
}
_SOURCES_HINT = "use 'digits', 'fashion_mnist', 'idx:<dir>' or 'tfds:<name>'"


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
  prefix, colon, argument = name.partition(":")
  loader = SOURCES.get(prefix + colon) if colon else SOURCES.get(name)
  if loader is None:
    hint = f"did you mean 'tfds:{name}'? " if name in _KNOWN_STATS else ""
    raise DatasetError(f"unknown dataset {name!r}; {hint}{_SOURCES_HINT}")
  return loader(argument, split, data_dir, download)


__all__ = [
    "FASHION_MNIST_CLASSES", "FASHION_MNIST_DIR", "MAX_CLASSES", "SOURCES", "SPLITS",
    "TFDS_INSTALL_HINT", "Dataset", "DatasetError", "DatasetInfo", "DatasetNotPrepared",
    "Loader", "TfdsSource", "channel_stats", "load_dataset", "load_idx", "load_tfds",
    "open_tfds", "read_idx",
]
