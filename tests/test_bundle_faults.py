"""Bundle faults a fresh researcher found (helper-40): history that changed on save and load,
dtypes lost on save and load, and an import that did not say whether the model knows its
codes. Tiny MLP bundles built directly; nothing is trained."""

import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mnemonic_jax import checkpointing, errors
from mnemonic_jax.bundle import IMPORT_EVENT, Bundle
from mnemonic_jax.checkpointing import (
    CheckpointError, CodesNotLearnedWarning, TrainCheckpointer, import_params, load_bundle,
    save_bundle)
from mnemonic_jax.models import create_model

SHAPE = (4, 4, 1)


def _bundle(num_classes=3, **changes) -> Bundle:
  model = create_model("mlp", num_classes, hidden=(8,))
  params = model.init(jax.random.key(0), jnp.zeros((1, *SHAPE)))["params"]
  codes = np.random.default_rng(0).normal(size=(num_classes, *SHAPE)).astype(np.float32)
  return Bundle("mlp", {"hidden": [8]}, params, {}, codes, num_classes, SHAPE,
                **changes)


# ---------------------------------------------------------------- item 5: JSON-stable history


def test_history_and_config_are_the_same_in_memory_as_after_save_and_load(tmp_path):
  entry = {"classes": [np.int64(1)], "relabelled": {0: 19, 2: np.int32(4)},
           "pair": (1, (2, 3)), "score": np.float32(0.5), "per_class": {1: {"n": (7,)}}}
  bundle = _bundle(history=(entry,), config={"hidden": (8,), "by_class": {3: 0.5}})
  loaded = load_bundle(save_bundle(tmp_path / "b", bundle))
  assert bundle.history == loaded.history
  assert bundle.config == loaded.config
  assert bundle.history[0]["relabelled"] == {"0": 19, "2": 4}  # As JSON keeps it.
  # Every writer goes through construction: replace() and appends are normalised too.
  appended = bundle.replace(history=bundle.history + ({"classes": [2], "t": (1,)},))
  assert appended.history[-1] == {"classes": [2], "t": [1]}


def test_history_keys_that_json_would_merge_are_refused(tmp_path):
  bundle = _bundle(history=({"classes": [1], "d": {1: "a", "1": "b"}},))
  with pytest.raises(CheckpointError, match="occur twice"):  # One value would be lost.
    save_bundle(tmp_path / "b", bundle)
  with pytest.raises(errors.BadRequestType, match="history entry 0 is of type list"):
    _bundle(history=([1],))


# ------------------------------------------------------------------------ item 14: dtypes


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16, np.float64])
def test_params_and_codes_come_back_with_their_saved_dtypes_bit_for_bit(tmp_path, dtype):
  base = _bundle()
  params = jax.tree.map(lambda x: np.asarray(np.asarray(x, np.float64) + 1e-9, dtype),
                        base.params)
  codes = np.asarray(np.asarray(base.codes, np.float64) + 1e-9, dtype)
  loaded = load_bundle(save_bundle(tmp_path / "b", base.replace(params=params, codes=codes)))
  for saved, back in zip(jax.tree.leaves((params, codes)),
                         jax.tree.leaves((loaded.params, loaded.codes))):
    assert np.asarray(back).dtype == np.dtype(dtype)
    assert np.asarray(back).tobytes() == np.asarray(saved).tobytes()


def test_params_of_another_dtype_kind_are_refused(tmp_path):
  base = _bundle()
  ints = jax.tree.map(lambda x: np.zeros(x.shape, np.int32), base.params)
  with pytest.raises(CheckpointError, match="Dense_0/bias has dtype int32, expected float32"):
    save_bundle(tmp_path / "b", base.replace(params=ints))
  assert not (tmp_path / "b").exists()


def test_a_train_checkpoint_is_not_cast_to_other_dtypes(tmp_path):
  with TrainCheckpointer(tmp_path / "run") as ckpt:
    assert ckpt.save(1, {"w": jnp.full(3, 1 / 3, jnp.float32)})
  with TrainCheckpointer(tmp_path / "run") as ckpt:
    with pytest.raises(CheckpointError, match="w has dtype float32, expected bfloat16"):
      ckpt.restore(1, {"w": jax.ShapeDtypeStruct((3,), jnp.bfloat16)})


# -------------------------------------------------------- item 9: import says what it knows


def _import(tmp_path, bundle, codes, name):
  params_file = tmp_path / f"{name}.msgpack"
  params_file.write_bytes(flax.serialization.to_bytes(jax.device_get(bundle.params)))
  return import_params(params_file, codes, model_name="mlp", model_kwargs={"hidden": [8]},
                       num_classes=bundle.num_classes, input_shape=SHAPE,
                       output=tmp_path / name, mean=(0.0,), std=(1.0,))


def test_import_counts_the_codes_the_model_knows_and_warns_when_most_are_wrong(tmp_path):
  bundle = _bundle(num_classes=4)
  logits = np.asarray(bundle.apply_fn()(bundle.params, jnp.asarray(bundle.codes)))
  predicted = np.argmax(logits, -1)
  # Codes the model classifies as their class: each class gets a code predicted as it
  # where one exists; the test needs at least one known and one unknown code.
  known = np.stack([bundle.codes[list(predicted).index(c)] if c in predicted
                    else bundle.codes[0] for c in range(4)])
  right_known = int(np.sum(np.argmax(np.asarray(bundle.apply_fn()(
      bundle.params, jnp.asarray(known))), -1) == np.arange(4)))
  assert 0 < right_known

  with pytest.warns(CodesNotLearnedWarning, match="attach-codes"):
    zeros = _import(tmp_path, bundle, np.zeros((4, *SHAPE), np.float32), "zeros")
  entry = load_bundle(zeros).history[-1]
  assert entry["event"] == IMPORT_EVENT and entry["classes"] == []
  assert entry["codes_right"] == 1 and entry["codes_accuracy"] == 0.25  # One arg-max.
  assert "does not know these codes" in entry["warnings"][0]
  assert load_bundle(zeros).forgotten_classes == ()

  out = _import(tmp_path, bundle, known, "known")
  entry = load_bundle(out).history[-1]
  assert entry["codes_right"] == right_known
  assert bool(entry["warnings"]) == (right_known < 4)


def test_import_without_warning_when_every_code_is_right(tmp_path, recwarn):
  bundle = _bundle(num_classes=2)
  # A bias that makes class c win on code c: codes +-1 everywhere, last layer by hand.
  params = jax.tree.map(np.array, bundle.params)  # Writable copies.
  params["Dense_0"]["kernel"][:] = 0.0
  params["Dense_0"]["kernel"][:, 0] = 1.0
  params["Dense_0"]["bias"][:] = 0.0
  params["Dense_1"]["kernel"][:] = 0.0
  params["Dense_1"]["kernel"][0] = [10.0, -10.0]
  params["Dense_1"]["bias"][:] = [-5.0, 5.0]  # sigmoid(16) ~ 1 -> class 0; sigmoid(-16) -> 1.
  codes = np.stack([np.ones(SHAPE), -np.ones(SHAPE)]).astype(np.float32)
  out = _import(tmp_path, bundle.replace(params=params), codes, "right")
  entry = load_bundle(out).history[-1]
  assert entry["codes_right"] == 2 and entry["warnings"] == []
  assert not [w for w in recwarn if issubclass(w.category, CodesNotLearnedWarning)]
  assert checkpointing.load_bundle(out).history == (entry,)
