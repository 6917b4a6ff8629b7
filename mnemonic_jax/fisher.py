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
  ``nn.Dense``, ``nn.Conv`` and inference-mode ``nn.BatchNorm`` layers (the paper's MLP
  and ResNet-18): each layer's per-example gradient follows from its input and the
  gradient w.r.t. its output, both taken from ONE batched backward pass (see
  :mod:`mnemonic_jax.layer_taps`). For a Dense layer ``y = x W + b`` the per-example
  kernel gradient is ``x_n delta_n^T``, so ``sum_n w_n (x_n delta_n^T) ** 2 =
  (w * x**2)^T (delta**2)``: one matrix product, no per-example gradient at all.

``"auto"`` (the default) takes ``"factorized"`` when it covers every parameter leaf and
``"vmap"`` otherwise.
"""

from typing import Any, Callable, Sequence

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh

from mnemonic_jax import layer_taps, parallel

PyTree = Any
ApplyFn = Callable[[PyTree, jax.Array], jax.Array]
LossFn = Callable[[jax.Array, jax.Array], jax.Array]
METHODS = ("auto", "vmap", "factorized")


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Per-example softmax cross-entropy, ``(N, C), (N,) -> (N,)``."""
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels)


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

  Implements ``f_i = (1/N) sum_n (dL(x_n; w)/dw_i)^2`` (paper, eq. 6's ingredients).

  Args:
    apply_fn: ``apply_fn(params, x) -> logits`` for a batch ``x``. Examples must not
      interact (BatchNorm in inference mode: close over its statistics).
    params: any pytree of float arrays.
    inputs: ``(N, *input_shape)``.
    labels: integer labels ``(N,)``.
    microbatch_size: examples per vectorised chunk; ``None`` takes all ``N`` at once.
      Peak memory grows with this, not with ``N``.
    loss_fn: per-example loss ``(logits, labels) -> (N,)``; cross-entropy by default.
    method: ``"auto"``, ``"vmap"`` or ``"factorized"`` (see the module docstring).
    mesh: optional mesh; each microbatch is split over its ``data`` axis.

  Returns:
    A pytree shaped like ``params``.

  Example:
    >>> fisher = fisher_diagonal(apply_fn, params, x, y, microbatch_size=64)
  """
  chex.assert_rank(labels, 1)
  n = labels.shape[0]
  if n == 0:
    raise ValueError("fisher_diagonal needs at least one input")
  weights = jnp.full((1, n), 1.0 / n, jnp.float32)
  (fisher,) = weighted_squared_gradients(
      apply_fn, params, inputs, labels, weights, microbatch_size,
      loss_fn=loss_fn, method=method, mesh=mesh)
  return fisher


def class_fishers(
    apply_fn: ApplyFn,
    params: PyTree,
    codes: chex.Array,
    forget: Sequence[int],
    *,
    microbatch_size: int | None = None,
    loss_fn: LossFn = cross_entropy,
    method: str = "auto",
    mesh: Mesh | None = None,
) -> tuple[PyTree, PyTree]:
  """Fisher diagonals on the forgotten and on the remaining classes' codes.

  Code ``c`` is labelled ``c``; its squared gradient is ``g_c ** 2``. Both means come out of
  one pass over the codes (Algorithm 2, steps 1-2).

  Args:
    apply_fn: ``apply_fn(params, x) -> logits``.
    params: parameters to score.
    codes: ``(C, *input_shape)`` mnemonic codes.
    forget: classes to forget (validated by :func:`validate_classes`).
    microbatch_size, loss_fn, method, mesh: as in :func:`fisher_diagonal`.

  Returns:
    ``(f_forget, f_remain)``: means of ``g_c ** 2`` over ``c`` in ``forget`` and over the
    other classes, each shaped like ``params``.
  """
  in_forget = class_mask(validate_classes(forget, codes.shape[0]), codes.shape[0])
  return masked_class_fishers(
      apply_fn, params, codes, in_forget, microbatch_size=microbatch_size,
      loss_fn=loss_fn, method=method, mesh=mesh)


def masked_class_fishers(
    apply_fn: ApplyFn,
    params: PyTree,
    codes: chex.Array,
    in_forget: chex.Array,
    *,
    microbatch_size: int | None = None,
    loss_fn: LossFn = cross_entropy,
    method: str = "auto",
    mesh: Mesh | None = None,
) -> tuple[PyTree, PyTree]:
  """:func:`class_fishers` with the forgotten classes as a boolean mask ``(C,)``.

  Jittable with the mask traced, so one compilation serves every choice of classes.
  """
  weights = jnp.stack([in_forget / jnp.sum(in_forget), ~in_forget / jnp.sum(~in_forget)])
  f_forget, f_remain = weighted_squared_gradients(
      apply_fn, params, codes, jnp.arange(codes.shape[0]), weights.astype(jnp.float32),
      microbatch_size, loss_fn=loss_fn, method=method, mesh=mesh)
  return f_forget, f_remain


def class_mask(classes: Sequence[int], num_classes: int) -> jax.Array:
  """Boolean mask ``(num_classes,)``, True at ``classes``."""
  return jnp.zeros(num_classes, bool).at[jnp.asarray(classes, jnp.int32)].set(True)


def validate_classes(classes: Sequence[int], num_classes: int) -> tuple[int, ...]:
  """Checks a set of classes to forget; returns it as a sorted tuple of ints.

  Raises:
    TypeError: ``classes`` is a string, or holds something other than integers (Python or
      NumPy ints, or integer 0-d arrays; ``3.7``, ``True`` and ``"3"`` are refused, not
      coerced).
    ValueError: if it is empty, has duplicates, leaves the range ``[0, num_classes)``, or
      names every class (then nothing would remain to compare against).
  """
  if isinstance(classes, (str, bytes)):
    raise TypeError(f"classes must be a sequence of integer class ids, not the string "
                    f"{classes!r}; write e.g. [1, 2]")
  classes = list(classes)
  wrong = [c for c in classes if isinstance(c, (bool, np.bool_)) or not (
      isinstance(c, (int, np.integer))
      or (hasattr(c, "dtype") and np.ndim(c) == 0 and np.issubdtype(c.dtype, np.integer)))]
  if wrong:
    raise TypeError(f"class ids must be integers; got {wrong[:3]!r}")
  classes = [int(c) for c in classes]
  if not classes:
    raise ValueError("no class to forget: give at least one class id")
  if len(set(classes)) != len(classes):
    raise ValueError(f"duplicated class ids in {classes}")
  bad = [c for c in classes if not 0 <= c < num_classes]
  if bad:
    raise ValueError(f"class ids {bad} are out of range: the model has classes 0..{num_classes - 1}")
  if len(classes) == num_classes:
    raise ValueError(f"cannot forget every class ({num_classes}): at least one must remain")
  return tuple(sorted(classes))


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
  if method not in METHODS:
    raise ValueError(f"unknown Fisher method {method!r}; use one of {METHODS}")
  chex.assert_rank([labels, weights], [1, 2])
  n = labels.shape[0]
  if inputs.shape[0] != n or weights.shape[1] != n:
    raise ValueError(
        f"inputs ({inputs.shape[0]}), labels ({n}) and weights ({weights.shape[1]}) "
        "disagree on the number of examples")
  check_input_shape(apply_fn, params, inputs)
  if method == "auto":
    method = "factorized" if layer_taps.covers(apply_fn, params, inputs) else "vmap"
  elif method == "factorized" and not layer_taps.covers(apply_fn, params, inputs):
    raise ValueError(
        "method='factorized' needs every parameter in a flax.linen Dense, Conv or "
        "inference-mode BatchNorm layer, each called once; use method='vmap' for this model")
  step = layer_taps.weighted_squared_gradients if method == "factorized" else _vmap_step
  sums = _scan_microbatches(
      lambda x, y, w: step(apply_fn, params, x, y, w, loss_fn),
      inputs, labels, weights, microbatch_size, mesh)
  return tuple(jax.tree.map(lambda s, k=k: s[k], sums) for k in range(weights.shape[0]))


def check_input_shape(apply_fn: ApplyFn, params: PyTree, inputs: chex.Array) -> None:
  """Raises a ``ValueError`` naming the shape if the model cannot take ``inputs``."""
  try:
    jax.eval_shape(apply_fn, params, jax.ShapeDtypeStruct((1, *inputs.shape[1:]), inputs.dtype))
  except Exception as e:  # Any model-side shape failure becomes one clear message.
    raise ValueError(
        f"inputs of shape {tuple(inputs.shape[1:])} do not fit the model: "
        f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from e


# ----------------------------------------------------------------------------------------
# Microbatching: peak memory is one microbatch's worth, whatever N.


def _scan_microbatches(step, inputs, labels, weights, microbatch_size, mesh):
  n = labels.shape[0]
  size = n if microbatch_size is None else int(microbatch_size)
  if size < 1:
    raise ValueError(f"microbatch_size must be positive, got {microbatch_size}")
  shards = parallel.num_shards(mesh)
  size = -(-min(size, n) // shards) * shards  # Round up to split evenly over devices.
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
