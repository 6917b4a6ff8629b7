"""Faults a fresh Python user found composing the pure functions (walk 4).

* W1: an unsorted step ``grid`` was taken: the step-grid moves keep the first step of the
  grid that meets the rule, so ``Bias(grid=(300., 50., 20.))`` moved the bias by 300, not
  the documented smallest 20 (and ``Dampen``'s thresholds, weak to strong, likewise). An
  empty grid was refused with "got 0 value(s) from inf to -inf".
* W2: ``UnlearnData.from_training`` refused uint8 images held in a ``jax.Array`` with
  "takes uint8 images ..., got uint8" (it asked for a NumPy array without saying so),
  though ``fit`` and the baselines' own ``Split`` checks take them.
* W3: ``step_sizes`` took an ``eta`` holding NaN (step NaN for the whole tensor), inf
  (step 0) or negative values without a word, though ``fisher_ratio`` and
  ``perturbation`` refuse such Fishers.
* W4: ``step_sizes`` and ``perturbation`` refused a bad lambda with "must be a positive
  number or 'auto'", then refused ``'auto'`` as well.
* W5: class ids as a 2-D array (``np.array([[3, 5]])``, an ``(N, 1)`` column) were
  flattened silently by every function taking class ids (one check,
  ``_validate.class_ids``), while the same ids as a nested list were refused.
* W6: ``baselines.unlearn`` (and ``sweep``, ``evaluation.depth``) named bad ``classes``
  "forget", the name of ``UnlearnData``'s forget set.
* W7: ``evaluation.input_scale_recovery(scales=...)`` and ``head_finetune_recovery(steps=...)``
  refused a 1-d NumPy array as "not a sequence", and merged a value given twice.
* W13: a Dense kernel read again outside its layer (tied weights) got the factorized
  Fisher under ``method="auto"``, which misses its second use's gradient (78% off).
* W16: a bool in a list of labels (``[True, 2]``) was read as class 1 by NumPy.
* W18: an apply_fn JAX cannot trace was refused with a guess at two unrelated causes.
* W19: a Dense under the model's own ``nn.remat`` or lifted ``nn.vmap``: the taps leaked its
  input out of the transform (UnexpectedTracerError from "auto" and the paper's move).
"""

import re

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mnemonic_jax as mj
from mnemonic_jax import baselines, layer_taps, mia
from mnemonic_jax.bundle import Bundle
from mnemonic_jax.forgetting import moves

#: The moves whose ``grid`` is a step grid, ordered from the smallest move.
STEPPED = sorted(name for name in moves.MOVES if name not in ("algorithm2", "paper"))


@pytest.mark.parametrize("name", STEPPED)
def test_w1_a_step_grid_out_of_order_is_refused_naming_the_option(name):
  cls = moves.MOVES[name]
  ordered = (20.0, 50.0, 300.0) if name != "dampen" else (300.0, 50.0, 20.0)
  cls(grid=ordered)  # Taken, and the same as given.
  cls(grid=(1.0, 1.0, 2.0) if name != "dampen" else (2.0, 1.0, 1.0))  # Ties are ordered.
  for unordered in [ordered[::-1], (50.0, 300.0, 20.0)]:
    with pytest.raises(mj.errors.BadRequest,
                       match=rf"^{re.escape(cls.__name__)}\.grid: the step grid must be "
                             r"(in|de)creasing .*; pass sorted\(grid"):
      cls(grid=unordered)
  first = "300 comes before 20" if name != "dampen" else "50 comes before 300"
  with pytest.raises(mj.errors.BadRequest, match=f"but {first}"):
    cls(grid=np.array([50.0, 300.0, 20.0]))  # An array too.


def test_w1_the_default_grids_are_ordered_and_the_fix_is_named():
  for name in STEPPED:
    moves.MOVES[name]()  # The defaults pass their own check.
  with pytest.raises(mj.errors.BadRequest, match=r"decreasing .*sorted\(grid, reverse=True\)"):
    moves.Dampen(grid=(0.1, 1.0))
  with pytest.raises(mj.errors.BadRequest, match=r"increasing .*; pass sorted\(grid\)$"):
    moves.Bias(grid=np.logspace(2.5, -4, 5))


def test_w1_an_empty_grid_is_refused_without_infinite_bounds():
  with pytest.raises(mj.errors.BadRequest) as caught:
    moves.Bias(grid=())
  assert "empty grid" in str(caught.value) and "inf" not in str(caught.value)


def test_w2_from_training_takes_uint8_images_in_a_jax_array():
  images = np.arange(10 * 4, dtype=np.uint8).reshape(10, 2, 2, 1)
  labels = np.arange(10) % 5
  a = baselines.UnlearnData.from_training(images, labels, [3])
  b = baselines.UnlearnData.from_training(jnp.asarray(images), jnp.asarray(labels), [3])
  for split in ("retain", "forget"):
    np.testing.assert_array_equal(getattr(a, split).images, getattr(b, split).images)
    assert isinstance(getattr(b, split).images, np.ndarray)
  with pytest.raises(mj.errors.BadRequestType, match="got float32"):
    baselines.UnlearnData.from_training(jnp.asarray(images, jnp.float32), labels, [3])
  with pytest.raises(mj.errors.BadRequest, match=r"got shape \(10,\); pass one image per row"):
    baselines.UnlearnData.from_training(images[:, 0, 0, 0], labels, [3])


@pytest.mark.parametrize("bad, phrase", [
    (jnp.array([jnp.nan, 1.0]), r"eta\['w'\] holds 1 non-finite value"),
    (jnp.array([jnp.inf, 1.0]), r"eta\['w'\] holds 1 non-finite value"),
    (np.array([-1.0, 1.0]), r"eta\['w'\] holds 1 negative value.*ratio of Fishers"),
    (-jnp.ones(2), r"eta\['w'\] holds 2 negative value"),
])
def test_w3_step_sizes_refuses_an_eta_no_fisher_ratio_can_be(bad, phrase):
  with pytest.raises(mj.errors.BadRequest, match=phrase):
    mj.step_sizes({"w": bad}, 1e-3, 1.0)
  alpha = mj.step_sizes({"w": jnp.array([2.0, 0.0])}, 1e-3, 1.0)  # A good one still works.
  np.testing.assert_allclose(alpha["w"], 1e-3)


@pytest.mark.parametrize("fn", ["step_sizes", "perturbation"])
@pytest.mark.parametrize("lam, phrase", [
    (None, r"^lambda1 must be a positive finite number \(e.g. lambda1=1e-3, lambda2=10\), "
           "got None$"),
    ("1", r"^lambda1 must be a positive finite number .*got '1'$"),
    ("auto", r"^lambda1='auto' .*; (step_sizes|perturbation) takes numbers"),
])
def test_w4_the_pure_pieces_ask_for_numbers_only(fn, lam, phrase):
  tree = {"w": jnp.ones(2)}
  args = (tree,) if fn == "step_sizes" else (tree, tree)
  with pytest.raises(mj.errors.BadRequestType, match=phrase) as caught:
    getattr(mj, fn)(*args, lam, lam)
  if lam == "auto":
    assert fn in str(caught.value)
  else:
    assert "'auto'" not in str(caught.value)  # Not offered: it is refused.


def _linear(p, x):
  return x.reshape(x.shape[0], -1) @ p["w"]


PARAMS, CODES = {"w": jnp.ones((4, 3)) / 4}, jnp.arange(12.0).reshape(3, 2, 2, 1) / 12


@pytest.mark.parametrize("ids", [np.array([[1, 2]]), np.array([[1], [2]]), jnp.array([[1]])])
def test_w5_class_ids_of_more_than_one_dimension_are_refused_everywhere(ids):
  phrase = r"must be a flat sequence of integer class ids, got an array of shape"
  calls = [
      ("forget", lambda: mj.forget(_linear, PARAMS, CODES, ids)),
      ("forget", lambda: mj.class_fishers(_linear, PARAMS, CODES, ids)),
      ("exclude", lambda: mj.class_fishers(_linear, PARAMS, CODES, [0], exclude=ids)),
      ("forgotten", lambda: mj.forgetting_metrics(np.eye(3), np.arange(3), ids)),
      ("classes", lambda: baselines.UnlearnData.from_training(
          np.zeros((3, 2, 2, 1), np.uint8), np.arange(3), ids)),
  ]
  for name, call in calls:
    with pytest.raises(mj.errors.BadRequestType, match=f"^{name} {phrase}"):
      call()
  mj.forgetting_metrics(np.eye(3), np.arange(3), np.array([1, 2]))  # 1-d: taken.


def test_w5_a_nested_list_of_ids_says_to_flatten_it():
  with pytest.raises(mj.errors.BadRequestType, match=r"give a flat sequence, e.g. \[3, 5\]"):
    mj.forgetting_metrics(np.eye(3), np.arange(3), [[1, 2]])


def test_w6_unlearn_names_its_classes_argument():
  shape = (2, 2, 1)
  model = mj.create_model("mlp", 3, hidden=(4,))
  params = model.init(jax.random.key(1), jnp.zeros((1, *shape)))["params"]
  bundle = Bundle("mlp", {"hidden": (4,)}, params, {}, jnp.zeros((3, *shape)), 3, shape,
                  mean=(0.3,), std=(0.3,))
  data = baselines.UnlearnData()
  for classes, phrase in [(np.int64(1), "^classes must be a sequence of integer class ids"),
                          ([1, 1], "^classes: duplicated class ids"),
                          ([], "^classes: no class to forget"),
                          ([7], "^classes: class ids .7. are out of range")]:
    with pytest.raises(mj.errors.BadRequest, match=phrase):
      baselines.unlearn("ssd", bundle, classes, data)


def test_w7_the_attacks_take_a_1d_array_of_scales_or_steps():
  from mnemonic_jax import evaluation as ev
  rng = np.random.default_rng(0)
  x, y = rng.normal(size=(30, 4)).astype(np.float32), np.repeat(np.arange(3), 10)
  w = rng.normal(size=(4, 3)).astype(np.float32)
  predict = lambda z: z @ w
  listed = ev.input_scale_recovery(predict, x, y, [1], [1.5, 2.0])
  assert ev.input_scale_recovery(predict, x, y, [1], np.array([1.5, 2.0])) == listed
  assert ev.input_scale_recovery(predict, x, y, [1], jnp.array([1.5, 2.0])) == listed
  steps = ev.head_finetune_recovery(x, y, w, np.zeros(3), x, y, [1], steps=[0, 2])
  assert ev.head_finetune_recovery(x, y, w, np.zeros(3), x, y, [1],
                                   steps=np.array([0, 2])) == steps
  with pytest.raises(mj.errors.BadRequest, match="scales holds 2 twice"):
    ev.input_scale_recovery(predict, x, y, [1], (2.0, 2))
  with pytest.raises(mj.errors.BadRequest, match="steps holds 2 twice"):
    ev.head_finetune_recovery(x, y, w, np.zeros(3), x, y, [1], steps=(2, 2))
  with pytest.raises(mj.errors.BadRequestType, match=r"1-d sequence .* shape \(1, 2\)"):
    ev.input_scale_recovery(predict, x, y, [1], np.array([[1.5, 2.0]]))


class _Tied(nn.Module):
  """A Dense kernel read again outside its layer: a tied read-out ``h @ kernel[:10].T``."""

  @nn.compact
  def __call__(self, x):
    dense = nn.Dense(16)
    h = jnp.tanh(dense(x.reshape(x.shape[0], -1)))
    kernel = dense.variables["params"]["kernel"]
    return h @ kernel[:10].T + nn.Dense(10)(h)


def test_w13_a_parameter_read_outside_its_layer_takes_the_exact_fisher():
  """W13: "auto" took the factorized Fisher for a tied kernel (every leaf sits in a Dense
  called once), which misses the gradient of its second use: 78% off, silently."""
  codes = mj.generate_codes(jax.random.key(0), 10, (8, 8, 1))
  model = _Tied()
  params = model.init(jax.random.key(0), codes)["params"]
  apply_fn = lambda p, x: model.apply({"params": p}, x)
  one = lambda p, x, y: mj.cross_entropy(apply_fn(p, x[None]), y[None])[0]
  grads = jax.jit(jax.vmap(jax.grad(one), in_axes=(None, 0, 0)))(params, codes, jnp.arange(10))
  by_hand = jax.tree.map(lambda g: jnp.mean(jnp.square(g), axis=0), grads)  # One program.
  chex.assert_trees_all_close(mj.fisher_diagonal(apply_fn, params, codes, jnp.arange(10)),
                              by_hand, rtol=1e-5, atol=1e-9)
  assert not layer_taps.covers(apply_fn, params, codes)
  with pytest.raises(mj.errors.BadRequest, match="method='factorized' needs"):
    mj.fisher_diagonal(apply_fn, params, codes, jnp.arange(10), method="factorized")
  untied = nn.Sequential([lambda x: x.reshape(x.shape[0], -1), nn.Dense(16), jnp.tanh,
                          nn.Dense(10)])
  plain = untied.init(jax.random.key(0), codes)["params"]
  assert layer_taps.covers(lambda p, x: untied.apply({"params": p}, x), plain, codes)


class _Rematted(nn.Module):
  """A Dense under ``nn.remat`` (gradient checkpointing), or a lifted ``nn.vmap``."""

  lifted: str = "remat"

  @nn.compact
  def __call__(self, x):
    x = x.reshape(x.shape[0], -1)
    if self.lifted == "remat":
      h = nn.remat(nn.Dense)(16)(x)
    else:
      h = nn.vmap(nn.Dense, variable_axes={"params": None}, split_rngs={"params": False},
                  in_axes=0, out_axes=0)(16)(x[:, None])[:, 0]
    return nn.Dense(10)(jnp.tanh(h))


@pytest.mark.parametrize("lifted", ["remat", "vmap"])
def test_w19_a_layer_under_the_models_own_transform_takes_the_exact_fisher(lifted):
  """W19: the taps recorded the input of a Dense inside ``nn.remat`` (or a lifted
  ``nn.vmap``) and used it outside: UnexpectedTracerError from "auto", class_fishers and
  the paper's move."""
  apply_fn, params, codes = _assert_exact_fisher_not_factorized(_Rematted(lifted), (8, 8, 1))
  mj.class_fishers(apply_fn, params, codes, [3])


def _assert_exact_fisher_not_factorized(model: nn.Module, shape: tuple[int, ...]):
  """The model is not covered by the factorized formulas, and "auto" gives vmap's Fisher;
  returns ``(apply_fn, params, codes)``."""
  codes = mj.generate_codes(jax.random.key(0), 10, shape)
  params = model.init(jax.random.key(0), codes)["params"]
  apply_fn = lambda p, x: model.apply({"params": p}, x)
  assert not layer_taps.covers(apply_fn, params, codes)
  chex.assert_trees_all_close(
      mj.fisher_diagonal(apply_fn, params, codes, jnp.arange(10)),
      mj.fisher_diagonal(apply_fn, params, codes, jnp.arange(10), method="vmap"))
  return apply_fn, params, codes


def _tiny():
  model = mj.create_model("mlp", 3, hidden=(4,))
  codes = mj.generate_codes(jax.random.key(0), 3, (2, 2, 1))
  return mj.inference_apply_fn(model, {}), model.init(jax.random.key(1), codes)["params"], codes


def test_w16_a_bool_in_a_list_of_labels_is_refused():
  """W16: ``[True, 2]`` became the labels ``[1, 2]`` (a bool array, or a ``True`` class
  id, is refused) in the Fisher, the metrics, the loss, the code mixing and the MIAs."""
  apply_fn, params, codes = _tiny()
  logits = np.asarray(apply_fn(params, codes))
  calls = [lambda: mj.fisher_diagonal(apply_fn, params, codes[:2], [True, 2]),
           lambda: mj.forgetting_metrics(logits, [True, 1, 2], [1]),
           lambda: mj.cross_entropy(jnp.ones((2, 3)), (2, np.bool_(True))),
           lambda: mj.mix_codes(jax.random.key(0), jnp.zeros((2, 2, 2, 1)), [True, 2], codes,
                                0.5),
           lambda: mia.true_class_probability(logits, [True, 0, 1])]
  for call in calls:
    with pytest.raises(mj.errors.BadRequestType, match="labels hold the bool True"):
      call()
  mj.forgetting_metrics(logits, [0, 1, 2], [1])  # Integers still go through.


@pytest.mark.parametrize("host_read", ["np.asarray", "float"])
def test_w18_an_apply_fn_jax_cannot_trace_is_named_as_such(host_read):
  """W18: ``np.asarray`` or a Python ``if`` on values inside apply_fn was refused with a
  guess at two unrelated causes (inputs that do not fit, arguments in the wrong order)."""
  apply_fn, params, codes = _tiny()
  if host_read == "np.asarray":
    untraceable = lambda p, x: np.asarray(apply_fn(p, x))
  else:
    untraceable = lambda p, x: apply_fn(p, x) * (1.0 if float(x.sum()) > 0 else 2.0)
  with pytest.raises(mj.errors.BadRequest, match="apply_fn must be traceable by JAX"):
    mj.forget(untraceable, params, codes, [1])


class _Odd(nn.Module):
  """One layer the factorized formulas cannot read (walk5 V9, V10, V15, V16)."""

  case: str

  @nn.compact
  def __call__(self, x):
    if self.case == "conv mask":
      mask = jnp.ones((3, 3, 1, 4)).at[0].set(0.0)
      h = nn.Conv(4, (3, 3), mask=mask)(x).reshape(x.shape[0], -1)
    elif self.case == "own dot_general":
      h = nn.Dense(8, dot_general=lambda a, b, *args, **kw: jax.lax.dot_general(
          a, 2.0 * b, *args, **kw))(x.reshape(x.shape[0], -1))
    elif self.case == "input as keyword":
      h = nn.Dense(8)(inputs=x.reshape(x.shape[0], -1))
    else:  # Time-major: the Dense sees (rows of the image, N, columns).
      h = nn.Dense(8)(jnp.swapaxes(x[..., 0], 0, 1)).mean(0)
    return nn.Dense(10)(jnp.tanh(h))


@pytest.mark.parametrize("case", ["conv mask", "own dot_general", "input as keyword",
                                  "batch not first"])
def test_walk5_layers_the_formulas_cannot_read_take_the_exact_fisher(case):
  """walk5 V9, V10: a masked Conv or a Dense with its own product got the factorized
  Fisher, 75-435% off; V15: an input given as a keyword crashed it (IndexError); V16: a
  layer whose first axis is not the batch crashed it inside JAX."""
  _assert_exact_fisher_not_factorized(_Odd(case), (4, 4, 1))


def test_w16_every_entry_point_reading_labels_from_a_list_refuses_a_bool():
  """W16's kind where the labels are converted before they are checked: fit, the
  baselines' data (from_training, a hand-built Split), relearning and attach-codes."""
  apply_fn, params, codes = _tiny()
  del apply_fn
  model = mj.create_model("mlp", 3, hidden=(4,))
  images = np.zeros((3, 2, 2, 1), np.uint8)
  listed = [True, 1, 2]
  bundle = Bundle("mlp", {"hidden": (4,)}, params, {}, np.asarray(codes), 3, (2, 2, 1),
                  mean=(0.5,), std=(0.25,))
  split = baselines.Split(images, listed)
  calls = [
      lambda: mj.fit(model, (images, listed), codes, mj.FitConfig(epochs=1, batch_size=3),
                     jax.random.key(0), progress=False),
      lambda: baselines.UnlearnData.from_training(images, listed, [1]),
      lambda: baselines.unlearn("neggrad", bundle, [1], baselines.UnlearnData(forget=split)),
      lambda: mj.relearning.relearn_steps(bundle, split, split, split, 50.0,
                                          key=jax.random.key(0)),
      lambda: mj.attach.attach_codes(bundle, images, listed, epochs=1),
  ]
  for call in calls:
    with pytest.raises(mj.errors.BadRequestType, match="labels hold the bool True"):
      call()
