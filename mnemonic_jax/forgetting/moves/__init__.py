"""The forgetting moves, one module each, registered as typed objects in :data:`MOVES`.

========================  ===================  =============================================
name                      acts on              module
========================  ===================  =============================================
``algorithm2``            all layers           :mod:`.algorithm2` (the paper, given lambdas)
``paper``                 all layers           :mod:`.paper` (the paper, lambdas searched)
``bias``                  output layer         :mod:`.bias`
``project``               output layer         :mod:`.project`
``erase``                 output layer         :mod:`.erase`
``reassign``              output layer         :mod:`.reassign`
``signed``, ``steps``     all layers           :mod:`.directional`
``head``, ``shrink``,     concentrated layers  :mod:`.directional`
``shrink+bias``
``dampen``                all layers           :mod:`.dampen`
========================  ===================  =============================================
"""

from mnemonic_jax.forgetting.moves import (algorithm2, bias, dampen, directional, erase, outputs,
                                          paper, project, reassign)
from mnemonic_jax.forgetting.moves.algorithm2 import Algorithm2
from mnemonic_jax.forgetting.moves.base import ACTS_ON, MOVES, Move, Moved, get, register
from mnemonic_jax.forgetting.moves.bias import Bias
from mnemonic_jax.forgetting.moves.dampen import Dampen
from mnemonic_jax.forgetting.moves.erase import Erase
from mnemonic_jax.forgetting.moves.directional import Head, Shrink, ShrinkBias, Signed, Steps
from mnemonic_jax.forgetting.moves.paper import Paper
from mnemonic_jax.forgetting.moves.project import Project
from mnemonic_jax.forgetting.moves.reassign import Reassign

__all__ = ["ACTS_ON", "MOVES", "Algorithm2", "Bias", "Dampen", "Erase", "Head", "Move", "Moved",
           "Paper", "Project", "Reassign", "Shrink", "ShrinkBias", "Signed", "Steps",
           "algorithm2", "bias", "dampen", "directional", "erase", "get", "outputs", "paper",
           "project", "reassign", "register"]
