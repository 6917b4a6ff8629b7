"""Faults a fifth round of a fresh Python user found composing the pure functions.

* V1: ``microbatch_size=jnp.int32(3)`` passed the check, then failed inside ``jax.jit``
  ("Non-hashable static arguments") in the Fisher, the paper's search and its moves.
* V2: a hand-built ``Split`` with labels in a list passed every check, then failed in the
  batching loop of the methods that train.
* V3: a forget set lacking one of the forgotten classes was taken: the method never saw it.
* V5: the same size as ``np.int64(3)`` or ``np.int32(3)`` compiled the Fisher again.
* V12: ``inference_apply_fn`` took a class, ``model.apply`` or the whole variables.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mnemonic_jax as mj
from mnemonic_jax import baselines
from mnemonic_jax.baselines import neggrad  # noqa: F401  (baselines.neggrad below)
from mnemonic_jax.forgetting import moves
from mnemonic_jax.timing import CompileClock


@pytest.fixture(scope="module")
def tiny():
  model = mj.create_model("mlp", 10, hidden=(8,))
  codes = mj.generate_codes(jax.random.key(0), 10, (4, 4, 1))
  params = model.init(jax.random.key(1), codes)["params"]
  return mj.inference_apply_fn(model, {}), params, codes


@pytest.mark.slow  # 3-4.5 s: the default suite stays under 5 minutes.
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


@pytest.fixture(scope="module")
def digits_bundle(tiny):
  _, params, codes = tiny
  return mj.Bundle(model_name="mlp", model_kwargs={"hidden": (8,)}, params=params,
                   batch_stats={}, codes=np.asarray(codes), num_classes=10,
                   input_shape=(4, 4, 1), mean=(0.5,), std=(0.25,))


def _data(classes):
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (60, 4, 4, 1), dtype=np.uint8)
  return baselines.UnlearnData.from_training(images, np.arange(60) % 10, classes)


def test_v2_a_split_with_labels_in_a_list_is_taken_as_checked(digits_bundle):
  """V2: a hand-built Split with list labels passed every check, then failed in the
  batching loop (NumPy's "only integer scalar arrays can be converted")."""
  forget = _data([3]).forget
  data = baselines.UnlearnData(forget=baselines.Split(forget.images, list(forget.labels)))
  baselines.unlearn("neggrad", digits_bundle, [3], data,
                    baselines.neggrad.NegGradConfig(epochs=1))


def test_v3_a_forget_set_without_a_forgotten_class_is_refused(digits_bundle):
  """V3: unlearn([3, 5]) with a forget set of class 3 alone ran, NegGrad never seeing 5."""
  with pytest.raises(mj.errors.BadRequest, match="holds no example of class 5, which neggrad"):
    baselines.unlearn("neggrad", digits_bundle, [3, 5], _data([3]),
                      baselines.neggrad.NegGradConfig(epochs=1))


def test_v12_inference_apply_fn_names_what_it_was_given_wrong(tiny):
  """V12: a class, a bound apply method or the whole variables dict were taken, and failed
  at first use as 'inputs do not fit, or arguments in the wrong order'."""
  model = mj.create_model("mlp", 10, hidden=(8,))
  for wrong in (type(model), model.apply):
    with pytest.raises(mj.errors.BadRequestType, match="not its class or its apply method"):
      mj.inference_apply_fn(wrong, {})
  with pytest.raises(mj.errors.BadRequest, match=r"pass variables\['batch_stats'\]"):
    mj.inference_apply_fn(model, {"batch_stats": {}})
  with pytest.raises(mj.errors.BadRequestType, match="batch_stats must be a mapping"):
    mj.inference_apply_fn(model, None)
