"""``bad-teacher``: distillation from a competent and an incompetent (random) teacher.

SOURCE: Chundawat, Tarun, Mandal, Kankanhalli, "Can Bad Teaching Induce Forgetting?
Unlearning in Deep Networks Using an Incompetent Teacher", AAAI 2023 (arXiv 2205.08096);
repository https://github.com/vikram2000b/bad-teaching-unlearning, files ``unlearn.py``
(``UnlearnerLoss``, ``unlearning_step``, ``blindspot_unlearner``) and
``CIFARSuper20_Rocket_Unlearn.ipynb`` (the call and its numbers); the SSD authors run the same
code with the same numbers (github.com/if-loops/selective-synaptic-dampening,
``forget_full_class_strategies.blindspot``).

The method. The student starts as a copy of the trained model. Two frozen teachers in
inference mode: the trained model (competent) and a randomly initialised model of the same
architecture (incompetent). The unlearning set is the whole forget set plus a random 30% of
the retain set, shuffled together; each example's target distribution is the incompetent
teacher's ``softmax(t_u / T)`` if it is forgotten, the competent teacher's ``softmax(t_c /
T)`` otherwise, and the student minimises ``KL(target || softmax(s / T))``. The loss is
PyTorch's ``F.kl_div`` with its default reduction, the mean over the batch AND the classes
(``sum / (B * C)``): reproduced here (with Adam its scale barely matters).

Published defaults: retain fraction 0.3, 1 epoch, Adam at learning rate 1e-4, batch 256,
temperature 1; the student in training mode (a freshly built PyTorch model: BatchNorm on
batch statistics). **These are the defaults here.**

Departures: the incompetent teacher is ``bundle.model.init`` with a key drawn from the
method's key (the repository builds a fresh PyTorch model, so its initialiser); the last
batch is completed from the start of the permutation (one batch shape).

Sweep (:data:`SWEEP`, for :func:`~mnemonic_jax.baselines.base.sweep`): the learning rate
x10, x100, one epoch as published. The defaults take 3 steps on digits (class 3, seed 0:
E_F 5.4, unchanged); 1e-3 gives E_F 35.1 (A_R 95.0 from 95.6), 1e-2 E_F 100 but A_R 75.7.
(10 epochs at 1e-3 forget the class, E_F 100, at A_R 93.4: more than the sweep's one point
of retained training accuracy, 95.4 from 99.0.)
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from mnemonic_jax.baselines.base import (
    Outcome, UnlearnData, adam, init_loop, make_loss_step, register)
from mnemonic_jax.baselines.options import Checked, PositiveFloat, PositiveInt, UnitFloat
from mnemonic_jax.bundle import Bundle, inference_apply_fn, normalize
from mnemonic_jax.data import pipeline
from mnemonic_jax.pytrees import Static

PyTree = Any

#: Overrides from the published defaults to stronger settings (see the module docstring).
SWEEP = ({}, {"learning_rate": 1e-3}, {"learning_rate": 1e-2})

REFERENCE = ("Chundawat et al., Can Bad Teaching Induce Forgetting? Unlearning in Deep Networks "
             "Using an Incompetent Teacher, AAAI 2023; github.com/vikram2000b/"
             "bad-teaching-unlearning (30% of the retain set, 1 epoch, Adam lr 1e-4, batch 256, "
             "T 1)")


@dataclasses.dataclass(frozen=True)
class BadTeacherConfig(Checked):
  """Bad Teacher's hyper-parameters (defaults: the authors' notebook).

  Attributes:
    retain_fraction: fraction of the retain set drawn (at random, once) into the
      unlearning set (0.3).
    epochs: passes over the unlearning set (1).
    learning_rate: Adam learning rate (1e-4).
    batch_size: examples per step (256).
    temperature: ``KL_temperature`` (1).
    train_mode: the student in training mode (BatchNorm), as published.
  """

  retain_fraction: UnitFloat = 0.3
  epochs: PositiveInt = 1
  learning_rate: PositiveFloat = 1e-4
  batch_size: PositiveInt = 256
  temperature: PositiveFloat = 1.0
  train_mode: bool = True


def unlearner_loss(student_logits: jax.Array, competent_logits: jax.Array,
                   incompetent_logits: jax.Array, is_forget: jax.Array, temperature
                   ) -> jax.Array:
  """``UnlearnerLoss``: ``F.kl_div(log_softmax(s/T), target)`` with the default reduction.

  ``target = softmax(t_u / T)`` on forgotten rows (``is_forget`` 1), ``softmax(t_c / T)`` on
  retained rows; the KL terms are averaged over every entry of the ``(B, C)`` batch.

  Args:
    student_logits, competent_logits, incompetent_logits: ``(B, C)``.
    is_forget: ``(B,)`` 1.0 for forgotten examples, 0.0 for retained ones.
    temperature: ``T > 0``.

  Returns:
    A float32 scalar.
  """
  is_forget = is_forget[:, None]
  target = (is_forget * jax.nn.softmax(incompetent_logits / temperature)
            + (1 - is_forget) * jax.nn.softmax(competent_logits / temperature))
  log_s = jax.nn.log_softmax(student_logits.astype(jnp.float32) / temperature)
  terms = jnp.where(target > 0, target * (jnp.log(jnp.where(target > 0, target, 1.0)) - log_s),
                    0.0)
  return jnp.mean(terms)


def _loss(logits, params, competent, incompetent, is_forget, temperature):
  del params
  return unlearner_loss(logits, competent, incompetent, is_forget, temperature)


def incompetent_teacher(bundle: Bundle, key: jax.Array) -> tuple[PyTree, PyTree]:
  """``(params, batch_stats)`` of a fresh random initialisation of the bundle's model."""
  variables = _init_variables(Static(bundle.model), tuple(bundle.input_shape), key)
  return variables["params"], variables.get("batch_stats", {})


@functools.partial(jax.jit, static_argnums=(0, 1))
def _init_variables(model: Static, input_shape: tuple[int, ...], key: jax.Array) -> PyTree:
  return model.value.init(key, jnp.zeros((1, *input_shape), jnp.float32), train=False)


@functools.partial(jax.jit, static_argnums=(2, 3))
def _teachers(competent_fn, incompetent_fn, mean, std, params, bad, images):
  """Both teachers' logits on uint8 ``images`` (inference mode)."""
  x = normalize(images, mean, std)
  return competent_fn(params, x), incompetent_fn(bad, x)


@register("bad-teacher", BadTeacherConfig, data="all", reference=REFERENCE, sweep=SWEEP)
def bad_teacher(bundle: Bundle, classes: tuple[int, ...], data: UnlearnData,
                config: BadTeacherConfig, key: jax.Array) -> Outcome:
  """Distils the competent teacher on retained and the random one on forgotten examples.

  Args:
    bundle: the trained bundle (the competent teacher and the student's start).
    classes: the forgotten classes.
    data: ``data.retain`` and ``data.forget``, uint8 images (labels only say which set).
    config: a :class:`BadTeacherConfig`.
    key: typed key, split into the incompetent teacher's, the retain subset's and the
      shuffling key (epoch ``e`` shuffled by ``fold_in``).

  Returns:
    An :class:`~mnemonic_jax.baselines.base.Outcome`.
  """
  del classes
  retain, forget = data.retain, data.forget
  teacher_key, subset_key, shuffle_key = jax.random.split(key, 3)
  n_sub = int(config.retain_fraction * len(retain))  # random.sample(..., int(0.3 * N)).
  subset = np.sort(np.asarray(jax.random.permutation(subset_key, len(retain)))[:n_sub])
  # Rows of the unlearning set: (is_forget, row in its split).
  source = np.concatenate([np.ones(len(forget), bool), np.zeros(n_sub, bool)])
  rows = np.concatenate([np.arange(len(forget)), subset])
  size = min(config.batch_size, len(rows))
  optimizer = adam(config.learning_rate)  # Cached: equal configs share the step.
  step = make_loss_step(bundle, optimizer, _loss, train_mode=config.train_mode)
  competent_fn = bundle.apply_fn()
  bad_params, bad_stats = incompetent_teacher(bundle, teacher_key)
  incompetent_fn = inference_apply_fn(bundle.model, bad_stats)
  mean, std = tuple(map(float, bundle.mean)), tuple(map(float, bundle.std))
  teachers = functools.partial(_teachers, competent_fn, incompetent_fn, mean, std)

  t = jnp.float32(config.temperature)
  state = init_loop(bundle, optimizer)
  steps = seen_f = seen_r = 0
  first = last = None
  for epoch in range(config.epochs):
    for idx in pipeline.batch_indices(jax.random.fold_in(shuffle_key, epoch), len(rows), size,
                                      drop_remainder=False):
      from_forget = source[idx]
      images = np.empty((size, *forget.images.shape[1:]), forget.images.dtype)
      images[from_forget] = forget.images[rows[idx][from_forget]]
      images[~from_forget] = retain.images[rows[idx][~from_forget]]
      images = jnp.asarray(images)
      competent, incompetent = teachers(bundle.params, bad_params, images)
      state, loss = step(state, images, competent, incompetent,
                         jnp.asarray(from_forget, jnp.float32), t)
      steps += 1
      seen_f += int(from_forget.sum())
      seen_r += int((~from_forget).sum())
      first = loss if first is None else first
      last = loss
  return Outcome(state.params, state.batch_stats, steps=steps,
                 examples={"retain": seen_r, "forget": seen_f},
                 details={"retain_fraction": config.retain_fraction, "retain_subset": n_sub,
                          "epochs": config.epochs, "learning_rate": config.learning_rate,
                          "batch_size": size, "temperature": config.temperature,
                          "first_loss": float(first), "last_loss": float(last)})
