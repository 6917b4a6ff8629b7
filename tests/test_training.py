import functools
import sys

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import mnemonic_jax as mj
from mnemonic_jax import parallel, training

from random_support import uniform


def setup(model_name="mlp", shape=(4, 4, 1), n=16, seed=0, **model_kwargs):
  model = mj.create_model(model_name, 4, **model_kwargs)
  optimizer = training.make_optimizer(0.05)
  key = jax.random.key(seed)
  codes = uniform(seed, (4, *shape))  # random_support: nothing compiles for them.
  state = training.create_train_state(key, model, shape, optimizer)
  rng = np.random.default_rng(seed)
  images = rng.integers(0, 256, (n, *shape), dtype=np.uint8)
  labels = (np.arange(n) % 4).astype(np.int32)
  return model, optimizer, codes, state, images, labels


def test_train_step_reports_image_and_code_losses_and_learns():
  model, optimizer, codes, state, images, labels = setup(hidden=(32,))
  step = training.make_train_step(model, optimizer, codes, 0.5, jax.random.key(1))
  state, first = step(state, images, labels)
  for _ in range(200):
    state, metrics = step(state, images, labels)
  assert int(state.step) == 201
  for name in ("loss", "image_loss", "code_loss", "accuracy", "code_fraction"):
    chex.assert_shape(metrics[name], ())
  assert 0.0 < float(first["code_fraction"]) < 1.0
  assert float(metrics["loss"]) < float(first["loss"])
  # The total is the batch mean: a mix of the two parts weighted by the code fraction.
  f = float(metrics["code_fraction"])
  np.testing.assert_allclose(
      float(metrics["loss"]),
      f * float(metrics["code_loss"]) + (1 - f) * float(metrics["image_loss"]), rtol=1e-5)
  # Codes are classified as their classes after training with them.
  logits = model.apply({"params": state.params}, codes)
  np.testing.assert_array_equal(np.argmax(logits, -1), np.arange(4))


def test_train_step_mixing_is_fresh_per_step_and_reproducible():
  """The mixing depends on the step and on the key, and on nothing else.

  Every call starts from the same parameters and only the step counter or the key
  changes, so the metrics differ only if the replacement mask does: with 16 examples
  and ``t_mix = 0.5`` two masks coincide with probability 2^-16, and the keys are fixed,
  so the outcome is deterministic.
  """
  model, optimizer, codes, state, images, labels = setup(hidden=(8,))
  fresh = lambda step: jax.tree.map(jnp.copy, state.replace(step=jnp.int32(step)))
  metrics = lambda m: (float(m["code_fraction"]), float(m["loss"]))
  step = training.make_train_step(model, optimizer, codes, 0.5, jax.random.key(1))

  # Same step, same key: the same mixing, bit for bit.
  s1, m1 = step(fresh(0), images, labels)
  s2, m2 = step(fresh(0), images, labels)
  chex.assert_trees_all_equal(s1.params, s2.params)
  chex.assert_trees_all_equal(m1, m2)
  # A fresh mask at every step (a frozen key, or one not folded with the step, repeats it).
  per_step = [metrics(step(fresh(k), images, labels)[1]) for k in range(8)]
  assert len(set(per_step)) == 8, per_step
  # About t_mix of the 8 x 16 examples are replaced.
  assert 0.35 <= np.mean([f for f, _ in per_step]) <= 0.65
  # Another key, another mask at the same step (the key is not ignored).
  other = training.make_train_step(model, optimizer, codes, 0.5, jax.random.key(2))
  assert metrics(other(fresh(0), images, labels)[1]) != per_step[0]


def test_train_step_mixes_in_each_label_s_own_code():
  """``t_mix`` 0 trains on the images alone, 1 on each example's class code alone."""
  model, optimizer, codes, state, images, labels = setup(hidden=(8,))
  loss = lambda x: float(jnp.mean(optax.softmax_cross_entropy_with_integer_labels(
      model.apply({"params": state.params}, x, train=True), labels)))
  for t_mix, x, fraction in ((0.0, images / 255.0, 0.0), (1.0, codes[labels], 1.0)):
    step = training.make_train_step(model, optimizer, codes, t_mix, jax.random.key(1))
    for k in (0, 5):
      _, m = step(jax.tree.map(jnp.copy, state.replace(step=jnp.int32(k))), images, labels)
      assert float(m["code_fraction"]) == fraction
      np.testing.assert_allclose(float(m["loss"]), loss(x), rtol=1e-5)


@pytest.mark.parametrize("model_name, model_kwargs", [
    pytest.param("conv_bn_test", {}, marks=pytest.mark.slow),  # ~5 s; fit over a mesh stays.
    pytest.param("resnet18_cifar", {"width": 4}, marks=pytest.mark.slow),  # ~20 s to compile.
])
def test_sharded_train_step_equals_single_device(model_name, model_kwargs, request):
  """Split over 8 devices, a step (BatchNorm statistics, augmentation) is unchanged."""
  assert jax.device_count() == 8
  if model_name == "conv_bn_test":
    request.getfixturevalue("conv_bn_model")
  mesh = parallel.make_mesh()
  model, optimizer, codes, state, images, labels = setup(
      model_name, shape=(8, 8, 3), **model_kwargs)
  single = training.make_train_step(model, optimizer, codes, 0.3, jax.random.key(2), augment=True)
  sharded = training.make_train_step(
      model, optimizer, codes, 0.3, jax.random.key(2), augment=True, mesh=mesh)
  single_inputs = jax.device_put((jax.tree.map(jnp.copy, state), images, labels))
  sharded_inputs = (parallel.replicate(mesh, state), *parallel.shard_batch(mesh, (images, labels)))
  with jax.transfer_guard("disallow"):  # Inputs placed: a step copies nothing implicitly.
    s_state, s_metrics = single(*single_inputs)
    m_state, m_metrics = sharded(*sharded_inputs)
  chex.assert_trees_all_close(m_metrics, s_metrics, rtol=1e-4, atol=1e-5)
  chex.assert_trees_all_close(m_state.params, s_state.params, rtol=1e-4, atol=1e-5)
  chex.assert_trees_all_close(m_state.batch_stats, s_state.batch_stats, rtol=1e-4, atol=1e-5)


def test_fit_resumes_to_identical_parameters():
  model, _, codes, _, images, labels = setup(hidden=(16,), n=40)
  config = mj.FitConfig(epochs=3, batch_size=8, t_mix=0.2)
  key = jax.random.key(3)
  saved = {}

  def keep(step, state, metrics):
    if step == 7:
      saved["state"] = jax.tree.map(jnp.copy, state)

  full, _ = mj.fit(model, (images, labels), codes, config, key, on_step=keep, progress=False)
  resumed, _ = mj.fit(model, (images, labels), codes, config, key, state=saved["state"],
                      progress=False)
  assert int(full.step) == int(resumed.step) == 15
  chex.assert_trees_all_equal(full.params, resumed.params)


def test_fit_starts_from_initial_state():
  """workflow.train restores into, and starts pretrained runs from, initial_state: it
  must be the state fit builds itself (one initialisation for both)."""
  model, _, codes, _, images, labels = setup(hidden=(8,), n=16)
  config = mj.FitConfig(epochs=1, batch_size=8, t_mix=0.2, schedule="cosine")
  key = jax.random.key(5)
  start = training.initial_state(model, codes.shape[1:], config, len(labels), key)
  assert int(start.step) == 0
  own, _ = mj.fit(model, (images, labels), codes, config, key, progress=False)
  given, _ = mj.fit(model, (images, labels), codes, config, key, progress=False,
                    state=start)
  chex.assert_trees_all_equal(own.params, given.params)
  chex.assert_trees_all_equal(own.opt_state, given.opt_state)


def test_optimizer_options():
  with pytest.raises(ValueError, match="total_steps"):
    training.make_optimizer(0.1, schedule="cosine")
  with pytest.raises(ValueError, match="schedule"):
    training.make_optimizer(0.1, schedule="step")
  with pytest.raises(ValueError, match="t_mix"):
    model, optimizer, codes, *_ = setup(hidden=(4,))
    training.make_train_step(model, optimizer, codes, 1.5, jax.random.key(0))
  with pytest.raises(ValueError, match="larger than"):
    training.steps_per_epoch(10, 16)


@pytest.mark.default_compilation
def test_the_initial_state_and_keys_are_those_of_the_default_compilation(conv_bn_model):
  """The state and keys, compiled at a lower LLVM level on the CPU, are bit for bit those
  of a plain ``jax.jit`` and of eager ops (a 10-wide kernel: the shape that level 3
  compiles slowly)."""
  optimizer = training.make_optimizer(0.1)
  key = jax.random.key(3)
  for model, shape in ((mj.create_model("mlp", 10, hidden=(12,)), (4, 4, 1)),
                       (mj.create_model(conv_bn_model, 10), (6, 6, 2))):
    state = training.create_train_state(key, model, shape, optimizer)
    plain = jax.jit(lambda k, m=model, s=shape: m.init(k, jnp.zeros((1, *s)), train=False))(key)
    chex.assert_trees_all_equal(state.params, plain["params"])
    chex.assert_trees_all_equal(state.batch_stats, plain.get("batch_stats", {}))
    chex.assert_trees_all_equal(state.opt_state, optimizer.init(plain["params"]))
    assert int(state.step) == 0
  keys = training.fit_keys(key)
  eager = jax.random.split(key, 3)
  for ours, theirs in zip(keys, eager):
    np.testing.assert_array_equal(jax.random.key_data(ours), jax.random.key_data(theirs))
  np.testing.assert_array_equal(jax.random.key_data(training._fold_in(keys.shuffle, 7)),
                                jax.random.key_data(jax.random.fold_in(keys.shuffle, 7)))


def test_fit_on_device_groups_equals_batch_by_batch(monkeypatch):
  """fit copies batches to the device in padded groups; a wrapped step (no
  ``TrainStep``) gets them one by one: the same parameters and metrics, bit for bit,
  with augmentation and a resume in the middle of a group."""
  monkeypatch.setattr(training, "GROUP_STEPS", 3)  # 5 steps an epoch: groups of 3 and 2.
  model, _, codes, _, images, labels = setup(hidden=(8,), n=40, shape=(4, 4, 3))
  config = mj.FitConfig(epochs=2, batch_size=8, t_mix=0.3, augment=True)
  key = jax.random.key(4)
  fed, saved = [], {}

  def keep(step, state, metrics):
    if step == 4:
      saved["state"] = jax.tree.map(jnp.copy, state)

  grouped, grouped_metrics = mj.fit(model, (images, labels), codes, config, key, on_step=keep,
                                    progress=False)
  resumed, _ = mj.fit(model, (images, labels), codes, config, key, state=saved["state"],
                      progress=False)
  make_step = training.make_train_step

  def one_by_one(*args, **kwargs):
    step = make_step(*args, **kwargs)
    assert isinstance(step, training.TrainStep)

    def wrapped(state, images, labels):
      fed.append(np.asarray(labels))
      return step(state, images, labels)

    return wrapped

  monkeypatch.setattr(training, "make_train_step", one_by_one)
  single, single_metrics = mj.fit(model, (images, labels), codes, config, key, progress=False)
  assert len(fed) == 10 and int(grouped.step) == int(resumed.step) == 10
  chex.assert_trees_all_equal(grouped, single)
  chex.assert_trees_all_equal(resumed, single)
  chex.assert_trees_all_equal(grouped_metrics, single_metrics)


@pytest.mark.parametrize("with_batch_norm", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_fit_runs_steps_between_callbacks_in_one_call_with_the_same_bits(
    monkeypatch, conv_bn_model, with_batch_norm):
  """With ``on_step_every=4`` the steps between callbacks run in one device call each
  (within a group of 3 batches, across an epoch's end): the callback sees the state of a
  step-by-step run at steps 4, 8 and the last, and the means of the steps since its
  previous call."""
  monkeypatch.setattr(training, "GROUP_STEPS", 3)  # 5 steps an epoch: groups of 3 and 2.
  name, kwargs = (conv_bn_model, {}) if with_batch_norm else ("mlp", {"hidden": (8,)})
  model = mj.create_model(name, 4, **kwargs)
  _, _, codes, _, images, labels = setup(n=40, shape=(4, 4, 1))
  config = mj.FitConfig(epochs=2, batch_size=8, t_mix=0.3)
  key = jax.random.key(6)
  each, every4, calls = {}, {}, []

  def keep(into):  # Copies: the next step takes the state's buffers.
    return lambda step, state, metrics: into.setdefault(step, jax.tree.map(jnp.copy,
                                                                           (state, metrics)))

  single = mj.fit(model, (images, labels), codes, config, key, on_step=keep(each),
                  progress=False)
  steps = training.TrainStep.steps
  monkeypatch.setattr(training.TrainStep, "steps",
                      lambda self, *a: calls.append(int(a[-1])) or steps(self, *a))
  grouped = mj.fit(model, (images, labels), codes, config, key, on_step=keep(every4),
                   on_step_every=4, progress=False)
  assert calls == [3, 1, 1, 3, 2]  # Calls end at groups' ends and at steps 4 and 8.
  assert sorted(every4) == [4, 8, 10] and sorted(each) == list(range(1, 11))
  chex.assert_trees_all_equal(grouped, single)
  for step, previous in ((4, 0), (8, 4), (10, 8)):
    chex.assert_trees_all_equal(every4[step][0], each[step][0])
    for k in training.METRICS:
      expected = np.mean([float(each[s][1][k]) for s in range(previous + 1, step + 1)])
      np.testing.assert_allclose(float(every4[step][1][k]), expected, rtol=1e-6, atol=1e-7)


def test_fit_over_a_mesh_runs_groups_split_over_the_devices(monkeypatch):
  """Over 8 devices the groups of batches are split along their batch axis and their steps
  run in one call: the same bits as placing each batch alone (a step that is not a
  ``TrainStep``)."""
  monkeypatch.setattr(training, "GROUP_STEPS", 3)  # 5 steps an epoch: groups of 3 and 2.
  mesh = parallel.make_mesh()
  model, _, codes, _, images, labels = setup(hidden=(8,), n=80)
  config = mj.FitConfig(epochs=2, batch_size=16, t_mix=0.3)
  key = jax.random.key(7)
  calls, steps = [], training.TrainStep.steps
  monkeypatch.setattr(training.TrainStep, "steps",
                      lambda self, *a: calls.append(int(a[-1])) or steps(self, *a))
  grouped, grouped_metrics = mj.fit(model, (images, labels), codes, config, key, mesh=mesh,
                                    progress=False)
  assert calls == [3, 2, 3, 2]
  make_step = training.make_train_step
  monkeypatch.setattr(training, "make_train_step", lambda *a, **k: functools.partial(
      make_step(*a, **k).__call__))
  single, single_metrics = mj.fit(model, (images, labels), codes, config, key, mesh=mesh,
                                  progress=False)
  assert int(grouped.step) == 10
  assert grouped.params["Dense_0"]["kernel"].sharding.is_equivalent_to(
      parallel.replicated(mesh), 2)
  chex.assert_trees_all_equal(grouped, single)
  chex.assert_trees_all_equal(grouped_metrics, single_metrics)


@pytest.mark.parametrize("every", [0, -1, 2.5, True])
def test_fit_refuses_a_bad_on_step_every(every):
  model, _, codes, _, images, labels = setup(hidden=(8,))
  with pytest.raises(mj.errors.BadConfig, match="on_step_every"):
    mj.fit(model, (images, labels), codes, mj.FitConfig(epochs=1, batch_size=8),
           jax.random.key(0), on_step=lambda *a: None, on_step_every=every, progress=False)


def test_metrics_window_means_over_any_window_with_one_program():
  values = np.random.default_rng(0).normal(size=(60, 2)).astype(np.float32)
  window = training.MetricsWindow()
  assert window.mean() == {} and window.ready_mean() is None
  start = 0
  for length in (1, 16, 17, 26):
    with mj.CompileClock() as clock:
      for a, b in values[start:start + length]:
        window.add({"a": jnp.float32(a), "b": jnp.float32(b)})
      means = window.mean()
    np.testing.assert_allclose([means["a"], means["b"]],
                               values[start:start + length].mean(0), rtol=1e-5)
    assert length == 1 or clock.programs == 0  # The first window compiled the one program.
    start += length
  for a, b in values[:20]:
    window.add({"a": jnp.float32(a), "b": jnp.float32(b)})
  for _ in range(1000):  # The first 16 steps are summed (dispatched); the 4 others wait.
    ready = window.ready_mean()
    if ready is not None:
      break
  np.testing.assert_allclose(ready["a"], values[:16, 0].mean(), rtol=1e-5)
  np.testing.assert_allclose(window.mean()["a"], values[16:20, 0].mean(), rtol=1e-5)
  window.add_sums({"a": jnp.float32(values[:3, 0].sum())}, 3)
  window.add({"a": jnp.float32(values[3, 0])})
  window.add_means({"a": jnp.float32(values[4:6, 0].mean())}, 2)
  np.testing.assert_allclose(window.mean()["a"], values[:6, 0].mean(), rtol=1e-5)


def test_fit_progress_bar_shows_the_last_means(capsys):
  model, _, codes, _, images, labels = setup(hidden=(8,), n=16)
  mj.fit(model, (images, labels), codes, mj.FitConfig(epochs=2, batch_size=8),
         jax.random.key(0), progress=True)
  bar = capsys.readouterr().err
  assert "4/4" in bar and "image_loss=" in bar and "accuracy=" in bar


def test_fit_ends_its_progress_bar_when_a_callback_raises(capsys):
  """An error from on_step (e.g. workflow.train's TrainingDiverged) is printed after the
  bar's line, not glued to it."""
  model, _, codes, _, images, labels = setup(hidden=(8,), n=16)

  def stop(step, state, metrics):
    raise RuntimeError("stop")

  try:
    mj.fit(model, (images, labels), codes, mj.FitConfig(epochs=2, batch_size=8),
           jax.random.key(0), progress=True, on_step=stop)
  except RuntimeError:  # As the command line does: fit's frames are still alive.
    sys.stderr.write("the error line")
  assert capsys.readouterr().err.endswith("step/s]\nthe error line")


def test_step_constants_replicate_as_on_several_processes(monkeypatch):
  """make_train_step places typed keys on a mesh the multi-process way (their data travels
  and is wrapped again): the same keys, replicated."""
  monkeypatch.setattr(parallel, "multiprocess", lambda mesh: mesh is not None)
  mesh = parallel.make_mesh()
  key = jax.random.key(5)
  placed = parallel.replicate(mesh, {"key": key, "x": np.arange(3.0)})
  np.testing.assert_array_equal(jax.random.key_data(placed["key"]), jax.random.key_data(key))
  assert placed["key"].sharding.is_fully_replicated and placed["x"].sharding.is_fully_replicated
  model, optimizer, codes, state, images, labels = setup(hidden=(4,))
  step = training.make_train_step(model, optimizer, codes, 0.5, key, mesh=mesh)
  alone = training.make_train_step(model, optimizer, codes, 0.5, key)
  for ours, theirs in zip(step._constants[2:], alone._constants[2:]):
    np.testing.assert_array_equal(jax.random.key_data(ours), jax.random.key_data(theirs))


def _fit_inputs(**changes):
  """Valid inputs of fit (16 uint8 images (4, 4, 1), 4 classes and codes), changed."""
  model, _, codes, _, images, labels = setup(hidden=(4,))
  inputs = dict(model=model, data=(images, labels), codes=codes,
                config=mj.FitConfig(epochs=1, batch_size=8), key=jax.random.key(0))
  data = changes.pop("data", None)
  if data is not None:
    inputs["data"] = data(images, labels)
  inputs.update(changes)
  return inputs


@pytest.mark.parametrize("changes, error, phrase", [
    ({"data": lambda x, y: (x / 255.0, y)}, mj.errors.BadRequestType, "divided by 255 again"),
    ({"data": lambda x, y: (x.astype(np.int32), y)}, mj.errors.BadRequestType,
     "takes uint8 images"),
    ({"data": lambda x, y: (x, y.astype(np.float32))}, mj.errors.BadRequestType,
     "labels must be integer"),
    ({"data": lambda x, y: (x, np.eye(4, dtype=np.int32)[y])}, mj.errors.BadRequest, "one-hot"),
    ({"data": lambda x, y: (x, y[:5])}, mj.errors.BadRequest, r"labels of shape \(5,\)"),
    ({"data": lambda x, y: (x.transpose(0, 3, 1, 2), y)}, mj.errors.BadRequest,
     "do not hold examples of the codes' shape"),
    ({"data": lambda x, y: (x, y + 1)}, mj.errors.BadRequest,
     "labels run from 1 to 4 but there are 4 codes"),
    ({"data": lambda x, y: mj.data.pipeline.ArrayEpochs(x, y - 1)}, mj.errors.BadRequest,
     "labels run from -1 to 2"),
    ({"codes": uniform(0, (2, 4, 4, 1))}, mj.errors.BadRequest,
     "labels run from 0 to 3 but there are 2 codes"),
    ({"codes": uniform(0, (4, 4, 4))}, mj.errors.BadRequest,
     "do not hold examples of the codes' shape"),
    ({"codes": np.zeros((4, 4, 4, 1), np.int32)}, mj.errors.BadRequestType,
     "codes must be floating-point"),
    ({"model": mj.create_model("mlp", 3, hidden=(4,))}, mj.errors.BadRequest,
     "the model has 3 outputs but there are 4 codes"),
    ({"mean": (0.1, 0.2, 0.3), "std": (1.0, 1.0, 1.0)}, mj.errors.BadRequest,
     "mean has 3 values but the images have 1 channel"),
    ({"std": (0.5, 0.5)}, mj.errors.BadRequest, "std has 2 values"),
    ({"std": (0.0,)}, mj.errors.BadRequest, "std must be positive"),
    ({"mean": 0.5}, mj.errors.BadRequestType, "mean must be a sequence"),
    ({"data": lambda x, y: x}, mj.errors.BadRequestType, "fit needs the labels too"),
    ({"data": lambda x, y: (x, y, y)}, mj.errors.BadRequestType, "the pair"),
    ({"data": lambda x, y: "digits"}, mj.errors.BadRequestType, "a source of epochs"),
    ({"key": 1}, mj.errors.BadRequestType, r"jax.random.key\(1\)"),
    ({"key": jax.random.split(jax.random.key(0), 2)}, mj.errors.BadRequest, "batch of keys"),
    ({"config": {"epochs": 1, "batch_size": 8}}, mj.errors.BadRequestType,
     "config must be a FitConfig"),
])
def test_fit_refuses_bad_inputs_before_compiling_anything(changes, error, phrase):
  inputs = _fit_inputs(**changes)
  with mj.CompileClock() as clock, pytest.raises(error, match=phrase):
    mj.fit(**inputs, progress=False)
  assert clock.programs == 0


def test_fit_takes_a_dataset():
  model, _, codes, _, images, labels = setup(hidden=(4,))
  info = mj.data.dataset.DatasetInfo(name="toy", num_classes=4, shape=(4, 4, 1),
                                     class_names=tuple("abcd"), mean=(0.5,), std=(0.25,))
  dataset = mj.data.dataset.Dataset(images, labels, info)
  config = mj.FitConfig(epochs=1, batch_size=8)
  state, _ = mj.fit(model, dataset, codes, config, jax.random.key(0), progress=False)
  same, _ = mj.fit(model, (images, labels), codes, config, jax.random.key(0), progress=False)
  chex.assert_trees_all_equal(state.params, same.params)


@pytest.mark.parametrize("batch, error, phrase", [
    (lambda x, y: (x / 255.0, y), mj.errors.BadRequestType, "divided by 255 again"),
    (lambda x, y: (x, y.astype(np.float32)), mj.errors.BadRequestType,
     "labels must be integer"),
    (lambda x, y: (x, y[:4]), mj.errors.BadRequest, "one integer class id per image"),
    (lambda x, y: (x[..., 0], y), mj.errors.BadRequest,
     "do not hold examples of the codes' shape"),
])
def test_train_step_refuses_bad_batches_from_their_dtypes_and_shapes(batch, error, phrase):
  model, optimizer, codes, state, images, labels = setup(hidden=(4,), n=8)
  step = training.make_train_step(model, optimizer, codes, 0.5, jax.random.key(1))
  images, labels = batch(images, labels)
  with pytest.raises(error, match=phrase):
    step(state, images, labels)
  with pytest.raises(error, match=phrase):  # Groups (K, B, ...) as fit passes them.
    step.steps(state, images[None], labels[None], jnp.int32(0), jnp.int32(1))


@pytest.mark.parametrize("changes, error, phrase", [
    ({"key": 3}, mj.errors.BadRequestType, r"jax.random.key\(3\)"),
    ({"codes": np.zeros((4, 4, 4, 1), np.uint8)}, mj.errors.BadRequestType, "floating-point"),
    ({"mean": (0.0, 0.0, 0.0)}, mj.errors.BadRequest, "mean has 3 values"),
    ({"std": (-1.0,)}, mj.errors.BadRequest, "std must be positive"),
    ({"t_mix": "0.5"}, mj.errors.BadConfig, "t_mix"),
])
def test_make_train_step_refuses_bad_arguments(changes, error, phrase):
  model, optimizer, codes, *_ = setup(hidden=(4,))
  inputs = dict(model=model, optimizer=optimizer, codes=codes, t_mix=0.5,
                key=jax.random.key(0)) | changes
  with pytest.raises(error, match=phrase):
    training.make_train_step(**inputs)


def test_create_train_state_and_fit_keys_refuse_an_int_seed():
  model, optimizer, *_ = setup(hidden=(4,))
  with pytest.raises(mj.errors.BadRequestType, match=r"jax.random.key\(2\)"):
    training.create_train_state(2, model, (4, 4, 1), optimizer)
  with pytest.raises(mj.errors.BadRequestType, match=r"jax.random.key\(2\)"):
    training.fit_keys(2)


def test_predict_refuses_float_images():
  model, _, _, state, images, _ = setup(hidden=(4,))
  predict = training.make_predict_fn(model)
  chex.assert_shape(predict(state.params, state.batch_stats, images), (16, 4))
  with pytest.raises(mj.errors.BadRequestType, match="divided by 255 again"):
    predict(state.params, state.batch_stats, images / 255.0)
