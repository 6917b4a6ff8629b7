"""``scrub``: SCRUB, a student moving away from its teacher on the forget set only.

SOURCE: Kurmanji, Triantafillou, Hayes, Triantafillou, "Towards Unbounded Machine
Unlearning", NeurIPS 2023 (arXiv 2302.09880); repository https://github.com/meghdadk/SCRUB,
``large_scale_unlearning.ipynb`` (the CIFAR-10 class-forgetting setting: the "SCRUB
Forgetting" cells give the numbers below) and
``thirdparty/repdistiller/helper/loops.py`` (``train_distill``), ``.../distiller_zoo/KD.py``
(``DistillKL``), ``.../helper/util.py`` (``adjust_learning_rate``).

The method. The student starts as a copy of the trained model (the teacher, frozen, in
inference mode). With ``KL_T(s, t) = T^2 * mean_batch KL(softmax(t/T) || softmax(s/T))``
(``DistillKL``), each epoch ``e = 1..epochs`` runs

1. if ``e <= max_epochs`` (``msteps``): one pass over the forget set, each step *ascending*
   ``KL_T(student, teacher)`` (the "max" steps: ``loss = -loss_div``);
2. one pass over the retain set, each step descending
   ``gamma * CE(student, y) + alpha * KL_T(student, teacher)`` (the "min" steps).

Both passes share one optimiser (SGD with momentum and weight decay), whose learning rate is
multiplied by ``lr_decay_rate`` for every entry of ``lr_decay_epochs`` below the epoch
(``adjust_learning_rate``). The student runs in training mode (``module.train()``:
BatchNorm on batch statistics, running statistics updated), the teacher in inference mode.

Published defaults (large-scale notebook, CIFAR-10 class forgetting with ResNet/All-CNN):
SGD, learning rate 5e-4, momentum 0.9, weight decay 5e-4, ``msteps`` 2, 3 epochs, ``T`` 4,
``gamma`` 0.99, ``alpha`` 0.001 (``beta`` 0: no other distillation term), learning-rate
decay 0.1 at epochs ``[3, 5, 9]`` (no decay within 3 epochs), forget batches of 512 and
retain batches of 256. **These are the defaults here.** (The small-scale notebook uses Adam,
lr 5e-4, weight decay 0.1, ``msteps`` 3, 10 epochs, ``T`` 2, ``gamma`` 1, ``alpha`` 0.5,
batches 64 / 32: ``ScrubConfig(optimizer="adam", ...)`` takes it.)

Departures: the last batch of each pass is completed from the start of that pass's
permutation (one batch shape, see :func:`~mnemonic_jax.baselines.base.epoch_batches`).
SCRUB+R (rewinding, the paper's privacy variant) is not implemented.

Sweep (:data:`SWEEP`, climbed by :func:`~mnemonic_jax.baselines.base.sweep`, which keeps the
strongest step that spares held-out retained accuracy): the learning rate x1, x10, x100. At
5e-4 the 20 steps on the digits MLP (one forget batch an epoch) leave the class known
(class 3, seed 0: E_F 5.4, unchanged); 5e-2 forgets it (E_F 100) with A_R unchanged (95.6).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Literal, get_args

import jax
import jax.numpy as jnp
import numpy as np
import optax

from mnemonic_jax import errors
from mnemonic_jax import fisher as fisher_lib
from mnemonic_jax.baselines.base import (
    Outcome, UnlearnData, adam, epoch_batches, init_loop, make_loss_step, register, sgd)
from mnemonic_jax.baselines.options import (
    Checked, NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt)
from mnemonic_jax.baselines.steps import piecewise_constant
from mnemonic_jax.bundle import Bundle, normalize

PyTree = Any

REFERENCE = ("Kurmanji et al., Towards Unbounded Machine Unlearning, NeurIPS 2023; "
             "github.com/meghdadk/SCRUB (large_scale_unlearning.ipynb: SGD lr 5e-4, momentum "
             "0.9, wd 5e-4, msteps 2, 3 epochs, T 4, gamma 0.99, alpha 0.001)")

Optimizer = Literal["sgd", "adam"]
OPTIMIZERS = get_args(Optimizer)

#: Overrides from the published defaults to stronger settings (see the module docstring).
SWEEP = ({}, {"learning_rate": 5e-3}, {"learning_rate": 5e-2})


@dataclasses.dataclass(frozen=True)
class ScrubConfig(Checked):
  """SCRUB's hyper-parameters (defaults: the repository's large-scale CIFAR-10 notebook).

  Attributes:
    epochs: epochs (``sgda_epochs``: 3).
    max_epochs: the first epochs that also ascend on the forget set (``msteps``: 2).
    learning_rate: initial learning rate (``sgda_learning_rate``: 5e-4).
    momentum: SGD momentum (0.9).
    weight_decay: coupled L2 coefficient (5e-4).
    optimizer: ``"sgd"`` (published) or ``"adam"`` (the small-scale notebook).
    temperature: distillation temperature ``T`` (``kd_T``: 4).
    gamma: weight of the retain cross-entropy (0.99).
    alpha: weight of the retain KL term (0.001).
    lr_decay_epochs: epochs after which the rate is multiplied by ``lr_decay_rate``.
    lr_decay_rate: the factor (0.1).
    forget_batch_size: examples per max step (512).
    retain_batch_size: examples per min step (256).
    train_mode: the student in training mode (BatchNorm), as published.
  """

  epochs: PositiveInt = 3
  max_epochs: NonNegativeInt = 2
  learning_rate: PositiveFloat = 5e-4
  momentum: NonNegativeFloat = 0.9
  weight_decay: NonNegativeFloat = 5e-4
  optimizer: Optimizer = "sgd"
  temperature: PositiveFloat = 4.0
  gamma: NonNegativeFloat = 0.99
  alpha: NonNegativeFloat = 0.001
  lr_decay_epochs: tuple[int, ...] = (3, 5, 9)
  lr_decay_rate: PositiveFloat = 0.1
  forget_batch_size: PositiveInt = 512
  retain_batch_size: PositiveInt = 256
  train_mode: bool = True

  def __post_init__(self) -> None:
    super().__post_init__()
    if self.max_epochs > self.epochs:
      raise errors.BadRequest(f"scrub needs max_epochs <= epochs, got max_epochs="
                              f"{self.max_epochs} and epochs={self.epochs}")


def distill_kl(student_logits: jax.Array, teacher_logits: jax.Array, temperature
               ) -> jax.Array:
  """``T^2 * mean_i KL(softmax(t_i / T) || softmax(s_i / T))`` (RepDistiller's ``DistillKL``).

  Args:
    student_logits, teacher_logits: ``(B, C)``.
    temperature: ``T > 0`` (may be traced).

  Returns:
    A float32 scalar.
  """
  log_s = jax.nn.log_softmax(student_logits.astype(jnp.float32) / temperature)
  log_t = jax.nn.log_softmax(teacher_logits.astype(jnp.float32) / temperature)
  kl = jnp.sum(jnp.exp(log_t) * (log_t - log_s), axis=-1)
  return jnp.mean(kl) * temperature ** 2


def _max_loss(logits, params, teacher_logits, temperature):
  del params
  return -distill_kl(logits, teacher_logits, temperature)


def _min_loss(logits, params, labels, teacher_logits, temperature, gamma, alpha):
  del params
  return (gamma * jnp.mean(fisher_lib.cross_entropy(logits, labels))
          + alpha * distill_kl(logits, teacher_logits, temperature))


def _teacher_forward(bundle: Bundle):
  """A jitted ``teacher(params, images_uint8) -> logits``: the model in inference mode
  (one module-level program per model and normalisation)."""
  apply_fn = bundle.apply_fn()
  mean, std = tuple(map(float, bundle.mean)), tuple(map(float, bundle.std))
  return functools.partial(_teacher_program, apply_fn, mean, std)


@functools.partial(jax.jit, static_argnums=(1, 2))
def _teacher_program(apply_fn, mean, std, params, images):
  return apply_fn(params, normalize(images, mean, std))


def decay_boundaries(config: ScrubConfig, forget_steps: int, retain_steps: int
                     ) -> dict[int, float]:
  """``{optimizer step: factor}`` of ``adjust_learning_rate`` for optax's schedule.

  Epoch ``e`` (1-based) runs at ``learning_rate * lr_decay_rate ** #{b in lr_decay_epochs:
  e > b}``; optax counts optimiser steps (max and min alike), so each decay starts at the
  first step of epoch ``b + 1``.

  Args:
    config: the epochs, ``max_epochs`` and the decay.
    forget_steps, retain_steps: steps of one forget pass and of one retain pass.
  """
  starts, step = {}, 0
  for epoch in range(1, config.epochs + 1):
    starts[epoch] = step
    step += (forget_steps if epoch <= config.max_epochs else 0) + retain_steps
  return {starts[b + 1]: config.lr_decay_rate for b in sorted(set(config.lr_decay_epochs))
          if 0 < b < config.epochs}


def _optimizer(config: ScrubConfig, boundaries: dict[int, float]) -> optax.GradientTransformation:
  # Cached schedule and optimiser: equal configs share one compiled step.
  schedule = piecewise_constant(config.learning_rate, tuple(sorted(boundaries.items())))
  if config.optimizer == "adam":  # PyTorch's Adam(weight_decay=...) couples the decay.
    return adam(schedule, config.weight_decay)
  return sgd(schedule, config.momentum, config.weight_decay)


@register("scrub", ScrubConfig, data="all", reference=REFERENCE, sweep=SWEEP)
def scrub(bundle: Bundle, classes: tuple[int, ...], data: UnlearnData, config: ScrubConfig,
          key: jax.Array) -> Outcome:
  """SCRUB: max steps on the forget set, min steps on the retain set (module docstring).

  Args:
    bundle: the trained bundle (the teacher and the student's start; not modified).
    classes: the forgotten classes.
    data: ``data.retain`` and ``data.forget``, uint8 images and labels.
    config: a :class:`ScrubConfig`.
    key: typed key; the forget pass of epoch ``e`` is shuffled by ``fold_in(k_f, e)``,
      the retain pass by ``fold_in(k_r, e)`` (``k_f, k_r = split(key)``).

  Returns:
    An :class:`~mnemonic_jax.baselines.base.Outcome`; ``details`` holds the mean max and
    min losses of each epoch.
  """
  del classes
  retain, forget = data.retain, data.forget
  n_f, n_r = min(config.forget_batch_size, len(forget)), min(config.retain_batch_size,
                                                              len(retain))
  per_epoch_f, per_epoch_r = -(-len(forget) // n_f), -(-len(retain) // n_r)
  boundaries = decay_boundaries(config, per_epoch_f, per_epoch_r)
  optimizer = _optimizer(config, boundaries)
  max_step = make_loss_step(bundle, optimizer, _max_loss, train_mode=config.train_mode)
  min_step = make_loss_step(bundle, optimizer, _min_loss, train_mode=config.train_mode)
  teacher = _teacher_forward(bundle)
  t, gamma, alpha = (jnp.float32(v) for v in (config.temperature, config.gamma, config.alpha))
  forget_key, retain_key = jax.random.split(key)
  state = init_loop(bundle, optimizer)
  steps, seen_f, seen_r, losses = 0, 0, 0, []
  for epoch in range(1, config.epochs + 1):
    max_losses, min_losses = [], []
    if epoch <= config.max_epochs:
      for batch in epoch_batches(jax.random.fold_in(forget_key, epoch), forget, n_f):
        images = jnp.asarray(batch.images)
        state, loss = max_step(state, images, teacher(bundle.params, images), t)
        max_losses.append(loss)
        seen_f += n_f
    for batch in epoch_batches(jax.random.fold_in(retain_key, epoch), retain, n_r):
      images = jnp.asarray(batch.images)
      state, loss = min_step(state, images, jnp.asarray(batch.labels, jnp.int32),
                             teacher(bundle.params, images), t, gamma, alpha)
      min_losses.append(loss)
      seen_r += n_r
    steps += len(max_losses) + len(min_losses)
    losses.append({"epoch": epoch,
                   "max_loss": float(np.mean(max_losses)) if max_losses else None,
                   "min_loss": float(np.mean(min_losses))})
  return Outcome(state.params, state.batch_stats, steps=steps,
                 examples={"retain": seen_r, "forget": seen_f},
                 details={"epochs": config.epochs, "max_epochs": config.max_epochs,
                          "learning_rate": config.learning_rate,
                          "optimizer": config.optimizer, "temperature": config.temperature,
                          "gamma": config.gamma, "alpha": config.alpha,
                          "forget_batch_size": n_f, "retain_batch_size": n_r,
                          "losses": losses})
