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


def _values(values: Any, owner: str, name: str, what: str) -> list:
  """``values`` as a list: a tuple, a list, a range or a 1-d array (NumPy or jax), each
  entry once (a dict of results keyed by them would silently merge duplicates).

  Raises:
    BadRequestType: a string, a single value, a mapping, or an array of another rank.
    BadRequest: a value given twice.
  """
  if hasattr(values, "shape") and hasattr(values, "dtype"):
    if len(values.shape) != 1:
      raise errors.BadRequestType(f"{owner}: {name} must be a 1-d sequence of {what}, got an "
                                  f"array of shape {tuple(values.shape)}")
    values = list(np.asarray(values))
  elif isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
    raise errors.BadRequestType(f"{owner}: {name} must be a sequence of {what}, got "
                                f"{values!r:.60}")
  seen = [v for i, v in enumerate(values) if any(_same(v, u) for u in list(values)[:i])]
  if seen:
    raise errors.BadRequest(f"{owner}: {name} holds {seen[0]!r} twice; give each value once")
  return list(values)


def _same(a: Any, b: Any) -> bool:
  try:
    return float(a) == float(b)
  except (TypeError, ValueError):
    return False  # Not a number: refused by the caller's own check.


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

  Exact over every float64 constant, not a grid. Adding ``delta`` to the forgotten columns
  (in float64, as :func:`one_constant_recovery` and :func:`forgotten_accuracy` of the
  shifted logits do) changes example ``i``'s prediction once, from its best remaining
  class to a forgotten one, at its switch point ``s_i``: the least float64 ``delta`` at
  which a forgotten class wins ``argmax`` (ties go to the lower class index, as
  ``np.argmax`` gives them). ``s_i`` is found by bisection over the float64 numbers
  around ``t_i = max_remaining_i - max_forgotten_i``, so a sum that rounds (logits such
  as 1.8 and 0.9, whose thresholds come one unit in the last place apart) is judged as it
  will be scored. Accuracy is constant on each ``[s_(k), s_(k+1))``; every such interval
  is scored once (``O(N log N)`` after ~64 vectorised passes) and a constant of the
  maximum is returned: 0 when it attains the maximum (no change); else the best run
  nearest 0, adjacent best intervals merged, at its midpoint (1 logit beyond the last
  switch point for an unbounded one). With one forgotten class this is the maximum over
  every float64 constant. With several, two forgotten logits of a row closer than the
  rounding of the sum (``|l_a - l_b|`` below about ``2**-53 |delta|``) become equal when
  ``delta`` is added and the lower class index takes the row, which the switch points do
  not see; so the constant is scored once more, and where it falls short the best scoring
  of the best runs' constants (or 0) is returned.

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

  def predict(delta: np.ndarray, rows: Any = slice(None)) -> np.ndarray:
    """Predictions of ``rows`` with ``delta`` (one per row, or one for all) added."""
    x = logits[rows]
    shift = np.broadcast_to(np.asarray(delta, np.float64), x.shape[:1])[:, None]
    return np.argmax(np.where(is_f, x + shift, x), -1)

  rows = np.arange(len(labels))
  f_best = np.argmax(np.where(is_f, logits, -np.inf), -1)
  r_best = np.argmax(np.where(is_f, -np.inf, logits), -1)  # Unshifted: fixed for every delta.
  switch = _switch_points(lambda d, rows: is_f[predict(d, rows)],
                          logits[rows, r_best] - logits[rows, f_best],
                          np.maximum(np.abs(logits[rows, r_best]), np.abs(logits[rows, f_best])))
  order = np.argsort(switch, kind="stable")
  points, starts = np.unique(switch[order], return_index=True)
  right_f, right_r = (np.add.reduceat(r[order].astype(np.int64), starts)
                      for r in (predict(switch) == labels, r_best == labels))
  # Region j: [points[j-1], points[j]) (region 0 from -inf, the last to inf); the rows whose
  # switch point is at most its start predict a forgotten class there.
  score = (np.concatenate([[0], np.cumsum(right_f)]) + right_r.sum()
           - np.concatenate([[0], np.cumsum(right_r)]))
  best = score.max()
  if score[np.searchsorted(points, 0.0, side="right")] == best:
    return 0.0
  lows = np.concatenate([[-np.inf], points])
  highs = np.concatenate([points, [np.inf]])
  good = np.concatenate([[False], score == best, [False]]).astype(np.int8)
  first, last = np.flatnonzero(np.diff(good) == 1), np.flatnonzero(np.diff(good) == -1) - 1
  runs = sorted(zip(lows[first], highs[last]),  # Merged runs of best regions, nearest 0 first.
                key=lambda run: run[0] if run[0] > 0 else -run[1])
  count = lambda delta: int(np.sum(predict(delta) == labels))
  tried = [(count(0.0), 0.0, 0.0)]
  for low, high in runs:
    delta = _inside(low, high)
    hits = count(delta)
    if hits == best:
      return delta
    tried.append((hits, -abs(delta), delta))  # Rounding inside the forgotten columns.
  return max(tried)[2]


def _inside(low: float, high: float) -> float:
  """A float64 in ``[low, high)``: its midpoint, or 1 beyond the finite end of a half-line."""
  if np.isinf(low):
    delta = high - 1.0
    return float(delta if delta < high else np.nextafter(high, -np.inf))
  if np.isinf(high):
    return float(low + 1.0)
  delta = low / 2 + high / 2
  return float(delta if low <= delta < high else low)


def _switch_points(wins: Callable[[np.ndarray, np.ndarray], np.ndarray], start: np.ndarray,
                   size: np.ndarray) -> np.ndarray:
  """Per row, the least float64 ``delta`` with ``wins(delta, rows)`` (monotone in ``delta``;
  ``wins`` takes the deltas of the rows ``rows`` and says, for each, whether it wins).

  Brackets each row's point around ``start`` with steps of a few units in the last place
  of ``size`` (doubled until they bracket), then bisects over the float64 numbers in
  their integer order.
  """
  step = 4 * np.spacing(np.maximum(np.abs(start), size))
  low, high = start - step, start + step
  every = np.arange(len(start))
  for _ in range(64):
    bad_low, bad_high = wins(low, every), ~wins(high, every)
    if not (bad_low.any() or bad_high.any()):
      break
    step = np.where(bad_low | bad_high, 2 * step, step)
    low, high = np.where(bad_low, start - step, low), np.where(bad_high, start + step, high)
  low, high = _float_order(low), _float_order(high)  # wins(low) False, wins(high) True.
  for _ in range(66):
    rows = np.flatnonzero(high - low > 1)  # Only the rows still open are evaluated.
    if not len(rows):
      break
    mid = (low[rows] >> 1) + (high[rows] >> 1) + (low[rows] & high[rows] & 1)
    won = wins(_float_order(mid, inverse=True), rows)
    high[rows[won]], low[rows[~won]] = mid[won], mid[~won]
  return _float_order(high, inverse=True)


def _float_order(x: np.ndarray, inverse: bool = False) -> np.ndarray:
  """float64 <-> int64 keys in the floats' order (-0.0 just below 0.0; an involution)."""
  bits = np.asarray(x, np.float64 if not inverse else np.int64).view(np.int64)
  keys = bits ^ ((bits >> 63) & np.int64(0x7FFFFFFFFFFFFFFF))
  return keys.view(np.float64) if inverse else keys


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
    scales: the factors tried (a tuple, list or 1-d array of numbers, each once).

  Returns:
    ``{scale: forgotten accuracy (%)}``.

  Raises:
    BadRequestType: ``predict`` not callable or not returning one array, ``inputs`` not
      real numbers or integers (raw ``uint8`` images: normalise them first, or use
      :func:`mnemonic_jax.evaluation.forward` with ``scale``), ``scales`` not a sequence
      or 1-d array of numbers; logits and labels as :func:`forgotten_accuracy`.
    BadRequest: no scale, a scale that is not finite and > 0, or given twice; ``inputs`` without an
      example axis; logits and labels as :func:`forgotten_accuracy` (NaN logits included).
  """
  name = "input_scale_recovery"
  if not callable(predict):
    raise errors.BadRequestType(f"{name}: predict must be callable as predict(x) -> (N, C) "
                                f"logits, got {type(predict).__name__}")
  scales = _values(scales, name, "scales", "numbers, e.g. (1.5, 2.0)")
  if not scales:  # Nothing to query (head_finetune_recovery refuses no steps alike).
    raise errors.BadRequest(f"{name}: scales needs at least one scale, e.g. (1.5, 2.0)")
  scales = [relearning.check_number(name, f"scales[{i}]", s, low=0.0, low_open=True)
            for i, s in enumerate(scales)]
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
