"""The ``digits`` source: scikit-learn's bundled 8x8 digits (1797 real images, offline).

A fixed stratified split (20% test, seed 0) gives the ``train`` and ``test`` splits.
"""

from __future__ import annotations

import importlib.util
import pathlib

import numpy as np

from mnemonic_jax.data.dataset import Dataset, DatasetInfo, channel_stats

_DIGITS_TEST_FRACTION = 0.2
_DIGITS_SEED = 0


def load_digits_split(split: str) -> Dataset:
  """One split of the digits: 8x8x1 ``uint8`` images scaled from 0..16 to 0..255.

  Args:
    split: ``"train"`` (1438 images) or ``"test"`` (359).

  Returns:
    A :class:`Dataset` whose mean and std are the train split's.
  """
  pixels, target = _digits()
  images = np.rint(pixels * (255.0 / 16.0)).astype(np.uint8)[..., None]
  labels = target.astype(np.int32)
  train_idx, test_idx = _stratified_split(labels, _DIGITS_TEST_FRACTION, _DIGITS_SEED)
  mean, std = channel_stats(images[train_idx])
  info = DatasetInfo(
      name="digits", num_classes=10, shape=(8, 8, 1),
      class_names=tuple(str(c) for c in range(10)), mean=mean, std=std)
  idx = train_idx if split == "train" else test_idx
  return Dataset(images[idx], labels[idx], info)


#: scikit-learn's file of the digits (its ``load_digits`` reads it): 1797 rows of 64 pixel
#: values (0..16) and the class, comma-separated, gzipped.
_DIGITS_FILE = ("datasets", "data", "digits.csv.gz")
_DIGITS_ROWS = 1797


def _digits() -> tuple[np.ndarray, np.ndarray]:
  """scikit-learn's digits, ``(images (1797, 8, 8) float64 in 0..16, target (1797,))``.

  Read from the data file scikit-learn ships, found without importing scikit-learn
  (``import sklearn.datasets`` costs 0.8-1.4 s of every command on the digits, the file
  0.05 s); the same arrays as ``sklearn.datasets.load_digits`` (tests/test_data.py pins
  it), which is used instead when the file is not where it was or not as it was.
  """
  spec = importlib.util.find_spec("sklearn")
  for folder in (spec.submodule_search_locations or []) if spec else []:
    try:
      data = np.loadtxt(pathlib.Path(folder).joinpath(*_DIGITS_FILE), delimiter=",")
    except (OSError, ValueError):
      continue
    if data.shape == (_DIGITS_ROWS, 65) and np.all((data >= 0) & (data <= 16)):
      return data[:, :-1].reshape(-1, 8, 8), data[:, -1].astype(np.int64)
  from sklearn.datasets import load_digits  # pylint: disable=import-outside-toplevel

  bunch = load_digits()
  return bunch.images, bunch.target


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

