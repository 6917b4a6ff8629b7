"""``jit-lipschitz``: JiT, zero-shot unlearning by smoothing the model around forget samples.

SOURCE: Foster et al., "An Information Theoretic Approach to Machine Unlearning" (first
titled "Zero-shot machine unlearning at scale via Lipschitz regularization"), arXiv
2402.01401, 2024; repository
https://github.com/jwf40/Information-Theoretic-Unlearning, files ``src/lipschitz.py``
(``Lipschitz.modify_weight``, ``AddGaussianNoise``), ``src/forget_full_class_strategies.py``
(``lipschitz_forgetting``) and ``src/forget_full_class_main.py`` (the numbers).

The method ("Just in Time" unlearning; it reads the forget set and nothing else). For each
minibatch ``x`` of forget images (model inputs, normalised), draw ``S`` perturbed copies
``x'_s = clip(x + N(0, sigma^2), min(x), max(x))`` (the bounds are the whole batch's minimum
and maximum, ``AddGaussianNoise``), and take ONE plain SGD step (learning rate ``eta``, no
momentum) on the empirical local Lipschitz constant

  L = (1/S) sum_s sum_i ||f(x_i) - f(x'_{s,i})||_2 / ||x_i - x'_{s,i}||_2,

the perturbed outputs ``f(x')`` held constant (``torch.no_grad``). One pass over the forget
set (the repository's ``n_epochs`` is unused).

Published defaults (``forget_full_class_main.py``, full-class forgetting): ``S`` 25
(``n_samples``), ``sigma`` 0.5 (``lipschitz_weighting``) and ``eta`` 3e-4 for the VGG
(sigma 0.8, eta 1.5 for the ViT), forget batches of 128 (``-b``) in dataset order (the
forget loader is not shuffled). **Defaults here: the VGG's.**

Departures: the model runs in inference mode (BatchNorm on its running statistics, which
stay as they are; the repository leaves the PyTorch model in whatever mode it was loaded);
the forget set is read in the order given (the repository's is its dataset order); the noise
comes from the key (``fold_in(key, step)``); a perturbed copy that the clipping returns to
its input exactly counts 0 (the repository divides 0 by 0).

Sweep (:data:`SWEEP`, for :func:`~mnemonic_jax.baselines.base.sweep`): ``eta`` 1e-3 and
3e-3. The loss sums over the batch, so ``eta`` is small; on the digits MLP (class 3, seed 0)
3e-4 leaves the class known (E_F 5.4, A_R 94.7 from 95.6), 1e-3 barely moves it (E_F 8.1,
A_R 93.4), 3e-3 forgets most of it only by damaging the rest (E_F 86.5, A_R 74.4): on this
model JiT does not separate one class from the others.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from mnemonic_jax.baselines.base import Outcome, UnlearnData, register
from mnemonic_jax.baselines.options import Checked, PositiveFloat, PositiveInt
from mnemonic_jax.bundle import Bundle, normalize

PyTree = Any
ApplyFn = Callable[[PyTree, jax.Array], jax.Array]

#: Overrides from the published defaults to stronger settings (see the module docstring).
SWEEP = ({}, {"learning_rate": 1e-3}, {"learning_rate": 3e-3})

REFERENCE = ("Foster et al., An Information Theoretic Approach to Machine Unlearning (JiT, "
             "zero-shot unlearning via Lipschitz regularization), arXiv 2402.01401, 2024; "
             "github.com/jwf40/Information-Theoretic-Unlearning (lipschitz.py: 25 samples, "
             "sigma 0.5, SGD lr 3e-4, batch 128, one pass)")


@dataclasses.dataclass(frozen=True)
class JiTConfig(Checked):
  """JiT's hyper-parameters (defaults: the repository's full-class VGG setting).

  Attributes:
    sigma: standard deviation of the input noise, in the model's (normalised) input space
      (``lipschitz_weighting``: 0.5).
    learning_rate: plain SGD step ``eta`` (3e-4).
    n_samples: perturbed copies per step ``S`` (25).
    batch_size: forget examples per step (128).
    epochs: passes over the forget set (1, as published).
  """

  sigma: PositiveFloat = 0.5
  learning_rate: PositiveFloat = 3e-4
  n_samples: PositiveInt = 25
  batch_size: PositiveInt = 128
  epochs: PositiveInt = 1


def lipschitz_loss(apply_fn: ApplyFn, params: PyTree, x: jax.Array, perturbed: jax.Array,
                   perturbed_outputs: jax.Array) -> jax.Array:
  """``(1/S) sum_s sum_i ||f(x_i) - out'_{s,i}|| / ||x_i - x'_{s,i}||``.

  Args:
    apply_fn: ``apply_fn(params, x) -> outputs``.
    params: the parameters differentiated.
    x: ``(B, *input_shape)`` inputs.
    perturbed: ``(S, B, *input_shape)`` their perturbed copies.
    perturbed_outputs: ``(S, B, K)`` the outputs on ``perturbed`` (held constant).

  Returns:
    A float32 scalar. A copy equal to its input (every entry clipped back) adds 0, where
    the repository's ``0 / 0`` would make the step NaN.
  """
  s, b = perturbed.shape[:2]
  in_norm = jnp.linalg.norm((x[None] - perturbed).reshape(s, b, -1), axis=-1)
  out = apply_fn(params, x).astype(jnp.float32)
  out_norm = _norm(out[None] - perturbed_outputs.astype(jnp.float32))
  moved = in_norm > 0  # A copy the clipping left equal to x is no evidence (and 0 / 0).
  return jnp.sum(jnp.where(moved, out_norm / jnp.where(moved, in_norm, 1.0), 0.0)) / s


def _norm(v: jax.Array) -> jax.Array:
  """The l2 norm over the last axis, with gradient 0 (not NaN) at 0, as PyTorch's."""
  squares = jnp.sum(jnp.square(v), axis=-1)
  positive = squares > 0
  return jnp.where(positive, jnp.sqrt(jnp.where(positive, squares, 1.0)), 0.0)


@functools.partial(jax.jit, static_argnames=("n_samples",), donate_argnums=(1,))
def lipschitz_step(apply_fn: ApplyFn, params: PyTree, x: jax.Array, key: jax.Array, sigma,
                   learning_rate, n_samples: int) -> tuple[PyTree, jax.Array]:
  """One JiT step: ``params - learning_rate * grad L`` (:func:`lipschitz_loss`).

  Args:
    apply_fn: ``apply_fn(params, x) -> outputs`` in inference mode (a pytree).
    params: the current parameters (donated).
    x: ``(B, *input_shape)`` forget inputs, normalised.
    key: typed key of the step's noise.
    sigma: noise standard deviation.
    learning_rate: the SGD step.
    n_samples: perturbed copies ``S`` (static).

  Returns:
    ``(new_params, loss)``, the loss at ``params``.
  """
  lo, hi = jnp.min(x), jnp.max(x)
  noise = jax.random.normal(key, (n_samples, *x.shape), jnp.float32)
  perturbed = jnp.clip(x[None] + sigma * noise, lo, hi)
  outputs = jax.lax.stop_gradient(jax.vmap(lambda xp: apply_fn(params, xp))(perturbed))
  loss, grads = jax.value_and_grad(
      lambda p: lipschitz_loss(apply_fn, p, x, perturbed, outputs))(params)
  new = jax.tree.map(lambda p, g: (p - learning_rate * g).astype(p.dtype), params, grads)
  return new, loss


@register("jit-lipschitz", JiTConfig, data="forget", reference=REFERENCE, sweep=SWEEP)
def jit_lipschitz(bundle: Bundle, classes: tuple[int, ...], data: UnlearnData,
                  config: JiTConfig, key: jax.Array) -> Outcome:
  """JiT: one Lipschitz-smoothing SGD step per forget minibatch, in order.

  Args:
    bundle: the trained bundle (not modified).
    classes: the forgotten classes.
    data: ``data.forget``, uint8 images (labels unused).
    config: a :class:`JiTConfig`.
    key: typed key; step ``s`` draws its noise with ``fold_in(key, s)``.

  Returns:
    An :class:`~mnemonic_jax.baselines.base.Outcome`; ``details`` holds the first and last
    step's Lipschitz estimate.
  """
  del classes
  forget = data.forget
  n = len(forget)
  apply_fn = bundle.apply_fn()
  params = jax.tree.map(jnp.array, bundle.params)  # Donated below: never the bundle's own.
  sigma, lr = jnp.float32(config.sigma), jnp.float32(config.learning_rate)
  steps, fed, losses = 0, 0, []
  for _ in range(config.epochs):
    for start in range(0, n, config.batch_size):  # In order; the last batch is partial.
      images = forget.images[np.arange(start, min(start + config.batch_size, n))]
      x = normalize(jnp.asarray(images), bundle.mean, bundle.std)
      params, loss = lipschitz_step(apply_fn, params, x, jax.random.fold_in(key, steps),
                                    sigma, lr, n_samples=config.n_samples)
      losses.append(loss)
      steps, fed = steps + 1, fed + len(images)
  return Outcome(params, jax.tree.map(jnp.array, bundle.batch_stats), steps=steps,
                 examples={"retain": 0, "forget": fed},
                 details={"sigma": config.sigma, "learning_rate": config.learning_rate,
                          "n_samples": config.n_samples, "batch_size": config.batch_size,
                          "first_loss": float(losses[0]), "last_loss": float(losses[-1])})
