"""Membership-inference attacks (MIAs) used to evaluate class unlearning.

Three attacks from the unlearning literature, each on plain numpy arrays: the caller
runs its model and passes logits (or per-example losses); nothing here imports a model
or JAX.

* :func:`entropy_mia` -- entropy-based attack of SSD (Foster et al., AAAI 2024).
  Percentage of forgotten samples judged "member"; lower is better.
* :func:`confidence_mia` -- true-class-confidence attack behind "MIA-efficacy"
  (Jia et al., NeurIPS 2023; Fan et al., SalUn, ICLR 2024). Percentage of forgotten
  samples judged "non-member"; higher is better.
* :func:`loss_mia` -- loss-based attack of the NeurIPS 2023 Machine Unlearning
  Challenge. Cross-validated accuracy (%) of telling forgotten from test samples;
  50 is ideal.

In every case the reference to compare against is a model retrained from scratch
without the forgotten data, which need not reach the nominal ideal (0, 100, 50).

Units: every attack, and every value of :func:`all_attacks`, is a percentage in
``[0, 100]``, so differences between models are in points. (Until 2026-12 the entropy
attack returned a fraction in ``[0, 1]``; the experiment records keep that fraction under
``"entropy_mia"``, as their tables say: ``experiments.common`` divides this module's
percentage by 100 where it writes a record.)

All randomness (subsampling, cross-validation folds) comes from the ``seed`` argument (an
integer in ``[0, 2**32)``, sklearn's range), so each attack is deterministic given its
inputs and ``seed``.

Every attack refuses a degenerate set the same way: each set it is given (members,
non-members, forgotten samples, and in :func:`all_attacks` the test samples on either
side of ``forget_classes``) must hold at least :data:`MIN_SAMPLES` samples, or the
attack raises the same ``ValueError`` (one shared check), which names the argument,
the attack and the fix. A score from one sample (0 or 1, 0 or 100) says nothing about
membership, and a classifier or a cross-validation split cannot be fitted on it.
"""

from typing import Sequence

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.svm import SVC

from mnemonic_jax import _validate, errors

__all__ = [
    "MIN_SAMPLES",
    "all_attacks",
    "confidence_mia",
    "cross_entropy_losses",
    "entropy_mia",
    "loss_mia",
    "softmax_entropy",
    "true_class_probability",
]


# ----------------------------------------------------------------------------------
# Input checks.

MIN_SAMPLES = 2
"""The fewest samples any set given to an attack may hold."""


def _check_num_samples(n: int, name: str, caller: str, *, minimum: int = MIN_SAMPLES,
                      what: str = "samples") -> None:
  """The one check, and the one message, for a set too small to use.

  Every attack calls it on every set it is given (and :func:`all_attacks` on the test
  samples it routes to each attack); the feature helpers call it with ``minimum=1``.

  Args:
    n: the number of samples in the set.
    name: the argument that holds the set, e.g. ``"forget_logits"``.
    caller: the public function checking it, named in the message.
    minimum: the fewest samples allowed.
    what: what the samples are, e.g. ``"samples of forget_classes [3]"``.

  Raises:
    ValueError: if ``n < minimum``, naming ``name``, ``caller`` and the fix.
  """
  if n < minimum:
    raise errors.BadRequest(
        f"{name} has too few {what} ({n}): {caller} needs {minimum} or more; "
        f"pass {minimum} or more {what} in {name}")


def _check_logits(logits: np.ndarray, name: str, caller: str, *,
                  minimum: int = MIN_SAMPLES) -> np.ndarray:
  """Returns ``logits`` as a float64 ``(n, num_classes)`` array, or raises ValueError.

  Entries of ``-inf`` (masked classes) are allowed as long as every row has at least
  one finite entry; NaN and ``+inf`` are rejected; fewer than ``minimum`` rows are
  refused by :func:`_check_num_samples`; anything but real numbers (strings, complex
  numbers, whose imaginary part a cast would drop, booleans) by a BadRequestType. Every
  int and float dtype is taken (bfloat16, float16 and float8 included), cast to float64.
  """
  try:
    logits = np.asarray(logits)
  except ValueError as e:  # Ragged rows.
    raise errors.BadRequest(f"{name} must be one (n, num_classes) array: {e}") from None
  if not _validate.real_dtype(logits.dtype):  # bfloat16 is kind 'V' to NumPy: not "iuf".
    raise errors.BadRequestType(f"{name} must be real numbers (n, num_classes); got dtype "
                                f"{logits.dtype}")
  logits = logits.astype(np.float64)
  if logits.ndim != 2:
    raise errors.BadRequest(f"{name} must be 2-D (n, num_classes); got shape {logits.shape}")
  _check_num_samples(logits.shape[0], name, caller, minimum=minimum)
  if logits.shape[1] == 0:
    raise errors.BadRequest(f"{name} has 0 classes; got shape {logits.shape}")
  if np.isnan(logits).any() or np.isposinf(logits).any():
    raise errors.BadRequest(f"{name} contains NaN or +inf")
  if not np.isfinite(logits).any(axis=1).all():
    raise errors.BadRequest(f"{name} has a row with no finite logit")
  return logits


def _check_labels(labels: np.ndarray, n: int, num_classes: int, name: str) -> np.ndarray:
  """Returns ``labels`` as an int64 ``(n,)`` array in ``[0, num_classes)``."""
  _validate.listed_bool(labels, name)
  labels = np.asarray(labels)
  if labels.ndim != 1:
    raise errors.BadRequest(f"{name} must be 1-D; got shape {labels.shape}")
  if labels.shape[0] != n:
    raise errors.BadRequest(f"{name} has {labels.shape[0]} entries but its logits have {n} rows")
  if labels.size and not np.issubdtype(labels.dtype, np.integer):
    raise errors.BadRequestType(f"{name} must be integers; got dtype {labels.dtype}")
  labels = labels.astype(np.int64)
  if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
    raise errors.BadRequest(
        f"{name} must lie in [0, {num_classes}); got range [{labels.min()}, {labels.max()}]")
  return labels


def _check_losses(losses: np.ndarray, name: str, caller: str) -> np.ndarray:
  """Returns ``losses`` as a finite, non-negative float64 ``(n,)`` array with
  ``n >= MIN_SAMPLES`` (cross-entropy losses are >= 0: a negative one is something else,
  a log-probability or a logit, given by mistake)."""
  losses = np.asarray(losses)
  if not _validate.real_dtype(losses.dtype):
    raise errors.BadRequestType(f"{name} must be real numbers; got dtype {losses.dtype}")
  losses = losses.astype(np.float64)
  if losses.ndim != 1:
    raise errors.BadRequest(f"{name} must be 1-D (one loss per example); got shape {losses.shape}")
  _check_num_samples(losses.size, name, caller)
  if not np.isfinite(losses).all():
    raise errors.BadRequest(f"{name} contains NaN or inf")
  if (losses < 0).any():
    raise errors.BadRequest(
        f"{name} has negative values (min {losses.min():.4g}); {caller} takes losses >= 0, "
        "e.g. cross_entropy_losses(logits, labels), not log-probabilities")
  return losses


_SEED_LIMIT = 2**32
"""Seeds lie in ``[0, _SEED_LIMIT)``: sklearn's ``random_state`` and NumPy's legacy
``RandomState`` take 32-bit seeds only, so every attack refuses a larger one up front."""


def _check_seed(seed: int, caller: str) -> int:
  """Returns ``seed`` as an int, or raises: an integer in ``[0, 2**32)``, not a bool.

  The one seed check of the three attacks (and :func:`all_attacks`), so they agree on
  which seeds work: sklearn's ``random_state`` takes ``[0, 2**32 - 1]`` only.
  """
  if not _validate.is_integer(seed):
    raise errors.BadRequestType(f"{caller}: seed must be an integer in [0, 2**32), got {seed!r}")
  if not 0 <= int(seed) < _SEED_LIMIT:
    raise errors.BadRequest(
        f"{caller}: seed must be in [0, 2**32) (sklearn's random_state takes 32-bit seeds), "
        f"got {seed!r}; reduce it, e.g. seed % 2**32")
  return int(seed)


def _same_num_classes(**named: np.ndarray) -> None:
  widths = {name: a.shape[1] for name, a in named.items()}
  if len(set(widths.values())) != 1:
    raise errors.BadRequest(f"logits disagree on the number of classes: {widths}")


def _subsample(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
  """Indices of ``size`` of ``range(n)`` without replacement (all of them if size >= n)."""
  if size >= n:
    return np.arange(n)
  return np.sort(rng.choice(n, size=size, replace=False))


# ----------------------------------------------------------------------------------
# Features.


def _log_softmax(logits: np.ndarray) -> np.ndarray:
  shifted = logits - logits.max(axis=1, keepdims=True)
  return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def softmax_entropy(logits: np.ndarray) -> np.ndarray:
  """Shannon entropy (nats) of the softmax of each row of ``logits``.

  ``H(x) = -sum_k p_k log p_k`` with ``p = softmax(logits)``, computed from a shifted
  log-softmax so large logits do not overflow; ``0 log 0`` is taken as 0.

  Args:
    logits: ``(n, num_classes)``; ``-inf`` entries (masked classes) are allowed.

  Returns:
    ``(n,)`` float64 entropies in ``[0, log num_classes]``.

  Raises:
    TypeError: ``logits`` that are not real numbers (strings, complex, booleans).
    ValueError: ``logits`` not 2-D, without rows or classes, or with NaN, ``+inf`` or a
      row of ``-inf``.
  """
  logits = _check_logits(logits, "logits", "softmax_entropy", minimum=1)
  log_p = _log_softmax(logits)
  p = np.exp(log_p)
  safe_log_p = np.where(p > 0, log_p, 0.0)  # 0 log 0 = 0, also for -inf logits.
  return np.maximum(-(p * safe_log_p).sum(axis=1), 0.0)


def true_class_probability(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
  """Softmax probability each row of ``logits`` gives to its label.

  Args:
    logits: ``(n, num_classes)``.
    labels: ``(n,)`` integers in ``[0, num_classes)``.

  Returns:
    ``(n,)`` float64 probabilities ``softmax(logits)[i, labels[i]]``.

  Raises:
    ValueError: bad ``logits`` (as :func:`softmax_entropy`), or ``labels`` not integers
      in ``[0, num_classes)``, one per row.
  """
  logits = _check_logits(logits, "logits", "true_class_probability", minimum=1)
  labels = _check_labels(labels, logits.shape[0], logits.shape[1], "labels")
  log_p = _log_softmax(logits)
  return np.exp(log_p[np.arange(logits.shape[0]), labels])


def cross_entropy_losses(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
  """Per-example softmax cross-entropy ``-log softmax(logits)[i, labels[i]]``.

  Computed with the log-sum-exp trick, so e.g. logits ``[1000, 0]`` with label 1 give
  exactly 1000 rather than ``inf``.

  Args:
    logits: ``(n, num_classes)``.
    labels: ``(n,)`` integers in ``[0, num_classes)``.

  Returns:
    ``(n,)`` float64 non-negative losses (``inf`` where the label's logit is ``-inf``).

  Raises:
    ValueError: bad ``logits`` or ``labels`` (as :func:`true_class_probability`).
  """
  logits = _check_logits(logits, "logits", "cross_entropy_losses", minimum=1)
  labels = _check_labels(labels, logits.shape[0], logits.shape[1], "labels")
  log_p = _log_softmax(logits)
  return np.maximum(-log_p[np.arange(logits.shape[0]), labels], 0.0)


# ----------------------------------------------------------------------------------
# Attacks.


def entropy_mia(retain_logits: np.ndarray,
                test_logits: np.ndarray,
                forget_logits: np.ndarray,
                *,
                seed: int = 0) -> float:
  """Entropy-based MIA of SSD: percentage of forgotten samples predicted "member".

  Definition: the attack feature is the entropy of the softmax output
  (:func:`softmax_entropy`). A logistic regression
  (``LogisticRegression(class_weight="balanced")``) is fitted to tell members (retained
  training samples, label 1) from non-members (test samples, label 0); the two sets are
  first balanced by subsampling the larger one, without replacement, to the size of the
  smaller. The score is 100 times the mean prediction on the forgotten training samples,
  i.e. the percentage of them the attacker still believes were trained on (SSD reports
  the same share as a fraction).

  Direction: lower is better (less membership leaked). 0 is the nominal ideal, but the
  right reference is the score of a model retrained without the forgotten class.

  Source: J. Foster, S. Schoepf, A. Brintrup, "Fast Machine Unlearning Without
  Retraining Through Selective Synaptic Dampening", AAAI 2024 (attack adopted from
  Chundawat et al., "Can Bad Teaching Induce Forgetting?", AAAI 2023). SSD passes the
  full validation set as the non-members.

  Args:
    retain_logits: ``(n_retain, num_classes)`` logits on retained training samples.
    test_logits: ``(n_test, num_classes)`` logits on held-out test samples.
    forget_logits: ``(n_forget, num_classes)`` logits on forgotten training samples.
    seed: seeds the balancing subsample (an integer in ``[0, 2**32)``).

  Returns:
    Percentage in ``[0, 100]`` of forgotten samples predicted "member".

  Raises:
    BadRequestType: a ``seed`` that is not an integer, logits that are not real numbers.
    BadRequest: a set with fewer than :data:`MIN_SAMPLES` samples, non-2-D or NaN
      inputs, mismatched class counts, or a ``seed`` outside ``[0, 2**32)``.
  """
  retain_logits = _check_logits(retain_logits, "retain_logits", "entropy_mia")
  test_logits = _check_logits(test_logits, "test_logits", "entropy_mia")
  forget_logits = _check_logits(forget_logits, "forget_logits", "entropy_mia")
  _same_num_classes(retain_logits=retain_logits, test_logits=test_logits,
                    forget_logits=forget_logits)
  seed = _check_seed(seed, "entropy_mia")

  rng = np.random.default_rng(seed)
  n = min(len(retain_logits), len(test_logits))
  members = softmax_entropy(retain_logits[_subsample(rng, len(retain_logits), n)])
  non_members = softmax_entropy(test_logits[_subsample(rng, len(test_logits), n)])

  x = np.concatenate([members, non_members])[:, None]
  y = np.concatenate([np.ones(n), np.zeros(n)])
  clf = LogisticRegression(class_weight="balanced", solver="lbfgs", random_state=seed)
  clf.fit(x, y)
  return float(100.0 * clf.predict(softmax_entropy(forget_logits)[:, None]).mean())


def confidence_mia(retain_logits: np.ndarray,
                   retain_labels: np.ndarray,
                   test_logits: np.ndarray,
                   test_labels: np.ndarray,
                   forget_logits: np.ndarray,
                   forget_labels: np.ndarray,
                   *,
                   seed: int = 0) -> float:
  """Confidence-based MIA of "model sparsity"/SalUn, reported as MIA-efficacy (%).

  Definition: the attack feature is the softmax probability of the true class
  (:func:`true_class_probability`). An ``SVC(C=3, gamma="auto", kernel="rbf")`` is
  fitted to tell members (retained training samples, label 1) from non-members (test
  samples, label 0). Members are a random subsample, without replacement, of as many
  retained samples as there are test samples (all of them if there are fewer); every
  test sample is used. MIA-efficacy is ``100 * (1 - m)`` where ``m`` is the fraction of
  forgotten samples the SVC predicts "member", i.e. the percentage of forgotten samples
  the attacker believes were *not* trained on.

  For class unlearning pass a test set that excludes the forgotten classes (as
  :func:`all_attacks` does): the non-members should be samples the unlearned model is
  still meant to classify.

  Direction: higher is better (100 = no forgotten sample looks like a member). Compare
  with a model retrained without the forgotten class.

  Source: J. Jia, J. Liu, P. Ram, Y. Yao, G. Liu, Y. Liu, P. Sharma, S. Liu, "Model
  Sparsity Can Simplify Machine Unlearning", NeurIPS 2023 (``SVC_MIA``, using the
  confidence attack of Song & Mittal, USENIX Security 2021); reused by C. Fan et al.,
  "SalUn: Empowering Machine Unlearning via Gradient-based Weight Saliency in Both
  Image Classification and Generation", ICLR 2024. The original code takes the first
  ``len(test)`` retained samples; here they are drawn at random with ``seed``.

  Args:
    retain_logits: ``(n_retain, num_classes)`` logits on retained training samples.
    retain_labels: ``(n_retain,)`` their true labels.
    test_logits: ``(n_test, num_classes)`` logits on test samples of retained classes.
    test_labels: ``(n_test,)`` their true labels.
    forget_logits: ``(n_forget, num_classes)`` logits on forgotten training samples.
    forget_labels: ``(n_forget,)`` their true (original) labels.
    seed: seeds the subsample of retained samples (an integer in ``[0, 2**32)``).

  Returns:
    MIA-efficacy, a percentage in ``[0, 100]``.

  Raises:
    BadRequestType: a ``seed`` that is not an integer, logits that are not real numbers.
    BadRequest: a set with fewer than :data:`MIN_SAMPLES` samples, malformed inputs,
      labels out of range, mismatched lengths or a ``seed`` outside ``[0, 2**32)``.
  """
  retain_logits = _check_logits(retain_logits, "retain_logits", "confidence_mia")
  test_logits = _check_logits(test_logits, "test_logits", "confidence_mia")
  forget_logits = _check_logits(forget_logits, "forget_logits", "confidence_mia")
  _same_num_classes(retain_logits=retain_logits, test_logits=test_logits,
                    forget_logits=forget_logits)
  k = retain_logits.shape[1]
  retain_labels = _check_labels(retain_labels, len(retain_logits), k, "retain_labels")
  test_labels = _check_labels(test_labels, len(test_logits), k, "test_labels")
  forget_labels = _check_labels(forget_labels, len(forget_logits), k, "forget_labels")
  seed = _check_seed(seed, "confidence_mia")

  rng = np.random.default_rng(seed)
  idx = _subsample(rng, len(retain_logits), len(test_logits))
  members = true_class_probability(retain_logits[idx], retain_labels[idx])
  non_members = true_class_probability(test_logits, test_labels)

  x = np.concatenate([members, non_members])[:, None]
  y = np.concatenate([np.ones(len(members)), np.zeros(len(non_members))])
  clf = SVC(C=3, gamma="auto", kernel="rbf")
  clf.fit(x, y)
  forget_conf = true_class_probability(forget_logits, forget_labels)
  member_rate = clf.predict(forget_conf[:, None]).mean()
  return float(100.0 * (1.0 - member_rate))


def loss_mia(forget_losses: np.ndarray,
             test_losses: np.ndarray,
             *,
             n_splits: int = 10,
             seed: int = 0) -> float:
  """Loss-based MIA of the NeurIPS 2023 Machine Unlearning Challenge (accuracy, %).

  Definition: the attack feature is the per-example loss. The larger of the two sets
  is subsampled, without replacement, to the size of the smaller; forgotten samples
  are labelled 1 and test samples 0; the score is the mean accuracy of a
  ``LogisticRegression`` under ``StratifiedKFold(n_splits, shuffle=True)``
  cross-validation, times 100. If a class has fewer than ``n_splits`` samples after
  balancing, ``n_splits`` is lowered to that count (at least 2).

  Direction: 50 is ideal -- the attacker cannot tell forgotten from unseen samples.
  Values far above 50 mean the forgotten samples are still recognisable (typically
  by their low loss; for class unlearning, possibly by a loss *higher* than on the
  test set). Compare with a model retrained without the forgotten data.

  Source: E. Triantafillou et al., NeurIPS 2023 Machine Unlearning Challenge starting
  kit (``simple_mia``), which uses ``StratifiedShuffleSplit``; this version uses
  shuffled ``StratifiedKFold``.

  Args:
    forget_losses: ``(n_forget,)`` losses on forgotten training samples
      (e.g. :func:`cross_entropy_losses` with their original labels).
    test_losses: ``(n_test,)`` losses on test samples.
    n_splits: number of cross-validation folds (>= 2).
    seed: seeds the balancing subsample and the fold shuffle (an integer in ``[0, 2**32)``).

  Returns:
    Cross-validated attack accuracy, a percentage in ``[0, 100]``.

  Raises:
    BadRequestType: a ``seed`` or ``n_splits`` that is not an integer, losses that are
      not numbers.
    BadRequest: a set with fewer than :data:`MIN_SAMPLES` samples (no 2-fold split
      exists then), an input not 1-D, not finite or negative (losses are >= 0),
      ``n_splits < 2`` or a ``seed`` outside ``[0, 2**32)``.
  """
  forget_losses = _check_losses(forget_losses, "forget_losses", "loss_mia")
  test_losses = _check_losses(test_losses, "test_losses", "loss_mia")
  if not _validate.is_integer(n_splits):
    raise errors.BadRequestType(f"loss_mia: n_splits must be an integer >= 2; got {n_splits!r}")
  if n_splits < 2:
    raise errors.BadRequest(f"loss_mia: n_splits must be an integer >= 2; got {n_splits!r}")
  seed = _check_seed(seed, "loss_mia")
  n = min(len(forget_losses), len(test_losses))  # >= MIN_SAMPLES = 2: a 2-fold split exists.

  rng = np.random.default_rng(seed)
  forget = forget_losses[_subsample(rng, len(forget_losses), n)]
  test = test_losses[_subsample(rng, len(test_losses), n)]
  x = np.concatenate([forget, test])[:, None]
  y = np.concatenate([np.ones(n, dtype=np.int64), np.zeros(n, dtype=np.int64)])

  cv = StratifiedKFold(n_splits=min(int(n_splits), n), shuffle=True, random_state=seed)
  scores = cross_val_score(LogisticRegression(), x, y, cv=cv, scoring="accuracy")
  return float(100.0 * scores.mean())


def all_attacks(retain_logits: np.ndarray,
                retain_labels: np.ndarray,
                test_logits: np.ndarray,
                test_labels: np.ndarray,
                forget_logits: np.ndarray,
                forget_labels: np.ndarray,
                forget_classes: Sequence[int],
                *,
                n_splits: int = 10,
                seed: int = 0) -> dict[str, float]:
  """Runs the three attacks on one model's logits; every value is a percentage.

  What goes where:

  * ``"entropy_mia"`` = :func:`entropy_mia` (retain, **full** test set, forget), as in
    SSD, whose non-members are the whole validation set. Lower is better (%, like the
    others).
  * ``"confidence_mia"`` = :func:`confidence_mia` (retain, test set **without** the
    samples whose label is in ``forget_classes``, forget), as in SalUn's class-wise
    setting. Higher is better.
  * ``"loss_mia"`` = :func:`loss_mia` on :func:`cross_entropy_losses` of the forget
    samples (with ``forget_labels``) vs the test samples **of the forgotten classes**
    (with ``test_labels``). Closer to 50 is better. The challenge forgets random
    training samples and compares them with the whole test set; for class unlearning
    that comparison mostly detects the class (every forgotten-class sample has a high
    loss after forgetting, most test samples a low one), not membership. Members and
    non-members of the same classes isolate membership: 50 means the forgotten
    training samples look exactly like unseen samples of their classes.

  Args:
    retain_logits: ``(n_retain, num_classes)`` logits on retained training samples.
    retain_labels: ``(n_retain,)`` their labels, none in ``forget_classes``.
    test_logits: ``(n_test, num_classes)`` logits on the whole test set, forgotten
      classes included.
    test_labels: ``(n_test,)`` their labels.
    forget_logits: ``(n_forget, num_classes)`` logits on forgotten training samples.
    forget_labels: ``(n_forget,)`` their original labels, each in ``forget_classes``.
    forget_classes: the forgotten class indices: ``confidence_mia`` drops their test
      samples, ``loss_mia`` keeps only theirs.
    n_splits: folds for :func:`loss_mia`.
    seed: passed to every attack (an integer in ``[0, 2**32)``).

  Returns:
    ``{"entropy_mia": ..., "confidence_mia": ..., "loss_mia": ...}``, each a percentage
    in ``[0, 100]``.

  Raises:
    BadRequestType: labels or ``seed`` that are not integers, logits that are not real
      numbers.
    BadRequest: malformed inputs; a set with fewer than :data:`MIN_SAMPLES` samples: the
      retained or forgotten samples, or the test samples outside ``forget_classes`` (for
      ``confidence_mia``) or inside them (for ``loss_mia``); forget labels outside
      ``forget_classes`` or retain labels inside them (the sets were swapped or split
      by other classes).
  """
  # Every set is checked here, before any attack runs, so the message names this call.
  retain_logits = _check_logits(retain_logits, "retain_logits", "all_attacks")
  forget_logits = _check_logits(forget_logits, "forget_logits", "all_attacks")
  test_logits = _check_logits(test_logits, "test_logits", "all_attacks")
  test_labels = _check_labels(test_labels, len(test_logits), test_logits.shape[1],
                              "test_labels")
  classes = np.asarray(_validate.class_ids(forget_classes, test_logits.shape[1],
                                           name="forget_classes"), np.int64)
  k = test_logits.shape[1]
  retain_labels = _check_labels(retain_labels, len(retain_logits), k, "retain_labels")
  forget_labels = _check_labels(forget_labels, len(forget_logits), k, "forget_labels")
  keep = ~np.isin(test_labels, classes)
  _check_num_samples(int(keep.sum()), "test_logits", "all_attacks",
                    what=f"samples outside forget_classes {classes.tolist()}")
  _check_num_samples(int((~keep).sum()), "test_logits", "all_attacks",
                    what=f"samples of forget_classes {classes.tolist()}")
  wrong = np.unique(retain_labels[np.isin(retain_labels, classes)])
  if wrong.size:
    raise errors.BadRequest(
        f"retain_labels hold forget_classes {wrong.tolist()}; the retained samples are those "
        f"of the other classes (forget_classes {classes.tolist()})")
  wrong = np.unique(forget_labels[~np.isin(forget_labels, classes)])
  if wrong.size:
    raise errors.BadRequest(
        f"forget_labels hold classes {wrong.tolist()} outside forget_classes "
        f"{classes.tolist()}; the forgotten samples are those of the forgotten classes")
  seed = _check_seed(seed, "all_attacks")

  return {
      "entropy_mia": entropy_mia(retain_logits, test_logits, forget_logits, seed=seed),
      "confidence_mia": confidence_mia(
          retain_logits, retain_labels, test_logits[keep], test_labels[keep],
          forget_logits, forget_labels, seed=seed),
      "loss_mia": loss_mia(
          cross_entropy_losses(forget_logits, forget_labels),
          cross_entropy_losses(test_logits[~keep], test_labels[~keep]),
          n_splits=n_splits, seed=seed),
  }
