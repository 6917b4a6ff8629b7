"""Tests for mnemonic_jax.data: sources (digits, idx, fashion_mnist, tfds) and pipeline.

No test touches the network: tfds is exercised with `tfds.testing.mock_data`, with a tiny
builder prepared as array_record in a temporary directory (no TensorFlow needed), and with
the not-prepared error path.
"""

import functools
import gzip
import importlib.util
import json
import os
import shutil
import time
from unittest import mock

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mnemonic_jax import checkpointing

from mnemonic_jax.data import (
    FASHION_MNIST_CLASSES,
    Dataset,
    DatasetError,
    DatasetInfo,
    augment_crop_flip,
    batch_indices,
    channel_stats,
    epoch_permutation,
    iterate_batches,
    load_dataset,
    read_idx,
    tfds_batches,
)
from mnemonic_jax.data import sources

HAS_TF = importlib.util.find_spec("tensorflow") is not None
HAS_TFDS = importlib.util.find_spec("tensorflow_datasets") is not None
needs_tfds = pytest.mark.skipif(not HAS_TFDS, reason="tensorflow-datasets not installed")


# ----------------------------------------------------------------------------- digits


@pytest.fixture(scope="module")
def digits():
  return load_dataset("digits", "train"), load_dataset("digits", "test")


def test_digits_shapes_dtypes_and_info(digits):
  train, test = digits
  assert len(train) + len(test) == 1797
  assert len(test) == pytest.approx(0.2 * 1797, abs=10)
  for ds in (train, test):
    assert ds.images.dtype == np.uint8 and ds.images.shape[1:] == (8, 8, 1)
    assert ds.labels.dtype == np.int32 and ds.labels.shape == (len(ds),)
    assert ds.images.max() == 255 and ds.images.min() == 0
  assert train.info == test.info
  info = train.info
  assert info.name == "digits" and info.num_classes == 10 and info.shape == (8, 8, 1)
  assert info.class_names == tuple(str(c) for c in range(10))
  assert info.mean == channel_stats(train.images)[0]
  assert 0.2 < info.mean[0] < 0.4 and 0.3 < info.std[0] < 0.5


def test_the_digits_file_read_directly_is_what_scikit_learn_loads(monkeypatch):
  """mnemonic_jax.data.digits reads scikit-learn's data file without importing it (1 s a
  command): the same arrays as load_digits, and load_digits itself where the file is not
  found."""
  from sklearn.datasets import load_digits
  from mnemonic_jax.data import digits as digits_source
  bunch = load_digits()
  images, target = digits_source._digits()
  assert np.array_equal(images, bunch.images) and np.array_equal(target, bunch.target)
  monkeypatch.setattr(digits_source, "_DIGITS_FILE", ("datasets", "data", "missing.csv.gz"))
  images, target = digits_source._digits()
  assert np.array_equal(images, bunch.images) and np.array_equal(target, bunch.target)


def test_digits_scaling_split_disjoint_and_stratified(digits):
  from sklearn.datasets import load_digits
  train, test = digits
  full = np.rint(load_digits().images * 255 / 16).astype(np.uint8).reshape(1797, 64)
  both = np.concatenate([train.images, test.images]).reshape(-1, 64)
  # Train and test together are exactly the 1797 images (as a multiset): no overlap.
  assert np.array_equal(np.unique(both, axis=0, return_counts=True)[1],
                        np.unique(full, axis=0, return_counts=True)[1])
  assert np.array_equal(np.sort(both.view("V64"), axis=0), np.sort(full.view("V64"), axis=0))
  counts_train = np.bincount(train.labels, minlength=10)
  counts_test = np.bincount(test.labels, minlength=10)
  np.testing.assert_allclose(counts_test / (counts_train + counts_test), 0.2, atol=0.01)


def test_digits_deterministic(digits):
  again = load_dataset("digits", "test")
  assert np.array_equal(again.images, digits[1].images)
  assert np.array_equal(again.labels, digits[1].labels)


@pytest.mark.parametrize("name,split,match", [
    ("digits", "validation", "unknown split"),
    ("nope", "train", "unknown dataset 'nope'"),
    ("cifar10", "train", "tfds:cifar10"),
    ("idx:", "train", "names no directory"),
    ("", "train", "non-empty"),
])
def test_user_errors_are_dataset_errors(name, split, match):
  with pytest.raises(DatasetError, match=match) as info:
    load_dataset(name, split)
  assert isinstance(info.value, ValueError)
  assert "\n" not in str(info.value)


def test_dataset_validates_and_subsets(digits):
  train = digits[0]
  with pytest.raises(DatasetError, match="int32"):
    Dataset(train.images, train.labels.astype(np.int64), train.info)
  with pytest.raises(DatasetError, match="labels must lie"):
    Dataset(train.images, train.labels + 10, train.info)
  sub = train.subset(train.labels == 3)
  assert len(sub) == np.sum(train.labels == 3) and set(sub.labels) == {3}
  assert sub.info is train.info


def test_channel_stats_matches_float_computation():
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (5, 4, 3, 3), dtype=np.uint8)
  mean, std = channel_stats(images)
  x = images.astype(np.float64) / 255
  np.testing.assert_allclose(mean, x.mean(axis=(0, 1, 2)), atol=1e-6)
  np.testing.assert_allclose(std, x.std(axis=(0, 1, 2)), atol=1e-6)


# ----------------------------------------------------------------------------- idx


def _idx_bytes(array: np.ndarray) -> bytes:
  codes = {np.dtype(np.uint8): 0x08, np.dtype(">i4"): 0x0C}
  header = bytes([0, 0, codes[array.dtype], array.ndim])
  header += np.asarray(array.shape, ">u4").tobytes()
  return header + array.tobytes()


def _write_idx(directory, split, images, labels, gz):
  prefix = "train" if split == "train" else "t10k"
  for kind, array, ndim in (("images", images, 3), ("labels", labels, 1)):
    path = os.path.join(directory, f"{prefix}-{kind}-idx{ndim}-ubyte" + (".gz" if gz else ""))
    data = _idx_bytes(array)
    with open(path, "wb") as f:
      f.write(gzip.compress(data) if gz else data)


def _tiny_idx(n, seed):
  rng = np.random.default_rng(seed)
  images = rng.integers(0, 256, (n, 5, 6), dtype=np.uint8)
  labels = (np.arange(n) % 4).astype(np.uint8)
  return images, labels


@pytest.mark.parametrize("gz", [False, True])
def test_idx_roundtrip(tmp_path, gz):
  train_x, train_y = _tiny_idx(12, 0)
  test_x, test_y = _tiny_idx(5, 1)
  _write_idx(tmp_path, "train", train_x, train_y, gz)
  _write_idx(tmp_path, "test", test_x, test_y, gz)
  name = f"idx:{tmp_path}"
  train, test = load_dataset(name, "train"), load_dataset(name, "test")
  assert np.array_equal(train.images, train_x[..., None])
  assert np.array_equal(test.images, test_x[..., None])
  assert np.array_equal(test.labels, test_y) and test.labels.dtype == np.int32
  assert train.images.flags.writeable
  assert train.info == test.info
  assert train.info.name == name and train.info.shape == (5, 6, 1)
  assert train.info.num_classes == 4 and train.info.class_names == ("0", "1", "2", "3")
  # Statistics describe the train split even when the test split is loaded.
  assert test.info.mean == channel_stats(train_x[..., None])[0]


def test_read_idx_parses_header_dims_and_dtype(tmp_path):
  array = (np.arange(24).reshape(2, 3, 4) - 5).astype(">i4")
  path = tmp_path / "x-idx3-int"
  path.write_bytes(_idx_bytes(array))
  out = read_idx(path)
  assert out.shape == (2, 3, 4) and out.dtype == np.int32
  assert np.array_equal(out, array)


@pytest.mark.parametrize("gz", [False, True])
def test_idx_truncated_file_is_a_dataset_error(tmp_path, gz):
  images, labels = _tiny_idx(6, 0)
  _write_idx(tmp_path, "train", images, labels, gz)
  path = tmp_path / ("train-images-idx3-ubyte" + (".gz" if gz else ""))
  data = path.read_bytes()
  path.write_bytes(data[:len(data) - 20])
  with pytest.raises(DatasetError, match="truncated|cannot read") as info:
    load_dataset(f"idx:{tmp_path}", "train")
  assert str(path) in str(info.value)


def test_idx_corrupt_files(tmp_path):
  images, labels = _tiny_idx(6, 0)
  _write_idx(tmp_path, "train", images, labels, gz=False)
  (tmp_path / "train-images-idx3-ubyte").write_bytes(b"\x12\x34\x56\x78" + b"\0" * 40)
  with pytest.raises(DatasetError, match="bad magic"):
    load_dataset(f"idx:{tmp_path}", "train")
  _write_idx(tmp_path, "train", images, labels[:5], gz=False)
  with pytest.raises(DatasetError, match="6 train images but 5 labels"):
    load_dataset(f"idx:{tmp_path}", "train")
  (tmp_path / "train-images-idx3-ubyte").write_bytes(b"\x1f\x8b not gzip")
  (tmp_path / "train-images-idx3-ubyte").rename(tmp_path / "train-images-idx3-ubyte.gz")
  with pytest.raises(DatasetError, match="cannot read"):
    load_dataset(f"idx:{tmp_path}", "train")


def test_idx_missing_files(tmp_path):
  with pytest.raises(DatasetError, match=r"t10k-images-idx3-ubyte\[\.gz\]"):
    load_dataset(f"idx:{tmp_path}", "test")
  with pytest.raises(DatasetError, match="absent does not exist; point idx:<dir> at"):
    load_dataset(f"idx:{tmp_path / 'absent'}", "train")
  (tmp_path / "afile").write_text("")
  with pytest.raises(DatasetError, match="afile is not a directory"):
    load_dataset(f"idx:{tmp_path / 'afile'}", "train")


@pytest.mark.skipif(not os.path.isdir(sources.FASHION_MNIST_DIR),
                    reason="Debian package dataset-fashion-mnist not installed")
def test_fashion_mnist_alias():
  test = load_dataset("fashion_mnist", "test")
  assert test.images.shape == (10000, 28, 28, 1) and test.images.dtype == np.uint8
  assert np.array_equal(np.bincount(test.labels), np.full(10, 1000))
  assert test.info.class_names == FASHION_MNIST_CLASSES
  assert test.info.class_names[0] == "T-shirt/top" and test.info.class_names[9] == "Ankle boot"
  assert test.info.mean == (0.2860,) and test.info.std == (0.3530,)
  same = load_dataset(f"idx:{sources.FASHION_MNIST_DIR}", "test")
  assert np.array_equal(same.images, test.images)
  np.testing.assert_allclose(same.info.mean, test.info.mean, atol=1e-4)  # The constants.


def test_fashion_mnist_missing_gives_install_hint(monkeypatch, tmp_path):
  monkeypatch.setattr(sources.idx, "FASHION_MNIST_DIR", str(tmp_path / "absent"))
  with pytest.raises(DatasetError, match="apt-get install -y dataset-fashion-mnist"):
    load_dataset("fashion_mnist", "train")


# ----------------------------------------------------------------------------- tfds


def _tiny_image(i: int) -> np.ndarray:
  return ((np.arange(64).reshape(8, 8) * 3 + i * 7) % 256).astype(np.uint8)


@functools.cache
def _tiny_builder_class():
  """A 3-class 8x8 grayscale tfds builder; registered once per process."""
  import tensorflow_datasets as tfds
  from PIL import Image

  class MnemonicTinyImages(tfds.core.GeneratorBasedBuilder):
    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
      return tfds.core.DatasetInfo(
          builder=self,
          features=tfds.features.FeaturesDict({
              "image": tfds.features.Image(shape=(8, 8, 1)),
              "label": tfds.features.ClassLabel(names=["a", "b", "c"]),
          }),
          supervised_keys=("image", "label"))

    def _split_generators(self, dl_manager):
      del dl_manager
      return {"train": self._generate_examples(range(10)),
              "test": self._generate_examples(range(10, 14))}

    def _generate_examples(self, ids):
      # PIL images are encoded without TensorFlow (numpy arrays would need tf.image).
      for i in ids:
        yield i, {"image": Image.fromarray(_tiny_image(i)), "label": i % 3}

  return MnemonicTinyImages


@pytest.fixture(scope="module")
def tiny_tfds_dir(tmp_path_factory):
  """A data_dir where `mnemonic_tiny_images` is prepared as array_record."""
  data_dir = tmp_path_factory.mktemp("tfds")
  builder = _tiny_builder_class()(data_dir=str(data_dir), file_format="array_record")
  builder.download_and_prepare()
  return data_dir


@needs_tfds
def test_tfds_not_prepared_fails_fast_without_network(tmp_path):
  start = time.monotonic()
  with pytest.raises(DatasetError, match=r"not prepared.*download=True.*data_dir"):
    load_dataset("tfds:mnist", "train", data_dir=tmp_path, download=False)
  assert time.monotonic() - start < 20
  assert list(tmp_path.iterdir()) == []  # Nothing written.


@needs_tfds
def test_training_streams_from_tfds(tiny_tfds_dir, tmp_path):
  """stream=True trains from a tfds split one batch at a time, padded to the model's size."""
  from mnemonic_jax import workflow
  config = dict(seed=0, dataset="tfds:mnemonic_tiny_images", data_dir=str(tiny_tfds_dir),
                stream=True, pad_to=12, model="mlp", model_kwargs={"hidden": (8,)},
                epochs=3, batch_size=4, checkpoint_every=100)
  bundle = workflow.train(config, tmp_path / "stream", progress=False)
  assert bundle.input_shape == (12, 12, 1) and bundle.num_classes == 3
  assert bundle.class_names == ("a", "b", "c")
  restored = checkpointing.TrainCheckpointer(tmp_path / "stream" / "train")
  assert restored.latest_step() == 3 * (10 // 4)  # Full batches only, every epoch.
  restored.close()
  with pytest.raises(DatasetError, match="stream=True needs a tfds"):
    workflow.train(dict(config, dataset="digits"), tmp_path / "digits", progress=False)


@needs_tfds
@pytest.mark.skipif(HAS_TF, reason="checks the message shown when TensorFlow is missing")
def test_tfds_download_without_tensorflow_names_the_extra(tmp_path):
  with pytest.raises(DatasetError, match=r"pip install 'mnemonic-jax\[tfds\]'"):
    load_dataset("tfds:mnist", "train", data_dir=tmp_path, download=True)
  assert list(tmp_path.iterdir()) == []


@needs_tfds
@pytest.mark.parametrize("name,match", [
    ("tfds:no_such_dataset_xyz", "unknown tfds dataset"),
    ("tfds:imdb_reviews", "not an image-classification dataset"),
    ("tfds:", "names no dataset"),
])
def test_tfds_bad_names(tmp_path, name, match):
  with pytest.raises(DatasetError, match=match) as info:
    load_dataset(name, "train", data_dir=tmp_path)
  assert "\n" not in str(info.value)


@needs_tfds
@pytest.mark.parametrize("name,shape,mean", [
    ("mnist", (28, 28, 1), (0.1307,)),
    ("cifar10", (32, 32, 3), (0.4914, 0.4822, 0.4465)),
])
def test_tfds_mock_data(tmp_path, name, shape, mean):
  import tensorflow_datasets as tfds
  # mock_data serves random examples through `as_data_source` (no TensorFlow); mark the
  # builder prepared so load_dataset reads instead of refusing to download.
  with tfds.testing.mock_data(num_examples=7), mock.patch.object(
      tfds.core.DatasetBuilder, "is_prepared", return_value=True):
    ds = load_dataset(f"tfds:{name}", "test", data_dir=tmp_path)
    batches = list(tfds_batches(name, "train", 3, data_dir=tmp_path))
  assert ds.images.shape == (7, *shape) and ds.images.dtype == np.uint8
  assert ds.labels.dtype == np.int32 and ds.labels.max() < 10
  assert ds.info == DatasetInfo(f"tfds:{name}", 10, shape, ds.info.class_names, mean,
                                ds.info.std)
  assert [len(y) for _, y in batches] == [3, 3, 1]
  assert batches[0][0].shape == (3, *shape) and batches[0][1].dtype == np.int32


@needs_tfds
def test_tfds_prepared_array_record_reads_without_tensorflow(tiny_tfds_dir):
  train = load_dataset("tfds:mnemonic_tiny_images", "train", data_dir=tiny_tfds_dir)
  test = load_dataset("tfds:mnemonic_tiny_images", "test", data_dir=tiny_tfds_dir)
  assert train.images.shape == (10, 8, 8, 1) and train.images.dtype == np.uint8
  assert test.images.shape == (4, 8, 8, 1)
  expected = {i: _tiny_image(i)[..., None] for i in range(14)}
  for image, label in zip(test.images, test.labels):
    matches = [i for i in range(10, 14) if np.array_equal(expected[i], image)]
    assert len(matches) == 1 and matches[0] % 3 == label
  assert sorted(train.labels.tolist()) == sorted(i % 3 for i in range(10))
  assert train.info.class_names == ("a", "b", "c") and train.info.num_classes == 3
  assert test.info == train.info
  assert train.info.mean == channel_stats(train.images)[0]


@needs_tfds
def test_tfds_unknown_split_and_slices(tiny_tfds_dir):
  with pytest.raises(DatasetError, match="cannot read split 'validation'"):
    load_dataset("tfds:mnemonic_tiny_images", "validation", data_dir=tiny_tfds_dir)
  half = load_dataset("tfds:mnemonic_tiny_images", "train[:50%]", data_dir=tiny_tfds_dir)
  assert len(half) == 5


@needs_tfds
def test_tfds_batches_streams_each_example_once(tiny_tfds_dir):
  key = jax.random.key(3)
  kwargs = dict(data_dir=tiny_tfds_dir)
  epoch = list(tfds_batches("tfds:mnemonic_tiny_images", "train", 4, key=key,
                            drop_remainder=False, **kwargs))
  assert [len(y) for _, y in epoch] == [4, 4, 2]
  images = np.concatenate([x for x, _ in epoch])
  full = load_dataset("tfds:mnemonic_tiny_images", "train", **kwargs)
  assert sorted(map(bytes, images)) == sorted(map(bytes, full.images))
  again = list(tfds_batches("mnemonic_tiny_images", "train", 4, key=key,
                            drop_remainder=False, **kwargs))
  assert all(np.array_equal(a[0], b[0]) for a, b in zip(epoch, again))
  dropped = list(tfds_batches("mnemonic_tiny_images", "train", 4, key=key, **kwargs))
  assert [len(y) for _, y in dropped] == [4, 4]
  ordered = list(tfds_batches("mnemonic_tiny_images", "train", 4, **kwargs))
  assert np.array_equal(np.concatenate([x for x, _ in ordered]), full.images)


@needs_tfds
@pytest.mark.skipif(HAS_TF, reason="checks the message shown when TensorFlow is missing")
def test_tfds_tfrecord_without_tensorflow_names_the_extra(tiny_tfds_dir, tmp_path):
  # A copy whose metadata says tfrecord: no random access, so TensorFlow would be needed.
  shutil.copytree(tiny_tfds_dir / "mnemonic_tiny_images", tmp_path / "mnemonic_tiny_images")
  info_path = tmp_path / "mnemonic_tiny_images" / "1.0.0" / "dataset_info.json"
  info = json.loads(info_path.read_text())
  info["fileFormat"] = "tfrecord"
  info_path.write_text(json.dumps(info))
  with pytest.raises(DatasetError, match=r"pip install 'mnemonic-jax\[tfds\]'"):
    load_dataset("tfds:mnemonic_tiny_images", "train", data_dir=tmp_path)


# ----------------------------------------------------------------------------- pipeline


def test_epoch_permutation_is_a_permutation_per_key():
  key = jax.random.key(0)
  perm = np.asarray(epoch_permutation(key, 50))
  assert sorted(perm.tolist()) == list(range(50))
  assert np.array_equal(perm, np.asarray(epoch_permutation(key, 50)))
  assert not np.array_equal(perm, np.asarray(epoch_permutation(jax.random.fold_in(key, 1), 50)))


@pytest.mark.parametrize("num_examples,batch_size", [(20, 5), (23, 5), (3, 5)])
def test_batch_indices_cover_each_index_once(num_examples, batch_size):
  idx = batch_indices(jax.random.key(1), num_examples, batch_size)
  assert isinstance(idx, np.ndarray)
  assert idx.shape == (num_examples // batch_size, batch_size)
  assert len(set(idx.ravel().tolist())) == idx.size  # No repeats.
  padded = batch_indices(jax.random.key(1), num_examples, batch_size, drop_remainder=False)
  assert padded.shape == (-(-num_examples // batch_size), batch_size)
  assert set(padded.ravel().tolist()) == set(range(num_examples))  # Every index.
  assert np.array_equal(padded[:len(idx)], idx)
  if num_examples % batch_size == 0:
    assert sorted(idx.ravel().tolist()) == list(range(num_examples))
  assert np.array_equal(batch_indices(None, 6, 3), [[0, 1, 2], [3, 4, 5]])
  with pytest.raises(DatasetError, match="batch_size"):
    batch_indices(None, 6, 0)


# Jitted once per shape, as inside a train step (eager op-by-op dispatch is slow on CPU).
_augment = jax.jit(augment_crop_flip, static_argnames=("padding", "pad_mode"))


def _distinct_images(n, h=6, w=7, c=2):
  return jnp.asarray(np.random.default_rng(0).uniform(0.5, 1.0, (n, h, w, c)), jnp.float32)


def test_augment_shape_dtype_determinism_and_jit():
  images = _distinct_images(24)
  key = jax.random.key(0)
  out = _augment(key, images)
  assert out.shape == images.shape and out.dtype == images.dtype
  assert np.array_equal(out, _augment(key, images))
  assert not np.array_equal(out, _augment(jax.random.key(1), images))
  np.testing.assert_array_equal(augment_crop_flip(key, images), out)  # Eager == jitted.


def test_augment_flips_independently_per_example():
  images = jnp.broadcast_to(_distinct_images(1), (24, 6, 7, 2))
  out = np.asarray(_augment(jax.random.key(2), images, padding=0))
  flipped = np.asarray(images[0, :, ::-1])
  is_same = [np.array_equal(o, images[0]) for o in out]
  is_flip = [np.array_equal(o, flipped) for o in out]
  assert all(s or f for s, f in zip(is_same, is_flip))
  assert 0 < sum(is_flip) < 24  # Independent coins for identical images.


def test_augment_crops_are_windows_of_the_padded_image():
  images = _distinct_images(24)
  padding = 2
  out = np.asarray(_augment(jax.random.key(4), images, padding=padding))
  padded = np.pad(np.asarray(images), ((0, 0), (padding,) * 2, (padding,) * 2, (0, 0)))
  h, w = images.shape[1:3]
  offsets = set()
  for o, p in zip(out, padded):
    found = [(dy, dx, flip)
             for dy in range(2 * padding + 1) for dx in range(2 * padding + 1)
             for flip in (False, True)
             if np.array_equal(o, (p[dy:dy + h, dx:dx + w][:, ::-1] if flip
                                   else p[dy:dy + h, dx:dx + w]))]
    assert found, "output is not a (flipped) crop of the zero-padded image"
    offsets.add(found[0][:2])
  assert len(offsets) > 3  # Crops actually move.
  assert (out == 0).any()  # Zero padding shows up in shifted crops.
  reflect = _augment(jax.random.key(4), images, padding=padding, pad_mode="reflect")
  assert not (np.asarray(reflect) == 0).any()


def test_iterate_batches_eval_and_train_modes():
  n = 23
  images = np.arange(n, dtype=np.uint8).reshape(n, 1, 1, 1) * np.ones((1, 2, 2, 1), np.uint8)
  labels = np.arange(n, dtype=np.int32) % 5
  info = DatasetInfo("toy", 5, (2, 2, 1), tuple("abcde"), (0.5,), (0.25,))
  ds = Dataset(images, labels, info)
  evaluation = list(iterate_batches(ds, 10))
  assert [len(y) for _, y in evaluation] == [10, 10, 3]
  assert np.array_equal(np.concatenate([x for x, _ in evaluation]), images)
  key = jax.random.key(5)
  train = list(iterate_batches(ds, 10, key))
  assert [len(y) for _, y in train] == [10, 10]
  seen = np.concatenate([x[:, 0, 0, 0] for x, _ in train])
  assert len(set(seen.tolist())) == 20 and not np.array_equal(seen, np.arange(20))
  for x, y in train:  # Images and labels stay paired.
    assert x.dtype == np.uint8 and y.dtype == np.int32
    assert np.array_equal(x[:, 0, 0, 0] % 5, y)
  same = list(iterate_batches((images, labels), 10, key))
  assert all(np.array_equal(a[0], b[0]) for a, b in zip(train, same))
  everything = list(iterate_batches(ds, 10, key, drop_remainder=False))
  assert sorted(np.concatenate([y for _, y in everything]).tolist()) == sorted(labels.tolist())
  with pytest.raises(DatasetError, match="differ in length"):
    list(iterate_batches((images, labels[:3]), 4))


def test_package_imports_without_tfds():
  import subprocess
  import sys
  code = "\n".join([
      "import sys",
      "sys.modules['tensorflow_datasets'] = None  # Makes the import fail.",
      "import mnemonic_jax.data as d",
      "print(len(d.load_dataset('digits', 'test')))",
      "try:",
      "  d.load_dataset('tfds:mnist')",
      "except d.DatasetError as e:",
      "  print(e)",
  ])
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       check=True, cwd=os.path.dirname(os.path.dirname(__file__)))
  lines = out.stdout.strip().splitlines()
  assert lines[0] == "359"
  assert "tensorflow-datasets" in lines[1] and "pip install" in lines[1]

