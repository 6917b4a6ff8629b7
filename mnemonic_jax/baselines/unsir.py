"""UNSIR / FastMU: error-maximising noise, then impair and repair.

SOURCE: Tarun, Chundawat, Mandal, Kankanhalli, "Fast Yet Effective Machine Unlearning",
IEEE TNNLS 2023 (arXiv 2111.08947), and the authors' notebook
``Machine Unlearning.ipynb`` of github.com/vikram2000b/Fast-Machine-Unlearning (the
numbers below are read from it; the same procedure, with smaller numbers, is
``UNSIR_noise_train`` / ``UNSIR_create_noisy_loader`` in the SSD authors' comparison,
github.com/if-loops/selective-synaptic-dampening, ``unlearn.py``). Three stages:

1. **Noise.** For each forgotten class ``c``, a batch of noise ``N_c`` of shape
   ``(noise_batch_size, *input_shape)`` in the model's input space, initialised from a
   standard normal, is optimised with Adam (lr 0.1, 5 epochs x 8 steps = 40 steps) to
   *maximise* the model's loss on label ``c`` while staying small::

     min_N  -CE(f(N), c) + lambda * mean_i ||N_i||_2^2,     lambda = 0.1

   (the notebook's ``-F.cross_entropy(...) + 0.1 * torch.mean(torch.sum(inputs**2,
   [1, 2, 3]))``: the squared L2 norm of each noise image, averaged over the batch; the
   paper writes the regulariser as ``lambda * ||w_noise||``). The model is not updated.
2. **Impair.** One epoch of training on the noise, labelled as its class, mixed with a
   subset of the retained data (1000 training images per retained class), batch 256,
   Adam lr 0.02: the "very high learning rate" that makes the model forget sharply.
3. **Repair.** One epoch on the same retained subset alone, batch 256, Adam lr 0.01.

Data: the method reads the class ids and the retained data, never the forget set, so
it is registered with ``data="retain"``.

Departures from the notebook (each a config field where it is a choice):

* The noise is learned with the model in inference mode (BatchNorm on its running
  statistics, which are left untouched). The notebook builds a fresh PyTorch model,
  which is in training mode, so its noise passes used batch statistics and overwrote
  the running averages with noise statistics as a side effect.
* Each forgotten class's noise is labelled with its own class. The notebook labels all
  noise with a constant ``class_num = 0`` (right only when class 0 is the first class
  forgotten, as in its example ``[0, 2]``).
* The impair set holds ``noise_copies`` (20, the notebook's ``num_batches``) copies of
  each class's whole noise batch. The notebook's loop ``for i in
  range(batch[0].size(0))`` runs over the first noise image's *channel* axis, so it in
  fact used only the first 3 noise images of each copy (60 noise rows per class on
  CIFAR-10); we take the evident intent, every row of the batch.
* The retained subset is drawn at random per class (key-driven); the notebook takes the
  first ``1000`` of each class in dataset order.
* The noise is optimised for a fixed number of steps, as published (no stopping rule).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Literal, NamedTuple, get_args

import jax
import jax.numpy as jnp
import numpy as np
import optax

from mnemonic_jax import errors
from mnemonic_jax import fisher as fisher_lib
from mnemonic_jax.baselines import base
from mnemonic_jax.baselines.base import LoopState, Outcome, Split, UnlearnData, register
from mnemonic_jax.baselines.options import (
    Checked, NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt)
from mnemonic_jax.pytrees import as_pytree
from mnemonic_jax.bundle import Bundle, normalize
from mnemonic_jax.data import pipeline

PyTree = Any

REFERENCE = ("Tarun, Chundawat, Mandal, Kankanhalli, Fast Yet Effective Machine Unlearning, "
             "IEEE TNNLS 2023 (arXiv 2111.08947); "
             "github.com/vikram2000b/Fast-Machine-Unlearning")

Optimizer = Literal["adam", "sgd"]
OPTIMIZERS = get_args(Optimizer)


@dataclasses.dataclass(frozen=True)
class UnsirConfig(Checked):
  """UNSIR's hyper-parameters; defaults from the authors' CIFAR-10 notebook.

  Attributes:
    noise_batch_size: noise images learned per forgotten class (notebook: 256).
    noise_steps: Adam steps on the noise (notebook: 5 epochs x 8 steps = 40).
    noise_lr: Adam learning rate of the noise (notebook: 0.1).
    noise_l2: weight ``lambda`` of the mean squared L2 norm of a noise image (0.1).
    noise_copies: copies of each class's noise batch in the impair set (notebook's
      ``num_batches``: 20).
    retain_per_class: retained training images per retained class used for impair and
      repair (notebook: 1000); ``None`` takes every retained example.
    batch_size: batch size of impair and repair (notebook: 256).
    impair_lr: learning rate of the impair stage (notebook: Adam, 0.02).
    repair_lr: learning rate of the repair stage (notebook: Adam, 0.01).
    impair_epochs: epochs of the impair stage (1).
    repair_epochs: epochs of the repair stage (1).
    optimizer: ``"adam"`` (published) or ``"sgd"`` (with ``momentum``) for impair and
      repair; the noise always uses Adam. The default rates are Adam's: with ``"sgd"``
      choose ``impair_lr`` / ``repair_lr`` anew (at 0.02 / 0.01 the tiny digits MLP
      loses most retained classes).
    momentum: momentum of ``"sgd"``.
  """

  noise_batch_size: PositiveInt = 256
  noise_steps: NonNegativeInt = 40
  noise_lr: PositiveFloat = 0.1
  noise_l2: NonNegativeFloat = 0.1
  noise_copies: PositiveInt = 20
  retain_per_class: PositiveInt | None = 1000
  batch_size: PositiveInt = 256
  impair_lr: PositiveFloat = 0.02
  repair_lr: PositiveFloat = 0.01
  impair_epochs: NonNegativeInt = 1
  repair_epochs: NonNegativeInt = 1
  optimizer: Optimizer = "adam"
  momentum: NonNegativeFloat = 0.9


class NoiseResult(NamedTuple):
  """An error-maximising noise batch and the trace of its optimisation.

  Attributes:
    noise: ``float32`` ``(B, *input_shape)`` in the model's input space.
    objective: ``(steps + 1,)`` the minimised ``-CE + lambda * mean ||N_i||^2`` at each
      iterate, the initial noise first and the returned one last.
    cross_entropy: ``(steps + 1,)`` the mean cross-entropy of the target label at each
      iterate (the part being maximised).
  """

  noise: jax.Array
  objective: jax.Array
  cross_entropy: jax.Array


def make_noise_fn(apply_fn: Callable[[PyTree, jax.Array], jax.Array], *, steps: int,
                  learning_rate: float, l2_weight: float
                  ) -> Callable[[PyTree, jax.Array, jax.Array], NoiseResult]:
  """A jitted ``noise_fn(params, init, label) -> NoiseResult``: UNSIR's stage 1.

  Minimises ``-CE(apply_fn(params, N), label) + l2_weight * mean_i sum(N_i ** 2)`` over
  the noise ``N`` with Adam for ``steps`` steps (one ``lax.scan``); ``params`` are only
  read. Compiled once per noise shape; ``label`` is traced, so every class reuses it.

  Args:
    apply_fn: ``apply_fn(params, x) -> logits`` in inference mode (e.g.
      ``bundle.apply_fn()``).
    steps: Adam steps (>= 0).
    learning_rate: Adam's learning rate.
    l2_weight: weight of the mean squared L2 norm of a noise image.

  Returns:
    ``noise_fn(params, init, label)`` with ``init`` ``(B, *input_shape)`` float and
    ``label`` an integer scalar; it returns a :class:`NoiseResult`.

  Example:
    >>> fn = make_noise_fn(bundle.apply_fn(), steps=40, learning_rate=0.1, l2_weight=0.1)
    >>> result = fn(bundle.params, jax.random.normal(key, (256, 8, 8, 1)), 3)
    >>> bool(result.cross_entropy[-1] > result.cross_entropy[0])
    True
  """
  return functools.partial(_noise_program, as_pytree(apply_fn), int(steps), float(learning_rate),
                           float(l2_weight))


@functools.partial(jax.jit, static_argnums=(1, 2, 3))
def _noise_program(apply_fn, steps: int, learning_rate: float, l2_weight: float, params: PyTree,
                   init: jax.Array, label: jax.Array) -> NoiseResult:
  """The program of :func:`make_noise_fn` (module-level: compiled once per model and config)."""
  optimizer = optax.adam(learning_rate)

  def objective(noise: jax.Array, params: PyTree, label: jax.Array):
    logits = apply_fn(params, noise)
    labels = jnp.full((noise.shape[0],), label, jnp.int32)
    ce = jnp.mean(fisher_lib.cross_entropy(logits, labels))
    norm = jnp.mean(jnp.sum(jnp.square(noise).reshape(noise.shape[0], -1), axis=1))
    return -ce + l2_weight * norm, ce

  grad_fn = jax.value_and_grad(objective, has_aux=True)
  params = jax.lax.stop_gradient(params)

  def body(carry, _):
    noise, opt_state = carry
    (value, ce), grad = grad_fn(noise, params, label)
    updates, opt_state = optimizer.update(grad, opt_state, noise)
    return (optax.apply_updates(noise, updates), opt_state), (value, ce)

  init = init.astype(jnp.float32)
  (noise, _), (values, ces) = jax.lax.scan(body, (init, optimizer.init(init)), length=steps)
  last_value, last_ce = objective(noise, params, label)
  return NoiseResult(noise, jnp.append(values, last_value), jnp.append(ces, last_ce))


def retain_subset(retain: Split, per_class: int | None, key: jax.Array) -> Split:
  """At most ``per_class`` random examples of each class of ``retain`` (all if ``None``).

  Args:
    retain: the retained training examples.
    per_class: examples kept per class, or ``None`` for all.
    key: draws which examples are kept.

  Returns:
    A :class:`Split` of copies, classes in ascending order.
  """
  labels = np.asarray(retain.labels)
  keep = []
  for c in np.unique(labels):
    idx = np.flatnonzero(labels == c)
    if per_class is not None and len(idx) > per_class:
      order = np.asarray(jax.random.permutation(jax.random.fold_in(key, int(c)), len(idx)))
      idx = np.sort(idx[order[:per_class]])
    keep.append(idx)
  keep = np.concatenate(keep)
  return Split(retain.images[keep], labels[keep])


def _model_optimizer(config: UnsirConfig) -> optax.GradientTransformation:
  """Impair/repair optimiser with the learning rate a traced hyper-parameter (one compile)."""
  return _cached_model_optimizer(config.optimizer, config.impair_lr, config.momentum or None)


@functools.lru_cache(maxsize=64)
def _cached_model_optimizer(name: str, learning_rate: float, momentum: float | None
                            ) -> optax.GradientTransformation:
  """One optimiser object per arguments, so equal configs share the compiled step."""
  if name == "adam":
    return optax.inject_hyperparams(optax.adam)(learning_rate=learning_rate)
  return optax.inject_hyperparams(optax.sgd, static_args=("momentum",))(
      learning_rate=learning_rate, momentum=momentum)


def _fresh_opt_state(optimizer: optax.GradientTransformation, params: PyTree,
                     learning_rate: float) -> optax.OptState:
  """A new optimiser state (zero moments, as the notebook's new Adam) at ``learning_rate``."""
  state = optimizer.init(params)
  hyper = dict(state.hyperparams)
  hyper["learning_rate"] = jnp.asarray(learning_rate, jnp.asarray(hyper["learning_rate"]).dtype)
  return state._replace(hyperparams=hyper)


@functools.partial(jax.jit, static_argnums=(0, 1))
def _mix(mean, std, noises, images, noise_rows, is_noise):
  """Normalised images, with the rows flagged ``is_noise`` replaced by noise rows."""
  x = normalize(images, mean, std)
  flag = is_noise.reshape((-1,) + (1,) * (x.ndim - 1))
  return jnp.where(flag, noises[noise_rows].astype(x.dtype), x)


def _copy(tree: PyTree) -> PyTree:
  """Fresh device buffers, so donating them never invalidates the input bundle's arrays."""
  return jax.tree.map(lambda x: jnp.array(x, copy=True), tree)


@register("unsir", UnsirConfig, data="retain", reference=REFERENCE)
def unsir(bundle: Bundle, classes: tuple[int, ...], data: UnlearnData, config: UnsirConfig,
          key: jax.Array) -> Outcome:
  """UNSIR (FastMU): learn error-maximising noise per class, impair, repair.

  Args:
    bundle: the trained bundle (not modified).
    classes: sorted class ids to forget (validated by :func:`base.unlearn`).
    data: ``data.retain`` holds the retained training examples (uint8 NHWC); the forget
      set is not read.
    config: :class:`UnsirConfig`.
    key: typed key; split into the noise initialisations, the retained subset and the
      impair / repair shuffles.

  Returns:
    :class:`Outcome` with ``steps`` = impair + repair model updates and ``details``:
    ``noise_steps``, per-class ``noise_objective`` (final), ``noise_cross_entropy``
    (``[initial, final]``), ``impair_steps``, ``repair_steps``, ``noise_rows`` and
    ``retain_subset`` sizes.

  Raises:
    BadRequest: no retained data.
  """
  retain = data.retain
  if retain is None or len(retain) == 0:
    raise errors.BadRequest("unsir needs the retain set; pass UnlearnData(retain=...)")
  noise_key, subset_key, impair_key, repair_key = jax.random.split(key, 4)

  # (a) One noise batch per forgotten class; the model is frozen, in inference mode.
  shape = (int(config.noise_batch_size), *bundle.input_shape)
  noise_fn = make_noise_fn(bundle.apply_fn(), steps=int(config.noise_steps),
                           learning_rate=float(config.noise_lr),
                           l2_weight=float(config.noise_l2))
  noises, objectives, ces = [], [], []
  for c in classes:
    init = jax.random.normal(jax.random.fold_in(noise_key, c), shape, jnp.float32)
    result = noise_fn(bundle.params, init, jnp.asarray(c, jnp.int32))
    noises.append(result.noise)
    objectives.append(float(result.objective[-1]))
    ces.append([float(result.cross_entropy[0]), float(result.cross_entropy[-1])])
  noises = jnp.concatenate(noises)  # (K * B, *input_shape), class k at rows [k*B, (k+1)*B).

  subset = retain_subset(retain, config.retain_per_class, subset_key)
  batch_size = int(config.batch_size)
  optimizer = _model_optimizer(config)
  step = base.make_weighted_step(bundle, optimizer, train_mode=True)
  mix = functools.partial(_mix, tuple(map(float, bundle.mean)), tuple(map(float, bundle.std)))

  params = _copy(bundle.params)
  state = LoopState(params=params, batch_stats=_copy(bundle.batch_stats),
                    opt_state=_fresh_opt_state(optimizer, params, config.impair_lr))

  # (b) Impair: noise (labelled as its class) shuffled together with the retained subset.
  b = shape[0]
  per_class_rows = int(config.noise_copies) * b
  num_noise = len(classes) * per_class_rows
  pool = num_noise + len(subset)
  size = min(batch_size, pool)
  class_ids = np.asarray(classes, np.int32)
  impair_steps = retain_rows = 0
  for epoch in range(int(config.impair_epochs)):
    for idx in pipeline.batch_indices(jax.random.fold_in(impair_key, epoch), pool, size,
                                      drop_remainder=False):
      is_noise = idx < num_noise
      k = np.where(is_noise, idx // per_class_rows, 0)
      noise_rows = np.where(is_noise, k * b + idx % b, 0).astype(np.int32)
      rows = np.where(is_noise, 0, idx - num_noise)
      labels = np.where(is_noise, class_ids[k], subset.labels[rows]).astype(np.int32)
      x = mix(noises, subset.images[rows], noise_rows, is_noise)
      state, _ = step(state, x, labels, np.ones(size, np.float32))
      impair_steps += 1
      retain_rows += int((~is_noise).sum())

  # (c) Repair: the retained subset alone, with a fresh optimiser at the repair rate.
  state = state.replace(opt_state=_fresh_opt_state(optimizer, state.params, config.repair_lr))
  repair_steps = 0
  for epoch in range(int(config.repair_epochs)):
    for batch in base.epoch_batches(jax.random.fold_in(repair_key, epoch), subset, batch_size):
      n = len(batch)
      x = mix(noises, batch.images, np.zeros(n, np.int32), np.zeros(n, bool))
      state, _ = step(state, x, batch.labels.astype(np.int32), np.ones(n, np.float32))
      repair_steps += 1
      retain_rows += n

  details = {
      "noise_steps": int(config.noise_steps),
      "noise_objective": objectives,
      "noise_cross_entropy": ces,
      "impair_steps": impair_steps,
      "repair_steps": repair_steps,
      "noise_rows": num_noise * int(config.impair_epochs),
      "retain_subset": len(subset),
      "optimizer": config.optimizer,
  }
  return Outcome(state.params, state.batch_stats, steps=impair_steps + repair_steps,
                 examples={"retain": retain_rows, "forget": 0}, details=details)
