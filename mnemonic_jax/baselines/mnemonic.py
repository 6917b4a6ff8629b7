"""The paper's method behind the common signature: ``mnemonic`` and ``mnemonic-auto``;
this project's data-free rules as ``mnemonic-<rule>``.

Both forget from the mnemonic codes alone (Algorithm 2 of Yamashita et al., ACML 2024),
reading no training data: ``mnemonic`` with the step bounds ``(lambda1, lambda2)`` of
its config (default: the bundle's training config, i.e. the paper's hand-picked values),
``mnemonic-auto`` with the data-free search of :mod:`mnemonic_jax.lambda_search`.

:func:`fisher_inputs` supports an ablation the paper does not report: the same forgetting
with the Fishers computed from other inputs than the trained codes (fresh random codes,
zeros, one real training image per class), to show whether the codes matter.

``mnemonic-<rule>`` for each rule of :data:`mnemonic_jax.robust.RULES` (``mnemonic-bias``,
``mnemonic-shrink``, ...): the rules of :mod:`mnemonic_jax.robust` (issue #11), codes only,
so that ``experiments.table --methods`` reads them against the retrain oracle (MIAs,
relearning time).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from mnemonic_jax import errors
from mnemonic_jax import codes as codes_lib
from mnemonic_jax import forgetting, lambda_search, robust
from mnemonic_jax.baselines.base import MethodFn, Outcome, Split, register
from mnemonic_jax.bundle import Bundle

REFERENCE = ("Yamashita, Yamada, Shibata, One-Shot Machine Unlearning with Mnemonic Code, "
             "ACML 2024 (arXiv 2306.05670), Algorithm 2")

#: Inputs the Fishers can be computed from (the ablation's ``--inputs``).
INPUTS = ("trained-codes", "fresh-codes", "zeros", "one-image")


@dataclasses.dataclass(frozen=True)
class MnemonicConfig:
  """Fixed step bounds of eq. (7).

  Attributes:
    lambda1, lambda2: the bounds; ``None`` takes the bundle's training config's value
      (the paper's: 1e-3 / 10 for MNIST, 1e-5 / 1e4 for CIFAR-10).
  """

  lambda1: float | None = None
  lambda2: float | None = None


@dataclasses.dataclass(frozen=True)
class MnemonicAutoConfig:
  """The data-free search's rule (see :class:`mnemonic_jax.lambda_search.Rule`)."""

  rule: lambda_search.Rule = lambda_search.DEFAULT_RULE


def _scores(report: forgetting.ForgetReport) -> dict:
  summary = report.to_dict()
  return {k: summary[k] for k in ("lambda1", "lambda2", "sign", "before", "after")}


@register("mnemonic", MnemonicConfig, data="none", reference=REFERENCE)
def mnemonic(bundle: Bundle, classes, data, config: MnemonicConfig, key) -> Outcome:
  """Algorithm 2 with fixed ``(lambda1, lambda2)``; reads no training data."""
  del data, key
  lambdas = []
  for name in ("lambda1", "lambda2"):
    value = getattr(config, name)
    value = bundle.config.get(name) if value is None else value
    if not isinstance(value, (int, float)) or isinstance(value, bool):
      raise errors.BadRequest(f"mnemonic needs a number for {name}: the bundle's config has "
                              f"{value!r}; set MnemonicConfig({name}=...) or use mnemonic-auto")
    lambdas.append(float(value))
  params, report = forgetting.forget(
      bundle.apply_fn(), bundle.params, jnp.asarray(bundle.codes), classes, *lambdas,
      exclude=bundle.earlier_forgotten(classes))
  return Outcome(params, bundle.batch_stats, details=_scores(report))


@register("mnemonic-auto", MnemonicAutoConfig, data="none", reference=REFERENCE +
          "; lambdas chosen by mnemonic_jax.lambda_search (this project)")
def mnemonic_auto(bundle: Bundle, classes, data, config: MnemonicAutoConfig, key) -> Outcome:
  """Algorithm 2 with ``(lambda1, lambda2)`` chosen from the codes; reads no training data."""
  del data, key
  params, report = lambda_search.forget_auto(
      bundle.apply_fn(), bundle.params, jnp.asarray(bundle.codes), classes, rule=config.rule,
      exclude=bundle.earlier_forgotten(classes))
  return Outcome(params, bundle.batch_stats,
                 details={**_scores(report), "search": report.search.to_dict()})


@dataclasses.dataclass(frozen=True)
class RobustConfig:
  """The step rule of :func:`mnemonic_jax.robust.forget_robust` (its defaults are the
  data-free lambda search's: forgotten codes' margin ``<= -margin``, remaining margin guard)."""

  margin: float = lambda_search.DEFAULT_RULE.margin
  guard: float = lambda_search.DEFAULT_RULE.guard


def _robust_method(rule: str) -> MethodFn:
  """The method running :func:`mnemonic_jax.robust.forget_robust` with ``rule``."""

  def method(bundle: Bundle, classes, data, config: RobustConfig, key) -> Outcome:
    del data, key
    params, report = robust.forget_robust(
        bundle.apply_fn(), bundle.params, jnp.asarray(bundle.codes), classes, rule=rule,
        exclude=bundle.earlier_forgotten(classes), margin=config.margin, guard=config.guard)
    return Outcome(params, bundle.batch_stats, details=report.to_dict())

  method.__name__ = f"mnemonic_{rule}"
  method.__doc__ = f"The data-free rule {rule!r} of mnemonic_jax.robust; reads no training data."
  return method


for _rule in robust.RULES:
  register(f"mnemonic-{_rule}", RobustConfig, data="none",
           reference=f"{REFERENCE}, with the {_rule!r} move of mnemonic_jax.robust "
                     "(this project, issue #11)")(_robust_method(_rule))


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
