"""Programs a run calls once (initialisation, keys, mnemonic codes), compiled quickly.

On the CPU they are compiled at LLVM optimisation level 1 instead of 3: XLA's CPU backend
unrolls the threefry hash over a short minor axis at level 3 (the MLP's 1000 x 10 kernel:
1.7 s to compile, 0.25 s at level 1; ten 28 x 28 codes: 0.53 s as eager ops, 0.24 s as
one program at level 1). Level 1 keeps IEEE semantics, so the bits are the same
(tests/test_training.py compares every model's initial state, tests/test_codes.py the
codes).
"""

import functools
from typing import Callable

import jax

#: XLA options of the programs a run calls once or once an epoch, on the CPU.
RUN_ONCE_OPTIONS = {"xla_backend_optimization_level": 1}


def jit_run_once(fun: Callable, **jit_kwargs) -> Callable:
  """``jax.jit(fun, **jit_kwargs)``, compiled with :data:`RUN_ONCE_OPTIONS` on the CPU.

  Called inside a trace (``jax.eval_shape``, another ``jit``), where JAX takes compiler
  options only at the top level, it is the plain ``jax.jit``.
  """
  default = jax.jit(fun, **jit_kwargs)
  quick = jax.jit(fun, compiler_options=RUN_ONCE_OPTIONS, **jit_kwargs)

  @functools.wraps(fun)
  def call(*args, **kwargs):
    if jax.default_backend() == "cpu":
      try:
        return quick(*args, **kwargs)
      except ValueError as error:  # JAX: "`compiler_options` can only be passed to top-level"
        if "compiler_options" not in str(error):
          raise
    return default(*args, **kwargs)

  return call
