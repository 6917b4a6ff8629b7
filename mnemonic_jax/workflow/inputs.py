"""What a run takes in besides its config: images padded to the model's input, and the
pretrained weights a fine-tuning run starts from."""

from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from mnemonic_jax import errors
from mnemonic_jax.data import DatasetError


def prepare_images(images: np.ndarray, input_shape: Sequence[int]) -> np.ndarray:
  """Zero-pads images centrally up to the model's input size (e.g. 28x28 into 32x32).

  Raises:
    DatasetError: the images cannot be made to fit ``input_shape``.
  """
  h, w, c = images.shape[1:]
  th, tw, tc = input_shape
  if c != tc or h > th or w > tw:
    raise DatasetError(
        f"images of shape {(h, w, c)} do not fit a model with input shape {tuple(input_shape)}; "
        "give images of the dataset the model was trained on")
  if (h, w) == (th, tw):
    return images
  top, left = (th - h) // 2, (tw - w) // 2
  return np.pad(images, ((0, 0), (top, th - h - top), (left, tw - w - left), (0, 0)))


def merge_pretrained(fresh: Any, pretrained: Any, skip: Sequence[str] = ()) -> Any:
  """Takes every leaf of ``fresh`` from ``pretrained``, except under top-level names in ``skip``.

  For fine-tuning: e.g. ``skip=("Dense_0",)`` keeps a freshly initialised classifier head
  when the pretrained model has another number of classes.

  Raises:
    ValueError (BadCheckpoint): a leaf missing from ``pretrained``, of another shape, or
      not floating point where the model's is (another float dtype is cast).
  """
  flat = {tuple(str(getattr(k, "key", k)) for k in kp): v
          for kp, v in jax.tree_util.tree_flatten_with_path(pretrained)[0]}

  def take(keypath, leaf):
    path = tuple(str(getattr(k, "key", k)) for k in keypath)
    if path[0] in skip:
      return leaf
    if path not in flat:
      raise errors.BadCheckpoint(f"the pretrained weights have no {'/'.join(path)}; list its "
                                 "layer in pretrained_skip to initialise it afresh")
    if tuple(np.shape(flat[path])) != tuple(leaf.shape):
      raise errors.BadCheckpoint(f"pretrained {'/'.join(path)} has shape {np.shape(flat[path])}, "
                                 f"the model needs {leaf.shape}; list its layer in "
                                 "pretrained_skip")
    kind = np.asarray(flat[path]).dtype
    if jnp.issubdtype(leaf.dtype, jnp.floating) and not jnp.issubdtype(kind, jnp.floating):
      raise errors.BadCheckpoint(  # Cast, integers would have broken the model silently.
          f"pretrained {'/'.join(path)} is {kind}, the model's is {leaf.dtype}; give the "
          "floating-point weights the model was trained with")
    return jnp.asarray(flat[path], leaf.dtype)

  return jax.tree_util.tree_map_with_path(take, fresh)
