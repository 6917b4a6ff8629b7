"""Input checks of the public primitives: code_scores' class masks, and perturbation's
(and fisher_ratio's) two Fisher trees."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mnemonic_jax as mj
from mnemonic_jax import errors
from mnemonic_jax import fisher as fisher_lib

from random_support import normal, uniform

C = 4


def linear_apply(params, x):
  return x.reshape(x.shape[0], -1) @ params["w"]


CODES = uniform(0, (C, 2, 2, 1))
PARAMS = {"w": normal(1, (4, C))}


@pytest.mark.parametrize("mask, error, phrase", [
    (jnp.array([3]), errors.BadRequestType, "boolean mask"),  # Gave accuracies above 1.
    (np.array([1, 2]), errors.BadRequestType, r"class_mask\(classes, 4\)"),
    ([1, 2], errors.BadRequestType, "boolean mask"),  # Was: bad operand type for unary ~.
    (np.array([0.0, 1.0, 0.0, 0.0]), errors.BadRequestType, "boolean mask"),
    (np.ones(3, bool), errors.BadRequest, r"shape \(4,\)"),  # Was a broadcasting error.
    (np.ones((1, C), bool), errors.BadRequest, r"shape \(4,\)"),
    (np.zeros(C, bool), errors.BadRequest, "in_forget has no True entry"),
    (np.ones(C, bool), errors.BadRequest, "in_remain has no True entry"),
], ids=["int-array", "int-numpy", "int-list", "float", "length", "rank", "empty", "all"])
def test_code_scores_take_boolean_masks_only(mask, error, phrase):
  with pytest.raises(error, match=phrase):
    mj.code_scores(linear_apply, PARAMS, CODES, mask)


@pytest.mark.parametrize("in_remain, phrase", [
    (np.array([0, 1, 2]), "in_remain must be a boolean mask"),
    (np.zeros(C, bool), "in_remain has no True entry")])
def test_code_scores_check_in_remain_too(in_remain, phrase):
  with pytest.raises(ValueError, match=phrase):
    mj.code_scores(linear_apply, PARAMS, CODES, fisher_lib.class_mask([1], C), in_remain)


def test_code_scores_refuse_logits_that_are_not_one_per_code():
  # The shared check of every entry point (model_outputs), on shapes only.
  with pytest.raises(errors.BadRequest, match=r"4 outputs but there are 3 codes"):
    mj.code_scores(linear_apply, PARAMS, CODES[:3], np.array([True, False, False]))


def test_code_scores_accept_a_list_of_bools_and_score_traced_empty_masks_without_nan():
  mask = [False, True, False, False]
  want = mj.code_scores(linear_apply, PARAMS, CODES, np.array(mask))
  got = mj.code_scores(linear_apply, PARAMS, CODES, mask)
  assert float(got.forget_accuracy) == float(want.forget_accuracy) <= 1.0
  # Under jit the mask's values are unknown: the documented empty-set values, no NaN.
  scores = jax.jit(lambda m: mj.code_scores(linear_apply, PARAMS, CODES, m))(np.zeros(C, bool))
  assert float(scores.forget_accuracy) == 0.0 and float(scores.forget_margin) == -np.inf
  with pytest.raises(errors.BadRequestType, match="boolean mask"):  # Dtypes on the trace.
    jax.jit(lambda m: mj.code_scores(linear_apply, PARAMS, CODES, m))(np.arange(C))


ONES = np.ones(3, np.float32)


@pytest.mark.parametrize("fn", [mj.perturbation, lambda f, r, *_: mj.fisher_ratio(f, r)],
                         ids=["perturbation", "fisher_ratio"])
@pytest.mark.parametrize("f_forget, f_remain, phrase", [
    ({"w": ONES}, {"v": ONES}, r"only in f_forget: \['w'\]; only in f_remain: \['v'\]"),
    ({"w": ONES, "b": ONES}, {"w": ONES}, r"only in f_forget: \['b'\]"),
    ([ONES], (ONES,), "containers differ"),
    ({"w": ONES}, {"w": ONES[:2]}, r"f_forget\['w'\] has shape \(3,\) but"),
    ({"w": -ONES}, {"w": ONES}, r"f_forget\['w'\] holds 3 negative"),
    ({"w": ONES}, {"w": jnp.asarray([1.0, -1.0, 1.0])}, r"f_remain\['w'\] holds 1 negative"),
], ids=["keys", "missing", "containers", "shape", "negative", "negative-jax"])
def test_fishers_of_different_trees_or_negative_are_refused(fn, f_forget, f_remain, phrase):
  with pytest.raises(errors.BadRequest, match=phrase):
    fn(f_forget, f_remain, 1e-3, 10.0)


def test_negative_fishers_are_not_read_under_jit():
  # Traced values are unknown: no check, no transfer, the reference numerics (eta = 1).
  eta = jax.jit(mj.fisher_ratio)({"w": -ONES}, {"w": ONES})
  np.testing.assert_allclose(eta["w"], 1.0)
  with pytest.raises(errors.BadRequest, match="only in f_remain"):  # Structure: on the trace.
    jax.jit(mj.fisher_ratio)({"w": ONES}, {"w": ONES, "b": ONES})
