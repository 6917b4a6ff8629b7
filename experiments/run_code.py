"""The code part of the runners' cache keys (:mod:`experiments.run_cache`): what source a
cached run's result depends on, as digests that ignore docstrings and comments.

:func:`method_code` names a registered method's modules and every ``mnemonic_jax`` module
they import, directly or through others, so a run is computed again when any code it ran
changed. Imports nothing of ``experiments``.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib
import importlib.util
import inspect


def code_text(source: str) -> str:
  """``source`` as what runs: its syntax tree without docstrings (comments never enter
  it), dumped; so a reworded docstring or comment is the same code.

  Raises:
    SyntaxError: ``source`` is not Python.
  """
  tree = ast.parse(source)
  for node in ast.walk(tree):
    body = getattr(node, "body", None)
    if (isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        and body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
        and isinstance(body[0].value.value, str)):
      node.body = body[1:] or [ast.Pass()]
  return ast.dump(tree, include_attributes=False)


@functools.lru_cache(maxsize=None)
def source_digest(module: str) -> str:
  """The first 16 hex digits of the SHA-256 of :func:`code_text` of ``module``'s source.

  Read once per process (cached): a module edited while a runner runs is not the module it
  imported anyway.

  Args:
    module: an importable module name (e.g. ``"mnemonic_jax.baselines.salun"``).

  Raises:
    ImportError: no such module; OSError, TypeError: it has no Python source.
  """
  source = inspect.getsource(importlib.import_module(module))
  return hashlib.sha256(code_text(source).encode()).hexdigest()[:16]


def method_code(method: str) -> dict[str, str]:
  """``{module: source_digest}`` of every ``mnemonic_jax`` module a registered unlearning
  method's result can depend on: the module of its function, that of its config class and
  of every ``mnemonic_jax`` class that config inherits from (for a ``mnemonic-*`` move,
  :mod:`mnemonic_jax.baselines.mnemonic`, the move's module and its base moves' modules),
  and every ``mnemonic_jax`` module these import, directly or through others, at the top
  or inside a function (:func:`library_imports`): a change in a shared helper (the loops
  of :mod:`mnemonic_jax.baselines.base`, the primitives of the moves) is seen too.

  Raises:
    ValueError: an unknown method.
  """
  from mnemonic_jax import baselines  # The library, never an experiments module.

  spec = baselines.get_method(method)
  modules = {spec.fn.__module__} | {c.__module__ for c in spec.config_cls.__mro__
                                    if c.__module__.startswith("mnemonic_jax.")}
  todo, seen = sorted(modules), set(modules)
  while todo:
    for module in library_imports(todo.pop()):
      if module not in seen:
        seen.add(module)
        todo.append(module)
  return {m: source_digest(m) for m in sorted(seen)}


@functools.lru_cache(maxsize=None)
def library_imports(module: str) -> frozenset[str]:
  """The ``mnemonic_jax`` modules ``module``'s source imports, anywhere in it (a name
  imported from a package that is not a module of its own stands for the package).

  Raises:
    ImportError: no such module.
  """
  loaded = importlib.import_module(module)
  package = module if hasattr(loaded, "__path__") else module.rpartition(".")[0]
  found = set()
  for node in ast.walk(ast.parse(inspect.getsource(loaded))):
    if isinstance(node, ast.Import):
      found.update(alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ""
      if node.level:  # Relative: from the package, ``level - 1`` packages up.
        parts = package.split(".")[:len(package.split(".")) - node.level + 1]
        base = ".".join(parts + ([node.module] if node.module else []))
      found.add(base)
      found.update(f"{base}.{alias.name}" for alias in node.names)
  return frozenset(name for name in found
                   if name.split(".")[0] == "mnemonic_jax" and _is_module(name))


def _is_module(name: str) -> bool:
  """Whether ``name`` is an importable module (not an attribute of one)."""
  try:
    return importlib.util.find_spec(name) is not None
  except (ImportError, ValueError):  # A parent that is a module, not a package.
    return False
