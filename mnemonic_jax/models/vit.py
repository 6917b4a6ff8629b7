"""A small Vision Transformer (ViT-Ti layout by default), for the paper's Transformer claim."""

import flax.linen as nn
import jax
import jax.numpy as jnp


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

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    del train  # No dropout.
    p = self.patch_size
    if x.shape[1] % p or x.shape[2] % p:
      raise ValueError(f"image size {x.shape[1:3]} is not divisible by patch size {p}")
    x = nn.Conv(self.dim, (p, p), strides=(p, p), padding="VALID")(x)
    x = x.reshape(x.shape[0], -1, self.dim)
    cls = self.param("cls", nn.initializers.zeros, (1, 1, self.dim))
    x = jnp.concatenate([jnp.broadcast_to(cls, (x.shape[0], 1, self.dim)), x], axis=1)
    x = x + self.param("pos_embedding", nn.initializers.normal(0.02), x.shape[1:])
    for _ in range(self.depth):
      x = EncoderBlock(self.num_heads, self.mlp_dim)(x)
    return nn.Dense(self.num_classes)(nn.LayerNorm()(x[:, 0]))
