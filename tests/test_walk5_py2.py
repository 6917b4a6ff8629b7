"""Faults a fifth round of a fresh Python user found composing the pure functions (part 2).

* V4: the baselines' configs refused a 0-d JAX number (``FinetuneConfig(learning_rate=
  jnp.float32(0.1))``) that every other config takes, while ``Rule``, ``RelearnConfig`` and
  ``DepthConfig`` took it but kept it as given (``DepthConfig`` kept NumPy scalars and
  strings in a config that is recorded). One rule now for the baselines', relearning and
  depth configs: a concrete 0-d real number is taken and stored as a Python ``int`` or
  ``float``. (``Rule`` still keeps what it is given: tests/test_move_options.py asserts it.)
* V6: ``RelearnResult.steps_to(fraction)`` checked nothing: ``75`` (a percentage) read as
  "never relearned", ``0``/``-1`` as "relearned at step 0", a string gave a bare TypeError.
* V7: ``evaluation.probe_recall(c=jnp.float32(1.0))`` passed the check, then sklearn refused
  the JAX scalar (the checked value was handed on unconverted).
* V8: ``fit(mean=..., std=...)`` converted strings, bytes and bools to numbers and flattened
  nested sequences, yet refused a 1-d JAX array as "not a sequence"; ``progress="no"``
  showed the bar.
* V14 (the evaluation's part): ``head_finetune_recovery(steps=())`` said "steps must be
  counts >= 0, got []" (the fault is emptiness); ``DepthConfig(scales=np.array([1.5]))``
  was refused "must be a tuple" while the attacks take 1-d arrays.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mnemonic_jax as mj
from mnemonic_jax import errors, relearning
from mnemonic_jax import evaluation as ev
from mnemonic_jax import training, training_checks
from mnemonic_jax.baselines import finetune, neggrad
from mnemonic_jax.evaluation import depth


def _types(config):
  return {f.name: type(getattr(config, f.name)) for f in dataclasses.fields(config)}


# V4 ----------------------------------------------------------------------------------------

def test_baseline_configs_take_zero_d_numbers_and_store_python_numbers():
  config = finetune.FinetuneConfig(learning_rate=jnp.float32(0.5), epochs=jnp.int32(2),
                                   momentum=np.float32(0.5), train_mode=np.bool_(True))
  assert (config.learning_rate, config.epochs, config.momentum) == (0.5, 2, 0.5)
  assert type(config.learning_rate) is float and type(config.epochs) is int
  assert type(config.momentum) is float and type(config.train_mode) is bool
  hash(config)
  # A 0-d NumPy array and an int for a float field are numbers too, stored as float.
  assert type(neggrad.NegGradConfig(learning_rate=np.array(1)).learning_rate) is float


@pytest.mark.parametrize("value", [jnp.array([0.1]), True, "0.1", jnp.float32(0.1) > 0])
def test_baseline_configs_still_refuse_arrays_bools_and_strings(value):
  with pytest.raises(errors.BadRequestType, match="learning_rate"):
    finetune.FinetuneConfig(learning_rate=value)


def test_baseline_configs_refuse_a_traced_number():
  with pytest.raises(errors.BadRequestType, match="epochs"):
    jax.jit(lambda n: finetune.FinetuneConfig(epochs=n).batch_size)(jnp.int32(1))
  with pytest.raises(errors.BadRequestType, match="epochs"):
    finetune.FinetuneConfig(epochs=jnp.float32(1))


def test_relearn_and_depth_configs_store_python_values():
  config = relearning.RelearnConfig(learning_rate=jnp.float32(0.5), max_steps=np.int64(3),
                                    stop_early=np.bool_(False))
  assert _types(config) == {f.name: type(getattr(relearning.RelearnConfig(), f.name))
                            for f in dataclasses.fields(config)}
  hash(config)
  deep = depth.DepthConfig(probe_per_class=np.int64(5), prototype_metric=np.str_("l2"),
                           relearn_fraction=jnp.float32(0.5), scales=[jnp.float32(2.0)],
                           head_steps=(np.int32(3),))
  assert type(deep.probe_per_class) is int and type(deep.prototype_metric) is str
  assert type(deep.relearn_fraction) is float
  assert deep.scales == (2.0,) and type(deep.scales[0]) is float
  assert deep.head_steps == (3,) and type(deep.head_steps[0]) is int
  hash(deep)


# V6 ----------------------------------------------------------------------------------------

def _result():
  return relearning.RelearnResult(steps_to_50=2, steps_to_90=4,
                                  curve=[(0, 10.0), (2, 60.0), (4, 95.0)],
                                  reference_accuracy=100.0, sample_size=8, steps=4)


def test_steps_to_takes_a_fraction():
  r = _result()
  assert r.steps_to(0.5) == 2 and r.steps_to(jnp.float32(0.9)) == 4 and r.steps_to(1) is None


@pytest.mark.parametrize("fraction", [75, 0, -1, np.nan, 1.5])
def test_steps_to_refuses_a_level_outside_zero_one(fraction):
  with pytest.raises(errors.BadRequest, match="fraction"):
    _result().steps_to(fraction)


def test_steps_to_suggests_the_fraction_of_a_percentage():
  with pytest.raises(errors.BadRequest, match="0.75 for 75%"):
    _result().steps_to(75)


@pytest.mark.parametrize("fraction", ["0.5", None, True])
def test_steps_to_refuses_what_is_no_number(fraction):
  with pytest.raises(errors.BadRequestType, match="fraction"):
    _result().steps_to(fraction)


# V7 ----------------------------------------------------------------------------------------

def test_probe_recall_takes_a_jax_scalar_c():
  rng = np.random.default_rng(0)
  x, y = rng.normal(size=(30, 4)), np.repeat(np.arange(3), 10)
  got = ev.probe_recall(x, y, x, y, [1], c=jnp.float32(1.0), max_iter=jnp.int32(50))
  assert got == ev.probe_recall(x, y, x, y, [1], c=1.0, max_iter=50)


# V8 ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("mean", [("0.5",), (b"1",), (True,), ((0.5,),), [[0.5]],
                                  np.array([[0.5]]), 0.5, None])
def test_normalisation_refuses_what_is_not_a_flat_sequence_of_numbers(mean):
  with pytest.raises(errors.BadRequestType, match="fit: mean"):
    training_checks.normalisation(mean, (1.0,), (4, 4, 1), "fit")
  with pytest.raises(errors.BadRequestType, match="fit: std"):
    training_checks.normalisation((0.5,), mean, (4, 4, 1), "fit")


def test_normalisation_takes_a_jax_array_as_a_numpy_one():
  got = training_checks.normalisation(jnp.array([0.5]), jnp.array([2.0]), (4, 4, 1), "fit")
  assert got == training_checks.normalisation(np.array([0.5]), [2], (4, 4, 1), "fit")
  assert got == ((0.5,), (2.0,)) and all(type(v) is float for v in got[0] + got[1])


def test_make_predict_fn_refuses_a_string_mean():
  model = mj.create_model("mlp", 10, hidden=(4,))
  with pytest.raises(errors.BadRequestType, match="make_predict_fn: mean"):
    training.make_predict_fn(model, mean=("0.5",))


@pytest.mark.parametrize("progress", ["no", None, 0])
def test_fit_refuses_a_progress_that_is_not_a_bool(progress):
  model = mj.create_model("mlp", 10, hidden=(4,))
  codes = mj.generate_codes(jax.random.key(0), 10, (4, 4, 1))
  data = (np.zeros((4, 4, 4, 1), np.uint8), np.arange(4))
  with pytest.raises(errors.BadRequestType, match="progress"):
    mj.fit(model, data, codes, mj.FitConfig(epochs=1, batch_size=2), jax.random.key(0),
           progress=progress)


# V14 (the evaluation's slips) --------------------------------------------------------------

def test_head_finetune_recovery_names_empty_steps_as_the_fault():
  rng = np.random.default_rng(0)
  x, y = rng.normal(size=(12, 2)), np.repeat(np.arange(3), 4)
  with pytest.raises(errors.BadRequest, match="steps needs at least one step count"):
    ev.head_finetune_recovery(x, y, np.zeros((2, 3)), np.zeros(3), x, y, [1], steps=())


def test_depth_config_takes_1d_arrays_as_the_attacks_do():
  config = depth.DepthConfig(scales=np.array([1.5, 2.0]), head_steps=jnp.array([3, 5]))
  assert config.scales == (1.5, 2.0) and config.head_steps == (3, 5)
  assert type(config.head_steps[0]) is int
  hash(config)
  with pytest.raises(errors.BadRequestType, match="scales"):
    depth.DepthConfig(scales=np.array([[1.5]]))
  with pytest.raises(errors.BadRequestType, match=r"head_steps\[0\]"):
    depth.DepthConfig(head_steps=np.array([True]))
