"""Predict with and evaluate a bundle on labelled data: per-class accuracy, A_R, E_F."""

import dataclasses
import math
from typing import Any, Sequence

import jax
import numpy as np

from mnemonic_jax import _validate, errors
from mnemonic_jax import metrics, parallel, training
from mnemonic_jax.bundle import Bundle
from mnemonic_jax.checkpointing.bundle_format import check_bundle
from mnemonic_jax.workflow.inputs import prepare_images
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


def _checked_images(images: Any, input_shape: Sequence[int]) -> np.ndarray:
  """``images`` as an array ``(N, H, W, C)`` of the rank of ``input_shape``'s examples.

  Raises:
    BadRequestType: not an array (or a list that makes none).
    BadRequest: another rank than ``(N, *input_shape)``: flat ``(N, H*W*C)`` images, or
      ``(N, H, W)`` without their channel axis; the message names the shape expected.
  """
  if not (hasattr(images, "shape") and hasattr(images, "dtype")):
    try:
      images = np.asarray(images)
    except ValueError as e:  # Ragged nested lists.
      raise errors.BadRequestType(f"images must be an array (N, *input_shape) of uint8, got "
                                  f"a {type(images).__name__} that makes none: {e}") from None
  shape, expected = tuple(images.shape), tuple(input_shape)
  if len(shape) != 1 + len(expected):
    hint = ""
    if len(shape) == 2 and shape[1] == math.prod(expected):
      hint = f"; flat images? reshape them: images.reshape(-1, {', '.join(map(str, expected))})"
    elif len(shape) == len(expected) and shape[1:] == expected[:-1] and expected[-1] == 1:
      hint = "; add the channel axis: images[..., None]"
    raise errors.BadRequest(
        f"images must have shape (N, {', '.join(map(str, expected))}), N examples of the "
        f"model's input shape {expected} (NHWC; smaller images are zero-padded to it), got "
        f"{shape}{hint}")
  return images


def predict(bundle: Bundle, images: np.ndarray, *, batch_size: int = 1024,
            progress: bool = False, mesh=None) -> np.ndarray:
  """Logits of a bundle's model on uint8 images (padded to its input shape if needed).

  With ``mesh``, the parameters are placed on its devices once and each batch is split
  over its ``data`` axis. A mesh over several processes' devices: every process passes
  the same images, places only its rows of each batch and gets every logit back. With or
  without a mesh, the progress bar shows on process 0 only.

  Args:
    bundle: the model.
    images: uint8 ``(N, H, W, C)``, at most the bundle's ``input_shape`` (zero-padded to
      it); a list of images is taken as an array.
    batch_size: images per call, a positive int.
    progress: show a progress bar.
    mesh: optional device mesh.

  Returns:
    Logits ``(N, num_classes)`` in host memory; ``(0, num_classes)`` for no images.

  Raises:
    BadRequestType: ``bundle`` is not a Bundle; images that are not uint8 or not an
      array; ``batch_size`` not an int.
    BadRequest: a bundle whose fields do not describe its params (params of another
      model, codes not ``(num_classes, *input_shape)``, ``std`` not > 0, ...: see
      :func:`~mnemonic_jax.checkpointing.bundle_format.check_bundle`); images not
      ``(N, *input_shape)`` in rank (flat or without channels); ``batch_size`` < 1.
    DatasetError: images larger than the input shape, or of other channels.
  """
  _validate.bundle(bundle)
  check_bundle(bundle)
  return _predict(bundle, images, batch_size, progress, mesh)


def _predict(bundle: Bundle, images: np.ndarray, batch_size: int, progress: bool,
             mesh) -> np.ndarray:
  """:func:`predict` of a bundle already checked."""
  _batch_size(batch_size)
  images = prepare_images(_checked_images(images, bundle.input_shape), bundle.input_shape)
  fn = training.make_predict_fn(bundle.model, mean=bundle.mean, std=bundle.std, mesh=mesh)
  progress = progress and jax.process_index() == 0  # As training's: process 0 alone shows it.
  if mesh is None:
    return metrics.predict_in_batches(
        lambda x: fn(bundle.params, bundle.batch_stats, x), images, batch_size,
        progress=progress)
  params, batch_stats = parallel.replicate(mesh, (bundle.params, bundle.batch_stats))
  return metrics.predict_in_batches(
      lambda x: parallel.to_host(fn(params, batch_stats, parallel.shard_global_batch(mesh, x))),
      images, batch_size, multiple=parallel.num_shards(mesh),
      progress=progress)


def _batch_size(value: Any) -> None:
  if not _validate.is_integer(value):
    raise errors.BadRequestType(f"batch_size must be a positive int, got {value!r}")
  if value < 1:
    raise errors.BadRequest(f"batch_size must be a positive int (images per call), got {value}")


def evaluate(bundle: Bundle, images: np.ndarray, labels: np.ndarray, *,
             forgotten: Sequence[int] | None = None, progress: bool = False,
             mesh=None) -> Evaluation:
  """Per-class accuracy, A_R and E_F of a bundle (forgotten classes from its history).

  Args:
    bundle: the model.
    images: uint8 ``(N, H, W, C)``, as :func:`predict` takes them.
    labels: integer class ids ``(N,)`` (a list is taken as an array).
    forgotten: the classes scored as forgotten (default: the bundle's history).
    progress: show a progress bar.
    mesh: optional device mesh (see :func:`predict`).

  Returns:
    An :class:`Evaluation`; with no images, every accuracy NaN.

  Raises:
    BadRequestType, BadRequest: a bundle as :func:`predict` refuses it; labels that are
      not integers or not ``(N,)``, another number of labels than images, bad
      ``forgotten`` class ids; images as in :func:`predict`. All checked before the model
      runs.
    DatasetError: labels outside the model's classes, or images that do not fit it.
  """
  _validate.bundle(bundle)
  check_bundle(bundle)
  labels = np.asarray(labels)  # A list or a jax.Array: read once, on the host.
  if not np.issubdtype(labels.dtype, np.integer):  # np.bool_ is not a np.integer.
    raise errors.BadRequestType(f"labels must be integer class ids, got dtype {labels.dtype}; "
                                "cast them with .astype(int)")
  if labels.ndim != 1:
    raise errors.BadRequest(f"labels must have shape (N,), one class id per image, got "
                            f"{labels.shape}" + (" (one-hot? pass labels.argmax(-1))"
                                                 if labels.ndim == 2 else ""))
  if len(labels) and (labels.min() < 0 or labels.max() >= bundle.num_classes):
    raise DatasetError(
        f"labels run from {int(labels.min())} to {int(labels.max())} but the model has "
        f"{bundle.num_classes} classes; evaluate on the dataset the model was trained on")
  images = _checked_images(images, bundle.input_shape)
  if len(images) != len(labels):
    raise errors.BadRequest(f"{len(images)} images but {len(labels)} labels: pass one label "
                            "per image")
  forgotten = bundle.forgotten_classes if forgotten is None else forgotten
  _validate.class_ids(forgotten, bundle.num_classes, name="forgotten")
  logits = _predict(bundle, images, 1024, progress, mesh)
  summary = metrics.forgetting_metrics(logits, labels, forgotten)
  return Evaluation(
      per_class=metrics.per_class_accuracy(logits, labels, bundle.num_classes),
      logits=logits, labels=labels, **summary)
