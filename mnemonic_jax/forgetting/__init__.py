"""Data-free forgetting from the mnemonic codes, in layers that import only downward.

* :mod:`.primitives`: eqs. (5)-(7) of the paper, code scores, the checked request;
* :mod:`.criterion`: the one rule for choosing a step, :func:`~.criterion.select`;
* :mod:`.moves`: one module per move, each a typed object in :data:`MOVES`;
* :mod:`.forget`: the front door, :func:`forget`, and its :class:`ForgetReport`.
"""

from mnemonic_jax.forgetting.criterion import DEFAULT_RULE, Rule, Selection, select
from mnemonic_jax.forgetting.forget import (AUTO, DEFAULT_MOVE, ForgetReport, forget,
                                            resolve_move)
from mnemonic_jax.forgetting.moves import ACTS_ON, MOVES, Move, get
from mnemonic_jax.forgetting.moves.paper_search import SearchResult, select_lambdas
from mnemonic_jax.forgetting.primitives import (EPS, CodeScores, Request, code_margins,
                                                code_scores, fisher_ratio, perturbation,
                                                step_sizes, validate_request)

__all__ = ["ACTS_ON", "AUTO", "DEFAULT_MOVE", "DEFAULT_RULE", "EPS", "MOVES", "CodeScores",
           "ForgetReport", "Move", "Request", "Rule", "SearchResult", "Selection",
           "code_margins", "code_scores", "fisher_ratio", "forget", "get", "perturbation",
           "resolve_move", "select", "select_lambdas", "step_sizes", "validate_request"]
