"""The paper's MNIST settings on scikit-learn's bundled digits (8x8, offline).

MLP 64-1000 (sigmoid)-10, t_mix 0.1, SGD lr 0.01 momentum 0.9 weight decay 5e-4, batch
128, 200 epochs, no schedule; forgetting with lambda1 = 1e-3, lambda2 = 10.

Variants: ``digits_mlp:quick`` trains 30 epochs (a few seconds on a CPU).

``baselines`` holds the settings of the unlearning baselines that differ from their
published defaults (``python -m experiments.table --methods ...``). Digits has 11 batches
of 128 an epoch where MNIST has 469, so the published epoch counts of the fine-tuning style
methods give only a few dozen steps here and leave the class known (fine-tune 5 epochs:
E_F 22 on class 3); they get 40 epochs (440-480 steps, a fifth of the training run).
"""

import ml_collections

from mnemonic_jax.configs import ConfigError, paper_mlp_config


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  config = paper_mlp_config("digits_mlp", "digits")
  config.baselines = ml_collections.ConfigDict({
      "finetune": {"epochs": 40}, "neggrad_plus": {"epochs": 40},
      "random_labels": {"epochs": 40}})
  if variant == "quick":
    config.epochs = 30
  elif variant:
    raise ConfigError(f"unknown variant {variant!r}; use '' or 'quick'")
  return config
