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
(:func:`one_constant_recovery`, :func:`half_split_recovery`, :func:`input_scale_recovery`,
defined in :mod:`mnemonic_jax.evaluation.logit_attacks` and importable from here) and
:func:`weight_distance`; the others need penultimate features.

Every array is checked before use, and the message names the argument: logits as
:func:`mnemonic_jax.metrics.forgetting_metrics` checks them, features and head weights as
real, finite ``(N, D)``, ``(D, C)`` and ``(C,)`` arrays (a NaN feature has no nearest
class mean and no prediction to score).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from mnemonic_jax import _validate, errors, relearning
from mnemonic_jax.checkpointing.trees import _tree_mismatch
from mnemonic_jax.evaluation.logit_attacks import (
    _forgotten, _values, best_constant, forgotten_accuracy, half_split, half_split_recovery,
    host_rng, input_scale_recovery, one_constant_recovery)

__all__ = [
    "best_constant", "forgotten_accuracy", "half_split", "half_split_recovery",
    "head_finetune_recovery", "host_rng", "input_scale_recovery", "linear_cka", "ncm_recall",
    "one_constant_recovery", "probe_recall", "prototype_attack", "relearn_ratio",
    "weight_distance"]

PyTree = Any


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
    BadRequestType: ``c`` not a number or ``max_iter`` not an integer; features that are
      not real numbers, labels that are not integers.
    BadRequest: features not ``(M, D)`` and ``(N, D)`` with one label ``(N,)`` each, NaN
      or inf features, negative labels, a forgotten class absent from the training
      features, ``c <= 0`` or ``max_iter < 1``.
  """
  from sklearn.linear_model import LogisticRegression  # pylint: disable=import-outside-toplevel
  from sklearn.pipeline import make_pipeline  # pylint: disable=import-outside-toplevel
  from sklearn.preprocessing import StandardScaler  # pylint: disable=import-outside-toplevel
  from threadpoolctl import threadpool_limits  # pylint: disable=import-outside-toplevel

  # Python numbers for sklearn, whose own check refuses a 0-d JAX array.
  c = relearning.check_number("probe_recall", "c", c, low=0.0, low_open=True)
  max_iter = relearning.check_integer("probe_recall", "max_iter", max_iter, low=1)
  x, y, xt, yt = _features_pair(train_features, train_labels, test_features, test_labels,
                                "probe_recall", "train")
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

  Raises:
    BadRequestType, BadRequest: features and labels as :func:`probe_recall`; a forgotten
      class without support examples.
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
    BadRequestType: ``shots`` not an integer or ``alpha`` not a number; features or head
      weights that are not real numbers, labels that are not integers.
    BadRequest: a forgotten class with fewer than ``shots`` support images; features and
      labels as :func:`probe_recall`; a kernel that is not ``(D, C)`` for features of width
      ``D`` or a bias that is not ``(C,)``, NaN or inf in either; an unknown metric,
      ``shots < 1`` or ``alpha`` outside ``[0, 1]``.
  """
  if metric not in ("cosine", "l2"):
    raise errors.BadRequest(f"metric must be 'cosine' or 'l2', got {metric!r}")
  shots = relearning.check_integer("prototype_attack", "shots", shots, low=1)
  alpha = relearning.check_number("prototype_attack", "alpha", alpha, low=0.0, high=1.0)
  x, y, xt, yt = _features_pair(support_features, support_labels, test_features,
                                test_labels, "prototype_attack")
  w, b = _head(kernel, bias, x.shape[1], "prototype_attack")
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
    steps: step counts at which to report (a tuple, list or 1-d array of integers >= 0,
      each once).
    learning_rate, momentum: SGD.

  Returns:
    ``{steps: forgotten accuracy (%)}``.

  Raises:
    BadRequestType, BadRequest: features, labels or a head as :func:`prototype_attack`
      (the same checks and messages), a forgotten class without support images, a
      learning rate <= 0, a momentum outside ``[0, 1)``, ``steps`` empty, not integers
      >= 0 or holding one twice; a head that became NaN or inf (a learning rate too large).
  """
  learning_rate = relearning.check_number("head_finetune_recovery", "learning_rate",
                                          learning_rate, low=0.0, low_open=True)
  momentum = relearning.check_number("head_finetune_recovery", "momentum", momentum, low=0.0,
                                     high=1.0, high_open=True)
  steps = _values(steps, "head_finetune_recovery", "steps", "step counts, e.g. (10, 50)")
  if not steps:
    raise errors.BadRequest("head_finetune_recovery: steps needs at least one step count, "
                            "e.g. (10, 50)")
  steps = list(relearning.check_integer("head_finetune_recovery", f"steps[{i}]", n, low=0)
               for i, n in enumerate(steps))
  x, y, xt, yt = _features_pair(support_features, support_labels, test_features,
                                test_labels, "head_finetune_recovery")
  kernel, bias = _head(kernel, bias, x.shape[1], "head_finetune_recovery")
  columns = _forgotten(forgotten, kernel.shape[1])
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
    if not (np.isfinite(w).all() and np.isfinite(b).all()):
      raise errors.BadRequest(f"head_finetune_recovery: the head became NaN or inf within "
                              f"{done} SGD steps at learning_rate {learning_rate:g}; use a "
                              "smaller learning_rate")
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

  Raises:
    BadRequestType: a count that is neither ``None`` nor an integer (a float, a bool).
    BadRequest: a negative count.
  """
  for name, steps in (("method_steps", method_steps), ("oracle_steps", oracle_steps)):
    if steps is not None:
      relearning.check_integer("relearn_ratio", name, steps, low=0)
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
    BadRequestType: features that are not real numbers.
    BadRequest: different example counts, fewer than 2 examples, not 2-D, NaN or inf.
  """
  x = _features(x, "linear_cka x")
  y = _features(y, "linear_cka y")
  if len(x) != len(y) or len(x) < 2:
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
    BadRequestType: a leaf that is not an array of real numbers.
    BadRequest: no parameters; trees whose leaves differ in paths or shapes (another
      architecture; containers are not compared by type, so a ``FrozenDict`` and a
      ``dict`` of the same model match); NaN or inf in either (the message names the
      leaf).
  """
  mismatch = _tree_mismatch(reference, params)
  if mismatch:
    raise errors.BadRequest(f"weight_distance: reference differs from params in its leaves' "
                            f"paths or shapes ({mismatch}): another architecture; compare "
                            "models of one architecture")
  named = {"params": params, "reference": reference}
  flat = {}
  for name, tree in named.items():
    flat[name] = {jax.tree_util.keystr(p): v for p, v in
                  jax.tree_util.tree_flatten_with_path(tree)[0]}
    for path, leaf in flat[name].items():
      dtype = leaf.dtype if hasattr(leaf, "dtype") else np.asarray(leaf).dtype
      if not (jnp.issubdtype(dtype, jnp.floating) or jnp.issubdtype(dtype, jnp.integer)):
        raise errors.BadRequestType(f"weight_distance: {name}{path} is not an array of real "
                                    f"numbers (dtype {dtype})")
  if not flat["params"]:
    raise errors.BadRequest("weight_distance: params holds no arrays; pass the model's "
                            "parameters, e.g. bundle.params")
  _validate.finite(**named)
  a = [np.asarray(v, np.float64) for v in flat["params"].values()]
  b = [np.asarray(flat["reference"][k], np.float64) for k in flat["params"]]
  num = sum(float(np.sum((u - v) ** 2)) for u, v in zip(a, b))
  den = sum(float(np.sum(u ** 2)) for u in a)
  return float(np.sqrt(num / den)) if den > 0 else float("nan")


def _real(x: Any, name: str) -> np.ndarray:
  """``x`` as a float64 host array, refusing what is not real numbers or not finite."""
  try:
    x = np.asarray(x)
  except ValueError as e:  # Ragged rows.
    raise errors.BadRequest(f"{name} must be one array of numbers: {e}") from None
  if (not (jnp.issubdtype(x.dtype, jnp.floating) or jnp.issubdtype(x.dtype, jnp.integer))
      or x.dtype == np.bool_):
    raise errors.BadRequestType(f"{name} must be real numbers, got dtype {x.dtype}")
  bad = int(np.size(x) - _validate.isfinite_on_host(x).sum())
  if bad:
    raise errors.BadRequest(f"{name} hold {bad} non-finite value(s) (NaN or inf): the model "
                            "diverged or its parameters are not finite; pass finite values")
  return x.astype(np.float64)


def _features(x: Any, name: str) -> np.ndarray:
  """Finite real features ``(N, D)`` as float64."""
  if not np.ndim(x) == 2:
    raise errors.BadRequest(f"{name} must be features (N, D), got shape {np.shape(x)}")
  return _real(x, name)


def _features_pair(x: Any, y: Any, xt: Any, yt: Any, name: str, first: str = "support"
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
  """Two feature sets of one width with one label each: ``(first)_*`` and ``test_*``."""
  x = _features(x, f"{name} {first}_features")
  xt = _features(xt, f"{name} test_features")
  for labels, what in ((y, first), (yt, "test")):
    _validate.labels(labels, np.iinfo(np.int32).max, name=f"{name} {what}_labels")
  y, yt = np.asarray(y), np.asarray(yt)
  if x.shape[1] != xt.shape[1] or len(x) != len(y) or len(xt) != len(yt) or not len(x):
    raise errors.BadRequest(f"{name}: give (M, D) and (N, D) features with one label each; got "
                            f"{first}_features {x.shape}, {first}_labels {y.shape}, "
                            f"test_features {xt.shape}, test_labels {yt.shape}")
  return x, y.astype(np.int64), xt, yt.astype(np.int64)


def _head(kernel: Any, bias: Any, width: int, name: str) -> tuple[np.ndarray, np.ndarray]:
  """A finite head ``(kernel (D, C), bias (C,))`` for features of ``width`` D, as float64."""
  w, b = _real(kernel, f"{name} kernel"), _real(bias, f"{name} bias")
  if w.ndim != 2 or w.shape[0] != width or b.shape != (w.shape[1],):
    raise errors.BadRequest(f"{name}: the head's kernel {w.shape} and bias {b.shape} do not "
                            f"fit features of width {width}; give kernel (D, C) = ({width}, C) "
                            "and bias (C,)")
  return w, b


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
