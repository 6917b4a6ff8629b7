"""``lfssd``: label-free Selective Synaptic Dampening (importances from the output's norm).

SOURCE: Foster, Schoepf, Brintrup, "Loss-Free Machine Unlearning", ICLR 2024 Tiny Paper
(arXiv 2402.19308); the SSD repository, https://github.com/if-loops/selective-synaptic-dampening,
``README.md`` ("Implementing LFSSD": the two lines that change in ``calc_importance``), and the
authors' experiment code, https://github.com/jwf40/Information-Theoretic-Unlearning
(``src/forget_random_strategies.py``, ``lfssd_tuning``).

The method is SSD (:mod:`mnemonic_jax.baselines.ssd`) with a label-free importance. Per
minibatch ``b`` of ``B`` consecutive examples, the model in inference mode:

  I = (1/B) sum_b | d/dw mean_{n in b} ||f(x_n; w)||_2^2 |

(the squared l2 norm of the logits, averaged over the batch, differentiated, ABSOLUTE value;
SSD squares the gradient of the cross-entropy instead). ``I_f`` over the forget set, ``I_D``
over the whole training set (retain + forget), then SSD's rule: where ``I_f > alpha * I_D``
the weight is multiplied by ``min(lambda * I_D / I_f, 1)``. No label is read.

Defaults: SSD's full-class values (its repository: ``dampening_constant`` lambda = 1,
``selection_weighting`` alpha = 10 for ResNet-18, 5 for ViT; minibatches of 64, the loaders
unshuffled and in class order, see :mod:`~mnemonic_jax.baselines.ssd`), which
``lfssd_tuning`` takes from its calling script as ``ssd_tuning`` does. (The JiT repository's
random-forgetting script passes alpha = 3.5, lambda = 1 to both for ResNet-18 and ViT.)

Departures: none in the rule; as :func:`~mnemonic_jax.baselines.ssd.minibatch_importance`,
the last, partial minibatch is padded with weight-0 rows (the same mean over its real rows).

Sweep (:data:`SWEEP`, for :func:`~mnemonic_jax.baselines.base.sweep`): ``alpha`` 10, 5, 4, 3,
2.5, 2. On the digits MLP (class 3, seed 0) no parameter passes ``alpha`` 10 or 5 (E_F 5.4,
unchanged); 4 gives E_F 59.5, 3 and 2.5 E_F 100 with A_R 96.0 and 95.0 (from 95.6), 2
collapses the rest (A_R 72.3).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from mnemonic_jax import errors
from mnemonic_jax import fisher as fisher_lib
from mnemonic_jax.baselines.base import Outcome, Split, UnlearnData, register
from mnemonic_jax.baselines.options import Checked, PositiveFloat, PositiveInt
from mnemonic_jax.baselines.ssd import Order, dampen
from mnemonic_jax.bundle import Bundle, normalize

PyTree = Any
ApplyFn = Callable[[PyTree, jax.Array], jax.Array]

#: Overrides from the published defaults to stronger settings (see the module docstring).
SWEEP = ({}, {"alpha": 5.0}, {"alpha": 4.0}, {"alpha": 3.0}, {"alpha": 2.5}, {"alpha": 2.0})

REFERENCE = ("Foster, Schoepf, Brintrup, Loss-Free Machine Unlearning, ICLR 2024 Tiny Paper; "
             "github.com/if-loops/selective-synaptic-dampening (README, LFSSD importance: "
             "|grad of mean ||f(x)||^2|, SSD rule, alpha 10, lambda 1, batch 64)")


@dataclasses.dataclass(frozen=True)
class LFSSDConfig(Checked):
  """Label-free SSD's hyper-parameters (defaults: SSD's for ResNet-18).

  Attributes:
    alpha: selection weighting: dampen where ``I_f > alpha * I_D`` (10; 5 for a ViT).
    lam: dampening constant lambda (1).
    batch_size: minibatch size of the importances (64).
    order: ``"class"`` (the published unshuffled, class-ordered loaders) or ``"shuffle"``.
  """

  alpha: PositiveFloat = 10.0
  lam: PositiveFloat = 1.0
  batch_size: PositiveInt = 64
  order: Order = "class"


def output_norm_importance(apply_fn: ApplyFn, params: PyTree, inputs: jax.Array,
                           batch_size: int, *,
                           transform: Callable[[jax.Array], jax.Array] | None = None) -> PyTree:
  """LFSSD's importance: mean over minibatches of ``|grad mean_b ||f(x)||^2|``.

  ``I = (1/B) sum_b |d/dw (1/|b|) sum_{n in b} ||f(x_n; w)||_2^2|`` over the ``B =
  ceil(N / batch_size)`` consecutive minibatches, the last one partial (padded with weight-0
  rows). Jittable (``batch_size`` static); the minibatches run in a ``lax.scan``.

  Args:
    apply_fn: ``apply_fn(params, x) -> outputs (N, K)`` in inference mode.
    params: pytree of float arrays.
    inputs: ``(N, *input_shape)`` in minibatch order (anything ``transform`` maps to inputs).
    batch_size: minibatch size (``min(batch_size, N)`` is used).
    transform: applied to each minibatch before the model (e.g. the bundle's ``normalize``).

  Returns:
    A float32 pytree shaped like ``params``.

  Raises:
    ValueError: no inputs, or ``batch_size < 1``.
  """
  n = int(inputs.shape[0])
  if n == 0:
    raise errors.BadRequest("output_norm_importance needs at least one input")
  if batch_size < 1:
    raise errors.BadRequest(f"batch_size must be positive, got {batch_size}")
  size = min(int(batch_size), n)
  num_batches = -(-n // size)
  pad = num_batches * size - n
  mask = (jnp.arange(num_batches * size) < n).astype(jnp.float32)
  if pad:
    inputs = jnp.concatenate([inputs, jnp.repeat(inputs[:1], pad, axis=0)])
  batched = lambda a: a.reshape(num_batches, size, *a.shape[1:])
  transform = (lambda x: x) if transform is None else transform

  def absolute_gradient(x, m):
    def squared_norm(p):
      out = apply_fn(p, transform(x)).astype(jnp.float32)
      return jnp.sum(m * jnp.sum(jnp.square(out), axis=-1)) / jnp.sum(m)

    return jax.tree.map(lambda g: jnp.abs(g.astype(jnp.float32)), jax.grad(squared_norm)(params))

  def body(total, batch):
    return jax.tree.map(jnp.add, total, absolute_gradient(*batch)), None

  zeros = jax.tree.map(lambda p: jnp.zeros(p.shape, jnp.float32), params)
  total, _ = jax.lax.scan(body, zeros, (batched(inputs), batched(mask)))
  return jax.tree.map(lambda t: t / num_batches, total)


def _rows(split: Split, order: str, key: jax.Array) -> np.ndarray:
  """Row indices of ``split`` in minibatch order: by class (stable), or shuffled."""
  if order == "class":
    return np.argsort(np.asarray(split.labels), kind="stable")
  return np.asarray(jax.random.permutation(key, len(split)))


@functools.partial(jax.jit, static_argnums=(1, 2, 3))
def _lfssd_program(apply_fn, batch_size, mean, std, params, x_f, x_d, alpha, lam):
  """Both output-norm importances and the dampened parameters (one module-level program)."""
  transform = functools.partial(normalize, mean=mean, std=std)
  importance = lambda x: output_norm_importance(apply_fn, params, x, batch_size,
                                                transform=transform)
  return dampen(params, importance(x_f), importance(x_d), alpha, lam)


@register("lfssd", LFSSDConfig, data="all", reference=REFERENCE, sweep=SWEEP)
def lfssd(bundle: Bundle, classes: tuple[int, ...], data: UnlearnData, config: LFSSDConfig,
          key: jax.Array) -> Outcome:
  """Label-free SSD: :func:`output_norm_importance` on ``D_f`` and ``D``, then SSD's rule.

  ``I_f`` over the forget set, ``I_D`` over retain + forget (in that order); the labels
  only order the minibatches (``order="class"``, as the published loaders), and the model
  never sees one. One jitted function computes both importances and the new parameters.
  """
  del classes
  retain, forget = data.retain, data.forget
  key_forget, key_full = jax.random.split(key)
  x_forget = forget.images[_rows(forget, config.order, key_forget)]
  if config.order == "class":  # Retain classes ascending, then the forgotten ones.
    x_full = np.concatenate([retain.images[_rows(retain, "class", key_full)],
                             forget.images[_rows(forget, "class", key_full)]])
  else:
    rows = _rows(Split(np.arange(len(retain) + len(forget)),
                       np.zeros(len(retain) + len(forget))), "shuffle", key_full)
    from_retain = rows < len(retain)
    x_full = np.empty((len(rows), *forget.images.shape[1:]), forget.images.dtype)
    x_full[from_retain] = retain.images[rows[from_retain]]
    x_full[~from_retain] = forget.images[rows[~from_retain] - len(retain)]
  apply_fn = bundle.apply_fn()
  fisher_lib.check_input_shape(apply_fn, bundle.params, bundle.normalize(x_forget[:1]))

  new_params, selected = _lfssd_program(
      apply_fn, int(config.batch_size), tuple(map(float, bundle.mean)),
      tuple(map(float, bundle.std)), bundle.params, jnp.asarray(x_forget), jnp.asarray(x_full),
      jnp.float32(config.alpha), jnp.float32(config.lam))
  counts = sum(int(np.sum(np.asarray(s))) for s in jax.tree.leaves(selected))
  total = sum(int(np.size(s)) for s in jax.tree.leaves(selected))
  return Outcome(new_params, jax.tree.map(jnp.array, bundle.batch_stats),
                 examples={"retain": len(retain), "forget": 2 * len(forget)},
                 details={"alpha": config.alpha, "lam": config.lam, "dampened": counts,
                          "parameters": total, "dampened_fraction": counts / max(total, 1),
                          "batch_size": config.batch_size, "order": config.order})
