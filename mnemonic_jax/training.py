"""Training with mnemonic codes (Algorithm 1): a jitted step that mixes codes into batches.

Each step: normalise the uint8 batch, optionally augment it on the device, replace each
example by its class's code with probability ``t_mix`` (fresh randomness per step from
``fold_in(key, step)``), and take one SGD step on the mean cross-entropy. The step reports
the loss on real images and on codes apart, besides the total it optimises.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from typing import TYPE_CHECKING, Any, Callable, NamedTuple

import chex
import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

if TYPE_CHECKING:  # Imported where used: forgetting a checkpoint needs neither.
  import optax

from mnemonic_jax import errors
from mnemonic_jax import codes as codes_lib
from mnemonic_jax import parallel
from mnemonic_jax.pytrees import Static
from mnemonic_jax.bundle import model_variables, normalize
from mnemonic_jax.data import pipeline
from mnemonic_jax.fisher import cross_entropy

PyTree = Any
Metrics = dict[str, jax.Array]


@flax.struct.dataclass
class TrainState:
  """Everything that changes during training.

  Attributes:
    step: number of optimiser steps taken.
    params: trainable parameters.
    batch_stats: BatchNorm running statistics (``{}`` if the model has none).
    opt_state: optax state.
  """

  step: jax.Array
  params: PyTree
  batch_stats: PyTree
  opt_state: optax.OptState


@functools.lru_cache(maxsize=64)
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
    train steps built on it share one compiled program.
  """
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


@functools.partial(jax.jit, static_argnums=(1, 2))
def _init(key, model: Static, input_shape: tuple[int, ...]):
  return model.value.init(key, jnp.zeros((1, *input_shape), jnp.float32), train=False)


def create_train_state(
    key: chex.PRNGKey, model: nn.Module, input_shape: tuple[int, ...],
    optimizer: optax.GradientTransformation,
) -> TrainState:
  """Initialises parameters, BatchNorm statistics and optimiser state."""
  variables = _init(key, Static(model), tuple(input_shape))
  params = variables["params"]
  return TrainState(
      step=jnp.zeros((), jnp.int32), params=params,
      batch_stats=variables.get("batch_stats", {}), opt_state=optimizer.init(params))


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
) -> Callable[[TrainState, chex.Array, chex.Array], tuple[TrainState, Metrics]]:
  """Returns a jitted ``step(state, images_uint8, labels) -> (state, metrics)``.

  One module-level ``jax.jit``: equal models and the same optimiser object
  (:func:`make_optimizer` returns one per arguments) share its compiled program, so a
  second :func:`fit` in a process compiles nothing; codes, ``t_mix`` and keys are traced.

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
    mesh: if given, the batch is split over its ``data`` axis.
  """
  if not 0.0 <= t_mix <= 1.0:
    raise errors.BadConfig(f"t_mix must be in [0, 1], got {t_mix}")
  mix_key, augment_key = jax.random.split(key)
  program = functools.partial(
      _train_step, model=Static(model), optimizer=Static(optimizer),
      mean=tuple(float(m) for m in mean), std=tuple(float(s) for s in std),
      augment=bool(augment), mesh=mesh)
  constants = (jnp.asarray(codes), jnp.float32(t_mix), mix_key, augment_key)
  if mesh is not None:  # Placed once, replicated: a step copies nothing implicitly.
    constants = parallel.replicate(mesh, constants)
  codes, t_mix, mix_key, augment_key = constants
  return lambda state, images, labels: program(state, images, labels, codes, t_mix, mix_key,
                                               augment_key)


@functools.partial(jax.jit, donate_argnums=0,
                   static_argnames=("model", "optimizer", "mean", "std", "augment", "mesh"))
def _train_step(state: TrainState, images, labels, codes, t_mix, mix_key, augment_key, *,
                model: Static, optimizer: Static, mean, std, augment, mesh):
  """One step of Algorithm 1; module-level, so equal models and optimisers share it."""
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


def make_predict_fn(model: nn.Module, *, mean=(0.0,), std=(1.0,), mesh: Mesh | None = None):
  """Returns a jitted ``predict(params, batch_stats, images_uint8) -> logits`` (inference).

  With ``mesh``, each batch is split over its ``data`` axis. One module-level
  ``jax.jit``: equal models with the same normalisation and mesh share its compiled
  program, so repeated calls compile once per batch shape.
  """
  mean, std = tuple(float(m) for m in mean), tuple(float(s) for s in std)
  return functools.partial(_predict, Static(model), mean, std, mesh)


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3))
def _predict(model: Static, mean, std, mesh, params, batch_stats, images):
  images = parallel.constrain_batch(images, mesh)
  return model.value.apply(model_variables(params, batch_stats), normalize(images, mean, std),
                           train=False)


@dataclasses.dataclass(frozen=True)
class FitConfig:
  """Hyper-parameters of :func:`fit` (defaults: the paper's MNIST settings)."""

  epochs: int = 200
  batch_size: int = 128
  learning_rate: float = 0.01
  momentum: float = 0.9
  weight_decay: float = 5e-4
  schedule: str = "constant"
  t_mix: float = 0.1
  augment: bool = False


def steps_per_epoch(num_examples: int, batch_size: int) -> int:
  """Full batches of ``batch_size`` in one epoch of ``num_examples`` (the remainder dropped).

  Raises:
    ValueError: the batch is larger than the data.
  """
  if num_examples < batch_size:
    raise errors.BadConfig(
        f"batch size {batch_size} is larger than the {num_examples} training examples")
  return num_examples // batch_size


class FitKeys(NamedTuple):
  """The named keys :func:`fit` splits its root key into (big_vision's habit)."""

  init: jax.Array
  shuffle: jax.Array
  step: jax.Array


def fit_keys(key: chex.PRNGKey) -> FitKeys:
  """Splits :func:`fit`'s root key into its init, shuffle and step keys, once."""
  return FitKeys(*jax.random.split(key, 3))


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


class MetricsWindow:
  """Keeps the step metrics of a window (device arrays: no dispatch, no wait per step);
  :meth:`mean` reads their means over the steps added since the last call, in one
  jitted reduction, and resets."""

  def __init__(self):
    self._steps: list[Metrics] = []

  def add(self, step_metrics: Metrics) -> None:
    self._steps.append(step_metrics)

  def mean(self) -> dict[str, float]:
    steps, self._steps = self._steps, []
    if not steps:
      return {}
    return {k: float(v) for k, v in _mean_metrics(steps).items()}


@jax.jit
def _mean_metrics(steps: list[Metrics]) -> Metrics:
  return jax.tree.map(lambda *v: jnp.mean(jnp.stack(v)), *steps)


def _check_train_keyword(model: nn.Module) -> None:
  """Refuses a model that :func:`fit` cannot call with ``train=`` (before any tracing)."""
  try:
    signature = inspect.signature(model.__call__)
  except (AttributeError, TypeError, ValueError):  # Not introspectable: the call will tell.
    return
  kinds = {p.kind for p in signature.parameters.values()}
  train = signature.parameters.get("train")
  if inspect.Parameter.VAR_KEYWORD in kinds or (train is not None and train.kind in (
      inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)):
    return
  raise errors.BadRequestType(
      f"fit calls the model as model.apply(variables, x, train=True) to train it (and "
      f"train=False to initialise it), but {type(model).__name__}.__call__{signature} takes "
      "no 'train' keyword; add 'train: bool = False' to it (a model without Dropout or "
      "BatchNorm may ignore it)")


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
    data: ``(images, labels)`` in host memory (uint8 NHWC, int labels), or a source of
      epochs (``pipeline.ArrayEpochs``, ``pipeline.TfdsEpochs`` for data larger than
      memory, or anything with ``num_examples`` and ``epoch(key, batch_size, skip)``).
    codes: ``(C, *input_shape)`` mnemonic codes.
    config: hyper-parameters.
    key: root key; split into named keys for init, shuffling and the step.
    mean, std: per-channel normalisation.
    mesh: optional device mesh (batch split over ``data``). With several processes
      (:mod:`mnemonic_jax.distributed`) every process calls :func:`fit` alike; the mesh
      defaults to all their devices, each process reads only its rows of every batch
      (``data`` must then accept ``epoch(..., rows=slice)``, as both pipeline sources
      do), and the returned state holds global (replicated) arrays.
    state: resume from this state (its ``step`` says where).
    on_step: called after each step as ``on_step(step, state, metrics)`` (e.g. to
      save); ``step`` is a Python int, so reading it does not wait for the device.
    progress: show a progress bar (on process 0); its losses and accuracy are means over
      the last 100 steps, as in a run's ``metrics.jsonl``.

  Returns:
    ``(state, last_metrics)``.

  Raises:
    BadRequestType: the model's ``__call__`` takes no ``train`` keyword.
  """
  _check_train_keyword(model)
  source = pipeline.ArrayEpochs(*data) if isinstance(data, tuple) else data
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
  place = (lambda t: parallel.shard_batch(mesh, t)) if mesh is not None else jax.device_put
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
             desc="train", unit="step")
  shown = ("image_loss", "code_loss", "accuracy")
  window = MetricsWindow()  # The bar shows means over its window, as metrics.jsonl does.
  for epoch in range(start // spe, config.epochs):
    batches = source.epoch(jax.random.fold_in(keys.shuffle, epoch), config.batch_size,
                           skip=step - epoch * spe, **rows)
    for batch in batches:
      state, metrics = train_step(state, *place(batch))
      step += 1
      if on_step is not None:
        on_step(step, state, metrics)
      bar.update()
      if not progress:  # Not bar.disable: every process must run the same computations.
        continue
      window.add(metrics)
      if step % 100 == 0 or step == total:  # Reading metrics waits for the device.
        bar.set_postfix({k: f"{v:.3f}" for k, v in window.mean().items() if k in shown})
  bar.close()
  return state, metrics
