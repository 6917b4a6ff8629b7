"""Exact per-example squared gradients from layer inputs and output gradients.

For the layers below, the gradient of one example's loss with respect to the layer's
parameters is a function of the layer's input ``x_n`` and of ``delta_n``, the gradient of
that example's loss with respect to the layer's output. Both come out of ONE batched
backward pass: Flax's ``intercept_methods`` passes each layer's input and output through an
identity whose backward rule receives ``delta`` and applies the layer's formula there, so
the model is traced once, forward and backward together. No ``vmap`` over examples, no
per-example backward pass.

* ``nn.Dense`` and ``nn.DenseGeneral`` (any contracted axes but the batch axis, no
  ``batch_dims``; the query/key/value/out projections of
  ``nn.MultiHeadDotProductAttention``) on ``(N, features)``:
  ``sum_n w_n (x_n delta_n^T)^2 = (w x^2)^T delta^2``, one matrix product; on
  ``(N, T..., features)`` (tokens) the per-example gradient
  ``x_n^T delta_n = sum_t x_nt delta_nt^T`` is one batched matrix product.
* ``nn.Conv`` (no groups or dilation): per-example kernel gradients are
  ``patches_n^T delta_n`` (a batched matrix product over im2col patches).
* ``nn.BatchNorm`` in inference mode: ``d scale = sum delta * x_hat``, ``d bias = sum delta``,
  with ``x_hat`` from the running statistics.
* ``nn.LayerNorm`` and ``nn.RMSNorm`` (reduction and feature axes off the batch axis, no
  ``axis_name`` or ``mask``): the same sums with ``x_hat`` recomputed from ``x_n`` alone
  (each example is normalised by its own statistics, so the layer is per-example).
* Any module type given to :func:`register_layer` with its own per-example formula (the
  ViT's class token and position embedding, :mod:`mnemonic_jax.models.vit`).

Parameter-free operations between the layers (attention's softmax and ``einsum`` calls,
activations, residual sums, reshapes, slicing) need nothing: ``delta`` flows through them
in the batched backward pass. This holds as long as no operation mixes examples, which
the Fisher asks of every ``apply_fn`` anyway.

:func:`covers` says whether every parameter leaf sits in such a layer, each called once on
an input whose rows are the examples (:mod:`mnemonic_jax.layer_rows`); the Fisher then
takes this path (``method="factorized"``), else the generic ``vmap`` one.

Sources: the outer-product form of per-example gradients of a linear layer is
Goodfellow, *Efficient per-example gradient computations*, arXiv:1510.01799 (2015); the
same layer-by-layer rules (Dense, Conv, norms) are those of BackPACK (Dangel, Kunstner
and Hennig, ICLR 2020, ``BatchGrad`` / ``BatchL2Grad``) and Opacus' grad samplers.
"""

import functools
import threading
import weakref
from typing import Any, Callable, Mapping, NamedTuple

import flax.linen as nn
from flax.core import tracers as flax_tracers
import jax
import jax.numpy as jnp
from jax.extend import core as jex_core
import numpy as np

from mnemonic_jax import errors, layer_rows
from mnemonic_jax.layer_formulas import (  # noqa: F401  (_patches: importable from here)
    LAYER_FORMULAS as _LAYER_FORMULAS, _patches)
from mnemonic_jax.pytrees import as_pytree

PyTree = Any
#: ``formula(module, x, delta) -> {param name: (N, *param.shape)}``, see :func:`register_layer`.
PerExampleFormula = Callable[[nn.Module, jax.Array, jax.Array], Mapping[str, jax.Array]]


class Tap(NamedTuple):
  """One layer call: its kind, input, what its gradient formula needs, and its output.

  Attributes:
    kind: a key of ``_LAYER_FORMULAS``: ``"dense"``, ``"conv"``, ``"batchnorm"``,
      ``"norm"`` (LayerNorm, RMSNorm) or ``"registered"``.
    x: the layer's input (its first positional argument).
    aux: dense: ``(contracted axes,)``; conv: ``(window, strides, padding)``;
      batchnorm: ``(mean, var, epsilon)``; norm: ``(reduction axes, feature axes,
      epsilon, use_mean, use_fast_variance)``; registered: ``(formula, module)``.
    out: shape and dtype of the layer's output.
  """

  kind: str
  x: jax.Array
  aux: tuple
  out: jax.ShapeDtypeStruct


class Unsupported(Exception):
  """A layer this path cannot handle exactly (the caller falls back to vmap)."""


class _Shared(Unsupported):
  """A layer called more than once (:func:`factorized_step` says which)."""


_REGISTERED: dict[type, PerExampleFormula] = {}


def register_layer(module_type: type, formula: PerExampleFormula) -> None:
  """Declares the exact per-example parameter gradients of a Flax module type.

  After this, :func:`covers` accepts the parameters of ``module_type`` layers and the
  factorised Fisher computes them as ``formula(module, x, delta)``, where ``x`` is the
  layer call's first positional argument ``(N, ...)`` and ``delta`` the gradient of the
  summed per-example losses with respect to the call's output. Row ``n`` of each
  returned array must be the gradient of example ``n``'s loss alone, which holds when the
  layer's output row ``n`` depends on ``x_n`` and the parameters only, and the
  parameters are used nowhere else. Only the exact type is matched (not subclasses).
  :func:`covers` checks the returned names and shapes against the parameters; the
  values are the formula's responsibility (test it against ``method="vmap"``).

  Args:
    module_type: a ``flax.linen.Module`` subclass.
    formula: ``(module, x, delta) -> {param name: (N, *param.shape)}``, traceable.

  Raises:
    TypeError: ``module_type`` is not a Flax Linen module class, ``formula`` is not
      callable, or ``module_type`` is one of the built-in layers.

  Example:
    >>> class Shift(nn.Module):  # y = x + b
    ...   @nn.compact
    ...   def __call__(self, x):
    ...     return x + self.param("b", nn.initializers.zeros, x.shape[1:])
    >>> register_layer(Shift, lambda module, x, delta: {"b": delta})
  """
  if not (isinstance(module_type, type) and issubclass(module_type, nn.Module)):
    raise errors.BadRequestType(
        f"module_type must be a flax.linen.Module subclass, got {module_type!r}")
  if module_type in _BUILT_IN:
    raise errors.BadRequestType(f"{module_type.__name__} has a built-in formula")
  if not callable(formula):
    raise errors.BadRequestType(f"formula must be callable, got {type(formula).__name__}")
  _REGISTERED[module_type] = formula


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


def _axes(axes, ndim: int) -> tuple[int, ...]:
  """Sorted non-negative axes (Flax's ``_normalize_axes`` / ``_canonicalize_axes``)."""
  axes = (axes,) if isinstance(axes, int) else tuple(axes)
  return tuple(sorted({a + ndim if a < 0 else a for a in axes}))


def _tap_of(module: nn.Module, args, kwargs, batch: int) -> tuple[str, tuple] | None:
  """``(kind, aux)`` of a supported layer call; None for any other module.

  Raises:
    Unsupported: a supported layer type in a configuration this path cannot handle.
  """
  kind = type(module)
  if kind not in _BUILT_IN and kind not in _REGISTERED:
    if isinstance(module, _BUILT_IN):  # Subclasses may differ.
      raise Unsupported(kind.__name__)
    return None  # Other modules: their own parameters, if any, are left uncovered.
  if not args:  # The input given as a keyword: the formulas read the first argument.
    raise Unsupported(f"{kind.__name__} called with its input as a keyword")
  x = args[0]
  if not hasattr(x, "shape") or x.ndim < 1 or x.shape[0] != batch:  # Time-major, a grid.
    raise Unsupported(f"{kind.__name__} whose first axis is not the batch of examples")
  if getattr(module, "mask", None) is not None or any(
      getattr(module, own, None) is not None for own in (
          "dot_general", "dot_general_cls", "conv_general_dilated", "conv_general_dilated_cls")):
    raise Unsupported(f"{kind.__name__} with a mask or a product of its own")
  if kind is nn.Dense:
    return "dense", ((x.ndim - 1,),)
  if kind is nn.DenseGeneral:
    axis = _axes(module.axis, x.ndim)
    if (module.batch_dims or 0 in axis or module.dot_general is not None
        or module.dot_general_cls is not None):
      raise Unsupported("DenseGeneral with batch_dims, contracting the batch axis, or with "
                        "its own dot_general")
    return "dense", (axis,)
  if kind is nn.Conv:
    window = tuple(module.kernel_size)
    ndim = len(window)
    if (module.feature_group_count != 1 or set(_tuple(module.kernel_dilation, ndim)) != {1}
        or set(_tuple(module.input_dilation, ndim)) != {1} or x.ndim != ndim + 2):
      raise Unsupported("grouped, dilated or unbatched convolution")
    return "conv", (window, _tuple(module.strides, ndim), _conv_padding(module.padding, ndim))
  if kind is nn.BatchNorm:
    running = nn.merge_param(
        "use_running_average", module.use_running_average, kwargs.get("use_running_average"))
    if not running or module.axis != -1 or module.axis_name is not None:
      raise Unsupported("BatchNorm in training mode")
    return "batchnorm", (module.get_variable("batch_stats", "mean"),
                         module.get_variable("batch_stats", "var"), module.epsilon)
  if kind in (nn.LayerNorm, nn.RMSNorm):
    reduction = _axes(module.reduction_axes, x.ndim)
    features = _axes(module.feature_axes, x.ndim)
    if (0 in reduction or 0 in features or module.axis_name is not None
        or kwargs.get("mask") is not None or len(args) > 1):
      raise Unsupported(f"{kind.__name__} over the batch axis, across devices or masked")
    return "norm", (reduction, features, module.epsilon, kind is nn.LayerNorm,
                    module.use_fast_variance)
  return "registered", (_REGISTERED[kind], module)


def tapped_apply(apply_fn, params, x, offsets):
  """Runs ``apply_fn`` recording a :class:`Tap` per layer call; adds ``offsets[path]`` to outputs.

  Args:
    apply_fn: ``apply_fn(params, x) -> logits``.
    params: its parameters.
    x: a batch of inputs.
    offsets: ``{module path: array shaped like the layer's output}`` added to each
      supported layer's output (zeros: their gradient is ``delta``), or None.

  Returns:
    ``(logits, {module path: Tap})``.

  Raises:
    Unsupported: a supported layer is called more than once, under a transform the model
      applies itself (``nn.remat``, a lifted ``nn.vmap``: its input would be a tracer of
      that transform, leaked), or in a configuration this path cannot handle.
  """
  if offsets is None:
    return _intercepted(apply_fn, params, x, lambda path, tap, y: y)
  return _intercepted(apply_fn, params, x, lambda path, tap, y: y + offsets[path])


def _intercepted(apply_fn, params, x, finish):
  """:func:`tapped_apply` with ``finish(path, tap, y)`` giving each tapped layer's output."""
  taps = {}
  outer = flax_tracers.current_trace()

  def interceptor(next_fun, args, kwargs, context):
    if context.method_name != "__call__":
      return next_fun(*args, **kwargs)
    found = _tap_of(context.module, args, kwargs, x.shape[0])
    if found is None:
      return next_fun(*args, **kwargs)
    path = tuple(context.module.scope.path)
    if path in taps:  # A layer called twice has no single (input, output) pair.
      raise _Shared(f"layer {'/'.join(map(str, path))} is called more than once: its "
                    "parameters are read by each call (a shared layer has no single input "
                    "and output gradient)")
    if flax_tracers.current_trace() != outer:  # Its input would leak out of the transform.
      raise Unsupported(f"layer {path} runs under a transform of the model's own (nn.remat, "
                        "nn.vmap, ...)")
    with jax.named_scope(_scope(path)):  # Marks its operations (see _read_elsewhere).
      y = next_fun(*args, **kwargs)
    if not isinstance(y, jax.Array):
      raise Unsupported(f"layer {path} does not return one array")
    taps[path] = Tap(found[0], args[0], found[1], jax.ShapeDtypeStruct(y.shape, y.dtype))
    return finish(path, taps[path], y)

  with nn.intercept_methods(interceptor):
    logits = apply_fn(params, x)
  return logits, taps


def covers(apply_fn, params: PyTree, inputs: jax.Array) -> bool:
  """Whether every parameter leaf of ``params`` is in a layer this path handles.

  Each such layer must be called once, and the gradient formula of its kind must give an
  array of the parameter's shape for each of the layer's parameters (checked abstractly
  on a batch of two, with the float logits summed as the loss: nothing is computed).

  Args:
    apply_fn: ``apply_fn(params, x) -> logits``.
    params: a pytree of nested dicts (Flax ``params``; with ``apply_fn = model.apply``,
      the variables dict ``{"params": params}`` holding nothing else works too).
    inputs: ``(N, *input_shape)``; only its shape and dtype are used.

  Returns:
    True when ``method="factorized"`` computes every leaf exactly.
  """
  batch = jax.ShapeDtypeStruct((2, *inputs.shape[1:]), inputs.dtype)
  labels = jax.ShapeDtypeStruct((2,), jnp.int32)
  weights = jax.ShapeDtypeStruct((1, 2), jnp.float32)
  return factorized_step(apply_fn, params, batch, labels, weights, _summed) is not None


def _summed(logits, labels):
  """:func:`covers`' loss: each example's float logits summed, ``(N,)`` (one function: one
  cached trace); a leaf without the examples first is summed whole and added to each."""
  n = labels.shape[0]
  return sum(jnp.sum(v.reshape(n, -1), 1) if v.ndim and v.shape[0] == n else jnp.sum(v)
             for v in jax.tree.leaves(logits) if jnp.issubdtype(v.dtype, jnp.floating))


def factorized_step(apply_fn, params: PyTree, x, y, w, loss_fn, why: list | None = None
                    ) -> Callable[[PyTree, jax.Array, jax.Array, jax.Array], PyTree] | None:
  """:func:`weighted_squared_gradients` traced once, or None where :func:`covers` is False.

  The one trace of the model answers both questions: whether every parameter is covered
  (and read nowhere but in its layer, see :func:`_read_elsewhere`; each layer's input
  holding one row per example, see :mod:`mnemonic_jax.layer_rows`), and the program
  itself: the returned function calls the jitted program whose trace this was (cached by
  ``jax.jit`` for this model, these shapes and this loss: no second trace of the model).

  Args:
    apply_fn, params, loss_fn: as :func:`weighted_squared_gradients` (``params`` concrete
      or traced: the function is called with these same parameters).
    x, y, w: inputs ``(N, ...)``, labels ``(N,)`` and weights ``(K, N)``: arrays or
      ``jax.ShapeDtypeStruct``, of the shapes and dtypes the function is called with.
    why: a list; where every parameter is in a tapped layer but the program is refused, a
      sentence saying why is appended to it (a parameter read outside its layer, or the
      layer whose input is not proven to hold one row per example and the operation that
      lost the examples' axis).

  Returns:
    ``step(params, x, y, w)``: what :func:`weighted_squared_gradients` returns; or None.
  """
  apply_fn = as_pytree(apply_fn)
  # Looked up at each call (not bound on import): tests watch which path runs.
  options = dict(program=weighted_squared_gradients, loss_fn=loss_fn)
  _traced.scopes = {}
  try:
    closed = _program.trace(apply_fn, params, x, y, w, **options).jaxpr
  except Unsupported as e:
    if why is not None and isinstance(e, _Shared):
      why.append(str(e))
    return None
  if closed not in _verdicts:  # Traced just now (else jax.jit's cache had it).
    if not _traced.scopes:
      return None
    first = len(jax.tree.leaves(apply_fn))
    keypaths = [_keys(kp) for kp, _ in jax.tree_util.tree_flatten_with_path(params)[0]]
    owners = dict(zip(closed.jaxpr.invars[first:], (_traced.scopes[k] for k in keypaths)))
    # And whether each tapped layer's input holds one row per example (walk5 V16).
    # And each one's output gradient (walk8 F1); the examples and labels are followed.
    examples = closed.jaxpr.invars[first + len(keypaths):first + len(keypaths) + 2]
    _verdicts[closed] = _ELSEWHERE if _read_elsewhere(closed.jaxpr, owners, "") else (
        layer_rows.unproven(closed.jaxpr, examples, len(set(_traced.scopes.values()))) or "")
  if _verdicts[closed]:
    if why is not None:
      why.append(_verdicts[closed])
    return None
  return lambda params, x, y, w: _program(apply_fn, params, x, y, w, **options)


@functools.partial(jax.jit, static_argnames=("program", "loss_fn"))
def _program(apply_fn, params, x, y, w, *, program, loss_fn):
  """``program(apply_fn, params, x, y, w, loss_fn)`` jitted (:func:`factorized_step`): its
  trace is cached for the model, shapes and loss, so the caller's program traces nothing
  again to call it; the layers' scopes of a fresh trace go to ``_traced.scopes``."""
  return program(apply_fn, params, x, y, w, loss_fn, scopes=_traced.scopes)


_traced = threading.local()
#: Why each cached trace of :func:`_program` is refused ("" where it is not): a parameter
#: read outside its layer, or :func:`layer_rows.unproven`'s sentence.
_verdicts: "weakref.WeakKeyDictionary[Any, str]" = weakref.WeakKeyDictionary()
_ELSEWHERE = "a parameter is read outside its own layer (a tied kernel, a penalty, ...)"


def _scope(path: tuple) -> str:
  """The name scope a tapped layer's operations run in (see :func:`_read_elsewhere`)."""
  return f"mnemonic_jax_tap[{'/'.join(map(str, path))}]"


def _read_elsewhere(jaxpr, owners: dict, stack: str) -> bool:
  """Whether an operation outside a parameter's own layer reads it.

  A parameter read again outside its layer (a tied read-out ``h @ kernel.T``, a penalty
  computed in ``__call__``) gets gradient that the layer's formula, which sees only the
  layer's input and output gradient, misses: the factorized Fisher would be silently
  wrong there (walk4 W13: 78% off on a tied kernel). Each tapped layer's operations run in
  its own name scope (:func:`_scope`, recorded in every equation's name stack); calls of
  sub-programs (``jit``, ``remat``, custom derivatives) are followed into, any other
  reader outside the owner's scope counts.

  Args:
    jaxpr: the traced model (a ``jax.extend.core.Jaxpr``).
    owners: ``{variable of a parameter leaf: its layer's scope}``.
    stack: the name stack of the equation that called ``jaxpr`` ("" at the top).

  Returns:
    True if some parameter is read outside its layer's scope.
  """
  for eqn in jaxpr.eqns:
    where = f"{stack}/{eqn.source_info.name_stack}"
    read = [(i, owners[v]) for i, v in enumerate(eqn.invars)
            if not isinstance(v, jex_core.Literal) and v in owners]
    if not read:
      continue
    inner = [getattr(p, "jaxpr", p) for p in eqn.params.values()
             if isinstance(p, (jex_core.Jaxpr, jex_core.ClosedJaxpr))]
    if len(inner) == 1 and len(inner[0].invars) == len(eqn.invars):
      if _read_elsewhere(inner[0], {inner[0].invars[i]: o for i, o in read}, where):
        return True
    elif any(scope not in where for _, scope in read):
      return True
  return False


def weighted_squared_gradients(apply_fn, params, x, y, w, loss_fn, scopes=None) -> PyTree:
  """``sum_n w[k, n] * g_n ** 2`` for every k, with leaves of shape ``(K, *param.shape)``.

  One batched backward pass: each tapped layer's output passes through :func:`_probe`,
  whose backward rule applies the layer's formula to its input and output gradient and
  returns the sums as the gradient of a zero "probe" shaped like the result. The sums are
  the gradient with respect to the probes (the same operations as adding zero offsets to
  the outputs and applying the formulas to their gradients, without first tracing the
  model to learn the outputs' shapes).

  Args:
    apply_fn: ``apply_fn(params, x) -> logits``, with :func:`covers` true.
    params: its parameters.
    x: ``(N, *input_shape)`` inputs.
    y: ``(N,)`` labels.
    w: ``(K, N)`` weights.
    loss_fn: per-example loss ``(logits, labels) -> (N,)``.
    scopes: a dict, filled with ``{leaf's key path: its layer's name scope}``.

  Returns:
    A pytree shaped like ``params`` with a leading axis ``K``, float32.

  Raises:
    Unsupported: a parameter outside the layers this path handles (or in a layer whose
      formula gives other names or shapes). Where a parameter is also read outside its
      layer the sums are wrong: :func:`factorized_step` checks that.
  """
  leaves = jax.tree_util.tree_flatten_with_path(params)[0]
  if not all(isinstance(k, jax.tree_util.DictKey) for kp, _ in leaves for k in kp):
    raise Unsupported("parameters that are not nested dicts")
  scopes = {} if scopes is None else scopes
  dtype = jnp.promote_types(w.dtype, jnp.float32)  # The formulas' sums' dtype.
  probes = jax.tree.map(lambda p: jnp.zeros((w.shape[0], *jnp.shape(p)), dtype), params)

  def total_loss(probes):
    scopes.clear()

    def finish(path, tap, out):
      root, node = _node(probes, path)
      keys = {root + path + (name,): _scope(path) for name in node}
      if keys.keys() & scopes.keys():
        raise Unsupported(f"layer {path}'s parameters are another layer's too")
      scopes.update(keys)
      aux, tree = jax.tree.flatten(tap.aux)
      arrays = [isinstance(v, (jax.Array, np.ndarray)) for v in aux]
      static = tree.unflatten([None if a else v for v, a in zip(aux, arrays)])
      spec = _ProbeSpec(tap._replace(x=None, aux=static), tuple(arrays), path, out.dtype,
                        {name: jnp.shape(p) for name, p in node.items()})
      marked = layer_rows.mark(tap.x, "/".join(map(str, path)))
      return _probe(spec, out, marked, [v for v, a in zip(aux, arrays) if a], node, w)

    logits, _ = _intercepted(apply_fn, params, x, finish)
    if set(scopes) != {_keys(kp) for kp, _ in leaves}:
      raise Unsupported("a parameter outside the layers this path handles")
    losses = loss_fn(logits, y)
    if jnp.shape(losses) != jnp.shape(y):
      raise Unsupported(f"loss_fn gives shape {jnp.shape(losses)}, not one loss per example")
    return jnp.sum(_seeded(losses))

  return jax.grad(total_loss)(probes)


class _ProbeSpec(NamedTuple):
  """What :func:`_probe` needs besides arrays: the tap (its input left out), which of its
  ``aux`` leaves are arrays (passed apart), the layer's path, its output dtype and the
  probes' shapes ``{param name: (K, *param.shape)}``."""

  tap: Tap
  arrays: tuple
  path: tuple
  dtype: Any
  shapes: dict


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _probe(spec, out, x, arrays, probes, w):
  """The layer's output plus float32 zeros (the promotion of ``out + offsets``); the
  gradient w.r.t. ``probes`` is the layer's weighted sums (:func:`_probe_bwd`)."""
  del spec, x, arrays, probes, w
  return out + jnp.zeros(out.shape, jnp.float32)


def _probe_fwd(spec, out, x, arrays, probes, w):
  return _probe(spec, out, x, arrays, probes, w), (x, arrays, w)


@jax.custom_vjp
def _seeded(losses):
  """``losses`` ``(N,)`` itself; its cotangent passes through :func:`layer_rows.source`."""
  return losses


_seeded.defvjp(lambda losses: (losses, None), lambda _, g: (layer_rows.source(g),))


def _probe_bwd(spec, residuals, delta):
  x, arrays, w = residuals
  delta = layer_rows.mark_delta(delta, "/".join(map(str, spec.path)))
  leaves, tree = jax.tree.flatten(spec.tap.aux, is_leaf=lambda v: v is None)
  arrays = iter(arrays)
  aux = tree.unflatten([next(arrays) if a else v for v, a in zip(leaves, spec.arrays)])
  tap = spec.tap._replace(x=x, aux=aux)
  sums = _LAYER_FORMULAS[tap.kind](tap, delta.astype(jnp.float32), w)
  if not all(name in sums and sums[name].shape == shape for name, shape in spec.shapes.items()):
    raise Unsupported(f"layer {spec.path}'s formula gives {jax.tree.map(jnp.shape, sums)}")
  return delta.astype(spec.dtype), None, None, {name: sums[name] for name in spec.shapes}, None


_probe.defvjp(_probe_fwd, _probe_bwd)


_BUILT_IN = (nn.Dense, nn.DenseGeneral, nn.Conv, nn.BatchNorm, nn.LayerNorm, nn.RMSNorm)


def _node(probes, path: tuple) -> tuple[tuple, dict]:
  """``(root, node)``: the dict of a layer's leaves at ``root + path`` in ``probes`` (shaped
  like the parameters); ``root`` is ``()``, or ``("params",)`` for a Flax variables dict
  ``{"params": tree}`` passed whole with ``apply_fn = model.apply``.

  Raises:
    Unsupported: no such dict of leaves (the layer's parameters are elsewhere).
  """
  roots = [()]
  if isinstance(probes, dict) and list(probes) == ["params"]:
    roots.append(("params",))
  for root in roots:
    node = _get(probes, root + path)
    if isinstance(node, dict) and node and not any(isinstance(v, dict) for v in node.values()):
      return root, node
  raise Unsupported(f"layer {path}'s parameters are not where params holds them")


def _keys(keypath):
  return tuple(k.key for k in keypath)


def _get(tree, path):
  for name in path:
    if not isinstance(tree, dict) or name not in tree:
      return None
    tree = tree[name]
  return tree
