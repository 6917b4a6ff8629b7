"""Diagonal empirical Fisher information from per-example squared gradients.

``F_i = mean_n (d loss(x_n, y_n) / d w_i) ** 2``: the square is taken per example, before
the mean. (``optax.second_order.fisher_diag`` squares a batch's mean gradient, which is a
different quantity.)

Two ways to compute it:

* ``"vmap"`` works on any ``apply_fn``: per-example gradients by
  ``vmap(grad(loss), in_axes=(None, 0, 0))``, squared and summed inside each microbatch,
  microbatches in sequence (``lax.scan``), so peak memory is microbatch x |params|
  whatever the number of inputs.
* ``"factorized"`` is exact and faster for Flax models whose parameters all sit in
  ``nn.Dense``, ``nn.DenseGeneral``, ``nn.Conv``, ``nn.LayerNorm`` / ``nn.RMSNorm``,
  inference-mode ``nn.BatchNorm`` layers, or layers registered with
  :func:`mnemonic_jax.layer_taps.register_layer` (the paper's MLP and ResNet-18, and the
  ViT: 0.75x, 1.7x and 1.0-1.1x one batched forward+backward on 2 CPU cores, against
  23x, 2.4x and 1.3-1.7x for ``"vmap"``; ``experiments/results/bench_fisher.md``): each
  layer's per-example gradient follows from its input and the
  gradient w.r.t. its output, both taken from ONE batched backward pass (see
  :mod:`mnemonic_jax.layer_taps`). For a Dense layer ``y = x W + b`` the per-example
  kernel gradient is ``x_n delta_n^T``, so ``sum_n w_n (x_n delta_n^T) ** 2 =
  (w * x**2)^T (delta**2)``: one matrix product, no per-example gradient at all.

``"auto"`` (the default) takes ``"factorized"`` when it covers every parameter leaf and
``"vmap"`` otherwise.
"""

import functools
from typing import Any, Callable, NamedTuple, Sequence

import chex
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from mnemonic_jax import errors
from mnemonic_jax import _validate, layer_taps, parallel
from mnemonic_jax.fisher_checks import (  # noqa: F401  (importable from here as before)
    _array, _check_eps, _check_loss_fn, _check_microbatch, _float_inputs, _loss)
from mnemonic_jax.pytrees import as_pytree

PyTree = Any
ApplyFn = Callable[[PyTree, jax.Array], jax.Array]
LossFn = Callable[[jax.Array, jax.Array], jax.Array]
METHODS = ("auto", "vmap", "factorized")


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Per-example softmax cross-entropy, ``(N, C), (N,) -> (N,)``, in nats (optax's values).

  Traceable, so the labels' values are not checked: each should be an integer in
  ``[0, C)``. A label outside it, negative ones included (``-1`` padding), gives a NaN
  loss and a NaN gradient, under ``jax.jit`` too, so it poisons a Fisher or a training
  step instead of counting as some class (optax alone wraps ``-1`` round to class
  ``C - 1``). The entry points that hold labels on the host (:func:`mnemonic_jax.fit`,
  :func:`fisher_diagonal`, ``class_fishers``) refuse such labels first.

  One jitted program per shapes and dtypes on concrete arrays; traced (in a caller's
  ``jit``, ``grad``, ``vmap``) its operations join the caller's program as they are.

  Args:
    logits: float logits ``(..., C)`` (an array, or a list NumPy takes as one).
    labels: integer class ids shaped like ``logits`` without its last axis.

  Returns:
    The losses, shaped like ``labels``, in the logits' dtype.

  Raises:
    TypeError (BadRequestType): non-float logits or non-integer labels.
    ValueError (BadRequest): logits without a class axis (a scalar) or with no class
      (``C == 0``); labels not shaped like ``logits.shape[:-1]``.
  """
  logits, labels = _array(logits, "logits"), _array(labels, "labels")  # No program.
  if not jnp.issubdtype(logits.dtype, jnp.floating):
    raise errors.BadRequestType(f"cross_entropy: logits must be float (..., C), got dtype "
                                f"{logits.dtype}, shape {logits.shape}")
  if logits.ndim < 1 or logits.shape[-1] < 1:
    raise errors.BadRequest(f"cross_entropy: logits must have a class axis of at least one "
                            f"class, (..., C) with C >= 1, got shape {logits.shape}")
  if not jnp.issubdtype(labels.dtype, jnp.integer):
    raise errors.BadRequestType(f"cross_entropy: labels must be integer class ids, got dtype "
                                f"{labels.dtype}")
  if labels.shape != logits.shape[:-1]:
    raise errors.BadRequest(f"cross_entropy: labels must have shape {logits.shape[:-1]} (the "
                            f"logits' without the class axis), got {labels.shape}")
  if isinstance(logits, jax.core.Tracer) or isinstance(labels, jax.core.Tracer):
    return _cross_entropy(logits, labels)
  return _cross_entropy_program(logits, labels)


def _cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """:func:`cross_entropy` on checked arrays (traceable).

  ``logsumexp(logits) - logits[label]``: the operations of
  ``optax.softmax_cross_entropy_with_integer_labels``, so the same loss and gradient bit
  for bit (tests/test_cross_entropy.py compares them), without importing optax (0.1 s
  with JAX loaded), which forgetting and the command line's ``forget`` otherwise never
  need.
  """
  label_logits = jnp.take_along_axis(logits, labels[..., None], axis=-1)[..., 0]
  loss = jax.nn.logsumexp(logits, axis=-1) - label_logits
  # Times 1 for a label in range (bit for bit the same loss and gradient), times NaN
  # otherwise: the loss and its gradient become NaN, where a jnp.where would pass a zero
  # gradient and make the example silently count for nothing.
  in_range = (labels >= 0) & (labels < logits.shape[-1])
  return loss * jnp.where(in_range, 1.0, jnp.nan).astype(loss.dtype)


_cross_entropy_program = jax.jit(_cross_entropy)


def fisher_diagonal(
    apply_fn: ApplyFn,
    params: PyTree,
    inputs: chex.Array,
    labels: chex.Array,
    microbatch_size: int | None = None,
    *,
    loss_fn: LossFn = cross_entropy,
    method: str = "auto",
    mesh: Mesh | None = None,
) -> PyTree:
  """Diagonal empirical Fisher: the mean over inputs of squared per-example gradients.

  Implements ``f_i = (1/N) sum_n (dL(x_n, y_n; w)/dw_i)^2`` (paper, eq. 6's ingredients).
  Jitted: compiled once per ``apply_fn``, ``loss_fn``, ``microbatch_size``, ``method``,
  ``mesh`` and shapes/dtypes of the arguments, then reused (the arrays an ``apply_fn``
  pytree closes over, such as :class:`mnemonic_jax.bundle.InferenceApply`'s BatchNorm
  statistics, are traced, so new values do not recompile).

  Args:
    apply_fn: ``apply_fn(params, x) -> logits (N, C)`` for a batch ``x``. Examples must
      not interact and nothing may be updated (BatchNorm in inference mode): each
      example's gradient is taken on a batch of one, where a training-mode BatchNorm
      normalises to a constant and every parameter before it would get Fisher 0. Such a
      model is refused (see Raises).
    params: a pytree of float arrays (any float dtype). With ``apply_fn = model.apply``
      the Flax variables dict ``{'params': p}`` works too (on either method), but only
      with no other collection in it (``batch_stats`` is no parameter to score): then
      pass ``variables['params']`` with ``lambda p, x: model.apply({'params': p, ...}, x)``
      (or :func:`mnemonic_jax.inference_apply_fn`).
    inputs: ``(N, *input_shape)`` float inputs (an array: a list is refused).
    labels: integer labels ``(N,)`` in ``[0, C)``: an array, list or tuple.
    microbatch_size: examples per vectorised chunk; ``None`` takes all ``N`` at once.
      Peak memory grows with this, not with ``N``.
    loss_fn: per-example loss ``(logits, labels) -> (N,)``, unreduced (no mean or sum);
      cross-entropy by default.
    method: ``"auto"``, ``"vmap"`` or ``"factorized"`` (see the module docstring).
    mesh: optional ``jax.sharding.Mesh`` with a ``data`` axis (e.g.
      :func:`mnemonic_jax.make_mesh`); each microbatch is split over it. A mesh over
      several processes' devices: every process passes the same arguments and gets the
      whole Fisher back on its own first device.

  Returns:
    A pytree shaped like ``params``, float32 whatever the parameters' dtype (squared
    gradients are accumulated in float32).

  Raises:
    TypeError: non-integer labels, non-float params, an ``apply_fn`` that does not
      return one logits array, or a ``loss_fn`` that does not return float losses.
    ValueError: no inputs, labels outside ``[0, C)`` or not ``(N,)``, inputs and labels
      of different lengths, non-finite params or inputs, inputs that do not fit the
      model, a model that updates state, a model whose examples interact (the logits of
      the first input beside the second differ from those beside itself, by more than
      ``1e-3 * (1 + max |logit|)``: BatchNorm in training mode; read after the Fisher is
      computed, in the same program, so the call waits for it; not under ``jax.jit``,
      where labels are not checked either), a bad ``method`` / ``microbatch_size``, a
      ``loss_fn`` that fails on ``(N, C)`` logits or returns anything but per-example
      losses ``(N,)`` (a scalar mean, say), or ``method="factorized"`` on a model it does
      not cover (the message names a ``{'params': ...}`` variables dict passed whole).
    BadRequestType, BadRequest: a ``mesh`` that is not a ``Mesh``, holds no device or has
      no ``data`` axis (:func:`mnemonic_jax.parallel.check_mesh`).

  Example:
    >>> fisher = fisher_diagonal(apply_fn, params, codes, jnp.arange(4), microbatch_size=2)
    >>> jax.tree.map(jnp.shape, fisher) == jax.tree.map(jnp.shape, params)
    True
  """
  num_classes = _check_inputs(apply_fn, params, inputs, microbatch_size, method,
                              loss_fn=loss_fn, mesh=mesh)
  labels = _array(labels, "labels")
  _validate.labels(labels, num_classes)
  n = np.shape(labels)[0]
  if inputs.shape[0] != n:
    raise errors.BadRequest(f"inputs ({inputs.shape[0]}) and labels ({n}) disagree on the number "
                            "of examples")
  if n == 0:
    raise errors.BadRequest("fisher_diagonal needs at least one input")
  weights = np.full((1, n), 1.0 / n, np.float32)
  (fisher,) = _run_fisher(apply_fn, params, inputs, labels, weights, None, microbatch_size,
                          loss_fn=loss_fn, method=method, mesh=mesh)
  return fisher


def class_fishers(
    apply_fn: ApplyFn,
    params: PyTree,
    codes: chex.Array,
    forget: Sequence[int],
    *,
    exclude: Sequence[int] = (),
    eps: float = 0.0,
    microbatch_size: int | None = None,
    loss_fn: LossFn = cross_entropy,
    method: str = "auto",
    mesh: Mesh | None = None,
) -> tuple[PyTree, PyTree]:
  """Fisher diagonals on the forgotten and on the remaining classes' codes.

  Code ``c`` is labelled ``c``; its squared gradient is ``g_c ** 2``. Both means come out of
  one pass over the codes (Algorithm 2, steps 1-2). Jitted and cached as
  :func:`fisher_diagonal`; the classes are a traced mask, so every choice of classes
  shares one compilation.

  Args:
    apply_fn: ``apply_fn(params, x) -> logits (C, C)`` for the ``C`` codes.
    params: parameters to score.
    codes: ``(C, *input_shape)`` mnemonic codes, one per class in class order.
    forget: integer class ids to forget.
    exclude: classes neither forgotten nor remaining (e.g. forgotten by an earlier
      request): their codes are left out of both means.
    eps: a finite number ``>= 0``, where both accumulators start before the division by
      the class counts. The
      reference implementation starts them at ``1e-16``
      (:data:`mnemonic_jax.forgetting.EPS`), so its Fishers are
      ``(eps + sum_c g_c ** 2) / n``; ``0`` gives the plain means.
    microbatch_size, loss_fn, method, mesh: as in :func:`fisher_diagonal`.

  Returns:
    ``(f_forget, f_remain)``: ``(eps + sum of g_c ** 2) / count`` over ``c`` in ``forget``
    and over the remaining classes, each shaped like ``params``, float32.

  Raises:
    TypeError, ValueError: as :func:`fisher_diagonal` (codes whose logits interact
      included); also bad class ids (not integers,
      out of range, duplicated, none, or nothing left to remain), non-finite codes, and an
      ``eps`` that is not a number (TypeError), negative or not finite (ValueError).

  Example:
    >>> f_forget, f_remain = class_fishers(apply_fn, params, codes, [1])
  """
  _check_eps(eps)
  num_classes = _check_inputs(apply_fn, params, codes, microbatch_size, method, "codes",
                              loss_fn=loss_fn, mesh=mesh)
  if num_classes != codes.shape[0]:
    _validate.model_outputs(apply_fn, params, codes, codes.shape[0])  # Raises.
  forget, exclude = _validate.forget_request(forget, num_classes, exclude)
  weights = class_weights(*class_masks(forget, exclude, num_classes), eps)
  return _run_fisher(apply_fn, params, codes, np.arange(num_classes), weights.weights,
                     weights.offsets, microbatch_size, loss_fn=loss_fn, method=method,
                     mesh=mesh)


class ClassWeights(NamedTuple):
  """The weights of the forgotten and remaining classes' Fisher means (Algorithm 2, steps
  1-2), computed on the host so that no program spends kernels on them.

  Attributes:
    weights: ``(2, C)`` float32; row 0 is ``in_forget / n_forget``, row 1
      ``in_remain / n_remain``.
    offsets: ``(2,)`` float32, ``eps / n`` of each: the reference implementation starts
      its accumulators at ``eps``, so its Fishers are ``(eps + sum_c g_c ** 2) / n``.
  """

  weights: np.ndarray
  offsets: np.ndarray


def class_weights(in_forget: np.ndarray, in_remain: np.ndarray, eps: float = 0.0
                  ) -> ClassWeights:
  """:class:`ClassWeights` of boolean class masks ``(C,)`` (host NumPy, float32).

  Raises:
    TypeError, ValueError: ``eps`` is not a finite number ``>= 0``; masks not of one
      shape ``(C,)``.
  """
  _check_eps(eps)
  shapes = np.shape(in_forget), np.shape(in_remain)
  if len(shapes[0]) != 1 or shapes[0] != shapes[1]:
    raise errors.BadRequest(f"in_forget and in_remain must be boolean masks of one shape (C,), "
                            f"got shapes {shapes[0]} and {shapes[1]}")
  masks = np.stack([np.asarray(in_forget, bool), np.asarray(in_remain, bool)])
  counts = masks.sum(axis=1).astype(np.float32)
  return ClassWeights((masks / counts[:, None]).astype(np.float32),
                      (np.float32(eps) / counts).astype(np.float32))


def weighted_class_fishers(
    apply_fn: ApplyFn,
    params: PyTree,
    codes: chex.Array,
    weights: ClassWeights,
    *,
    microbatch_size: int | None = None,
    loss_fn: LossFn = cross_entropy,
    method: str = "auto",
    mesh: Mesh | None = None,
) -> tuple[PyTree, PyTree]:
  """:func:`class_fishers` with the classes as :class:`ClassWeights`, for use under jit.

  Returns ``(f_forget, f_remain)``, ``offsets[k] + sum_c weights[k, c] * g_c ** 2`` with
  code ``c`` labelled ``c``. Unchecked: the caller validates.
  """
  codes = jnp.asarray(codes)
  sums = weighted_squared_gradients(
      apply_fn, params, codes, jnp.arange(codes.shape[0]), weights.weights, microbatch_size,
      loss_fn=loss_fn, method=method, mesh=mesh)
  return tuple(jax.tree.map(lambda f, k=k: f + weights.offsets[k], s)
               for k, s in enumerate(sums))


def class_masks(forget: Sequence[int], exclude: Sequence[int], num_classes: int
                ) -> tuple[np.ndarray, np.ndarray]:
  """Boolean masks ``(num_classes,)`` of the forgotten and of the remaining classes."""
  in_forget = class_mask(forget, num_classes)
  return in_forget, ~(in_forget | class_mask(exclude, num_classes))


def class_mask(classes: Sequence[int], num_classes: int) -> np.ndarray:
  """Boolean mask ``(num_classes,)``, True at ``classes`` (host NumPy: no device dispatch)."""
  mask = np.zeros(num_classes, bool)
  mask[np.asarray(classes, np.int64)] = True
  return mask


def validate_classes(classes: Sequence[int], num_classes: int) -> tuple[int, ...]:
  """Checks a set of classes to forget; returns it as a sorted tuple of ints.

  Raises:
    TypeError: ``classes`` is a string, or holds something other than integers (Python or
      NumPy ints, or integer 0-d arrays; ``3.7``, ``True`` and ``"3"`` are refused, not
      coerced).
    ValueError: if it is empty, has duplicates, leaves the range ``[0, num_classes)``, or
      names every class (then nothing would remain to compare against).
  """
  return _validate.forget_request(classes, num_classes)[0]


def check_input_shape(apply_fn: ApplyFn, params: PyTree, inputs: chex.Array) -> None:
  """Checks that the model takes ``inputs`` and returns one logits array ``(N, C)``.

  Raises:
    TypeError, ValueError: ``inputs`` is not a float array;
      see :func:`mnemonic_jax._validate.model_outputs`.
  """
  _float_inputs(inputs, "inputs")
  _validate.model_outputs(apply_fn, params, inputs)


def _check_inputs(apply_fn, params, inputs, microbatch_size, method, name="inputs", *,
                  loss_fn=cross_entropy, mesh=None) -> int:
  """The checks every public Fisher entry point shares; returns the number of logits."""
  parallel.check_mesh(mesh)
  if method not in METHODS:
    raise errors.BadRequest(f"unknown Fisher method {method!r}; use one of {METHODS}")
  _check_microbatch(microbatch_size)
  _validate.params_tree(params)
  _float_inputs(inputs, name)
  num_classes = _validate.model_outputs(apply_fn, params, inputs)
  if loss_fn is not cross_entropy:
    _check_loss_fn(loss_fn, num_classes)
  _validate.finite(**{"params": params, name: inputs})
  return num_classes


def _run_fisher(apply_fn, params, inputs, labels, weights, offsets, microbatch_size, *,
                loss_fn, method, mesh) -> tuple[PyTree, ...]:
  """:func:`weighted_squared_gradients` plus ``offsets[k]`` on sum ``k`` (``offsets`` None:
  nothing added), cached and jitted; refuses a model whose examples interact (a flag of
  the same program, read on the host)."""
  # A static argument: a Python int whatever integer kind passed the check (a 0-d jax array
  # cannot be hashed, np.int64(3) would compile a program of its own).
  size = None if microbatch_size is None else int(microbatch_size)
  program = functools.partial(_fisher_program, loss_fn=loss_fn, microbatch_size=size,
                              method=method, mesh=mesh)
  apply_fn = as_pytree(apply_fn)
  if not parallel.multiprocess(mesh):
    fishers, interact = program(apply_fn, params, inputs, labels, weights, offsets)
  else:
    # Several processes: every one holds the same inputs; they enter as global replicated
    # arrays (the microbatches are split over the mesh inside), and the Fishers come back
    # whole on each process's own device, as with one process.
    args = parallel.replicate(mesh, (apply_fn, params, inputs, labels, weights, offsets))
    fishers, interact = parallel.to_local(program(*args))
  if not isinstance(interact, jax.core.Tracer) and bool(interact):
    raise errors.BadRequest(
        "apply_fn's logits for one input change with the other inputs of the batch "
        "(BatchNorm in training mode?): the Fisher takes each example's gradient alone, "
        "which such a model normalises to a constant (Fisher 0 before it); pass an "
        "inference-mode apply_fn, e.g. mnemonic_jax.inference_apply_fn(model, "
        "variables['batch_stats'])")
  return fishers


@functools.partial(jax.jit, static_argnames=("loss_fn", "microbatch_size", "method", "mesh"))
def _fisher_program(apply_fn, params, inputs, labels, weights, offsets, *, loss_fn,
                    microbatch_size, method, mesh):
  """``(fishers, interact)``: the Fishers plus ``offsets`` (if not None), and whether the examples
  interact (:func:`_examples_interact`), checked in the same program."""
  sums = weighted_squared_gradients(apply_fn, params, inputs, labels, weights, microbatch_size,
                                    loss_fn=loss_fn, method=method, mesh=mesh)
  if offsets is not None:  # None adds nothing: a kernel a leaf fewer to compile.
    sums = tuple(jax.tree.map(lambda f, k=k: f + offsets[k], s) for k, s in enumerate(sums))
  return sums, _examples_interact(apply_fn, params, inputs)


def _examples_interact(apply_fn, params, inputs) -> jax.Array:
  """Whether the logits of ``inputs[0]`` beside ``inputs[1]`` differ from those beside
  itself by more than ``1e-3 * (1 + max |logit|)`` (traceable; False for one input).
  The batches ``[x0, x1]`` and ``[x0, x0]`` go through one vmapped forward (one set of
  kernels to compile): a training-mode BatchNorm normalises ``[x0, x0]`` to a constant,
  and the per-example gradients of the Fisher see batches of one."""
  if inputs.shape[0] < 2:
    return jnp.zeros((), bool)
  pairs = jnp.stack([inputs[:2], jnp.stack([inputs[0], inputs[0]])])
  # The model check's own jitted forward on a batch of two: the entry point's check
  # (_validate.model_outputs) traced it already, so the model is not traced again here.
  forward = lambda batch: _validate._apply(apply_fn, params, batch)[0]
  beside, alone = jax.vmap(forward)(pairs).astype(jnp.float32)
  return jnp.max(jnp.abs(beside - alone)) > 1e-3 * (1.0 + jnp.max(jnp.abs(beside)))


def weighted_squared_gradients(
    apply_fn: ApplyFn,
    params: PyTree,
    inputs: chex.Array,
    labels: chex.Array,
    weights: chex.Array,
    microbatch_size: int | None = None,
    *,
    loss_fn: LossFn = cross_entropy,
    method: str = "auto",
    mesh: Mesh | None = None,
) -> tuple[PyTree, ...]:
  """``K`` weighted sums of squared per-example gradients in one pass.

  Returns ``tuple(sum_n weights[k, n] * g_n ** 2 for k in range(K))``, each shaped like
  ``params``. The building block of :func:`fisher_diagonal` and :func:`class_fishers`.

  Args:
    apply_fn, params, inputs, labels, microbatch_size, loss_fn, method, mesh: as in
      :func:`fisher_diagonal`.
    weights: ``(K, N)`` non-negative weights.

  Returns:
    A tuple of ``K`` pytrees shaped like ``params``.
  """
  parallel.check_mesh(mesh)
  if method not in METHODS:
    raise errors.BadRequest(f"unknown Fisher method {method!r}; use one of {METHODS}")
  _float_inputs(inputs, "inputs")
  labels, weights = _array(labels, "labels"), _array(weights, "weights")
  for name, value, rank in (("labels", labels, 1), ("weights", weights, 2)):
    if np.ndim(value) != rank:
      raise errors.BadRequest(f"{name} must have rank {rank} ({'(N,)' if rank == 1 else '(K, N)'}"
                              f"), got shape {np.shape(value)}")
  n = labels.shape[0]
  if inputs.shape[0] != n or weights.shape[1] != n:
    raise errors.BadRequest(
        f"inputs ({inputs.shape[0]}), labels ({n}) and weights ({weights.shape[1]}) "
        "disagree on the number of examples")
  check_input_shape(apply_fn, params, inputs)
  size = _chunk_size(n, microbatch_size, mesh)
  # One trace of the model answers both: which method, and the factorized program itself.
  why: list = []  # Why the factorized path is refused, where the layers are covered.
  factorized = None if method == "vmap" else layer_taps.factorized_step(
      apply_fn, params, jax.ShapeDtypeStruct((size, *inputs.shape[1:]), jnp.result_type(inputs)),
      jax.ShapeDtypeStruct((size,), jnp.result_type(labels)),
      jax.ShapeDtypeStruct((weights.shape[0], size), jnp.result_type(weights)), loss_fn, why)
  if method == "auto":
    method = "vmap" if factorized is None else "factorized"
  elif method == "factorized" and factorized is None:
    if isinstance(params, dict) and "params" in params and len(params) > 1:
      raise errors.BadRequest(
          "method='factorized' got a Flax variables dict (a top-level 'params' key, beside "
          f"{sorted(k for k in params if k != 'params')}) as the parameters: pass "
          "variables['params'] and lambda p, x: model.apply({'params': p, ...}, x) (or "
          "mnemonic_jax.inference_apply_fn(model, batch_stats)) as apply_fn")
    raise errors.BadRequest(
        "method='factorized' needs every parameter in a flax.linen Dense, DenseGeneral, "
        "Conv, LayerNorm, RMSNorm, inference-mode BatchNorm or registered layer "
        "(layer_taps.register_layer), each called once, on an input whose leading axis is "
        "the examples (proven on the traced program)" + "".join(f"; here {w}" for w in why)
        + "; use method='vmap' for this model")
  if method == "factorized":
    step = lambda x, y, w: factorized(params, x, y, w)
  else:
    step = lambda x, y, w: _vmap_step(apply_fn, params, x, y, w, loss_fn)
  sums = _scan_microbatches(step, inputs, labels, weights, size, mesh)
  return tuple(jax.tree.map(lambda s, k=k: s[k], sums) for k in range(weights.shape[0]))


# ----------------------------------------------------------------------------------------
# Microbatching: peak memory is one microbatch's worth, whatever N.


def _chunk_size(n: int, microbatch_size: int | None, mesh: Mesh | None) -> int:
  """Examples per microbatch: ``microbatch_size`` (all ``n`` for None), at most ``n``,
  rounded up to split evenly over the mesh's devices."""
  _check_microbatch(microbatch_size)
  size = n if microbatch_size is None else int(microbatch_size)
  shards = parallel.num_shards(mesh)
  return -(-min(size, n) // shards) * shards


def _scan_microbatches(step, inputs, labels, weights, size, mesh):
  """``step`` summed over microbatches of ``size`` examples (from :func:`_chunk_size`)."""
  n = labels.shape[0]
  num_chunks = -(-n // size)
  pad = num_chunks * size - n
  if pad:  # Padded examples repeat example 0 with weight 0: they add nothing.
    inputs = jnp.concatenate([inputs, jnp.repeat(inputs[:1], pad, axis=0)])
    labels = jnp.concatenate([labels, jnp.repeat(labels[:1], pad)])
    weights = jnp.pad(weights, ((0, 0), (0, pad)))

  def chunk(i):
    sl = lambda a, axis=0: jax.lax.dynamic_slice_in_dim(a, i * size, size, axis)
    return (parallel.constrain_batch(sl(inputs), mesh),
            parallel.constrain_batch(sl(labels), mesh), sl(weights, 1))

  if num_chunks == 1:
    return step(*chunk(0))

  first = step(*chunk(0))

  def body(acc, i):
    return jax.tree.map(jnp.add, acc, step(*chunk(i))), None

  total, _ = jax.lax.scan(body, first, jnp.arange(1, num_chunks))
  return total


def _vmap_step(apply_fn, params, x, y, w, loss_fn):
  """Per-example gradients of one microbatch, squared and weighted-summed."""

  def example_loss(p, xi, yi):
    return loss_fn(apply_fn(p, xi[None]), yi[None])[0]

  grads = jax.vmap(jax.grad(example_loss), in_axes=(None, 0, 0))(params, x, y)
  return jax.tree.map(
      lambda g: jnp.tensordot(w, jnp.square(g.astype(jnp.float32)), axes=1), grads)
