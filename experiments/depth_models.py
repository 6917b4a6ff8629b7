"""The models of the depth experiment (issue #19), and the one the package does not ship.

* ``depth_cnn_bn`` (registered on import): a small ReLU CNN with BatchNorm, the kind of
  model on which issue #19 saw the bias move leak (:class:`ConvBN`; the input of its
  ``Dense`` head is the penultimate features the depth attacks read).
* ``depth_ln_mlp`` (registered on import): a ReLU MLP with a LayerNorm before its head
  (:class:`LayerNormMLP`), trained for issue #20 after its rule was chosen (held out).
* :func:`fashion_subset`: a stratified subset of Fashion-MNIST written as idx files, so
  that ``workflow.train`` and ``load_dataset`` read it as the ``idx:<dir>`` source.
* :func:`model_config`: the training config of each model of the experiment
  (:data:`MODELS`): the digits sigmoid MLP (``digits_mlp``), the tanh, GELU and ViT models of
  ``experiments/configs/robust_models.py``, and the CNN on the Fashion-MNIST subset.

Example:
  >>> from experiments import depth_models
  >>> config = depth_models.model_config("fashion_cnn", cache)   # trains in ~1 min on 2 cores
"""

from __future__ import annotations

import gzip
import os
import pathlib
from collections.abc import Sequence

import flax.linen as nn
import jax
import ml_collections
import numpy as np

from mnemonic_jax import configs, models
from mnemonic_jax.models import bounds
from mnemonic_jax.data.idx import FASHION_MNIST_DIR

#: The experiment's models, in report order.
MODELS = ("digits_sigmoid", "digits_tanh", "digits_gelu", "digits_vit", "fashion_cnn",
          "digits_lnrelu")

#: Fashion-MNIST subset (images per class, train / test) and training of the CNN.
FASHION_TRAIN_PER_CLASS = 1000
FASHION_TEST_PER_CLASS = 300
FASHION_EPOCHS = 6

_ROBUST = pathlib.Path(__file__).parent / "configs" / "robust_models.py"


class ConvBN(nn.Module):
  """Small ReLU CNN with BatchNorm for ``(N, H, W, C)`` images.

  Each convolution (3x3, ``widths`` channels) is followed by BatchNorm, ReLU and a 2x2
  max-pool; then a flatten, a ReLU ``Dense`` of ``hidden`` units (the penultimate
  features) and the ``Dense`` head.

  Attributes:
    num_classes: number of output logits.
    widths: channels of the convolutions.
    hidden: width of the penultimate layer.
  """

  num_classes: int
  widths: Sequence[int] = (8, 16)
  hidden: int = 64

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    for width in self.widths:
      x = nn.Conv(width, (3, 3), use_bias=False)(x)
      x = nn.relu(nn.BatchNorm(use_running_average=not train, momentum=0.9)(x))
      x = nn.max_pool(x, (2, 2), strides=(2, 2))
    x = nn.relu(nn.Dense(self.hidden)(x.reshape(x.shape[0], -1)))
    return nn.Dense(self.num_classes)(x)


models.register_model("depth_cnn_bn", ConvBN)


class LayerNormMLP(nn.Module):
  """MLP with ReLU hidden layers and a LayerNorm before the ``Dense`` head (issue #20's
  LayerNorm-ReLU MLP). Declares its head's input bound
  (:class:`mnemonic_jax.models.bounds.LayerNormed`).

  Attributes:
    num_classes: number of output logits.
    hidden: widths of the hidden layers.
  """

  num_classes: int
  hidden: Sequence[int] = (1000,)

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    del train
    x = x.reshape(x.shape[0], -1)
    for width in self.hidden:
      x = nn.relu(nn.Dense(width)(x))
    return nn.Dense(self.num_classes)(nn.LayerNorm(name="LayerNorm_0")(x))

  def head_feature_bound(self) -> bounds.LayerNormed:
    """The head reads ``LayerNorm_0``."""
    return bounds.LayerNormed(("LayerNorm_0",))


models.register_model("depth_ln_mlp", LayerNormMLP)


def _write_idx(path: pathlib.Path, array: np.ndarray) -> None:
  """One uint8 idx file (the MNIST format: magic 0 0 8 ndim, big-endian sizes, data)."""
  header = bytes([0, 0, 8, array.ndim]) + b"".join(
      int(n).to_bytes(4, "big") for n in array.shape)
  tmp = path.with_suffix(".tmp")
  tmp.write_bytes(header + np.ascontiguousarray(array, np.uint8).tobytes())
  tmp.replace(path)


def fashion_subset(root: pathlib.Path, train_per_class: int = FASHION_TRAIN_PER_CLASS,
                   test_per_class: int = FASHION_TEST_PER_CLASS) -> pathlib.Path:
  """A stratified subset of Fashion-MNIST as idx files (written once; numpy seed 0).

  Args:
    root: the folder the subset's folder goes in.
    train_per_class, test_per_class: images of each class kept from each split.

  Returns:
    The subset's folder (load it as ``load_dataset(f"idx:{folder}", split)``).

  Raises:
    FileNotFoundError: Fashion-MNIST is not installed (``apt-get install
      dataset-fashion-mnist``).
  """
  folder = root / f"fashion_mnist_subset-{train_per_class}-{test_per_class}"
  names = {"train": "train", "test": "t10k"}
  if all((folder / f"{n}-labels-idx1-ubyte").exists() for n in names.values()):
    return folder
  folder.mkdir(parents=True, exist_ok=True)
  rng = np.random.default_rng(0)
  for split, per_class in (("train", train_per_class), ("test", test_per_class)):
    images, labels = (_read_gz_idx(pathlib.Path(FASHION_MNIST_DIR)
                                   / f"{names[split]}-{kind}-idx{dim}-ubyte.gz")
                      for kind, dim in (("images", 3), ("labels", 1)))
    keep = np.sort(np.concatenate([rng.permutation(np.flatnonzero(labels == c))[:per_class]
                                   for c in range(10)]))
    _write_idx(folder / f"{names[split]}-images-idx3-ubyte", images[keep])
    _write_idx(folder / f"{names[split]}-labels-idx1-ubyte", labels[keep])
  return folder


def _read_gz_idx(path: pathlib.Path) -> np.ndarray:
  """One gzipped uint8 idx file of the Debian package (trusted, read whole)."""
  if not os.path.isdir(FASHION_MNIST_DIR):
    raise FileNotFoundError(f"Fashion-MNIST is not installed at {FASHION_MNIST_DIR}: run "
                            "'apt-get install -y dataset-fashion-mnist'")
  with gzip.open(path, "rb") as f:
    raw = f.read()
  if raw[:3] != bytes([0, 0, 8]):
    raise ValueError(f"{path} is not a uint8 idx file")
  ndim = raw[3]
  dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
  return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(dims)


#: Settings of the data-based baselines that differ from their published defaults, for
#: the digits models: those of ``digits_mlp`` (digits has 11 batches an epoch, so the
#: published epochs of the fine-tuning methods are a few dozen steps there).
DIGITS_BASELINES = {"finetune": {"epochs": 40}, "neggrad_plus": {"epochs": 40},
                    "random_labels": {"epochs": 40}}


def describe(name: str, config: ml_collections.ConfigDict) -> str:
  """The data of model ``name`` (config ``config``) in words, for the report."""
  if name == "fashion_cnn":
    return (f"Fashion-MNIST subset ({FASHION_TRAIN_PER_CLASS} train / {FASHION_TEST_PER_CLASS} "
            "test images per class, drawn with numpy seed 0)")
  if config.dataset == "digits":
    return "digits (scikit-learn's 8x8, 1438 train / 359 test)"
  return str(config.dataset)


def model_config(name: str, cache: pathlib.Path,
                 epochs: int | None = None) -> ml_collections.ConfigDict:
  """The training config of one model of :data:`MODELS`, or of any config spec.

  Args:
    name: one of :data:`MODELS`, or a config as ``mnemonic-jax train`` takes it
      (``digits_mlp``, ``path/to/config.py:variant``).
    cache: where the Fashion-MNIST subset is written (``fashion_cnn``).
    epochs: overrides the config's epochs.

  Returns:
    A ConfigDict with a ``baselines`` section (:data:`DIGITS_BASELINES` on the digits
    models; the published defaults on the CNN; a config spec's own section, if any).

  Raises:
    mnemonic_jax.configs.ConfigError: an unknown name.
  """
  if name == "digits_sigmoid":
    config = configs.load_config("digits_mlp")
  elif name in ("digits_tanh", "digits_gelu", "digits_vit"):
    config = configs.load_config(f"{_ROBUST}:{name}")
  elif name == "digits_lnrelu":
    config = configs.paper_config(
        "depth_digits_lnrelu", "digits", "depth_ln_mlp", {"hidden": (1000,)}, t_mix=0.1,
        epochs=200, lambda1=1e-3, lambda2=10.0, checkpoint_every=500)
  elif name == "fashion_cnn":
    folder = fashion_subset(cache)
    config = configs.paper_config(
        "depth_fashion_cnn", f"idx:{folder.resolve()}", "depth_cnn_bn",
        {"widths": (8, 16), "hidden": 64}, t_mix=0.1, epochs=FASHION_EPOCHS, lambda1=1e-3,
        lambda2=10.0, checkpoint_every=100_000)
    config.learning_rate = 0.05
  else:
    config = configs.load_config(name)
  with config.unlocked():
    if epochs is not None:
      config.epochs = epochs
    if name in MODELS:
      config.baselines = ml_collections.ConfigDict(
          DIGITS_BASELINES if name.startswith("digits") else {})
    elif "baselines" not in config:
      config.baselines = ml_collections.ConfigDict()
  return config
