"""``algorithm2``: the paper's Algorithm 2 with given step bounds, exactly as published.

Yamashita, Yamada, Shibata, ACML 2024, Algorithm 2 and eqs. (5)-(7): ``eta = f_F / f_R``
from the codes' Fishers, ``alpha_l = min(lambda1, lambda2 / max eta_l)``, candidates
``w +/- alpha * eta``, and the one with the better ``(1 - acc on forgotten codes) + acc
on remaining codes`` is kept. On a tie of that criterion the lower forgotten-code margin
wins (the criterion saturates once every forgotten code is misclassified), and on a tie
of both ``w - alpha * eta``, as the reference implementation keeps on any tie. Matches
the reference to float32 rounding (``experiments/results/``, docs/results.md).
"""

import dataclasses
import functools
from typing import ClassVar

import jax
import numpy as np
from jax.sharding import Mesh

from mnemonic_jax import _validate, errors
from mnemonic_jax import fisher as fisher_lib
from mnemonic_jax.forgetting import primitives as prim
from mnemonic_jax.forgetting.moves import options, stepping
from mnemonic_jax.forgetting.moves.base import Move, Moved, register
from mnemonic_jax.pytrees import PyTree


@dataclasses.dataclass(frozen=True)
class Algorithm2Details:
  """What Algorithm 2 did.

  Attributes:
    lambda1, lambda2: the step bounds used.
    sign: +1 if ``params + alpha * eta`` was kept, -1 for ``params - alpha * eta``.
    alpha: per-tensor step sizes (pytree of floats shaped like params).
    rejected: code scores of the other candidate.
  """

  lambda1: float
  lambda2: float
  sign: int
  alpha: PyTree
  rejected: prim.CodeScores

  def to_dict(self) -> dict:
    """JSON-able (``alpha`` left out: one number per tensor)."""
    return {"lambda1": self.lambda1, "lambda2": self.lambda2, "sign": self.sign,
            "rejected": {k: float(v) for k, v in self.rejected.items()}}


@functools.partial(jax.jit, static_argnames=("microbatch_size", "method", "mesh"))
def _algorithm2(apply_fn, params, codes, fisher_weights, lambdas, *, microbatch_size, method,
                mesh):
  """``(alpha, (plus, minus))``: the step sizes and both candidates of eq. (5). Their codes'
  logits come from :func:`stepping.logits`, the program the model check has compiled
  already (a first call compiles one program less), and the choice, and the check that the
  kept candidate is finite, are made on the host, so no program is compiled for them."""
  f_forget, f_remain = fisher_lib.weighted_class_fishers(
      apply_fn, params, codes, fisher_weights, microbatch_size=microbatch_size, method=method,
      mesh=mesh)
  eta = prim.fisher_ratio(f_forget, f_remain)
  alpha, plus, minus = prim.candidates(params, eta, *lambdas)
  return alpha, (plus, minus)


@register
@dataclasses.dataclass(frozen=True)
class Algorithm2(Move):
  """The paper's Algorithm 2 with given ``(lambda1, lambda2)``.

  Attributes:
    lambda1: upper bound of the per-tensor step (eq. 7; paper: 1e-3 MNIST, 1e-5 CIFAR-10).
    lambda2: bound of the largest move per tensor (eq. 7; paper: 10 MNIST, 1e4 CIFAR-10).
    microbatch_size, method, mesh: the Fisher's (:func:`mnemonic_jax.fisher_diagonal`).

  Raises:
    TypeError, ValueError: a lambda that is not a finite number > 0; a
      ``microbatch_size`` that is not a positive int or None, an unknown ``method``, a
      ``mesh`` that is not a ``jax.sharding.Mesh`` or None.
  """

  name: ClassVar[str] = "algorithm2"
  acts_on: ClassVar[str] = "all layers"
  baseline: ClassVar[str] = "mnemonic"
  summary: ClassVar[str] = ("the paper's Algorithm 2 with given --lambda1/--lambda2: "
                            "w +/- alpha * eta (eq. 5)")

  lambda1: float
  lambda2: float
  microbatch_size: int | None = None
  method: str = "auto"
  mesh: Mesh | None = None

  def __post_init__(self):
    _validate.lambdas(self.lambda1, self.lambda2, {})
    options.fisher(self.microbatch_size, self.method, self.mesh, "Algorithm2.")
    for field in ("lambda1", "lambda2", "microbatch_size"):  # 0-d arrays: their numbers.
      object.__setattr__(self, field, _validate.stored_number(getattr(self, field)))

  def with_lambdas(self, lambda1, lambda2) -> Move:
    """Refuses: this object holds its own lambdas (see :meth:`Move.with_lambdas`)."""
    raise errors.BadRequest(
        f"lambdas given twice: moves.Algorithm2(lambda1={self.lambda1!r}, "
        f"lambda2={self.lambda2!r}) holds its own, and lambda1={lambda1!r}, "
        f"lambda2={lambda2!r} were given beside it; give them either in the Algorithm2 "
        "object or as arguments (move='algorithm2', lambda1=..., lambda2=...), not both")

  def __call__(self, params: PyTree, request: prim.Request) -> Moved:
    lambda1, lambda2 = _validate.lambdas(self.lambda1, self.lambda2, params)
    alpha, (plus, minus) = _algorithm2(
        request.apply_fn, params, request.codes, request.fisher_weights,
        (np.float32(lambda1), np.float32(lambda2)),
        microbatch_size=None if self.microbatch_size is None else int(self.microbatch_size),
        method=self.method, mesh=self.mesh)
    before, s_plus, s_minus = (
        stepping.host_scores(np.asarray(stepping.logits(request.apply_fn, p, request.codes),
                                        np.float32), request.in_forget, request.in_remain)
        for p in (params, plus, minus))
    take_plus = bool((s_plus.criterion > s_minus.criterion) | (
        (s_plus.criterion == s_minus.criterion)
        & (s_plus.forget_margin < s_minus.forget_margin)))
    new = plus if take_plus else minus
    if not prim.finite(new):
      raise errors.BadRequest(f"lambda1={lambda1:g}, lambda2={lambda2:g} made parameters "
                              "non-finite (NaN or inf); use smaller lambdas")
    after, rejected = (s_plus, s_minus) if take_plus else (s_minus, s_plus)
    as_floats = lambda s: jax.tree.map(float, s)
    details = Algorithm2Details(lambda1=lambda1, lambda2=lambda2, sign=1 if take_plus else -1,
                                alpha=jax.tree.map(float, alpha), rejected=as_floats(rejected))
    before, after = as_floats(before), as_floats(after)
    return Moved(new, before, after, None, details)
