"""``neggrad`` and ``neggrad+``: gradient ascent on the forgotten data.

``neggrad`` (data: forget set only) climbs the cross-entropy of the forgotten examples,
``theta <- theta + lr * grad CE(D_f)``; it is the "NegGrad" / "GA" baseline of
Golatkar et al. (CVPR 2020), Kurmanji et al. (SCRUB, NeurIPS 2023) and Jia et al.
(Unlearn-Sparse / SalUn, NeurIPS 2023, ICLR 2024).

``neggrad+`` (data: both sets) is Kurmanji et al.'s stronger variant, "NegGrad+": each
step descends on a retain batch and ascends on a forget batch,

  loss = alpha * CE(retain batch) - (1 - alpha) * CE(forget batch),

an epoch being one pass over the retain set with the forget set cycled alongside
(``zip(retain_loader, cycle(forget_loader))`` in their repository).

Sources and published defaults:

* ``neggrad``: Jia et al., "Model Sparsity Can Simplify Machine Unlearning", NeurIPS 2023,
  repository ``OPTML-Group/Unlearn-Sparse`` (``optim/unlearn/GA.py``; SalUn reuses it): SGD
  with momentum 0.9 and weight decay 5e-4, model in training mode, forget set only; their
  CIFAR-10 scripts run 5 epochs at learning rate 1e-4 (random-example forgetting of 4,500
  images, i.e. ~90 steps at batch 256). **Defaults here**: the same optimiser and 5 epochs,
  but learning rate 0.01: class forgetting on a small forget set (the paper's MNIST: ~6,000
  images a class, 47 steps at batch 128; the digits: ~145, 2 steps) takes a few dozen steps,
  too few for 1e-4 to move the model at all.
* ``neggrad+``: Kurmanji, Triantafillou, Hayes, Triantafillou, "Towards Unbounded Machine
  Unlearning", NeurIPS 2023, repository ``meghdadk/SCRUB`` (``small_scale_unlearning.ipynb``,
  ``negative_grad``/``run_neggrad_epoch``): alpha 0.95, 10 epochs, plain SGD (no momentum)
  at learning rate 0.01, model in inference mode (``model.eval()``: BatchNorm statistics
  fixed). **These are the defaults here.** Departure: their retain term also carries an L2
  pull towards the original weights (``weight_decay/2 * ||theta - theta_0||^2``); here
  ``weight_decay`` is the ordinary coupled decay (0 by default) and there is no pull.

Bounding the ascent. Plain gradient ascent has no minimum: the forget loss grows without
bound and the model degrades on every class (Kurmanji et al. report it; the Unlearn-Sparse
scripts bound it only by a tiny learning rate and few epochs). Here it is bounded three
ways: (1) a fixed epoch budget; (2) ``stop_at_zero_accuracy`` (default on for ``neggrad``):
before each step the model's inference-mode accuracy on the batch about to be used is read,
and the loop stops once it is 0, i.e. as soon as the forgotten examples are no longer
recognised, before the ascent runs away (an early stop of this project, not a published
rule); (3) :func:`~mnemonic_jax.baselines.unlearn` refuses a non-finite result.
"""

from __future__ import annotations

import dataclasses
import itertools

import jax
import numpy as np

from mnemonic_jax.baselines.base import (
    Outcome, UnlearnData, epoch_batches, forever, init_loop, register, sgd)
from mnemonic_jax.baselines.finetune import (
    Batch, LoopResult, make_batch_accuracy, make_image_step, run_loop)
from mnemonic_jax.baselines.options import (
    Checked, NonNegativeFloat, PositiveFloat, PositiveInt, UnitFloat)
from mnemonic_jax.bundle import Bundle

REFERENCE = ("Gradient ascent on the forget set (NegGrad / GA): Golatkar et al. CVPR 2020; "
             "Jia et al. NeurIPS 2023 (repository OPTML-Group/Unlearn-Sparse, GA: SGD "
             "momentum 0.9, weight decay 5e-4, 5 epochs); bounded by an early stop at zero "
             "forget-batch accuracy (this project)")
REFERENCE_PLUS = ("NegGrad+: Kurmanji et al., Towards Unbounded Machine Unlearning, NeurIPS "
                  "2023 (repository meghdadk/SCRUB: alpha 0.95, 10 epochs, SGD lr 0.01, "
                  "model in inference mode)")


@dataclasses.dataclass(frozen=True)
class NegGradConfig(Checked):
  """Gradient ascent on the forget set (defaults: Unlearn-Sparse's GA, but lr 0.01).

  Attributes:
    epochs: most passes over the forget set (5).
    learning_rate: SGD learning rate (0.01; Unlearn-Sparse's CIFAR-10 scripts: 1e-4).
    momentum: heavy-ball momentum (0.9).
    weight_decay: coupled L2 coefficient (5e-4).
    batch_size: examples per step (128).
    stop_at_zero_accuracy: stop before the first step whose batch the model already gets
      all wrong (see the module docstring).
    train_mode: run the model in training mode (BatchNorm on batch statistics, running
      statistics updated from forgotten examples only), as Unlearn-Sparse does.
  """

  epochs: PositiveInt = 5
  learning_rate: PositiveFloat = 0.01
  momentum: NonNegativeFloat = 0.9
  weight_decay: NonNegativeFloat = 5e-4
  batch_size: PositiveInt = 128
  stop_at_zero_accuracy: bool = True
  train_mode: bool = True


@dataclasses.dataclass(frozen=True)
class NegGradPlusConfig(Checked):
  """NegGrad+: descent on the retain set, ascent on the forget set (defaults: SCRUB's).

  Attributes:
    alpha: weight of the retain loss; the forget loss weighs ``1 - alpha`` (0.95).
    epochs: passes over the retain set, the forget set cycled alongside (10).
    learning_rate: SGD learning rate (0.01).
    momentum: heavy-ball momentum (0: SCRUB uses plain SGD).
    weight_decay: coupled L2 coefficient (0; see the module docstring for SCRUB's pull).
    batch_size: examples per step from each set (128 retain + 128 forget).
    stop_at_zero_accuracy: also stop once a forget batch is all wrong (off: the retain
      term keeps the ascent in check).
    train_mode: BatchNorm in training mode; ``False`` as SCRUB (``model.eval()``).
  """

  alpha: UnitFloat = 0.95
  epochs: PositiveInt = 10
  learning_rate: PositiveFloat = 0.01
  momentum: NonNegativeFloat = 0.0
  weight_decay: NonNegativeFloat = 0.0
  batch_size: PositiveInt = 128
  stop_at_zero_accuracy: bool = False
  train_mode: bool = False


def _stopper(bundle: Bundle, forget_rows: slice):
  """``stop(state, batch)``: whether the model gets every forget row of the batch wrong."""
  accuracy = make_batch_accuracy(bundle)

  def stop(state, batch: Batch) -> bool:
    images, labels, _ = batch
    return float(accuracy(state.params, state.batch_stats, images[forget_rows],
                          labels[forget_rows])) == 0.0

  return stop


def _outcome(result: LoopResult, examples: dict[str, int], details: dict) -> Outcome:
  return Outcome(result.state.params, result.state.batch_stats, steps=result.steps,
                 examples=examples,
                 details={**details, "stopped_early": result.stopped,
                          "first_loss": result.first_loss, "last_loss": result.last_loss})


@register("neggrad", NegGradConfig, data="forget", reference=REFERENCE)
def neggrad(bundle: Bundle, classes: tuple[int, ...], data: UnlearnData,
            config: NegGradConfig, key: jax.Array) -> Outcome:
  """Gradient ascent on the forget set, at most ``config.epochs`` epochs.

  Args:
    bundle: the trained bundle (not modified).
    classes: the forgotten classes (the forget set holds only them).
    data: ``data.forget``: uint8 ``(N, H, W, C)`` images, ``(N,)`` labels.
    config: a :class:`NegGradConfig`.
    key: typed key; epoch ``e`` is shuffled by ``fold_in(key, e)``.

  Returns:
    An :class:`~mnemonic_jax.baselines.base.Outcome`; ``details["stopped_early"]`` says
    whether the zero-accuracy stop ended it.
  """
  del classes
  forget = data.forget
  size = min(config.batch_size, len(forget))
  optimizer = sgd(config.learning_rate, config.momentum, config.weight_decay)
  step = make_image_step(bundle, optimizer, train_mode=config.train_mode)
  ascend = -np.ones(size, np.float32)

  def batches():
    for epoch in range(config.epochs):
      for batch in epoch_batches(jax.random.fold_in(key, epoch), forget, size):
        yield batch.images, batch.labels, ascend

  stop = _stopper(bundle, slice(None)) if config.stop_at_zero_accuracy else None
  result = run_loop(init_loop(bundle, optimizer), step, batches(), stop=stop)
  return _outcome(result, {"retain": 0, "forget": result.steps * size},
                  {"epochs": config.epochs, "learning_rate": config.learning_rate,
                   "batch_size": size})


@register("neggrad+", NegGradPlusConfig, data="all", reference=REFERENCE_PLUS)
def neggrad_plus(bundle: Bundle, classes: tuple[int, ...], data: UnlearnData,
                 config: NegGradPlusConfig, key: jax.Array) -> Outcome:
  """NegGrad+: ``alpha * CE(retain) - (1 - alpha) * CE(forget)``, ``config.epochs`` epochs.

  Each step concatenates a retain batch (``min(batch_size, N_r)`` rows, weight
  ``alpha / rows``) and a forget batch (``min(batch_size, N_f)`` rows, weight
  ``-(1 - alpha) / rows``), so the weighted loss of
  :func:`~mnemonic_jax.baselines.base.make_weighted_step` is exactly the two means
  combined. With ``train_mode=True`` BatchNorm sees the concatenated batch.

  Args:
    bundle: the trained bundle (not modified).
    classes: the forgotten classes.
    data: ``data.retain`` and ``data.forget``.
    config: a :class:`NegGradPlusConfig`.
    key: typed key; retain epoch ``e`` is shuffled by ``fold_in(k_r, e)``, the forget set's
      ``e``-th cycle by ``fold_in(k_f, e)`` (``k_r, k_f = split(key)``).

  Returns:
    An :class:`~mnemonic_jax.baselines.base.Outcome`.
  """
  del classes
  retain, forget = data.retain, data.forget
  n_r, n_f = min(config.batch_size, len(retain)), min(config.batch_size, len(forget))
  optimizer = sgd(config.learning_rate, config.momentum, config.weight_decay)
  step = make_image_step(bundle, optimizer, train_mode=config.train_mode)
  weights = np.concatenate([np.full(n_r, config.alpha / n_r, np.float32),
                            np.full(n_f, -(1.0 - config.alpha) / n_f, np.float32)])
  retain_key, forget_key = jax.random.split(key)

  def batches():
    cycled = forever(forget_key, forget, n_f)
    retain_epochs = (epoch_batches(jax.random.fold_in(retain_key, e), retain, n_r)
                     for e in range(config.epochs))
    for r, f in zip(itertools.chain.from_iterable(retain_epochs), cycled):
      yield (np.concatenate([r.images, f.images]), np.concatenate([r.labels, f.labels]),
             weights)

  stop = (_stopper(bundle, slice(n_r, None)) if config.stop_at_zero_accuracy else None)
  result = run_loop(init_loop(bundle, optimizer), step, batches(), stop=stop)
  return _outcome(result, {"retain": result.steps * n_r, "forget": result.steps * n_f},
                  {"alpha": config.alpha, "epochs": config.epochs,
                   "learning_rate": config.learning_rate, "batch_size": n_r})

