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
