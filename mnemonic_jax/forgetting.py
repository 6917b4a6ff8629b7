"""One-shot forgetting from the mnemonic codes alone (Algorithm 2 of the paper).

1. ``f_F``, ``f_R``: Fisher diagonals on the forgotten and remaining classes' codes.
2. ``eta = f_F / f_R`` per parameter (eq. 6), with the reference numerics.
3. ``alpha_l = min(lambda1, lambda2 / max(eta_l))`` per parameter tensor (eq. 7).
4. Candidates ``w + alpha * eta`` and ``w - alpha * eta`` (eq. 5); keep the one whose
   codes score better: ``(1 - acc on forgotten codes) + acc on remaining codes``.
"""

import dataclasses
import time
from typing import Any, Sequence

import chex
import jax
import jax.numpy as jnp
from jax.sharding import Mesh

from mnemonic_jax import fisher as fisher_lib

PyTree = Any
EPS = 1e-16  # The reference implementation starts both Fisher accumulators here.


def fisher_ratio(f_forget: PyTree, f_remain: PyTree, *, eps: float = EPS) -> PyTree:
  """``eta = f_F / f_R`` elementwise (paper, eq. 6), with the reference numerics.

  Computed as ``exp(log(f_F + eps) - log(f_R + eps))``; NaN becomes 0 and +inf the
  largest finite value of the same tensor (0 if it has none), so ``eta`` is always finite
  and non-negative.

  Args:
    f_forget: Fisher diagonal on the forgotten classes.
    f_remain: Fisher diagonal on the remaining classes, same structure.
    eps: added to both before the logarithm.

  Returns:
    A finite, non-negative pytree shaped like the inputs.
  """

  def ratio(ff, fr):
    eta = jnp.exp(jnp.log(ff + eps) - jnp.log(fr + eps))
    eta = jnp.where(jnp.isnan(eta), 0.0, eta)
    finite = jnp.isfinite(eta)
    largest = jnp.max(jnp.where(finite, eta, 0.0), initial=0.0)
    return jnp.where(finite, eta, largest)

  return jax.tree.map(ratio, f_forget, f_remain)


def step_sizes(eta: PyTree, lambda1: float, lambda2: float) -> PyTree:
  """Per-tensor step ``alpha_l = min(lambda1, lambda2 / max(eta_l))`` (paper, eq. 7).

  ``lambda1`` caps the step; ``lambda2`` bounds the largest move of the tensor,
  ``alpha_l * max(eta_l) <= lambda2``. A tensor with ``max(eta_l) = 0`` gets ``lambda1``
  (it does not move anyway).

  Returns:
    A pytree of scalars, one per tensor of ``eta``.
  """
  _check_lambdas(lambda1, lambda2)
  return jax.tree.map(
      lambda e: jnp.minimum(lambda1, lambda2 / jnp.max(e, initial=0.0)), eta)


def perturbation(
    f_forget: PyTree, f_remain: PyTree, lambda1: float, lambda2: float, *, eps: float = EPS
) -> PyTree:
  """The parameter move ``delta = alpha * eta`` of eq. (5), up to its sign.

  Args:
    f_forget: Fisher diagonal on the forgotten classes' codes.
    f_remain: Fisher diagonal on the remaining classes' codes.
    lambda1: upper bound of the per-tensor step (eq. 7).
    lambda2: bound of the largest move per tensor (eq. 7).
    eps: as in :func:`fisher_ratio`.

  Returns:
    ``delta`` shaped like the Fishers; the candidates are ``params +/- delta``.

  Example:
    >>> delta = perturbation(f_forget, f_remain, lambda1=1e-3, lambda2=10.0)
    >>> candidate = jax.tree.map(jnp.add, params, delta)
  """
  eta = fisher_ratio(f_forget, f_remain, eps=eps)
  return jax.tree.map(jnp.multiply, step_sizes(eta, lambda1, lambda2), eta)


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


def code_scores(apply_fn, params: PyTree, codes: chex.Array, in_forget: chex.Array) -> CodeScores:
  """Scores the codes (jittable); ``in_forget`` is a boolean mask over classes."""
  logits = apply_fn(params, codes)
  labels = jnp.arange(codes.shape[0])
  own = logits[labels, labels]
  others = jnp.where(jnp.eye(codes.shape[0], logits.shape[-1], dtype=bool), -jnp.inf, logits)
  margin = own - jnp.max(others, axis=-1)
  correct = (jnp.argmax(logits, -1) == labels).astype(jnp.float32)
  in_remain = ~in_forget
  mean = lambda v, m: jnp.sum(jnp.where(m, v, 0.0)) / jnp.maximum(jnp.sum(m), 1)
  return CodeScores(
      forget_accuracy=mean(correct, in_forget),
      remain_accuracy=mean(correct, in_remain),
      forget_margin=jnp.max(jnp.where(in_forget, margin, -jnp.inf)),
      remain_margin=jnp.min(jnp.where(in_remain, margin, jnp.inf)))


@dataclasses.dataclass(frozen=True)
class ForgetReport:
  """What :func:`forget` did.

  Attributes:
    classes: the forgotten classes, sorted.
    lambda1, lambda2: the step bounds used.
    sign: +1 if ``params + delta`` was kept, -1 for ``params - delta``.
    alpha: per-tensor step sizes (pytree of floats shaped like params).
    before: code scores of the input parameters.
    after: code scores of the kept candidate.
    rejected: code scores of the other candidate.
    seconds: wall-clock seconds of the forgetting computation, compilation excluded.
    compile_seconds: seconds spent compiling it.
  """

  classes: tuple[int, ...]
  lambda1: float
  lambda2: float
  sign: int
  alpha: PyTree
  before: CodeScores
  after: CodeScores
  rejected: CodeScores
  seconds: float
  compile_seconds: float

  def to_dict(self) -> dict[str, Any]:
    """A JSON-able summary (for checkpoint history and reports)."""
    scores = lambda s: {k: float(v) for k, v in s.items()}
    return {
        "classes": list(self.classes), "lambda1": self.lambda1, "lambda2": self.lambda2,
        "sign": self.sign, "seconds": self.seconds, "compile_seconds": self.compile_seconds,
        "before": scores(self.before), "after": scores(self.after),
        "rejected": scores(self.rejected),
    }


def forget(
    apply_fn,
    params: PyTree,
    codes: chex.Array,
    forget: Sequence[int],
    lambda1: float = 1e-3,
    lambda2: float = 10.0,
    *,
    microbatch_size: int | None = None,
    method: str = "auto",
    mesh: Mesh | None = None,
) -> tuple[PyTree, ForgetReport]:
  """Forgets whole classes in one shot, from the codes alone (Algorithm 2).

  Needs no training data: one gradient per class code. Forgetting again from an
  already-forgotten model works the same way (sequential requests).

  Args:
    apply_fn: ``apply_fn(params, x) -> logits`` (BatchNorm in inference mode).
    params: trained parameters.
    codes: ``(C, *input_shape)`` mnemonic codes the model was trained with.
    forget: class ids to forget; not empty, no duplicates, not every class.
    lambda1: upper bound of the per-tensor step (paper: 1e-3 MNIST, 1e-5 CIFAR-10).
    lambda2: bound of the largest move per tensor (paper: 10 MNIST, 1e4 CIFAR-10).
    microbatch_size, method, mesh: passed to the Fisher (see :func:`fisher_diagonal`).

  Returns:
    ``(new_params, report)``.

  Raises:
    ValueError: bad classes, ``lambda <= 0``, codes that do not fit the model, or a
      model whose number of logits differs from the number of codes.

  Example:
    >>> new_params, report = forget(apply_fn, params, codes, [3], 1e-3, 10.0)
    >>> report.after.forget_accuracy
  """
  _check_lambdas(lambda1, lambda2)
  codes, classes, in_forget = validate_request(apply_fn, params, codes, forget)

  def run(params, codes, in_forget, lambdas):
    f_forget, f_remain = fisher_lib.masked_class_fishers(
        apply_fn, params, codes, in_forget, microbatch_size=microbatch_size,
        method=method, mesh=mesh)
    alpha, plus, minus = candidates(params, fisher_ratio(f_forget, f_remain), *lambdas)
    scores = [code_scores(apply_fn, p, codes, in_forget) for p in (params, plus, minus)]
    before, s_plus, s_minus = scores
    # Ties on the paper's criterion go to the lower forgotten-code margin.
    take_plus = (s_plus.criterion > s_minus.criterion) | (
        (s_plus.criterion == s_minus.criterion) & (s_plus.forget_margin <= s_minus.forget_margin))
    choose = lambda a, b: jax.tree.map(lambda u, v: jnp.where(take_plus, u, v), a, b)
    return choose(plus, minus), take_plus, alpha, before, choose(s_plus, s_minus), choose(s_minus, s_plus)

  lambdas = (jnp.float32(lambda1), jnp.float32(lambda2))
  out, seconds, compile_seconds = compile_and_run(run, params, codes, in_forget, lambdas)
  new_params, take_plus, alpha, before, after, rejected = out
  report = ForgetReport(
      classes=classes, lambda1=float(lambda1), lambda2=float(lambda2),
      sign=1 if bool(take_plus) else -1, alpha=jax.tree.map(float, alpha),
      before=before, after=after, rejected=rejected,
      seconds=seconds, compile_seconds=compile_seconds)
  return new_params, report


def validate_request(apply_fn, params: PyTree, codes: chex.Array, forget: Sequence[int]
                     ) -> tuple[jax.Array, tuple[int, ...], jax.Array]:
  """Checks a forgetting request before any work.

  Returns:
    ``(codes, classes, in_forget)``: the codes as a jax array, the sorted classes and
    their boolean mask over all classes.

  Raises:
    ValueError: bad classes, codes that do not fit the model, or a number of logits that
      differs from the number of codes.
  """
  codes = jnp.asarray(codes)
  num_classes = codes.shape[0]
  classes = fisher_lib.validate_classes(forget, num_classes)
  fisher_lib.check_input_shape(apply_fn, params, codes)
  logits = jax.eval_shape(apply_fn, params, codes)
  if logits.shape[-1] != num_classes:
    raise ValueError(
        f"the model has {logits.shape[-1]} outputs but there are {num_classes} codes; "
        "codes must be one per class")
  return codes, classes, fisher_lib.class_mask(classes, num_classes)


def candidates(params: PyTree, eta: PyTree, lambda1, lambda2
               ) -> tuple[PyTree, PyTree, PyTree]:
  """The two candidates of eq. (5): ``(alpha, params + alpha * eta, params - alpha * eta)``."""
  alpha = step_sizes(eta, lambda1, lambda2)
  delta = jax.tree.map(jnp.multiply, alpha, eta)
  return (alpha, jax.tree.map(jnp.add, params, delta),
          jax.tree.map(jnp.subtract, params, delta))


def compile_and_run(fn, *args) -> tuple[Any, float, float]:
  """Compiles ``jit(fn)`` ahead of time, runs it once; ``(out, seconds, compile_seconds)``."""
  start = time.perf_counter()
  compiled = jax.jit(fn).lower(*args).compile()
  compile_seconds = time.perf_counter() - start
  start = time.perf_counter()
  out = jax.block_until_ready(compiled(*args))
  return out, time.perf_counter() - start, compile_seconds


def _check_lambdas(lambda1, lambda2):
  for name, value in (("lambda1", lambda1), ("lambda2", lambda2)):
    if not isinstance(value, jax.Array) and not value > 0:
      raise ValueError(f"{name} must be positive, got {value}")
