"""Models trained with codes for the robust-forgetting study (issue #11), sized for 2 CPU cores.

Each variant is one architecture on one dataset; every other setting is the paper's MNIST
one (SGD lr 0.01 momentum 0.9 weight decay 5e-4, batch 128, t_mix 0.1, uniform codes):

* ``digits_tanh``, ``digits_gelu``: MLP 64-1000-10 with tanh / GELU on scikit-learn's
  bundled digits, 200 epochs (the sigmoid one is the packaged ``digits_mlp``).
* ``digits_vit``: ``vit_tiny`` with 2x2 patches on the 8x8 digits (16 tokens and a class
  token), width 64, 2 blocks, 4 heads, MLP 128; lr 0.05 with a cosine decay (as
  ``fashion_mnist_vit``), 100 epochs.
* ``fashion_tanh``, ``fashion_gelu``: MLP 784-1000-10 on Fashion-MNIST, 20 epochs (the
  paper's 200 do not fit the shared CPU; the sigmoid counterpart is
  ``fashion_mnist_mlp:e20``).

The default variant ``""`` is ``digits_tanh``; ``quick`` is ``digits_tanh`` with 30 epochs
(a few seconds on a CPU), as every config here has one.

The lambdas are the paper's MNIST values (1e-3, 10); ``"auto"`` and the robust rule
choose their own (:mod:`mnemonic_jax.robust`).
"""

import ml_collections

from mnemonic_jax.configs import paper_config

VARIANTS = ("digits_tanh", "digits_gelu", "digits_vit", "fashion_tanh", "fashion_gelu")


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  """The config of one variant (see the module docstring).

  Raises:
    ValueError: an unknown variant.
  """
  if variant in ("", "quick"):
    config = get_config("digits_tanh")
    if variant == "quick":
      config.epochs = 30
    return config
  if variant not in VARIANTS:
    raise ValueError(f"unknown variant {variant!r}; use '', 'quick' or one of {VARIANTS}")
  dataset, arch = variant.split("_")
  data = "digits" if dataset == "digits" else "fashion_mnist"
  if arch == "vit":
    config = paper_config(
        f"robust_{variant}", data, "vit_tiny",
        {"patch_size": 2, "dim": 64, "depth": 2, "num_heads": 4, "mlp_dim": 128},
        t_mix=0.1, epochs=100, schedule="cosine", lambda1=1e-3, lambda2=10.0,
        checkpoint_every=500)
    config.learning_rate = 0.05
  else:
    config = paper_config(
        f"robust_{variant}", data, "mlp", {"hidden": (1000,), "activation": arch},
        t_mix=0.1, epochs=200 if dataset == "digits" else 20, lambda1=1e-3, lambda2=10.0,
        checkpoint_every=500 if dataset == "digits" else 2000)
  return config
