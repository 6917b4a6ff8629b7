"""Accuracy per class and the paper's forgetting metrics A_R and E_F."""

from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from mnemonic_jax import _validate, errors


def predict_in_batches(
    predict: Callable[[np.ndarray], jax.Array],
    images: np.ndarray,
    batch_size: int = 1024,
    *,
    multiple: int = 1,
    progress: bool = False,
) -> np.ndarray:
  """Logits for ``images`` in fixed-size batches (the last one padded: one compilation).

  Args:
    predict: jitted ``predict(images_batch) -> logits``.
    images: host array ``(N, ...)``.
    batch_size: examples per call, a positive int (rounded up to a multiple of
      ``multiple``).
    multiple: every batch size is a multiple of this (e.g. the number of devices), a
      positive int.
    progress: show a progress bar.

  Returns:
    Host logits ``(N, C)``. For no images, ``(0, C)``: ``predict`` runs once on one batch
    of zeros (of ``multiple`` examples) to learn ``C`` and the dtype.

  Raises:
    BadRequestType: ``batch_size`` or ``multiple`` is not an int (``2.5``, ``True``).
    BadRequest: either is below 1, or ``images`` have no batch axis.
  """
  for name, value in (("batch_size", batch_size), ("multiple", multiple)):
    if not _validate.is_integer(value):
      raise errors.BadRequestType(f"{name} must be a positive int, got {value!r}")
    if value < 1:
      raise errors.BadRequest(f"{name} must be a positive int (examples per call), got {value}")
  if np.ndim(images) == 0:
    raise errors.BadRequest(f"images must be an array (N, ...) of examples, got {images!r}")
  n = len(images)
  if n == 0:  # No rows to pad with: one batch of zeros gives the logits' columns and dtype.
    zeros = np.zeros((multiple, *np.shape(images)[1:]), np.asarray(images).dtype)
    return np.asarray(predict(zeros))[:0]
  batch_size = -(-min(int(batch_size), n) // multiple) * multiple
  out = []
  for start in tqdm(range(0, n, batch_size), disable=not progress, desc="evaluate", unit="batch"):
    batch = images[start:start + batch_size]
    pad = batch_size - len(batch)
    if pad:
      batch = np.concatenate([batch, np.repeat(batch[:1], pad, axis=0)])
    out.append(np.asarray(predict(batch))[:len(batch) - pad])
  return np.concatenate(out)


def per_class_accuracy(logits: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
  """Accuracy (%) of each class ``(num_classes,)``; NaN for a class with no example.

  Args:
    logits: ``(N, C)`` finite model outputs, ``C <= num_classes``.
    labels: ``(N,)`` integer labels in ``[0, num_classes)``.
    num_classes: the number of classes (at least the logits' ``C``).

  Raises:
    TypeError: labels that are not integers, logits that are not real numbers, or a
      ``num_classes`` that is not an integer.
    ValueError: labels outside ``[0, num_classes)`` or not ``(N,)``; logits not ``(N, C)``,
      of another length than the labels, or holding NaN or inf; ``num_classes`` smaller
      than ``C``.
  """
  if not _validate.is_integer(num_classes):
    raise errors.BadRequestType(f"num_classes must be an integer, got {num_classes!r}")
  logits = _checked_logits(logits, labels, num_classes)
  correct = np.argmax(logits, axis=-1) == labels
  counts = np.bincount(labels, minlength=num_classes)
  hits = np.bincount(labels, weights=correct, minlength=num_classes)
  with np.errstate(invalid="ignore", divide="ignore"):
    return 100.0 * hits / counts


def _checked_logits(logits, labels, num_classes: int | None = None) -> np.ndarray:
  """The checks every metric on logits shares; returns the logits as a host array.

  ``num_classes`` None takes the logits' columns; otherwise it must be at least that many.
  """
  if isinstance(logits, jax.core.Tracer) or isinstance(labels, jax.core.Tracer):
    raise errors.BadRequestType("the metrics run on the host from concrete logits and labels, "
                                "not under jax.jit, vmap or grad: call them outside")
  logits = np.asarray(logits)
  if not (jnp.issubdtype(logits.dtype, jnp.floating)
          or jnp.issubdtype(logits.dtype, jnp.integer)):
    raise errors.BadRequestType(f"logits must be a real-valued array (N, C), got dtype "
                                f"{logits.dtype}")
  if logits.ndim != 2 or logits.shape[1] == 0:
    raise errors.BadRequest(f"logits must have shape (N, C) with C >= 1, got {logits.shape}")
  columns = logits.shape[1]
  if num_classes is not None and num_classes < columns:
    raise errors.BadRequest(f"num_classes={num_classes} is smaller than the logits' {columns} "
                            "columns: a prediction could name a class beyond it; pass "
                            f"num_classes >= {columns}")
  _validate.labels(labels, columns if num_classes is None else num_classes)
  if len(labels) != len(logits):
    raise errors.BadRequest(f"logits ({len(logits)} rows) and labels ({len(labels)}) disagree on "
                            "the number of examples: pass one label per row of logits")
  bad = int(np.size(logits) - _validate.isfinite_on_host(logits).sum())
  if bad:
    raise errors.BadRequest(f"logits hold {bad} non-finite value(s) (NaN or inf): the model "
                            "diverged or its parameters are not finite; a non-finite logit "
                            "has no prediction to score")
  return logits


def forgetting_metrics(
    logits: np.ndarray, labels: np.ndarray, forgotten: Sequence[int]
) -> dict[str, float]:
  """The paper's metrics on a labelled test set.

  Args:
    logits: ``(N, C)`` model outputs.
    labels: ``(N,)`` true labels.
    forgotten: forgotten class ids (may be empty: then only ``accuracy`` is meaningful).

  Returns:
    ``accuracy`` (% over all examples), ``A_R`` (% accuracy over examples of the remaining
    classes, higher is better) and ``E_F`` (100 - % accuracy over examples of the
    forgotten classes, higher is better; NaN without forgotten classes).

  Raises:
    TypeError, ValueError: class ids or labels that are not integers in ``[0, C)``;
      logits as :func:`per_class_accuracy` (not ``(N, C)``, of another length than the
      labels, NaN or inf).
  """
  logits = _checked_logits(logits, labels)
  num_classes = logits.shape[1]
  forgotten = _validate.class_ids(forgotten, num_classes, name="forgotten")
  correct = np.argmax(logits, axis=-1) == labels
  in_forget = np.isin(labels, np.asarray(forgotten, dtype=np.int64))
  pct = lambda m: float(100.0 * correct[m].mean()) if m.any() else float("nan")
  return {
      "accuracy": pct(np.ones_like(in_forget)),
      "A_R": pct(~in_forget),
      "E_F": 100.0 - pct(in_forget) if in_forget.any() else float("nan"),
  }


#: Constants :func:`shift_recovery` tries: 0, then 200 log-spaced values from 0.01 to 1000.
SHIFT_GRID = np.concatenate([[0.0], np.logspace(-2, 3, 200)])


def shift_recovery(logits: np.ndarray, labels: np.ndarray, forgotten: Sequence[int]) -> float:
  """How much of a forgetting one constant undoes: accuracy (%) on the forgotten classes'
  examples once the constant that maximises the whole set's accuracy is added back to
  their logits.

  A diagnostic of this project, not a metric of the paper. A move that only
  lowers the forgotten logits by a constant is undone by that one number (recovery close to
  the accuracy before forgetting). A high recovery does not prove a shallow forgetting:
  read it against the retrain oracle's, which is high too when the forgotten classes'
  examples sit between the remaining classes.

  Args:
    logits: ``(N, C)`` model outputs after forgetting.
    labels: ``(N,)`` true labels.
    forgotten: forgotten class ids (not empty).

  Returns:
    The accuracy in percent on the examples of the forgotten classes at the best constant
    of :data:`SHIFT_GRID` (the first of equally good ones).

  Raises:
    TypeError, ValueError: class ids or labels that are not integers in ``[0, C)``, no
      forgotten class, or logits as :func:`per_class_accuracy` (not ``(N, C)``, of
      another length than the labels, NaN or inf).
  """
  logits = _checked_logits(logits, labels)
  num_classes = logits.shape[1]
  forgotten = _validate.class_ids(forgotten, num_classes, name="forgotten")
  if not forgotten:
    raise errors.BadRequest("shift_recovery needs at least one forgotten class")
  logits = np.asarray(logits, np.float64)
  columns = np.asarray(forgotten, np.int64)
  in_forget = np.isin(labels, columns)
  best, best_accuracy = 0.0, -1.0
  for delta in SHIFT_GRID:
    shifted = logits.copy()
    shifted[:, columns] += delta
    correct = np.argmax(shifted, -1) == labels
    if correct.mean() > best_accuracy:
      best_accuracy = correct.mean()
      best = 100.0 * correct[in_forget].mean() if in_forget.any() else float("nan")
  return float(best)
