"""The factorized Fisher taps a layer only where its input's rows are proven to be the
examples (mnemonic_jax.layer_rows, walk5 V16)."""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest

import mnemonic_jax as mj
from mnemonic_jax import layer_taps

N = 4  # The batch; each odd model below has an axis of exactly this length that is not it.


class _RowsNotExamples(nn.Module):
  """A tapped layer whose input has ``N`` leading rows that are not the ``N`` examples."""

  case: str

  @nn.compact
  def __call__(self, x):
    flat = x.reshape(x.shape[0], -1)  # (N, 16)
    if self.case == "time-major":  # (T = N rows of the image, N, columns), per token.
      h = nn.LayerNorm()(jnp.tanh(nn.Dense(3)(jnp.swapaxes(x[..., 0], 0, 1))))
      h = jnp.swapaxes(h, 0, 1).reshape(x.shape[0], -1)
    elif self.case == "grid":  # A Dense on a fixed grid of N rows, broadcast over the batch.
      h = flat + nn.Dense(16)(jnp.linspace(0.0, 1.0, 4 * N).reshape(N, 4)).sum(0)
    else:  # "reversed": the rows are the examples, in the other order.
      h = nn.Dense(16)(flat[::-1])[::-1]
    return nn.Dense(N)(jnp.tanh(h))


@pytest.mark.parametrize("case", ["time-major", "grid", "reversed"])
def test_a_layer_whose_rows_are_not_the_examples_gets_the_exact_fisher(case):
  """The time-major layer (T == N) and the grid of N rows got the factorized Fisher 75-91%
  off under "auto", silently; now vmap's, and "factorized" refuses them. The reversed rows
  pair each row with the other example's class weight."""
  model = _RowsNotExamples(case)
  codes = mj.generate_codes(jax.random.key(0), N, (N, 4, 1))
  params = model.init(jax.random.key(1), codes)["params"]
  apply_fn = lambda p, x: model.apply({"params": p}, x)
  assert not layer_taps.covers(apply_fn, params, codes)
  chex.assert_trees_all_close(
      mj.class_fishers(apply_fn, params, codes, [1]),
      mj.class_fishers(apply_fn, params, codes, [1], method="vmap"), rtol=1e-5, atol=1e-7)
  with pytest.raises(ValueError, match="leading axis is the examples"):
    mj.fisher_diagonal(apply_fn, params, codes, jnp.arange(N), method="factorized")


class _RowsKept(nn.Module):
  """Operations that keep the examples first between tapped layers: still factorized."""

  @nn.compact
  def __call__(self, x):
    h = nn.avg_pool(nn.Conv(2, (2, 2))(x), (2, 2), strides=(2, 2))  # (N, 2, 2, 2)
    h = jnp.transpose(h, (0, 2, 1, 3)).reshape(x.shape[0], 4, 2)
    h = jnp.concatenate([jnp.zeros((x.shape[0], 1, 2)), h], axis=1)[:, 1:]
    scores = jnp.einsum("ntf,nsf->nts", h, h)
    h = nn.LayerNorm()(jnp.einsum("nts,nsf->ntf", jax.nn.softmax(scores), h))
    return nn.Dense(N)(h.reshape(x.shape[0], -1))


def test_operations_that_keep_the_examples_first_stay_factorized():
  model = _RowsKept()
  codes = mj.generate_codes(jax.random.key(0), N, (N, 4, 1))
  params = model.init(jax.random.key(1), codes)["params"]
  apply_fn = lambda p, x: model.apply({"params": p}, x)
  assert layer_taps.covers(apply_fn, params, codes)
  chex.assert_trees_all_close(
      mj.fisher_diagonal(apply_fn, params, codes, jnp.arange(N), method="factorized"),
      mj.fisher_diagonal(apply_fn, params, codes, jnp.arange(N), method="vmap"),
      rtol=1e-4, atol=1e-7)
