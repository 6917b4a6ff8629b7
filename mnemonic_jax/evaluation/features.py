"""Where a model's features are: the input of its classifier head.

The depth attacks (:mod:`mnemonic_jax.evaluation.depth`) that look inside a model read its
*penultimate features* ``z``, the input of the classifier head, and the head itself,
``logits = z @ kernel + bias``. This module finds both for any Flax Linen model of the
registry:

* **Found** (the default, every built-in model: ``mlp``, ``resnet18``, ``resnet18_cifar``,
  ``vit_tiny``): the head is the ``flax.linen.Dense`` whose output *is* the model's output
  (the same array, recorded with ``flax.linen.intercept_methods`` while the model is
  traced abstractly; nothing is computed). It must be called once, on an ``(N, D)`` input.
* **Declared**: a model whose logits are not the raw output of one ``Dense`` (scaled
  afterwards, or a head of another kind) names its head with :func:`register_head`
  (``path``: the module names from the root, e.g. ``("classifier",)``), or declares that it
  has no features to read (``path=None``). The attacks that rebuild logits from the head
  (prototype attack, head fine-tuning) then use ``z @ kernel + bias`` of that ``Dense``.

A model without features (declared so, or whose head cannot be found) gets a
:class:`NoFeatures` error from :func:`head_path`, :func:`head_of`, :func:`forward` with
``features=True`` and :func:`features_fn`; :func:`forward` with ``features=False`` (the
logits alone, e.g. for the one-constant and input-scale attacks) works on every model.

Example:
  >>> head = head_of(bundle)
  >>> head.path, head.kernel.shape
  (('Dense_1',), (32, 10))
  >>> out = forward(bundle, images[:4])
  >>> out.logits.shape, out.features.shape
  ((4, 10), (4, 32))
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from mnemonic_jax import _validate, errors, relearning
from mnemonic_jax.bundle import Bundle
from mnemonic_jax.checkpointing.bundle_format import check_bundle

PyTree = Any
#: Rows per forward call; a smaller set is padded up to a multiple of :data:`_BUCKET`.
BATCH_SIZE = 1024
_BUCKET = 128


class NoFeatures(errors.BadRequest):
  """A model whose penultimate features cannot be read (none declared, or no head found)."""


class Head(NamedTuple):
  """A model's classifier head: ``logits = features @ kernel + bias``.

  Attributes:
    path: the head module's names from the root, e.g. ``("Dense_1",)``.
    kernel: ``(D, C)`` float32.
    bias: ``(C,)`` float32 (zeros for a head without a bias).
  """

  path: tuple[str, ...]
  kernel: np.ndarray
  bias: np.ndarray


class Forward(NamedTuple):
  """What one pass of a model gives.

  Attributes:
    logits: ``(N, C)`` float32.
    features: ``(N, D)`` float32 head inputs, or ``None`` when not asked for.
  """

  logits: np.ndarray
  features: np.ndarray | None


#: model name -> declared head path (``None``: the model declares no features).
_DECLARED: dict[str, tuple[str, ...] | None] = {}


def register_head(model_name: str, path: Sequence[str] | None) -> None:
  """Declares where a registered model's classifier head is (or that it has none).

  Needed only when the head is not found (see the module docstring); a declaration
  replaces the search for every bundle of that model.

  Args:
    model_name: the name given to :func:`mnemonic_jax.models.register_model`.
    path: the head's module names from the root (an ``nn.Dense`` called once per forward
      pass on ``(N, D)`` with ``C`` outputs), e.g. ``("classifier",)``; ``None`` declares
      that the model has no features to read.

  Raises:
    BadRequestType: a name that is not a string or a path that is not a sequence of
      strings.

  Example:
    >>> register_head("my_model", ("head", "Dense_0"))  # doctest: +SKIP
  """
  if not isinstance(model_name, str) or not model_name:
    raise errors.BadRequestType(f"model_name must be a non-empty string, got {model_name!r}")
  if path is not None:
    if isinstance(path, str) or not all(isinstance(p, str) for p in path) or not path:
      raise errors.BadRequestType(f"path must be a non-empty sequence of module names, e.g. "
                                  f"('Dense_1',), or None; got {path!r}")
    path = tuple(path)
  _DECLARED[model_name] = path


def unregister_head(model_name: str) -> None:
  """Forgets a declaration of :func:`register_head` (the head is searched for again)."""
  _DECLARED.pop(model_name, None)


class _Call(NamedTuple):
  path: tuple[str, ...]
  kind: type
  in_shape: tuple[int, ...]
  out_shape: tuple[int, ...]
  is_output: bool


def _calls(bundle: Bundle) -> list[_Call]:
  """Every ``nn.Dense`` call of one abstract forward pass (shapes only, nothing computed)."""
  apply_fn = bundle.apply_fn()
  found: list[tuple[tuple[str, ...], type, Any, Any]] = []
  outputs: list[Any] = []

  def trace(apply_fn, params, x):
    def record(next_fun, args, kwargs, context):
      y = next_fun(*args, **kwargs)
      if context.method_name == "__call__" and isinstance(context.module, nn.Dense) and args:
        found.append((tuple(context.module.path), type(context.module), args[0], y))
      return y

    with nn.intercept_methods(record):
      out = apply_fn(params, x)
    outputs.append(out)
    return out

  jax.eval_shape(trace, apply_fn, bundle.params,
                 jax.ShapeDtypeStruct((2, *bundle.input_shape), jnp.float32))
  out = outputs[-1]
  return [_Call(p, k, tuple(np.shape(x)), tuple(np.shape(y)), y is out)
          for p, k, x, y in found]


def head_path(bundle: Bundle) -> tuple[str, ...]:
  """The module path of a bundle's classifier head (declared, or found).

  Args:
    bundle: a :class:`mnemonic_jax.bundle.Bundle`.

  Returns:
    The head's names from the root, e.g. ``("Dense_1",)`` for a one-hidden-layer ``mlp``.

  Raises:
    BadRequestType: ``bundle`` is not a Bundle.
    NoFeatures: the model declares no features, its declared head is not an ``nn.Dense``
      called once on ``(N, D)`` with ``C`` outputs, or no such head produces its logits.
  """
  _validate.bundle(bundle)
  name, num_classes = bundle.model_name, bundle.num_classes
  fix = (f"declare it with mnemonic_jax.evaluation.register_head({name!r}, path) (the head "
         "Dense's module names), or use the depth attacks that need no features")
  if name in _DECLARED and _DECLARED[name] is None:
    raise NoFeatures(f"model {name!r} declares no features (register_head({name!r}, None)); "
                     "the attacks on penultimate features (probe, nearest class mean, "
                     "prototype, head fine-tuning, CKA) do not apply to it")
  calls = _calls(bundle)
  if name in _DECLARED:
    path = _DECLARED[name]
    mine = [c for c in calls if c.path == path]
    if (len(mine) != 1 or len(mine[0].in_shape) != 2
        or mine[0].out_shape != (2, num_classes)):
      shapes = [(c.in_shape, c.out_shape) for c in mine]
      raise NoFeatures(f"model {name!r} declares its head at {path}, but that is not an "
                       f"nn.Dense called once on (N, D) with {num_classes} outputs (calls: "
                       f"{shapes or 'none'}); {fix}")
    return path
  heads = [c for c in calls if c.is_output]
  if len(heads) != 1 or len(heads[0].in_shape) != 2 or heads[0].out_shape != (2, num_classes):
    raise NoFeatures(f"model {name!r}: no classifier head found (its logits are not the "
                     f"output of one nn.Dense called once on (N, D)); {fix}")
  if sum(c.path == heads[0].path for c in calls) != 1:
    raise NoFeatures(f"model {name!r}: its head {heads[0].path} is called more than once per "
                     f"forward pass; {fix}")
  return heads[0].path


def head_of(bundle: Bundle) -> Head:
  """The bundle's classifier head: its path, kernel ``(D, C)`` and bias ``(C,)``.

  Raises:
    BadRequestType: ``bundle`` is not a Bundle.
    NoFeatures: as :func:`head_path`.
  """
  path = head_path(bundle)
  node = bundle.params
  for name in path:
    node = node[name]
  kernel = np.asarray(node["kernel"], np.float32)
  bias = (np.asarray(node["bias"], np.float32) if "bias" in node
          else np.zeros(kernel.shape[-1], np.float32))
  return Head(path, kernel, bias)


@functools.partial(jax.jit, static_argnames=("path",))
def _forward(apply_fn, params, images, mean, std, scale, path):
  """Logits (and the head's input, at ``path``) on uint8 images normalised, times ``scale``."""
  x = (images.astype(jnp.float32) / 255.0 - mean) / std * scale
  if path is None:
    return apply_fn(params, x), None
  return logits_and_head_input(apply_fn, params, x, path)


def logits_and_head_input(apply_fn: Callable, params: Any, x: jax.Array,
                          path: tuple[str, ...]) -> tuple[jax.Array, jax.Array]:
  """``(logits, head input)``: ``apply_fn(params, x)`` and the input of the Flax module at
  ``path`` (the head, :func:`head_path`) as it was called, read with
  ``flax.linen.intercept_methods`` (traceable; the first call's if it is called twice).

  Raises:
    NoFeatures: no module at ``path`` is called in the forward pass.
  """
  seen = []

  def record(next_fun, args, kwargs, context):
    if context.method_name == "__call__" and tuple(context.module.path) == path:
      seen.append(args[0])
    return next_fun(*args, **kwargs)

  with nn.intercept_methods(record):
    logits = apply_fn(params, x)
  if not seen:
    raise NoFeatures(f"no module at path {path} is called in the model's forward pass; give "
                     "the head's path as head_path(bundle) returns it, or path=None")
  return logits, seen[0]


def forward(bundle: Bundle, images: np.ndarray, *, features: bool = True, scale: float = 1.0,
            batch_size: int = BATCH_SIZE, path: tuple[str, ...] | None = None) -> Forward:
  """Logits and penultimate features of a bundle's model on uint8 images, inference mode.

  One jitted program per model and batch shape (module-level ``jax.jit``, the model's
  ``apply_fn`` a pytree argument); batches are padded to a multiple of 128 rows.

  Args:
    bundle: a :class:`mnemonic_jax.bundle.Bundle`.
    images: ``uint8`` ``(N, *bundle.input_shape)``.
    features: also return the head's input (the model must have features).
    scale: multiplies the *normalised* input (the input-scale queries); 1 is the model.
    batch_size: rows per call.
    path: the head's path when known (:func:`head_path`), so it is not searched again.

  Returns:
    :class:`Forward` with ``(N, C)`` logits and ``(N, D)`` features (or ``None``).

  Raises:
    BadRequestType: ``bundle`` not a Bundle; images that are not ``uint8`` (floats already
      scaled), a ``batch_size`` or ``scale`` that is not a number, ``features`` not a bool,
      ``path`` not a tuple of module names.
    BadRequest: a bundle whose fields do not describe its params
      (:func:`~mnemonic_jax.checkpointing.bundle_format.check_bundle`), images that do not
      fit the model, ``batch_size < 1``, a ``scale`` that is not finite and > 0.
    NoFeatures: ``features=True`` for a model without features (see :func:`head_path`), or
      a ``path`` at which no module is called.
  """
  _validate.bundle(bundle)
  check_bundle(bundle, codes=False)  # Not read here.
  if not isinstance(features, (bool, np.bool_)):
    raise errors.BadRequestType(f"features must be True or False, got {features!r}")
  if path is not None and not (isinstance(path, tuple) and path
                               and all(isinstance(p, str) for p in path)):
    raise errors.BadRequestType(f"path must be a tuple of module names (as head_path gives "
                                f"it, e.g. ('Dense_1',)) or None, got {path!r}")
  images = np.asarray(images)
  if images.dtype != np.uint8:
    raise errors.BadRequestType(f"images are {images.dtype}; forward takes the uint8 images "
                                "as loaded (the bundle normalises them itself)")
  batch_size = relearning.check_integer("forward", "batch_size", batch_size, low=1)
  scale = relearning.check_number("forward", "scale", scale, low=0.0, low_open=True)
  if images.ndim != len(bundle.input_shape) + 1 or images.shape[1:] != tuple(
      bundle.input_shape):
    raise errors.BadRequest(f"images of shape {images.shape} do not fit the model, which takes "
                            f"(N, {', '.join(map(str, bundle.input_shape))})")
  path = (path or head_path(bundle)) if features else None
  apply_fn = bundle.apply_fn()
  mean = jnp.asarray(bundle.mean, jnp.float32)
  std = jnp.asarray(bundle.std, jnp.float32)
  n = len(images)
  size = min(int(batch_size), -(-max(n, 1) // _BUCKET) * _BUCKET)
  logits, feats = [], []
  for start in range(0, n, size):
    batch = images[start:start + size]
    pad = size - len(batch)
    if pad:
      batch = np.concatenate([batch, np.zeros((pad, *batch.shape[1:]), batch.dtype)])
    out, z = _forward(apply_fn, bundle.params, batch, mean, std, jnp.float32(scale), path)
    logits.append(np.asarray(out, np.float32)[:size - pad])
    if z is not None:
      feats.append(np.asarray(z, np.float32).reshape(size, -1)[:size - pad])
  if not logits:  # No images: the feature width from the abstract shapes (nothing runs).
    if not features:
      return Forward(np.zeros((0, bundle.num_classes), np.float32), None)
    _, z = jax.eval_shape(functools.partial(_forward, path=path), apply_fn, bundle.params,
                          jax.ShapeDtypeStruct((1, *images.shape[1:]), np.uint8), mean, std,
                          jnp.float32(scale))
    return Forward(np.zeros((0, bundle.num_classes), np.float32),
                   np.zeros((0, int(np.prod(z.shape[1:]))), np.float32))
  return Forward(np.concatenate(logits), np.concatenate(feats) if features else None)


def features_fn(bundle: Bundle) -> Callable[[np.ndarray], np.ndarray]:
  """``fn(uint8 images (N, ...)) -> (N, D)`` penultimate features of the bundle's model.

  Raises:
    BadRequestType: ``bundle`` is not a Bundle.
    NoFeatures: at once, for a model without features (see :func:`head_path`).
  """
  head_path(bundle)
  return lambda images: forward(bundle, images).features
