"""ResNet-18 with BatchNorm: CIFAR stem (3x3 conv, no max-pool) or ImageNet stem."""

from functools import partial

import flax.linen as nn
import jax
import jax.numpy as jnp

from mnemonic_jax.models import attributes


class BasicBlock(nn.Module):
  """Two 3x3 convolutions with a residual connection (He et al., 2016)."""

  features: int
  strides: int = 1

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    norm = partial(nn.BatchNorm, use_running_average=not train, momentum=0.9)
    conv = partial(nn.Conv, use_bias=False)
    y = conv(self.features, (3, 3), self.strides, padding=1)(x)
    y = nn.relu(norm()(y))
    y = conv(self.features, (3, 3), padding=1)(y)
    y = norm()(y)
    if self.strides != 1 or x.shape[-1] != self.features:
      x = norm()(conv(self.features, (1, 1), self.strides)(x))
    return nn.relu(x + y)


class ResNet18(nn.Module):
  """ResNet-18 classifier.

  Attributes:
    num_classes: number of output logits.
    stem: ``"cifar"`` (3x3 stride-1 conv, no max-pool, as in the paper's CIFAR-10
      model) or ``"imagenet"`` (7x7 stride-2 conv and 3x3 max-pool).
    width: channels of the first stage (64 in the standard model); the stages use
      ``width * (1, 2, 4, 8)``.
  """

  num_classes: int
  stem: str = "cifar"
  width: int = 64

  def __post_init__(self):
    """Checks the attributes when the model is built (:mod:`~mnemonic_jax.models.attributes`).

    Raises:
      BadRequestType, BadRequest: ``num_classes`` or ``width`` not an int >= 1, an unknown
        ``stem``.
    """
    attributes.num_classes("ResNet18", self.num_classes)
    attributes.choice("ResNet18", "stem", self.stem, ("cifar", "imagenet"))
    attributes.whole_number("ResNet18", "width", self.width)
    super().__post_init__()

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    norm = partial(nn.BatchNorm, use_running_average=not train, momentum=0.9)
    if self.stem == "cifar":
      x = nn.Conv(self.width, (3, 3), padding=1, use_bias=False)(x)
      x = nn.relu(norm()(x))
    elif self.stem == "imagenet":
      x = nn.Conv(self.width, (7, 7), 2, padding=3, use_bias=False)(x)
      x = nn.relu(norm()(x))
      x = nn.max_pool(x, (3, 3), (2, 2), padding=((1, 1), (1, 1)))
    for stage, multiplier in enumerate((1, 2, 4, 8)):
      for block in range(2):
        strides = 2 if stage > 0 and block == 0 else 1
        x = BasicBlock(self.width * multiplier, strides)(x, train)
    x = jnp.mean(x, axis=(1, 2))
    return nn.Dense(self.num_classes)(x)
