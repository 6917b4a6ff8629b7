"""Faults a fresh Python user found with bundles and small slips (walk 4, third part).

* W14: a hand-built ``Bundle`` was not checked where it enters the workflow:
  ``workflow.evaluate`` / ``predict`` / ``forget_bundle`` (and ``evaluation.forward``)
  failed with Flax's ``ScopeParamShapeError`` for a ``num_classes``, ``input_shape`` or
  ``mean`` that did not fit the params, blamed "a diverged model" for ``std=0``, and took
  an unknown ``model_name``; only ``save_bundle`` ran the checks.
* W15: ``workflow.forget_bundle`` forgot an already-forgotten class again with no Python
  warning: the caution sat in ``history[-1]["warnings"]`` only, while
  ``baselines.unlearn`` refuses the same request.
* W17: ``select_lambdas`` under ``jax.jit`` was refused in the words of ``mj.forget``;
  ``evaluation.forward`` on no images gave ``(0, 0)`` features, not ``(0, D)``;
  ``code_scores`` took overlapping ``in_forget`` / ``in_remain`` masks (a class both
  forgotten and remaining) without a word.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mnemonic_jax as mj
from mnemonic_jax import errors, workflow
from mnemonic_jax.evaluation import features

_SHAPE, _C = (4, 4, 1), 4


@pytest.fixture(scope="module")
def kw():
  model = mj.create_model("mlp", _C, hidden=(8,))
  params = model.init(jax.random.key(0), jnp.zeros((1, *_SHAPE)))["params"]
  codes = np.asarray(mj.generate_codes(jax.random.key(1), _C, _SHAPE))
  return dict(model_name="mlp", model_kwargs={"hidden": (8,)}, params=params,
              batch_stats={}, codes=codes, num_classes=_C, input_shape=_SHAPE,
              mean=(0.5,), std=(0.25,))


_X = np.zeros((3, *_SHAPE), np.uint8)
_Y = np.arange(3)


# --------------------------------------------------------------------------------- W14

@pytest.mark.parametrize("change, match", [
    ({"num_classes": 6}, r"params do not fit .*num_classes 6: Dense_1/bias has shape \(4,\), "
                         r"expected \(6,\)"),
    ({"input_shape": (4, 4, 3)}, r"params do not fit .*inputs \(4, 4, 3\).*Dense_0/kernel"),
    ({"mean": (0.5, 0.5, 0.5)}, r"'mean' has 3 values for inputs of 1 channels"),
    ({"std": (0.0,)}, r"std \[0.0\] must be positive"),
    ({"model_name": "nope"}, r"model_name and model_kwargs do not make a model.*'nope'"),
    ({"codes": np.zeros((_C, 4, 4, 3), np.float32)}, r"codes have shape \(4, 4, 4, 3\), "
                                                     r"expected \(4, 4, 4, 1\)"),
])
def test_a_hand_built_bundle_is_checked_where_it_enters_the_workflow(kw, change, match):
  bundle = mj.Bundle(**{**kw, **change})
  calls = [lambda: workflow.evaluate(bundle, _X, _Y), lambda: workflow.predict(bundle, _X),
           lambda: workflow.forget_bundle(bundle, [1])]
  if "codes" not in change:  # forward reads no codes.
    calls.append(lambda: features.forward(bundle, _X, features=False))
  for call in calls:
    with pytest.raises(errors.BadRequest, match=match):
      call()


def test_a_consistent_hand_built_bundle_still_goes_through(kw):
  bundle = mj.Bundle(**kw)
  assert workflow.predict(bundle, _X).shape == (3, _C)
  assert features.forward(bundle.replace(codes=None), _X, features=False).logits.shape == (3, _C)


# --------------------------------------------------------------------------------- W15

def test_forgetting_a_class_again_warns_in_python(kw):
  once, _ = workflow.forget_bundle(mj.Bundle(**kw), [1])
  with pytest.warns(errors.ForgottenAgainWarning, match=r"class\(es\) \[1\] were already "
                    "forgotten by an earlier request") as caught:
    twice, _ = workflow.forget_bundle(once, [1])
  said = [str(w.message) for w in caught if w.category is errors.ForgottenAgainWarning]
  assert said == [w for w in twice.history[-1]["warnings"] if "already forgotten" in w]
  assert issubclass(errors.ForgottenAgainWarning, errors.RuleNotMetWarning)


# --------------------------------------------------------------------------------- W17

def test_select_lambdas_under_jit_is_refused_in_its_own_name(kw):
  bundle = mj.Bundle(**kw)
  apply_fn, codes = bundle.apply_fn(), jnp.asarray(bundle.codes)
  with pytest.raises(errors.BadRequestType, match=r"^mj.select_lambdas cannot run under jax.jit"):
    jax.jit(lambda p: mj.select_lambdas(apply_fn, p, codes, [1]).lambda1)(bundle.params)


def test_forward_on_no_images_gives_features_of_the_model_width(kw):
  bundle = mj.Bundle(**kw)
  out = features.forward(bundle, _X[:0])
  assert out.logits.shape == (0, _C) and out.features.shape == (0, 8)
  assert features.forward(bundle, _X[:1]).features.shape == (1, 8)
  assert features.forward(bundle, _X[:0], features=False).features is None


def test_code_scores_refuses_a_class_both_forgotten_and_remaining(kw):
  bundle = mj.Bundle(**kw)
  apply_fn, codes = bundle.apply_fn(), jnp.asarray(bundle.codes)
  mask = np.array([False, True, True, False])
  with pytest.raises(errors.BadRequest, match=r"class\(es\) \[1, 2\] are True in both "
                     "in_forget and in_remain"):
    mj.code_scores(apply_fn, bundle.params, codes, mask, mask)
  scores = mj.code_scores(apply_fn, bundle.params, codes, mask, ~mask)  # Disjoint: taken.
  assert np.isfinite(float(scores.forget_margin))


def test_the_other_entry_points_taking_a_bundle_check_it_too(kw):
  """W14's kind at the baselines, relearning and attach-codes: the same hand-built bundle
  with a num_classes its params do not have failed inside Flax there."""
  from mnemonic_jax import attach, baselines, relearning  # pylint: disable=import-outside-toplevel

  bundle = mj.Bundle(**{**kw, "num_classes": 6})
  split = baselines.Split(_X, _Y)
  calls = [
      lambda: baselines.unlearn("mnemonic-bias", bundle, [1]),
      lambda: relearning.relearn_steps(bundle, split, split, split, 50.0,
                                       key=jax.random.key(0)),
      lambda: attach.attach_codes(bundle, _X, _Y, epochs=1),
  ]
  for call in calls:
    with pytest.raises(errors.BadRequest, match=r"params do not fit .*num_classes 6"):
      call()
