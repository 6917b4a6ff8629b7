"""Multi-layer perceptron: the paper's MNIST model (784-1000 sigmoid-10)."""

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from mnemonic_jax.models import attributes, bounds

ACTIVATIONS = {
    "sigmoid": nn.sigmoid,
    "relu": nn.relu,
    "gelu": nn.gelu,
    "tanh": jnp.tanh,
}

#: The bounded activations' ranges: what the head's input can be.
_BOXES = {"sigmoid": (0.0, 1.0), "tanh": (-1.0, 1.0)}


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

  def __post_init__(self):
    """Checks the attributes when the model is built (:mod:`~mnemonic_jax.models.attributes`).

    Raises:
      BadRequestType, BadRequest: ``num_classes`` not an int >= 1, ``hidden`` not a
        sequence of ints >= 1 (``hidden=32``: write ``(32,)``), an unknown ``activation``.
    """
    attributes.num_classes("MLP", self.num_classes)
    attributes.int_sequence("MLP", "hidden", self.hidden)
    attributes.choice("MLP", "activation", self.activation, sorted(ACTIVATIONS))
    super().__post_init__()

  def head_feature_bound(self) -> "bounds.Box | None":
    """The box the head's input lies in: sigmoid ``[0, 1]``, tanh ``[-1, 1]``; None for an
    unbounded activation or no hidden layer (read by
    :func:`mnemonic_jax.models.bounds.declared`)."""
    if not self.hidden or self.activation not in _BOXES:
      return None
    return bounds.Box(*_BOXES[self.activation])

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    del train  # No dropout or batch statistics.
    act = ACTIVATIONS[self.activation]  # Checked when built.
    x = x.reshape(x.shape[0], -1)
    for width in self.hidden:
      x = act(nn.Dense(width)(x))
    return nn.Dense(self.num_classes)(x)
