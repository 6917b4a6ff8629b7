"""The training state :func:`mnemonic_jax.training.fit` steps (importable from
:mod:`mnemonic_jax.training` as before)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import flax
import jax

if TYPE_CHECKING:
  import optax

PyTree = Any


@flax.struct.dataclass
class TrainState:
  """Everything that changes during training.

  Attributes:
    step: number of optimiser steps taken.
    params: trainable parameters.
    batch_stats: BatchNorm running statistics (``{}`` if the model has none).
    opt_state: optax state.
  """

  step: jax.Array
  params: PyTree
  batch_stats: PyTree
  opt_state: optax.OptState
