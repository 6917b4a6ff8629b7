"""The request checks of :func:`mnemonic_jax.baselines.unlearn` and its compiled programs.

A second request keeps the classes earlier requests forgot out of the data a method reads;
data that is not uint8 images in the model's input shape, a tuple for the data, an int
key, or a class the bundle already forgot is refused before the method runs; the report
says which data the method read; and a second call with the same model, config and data
shapes compiles nothing (one test per family of methods). Tiny random MLP, tiny data.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mnemonic_jax as mj
from mnemonic_jax import baselines, errors
from mnemonic_jax.baselines import base, unsir
from mnemonic_jax.baselines.bad_teacher import BadTeacherConfig
from mnemonic_jax.baselines.finetune import FinetuneConfig
from mnemonic_jax.baselines.fisher_forgetting import FisherForgettingConfig
from mnemonic_jax.baselines.l1_sparse import L1SparseConfig
from mnemonic_jax.baselines.lfssd import LFSSDConfig
from mnemonic_jax.baselines.neggrad import NegGradConfig
from mnemonic_jax.baselines.random_labels import RandomLabelsConfig
from mnemonic_jax.baselines.salun import SalUnConfig
from mnemonic_jax.baselines.scrub import ScrubConfig
from mnemonic_jax.baselines.ssd import SSDConfig, SSDExactConfig
from mnemonic_jax.baselines.svd_projection import SVDProjectionConfig
from mnemonic_jax.bundle import Bundle
from mnemonic_jax.timing import CompileClock

SHAPE = (8, 8, 1)


def _bundle(history=()) -> Bundle:
  model = mj.create_model("mlp", 10, hidden=(16,))
  params = model.init(jax.random.key(1), jnp.zeros((1, *SHAPE)))["params"]
  return Bundle("mlp", {"hidden": (16,)}, params, {}, jnp.zeros((10, *SHAPE)), 10, SHAPE,
                mean=(0.3,), std=(0.3,), history=tuple(history))


def _data(forget=(3,), n=200) -> baselines.UnlearnData:
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (n, *SHAPE), dtype=np.uint8)
  return baselines.UnlearnData.from_training(images, np.arange(n) % 10, list(forget))


@pytest.fixture()
def spy(monkeypatch):
  """Replaces a method by a wrapper logging the data it is given (``spy(name) -> log``)."""
  def install(name):
    log = []
    spec = base.METHODS[name]

    def fn(bundle, classes, data, config, key):
      log.append(data)
      return spec.fn(bundle, classes, data, config, key)

    monkeypatch.setitem(base.METHODS, name, dataclasses.replace(spec, fn=fn))
    return log

  return install


def test_a_class_an_earlier_request_forgot_is_left_out_of_the_retain_set(spy):
  earlier = {"method": "mnemonic-bias", "classes": [3]}
  bundle, data = _bundle([earlier]), _data(forget=(5,))
  log = spy("finetune")
  new, report = baselines.unlearn("finetune", bundle, [5], data,
                                  FinetuneConfig(epochs=1, batch_size=64))
  assert 3 not in set(log[0].retain.labels.tolist())  # Never taught back.
  assert len(log[0].retain) == len(data.retain) - 20
  assert report.details["left_out"] == [3] and report.details["left_out_examples"] == 20
  assert new.forgotten_classes == (3, 5)
  # Nothing is left out of a first request.
  _, first = baselines.unlearn("finetune", _bundle(), [5], data,
                               FinetuneConfig(epochs=1, batch_size=64))
  assert "left_out" not in first.details


def test_a_class_the_bundle_already_forgot_is_refused(spy):
  bundle = _bundle([{"method": "mnemonic-bias", "classes": [3]}])
  log = spy("finetune")
  with pytest.raises(errors.BadRequest, match="class 3 was already forgotten by an earlier "
                     "request of this bundle; .*start from the bundle before that request"):
    baselines.unlearn("finetune", bundle, [3, 5], _data(forget=(3, 5)))
  assert not log


def _refused(name, bundle, data, key=None):
  with pytest.raises(errors.BadRequest) as raised:
    baselines.unlearn(name, bundle, [3], data, key=key)
  return raised


@pytest.mark.parametrize("name", ["finetune", "neggrad", "ssd", "scrub"])
def test_bad_images_labels_data_and_keys_are_refused_before_the_method_runs(name, spy):
  bundle, good = _bundle(), _data()
  log = spy(name)
  side = "forget" if name == "neggrad" else "retain"
  split = getattr(good, side)
  bad = lambda s: dataclasses.replace(good, **{side: s})
  floats = bad(base.Split(split.images.astype(np.float32) / 255, split.labels))
  raised = _refused(name, bundle, floats)
  assert raised.type is errors.BadRequestType and "must be uint8" in str(raised.value)
  wide = bad(base.Split(np.zeros((len(split), 28, 28, 1), np.uint8), split.labels))
  assert "the model takes (N, 8, 8, 1)" in str(_refused(name, bundle, wide).value)
  outside = bad(base.Split(split.images, np.full(len(split), 12)))
  assert "0..9" in str(_refused(name, bundle, outside).value)
  float_labels = bad(base.Split(split.images, split.labels.astype(np.float32)))
  assert _refused(name, bundle, float_labels).type is errors.BadRequestType
  raised = _refused(name, bundle, (split.images, split.labels))
  assert raised.type is errors.BadRequestType and "UnlearnData" in str(raised.value)
  raised = _refused(name, bundle, good, key=0)
  assert raised.type is errors.BadRequestType and "jax.random.key" in str(raised.value)
  assert not log  # Every refusal came before the method.


def test_from_training_refuses_float_images_and_mismatched_lengths():
  images = np.zeros((10, *SHAPE), np.uint8)
  with pytest.raises(errors.BadRequestType, match="uint8"):
    baselines.UnlearnData.from_training(images / 255.0, np.arange(10), [3])
  with pytest.raises(errors.BadRequest, match="10 images and 9 labels"):
    baselines.UnlearnData.from_training(images, np.arange(9), [3])


def test_the_report_says_which_data_the_method_actually_read():
  data = _data()
  one = dataclasses.replace(data, retain=base.Split(data.retain.images[:1],
                                                     data.retain.labels[:1]))
  _, report = baselines.unlearn("bad-teacher", _bundle(), [3], one,
                                BadTeacherConfig(batch_size=64))
  assert report.examples["retain"] == 0 and report.data == "forget"
  _, report = baselines.unlearn("bad-teacher", _bundle(), [3], data,
                                BadTeacherConfig(batch_size=64))
  assert report.data == "all"


@pytest.mark.parametrize("config_cls, field, value", [
    (FinetuneConfig, "epochs", 1.5), (SSDConfig, "batch_size", 2.5),
    (unsir.UnsirConfig, "noise_steps", 0.5)])
def test_fractional_counts_ask_for_a_whole_number(config_cls, field, value):
  # Refused when the config is built (baselines.options), before unlearn.
  with pytest.raises(errors.BadRequestType, match=f"{field} must be a whole number"):
    config_cls(**{field: value})


# One case per family of compiled programs: the weighted image step (with the accuracy
# stop), the loss steps (distillation, mask, proximal l1, two teachers), the one-shot
# programs (minibatch and exact importances, Fisher noise, output norms, projections) and
# UNSIR's noise, mixing and inject-hyperparams step.
PROGRAMS = {
    "finetune": FinetuneConfig(epochs=1, batch_size=64, schedule="cosine"),
    "neggrad": NegGradConfig(epochs=1, batch_size=16, stop_at_zero_accuracy=True),
    "random-labels": RandomLabelsConfig(epochs=1, batch_size=64, optimizer="adam"),
    "scrub": ScrubConfig(epochs=1, max_epochs=1, forget_batch_size=16, retain_batch_size=64),
    "salun": SalUnConfig(epochs=1, batch_size=64),
    "l1-sparse": L1SparseConfig(epochs=1, batch_size=64, penalty="proximal"),
    "bad-teacher": BadTeacherConfig(batch_size=64),
    "ssd": SSDConfig(alpha=1.0, batch_size=32),
    "ssd-exact": SSDExactConfig(alpha=2.0),
    "fisher": FisherForgettingConfig(),
    "lfssd": LFSSDConfig(alpha=2.0, batch_size=64),
    "svd-projection": SVDProjectionConfig(samples=20, max_patches=100),
    "unsir": unsir.UnsirConfig(noise_batch_size=8, noise_steps=2, batch_size=64),
}


#: The families the default run covers (the step builders most methods share); the others
#: run with ``-m slow`` (the default suite stays under its 5 minutes).
DEFAULT_PROGRAMS = ("finetune", "neggrad", "scrub", "ssd")


@pytest.mark.parametrize("name", [
    n if n in DEFAULT_PROGRAMS else pytest.param(n, marks=pytest.mark.slow) for n in PROGRAMS])
def test_a_second_call_compiles_nothing(name):
  data = _data()
  first, _ = baselines.unlearn(name, _bundle(), [3], data, PROGRAMS[name],
                               key=jax.random.key(0))
  with CompileClock() as clock:  # A new bundle object of an equal model, a new key.
    second, _ = baselines.unlearn(name, _bundle(), [3], data, PROGRAMS[name],
                                  key=jax.random.key(1))
  assert clock.programs == 0
  assert jax.tree.leaves(second.params)[0].shape == jax.tree.leaves(first.params)[0].shape
