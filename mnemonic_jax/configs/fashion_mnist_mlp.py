"""The paper's MNIST settings on real Fashion-MNIST (60k + 10k, 28x28, offline).

MLP 784-1000 (sigmoid)-10, t_mix 0.1, SGD lr 0.01 momentum 0.9 weight decay 5e-4, batch
128, 200 epochs, no schedule; forgetting with the paper's MNIST lambdas lambda1 = 1e-3,
lambda2 = 10 (or ``"auto"``, see :mod:`mnemonic_jax.forgetting.moves.paper_search`).

The data come from the Debian package ``dataset-fashion-mnist``
(``/usr/share/datasets/fashion-mnist``); ``tfds:fashion_mnist`` is the same data online.

Variants:
  ``quick``: 3 epochs on the full data (about 10 s per epoch on a 2-core CPU is the
    worst case; ~3 s is typical).
  ``e<N>`` (e.g. ``e100``): the paper's settings with ``N`` epochs instead of 200, for
    machines where 200 epochs do not fit.
"""

import ml_collections

from mnemonic_jax.configs import ConfigError, paper_mlp_config


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  config = paper_mlp_config("fashion_mnist_mlp", "fashion_mnist", checkpoint_every=2000)
  if variant == "quick":
    config.epochs = 3
  elif variant.startswith("e") and variant[1:].isdigit() and int(variant[1:]) > 0:
    config.epochs = int(variant[1:])
  elif variant:
    raise ConfigError(f"unknown variant {variant!r}; use '', 'quick' or 'e<epochs>'")
  return config
