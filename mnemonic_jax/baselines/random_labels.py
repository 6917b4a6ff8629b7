"""``random-labels``: fine-tune on the forgotten examples relabelled at random, plus the rest.

Every forgotten training example gets a wrong label drawn uniformly from the *remaining*
classes (once, before training, from the key), and the model is fine-tuned on these
relabelled examples together with the retain set, shuffled together. The wrong labels
overwrite what the model knew of the forgotten classes; the retain set keeps the rest.

Sources and published defaults:

* Graves, Nagisetty, Ganesh, "Amnesiac Machine Learning", AAAI 2021: "unlearning" by
  relabelling the sensitive data with randomly selected incorrect labels and training
  briefly (their "amnesiac" method proper, undoing the recorded updates, is not this).
  Golatkar, Achille, Soatto, "Eternal Sunshine of the Spotless Net", CVPR 2020, compare
  against a similar random-labels fine-tuning.
* Foster et al., SSD, AAAI 2024, repository ``if-loops/selective-synaptic-dampening``,
  ``forget_full_class_strategies.amnesiac`` (from Chundawat et al.'s bad-teaching
  repository): new labels drawn uniformly from the classes other than the forgotten one,
  once; relabelled forget set concatenated with the retain set, shuffled, batch 128;
  3 epochs of Adam at learning rate 1e-4, model in training mode. **These are the defaults
  here.**

Departures: with several forgotten classes the new labels are drawn from the classes not
forgotten at all (so no forgotten class is relabelled as another forgotten one); the last
batch of an epoch is completed from the start of the permutation (one batch shape).
"""

from __future__ import annotations

import dataclasses
from typing import Literal, get_args

import jax
import numpy as np
import optax

from mnemonic_jax.baselines.base import Outcome, UnlearnData, adam, init_loop, register, sgd
from mnemonic_jax.baselines.finetune import make_image_step, run_loop
from mnemonic_jax.baselines.options import (
    Checked, NonNegativeFloat, PositiveFloat, PositiveInt)
from mnemonic_jax.bundle import Bundle
from mnemonic_jax.data import pipeline

REFERENCE = ("Random relabelling of the forget set + fine-tuning: Graves et al., Amnesiac "
             "Machine Learning, AAAI 2021; Golatkar et al. CVPR 2020; defaults of the SSD "
             "repository's 'amnesiac' (Foster et al. AAAI 2024): 3 epochs, Adam lr 1e-4, "
             "batch 128")

#: Optimisers ``RandomLabelsConfig.optimizer`` names.
Optimizer = Literal["adam", "sgd"]
OPTIMIZERS = get_args(Optimizer)


@dataclasses.dataclass(frozen=True)
class RandomLabelsConfig(Checked):
  """Fine-tuning on relabelled forgotten data plus retained data (defaults: SSD's).

  Attributes:
    epochs: passes over the union of both sets (3).
    learning_rate: learning rate (1e-4 with Adam).
    optimizer: ``"adam"`` (SSD's) or ``"sgd"`` (with ``momentum`` and ``weight_decay``).
    momentum: heavy-ball momentum of ``"sgd"``.
    weight_decay: coupled L2 coefficient (0, as SSD's Adam).
    batch_size: examples per step (128).
    train_mode: BatchNorm in training mode (as SSD).
  """

  epochs: PositiveInt = 3
  learning_rate: PositiveFloat = 1e-4
  optimizer: Optimizer = "adam"
  momentum: NonNegativeFloat = 0.9
  weight_decay: NonNegativeFloat = 0.0
  batch_size: PositiveInt = 128
  train_mode: bool = True


def random_wrong_labels(key: jax.Array, n: int, classes: tuple[int, ...], num_classes: int
                        ) -> np.ndarray:
  """``n`` labels drawn uniformly from the classes not in ``classes``.

  Args:
    key: typed PRNG key.
    n: how many labels.
    classes: the forgotten classes (never drawn).
    num_classes: the model's number of classes.

  Returns:
    ``int32`` ``(n,)``.
  """
  remaining = np.setdiff1d(np.arange(num_classes), np.asarray(classes)).astype(np.int32)
  picks = np.asarray(jax.random.randint(key, (n,), 0, len(remaining)))
  return remaining[picks]


def _optimizer(config: RandomLabelsConfig) -> optax.GradientTransformation:
  if config.optimizer == "adam":
    return adam(config.learning_rate, config.weight_decay)  # Cached, as sgd.
  return sgd(config.learning_rate, config.momentum, config.weight_decay)


@register("random-labels", RandomLabelsConfig, data="all", reference=REFERENCE)
def random_labels(bundle: Bundle, classes: tuple[int, ...], data: UnlearnData,
                  config: RandomLabelsConfig, key: jax.Array) -> Outcome:
  """Fine-tunes on ``D_r`` plus ``D_f`` relabelled with random remaining classes.

  Args:
    bundle: the trained bundle (not modified).
    classes: the forgotten classes (never used as a new label).
    data: ``data.retain`` and ``data.forget``: uint8 ``(N, H, W, C)`` images, labels.
    config: a :class:`RandomLabelsConfig`.
    key: typed key, split into the relabelling key and the shuffling key (epoch ``e``
      shuffled by ``fold_in(shuffle_key, e)``).

  Returns:
    An :class:`~mnemonic_jax.baselines.base.Outcome`; ``examples`` counts the rows of each
    set actually fed; ``details["relabelled"]`` how many forgotten examples went to each
    remaining class.
  """
  retain, forget = data.retain, data.forget
  label_key, shuffle_key = jax.random.split(key)
  new_labels = random_wrong_labels(label_key, len(forget), classes, bundle.num_classes)
  images = np.concatenate([retain.images, forget.images])
  labels = np.concatenate([np.asarray(retain.labels, np.int32), new_labels])
  is_forget = np.arange(len(labels)) >= len(retain)
  size = min(config.batch_size, len(labels))
  optimizer = _optimizer(config)
  step = make_image_step(bundle, optimizer, train_mode=config.train_mode)
  ones = np.ones(size, np.float32)
  forget_rows = [0]

  def batches():
    for epoch in range(config.epochs):
      key_e = jax.random.fold_in(shuffle_key, epoch)
      for idx in pipeline.batch_indices(key_e, len(labels), size, drop_remainder=False):
        forget_rows[0] += int(is_forget[idx].sum())
        yield images[idx], labels[idx], ones

  result = run_loop(init_loop(bundle, optimizer), step, batches())
  fed = result.steps * size
  counts = np.bincount(new_labels, minlength=bundle.num_classes)
  return Outcome(
      result.state.params, result.state.batch_stats, steps=result.steps,
      examples={"retain": fed - forget_rows[0], "forget": forget_rows[0]},
      details={"epochs": config.epochs, "learning_rate": config.learning_rate,
               "optimizer": config.optimizer, "batch_size": size,
               "relabelled": {int(c): int(counts[c]) for c in np.flatnonzero(counts)},
               "first_loss": result.first_loss, "last_loss": result.last_loss})
