"""The paper's shared training and forgetting settings, from which every packaged config starts.

Every config of this package (``digits_mlp``, ``cifar10_resnet18``, ...) and the ``demo``
command start from :func:`paper_config` and change only what their setting changes, so the
shared defaults (SGD with momentum 0.9 and weight decay 5e-4, learning rate 0.01, uniform
codes, seed 0) live in one place. The fields are those :func:`mnemonic_jax.workflow.train`
reads (:data:`mnemonic_jax.configs.FIELD_CHECKS`).
"""

from collections.abc import Mapping
from typing import Any

import ml_collections


def paper_config(
    name: str,
    dataset: str,
    model: str,
    model_kwargs: Mapping[str, Any],
    *,
    t_mix: float,
    epochs: int,
    lambda1: float | str,
    lambda2: float | str,
    batch_size: int = 128,
    schedule: str = "constant",
    augment: bool = False,
    checkpoint_every: int = 1000,
    **fields: Any,
) -> ml_collections.ConfigDict:
  """An experiment config with the paper's shared defaults.

  Args:
    name: experiment name (results and cache directories are named after it).
    dataset: a :func:`mnemonic_jax.data.load_dataset` name.
    model: registry name; ``model_kwargs`` its attributes.
    t_mix: code mixing rate (paper: 0.1, or 0.3 for CIFAR-10 and ImageNet).
    epochs, batch_size, schedule, augment: training (SGD lr 0.01, momentum 0.9, weight
      decay 5e-4 unless ``fields`` says otherwise).
    lambda1, lambda2: the paper's forgetting step bounds for this setting (or ``"auto"``).
    checkpoint_every: training steps between checkpoints (``log_every``, 100: between
      lines of the run's ``metrics.jsonl``; ``data_dir`` None and ``download`` False:
      where a ``tfds:`` dataset is prepared, and whether tfds may download it).
    **fields: further or overriding fields (e.g. ``pretrained``, ``weight_decay``).

  Returns:
    A ConfigDict.
  """
  config = ml_collections.ConfigDict()
  config.name = name
  config.seed = 0
  config.dataset = dataset
  config.data_dir = None
  config.download = False
  config.pad_to = None
  config.model = model
  config.model_kwargs = ml_collections.ConfigDict(dict(model_kwargs))
  config.code_distribution = "uniform"
  config.t_mix = t_mix
  config.epochs = epochs
  config.batch_size = batch_size
  config.learning_rate = 0.01
  config.momentum = 0.9
  config.weight_decay = 5e-4
  config.schedule = schedule
  config.augment = augment
  config.checkpoint_every = checkpoint_every
  config.log_every = 100
  config.lambda1 = lambda1
  config.lambda2 = lambda2
  config.forget_classes = (0,)
  for key, value in fields.items():
    config[key] = value
  return config


def paper_mlp_config(name: str, dataset: str, *, epochs: int = 200,
                     checkpoint_every: int = 500, **fields: Any) -> ml_collections.ConfigDict:
  """The paper's MNIST setting: MLP ...-1000 (sigmoid)-C, t_mix 0.1, lambdas (1e-3, 10).

  Args:
    name, dataset, epochs, checkpoint_every, **fields: as :func:`paper_config`.

  Returns:
    A ConfigDict (unlocked).
  """
  return paper_config(
      name, dataset, "mlp", {"hidden": (1000,), "activation": "sigmoid"}, t_mix=0.1,
      epochs=epochs, lambda1=1e-3, lambda2=10.0, checkpoint_every=checkpoint_every, **fields)
