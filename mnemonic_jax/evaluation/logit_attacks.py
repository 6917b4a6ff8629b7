"""The depth attacks on logits alone: one constant, half splits, input scales.

These need nothing but a model's logits (or its ``apply_fn``, for the input-scale
queries), so they apply to any model; :mod:`mnemonic_jax.evaluation.attacks` re-exports
them beside the attacks on penultimate features. Logits and labels are checked as
:func:`mnemonic_jax.metrics.forgetting_metrics` checks them (one shared check): real
numbers ``(N, C)``, finite (a NaN logit has no prediction to score: ``argmax`` would call
it class 0), integer labels ``(N,)`` in ``[0, C)``, concrete (not under ``jax.jit``).
Ties between logits go to the lower class index, as ``np.argmax`` gives them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from mnemonic_jax import _validate, codes, errors, metrics, relearning


def _forgotten(forgotten: Sequence[int], num_classes: int) -> np.ndarray:
  classes = _validate.class_ids(forgotten, num_classes, name="forgotten")
  if not classes:
    raise errors.BadRequest("forgotten: give at least one forgotten class id")
  if len(classes) == num_classes:
    raise errors.BadRequest("forgotten: every class is forgotten; at least one must remain")
  return np.asarray(classes, np.int64)


def _logits_and_labels(logits: Any, labels: Any, name: str) -> tuple[np.ndarray, np.ndarray]:
  """``(logits float64 (N, C), labels int64 (N,))`` checked as the metrics check them.

  ``name`` starts every message: the function and its arguments, e.g.
  ``"one_constant_recovery score_logits, score_labels"``.
  """
  try:
    logits = metrics._checked_logits(logits, labels)  # pylint: disable=protected-access
  except errors.MnemonicJaxError as e:
    raise type(e)(f"{name}: {e}") from None
  except ValueError as e:  # NumPy cannot make one array of them (ragged rows).
    raise errors.BadRequest(f"{name}: logits must be one (N, C) array of numbers: {e}") from None
  return np.asarray(logits, np.float64), np.asarray(labels).astype(np.int64)


def forgotten_accuracy(logits: Any, labels: Any, forgotten: Sequence[int]) -> float:
  """Accuracy (%) on the examples of the forgotten classes (NaN when there are none).

  Args:
    logits: ``(N, C)`` finite real numbers.
    labels: ``(N,)`` integer labels in ``[0, C)``.
    forgotten: forgotten class ids.

  Raises:
    BadRequestType: logits that are not real numbers, labels that are not integers,
      class ids that are not integers, traced arrays (under ``jax.jit``).
    BadRequest: logits not ``(N, C)``, labels not ``(N,)`` or out of range, NaN or inf
      logits, no forgotten class or no remaining one.
  """
  return _forgotten_accuracy(logits, labels, forgotten, "forgotten_accuracy")


def _forgotten_accuracy(logits: Any, labels: Any, forgotten: Sequence[int], name: str
                        ) -> float:
  logits, labels = _logits_and_labels(logits, labels, name)
  columns = _forgotten(forgotten, logits.shape[1])
  mask = np.isin(labels, columns)
  if not mask.any():
    return float("nan")
  return float(100.0 * np.mean(np.argmax(logits[mask], -1) == labels[mask]))


def best_constant(logits: Any, labels: Any, forgotten: Sequence[int]) -> float:
  """The constant that, added to the forgotten classes' logits, maximises overall accuracy.

  Exact, not a grid: adding ``delta`` to the forgotten columns changes example ``i``'s
  prediction only between its best forgotten and best remaining class, at
  ``t_i = max_remaining_i - max_forgotten_i``. Between consecutive thresholds accuracy is
  constant; at a threshold the two classes tie and ``argmax`` (the scorer of
  :func:`forgotten_accuracy`) gives the example the lower class index. Every open interval
  and every threshold is scored once (``O(N log N)``) and the maximum over all real
  ``delta`` is returned: 0 when it attains the maximum (no change); else the interval
  nearest 0 among the best, as its midpoint (1 logit beyond the last threshold for an
  unbounded one); a threshold itself only where the tie rule makes it strictly better
  than every interval. Exact in the arithmetic of the thresholds: where logits are so
  close that ``(l_f + t_i) - l_r`` rounds away from 0 in float64, a tie the threshold
  counts on may not occur when the constant is added.

  Args:
    logits: ``(N, C)`` finite logits of the set the attacker labels.
    labels: ``(N,)`` its labels.
    forgotten: forgotten class ids.

  Returns:
    The constant (a float, negative when lowering helps; 0 for an empty set).

  Raises:
    BadRequestType, BadRequest: as :func:`forgotten_accuracy`.
  """
  return _best_constant(logits, labels, forgotten, "best_constant")


def _best_constant(logits: Any, labels: Any, forgotten: Sequence[int], name: str) -> float:
  logits, labels = _logits_and_labels(logits, labels, name)
  columns = _forgotten(forgotten, logits.shape[1])
  if not len(labels):
    return 0.0
  is_f = np.zeros(logits.shape[1], bool)
  is_f[columns] = True
  rows = np.arange(len(labels))
  f_best = np.argmax(np.where(is_f, logits, -np.inf), -1)  # Lowest index among ties, as
  r_best = np.argmax(np.where(is_f, -np.inf, logits), -1)  # argmax of the shifted logits.
  t = logits[rows, r_best] - logits[rows, f_best]
  right = [f_best == labels, r_best == labels, np.minimum(f_best, r_best) == labels]
  order = np.argsort(t, kind="stable")
  t = t[order]
  thresholds, starts = np.unique(t, return_index=True)  # t sorted: one run per threshold.
  right_f, right_r, right_tie = (np.add.reduceat(r[order].astype(np.int64), starts)
                                 for r in right)
  gained = np.concatenate([[0], np.cumsum(right_f)])  # Runs < k predicted forgotten.
  lost = np.concatenate([[0], np.cumsum(right_r)])
  total_r = lost[-1]
  between = gained + total_r - lost  # Open interval k: (thresholds[k-1], thresholds[k]).
  at = gained[:-1] + right_tie + total_r - lost[1:]  # At thresholds[k]: run k ties.
  best = max(between.max(), at.max())
  k = int(np.searchsorted(thresholds, 0.0))
  at_zero = at[k] if k < len(thresholds) and thresholds[k] == 0 else between[k]
  if at_zero == best:
    return 0.0
  lows = np.concatenate([[-np.inf], thresholds])
  highs = np.concatenate([thresholds, [np.inf]])
  if between.max() == best:  # An interval: robust to rounding, preferred to a threshold.
    candidates = np.flatnonzero(between == best)
    distance = np.minimum(np.abs(lows), np.abs(highs))[candidates]
    k = candidates[np.argmin(distance)]
    low, high = lows[k], highs[k]
    if np.isinf(low):
      return float(high - 1.0)
    if np.isinf(high):
      return float(low + 1.0)
    return float((low + high) / 2)
  candidates = np.flatnonzero(at == best)
  return float(thresholds[candidates[np.argmin(np.abs(thresholds[candidates]))]])


def one_constant_recovery(choose_logits: Any, choose_labels: Any, score_logits: Any,
                          score_labels: Any, forgotten: Sequence[int]) -> float:
  """The one-constant (logit-shift) attack: a constant chosen on one set, scored on another.

  The attacker labels a few examples (``choose_*``), picks the constant added to the
  forgotten classes' logits that maximises accuracy on them (:func:`best_constant`), and
  applies it to new inputs (``score_*``). A move that only lowered the forgotten logits by
  a constant (an output-bias offset) is undone by that one number.

  Source: this project's shift diagnostic, held out (docs/depth.md); the
  attack reads the "feature-classifier misalignment" of Gao et al., "An Illusion of
  Unlearning? Assessing Machine Unlearning Through Internal Representations" (AISTATS
  2026), at its simplest: one number in the classifier.

  Args:
    choose_logits, choose_labels: ``(M, C)``, ``(M,)``: the set the constant is chosen on.
    score_logits, score_labels: ``(N, C)``, ``(N,)``: the set it is scored on.
    forgotten: forgotten class ids.

  Returns:
    Accuracy (%) on the forgotten classes' examples of the score set, the constant added
    (NaN when the score set holds none).

  Raises:
    BadRequestType, BadRequest: as :func:`forgotten_accuracy`, for either set (the message
      names it); sets with different class counts.
  """
  name = "one_constant_recovery"
  delta = _best_constant(choose_logits, choose_labels, forgotten,
                         f"{name} choose_logits, choose_labels")
  logits, labels = _logits_and_labels(score_logits, score_labels,
                                      f"{name} score_logits, score_labels")
  if logits.shape[1] != np.shape(choose_logits)[1]:
    raise errors.BadRequest(f"{name}: choose_logits and score_logits have "
                            f"{np.shape(choose_logits)[1]} and {logits.shape[1]} classes; give "
                            "logits of one model")
  shifted = logits.copy()
  shifted[:, _forgotten(forgotten, logits.shape[1])] += delta
  return forgotten_accuracy(shifted, labels, forgotten)


def host_rng(key: jax.Array) -> np.random.Generator:
  """A NumPy generator seeded by a typed JAX key (host-side draws compile nothing).

  Raises:
    BadRequestType: ``key`` not a PRNG key (an int seed).
  """
  codes.check_key(key)
  return np.random.default_rng(np.asarray(jax.random.key_data(key)).ravel().tolist())


def half_split(labels: Any, key: jax.Array) -> tuple[np.ndarray, np.ndarray]:
  """Two halves of a labelled set, each class split evenly (random within each class).

  Args:
    labels: ``(N,)`` integer labels >= 0.
    key: typed PRNG key.

  Returns:
    ``(a, b)``: sorted index arrays; class ``c``'s first ``floor(n_c / 2)`` shuffled
    examples go to ``a``.

  Raises:
    BadRequestType: ``key`` not a PRNG key (an int seed), labels not integers.
    BadRequest: labels not ``(N,)`` or negative.
  """
  codes.check_key(key)
  _validate.labels(labels, np.iinfo(np.int32).max, name="half_split labels")
  labels = np.asarray(labels)
  a, b = [], []
  for c in np.unique(labels):
    idx = np.flatnonzero(labels == c)
    idx = idx[host_rng(jax.random.fold_in(key, int(c))).permutation(len(idx))]
    a.append(idx[:len(idx) // 2])
    b.append(idx[len(idx) // 2:])
  cat = lambda parts: np.sort(np.concatenate(parts)) if parts else np.zeros(0, np.int64)
  return cat(a), cat(b)


def half_split_recovery(logits: Any, labels: Any, forgotten: Sequence[int], *,
                        key: jax.Array) -> float:
  """One-constant attack on a test set: chosen on one half, scored on the other, both ways.

  Args:
    logits: ``(N, C)`` test logits.
    labels: ``(N,)`` test labels.
    forgotten: forgotten class ids.
    key: typed PRNG key for the split (:func:`half_split`).

  Returns:
    The mean of the two ways' forgotten-class accuracies (%).

  Raises:
    BadRequestType, BadRequest: as :func:`forgotten_accuracy`; ``key`` not a PRNG key.
  """
  logits, labels = _logits_and_labels(logits, labels, "half_split_recovery")
  a, b = half_split(labels, key)
  ways = [one_constant_recovery(logits[i], labels[i], logits[j], labels[j], forgotten)
          for i, j in ((a, b), (b, a))]
  return float(np.nanmean(ways)) if not np.all(np.isnan(ways)) else float("nan")


def input_scale_recovery(predict: Callable[[Any], Any], inputs: Any, labels: Any,
                         forgotten: Sequence[int], scales: Sequence[float] = (1.5, 2.0, 3.0)
                         ) -> dict[float, float]:
  """Input-scale queries: forgotten-class accuracy when the normalised input is scaled.

  A piecewise-linear network without per-sample normalisation before its head scales its
  logits with its input (positively homogeneous, up to its biases), while an offset added to
  the forgotten logits stays fixed: a large enough input scale outgrows the offset. The
  weights are not touched.

  Source: the input-scale queries of docs/depth.md (DEPTH.md), after the
  positive homogeneity of ReLU networks.

  Args:
    predict: ``predict(x) -> (N, C)`` logits on inputs in the model's normalised space
      (any ``apply_fn`` with its parameters bound).
    inputs: ``(N, ...)`` normalised inputs (floats), e.g. the forgotten classes' test
      images as ``bundle.normalize(images)`` gives them; raw integer images are refused
      (scaling pixel values is not the attack).
    labels: ``(N,)`` their labels.
    forgotten: forgotten class ids.
    scales: the factors tried (a sequence of numbers).

  Returns:
    ``{scale: forgotten accuracy (%)}``.

  Raises:
    BadRequestType: ``predict`` not callable or not returning one array, ``inputs`` not
      real numbers or integers (raw ``uint8`` images: normalise them first, or use
      :func:`mnemonic_jax.evaluation.forward` with ``scale``), ``scales`` not a sequence
      of numbers; logits and labels as
      :func:`forgotten_accuracy`.
    BadRequest: a scale that is not finite and > 0; ``inputs`` without an example axis;
      logits and labels as :func:`forgotten_accuracy` (NaN logits included).
  """
  name = "input_scale_recovery"
  if not callable(predict):
    raise errors.BadRequestType(f"{name}: predict must be callable as predict(x) -> (N, C) "
                                f"logits, got {type(predict).__name__}")
  if isinstance(scales, (str, bytes)) or not isinstance(scales, Sequence):
    raise errors.BadRequestType(f"{name}: scales must be a sequence of numbers, e.g. (1.5, 2.0),"
                                f" got {scales!r}")
  for i, s in enumerate(scales):
    relearning.check_number(name, f"scales[{i}]", s, low=0.0, low_open=True)
  x = inputs if isinstance(inputs, jax.Array) else np.asarray(inputs)
  if not jnp.issubdtype(x.dtype, jnp.number) or jnp.issubdtype(x.dtype, jnp.complexfloating):
    raise errors.BadRequestType(f"{name}: inputs must be real numbers (N, ...), got dtype "
                                f"{x.dtype}")
  if jnp.issubdtype(x.dtype, jnp.integer):  # Scaled pixel values: the model sees up to 765.
    raise errors.BadRequestType(
        f"{name}: inputs are {x.dtype} images, not normalised inputs (the scales would "
        "multiply raw pixel values); normalise them first, e.g. bundle.normalize(images), "
        "or for a bundle use mnemonic_jax.evaluation.forward(bundle, images, features=False, "
        "scale=s).logits, which takes the uint8 images")
  if np.ndim(x) < 1:
    raise errors.BadRequest(f"{name}: inputs must have an example axis (N, ...), got shape "
                            f"{np.shape(x)}")
  x = jnp.asarray(x)
  out = {}
  for s in scales:
    logits = predict(x * s)
    if not hasattr(logits, "shape"):
      raise errors.BadRequestType(f"{name}: predict must return one (N, C) logits array, got "
                                  f"a {type(logits).__name__}")
    out[float(s)] = _forgotten_accuracy(np.asarray(logits), labels, forgotten,
                                        f"{name} (predict's logits at scale {float(s):g}), labels")
  return out
