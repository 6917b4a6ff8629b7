"""The bundle: everything a trained model needs to be evaluated and to forget.

One type travels through every stage (train -> checkpoint -> forget -> evaluate), so no
stage re-derives what an earlier one knew: the model spec, its variables, its mnemonic
codes, the input normalisation and the history of what was done to the model since
training (forgetting requests, and codes attached to a model trained without them).
"""

import dataclasses
import json
import os
from typing import Any, Callable, Mapping, Sequence

import chex
import jax
import jax.numpy as jnp
import numpy as np

from mnemonic_jax import _validate, errors
from mnemonic_jax.pytrees import Static
from mnemonic_jax.models import create_model

PyTree = Any

#: ``event`` of a history entry recording codes attached by fine-tuning
#: (:func:`mnemonic_jax.attach.attach_codes`); such an entry forgets nothing
#: (``classes == []``). Entries without ``event`` are forgetting requests.
ATTACH_CODES_EVENT = "attach-codes"
#: ``event`` of a history entry recording how a bundle was imported
#: (:func:`mnemonic_jax.checkpointing.import_params`: how many of its codes the model
#: classifies as their class); it forgets nothing (``classes == []``).
IMPORT_EVENT = "import"
#: The events that forget nothing (their entries have ``classes == []``).
NON_FORGETTING_EVENTS = (ATTACH_CODES_EVENT, IMPORT_EVENT)


def _json_default(obj: Any) -> Any:
  if isinstance(obj, np.generic):
    return obj.item()
  if isinstance(obj, (np.ndarray, jax.Array)):
    return np.asarray(obj).tolist()
  if isinstance(obj, os.PathLike):
    return os.fspath(obj)
  raise TypeError(f"{type(obj).__name__} is not JSON-serialisable")


def _plain_keys(obj: Any) -> Any:
  """``obj`` with numpy scalar dict keys made Python ones (JSON then writes them)."""
  if isinstance(obj, Mapping):
    return {(k.item() if isinstance(k, np.generic) else k): _plain_keys(v)
            for k, v in obj.items()}
  if isinstance(obj, (list, tuple)):
    return [_plain_keys(v) for v in obj]
  return obj


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
  keys = [k for k, _ in pairs]
  if len(set(keys)) != len(keys):
    twice = sorted({k for k in keys if keys.count(k) > 1})
    raise ValueError(f"keys {twice} occur twice once written as JSON strings (e.g. 1 and "
                     "'1')")
  return dict(pairs)


def json_value(obj: Any, what: str) -> Any:
  """``obj`` as it reads back from JSON: what a bundle's metadata holds after save and load.

  Dict keys become strings (``{0: 19}`` -> ``{"0": 19}``), tuples lists, numpy scalars and
  arrays Python numbers and lists, paths strings. Applying it twice changes nothing.

  Args:
    obj: a JSON-able value.
    what: what it is, for the message.

  Returns:
    The value after a JSON round trip.

  Raises:
    BadRequestType: ``obj`` holds something JSON cannot write (an object, a function), a
      dict key that is not a string, number, bool or None, or two keys that JSON writes
      alike (``1`` and ``"1"``: one would be lost).
  """
  try:
    return json.loads(json.dumps(_plain_keys(obj), default=_json_default),
                      object_pairs_hook=_unique_keys)
  except (TypeError, ValueError, RecursionError) as e:
    line = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
    raise errors.BadRequestType(
        f"{what} is not JSON-serialisable ({line}); use plain numbers, strings, lists and "
        "dicts with string keys") from None


def _as_saved(obj: Any) -> Any:
  """:func:`json_value` of ``obj``, or ``obj`` itself where JSON cannot write it
  (``save_bundle`` refuses it then, with the reason)."""
  try:
    return json_value(obj, "")
  except errors.BadRequestType:
    return obj


@dataclasses.dataclass(frozen=True)
class Bundle:
  """A trained classifier together with its mnemonic codes.

  Attributes:
    model_name: registry name (see :func:`mnemonic_jax.models.create_model`).
    model_kwargs: the model's attributes other than ``num_classes`` (JSON-able).
    params: trainable parameters, the ``"params"`` collection of the model's Flax
      variables (for ``mlp``: ``{"Dense_0": {"kernel", "bias"}, ..., "Dense_N": ...}``),
      so that ``module.apply({"params": bundle.params}, x)`` runs them in a module of your
      own with the same tree; there is no export command, this is how a result leaves.
    batch_stats: BatchNorm running statistics (``{}`` for models without BatchNorm); pass
      ``{"params": ..., "batch_stats": ...}`` to such a module.
    codes: mnemonic codes, shape ``(num_classes, *input_shape)``, in the model's
      (normalised) input space.
    num_classes: number of classes.
    input_shape: shape of one input, e.g. ``(28, 28, 1)``.
    mean: per-channel mean subtracted from images scaled to [0, 1]: the model's input
      is ``(images / 255 - mean) / std`` for uint8 images.
    std: per-channel standard deviation images are divided by.
    class_names: one name per class.
    dataset: name of the training dataset (for evaluation defaults).
    config: the training configuration (JSON-able dict), stored as it reads back from
      JSON as ``history`` is.
    history: what was done to the model since training, oldest first; each a JSON-able
      dict with at least ``classes``: a forgetting request (``classes`` the forgotten
      class ids), codes attached by fine-tuning (``event`` :data:`ATTACH_CODES_EVENT`,
      ``classes`` empty) or an import (``event`` :data:`IMPORT_EVENT`, ``classes``
      empty). Stored as it reads back from JSON (:func:`json_value`: string dict keys,
      lists for tuples, Python numbers for numpy scalars) whenever a bundle is made or
      replaced, so that it is the same before and after ``save_bundle`` and
      ``load_bundle`` (an entry JSON cannot write is kept as given: ``save_bundle``
      refuses it).
    model_source: where a model registered by the user comes from
      (:func:`mnemonic_jax.models.model_source`: ``{"import": module}`` or ``{"file":
      path}``), so that loading the bundle elsewhere can register it first; ``{}`` for
      the built-in models (``save_bundle`` fills it from the registry when empty).
    model_attributes: every attribute of the model as it was when the bundle was first
      saved, defaults included (:func:`mnemonic_jax.models.model_attributes`), so that
      loading can tell a model whose defaults changed since; ``{}`` until then
      (``save_bundle`` fills it from the model built now when empty).
  """

  model_name: str
  model_kwargs: dict[str, Any]
  params: PyTree
  batch_stats: PyTree
  codes: chex.Array
  num_classes: int
  input_shape: tuple[int, ...]
  mean: tuple[float, ...] = (0.0,)
  std: tuple[float, ...] = (1.0,)
  class_names: tuple[str, ...] = ()
  dataset: str = ""
  config: dict[str, Any] = dataclasses.field(default_factory=dict)
  history: tuple[dict[str, Any], ...] = ()
  model_source: dict[str, str] = dataclasses.field(default_factory=dict)
  model_attributes: dict[str, str] = dataclasses.field(default_factory=dict)

  def __post_init__(self):
    # Every construction and replace() goes through here: history and config are kept as
    # save_bundle/load_bundle give them back, so no writer has to remember.
    history = self.history
    if not isinstance(history, (list, tuple)):
      raise errors.BadRequestType(f"Bundle history must be a tuple of dicts, got "
                                  f"{type(history).__name__}")
    for i, entry in enumerate(history):
      if not isinstance(entry, Mapping):
        raise errors.BadRequestType(f"Bundle history entry {i} is of type "
                                    f"{type(entry).__name__}, not a dict")
    object.__setattr__(self, "history", tuple(_as_saved(dict(entry)) for entry in history))
    if isinstance(self.config, Mapping):
      object.__setattr__(self, "config", _as_saved(dict(self.config)))

  def replace(self, **changes: Any) -> "Bundle":
    return dataclasses.replace(self, **changes)

  @property
  def model(self):
    return create_model(self.model_name, self.num_classes, **self.model_kwargs)

  @property
  def forgotten_classes(self) -> tuple[int, ...]:
    """Sorted union of every class forgotten so far."""
    return tuple(sorted({int(c) for request in self.history for c in request["classes"]}))

  def earlier_forgotten(self, classes: Sequence[int]) -> tuple[int, ...]:
    """Classes forgotten by earlier requests and not in ``classes``.

    A new request excludes them: they are neither forgotten nor remaining (the
    ``exclude=`` of :func:`mnemonic_jax.forgetting.forget`).

    Raises:
      TypeError, ValueError: ``classes`` not integer class ids of this bundle (as
        :func:`mnemonic_jax.forgetting.forget` refuses them): ``[55]`` of 10 classes.
    """
    from mnemonic_jax import _validate  # pylint: disable=import-outside-toplevel (a cycle)
    asked = set(_validate.class_ids(classes, self.num_classes))
    return tuple(c for c in self.forgotten_classes if c not in asked)

  @property
  def variables(self) -> dict[str, PyTree]:
    return model_variables(self.params, self.batch_stats)

  def apply_fn(self) -> Callable[[PyTree, jax.Array], jax.Array]:
    """``apply_fn(params, x) -> logits`` in inference mode, closing over batch_stats."""
    return inference_apply_fn(self.model, self.batch_stats)

  def normalize(self, images: chex.Array) -> jax.Array:
    """Maps uint8 images to the model's input space."""
    return normalize(images, self.mean, self.std)


@jax.tree_util.register_pytree_node_class
class InferenceApply:
  """``apply_fn(params, x) -> logits`` of a Linen model, BatchNorm in inference mode.

  A pytree: the BatchNorm statistics are its leaves and the model its static part, so
  the library's jitted programs take the statistics as traced arguments (new values do
  not recompile) and are cached on the model (equal models share programs; a model that
  cannot be hashed, e.g. one with a list attribute, is matched by identity).

  Attributes:
    model: the Flax Linen module (called with ``train=False``).
    batch_stats: its BatchNorm statistics (``{}`` if it has none).
  """

  def __init__(self, model: Any, batch_stats: PyTree):
    self.model = model
    self.batch_stats = batch_stats

  def __call__(self, params: PyTree, x: jax.Array) -> jax.Array:
    return self.model.apply(model_variables(params, self.batch_stats), x, train=False)

  def __repr__(self) -> str:
    return f"InferenceApply({self.model!r})"

  def tree_flatten(self):
    return (self.batch_stats,), Static(self.model)

  @classmethod
  def tree_unflatten(cls, static, children):
    return cls(static.value, children[0])


def inference_apply_fn(model, batch_stats: PyTree) -> InferenceApply:
  """Wraps a Linen model as ``apply_fn(params, x) -> logits`` (BatchNorm in inference mode).

  BatchNorm statistics are carried along, so they are neither differentiated nor
  perturbed. The model is called as ``model.apply(variables, x, train=False)``, so its
  ``__call__`` must take a ``train`` keyword (the models of
  :func:`mnemonic_jax.create_model` do); for one without it, pass
  ``lambda p, x: model.apply({"params": p}, x)``, defined once and reused (a new function
  object is a new program to compile).

  Args:
    model: a Flax Linen module whose ``__call__`` takes ``train``.
    batch_stats: its BatchNorm statistics (``variables["batch_stats"]``; ``{}`` if none).

  Returns:
    An :class:`InferenceApply`: a pytree, so equal models share compiled programs.

  Raises:
    BadRequestType: ``model`` not a Linen module instance (its class, or ``model.apply``),
      ``batch_stats`` not a mapping, or holding an array that is not floating point.
    BadRequest: ``batch_stats`` holding the whole variables (a ``"params"`` or
      ``"batch_stats"`` key): pass ``variables["batch_stats"]``; a statistic that is NaN
      or infinite (read on the host unless traced).

  Example:
    >>> apply_fn = inference_apply_fn(create_model("mlp", 4, hidden=(8,)), {})
    >>> same = inference_apply_fn(create_model("mlp", 4, hidden=(8,)), {})
    >>> jax.tree.structure(apply_fn) == jax.tree.structure(same)  # Shares programs.
    True
  """
  import flax.linen as nn  # pylint: disable=import-outside-toplevel  # Loaded by any model.

  if not isinstance(model, nn.Module):
    given = getattr(model, "__qualname__", None) or type(model).__name__
    raise errors.BadRequestType(
        f"inference_apply_fn: model must be a Flax Linen module instance (e.g. "
        f"mnemonic_jax.create_model(...)), got {given}; pass the module itself, not its "
        "class or its apply method")
  if not isinstance(batch_stats, Mapping):
    raise errors.BadRequestType(f"inference_apply_fn: batch_stats must be a mapping "
                                f"(variables['batch_stats'], or {{}}), got "
                                f"{type(batch_stats).__name__}")
  if "params" in batch_stats or "batch_stats" in batch_stats:
    raise errors.BadRequest("inference_apply_fn: batch_stats holds the model's variables "
                            "('params' or 'batch_stats' keys); pass variables['batch_stats']")
  _check_statistics(batch_stats)
  return InferenceApply(model, batch_stats)


def _check_statistics(batch_stats: Mapping) -> None:
  """Refuses BatchNorm statistics that are not float or not finite (walk5 V11: NaN
  statistics of a diverged run gave NaN Fishers and codes scored as forgotten, silently;
  integer ones were cast). Traced statistics (inside a caller's ``jit``) and abstract ones
  (``jax.ShapeDtypeStruct``) are not read."""
  leaves = jax.tree_util.tree_leaves_with_path(batch_stats)
  if any(isinstance(x, (jax.core.Tracer, jax.ShapeDtypeStruct)) for _, x in leaves):
    return  # Traced or abstract (shapes only): no values to read.
  for path, x in leaves:
    where = jax.tree_util.keystr(path)
    dtype = np.dtype(x.dtype) if hasattr(x, "dtype") else np.asarray(x).dtype
    if not jnp.issubdtype(dtype, jnp.floating):
      raise errors.BadRequestType(f"inference_apply_fn: batch_stats{where} is {dtype}, not "
                                  "floating point: BatchNorm statistics are floats")
    if not _validate.isfinite_on_host(x).all():
      raise errors.BadRequest(
          f"inference_apply_fn: batch_stats{where} holds NaN or inf (the statistics of a "
          "diverged run?): every Fisher and code score computed through them would be "
          "NaN; use the statistics of a finite checkpoint")


def model_variables(params: PyTree, batch_stats: PyTree) -> dict[str, PyTree]:
  """Flax variables ``{"params", "batch_stats"}``, without an empty ``batch_stats``."""
  return {"params": params, "batch_stats": batch_stats} if batch_stats else {"params": params}


def normalize(images: chex.Array, mean, std) -> jax.Array:
  """``(images / 255 - mean) / std`` per channel, as float32."""
  x = jnp.asarray(images, jnp.float32) / 255.0
  return (x - jnp.asarray(mean, jnp.float32)) / jnp.asarray(std, jnp.float32)


def host_copy(tree: PyTree) -> PyTree:
  """Moves a pytree of arrays to host numpy (for saving and comparing)."""
  return jax.tree.map(np.asarray, tree)
