"""Fisher forgetting (SFDN): ``fisher``, Gaussian noise shaped by the retained data's Fisher.

SOURCE: Golatkar, Achille, Soatto, "Eternal Sunshine of the Spotless Net: Selective
Forgetting in Deep Networks", CVPR 2020 (arXiv 1911.04933), "Fisher Forgetting"; the
authors' code https://github.com/AdityaGolatkar/SelectiveForgetting, ``Forgetting.ipynb``
(section "Fisher": cells ``hessian``, ``get_mean_var`` and "Fisher Noise in Weights"), which
the SSD repository ports unchanged for class forgetting
(https://github.com/if-loops/selective-synaptic-dampening, ``forget_full_class_strategies.py``,
``FisherForgetting``). The numbers below are the notebook's.

What the published code does (and this module, in Flax's parameter layout):

1. Fisher of the retained data (``hessian``): model in inference mode, one example at a
   time, ``F = (1/N_r) sum_n sum_y p(y | x_n) (d/dw -log p(y | x_n))**2``: the TRUE
   Fisher diagonal, with labels drawn from the model's predicted distribution (every
   class weighted by its probability), NOT the empirical Fisher with the true labels.
   Default here too (``fisher_labels="model"``); ``"true"`` gives the empirical Fisher of
   :func:`mnemonic_jax.fisher.fisher_diagonal` (``num_classes`` times cheaper).
2. Per parameter tensor (``get_mean_var``):
   ``var = min(1 / (F + 1e-8), 1e3)``; for the classifier's tensors also ``min(., 1e2)``;
   ``var *= alpha`` (``alpha = 1e-6`` in the notebook's run, 3e-6 the function's default);
   tensors of rank > 1: ``var`` replaced by its mean over the input axis (PyTorch ``dim=1``
   of ``(out, in, ...)``; here axis ``-2`` of Flax's ``(..., in, out)`` kernels), so each
   output unit gets one variance;
   classifier rows of the forgotten class: mean ``0`` and ``var = 1e-4`` (the notebook
   does this when a whole class is forgotten, ``num_to_forget is None``: always so here);
   then ``var *= 10`` for the classifier's tensors, and for every other rank-1 tensor
   (BatchNorm scales and offsets, and biases: the code tests ``p.ndim == 1``).
3. New weights ``w = mu + sqrt(var) * N(0, 1)``, ``mu`` the trained weights (0 on the
   forgotten class's classifier rows).

So the largest variance is ``1e-3`` (``1e-2`` for rank-1 tensors), the classifier's
``1e-3`` (its clamp ``1e2`` times ``alpha`` times 10), and the forgotten class's classifier
rows get exactly ``1e-3``.

The classifier is found as the published code finds it: every tensor whose output axis has
``num_classes`` entries (PyTorch ``p.size(0) == num_classes``; here ``p.shape[-1]``). As
there, a hidden layer as wide as the number of classes would be taken for it; the leaves
so treated are listed in the report's details.

Departures: none in the formulas. The Fisher's per-example gradients come vectorised in
microbatches (:mod:`mnemonic_jax.fisher`) instead of one backward pass per example and
class; the noise is drawn from the given key (one subkey per leaf) instead of
``torch.manual_seed``; several forgotten classes zero all their classifier rows (the
notebook forgets one class). The input-axis mean takes axis ``-2``, which is the input axis
of ``nn.Dense`` and ``nn.Conv`` kernels; for ``nn.DenseGeneral`` kernels with several
output axes (e.g. attention's ``(embed, heads, head_dim)``) it averages over heads instead.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Literal, get_args

import jax
import jax.numpy as jnp

from mnemonic_jax import errors
from mnemonic_jax import fisher as fisher_lib
from mnemonic_jax.baselines.base import Outcome, UnlearnData, register
from mnemonic_jax.baselines.options import Checked, PositiveFloat, PositiveInt
from mnemonic_jax.bundle import Bundle, normalize

PyTree = Any
ApplyFn = Callable[[PyTree, jax.Array], jax.Array]

REFERENCE = ("Golatkar, Achille, Soatto, Eternal Sunshine of the Spotless Net: Selective "
             "Forgetting in Deep Networks, CVPR 2020; "
             "github.com/AdityaGolatkar/SelectiveForgetting (Forgetting.ipynb, Fisher)")

#: The labels the retain Fisher is taken over.
FisherLabels = Literal["model", "true"]
FISHER_LABELS = get_args(FisherLabels)


@dataclasses.dataclass(frozen=True)
class FisherForgettingConfig(Checked):
  """Fisher forgetting's published constants (``get_mean_var`` of ``Forgetting.ipynb``).

  Attributes:
    alpha: scale of the inverse Fisher (notebook run: 1e-6; the function's default 3e-6).
    eps: added to the Fisher before inverting (1e-8).
    max_variance: clamp of ``1 / (F + eps)`` before ``alpha`` (1e3).
    classifier_max_variance: the classifier's tighter clamp, before ``alpha`` (1e2).
    forget_variance: variance of the forgotten class's classifier rows, before the
      classifier's factor (1e-4, so 1e-3 in the end).
    classifier_factor: factor on the classifier's variances (10).
    vector_factor: factor on the other rank-1 tensors' variances (BatchNorm, biases; 10).
    fisher_labels: ``"model"`` (published: expectation over the model's predicted
      classes) or ``"true"`` (empirical Fisher with the true labels).
    microbatch_size: examples per vectorised chunk of the Fisher (memory, not the result).
  """

  alpha: PositiveFloat = 1e-6
  eps: PositiveFloat = 1e-8
  max_variance: PositiveFloat = 1e3
  classifier_max_variance: PositiveFloat = 1e2
  forget_variance: PositiveFloat = 1e-4
  classifier_factor: PositiveFloat = 10.0
  vector_factor: PositiveFloat = 10.0
  fisher_labels: FisherLabels = "model"
  microbatch_size: PositiveInt = 256


def is_classifier(leaf: jax.Array | jax.ShapeDtypeStruct, num_classes: int) -> bool:
  """The published test for the classifier's tensors: the output axis has ``num_classes``."""
  return leaf.ndim >= 1 and leaf.shape[-1] == num_classes


def retain_fisher(apply_fn: ApplyFn, params: PyTree, inputs: jax.Array, labels: jax.Array,
                  num_classes: int, microbatch_size: int | None = None,
                  fisher_labels: str = "model") -> PyTree:
  """The Fisher diagonal the published noise is shaped by. Jittable.

  ``"model"``: ``(1/N) sum_n sum_y p(y | x_n) g_{n,y} ** 2`` with ``g_{n,y}`` the gradient
  of ``-log p(y | x_n)`` (``hessian`` of ``Forgetting.ipynb``): one weighted pass of
  :func:`mnemonic_jax.fisher.weighted_squared_gradients` per class, in a ``lax.scan``.
  ``"true"``: :func:`mnemonic_jax.fisher.fisher_diagonal` with the given labels.

  Args:
    apply_fn: ``apply_fn(params, x) -> logits`` in inference mode.
    params: pytree of float arrays.
    inputs: ``(N, *input_shape)`` model inputs, ``N > 0``.
    labels: ``(N,)`` integer labels (used by ``"true"`` only).
    num_classes: number of logits.
    microbatch_size: examples per vectorised chunk (memory only).
    fisher_labels: ``"model"`` or ``"true"``.

  Returns:
    A float32 pytree shaped like ``params``.

  Raises:
    ValueError: an unknown ``fisher_labels`` or no inputs.
  """
  if fisher_labels not in FISHER_LABELS:
    raise errors.BadRequest(f"unknown fisher_labels {fisher_labels!r}; choose from "
                            f"{', '.join(FISHER_LABELS)}")
  n = int(labels.shape[0])
  if n == 0:
    raise errors.BadRequest("retain_fisher needs at least one input")
  if fisher_labels == "true":
    return fisher_lib.fisher_diagonal(apply_fn, params, inputs, labels, microbatch_size)
  size = n if microbatch_size is None else min(int(microbatch_size), n)
  probs = jax.lax.map(
      lambda x: jax.nn.softmax(apply_fn(params, x[None])[0].astype(jnp.float32)), inputs,
      batch_size=size)

  def one_class(total, y):
    weights = (probs[:, y] / n)[None]
    (f,) = fisher_lib.weighted_squared_gradients(
        apply_fn, params, inputs, jnp.full((n,), y, jnp.int32), weights, microbatch_size)
    return jax.tree.map(jnp.add, total, f), None

  zeros = jax.tree.map(lambda p: jnp.zeros(p.shape, jnp.float32), params)
  total, _ = jax.lax.scan(one_class, zeros, jnp.arange(num_classes))
  return total


def noise_moments(params: PyTree, fisher: PyTree, in_forget: jax.Array,
                  config: FisherForgettingConfig = FisherForgettingConfig()
                  ) -> tuple[PyTree, PyTree]:
  """Mean and variance of the published noise (``get_mean_var``), per parameter. Jittable.

  Args:
    params: trained parameters (Flax layout: the output axis last).
    fisher: the retained data's Fisher diagonal, shaped like ``params``.
    in_forget: boolean ``(num_classes,)``, True at the forgotten classes.
    config: the constants (see :class:`FisherForgettingConfig`).

  Returns:
    ``(mean, variance)``: float32 pytrees shaped like ``params``; the mean is the trained
    weights, 0 on the forgotten classes' classifier rows.
  """
  num_classes = in_forget.shape[0]

  def moments(p, f):
    head = is_classifier(p, num_classes)
    var = jnp.minimum(1.0 / (f.astype(jnp.float32) + config.eps), config.max_variance)
    if head:
      var = jnp.minimum(var, config.classifier_max_variance)
    var = config.alpha * var
    if p.ndim > 1:  # One variance per output unit: the mean over the input axis.
      var = jnp.broadcast_to(jnp.mean(var, axis=-2, keepdims=True), p.shape)
    mean = p.astype(jnp.float32)
    if head:
      mean = jnp.where(in_forget, 0.0, mean)
      var = jnp.where(in_forget, config.forget_variance, var) * config.classifier_factor
    elif p.ndim == 1:
      var = var * config.vector_factor
    return mean, var

  pairs = jax.tree.map(moments, params, fisher)
  is_pair = lambda x: isinstance(x, tuple)
  return (jax.tree.map(lambda m: m[0], pairs, is_leaf=is_pair),
          jax.tree.map(lambda m: m[1], pairs, is_leaf=is_pair))


def add_noise(key: jax.Array, params: PyTree, mean: PyTree, variance: PyTree) -> PyTree:
  """``mean + sqrt(variance) * N(0, 1)``, one subkey per leaf, in the params' dtypes."""
  leaves, treedef = jax.tree.flatten(params)
  keys = jax.tree.unflatten(treedef, list(jax.random.split(key, len(leaves))))
  return jax.tree.map(
      lambda p, k, m, v: (m + jnp.sqrt(v) * jax.random.normal(k, p.shape, jnp.float32)
                          ).astype(p.dtype),
      params, keys, mean, variance)


def _copy(tree: PyTree) -> PyTree:
  """New buffers for what a method returns unchanged (BatchNorm statistics): the output
  bundle never shares an array with the input one."""
  return jax.tree.map(jnp.array, tree)


@functools.partial(jax.jit, static_argnums=(1, 2, 3, 4))
def _fisher_program(apply_fn, config: FisherForgettingConfig, num_classes: int, mean, std,
                    params, images, labels, in_forget, key):
  """The Fisher, the moments and the noisy weights (one module-level program)."""
  f = retain_fisher(apply_fn, params, normalize(images, mean, std), labels, num_classes,
                    config.microbatch_size, config.fisher_labels)
  mean, var = noise_moments(params, f, in_forget, config)
  total = sum(v.size for v in jax.tree.leaves(var))
  stats = {
      "mean_std": sum(jnp.sum(jnp.sqrt(v)) for v in jax.tree.leaves(var)) / total,
      "max_variance": jnp.max(jnp.stack([jnp.max(v) for v in jax.tree.leaves(var)])),
      "clamped_fraction": sum(
          jnp.sum(1.0 / (x + config.eps) >= config.max_variance)
          for x in jax.tree.leaves(f)) / total,
  }
  return add_noise(key, params, mean, var), stats


@register("fisher", FisherForgettingConfig, data="retain", reference=REFERENCE)
def fisher_forgetting(bundle: Bundle, classes: tuple[int, ...], data: UnlearnData,
                      config: FisherForgettingConfig, key: jax.Array) -> Outcome:
  """Fisher forgetting as published: noise ``N(mu, alpha / F_retain)`` on the weights.

  Reads the retain set only. One jitted function computes the Fisher (:func:`retain_fisher`),
  the moments (:func:`noise_moments`) and the noisy weights (:func:`add_noise`).

  """
  apply_fn = bundle.apply_fn()
  num_classes = bundle.num_classes
  in_forget = fisher_lib.class_mask(classes, num_classes)
  fisher_lib.check_input_shape(apply_fn, bundle.params, bundle.normalize(data.retain.images[:1]))

  new_params, stats = _fisher_program(
      apply_fn, config, num_classes, tuple(map(float, bundle.mean)),
      tuple(map(float, bundle.std)), bundle.params, jnp.asarray(data.retain.images),
      jnp.asarray(data.retain.labels, jnp.int32), in_forget, key)
  head = [jax.tree_util.keystr(path) for path, leaf in
          jax.tree_util.tree_flatten_with_path(bundle.params)[0]
          if is_classifier(leaf, num_classes)]
  return Outcome(new_params, _copy(bundle.batch_stats),
                 examples={"retain": len(data.retain), "forget": 0},
                 details={**{k: float(v) for k, v in stats.items()}, "alpha": config.alpha,
                          "fisher_labels": config.fisher_labels, "classifier": head})
