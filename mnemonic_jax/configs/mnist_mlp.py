"""The paper's MNIST setting: MLP 784-1000 (sigmoid)-10 on MNIST (tfds).

t_mix 0.1; SGD lr 0.01 momentum 0.9 weight decay 5e-4, batch 128, 200 epochs, no
schedule; forgetting with lambda1 = 1e-3, lambda2 = 10 (paper, Table of settings).
Published: A_R 95.9 +- 0.1, E_F 100, ~0.65 s to forget (GPU).

Needs ``tfds:mnist`` prepared in ``data_dir`` (tfds' default when ``None``); this machine
is offline, so :mod:`mnemonic_jax.configs.fashion_mnist_mlp` is the same setting on data
that is here.

Variants:
  ``quick``: 3 epochs (~15 s on a 2-core CPU).
"""

import ml_collections

from mnemonic_jax.configs import ConfigError, paper_mlp_config


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  config = paper_mlp_config("mnist_mlp", "tfds:mnist", checkpoint_every=2000)
  if variant == "quick":
    config.epochs = 3
  elif variant:
    raise ConfigError(f"unknown variant {variant!r}; use '' or 'quick'")
  return config
