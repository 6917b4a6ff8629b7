"""The common signature of the unlearning methods (``mnemonic_jax.baselines.base``) and the
paper's method behind it (``mnemonic``, ``mnemonic-auto``, the codes ablation's inputs)."""


import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mnemonic_jax as mj
from mnemonic_jax import baselines
from mnemonic_jax.baselines import base
from mnemonic_jax.baselines import mnemonic as mnemonic_lib
from mnemonic_jax.forgetting import moves

NAMES = ("retrain", "finetune", "neggrad", "neggrad+", "random-labels", "ssd", "ssd-exact",
         "fisher", "unsir", "scrub", "salun", "l1-sparse", "bad-teacher", "boundary-shrink",
         "lfssd", "jit-lipschitz", "svd-projection",
         *(move.baseline for move in mj.MOVES.values()))


def test_every_published_name_is_registered_with_its_data_and_source():
  assert baselines.available_methods() == NAMES
  needs = {m: baselines.get_method(m).data for m in NAMES}
  assert needs["retrain"] == "retain" and needs["neggrad"] == "forget"
  assert {needs[m] for m in NAMES if m.startswith("mnemonic")} == {"none"}
  for name in NAMES:
    spec = baselines.get_method(name)
    assert spec.reference and spec.data in baselines.DATA_KINDS
    if spec.defaults is None:
      spec.config_cls()  # Published defaults need no argument.


def test_a_move_through_the_common_signature_is_forget(tiny_digits_bundle):
  bundle, _, _ = tiny_digits_bundle
  new, report = baselines.unlearn("mnemonic-bias", bundle, [3])
  expected, direct = mj.forget(bundle.apply_fn(), bundle.params, jnp.asarray(bundle.codes),
                               [3], move="bias")
  chex.assert_trees_all_close(new.params, expected)
  assert report.data == "none" and report.details["met"] == direct.met
  assert report.details["move"] == "bias"


def test_unknown_method_names_the_valid_ones(tiny_digits_bundle):
  bundle, _, _ = tiny_digits_bundle
  with pytest.raises(ValueError, match="unknown unlearning method 'sdd'.*ssd-exact"):
    baselines.unlearn("sdd", bundle, [3])


@pytest.mark.parametrize("classes, message", [
    ([], "no class"), ([10], "out of range"), ([-1], "out of range"),
    (list(range(10)), "every class"), ([3, 3], "duplicated")])
def test_bad_classes_are_refused_before_any_work(tiny_digits_bundle, classes, message):
  bundle, _, _ = tiny_digits_bundle
  with pytest.raises(ValueError, match=message):
    baselines.unlearn("mnemonic", bundle, classes)


def test_data_is_checked_against_what_the_method_needs(tiny_digits_bundle):
  bundle, train, _ = tiny_digits_bundle
  data = baselines.UnlearnData.from_training(train.images, train.labels, [3])
  assert data.kind() == "all" and set(np.unique(data.forget.labels)) == {3}
  assert 3 not in set(np.unique(data.retain.labels))
  with pytest.raises(ValueError, match="needs the retain set"):
    baselines.unlearn("finetune", bundle, [3], baselines.UnlearnData(forget=data.forget))
  with pytest.raises(ValueError, match="needs the forget set"):
    baselines.unlearn("neggrad", bundle, [3], baselines.UnlearnData(retain=data.retain))
  swapped = baselines.UnlearnData(retain=data.forget, forget=data.retain)
  with pytest.raises(ValueError, match="retain set holds labels \\[3\\]"):
    baselines.unlearn("finetune", bundle, [3], swapped)
  with pytest.raises(ValueError, match="takes a FinetuneConfig"):
    baselines.unlearn("finetune", bundle, [3], data, moves.Bias())


@pytest.mark.parametrize("name", ["mnemonic", pytest.param("mnemonic-auto",
                                                          marks=pytest.mark.slow)])
def test_mnemonic_methods_forget_from_the_codes_alone(tiny_digits_bundle, name):
  bundle, _, test = tiny_digits_bundle
  before = jax.tree.map(np.array, bundle.params)
  jax.clear_caches()  # Equal models share programs: another test may have compiled this one.
  new, report = baselines.unlearn(name, bundle, [3])  # No data at all.
  chex.assert_trees_all_equal(bundle.params, before)  # The input is untouched.
  assert report.data == "none" and report.steps == 0 and report.examples == {
      "retain": 0, "forget": 0}
  if name == "mnemonic-auto":  # The paper's fixed lambdas are too small for this tiny MLP.
    assert report.details["after"]["forget_accuracy"] == 0.0
    assert report.details["after"]["remain_accuracy"] == 1.0
  assert report.seconds > 0 and report.compile_seconds > 0
  assert new.forgotten_classes == (3,) and new.history[-1]["method"] == name
  moved = jax.tree.leaves(jax.tree.map(lambda a, b: bool(jnp.any(a != b)), new.params, before))
  assert any(moved)


def test_fixed_lambdas_come_from_the_config_or_the_bundle(tiny_digits_bundle):
  bundle, _, _ = tiny_digits_bundle
  _, report = baselines.unlearn("mnemonic", bundle, [3])
  assert (report.details["lambda1"], report.details["lambda2"]) == (
      bundle.config["lambda1"], bundle.config["lambda2"])
  _, report = baselines.unlearn("mnemonic", bundle, [3],
                                config=moves.Algorithm2(lambda1=1e-4, lambda2=1.0))
  assert (report.details["lambda1"], report.details["lambda2"]) == (1e-4, 1.0)
  with pytest.raises(ValueError, match="needs a number for lambda1"):
    baselines.unlearn("mnemonic", bundle.replace(config={}), [3])


def test_a_non_finite_result_is_refused(tiny_digits_bundle):
  bundle, _, _ = tiny_digits_bundle

  @base.register("test-diverges", moves.Bias, data="none", reference="test")
  def diverges(bundle, classes, data, config, key):
    return base.Outcome(jax.tree.map(lambda p: p * jnp.nan, bundle.params), bundle.batch_stats)

  try:
    with pytest.raises(ValueError, match="test-diverges made .* parameters non-finite"):
      baselines.unlearn("test-diverges", bundle, [3])
  finally:
    del base.METHODS["test-diverges"]


def test_compile_clock_counts_compilation_only():
  fn = jax.jit(lambda x: jnp.sin(x) * 2)
  with base.CompileClock() as first:
    fn(jnp.ones(3)).block_until_ready()
  with base.CompileClock() as second:  # Cached: nothing compiles.
    fn(jnp.ones(3)).block_until_ready()
  assert first.seconds > 0 and second.seconds == 0


def test_init_loop_copies_so_donation_never_deletes_the_bundle(tiny_digits_bundle):
  bundle, train, _ = tiny_digits_bundle
  optimizer = base.sgd(0.1)
  step = base.make_weighted_step(bundle, optimizer)
  state = base.init_loop(bundle, optimizer)
  x = bundle.normalize(train.images[:8])
  state, loss = step(state, x, jnp.asarray(train.labels[:8]), jnp.ones(8))
  assert np.isfinite(float(loss))
  jax.tree.map(np.asarray, bundle.params)  # Raises if a buffer was donated away.


def test_epoch_batches_cover_every_example_in_one_shape():
  split = base.Split(np.arange(10)[:, None, None, None].astype(np.uint8), np.arange(10))
  batches = list(base.epoch_batches(jax.random.key(0), split, 4))
  assert {b.images.shape for b in batches} == {(4, 1, 1, 1)}
  assert set(np.concatenate([b.labels for b in batches]).tolist()) == set(range(10))


@pytest.mark.parametrize("kind", mnemonic_lib.INPUTS)
def test_fisher_inputs_of_the_codes_ablation(tiny_digits_bundle, kind):
  bundle, train, _ = tiny_digits_bundle
  split = base.Split(train.images, train.labels)
  x = mnemonic_lib.fisher_inputs(kind, bundle, jax.random.key(5), split)
  chex.assert_shape(x, bundle.codes.shape)
  chex.assert_tree_all_finite(x)
  same_as_codes = bool(jnp.all(x == bundle.codes))
  assert same_as_codes == (kind == "trained-codes")
  if kind == "zeros":
    assert not jnp.any(x)
  if kind == "one-image":  # The first training image of each class, normalised.
    first = [int(np.flatnonzero(train.labels == c)[0]) for c in range(10)]
    np.testing.assert_allclose(x, bundle.normalize(train.images[first]))


def test_fisher_inputs_refuses_unknown_kinds_and_missing_classes(tiny_digits_bundle):
  bundle, train, _ = tiny_digits_bundle
  with pytest.raises(ValueError, match="unknown Fisher inputs 'noise'"):
    mnemonic_lib.fisher_inputs("noise", bundle, jax.random.key(0))
  no_three = base.Split(train.images[train.labels != 3], train.labels[train.labels != 3])
  with pytest.raises(ValueError, match="none of \\[3\\]"):
    mnemonic_lib.fisher_inputs("one-image", bundle, jax.random.key(0), no_three)


@pytest.mark.parametrize("name", ["mnemonic-auto", "ssd"])
def test_the_result_saves_and_loads_with_its_history(tiny_digits_bundle, tmp_path, name):
  from mnemonic_jax import checkpointing

  bundle, train, _ = tiny_digits_bundle
  data = baselines.UnlearnData.from_training(train.images, train.labels, [3])
  new, report = baselines.unlearn(name, bundle, [3], data)
  back = checkpointing.load_bundle(checkpointing.save_bundle(tmp_path / "out", new))
  assert back.forgotten_classes == (3,)
  assert back.history[-1]["method"] == name and back.history[-1]["data"] == report.data
  chex.assert_trees_all_close(back.params, new.params)


@pytest.mark.parametrize("classes", [[3.7], [True], "12", [np.float32(3)], [None]])
def test_class_ids_that_are_not_integers_are_refused_not_coerced(tiny_digits_bundle, classes):
  bundle, _, _ = tiny_digits_bundle
  with pytest.raises(TypeError, match="integer"):
    baselines.unlearn("mnemonic", bundle, classes)
  with pytest.raises(TypeError, match="integer"):
    mj.forget(bundle.apply_fn(), bundle.params, bundle.codes, classes)
