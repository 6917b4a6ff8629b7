"""The paper's CIFAR-10 setting: ResNet-18 (CIFAR stem) trained from scratch with codes.

ResNet-18 with a 3x3 stride-1 stem and no max-pool, t_mix 0.3; SGD lr 0.01 momentum 0.9
weight decay 5e-4, batch 128, 200 epochs, cosine schedule, random crop (pad 4) and
horizontal flip; forgetting with lambda1 = 1e-5, lambda2 = 1e4. Published: A_R
94.4 +- 0.1, E_F 100, ~1.2 s to forget (GPU); A_R collapses (~11%) for lambda1 >= 1e-3.

Needs ``tfds:cifar10`` prepared in ``data_dir``. As the reference implementation does,
the codes are uniform [0, 1) in the normalised input space. One epoch is ~390 steps;
on a 2-core CPU a full-width step takes ~2.4 s, so the full setting belongs on a GPU/TPU.

Variants:
  ``quick``: width 8 (stages 8-16-32-64 channels), 1 epoch: a CPU smoke run.
"""

import ml_collections


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.name = "cifar10_resnet18"
  config.seed = 0
  config.dataset = "tfds:cifar10"
  config.data_dir = None
  config.pad_to = None
  config.model = "resnet18_cifar"
  config.model_kwargs = ml_collections.ConfigDict({"width": 64})
  config.code_distribution = "uniform"
  config.t_mix = 0.3
  config.epochs = 200
  config.batch_size = 128
  config.learning_rate = 0.01
  config.momentum = 0.9
  config.weight_decay = 5e-4
  config.schedule = "cosine"
  config.augment = True
  config.checkpoint_every = 1000
  config.lambda1 = 1e-5
  config.lambda2 = 1e4
  config.forget_classes = (0,)
  if variant == "quick":
    config.model_kwargs.width = 8
    config.epochs = 1
  elif variant:
    raise ValueError(f"unknown variant {variant!r}; use '' or 'quick'")
  return config
