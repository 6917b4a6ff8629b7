"""Whether each tapped layer's input holds one row per example, read off the traced program.

The factorized Fisher (:mod:`mnemonic_jax.layer_taps`) pairs row ``n`` of a layer's input
with row ``n`` of its output gradient and weights it as example ``n``. That is right only
where row ``n`` of the input is computed from example ``n`` alone (and from parameters or
constants). A check of the leading axis' length does not tell: a time-major ``(T, N, F)``
tensor whose ``T`` happens to equal ``N``, or a Dense applied to a fixed grid of ``N`` rows
(walk5 V16), has ``N`` rows that are not the examples, and the Fisher came out silently
wrong (75-91% off).

This module proves it instead, on the jaxpr of the one trace the factorized path takes
anyway (no trace of the model of its own): each tapped layer's input passes through
:func:`mark` (an identity, staged as a ``jit`` call of its own name: the compiled program is
the same), and :func:`rows_are_examples` follows the examples' axis forward from the
program's input through each operation, as a batching rule would: elementwise operations,
reshapes that keep the leading axis, transposes and broadcasts that keep it first,
reductions, windows, pads, slices and concatenations off it, matrix products and
convolutions with it as the batch axis, gathers that keep it, and calls of sub-programs
(followed into). Any other operation on a value that depends on the examples (a reversal
or a gather along it, a loop, a primitive not listed) makes its outputs unknown; so does
a value that does not depend on the examples at all. A tapped input that is not proven to
hold one row per example sends ``"auto"`` to the exact vmap path and makes
``"factorized"`` refuse: a conservative answer costs speed, never exactness.
"""

from typing import Iterable

import jax
from jax.extend import core as jex_core

#: The name of the identity each tapped layer's input passes through (:func:`mark`).
MARK = "mnemonic_jax_tap_input"
_ROWS, _OTHER = "rows", "other"  # A value's status; None: independent of the examples.


def mnemonic_jax_tap_input(x):
  """The identity, jitted under this name (:data:`MARK`) so that it shows in the jaxpr."""
  return x


_marker = jax.jit(mnemonic_jax_tap_input)


def mark(x: jax.Array) -> jax.Array:
  """``x`` itself, staged as a call named :data:`MARK` (its gradient is never needed: the
  formulas read the input, the layer's own gradient flows through the layer)."""
  return _marker(jax.lax.stop_gradient(x))


def rows_are_examples(jaxpr, inputs, count: int) -> bool:
  """Whether each of ``count`` marked values holds one row per example of ``inputs``.

  Args:
    jaxpr: the traced program (a ``jax.extend.core.Jaxpr``).
    inputs: its invar holding the examples ``(N, ...)``.
    count: how many marked values the program holds (one per tapped layer).

  Returns:
    True when exactly ``count`` marks are found and each one's input is proven to have
    the examples as its leading axis, row ``n`` depending on example ``n`` only.
  """
  found: list = []
  _follow(jaxpr, {inputs: _ROWS}, inputs.aval.shape[0], found, count)
  return len(found) == count and all(status == _ROWS for status in found)


_ELEMENTWISE = frozenset("""
abs acos acosh add add_any and asin asinh atan atan2 atanh cbrt ceil clamp convert_element_type
copy copy_p cos cosh digamma div eq erf erf_inv erfc exp exp2 expm1 floor ge gt imag integer_pow
is_finite le lgamma log log1p logistic lt max min mul ne neg nextafter not or pow real
reduce_precision rem round rsqrt select_n sign sin sinh sqrt square stop_gradient sub tan tanh
xor""".split())
_REDUCTIONS = frozenset("""reduce_sum reduce_max reduce_min reduce_prod reduce_and reduce_or
reduce_xor argmax argmin""".split())
_WINDOWS = frozenset("reduce_window_sum reduce_window_max reduce_window_min reduce_window".split())
_ALONG = frozenset("cumsum cumprod cummax cummin cumlogsumexp".split())


def _follow(jaxpr, status: dict, n: int, found: list, count: int) -> None:
  """Sets ``status[var]`` for the variables of ``jaxpr`` that depend on the examples, and
  appends each mark's input's status to ``found``; stops once ``count`` marks are found
  (the backward pass after the last one reads no layer input)."""
  for eqn in jaxpr.eqns:
    if len(found) >= count:
      return
    ins = [None if isinstance(v, jex_core.Literal) else status.get(v) for v in eqn.invars]
    if eqn.primitive.name in ("jit", "pjit") and eqn.params.get("name") == MARK:
      found.append(ins[0])
    inner = _inner(eqn)
    if inner is not None:  # A call: followed into (it may hold operations of either kind).
      sub = {v: s for v, s in zip(inner.invars, ins) if s is not None}
      _follow(inner, sub, n, found, count)
      outs = [None if isinstance(v, jex_core.Literal) else sub.get(v) for v in inner.outvars]
    elif all(s is None for s in ins):
      continue
    else:
      outs = [_rule(eqn, ins, n)] * len(eqn.outvars)
    for var, s in zip(eqn.outvars, outs):
      if s is not None:
        status[var] = s


def _inner(eqn):
  """The one sub-program of a call-like equation with matching inputs and outputs, or None."""
  if eqn.primitive.name in ("cond", "while", "scan"):
    return None
  inner = [getattr(p, "jaxpr", p) for p in eqn.params.values()
           if isinstance(p, (jex_core.Jaxpr, jex_core.ClosedJaxpr))]
  if (len(inner) == 1 and len(inner[0].invars) == len(eqn.invars)
      and len(inner[0].outvars) == len(eqn.outvars)):
    return inner[0]
  return None


def _rule(eqn, ins: list, n: int) -> str:
  """The status of the outputs of one equation some of whose inputs depend on the examples."""
  name, params = eqn.primitive.name, eqn.params
  shapes = [getattr(v.aval, "shape", ()) for v in eqn.invars]
  out = getattr(eqn.outvars[0].aval, "shape", ())
  if any(s not in (None, _ROWS) for s in ins):
    return _OTHER
  rows = [i for i, s in enumerate(ins) if s == _ROWS]
  if not out or out[0] != n or any(not shapes[i] or shapes[i][0] != n for i in rows):
    return _OTHER
  keep = True
  if name in _ELEMENTWISE:
    keep = all(len(shapes[i]) == len(out) for i in rows)  # Other axes may broadcast from 1.
  elif name == "broadcast_in_dim":
    keep = params["broadcast_dimensions"][:1] == (0,)
  elif name == "reshape":
    keep = params.get("dimensions") is None
  elif name == "transpose":
    keep = params["permutation"][0] == 0
  elif name == "squeeze":
    keep = 0 not in params["dimensions"]
  elif name in _REDUCTIONS:
    keep = 0 not in params["axes"]
  elif name in _ALONG:
    keep = params["axis"] != 0
  elif name in ("rev", "sort"):
    keep = 0 not in _ints(params.get("dimensions", params.get("dimension")))
  elif name in _WINDOWS:
    keep = (params["window_dimensions"][0] == 1 and params["window_strides"][0] == 1
            and tuple(params["padding"][0]) == (0, 0)
            and params["base_dilation"][0] == 1 and params["window_dilation"][0] == 1)
  elif name == "pad":
    keep = tuple(params["padding_config"][0]) == (0, 0, 0)
  elif name == "slice":
    keep = params["start_indices"][0] == 0 and (params["strides"] or (1,))[0] == 1
  elif name == "concatenate":
    keep = params["dimension"] != 0
  elif name == "dot_general":
    keep = _dot_keeps(params["dimension_numbers"], rows)
  elif name == "conv_general_dilated":
    lhs, _, out_spec = params["dimension_numbers"]
    keep = (rows == [0] and lhs[0] == 0 and out_spec[0] == 0
            and params["batch_group_count"] == 1)
  elif name == "gather":
    keep = rows == [0] and _gather_keeps(params["dimension_numbers"], params["slice_sizes"], n)
  else:
    keep = False
  return _ROWS if keep else _OTHER


def _ints(value) -> Iterable[int]:
  return (value,) if isinstance(value, int) else tuple(value or ())


def _dot_keeps(dimension_numbers, rows: list) -> bool:
  """A matrix product keeps the examples first: a batch axis of both sides when both depend
  on them, else the first free axis of the side that does (output: batch, lhs, rhs axes)."""
  (contract_l, contract_r), (batch_l, batch_r) = dimension_numbers
  if rows == [0, 1]:
    return tuple(batch_l[:1]) == (0,) and tuple(batch_r[:1]) == (0,)
  if rows == [0]:
    return tuple(batch_l[:1]) == (0,) or (not batch_l and 0 not in contract_l)
  return False  # The right side's free axes follow the left side's in the output.


def _gather_keeps(dimension_numbers, slice_sizes, n: int) -> bool:
  """A gather from the examples' rows that takes every row whole, in order, as the output's
  first axis (indexing or slicing along other axes)."""
  d = dimension_numbers
  return (0 not in d.collapsed_slice_dims and 0 not in d.start_index_map
          and not getattr(d, "operand_batching_dims", ()) and slice_sizes[0] == n
          and tuple(d.offset_dims[:1]) == (0,))
