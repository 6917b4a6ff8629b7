"""Flax Linen models and a registry of them by name.

Every model is called as ``model.apply(variables, x, train=False)`` on a batch of NHWC
images and returns logits; models with BatchNorm keep their statistics in the
``batch_stats`` collection.
"""

import dataclasses
import hashlib
import importlib
import importlib.util
import importlib.machinery
import inspect
import os
import sys
import warnings
from functools import partial
from typing import Any, Callable, Mapping

import flax.linen as nn
import numpy as np

from mnemonic_jax import environment, errors
from mnemonic_jax.models import attributes
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


#: The names registered when the package is imported.
BUILT_IN = tuple(_REGISTRY)


def register_model(name: str, factory: Callable[..., nn.Module], *,
                   replace: bool = False) -> None:
  """Adds ``factory(num_classes=..., **kwargs) -> nn.Module`` to the registry.

  Also notes where the call was made (see :func:`model_source`), so that a bundle of the
  model records it and a later process (e.g. ``mnemonic-jax forget``) can register the
  model again before building it (:func:`load_model_source`).

  A name already registered is refused unless ``replace=True``: every later
  :func:`create_model` of that name, and every bundle of a model of that name, would be
  built by the new factory. The same module or file registering the same factory (by
  its name in the source) again, as a config file that the loader runs a second time
  does, is not a replacement.

  Args:
    name: a non-empty string.
    factory: a callable, e.g. a Flax Linen module class, taking ``num_classes=`` and the
      model's attributes as keywords.
    replace: replace the factory of a name already registered (a built-in one too).

  Raises:
    BadRequestType: ``name`` is not a non-empty string, ``factory`` is not callable, or
      ``replace`` is not a bool.
    BadRequest: ``name`` is already registered (built in, or from elsewhere) and
      ``replace`` is not True.

  Example:
    >>> register_model("mlp_small", partial(MLP, hidden=(16,)))
  """
  if not isinstance(name, str) or not name:
    raise errors.BadRequestType(f"register_model: name must be a non-empty string, got "
                                f"{name!r}")
  if not callable(factory):
    raise errors.BadRequestType(
        f"register_model: factory must be callable as factory(num_classes=..., **kwargs) -> "
        f"a Flax module (e.g. the module class), got {type(factory).__name__}")
  if not isinstance(replace, (bool, np.bool_)):
    raise errors.BadRequestType(f"register_model: replace must be True or False, got "
                                f"{replace!r}")
  caller = sys._getframe(1).f_globals  # pylint: disable=protected-access
  source = _source_of(caller.get("__name__"), caller.get("__file__"), factory)
  again = (bool(source) and _place(_SOURCES.get(name, {})) == _place(source)
           and name not in BUILT_IN and _identity(_REGISTRY[name]) == _identity(factory))
  if name in _REGISTRY and not (replace or again):
    where = ("a built-in model" if name in BUILT_IN and name not in _SOURCES else
             f"registered from {_where(_SOURCES.get(name, {}))}")
    raise errors.BadRequest(
        f"register_model: a model named {name!r} is already registered ({where}); every "
        "create_model and bundle of that name would build the new one: choose another "
        "name, or pass replace=True to replace it")
  _REGISTRY[name] = factory
  _SOURCES[name] = source


def _identity(factory: Any) -> tuple[Any, ...]:
  """What a factory is as written in its source (``Net``, ``partial(MLP, hidden=(16,))``),
  the same when the file that defines it runs again."""
  if isinstance(factory, partial):
    return (_identity(factory.func), repr(factory.args), repr(sorted(factory.keywords.items())))
  return (getattr(factory, "__qualname__", type(factory).__qualname__),)


def _where(source: Mapping[str, str]) -> str:
  """``source`` (see :func:`model_source`) in words."""
  if "import" in source:
    return f"module {source['import']}"
  if "file" in source:
    return f"file {source['file']}"
  return "a script or an interactive session"


def _source_of(module: str | None, file: str | None, factory: Any) -> dict[str, str]:
  """``{"import": module}`` for an importable module, ``{"file": path}`` for a file run
  by path (a config file), ``{}`` for a script or an interactive session; with the
  ``"sha256"`` of that file and of the one defining ``factory`` where they can be read
  (:func:`load_model_source` compares it)."""
  if not module or module == "__main__" or not file:
    return {}
  loaded = sys.modules.get(module)
  if loaded is not None and getattr(loaded, "__file__", None) == file and _importable(module, file):
    source = {"import": module}
  else:
    source = {"file": os.path.abspath(file)}
  digest = _sha256(file, _defined_in(factory))
  return {**source, "sha256": digest} if digest else source


def _defined_in(factory: Any) -> str | None:
  """The source file defining ``factory`` (a class, a function, a partial of one), if any."""
  target = factory.func if isinstance(factory, partial) else factory
  try:
    return inspect.getsourcefile(target if inspect.isclass(target) or inspect.isfunction(target)
                                 else type(target))
  except TypeError:  # Built in: no file.
    return None


def _place(source: Mapping[str, str]) -> dict[str, str]:
  """Where ``source`` registers from (its module or file), without its digest."""
  return {k: v for k, v in source.items() if k != "sha256"}


def _sha256(file: str | None, defining: str | None = None) -> str | None:
  """The SHA-256 (hex) of ``file``'s bytes, followed by those of ``defining`` (the file
  that defines the model, where it is another one); None if ``file`` cannot be read."""
  digest = hashlib.sha256()
  for path in dict.fromkeys(p for p in (file, defining) if p):
    try:
      with open(path, "rb") as f:
        digest.update(f.read())
    except OSError:
      if path == file:
        return None
  return digest.hexdigest() if file else None


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
    as a config file given to ``mnemonic-jax train``; either with the ``"sha256"`` (hex)
    of that file followed by the file that defines the model's class or function, where
    they could be read.
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

  Warns:
    ModelSourceChangedWarning: the file's SHA-256 is not the one recorded with the source
      (the file was edited since): the model built may not be the one trained.

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
  path = getattr(sys.modules.get(module), "__file__", None) if module else file
  defining = _defined_in(_REGISTRY[name])
  if "sha256" in source and _sha256(path, defining) not in (None, source["sha256"]):
    files = " and ".join(dict.fromkeys(p for p in (path, defining) if p))
    warnings.warn(
        f"model {name!r} is built by {files}, changed since the bundle recorded them (their "
        "SHA-256 differs): the model built now may not be the one trained, and results "
        "with these weights may describe another model; restore the files as they were "
        "when the model was trained", errors.ModelSourceChangedWarning, stacklevel=2)


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
    BadConfig: ``name`` is not registered.
    BadRequestType: ``num_classes`` is not an int (``10.0``, ``True``); an attribute the
      model does not have (for a factory that is a Flax module class, or a
      ``functools.partial`` of one); an attribute of a built-in model of the wrong kind
      (``hidden=32`` for ``mlp``: write ``(32,)``).
    BadRequest: ``num_classes`` below 1; an attribute of a built-in model out of range
      (a width of 0, an unknown ``activation`` or ``stem``, a ViT ``dim`` its heads do not
      divide). All checked before the model is initialised.

  Example:
    >>> model = create_model("mlp", num_classes=10, hidden=(64,))
  """
  if not isinstance(name, str) or name not in _REGISTRY:
    raise errors.BadConfig(f"unknown model {name!r}; choose from {available_models()}")
  attributes.num_classes("create_model", num_classes)
  factory = _REGISTRY[name]
  module = _module_class(factory)
  if module is not None:
    known = {f.name for f in dataclasses.fields(module) if f.init} - {"parent", "num_classes"}
    unknown = sorted(set(kwargs) - known)
    if unknown:
      raise errors.BadRequestType(
          f"create_model({name!r}): the model has no attribute(s) {', '.join(unknown)}; its "
          f"attributes are {', '.join(sorted(known - {'name'}))}")
  return factory(num_classes=num_classes, **{k: _frozen(v) for k, v in kwargs.items()})


def model_attributes(name: str, num_classes: int, kwargs: Mapping[str, Any]
                     ) -> dict[str, str]:
  """Every attribute of the module :func:`create_model` builds, defaults included, in words.

  A bundle records these beside the ``model_kwargs`` it was given, so that loading it can
  tell when the model built now differs from the one saved: a default of the installed
  library (or of the user's model class) changed since, which the given ``model_kwargs``
  alone do not show (:func:`changed_attributes`).

  Args:
    name, num_classes, kwargs: as :func:`create_model` takes them.

  Returns:
    ``{attribute: its repr}`` for the module's dataclass attributes but ``parent`` and
    ``name``; a function or class is named by its qualified name, and an attribute
    whose repr holds a memory address (one that would differ in every process) is left
    out. ``{}`` for a factory that builds no Flax module.

  Raises:
    As :func:`create_model`.
  """
  module = create_model(name, num_classes, **kwargs)
  if not dataclasses.is_dataclass(module):
    return {}
  described = {f.name: _stable_repr(getattr(module, f.name, None))
               for f in dataclasses.fields(module) if f.init and f.name not in ("parent", "name")}
  return {k: v for k, v in described.items() if v is not None}


def changed_attributes(recorded: Mapping[str, str], now: Mapping[str, str]) -> list[str]:
  """``"attribute: recorded -> now"`` for each attribute recorded at saving whose value
  (:func:`model_attributes`) differs now or that the model no longer has."""
  return [f"{k}: {v} -> {now.get(k, '(no such attribute now)')}"
          for k, v in sorted(recorded.items()) if now.get(k) != v]


def _stable_repr(value: Any) -> str | None:
  """``value`` in words that are the same in another process, or None: NumPy numbers as
  the Python numbers JSON gives back, sets in sorted order, functions and classes by
  their qualified name, inside tuples, lists, dicts and partials too."""
  if isinstance(value, np.generic):
    value = value.item()  # np.int64(16) is (16,) once a bundle's JSON is read back.
  if isinstance(value, partial):  # Its repr holds the function's address.
    parts = [_stable_repr(value.func), *map(_stable_repr, value.args),
             *(f"{k}={_stable_repr(v)}" for k, v in sorted(value.keywords.items()))]
    return None if None in parts else f"partial({', '.join(parts)})"
  if callable(value) and isinstance(getattr(value, "__qualname__", None), str):
    # A function or class by its qualified name alone: its module's name depends on how
    # the file defining it was loaded (a config file runs under a made-up module name).
    return value.__qualname__
  if type(value) in (tuple, list, set, frozenset):
    parts = [_stable_repr(v) for v in value]
    if None in parts:
      return None
    if isinstance(value, (set, frozenset)):  # Their order follows the hash seed.
      return f"{type(value).__name__}({sorted(parts)})"
    inner = ", ".join(parts) + ("," if len(parts) == 1 and type(value) is tuple else "")
    return f"({inner})" if type(value) is tuple else f"[{inner}]"
  if type(value) is dict:
    parts = [(repr(k), _stable_repr(v)) for k, v in value.items()]
    return None if any(v is None for _, v in parts) else (
        "{" + ", ".join(f"{k}: {v}" for k, v in parts) + "}")
  text = repr(value)
  return None if " at 0x" in text else text


def _module_class(factory: Any) -> type | None:
  """The Flax module class a factory builds (through ``functools.partial``), or None."""
  while isinstance(factory, partial):
    factory = factory.func
  return factory if isinstance(factory, type) and issubclass(factory, nn.Module) else None


def _frozen(value: Any) -> Any:
  """``value`` with every list (nested ones too) turned into a tuple."""
  if type(value) in (list, tuple):  # Not named tuples: they are hashable already.
    return tuple(_frozen(v) for v in value)
  return value


__all__ = ["BUILT_IN", "MLP", "ModelSourceError", "ResNet18", "ViT", "available_models",
           "changed_attributes", "create_model", "load_model_source", "model_attributes",
           "model_source", "register_model"]
