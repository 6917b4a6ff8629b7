"""``fewshot-reassign``: issue #20's few-shot fallback as a method of the depth harness.

No data-free forgetting met the depth goals (issue #20), whose fallback is "the best few-shot
variant (k <= 10 real images per forgotten class) against the same goals, saying plainly
what data each needs". This is the variant found on the design model (fashion_cnn seed 3,
classes {2,4}; the screening is summarised in docs/depth.md): an experiment, not a default
of the package, so it lives here and is registered only when ``--methods`` names it
(:func:`register_if_named`; ``python -m experiments.depth --methods fewshot-reassign``).

**Data read.** ``shots`` (k) real training images of **every** class, drawn with NumPy's
``default_rng(seed)`` for the forgotten classes and ``default_rng(seed + 1)`` for the
remaining ones, class by class in increasing order (all of a class's images if it has
fewer): 100 images on a 10-class model. Nothing else of the training set is read; the run
record's ``data`` says so with the count of each class (``details["read"]``).

**The method.** Start from the original, head frozen, BatchNorm in inference mode; ``steps``
full-batch Adam steps (``learning_rate``) on the sum of

* the cross-entropy of the forgotten images to their *target*: ``"nearest"``, the remaining
  class the original ranks highest (the relabelling of Boundary Shrink, Chen et al., CVPR
  2023); ``"spread"``, the original's softmax over the ``neighbours`` remaining classes it
  ranks highest (what a retrained model predicts on the class is close to the original's
  renormalised scores over the others);
* ``fisher_w`` x the squared distance of each forgotten image's penultimate features to the
  *current* mean features of its target classes (over the retained images; expected over the
  spread), divided by the retained images' mean squared distance to their own class mean (a
  between-over-within ratio, as in Fisher's discriminant): the class is moved into its
  neighbours, not only relabelled;
* ``l2sp_w`` x the squared distance of each weight tensor to the original's, relative to its
  squared norm, averaged over parameters by size (L2-SP, Li, Grandvalet and Davoine, ICML
  2018);
* ``retain_ce_w`` x the cross-entropy of the retained images to their labels,
  ``distill_w`` x ``temperature**2`` x the KL divergence from the original's softmax at
  ``temperature`` on them (Hinton et al., 2015), and ``keep_w`` x the squared distance of
  their features to the original's (relative to its mean squared norm);
* ``margin_w`` x the mean squared shortfall of each retained image's margin (its label's
  logit minus the largest other) under the original's margin on it;

then the data-free ``reassign`` move (:data:`mnemonic_jax.forgetting.MOVES`, as
``mnemonic-reassign``) on the result. The whole loop is one jitted program per model,
shapes and config.

The defaults are setting 2 of the findings (``fisher_w`` 20, ``l2sp_w`` 10, ``keep_w`` 3,
``distill_w`` 5, 100 steps at 3e-3, nearest target, draw seed 12345).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
import optax

from mnemonic_jax import forgetting
from mnemonic_jax.baselines import base
from mnemonic_jax.baselines.base import Outcome, UnlearnData
from mnemonic_jax.baselines.options import (
    Checked, NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt)
from mnemonic_jax.bundle import Bundle
from mnemonic_jax.evaluation import features as features_lib

PyTree = Any

#: The method's registered name.
NAME = "fewshot-reassign"

REFERENCE = ("issue #20's few-shot fallback (this project; docs/depth.md): nearest-class "
             "relabelling as Boundary Shrink (Chen et al., CVPR 2023), L2-SP (Li et al., ICML "
             "2018), distillation (Hinton et al., 2015), then reassign")


@dataclasses.dataclass(frozen=True)
class FewShotConfig(Checked):
  """``fewshot-reassign``'s settings (see the module docstring for each term).

  Attributes:
    shots: k, training images drawn of every class (forgotten and remaining).
    seed: NumPy seed of the draw (the remaining classes' draw uses ``seed + 1``).
    steps: full-batch Adam steps.
    learning_rate: Adam's step size.
    target: ``"nearest"`` or ``"spread"`` (the forgotten images' target distribution).
    neighbours: remaining classes the ``"spread"`` target covers.
    fisher_w, l2sp_w, keep_w, distill_w, retain_ce_w, margin_w: weights of the terms.
    temperature: of the distillation.
  """

  shots: PositiveInt = 10
  seed: NonNegativeInt = 12345
  steps: NonNegativeInt = 100
  learning_rate: PositiveFloat = 3e-3
  target: Literal["nearest", "spread"] = "nearest"
  neighbours: PositiveInt = 3
  fisher_w: NonNegativeFloat = 20.0
  l2sp_w: NonNegativeFloat = 10.0
  keep_w: NonNegativeFloat = 3.0
  distill_w: NonNegativeFloat = 5.0
  retain_ce_w: NonNegativeFloat = 1.0
  margin_w: NonNegativeFloat = 0.0
  temperature: PositiveFloat = 2.0


def draw(labels: np.ndarray, classes: Sequence[int], shots: int, seed: int) -> np.ndarray:
  """Row indices of ``shots`` images of each class of ``classes`` (in that order).

  Args:
    labels: ``(N,)`` integer labels of a split.
    classes: the classes to draw from, in the order drawn.
    shots: images per class (all of a class's images where it has fewer).
    seed: NumPy ``default_rng`` seed; one generator serves every class in turn.

  Returns:
    ``(sum of counts,)`` int64 indices into ``labels``, class by class.
  """
  rng = np.random.default_rng(seed)
  picked = []
  for c in classes:
    rows = np.flatnonzero(np.asarray(labels) == c)
    picked.append(rng.choice(rows, size=min(shots, len(rows)), replace=False))
  return np.concatenate(picked).astype(np.int64) if picked else np.zeros(0, np.int64)


def _with_features(apply_fn, path: tuple[str, ...]):
  """``fn(params, x) -> (logits (N, C), features (N, D))``: the head's input recorded."""

  def fn(params, x):
    logits, head_input = features_lib.logits_and_head_input(apply_fn, params, x, path)
    return logits, head_input.reshape(x.shape[0], -1)

  return fn


def _body_mask(params: PyTree, path: tuple[str, ...]) -> PyTree:
  """1.0 for every parameter outside the head at ``path``, 0.0 inside (same tree)."""

  def mark(key_path, leaf):
    names = tuple(getattr(k, "key", str(k)) for k in key_path)
    return jnp.zeros_like(leaf) if names[:len(path)] == path else jnp.ones_like(leaf)

  return jax.tree_util.tree_map_with_path(mark, params)


def _margins(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """``(N,)``: each row's logit of its label minus its largest other logit."""
  own = jnp.take_along_axis(logits, labels[:, None], axis=1)[:, 0]
  others = jnp.where(jax.nn.one_hot(labels, logits.shape[1], dtype=bool), -jnp.inf, logits)
  return own - others.max(axis=1)


def targets(logits: jax.Array, remaining: jax.Array, config: FewShotConfig) -> jax.Array:
  """The forgotten images' target distributions ``(N, C)`` from the original's logits.

  Args:
    logits: ``(N, C)`` the original's logits on the forgotten images.
    remaining: ``(C,)`` bool, the remaining classes.
    config: ``target`` ``"nearest"`` (one-hot of the top remaining class) or ``"spread"``
      (softmax over the ``neighbours`` top remaining classes, zero elsewhere).
  """
  masked = jnp.where(remaining, logits, -jnp.inf)
  if config.target == "nearest":
    return jax.nn.one_hot(masked.argmax(axis=1), logits.shape[1])
  m = min(config.neighbours, logits.shape[1])
  kth = jnp.sort(masked, axis=1)[:, -m][:, None]
  return jax.nn.softmax(jnp.where(masked >= kth, masked, -jnp.inf), axis=1)


@functools.partial(jax.jit, static_argnames=("config", "path"))
def _fit(apply_fn, params, xf, xr, yr, remaining, *, config: FewShotConfig,
         path: tuple[str, ...]):
  """The fine-tuning loop (see the module docstring): ``(params, losses (steps,))``."""
  fwd = _with_features(apply_fn, path)
  num_classes = remaining.shape[0]
  logits_f0, _ = fwd(params, xf)
  logits_r0, feats_r0 = fwd(params, xr)
  target = targets(logits_f0, remaining, config)
  onehot_r = jax.nn.one_hot(yr, num_classes)
  counts = jnp.maximum(onehot_r.sum(0), 1.0)[:, None]
  scale = jnp.mean(jnp.sum(feats_r0 ** 2, -1)) + 1e-6
  t = config.temperature
  teacher = jax.nn.softmax(logits_r0 / t)
  margin0 = _margins(logits_r0, yr)
  size = sum(x.size for x in jax.tree.leaves(params))
  mask = _body_mask(params, path)

  def loss_fn(p):
    logits_f, zf = fwd(p, xf)
    logits_r, zr = fwd(p, xr)
    loss = -jnp.mean(jnp.sum(target * jax.nn.log_softmax(logits_f), -1))
    means = onehot_r.T @ zr / counts
    within = jnp.mean(jnp.sum((zr - means[yr]) ** 2, -1)) + 1e-6
    dist = jnp.sum((zf[:, None, :] - means[None]) ** 2, -1)  # (Nf, C)
    loss += config.fisher_w * jnp.mean(jnp.sum(target * dist, -1)) / within
    loss += config.l2sp_w * sum(
        jnp.sum((a - b) ** 2) / (jnp.sum(b ** 2) + 1e-12) * b.size
        for a, b in zip(jax.tree.leaves(p), jax.tree.leaves(params))) / size
    loss += config.keep_w * jnp.mean(jnp.sum((zr - feats_r0) ** 2, -1)) / scale
    loss -= config.retain_ce_w * jnp.mean(jnp.sum(onehot_r * jax.nn.log_softmax(logits_r), -1))
    log_q = jax.nn.log_softmax(logits_r / t)
    loss += config.distill_w * t ** 2 * jnp.mean(
        jnp.sum(teacher * (jnp.log(teacher + 1e-12) - log_q), -1))
    shortfall = jax.nn.relu(margin0 - _margins(logits_r, yr))
    return loss + config.margin_w * jnp.mean(shortfall ** 2)

  opt = optax.adam(config.learning_rate)

  def step(carry, _):
    p, state = carry
    loss, grads = jax.value_and_grad(loss_fn)(p)
    grads = jax.tree.map(jnp.multiply, grads, mask)  # The head stays as it is.
    updates, state = opt.update(grads, state, p)
    return (optax.apply_updates(p, updates), state), loss

  (params, _), losses = jax.lax.scan(step, (params, opt.init(params)), None,
                                     length=config.steps)
  return params, losses


def fewshot_reassign(bundle: Bundle, classes: tuple[int, ...], data: UnlearnData,
                     config: FewShotConfig, key: jax.Array) -> Outcome:
  """Fine-tunes on k images of every class, then reassigns (see the module docstring).

  Args:
    bundle: the trained bundle (its model must have features: a ``Dense`` head).
    classes: the forgotten classes, sorted.
    data: the retain and forget sets (only the drawn rows are read).
    config: the settings.
    key: unused (the draw is NumPy's, seeded by ``config.seed``).

  Returns:
    The new parameters (BatchNorm statistics unchanged); ``examples`` the distinct images
    read from each split; ``details["read"]`` the count of each class, the seed and k;
    ``details["data_read"]`` the same in words.

  Raises:
    NoFeatures: a model whose head cannot be found.
  """
  del key
  path = features_lib.head_path(bundle)
  exclude = bundle.earlier_forgotten(classes)
  remaining_ids = [c for c in range(bundle.num_classes) if c not in classes and c not in exclude]
  fi = draw(data.forget.labels, classes, config.shots, config.seed)
  ri = draw(data.retain.labels, remaining_ids, config.shots, config.seed + 1)
  forget_images, retain_images = data.forget.images[fi], data.retain.images[ri]
  forget_labels = np.asarray(data.forget.labels)[fi]
  retain_labels = np.asarray(data.retain.labels)[ri]
  remaining = np.zeros(bundle.num_classes, bool)
  remaining[remaining_ids] = True
  params, losses = _fit(bundle.apply_fn(), bundle.params, bundle.normalize(forget_images),
                        bundle.normalize(retain_images), jnp.asarray(retain_labels),
                        jnp.asarray(remaining), config=config, path=path)
  params, report = forgetting.forget(bundle.apply_fn(), params, jnp.asarray(bundle.codes),
                                     classes, move=forgetting.MOVES["reassign"](),
                                     exclude=exclude)
  per_class = {str(c): int(n) for c, n in zip(*np.unique(
      np.concatenate([forget_labels, retain_labels]), return_counts=True))}
  losses = np.asarray(losses)
  read = {"images_per_class": per_class, "shots": config.shots, "seed": config.seed,
          "forget_images": len(fi), "retain_images": len(ri)}
  counts = sorted(set(per_class.values()))
  said = (f"{counts[0]}" if len(counts) == 1 else f"{counts[0]}-{counts[-1]}")
  words = (f"{said} training images of each of {len(per_class)} classes "
           f"({len(fi)} of the forgotten {'+'.join(map(str, classes))}, {len(ri)} of the "
           f"remaining; numpy seed {config.seed}) and the codes")
  return Outcome(params, bundle.batch_stats, steps=config.steps,
                 examples={"retain": len(ri), "forget": len(fi)},
                 details={"read": read, "data_read": words,
                          "loss_first": float(losses[0]) if losses.size else None,
                          "loss_last": float(losses[-1]) if losses.size else None,
                          "reassign": report.to_dict()})


def register() -> None:
  """Registers :data:`NAME` with :mod:`mnemonic_jax.baselines` (once; again is a no-op)."""
  if NAME not in base.METHODS:
    base.register(NAME, FewShotConfig, data="all", reference=REFERENCE)(fewshot_reassign)


def register_if_named(methods: Sequence[str]) -> None:
  """:func:`register` when one of ``methods`` (``--methods`` items, variants too) is it."""
  if any(m.split("@")[0] == NAME for m in methods):
    register()
