"""The paper's configs, packaged, and the one config loader (ml_collections).

Each public module of this package is one setting of the paper as an ml_collections
config file (``get_config(variant="")``), named on the command line by its module name,
from any folder once the package is installed::

  mnemonic-jax train --config digits_mlp:quick --workdir runs/digits
  mnemonic-jax train --config fashion_mnist_mlp:e100 --config.t_mix=0.0 --workdir runs/plain
  mnemonic-jax train --config path/to/my_config.py:variant --workdir runs/mine

=====================  ==========================================================
``digits_mlp``         MNIST's MLP setting on scikit-learn's bundled digits (offline)
``mnist_mlp``          MNIST (tfds): MLP 784-1000 (sigmoid)-10
``fashion_mnist_mlp``  the MNIST setting on Fashion-MNIST (Debian package, offline)
``fashion_mnist_vit``  a small ViT on Fashion-MNIST (CPU-sized)
``cifar10_resnet18``   CIFAR-10: ResNet-18 from scratch
``cub_resnet18``       CUB (40 classes): ImageNet-pretrained ResNet-18 fine-tuned
``stn_resnet18``       STN (49 classes): ImageNet-pretrained ResNet-18 fine-tuned
``imagenet_finetune``  ImageNet: fine-tune a pretrained ResNet-18 or ViT
=====================  ==========================================================

Each has a ``quick`` variant (a CPU smoke run); each module's docstring gives the
published numbers and its other variants. They all start from :func:`paper_config`.

:func:`load_config` (``NAME[:VARIANT]`` or ``FILE[:VARIANT]`` plus ``--config.FIELD=VALUE``
overrides, through ``ml_collections.config_flags`` with locked configs) is the one loader
of the command line and the experiment runners; :func:`validate_config` checks every
field :func:`mnemonic_jax.workflow.train` reads. A config that cannot be used raises
:class:`ConfigError` (a :class:`mnemonic_jax.errors.BadConfig`) with a one-line message.
"""

from mnemonic_jax.configs._fields import (
    FIELD_CHECKS, FIELD_TYPES, MAX_SEED, MAX_STEPS, ConfigError, validate_config)
from mnemonic_jax.configs._loader import (
    OVERRIDE_PREFIX, apply_overrides, available_configs, load_config, load_config_file,
    split_overrides, split_spec)
from mnemonic_jax.configs._paper import paper_config, paper_mlp_config

__all__ = [
    "FIELD_CHECKS", "FIELD_TYPES", "MAX_SEED", "MAX_STEPS", "OVERRIDE_PREFIX", "ConfigError",
    "apply_overrides", "available_configs", "load_config", "load_config_file",
    "paper_config", "paper_mlp_config", "split_overrides", "split_spec", "validate_config",
]
