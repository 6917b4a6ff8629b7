"""The factorized Fisher's one trace is cached (``jax.jit``) with its check's verdict: a
cached verdict must belong to its own model, never to another of the same structure."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest

import mnemonic_jax as mj
from mnemonic_jax import layer_taps


class _MaybeTied(nn.Module):
  """Two Dense layers; ``tied`` reads the first kernel again outside its layer, with the
  same parameters (names, shapes, dtypes) either way."""

  tied: bool

  @nn.compact
  def __call__(self, x, train: bool = False):
    del train  # inference_apply_fn passes it.
    dense = nn.Dense(6)
    h = jnp.tanh(dense(x.reshape(x.shape[0], -1)))
    out = nn.Dense(3)(h)
    if self.tied:
      out = out + h @ dense.variables["params"]["kernel"][:3].T
    return out


def test_a_cached_verdict_is_never_another_models():
  codes = mj.generate_codes(jax.random.key(0), 3, (2, 2, 1))
  models = {tied: _MaybeTied(tied) for tied in (False, True)}
  params = models[False].init(jax.random.key(1), codes)["params"]
  assert jax.tree.map(jnp.shape, params) == jax.tree.map(
      jnp.shape, models[True].init(jax.random.key(1), codes)["params"])
  for tied in (False, True, False, True):  # Each model twice: traced, then cached.
    apply_fn = mj.inference_apply_fn(models[tied], {})
    assert layer_taps.covers(apply_fn, params, codes) is not tied
    if tied:
      with pytest.raises(mj.errors.BadRequest, match="method='factorized' needs"):
        mj.fisher_diagonal(apply_fn, params, codes, jnp.arange(3), method="factorized")
    else:
      mj.fisher_diagonal(apply_fn, params, codes, jnp.arange(3), method="factorized")
