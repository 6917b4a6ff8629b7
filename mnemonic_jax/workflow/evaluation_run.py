"""Predict with and evaluate a bundle on labelled data: per-class accuracy, A_R, E_F."""

import dataclasses
from typing import Sequence

import jax
import numpy as np

from mnemonic_jax import _validate
from mnemonic_jax import metrics, parallel, training
from mnemonic_jax.bundle import Bundle
from mnemonic_jax.workflow.training_run import prepare_images
from mnemonic_jax.data import DatasetError


@dataclasses.dataclass(frozen=True)
class Evaluation:
  """Accuracy of a bundle on a labelled dataset.

  Attributes:
    per_class: accuracy (%) of each class.
    accuracy: accuracy (%) over all examples.
    A_R: accuracy (%) over examples of the remaining classes.
    E_F: 100 - accuracy (%) over examples of forgotten classes (NaN if none forgotten).
    logits: the model's outputs, ``(N, C)``.
    labels: the true labels.
  """

  per_class: np.ndarray
  accuracy: float
  A_R: float
  E_F: float
  logits: np.ndarray
  labels: np.ndarray


def predict(bundle: Bundle, images: np.ndarray, *, batch_size: int = 1024,
            progress: bool = False, mesh=None) -> np.ndarray:
  """Logits of a bundle's model on uint8 images (padded to its input shape if needed).

  With ``mesh``, the parameters are placed on its devices once and each batch is split
  over its ``data`` axis. A mesh over several processes' devices: every process passes
  the same images, places only its rows of each batch and gets every logit back (the
  progress bar shows on process 0 only).
  """
  _validate.bundle(bundle)
  images = prepare_images(images, bundle.input_shape)
  fn = training.make_predict_fn(bundle.model, mean=bundle.mean, std=bundle.std, mesh=mesh)
  if mesh is None:
    return metrics.predict_in_batches(
        lambda x: fn(bundle.params, bundle.batch_stats, x), images, batch_size,
        progress=progress)
  params, batch_stats = parallel.replicate(mesh, (bundle.params, bundle.batch_stats))
  return metrics.predict_in_batches(
      lambda x: parallel.to_host(fn(params, batch_stats, parallel.shard_global_batch(mesh, x))),
      images, batch_size, multiple=parallel.num_shards(mesh),
      progress=progress and jax.process_index() == 0)


def evaluate(bundle: Bundle, images: np.ndarray, labels: np.ndarray, *,
             forgotten: Sequence[int] | None = None, progress: bool = False,
             mesh=None) -> Evaluation:
  """Per-class accuracy, A_R and E_F of a bundle (forgotten classes from its history).

  Raises:
    DatasetError: labels outside the model's classes, or images that do not fit it.
  """
  _validate.bundle(bundle)
  if len(labels) and (labels.min() < 0 or labels.max() >= bundle.num_classes):
    raise DatasetError(
        f"labels run to {int(labels.max())} but the model has {bundle.num_classes} classes; "
        "evaluate on the dataset the model was trained on")
  logits = predict(bundle, images, progress=progress, mesh=mesh)
  forgotten = bundle.forgotten_classes if forgotten is None else forgotten
  summary = metrics.forgetting_metrics(logits, labels, forgotten)
  return Evaluation(
      per_class=metrics.per_class_accuracy(logits, labels, bundle.num_classes),
      logits=logits, labels=labels, **summary)
