"""Training with mnemonic codes (Algorithm 1): a jitted step that mixes codes into batches.

Each step: normalise the uint8 batch, optionally augment it on the device, replace each
example by its class's code with probability ``t_mix`` (fresh randomness per step from
``fold_in(key, step)``), and take one SGD step on the mean cross-entropy. The step reports
the loss on real images and on codes apart, besides the total it optimises.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import time
from typing import TYPE_CHECKING, Any, Callable, Iterator, NamedTuple

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

if TYPE_CHECKING:  # Imported where used: forgetting a checkpoint needs neither.
  import optax

from mnemonic_jax import _validate, errors
from mnemonic_jax import codes as codes_lib
from mnemonic_jax import parallel
from mnemonic_jax import training_checks as checks
from mnemonic_jax.training_checks import steps_per_epoch
from mnemonic_jax.pytrees import Static
from mnemonic_jax.run_once import jit_run_once
from mnemonic_jax.run_metrics import MetricsWindow
from mnemonic_jax.bundle import model_variables, normalize
from mnemonic_jax.data import pipeline
from mnemonic_jax.train_state import TrainState
from mnemonic_jax.fisher import cross_entropy

PyTree = Any
Metrics = dict[str, jax.Array]


def make_optimizer(
    learning_rate: float = 0.01,
    *,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    schedule: str = "constant",
    total_steps: int | None = None,
) -> optax.GradientTransformation:
  """SGD with momentum and coupled weight decay (as PyTorch's ``SGD(weight_decay=...)``).

  Args:
    learning_rate: peak learning rate.
    momentum: heavy-ball momentum.
    weight_decay: L2 coefficient added to the gradient before momentum.
    schedule: ``"constant"`` or ``"cosine"`` (decays to 0 over ``total_steps``).
    total_steps: required for ``"cosine"``.

  Returns:
    An optax gradient transformation; equal arguments give the same object, so the
    train steps built on it share one compiled program; numbers count as their float32
    values (the step's, the same bits): ``0.1``, ``np.float32(0.1)``, 0-d arrays are equal.

  Raises:
    BadConfig: a number out of the range :class:`FitConfig` takes, or an unknown schedule.
  """
  checks.optimizer(learning_rate, momentum, weight_decay)
  numbers = (float(np.float32(float(v))) for v in (learning_rate, momentum, weight_decay))
  return _optimizer(*numbers, schedule, total_steps)


@functools.lru_cache(maxsize=64)
def _optimizer(learning_rate: float, momentum: float, weight_decay: float, schedule: str,
               total_steps: int | None) -> optax.GradientTransformation:
  import optax  # pylint: disable=import-outside-toplevel

  if schedule == "constant":
    lr = learning_rate
  elif schedule == "cosine":
    if not total_steps:
      raise errors.BadConfig("schedule='cosine' needs total_steps")
    lr = optax.cosine_decay_schedule(learning_rate, total_steps)
  else:
    raise errors.BadConfig(f"unknown schedule {schedule!r}; use 'constant' or 'cosine'")
  return optax.chain(optax.add_decayed_weights(weight_decay), optax.sgd(lr, momentum))


def _init_state(key, model: Static, optimizer: Static, input_shape: tuple[int, ...]):
  variables = model.value.init(key, jnp.zeros((1, *input_shape), jnp.float32), train=False)
  params = variables["params"]
  return TrainState(
      step=jnp.zeros((), jnp.int32), params=params,
      batch_stats=variables.get("batch_stats", {}), opt_state=optimizer.value.init(params))


# One program builds the whole state (a state built op by op compiles a program per op).
_init = jit_run_once(_init_state, static_argnums=(1, 2, 3))
_split = jit_run_once(lambda key, num: tuple(jax.random.split(key, num)), static_argnums=1)
_fold_in = jit_run_once(jax.random.fold_in)


def create_train_state(
    key: chex.PRNGKey, model: nn.Module, input_shape: tuple[int, ...],
    optimizer: optax.GradientTransformation,
) -> TrainState:
  """Initialises parameters, BatchNorm statistics and optimiser state (one program).

  Raises:
    BadRequestType, BadRequest: ``key`` is not one PRNG key (an int seed, a batch).
  """
  checks.check_key(key)
  return _init(key, Static(model), Static(optimizer), tuple(input_shape))


class TrainStep:
  """``step(state, images_uint8, labels) -> (state, metrics)``: one step of Algorithm 1.

  Returned by :func:`make_train_step`. Its programs are module-level ``jax.jit`` functions that
  take the codes, ``t_mix`` and keys as traced arguments (placed on the devices once).
  :meth:`at` takes the batch from data already on the device by index, so that
  :func:`fit` copies nothing to the device per step.
  """

  def __init__(self, static: dict[str, Any], constants: tuple[jax.Array, ...]):
    self._static, self._constants = static, constants
    self._input_shape = tuple(constants[0].shape[1:])  # The codes': (C, *input_shape).

  def __call__(self, state: TrainState, images: chex.Array, labels: chex.Array
               ) -> tuple[TrainState, Metrics]:
    """One step on the batch ``images (B, *input_shape)`` uint8, ``labels (B,)``.

    Raises:
      BadRequestType, BadRequest: as :func:`training_checks.batch` (dtypes and shapes
        only, static: the labels' range is not checked, it would wait for the device).
    """
    checks.batch(images, labels, self._input_shape, "the train step")
    return _train_step(state, images, labels, *self._constants, **self._static)

  def steps(self, state: TrainState, images: jax.Array, labels: jax.Array,
            first_step: jax.Array, count: jax.Array) -> tuple[TrainState, Metrics, Metrics]:
    """``count`` steps, in one call, on batches ``state.step - first_step`` onwards of
    batches already on the device (the same bits as ``count`` separate steps).

    Args:
      state: the train state (donated).
      images: ``(K, B, *input_shape)`` uint8, ``K`` batches on the device.
      labels: ``(K, B)`` int, on the device.
      first_step: the step that takes batch 0 (int32 scalar, on the device).
      count: how many steps (int32 scalar, on the device; ``1 <= count`` and the last
        batch taken at most ``K - 1``).

    Returns:
      ``(state, metrics, sums)``: the state after the steps, the last step's metrics and
      each metric's sum over the ``count`` steps.

    Raises:
      BadRequestType, BadRequest: as :meth:`__call__`, for ``(K, B, ...)`` groups.
    """
    checks.batch(images, labels, self._input_shape, "the train step", leading=2)
    return _train_steps(state, images, labels, first_step, count, *self._constants,
                        **self._static)


def make_train_step(
    model: nn.Module,
    optimizer: optax.GradientTransformation,
    codes: chex.Array,
    t_mix: float,
    key: chex.PRNGKey,
    *,
    mean=(0.0,),
    std=(1.0,),
    augment: bool = False,
    mesh: Mesh | None = None,
) -> TrainStep:
  """Returns a jitted ``step(state, images_uint8, labels) -> (state, metrics)``, a
  :class:`TrainStep` (whose :meth:`TrainStep.at` takes batches already on the device).

  Module-level ``jax.jit`` programs: equal models and the same optimiser object
  (:func:`make_optimizer` returns one per arguments) share them, so a second
  :func:`fit` in a process compiles nothing; codes, ``t_mix`` and keys are traced.

  The state is donated. Metrics: ``loss`` (what is optimised: the mean over the mixed
  batch), ``image_loss`` and ``code_loss`` (means over the real and the replaced examples;
  NaN-free, 0 when a batch has none), ``accuracy`` and ``code_fraction``.

  Args:
    model: a Flax Linen classifier ``model.apply(variables, x, train=...)``.
    optimizer: from :func:`make_optimizer`.
    codes: ``(C, *input_shape)`` mnemonic codes.
    t_mix: probability of replacing an example by its class's code.
    key: root key of the step's randomness; step ``s`` uses ``fold_in(key, s)``.
    mean, std: per-channel normalisation of images scaled to [0, 1].
    augment: pad-4 random crop and horizontal flip of real images (CIFAR-style).
    mesh: if given (a ``jax.sharding.Mesh`` with a ``data`` axis, checked by
      :func:`mnemonic_jax.parallel.check_mesh`), the batch is split over that axis.

  Raises:
    BadConfig: ``t_mix`` is not a number in [0, 1].
    BadRequestType: ``key`` is an int seed or not a key; codes that are not floats;
      ``mean``/``std`` that are not sequences of numbers.
    BadRequest: a batch of keys; codes not ``(C, *input_shape)``; ``mean``/``std`` of a
      length other than 1 or the codes' channels, non-finite, or ``std <= 0``.
  """
  t_mix = checks.t_mix(t_mix, "make_train_step")
  checks.check_key(key)
  parallel.check_mesh(mesh)
  _, input_shape = checks.codes(codes, "make_train_step")
  mean, std = checks.normalisation(mean, std, input_shape, "make_train_step")
  mix_key, augment_key = _split(key, 2)
  static = dict(model=Static(model), optimizer=Static(optimizer), mean=mean, std=std,
                augment=bool(augment), mesh=mesh)
  constants = (jnp.asarray(codes), np.float32(t_mix), mix_key, augment_key)
  # Placed once (replicated over a mesh): a step copies nothing implicitly.
  constants = jax.device_put(constants) if mesh is None else parallel.replicate(mesh, constants)
  return TrainStep(static, constants)


_STATIC = ("model", "optimizer", "mean", "std", "augment", "mesh")
#: The metrics a step reports (float32 scalars; see :func:`make_train_step`).
METRICS = ("loss", "image_loss", "code_loss", "accuracy", "code_fraction")


def _step(state: TrainState, images, labels, codes, t_mix, mix_key, augment_key, *,
          model: Static, optimizer: Static, mean, std, augment, mesh):
  """One step of Algorithm 1 (traced inside the jitted programs below)."""
  import optax  # pylint: disable=import-outside-toplevel

  model, optimizer = model.value, optimizer.value
  images = parallel.constrain_batch(images, mesh)
  x = normalize(images, mean, std)
  if augment:
    x = pipeline.augment_crop_flip(jax.random.fold_in(augment_key, state.step), x)
  x, replaced = codes_lib.mix_codes(jax.random.fold_in(mix_key, state.step), x, labels, codes,
                                    t_mix)

  def loss_fn(params):
    variables = model_variables(params, state.batch_stats)
    if state.batch_stats:
      logits, updates = model.apply(variables, x, train=True, mutable=["batch_stats"])
    else:
      logits, updates = model.apply(variables, x, train=True), {}
    losses = cross_entropy(logits, labels)
    return jnp.mean(losses), (losses, logits, updates.get("batch_stats", {}))

  grads, (losses, logits, batch_stats) = jax.grad(loss_fn, has_aux=True)(state.params)
  updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
  new_state = state.replace(
      step=state.step + 1, params=optax.apply_updates(state.params, updates),
      batch_stats=batch_stats, opt_state=opt_state)
  real = ~replaced
  masked_mean = lambda v, m: jnp.sum(jnp.where(m, v, 0.0)) / jnp.maximum(jnp.sum(m), 1)
  metrics = {
      "loss": jnp.mean(losses),
      "image_loss": masked_mean(losses, real),
      "code_loss": masked_mean(losses, replaced),
      "accuracy": jnp.mean(jnp.argmax(logits, -1) == labels),
      "code_fraction": jnp.mean(replaced),
  }
  return new_state, metrics


#: Module-level, so equal models and optimisers share the compiled programs.
_train_step = jax.jit(_step, donate_argnums=0, static_argnames=_STATIC)


@functools.partial(jax.jit, donate_argnums=0, static_argnames=_STATIC)
def _train_steps(state: TrainState, images, labels, first_step, count, *constants, **static):
  """``count`` :func:`_step` calls in one ``while`` loop, step ``s`` on batch
  ``s - first_step`` of ``images``, ``labels``; also the metrics' sums over them."""

  def body(_, carry):
    state, _, sums = carry
    at = lambda a: jax.lax.dynamic_index_in_dim(a, state.step - first_step, keepdims=False)
    state, metrics = _step(state, at(images), at(labels), *constants, **static)
    metrics = {name: metrics[name].astype(jnp.float32) for name in METRICS}
    return state, metrics, jax.tree.map(jnp.add, sums, metrics)

  zeros = {name: jnp.zeros((), jnp.float32) for name in METRICS}
  return jax.lax.fori_loop(0, count, body, (state, zeros, zeros))


def make_predict_fn(model: nn.Module, *, mean=(0.0,), std=(1.0,), mesh: Mesh | None = None):
  """Returns a jitted ``predict(params, batch_stats, images_uint8) -> logits`` (inference).

  With ``mesh``, each batch is split over its ``data`` axis. One module-level
  ``jax.jit``: equal models with the same normalisation and mesh share its compiled
  program, so repeated calls compile once per batch shape. ``predict`` refuses images
  that are not uint8 (float images would be divided by 255 again) with
  :class:`~mnemonic_jax.errors.BadRequestType`, from their dtype alone.
  """
  mean, std = (checks.per_channel(v, n, "make_predict_fn") for n, v in (("mean", mean),
                                                                         ("std", std)))
  parallel.check_mesh(mesh)
  jitted = functools.partial(_predict, Static(model), mean, std, mesh)

  def predict(params: PyTree, batch_stats: PyTree, images: chex.Array) -> jax.Array:
    checks.uint8_images(images, "predict")
    return jitted(params, batch_stats, images)

  return predict


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3))
def _predict(model: Static, mean, std, mesh, params, batch_stats, images):
  images = parallel.constrain_batch(images, mesh)
  return model.value.apply(model_variables(params, batch_stats), normalize(images, mean, std),
                           train=False)


@dataclasses.dataclass(frozen=True)
class FitConfig:
  """Hyper-parameters of :func:`fit` (defaults: the paper's MNIST settings), checked when
  built or replaced and kept as plain Python values (:func:`training_checks.fit_field`).

  Raises:
    BadConfig: a field of the wrong type or out of range (``epochs=0``, a NaN
      ``learning_rate``, ``momentum=1.5``, ...), naming it.
  """

  epochs: int = 200
  batch_size: int = 128
  learning_rate: float = 0.01
  momentum: float = 0.9
  weight_decay: float = 5e-4
  schedule: str = "constant"
  t_mix: float = 0.1
  augment: bool = False

  def __post_init__(self):
    for field in dataclasses.fields(self):
      object.__setattr__(self, field.name, checks.fit_field(field.name, getattr(self, field.name)))


class FitKeys(NamedTuple):
  """The named keys :func:`fit` splits its root key into (big_vision's habit)."""

  init: jax.Array
  shuffle: jax.Array
  step: jax.Array


def fit_keys(key: chex.PRNGKey) -> FitKeys:
  """Splits :func:`fit`'s root key into its init, shuffle and step keys, once.

  Raises:
    BadRequestType, BadRequest: ``key`` is not one PRNG key (an int seed, a batch).
  """
  checks.check_key(key)
  return FitKeys(*_split(key, 3))


def fit_optimizer(config: FitConfig, num_examples: int) -> optax.GradientTransformation:
  """The optimiser :func:`fit` trains with, from its config and the data's size.

  Raises:
    ValueError: the batch is larger than the data, or an unknown schedule.
  """
  total = config.epochs * steps_per_epoch(num_examples, config.batch_size)
  return make_optimizer(  # A constant schedule's length does not matter: one optimiser.
      config.learning_rate, momentum=config.momentum, weight_decay=config.weight_decay,
      schedule=config.schedule, total_steps=total if config.schedule != "constant" else None)


def initial_state(model: nn.Module, input_shape: tuple[int, ...], config: FitConfig,
                  num_examples: int, key: chex.PRNGKey) -> TrainState:
  """The state :func:`fit` starts from with the same arguments (when given no ``state``).

  The one initialisation of a run: :func:`fit` calls it, and a caller that restores a
  checkpoint into its shapes (``jax.eval_shape(lambda: initial_state(...))``) or starts
  from pretrained weights calls it too, so a resumed run sees exactly the state an
  uninterrupted one would.

  Args:
    model: the Flax Linen classifier.
    input_shape: one example's shape, e.g. ``(8, 8, 1)``.
    config: :func:`fit`'s hyper-parameters.
    num_examples: training examples (sets a cosine schedule's length).
    key: :func:`fit`'s root key (the init key is split from it by :func:`fit_keys`).

  Returns:
    The initial :class:`TrainState` (step 0).
  """
  return create_train_state(fit_keys(key).init, model, input_shape,
                            fit_optimizer(config, num_examples))


#: Seconds between the progress bar's refreshes (at least).
BAR_SECONDS = 0.5
#: :func:`fit` copies batches to the device in groups of up to this many bytes (and at
#: most :data:`GROUP_STEPS` batches), one copy per group instead of one per step, and runs
#: the steps of a group in one call (:meth:`TrainStep.steps`).
GROUP_BYTES = 16 * 2**20
GROUP_STEPS = 32

#: ``(steps, call)``: ``call(state) -> (state, last step's metrics, sums over the steps)``.
Call = tuple[int, Callable[[TrainState], tuple[TrainState, Metrics, Metrics]]]


def _epoch_calls(train_step, batches: Iterator, first_step: int, mesh: Mesh | None,
                 every: int | None) -> Iterator[Call]:
  """An epoch's device calls, from its host batches.

  Batches go to the device in groups of a fixed number of batches ``K`` (the last group
  padded; one program for every epoch and data size; over a mesh split along the batch
  axis), and each group's steps run in as few calls as ``every`` allows: a call ends at
  every multiple of ``every`` (``None``: only at the group's end). A step that is not a
  :class:`TrainStep` gets each batch alone.
  """
  def put(tree, batch_axis=0):
    return (jax.device_put(tree) if mesh is None
            else parallel.shard_batch(mesh, tree, batch_axis=batch_axis))

  def put_scalar(value):
    value = np.int32(value)
    return jax.device_put(value) if mesh is None else parallel.replicate(mesh, value)

  if not isinstance(train_step, TrainStep):
    for batch in batches:
      def call(state, batch=batch):
        state, metrics = train_step(state, *put(batch))
        return state, metrics, metrics
      yield 1, call
    return
  group_size = None
  while True:
    group = list(itertools.islice(batches, group_size or 1))
    if not group:
      return
    if group_size is None:  # Set by the first batch: the same for every group.
      nbytes = sum(np.asarray(a).nbytes for a in group[0])
      group_size = int(np.clip(GROUP_BYTES // max(nbytes, 1), 1, GROUP_STEPS))
      group += list(itertools.islice(batches, group_size - 1))
    padded = group + [group[-1]] * (group_size - len(group))  # Padding is never taken.
    images, labels = put((np.stack([b[0] for b in padded]), np.stack([b[1] for b in padded])),
                         batch_axis=1)
    first = put_scalar(first_step)
    step, end = first_step, first_step + len(group)
    while step < end:
      n = end - step if every is None else min(end, (step // every + 1) * every) - step
      count = put_scalar(n)
      yield n, lambda state, count=count: train_step.steps(state, images, labels, first, count)
      step += n
    first_step = end


_add = jax.jit(lambda a, b: jax.tree.map(jnp.add, a, b))
_divide = jax.jit(lambda sums, n: jax.tree.map(lambda v: v / n, sums))


def fit(
    model: nn.Module,
    data: tuple[np.ndarray, np.ndarray] | pipeline.ArrayEpochs | pipeline.TfdsEpochs,
    codes: chex.Array,
    config: FitConfig,
    key: chex.PRNGKey,
    *,
    mean=(0.0,),
    std=(1.0,),
    mesh: Mesh | None = None,
    state: TrainState | None = None,
    on_step: Callable[[int, TrainState, Metrics], None] | None = None,
    on_step_every: int = 1,
    progress: bool = True,
) -> tuple[TrainState, Metrics]:
  """Trains ``model`` with mnemonic codes mixed into its data (Algorithm 1).

  Deterministic given ``key``: epoch ``e`` is shuffled by ``fold_in(shuffle_key, e)`` and
  step ``s`` mixes with ``fold_in(mix_key, s)``, so a run resumed from a saved ``state``
  takes exactly the batches an uninterrupted run would.

  Args:
    model: a Flax Linen classifier whose ``__call__(x, train)`` takes a ``train`` keyword
      (``train=True`` while fitting, ``train=False`` to initialise; a model without
      Dropout or BatchNorm may ignore it) and returns logits ``(N, C)``.
    data: ``(images, labels)`` in host memory (uint8 NHWC, int labels ``(N,)`` in
      ``[0, C)``), a :class:`~mnemonic_jax.data.dataset.Dataset`, or a source of
      epochs (``pipeline.ArrayEpochs``, ``pipeline.TfdsEpochs`` for data larger than
      memory, or anything with ``num_examples`` and ``epoch(key, batch_size, skip)``).
    codes: ``(C, *input_shape)`` mnemonic codes.
    config: hyper-parameters.
    key: root key; split into named keys for init, shuffling and the step.
    mean, std: per-channel normalisation.
    mesh: optional ``jax.sharding.Mesh`` with a ``data`` axis (batch split over it; one
      without such an axis, of no device, or not a ``Mesh`` is refused). With several processes
      (:mod:`mnemonic_jax.distributed`) every process calls :func:`fit` alike; the mesh
      defaults to all their devices, each process reads only its rows of every batch
      (``data`` must then accept ``epoch(..., rows=slice)``, as both pipeline sources
      do), and the returned state holds global (replicated) arrays.
    state: resume from this state (its ``step`` says where); a :class:`TrainState` of this
      model (checked against its shapes). A state already at or past the last step
      (``config.epochs * steps_per_epoch``) is returned as it is, with metrics ``{}``:
      nothing is left to train (how a finished run resumes).
    on_step: called as ``on_step(step, state, metrics)`` after every step whose number
      is a multiple of ``on_step_every`` and after the last (e.g. to save); ``step`` is a
      Python int, so reading it does not wait for the device, and ``metrics`` are the
      means over the steps since its previous call (on the device; with
      ``on_step_every=1``, that step's own metrics).
    on_step_every: a positive int. The steps between two ``on_step`` calls run in as few
      device calls as the data groups allow (up to :data:`GROUP_STEPS` steps in one
      ``while`` loop, the same bits as step by step): larger is faster, above all where
      a step is short. Without ``on_step`` every group runs in one call.
    progress: show a progress bar (on process 0); its losses and accuracy are means over
      the steps since its last refresh (at most every :data:`BAR_SECONDS`; reading them
      never waits for the device, so the bar costs no device sync).

  Returns:
    ``(state, last_metrics)``: the last step's own metrics (not a mean over steps). A loss
    that became NaN or inf does not stop :func:`fit` (checking would wait for the device);
    ``on_step`` can, as :func:`mnemonic_jax.workflow.train` does (``TrainingDiverged``).

  Raises:
    BadRequestType: the model's ``__call__`` takes no ``train`` keyword; ``key`` is an int
      seed or not a key; ``data`` is one bare array or not data; images that are not uint8
      (float images: fit normalises uint8 itself); labels that are not integers; codes
      that are not floats; ``mean``/``std`` not 1-d real numbers; ``progress`` not a bool.
    BadRequest: a batch of keys; labels not ``(N,)`` for ``N`` images, or outside
      ``[0, C)`` for ``C`` codes; images whose example shape is not the codes'; a model
      whose number of outputs is not ``C``; ``mean``/``std`` of a length other than 1 or
      the images' channels, non-finite, or ``std <= 0``.
    BadConfig: ``on_step_every`` is not a positive int; ``t_mix`` outside [0, 1]. A
      ``config`` that is not a :class:`FitConfig` is a ``BadRequestType``.
    BadRequestType, BadRequest: a ``mesh`` that is not a ``Mesh``, holds no device or has
      no ``data`` axis (:func:`mnemonic_jax.parallel.check_mesh`, as every ``mesh=``).
    BadRequestType: a ``state`` that is not a :class:`TrainState`, an ``on_step`` that is
      not callable. BadRequest: a ``state`` whose params or batch_stats are not the
      model's shapes.

  All checked before anything compiles, on the host (labels in memory are read once); a
  source of epochs other than ``pipeline.ArrayEpochs`` is checked batch by batch, dtypes
  and shapes only, by the train step.
  """
  checks.fit_config(config, FitConfig)
  parallel.check_mesh(mesh)
  pair = checks.fit_inputs(model, data, codes, config.t_mix, key, mean, std, progress)
  checks.fit_state(state, model, codes.shape[1:])
  checks.on_step(on_step)
  if not _validate.is_integer(on_step_every) or on_step_every < 1:
    raise errors.BadConfig(f"on_step_every must be a positive int, got {on_step_every!r}")
  source = pipeline.ArrayEpochs(*pair) if pair is not None else data
  keys = fit_keys(key)
  spe = steps_per_epoch(source.num_examples, config.batch_size)
  total = config.epochs * spe
  optimizer = fit_optimizer(config, source.num_examples)
  if state is None:
    state = create_train_state(keys.init, model, codes.shape[1:], optimizer)
  if mesh is None and jax.process_count() > 1:
    mesh = parallel.make_mesh()  # Several processes train one model on all devices.
  train_step = make_train_step(
      model, optimizer, codes, config.t_mix, keys.step, mean=mean, std=std,
      augment=config.augment, mesh=mesh)
  # Several processes: each reads only its rows of every global batch.
  rows = ({"rows": parallel.process_rows(mesh, config.batch_size)}
          if parallel.multiprocess(mesh) else {})
  if mesh is not None:
    state = parallel.replicate(mesh, state)
  start = int(state.step)
  step = start
  metrics: Metrics = {}
  from tqdm.auto import tqdm  # pylint: disable=import-outside-toplevel

  bar = tqdm(total=total, initial=start, disable=not progress or jax.process_index() != 0,
             desc="train", unit="step", mininterval=BAR_SECONDS)
  shown = ("image_loss", "code_loss", "accuracy")
  # Not bar.disable: every process must run the same computations.
  window = MetricsWindow() if progress else None
  shown_at = time.monotonic()
  every = on_step_every if on_step is not None else None
  pending: tuple[Metrics, int] | None = None  # Sums since on_step's last call, and steps.
  try:  # The bar ends its line whatever ends the loop (an error is printed after it).
    for epoch in range(start // spe, config.epochs):
      batches = source.epoch(_fold_in(keys.shuffle, epoch), config.batch_size,
                             skip=step - epoch * spe, **rows)
      for n, call in _epoch_calls(train_step, iter(batches), step, mesh, every):
        state, metrics, sums = call(state)
        step += n
        if on_step is not None:
          pending = (sums, n) if pending is None else (_add(pending[0], sums), pending[1] + n)
          if step % on_step_every == 0 or step == total:
            since, steps = pending
            on_step(step, state, metrics if steps == 1 else _divide(since, np.float32(steps)))
            pending = None
        bar.update(n)
        if window is None:
          continue
        if n == 1:
          window.add(metrics)
        else:
          window.add_sums(sums, n)
        means = window.mean() if step == total else None  # The last: waits for the device.
        if means is None and time.monotonic() - shown_at >= BAR_SECONDS:
          means, shown_at = window.ready_mean(), time.monotonic()  # Never waits.
        if means:
          bar.set_postfix({k: f"{v:.3f}" for k, v in means.items() if k in shown})
  finally:
    bar.close()
  return state, metrics
