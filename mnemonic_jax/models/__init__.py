"""Flax Linen models and a registry of them by name.

Every model is called as ``model.apply(variables, x, train=False)`` on a batch of NHWC
images and returns logits; models with BatchNorm keep their statistics in the
``batch_stats`` collection.
"""

import importlib
import importlib.util
import importlib.machinery
import os
import sys
from functools import partial
from typing import Any, Callable, Mapping

import flax.linen as nn

from mnemonic_jax import environment, errors
from mnemonic_jax.models.mlp import MLP
from mnemonic_jax.models.resnet import ResNet18
from mnemonic_jax.models.vit import ViT

_REGISTRY: dict[str, Callable[..., nn.Module]] = {
    "mlp": MLP,
    "resnet18_cifar": partial(ResNet18, stem="cifar"),
    "resnet18": partial(ResNet18, stem="imagenet"),
    "vit_tiny": ViT,
}


#: name -> where it was registered (see :func:`model_source`).
_SOURCES: dict[str, dict[str, str]] = {}


def register_model(name: str, factory: Callable[..., nn.Module]) -> None:
  """Adds ``factory(num_classes=..., **kwargs) -> nn.Module`` to the registry.

  Also notes where the call was made (see :func:`model_source`), so that a bundle of the
  model records it and a later process (e.g. ``mnemonic-jax forget``) can register the
  model again before building it (:func:`load_model_source`).

  Example:
    >>> register_model("mlp_small", partial(MLP, hidden=(16,)))
  """
  _REGISTRY[name] = factory
  caller = sys._getframe(1).f_globals  # pylint: disable=protected-access
  _SOURCES[name] = _source_of(caller.get("__name__"), caller.get("__file__"))


def _source_of(module: str | None, file: str | None) -> dict[str, str]:
  """``{"import": module}`` for an importable module, ``{"file": path}`` for a file run
  by path (a config file), ``{}`` for a script or an interactive session."""
  if not module or module == "__main__" or not file:
    return {}
  loaded = sys.modules.get(module)
  if loaded is not None and getattr(loaded, "__file__", None) == file and _importable(module, file):
    return {"import": module}
  return {"file": os.path.abspath(file)}


def _importable(module: str, file: str) -> bool:
  """Whether a fresh process finds ``module`` at ``file`` by its name (a config file that
  ml_collections loads by path under a made-up module name is not)."""
  if "." in module:
    return True  # Inside a package, which was itself found by name.
  spec = importlib.machinery.PathFinder.find_spec(module)
  return spec is not None and spec.origin is not None and (
      os.path.abspath(spec.origin) == os.path.abspath(file))


def model_source(name: str) -> dict[str, str]:
  """Where a registered model comes from, for a later process to register it again.

  Args:
    name: a registry name.

  Returns:
    ``{}`` for the built-in models and for models registered from a script
    (``__main__``) or an interactive session; ``{"import": "pkg.models"}`` when
    :func:`register_model` was called while importing that module;
    ``{"file": "/abs/path/config.py"}`` when it was called from a file run by path, such
    as a config file given to ``mnemonic-jax train``.
  """
  return dict(_SOURCES.get(name, {}))


class ModelSourceError(ValueError):
  """A recorded model source that cannot be loaded, or that does not register its model."""


def load_model_source(name: str, source: Mapping[str, str]) -> None:
  """Registers model ``name`` by importing the module or running the file it came from.

  Does nothing if ``name`` is registered already. Running a file executes its top-level
  code (a config file's ``get_config`` is not called); as with any import, load bundles
  only from sources you trust.

  Args:
    name: the registry name the source should register.
    source: what :func:`model_source` returned when the model was saved.

  Raises:
    ModelSourceError: the source names neither a module nor a file, the module cannot be
      imported or the file run (it is missing or raises), or it does not register
      ``name``. One line.
  """
  if name in _REGISTRY:
    return
  module, file = source.get("import"), source.get("file")
  try:
    if isinstance(module, str) and module:
      importlib.import_module(module)
    elif isinstance(file, str) and file:
      if not os.path.isfile(file):
        raise ModelSourceError(f"its source file {file} does not exist")
      stem = os.path.splitext(os.path.basename(file))[0].replace("-", "_")
      spec = importlib.util.spec_from_file_location(f"mnemonic_jax_model_source_{stem}", file)
      spec.loader.exec_module(importlib.util.module_from_spec(spec))
    else:
      raise ModelSourceError(f"its recorded source {dict(source)!r} names no module or file")
  except ModelSourceError:
    raise
  except Exception as e:  # pylint: disable=broad-except  # The user's code.
    environment.reraise(e)  # JAX that cannot start is not the source's fault.
    lines = str(e).strip().splitlines()
    what = f"module {module}" if module else f"file {file}"
    raise ModelSourceError(f"loading its source, {what}, raised {type(e).__name__}"
                           + (f": {lines[0]}" if lines else "")) from None
  if name not in _REGISTRY:
    what = f"module {module}" if module else f"file {file}"
    raise ModelSourceError(f"its source, {what}, was loaded but does not register it")


def available_models() -> list[str]:
  """Names accepted by :func:`create_model`."""
  return sorted(_REGISTRY)


def create_model(name: str, num_classes: int, **kwargs: Any) -> nn.Module:
  """Builds a registered model.

  Args:
    name: registry name, one of :func:`available_models`.
    num_classes: number of output logits.
    **kwargs: the model's own attributes (e.g. ``hidden=(256,)`` for ``mlp``). Lists,
      as a bundle's JSON metadata gives them, become tuples, so that the module can be
      hashed and equal models share the library's compiled programs.

  Returns:
    An unbound Flax Linen module.

  Raises:
    ValueError: ``name`` is not registered.

  Example:
    >>> model = create_model("mlp", num_classes=10, hidden=(64,))
  """
  if name not in _REGISTRY:
    raise errors.BadConfig(f"unknown model {name!r}; choose from {available_models()}")
  return _REGISTRY[name](num_classes=num_classes,
                         **{k: _frozen(v) for k, v in kwargs.items()})


def _frozen(value: Any) -> Any:
  """``value`` with every list (nested ones too) turned into a tuple."""
  if type(value) in (list, tuple):  # Not named tuples: they are hashable already.
    return tuple(_frozen(v) for v in value)
  return value


__all__ = ["MLP", "ModelSourceError", "ResNet18", "ViT", "available_models", "create_model",
           "load_model_source", "model_source", "register_model"]
