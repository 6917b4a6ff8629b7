"""``finetune``: keep training on the retained data only, and let the rest fade.

The simplest data-based baseline of the unlearning literature: continue SGD on the retain
set ``D_r`` for a few epochs, so that catastrophic forgetting erodes what the model knew of
the forgotten classes. It reads no forgotten example.

Sources and published defaults:

* Foster et al., "Fast Machine Unlearning Without Retraining Through Selective Synaptic
  Dampening", AAAI 2024; repository ``if-loops/selective-synaptic-dampening``,
  ``forget_full_class_strategies.finetune``: 5 epochs of SGD, learning rate 0.02, momentum
  0.9, weight decay 5e-4, constant rate, batch 128 (their loaders), model in training mode.
  **These are the defaults here** (SSD is the closest published comparison of the paper).
* NeurIPS 2023 machine-unlearning challenge starting kit (``unlearning-challenge/
  starting-kit``, ``unlearning-CIFAR10.ipynb``): 5 epochs, SGD learning rate 0.1, momentum
  0.9, weight decay 5e-4, cosine annealing over the epochs. Take it with
  ``FinetuneConfig(learning_rate=0.1, schedule="cosine")``.

Departures: the cosine schedule decays per step (optax), not per epoch as PyTorch's
``CosineAnnealingLR(T_max=epochs)`` stepped once an epoch; the last batch of an epoch is
completed with examples from the start of that epoch's permutation (one batch shape, one
compilation; see :func:`mnemonic_jax.baselines.base.epoch_batches`) rather than being short.

The loop helpers here (:func:`make_image_step`, :func:`run_loop`) are shared by the other
fine-tuning style baselines (``neggrad``, ``neggrad+``, ``random-labels``).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Iterable, Literal, get_args

import jax
import jax.numpy as jnp
import numpy as np
import optax

from mnemonic_jax.baselines.base import (
    LoopState, Outcome, UnlearnData, epoch_batches, init_loop, make_weighted_step, register,
    sgd)
from mnemonic_jax.baselines.options import (
    Checked, NonNegativeFloat, PositiveFloat, PositiveInt)
from mnemonic_jax.baselines.steps import cosine_decay
from mnemonic_jax.bundle import Bundle, inference_apply_fn, normalize

REFERENCE = ("Foster et al., Selective Synaptic Dampening, AAAI 2024 (repository "
             "if-loops/selective-synaptic-dampening, finetune: 5 epochs, SGD lr 0.02, "
             "momentum 0.9, weight decay 5e-4); NeurIPS 2023 unlearning challenge starting kit")

#: Learning-rate schedules of the fine-tuning style baselines.
Schedule = Literal["constant", "cosine"]
SCHEDULES = get_args(Schedule)

#: ``step(state, images_uint8, labels, weights) -> (state, loss)``; the state is donated.
ImageStep = Callable[[LoopState, jax.Array, jax.Array, jax.Array], tuple[LoopState, jax.Array]]


@dataclasses.dataclass(frozen=True)
class FinetuneConfig(Checked):
  """Fine-tuning on the retain set (defaults: the SSD repository's ``finetune``).

  Every field is checked by kind and range when the config is built (:mod:`.options`).

  Attributes:
    epochs: passes over the retain set (SSD: 5; at the paper's 200 training epochs of the
      MNIST MLP this costs 2.5% of retraining).
    learning_rate: peak SGD learning rate (SSD: 0.02; challenge kit: 0.1).
    momentum: heavy-ball momentum (0.9 in both sources).
    weight_decay: coupled L2 coefficient, as PyTorch's ``SGD(weight_decay=...)`` (5e-4).
    batch_size: examples per step (128).
    schedule: ``"constant"`` (SSD) or ``"cosine"`` to 0 over all steps (challenge kit).
    train_mode: run the model in training mode (BatchNorm on batch statistics, running
      statistics updated), as both sources do.
  """

  epochs: PositiveInt = 5
  learning_rate: PositiveFloat = 0.02
  momentum: NonNegativeFloat = 0.9
  weight_decay: NonNegativeFloat = 5e-4
  batch_size: PositiveInt = 128
  schedule: Schedule = "constant"
  train_mode: bool = True


def learning_rate_schedule(learning_rate: float, schedule: str, total_steps: int
                           ) -> float | optax.Schedule:
  """``learning_rate`` held constant, or cosine-decayed to 0 over ``total_steps``."""
  if schedule == "cosine":  # Cached: one schedule object (one compiled step) per arguments.
    return cosine_decay(learning_rate, max(total_steps, 1))
  return learning_rate


def make_image_step(bundle: Bundle, optimizer: optax.GradientTransformation, *,
                    train_mode: bool = True) -> ImageStep:
  """:func:`~mnemonic_jax.baselines.base.make_weighted_step` on uint8 images.

  Returns a jitted ``step(state, images, labels, weights) -> (state, loss)`` that
  normalises ``uint8`` ``(B, H, W, C)`` images with the bundle's mean and std on the device
  and takes one step of the weighted loss (``+1`` descends, ``-1`` ascends). One
  module-level program, compiled once per model, optimiser and batch shape (a second
  call compiles nothing); the state is donated.
  """
  return make_weighted_step(bundle, optimizer, train_mode=train_mode, images=True)


def make_batch_accuracy(bundle: Bundle) -> Callable[[Any, Any, jax.Array, jax.Array], jax.Array]:
  """A jitted ``accuracy(params, batch_stats, images_uint8, labels) -> float32 scalar``.

  The model runs in inference mode; the result is the fraction in ``[0, 1]``. One
  module-level program per model and normalisation.
  """
  model = bundle.model
  mean, std = tuple(map(float, bundle.mean)), tuple(map(float, bundle.std))

  def accuracy(params, batch_stats, images, labels):
    return _batch_accuracy(inference_apply_fn(model, batch_stats), mean, std, params, images,
                           labels)

  return accuracy


@functools.partial(jax.jit, static_argnums=(1, 2))
def _batch_accuracy(apply_fn, mean, std, params, images, labels):
  logits = apply_fn(params, normalize(images, mean, std))
  return jnp.mean(jnp.argmax(logits, -1) == labels)


#: One batch of a loop: ``(images_uint8, labels, weights)`` host arrays.
Batch = tuple[np.ndarray, np.ndarray, np.ndarray]


@dataclasses.dataclass
class LoopResult:
  """What :func:`run_loop` did.

  Attributes:
    state: the final parameters, statistics and optimiser state.
    steps: optimiser steps taken.
    stopped: whether ``stop`` ended the loop before the batches ran out.
    first_loss, last_loss: the weighted loss of the first and the last step (NaN if none).
  """

  state: LoopState
  steps: int
  stopped: bool
  first_loss: float
  last_loss: float


def run_loop(state: LoopState, step: ImageStep, batches: Iterable[Batch], *,
             stop: Callable[[LoopState, Batch], bool] | None = None) -> LoopResult:
  """Runs ``step`` over ``batches``, optionally stopping when ``stop(state, batch)`` holds.

  Args:
    state: the starting state (donated to the first step: pass a copy, see
      :func:`~mnemonic_jax.baselines.base.init_loop`).
    step: from :func:`make_image_step`.
    batches: ``(images_uint8, labels, weights)`` host arrays, every batch of one shape.
    stop: checked before each step on the batch about to be used; ``True`` ends the loop
      without taking that step. It may read the device (e.g. an accuracy), which waits for
      the previous step.

  Returns:
    A :class:`LoopResult`.
  """
  steps, stopped = 0, False
  first = last = None
  for batch in batches:
    if stop is not None and stop(state, batch):
      stopped = True
      break
    images, labels, weights = batch
    state, loss = step(state, jnp.asarray(images), jnp.asarray(labels, jnp.int32),
                       jnp.asarray(weights, jnp.float32))
    first = loss if first is None else first
    last = loss
    steps += 1
  as_float = lambda x: float("nan") if x is None else float(x)
  return LoopResult(state, steps, stopped, as_float(first), as_float(last))


@register("finetune", FinetuneConfig, data="retain", reference=REFERENCE)
def finetune(bundle: Bundle, classes: tuple[int, ...], data: UnlearnData,
             config: FinetuneConfig, key: jax.Array) -> Outcome:
  """Fine-tunes on the retain set for ``config.epochs`` epochs.

  Args:
    bundle: the trained bundle (not modified).
    classes: the forgotten classes (validated by :func:`~mnemonic_jax.baselines.unlearn`);
      unused beyond the report, since the retain set already leaves them out.
    data: ``data.retain`` holds uint8 ``(N, H, W, C)`` images and ``(N,)`` labels.
    config: a :class:`FinetuneConfig`.
    key: typed key; epoch ``e`` is shuffled by ``fold_in(key, e)``.

  Returns:
    An :class:`~mnemonic_jax.baselines.base.Outcome`; ``examples["retain"]`` counts every
    example fed (``steps * min(batch_size, N)``).
  """
  del classes
  retain = data.retain
  size = min(config.batch_size, len(retain))
  total = config.epochs * -(-len(retain) // size)
  optimizer = sgd(learning_rate_schedule(config.learning_rate, config.schedule, total),
                  config.momentum, config.weight_decay)
  step = make_image_step(bundle, optimizer, train_mode=config.train_mode)
  ones = np.ones(size, np.float32)

  def batches():
    for epoch in range(config.epochs):
      for batch in epoch_batches(jax.random.fold_in(key, epoch), retain, size):
        yield batch.images, batch.labels, ones

  result = run_loop(init_loop(bundle, optimizer), step, batches())
  return Outcome(
      result.state.params, result.state.batch_stats, steps=result.steps,
      examples={"retain": result.steps * size, "forget": 0},
      details={"epochs": config.epochs, "learning_rate": config.learning_rate,
               "schedule": config.schedule, "batch_size": size,
               "first_loss": result.first_loss, "last_loss": result.last_loss})
