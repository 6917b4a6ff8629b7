"""Exact per-example squared gradients from layer inputs and output gradients.

For the layers below, the gradient of one example's loss with respect to the layer's
parameters is a function of the layer's input ``x_n`` and of ``delta_n``, the gradient of
that example's loss with respect to the layer's output. Both come out of ONE batched
backward pass: Flax's ``intercept_methods`` records each layer's input and adds a zero
"offset" to its output, whose gradient is ``delta``. No ``vmap`` over examples, no
per-example backward pass.

* ``nn.Dense`` on ``(N, features)``: ``sum_n w_n (x_n delta_n^T)^2 = (w x^2)^T delta^2``,
  one matrix product; on ``(N, ..., features)`` the per-example outer products are summed
  over the middle axes first.
* ``nn.Conv`` (no groups or dilation): per-example kernel gradients are
  ``patches_n^T delta_n`` (a batched matrix product over im2col patches).
* ``nn.BatchNorm`` in inference mode: ``d scale = sum delta * x_hat``, ``d bias = sum delta``,
  with ``x_hat`` from the running statistics.

:func:`covers` says whether every parameter leaf sits in such a layer; the Fisher then
takes this path (``method="factorized"``), else the generic ``vmap`` one.
"""

import itertools
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

PyTree = Any


class Tap(NamedTuple):
  """One layer call: its kind, input, and what its gradient formula needs."""

  kind: str  # "dense", "conv" or "batchnorm".
  x: jax.Array
  aux: tuple  # conv: (window, strides, padding); batchnorm: (mean, var, epsilon).


class Unsupported(Exception):
  """A layer this path cannot handle exactly (the caller falls back to vmap)."""


def _conv_padding(padding, ndim):
  if isinstance(padding, str):
    if padding.upper() in ("SAME", "VALID"):
      return padding.upper()
    raise Unsupported(f"padding {padding!r}")
  if isinstance(padding, int):
    return [(padding, padding)] * ndim
  return [(p, p) if isinstance(p, int) else tuple(p) for p in padding]


def _tuple(value, ndim):
  if value is None:
    return (1,) * ndim
  return (value,) * ndim if isinstance(value, int) else tuple(value)


def _tap_of(module: nn.Module, args, kwargs) -> Tap | None:
  """The Tap of a supported layer call; None for any other module."""
  x = args[0]
  if type(module) is nn.Dense:
    return Tap("dense", x, ())
  if type(module) is nn.Conv:
    window = tuple(module.kernel_size)
    ndim = len(window)
    if (module.feature_group_count != 1 or set(_tuple(module.kernel_dilation, ndim)) != {1}
        or set(_tuple(module.input_dilation, ndim)) != {1} or x.ndim != ndim + 2):
      raise Unsupported("grouped, dilated or unbatched convolution")
    return Tap("conv", x, (window, _tuple(module.strides, ndim),
                           _conv_padding(module.padding, ndim)))
  if type(module) is nn.BatchNorm:
    running = nn.merge_param(
        "use_running_average", module.use_running_average, kwargs.get("use_running_average"))
    if not running or module.axis != -1 or module.axis_name is not None:
      raise Unsupported("BatchNorm in training mode")
    return Tap("batchnorm", x, (module.get_variable("batch_stats", "mean"),
                                module.get_variable("batch_stats", "var"), module.epsilon))
  if isinstance(module, (nn.Dense, nn.Conv, nn.BatchNorm)):  # Subclasses may differ.
    raise Unsupported(type(module).__name__)
  return None  # Other modules: their own parameters, if any, are left uncovered.


def tapped_apply(apply_fn, params, x, offsets):
  """Runs ``apply_fn`` recording a :class:`Tap` per layer call; adds ``offsets[path]`` to outputs."""
  taps = {}

  def interceptor(next_fun, args, kwargs, context):
    if context.method_name != "__call__":
      return next_fun(*args, **kwargs)
    tap = _tap_of(context.module, args, kwargs)
    y = next_fun(*args, **kwargs)
    if tap is None:
      return y
    path = tuple(context.module.scope.path)
    if path in taps:  # A layer called twice has no single (input, output) pair.
      raise Unsupported(f"layer {path} is called more than once")
    taps[path] = tap
    return y if offsets is None else y + offsets[path]

  with nn.intercept_methods(interceptor):
    logits = apply_fn(params, x)
  return logits, taps


_PARAM_NAMES = {"dense": {"kernel", "bias"}, "conv": {"kernel", "bias"},
                "batchnorm": {"scale", "bias"}}


def covers(apply_fn, params: PyTree, inputs: jax.Array) -> bool:
  """Whether every parameter leaf of ``params`` is in a layer this path handles."""
  kinds = {}

  def trace(p, x):
    logits, taps = tapped_apply(apply_fn, p, x, None)
    kinds.update({path: tap.kind for path, tap in taps.items()})
    return logits

  try:
    jax.eval_shape(trace, params, jax.ShapeDtypeStruct((2, *inputs.shape[1:]), inputs.dtype))
  except Unsupported:
    return False
  keypaths = [kp for kp, _ in jax.tree_util.tree_flatten_with_path(params)[0]]
  if not all(isinstance(k, jax.tree_util.DictKey) for kp in keypaths for k in kp):
    return False
  covered = set()
  for path, kind in kinds.items():
    node = _get(params, path)
    if not isinstance(node, dict) or not set(node) <= _PARAM_NAMES[kind]:
      return False
    covered.update(path + (name,) for name in node)
  return {_keys(kp) for kp in keypaths} == covered


def weighted_squared_gradients(apply_fn, params, x, y, w, loss_fn) -> PyTree:
  """``sum_n w[k, n] * g_n ** 2`` for every k, with leaves of shape ``(K, *param.shape)``."""
  out_shapes = jax.eval_shape(lambda: _output_shapes(apply_fn, params, x))
  zeros = {p: jnp.zeros(s.shape, jnp.float32) for p, s in out_shapes.items()}

  def total_loss(offsets):
    logits, taps = tapped_apply(apply_fn, params, x, offsets)
    return jnp.sum(loss_fn(logits, y)), taps

  deltas, taps = jax.grad(total_loss, has_aux=True)(zeros)
  out = {}
  for path, tap in taps.items():
    names = _get(params, path)
    sums = _LAYER_FORMULAS[tap.kind](tap, deltas[path], w)
    out.update({path + (name,): sums[name] for name in names})
  keypaths, treedef = jax.tree_util.tree_flatten_with_path(params)
  return jax.tree.unflatten(treedef, [out[_keys(kp)] for kp, _ in keypaths])


def _output_shapes(apply_fn, params, x):
  shapes = {}

  def interceptor(next_fun, args, kwargs, context):
    y = next_fun(*args, **kwargs)
    if context.method_name == "__call__" and _tap_of(context.module, args, kwargs) is not None:
      shapes[tuple(context.module.scope.path)] = y
    return y

  with nn.intercept_methods(interceptor):
    apply_fn(params, x)
  return shapes


def _weighted(w, per_example):
  """``einsum('kn,n...->k...', w, per_example ** 2)``."""
  return jnp.tensordot(w, jnp.square(per_example), axes=1)


def _dense(tap, delta, w):
  x = tap.x.astype(jnp.float32)
  if x.ndim == 2:  # Factorised: no per-example gradient is formed.
    kernel = jnp.einsum("kn,ni,nj->kij", w, jnp.square(x), jnp.square(delta))
    return {"kernel": kernel, "bias": w @ jnp.square(delta)}
  x = x.reshape(x.shape[0], -1, x.shape[-1])
  delta = delta.reshape(delta.shape[0], -1, delta.shape[-1])
  return {"kernel": _weighted(w, jnp.einsum("nti,ntj->nij", x, delta)),
          "bias": _weighted(w, jnp.sum(delta, axis=1))}


def _patches(x, window, strides, padding):
  """im2col by strided slices: ``(N, *out_spatial, prod(window) * C)``, ordered (window, C).

  Slicing moves memory only; ``lax.conv_general_dilated_patches`` would run a one-hot
  convolution costing ``prod(window) * C`` times more arithmetic than the layer itself.
  """
  ndim = len(window)
  if isinstance(padding, str):
    padding = jax.lax.padtype_to_pads(x.shape[1:-1], window, strides, padding)
  x = jnp.pad(x, ((0, 0), *padding, (0, 0)))
  out = [(x.shape[1 + d] - window[d]) // strides[d] + 1 for d in range(ndim)]
  slices = []
  for offset in itertools.product(*(range(k) for k in window)):
    start = (0, *offset, 0)
    limit = (x.shape[0], *(o + (n - 1) * s + 1 for o, n, s in zip(offset, out, strides)),
             x.shape[-1])
    slices.append(jax.lax.slice(x, start, limit, (1, *strides, 1)))
  return jnp.concatenate(slices, axis=-1)


def _conv(tap, delta, w):
  window, strides, padding = tap.aux
  n, cout = delta.shape[0], delta.shape[-1]
  patches = _patches(tap.x.astype(jnp.float32), window, strides, padding)
  patches = patches.reshape(n, -1, patches.shape[-1])  # (N, positions, prod(window) * Cin)
  per_example = jnp.einsum("npk,npo->nko", patches, delta.reshape(n, -1, cout))
  kernel = _weighted(w, per_example).reshape(w.shape[0], *window, tap.x.shape[-1], cout)
  bias = _weighted(w, jnp.sum(delta.reshape(n, -1, cout), axis=1))
  return {"kernel": kernel, "bias": bias}


def _batchnorm(tap, delta, w):
  mean, var, epsilon = tap.aux
  x_hat = (tap.x.astype(jnp.float32) - mean) * jax.lax.rsqrt(var + epsilon)
  axes = tuple(range(1, delta.ndim - 1))
  return {"scale": _weighted(w, jnp.sum(delta * x_hat, axis=axes)),
          "bias": _weighted(w, jnp.sum(delta, axis=axes))}


_LAYER_FORMULAS = {"dense": _dense, "conv": _conv, "batchnorm": _batchnorm}


def _keys(keypath):
  return tuple(k.key for k in keypath)


def _get(tree, path):
  for name in path:
    if not isinstance(tree, dict) or name not in tree:
      return None
    tree = tree[name]
  return tree
