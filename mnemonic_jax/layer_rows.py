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
the same), and :func:`unproven` follows the examples' axis forward from the program's input
through each operation, as a batching rule would. A value's status is the axis that holds
the examples (index ``n`` along it computed from example ``n`` alone), None where it does not
depend on the examples, or the reason it is unknown. The rules (:data:`_AXIS_RULES`, one per
primitive) keep the axis through elementwise operations, reshapes, transposes, broadcasts,
stacks, splits, tiles, reductions, cumulative operations, sorts, ``top_k``, reversals, windows,
pads, slices, dynamic slices and updates, concatenations and FFTs along other axes; matrix
products and convolutions with it as a batch axis or a free axis of one side; gathers and
scatters that take it whole or pair it with a batch axis of indices depending on the same
example; calls of sub-programs (followed into); ``cond`` on an index and ``while`` on a
condition that do not depend on the examples, and ``scan`` over another axis (branches and
bodies followed into, loops to a fixed point; a tapped layer inside one is unknown).
Any other operation on a value that depends on the examples (a reduction, reversal, sort or
gather along the examples' axis, a primitive not listed) makes its outputs unknown. A tapped
input whose examples are not proven to be its leading axis sends ``"auto"`` to the exact
vmap path and makes ``"factorized"`` refuse, naming the layer and the operation: a
conservative answer costs speed, never exactness.

The formulas also weight row ``n`` of each layer's output gradient ``delta`` as the gradient
of example ``n``'s loss alone. That holds where nothing between the layer's output and the
losses mixes rows (walk8 F1: ``logits + jnp.roll(logits, 2, 0)`` after the last layer, 60%
off) and no backward rule does (a ``custom_vjp`` whose forward keeps the rows but whose
backward mixes them, 92% off; invisible in any forward check). So the same rules follow the
backward pass too: the losses' cotangent ``(N,)`` passes through :func:`source` (row ``n``:
example ``n``'s), and each ``delta`` through :func:`mark_delta`; a ``delta`` whose row ``n``
is not proven to come from example ``n`` and row ``n`` of that cotangent alone is unproven
like an input (the transpose of a roll, a sum over the examples, a user's backward rule).
"""

import math
import os
import re
from typing import Callable

import jax
from jax.extend import core as jex_core

#: The names of the identities each tapped layer's input (:func:`mark`) and output gradient
#: (:func:`mark_delta`) pass through, and of the one the per-example losses' cotangent (the
#: backward pass's seed) passes through (:func:`source`).
MARK, DELTA, SOURCE = ("mnemonic_jax_tap_input", "mnemonic_jax_tap_delta",
                       "mnemonic_jax_loss_seed")
Status = int | str | None  # The examples' axis; a reason it is unknown; None: independent.


def mnemonic_jax_tap_input(x):
  """The identity, jitted under this name (:data:`MARK`) so that it shows in the jaxpr."""
  return x


def mnemonic_jax_tap_delta(x):
  """The identity, jitted under this name (:data:`DELTA`)."""
  return x


def mnemonic_jax_loss_seed(x):
  """The identity, jitted under this name (:data:`SOURCE`)."""
  return x


_marker, _delta_marker, _source = map(
    jax.jit, (mnemonic_jax_tap_input, mnemonic_jax_tap_delta, mnemonic_jax_loss_seed))


def mark(x: jax.Array, layer: str = "") -> jax.Array:
  """``x`` itself, staged as a call named :data:`MARK` in a name scope naming ``layer`` (its
  gradient is never needed: the formulas read the input, the layer's own gradient flows
  through the layer)."""
  with jax.named_scope(f"{MARK}[{layer}]"):
    return _marker(jax.lax.stop_gradient(x))


def mark_delta(delta: jax.Array, layer: str = "") -> jax.Array:
  """``delta`` itself, staged as a call named :data:`DELTA` in a name scope naming ``layer``:
  the gradient of the summed losses with respect to the layer's output, which the
  formulas weight row by row as the gradient of each example's own loss."""
  with jax.named_scope(f"{MARK}[{layer}]"):
    return _delta_marker(delta)


def source(seed: jax.Array) -> jax.Array:
  """``seed`` itself, staged as a call named :data:`SOURCE`: the cotangent ``(N,)`` of the
  per-example losses, whose row ``n`` :func:`unproven` takes as example ``n``'s own (the
  backward pass starts there; a gradient row ``n`` computed from it alone is example
  ``n``'s loss's alone)."""
  return _source(seed)


def rows_are_examples(jaxpr, inputs, count: int) -> bool:
  """Whether each of ``count`` tapped layers' marked input and output gradient holds one row
  per example of ``inputs`` (:func:`unproven` is None)."""
  return unproven(jaxpr, inputs, count) is None


def unproven(jaxpr, inputs, count: int) -> str | None:
  """Why some marked value is not proven to hold one row per example of ``inputs``.

  Args:
    jaxpr: the traced program, forward and backward (a ``jax.extend.core.Jaxpr``).
    inputs: its invar holding the examples ``(N, ...)``, or several (the labels ``(N,)``).
    count: how many tapped layers the program holds (each with a marked input and output
      gradient).

  Returns:
    None when exactly ``count`` marks of each kind are found, each input mark's value is
    proven to have the examples as its leading axis, row ``n`` depending on example ``n``
    only, and each output gradient's too, row ``n`` depending on example ``n`` and on row
    ``n`` of the losses' cotangent only (or on neither: a zero gradient; or ``N`` is 1,
    a microbatch of one example: its gradients are its own); else a sentence
    naming the first layer whose input or output gradient is not and why (the operation,
    with its source line, that lost the examples' axis: in the forward pass, or in a
    backward rule such as a ``custom_vjp``'s, or a forward operation mixing rows after the
    layer whose transpose mixes its gradient's rows).
  """
  inputs = (inputs,) if isinstance(inputs, jex_core.Var) else tuple(inputs)
  found: list = []
  n = inputs[0].aval.shape[0]
  _follow(jaxpr, {v: 0 for v in inputs}, n, found, 2 * count, ())
  kinds = [kind for kind, _, _ in found]
  if kinds.count(MARK) != count or kinds.count(DELTA) != count:
    return (f"{kinds.count(MARK)} tapped layer inputs and {kinds.count(DELTA)} output "
            f"gradients found in the traced program, {count} of each expected")
  for kind, layer, status in found:
    if kind == DELTA and n == 1:  # One example: the gradient is its own whatever the rows.
      continue
    what = "input" if kind == MARK else "output gradient"
    if status is None and kind == MARK:
      return f"the input of layer {layer} does not depend on the examples"
    if isinstance(status, int) and status:
      return f"the {what} of layer {layer} holds the examples on its axis {status}, not first"
    if isinstance(status, str):
      return f"the {what} of layer {layer} is not proven to hold one row per example: {status}"
  return None


_CALLS = frozenset("""jit pjit closed_call core_call named_call remat remat2 checkpoint
custom_jvp_call custom_vjp_call custom_vjp_call_jaxpr""".split())


def _follow(jaxpr, status: dict, n: int, found: list, count: float, callers: tuple) -> None:
  """Sets ``status[var]`` for the variables of ``jaxpr`` that depend on the examples, and
  appends ``(MARK or DELTA, layer, status)`` of each mark's value to ``found``; the output
  of the :data:`SOURCE` call holds the examples first. Stops once ``count`` marks are found
  (the backward pass after the last one feeds no formula). ``callers``:
  the calls that hold ``jaxpr``, innermost first (for :func:`_where`)."""
  for eqn in jaxpr.eqns:
    if len(found) >= count:
      return
    ins = [None if isinstance(v, jex_core.Literal) else status.get(v) for v in eqn.invars]
    name = eqn.primitive.name
    called = eqn.params.get("name") if name in ("jit", "pjit") else None
    if called in (MARK, DELTA):
      stack = re.findall(re.escape(MARK) + r"\[([^\]]*)\]", str(eqn.source_info.name_stack))
      found.append((called, stack[-1] if stack else "?", ins[0]))
    elif called == SOURCE:  # The backward pass's seed: row n is example n's.
      shape = getattr(eqn.outvars[0].aval, "shape", ())
      status[eqn.outvars[0]] = 0 if shape == (n,) else f"a loss seed of shape {shape}"
      continue
    inner = _inner(eqn)
    if inner is not None:  # A call: followed into (it may hold operations of either kind).
      outs = _call(inner, ins, n, found, count, (eqn, *callers))
    elif all(s is None for s in ins):
      continue
    elif name in _LOOPS:
      outs = _LOOPS[name](eqn, ins, n, found, (eqn, *callers))
    else:
      outs = [_rule(eqn, ins, n, callers)] * len(eqn.outvars)
    for var, s in zip(eqn.outvars, outs):
      if s is not None:
        status[var] = s


def _inner(eqn):
  """The sub-program of a call (``jit``, ``remat``, custom derivatives), or None."""
  if eqn.primitive.name not in _CALLS:
    return None
  inner = [getattr(p, "jaxpr", p) for p in eqn.params.values()
           if isinstance(p, (jex_core.Jaxpr, jex_core.ClosedJaxpr))]
  if (len(inner) == 1 and len(inner[0].invars) == len(eqn.invars)
      and len(inner[0].outvars) == len(eqn.outvars)):
    return inner[0]
  return None


def _call(inner, ins: list, n: int, found: list, count: float, callers: tuple) -> list:
  """The statuses of a sub-program's outputs, given its inputs'."""
  sub = {v: s for v, s in zip(inner.invars, ins) if s is not None}
  _follow(inner, sub, n, found, count, callers)
  return [None if isinstance(v, jex_core.Literal) else sub.get(v) for v in inner.outvars]


def _where(eqn, callers: tuple) -> str:
  """The operation, its main parameters and the innermost source line outside JAX, Flax and
  Python that staged it (else that of the innermost call of ``callers`` that holds it)."""
  frames = (f for e in (eqn, *callers)
            for f in getattr(getattr(e.source_info, "traceback", None), "frames", None) or ())
  line = next((f"{f.file_name}:{f.line_num}" for f in frames if _users(f.file_name)), None)
  keys = ("axes", "axis", "dimension", "dimensions", "permutation")
  shown = ", ".join(f"{k}={eqn.params[k]}" for k in keys if k in eqn.params)
  return f"'{eqn.primitive.name}'" + (f" ({shown})" if shown else "") + (
      f" at {line}" if line else "")


def _users(file: str) -> bool:
  """Whether a frame's file is neither JAX's, Flax's nor Python's own."""
  if file.startswith((_JAX, "<frozen")) or f"{os.sep}flax{os.sep}" in file:
    return False
  return not file.startswith(_PYTHON) or "-packages" in file


_JAX, _PYTHON = os.path.dirname(jax.__file__), os.path.dirname(os.__file__)


def _rule(eqn, ins: list, n: int, callers: tuple) -> Status:
  """The status of the outputs of one equation some of whose inputs depend on the examples."""
  for s in ins:
    if isinstance(s, str):
      return s
  axes = {i: s for i, s in enumerate(ins) if s is not None}
  rule = _AXIS_RULES.get(eqn.primitive.name)
  b = rule(eqn, axes) if rule is not None else None
  shapes = [getattr(v.aval, "shape", ()) for v in eqn.outvars]
  if b is None or not all(b < len(s) and s[b] == n for s in shapes):
    return _where(eqn, callers)
  return b


def _shape(eqn, i: int) -> tuple:
  return tuple(getattr(eqn.invars[i].aval, "shape", ()))


def _one(axes: dict) -> int | None:
  """The examples' axis where every dependent input has them on the same axis."""
  values = set(axes.values())
  return values.pop() if len(values) == 1 else None


def _along(key: str, collapse: bool = False):
  """Operations along the axes (or axis) ``params[key]``: the examples must be off them;
  ``collapse``: those axes leave the output."""
  def rule(eqn, axes):
    a, along = _one(axes), eqn.params[key]
    along = (along,) if isinstance(along, int) else tuple(along or ())
    if a is None or a in along:
      return None
    return a - sum(d < a for d in along) if collapse else a
  return rule


def _elementwise(eqn, axes):
  a = _one(axes)  # Inputs of another rank are scalars (clamp's bounds, select_n's predicate).
  rank = len(eqn.outvars[0].aval.shape)
  return a if all(len(_shape(eqn, i)) == rank for i in axes) else None


def _broadcast(eqn, axes):
  return eqn.params["broadcast_dimensions"][axes[0]] if list(axes) == [0] else None


def _reshape(eqn, axes):
  """Row-major: the examples' axis keeps its length and the product of the axes before it."""
  a, shape, out = axes.get(0), _shape(eqn, 0), eqn.outvars[0].aval.shape
  if list(axes) != [0] or eqn.params.get("dimensions") is not None:
    return None
  before = math.prod(shape[:a])
  return next((b for b in range(len(out))
               if out[b] == shape[a] and math.prod(out[:b]) == before), None)


def _transpose(eqn, axes):
  return tuple(eqn.params["permutation"]).index(axes[0]) if list(axes) == [0] else None


def _windows(eqn, axes):
  a, p = _one(axes), eqn.params
  operands = len(eqn.invars) // 2 if eqn.primitive.name == "reduce_window" else 1
  if a is None or any(i >= operands for i in axes):  # Not an initial value.
    return None
  whole = (p["window_dimensions"][a], p["window_strides"][a], tuple(p["padding"][a]),
           p["base_dilation"][a], p["window_dilation"][a]) == (1, 1, (0, 0), 1, 1)
  return a if whole else None


def _select_and_scatter_add(eqn, axes):
  """The transpose of a max pool: windows of one row along the examples' axis."""
  a, p = _one(axes), eqn.params
  whole = a is not None and (p["window_dimensions"][a], p["window_strides"][a],
                             tuple(p["padding"][a])) == (1, 1, (0, 0))
  return a if whole else None


def _unstack(eqn, axes):
  a, at = axes.get(0), eqn.params["axis"]
  return None if a is None or a == at else a - (a > at)


def _pad(eqn, axes):
  a = axes.get(0)
  return a if list(axes) == [0] and tuple(eqn.params["padding_config"][a]) == (0, 0, 0) else None


def _slice(eqn, axes):
  a, p = axes.get(0), eqn.params
  return a if list(axes) == [0] and p["start_indices"][a] == 0 and (
      p["strides"] is None or p["strides"][a] == 1) else None


def _dynamic_slice(eqn, axes):
  """Taken whole along the examples' axis (its start clamped to 0), start indices fixed."""
  a = axes.get(0)
  return a if list(axes) == [0] and eqn.params["slice_sizes"][a] == _shape(eqn, 0)[a] else None


def _dynamic_update_slice(eqn, axes):
  """The update either fixed or the examples' rows whole (its start clamped to 0)."""
  a = _one(axes)
  if a is None or any(i > 1 for i in axes):
    return None
  return a if 1 not in axes or _shape(eqn, 1)[a] == _shape(eqn, 0)[a] else None


def _concatenate(eqn, axes):
  a = _one(axes)
  return a if a is not None and a != eqn.params["dimension"] else None


def _stack(eqn, axes):
  a, at = _one(axes), eqn.params["axis"]
  return None if a is None else a + (a >= at)


def _tile(eqn, axes):
  a = axes.get(0)
  return a if list(axes) == [0] and eqn.params["reps"][a] == 1 else None


def _top_k(eqn, axes):
  a = axes.get(0)
  along = eqn.params.get("axis", len(_shape(eqn, 0)) - 1)
  return a if list(axes) == [0] and a != along % len(_shape(eqn, 0)) else None


def _fft(eqn, axes):
  a = axes.get(0)
  return a if list(axes) == [0] and a < len(_shape(eqn, 0)) - len(eqn.params["fft_lengths"]) \
      else None


def _free(shape_len: int, contract, batch) -> list:
  return [d for d in range(shape_len) if d not in contract and d not in batch]


def _dot_general(eqn, axes):
  """Output axes: batch, the left side's free axes, the right side's. The examples are on a
  batch axis of both sides (or of the one that depends on them), or a free axis of the one
  side that does."""
  (contract_l, contract_r), (batch_l, batch_r) = eqn.params["dimension_numbers"]
  left, right = axes.get(0), axes.get(1)
  free_l = _free(len(_shape(eqn, 0)), contract_l, batch_l)
  if left is not None and right is not None:
    pairs = list(zip(batch_l, batch_r))
    return pairs.index((left, right)) if (left, right) in pairs else None
  side, a = (0, left) if left is not None else (1, right)
  batch, contract = (batch_l, contract_l) if side == 0 else (batch_r, contract_r)
  if a in batch:
    return tuple(batch).index(a)
  free = _free(len(_shape(eqn, side)), contract, batch)
  if a not in free:
    return None
  return len(batch) + (free.index(a) if side == 0 else len(free_l) + free.index(a))


def _conv(eqn, axes):
  lhs, _, out = eqn.params["dimension_numbers"]
  return out[0] if (axes == {0: lhs[0]} and eqn.params["batch_group_count"] == 1) else None


def _gather(eqn, axes):
  """A gather whose operand keeps the examples' axis as a slice taken whole, or pairs it with
  a batch axis of the indices; or fixed data read at indices that depend on the examples."""
  d, sizes = eqn.params["dimension_numbers"], eqn.params["slice_sizes"]
  out_rank = len(eqn.outvars[0].aval.shape)
  index_axes = [i for i in range(out_rank) if i not in d.offset_dims]  # The indices' axes.
  operand, indices = axes.get(0), axes.get(1)
  batching = tuple(getattr(d, "operand_batching_dims", ()))
  paired = tuple(getattr(d, "start_indices_batching_dims", ()))
  if operand is None:
    return index_axes[indices] if indices < len(_shape(eqn, 1)) - 1 else None
  if operand in batching:
    c = paired[batching.index(operand)]
    return index_axes[c] if indices in (None, c) else None
  window = [i for i in range(len(sizes)) if i not in d.collapsed_slice_dims + batching]
  if (indices is not None or operand in d.start_index_map or operand not in window
      or sizes[operand] != _shape(eqn, 0)[operand]):
    return None
  return d.offset_dims[window.index(operand)]


def _scatter(eqn, axes):
  """A scatter at fixed indices along other axes, the examples' rows of the operand and of
  the updates (either may be fixed) taken whole and in place."""
  d = eqn.params["dimension_numbers"]
  batching = tuple(getattr(d, "operand_batching_dims", ()))
  if batching:
    return _batched_scatter(eqn, axes, d, batching)
  if 1 in axes:
    return None
  window = [i for i in range(len(_shape(eqn, 0))) if i not in d.inserted_window_dims]
  a = axes[0] if 0 in axes else (
      window[list(d.update_window_dims).index(axes[2])]
      if axes[2] in d.update_window_dims else None)
  if a is None or a in d.scatter_dims_to_operand_dims or a not in window:
    return None
  u = d.update_window_dims[window.index(a)]
  whole = _shape(eqn, 2)[u] == _shape(eqn, 0)[a]
  return a if whole and axes.get(2, u) == u else None


def _batched_scatter(eqn, axes, d, batching: tuple):
  """A scatter pairing the operand's examples' axis with a batch axis of the indices (the
  transpose of ``take_along_axis``, of a loss's ``logits[label]``): row ``n`` of the
  updates lands in row ``n`` of the operand only."""
  a = axes.get(0)
  if a is not None and a not in batching:
    return None
  scatter = [i for i in range(len(_shape(eqn, 2))) if i not in d.update_window_dims]
  for b, c in zip(batching, d.scatter_indices_batching_dims):
    if a not in (None, b) or c >= len(scatter):
      continue
    if axes.get(1, c) == c and axes.get(2, scatter[c]) == scatter[c]:
      return b
  return None


_ELEMENTWISE = """abs acos acosh add add_any and asin asinh atan atan2 atanh bessel_i0e bessel_i1e
cbrt ceil clamp complex conj convert_element_type copy copy_p cos cosh digamma div eq erf
erf_inv erfc exp exp2 expm1 floor ge gt igamma igammac imag integer_pow is_finite le lgamma
log log1p logistic lt max min mul ne neg nextafter not or polygamma population_count pow real
reduce_precision rem round rsqrt select_n shift_left shift_right_arithmetic
shift_right_logical sign sin sinh sqrt square stop_gradient sub tan tanh xor zeta""".split()
_REDUCTIONS = """reduce_sum reduce_max reduce_min reduce_prod reduce_and reduce_or reduce_xor
argmax argmin""".split()
_CUMULATIVE = "cumsum cumprod cummax cummin cumlogsumexp".split()
_SCATTERS = "scatter scatter-add scatter_add scatter-mul scatter_mul scatter-min scatter_min \
scatter-max scatter_max".split()

#: ``rule(eqn, {input index: its examples' axis}) -> the outputs' examples' axis or None``,
#: for the inputs that depend on the examples; None: not proven.
_AXIS_RULES: dict[str, Callable[..., int | None]] = {
    **{name: _elementwise for name in _ELEMENTWISE},
    **{name: _along("axes", collapse=True) for name in _REDUCTIONS},
    **{name: _along("axis") for name in _CUMULATIVE},
    **{name: _windows for name in
       "reduce_window_sum reduce_window_max reduce_window_min reduce_window".split()},
    **{name: _scatter for name in _SCATTERS},
    "broadcast_in_dim": _broadcast, "reshape": _reshape, "transpose": _transpose,
    "squeeze": _along("dimensions", collapse=True), "rev": _along("dimensions"),
    "sort": _along("dimension"), "split": _along("axis"), "tile": _tile, "top_k": _top_k,
    "pad": _pad, "slice": _slice, "dynamic_slice": _dynamic_slice,
    "dynamic_update_slice": _dynamic_update_slice, "concatenate": _concatenate, "stack": _stack,
    "unstack": _unstack, "select_and_scatter_add": _select_and_scatter_add,
    "fft": _fft, "dot_general": _dot_general, "conv_general_dilated": _conv,
    "gather": _gather,
}


def _join(a: Status, b: Status, where: str) -> Status:
  """One status for a value that is ``a`` or ``b`` (a branch's, a loop's iteration's)."""
  if a is None or a == b or isinstance(a, str):
    return b if a is None else a
  if b is None:
    return a
  return b if isinstance(b, str) else f"{where}: its examples' axis moves from {a} to {b}"


def _inside(jaxpr, ins: list, n: int, found: list, where: str, callers: tuple) -> list:
  """A branch's or loop body's output statuses; a tapped layer inside makes its input unknown."""
  inner: list = []
  outs = _call(jaxpr, ins, n, inner, math.inf, callers)
  found.extend((kind, layer, f"the layer runs inside {where}") for kind, layer, _ in inner)
  return outs


def _cond(eqn, ins: list, n: int, found: list, callers: tuple) -> list:
  where = _where(eqn, callers)
  if ins[0] is not None:
    return [f"{where}: the branch taken depends on the examples"] * len(eqn.outvars)
  outs = [None] * len(eqn.outvars)
  for branch in eqn.params["branches"]:
    taken = _inside(branch.jaxpr, ins[1:], n, found, where, callers)
    outs = [_join(a, b, where) for a, b in zip(outs, taken)]
  return outs


def _fixed_point(body, consts: list, carry: list, xs: list, n: int, where: str, callers: tuple):
  """The carry's statuses over every iteration (each pass only widens them: None, an axis,
  a reason), the body's other outputs' statuses, and the marks the body holds."""
  while True:
    marks: list = []
    outs = _inside(body, consts + carry + xs, n, marks, where, callers)
    joined = [_join(a, b, where) for a, b in zip(carry, outs[:len(carry)])]
    if joined == carry:
      return carry, outs[len(carry):], marks
    carry = joined


def _while(eqn, ins: list, n: int, found: list, callers: tuple) -> list:
  p, where = eqn.params, _where(eqn, callers)
  nc, nb = p["cond_nconsts"], p["body_nconsts"]
  carry, _, marks = _fixed_point(p["body_jaxpr"].jaxpr, ins[nc:nc + nb], ins[nc + nb:], [], n,
                                 where, callers)
  found.extend(marks)
  test = _inside(p["cond_jaxpr"].jaxpr, ins[:nc] + carry, n, found, where, callers)
  if test[0] is not None:
    return [f"{where}: its trip count depends on the examples"] * len(eqn.outvars)
  return carry


def _scan(eqn, ins: list, n: int, found: list, callers: tuple) -> list:
  p, where = eqn.params, _where(eqn, callers)
  nk, nc = p["num_consts"], p["num_carry"]
  xs = [s if s is None or isinstance(s, str) else (
      s - 1 if s else f"{where}: it loops over the examples") for s in ins[nk + nc:]]
  carry, ys, marks = _fixed_point(p["jaxpr"].jaxpr, ins[:nk], ins[nk:nk + nc], xs, n, where,
                                  callers)
  found.extend(marks)
  return carry + [s + 1 if isinstance(s, int) else s for s in ys]


_LOOPS = {"cond": _cond, "while": _while, "scan": _scan}
