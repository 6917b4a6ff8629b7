"""Selective Synaptic Dampening: ``ssd`` (as published) and ``ssd-exact`` (per-example Fisher).

SOURCE: Foster, Schoepf, Brintrup, "Fast Machine Unlearning Without Retraining Through
Selective Synaptic Dampening", AAAI 2024 (arXiv 2308.07707); repository
https://github.com/if-loops/selective-synaptic-dampening, files ``ssd.py``
(``ParameterPerturber.calc_importance`` and ``.modify_weight``),
``forget_full_class_strategies.py`` (``ssd_tuning``) and ``src/forget_full_class_main.py``
(the loaders and the defaults).

The rule. With importances ``I_f`` (forget set) and ``I_D`` (the full training set, retain +
forget), every parameter ``w_i`` with ``I_f,i > alpha * I_D,i`` is multiplied by
``beta_i = min(lambda * I_D,i / I_f,i, 1)``; all others are left alone.

Importances, as the repository computes them (``calc_importance``): the model in
inference mode (``model.eval()``), the data in minibatches of 64, per minibatch the gradient
of the MEAN cross-entropy over the batch, squared; summed over minibatches and divided by
the number of minibatches. That is not the per-example Fisher diagonal (the square of a
batch's mean gradient is not the mean of per-example squares); ``ssd-exact`` applies the
same rule to the per-example Fisher diagonal of :mod:`mnemonic_jax.fisher`.

Published defaults (``src/forget_full_class_main.py``): batch size 64 (``-b``),
``dampening_constant`` lambda = 1, ``selection_weighting`` alpha = 10 for ResNet-18 and
``10 * 0.5 = 5`` for ViT (the paper also uses alpha=50, lambda=0.1 for PinsFaceRecognition).
The published loaders are NOT shuffled: ``forget_train_dl = DataLoader(forget_train, 64)``
and ``full_train_dl = DataLoader(ConcatDataset(retain_train, forget_train), 64)``, with
both lists built class by class (``build_retain_forget_sets``), so the minibatches of
``I_D`` run through the remaining classes in ascending order, then the forgotten class;
nearly every minibatch holds one class. The default ``order="class"`` reproduces that
order (a stable sort by label, retain set first, then the forget set); ``order="shuffle"``
shuffles with the key instead. The published ``DataLoader``s keep a last, partial batch
(``drop_last=False``) and divide by ``len(dataloader)`` = ``ceil(N / 64)``: here the last
batch is padded to the full shape with rows of weight 0 and the loss is the weighted mean
over its real rows, which gives exactly the partial batch's mean gradient while every
batch keeps one shape (one compilation).

The repository's ``exponent`` and ``lower_bound`` parameters are fixed at 1 (its own
comments mark them unused beyond that); they are not config fields here. Every parameter
leaf is eligible (the repository's ``min_layer = max_layer = -1``); BatchNorm statistics
are not parameters and stay as they are.

Departures: none in the rule; the data order within a class is the order of the given
split (the repository's is its dataset order). ``ssd-exact`` is this project's variant;
its default ``alpha`` is not 10, because per-example importances bound ``I_f / I_D`` by
``N / N_f`` (see :class:`SSDExactConfig`).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Literal, get_args

import jax
import jax.numpy as jnp
import numpy as np

from mnemonic_jax import errors
from mnemonic_jax import fisher as fisher_lib
from mnemonic_jax.baselines.base import Outcome, Split, UnlearnData, register
from mnemonic_jax.baselines.options import Checked, PositiveFloat, PositiveInt
from mnemonic_jax.bundle import Bundle, normalize

PyTree = Any
ApplyFn = Callable[[PyTree, jax.Array], jax.Array]

REFERENCE = ("Foster, Schoepf, Brintrup, Fast Machine Unlearning Without Retraining Through "
             "Selective Synaptic Dampening, AAAI 2024; "
             "github.com/if-loops/selective-synaptic-dampening (ssd.py)")

#: The orders of the importances' minibatches.
Order = Literal["class", "shuffle"]
ORDERS = get_args(Order)


@dataclasses.dataclass(frozen=True)
class SSDConfig(Checked):
  """Selective Synaptic Dampening with minibatch importances (the published method).

  Attributes:
    alpha: selection weighting: a parameter is dampened where ``I_f > alpha * I_D``
      (published: 10 for ResNet-18, 5 for ViT).
    lam: dampening constant lambda: ``beta = min(lam * I_D / I_f, 1)`` (published: 1).
    batch_size: minibatch size of the importances (published: 64).
    order: ``"class"``: minibatches in the published loaders' order (examples sorted by
      class, retain set then forget set, not shuffled); ``"shuffle"``: each set shuffled
      with the key.
  """

  alpha: PositiveFloat = 10.0
  lam: PositiveFloat = 1.0
  batch_size: PositiveInt = 64
  order: Order = "class"


@dataclasses.dataclass(frozen=True)
class SSDExactConfig(Checked):
  """The SSD rule on per-example Fisher diagonals (this project's variant).

  With per-example Fishers ``I_D = (N_r F_r + N_f F_f) / N >= (N_f / N) I_f``, so
  ``I_f / I_D <= N / N_f`` and the published ``alpha = 10`` can never select a parameter
  when the forget set is a tenth of the data or more (one class of a balanced 10-class
  set). Minibatch importances escape the bound only because the square of a batch's mean
  gradient is not additive over examples. Hence another default here.

  Attributes:
    alpha: selection weighting; ``None`` (default) takes ``N / (2 N_f)``, half the bound,
      where the rule reads ``N_f F_f > N_r F_r``: a parameter is selected when the forget
      set's summed Fisher exceeds the retain set's (``F_f``, ``F_r``: per-example Fisher
      diagonals of each set). A number must be below ``N / N_f``.
    lam: dampening constant, as in :class:`SSDConfig` (published: 1).
    microbatch_size: examples per vectorised chunk of the Fisher (memory, not the result).
  """

  alpha: PositiveFloat | None = None
  lam: PositiveFloat = 1.0
  microbatch_size: PositiveInt = 256


# ----------------------------------------------------------------------------------------
# The two pieces: importances and the dampening rule (pure, jittable).


def minibatch_importance(
    apply_fn: ApplyFn,
    params: PyTree,
    inputs: jax.Array,
    labels: jax.Array,
    batch_size: int,
    *,
    transform: Callable[[jax.Array], jax.Array] | None = None,
    loss_fn: fisher_lib.LossFn = fisher_lib.cross_entropy,
) -> PyTree:
  """SSD's importance: the mean over minibatches of the squared minibatch gradient.

  ``I = (1/B) sum_b (d/dw mean_{n in b} loss(x_n, y_n; w)) ** 2`` over the ``B =
  ceil(N / batch_size)`` consecutive minibatches of the data in the given order, the last
  one partial (``calc_importance`` of the SSD repository). The last batch is padded to the
  full shape with weight-0 rows, so it contributes exactly its partial batch's gradient.
  Jittable (``batch_size`` static); minibatches run in a ``lax.scan``.

  Args:
    apply_fn: ``apply_fn(params, x) -> logits`` in inference mode.
    params: pytree of float arrays.
    inputs: ``(N, *input_shape)``, in the order the minibatches take them; any dtype that
      ``transform`` maps to the model's input.
    labels: ``(N,)`` integer labels.
    batch_size: minibatch size (``min(batch_size, N)`` is used).
    transform: applied to each minibatch of ``inputs`` before the model (e.g. the
      bundle's ``normalize`` for ``uint8`` images); ``None`` for none.
    loss_fn: per-example loss ``(logits, labels) -> (N,)``; cross-entropy by default.

  Returns:
    A float32 pytree shaped like ``params``.

  Raises:
    ValueError: no inputs, or ``batch_size < 1``.
  """
  n = int(labels.shape[0])
  if n == 0:
    raise errors.BadRequest("minibatch_importance needs at least one input")
  if batch_size < 1:
    raise errors.BadRequest(f"batch_size must be positive, got {batch_size}")
  size = min(int(batch_size), n)
  num_batches = -(-n // size)
  pad = num_batches * size - n
  mask = jnp.arange(num_batches * size) < n
  if pad:
    inputs = jnp.concatenate([inputs, jnp.repeat(inputs[:1], pad, axis=0)])
    labels = jnp.concatenate([labels, jnp.repeat(labels[:1], pad)])
  batched = lambda a: a.reshape(num_batches, size, *a.shape[1:])
  transform = (lambda x: x) if transform is None else transform

  def squared_batch_gradient(x, y, m):
    def batch_loss(p):
      losses = loss_fn(apply_fn(p, transform(x)), y)
      return jnp.sum(m * losses) / jnp.sum(m)

    grads = jax.grad(batch_loss)(params)
    return jax.tree.map(lambda g: jnp.square(g.astype(jnp.float32)), grads)

  def body(total, batch):
    return jax.tree.map(jnp.add, total, squared_batch_gradient(*batch)), None

  zeros = jax.tree.map(lambda p: jnp.zeros(p.shape, jnp.float32), params)
  total, _ = jax.lax.scan(body, zeros, (batched(inputs), batched(labels), batched(mask)))
  return jax.tree.map(lambda t: t / num_batches, total)


def dampening_factors(importance_forget: PyTree, importance_full: PyTree, alpha, lam
                      ) -> tuple[PyTree, PyTree]:
  """SSD's selection and dampening: each parameter's factor, and whether it was selected.

  ``selected = I_f > alpha * I_D``; ``beta = min(lam * I_D / I_f, 1)`` where selected and
  ``1`` elsewhere (``modify_weight`` of the SSD repository).

  Args:
    importance_forget: ``I_f``, a pytree of non-negative float arrays.
    importance_full: ``I_D``, the same structure.
    alpha: selection weighting (scalar, may be traced).
    lam: dampening constant (scalar, may be traced).

  Returns:
    ``(beta, selected)``: float32 factors in ``[0, 1]`` and boolean masks, each shaped like
    the importances.
  """

  def selection(i_f, i_d):
    return i_f > alpha * i_d

  def factor(i_f, i_d):
    chosen = selection(i_f, i_d)
    ratio = lam * i_d / jnp.where(chosen, i_f, 1.0)  # i_f > 0 wherever chosen.
    return jnp.where(chosen, jnp.minimum(ratio, 1.0), 1.0).astype(jnp.float32)

  beta = jax.tree.map(factor, importance_forget, importance_full)
  selected = jax.tree.map(selection, importance_forget, importance_full)
  return beta, selected


def dampen(params: PyTree, importance_forget: PyTree, importance_full: PyTree, alpha, lam
           ) -> tuple[PyTree, PyTree]:
  """Applies :func:`dampening_factors` to ``params``; ``(new_params, selected)``.

  New arrays in the parameters' own dtypes (the product is taken in float32).
  """
  beta, selected = dampening_factors(importance_forget, importance_full, alpha, lam)
  new = jax.tree.map(lambda p, b: (p.astype(jnp.float32) * b).astype(p.dtype), params, beta)
  return new, selected


# ----------------------------------------------------------------------------------------
# The registered methods.


def _by_class(split: Split) -> Split:
  """The split sorted by class, stably (the order of the published loaders)."""
  idx = np.argsort(np.asarray(split.labels), kind="stable")
  return Split(split.images[idx], np.asarray(split.labels)[idx])


def _shuffled(split: Split, key: jax.Array) -> Split:
  idx = np.asarray(jax.random.permutation(key, len(split)))
  return Split(split.images[idx], np.asarray(split.labels)[idx])


def _joined(first: Split, second: Split) -> Split:
  return Split(np.concatenate([first.images, second.images]),
               np.concatenate([first.labels, second.labels]))


def _summary(selected: PyTree, alpha: float, lam: float) -> dict[str, Any]:
  counts = [int(np.sum(np.asarray(s))) for s in jax.tree.leaves(selected)]
  total = sum(int(np.size(s)) for s in jax.tree.leaves(selected))
  return {"alpha": float(alpha), "lam": float(lam), "dampened": sum(counts),
          "parameters": total, "dampened_fraction": sum(counts) / max(total, 1)}


def _copy(tree: PyTree) -> PyTree:
  """New buffers for what a method returns unchanged (BatchNorm statistics): the output
  bundle never shares an array with the input one."""
  return jax.tree.map(jnp.array, tree)


def _normalisation(bundle: Bundle) -> tuple[tuple[float, ...], tuple[float, ...]]:
  """The bundle's mean and std as tuples of floats (static arguments of the programs)."""
  return tuple(map(float, bundle.mean)), tuple(map(float, bundle.std))


@functools.partial(jax.jit, static_argnums=(1, 2, 3))
def _ssd_program(apply_fn, batch_size, mean, std, params, x_forget, y_forget, x_full, y_full,
                 alpha, lam):
  """Both minibatch importances and the dampened parameters (one module-level program)."""
  transform = functools.partial(normalize, mean=mean, std=std)
  importance = lambda x, y: minibatch_importance(apply_fn, params, x, y, batch_size,
                                                 transform=transform)
  i_f, i_d = importance(x_forget, y_forget), importance(x_full, y_full)
  return dampen(params, i_f, i_d, alpha, lam)


@functools.partial(jax.jit, static_argnums=(1, 2, 3))
def _ssd_exact_program(apply_fn, microbatch_size, mean, std, params, x_r, y_r, x_f, y_f,
                       alpha, lam):
  """Both per-example importances and the dampened parameters (one program)."""
  i_f, i_d = exact_importances(apply_fn, params, normalize(x_r, mean, std), y_r,
                               normalize(x_f, mean, std), y_f, microbatch_size)
  return dampen(params, i_f, i_d, alpha, lam)


@register("ssd", SSDConfig, data="all", reference=REFERENCE)
def ssd(bundle: Bundle, classes: tuple[int, ...], data: UnlearnData, config: SSDConfig,
        key: jax.Array) -> Outcome:
  """Selective Synaptic Dampening as published (minibatch importances).

  ``I_f`` over the forget set, ``I_D`` over retain + forget (in that order), both by
  :func:`minibatch_importance` with the bundle's inference-mode model; then
  :func:`dampen`. One jitted function computes both importances and the new parameters.
  """
  del classes
  if config.order == "class":  # Retain classes ascending, then the forgotten ones.
    forget = _by_class(data.forget)
    full = _joined(_by_class(data.retain), forget)
  else:
    key_forget, key_full = jax.random.split(key)
    forget = _shuffled(data.forget, key_forget)
    full = _shuffled(_joined(data.retain, data.forget), key_full)
  apply_fn = bundle.apply_fn()
  fisher_lib.check_input_shape(apply_fn, bundle.params,
                               bundle.normalize(forget.images[:1]))

  new_params, selected = _ssd_program(
      apply_fn, int(config.batch_size), *_normalisation(bundle), bundle.params,
      jnp.asarray(forget.images), jnp.asarray(forget.labels, jnp.int32),
      jnp.asarray(full.images), jnp.asarray(full.labels, jnp.int32),
      jnp.float32(config.alpha), jnp.float32(config.lam))
  n_f, n_r = len(data.forget), len(data.retain)
  return Outcome(new_params, _copy(bundle.batch_stats),
                 examples={"retain": n_r, "forget": 2 * n_f},  # Forget set read twice.
                 details={**_summary(selected, config.alpha, config.lam),
                          "batch_size": config.batch_size, "order": config.order})


def exact_importances(apply_fn: ApplyFn, params: PyTree, retain_inputs: jax.Array,
                      retain_labels: jax.Array, forget_inputs: jax.Array,
                      forget_labels: jax.Array, microbatch_size: int | None = None
                      ) -> tuple[PyTree, PyTree]:
  """Per-example Fisher diagonals ``(I_f, I_D)`` of the forget set and of retain + forget.

  ``I_f = mean_{n in D_f} g_n ** 2`` and ``I_D = mean_{n in D} g_n ** 2``, the quantities of
  :func:`mnemonic_jax.fisher.fisher_diagonal`, from ONE pass over the data through its
  building block :func:`mnemonic_jax.fisher.weighted_squared_gradients` (two weight rows).
  Jittable.

  Args:
    apply_fn: ``apply_fn(params, x) -> logits`` in inference mode.
    params: pytree of float arrays.
    retain_inputs, retain_labels: ``(N_r, *input_shape)`` model inputs, ``(N_r,)``.
    forget_inputs, forget_labels: ``(N_f, *input_shape)``, ``(N_f,)``; ``N_f > 0``.
    microbatch_size: examples per vectorised chunk (memory only).

  Returns:
    ``(I_f, I_D)``, float32 pytrees shaped like ``params``.
  """
  n_r, n_f = int(retain_labels.shape[0]), int(forget_labels.shape[0])
  if n_f == 0:
    raise errors.BadRequest("exact_importances needs at least one forget example")
  inputs = jnp.concatenate([retain_inputs, forget_inputs])
  labels = jnp.concatenate([retain_labels, forget_labels])
  weights = jnp.stack([
      jnp.concatenate([jnp.zeros(n_r), jnp.full(n_f, 1.0 / n_f)]),
      jnp.full(n_r + n_f, 1.0 / (n_r + n_f))]).astype(jnp.float32)
  i_f, i_d = fisher_lib.weighted_squared_gradients(
      apply_fn, params, inputs, labels, weights, microbatch_size)
  return i_f, i_d


def exact_alpha(alpha: float | None, num_examples: int, num_forget: int, where: str = ""
                ) -> tuple[float, float]:
  """``(alpha, bound)`` of ``ssd-exact`` on ``num_examples`` training examples of which
  ``num_forget`` are forgotten: per-example importances satisfy ``I_f / I_D <= N / N_f``
  (the ``bound``), so an ``alpha`` at or above it selects nothing; ``None`` takes half the
  bound.

  Raises:
    BadRequest: ``alpha >= N / N_f`` (``where``, e.g. ``" when forgetting classes 0,1"``,
      says in the message for which request).
  """
  bound = num_examples / max(num_forget, 1)
  chosen = bound / 2 if alpha is None else float(alpha)
  if chosen >= bound:
    raise errors.BadRequest(
        f"ssd-exact with alpha={chosen:g} would dampen nothing{where}: per-example "
        f"importances satisfy I_f / I_D <= N / N_f = {bound:.4g} here; choose alpha < "
        f"{bound:.4g} or leave it None (half the bound)")
  return chosen, bound


@register("ssd-exact", SSDExactConfig, data="all", reference=REFERENCE +
          "; importances = per-example Fisher diagonals of mnemonic_jax.fisher (this project)")
def ssd_exact(bundle: Bundle, classes: tuple[int, ...], data: UnlearnData,
              config: SSDExactConfig, key: jax.Array) -> Outcome:
  """The SSD rule on per-example Fisher diagonals (:func:`exact_importances`).

  Raises:
    BadRequest: ``alpha >= N / N_f`` (nothing could be selected, see
      :class:`SSDExactConfig`).
  """
  del classes, key
  n_r, n_f = len(data.retain), len(data.forget)
  alpha, bound = exact_alpha(config.alpha, n_r + n_f, n_f)
  apply_fn = bundle.apply_fn()
  fisher_lib.check_input_shape(apply_fn, bundle.params,
                               bundle.normalize(data.forget.images[:1]))
  new_params, selected = _ssd_exact_program(
      apply_fn, int(config.microbatch_size), *_normalisation(bundle), bundle.params,
      jnp.asarray(data.retain.images),
      jnp.asarray(data.retain.labels, jnp.int32), jnp.asarray(data.forget.images),
      jnp.asarray(data.forget.labels, jnp.int32), jnp.float32(alpha),
      jnp.float32(config.lam))
  return Outcome(new_params, _copy(bundle.batch_stats), examples={"retain": n_r, "forget": n_f},
                 details={**_summary(selected, alpha, config.lam), "alpha_bound": bound,
                          "microbatch_size": config.microbatch_size})
