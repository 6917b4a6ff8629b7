"""Algorithm 1 then Algorithm 2 on real data: scikit-learn's bundled digits.

Measured (this machine, seeds 1 and 2, 60 epochs, paper MNIST settings, lambda1 = 1e-3,
lambda2 = 10): every class forgotten to E_F = 100, A_R within 0.9 points of the model
before forgetting, test accuracy before forgetting 95.5-95.8%. Thresholds leave margin:
E_F = 100 exactly, A_R drop <= 3 points, accuracy before >= 92%.
"""

import numpy as np
import pytest

from mnemonic_jax import workflow
from mnemonic_jax.data import load_dataset


@pytest.fixture(scope="module")
def trained():
  config = dict(seed=1, dataset="digits", model="mlp", model_kwargs={"hidden": (1000,)},
                epochs=60, checkpoint_every=10**6)
  import tempfile
  with tempfile.TemporaryDirectory() as workdir:
    bundle = workflow.train(config, workdir, progress=False)
  test = load_dataset("digits", "test")
  return bundle, test


def test_trained_model_is_accurate_and_knows_its_codes(trained):
  bundle, test = trained
  assert workflow.evaluate(bundle, test.images, test.labels).accuracy >= 92.0
  logits = bundle.apply_fn()(bundle.params, bundle.codes)
  np.testing.assert_array_equal(np.argmax(logits, -1), np.arange(10))


@pytest.mark.parametrize("classes", [[0], [3], [8], [1, 7]])
def test_forgets_a_class_with_little_cost(trained, classes):
  bundle, test = trained
  before = workflow.evaluate(bundle, test.images, test.labels, forgotten=classes)
  forgotten, report = workflow.forget_bundle(bundle, classes, 1e-3, 10.0)
  after = workflow.evaluate(forgotten, test.images, test.labels)
  assert forgotten.forgotten_classes == tuple(classes)
  assert after.E_F == 100.0
  assert after.A_R >= before.A_R - 3.0
  assert float(report.after.forget_accuracy) == 0.0
  assert float(report.after.remain_accuracy) == 1.0


def test_sequential_requests(trained):
  bundle, test = trained
  once, _ = workflow.forget_bundle(bundle, [2], 1e-3, 10.0)
  twice, _ = workflow.forget_bundle(once, [5], 1e-3, 10.0)
  after = workflow.evaluate(twice, test.images, test.labels)
  assert twice.forgotten_classes == (2, 5)
  assert after.E_F == 100.0 and after.A_R >= 90.0
