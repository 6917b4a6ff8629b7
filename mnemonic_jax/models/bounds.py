"""What can be shown for every input: a bound on the head's input, and the worst margin.

A rule sized on the mnemonic codes says nothing about real images: an image may hold its
class with a larger margin than any code (issue #20). Where the architecture bounds the
features the classifier head reads, the forgotten class can be ruled out for *every*
input. With ``logits = h @ K + b``, class ``c`` never wins against a remaining class ``j``
wherever ``max_h (K[:, c] - K[:, j]) . h + b_c - b_j < 0``, the maximum taken over every
head input ``h`` the architecture allows; :func:`worst_margins` gives, per forgotten class,
``min_j`` of that maximum (an upper bound of the largest margin any input can give it).

The bounds a model can declare, by a method ``head_feature_bound(self)`` on its Flax module
(the built-in :class:`~mnemonic_jax.models.mlp.MLP` and
:class:`~mnemonic_jax.models.vit.ViT` do):

* :class:`Box`: every head input in ``[lo, hi]`` (a sigmoid or tanh layer before the head):
  ``max_h v . h = sum_i max(v_i lo, v_i hi)``;
* :class:`LayerNormed`: the head reads ``LayerNorm(x) = gamma * z + beta`` with
  ``sum_i z_i = 0`` and ``||z||^2 = F var / (var + eps) <= F``:
  ``max_h v . h <= v . beta + sqrt(F) ||P (gamma * v)||``, ``P`` the centring projection.

A model that declares none (ReLU, GELU, a ResNet's pooled ReLU features) gets no
guarantee: its report says that E_F on real inputs was checked on the codes only.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from typing import Any

import numpy as np

from mnemonic_jax import errors
from mnemonic_jax.pytrees import PyTree


@dataclasses.dataclass(frozen=True)
class Box:
  """Every head input lies in ``[lo, hi]`` (e.g. sigmoid: ``(0, 1)``, tanh: ``(-1, 1)``)."""

  lo: float
  hi: float

  def describe(self) -> str:
    return f"every head input in [{self.lo:g}, {self.hi:g}]"

  def max_dot(self, v: np.ndarray, params: PyTree) -> np.ndarray:
    """``max_h v[:, k] . h`` for each column ``k`` of ``v`` ``(F, K)``."""
    del params
    return np.sum(np.maximum(v * self.lo, v * self.hi), axis=0)


@dataclasses.dataclass(frozen=True)
class LayerNormed:
  """The head reads a LayerNorm's output; ``path`` names the LayerNorm's parameters
  (``scale`` and ``bias``, each optional) from the root of ``params``."""

  path: tuple[str, ...]

  def describe(self) -> str:
    return f"the head reads LayerNorm {'/'.join(self.path)}"

  def max_dot(self, v: np.ndarray, params: PyTree) -> np.ndarray:
    """An upper bound of ``max_h v[:, k] . h`` for each column ``k`` of ``v`` ``(F, K)``."""
    node: Any = params
    for name in self.path:
      if not isinstance(node, Mapping) or name not in node:  # A FrozenDict too.
        raise errors.BadRequest(f"the declared LayerNorm {'/'.join(self.path)} is not in the "
                                "parameters")
      node = node[name]
    width = v.shape[0]
    gamma = np.asarray(node.get("scale", np.ones(width)), np.float64)[:, None]
    beta = np.asarray(node.get("bias", np.zeros(width)), np.float64)
    gv = gamma * v
    centred = gv - gv.mean(axis=0, keepdims=True)
    return beta @ v + np.sqrt(width) * np.linalg.norm(centred, axis=0)


FeatureBound = Box | LayerNormed


def declared(apply_fn: Any) -> FeatureBound | None:
  """The bound the model behind ``apply_fn`` declares, or None.

  ``apply_fn`` is a :class:`mnemonic_jax.bundle.InferenceApply` (its ``model``) or a
  module's bound ``apply`` method, possibly inside a ``functools.partial``; the module
  declares a bound by a method ``head_feature_bound(self) -> Box | LayerNormed | None``.
  """
  while isinstance(apply_fn, functools.partial):  # jax.tree_util.Partial included.
    apply_fn = apply_fn.func
  model = getattr(apply_fn, "model", None)
  if model is None:
    model = getattr(apply_fn, "__self__", None)
  declare = getattr(model, "head_feature_bound", None)
  if not callable(declare):
    return None
  bound = declare()
  if bound is not None and not isinstance(bound, (Box, LayerNormed)):
    raise errors.BadRequestType(f"{type(model).__name__}.head_feature_bound() must return a "
                                f"Box, a LayerNormed or None, got {bound!r}")
  return bound


def worst_margins(bound: FeatureBound, params: PyTree, kernel: np.ndarray,
                  bias: np.ndarray | None, in_forget: np.ndarray, in_remain: np.ndarray
                  ) -> np.ndarray:
  """Per forgotten class, an upper bound of the largest margin any input can give it.

  Args:
    bound: the head input's bound.
    params: the parameters (a :class:`LayerNormed` bound reads its LayerNorm there).
    kernel: ``(F, C)`` output kernel; ``bias``: ``(C,)`` output bias or None.
    in_forget, in_remain: ``(C,)`` bools.

  Returns:
    ``(C,)`` float64: ``min_{j remaining} max_h (logit_c - logit_j)`` at forgotten ``c``
    (negative: no input is classified ``c``), NaN elsewhere.
  """
  k = np.asarray(kernel, np.float64)
  b = np.zeros(k.shape[1]) if bias is None else np.asarray(bias, np.float64)
  in_f, in_r = np.asarray(in_forget, bool), np.asarray(in_remain, bool)
  out = np.full(k.shape[1], np.nan)
  remain = np.flatnonzero(in_r)
  for c in np.flatnonzero(in_f):
    v = k[:, [c]] - k[:, remain]
    out[c] = float(np.min(bound.max_dot(v, params) + b[c] - b[remain]))
  return out
