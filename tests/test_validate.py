"""The library's edge: every kind of bad input, refused by every public entry point."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mnemonic_jax as mj
from mnemonic_jax import workflow

from random_support import init_variables, uniform

NUM_CLASSES = 4
GRID = ([1e-3, 1e-2], [1.0, 10.0])  # A tiny search grid: fast.


@pytest.fixture(scope="module")
def tiny():
  model = mj.create_model("mlp", NUM_CLASSES, hidden=(16,))
  codes = uniform(0, (NUM_CLASSES, 3, 3, 1))  # random_support: nothing compiles for them.
  params = init_variables(model, codes, 1)["params"]
  return model, mj.inference_apply_fn(model, {}), params, codes


# Every public entry point that takes (apply_fn, params, codes, classes).
ENTRY_POINTS = {
    "forget": lambda f, p, c, classes: mj.forget(f, p, c, classes, 1e-2, 10.0),
    "forget auto": lambda f, p, c, classes: mj.forget(f, p, c, classes),
    "select_lambdas": lambda f, p, c, classes: mj.select_lambdas(f, p, c, classes, grid=GRID),
    "class_fishers": lambda f, p, c, classes: mj.class_fishers(f, p, c, classes),
}


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
@pytest.mark.parametrize("classes", [[3.7], [True], "12", [None], [np.float32(1)], 2])
def test_class_ids_must_be_integers(tiny, entry, classes):
  _, apply_fn, params, codes = tiny
  with pytest.raises(TypeError, match="integer class ids|must be integers"):
    ENTRY_POINTS[entry](apply_fn, params, codes, classes)


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
def test_numpy_integer_class_ids_are_accepted(tiny, entry):
  _, apply_fn, params, codes = tiny
  ENTRY_POINTS[entry](apply_fn, params, codes, np.array([1], np.int64))
  ENTRY_POINTS[entry](apply_fn, params, codes, [np.int32(1), jnp.int32(2)])


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
@pytest.mark.parametrize("where", ["codes", "params"])
@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_non_finite_codes_and_params_are_refused_before_any_work(tiny, entry, where, value,
                                                                monkeypatch):
  _, apply_fn, params, codes = tiny
  if where == "codes":
    codes = codes.at[1, 0, 0, 0].set(value)
  else:
    params = jax.tree.map(lambda x: x.at[(0,) * x.ndim].set(value), params)
  # Refused before any work: no program of the Fisher or of a move may run.
  from mnemonic_jax.forgetting import primitives
  from mnemonic_jax.forgetting.moves import algorithm2, paper_search, stepping

  def must_not_run(*args, **kwargs):
    raise AssertionError("a program ran before the inputs were checked")

  for module, name in ((mj.fisher, "_fisher_program"), (algorithm2, "_algorithm2"),
                       (paper_search, "_prepare_program"), (paper_search, "_full_program"),
                       (stepping, "prepare"), (stepping, "logits"),
                       (primitives, "_sums_finite")):
    monkeypatch.setattr(module, name, must_not_run)
  with pytest.raises(ValueError, match=f"{where}.*non-finite"):
    ENTRY_POINTS[entry](apply_fn, params, codes, [1])


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
def test_apply_fn_returning_logits_and_state_is_named(tiny, entry):
  model, _, params, codes = tiny
  two_outputs = lambda p, x: model.apply({"params": p}, x, mutable=["batch_stats"])
  with pytest.raises(TypeError, match="one logits array.*tuple"):
    ENTRY_POINTS[entry](two_outputs, params, codes, [1])


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
def test_batchnorm_in_training_mode_is_named(conv_bn_bundle, entry):
  bundle = conv_bn_bundle
  codes = uniform(0, (bundle.num_classes, *bundle.input_shape))
  training_mode = lambda p, x: bundle.model.apply(
      {"params": p, "batch_stats": bundle.batch_stats}, x, train=True)
  with pytest.raises(ValueError, match="updates model state.*inference"):
    ENTRY_POINTS[entry](training_mode, bundle.params, codes, [1])


@pytest.mark.parametrize("labels, error, message", [
    ([0, 1, 2, -1], ValueError, "from -1 to 2"), ([0, 1, 2, 4], ValueError, "from 0 to 4"),
    (np.array([0.0, 1.0, 2.0, 3.0]), TypeError, "must be integers"),
    (np.array([True, False, True, False]), TypeError, "must be integers"),
    ([[0, 1, 2, 3]], ValueError, r"shape \(N,\)")])
def test_fisher_labels_must_be_classes_of_the_model(tiny, labels, error, message):
  _, apply_fn, params, codes = tiny
  with pytest.raises(error, match=message):
    mj.fisher_diagonal(apply_fn, params, codes, jnp.asarray(labels))


@pytest.mark.parametrize("lambdas, error, message", [
    ((1e-3, np.inf), ValueError, "positive finite"), ((np.nan, 1.0), ValueError, "positive finite"),
    ((1e-3, 1e39), ValueError, "beyond the largest float32"),
    ((1e-3, 1e-50), ValueError, "rounds to 0"), ((True, 1.0), TypeError, "a positive number"),
    ((1e-3, 1e5), ValueError, "beyond the largest float16")])
def test_lambdas_that_would_break_the_params_are_refused(tiny, lambdas, error, message):
  _, apply_fn, params, codes = tiny
  if "float16" in message:
    params = jax.tree.map(lambda x: x.astype(jnp.float16), params)
  with pytest.raises(error, match=message):
    mj.forget(apply_fn, params, codes, [1], *lambdas)


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
@pytest.mark.parametrize("lambdas", [(1e-2, 10.0), ("auto", "auto")])
def test_params_come_back_in_their_dtype(tiny, dtype, lambdas):
  _, apply_fn, params, codes = tiny
  low = jax.tree.map(lambda x: x.astype(dtype), params)
  new, report = mj.forget(apply_fn, low, codes, [1], *lambdas)
  chex.assert_trees_all_equal_dtypes(new, low)
  chex.assert_tree_all_finite(new)
  assert not all(jax.tree.leaves(jax.tree.map(lambda a, b: bool(jnp.all(a == b)), new, low)))
  fisher = mj.class_fishers(apply_fn, low, codes, [1])[0]
  assert {x.dtype for x in jax.tree.leaves(fisher)} == {jnp.dtype(jnp.float32)}


def test_excluded_classes_are_neither_forgotten_nor_remaining(tiny):
  _, apply_fn, params, codes = tiny
  logits = apply_fn(params, codes)
  correct = np.asarray(jnp.argmax(logits, -1) == jnp.arange(NUM_CLASSES))
  _, report = mj.forget(apply_fn, params, codes, [1], 1e-2, 10.0, exclude=[2])
  assert report.exclude == (2,)
  np.testing.assert_allclose(report.before.remain_accuracy, correct[[0, 3]].mean())
  others = jnp.where(jnp.eye(NUM_CLASSES, dtype=bool), -jnp.inf, logits).max(-1)
  margins = jnp.diag(logits) - others
  np.testing.assert_allclose(report.before.remain_margin, min(margins[0], margins[3]), rtol=1e-5)
  # A class both forgotten and excluded contradicts exclude's definition: refused.
  with pytest.raises(ValueError, match=r"classes \[2\] are both forgotten and excluded"):
    mj.forget(apply_fn, params, codes, [1, 2], 1e-2, 10.0, exclude=[2])


def test_a_bundle_request_excludes_what_earlier_requests_forgot(tiny_digits_bundle):
  bundle, _, _ = tiny_digits_bundle
  first, _ = workflow.forget_bundle(bundle, [3], 1e-3, 10.0)
  second, report = workflow.forget_bundle(first, [5], 1e-3, 10.0)
  assert report.exclude == (3,) and second.history[-1]["exclude"] == [3]
  assert second.forgotten_classes == (3, 5)


def test_forgetting_a_class_again_says_so_and_blames_no_codes(tiny_digits_bundle):
  bundle, _, _ = tiny_digits_bundle
  first, _ = workflow.forget_bundle(bundle, [3, 7], 1e-3, 10.0)
  again, _ = workflow.forget_bundle(first, [3], 1e-3, 10.0)
  warnings = " ".join(again.history[-1]["warnings"])
  assert "already forgotten" in warnings and "not trained with these codes" not in warnings


@pytest.mark.parametrize("forgotten, error", [([3.7], TypeError), ([True], TypeError),
                                              ("12", TypeError), ([None], TypeError),
                                              ([9], ValueError)])
def test_the_metrics_refuse_bad_forgotten_classes(forgotten, error):
  logits, labels = np.eye(4, dtype=np.float32)[np.arange(8) % 4], np.arange(8) % 4
  with pytest.raises(error, match="forgotten"):
    mj.forgetting_metrics(logits, labels, forgotten)


@pytest.mark.parametrize("labels, error", [(np.array([0, 1, 2, 4]), ValueError),
                                           (np.array([0, 1, 2, -1]), ValueError),
                                           (np.array([0.0, 1.0, 2.0, 3.0]), TypeError)])
def test_the_metrics_refuse_bad_labels(labels, error):
  logits = np.eye(4, dtype=np.float32)
  for fn in (lambda: mj.forgetting_metrics(logits, labels, [1]),
             lambda: mj.per_class_accuracy(logits, labels, 4)):
    with pytest.raises(error, match="labels"):
      fn()


@pytest.mark.parametrize("classes, labels_as, error", [
    ([3.7], int, TypeError), ("3", int, TypeError), ([True], int, TypeError),
    ([3], float, TypeError)])
def test_unlearn_data_refuses_bad_class_ids_and_labels(classes, labels_as, error):
  from mnemonic_jax.baselines import UnlearnData
  images, labels = np.zeros((6, 2, 2, 1), np.uint8), (np.arange(6) % 3).astype(labels_as)
  with pytest.raises(error):
    UnlearnData.from_training(images, labels, classes=classes)


@pytest.mark.parametrize("on_host", [True, False])
def test_finite_reads_host_arrays_in_place_and_others_in_one_program(monkeypatch, on_host):
  from mnemonic_jax import _validate  # pylint: disable=import-outside-toplevel
  monkeypatch.setattr(_validate, "on_host", lambda x: on_host)
  _validate.finite(a=np.ones(3), b=jnp.ones(3, jnp.bfloat16), c={"d": jnp.ones((2, 2))})
  for bad in (np.array([1.0, np.nan]), jnp.array([np.inf, 1.0, -np.inf], jnp.bfloat16)):
    with pytest.raises(mj.errors.BadRequest, match=r"c\['d'\] holds \d non-finite"):
      _validate.finite(a=np.ones(3), c={"d": bad})
