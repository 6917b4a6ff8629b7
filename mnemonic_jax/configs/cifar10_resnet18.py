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

from mnemonic_jax.configs import ConfigError, paper_config


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  config = paper_config(
      "cifar10_resnet18", "tfds:cifar10", "resnet18_cifar", {"width": 64}, t_mix=0.3,
      epochs=200, schedule="cosine", augment=True, lambda1=1e-5, lambda2=1e4)
  if variant == "quick":
    config.model_kwargs.width = 8
    config.epochs = 1
  elif variant:
    raise ConfigError(f"unknown variant {variant!r}; use '' or 'quick'")
  return config
