"""The depth run issue #20 asks of a lent GPU: ResNet-18 (CIFAR stem) on Fashion-MNIST.

The whole Fashion-MNIST (60,000 train / 10,000 test images, the Debian package's idx
files) padded to 32x32 with zeros, one channel; ResNet-18 with the CIFAR stem (3x3,
stride 1, no max-pool), width 64; the paper's CIFAR-10 settings otherwise (SGD lr 0.01,
momentum 0.9, weight decay 5e-4, batch 128, cosine schedule, t_mix 0.3, lambda1 1e-5,
lambda2 1e4) but without augmentation and for 8 epochs, so that the original and three
oracles (classes 0, 6 and {0,1,2}) train within the 15 device minutes a session is lent.

One command on the GPU machine (Fashion-MNIST's idx files at DIR, default the Debian
package's folder):

  python -m experiments.depth --models experiments/configs/gpu_depth.py:fashion_resnet18 \
      --seed 0 --classes 0,6,0+1+2 --oracle-seeds '' \
      --methods mnemonic-reassign,mnemonic-auto --out OUT

Variants:
  ``fashion_resnet18`` (default): the setting above.
  ``quick``: width 8, 1 epoch: a CPU smoke run of the same command (a few minutes on
    2 cores for one class set).
"""

import ml_collections

from mnemonic_jax.configs import ConfigError, paper_config

#: Where the Fashion-MNIST idx files are read from (the Debian package's folder).
DATA = "idx:/usr/share/datasets/fashion-mnist"


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  """The config of one variant (see the module docstring).

  Raises:
    ConfigError: an unknown variant.
  """
  if variant not in ("", "fashion_resnet18", "quick"):
    raise ConfigError(f"unknown variant {variant!r}; use '', 'fashion_resnet18' or 'quick'")
  config = paper_config(
      "gpu_fashion_resnet18", DATA, "resnet18_cifar", {"width": 64}, t_mix=0.3, epochs=8,
      schedule="cosine", lambda1=1e-5, lambda2=1e4, pad_to=32, checkpoint_every=100_000)
  if variant == "quick":
    config.model_kwargs.width = 8
    config.epochs = 1
  return config
