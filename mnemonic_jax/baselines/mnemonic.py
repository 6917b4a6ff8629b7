"""This project's forgetting moves as unlearning methods: ``mnemonic-*``, from the registry.

Every move of :data:`mnemonic_jax.forgetting.MOVES` is registered here under its
``baseline`` name, so the experiment runner reads them against the retrain oracle and the
other methods: ``mnemonic`` (the paper's Algorithm 2 with the lambdas of the bundle's
training config, i.e. the paper's hand-picked values; Yamashita et al., ACML 2024),
``mnemonic-auto`` (the paper's move with the data-free lambda search), ``mnemonic-bias``,
``mnemonic-shrink``, ... All read no training data: only the bundle's codes.

:func:`fisher_inputs` supports an ablation the paper does not report: the same forgetting
with the Fishers computed from other inputs than the trained codes (fresh random codes,
zeros, one real training image per class), to show whether the codes matter.
"""

from __future__ import annotations


import jax
import jax.numpy as jnp
import numpy as np

from mnemonic_jax import errors
from mnemonic_jax import codes as codes_lib
from mnemonic_jax import forgetting
from mnemonic_jax.baselines.base import MethodFn, Outcome, Split, register
from mnemonic_jax.bundle import Bundle

REFERENCE = ("Yamashita, Yamada, Shibata, One-Shot Machine Unlearning with Mnemonic Code, "
             "ACML 2024 (arXiv 2306.05670), Algorithm 2")

#: Inputs the Fishers can be computed from (the ablation's ``--inputs``).
INPUTS = ("trained-codes", "fresh-codes", "zeros", "one-image")


def _lambdas_of(bundle: Bundle) -> dict:
  """``algorithm2``'s options from the bundle's training config (the paper's values)."""
  lambdas = {}
  for name in ("lambda1", "lambda2"):
    value = bundle.config.get(name)
    if not isinstance(value, (int, float)) or isinstance(value, bool):
      raise errors.BadRequest(f"mnemonic needs a number for {name}: the bundle's config has "
                              f"{value!r}; give Algorithm2(lambda1=..., lambda2=...) as the "
                              "config, or use mnemonic-auto")
    lambdas[name] = float(value)
  return lambdas


def _method(move_cls: type[forgetting.Move]) -> MethodFn:
  """The unlearning method making ``move_cls``'s move; its config is the move object."""

  def method(bundle: Bundle, classes, data, config, key) -> Outcome:
    del data, key
    params, report = forgetting.forget(
        bundle.apply_fn(), bundle.params, jnp.asarray(bundle.codes), classes, move=config,
        exclude=bundle.earlier_forgotten(classes))
    return Outcome(params, bundle.batch_stats, details=report.to_dict())

  method.__name__ = move_cls.baseline.replace("-", "_").replace("+", "_")
  method.__doc__ = f"The {move_cls.name!r} move: {move_cls.summary}; reads no training data."
  return method


for _move in forgetting.MOVES.values():
  register(_move.baseline, _move, data="none",
           reference=f"{REFERENCE}; the {_move.name!r} move of "
                     f"mnemonic_jax.forgetting.moves ({_move.acts_on})",
           defaults=(lambda b: forgetting.moves.Algorithm2(**_lambdas_of(b)))
           if _move.name == "algorithm2" else None)(_method(_move))


def fisher_inputs(kind: str, bundle: Bundle, key: jax.Array, train: Split | None = None
                  ) -> jax.Array:
  """Inputs, one per class, to compute the forgetting Fishers from (the codes ablation).

  Args:
    kind: one of :data:`INPUTS`: ``"trained-codes"`` (the bundle's codes, the method),
      ``"fresh-codes"`` (new codes drawn like the trained ones, never seen in training),
      ``"zeros"`` (all-zero inputs in the model's input space), ``"one-image"`` (one real
      training image per class, the first of each class in ``train``, normalised).
    bundle: the trained bundle.
    key: draws the fresh codes.
    train: training examples of every class (for ``"one-image"``).

  Returns:
    ``(num_classes, *input_shape)`` float32 inputs in the model's input space.

  Raises:
    ValueError: an unknown kind, or ``"one-image"`` without an image of every class.
  """
  codes = jnp.asarray(bundle.codes)
  if kind == "trained-codes":
    return codes
  if kind == "fresh-codes":
    distribution = bundle.config.get("code_distribution", "uniform")
    return codes_lib.generate_codes(key, bundle.num_classes, bundle.input_shape,
                                    distribution=distribution).astype(codes.dtype)
  if kind == "zeros":
    return jnp.zeros_like(codes)
  if kind == "one-image":
    labels = np.asarray(train.labels) if train is not None else np.zeros(0, int)
    missing = sorted(set(range(bundle.num_classes)) - set(labels.tolist()))
    if missing:
      raise errors.BadRequest(f"one-image needs a training image of every class; none of {missing}")
    first = [int(np.flatnonzero(labels == c)[0]) for c in range(bundle.num_classes)]
    return bundle.normalize(train.images[first]).astype(codes.dtype)
  raise errors.BadRequest(f"unknown Fisher inputs {kind!r}; choose from {', '.join(INPUTS)}")
