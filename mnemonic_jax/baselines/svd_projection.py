"""``svd-projection``: project the forget class's discriminative input subspace out of every layer.

SOURCE: Kodge, Saha, Roy, "Deep Unlearning: Fast and Efficient Gradient-free Class
Forgetting", TMLR 2024 (arXiv 2312.00761); repository
https://github.com/sangamesh-kodge/class_forgetting, files ``main.py`` (``our_unlearn``,
``get_projection_matrix`` and the argument defaults), ``models/model_utils.py``
(``forward_cache_projections``, ``reshape_conv_input_activation``), ``models/vgg.py``
(``project_weights``) and ``scripts/our_cifar10.sh``.

The method (gradient-free, one shot). With the trained model in inference mode:

1. Take a few training examples: ``samples // (C - 1)`` of each retained class and
   ``samples`` of the forgotten one (one batch of the shuffled forget loader).
2. For every linear and convolutional layer ``l``, collect its input activations on each
   set: rows of ``R_l`` (retain) and ``F_l`` (forget), one row per example for a dense
   layer, one row per image patch (im2col) for a convolution, at most ``max_patches`` rows.
3. From the SVD ``A = U S V^T`` of each activation matrix (computed here from the smaller
   Gram matrix's eigendecomposition: :func:`scaled_projection`), the *scaled* projection onto its
   row space, ``M = V diag(alpha r_i / ((alpha - 1) r_i + 1)) V^T`` with ``r_i = s_i^2 /
   sum_j s_j^2`` (each direction weighted by its share of the energy: ``alpha`` large keeps
   even weak directions); ``M_r`` with ``alpha_r``, ``M_f`` with ``alpha_f``.
4. The forget class's discriminative space is ``M_f - M_f M_r`` (its directions minus what
   it shares with the retained classes); each layer's weight is projected off it:
   ``W <- W (I - (M_f - M_f M_r))^T`` (PyTorch ``(out, in)`` layout), i.e. for a Flax
   kernel ``(in, out)``: ``K <- (I - (M_f - M_f M_r)) K``. Biases and normalisation layers
   are not touched.

Published defaults (``scripts/our_cifar10.sh``, the argument parser): ``samples`` 900,
``alpha_r`` 100, ``alpha_f`` 3, ``max_patches`` 10000 (CIFAR-100: 990 samples, ``alpha_r``
1000, ``alpha_f`` 30; ImageNet: 999, 100, 10; the authors tune both alphas on a grid
``{10..1000} x {1..100}``, ``scripts/analysis/our_hyper_parameter_tuning.sh``). **Defaults here:
CIFAR-10's.**

Departures: the examples of each class are drawn at random with the key (the repository
takes the first ones of each class in dataset order); with several forgotten classes, each
retained class gives ``samples // (C - k)`` examples and the forget sample is drawn from all
of them; convolution patches are ``max_patches`` positions drawn uniformly from all images
and positions (the repository first crops a random ``3k x 3k`` window); a dense layer whose
input has token axes gets one row per token, subsampled likewise. The repository treats
``Linear`` and ``Conv2d`` layers; here every Flax ``Dense``, ``DenseGeneral`` and ``Conv``
is projected, a ``DenseGeneral`` (the attention's query/key/value ``(in, heads, head_dim)``
and output ``(heads, head_dim, out)`` kernels) on the flattened product of the axes it
contracts, its other output axes flattened alike. Layers must be called once each
(:func:`mnemonic_jax.layer_taps.tapped_apply`).

Sweep (:data:`SWEEP`, for :func:`~mnemonic_jax.baselines.base.sweep`, which keeps the last
rung whose accuracy on retained training examples stays within a point of the model's): the
published defaults, then ``alpha_r`` 1000, 700, 500 and 300 (``alpha_f`` 3), then the
defaults with ``alpha_f`` 10. On the digits MLP the defaults fail the other way from most
baselines: they cost retained accuracy (A_R 3.9 points under the oracle over the committed
runs), so the ladder climbs from gentler than the defaults to them. ``alpha_r`` is the knob
that matters here: a larger retain scaling keeps more of the retained classes' weak
directions in ``M_r``, so less of what they share with the forget class is projected out
(gentler on both sides); ``alpha_f`` barely moves anything (on seed 0, classes 0, 3, 6 and 8,
``alpha_f`` 10 and 30 at ``alpha_r`` 300 changed E_F by at most 3 points), and more
``samples`` (all retained training images) moved E_F by under 3 points. There, ``alpha_r``
1000 cost at most 0.7 points of retained training accuracy (E_F 3 to 46), 300 cost 0.7 to 2.7
(E_F 36 to 89), the defaults 2.3 to 8.2 (E_F 97 to 100); on {0,1,2} the defaults cost 0.4
(E_F 51) and ``alpha_f`` 10 0.6 (E_F 74), hence the last rung. Sources: the authors tune
both alphas on the grid ``alpha_r`` in {10, 30, 100, 300, 1000} x ``alpha_f`` in {1, 3, 10,
30, 100} (``scripts/analysis/our_hyper_parameter_tuning.sh``); 700 and 500 are this
project's, between two grid points, where the one-point line falls on these models.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from mnemonic_jax import errors
from mnemonic_jax import layer_taps
from mnemonic_jax.baselines.base import Outcome, UnlearnData, register
from mnemonic_jax.baselines.options import Checked, PositiveFloat, PositiveInt
from mnemonic_jax.bundle import Bundle, normalize

PyTree = Any
ApplyFn = Callable[[PyTree, jax.Array], jax.Array]

REFERENCE = ("Kodge, Saha, Roy, Deep Unlearning: Fast and Efficient Gradient-free Class "
             "Forgetting, TMLR 2024; github.com/sangamesh-kodge/class_forgetting (900 samples, "
             "alpha_r 100, alpha_f 3, max 10000 patches)")


#: The ladder of :func:`~mnemonic_jax.baselines.base.sweep` (see the module docstring).
SWEEP = ({}, {"alpha_r": 1000.0}, {"alpha_r": 700.0}, {"alpha_r": 500.0}, {"alpha_r": 300.0},
         {"alpha_f": 10.0})


@dataclasses.dataclass(frozen=True)
class SVDProjectionConfig(Checked):
  """Hyper-parameters of the projection (defaults: the repository's CIFAR-10 script).

  Attributes:
    samples: retain examples in all (split evenly over the retained classes), and forget
      examples (900).
    alpha_r: scaling of the retain space's energy (100).
    alpha_f: scaling of the forget space's energy (3).
    max_patches: most activation rows per layer and set (10000).
  """

  samples: PositiveInt = 900
  alpha_r: PositiveFloat = 100.0
  alpha_f: PositiveFloat = 3.0
  max_patches: PositiveInt = 10000


# ----------------------------------------------------------------------------------------
# The algebra (pure, jittable).


def scaled_projection(activations: jax.Array, alpha) -> jax.Array:
  """``V diag(alpha r / ((alpha - 1) r + 1)) V^T`` from the SVD of ``activations`` (rows).

  ``r_i = s_i^2 / sum_j s_j^2``. Computed from the eigendecomposition of the smaller Gram
  matrix, not an SVD (the same matrix; XLA's CPU SVD of a 900 x 1000 matrix takes about ten
  times as long as the eigendecomposition of its 900 x 900 Gram): with ``A^T A = V diag(s^2)
  V^T`` directly; with ``A A^T = U diag(s^2) U^T`` (fewer rows than features) as ``W
  diag(alpha / (((alpha - 1) r + 1) sum_j s_j^2)) W^T``, ``W = A^T U`` (column ``i`` is
  ``s_i v_i``), which stays finite where ``s_i`` is 0.

  Args:
    activations: ``(rows, features)``, one row per example or patch.
    alpha: energy scaling ``> 0`` (1 weights each direction by its energy share ``r``;
      large values approach the plain projection onto the row space).

  Returns:
    ``(features, features)`` float32, symmetric, eigenvalues in ``[0, 1]``.
  """
  a = activations.astype(jnp.float32)
  dot = functools.partial(jnp.matmul, precision=jax.lax.Precision.HIGHEST)
  rows, features = a.shape
  energy, vectors = jnp.linalg.eigh(dot(a.T, a) if rows >= features else dot(a, a.T))
  energy = jnp.maximum(energy, 0.0)
  total = jnp.maximum(jnp.sum(energy), jnp.finfo(jnp.float32).tiny)
  ratio = energy / total
  if rows >= features:
    return dot(vectors * (alpha * ratio / ((alpha - 1) * ratio + 1)), vectors.T)
  w = dot(a.T, vectors)
  return dot(w * (alpha / (((alpha - 1) * ratio + 1) * total)), w.T)


def projection_update(m_retain: jax.Array, m_forget: jax.Array) -> jax.Array:
  """``I - (M_f - M_f M_r)``: the map each layer's input side is multiplied by."""
  eye = jnp.eye(m_forget.shape[0], dtype=m_forget.dtype)
  return eye - (m_forget - m_forget @ m_retain)


def project_kernel(kernel: jax.Array, update: jax.Array) -> jax.Array:
  """``update @ kernel`` over the kernel's leading input axes, in the kernel's own dtype.

  Flax kernels put the axes a layer contracts first and its output axes last: a Dense
  kernel ``(in, out)``, a Conv kernel ``(*window, in, out)`` (input axes flattening in the
  order of the im2col rows ``(*window, in)``), a DenseGeneral kernel ``(*contracted,
  *features)`` (the attention's ``(dim, heads, head_dim)`` and ``(heads, head_dim, dim)``).
  The leading axes whose sizes multiply to ``update``'s side are the input.

  Args:
    kernel: the layer's kernel, any float dtype.
    update: ``(in, in)``, ``in`` the product of the kernel's leading input axes.

  Returns:
    The projected kernel, ``kernel``'s shape and dtype.

  Raises:
    ValueError: no leading axes of ``kernel`` multiply to ``update``'s side.
  """
  size, split = 1, 0
  while size < update.shape[0] and split < kernel.ndim:
    size, split = size * kernel.shape[split], split + 1
  if size != update.shape[0] or split == kernel.ndim:
    raise errors.BadRequest(f"svd-projection: a kernel of shape {kernel.shape} has no input "
                            f"axes of {update.shape[0]} features")
  flat = kernel.reshape(size, -1).astype(jnp.float32)
  return (update @ flat).reshape(kernel.shape).astype(kernel.dtype)


def _rows(x: jax.Array, axes: tuple[int, ...], key: jax.Array, max_rows: int) -> jax.Array:
  """``x``'s contracted ``axes`` moved last and flattened into the features of one row per
  position of the other axes ``(-1, features)``; at most ``max_rows`` drawn without repeats."""
  kept = x.ndim - len(axes)
  x = jnp.moveaxis(x, axes, tuple(range(kept, x.ndim)))
  rows = x.reshape(-1, int(np.prod(x.shape[kept:])))
  if rows.shape[0] <= max_rows:
    return rows
  return rows[jax.random.choice(key, rows.shape[0], (max_rows,), replace=False)]


def _patch_rows(x: jax.Array, window, strides, padding, key: jax.Array, max_rows: int
                ) -> jax.Array:
  """Up to ``max_rows`` im2col rows ``(*window, C)`` of a convolution's input, drawn uniformly.

  Only the drawn patches are built (one ``dynamic_slice`` each), never the whole im2col matrix.
  """
  ndim = len(window)
  if isinstance(padding, str):
    padding = jax.lax.padtype_to_pads(x.shape[1:-1], window, strides, padding)
  x = jnp.pad(x.astype(jnp.float32), ((0, 0), *padding, (0, 0)))
  out = [(x.shape[1 + d] - window[d]) // strides[d] + 1 for d in range(ndim)]
  total = x.shape[0] * int(np.prod(out))
  count = min(max_rows, total)
  flat = (jnp.arange(total) if count == total
          else jax.random.choice(key, total, (count,), replace=False))
  coords = jnp.unravel_index(flat, (x.shape[0], *out))

  def patch(n, *position):
    start = (n, *(p * s for p, s in zip(position, strides)), 0)
    return jax.lax.dynamic_slice(x, start, (1, *window, x.shape[-1])).reshape(-1)

  return jax.vmap(patch)(*coords)


def layer_activations(apply_fn: ApplyFn, params: PyTree, x: jax.Array, key: jax.Array,
                      max_rows: int) -> dict[tuple, jax.Array]:
  """The input rows of every dense and convolutional layer on ``x`` (traceable).

  Returns:
    ``{layer path: (rows, features)}``: a dense layer's (Dense, DenseGeneral) input with
    the axes it contracts flattened into the features, a convolution's im2col patches.

  Raises:
    ValueError: a layer is called more than once, or in a form the taps cannot record.
  """
  try:
    _, taps = layer_taps.tapped_apply(apply_fn, params, x, None)
  except layer_taps.Unsupported as e:
    raise errors.BadRequest(f"svd-projection cannot read this model's layer inputs: {e}") from e
  rows = {}
  for i, (path, tap) in enumerate(sorted(taps.items())):
    k = jax.random.fold_in(key, i)
    if tap.kind == "dense":
      rows[path] = _rows(tap.x.astype(jnp.float32), tap.aux[0], k, max_rows)
    elif tap.kind == "conv":
      rows[path] = _patch_rows(tap.x, *tap.aux, k, max_rows)
  return rows


def _kernel(params: PyTree, path: tuple) -> jax.Array | None:
  node = params
  for name in path:
    if not isinstance(node, dict) or name not in node:
      return None
    node = node[name]
  return node.get("kernel") if isinstance(node, dict) else None


def project_out(apply_fn: ApplyFn, params: PyTree, x_retain: jax.Array, x_forget: jax.Array,
                key: jax.Array, alpha_r, alpha_f, max_rows: int) -> PyTree:
  """Every dense/conv kernel projected off the forget-discriminative subspace (traceable).

  Args:
    apply_fn: ``apply_fn(params, x) -> logits`` in inference mode.
    params: nested dicts (Flax ``params``).
    x_retain, x_forget: model inputs of the retain and the forget sample.
    key: typed key for the row subsampling.
    alpha_r, alpha_f: the energy scalings.
    max_rows: most activation rows per layer and set.

  Returns:
    New parameters; only the kernels of the recorded layers differ.
  """
  key_r, key_f = jax.random.split(key)
  acts_r = layer_activations(apply_fn, params, x_retain, key_r, max_rows)
  acts_f = layer_activations(apply_fn, params, x_forget, key_f, max_rows)
  new = jax.tree.map(lambda p: p, params)
  for path in acts_r:
    kernel = _kernel(params, path)
    if kernel is None:
      continue
    update = projection_update(scaled_projection(acts_r[path], alpha_r),
                               scaled_projection(acts_f[path], alpha_f))
    node = new
    for name in path:
      node = node[name]
    node["kernel"] = project_kernel(kernel, update)
  return new


@functools.partial(jax.jit, static_argnums=(1, 2, 3))
def _svd_program(apply_fn, mean, std, max_patches, params, images_r, images_f, key, alpha_r,
                 alpha_f):
  """Every kernel projected (one module-level program, see :func:`project_out`)."""
  x_retain, x_forget = normalize(images_r, mean, std), normalize(images_f, mean, std)
  return project_out(apply_fn, params, x_retain, x_forget, key, alpha_r, alpha_f, max_patches)


def _mutable(tree: PyTree) -> PyTree:
  """Plain nested dicts (Flax may hand out FrozenDicts) with the same leaves."""
  if hasattr(tree, "items"):
    return {k: _mutable(v) for k, v in tree.items()}
  return tree


@register("svd-projection", SVDProjectionConfig, data="all", reference=REFERENCE,
          sweep=SWEEP)
def svd_projection(bundle: Bundle, classes: tuple[int, ...], data: UnlearnData,
                   config: SVDProjectionConfig, key: jax.Array) -> Outcome:
  """Projects the forget class's discriminative activation space out of every layer.

  Args:
    bundle: the trained bundle (not modified).
    classes: the forgotten classes.
    data: ``data.retain`` and ``data.forget``; only the sample of step 1 is read.
    config: an :class:`SVDProjectionConfig`.
    key: typed key, split into the sampling key and the patch key.

  Returns:
    An :class:`~mnemonic_jax.baselines.base.Outcome`; ``examples`` counts the sampled rows.

  Raises:
    BadRequest: ``samples`` too small to give each retained class one example, or a
      model whose layers cannot be read.
  """
  retained = [c for c in range(bundle.num_classes) if c not in classes]
  per_class = int(config.samples) // len(retained)
  if per_class < 1:
    raise errors.BadRequest(
        f"svd-projection needs samples >= {len(retained)} (one per retained class), got "
        f"samples={config.samples}")
  retain, forget = data.retain, data.forget
  sample_key, patch_key = jax.random.split(key)
  labels = np.asarray(retain.labels)
  order = np.asarray(jax.random.permutation(jax.random.fold_in(sample_key, 0), len(retain)))
  chosen = np.concatenate([order[labels[order] == c][:per_class] for c in retained])
  n_f = min(int(config.samples), len(forget))
  chosen_f = np.asarray(jax.random.permutation(jax.random.fold_in(sample_key, 1),
                                               len(forget)))[:n_f]
  x_r, x_f = retain.images[np.sort(chosen)], forget.images[np.sort(chosen_f)]
  apply_fn = bundle.apply_fn()
  mean, std = tuple(map(float, bundle.mean)), tuple(map(float, bundle.std))
  params = _mutable(bundle.params)
  # The layers' paths, from shapes alone (traced, never compiled).
  layers = sorted(jax.eval_shape(
      functools.partial(layer_activations, apply_fn, max_rows=1), params,
      jax.ShapeDtypeStruct((1, *x_f.shape[1:]), jnp.float32), patch_key))
  new_params = _svd_program(apply_fn, mean, std, int(config.max_patches), params,
                            jnp.asarray(x_r), jnp.asarray(x_f), patch_key,
                            jnp.float32(config.alpha_r), jnp.float32(config.alpha_f))
  counts = np.bincount(labels[chosen], minlength=bundle.num_classes)
  return Outcome(new_params, jax.tree.map(jnp.array, bundle.batch_stats),
                 examples={"retain": int(len(chosen)), "forget": int(n_f)},
                 details={"samples": config.samples, "alpha_r": config.alpha_r,
                          "alpha_f": config.alpha_f, "max_patches": config.max_patches,
                          "per_class": {int(c): int(counts[c]) for c in retained},
                          "layers": ["/".join(p) for p in layers]})
