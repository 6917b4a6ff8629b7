"""The paper's MNIST settings on scikit-learn's bundled digits (8x8, offline).

MLP 64-1000 (sigmoid)-10, t_mix 0.1, SGD lr 0.01 momentum 0.9 weight decay 5e-4, batch
128, 200 epochs, no schedule; forgetting with lambda1 = 1e-3, lambda2 = 10.

Variants: ``digits_mlp.py:quick`` trains 30 epochs (a few seconds on a CPU).
"""

import ml_collections


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.name = "digits_mlp"
  config.seed = 0
  config.dataset = "digits"
  config.data_dir = None
  config.pad_to = None
  config.model = "mlp"
  config.model_kwargs = ml_collections.ConfigDict({"hidden": (1000,), "activation": "sigmoid"})
  config.code_distribution = "uniform"
  config.t_mix = 0.1
  config.epochs = 200
  config.batch_size = 128
  config.learning_rate = 0.01
  config.momentum = 0.9
  config.weight_decay = 5e-4
  config.schedule = "constant"
  config.augment = False
  config.checkpoint_every = 500
  config.lambda1 = 1e-3
  config.lambda2 = 10.0
  config.forget_classes = (0,)
  if variant == "quick":
    config.epochs = 30
  elif variant:
    raise ValueError(f"unknown variant {variant!r}; use '' or 'quick'")
  return config
