"""A registered model's abstract variables: the restore target of a bundle, built
without allocating anything."""

from __future__ import annotations

import json
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp

from mnemonic_jax import environment
from mnemonic_jax.checkpointing._common import CheckpointError, PyTree, _one_line
from mnemonic_jax.models import create_model


def _spec_str(model_name: str, model_kwargs: Mapping[str, Any], input_shape: Sequence[int]) -> str:
  return f"model {model_name!r} {dict(model_kwargs)} on inputs {tuple(input_shape)}"


def abstract_variables(model_name: str, num_classes: int, input_shape: Sequence[int],
                       model_kwargs: Mapping[str, Any] | None = None) -> dict[str, PyTree]:
  """Shapes and dtypes of a registered model's variables, without allocating them.

  Args:
    model_name: registry name (see :func:`mnemonic_jax.models.create_model`).
    num_classes: number of output logits.
    input_shape: shape of one input, e.g. ``(28, 28, 1)``.
    model_kwargs: the model's other attributes.

  Returns:
    ``{"params": ..., "batch_stats": ...}`` of ``jax.ShapeDtypeStruct`` (``batch_stats``
    is ``{}`` for models without BatchNorm).

  Raises:
    CheckpointError: the model is not registered or cannot take such inputs.
  """
  model_kwargs = dict(model_kwargs or {})
  try:
    kwargs_key = json.dumps(model_kwargs, sort_keys=True, default=repr)
  except (TypeError, ValueError):
    kwargs_key = None
  factory = _registered(model_name)
  key = (model_name, int(num_classes), tuple(int(d) for d in input_shape), kwargs_key)
  entry = _ABSTRACT.get(key) if kwargs_key is not None else None
  if entry is None or entry[0] is not factory:  # Re-registered since: build again.
    entry = (factory, _abstract_variables(model_name, num_classes, input_shape, model_kwargs))
    if kwargs_key is not None:
      _ABSTRACT[key] = entry
  return jax.tree.map(lambda leaf: leaf, entry[1])  # A fresh tree of the same leaves.


#: (model, classes, input shape, kwargs) -> (its factory, abstract variables): a load and
#: the save that follows (``mnemonic-jax forget``) trace ``model.init`` once.
_ABSTRACT: dict[tuple[Any, ...], tuple[Any, dict[str, PyTree]]] = {}


def _registered(model_name: str) -> Any:
  from mnemonic_jax import models  # pylint: disable=import-outside-toplevel

  return models._REGISTRY.get(model_name)  # pylint: disable=protected-access


def _abstract_variables(model_name: str, num_classes: int, input_shape: Sequence[int],
                        model_kwargs: Mapping[str, Any]) -> dict[str, PyTree]:
  spec = _spec_str(model_name, model_kwargs, input_shape)
  try:
    model = create_model(model_name, int(num_classes), **model_kwargs)
    x = jax.ShapeDtypeStruct((1, *(int(d) for d in input_shape)), jnp.float32)
    # The key is made inside the trace: nothing is compiled or run.
    variables = jax.eval_shape(
        lambda inputs: model.init(jax.random.key(0), inputs, train=False), x)
  except Exception as e:  # pylint: disable=broad-except
    environment.reraise(e)  # JAX that cannot start is not the bundle's fault.
    raise CheckpointError(f"cannot build {spec}: {_one_line(e)}") from None
  variables = dict(variables)
  return {"params": variables.get("params", {}), "batch_stats": variables.get("batch_stats", {})}

