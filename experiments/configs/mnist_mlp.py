"""The paper's MNIST setting: MLP 784-1000 (sigmoid)-10 on MNIST (tfds).

t_mix 0.1; SGD lr 0.01 momentum 0.9 weight decay 5e-4, batch 128, 200 epochs, no
schedule; forgetting with lambda1 = 1e-3, lambda2 = 10 (paper, Table of settings).
Published: A_R 95.9 +- 0.1, E_F 100, ~0.65 s to forget (GPU).

Needs ``tfds:mnist`` prepared in ``data_dir`` (tfds' default when ``None``); this machine
is offline, so :mod:`experiments.configs.fashion_mnist_mlp` is the same setting on data
that is here.

Variants:
  ``quick``: 3 epochs (~15 s on a 2-core CPU).
"""

import ml_collections


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.name = "mnist_mlp"
  config.seed = 0
  config.dataset = "tfds:mnist"
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
  config.checkpoint_every = 2000
  config.lambda1 = 1e-3
  config.lambda2 = 10.0
  config.forget_classes = (0,)
  if variant == "quick":
    config.epochs = 3
  elif variant:
    raise ValueError(f"unknown variant {variant!r}; use '' or 'quick'")
  return config
