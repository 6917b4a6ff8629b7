"""Multi-layer perceptron: the paper's MNIST model (784-1000 sigmoid-10)."""

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from mnemonic_jax import errors

ACTIVATIONS = {
    "sigmoid": nn.sigmoid,
    "relu": nn.relu,
    "gelu": nn.gelu,
    "tanh": jnp.tanh,
}


class MLP(nn.Module):
  """Fully connected classifier on flattened inputs of any shape.

  Attributes:
    num_classes: number of output logits.
    hidden: widths of the hidden layers; the paper uses ``(1000,)``.
    activation: name of the hidden activation (``sigmoid`` in the paper).
  """

  num_classes: int
  hidden: Sequence[int] = (1000,)
  activation: str = "sigmoid"

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    del train  # No dropout or batch statistics.
    if self.activation not in ACTIVATIONS:
      raise errors.BadConfig(
          f"unknown activation {self.activation!r}; choose from {sorted(ACTIVATIONS)}")
    act = ACTIVATIONS[self.activation]
    x = x.reshape(x.shape[0], -1)
    for width in self.hidden:
      x = act(nn.Dense(width)(x))
    return nn.Dense(self.num_classes)(x)
