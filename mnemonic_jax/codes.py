"""Mnemonic codes: one fixed random input per class (Algorithm 1 of the paper)."""

from typing import Sequence

import chex
import jax
import jax.numpy as jnp

from mnemonic_jax import errors
from mnemonic_jax.run_once import jit_run_once

DISTRIBUTIONS = ("uniform", "normal")


def generate_codes(
    key: chex.PRNGKey,
    num_classes: int,
    shape: Sequence[int],
    *,
    distribution: str = "uniform",
    dtype: jnp.dtype = jnp.float32,
) -> jax.Array:
  """Draws one mnemonic code per class.

  Class ``c``'s code is drawn from ``jax.random.fold_in(key, c)``, so it does not depend
  on ``num_classes``: the first ten codes of a 100-class draw equal a 10-class draw.

  Args:
    key: a PRNG key (``jax.random.key(seed)``).
    num_classes: number of classes C.
    shape: shape of one model input, e.g. ``(28, 28, 1)``.
    distribution: ``"uniform"`` on [0, 1) (the reference implementation's choice) or
      ``"normal"`` (N(0, 1), the paper's text).
    dtype: floating dtype of the codes.

  Returns:
    An array of shape ``(num_classes, *shape)``, in the model's input space.

  Example:
    >>> codes = generate_codes(jax.random.key(0), 10, (28, 28, 1))
  """
  if distribution not in DISTRIBUTIONS:
    raise errors.BadRequest(
        f"unknown code distribution {distribution!r}; use one of {DISTRIBUTIONS}")
  if num_classes < 1:
    raise errors.BadRequest(f"num_classes must be positive, got {num_classes}")
  return _draw(key, int(num_classes), tuple(int(s) for s in shape), distribution,
               jnp.dtype(dtype))


def _draw_codes(key, num_classes: int, shape: tuple[int, ...], distribution: str, dtype):
  sample = jax.random.uniform if distribution == "uniform" else jax.random.normal
  return jax.vmap(lambda c: sample(jax.random.fold_in(key, c), shape, dtype))(
      jnp.arange(num_classes))


# One program (as eager ops, one program each), compiled quickly on the CPU.
_draw = jit_run_once(_draw_codes, static_argnums=(1, 2, 3, 4))


def mix_codes(
    key: chex.PRNGKey,
    images: chex.Array,
    labels: chex.Array,
    codes: chex.Array,
    t_mix: float,
) -> tuple[jax.Array, jax.Array]:
  """Replaces each example by its class's code with probability ``t_mix``.

  Labels are unchanged, so the network learns to classify the codes as their classes.
  Jittable; ``t_mix`` may be a traced scalar.

  Args:
    key: a PRNG key; draw a fresh one per step (e.g. ``jax.random.fold_in(key, step)``).
    images: a batch ``(N, *shape)`` in the model's input space.
    labels: integer labels ``(N,)``.
    codes: ``(C, *shape)`` from :func:`generate_codes`.
    t_mix: replacement probability in [0, 1].

  Returns:
    ``(mixed, replaced)``: the batch with replaced examples swapped for codes, and the
    boolean mask ``(N,)`` of replaced examples.

  Raises:
    BadRequest: a concrete ``t_mix`` outside [0, 1] (a traced one is not checked).
  """
  if not isinstance(t_mix, jax.core.Tracer) and not 0.0 <= float(t_mix) <= 1.0:
    raise errors.BadRequest(f"t_mix is a probability in [0, 1], got {t_mix!r}")
  codes = jnp.asarray(codes)  # NumPy codes cannot be indexed by traced labels.
  chex.assert_rank(labels, 1)
  chex.assert_equal_shape_suffix([images, codes], codes.ndim - 1)
  replaced = jax.random.bernoulli(key, t_mix, labels.shape)
  mask = replaced.reshape(replaced.shape + (1,) * (images.ndim - 1))
  mixed = jnp.where(mask, codes[labels].astype(images.dtype), images)
  return mixed, replaced
