"""walk7 (a fresh user on this session's changes): messages of the Python API.

F6: ``moves.get(None)`` was a bare KeyError; a move name in the wrong case was "unknown"
with no hint. F7: ``cross_entropy`` on logits with no class returned NaN, and scalar logits
were told "must be float".
"""

import jax.numpy as jnp
import pytest

import mnemonic_jax as mj
from mnemonic_jax import errors
from mnemonic_jax.forgetting import moves


def test_moves_get_names_a_missing_move_and_the_nearest_name():
  with pytest.raises(errors.BadRequestType, match="got None"):
    moves.get(None)
  for typed, meant in (("Bias", "bias"), (" reassign", "reassign"), ("reasign", "reassign")):
    with pytest.raises(errors.BadRequest, match=f"did you mean '{meant}'"):
      moves.get(typed)
  with pytest.raises(errors.BadRequest, match="did you mean 'bias'"):
    mj.forget(lambda p, x: x, {}, jnp.ones((2, 1)), [0], move="BIAS")


@pytest.mark.parametrize("logits, match", [
    (jnp.ones((3, 0)), r"at least one class.*\(3, 0\)"),
    (jnp.float32(1.0), r"class axis.*shape \(\)"),
])
def test_cross_entropy_refuses_logits_without_a_class(logits, match):
  labels = jnp.zeros(logits.shape[:-1], jnp.int32)
  with pytest.raises(errors.BadRequest, match=match):
    mj.cross_entropy(logits, labels)
