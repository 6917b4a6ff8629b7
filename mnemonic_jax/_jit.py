"""Compile once: cached jitted programs, callables split into code and arrays, timing.

The public entry points (:func:`mnemonic_jax.forget`, the Fishers, the data-free search)
build their programs around the caller's ``apply_fn``. A program is built and jitted
once per *static* configuration (the ``apply_fn``'s code, microbatch size, Fisher method,
mesh) and kept in a small LRU cache; ``jax.jit`` then compiles it once per argument
signature (shapes, dtypes, shardings). Everything that changes between calls without
changing the program (parameters, codes, class masks, lambdas, and the arrays an
``apply_fn`` closes over when it is a pytree such as
:class:`mnemonic_jax.bundle.InferenceApply`) is a traced argument, never a constant.
"""

import collections
import contextlib
import threading
import time
from typing import Any, Callable, Hashable

import jax
import numpy as np

PyTree = Any

# ----------------------------------------------------------------------------------------
# A callable as (static part, array leaves).


def split_callable(fn: Callable) -> tuple[Hashable, list[Any]]:
  """Splits a callable pytree into a hashable static part and its array leaves.

  A plain function is all static (it is hashed by identity); a registered pytree, such as
  :class:`mnemonic_jax.bundle.InferenceApply`, keeps its arrays apart so that they can be
  traced arguments of a jitted program instead of constants baked into it.

  Returns:
    ``(static, arrays)``; :func:`merge_callable` puts them back together.
  """
  leaves, treedef = jax.tree.flatten(fn)
  is_array = [isinstance(x, (jax.Array, np.ndarray)) for x in leaves]
  static = (treedef, tuple(Static(x) if not a else None for x, a in zip(leaves, is_array)))
  return static, [x for x, a in zip(leaves, is_array) if a]


def merge_callable(static: Hashable, arrays: list[Any]) -> Callable:
  """The inverse of :func:`split_callable` (``arrays`` may be tracers)."""
  treedef, leaves = static
  arrays = iter(arrays)
  return treedef.unflatten([next(arrays) if x is None else x.value for x in leaves])


class Static:
  """A static value, hashed by value where it can be and by identity otherwise.

  (A Flax module with a list attribute, for instance, cannot be hashed.)
  """

  __slots__ = ("value", "_key")

  def __init__(self, value):
    self.value = value
    try:
      hash(value)
      self._key = (True, value)
    except TypeError:
      self._key = (False, id(value))

  def __hash__(self):
    return hash(self._key)

  def __eq__(self, other):
    if not isinstance(other, Static) or self._key[0] != other._key[0]:
      return False
    return self._key[1] == other._key[1] if self._key[0] else self.value is other.value


def signature(tree: PyTree) -> Hashable:
  """Structure, shapes and dtypes of a pytree of arrays (the key of shape-only checks)."""
  leaves, treedef = jax.tree.flatten(tree)
  return treedef, tuple((np.shape(x), str(getattr(x, "dtype", type(x)))) for x in leaves)


# ----------------------------------------------------------------------------------------
# A small LRU cache of programs and of shape-only checks.

_MAXSIZE = 64
_cache: collections.OrderedDict = collections.OrderedDict()
_lock = threading.Lock()


def cached(key: Hashable, make: Callable[[], Any]) -> Any:
  """``make()`` the first time ``key`` is seen, the kept value afterwards (LRU, 64 kept)."""
  with _lock:
    if key in _cache:
      _cache.move_to_end(key)
      return _cache[key]
  value = make()
  with _lock:
    _cache[key] = value
    while len(_cache) > _MAXSIZE:
      _cache.popitem(last=False)
  return value


def clear_cache() -> None:
  """Forgets every cached program and check (tests; or to release closed-over arrays)."""
  with _lock:
    _cache.clear()


def timed(fn: Callable, *args) -> tuple[Any, float, float]:
  """Runs ``fn(*args)`` to completion; ``(out, seconds, compile_seconds)``.

  ``compile_seconds`` is what JAX spent tracing, lowering and compiling inside the call
  (0 when every program was already compiled); ``seconds`` is the rest of the wall time.
  """
  start = time.perf_counter()
  with CompileClock() as clock:
    out = jax.block_until_ready(fn(*args))
  total = time.perf_counter() - start
  return out, max(total - clock.seconds, 0.0), clock.seconds


# ----------------------------------------------------------------------------------------
# Compilation time from JAX's monitoring events.

_COMPILE_EVENTS = ("/jax/core/compile/jaxpr_trace_duration",
                   "/jax/core/compile/jaxpr_to_mlir_module_duration",
                   "/jax/core/compile/backend_compile_duration")
_clocks = threading.local()
_listening = False


def _on_event(event: str, duration: float, **_) -> None:
  if event in _COMPILE_EVENTS:
    for clock in getattr(_clocks, "active", ()):
      clock.seconds += duration


class CompileClock(contextlib.AbstractContextManager):
  """Sums the seconds JAX spends compiling inside a ``with`` block (this thread).

  Uses JAX's monitoring events (tracing, lowering to MLIR, backend compilation), so it
  also counts compilations inside library code such as :func:`mnemonic_jax.training.fit`.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> with CompileClock() as clock:
    ...   _ = jax.jit(lambda x: jnp.sin(x) + 1.0)(1.0)
    >>> clock.seconds > 0
    True
  """

  def __init__(self):
    self.seconds = 0.0

  def __enter__(self) -> "CompileClock":
    global _listening
    if not _listening:
      jax.monitoring.register_event_duration_secs_listener(_on_event)
      _listening = True
    _clocks.active = getattr(_clocks, "active", ()) + (self,)
    return self

  def __exit__(self, *exc_info) -> None:
    _clocks.active = tuple(c for c in _clocks.active if c is not self)
