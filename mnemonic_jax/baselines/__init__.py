"""Unlearning methods side by side, behind one signature (see :mod:`.base`).

Importing this package registers every method; :func:`unlearn` runs one by name::

  from mnemonic_jax import baselines
  data = baselines.UnlearnData.from_training(images, labels, classes=[3])
  new_bundle, report = baselines.unlearn("ssd", bundle, [3], data)

Names (the experiment runner's ``--methods``): ``retrain`` (the oracle), ``finetune``,
``neggrad``, ``neggrad+``, ``random-labels``, ``ssd``, ``ssd-exact``, ``fisher`` (SFDN), ``unsir``
(FastMU), ``scrub``, ``salun``, ``l1-sparse``, ``bad-teacher``, ``boundary-shrink``, ``lfssd``,
``jit-lipschitz``, ``svd-projection``, and the paper's method, data-free, one name per move
of :data:`mnemonic_jax.MOVES` (each reads the codes only): ``mnemonic`` (Algorithm 2 with
given lambdas), ``mnemonic-auto`` (the paper's move, lambdas chosen from the codes),
``mnemonic-bias``, ``mnemonic-dampen``, ``mnemonic-signed``, ``mnemonic-head``,
``mnemonic-steps``, ``mnemonic-shrink``, ``mnemonic-shrink+bias``, ``mnemonic-erase``,
``mnemonic-project`` and ``mnemonic-reassign`` (each move's ``summary`` in
``mnemonic_jax.MOVES`` describes it). ``available_methods()`` lists them all.
"""

# Each module registers its methods on import; the order is the registry's.
# pylint: disable=unused-import
from mnemonic_jax.baselines import retrain  # noqa: F401  (the oracle first)
from mnemonic_jax.baselines import finetune, neggrad, random_labels  # noqa: F401
from mnemonic_jax.baselines import ssd, fisher_forgetting, unsir  # noqa: F401
from mnemonic_jax.baselines import scrub, salun, l1_sparse, bad_teacher  # noqa: F401
from mnemonic_jax.baselines import boundary_shrink, lfssd, jit_lipschitz  # noqa: F401
from mnemonic_jax.baselines import svd_projection  # noqa: F401
from mnemonic_jax.baselines import mnemonic  # noqa: F401
from mnemonic_jax.baselines.base import (
    DATA_KINDS, METHODS, Method, MethodReport, Outcome, Split, UnlearnData, available_methods,
    get_method, unlearn)

__all__ = [
    "DATA_KINDS", "METHODS", "Method", "MethodReport", "Outcome", "Split", "UnlearnData",
    "available_methods", "get_method", "unlearn",
]
