"""Every check of the library's edge, in one place, so no entry point can skip one.

Each check raises a :class:`~mnemonic_jax.errors.BadRequestType` (a ``TypeError``: wrong
kind of value) or :class:`~mnemonic_jax.errors.BadRequest` (a ``ValueError``: right kind,
wrong value) whose message names the argument and says how to fix it. The public entry
points (:func:`mnemonic_jax.forget`, :func:`mnemonic_jax.fisher_diagonal`,
:func:`mnemonic_jax.class_fishers`, :func:`mnemonic_jax.select_lambdas`, the
baselines) call these before any work. Value checks run on concrete arrays only: under
``jax.jit`` the caller's own program is responsible for its values.

Modelled on the single validation module of ``jax_privacy`` (``_validate.py``).
"""

import math
import os
import pathlib
import sys
from collections.abc import Mapping
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from mnemonic_jax import environment
from mnemonic_jax import errors
from mnemonic_jax.pytrees import as_pytree

PyTree = Any


def is_integer(value: Any) -> bool:
  if isinstance(value, (bool, np.bool_)):
    return False
  if isinstance(value, (int, np.integer)):
    return True
  dtype = getattr(value, "dtype", None)
  return dtype is not None and np.ndim(value) == 0 and np.issubdtype(dtype, np.integer)


def real_dtype(dtype: Any) -> bool:
  """Whether ``dtype`` is an int or float dtype (bfloat16 and float8 included; not bool).

  The one dtype test of "real numbers": NumPy gives ml_dtypes' bfloat16 and float8 the kind
  ``'V'``, so ``dtype.kind in "iuf"`` would call a bfloat16 model's logits not numbers.
  """
  return (not np.issubdtype(dtype, np.bool_)
          and (np.issubdtype(dtype, np.integer) or jnp.issubdtype(dtype, jnp.floating)))


def is_real(value: Any) -> bool:
  """Whether ``value`` is one concrete real number: a Python or NumPy int or float, or a
  0-d int or float array (not a bool, a string, a tracer, or an array with dimensions)."""
  if isinstance(value, (bool, np.bool_, jax.core.Tracer)):
    return False
  if isinstance(value, (int, float, np.integer, np.floating)):
    return True
  dtype = getattr(value, "dtype", None)
  return dtype is not None and np.ndim(value) == 0 and real_dtype(dtype)


def real_sequence(values: Any, name: str, *, what: str = "numbers") -> np.ndarray:
  """``values`` checked as a 1-d sequence of real numbers (a tuple, a list or a 1-d int or
  float array); returns them as a float64 NumPy array (the range is the caller's to check).

  Raises:
    BadRequestType: a string, a single number, None, a nested sequence, or an entry
      that is not a real number (a string, a bool, None); the message names ``name``.
  """
  said = f"{name} must be a sequence of {what}"
  if isinstance(values, jax.core.Tracer):
    raise errors.BadRequestType(f"{said}, concrete: it is traced (under jax.jit, vmap or "
                                "grad) but read on the host; pass it from outside")
  if hasattr(values, "dtype") and hasattr(values, "shape"):
    if np.ndim(values) != 1 or not real_dtype(values.dtype):
      raise errors.BadRequestType(f"{said}, got an array of dtype {values.dtype} and shape "
                                  f"{tuple(np.shape(values))}")
  elif isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
    raise errors.BadRequestType(f"{said}, got {type(values).__name__} {values!r:.60}")
  else:
    wrong = [v for v in values if not is_real(v)]
    if wrong:
      raise errors.BadRequestType(f"{said}, got entries {wrong[:3]!r:.80} (not real numbers)")
  return np.asarray(values, np.float64).reshape(-1)


def number(value: Any, name: str, *, low: float | None = None, high: float | None = None,
           above: float | None = None, hint: str = "") -> float:
  """``value`` checked as one real number in range; returns it as a float.

  A real number is a Python or NumPy int or float, or a concrete 0-d int or float array;
  the range is ``[low, high]`` (either end may be None), ``> above`` when given, and
  always finite.

  Raises:
    BadRequestType: a bool, str, None, complex, sequence or array with dimensions, or a
      value traced by ``jax.jit``, ``vmap`` or ``grad`` (it is read on the host); the
      message names ``name`` and the range, and adds ``hint``.
    BadRequest: NaN, inf, or outside the range.
  """
  bounds = [f">= {low:g}" if low is not None and high is None else "",
            f"in [{low:g}, {high:g}]" if low is not None and high is not None else "",
            f"<= {high:g}" if high is not None and low is None else "",
            f"> {above:g}" if above is not None else ""]
  wanted = f"a finite number {' and '.join(b for b in bounds if b)}".rstrip()
  said = f"{name} must be {wanted}"
  hint = f"; {hint}" if hint else ""
  if isinstance(value, jax.core.Tracer):
    raise errors.BadRequestType(f"{said}, concrete: it is traced (under jax.jit, vmap or "
                                f"grad) but read on the host; pass it from outside{hint}")
  if not is_real(value):
    dtype = getattr(value, "dtype", None)
    kind = (f"an array of shape {np.shape(value)}" if dtype is not None and np.ndim(value)
            else type(value).__name__)
    raise errors.BadRequestType(f"{said}, got {value!r} ({kind}){hint}")
  number_ = float(value)
  if not (math.isfinite(number_) and (low is None or number_ >= low)
          and (high is None or number_ <= high) and (above is None or number_ > above)):
    raise errors.BadRequest(f"{said}, got {number_:g}{hint}")
  return number_


def stored_number(value: Any) -> Any:
  """A checked real number as an options object keeps it: a 0-d array (JAX or NumPy)
  becomes its Python number, so that the object stays hashable and its report JSON-able;
  Python and NumPy scalars stay as given (equal, with equal hashes, to the Python
  number)."""
  if isinstance(value, (jax.Array, np.ndarray)):
    return value.item()
  return value


def positive_int(value: Any, name: str, *, or_none: bool = False, hint: str = "") -> int | None:
  """``value`` checked as an int ``>= 1`` (Python or NumPy int, or a concrete 0-d integer
  array; ``None`` passes when ``or_none``); returns it as an int (or None).

  Raises:
    BadRequestType: not an int (``3.5``, ``"4"`` and ``True`` are refused, not coerced).
    BadRequest: zero or negative.
  """
  if value is None and or_none:
    return None
  said = f"{name} must be a positive int{' or None' if or_none else ''}"
  hint = f"; {hint}" if hint else ""
  if not is_integer(value) or isinstance(value, jax.core.Tracer):
    raise errors.BadRequestType(f"{said}, got {value!r} ({type(value).__name__}){hint}")
  if int(value) < 1:
    raise errors.BadRequest(f"{said}, got {int(value)}{hint}")
  return int(value)


def choice(value: Any, name: str, choices: Sequence[str], *, what: str = "") -> str:
  """``value`` checked as one of the strings ``choices``.

  Raises:
    BadRequestType: not a string.
    BadRequest: a string not among ``choices``.
  """
  listed = ", ".join(map(repr, choices))
  if not isinstance(value, str):
    raise errors.BadRequestType(f"{name} must be a string, one of {listed}, got {value!r} "
                                f"({type(value).__name__})")
  if value not in choices:
    said = f"unknown {what or name} {value!r}; use one of {listed}"
    raise errors.BadRequest(said if not what or what == name else f"{name}: {said}")
  return value


def path(value: Any, name: str = "path", *, hint: str = "") -> pathlib.Path:
  """``value`` as a ``pathlib.Path`` (``~`` not expanded, not made absolute).

  Raises:
    BadRequestType: ``value`` is not a ``str`` or ``os.PathLike`` (a bundle or an array
      passed where a path belongs); ``hint`` is added to the message.
    BadRequest: ``value`` is empty: ``pathlib.Path("")`` would mean the current
      directory, which an unset shell variable should never name.
  """
  if not isinstance(value, (str, os.PathLike)):
    raise errors.BadRequestType(f"{name} must be a path (str or os.PathLike), got "
                                f"{type(value).__name__}" + (f"; {hint}" if hint else ""))
  if not os.fspath(value):
    raise errors.BadRequest(f"{name} is empty (an unset shell variable?); give a path, or "
                            "'.' for the current directory")
  return pathlib.Path(value)


def bundle(value: Any, name: str = "bundle") -> None:
  """Checks that ``value`` is a :class:`mnemonic_jax.bundle.Bundle`.

  Raises:
    BadRequestType: it is not (a path passed where the loaded bundle belongs, or the
      arguments in another order); the message names :func:`mnemonic_jax.load_bundle`.
  """
  # No import (bundle.py imports this module): a Bundle exists only once its module has
  # been imported to make it.
  made = getattr(sys.modules.get("mnemonic_jax.bundle"), "Bundle", None)
  if made is None or not isinstance(value, made):
    raise errors.BadRequestType(f"{name} must be a Bundle (mnemonic_jax.load_bundle(path) "
                                f"reads one), got {type(value).__name__}")


def class_ids(classes: Sequence[int], num_classes: int, *, name: str = "classes"
              ) -> tuple[int, ...]:
  """Checks a collection of class ids; returns it sorted, as Python ints.

  Raises:
    TypeError: a string, an array of more than one dimension or a nested sequence (an
      ``(N, 1)`` column is refused, not flattened), or an id that is not an integer
      (Python or NumPy int, or an integer 0-d array): ``3.7``, ``True`` and ``"3"`` are
      refused, not coerced.
    ValueError: duplicates, or an id outside ``[0, num_classes)``.
  """
  if isinstance(classes, (str, bytes)):
    raise errors.BadRequestType(f"{name} must be a sequence of integer class ids, not the string "
                    f"{classes!r}; write e.g. [1, 2]")
  if any(isinstance(c, jax.core.Tracer) for c in jax.tree.leaves(classes)):
    raise errors.BadRequestType(
        f"{name}: class ids must be concrete (Python ints or a NumPy array), not traced by "
        "jax.jit, vmap or grad: they decide which codes are read; pass them from outside "
        "the transformation")
  if np.ndim(classes) == 0:
    raise errors.BadRequestType(f"{name} must be a sequence of integer class ids, got {classes!r}; "
                    "write e.g. [3]")
  if hasattr(classes, "shape") and len(classes.shape) > 1:
    raise errors.BadRequestType(
        f"{name} must be a flat sequence of integer class ids, got an array of shape "
        f"{tuple(classes.shape)}; pass ids.ravel() if every entry is a class id")
  classes = (list(np.asarray(classes, object).ravel()) if hasattr(classes, "shape")
             else list(classes))
  wrong = [c for c in classes if not is_integer(c)]
  if wrong:
    nested = any(isinstance(c, (Sequence, np.ndarray, jax.Array))
                 and not isinstance(c, (str, bytes)) for c in wrong)
    raise errors.BadRequestType(
        f"{name}: class ids must be integers; got {wrong[:3]!r}"
        + ("; give a flat sequence, e.g. [3, 5], not a nested one" if nested else ""))
  classes = [int(c) for c in classes]
  if len(set(classes)) != len(classes):
    raise errors.BadRequest(f"{name}: duplicated class ids in {classes}")
  bad = [c for c in classes if not 0 <= c < num_classes]
  if bad:
    raise errors.BadRequest(f"{name}: class ids {bad} are out of range: the model has classes "
                     f"0..{num_classes - 1}")
  return tuple(sorted(classes))


def forget_request(forget: Sequence[int], num_classes: int, exclude: Sequence[int] = (),
                   *, name: str = "forget") -> tuple[tuple[int, ...], tuple[int, ...]]:
  """Checks the classes to forget and those to leave out; ``(forget, exclude)`` sorted.

  ``exclude`` holds classes that are neither forgotten now nor remaining (e.g. forgotten
  by an earlier request, :meth:`mnemonic_jax.Bundle.earlier_forgotten`). ``name`` is the
  caller's argument for the classes to forget, as the messages name it (``"classes"``
  for :func:`mnemonic_jax.baselines.unlearn`).

  Raises:
    TypeError, ValueError: as :func:`class_ids`, for either; also an empty ``forget``, a
      class in both (it would be forgotten and scored in neither set at once), or
      nothing left to remain.
  """
  forget = class_ids(forget, num_classes, name=name)
  exclude = class_ids(exclude, num_classes, name="exclude")
  both = [c for c in exclude if c in forget]
  if both:
    raise errors.BadRequest(
        f"classes {both} are both forgotten and excluded; a class is either forgotten now "
        "or left out of both sets: drop it from exclude")
  if not forget:
    raise errors.BadRequest(f"{name}: no class to forget: give at least one class id")
  if len(forget) + len(exclude) == num_classes:
    raise errors.BadRequest(
        f"cannot forget every class ({num_classes}"
        + (f", {len(exclude)} of them excluded" if exclude else "")
        + "): at least one must remain")
  return forget, exclude


def concrete(entry: str, **named: PyTree) -> None:
  """Refuses traced values where ``entry`` decides on the host (e.g. ``concrete("mj.forget",
  params=params)``).

  Raises:
    BadRequestType: a leaf of a named tree is a tracer (under jax.jit, vmap or grad).
  """
  for name, tree in named.items():
    if any(isinstance(x, jax.core.Tracer) for x in jax.tree.leaves(tree)):
      raise errors.BadRequestType(
          f"{entry} cannot run under jax.jit, jax.vmap or jax.grad ({name} is traced): it "
          "chooses its step on the host from concrete values and jits its own programs; "
          "call it outside the transformation")


def listed_bool(value: Any, name: str) -> None:
  """Refuses a list or tuple (nested too) holding a bool where numbers belong: NumPy reads
  ``[True, 2]`` as the integers ``[1, 2]``, so a mask or a comparison passed for class
  ids or numbers without a word (a bool array or a ``True`` class id is refused).

  Raises:
    BadRequestType: naming ``name`` and the bool.
  """
  stack = [value] if isinstance(value, (list, tuple)) else []
  while stack:
    item = stack.pop()
    if isinstance(item, (list, tuple)):
      stack.extend(item)
    elif isinstance(item, (bool, np.bool_)):
      raise errors.BadRequestType(f"{name} hold the bool {bool(item)}; give numbers (class ids "
                                  "for labels): NumPy would read True as 1")


def labels(labels: Any, num_classes: int, *, name: str = "labels") -> None:
  """Checks integer labels ``(N,)`` in ``[0, num_classes)`` (the range on concrete values).

  Raises:
    TypeError: a non-integer dtype, or a list holding a bool (:func:`listed_bool`).
    ValueError: not rank 1, or a label outside ``[0, num_classes)``.
  """
  listed_bool(labels, name)
  dtype = labels.dtype if hasattr(labels, "dtype") else np.asarray(labels).dtype
  if not np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.bool_):
    raise errors.BadRequestType(f"{name} must be integers (class ids), got dtype {dtype}; "
                    "cast them with .astype(int)")
  if np.ndim(labels) != 1:
    raise errors.BadRequest(f"{name} must have shape (N,), got {np.shape(labels)}")
  if isinstance(labels, jax.core.Tracer) or np.size(labels) == 0:
    return
  values = np.asarray(labels)  # Concrete: one small transfer, checked on the host.
  low, high = int(values.min()), int(values.max())
  if low < 0 or high >= num_classes:
    raise errors.BadRequest(f"{name} run from {low} to {high} but the model has classes "
                     f"0..{num_classes - 1}; pass labels in that range")


@jax.jit
def _finite_flags(tree):
  return jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)])


def on_host(x: Any) -> bool:
  """Whether ``x`` is in host memory: NumPy, a Python number, or a jax.Array on CPUs."""
  if isinstance(x, (np.ndarray, np.generic, float, int, complex)):
    return True
  return (isinstance(x, jax.Array) and x.is_fully_addressable
          and all(d.platform == "cpu" for d in x.devices()))


def isfinite_on_host(x: Any) -> np.ndarray:
  """``np.isfinite`` of ``x`` copied to the host (bfloat16 and float8 read as float32)."""
  x = np.asarray(x)
  if jnp.issubdtype(x.dtype, jnp.floating) and x.dtype not in (np.float16, np.float32,
                                                                np.float64):
    x = x.astype(np.float32)  # ml_dtypes' floats: NumPy's ufuncs may not know them.
  return np.isfinite(x)


def finite(**named: PyTree) -> None:
  """Refuses NaN or inf in pytrees of concrete float arrays (tracers are skipped).

  Arrays in host memory (NumPy, or on CPU devices) are read in place; otherwise all the
  trees are checked by one jitted reduction and one transfer of its flags, e.g.
  ``finite(params=params, codes=codes)``.

  Raises:
    ValueError: naming the argument, the first offending leaf and its count of bad
      values.
  """
  leaves = [(name, path, x) for name, tree in named.items()
            for path, x in jax.tree_util.tree_flatten_with_path(tree)[0]
            if not isinstance(x, jax.core.Tracer)
            and jnp.issubdtype(jnp.result_type(x), jnp.inexact)]
  if not leaves:
    return
  arrays = [x for _, _, x in leaves]
  if all(on_host(x) for x in arrays):  # Read in place: no program to compile.
    flags = [bool(isfinite_on_host(x).all()) for x in arrays]
  else:
    with jax.ensure_compile_time_eval():  # Concrete even inside the caller's jit.
      flags = np.asarray(_finite_flags(arrays))  # One transfer.
  for (name, path, leaf), ok in zip(leaves, flags):
    if not ok:
      count = int(np.size(leaf) - isfinite_on_host(leaf).sum())
      raise errors.BadRequest(
          f"{name}{jax.tree_util.keystr(path)} holds {count} non-finite value(s) (NaN or "
          "inf); every result computed from it would be meaningless: pass finite values")


def lambdas(lambda1: Any, lambda2: Any, params: PyTree, *, numbers_only: str = ""
            ) -> tuple[float, float]:
  """Checks the step bounds of eq. (7) against the parameters' dtype; returns floats.

  The lambdas enter the computation as float32 and the move is added to parameters of
  their own dtype, so a lambda beyond the largest finite value of either would make the
  parameters infinite, and one below the smallest positive (subnormal) value of either
  cannot be carried by them: the steps it bounds round to 0 (float16's is 6e-8, float32's
  1.4e-45; a lambda between the smallest subnormal and the smallest normal value, 6.1e-5
  in float16, is taken: the step ``alpha * eta`` may still be large enough).

  ``numbers_only`` names an entry point that never takes ``"auto"`` (the pure pieces,
  ``"step_sizes"``, ``"perturbation"``): its messages then ask for a number only, and an
  ``"auto"`` is pointed to :func:`mnemonic_jax.forget`; otherwise (the default) they say
  ``"auto"`` as :func:`mnemonic_jax.forget` takes it.

  Raises:
    TypeError: a lambda that is not a real number (``"auto"`` is resolved before this).
    ValueError: not finite, not > 0, beyond the largest finite value of float32 or of the
      parameters' narrowest float dtype, or below the smallest positive value of float32
      or of any float dtype of the parameters (the message names the lambda, the dtype
      and its limit).
  """
  dtypes = {jnp.dtype(x.dtype) for x in jax.tree.leaves(params)
            if jnp.issubdtype(getattr(x, "dtype", np.float32), jnp.floating)}
  dtypes.add(jnp.dtype(jnp.float32))
  narrowest = min(dtypes, key=lambda d: float(jnp.finfo(d).max))
  largest = float(jnp.finfo(narrowest).max)
  coarsest = max(dtypes, key=lambda d: float(jnp.finfo(d).smallest_subnormal))
  smallest = float(jnp.finfo(coarsest).smallest_subnormal)
  values = []
  for name, value in (("lambda1", lambda1), ("lambda2", lambda2)):
    if isinstance(value, str) and value == "auto":  # Resolved before, where it is taken.
      raise errors.BadRequestType(
          f"{name}='auto' asks for the paper's move and its data-free search of the lambdas "
          "(move='paper', or 'auto' for both lambdas of mnemonic_jax.forget); "
          + (f"{numbers_only} takes numbers, e.g. lambda1=1e-3, lambda2=10" if numbers_only
             else "Algorithm 2 takes numbers"))
    wanted = ("a positive finite number (e.g. lambda1=1e-3, lambda2=10)" if numbers_only
              else "a positive number or 'auto'")
    if isinstance(value, (bool, np.bool_, str, bytes)) or np.ndim(value) != 0:
      raise errors.BadRequestType(f"{name} must be {wanted}, got {value!r}")
    try:
      value = float(value)
    except (TypeError, ValueError):
      raise errors.BadRequestType(f"{name} must be {wanted}, got {value!r}") from None
    if not (math.isfinite(value) and value > 0):
      raise errors.BadRequest(f"{name} must be a positive finite number, got {value:g}")
    if value > largest:
      raise errors.BadRequest(
          f"{name}={value:g} is beyond the largest {narrowest.name} value ({largest:.4g}); "
          "it would make the parameters non-finite; use smaller lambdas (e.g. "
          "lambda1 1e-3, lambda2 10, or 'auto')")
    if value < smallest:
      raise errors.BadRequest(
          f"{name}={value:g} is below the smallest positive {coarsest.name} value "
          f"({smallest:.3g}), so the move cannot carry it (a step that small rounds to 0 in "
          f"{coarsest.name}); use larger lambdas (e.g. lambda1 1e-3, lambda2 10, or 'auto')")
    values.append(value)
  return values[0], values[1]


def params_tree(params: PyTree) -> None:
  """Checks that ``params`` is a non-empty pytree of floating-point arrays.

  Raises:
    TypeError: no leaves, or a leaf that is not a floating-point array.
    ValueError: a Flax variables dict holding other collections beside ``"params"``
      (``batch_stats``, ...): they would be differentiated and moved as parameters.
  """
  if isinstance(params, Mapping) and "params" in params and len(params) > 1:
    others = sorted(str(k) for k in params if k != "params")
    raise errors.BadRequest(
        f"params is a Flax variables dict with {', '.join(map(repr, others))} beside "
        "'params': they would be differentiated and moved as parameters (a BatchNorm "
        "variance moved below 0 gives NaN); pass variables['params'] and close over the rest, e.g. "
        "apply_fn = mnemonic_jax.inference_apply_fn(model, variables['batch_stats'])")
  leaves = jax.tree_util.tree_flatten_with_path(params)[0]
  if not leaves:
    raise errors.BadRequestType("params has no arrays: pass the model's parameters, e.g. "
                    "variables['params']")
  for path, leaf in leaves:
    dtype = getattr(leaf, "dtype", None)
    if dtype is None or not jnp.issubdtype(dtype, jnp.floating):
      raise errors.BadRequestType(f"params{jax.tree_util.keystr(path)} is {type(leaf).__name__} "
                      f"{'of dtype ' + str(dtype) if dtype is not None else ''}; every "
                      "parameter must be a floating-point array")


def model_outputs(apply_fn: Callable, params: PyTree, inputs: Any,
                  num_classes: int | None = None) -> int:
  """Checks that ``apply_fn(params, inputs)`` gives one logits array ``(N, C)``; returns C.

  Runs on shapes only (``eval_shape`` of a jitted call: one trace of the model per
  model, shapes and dtypes, no computation).

  Raises:
    TypeError: ``apply_fn`` is not callable, returns something other than one array
      (e.g. ``(logits, state)`` from ``model.apply(..., mutable=...)``), or returns
      non-float logits.
    ValueError: ``apply_fn(params, inputs)`` fails (inputs that do not fit the model,
      arguments swapped, params of another form), the model updates state while it is
      applied (BatchNorm in training mode), the logits are not ``(N, C)``, or ``C``
      differs from ``num_classes``.
  """
  if not callable(apply_fn):
    raise errors.BadRequestType(f"apply_fn must be callable as apply_fn(params, x) -> logits, got "
                    f"{type(apply_fn).__name__}")
  out = _eval_outputs(apply_fn, params, inputs)
  if num_classes is not None and out != num_classes:
    raise errors.BadRequest(f"the model has {out} outputs but there are {num_classes} codes; "
                     "codes must be one per class, in class order")
  return out


#: The model's outputs, jitted once: ``eval_shape`` on it reuses jax.jit's trace cache, so
#: a second check of the same model and shapes traces nothing.
_apply = jax.jit(lambda apply_fn, params, x: apply_fn(params, x))


#: What JAX raises when a function reads a traced value on the host (``np.asarray``,
#: ``float``, ``if`` on a value): the function is not traceable, whatever its inputs.
_UNTRACEABLE = (jax.errors.ConcretizationTypeError, jax.errors.TracerArrayConversionError,
                jax.errors.TracerBoolConversionError, jax.errors.TracerIntegerConversionError)


def _eval_outputs(apply_fn, params, inputs) -> int:
  probe = jax.ShapeDtypeStruct((2, *np.shape(inputs)[1:]), jnp.result_type(inputs))
  try:
    out = _apply.eval_shape(as_pytree(apply_fn), params, probe)
  except Exception as e:  # Any model-side failure becomes one clear message.
    environment.reraise(e)  # The machine's failure is not the model's.
    text = str(e).splitlines()[0] if str(e) else ""
    if "unexpected keyword argument 'train'" in text:
      raise errors.BadRequestType(
          "the model's __call__ takes no 'train' argument, which inference_apply_fn passes "
          "(train=False); use apply_fn = lambda p, x: model.apply({'params': p}, x) "
          f"instead, defined once and reused: {text}") from e
    if "immutable" in text or "mutable" in text:
      raise errors.BadRequest(
          "apply_fn updates model state while applied (BatchNorm in training mode?); "
          "pass an inference-mode apply_fn, e.g. mnemonic_jax.inference_apply_fn(model, "
          f"batch_stats): {type(e).__name__}: {text}") from e
    if isinstance(e, _UNTRACEABLE):
      raise errors.BadRequest(
          "apply_fn must be traceable by JAX (it is compiled and differentiated): "
          "jax.numpy only, no NumPy conversion of its values (np.asarray, float(...)) and "
          f"no Python branching on them: {type(e).__name__}: {text}") from e
    raise errors.BadRequest(
        f"apply_fn(params, x) fails: either inputs of shape {tuple(np.shape(inputs)[1:])} "
        "do not fit the model, or apply_fn does not take (params, x), in that order, with "
        "these params (variables['params'] where it expects the whole variables dict, or "
        f"the reverse?): {type(e).__name__}: {text}") from e
  if not isinstance(out, jax.ShapeDtypeStruct):
    kind = type(out).__name__
    raise errors.BadRequestType(
        f"apply_fn must return one logits array (N, C), but it returns a {kind}"
        + (" (model.apply with mutable=...? return the logits only, in inference mode)"
           if isinstance(out, (tuple, list)) else ""))
  if len(out.shape) != 2 or out.shape[0] != 2:
    raise errors.BadRequest(f"apply_fn must return logits of shape (N, C); for 2 inputs it "
                     f"returned shape {tuple(out.shape)}")
  if not jnp.issubdtype(out.dtype, jnp.floating):
    raise errors.BadRequestType(f"apply_fn must return float logits, got dtype {out.dtype}")
  return int(out.shape[1])
