"""Input checks of the metrics on logits (per_class_accuracy, forgetting_metrics,
shift_recovery): host NumPy only, nothing compiled."""

import numpy as np
import pytest

import mnemonic_jax as mj
from mnemonic_jax import errors
from mnemonic_jax import metrics

LOGITS = np.eye(4, dtype=np.float32)[np.arange(8) % 4]
LABELS = np.arange(8) % 4

METRICS = {
    "per_class_accuracy": lambda logits, labels: mj.per_class_accuracy(logits, labels, 4),
    "forgetting_metrics": lambda logits, labels: mj.forgetting_metrics(logits, labels, [1]),
    "shift_recovery": lambda logits, labels: metrics.shift_recovery(logits, labels, [1]),
}


def _with(value, row=3):
  logits = LOGITS.copy()
  logits[row, 0] = value
  return logits


@pytest.mark.parametrize("metric", sorted(METRICS))
@pytest.mark.parametrize("logits, labels, error, phrase", [
    (_with(np.nan), LABELS, errors.BadRequest, "non-finite"),  # A NaN model scored E_F=100.
    (_with(np.inf), LABELS, errors.BadRequest, "non-finite"),
    (LOGITS, LABELS[:7], errors.BadRequest, "disagree on the number of examples"),
    (LOGITS[0], LABELS[:4], errors.BadRequest, r"shape \(N, C\)"),
    (LOGITS.astype(bool), LABELS, errors.BadRequestType, "real-valued"),
], ids=["nan", "inf", "length", "rank", "bool"])
def test_the_metrics_refuse_bad_logits(metric, logits, labels, error, phrase):
  with pytest.raises(error, match=phrase):
    METRICS[metric](logits, labels)


def test_a_nan_model_does_not_score_a_perfect_forgetting():
  with pytest.raises(ValueError, match="non-finite"):
    mj.forgetting_metrics(np.full((10, 10), np.nan, np.float32), np.arange(10), [3])


@pytest.mark.parametrize("num_classes, error, phrase", [
    (3, errors.BadRequest, "smaller than the logits' 4 columns"),
    (4.0, errors.BadRequestType, "num_classes must be an integer"),
])
def test_per_class_accuracy_refuses_a_bad_num_classes(num_classes, error, phrase):
  with pytest.raises(error, match=phrase):
    mj.per_class_accuracy(LOGITS, LABELS % 3, num_classes)


def test_good_inputs_still_score():
  np.testing.assert_array_equal(mj.per_class_accuracy(LOGITS, LABELS, 5),
                                [100.0] * 4 + [np.nan])
  assert mj.forgetting_metrics(LOGITS, LABELS, [1]) == {"accuracy": 100.0, "A_R": 100.0,
                                                        "E_F": 0.0}
