"""The paper's MNIST settings on scikit-learn's bundled digits (8x8, offline).

MLP 64-1000 (sigmoid)-10, t_mix 0.1, SGD lr 0.01 momentum 0.9 weight decay 5e-4, batch
128, 200 epochs, no schedule; forgetting with lambda1 = 1e-3, lambda2 = 10.

Variants: ``digits_mlp.py:quick`` trains 30 epochs (a few seconds on a CPU).
"""

import ml_collections

from mnemonic_jax.configs import paper_mlp_config


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  config = paper_mlp_config("digits_mlp", "digits")
  if variant == "quick":
    config.epochs = 30
  elif variant:
    raise ValueError(f"unknown variant {variant!r}; use '' or 'quick'")
  return config
