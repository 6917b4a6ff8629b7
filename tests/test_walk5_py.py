"""Faults a fifth round of a fresh Python user found composing the pure functions.

* V1: ``microbatch_size=jnp.int32(3)`` passed the check, then failed inside ``jax.jit``
  ("Non-hashable static arguments") in the Fisher, the paper's search and its moves.
* V5: the same size as ``np.int64(3)`` or ``np.int32(3)`` compiled the Fisher again.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mnemonic_jax as mj
from mnemonic_jax.forgetting import moves
from mnemonic_jax.timing import CompileClock


@pytest.fixture(scope="module")
def tiny():
  model = mj.create_model("mlp", 10, hidden=(8,))
  codes = mj.generate_codes(jax.random.key(0), 10, (4, 4, 1))
  params = model.init(jax.random.key(1), codes)["params"]
  return mj.inference_apply_fn(model, {}), params, codes


def test_v1_v5_a_microbatch_size_of_any_integer_kind_is_one_static_size(tiny):
  apply_fn, params, codes = tiny
  labels = np.arange(10)
  first = mj.fisher_diagonal(apply_fn, params, codes, labels, microbatch_size=3)
  for size in (jnp.int32(3), np.int64(3), np.int32(3)):
    with CompileClock() as clock:
      again = mj.fisher_diagonal(apply_fn, params, codes, labels, microbatch_size=size)
    assert clock.programs == 0, type(size)
    jax.tree.map(np.testing.assert_array_equal, first, again)
  size = jnp.int32(3)
  mj.class_fishers(apply_fn, params, codes, [3], microbatch_size=size)
  mj.select_lambdas(apply_fn, params, codes, [3], microbatch_size=size)
  mj.forget(apply_fn, params, codes, [3], move=moves.Paper(microbatch_size=size))
  mj.forget(apply_fn, params, codes, [3], move=moves.Algorithm2(1e-3, 10.0, microbatch_size=size))
