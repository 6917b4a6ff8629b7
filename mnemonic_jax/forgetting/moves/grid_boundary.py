"""The boundary of a grid of the paper's lambdas: per line, the smallest lambda1 that forgets.

Used by :mod:`mnemonic_jax.forgetting.moves.paper_search`'s ``"boundary"`` strategy.
"""

import numpy as np

from mnemonic_jax import errors


def boundary_points(l1, l2, sign, owner, forget_margin, target, score, batch: int):
  """Per ``(lambda2, sign)``, the smallest ``lambda1`` whose forgotten codes reach ``target``.

  Bisection on each line of the grid at once (``ceil(log2(len(lambda1 values) + 1))``
  rounds), assuming the forgotten codes' margin test is monotone in ``lambda1`` along the
  line (every per-tensor step grows with ``lambda1``).

  Args:
    l1, l2, sign: ``(n,)`` the candidates (a full grid).
    owner: ``(n,)`` the scored candidate standing for each (identical ones share one).
    forget_margin: ``(n,)`` scores so far (NaN: not scored); filled by ``score``.
    target: the margin the forgotten codes must reach (``<=``).
    score: ``score(ids)`` fills ``forget_margin[ids]`` (``len(ids) <= batch``).
    batch: the most candidates ``score`` takes at once.

  Returns:
    The candidate ids of the boundary points (lines where no ``lambda1`` reaches the
    target have none).
  """
  values = np.unique(l1)
  _, line = np.unique(np.stack([l2, sign], 1), axis=0, return_inverse=True)
  line = line.ravel()
  table = np.full((line.max() + 1, len(values)), -1)
  table[line, np.searchsorted(values, l1)] = np.arange(len(l1))
  if (table < 0).any():
    raise errors.BadRequest("the boundary search needs the full grid of pairs")
  lo, hi = np.full(len(table), -1), np.full(len(table), len(values))
  while (hi - lo > 1).any():
    active = np.flatnonzero(hi - lo > 1)
    mid = (lo[active] + hi[active]) // 2
    ids = owner[table[active, mid]]
    todo = np.unique(ids[np.isnan(forget_margin[ids])])
    for start in range(0, len(todo), batch):
      score(todo[start:start + batch])
    reached = forget_margin[ids] <= target
    hi[active[reached]] = mid[reached]
    lo[active[~reached]] = mid[~reached]
  found = np.flatnonzero(hi < len(values))
  return table[found, hi[found]]
