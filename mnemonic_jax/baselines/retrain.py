"""``retrain``: the oracle. Train from scratch on the retained classes only.

The gold standard every unlearning method is measured against (PAPER.md, "Baselines";
the NeurIPS 2023 unlearning challenge scores methods by their distance to it): a model that
never saw the forgotten classes. It is trained exactly as the bundle was, by
:func:`mnemonic_jax.training.fit` (Algorithm 1 of Yamashita et al., ACML 2024), with

* the bundle's training config (``bundle.config``: epochs, batch size, learning rate,
  momentum, weight decay, schedule, ``t_mix``, augmentation) via
  :func:`mnemonic_jax.workflow.fit_config`;
* the bundle's seed and the key derivation of :func:`mnemonic_jax.workflow.train`
  (``root = key(seed)``, ``train_key = fold_in(root, 1)``, so the initialisation equals the
  original run's);
* the bundle's mnemonic codes and normalisation. ``fit`` mixes codes in by label, and the
  retain set holds only the remaining classes, so only their codes are mixed in: the
  retrained model can still forget with the mnemonic method.

The model keeps all ``num_classes`` outputs; the forgotten classes never appear as a label,
so their logits are only ever pushed down. If the bundle's run started from pretrained
weights (``bundle.config["pretrained"]``), so does the oracle, as ``workflow.train`` did
(``RetrainConfig(from_pretrained=False)`` starts from a fresh initialisation instead).

Departures from the original run: the retain set is read from memory (a ``stream: True``
run streamed tfds); with fewer examples an epoch has fewer steps, so a cosine schedule
decays over the retain set's step count; the ``key`` given to the method is not used (the
oracle's randomness is the bundle's seed, unless ``RetrainConfig(seed=...)``).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from mnemonic_jax import errors
from mnemonic_jax import checkpointing, training, workflow
from mnemonic_jax.baselines.base import Outcome, UnlearnData, register, whole_number
from mnemonic_jax.baselines.options import Checked, PositiveInt
from mnemonic_jax.bundle import Bundle
from mnemonic_jax.data import pipeline

REFERENCE = ("Retraining from scratch without the forgotten classes (the oracle of the "
             "unlearning literature, e.g. Golatkar et al. CVPR 2020, Foster et al. AAAI "
             "2024); trained as the bundle was: mnemonic_jax.training.fit, Yamashita et al. "
             "ACML 2024 Algorithm 1")


@dataclasses.dataclass(frozen=True)
class RetrainConfig(Checked):
  """The oracle: the bundle's training run on the retain set.

  Attributes:
    epochs: training epochs; ``None`` takes the bundle's (the oracle proper; fewer only
      for tests or a budget, and then say so).
    seed: ``None`` takes the bundle's seed (same initialisation, same code-mixing keys).
    from_pretrained: start from the pretrained weights the bundle's run started from, if
      its config names some (as ``workflow.train`` does).
    progress: show a progress bar.
  """

  epochs: PositiveInt | None = None
  seed: int | None = None
  from_pretrained: bool = True
  progress: bool = False


def oracle_fit_config(bundle: Bundle, config: RetrainConfig) -> tuple[training.FitConfig, int]:
  """The ``FitConfig`` and seed the oracle trains with.

  Raises:
    ValueError: the bundle's config lacks a seed or epochs and the config gives none, or
      ``epochs`` is below 1.
  """
  plain = dict(bundle.config or {})
  seed = plain.get("seed") if config.seed is None else config.seed
  epochs = plain.get("epochs") if config.epochs is None else config.epochs
  missing = [name for name, value in (("seed", seed), ("epochs", epochs)) if value is None]
  if missing:
    raise errors.BadRequest(
        f"retrain needs the bundle's training {' and '.join(missing)}, which its config does "
        "not record (a bundle not trained by mnemonic-jax?); set "
        f"RetrainConfig({', '.join(f'{m}=...' for m in missing)})")
  whole_number("retrain", "epochs", epochs)
  fit_cfg = dataclasses.replace(workflow.fit_config(plain), epochs=epochs)
  return fit_cfg, int(seed)


@register("retrain", RetrainConfig, data="retain", reference=REFERENCE)
def retrain(bundle: Bundle, classes: tuple[int, ...], data: UnlearnData,
            config: RetrainConfig, key: jax.Array) -> Outcome:
  """Trains a fresh model of the bundle's architecture on the retain set.

  Args:
    bundle: the trained bundle (not modified; its params are not read, only its model,
      codes, normalisation and config).
    classes: the forgotten classes (absent from ``data.retain`` by construction).
    data: ``data.retain``: uint8 ``(N, H, W, C)`` images, ``(N,)`` labels.
    config: a :class:`RetrainConfig`.
    key: unused; the oracle draws from the bundle's seed (see the module docstring).

  Returns:
    An :class:`~mnemonic_jax.baselines.base.Outcome`: ``steps`` optimiser steps of
    ``batch_size`` examples each (``fit`` drops the last partial batch of an epoch), all
    of them retained examples (``examples["forget"] == 0``).

  Raises:
    ValueError: no seed or epochs known (see :func:`oracle_fit_config`), or a retain set
      smaller than one batch.
    mnemonic_jax.checkpointing.CheckpointError: the pretrained weights the bundle's run
      started from cannot be read (use ``from_pretrained=False``).
  """
  del classes, key
  fit_cfg, seed = oracle_fit_config(bundle, config)
  retain = data.retain
  source = pipeline.ArrayEpochs(retain.images, retain.labels)
  train_key = jax.random.fold_in(jax.random.key(seed), 1)  # As workflow.train derives it.
  model = bundle.model
  pretrained = bundle.config.get("pretrained") if config.from_pretrained else None
  state = None
  if pretrained:
    state = _pretrained_state(bundle, model, fit_cfg, source.num_examples, train_key,
                              pretrained)
  state, metrics = training.fit(
      model, source, jnp.asarray(bundle.codes), fit_cfg, train_key, mean=bundle.mean,
      std=bundle.std, state=state, progress=config.progress)
  steps = int(state.step)
  return Outcome(
      state.params, state.batch_stats, steps=steps,
      examples={"retain": steps * fit_cfg.batch_size, "forget": 0},
      details={"epochs": fit_cfg.epochs, "seed": seed, "batch_size": fit_cfg.batch_size,
               "t_mix": fit_cfg.t_mix, "pretrained": str(pretrained) if pretrained else None,
               "final_metrics": {k: float(v) for k, v in metrics.items()}})


def _pretrained_state(bundle: Bundle, model, fit_cfg: training.FitConfig, num_examples: int,
                      train_key: jax.Array, pretrained: str) -> training.TrainState:
  """The starting state of a run from pretrained weights, as ``workflow.train`` builds it."""
  optimizer = training.make_optimizer(
      fit_cfg.learning_rate, momentum=fit_cfg.momentum, weight_decay=fit_cfg.weight_decay,
      schedule=fit_cfg.schedule,
      total_steps=fit_cfg.epochs * training.steps_per_epoch(num_examples, fit_cfg.batch_size))
  init_key = jax.random.split(train_key, 3)[0]  # fit's init key.
  state = training.create_train_state(init_key, model, tuple(bundle.input_shape), optimizer)
  params, batch_stats = checkpointing.read_pretrained(pretrained)
  skip = tuple(bundle.config.get("pretrained_skip") or ())
  # fit donates its state and merge_pretrained may hand back the very arrays it was given
  # (jnp.asarray does not copy): copy, so whatever read_pretrained returned stays alive.
  copy = lambda tree: jax.tree.map(jnp.array, tree)
  return state.replace(
      params=copy(workflow.merge_pretrained(state.params, params, skip)),
      batch_stats=copy(workflow.merge_pretrained(state.batch_stats, batch_stats, skip)))
