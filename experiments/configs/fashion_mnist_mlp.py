"""The paper's MNIST settings on real Fashion-MNIST (60k + 10k, 28x28, offline).

MLP 784-1000 (sigmoid)-10, t_mix 0.1, SGD lr 0.01 momentum 0.9 weight decay 5e-4, batch
128, 200 epochs, no schedule; forgetting with the paper's MNIST lambdas lambda1 = 1e-3,
lambda2 = 10 (or ``"auto"``, see :mod:`mnemonic_jax.lambda_search`).

The data come from the Debian package ``dataset-fashion-mnist``
(``/usr/share/datasets/fashion-mnist``); ``tfds:fashion_mnist`` is the same data online.

Variants:
  ``quick``: 3 epochs on the full data (about 10 s per epoch on a 2-core CPU is the
    worst case; ~3 s is typical).
  ``e<N>`` (e.g. ``e100``): the paper's settings with ``N`` epochs instead of 200, for
    machines where 200 epochs do not fit.
"""

import ml_collections


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.name = "fashion_mnist_mlp"
  config.seed = 0
  config.dataset = "fashion_mnist"
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
  elif variant.startswith("e") and variant[1:].isdigit() and int(variant[1:]) > 0:
    config.epochs = int(variant[1:])
  elif variant:
    raise ValueError(f"unknown variant {variant!r}; use '', 'quick' or 'e<epochs>'")
  return config
