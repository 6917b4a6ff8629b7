"""experiments.fewshot: issue #20's few-shot fallback, ``fewshot-reassign``.

On a tiny random MLP: the method runs through :func:`mnemonic_jax.baselines.unlearn`, reads
only k images of each class (rows counted as they are taken from each split), says so, moves
the body and not the head before reassign, and draws the same images for the same seed.
"""

import jax
import jax.numpy as jnp
import numpy as np

from experiments import fewshot
from mnemonic_jax import baselines, models
from mnemonic_jax.baselines import base
from mnemonic_jax.bundle import Bundle

from array_support import Counted

CLASSES = 4
SHOTS = 3


def _tiny(rng):
  model = models.create_model("mlp", CLASSES, hidden=(8,))
  params = model.init(jax.random.key(0), jnp.zeros((1, 4, 4, 1)))["params"]
  codes = jnp.asarray(rng.normal(size=(CLASSES, 4, 4, 1)), jnp.float32)
  bundle = Bundle("mlp", {"hidden": (8,)}, params, {}, codes, CLASSES, (4, 4, 1),
                  mean=(0.5,), std=(0.25,))
  labels = np.repeat(np.arange(CLASSES), 7)
  images = rng.integers(0, 256, size=(len(labels), 4, 4, 1), dtype=np.uint8)
  return bundle, images, labels


def test_runs_and_reads_only_k_images_of_each_class(monkeypatch):
  monkeypatch.delitem(base.METHODS, fewshot.NAME, raising=False)
  fewshot.register_if_named(["mnemonic-reassign", f"{fewshot.NAME}@steps=3"])
  assert fewshot.NAME in base.METHODS
  fewshot.register()  # Again: a no-op, not a second registration.
  bundle, images, labels = _tiny(np.random.default_rng(0))
  full = baselines.UnlearnData.from_training(images, labels, [1])
  logs = {"retain": [], "forget": []}
  data = baselines.UnlearnData(**{
      side: base.Split(Counted(getattr(full, side).images, logs[side]),
                       getattr(full, side).labels) for side in logs})
  config = fewshot.FewShotConfig(shots=SHOTS, steps=3, margin_w=1.0)
  new, report = baselines.unlearn(fewshot.NAME, bundle, [1], data, config)
  monkeypatch.delitem(base.METHODS, fewshot.NAME)  # The registry as other tests know it.

  assert report.examples == {"retain": SHOTS * (CLASSES - 1), "forget": SHOTS}
  assert sum(logs["retain"]) == SHOTS * (CLASSES - 1) and sum(logs["forget"]) == SHOTS
  read = report.details["read"]
  assert read["images_per_class"] == {str(c): SHOTS for c in range(CLASSES)}
  assert report.details["data_read"].startswith(f"{SHOTS} training images of each of 4")
  assert new.forgotten_classes == (1,)
  assert np.isfinite(report.details["loss_last"])
  body = new.params["Dense_0"]["kernel"] - bundle.params["Dense_0"]["kernel"]
  assert float(jnp.abs(body).max()) > 0  # Fine-tuned (the head moves by reassign only).


def test_the_draw_is_fixed_by_its_seed_and_takes_k_of_each_class():
  labels = np.repeat(np.arange(3), [5, 2, 9])
  first = fewshot.draw(labels, [0, 1, 2], 3, seed=7)
  np.testing.assert_array_equal(first, fewshot.draw(labels, [0, 1, 2], 3, seed=7))
  np.testing.assert_array_equal(np.bincount(labels[first]), [3, 2, 3])  # All 2 of class 1.
  assert not np.array_equal(first, fewshot.draw(labels, [0, 1, 2], 3, seed=8))


def test_spread_targets_cover_the_top_remaining_classes():
  logits = jnp.asarray([[5.0, 4.0, 3.0, 2.0, 1.0]])
  remaining = jnp.asarray([False, True, True, True, True])
  spread = fewshot.targets(logits, remaining, fewshot.FewShotConfig(target="spread",
                                                                    neighbours=2))
  np.testing.assert_allclose(spread[0], [0, 1 / (1 + np.exp(-1)), 1 / (1 + np.e), 0, 0],
                             rtol=1e-6)
  nearest = fewshot.targets(logits, remaining, fewshot.FewShotConfig())
  np.testing.assert_array_equal(nearest[0], [0, 1, 0, 0, 0])
