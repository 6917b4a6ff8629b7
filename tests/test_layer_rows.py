"""The factorized Fisher taps a layer only where its input's rows are proven to be the
examples (mnemonic_jax.layer_rows, walk5 V16)."""

import inspect
from typing import Callable

import chex
import flax.linen as nn
import jax
from jax import lax
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


def _while_fixed(h):  # The trip count is fixed; while loops have no reverse derivative.
  return h + lax.while_loop(lambda c: c[0] < 3, lambda c: (c[0] + 1, c[1] * 1.1),
                            (0, lax.stop_gradient(h)))[1]


def _while_on_examples(h):  # The trip count depends on every example.
  return h + lax.while_loop(lambda c: jnp.max(c) > 1, lambda c: c * 0.5, lax.stop_gradient(h))


# Operations along the features of an (n, 8) hidden layer: each row stays its example's.
ROW_PRESERVING = {
    "split": lambda h: jnp.split(h, 2, axis=-1)[0] * jnp.split(h, [2, 5], axis=-1)[1][:, :1],
    "glu": lambda h: nn.glu(h, axis=-1),
    "tile": lambda h: jnp.tile(h, (1, 2)),
    "repeat": lambda h: jnp.repeat(h, 2, axis=-1),
    "stack": lambda h: jnp.stack([h, -h], axis=1).reshape(h.shape[0], -1),
    "moveaxis": lambda h: jnp.moveaxis(h.reshape(-1, 2, 4), 1, 2).reshape(h.shape[0], -1),
    "dynamic_slice": lambda h: lax.dynamic_slice_in_dim(h, 1, 3, axis=1),
    "dynamic_update_slice": lambda h: lax.dynamic_update_slice_in_dim(
        h, jnp.zeros((h.shape[0], 2)), 1, axis=1),
    "scatter": lambda h: h.at[:, 0].set(0.0).at[:, 1].add(h[:, 2]),
    "top_k": lambda h: lax.top_k(h, 3)[0],
    "take_along_axis": lambda h: jnp.take_along_axis(h, jnp.argsort(h, axis=-1), axis=-1),
    "embedding_lookup": lambda h: h + jnp.take(jnp.ones((8, 8)), jnp.argmax(h, -1), axis=0),
    "fft": lambda h: jnp.abs(jnp.fft.rfft(h, axis=-1)),
    "constant_on_the_left": lambda h: (jnp.ones((3, h.shape[1])) @ h.T).T,
    "clamp_erf_inv_rem": lambda h: jax.scipy.special.erfinv(lax.clamp(-0.5, h, 0.5)) % 0.7,
    "cumlogsumexp": lambda h: lax.cumlogsumexp(h, axis=1),
    "where_iota": lambda h: jnp.where(jnp.arange(8) % 2 == 0, h, 0.0),
    "cond": lambda h: lax.cond(True, lambda a: a, lambda a: -a, h),
    "fori_loop": lambda h: lax.fori_loop(0, 2, lambda i, a: a * 1.1, h),
    "while_loop": _while_fixed,
    "depthwise_conv": lambda h: lax.conv_general_dilated(
        h.reshape(-1, 4, 2), jnp.ones((3, 1, 2)), (1,), "SAME",
        dimension_numbers=("NWC", "WIO", "NWC"), feature_group_count=2).reshape(h.shape[0], -1),
    "max_pool": lambda h: nn.max_pool(h[..., None], (2,), strides=(2,)).reshape(h.shape[0], -1),
}

# The same kinds of operations along the examples, or steered by several examples: unproven.
ROW_MIXING = {
    "mean": lambda h: h - h.mean(0),
    "batch_norm_train": lambda h: (h - h.mean(0)) / (h.std(0) + 1.0),
    "roll": lambda h: jnp.roll(h, 1, axis=0),
    "sort": lambda h: jnp.sort(h, axis=0),
    "cumsum": lambda h: jnp.cumsum(h, 0),
    "split": lambda h: jnp.concatenate(jnp.split(h, 2, axis=0)[::-1]),
    "tile": lambda h: jnp.tile(h, (2, 1))[1:h.shape[0] + 1],
    "dynamic_slice": lambda h: jnp.concatenate(
        [lax.dynamic_slice_in_dim(h, 1, h.shape[0] - 1, 0), h[:1]]),
    "dynamic_update_slice_index": lambda h: lax.dynamic_update_slice_in_dim(
        h, jnp.zeros((h.shape[0], 2)), jnp.argmax(h[:, 0]), axis=1),
    "scatter_row": lambda h: h.at[0].set(h[1]),
    "scatter_index": lambda h: h.at[:, jnp.argmax(h[:, 0])].set(0.0),
    "top_k": lambda h: lax.top_k(h.T, h.shape[0])[0].T,
    "take_along_axis": lambda h: jnp.take_along_axis(h, jnp.argsort(h, axis=0), axis=0),
    "take_along_axis_indices": lambda h: jnp.take_along_axis(h, jnp.argsort(h, axis=0), axis=1),
    "gather_rows": lambda h: h[jnp.argsort(h[:, 0])],
    "fft": lambda h: jnp.abs(jnp.fft.fft(h, axis=0)),
    "pad": lambda h: jnp.pad(h, ((1, 0), (0, 0)))[:h.shape[0]],
    "outer": lambda h: jnp.einsum("nf,mf->nm", h, h) @ jnp.ones((h.shape[0], 8)),
    "cond": lambda h: lax.cond(h.sum() > 0, lambda a: a, lambda a: -a, h),
    "cond_branch": lambda h: lax.cond(True, lambda a: a, lambda a: a[::-1], h),
    "while_loop": _while_on_examples,
    "scan_over_examples": lambda h: lax.scan(lambda c, r: (c + r, c + r), jnp.zeros(8), h)[1],
    "scan_carry": lambda h: lax.scan(lambda c, _: (c + c.sum(0), None), h, None, length=2)[0],
}


class _Between(nn.Module):
  """``Dense -> op -> Dense``: the second layer's input is the operation's output."""

  op: Callable

  @nn.compact
  def __call__(self, x):
    return nn.Dense(N)(self.op(nn.Dense(8)(x)))


def _covers(op) -> bool:
  model = _Between(op)
  x = jnp.ones((N, 6))
  params = model.init(jax.random.key(0), x)["params"]
  return layer_taps.covers(lambda p, x: model.apply({"params": p}, x), params, x)


@pytest.mark.parametrize("name", sorted(ROW_PRESERVING))
def test_operations_along_other_axes_are_proven(name):
  """walk7 F1: split, tile, dynamic slices, top_k, take_along_axis, fft, cond and loops were
  unknown, so a GLU with one fused projection took the vmap path (29x slower), silently."""
  assert _covers(ROW_PRESERVING[name])


@pytest.mark.parametrize("name", sorted(ROW_MIXING))
def test_operations_that_mix_the_examples_stay_unproven(name):
  assert not _covers(ROW_MIXING[name])


@pytest.mark.parametrize("name", ["glu", "take_along_axis", "fori_loop"])
def test_newly_proven_operations_give_vmaps_fisher(name):
  model = _Between(ROW_PRESERVING[name])
  x = jax.random.normal(jax.random.key(0), (N, 6))
  params = model.init(jax.random.key(1), x)["params"]
  apply_fn = lambda p, x: model.apply({"params": p}, x)
  chex.assert_trees_all_close(
      mj.fisher_diagonal(apply_fn, params, x, jnp.arange(N), method="factorized"),
      mj.fisher_diagonal(apply_fn, params, x, jnp.arange(N), method="vmap"),
      rtol=1e-4, atol=1e-7)


def test_the_refusal_names_the_operation_and_the_layer():
  """'factorized' said only which layer kinds it handles; now which layer's input is unproven
  and which operation (with its line) lost the examples' axis."""
  model = _Between(lambda h: jnp.flip(h, 0))  # The outer Dense is built first: Dense_0.
  x = jnp.ones((N, 6))
  params = model.init(jax.random.key(0), x)["params"]
  line = inspect.getsourcelines(test_the_refusal_names_the_operation_and_the_layer)[1] + 3
  with pytest.raises(ValueError, match=(
      rf"input of layer Dense_0 is not proven .*'rev' \(dimensions=\(0,\)\) at "
      rf".*test_layer_rows.py:{line}")):
    mj.fisher_diagonal(lambda p, x: model.apply({"params": p}, x), params, x, jnp.arange(N),
                       method="factorized")


@jax.custom_vjp
def _mix_gradient(h):
  """The identity forward; its backward rule mixes the rows of the gradient."""
  return h


_mix_gradient.defvjp(lambda h: (h, None), lambda _, g: (g + jnp.roll(g, 1, 0),))

# Rows mixed between the last layer and the losses, or by a backward rule only (walk8 F1).
MIXING_AFTER = {
    "roll_logits_by_2": lambda h: h + jnp.roll(h, 2, 0),  # Spares the batch of 2's rows.
    "add_previous_row": lambda h: h.at[1:].add(h[:-1]),  # h.at[3:] in walk8: 230% off.
    "custom_vjp_after": _mix_gradient,
    "mean": lambda h: h - h.mean(0),
}


class _After(nn.Module):
  """``Dense -> between -> Dense -> after``: the logits are ``after``'s output."""

  after: Callable
  between: Callable = lambda h: h

  @nn.compact
  def __call__(self, x):
    return self.after(nn.Dense(N)(self.between(nn.Dense(8)(x))))


def _apply_and_params(model):
  x = jax.random.normal(jax.random.key(0), (N, 6))
  params = model.init(jax.random.key(1), x)["params"]
  return lambda p, x: model.apply({"params": p}, x), params, x


@pytest.mark.parametrize("name", sorted(MIXING_AFTER))
def test_rows_mixed_after_the_last_layer_are_unproven(name):
  """Only each layer's input was followed: mixing after the last layer (where the N=2
  interaction check misses it) or in a backward rule gave the factorized Fisher 60-230% off."""
  assert not layer_taps.covers(*_apply_and_params(_After(MIXING_AFTER[name])))


def test_a_backward_rule_mixing_rows_between_layers_is_unproven():
  model = _After(lambda h: h, between=_mix_gradient)
  assert not layer_taps.covers(*_apply_and_params(model))
  apply_fn, params, x = _apply_and_params(model)
  with pytest.raises(ValueError, match="output gradient of layer Dense_1 is not proven"):
    mj.fisher_diagonal(apply_fn, params, x, jnp.arange(N), method="factorized")


@pytest.mark.parametrize("after", ["glu", "take_along_axis", "max_pool", "stack"])
def test_row_preserving_operations_after_the_last_layer_stay_factorized(after):
  assert layer_taps.covers(*_apply_and_params(_After(ROW_PRESERVING[after])))


@pytest.mark.parametrize("model", [
    _After(MIXING_AFTER["roll_logits_by_2"]), _After(lambda h: h, between=_mix_gradient)],
    ids=["roll_logits_by_2", "custom_vjp_between"])
def test_auto_gives_vmaps_fisher_where_rows_mix_after_a_layer(model):
  apply_fn, params, x = _apply_and_params(model)
  chex.assert_trees_all_close(
      mj.fisher_diagonal(apply_fn, params, x, jnp.arange(N)),
      mj.fisher_diagonal(apply_fn, params, x, jnp.arange(N), method="vmap"),
      rtol=1e-5, atol=1e-7)


class _Shared(nn.Module):
  @nn.compact
  def __call__(self, x):
    dense = nn.Dense(6)
    return nn.Dense(N)(dense(nn.relu(dense(x))))


def test_the_refusal_of_a_shared_layer_names_it():
  """walk8 F2: it named no layer."""
  apply_fn, params, x = _apply_and_params(_Shared())
  with pytest.raises(ValueError, match="layer Dense_0 is called more than once: its parameters "
                     "are read by each call"):
    mj.fisher_diagonal(apply_fn, params, x, jnp.arange(N), method="factorized")
