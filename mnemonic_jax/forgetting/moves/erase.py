"""``erase``: the forgotten classes' direction erased from what the head reads, then ``bias``.

The one-constant attack (docs/depth.md) brings a class back when its images are the
inputs on which every *remaining* logit is low: the original was trained to push the
remaining logits down on the class's images, so its remaining head rows carry a
component against the class's evidence, which the retrain oracle, never shown the class,
does not have. Lowering or projecting the forgotten row alone (``bias``, ``project``)
leaves that component in place.

``erase`` removes it from every row. With ``K`` the output kernel ``(F, C)`` and ``b`` the
output bias, the class directions in feature space are ``D = K[:, f] - mean_r K[:, r]``
(one column per forgotten class ``f``, ``r`` the remaining classes); ``U`` is an
orthonormal basis of their span. The head then reads the features with that span erased
around the remaining codes' mean feature ``mu`` (LEACE's affine form, Belrose et al.,
NeurIPS 2023, with the class directions read from the head instead of estimated from
data), folded into the head::

  h' = h - (h - mu) U U^T     =>     K' = (I - U U^T) K,   b' = b + mu U U^T K

so no logit, remaining or forgotten, responds to the forgotten classes' directions any
more, and on inputs whose features sit at ``mu`` along ``U`` nothing changes. ``mu`` is the
gradient of the remaining codes' mean logit with respect to the kernel (the head's input,
read without knowing the model's layers). Then the ``bias`` phase lowers the forgotten
output bias until the codes' margin is ``<= -rule.margin``. Reads only the weights and the
codes. This project's move; where it meets the depth goals: experiments/results/deep.md.
"""

import dataclasses
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from mnemonic_jax.forgetting.moves import outputs, stepping
from mnemonic_jax.forgetting.moves.base import register
from mnemonic_jax.forgetting.moves.bias import OutputLayerMove
from mnemonic_jax.pytrees import PyTree


def class_directions(kernel: np.ndarray, in_forget: np.ndarray, in_remain: np.ndarray
                     ) -> np.ndarray:
  """An orthonormal basis ``U`` ``(F, k)`` of the forgotten classes' head directions.

  Args:
    kernel: ``(F, C)`` output kernel.
    in_forget, in_remain: ``(C,)`` bools.

  Returns:
    ``(F, k)`` float64 with orthonormal columns, ``k <= number of forgotten classes``
    (directions that are numerically dependent are dropped).

  Example:
    >>> k = np.array([[1.0, -1.0, 3.0], [0.0, 0.0, 0.0]])  # Class 2 differs along x.
    >>> class_directions(k, np.array([False, False, True]), np.array([True, True, False]))
    array([[1.],
           [0.]])
  """
  k = np.asarray(kernel, np.float64)
  d = k[:, in_forget] - k[:, in_remain].mean(axis=1, keepdims=True)
  u, s, _ = np.linalg.svd(d, full_matrices=False)
  keep = s > 1e-8 * max(float(s.max(initial=0.0)), 1e-30)
  return u[:, keep] * np.sign(u[:, keep].sum(axis=0) + (u[:, keep].sum(axis=0) == 0))


@jax.jit
def _weighted_logit0_grad(apply_fn, params, codes, weights):
  """The gradient of ``sum_n weights_n logit_0(code_n)`` (jitted): at the output kernel's
  column 0 it is the weighted mean head input ``sum_n weights_n h_n``."""
  def mean_logit0(p):
    return jnp.sum(weights * apply_fn(p, codes)[:, 0].astype(jnp.float32))
  return jax.grad(mean_logit0)(params)


def erased_head(kernel: np.ndarray, bias: np.ndarray | None, mu: np.ndarray,
                basis: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
  """``(K', b')`` with ``K' = (I - U U^T) K`` and ``b' = b + mu U U^T K`` (float64 on the
  host, cast back to each tensor's dtype; ``b'`` is None without a bias)."""
  k = np.asarray(kernel, np.float64)
  along = basis @ (basis.T @ k)
  new_k = (k - along).astype(np.asarray(kernel).dtype)
  if bias is None:
    return new_k, None
  new_b = np.asarray(bias, np.float64) + np.asarray(mu, np.float64) @ along
  return new_k, new_b.astype(np.asarray(bias).dtype)


class HeadInput(NamedTuple):
  """The output layer as the head moves read it (:func:`read_head`).

  Attributes:
    leaves, treedef: the flattened parameters.
    k_index, b_index: the output kernel's and bias's leaf indices (``b_index`` None
      without a bias).
    mu: ``(F,)`` float64, the remaining codes' mean head input.
    in_forget, in_remain: ``(C,)`` bools.
  """

  leaves: list[jax.Array]
  treedef: Any
  k_index: int
  b_index: int | None
  mu: np.ndarray
  in_forget: np.ndarray
  in_remain: np.ndarray

  @property
  def kernel(self) -> np.ndarray:
    """``(F, C)`` the output kernel, on the host."""
    return np.asarray(self.leaves[self.k_index])

  @property
  def bias(self) -> np.ndarray | None:
    """``(C,)`` the output bias on the host, or None."""
    return None if self.b_index is None else np.asarray(self.leaves[self.b_index])

  def change(self, new_k: np.ndarray, new_b: np.ndarray | None) -> tuple[PyTree, PyTree]:
    """``(d, mask)`` taking the head to ``(new_k, new_b)``: float32 differences shaped like
    the parameters (zero off the head), and bools True at the head's tensors."""
    delta = jax.tree.leaves(stepping.host_zeros(self.leaves))
    mask = [False] * len(self.leaves)
    for index, new in ((self.k_index, new_k), (self.b_index, new_b)):
      if index is not None:
        delta[index] = jax.device_put(np.asarray(new, np.float32)
                                      - np.asarray(self.leaves[index], np.float32))
        mask[index] = True
    return self.treedef.unflatten(delta), self.treedef.unflatten(mask)


def read_head(params: PyTree, request) -> HeadInput:
  """The :class:`HeadInput` of ``params`` for a forgetting request (one jitted gradient:
  ``mu`` is the gradient of the remaining codes' mean logit 0 at the kernel's column 0)."""
  apply_fn, codes = request.apply_fn, request.codes
  k_index, b_index = outputs.head_tensors(apply_fn, params, codes)
  in_f, in_r = np.asarray(request.in_forget), np.asarray(request.in_remain)
  leaves, treedef = jax.tree.flatten(params)
  weights = in_r.astype(np.float32) / max(int(in_r.sum()), 1)
  grads = _weighted_logit0_grad(apply_fn, params, codes, weights)
  mu = np.asarray(jax.tree.leaves(grads)[k_index], np.float64)[:, 0]  # Sliced on the host.
  return HeadInput(leaves, treedef, k_index, b_index, mu, in_f, in_r)


class ErasePhase(stepping.DeltaPhase):
  """Erases the forgotten classes' directions from the head's input (one step, ``t = 1``)."""

  name = "erase"

  def new_head(self, kernel: np.ndarray, bias: np.ndarray | None, mu: np.ndarray,
               in_forget: np.ndarray, in_remain: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray | None]:
    """The head after the phase: :func:`erased_head` along :func:`class_directions`."""
    basis = class_directions(np.asarray(kernel, np.float32), in_forget, in_remain)
    return erased_head(kernel, bias, mu, basis)

  def delta(self, params, request):
    head = read_head(params, request)
    d, mask = head.change(*self.new_head(head.kernel, head.bias, head.mu, head.in_forget,
                                         head.in_remain))
    return d, mask, 1.0


@register
@dataclasses.dataclass(frozen=True)
class Erase(OutputLayerMove):
  """The forgotten classes' directions erased from the head's input, then ``bias``.

  Attributes:
    rule: the bias phase's rule (:class:`~mnemonic_jax.forgetting.criterion.Rule`).
    grid: the bias phase's step grid ``t`` (logits), ordered from the smallest.
  """

  name: ClassVar[str] = "erase"
  baseline: ClassVar[str] = "mnemonic-erase"
  summary: ClassVar[str] = ("erase the forgotten classes' directions from every row of the "
                            "classifier head, then lower their output bias by t logits "
                            "until their codes' margin reaches the rule's (-15)")

  def first_phases(self):
    return [(ErasePhase(), 0.0)]
