"""Compilation apart from run time: :class:`CompileClock` and :func:`timed`.

JAX reports the seconds it spends tracing, lowering and compiling through its monitoring
events; :class:`CompileClock` sums them inside a ``with`` block, so every report of this
package gives ``seconds`` (run time) and ``compile_seconds`` apart.
"""

import contextlib
import threading
import time
from typing import Any, Callable

import jax


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


_COMPILE_EVENTS = ("/jax/core/compile/jaxpr_trace_duration",
                   "/jax/core/compile/jaxpr_to_mlir_module_duration",
                   "/jax/core/compile/backend_compile_duration")
_clocks = threading.local()
_listening = False


def _on_event(event: str, duration: float, **_) -> None:
  if event in _COMPILE_EVENTS:
    for clock in getattr(_clocks, "active", ()):
      clock.seconds += duration
      clock.programs += event == _COMPILE_EVENTS[-1]


class CompileClock(contextlib.AbstractContextManager):
  """Sums the seconds JAX spends compiling inside a ``with`` block (this thread).

  Uses JAX's monitoring events (tracing, lowering to MLIR, backend compilation), so it
  also counts compilations inside library code such as :func:`mnemonic_jax.training.fit`.

  Attributes:
    seconds: tracing, lowering and compiling, summed.
    programs: programs the backend compiled (XLA compilations; a program JAX's
      persistent cache loads is not counted).

  Example:
    >>> import jax, jax.numpy as jnp
    >>> with CompileClock() as clock:
    ...   _ = jax.jit(lambda x: jnp.sin(x) + 1.0)(1.0)
    >>> clock.seconds > 0 and clock.programs == 1
    True
  """

  def __init__(self):
    self.seconds = 0.0
    self.programs = 0

  def __enter__(self) -> "CompileClock":
    global _listening
    if not _listening:
      jax.monitoring.register_event_duration_secs_listener(_on_event)
      _listening = True
    _clocks.active = getattr(_clocks, "active", ()) + (self,)
    return self

  def __exit__(self, *exc_info) -> None:
    _clocks.active = tuple(c for c in _clocks.active if c is not self)
