"""Evaluation of forgetting: how deep it goes, against the retrain oracle.

* :mod:`~mnemonic_jax.evaluation.features`: where a model's penultimate features are (the
  input of its classifier head), for the built-in models and for registered ones
  (:func:`register_head`).
* :mod:`~mnemonic_jax.evaluation.attacks`: the depth attacks, pure functions of arrays
  (those on logits alone are defined in :mod:`~mnemonic_jax.evaluation.logit_attacks`
  and importable from ``attacks`` too).
* :mod:`~mnemonic_jax.evaluation.depth`: :func:`depth_report` runs them all on three
  bundles (unlearned, oracle, original).
* :mod:`~mnemonic_jax.evaluation.report`: the report's types, its verdict in words, and
  :func:`depth_goals`, which scores a report against the depth goals (docs/depth.md).

Example:
  >>> from mnemonic_jax.evaluation import DepthData, depth_report, depth_goals
  >>> report = depth_report(forgotten, oracle, original, DepthData.of(train, test), [3])
  ... # doctest: +SKIP
  >>> print(report.to_markdown())  # doctest: +SKIP
"""

from mnemonic_jax.evaluation.attacks import (
    best_constant, forgotten_accuracy, half_split_recovery, head_finetune_recovery,
    input_scale_recovery, linear_cka, ncm_recall, one_constant_recovery, probe_recall,
    prototype_attack, relearn_ratio, weight_distance)
from mnemonic_jax.evaluation.depth import DepthConfig, DepthData, depth_report, figure_specs
from mnemonic_jax.evaluation.features import (
    Forward, Head, NoFeatures, features_fn, forward, head_of, head_path, register_head,
    unregister_head)
from mnemonic_jax.evaluation.references import (
    check_comparable, check_references, check_retrained)
from mnemonic_jax.evaluation.report import (
    DepthReport, Figure, Goal, Verdict, depth_goals, verdict)

__all__ = [
    "DepthConfig", "DepthData", "DepthReport", "Figure", "Forward", "Goal", "Head",
    "NoFeatures", "Verdict", "best_constant", "check_comparable", "check_references",
    "check_retrained",
    "depth_goals",
    "depth_report", "features_fn", "figure_specs", "forgotten_accuracy", "forward",
    "half_split_recovery", "head_finetune_recovery", "head_of", "head_path",
    "input_scale_recovery", "linear_cka", "ncm_recall", "one_constant_recovery",
    "probe_recall", "prototype_attack", "register_head", "relearn_ratio", "unregister_head",
    "verdict", "weight_distance"]
