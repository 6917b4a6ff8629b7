"""Compile once: a second call with equal models and shapes compiles no program.

Counted with :class:`mnemonic_jax.timing.CompileClock` (XLA compilations, from JAX's
monitoring events); nothing here is timed.
"""

import contextlib
import io

import jax
import numpy as np
import pytest

import mnemonic_jax as mj
from mnemonic_jax.forgetting import moves, primitives

from random_support import init_variables, uniform


@pytest.mark.parametrize("progress", [False, True])
def test_a_second_fit_compiles_no_program(progress):
  """Equal models and configs share the train step, the state and key programs and the
  metrics window; another seed changes only traced values."""
  codes = uniform(0, (3, 2, 2, 1))  # random_support: nothing compiles for them.
  images = np.random.default_rng(0).integers(0, 255, (12, 2, 2, 1), dtype=np.uint8)
  labels = np.arange(12) % 3

  def run(seed):
    with contextlib.redirect_stderr(io.StringIO()):
      return mj.fit(mj.create_model("mlp", 3, hidden=(4,)), (images, labels), codes,
                    mj.FitConfig(epochs=2, batch_size=4), jax.random.key(seed),
                    progress=progress)

  with mj.CompileClock() as first:
    run(0)
  with mj.CompileClock() as second:
    state, _ = run(1)
  assert int(state.step) == 6
  assert second.programs == 0 and second.seconds == 0, (first.programs, second.programs)


@pytest.fixture(scope="module")
def small_model():
  model = mj.create_model("mlp", 6, hidden=(8,))
  codes = uniform(0, (6, 3, 3, 1))
  return model, codes, init_variables(model, codes, 1)["params"]


# Every registered move (each works from the codes alone), the default path, and
# Algorithm 2 with given lambdas.
@pytest.mark.parametrize("move", [None, *sorted(moves.MOVES)])
def test_a_second_forget_compiles_no_program(small_model, move):
  """Another number of classes, other lambdas and new parameter values: nothing compiles
  again (a new but equal ``apply_fn`` too)."""
  model, codes, params = small_model
  lambdas = (1e-3, 10.0) if move == "algorithm2" else (None, None)
  scale = lambda f: tuple(None if v is None else v * f for v in lambdas)
  mj.forget(mj.inference_apply_fn(model, {}), params, codes, [0], *scale(1.0), move=move)
  other = jax.tree.map(lambda p: p * 1.1, params)
  with mj.CompileClock() as second:
    _, report = mj.forget(mj.inference_apply_fn(mj.create_model("mlp", 6, hidden=(8,)), {}),
                          other, codes, [1, 3], *scale(2.0), move=move)
  assert second.programs == 0 and report.compile_seconds == 0, second.programs


def test_a_second_fisher_compiles_no_program():
  model = mj.create_model("mlp", 4, hidden=(8,))
  codes = uniform(0, (4, 3, 3, 1))
  params = init_variables(model, codes, 1)["params"]
  for method in ("vmap", "factorized"):
    mj.fisher_diagonal(mj.inference_apply_fn(model, {}), params, codes, np.arange(4),
                       method=method)
    other = jax.tree.map(lambda p: p * 2, params)
    with mj.CompileClock() as second:
      mj.fisher_diagonal(mj.inference_apply_fn(model, {}), other, codes, np.array([3, 2, 1, 0]),
                         method=method)
    assert second.programs == 0, method


def test_checking_a_forgetting_request_compiles_no_program(small_model):
  """The request's NumPy codes go to the device without a program (``jnp.asarray`` of a
  new NumPy shape compiles one in JAX 0.10: part of every first ``mj.forget``)."""
  model, _, params = small_model
  codes = np.asarray(uniform(7, (6, 3, 3, 1)), np.float32) + np.float32(0.5)  # Fresh values.
  with mj.CompileClock() as clock:
    request = primitives.validate_request(mj.inference_apply_fn(model, {}), params, codes, [0])
  assert clock.programs == 0
  assert isinstance(request.codes, jax.Array)
  np.testing.assert_array_equal(request.codes, codes)
