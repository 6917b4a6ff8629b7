"""The depth attacks refuse the wrong kind of images.

The functions of :mod:`mnemonic_jax.evaluation` that take images take one kind:
``input_scale_recovery`` normalised inputs (it scales them; raw uint8 images were scaled as
pixel values, up to 765), ``forward`` and ``features_fn`` raw uint8 images (they normalise
them). Each refuses the other kind with a ``BadRequestType`` that names the right call.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mnemonic_jax as mj
from mnemonic_jax import errors, evaluation
from mnemonic_jax.bundle import Bundle

SHAPE = (8, 8, 1)


def _bundle() -> Bundle:
  model = mj.create_model("mlp", 10, hidden=(16,))
  params = model.init(jax.random.key(1), jnp.zeros((1, *SHAPE)))["params"]
  return Bundle("mlp", {"hidden": (16,)}, params, {}, jnp.zeros((10, *SHAPE)), 10, SHAPE,
                mean=(0.3,), std=(0.3,))


def _images(n: int = 6) -> np.ndarray:
  return np.random.default_rng(0).integers(0, 256, (n, *SHAPE), dtype=np.uint8)


@pytest.mark.parametrize("convert", [
    lambda x: x, lambda x: x.astype(np.int32), lambda x: x.astype(np.int64),
    lambda x: jnp.asarray(x), lambda x: jnp.asarray(x, jnp.int32)],
    ids=["uint8", "int32", "int64", "jax-uint8", "jax-int32"])
def test_input_scale_recovery_refuses_raw_integer_images(convert):
  seen = []

  def predict(x):
    seen.append(x)
    return jnp.zeros((len(x), 10))

  with pytest.raises(errors.BadRequestType, match="not normalised inputs.*forward"):
    evaluation.input_scale_recovery(predict, convert(_images()), np.full(6, 3), [3])
  assert not seen  # Refused before the model is queried.


def test_input_scale_recovery_takes_normalised_inputs():
  bundle = _bundle()
  images = _images()
  x = bundle.normalize(images)
  seen = []

  def predict(inputs):
    seen.append(float(jnp.max(jnp.abs(inputs))))
    return bundle.apply_fn()(bundle.params, inputs)

  for inputs in (x, np.asarray(x), np.asarray(x, np.float64), x.astype(jnp.bfloat16)):
    out = evaluation.input_scale_recovery(predict, inputs, np.full(6, 3), [3], (2.0,))
    assert set(out) == {2.0}
  assert max(seen) < 2 * (1 - 0.3) / 0.3 + 1e-3  # Normalised inputs, times 2.
  # The same numbers as forward on the uint8 images at that scale.
  direct = evaluation.input_scale_recovery(
      lambda v: bundle.apply_fn()(bundle.params, v), x, np.full(6, 3), [3], (2.0,))
  logits = evaluation.forward(bundle, images, features=False, scale=2.0).logits
  assert direct[2.0] == evaluation.forgotten_accuracy(logits, np.full(6, 3), [3])


@pytest.mark.parametrize("convert", [
    lambda b, x: b.normalize(x), lambda b, x: np.asarray(x, np.float32),
    lambda b, x: np.asarray(x, np.int32)], ids=["normalised", "float-pixels", "int32"])
def test_forward_and_features_fn_refuse_images_that_are_not_uint8(convert):
  bundle = _bundle()
  images = convert(bundle, _images())
  with pytest.raises(errors.BadRequestType, match="uint8"):
    evaluation.forward(bundle, images, features=False)
  with pytest.raises(errors.BadRequestType, match="uint8"):
    evaluation.features_fn(bundle)(images)


# ----------------------------------------------------------------------------------------
# best_constant in float64: thresholds one unit in the last place apart (W4).


def _hits(logits, labels, forgotten, delta):
  shifted = logits.copy()
  shifted[:, forgotten] += delta
  return int(np.sum(np.argmax(shifted, -1) == labels))


def _candidates(logits, forgotten):
  """Every constant where some forgotten logit meets a remaining one, a few float64 steps
  either side, the midpoints between them, one beyond each end, and 0."""
  remaining = [c for c in range(logits.shape[1]) if c not in forgotten]
  meets = np.unique((logits[:, remaining][:, :, None] - logits[:, forgotten][:, None, :]).ravel())
  near = [meets]
  for direction in (np.inf, -np.inf):
    step = meets
    for _ in range(3):
      step = np.nextafter(step, direction)
      near.append(step)
  return np.unique(np.concatenate([[0.0, meets[0] - 1.0, meets[-1] + 1.0], *near,
                                   (meets[1:] + meets[:-1]) / 2])), meets


def test_best_constant_on_thresholds_one_ulp_apart():
  logits = np.array([[1.8, 0.1, 0.9], [1.7, -1.7, 0.8]])  # Thresholds 0.9, 0.8999999999999999.
  labels = np.array([1, 2])
  delta = evaluation.best_constant(logits, labels, [2])
  assert _hits(logits, labels, [2], delta) == 1  # It was 0 (a point on a threshold).
  assert delta > 0.9
  assert evaluation.one_constant_recovery(logits, labels, logits, labels, [2]) == 100.0


@pytest.mark.parametrize("decimals", [1, 2])
def test_best_constant_beats_every_candidate_on_rounded_decimals(decimals):
  # Logits rounded to decimals are not exact in binary: differences of two pairs that are
  # equal in decimals often differ by one unit in the last place (1.8 - 0.9, 1.7 - 0.8).
  rng = np.random.default_rng(decimals)
  near_ties = 0
  for case in range(300):
    num_classes, n = int(rng.integers(2, 6)), int(rng.integers(1, 12))
    logits = np.round(rng.uniform(-2, 2, (n, num_classes)), decimals)
    labels = rng.integers(0, num_classes, n)
    forgotten = sorted(rng.choice(num_classes, int(rng.integers(1, num_classes)),
                                  replace=False).tolist())
    delta = evaluation.best_constant(logits, labels, forgotten)
    candidates, meets = _candidates(logits, forgotten)
    hits = _hits(logits, labels, forgotten, delta)
    assert hits >= max(_hits(logits, labels, forgotten, d) for d in candidates), (
        case, logits.tolist(), labels.tolist(), forgotten, delta)
    if hits == _hits(logits, labels, forgotten, 0.0):
      assert delta == 0.0  # No change when none is needed.
    gaps = np.diff(meets)
    near_ties += int(np.any(gaps <= 4 * np.spacing(np.abs(meets[1:]))))
  assert near_ties > 15  # The cases hold many thresholds a few units in the last place apart.
