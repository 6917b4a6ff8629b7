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

from mnemonic_jax import errors
from mnemonic_jax.forgetting import primitives as prim
from mnemonic_jax.forgetting.criterion import DEFAULT_RULE, Rule
from mnemonic_jax.forgetting.moves import paper_search
from mnemonic_jax.forgetting.moves.algorithm2 import Algorithm2Details
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
    if self.strategy not in paper_search.STRATEGIES:
      raise errors.BadRequest(f"unknown search strategy {self.strategy!r}; use one of "
                              f"{paper_search.STRATEGIES}")

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
