"""Faults a fresh Python user found composing the pure functions (walk 4, second part).

* W8: the MIAs (``entropy_mia``, ``confidence_mia``, ``loss_mia`` and their feature
  helpers) refused bfloat16 logits and losses as "not real numbers": their dtype test was
  ``dtype.kind in "iuf"``, and NumPy gives ml_dtypes' bfloat16 the kind ``'V'``, though a
  bf16 model's logits are taken by every other scorer.
* W9: the MIAs' ``seed`` took any integer >= 0, then sklearn (``random_state``) or NumPy
  failed deep inside on one >= 2**32, and ``confidence_mia`` alone accepted it: the three
  attacks disagreed on which seeds work.
* W10: ``make_mesh([])`` built a mesh of no device without a word (``fisher_diagonal``
  with it then aborted the interpreter in a fatal C++ check), and ``make_mesh("cpu")``
  failed with an ``AttributeError`` inside JAX: the devices were not checked.
* W11: ``mesh=`` of ``fisher_diagonal``, ``class_fishers``, ``fit`` (and
  ``make_train_step``, ``make_predict_fn``) was not checked: a string or a list of devices
  failed with ``AttributeError``, a mesh without a ``data`` axis with JAX's ``ValueError``;
  the moves' ``options.mesh`` checked the type only, so a mesh without ``data`` became a
  bare ``KeyError`` 13 frames deep in ``forget``.
* W12: ``fit``'s ``state=`` and ``on_step=`` were not checked: another model's state was
  handed back as this model's (or failed in Flax after compiling), a dict failed with
  ``AttributeError``, a non-callable ``on_step`` failed after the first compiled step.
"""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh

import mnemonic_jax as mj
from mnemonic_jax import mia, parallel, training
from mnemonic_jax.forgetting import moves

_RNG = np.random.default_rng(0)
_R, _T, _F = (_RNG.normal(size=(n, 4)) for n in (12, 12, 6))
_YR, _YT, _YF = (_RNG.integers(0, 4, size=n) for n in (12, 12, 6))


# --------------------------------------------------------------------------------- W8


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16, jnp.float8_e4m3fn])
def test_w8_mias_take_every_float_dtype(dtype):
  low = lambda a: np.asarray(jnp.asarray(a, dtype))
  as64 = lambda a: np.asarray(low(a), np.float64)
  assert mia.entropy_mia(low(_R), _T, _F) == mia.entropy_mia(as64(_R), _T, _F)
  assert (mia.confidence_mia(_R, _YR, low(_T), _YT, _F, _YF)
          == mia.confidence_mia(_R, _YR, as64(_T), _YT, _F, _YF))
  losses = np.abs(_F[:, 0])
  assert mia.loss_mia(low(losses), np.abs(_T[:, 0])) == mia.loss_mia(as64(losses),
                                                                      np.abs(_T[:, 0]))
  np.testing.assert_allclose(mia.true_class_probability(low([[3., 0.]]), [0]),
                             mia.true_class_probability([[3., 0.]], [0]), rtol=1e-6)
  assert mia.softmax_entropy(jnp.asarray(_R, dtype)).shape == (12,)  # A jax.Array too.


def test_w8_mias_still_refuse_what_is_not_real_numbers():
  for bad in (np.ones((3, 2), bool), np.ones((3, 2), complex), np.full((3, 2), "a")):
    with pytest.raises(mj.errors.BadRequestType, match="real numbers"):
      mia.softmax_entropy(bad)
    with pytest.raises(mj.errors.BadRequestType, match="real numbers"):
      mia.loss_mia(bad[:, 0], np.ones(3))


# --------------------------------------------------------------------------------- W9


@pytest.mark.parametrize("seed", [2**32, 2**63, -1])
def test_w9_every_attack_refuses_a_seed_outside_32_bits_up_front(seed):
  calls = {
      "entropy_mia": lambda: mia.entropy_mia(_R, _T, _F, seed=seed),
      "confidence_mia": lambda: mia.confidence_mia(_R, _YR, _T, _YT, _F, _YF, seed=seed),
      "loss_mia": lambda: mia.loss_mia(np.abs(_F[:, 0]), np.abs(_T[:, 0]), seed=seed),
      "all_attacks": lambda: mia.all_attacks(_R, np.where(_YR == 0, 1, _YR), _T, _YT, _F,
                                             np.zeros(6, int), [0], seed=seed),
  }
  for caller, call in calls.items():
    with pytest.raises(mj.errors.BadRequest, match=re.escape(f"{caller}: seed must be in "
                                                             "[0, 2**32)")):
      call()


def test_w9_the_largest_32_bit_seed_works_in_every_attack():
  seed = 2**32 - 1
  assert 0 <= mia.entropy_mia(_R, _T, _F, seed=seed) <= 100
  assert 0 <= mia.confidence_mia(_R, _YR, _T, _YT, _F, _YF, seed=seed) <= 100
  assert 0 <= mia.loss_mia(np.abs(_F[:, 0]), np.abs(_T[:, 0]), seed=seed) <= 100
  assert 0 <= mia.entropy_mia(_R, _T, _F, seed=np.uint64(seed)) <= 100


# -------------------------------------------------------------------------------- W10


@pytest.mark.parametrize("devices, error, words", [
    ([], mj.errors.BadRequest, "devices is empty"),
    ((), mj.errors.BadRequest, "devices is empty"),
    ("cpu", mj.errors.BadRequestType, "devices must be a sequence of jax.Device, got str"),
    (3, mj.errors.BadRequestType, "devices must be a sequence of jax.Device, got int"),
    (["cpu"], mj.errors.BadRequestType, "devices must hold jax.Device objects only"),
])
def test_w10_make_mesh_refuses_no_device_or_what_is_not_devices(devices, error, words):
  with pytest.raises(error, match=re.escape(words)):
    mj.make_mesh(devices)


def test_w10_make_mesh_refuses_a_device_twice_and_takes_good_devices():
  device = jax.devices()[0]
  with pytest.raises(mj.errors.BadRequest, match="more than once"):
    mj.make_mesh([device, device])
  mesh = mj.make_mesh(iter(jax.devices()[:2]))  # Any iterable of devices.
  assert mesh.axis_names == ("data",) and mesh.devices.size == 2
  assert mj.make_mesh().devices.size == len(jax.devices())


# -------------------------------------------------------------------------------- W11

_CODES = mj.generate_codes(jax.random.key(0), 3, (4, 4, 1))
_MODEL = mj.create_model("mlp", num_classes=3, hidden=(4,))
_PARAMS = _MODEL.init(jax.random.key(1), _CODES)["params"]
_APPLY = mj.inference_apply_fn(_MODEL, {})
_IMAGES = np.zeros((8, 4, 4, 1), np.uint8)
_LABELS = np.arange(8) % 3

#: Every public ``mesh=`` argument, as a call taking the mesh.
_MESH_TAKERS = {
    "fisher_diagonal": lambda m: mj.fisher_diagonal(_APPLY, _PARAMS, _CODES, [0, 1, 2], mesh=m),
    "class_fishers": lambda m: mj.class_fishers(_APPLY, _PARAMS, _CODES, [1], mesh=m),
    "fit": lambda m: mj.fit(_MODEL, (_IMAGES, _LABELS), _CODES, mj.FitConfig(
        epochs=1, batch_size=8), jax.random.key(0), mesh=m, progress=False),
    "make_train_step": lambda m: training.make_train_step(
        _MODEL, training.make_optimizer(), _CODES, 0.5, jax.random.key(0), mesh=m),
    "make_predict_fn": lambda m: training.make_predict_fn(_MODEL, mesh=m),
    "Paper": lambda m: moves.Paper(mesh=m),
    "Algorithm2": lambda m: moves.Algorithm2(1e-3, 1e-3, mesh=m),
}


def _bad_meshes():
  devices = np.asarray(jax.devices())
  return [
      ("cpu", mj.errors.BadRequestType, "mesh must be a jax.sharding.Mesh with a 'data' axis"),
      (jax.devices(), mj.errors.BadRequestType, "mesh must be a jax.sharding.Mesh"),
      (Mesh(devices, ("batch",)), mj.errors.BadRequest, "mesh has no 'data' axis"),
      (Mesh(np.empty((0,), object), ("data",)), mj.errors.BadRequest, "mesh holds no device"),
  ]


@pytest.mark.parametrize("taker", sorted(_MESH_TAKERS))
def test_w11_every_mesh_argument_gets_the_one_mesh_check(taker):
  for mesh, error, words in _bad_meshes():
    with pytest.raises(error, match=re.escape(words)) as info:
      _MESH_TAKERS[taker](mesh)
    if taker in ("Paper", "Algorithm2"):  # The move names its own option.
      assert str(info.value).startswith(f"{taker}.mesh"), info.value


def test_w11_a_mesh_with_a_data_axis_beside_others_is_taken():
  two_d = Mesh(np.asarray(jax.devices()[:2]).reshape(2, 1), ("data", "model"))
  parallel.check_mesh(two_d)
  parallel.check_mesh(None)
  fisher = mj.fisher_diagonal(_APPLY, _PARAMS, _CODES, [0, 1, 2], mesh=mj.make_mesh(
      jax.devices()[:1]))
  assert jax.tree.structure(fisher) == jax.tree.structure(_PARAMS)


# -------------------------------------------------------------------------------- W12

_CONFIG = mj.FitConfig(epochs=1, batch_size=8)


def _fit(model=_MODEL, **kw):
  return mj.fit(model, (_IMAGES, _LABELS), _CODES, _CONFIG, jax.random.key(0), progress=False,
                **kw)


def test_w12_fit_refuses_a_state_of_another_model_or_not_a_state():
  other = mj.create_model("mlp", num_classes=3, hidden=(8,))
  state = training.initial_state(other, (4, 4, 1), _CONFIG, 8, jax.random.key(0))
  state = state.replace(step=state.step + 1)  # Past the last step: nothing would train.
  with pytest.raises(mj.errors.BadRequest, match=re.escape(
      "fit: state.params does not fit the model on inputs (4, 4, 1): "
      "params['Dense_0']['bias'] has shape (8,), the model's (4,)")):
    _fit(state=state)
  with pytest.raises(mj.errors.BadRequestType, match="state must be a TrainState.*got dict"):
    _fit(state={"params": state.params})


def test_w12_fit_refuses_an_on_step_that_is_not_callable():
  with pytest.raises(mj.errors.BadRequestType, match="on_step must be callable.*got int"):
    _fit(on_step=3)


def test_w12_a_state_of_this_model_resumes_and_one_past_the_end_returns_as_is():
  state = training.initial_state(_MODEL, (4, 4, 1), _CONFIG, 8, jax.random.key(0))
  done = state.replace(step=state.step + 1)  # One step an epoch: already finished.
  out, metrics = _fit(state=done)
  assert out is done and metrics == {}
