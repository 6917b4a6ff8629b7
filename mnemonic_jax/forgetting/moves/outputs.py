"""Which tensors are the model's output layer, found from the model itself (no names).

:func:`output_bias` and :func:`output_kernel` perturb candidate tensors on the host and
watch the codes' logits; :func:`head_tensors` gives both as leaf indices. Used by the
moves that lower the output bias (those with ``needs_output_bias``: the output-layer moves
and ``shrink+bias``) and by the feature-bound check of :mod:`mnemonic_jax.models.bounds`.
"""

import jax
import jax.numpy as jnp
import numpy as np

from mnemonic_jax import errors
from mnemonic_jax.forgetting.moves import stepping
from mnemonic_jax.forgetting.moves.base import needing_output_bias
from mnemonic_jax.models import bounds
from mnemonic_jax.pytrees import PyTree


#: What the output-layer moves need of the model, in their refusals.
_HEAD_FORM = ("the logits must be the head's raw output h @ K + b (K an (F, C) kernel, b a "
              "(C,) bias) with nothing after it (no softmax, scaling or transpose)")


def output_bias(apply_fn, params: PyTree, codes: jax.Array) -> PyTree:
  """Which tensor is the output bias: the ``(C,)`` vector whose entry ``c`` adds to logit ``c``.

  Found from the model itself (no names assumed): each 1-D tensor of ``C`` entries is
  tried by adding ``1`` to its first entry and checking that the codes' logits move by
  ``(d, 0, ..., 0)``, ``d`` the step the entry took in its own dtype (1 up to rounding),
  within the rounding of the logits' dtype (bfloat16 included).

  Args:
    apply_fn: ``apply_fn(params, x) -> logits (N, C)``.
    params: parameters.
    codes: ``(C, *input_shape)`` codes (any inputs would do).

  Returns:
    A pytree of Python bools, True at the output bias only.

  Raises:
    ValueError: no tensor behaves as an output bias.
  """
  num_classes = codes.shape[0]
  base_logits = stepping.logits(apply_fn, params, codes)
  base = np.asarray(base_logits, np.float64)
  eps = float(jnp.finfo(base_logits.dtype).eps)
  atol = max(1e-3, 4 * eps * (1.0 + float(np.max(np.abs(base), initial=0.0))))
  leaves, treedef = jax.tree.flatten(params)
  hot = np.eye(num_classes)[0]
  found = []
  for i, leaf in enumerate(leaves):
    if leaf.ndim != 1 or leaf.shape[0] != num_classes:
      found.append(False)
      continue
    moved, bumped = list(leaves), np.array(leaf)  # On the host: no program to compile.
    bumped[0] += 1
    moved[i] = bumped
    step = float(bumped[0]) - float(np.asarray(leaf)[0])  # 1 up to the leaf's rounding.
    diff = np.asarray(stepping.logits(apply_fn, treedef.unflatten(moved), codes),
                      np.float64) - base
    found.append(bool(np.allclose(diff, step * hot[None], atol=atol, rtol=0)))
  if not any(found):
    raise errors.BadRequest(
        "the model has no output bias (a (C,) vector added to the logits), which the moves "
        f"{_listed(needing_output_bias())} lower: for them " + _HEAD_FORM + "; " + _OTHERWISE)
  return treedef.unflatten(found)


#: What a model without the head the output-layer moves need can use instead.
_OTHERWISE = ("otherwise use move='shrink' (--move shrink), which needs no output layer: it "
              "moves the weights of the layers where the Fisher ratio concentrates "
              "(move='paper' runs on such models too, but missed its rule on the bias-free "
              "heads tried, docs/python.md)")


def _listed(names: list[str]) -> str:
  """``'a', 'b' and 'c'``."""
  quoted = [f"'{n}'" for n in names]
  return quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} and {quoted[-1]}"


def output_kernel(apply_fn, params: PyTree, codes: jax.Array) -> PyTree:
  """Which tensor is the output kernel: the ``(F, C)`` matrix whose column ``c`` feeds
  logit ``c`` alone (found from the model: a column perturbed moves only its logit).

  Raises:
    ValueError: no tensor behaves as an output kernel.
  """
  num_classes = codes.shape[0]
  base = np.asarray(stepping.logits(apply_fn, params, codes), np.float64)
  leaves, treedef = jax.tree.flatten(params)
  found = []
  for i, leaf in enumerate(leaves):
    if leaf.ndim != 2 or leaf.shape[1] != num_classes:
      found.append(False)
      continue
    moved, bumped = list(leaves), np.array(leaf, np.float32)
    # A random column, not a constant one: a LayerNorm's outputs sum to about 0.
    bumped[:, 0] += np.random.default_rng(0).standard_normal(leaf.shape[0])
    moved[i] = bumped.astype(np.asarray(leaf).dtype)
    diff = np.asarray(stepping.logits(apply_fn, treedef.unflatten(moved), codes),
                      np.float64) - base
    scale = 1e-3 * (1.0 + np.max(np.abs(diff[:, 0])))
    found.append(bool(np.max(np.abs(diff[:, 0])) > scale
                      and np.all(np.abs(diff[:, 1:]) <= scale)))
  if not any(found):
    raise errors.BadRequest(
        "the model has no output kernel (an (F, C) matrix whose column c feeds logit c), "
        f"which the moves {_listed(needing_output_bias())} read: for them " + _HEAD_FORM
        + "; " + _OTHERWISE)
  return treedef.unflatten(found)


#: :func:`head_tensors`' answers by model and parameter structure (the head is where it is
#: whatever the values), so that later requests skip its perturbed forward passes.
_HEADS: dict = {}
_HEADS_KEPT = 32


def _structure(apply_fn, params: PyTree, codes: jax.Array):
  """A hashable key of the model (an ``apply_fn`` pytree's static part, e.g. its Flax
  module, or the function itself) and of the shapes and dtypes of ``params`` and
  ``codes``; None for an ``apply_fn`` that cannot be hashed."""
  model = jax.tree.structure(apply_fn)
  model = apply_fn if jax.tree_util.treedef_is_leaf(model) else model
  leaves = tuple((np.shape(x), str(getattr(x, "dtype", type(x)))) for x in jax.tree.leaves(params))
  key = (model, jax.tree.structure(params), leaves, tuple(codes.shape), str(codes.dtype))
  try:
    hash(key)
  except TypeError:
    return None
  return key


def head_tensors(apply_fn, params: PyTree, codes: jax.Array) -> tuple[int, int | None]:
  """``(kernel_index, bias_index)``: the output kernel's and the output bias's positions in
  ``jax.tree.leaves(params)`` (the bias's None for a head without one). Found once per
  model and parameter structure (:data:`_HEADS`), then remembered.

  Raises:
    ValueError: no tensor behaves as an output kernel.
  """
  key = _structure(apply_fn, params, codes)
  if key in _HEADS:
    return _HEADS[key]
  kernel = jax.tree.leaves(output_kernel(apply_fn, params, codes)).index(True)
  try:
    bias = jax.tree.leaves(output_bias(apply_fn, params, codes)).index(True)
  except ValueError:
    bias = None
  if key is not None:
    if len(_HEADS) >= _HEADS_KEPT:
      del _HEADS[next(iter(_HEADS))]  # The oldest.
    _HEADS[key] = kernel, bias
  return kernel, bias


def ruled_out_everywhere(request, params: PyTree) -> bool:
  """Whether no input at all can be classified as a forgotten class: the model declares a
  bound on its head's input (:func:`mnemonic_jax.models.bounds.declared`) and, under it,
  every forgotten class's worst-case margin (:func:`~mnemonic_jax.models.bounds.
  worst_margins`) is below 0. False where the model declares no bound.

  Args:
    request: the checked request (:class:`mnemonic_jax.forgetting.primitives.Request`).
    params: the parameters to check (after the move).
  """
  bound = bounds.declared(request.apply_fn)
  if bound is None:
    return False
  try:
    k_index, b_index = head_tensors(request.apply_fn, params, request.codes)
  except ValueError:
    return False
  leaves = jax.tree.leaves(params)
  in_f = np.asarray(request.in_forget, bool)
  worst = bounds.worst_margins(
      bound, params, np.asarray(leaves[k_index], np.float32),
      None if b_index is None else np.asarray(leaves[b_index], np.float32), in_f,
      np.asarray(request.in_remain, bool))
  return bool(np.all(worst[in_f] < 0))
