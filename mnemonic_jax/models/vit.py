"""A small Vision Transformer (ViT-Ti layout by default), for the paper's Transformer claim.

The layout is that of Dosovitskiy et al., *An Image is Worth 16x16 Words*, ICLR 2021
(pre-norm blocks, a class token, learned position embeddings), as in big_vision's
``vit.py``. The class token and the position embedding are small modules of their own,
registered with :func:`mnemonic_jax.layer_taps.register_layer`, so that every parameter
of the ViT sits in a layer whose per-example gradients the factorised Fisher computes
exactly from one batched backward pass.
"""

from typing import Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp

from mnemonic_jax import errors
from mnemonic_jax import layer_taps
from mnemonic_jax.models import attributes, bounds


class ClassToken(nn.Module):
  """Prepends one learned token to every sequence: ``(N, T, D) -> (N, T + 1, D)``."""

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    cls = self.param("cls", nn.initializers.zeros, (1, 1, x.shape[-1]))
    cls = jnp.broadcast_to(cls, (x.shape[0], 1, x.shape[-1])).astype(x.dtype)
    return jnp.concatenate([cls, x], axis=1)


class AddPositionEmbedding(nn.Module):
  """Adds a learned embedding per position: ``(N, T, D) -> (N, T, D)``."""

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    return x + self.param("pos_embedding", nn.initializers.normal(0.02), x.shape[1:])


def _class_token_gradients(module: ClassToken, x: jax.Array, delta: jax.Array
                           ) -> Mapping[str, jax.Array]:
  """Example ``n``'s gradient of ``cls`` is the output gradient at its position 0."""
  del module, x
  return {"cls": delta[:, None, :1, :]}


def _position_embedding_gradients(module: AddPositionEmbedding, x: jax.Array,
                                  delta: jax.Array) -> Mapping[str, jax.Array]:
  """Example ``n``'s gradient of ``pos_embedding`` is its output gradient ``delta_n``."""
  del module, x
  return {"pos_embedding": delta}


layer_taps.register_layer(ClassToken, _class_token_gradients)
layer_taps.register_layer(AddPositionEmbedding, _position_embedding_gradients)


class EncoderBlock(nn.Module):
  """Pre-norm Transformer encoder block."""

  num_heads: int
  mlp_dim: int

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    y = nn.LayerNorm()(x)
    x = x + nn.MultiHeadDotProductAttention(num_heads=self.num_heads)(y, y)
    y = nn.LayerNorm()(x)
    y = nn.Dense(x.shape[-1])(nn.gelu(nn.Dense(self.mlp_dim)(y)))
    return x + y


class ViT(nn.Module):
  """Vision Transformer classifier with a class token.

  Patches are embedded by a strided ``Conv_0``; the class token and the position
  embedding are the submodules ``cls_token`` (param ``cls``, ``(1, 1, dim)``) and
  ``pos_embedding`` (param ``pos_embedding``, ``(tokens + 1, dim)``); blocks are
  ``EncoderBlock_i``; the head reads the class token through ``LayerNorm_0`` and
  ``Dense_0``.

  Attributes:
    num_classes: number of output logits.
    patch_size: side of the square patches.
    dim: token width (192 for ViT-Ti).
    depth: number of encoder blocks (12 for ViT-Ti).
    num_heads: attention heads (3 for ViT-Ti).
    mlp_dim: hidden width of the MLP blocks (768 for ViT-Ti).
  """

  num_classes: int
  patch_size: int = 4
  dim: int = 192
  depth: int = 12
  num_heads: int = 3
  mlp_dim: int = 768

  def __post_init__(self):
    """Checks the attributes when the model is built (:mod:`~mnemonic_jax.models.attributes`).

    Raises:
      BadRequestType, BadRequest: ``num_classes``, ``patch_size``, ``dim``, ``num_heads``
        or ``mlp_dim`` not an int >= 1, ``depth`` not an int >= 0, or a ``dim`` that the
        heads do not divide.
    """
    for name in ("num_classes", "patch_size", "dim", "num_heads", "mlp_dim"):
      attributes.whole_number("ViT", name, getattr(self, name))
    attributes.whole_number("ViT", "depth", self.depth, minimum=0)
    if self.dim % self.num_heads:
      raise errors.BadRequest(f"ViT: dim={self.dim} is not divisible by num_heads="
                              f"{self.num_heads}: each head takes dim / num_heads channels")
    super().__post_init__()

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    del train  # No dropout.
    p = self.patch_size
    if x.shape[1] % p or x.shape[2] % p:
      raise errors.BadRequest(f"image size {x.shape[1:3]} is not divisible by patch size {p}")
    x = nn.Conv(self.dim, (p, p), strides=(p, p), padding="VALID")(x)
    x = x.reshape(x.shape[0], -1, self.dim)
    x = AddPositionEmbedding(name="pos_embedding")(ClassToken(name="cls_token")(x))
    for _ in range(self.depth):
      x = EncoderBlock(self.num_heads, self.mlp_dim)(x)
    return nn.Dense(self.num_classes)(nn.LayerNorm(name="LayerNorm_0")(x[:, 0]))

  def head_feature_bound(self) -> "bounds.LayerNormed":
    """The head reads ``LayerNorm_0`` (read by
    :func:`mnemonic_jax.models.bounds.declared`)."""
    return bounds.LayerNormed(("LayerNorm_0",))
