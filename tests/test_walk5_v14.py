"""walk5 V14, the items still open on main: messages that named the wrong fault, and
arguments one entry point took where its neighbour refused them."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mnemonic_jax as mj
from mnemonic_jax import errors
from mnemonic_jax.evaluation import depth, logit_attacks
from mnemonic_jax.forgetting import moves


def _tiny():
  model = mj.create_model("mlp", 3, hidden=(4,))
  codes = mj.generate_codes(jax.random.key(0), 3, (2, 2, 1))
  return mj.inference_apply_fn(model, {}), model.init(jax.random.key(1), codes)["params"], codes


def test_a_move_class_or_another_type_is_a_type_error_saying_what_to_pass():
  """moves.Bias (the class) was 'unknown move <class ...>', a BadRequest; so was move=3."""
  apply_fn, params, codes = _tiny()
  for call in (lambda m: mj.forget(apply_fn, params, codes, [1], move=m), moves.get):
    with pytest.raises(errors.BadRequestType,
                       match=r"class Bias, not a move: pass an instance, e.g. moves.Bias\(\) "
                             r"\(or its name 'bias'\)"):
      call(moves.Bias)
    with pytest.raises(errors.BadRequestType, match="a move's name or a Move object.*int 3"):
      call(3)
    with pytest.raises(errors.BadRequest, match="unknown move 'biass'"):
      call("biass")


def test_a_lambda_string_other_than_auto_is_named():
  """'Auto' beside 'auto' was 'either both numbers or both auto' (both were strings)."""
  apply_fn, params, codes = _tiny()
  with pytest.raises(errors.BadRequest, match=r"lambda1 must be a positive number or 'auto' "
                                              r"\(lower case\), got 'Auto'"):
    mj.forget(apply_fn, params, codes, [1], "Auto", "auto")
  with pytest.raises(errors.BadRequestType, match="lambda1 must be a positive number or 'auto'"):
    mj.forget(apply_fn, params, codes, [1], "none", "auto")


def test_empty_scales_and_steps_agree():
  """input_scale_recovery(scales=()) returned {} where head_finetune_recovery(steps=())
  is refused; DepthConfig took scales=() (no input-scale figures) and refused
  head_steps=(): now either leaves its attack out."""
  with pytest.raises(errors.BadRequest, match="scales needs at least one scale"):
    logit_attacks.input_scale_recovery(lambda z: z, np.zeros((2, 3), np.float32),
                                       np.arange(2), [1], ())
  config = depth.DepthConfig(scales=(), head_steps=(), relearn=None)
  names = [n for n, _, _ in depth.figure_specs(config)]
  assert not [n for n in names if n.startswith(("input_scale", "head_ft"))], names


def test_codes_take_a_jax_shape_as_a_numpy_one_and_refuse_no_dtype():
  key = jax.random.key(0)
  assert mj.generate_codes(key, 3, jnp.array([2, 2])).shape == (3, 2, 2)
  assert mj.generate_codes(key, 3, np.array([2, 2])).shape == (3, 2, 2)
  with pytest.raises(errors.BadRequestType, match="dtype must be a floating dtype.*got None"):
    mj.generate_codes(key, 3, 4, dtype=None)


def test_an_eps_that_overflows_float32_is_refused_as_inf_is():
  """eps=1e40 passed the finite check (float64) and made every Fisher inf in float32."""
  apply_fn, params, codes = _tiny()
  for call in (lambda: mj.class_fishers(apply_fn, params, codes, [1], eps=1e40),
               lambda: mj.fisher.class_weights(np.eye(3, dtype=bool)[0],
                                               ~np.eye(3, dtype=bool)[0], 1e40)):
    with pytest.raises(errors.BadRequest, match=r"got 1e\+40: every Fisher would be inf "
                                                r"\(float32"):
      call()
  mj.fisher.class_weights(np.eye(3, dtype=bool)[0], ~np.eye(3, dtype=bool)[0], 3e38)
