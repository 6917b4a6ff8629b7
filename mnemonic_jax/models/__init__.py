"""Flax Linen models and a registry of them by name.

Every model is called as ``model.apply(variables, x, train=False)`` on a batch of NHWC
images and returns logits; models with BatchNorm keep their statistics in the
``batch_stats`` collection.
"""

from functools import partial
from typing import Any, Callable

import flax.linen as nn

from mnemonic_jax.models.mlp import MLP
from mnemonic_jax.models.resnet import ResNet18
from mnemonic_jax.models.vit import ViT

_REGISTRY: dict[str, Callable[..., nn.Module]] = {
    "mlp": MLP,
    "resnet18_cifar": partial(ResNet18, stem="cifar"),
    "resnet18": partial(ResNet18, stem="imagenet"),
    "vit_tiny": ViT,
}


def register_model(name: str, factory: Callable[..., nn.Module]) -> None:
  """Adds ``factory(num_classes=..., **kwargs) -> nn.Module`` to the registry."""
  _REGISTRY[name] = factory


def available_models() -> list[str]:
  """Names accepted by :func:`create_model`."""
  return sorted(_REGISTRY)


def create_model(name: str, num_classes: int, **kwargs: Any) -> nn.Module:
  """Builds a registered model.

  Args:
    name: registry name, one of :func:`available_models`.
    num_classes: number of output logits.
    **kwargs: the model's own attributes (e.g. ``hidden=(256,)`` for ``mlp``).

  Returns:
    An unbound Flax Linen module.

  Example:
    >>> model = create_model("mlp", num_classes=10, hidden=(64,))
  """
  if name not in _REGISTRY:
    raise ValueError(f"unknown model {name!r}; choose from {available_models()}")
  return _REGISTRY[name](num_classes=num_classes, **kwargs)


__all__ = ["MLP", "ResNet18", "ViT", "available_models", "create_model", "register_model"]
