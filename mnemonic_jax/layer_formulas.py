"""The per-layer formulas of :mod:`mnemonic_jax.layer_taps`: weighted sums of squared
per-example parameter gradients from a layer's input and output gradient.

Each formula is ``(tap, delta, w) -> {param name: (K, *param.shape)}``: ``tap`` a
:class:`mnemonic_jax.layer_taps.Tap` (its ``x`` the layer's input ``(N, ...)``, its ``aux``
what the kind needs), ``delta`` the gradient of the summed per-example losses w.r.t. the
layer's output, ``w`` the weights ``(K, N)``; the sums are ``sum_n w[k, n] * g_n ** 2``,
float32. Sources: see :mod:`mnemonic_jax.layer_taps`.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np


def _weighted(w, per_example):
  """``einsum('kn,n...->k...', w, per_example ** 2)``."""
  return jnp.tensordot(w, jnp.square(per_example.astype(jnp.float32)), axes=1)


def _dense(tap, delta, w):
  """Dense / DenseGeneral: ``kernel`` (contracted dims..., features...), ``bias`` (features...).

  The input's contracted axes are moved last and flattened (``i``), its other non-batch
  axes flattened into tokens (``t``); the output is (batch, tokens..., features...) in
  that order, so ``delta`` flattens to ``(N, t, j)`` alike.
  """
  (axis,) = tap.aux
  x = tap.x.astype(jnp.float32)
  n, ndim, k = x.shape[0], x.ndim, w.shape[0]
  kept = ndim - len(axis)  # Output axes before the features: batch and tokens.
  features = delta.shape[kept:]
  kernel_shape = (*(x.shape[a] for a in axis), *features)
  x = jnp.moveaxis(x, axis, tuple(range(kept, ndim)))
  x = x.reshape(n, -1, math.prod(x.shape[kept:]))
  delta = delta.reshape(n, x.shape[1], -1)
  if x.shape[1] == 1:  # Factorised: no per-example gradient is formed.
    x, delta = x[:, 0], delta[:, 0]
    kernel = jnp.einsum("kn,ni,nj->kij", w, jnp.square(x), jnp.square(delta))
    bias = w @ jnp.square(delta)
  else:
    kernel = _weighted(w, jnp.einsum("nti,ntj->nij", x, delta))
    bias = _weighted(w, jnp.sum(delta, axis=1))
  return {"kernel": kernel.reshape(k, *kernel_shape), "bias": bias.reshape(k, *features)}


def _patches(x, window, strides, padding):
  """im2col by one gather: ``(N, *out_spatial, prod(window) * C)``, ordered (window, C).

  A gather moves memory only; ``lax.conv_general_dilated_patches`` would run a one-hot
  convolution costing ``prod(window) * C`` times more arithmetic than the layer itself.
  (One strided slice per window offset, concatenated, gives the same bits and compiles
  about 3x slower on the CPU: ResNet-18's 20 convolutions, 3.7 against 1.3 CPU seconds.)
  """
  ndim = len(window)
  if isinstance(padding, str):
    padding = jax.lax.padtype_to_pads(x.shape[1:-1], window, strides, padding)
  x = jnp.pad(x, ((0, 0), *padding, (0, 0)))
  out = [(x.shape[1 + d] - window[d]) // strides[d] + 1 for d in range(ndim)]
  grid = np.ix_(*(np.arange(n) * s for n, s in zip(out, strides)), *map(np.arange, window))
  rows = tuple(grid[d] + grid[ndim + d] for d in range(ndim))  # (*out, *window) per axis.
  return x[(slice(None), *rows)].reshape(x.shape[0], *out, -1)


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


def _norm(tap, delta, w):
  """LayerNorm / RMSNorm: ``x_hat`` from each example's own statistics, as Flax computes them.

  Flax (``flax.linen.normalization._compute_stats``): float32 statistics over the
  reduction axes; the fast variance ``max(0, E[x^2] - E[x]^2)`` or ``E[(x - E[x])^2]``;
  RMSNorm takes no mean. ``scale`` and ``bias`` have the feature axes' shape.
  """
  reduction, features, epsilon, use_mean, fast_variance = tap.aux
  x = tap.x.astype(jnp.float32)
  if use_mean:
    mean = jnp.mean(x, reduction, keepdims=True)
    if fast_variance:
      var = jnp.maximum(0.0, jnp.mean(jnp.square(x), reduction, keepdims=True)
                        - jnp.square(mean))
    else:
      var = jnp.mean(jnp.square(x - mean), reduction, keepdims=True)
  else:
    mean, var = 0.0, jnp.mean(jnp.square(x), reduction, keepdims=True)
  x_hat = (x - mean) * jax.lax.rsqrt(var + epsilon)
  others = tuple(a for a in range(1, x.ndim) if a not in features)
  return {"scale": _weighted(w, jnp.sum(delta * x_hat, axis=others)),
          "bias": _weighted(w, jnp.sum(delta, axis=others))}


def _registered(tap, delta, w):
  formula, module = tap.aux
  return {name: _weighted(w, g) for name, g in formula(module, tap.x, delta).items()}


#: Each tap kind's formula (:class:`mnemonic_jax.layer_taps.Tap`'s ``kind``).
LAYER_FORMULAS = {"dense": _dense, "conv": _conv, "batchnorm": _batchnorm, "norm": _norm,
                  "registered": _registered}
