"""``paper``: the paper's move ``w +/- alpha * eta`` (eq. 5) with data-free step bounds.

Yamashita, Yamada, Shibata, ACML 2024, eqs. (5)-(7), with ``(lambda1, lambda2)`` and the
sign chosen on the codes by :func:`mnemonic_jax.forgetting.moves.paper_search.search`
(this project: the paper hand-picks the lambdas per dataset). The kept candidate is the
one the search chose, sign included (the rule looks at margins, not the paper's
criterion).
"""

import dataclasses
from typing import ClassVar, Sequence

import jax
import numpy as np
from jax.sharding import Mesh

from mnemonic_jax import _validate, errors
from mnemonic_jax.forgetting import primitives as prim
from mnemonic_jax.forgetting.criterion import DEFAULT_RULE, Rule
from mnemonic_jax.forgetting.moves import paper_search
from mnemonic_jax.forgetting.moves.algorithm2 import Algorithm2, Algorithm2Details
from mnemonic_jax.forgetting.moves.base import Move, Moved, register
from mnemonic_jax.pytrees import PyTree


@dataclasses.dataclass(frozen=True)
class PaperDetails(Algorithm2Details):
  """Algorithm 2's record for the chosen pair, and the search (``search``: a
  :class:`~mnemonic_jax.forgetting.moves.paper_search.SearchResult`).

  ``rejected`` holds NaN where the pruned search never scored the other candidate.
  """

  search: paper_search.SearchResult | None = None

  def to_dict(self) -> dict:
    """JSON-able: Algorithm 2's fields, the search's summary, its rule and fallback."""
    search = self.search.to_dict()
    return {**super().to_dict(), "search": search, "rule": search["rule"],
            "fallback": search["fallback"]}


def _same(value, default) -> bool:
  """``value == default``, False where the comparison has no single answer (arrays)."""
  try:
    return bool(value == default)
  except (TypeError, ValueError):
    return False


@register
@dataclasses.dataclass(frozen=True)
class Paper(Move):
  """The paper's move with ``(lambda1, lambda2)`` chosen from the codes.

  Attributes:
    rule: the step rule (:class:`~mnemonic_jax.forgetting.criterion.Rule`).
    grid: ``(lambda1 values, lambda2 values)``; every pair is tried with both signs.
    strategy: ``"pruned"`` (default), ``"full"`` or ``"boundary"`` (see
      :func:`~mnemonic_jax.forgetting.moves.paper_search.select_lambdas`).
    chunk: candidates scored at once (default: by backend and model size).
    microbatch_size, method, mesh: the Fisher's (:func:`mnemonic_jax.fisher_diagonal`).

  Raises:
    TypeError: an option of the wrong kind (a ``rule`` that is not a Rule, a ``grid``
      that is not a pair of sequences of numbers, a ``chunk`` or ``microbatch_size``
      that is not an int or None, a ``strategy``, ``method`` that is not a string, a
      ``mesh`` that is not a Mesh); the message names the option.
    ValueError: an empty grid or a lambda on it not finite and > 0, ``chunk`` or
      ``microbatch_size`` below 1, an unknown ``strategy`` or ``method``.
  """

  name: ClassVar[str] = "paper"
  acts_on: ClassVar[str] = "all layers"
  baseline: ClassVar[str] = "mnemonic-auto"
  summary: ClassVar[str] = ("the paper's move w +/- alpha * eta (eq. 5), lambdas chosen "
                            "from the codes")

  rule: Rule = DEFAULT_RULE
  grid: tuple[Sequence[float], Sequence[float]] = (paper_search.LAMBDA1_GRID,
                                                   paper_search.LAMBDA2_GRID)
  strategy: str = "pruned"
  chunk: int | None = None
  microbatch_size: int | None = None
  method: str = "auto"
  mesh: Mesh | None = None

  def __post_init__(self):
    paper_search.check_options(grid=self.grid, rule=self.rule, chunk=self.chunk,
                               strategy=self.strategy, microbatch_size=self.microbatch_size,
                               method=self.method, mesh=self.mesh, prefix="Paper.")
    for field in ("chunk", "microbatch_size"):  # 0-d arrays: their numbers (hashable).
      object.__setattr__(self, field, _validate.stored_number(getattr(self, field)))

  def with_lambdas(self, lambda1, lambda2) -> Move:
    """Numbers for the lambdas beside ``Paper`` run them: Algorithm 2, with this object's
    Fisher options (``microbatch_size``, ``method``, ``mesh``), as ``move="paper"`` by
    name does.

    Raises:
      BadRequest: this object sets how the lambdas are searched (``rule``, ``grid``,
        ``strategy``, ``chunk``): with the lambdas given nothing is searched.
      TypeError, ValueError: a lambda that is not a finite number > 0.
    """
    searched = [f.name for f in dataclasses.fields(self)
                if f.name in ("rule", "grid", "strategy", "chunk")
                and not _same(getattr(self, f.name), f.default)]
    if searched:
      raise errors.BadRequest(
          f"moves.Paper({', '.join(f'{n}=...' for n in searched)}) says how to search the "
          f"lambdas, but lambda1={lambda1!r} and lambda2={lambda2!r} are given, so none is "
          "searched; drop the lambdas, or pass moves.Algorithm2(lambda1=..., lambda2=...) "
          "to run the given ones")
    return Algorithm2(lambda1=lambda1, lambda2=lambda2, microbatch_size=self.microbatch_size,
                      method=self.method, mesh=self.mesh)

  def __call__(self, params: PyTree, request: prim.Request) -> Moved:
    result = paper_search.search(
        params, request, grid=self.grid, rule=self.rule, chunk=self.chunk,
        strategy=self.strategy, microbatch_size=self.microbatch_size, method=self.method,
        mesh=self.mesh)
    new, alpha = paper_search.apply_lambdas(
        params, result.eta, np.float32(result.lambda1), np.float32(result.lambda2),
        np.float32(result.sign))
    if not prim.finite(new):
      raise errors.BadRequest(f"lambda1={result.lambda1:g}, lambda2={result.lambda2:g} made "
                              "parameters non-finite (NaN or inf); use a smaller grid")
    details = PaperDetails(
        lambda1=result.lambda1, lambda2=result.lambda2, sign=result.sign,
        alpha=jax.tree.map(float, alpha), rejected=result.scores(result.opposite),
        search=result)
    return Moved(new, result.before, result.scores(result.index), bool(result.met), details)
