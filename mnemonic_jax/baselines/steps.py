"""The training steps and optimisers of the baselines, compiled once per model and config.

Every jitted program here is a module-level ``jax.jit`` whose static part is a hashable
:class:`StepSpec` (the model, the optimiser's update function, the loss, the mode and the
normalisation), as :mod:`mnemonic_jax.training` does for its train step: a second call of a
method with the same bundle's model, config and batch shapes compiles nothing. The
optimiser constructors (:func:`sgd`, :func:`adam`, :func:`piecewise_constant`,
:func:`cosine_decay`) are cached on their arguments, so equal hyper-parameters give the
same optimiser object, hence the same update function and the same compiled program.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax

from mnemonic_jax import fisher as fisher_lib
from mnemonic_jax.bundle import Bundle, model_variables, normalize
from mnemonic_jax.pytrees import Static

PyTree = Any


@flax.struct.dataclass
class LoopState:
  """Parameters, BatchNorm statistics and optimiser state of a training loop."""

  params: PyTree
  batch_stats: PyTree
  opt_state: optax.OptState


def _float32(value: Any) -> Any:
  """A real number (Python, NumPy, 0-d array; not a bool) as the Python float of its float32
  value, which the float32 steps compute with anyway: ``0.01``, ``np.float32(0.01)`` and a
  0-d array then key one cache entry; anything else (a schedule, None) as it is."""
  if isinstance(value, (bool, jax.core.Tracer)) or not (
      isinstance(value, (int, float, np.number)) or (
      np.ndim(value) == 0 and hasattr(value, "dtype")
      and np.issubdtype(value.dtype, np.number))):
    return value
  return float(np.float32(value))


def _cached(make: Callable[..., Any]) -> Callable[..., Any]:
  """``make`` cached on its arguments, numbers by their float32 values (:func:`_float32`);
  other unhashable ones build a new object."""
  cached = functools.lru_cache(maxsize=256)(make)

  @functools.wraps(make)
  def build(*args, **kwargs):
    args = tuple(map(_float32, args))
    kwargs = {k: _float32(v) for k, v in kwargs.items()}
    try:
      return cached(*args, **kwargs)
    except TypeError:  # Unhashable: correct, but each call compiles its own step.
      return make(*args, **kwargs)

  return build


@_cached
def sgd(learning_rate: float | optax.Schedule, momentum: float = 0.9,
        weight_decay: float = 0.0) -> optax.GradientTransformation:
  """SGD with momentum and coupled weight decay (PyTorch's ``SGD``), as the baselines use.

  Cached: equal (hashable) arguments give the same object (so the same compiled steps).
  """
  return optax.chain(optax.add_decayed_weights(weight_decay),
                     optax.sgd(learning_rate, momentum or None))


@_cached
def adam(learning_rate: float | optax.Schedule, weight_decay: float | None = None
         ) -> optax.GradientTransformation:
  """Adam, after coupled weight decay when ``weight_decay`` is given (PyTorch's
  ``Adam(weight_decay=...)``); cached as :func:`sgd`."""
  if weight_decay is None:
    return optax.adam(learning_rate)
  return optax.chain(optax.add_decayed_weights(weight_decay), optax.adam(learning_rate))


@functools.lru_cache(maxsize=256)
def cosine_decay(learning_rate: float, total_steps: int) -> optax.Schedule:
  """optax's cosine decay to 0 over ``total_steps``; cached (one object per arguments)."""
  return optax.cosine_decay_schedule(learning_rate, total_steps)


@functools.lru_cache(maxsize=256)
def piecewise_constant(learning_rate: float, boundaries: tuple[tuple[int, float], ...]
                       ) -> optax.Schedule:
  """optax's piecewise constant schedule from ``(step, factor)`` pairs; cached."""
  return optax.piecewise_constant_schedule(learning_rate, dict(boundaries))


def init_loop(bundle: Bundle, optimizer: optax.GradientTransformation) -> LoopState:
  """A :class:`LoopState` starting from copies of the bundle's variables.

  Copies, because the steps donate their state: the bundle's own buffers must never be
  handed to them.
  """
  params, batch_stats = jax.tree.map(jnp.array, (bundle.params, bundle.batch_stats))
  return LoopState(params=params, batch_stats=batch_stats, opt_state=optimizer.init(params))


@dataclasses.dataclass(frozen=True)
class StepSpec:
  """The static part of a step program (hashable: it keys ``jax.jit``'s cache).

  Attributes:
    model: the Linen model (:class:`~mnemonic_jax.pytrees.Static`).
    update: the optimiser's ``update`` function (:class:`~mnemonic_jax.pytrees.Static`).
    train_mode: BatchNorm in training mode.
    mean, std: the bundle's normalisation (``None`` for a step on model inputs).
    loss_fn: ``loss_fn(logits, params, *args)`` (``Static``), ``None`` for the weighted
      cross-entropy.
    shrink: for l1-sparse's proximal step, the learning rate the soft threshold is scaled
      by (``None``: no threshold).
  """

  model: Static
  update: Static
  train_mode: bool
  mean: tuple[float, ...] | None = None
  std: tuple[float, ...] | None = None
  loss_fn: Static | None = None
  shrink: float | None = None


def step_spec(bundle: Bundle, optimizer: optax.GradientTransformation, *, train_mode: bool,
              images: bool, loss_fn: Callable[..., jax.Array] | None = None,
              shrink: float | None = None) -> StepSpec:
  """The :class:`StepSpec` of ``bundle``'s model with ``optimizer`` (see the module)."""
  as_floats = lambda v: tuple(float(x) for x in v)
  return StepSpec(Static(bundle.model), Static(optimizer.update), bool(train_mode),
                  as_floats(bundle.mean) if images else None,
                  as_floats(bundle.std) if images else None,
                  None if loss_fn is None else Static(loss_fn),
                  None if shrink is None else float(shrink))


def _take_step(spec: StepSpec, state: LoopState, x, objective):
  """One optimiser step on ``objective(logits, params)``; ``(state, loss)``."""
  model = spec.model.value

  def loss_fn(params):
    variables = model_variables(params, state.batch_stats)
    if spec.train_mode and state.batch_stats:
      logits, updates = model.apply(variables, x, train=True, mutable=["batch_stats"])
      new_stats = updates["batch_stats"]
    else:
      logits, new_stats = model.apply(variables, x, train=spec.train_mode), state.batch_stats
    return objective(logits, params), new_stats

  (loss, new_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  updates, opt_state = spec.update.value(grads, state.opt_state, state.params)
  return LoopState(params=optax.apply_updates(state.params, updates),
                   batch_stats=new_stats, opt_state=opt_state), loss


def _inputs(spec: StepSpec, x):
  return x if spec.mean is None else normalize(x, spec.mean, spec.std)


@functools.partial(jax.jit, static_argnums=0, donate_argnums=1)
def weighted_program(spec: StepSpec, state: LoopState, x, labels, weights):
  """The weighted cross-entropy step (see :func:`make_weighted_step`)."""
  def objective(logits, params):
    del params
    losses = fisher_lib.cross_entropy(logits, labels)
    return jnp.sum(weights * losses) / jnp.maximum(jnp.sum(jnp.abs(weights)), 1.0)

  return _take_step(spec, state, _inputs(spec, x), objective)


@functools.partial(jax.jit, static_argnums=0, donate_argnums=1)
def loss_program(spec: StepSpec, state: LoopState, images, args):
  """The step on a method's own loss (see :func:`make_loss_step`)."""
  state, loss = _take_step(spec, state, _inputs(spec, images),
                           lambda logits, params: spec.loss_fn.value(logits, params, *args))
  if spec.shrink is not None:  # l1-sparse's proximal map, by learning rate * gamma.
    threshold = spec.shrink * args[-1]
    state = state.replace(params=jax.tree.map(
        lambda p: (jnp.sign(p) * jnp.maximum(jnp.abs(p) - threshold, 0)).astype(p.dtype),
        state.params))
  return state, loss


def make_weighted_step(bundle: Bundle, optimizer: optax.GradientTransformation, *,
                       train_mode: bool = True, images: bool = False
                       ) -> Callable[[LoopState, jax.Array, jax.Array, jax.Array],
                                     tuple[LoopState, jax.Array]]:
  """A jitted ``step(state, x, labels, weights) -> (state, loss)`` on a weighted loss.

  The loss is ``sum_i w_i * CE(f(x_i), y_i) / max(sum_i |w_i|, 1)``: weight ``+1``
  descends on an example, ``-1`` ascends (NegGrad), ``0`` ignores it (padding). Weights
  whose absolute values sum below 1 are not renormalised, so ``alpha / B`` weights give
  exactly ``alpha * mean(CE)`` (NegGrad+). ``x`` is in the model's (normalised) input
  space, so noise inputs (UNSIR) and images (``bundle.normalize``) go through the same
  step; with ``images=True`` it takes uint8 ``(B, H, W, C)`` images and normalises them
  with the bundle's mean and std. The state is donated.

  One module-level program (:func:`weighted_program`): equal models with the same
  optimiser object (:func:`sgd` and :func:`adam` are cached) share it, so a second call
  with the same shapes compiles nothing.

  Args:
    bundle: gives the model (and the normalisation, with ``images``).
    optimizer: an optax transformation (e.g. :func:`sgd`).
    train_mode: run the model in training mode (BatchNorm uses and updates batch
      statistics); ``False`` keeps BatchNorm in inference mode and its statistics fixed.
    images: the step takes uint8 images rather than model inputs.
  """
  spec = step_spec(bundle, optimizer, train_mode=train_mode, images=images)
  return functools.partial(weighted_program, spec)


def make_loss_step(bundle: Bundle, optimizer: optax.GradientTransformation,
                   loss_fn: Callable[..., jax.Array], *, train_mode: bool = True,
                   shrink: float | None = None) -> Callable[..., tuple[LoopState, jax.Array]]:
  """A jitted ``step(state, images_uint8, *args) -> (state, loss)`` on a method's own loss.

  For the methods whose objective is not a weighted cross-entropy (distillation from a
  teacher, an l1 penalty): ``loss_fn(logits, params, *args)`` returns the scalar to
  minimise, ``logits`` being the model's output on the normalised ``uint8`` ``(B, H, W, C)``
  images and ``args`` the step's other arrays (labels, teacher logits, a penalty weight).
  ``loss_fn`` must be one function object across calls (a module-level function): it is
  part of the compiled program's key. With ``shrink``, every parameter is then
  soft-thresholded by ``shrink * args[-1]`` (l1-sparse's proximal step). BatchNorm as in
  :func:`make_weighted_step`; the state is donated; one module-level program
  (:func:`loss_program`).
  """
  spec = step_spec(bundle, optimizer, train_mode=train_mode, images=True, loss_fn=loss_fn,
                   shrink=shrink)
  return lambda state, images, *args: loss_program(spec, state, images, args)
