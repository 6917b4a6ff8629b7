"""The numerics of Algorithm 2 (paper, eqs. 5-7), code scores, and the checked request.

Yamashita, Yamada, Shibata, "One-Shot Machine Unlearning with Mnemonic Code", ACML 2024
(arXiv 2306.05670):

1. ``f_F``, ``f_R``: Fisher diagonals on the forgotten and remaining classes' codes
   (:func:`mnemonic_jax.fisher.class_fishers`, started at :data:`EPS` as the reference).
2. ``eta = f_F / f_R`` per parameter (eq. 6, :func:`fisher_ratio`).
3. ``alpha_l = min(lambda1, lambda2 / max(eta_l))`` per tensor (eq. 7, :func:`step_sizes`).
4. Candidates ``w +/- alpha * eta`` (eq. 5, :func:`candidates`).

The moves of :mod:`mnemonic_jax.forgetting.moves` build on these; every entry point
checks its request with :func:`validate_request` before any work. Everything here is a
pure function; the traceable ones run under ``jax.jit``.
"""

from typing import Any, NamedTuple, Sequence

import chex
import jax
import jax.numpy as jnp
import numpy as np

from mnemonic_jax import _validate, errors
from mnemonic_jax import fisher as fisher_lib
from mnemonic_jax.pytrees import ApplyFn, PyTree, as_pytree

EPS = 1e-16  # The reference implementation starts both Fisher accumulators here.


def fisher_ratio(f_forget: PyTree, f_remain: PyTree) -> PyTree:
  """``eta = f_F / f_R`` elementwise (paper, eq. 6), with the reference numerics.

  As the reference implementation: the log-ratio ``log f_F - log f_R`` is cleaned in the
  log domain, NaN becoming 0 (``eta = 1``) and ``+inf`` the largest finite log-ratio of
  the same tensor, then exponentiated. ``-inf`` gives ``eta = 0``. Two departures, both
  where the reference would return non-finite parameters:

  * a tensor with no finite log-ratio at all uses 0 (``eta = 1``) for its ``+inf``
    entries (the reference takes the maximum of an empty set);
  * ``eta`` is clipped at the largest float32, so it stays finite (the reference's
    ``exp`` overflows to inf, and ``alpha = lambda2 / inf = 0`` then makes
    ``alpha * eta`` NaN).

  These rules are for the log-ratio of valid Fishers (``0 / 0``, ``x / 0``). A Fisher
  value that is itself NaN, infinite or negative (a diverged gradient) is no Fisher, and
  concrete values are refused (see Raises) rather than cleaned to ``eta = 1`` or the
  tensor's largest ratio. Traced values (under ``jax.jit``, as inside the moves, where
  the Fishers come from checked finite parameters and codes) cannot be read: there the
  reference's rules apply to them as well, as in the reference (NaN -> 1, inf -> the
  largest ratio, negative -> NaN log -> 1).

  The Fishers are expected as the reference accumulates them, ``(1e-16 + sum) / n``
  (``class_fishers(..., eps=EPS)``), so neither is 0 unless a gradient underflowed.
  Jitted: one program per structure, shapes and dtypes of the trees.

  Args:
    f_forget: Fisher diagonal on the forgotten classes (pytree of float arrays; NumPy
      arrays and Python numbers are taken as arrays).
    f_remain: Fisher diagonal on the remaining classes, same structure.

  Returns:
    A finite, non-negative float32 pytree shaped like the inputs.

  Raises:
    TypeError (BadRequestType): a leaf that is not a real number or array of them (a
      string, a bool or complex array), naming the leaf.
    ValueError: the two trees differ in structure (the message names the paths found in
      only one) or in a leaf's shape; a NaN or infinite value in concrete arrays (read in
      place on the host; on an accelerator by one jitted reduction and one transfer of
      its flags, as every entry point checks parameters); a negative value in concrete
      host arrays (NumPy, Python numbers, or jax.Arrays on CPU: on an accelerator not
      read, so no second transfer is added).

  Example:
    >>> fisher_ratio({"w": jnp.array([4.0, 0.0])}, {"w": jnp.array([2.0, 0.0])})
    {'w': Array([2., 1.], dtype=float32)}
  """
  _check_fishers(f_forget, f_remain)
  return _fisher_ratio(f_forget, f_remain)


def _ratio(ff: jax.Array, fr: jax.Array) -> jax.Array:
  """Eq. (6) on one tensor (see :func:`fisher_ratio`; traceable)."""
  log_ratio = (jnp.log(jnp.asarray(ff).astype(jnp.float32))
               - jnp.log(jnp.asarray(fr).astype(jnp.float32)))
  log_ratio = jnp.where(jnp.isnan(log_ratio), 0.0, log_ratio)
  finite = jnp.isfinite(log_ratio)
  largest = jnp.max(jnp.where(finite, log_ratio, -jnp.inf), initial=-jnp.inf)
  largest = jnp.where(jnp.isfinite(largest), largest, 0.0)
  log_ratio = jnp.where(log_ratio == jnp.inf, largest, log_ratio)
  return jnp.minimum(jnp.exp(log_ratio), jnp.finfo(jnp.float32).max)


def _alpha(eta: jax.Array, lambda1, lambda2) -> jax.Array:
  """Eq. (7) on one tensor (traceable)."""
  return jnp.minimum(lambda1, lambda2 / jnp.max(eta, initial=0.0))


@jax.jit
def _fisher_ratio(f_forget: PyTree, f_remain: PyTree) -> PyTree:
  return jax.tree.map(_ratio, f_forget, f_remain)


@jax.jit
def _step_sizes(eta: PyTree, lambda1, lambda2) -> PyTree:
  return jax.tree.map(lambda e: _alpha(e, lambda1, lambda2), eta)


@jax.jit
def _perturbation(f_forget: PyTree, f_remain: PyTree, lambda1, lambda2) -> PyTree:
  eta = jax.tree.map(_ratio, f_forget, f_remain)
  return jax.tree.map(lambda e: _alpha(e, lambda1, lambda2) * e, eta)


def _check_numbers(tree: PyTree, name: str) -> None:
  """Refuses a leaf that is not a real number or an array of them (read on the trace)."""
  for path, x in jax.tree_util.tree_flatten_with_path(tree)[0]:
    dtype = getattr(x, "dtype", None)
    if dtype is None and isinstance(x, (int, float)) and not isinstance(x, bool):
      continue
    if dtype is None or not (jnp.issubdtype(dtype, jnp.floating)
                             or jnp.issubdtype(dtype, jnp.integer)):
      raise errors.BadRequestType(
          f"{name}{jax.tree_util.keystr(path)} must be a float array (a Fisher diagonal, "
          f"shaped like its parameter), got "
          f"{f'dtype {dtype}' if dtype is not None else type(x).__name__}")


def _check_fishers(f_forget: PyTree, f_remain: PyTree) -> None:
  """The checks of two Fisher trees before eq. (6): numbers, same paths and shapes (read
  on the trace: free under jit), no NaN or inf (concrete arrays), no negative value
  (read only on concrete host arrays)."""
  _check_numbers(f_forget, "f_forget")
  _check_numbers(f_remain, "f_remain")
  flat = [jax.tree_util.tree_flatten_with_path(t) for t in (f_forget, f_remain)]
  if flat[0][1] != flat[1][1]:
    paths = [{jax.tree_util.keystr(p) for p, _ in leaves} for leaves, _ in flat]
    only = [sorted(paths[0] - paths[1]), sorted(paths[1] - paths[0])]
    where = "; ".join(f"only in {name}: {', '.join(o[:5]) + (' ...' if len(o) > 5 else '')}"
                      for name, o in zip(("f_forget", "f_remain"), only) if o)
    raise errors.BadRequest(
        "f_forget and f_remain must be trees of the same structure (both from one "
        "class_fishers call on the same params); "
        + (where or f"their containers differ: {flat[0][1]} against {flat[1][1]}"))
  for (path, a), (_, b) in zip(*(leaves for leaves, _ in flat)):
    if np.shape(a) != np.shape(b):
      raise errors.BadRequest(
          f"f_forget{jax.tree_util.keystr(path)} has shape {np.shape(a)} but "
          f"f_remain{jax.tree_util.keystr(path)} has {np.shape(b)}: both must be shaped like "
          "the parameters")
  # NaN or inf (a diverged gradient) is no Fisher: refused, not cleaned to eta = 1 or the
  # tensor's largest ratio. Read on the host, or by one jitted reduction on an accelerator.
  _validate.finite(f_forget=f_forget, f_remain=f_remain)
  for name, (leaves, _) in zip(("f_forget", "f_remain"), flat):
    _check_nonnegative(name, leaves, "a Fisher diagonal is a mean of squares, >= 0 "
                                     "(class_fishers with eps >= 0 gives one)")


def _check_nonnegative(name: str, leaves: list, why: str) -> None:
  """Refuses a negative value in ``(path, leaf)`` pairs when all are concrete host arrays
  (traced or on an accelerator: not read, as reading would add a transfer and a sync)."""
  if not all(not isinstance(x, jax.core.Tracer) and _validate.on_host(x) for _, x in leaves):
    return
  for path, x in leaves:
    x = np.asarray(x)
    if np.any(x < 0):
      raise errors.BadRequest(f"{name}{jax.tree_util.keystr(path)} holds {int(np.sum(x < 0))} "
                              f"negative value(s); {why}")


def step_sizes(eta: PyTree, lambda1: float, lambda2: float) -> PyTree:
  """Per-tensor step ``alpha_l = min(lambda1, lambda2 / max(eta_l))`` (paper, eq. 7).

  ``lambda1`` caps the step; ``lambda2`` bounds the largest move of the tensor,
  ``alpha_l * max(eta_l) <= lambda2``. A tensor with ``max(eta_l) = 0`` gets ``lambda1``
  (it does not move anyway). Jitted (lambdas traced: new values do not recompile, and
  concrete lambdas enter as float32 whatever their Python type, so ``1e-3``,
  ``np.float32(1e-3)``, ``np.float64(1e-3)``, an int or a 0-d array share one program).

  Returns:
    A pytree of float32 scalars, one per tensor of ``eta``.

  Raises:
    TypeError, ValueError: a lambda that is not a positive finite number (concrete
      values), or a leaf of ``eta`` that is not a real number or array of them; a NaN or
      infinite value in concrete ``eta`` arrays, or a negative one in concrete host arrays
      (as :func:`fisher_ratio` checks its Fishers; traced values are the caller's).
  """
  lambda1, lambda2 = _check_lambdas(lambda1, lambda2, "step_sizes")
  _check_numbers(eta, "eta")
  # A NaN or inf ratio would make the tensor's whole step NaN or 0; a negative one is no
  # ratio of Fishers. Refused on concrete values, as fisher_ratio refuses such Fishers.
  _validate.finite(eta=eta)
  _check_nonnegative("eta", jax.tree_util.tree_flatten_with_path(eta)[0],
                     "eta is a ratio of Fishers, >= 0 (fisher_ratio gives one)")
  return _step_sizes(eta, lambda1, lambda2)


def perturbation(f_forget: PyTree, f_remain: PyTree, lambda1: float, lambda2: float
                 ) -> PyTree:
  """The parameter move ``delta = alpha * eta`` of eq. (5), up to its sign.

  Args:
    f_forget: Fisher diagonal on the forgotten classes' codes.
    f_remain: Fisher diagonal on the remaining classes' codes.
    lambda1: upper bound of the per-tensor step (eq. 7).
    lambda2: bound of the largest move per tensor (eq. 7).

  Returns:
    ``delta`` shaped like the Fishers (float32); the candidates are ``params +/- delta``.
    One jitted program per structure, shapes and dtypes (the lambdas are traced; concrete
    ones enter as float32 whatever their Python type, as in :func:`step_sizes`).

  Raises:
    ValueError: Fishers of different structures or shapes, negative or non-finite, as
      :func:`fisher_ratio`; lambdas that are not positive finite numbers.
    TypeError: a lambda that is not a number; a Fisher leaf that is not a float array.

  Example:
    >>> f_forget, f_remain = fisher_lib.class_fishers(apply_fn, params, codes, [1], eps=EPS)
    >>> delta = perturbation(f_forget, f_remain, lambda1=1e-3, lambda2=10.0)
    >>> candidate = jax.tree.map(jnp.add, params, delta)
  """
  _check_fishers(f_forget, f_remain)
  lambda1, lambda2 = _check_lambdas(lambda1, lambda2, "perturbation")
  return _perturbation(f_forget, f_remain, lambda1, lambda2)


@chex.dataclass(frozen=True)
class CodeScores:
  """How a model classifies its codes, split into forgotten and remaining classes.

  Attributes:
    forget_accuracy: fraction of forgotten classes whose code is still classified right.
    remain_accuracy: fraction of remaining classes whose code is classified right.
    forget_margin: the largest logit margin (own logit minus best other) over the
      forgotten codes; negative means every forgotten code is misclassified.
    remain_margin: the smallest margin over the remaining codes.
  """

  forget_accuracy: jax.Array
  remain_accuracy: jax.Array
  forget_margin: jax.Array
  remain_margin: jax.Array

  @property
  def criterion(self) -> jax.Array:
    """The paper's selection score: ``(1 - forget_accuracy) + remain_accuracy``."""
    return 1.0 - self.forget_accuracy + self.remain_accuracy


def code_margins(logits: jax.Array, labels: jax.Array, xp: Any = jnp
                 ) -> tuple[jax.Array, jax.Array]:
  """Per code: its margin (own logit minus the best other) and whether it is right.

  Args:
    logits: ``(N, C)`` logits of ``N`` codes (an array or a nested list).
    labels: ``(N,)`` each code's class, integers in ``[0, C)`` (an array or a list).
    xp: the array namespace: ``jax.numpy`` (traceable, the default; on concrete arrays
      one jitted program per shapes, not a program per operation) or ``numpy`` (on the
      host: the same float32 values, and no program to compile).

  Returns:
    ``(margin, correct)``, both ``(N,)`` float32.

  Raises:
    TypeError (BadRequestType): non-float logits or non-integer labels.
    ValueError (BadRequest): logits not ``(N, C)``; labels not ``(N,)`` (a ``(N, 1)``
      column would broadcast to ``(N, N)`` margins); labels outside ``[0, C)`` (read on
      concrete labels only: under jax.jit nothing is added to the program).
  """
  jitted = _jitted(xp, logits, labels)
  logits = _as_array(logits, xp, jitted)
  if not jnp.issubdtype(logits.dtype, jnp.floating):
    raise errors.BadRequestType(f"logits must be float (N, C), got dtype {logits.dtype}")
  if logits.ndim != 2:
    raise errors.BadRequest(f"logits must have shape (N, C), got {logits.shape}")
  _validate.labels(labels, logits.shape[1])
  if np.shape(labels)[0] != logits.shape[0]:
    raise errors.BadRequest(f"labels ({np.shape(labels)[0]}) and logits ({logits.shape[0]}) "
                            "disagree on the number of codes")
  labels = _as_array(labels, xp, jitted)
  return _code_margins(logits, labels) if jitted else _margins(logits, labels, xp)


def _jitted(xp: Any, *values: Any) -> bool:
  """Whether a helper that takes an array namespace runs as its one jitted program: with
  ``jax.numpy`` on concrete values (op by op, each operation would compile a program for
  every new shape). Traced values run inline: the caller's program, as it was."""
  return xp is jnp and not any(isinstance(v, jax.core.Tracer) for v in jax.tree.leaves(values))


def _as_array(value: Any, xp: Any, jitted: bool) -> Any:
  """``value`` as an array: for a jitted program an array as it is and anything else as a
  NumPy array (``jnp.asarray`` of a NumPy bool array compiles a program), else ``xp``'s."""
  if jitted:
    return value if isinstance(value, (jax.Array, np.ndarray)) else np.asarray(value)
  return xp.asarray(value)


def _margins(logits: Any, labels: Any, xp: Any) -> tuple[Any, Any]:
  """:func:`code_margins` on checked arrays."""
  logits = logits.astype(xp.float32)
  # A mask, not a gather and a scatter: the same values, fewer and simpler XLA kernels to
  # compile (each costs ~10 ms of CPU compilation whatever its size).
  own_class = xp.arange(logits.shape[-1]) == xp.asarray(labels)[:, None]
  own = xp.max(xp.where(own_class, logits, -xp.inf), axis=-1)
  others = xp.where(own_class, -xp.inf, logits)
  correct = (xp.argmax(logits, -1) == labels).astype(xp.float32)
  return own - xp.max(others, axis=-1), correct


_code_margins = jax.jit(lambda logits, labels: _margins(logits, labels, jnp))


def code_scores(apply_fn: ApplyFn, params: PyTree, codes: chex.Array, in_forget: chex.Array,
                in_remain: chex.Array | None = None) -> CodeScores:
  """Scores the codes (traceable): how the model classifies each class's code.

  Args:
    apply_fn: ``apply_fn(params, x) -> logits (C, C)`` for the ``C`` codes.
    params: the parameters to score.
    codes: ``(C, *input_shape)`` float codes, one per class in class order (an array: a
      list is refused, as by every entry point).
    in_forget: boolean mask ``(C,)`` of the forgotten classes (from class ids:
      ``mnemonic_jax.fisher.class_mask(classes, C)``); not empty.
    in_remain: boolean mask ``(C,)`` of the remaining classes, ``~in_forget`` by
      default; not empty. Classes in neither mask are not scored.

  Returns:
    The :class:`CodeScores`, from one jitted program per model and shapes (the masks
    are traced). An empty mask is refused when it is concrete; a traced one
    (under jax.jit, where its values are unknown) scores the empty set as
    ``forget_accuracy = 0``, ``forget_margin = -inf`` (no forgotten code is right) and
    ``remain_accuracy = 0``, ``remain_margin = +inf``, never NaN.

  Raises:
    TypeError: a mask that is not boolean (integer class ids: pass
      ``class_mask(classes, C)``), or not an array or a list of bools; codes that are not
      a float array; an ``apply_fn`` that does not return one float logits array (a
      ``(logits, state)`` tuple).
    ValueError: a mask not of shape ``(C,)``; codes that do not fit the model, or logits
      not ``(C, C)``; a concrete mask with
      no True entry (``in_remain`` too, also when it defaults to ``~in_forget``); concrete
      masks True at the same class (both forgotten and remaining). The
      shapes are checked on the trace, the emptiness on concrete masks only: nothing is
      added to a jitted program.
  """
  if (not hasattr(codes, "shape") or not hasattr(codes, "dtype") or np.ndim(codes) < 1
      or not jnp.issubdtype(codes.dtype, jnp.floating)):
    raise errors.BadRequestType("codes must be a float array (C, *input_shape), got "
                                f"{getattr(codes, 'dtype', type(codes).__name__)}")
  num_codes = np.shape(codes)[0]
  _validate.model_outputs(apply_fn, params, codes, num_codes)  # Shapes only: free.
  in_forget = _code_mask(in_forget, num_codes, "in_forget")
  if in_remain is not None:
    in_remain = _code_mask(in_remain, num_codes, "in_remain")
  # Emptiness on concrete masks only (``in_remain`` defaults to ``~in_forget``, made in
  # the program: no eager op to compile).
  empty = {}
  if not isinstance(in_forget, jax.core.Tracer):
    empty["in_forget"] = not np.asarray(in_forget).any()
    if in_remain is None:
      empty["in_remain"] = bool(np.asarray(in_forget).all())
  if in_remain is not None and not isinstance(in_remain, jax.core.Tracer):
    empty["in_remain"] = not np.asarray(in_remain).any()
  if (in_remain is not None and not isinstance(in_forget, jax.core.Tracer)
      and not isinstance(in_remain, jax.core.Tracer)):
    both = np.flatnonzero(np.asarray(in_forget) & np.asarray(in_remain)).tolist()
    if both:
      raise errors.BadRequest(
          f"class(es) {both} are True in both in_forget and in_remain: a class is either "
          "forgotten or remaining (or in neither, not scored); fix the masks")
  for name in ("in_forget", "in_remain"):
    if empty.get(name):
      raise errors.BadRequest(
          f"{name} has no True entry: code_scores needs at least one "
          f"{'forgotten' if name == 'in_forget' else 'remaining'} class to score")
  return _code_scores(as_pytree(apply_fn), params, codes, in_forget, in_remain)


@jax.jit
def _code_scores(apply_fn, params, codes, in_forget, in_remain) -> CodeScores:
  num_codes = codes.shape[0]
  in_remain = jnp.logical_not(in_forget) if in_remain is None else in_remain
  logits = apply_fn(params, codes)
  if np.shape(logits) != (num_codes, num_codes):
    raise errors.BadRequest(f"apply_fn must give logits ({num_codes}, {num_codes}) for the "
                            f"{num_codes} codes (one per class), got {np.shape(logits)}")
  margin, correct = code_margins(logits, jnp.arange(num_codes))
  return scores_from_margins(margin, correct, in_forget, in_remain)


def _code_mask(mask: Any, num_codes: int, name: str) -> chex.Array:
  """Checks a boolean class mask ``(num_codes,)`` on its dtype and shape (known on the
  trace: nothing is read); a list or tuple of bools becomes a NumPy array."""
  if isinstance(mask, (list, tuple)):
    mask = np.asarray(mask)
  dtype = getattr(mask, "dtype", None)
  if dtype is None or jnp.dtype(dtype) != jnp.bool_:
    raise errors.BadRequestType(
        f"{name} must be a boolean mask of shape ({num_codes},), True at the classes, got "
        f"{f'dtype {dtype}' if dtype is not None else type(mask).__name__}; to pass class "
        f"ids, make the mask: mnemonic_jax.fisher.class_mask(classes, {num_codes})")
  if np.shape(mask) != (num_codes,):
    raise errors.BadRequest(f"{name} must have shape ({num_codes},), one entry per code, got "
                            f"{np.shape(mask)}")
  return mask


def scores_from_margins(margin: jax.Array, correct: jax.Array, in_forget: chex.Array,
                        in_remain: chex.Array, xp: Any = jnp) -> CodeScores:
  """:class:`CodeScores` from per-code margins and correctness (traceable with the default
  ``xp=jax.numpy``, one jitted program per shapes on concrete arrays; ``xp=numpy`` scores
  on the host). Each argument is ``(N,)``: an array or a list.

  Raises:
    ValueError (BadRequest): an argument not of shape ``(N,)`` like ``margin``.
  """
  jitted = _jitted(xp, margin, correct, in_forget, in_remain)
  margin, correct, in_forget, in_remain = args = tuple(
      _as_array(v, xp, jitted) for v in (margin, correct, in_forget, in_remain))
  for name, value in (("correct", correct), ("in_forget", in_forget), ("in_remain", in_remain)):
    if margin.ndim != 1 or value.shape != margin.shape:
      raise errors.BadRequest(f"margin, correct, in_forget and in_remain must all have shape "
                              f"(N,); got margin {margin.shape}, {name} {value.shape}")
  return _scores_from_margins(*args) if jitted else _scores(*args, xp)


def _scores(margin, correct, in_forget, in_remain, xp: Any) -> CodeScores:
  """:func:`scores_from_margins` on checked arrays."""
  mean = lambda v, m: (xp.sum(xp.where(m, v, 0.0)) / xp.maximum(xp.sum(m), 1)).astype(xp.float32)
  return CodeScores(
      forget_accuracy=mean(correct, in_forget),
      remain_accuracy=mean(correct, in_remain),
      forget_margin=xp.max(xp.where(in_forget, margin, -xp.inf)),
      remain_margin=xp.min(xp.where(in_remain, margin, xp.inf)))


_scores_from_margins = jax.jit(lambda *args: _scores(*args, jnp))


SCORE_FIELDS = ("forget_accuracy", "remain_accuracy", "forget_margin", "remain_margin")


def score_leaves(scores: CodeScores) -> list[jax.Array]:
  """The four scores in :data:`SCORE_FIELDS` order (to pack them in one array)."""
  return [scores[k] for k in SCORE_FIELDS]


class Request(NamedTuple):
  """A checked forgetting request (see :func:`validate_request`).

  Attributes:
    apply_fn: the model as a pytree (:func:`mnemonic_jax.pytrees.as_pytree`).
    codes: ``(C, *input_shape)`` float codes, a jax array.
    classes: the forgotten classes, sorted.
    exclude: classes neither forgotten nor remaining, sorted.
    in_forget, in_remain: boolean masks ``(C,)`` of the forgotten and remaining classes.
    fisher_weights: the weights of their codes' Fisher means, started at :data:`EPS` as
      the reference (:func:`mnemonic_jax.fisher.weighted_class_fishers`).
  """

  apply_fn: ApplyFn
  codes: jax.Array
  classes: tuple[int, ...]
  exclude: tuple[int, ...]
  in_forget: jax.Array
  in_remain: jax.Array
  fisher_weights: fisher_lib.ClassWeights


def validate_request(apply_fn: ApplyFn, params: PyTree, codes: chex.Array,
                     forget: Sequence[int], exclude: Sequence[int] = (), *,
                     entry: str = "forgetting (mj.forget, a move)") -> Request:
  """Checks a forgetting request before any work (every forgetting entry point calls it).

  Args:
    apply_fn: ``apply_fn(params, x) -> logits (N, C)``, nothing updated.
    params: a pytree of float arrays.
    codes: ``(C, *input_shape)`` float codes, one per class in class order.
    forget: class ids to forget; not empty, no duplicates, not every class.
    exclude: class ids neither forgotten nor remaining.
    entry: the public function called, as its refusal under jax.jit names it.

  Returns:
    The :class:`Request`.

  Raises:
    TypeError: class ids that are not integers, non-float params or codes, an
      ``apply_fn`` that does not return one float logits array; params, codes or class
      ids traced by jax.jit, vmap or grad (forgetting decides on the host).
    ValueError: bad classes (out of range, duplicated, none, or nothing left to remain);
      NaN or inf in params or codes; codes that do not fit the model, or a number of
      logits that differs from the number of codes; a model that updates state.
  """
  _validate.concrete(entry, params=params, codes=codes)
  _validate.params_tree(params)
  if not hasattr(codes, "shape") or not jnp.issubdtype(jnp.result_type(codes), jnp.floating):
    raise errors.BadRequestType("codes must be a float array (C, *input_shape), got "
                                f"{getattr(codes, 'dtype', type(codes).__name__)}")
  # device_put, not jnp.asarray: JAX compiles a program for jnp.asarray of each new
  # NumPy shape (0.01-0.03 s of a first call); the transfer needs none.
  codes = codes if isinstance(codes, jax.Array) else jax.device_put(np.asarray(codes))
  num_classes = codes.shape[0]
  _validate.model_outputs(apply_fn, params, codes, num_classes)
  classes, exclude = _validate.forget_request(forget, num_classes, exclude)
  _validate.finite(params=params, codes=codes)
  in_forget, in_remain = fisher_lib.class_masks(classes, exclude, num_classes)
  return Request(as_pytree(apply_fn), codes, classes, exclude, in_forget, in_remain,
                 fisher_lib.class_weights(in_forget, in_remain, EPS))


def candidates(params: PyTree, eta: PyTree, lambda1, lambda2
               ) -> tuple[PyTree, PyTree, PyTree]:
  """The candidates of eq. (5): ``(alpha, params + alpha * eta, params - alpha * eta)``.

  The move is computed in float32 and cast to each parameter's dtype before the add, so
  the candidates keep the parameters' dtypes (traceable).
  """
  alpha = step_sizes(eta, lambda1, lambda2)
  return (alpha, apply_step(params, alpha, eta, 1.0), apply_step(params, alpha, eta, -1.0))


def apply_step(params: PyTree, alpha: PyTree, eta: PyTree, sign) -> PyTree:
  """``params + sign * alpha * eta`` (eq. 5), in each parameter's dtype (traceable)."""
  return jax.tree.map(lambda p, a, e: p + (sign * a * e).astype(jnp.result_type(p)), params,
                      alpha, eta)


def all_finite(tree: PyTree) -> jax.Array:
  """Whether every entry of a pytree of float arrays is finite (traceable, one bool)."""
  return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]))


def sums_finite(tree: PyTree) -> jax.Array:
  """Whether every leaf's float32 sum is finite (traceable, one bool; compiles to fewer
  and cheaper kernels than :func:`all_finite`). True implies every entry is finite (a NaN
  or an infinity makes its sum non-finite); False can also mean finite entries whose sum
  overflows, which :func:`finite` tells apart."""
  return jnp.all(jnp.isfinite(jnp.stack([jnp.sum(jnp.asarray(x).astype(jnp.float32))
                                         for x in jax.tree.leaves(tree)])))


def finite(tree: PyTree, sums_are_finite: bool | None = None) -> bool:
  """Whether every entry of ``tree`` is finite, as a host bool.

  Arrays in host memory (NumPy, or jax.Arrays on CPU devices) are read in place, so no
  program is compiled; elsewhere :func:`sums_finite` (given, or run jitted) decides, and
  :func:`all_finite` runs only when a sum is not finite.
  """
  leaves = jax.tree.leaves(tree)
  if sums_are_finite is None and all(map(_validate.on_host, leaves)):
    return all(bool(_validate.isfinite_on_host(x).all()) for x in leaves)
  if sums_are_finite is None:
    sums_are_finite = bool(_sums_finite(tree))
  return bool(sums_are_finite) or bool(_all_finite(tree))


_sums_finite = jax.jit(sums_finite)
_all_finite = jax.jit(all_finite)


def _check_lambdas(lambda1, lambda2, entry: str) -> tuple[Any, Any]:
  """The lambdas of ``entry`` (numbers only: no ``"auto"``) checked and as the jitted
  programs take them: a concrete one (a Python int or float, a NumPy scalar, a 0-d array)
  as ``np.float32``, so that every kind of the same number shares one program (weak and
  strong types would each compile one); a traced one unchanged (its program's to check)."""
  traced = [isinstance(v, jax.core.Tracer) for v in (lambda1, lambda2)]
  if all(traced):
    return lambda1, lambda2
  # A concrete lambda beside a traced one is checked too (the traced one as a stand-in 1).
  checked = _validate.lambdas(*(1.0 if t else v for v, t in zip((lambda1, lambda2), traced)),
                              {}, numbers_only=entry)
  return tuple(v if t else np.float32(c) for v, t, c in zip((lambda1, lambda2), traced, checked))
