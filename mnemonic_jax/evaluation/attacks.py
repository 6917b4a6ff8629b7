"""The depth attacks, each a pure function of arrays: is the forgotten class still inside?

Black-box scores (A_R, E_F, population MIAs) cannot tell unlearning from output
suppression. Each function here asks one question of what is left in a model after
forgetting, and returns a number to read against the retrain oracle's (the oracle is not
"zero knowledge": the target is its value, not 0). Accuracies and recalls are percentages
over the forgotten classes' examples, pooled.

Logits and features come in as host arrays (``np.ndarray``, or JAX arrays, which are read
to the host); :mod:`mnemonic_jax.evaluation.features` gets them from a bundle and
:func:`mnemonic_jax.evaluation.depth.depth_report` runs every attack on three bundles.
A model known only by its ``apply_fn`` gets the attacks on logits
(:func:`one_constant_recovery`, :func:`half_split_recovery`, :func:`input_scale_recovery`)
and :func:`weight_distance`; the others need penultimate features.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from mnemonic_jax import _validate, codes, errors, relearning

PyTree = Any


def _forgotten(forgotten: Sequence[int], num_classes: int) -> np.ndarray:
  classes = _validate.class_ids(forgotten, num_classes, name="forgotten")
  if not classes:
    raise errors.BadRequest("forgotten: give at least one forgotten class id")
  if len(classes) == num_classes:
    raise errors.BadRequest("forgotten: every class is forgotten; at least one must remain")
  return np.asarray(classes, np.int64)


def _logits_and_labels(logits: Any, labels: Any, name: str) -> tuple[np.ndarray, np.ndarray]:
  logits = np.asarray(logits, np.float64)
  labels = np.asarray(labels)
  if logits.ndim != 2 or len(logits) != len(labels):
    raise errors.BadRequest(f"{name}: logits must be (N, C) with one label each, got logits "
                            f"{logits.shape} and labels {labels.shape}")
  _validate.labels(labels, logits.shape[1], name=f"{name} labels")
  return logits, labels.astype(np.int64)


def forgotten_accuracy(logits: Any, labels: Any, forgotten: Sequence[int]) -> float:
  """Accuracy (%) on the examples of the forgotten classes (NaN when there are none).

  Args:
    logits: ``(N, C)``.
    labels: ``(N,)`` integer labels.
    forgotten: forgotten class ids.
  """
  logits, labels = _logits_and_labels(logits, labels, "forgotten_accuracy")
  columns = _forgotten(forgotten, logits.shape[1])
  mask = np.isin(labels, columns)
  if not mask.any():
    return float("nan")
  return float(100.0 * np.mean(np.argmax(logits[mask], -1) == labels[mask]))


def best_constant(logits: Any, labels: Any, forgotten: Sequence[int]) -> float:
  """The constant that, added to the forgotten classes' logits, maximises overall accuracy.

  Exact, not a grid: adding ``delta`` to the forgotten columns changes example ``i``'s
  prediction only between the best forgotten and the best remaining class, at
  ``t_i = max_remaining_i - max_forgotten_i``; accuracy is constant between consecutive
  ``t_i``, so every interval is scored once (``O(N log N)``). Among equally good intervals
  the one nearest 0 wins (the smallest change); the constant returned is 0 when that
  interval holds 0, else its midpoint (1 logit beyond the last threshold for an unbounded
  one).

  Args:
    logits: ``(N, C)`` logits of the set the attacker labels.
    labels: ``(N,)`` its labels.
    forgotten: forgotten class ids.

  Returns:
    The constant (a float, negative when lowering helps).

  Raises:
    BadRequest: shapes that do not match, labels or classes out of range, no forgotten or no
      remaining class.
  """
  logits, labels = _logits_and_labels(logits, labels, "best_constant")
  columns = _forgotten(forgotten, logits.shape[1])
  if not len(labels):
    return 0.0
  is_f = np.zeros(logits.shape[1], bool)
  is_f[columns] = True
  f_best = np.argmax(np.where(is_f, logits, -np.inf), -1)
  r_best = np.argmax(np.where(is_f, -np.inf, logits), -1)
  t = logits[np.arange(len(labels)), r_best] - logits[np.arange(len(labels)), f_best]
  right_f = (f_best == labels).astype(np.int64)  # Right when a forgotten class wins.
  right_r = (r_best == labels).astype(np.int64)
  order = np.argsort(t, kind="stable")
  t, right_f, right_r = t[order], right_f[order], right_r[order]
  cuts = np.flatnonzero(np.diff(t)) + 1  # Ends of runs of equal thresholds.
  ends = np.concatenate([cuts, [len(t)]])
  # Interval k (k = 0..m): delta above the k-th distinct threshold, below the next; the
  # examples of the first k runs are predicted forgotten.
  gained = np.concatenate([[0], np.cumsum(right_f)[ends - 1]])
  lost = np.concatenate([[0], np.cumsum(right_r)[ends - 1]])
  correct = gained + right_r.sum() - lost
  uniq = t[ends - 1]
  lows = np.concatenate([[-np.inf], uniq])
  highs = np.concatenate([uniq, [np.inf]])
  distance = np.where((lows < 0) & (0 <= highs), 0.0, np.minimum(np.abs(lows), np.abs(highs)))
  best = np.flatnonzero(correct == correct.max())
  k = best[np.argmin(distance[best])]
  low, high = lows[k], highs[k]
  if low < 0 <= high:
    return 0.0
  if np.isinf(low):
    return float(high - 1.0)
  if np.isinf(high):
    return float(low + 1.0)
  return float((low + high) / 2)


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
    BadRequest: as :func:`best_constant`; sets with different class counts.
  """
  delta = best_constant(choose_logits, choose_labels, forgotten)
  logits, labels = _logits_and_labels(score_logits, score_labels, "score")
  if logits.shape[1] != np.shape(choose_logits)[1]:
    raise errors.BadRequest(f"the choose and score logits have {np.shape(choose_logits)[1]} "
                            f"and {logits.shape[1]} classes; give logits of one model")
  shifted = logits.copy()
  shifted[:, _forgotten(forgotten, logits.shape[1])] += delta
  return forgotten_accuracy(shifted, labels, forgotten)


def host_rng(key: jax.Array) -> np.random.Generator:
  """A NumPy generator seeded by a typed JAX key (host-side draws compile nothing)."""
  return np.random.default_rng(np.asarray(jax.random.key_data(key)).ravel().tolist())


def half_split(labels: Any, key: jax.Array) -> tuple[np.ndarray, np.ndarray]:
  """Two halves of a labelled set, each class split evenly (random within each class).

  Args:
    labels: ``(N,)`` integer labels.
    key: typed PRNG key.

  Returns:
    ``(a, b)``: sorted index arrays; class ``c``'s first ``floor(n_c / 2)`` shuffled
    examples go to ``a``.

  Raises:
    BadRequestType: ``key`` not a PRNG key (an int seed).
  """
  codes.check_key(key)
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
    inputs: ``(N, ...)`` normalised inputs, e.g. the forgotten classes' test images.
    labels: ``(N,)`` their labels.
    forgotten: forgotten class ids.
    scales: the factors tried.

  Returns:
    ``{scale: forgotten accuracy (%)}``.

  Raises:
    BadRequestType, BadRequest: a scale that is not a finite number > 0.
  """
  for i, s in enumerate(scales):
    relearning.check_number("input_scale_recovery", f"scales[{i}]", s, low=0.0, low_open=True)
  x = jnp.asarray(inputs)
  return {float(s): forgotten_accuracy(np.asarray(predict(x * s)), labels, forgotten)
          for s in scales}


def probe_recall(train_features: Any, train_labels: Any, test_features: Any,
                 test_labels: Any, forgotten: Sequence[int], *, c: float = 1.0,
                 max_iter: int = 1000) -> float:
  """Linear-probe recall: can a linear read-out of frozen features still find the class?

  Fits a multinomial logistic regression (scikit-learn ``LogisticRegression``, L2 penalty
  ``C = c``, lbfgs, after standardising each feature on the training features) on the
  penultimate features of training images of *all* classes, and reports its recall on the
  forgotten classes' test images. The fit runs on one BLAS thread: on a shared CPU,
  OpenBLAS threads contending with JAX's made a 1438 x 1000 fit 50 times slower (7 s
  against 0.14 s, digits MLP features).

  Source: the linear probing of Gao, Unal, Rangamani and Zhu, "An Illusion of Unlearning?
  Assessing Machine Unlearning Through Internal Representations", AISTATS 2026 (features
  frozen after unlearning, a linear classifier refit on them); "Mirage" (2026) reports it as
  LPR.

  Args:
    train_features: ``(M, D)`` features of training images of every class.
    train_labels: ``(M,)`` their labels.
    test_features: ``(N, D)`` features of test images.
    test_labels: ``(N,)`` their labels.
    forgotten: forgotten class ids.
    c: inverse regularisation strength.
    max_iter: lbfgs iterations.

  Returns:
    Recall (%) on the forgotten classes' test examples, pooled (NaN when there are none).

  Raises:
    BadRequestType: ``c`` not a number or ``max_iter`` not an integer.
    BadRequest: mismatched shapes, a forgotten class absent from the training features,
      ``c <= 0`` or ``max_iter < 1``.
  """
  from sklearn.linear_model import LogisticRegression  # pylint: disable=import-outside-toplevel
  from sklearn.pipeline import make_pipeline  # pylint: disable=import-outside-toplevel
  from sklearn.preprocessing import StandardScaler  # pylint: disable=import-outside-toplevel
  from threadpoolctl import threadpool_limits  # pylint: disable=import-outside-toplevel

  relearning.check_number("probe_recall", "c", c, low=0.0, low_open=True)
  relearning.check_integer("probe_recall", "max_iter", max_iter, low=1)
  x, y, xt, yt = _features_pair(train_features, train_labels, test_features, test_labels,
                                "probe_recall")
  columns = _forgotten(forgotten, int(max(y.max(), yt.max(), _max_id(forgotten))) + 1)
  _require_classes(y, columns, "probe_recall training features")
  mask = np.isin(yt, columns)
  if not mask.any():
    return float("nan")
  probe = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=max_iter))
  with threadpool_limits(limits=1, user_api="blas"):
    probe.fit(x, y)
    predicted = probe.predict(xt[mask])
  return float(100.0 * np.mean(predicted == yt[mask]))


def ncm_recall(support_features: Any, support_labels: Any, test_features: Any,
               test_labels: Any, forgotten: Sequence[int]) -> float:
  """Nearest-class-mean recall: is the forgotten class still its own cluster?

  Class means of the penultimate features of a few labelled images per class (every
  class in ``support_labels``); each test image takes the class of the nearest mean
  (Euclidean).

  Source: DEPTH.md (docs/depth.md); the class-mean-feature classifier of Gao et
  al., "An Illusion of Unlearning?", AISTATS 2026, used as a probe.

  Args:
    support_features: ``(M, D)``, e.g. 10 training images per class.
    support_labels: ``(M,)``.
    test_features: ``(N, D)``.
    test_labels: ``(N,)``.
    forgotten: forgotten class ids (each must have support examples).

  Returns:
    Recall (%) on the forgotten classes' test examples (NaN when there are none).
  """
  x, y, xt, yt = _features_pair(support_features, support_labels, test_features,
                                test_labels, "ncm_recall")
  columns = _forgotten(forgotten, int(max(y.max(), yt.max(), _max_id(forgotten))) + 1)
  _require_classes(y, columns, "ncm_recall support")
  mask = np.isin(yt, columns)
  if not mask.any():
    return float("nan")
  classes = np.unique(y)
  means = np.stack([x[y == k].mean(0) for k in classes])
  q = xt[mask]
  d2 = (q * q).sum(1)[:, None] - 2 * q @ means.T + (means * means).sum(1)[None]
  return float(100.0 * np.mean(classes[np.argmin(d2, 1)] == yt[mask]))


def prototype_attack(support_features: Any, support_labels: Any, kernel: Any, bias: Any,
                     test_features: Any, test_labels: Any, forgotten: Sequence[int], *,
                     shots: int = 5, alpha: float = 0.5, metric: str = "cosine") -> float:
  """The prototypical relearning attack: rewrite the forgotten head rows from a few images.

  For each forgotten class ``c``: ``proto_c`` is the mean penultimate feature of its first
  ``shots`` support images, L2-normalised; the head's row becomes
  ``w_c <- alpha * w_proto + (1 - alpha) * w_c`` and ``b_c <- alpha * b_proto +
  (1 - alpha) * b_c``, with ``(w_proto, b_proto) = (proto_c, 0)`` for ``metric="cosine"``
  (the authors' default) or ``(2 proto_c, -||proto_c||^2)`` for ``"l2"``. No gradient
  step. The test logits are ``features @ kernel' + bias'``.

  Source: Ha, Park and Yoon, "Unlearning's Blind Spots: Over-Unlearning and Prototypical
  Relearning Attack" (Spotter), ICML 2026, and its code (``update_fc_with_prototypes``:
  k = 5 images per class, alpha = 0.5, normalised prototype).

  Args:
    support_features: ``(M, D)`` features of labelled images holding at least ``shots`` of
      each forgotten class (the first ``shots`` of each are used).
    support_labels: ``(M,)``.
    kernel: ``(D, C)`` head kernel.
    bias: ``(C,)`` head bias.
    test_features: ``(N, D)``.
    test_labels: ``(N,)``.
    forgotten: forgotten class ids.
    shots: images per forgotten class (k).
    alpha: weight of the prototype.
    metric: ``"cosine"`` or ``"l2"``.

  Returns:
    Accuracy (%) on the forgotten classes' test examples after the rewrite.

  Raises:
    BadRequestType: ``shots`` not an integer or ``alpha`` not a number.
    BadRequest: a forgotten class with fewer than ``shots`` support images, shapes that do
      not fit the head, an unknown metric, ``shots < 1`` or ``alpha`` outside ``[0, 1]``.
  """
  if metric not in ("cosine", "l2"):
    raise errors.BadRequest(f"metric must be 'cosine' or 'l2', got {metric!r}")
  relearning.check_integer("prototype_attack", "shots", shots, low=1)
  relearning.check_number("prototype_attack", "alpha", alpha, low=0.0, high=1.0)
  x, y, xt, yt = _features_pair(support_features, support_labels, test_features,
                                test_labels, "prototype_attack")
  w = np.array(kernel, np.float64)
  b = np.array(bias, np.float64)
  if w.ndim != 2 or w.shape[0] != x.shape[1] or b.shape != (w.shape[1],):
    raise errors.BadRequest(f"the head's kernel {w.shape} and bias {b.shape} do not fit "
                            f"features of width {x.shape[1]}")
  columns = _forgotten(forgotten, w.shape[1])
  for c in columns:
    rows = x[y == c][:int(shots)]
    if len(rows) < int(shots) or int(shots) < 1:
      raise errors.BadRequest(f"prototype_attack needs {shots} support images of forgotten "
                              f"class {c}, got {len(rows)}")
    proto = rows.mean(0)
    proto = proto / max(np.linalg.norm(proto), 1e-12)
    w_proto, b_proto = (proto, 0.0) if metric == "cosine" else (2 * proto, -proto @ proto)
    w[:, c] = alpha * w_proto + (1 - alpha) * w[:, c]
    b[c] = alpha * b_proto + (1 - alpha) * b[c]
  return forgotten_accuracy(xt @ w + b, yt, columns)


_HEAD_OPTIMIZER = optax.inject_hyperparams(optax.sgd)(learning_rate=0.01, momentum=0.9)


@jax.jit
def _head_step(head, opt_state, z, y):
  """One SGD step of the head ``(kernel, bias)`` on cross-entropy over frozen features."""
  def loss(h):
    logits = z @ h[0] + h[1]
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, y))

  grads = jax.grad(loss)(head)
  updates, opt_state = _HEAD_OPTIMIZER.update(grads, opt_state, head)
  return optax.apply_updates(head, updates), opt_state


def head_finetune_recovery(support_features: Any, support_labels: Any, kernel: Any,
                           bias: Any, test_features: Any, test_labels: Any,
                           forgotten: Sequence[int], *, steps: Sequence[int] = (10, 50),
                           learning_rate: float = 0.01, momentum: float = 0.9
                           ) -> dict[int, float]:
  """Few-shot head recovery: fine-tune only the head on a few labelled images.

  Full-batch SGD with momentum (optax, one jitted step) on the cross-entropy of
  ``features @ kernel + bias`` over the support set (a few images of every class: the
  forgotten ones mixed with retained ones), features frozen; forgotten-class test
  accuracy after each count of ``steps``.

  Source: classifier-only fine-tuning of Gao et al., "An Illusion of Unlearning?",
  AISTATS 2026 (adjusting the head alone suffices to restore or hide a class when the
  features still separate it); few-shot sizes as docs/depth.md.

  Args:
    support_features: ``(M, D)`` features of the support images (e.g. 10 per class).
    support_labels: ``(M,)``.
    kernel, bias: the head, ``(D, C)`` and ``(C,)``.
    test_features, test_labels: ``(N, D)``, ``(N,)``.
    forgotten: forgotten class ids (each must have support images).
    steps: step counts at which to report (ascending, >= 0).
    learning_rate, momentum: SGD.

  Returns:
    ``{steps: forgotten accuracy (%)}``.

  Raises:
    BadRequestType, BadRequest: mismatched shapes, a forgotten class without support
      images, a learning rate <= 0, a momentum outside ``[0, 1)``, ``steps`` empty or not
      integers >= 0.
  """
  relearning.check_number("head_finetune_recovery", "learning_rate", learning_rate, low=0.0,
                          low_open=True)
  relearning.check_number("head_finetune_recovery", "momentum", momentum, low=0.0, high=1.0,
                          high_open=True)
  for i, n in enumerate(steps):
    relearning.check_integer("head_finetune_recovery", f"steps[{i}]", n, low=0)
  x, y, xt, yt = _features_pair(support_features, support_labels, test_features,
                                test_labels, "head_finetune_recovery")
  columns = _forgotten(forgotten, np.shape(kernel)[-1])
  _require_classes(y, columns, "head_finetune_recovery support")
  counts = sorted({int(s) for s in steps})
  if not counts or counts[0] < 0:
    raise errors.BadRequest(f"steps must be counts >= 0, got {list(steps)}")
  head = (jnp.asarray(kernel, jnp.float32), jnp.asarray(bias, jnp.float32))
  opt_state = _HEAD_OPTIMIZER.init(head)
  opt_state.hyperparams["learning_rate"] = jnp.asarray(learning_rate, jnp.float32)
  opt_state.hyperparams["momentum"] = jnp.asarray(momentum, jnp.float32)
  z, labels = jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.int32)
  out, done = {}, 0
  for target in counts:
    while done < target:
      head, opt_state = _head_step(head, opt_state, z, labels)
      done += 1
    w, b = (np.asarray(a, np.float64) for a in head)
    out[target] = forgotten_accuracy(xt @ w + b, yt, columns)
  return {int(s): out[int(s)] for s in steps}


def relearn_ratio(method_steps: int | None, oracle_steps: int | None) -> float:
  """Relearning steps normalised by the oracle's (the Anamnesis Index's form).

  ``method / oracle``: about 1 is as deep as retraining, much less than 1 shallow (the
  class comes back faster than learning it afresh), above 1 slower than the oracle.
  ``None`` (not reached within the run) counts as infinitely many steps.

  Source: the Anamnesis Index of Chundawat, Tarun, Mandal and Kankanhalli, "Zero-Shot
  Machine Unlearning", IEEE TIFS 2023 (steps for the unlearned model to regain a share of
  the original's accuracy, over the retrained model's); the steps are counted by
  :func:`mnemonic_jax.relearning.relearn_steps`.

  Args:
    method_steps: the forgotten model's steps to a level, or ``None``.
    oracle_steps: the oracle's steps to the same level, or ``None``.

  Returns:
    The ratio; ``inf`` when only the oracle reached the level (or it needed 0 steps and
    the method more), 0 when only the method did, 1 when both needed 0, NaN when neither
    reached it.
  """
  m = np.inf if method_steps is None else float(method_steps)
  o = np.inf if oracle_steps is None else float(oracle_steps)
  if np.isinf(m) and np.isinf(o):
    return float("nan")
  if o == 0:
    return 1.0 if m == 0 else float("inf")
  return float(m / o)


def linear_cka(x: Any, y: Any) -> float:
  """Linear centred kernel alignment of two representations of the same examples.

  ``CKA(X, Y) = HSIC(X, Y) / sqrt(HSIC(X, X) HSIC(Y, Y))`` with linear kernels, computed
  in feature space: ``||Yc^T Xc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F)`` for column-centred
  ``Xc, Yc`` (equal to the Gram-matrix form). 1 for the same representation up to an
  orthogonal transform and a scale; the widths may differ.

  Source: Kornblith, Norouzi, Lee and Hinton, "Similarity of Neural Network
  Representations Revisited", ICML 2019 (linear CKA); applied to unlearning against the
  oracle by UUEF and the Unlearning Comparator.

  Args:
    x: ``(N, D1)`` features of N examples.
    y: ``(N, D2)`` features of the same N examples.

  Returns:
    CKA in ``[0, 1]`` (NaN when either representation is constant over the examples).

  Raises:
    BadRequest: different example counts, fewer than 2 examples, or not 2-D.
  """
  x = np.asarray(x, np.float64)
  y = np.asarray(y, np.float64)
  if x.ndim != 2 or y.ndim != 2 or len(x) != len(y) or len(x) < 2:
    raise errors.BadRequest(f"linear_cka needs two (N, D) feature arrays of the same >= 2 "
                            f"examples, got {x.shape} and {y.shape}")
  x = x - x.mean(0)
  y = y - y.mean(0)
  xx, yy = np.linalg.norm(x.T @ x), np.linalg.norm(y.T @ y)
  if xx == 0 or yy == 0:
    return float("nan")
  return float(np.linalg.norm(y.T @ x) ** 2 / (xx * yy))


def weight_distance(params: PyTree, reference: PyTree) -> float:
  """Relative weight distance ``sqrt(sum ||theta - theta_ref||^2 / sum ||theta||^2)``.

  Meaningful between models of one initialisation and seed (else permutation symmetry
  dominates); 0 for the same weights.

  Source: DEPTH.md (docs/depth.md); the l2 distance to the retrained model of
  the unlearning literature (e.g. Golatkar et al., CVPR 2020; Tarun et al., 2023),
  normalised by the model's own norm.

  Args:
    params: the model's parameter pytree (BatchNorm statistics excluded).
    reference: a pytree of the same structure and shapes.

  Returns:
    The distance (float, >= 0).

  Raises:
    BadRequest: trees of another structure or other shapes (another architecture).
  """
  if jax.tree.structure(params) != jax.tree.structure(reference):
    raise errors.BadRequest("weight_distance: the two parameter trees differ in structure "
                            "(another architecture); compare models of one architecture")
  a = [np.asarray(v, np.float64) for v in jax.tree.leaves(params)]
  b = [np.asarray(v, np.float64) for v in jax.tree.leaves(reference)]
  bad = [(u.shape, v.shape) for u, v in zip(a, b) if u.shape != v.shape]
  if bad:
    raise errors.BadRequest(f"weight_distance: parameter shapes differ ({bad[0][0]} against "
                            f"{bad[0][1]}); compare models of one architecture")
  num = sum(float(np.sum((u - v) ** 2)) for u, v in zip(a, b))
  den = sum(float(np.sum(u ** 2)) for u in a)
  return float(np.sqrt(num / den)) if den > 0 else float("nan")


def _features_pair(x: Any, y: Any, xt: Any, yt: Any, name: str
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
  x, xt = np.asarray(x, np.float64), np.asarray(xt, np.float64)
  y, yt = np.asarray(y), np.asarray(yt)
  if (x.ndim != 2 or xt.ndim != 2 or x.shape[1] != xt.shape[1] or len(x) != len(y)
      or len(xt) != len(yt) or not len(x)):
    raise errors.BadRequest(f"{name}: give (M, D) and (N, D) features with one label each; got "
                            f"{x.shape} / {y.shape} and {xt.shape} / {yt.shape}")
  for labels, what in ((y, "training"), (yt, "test")):
    _validate.labels(labels, np.iinfo(np.int32).max, name=f"{name} {what} labels")
  return x, y.astype(np.int64), xt, yt.astype(np.int64)


def _max_id(classes: Sequence[int]) -> int:
  """The largest class id of a collection (0 when empty or not integers: checked later)."""
  try:
    return max((int(c) for c in classes), default=0)
  except (TypeError, ValueError):
    return 0


def _require_classes(labels: np.ndarray, classes: np.ndarray, what: str) -> None:
  missing = sorted(set(classes.tolist()) - set(np.unique(labels).tolist()))
  if missing:
    raise errors.BadRequest(f"{what} holds no example of forgotten classes {missing}")
