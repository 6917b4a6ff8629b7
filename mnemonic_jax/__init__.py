"""mnemonic-jax: one-shot class unlearning with mnemonic codes, in JAX.

A reimplementation of Yamashita, Yamada and Shibata, "One-Shot Machine Unlearning with
Mnemonic Code" (ACML 2024). Train with class-specific random inputs mixed into the data;
later forget whole classes by moving the parameters whose Fisher information on the
forgotten classes' codes is high relative to the remaining classes' codes.

The names below are imported on first use (PEP 562), so ``import mnemonic_jax`` and the
command line's ``--help`` do not load JAX.

Example:
  >>> import jax, mnemonic_jax as mj
  >>> model = mj.create_model("mlp", num_classes=4, hidden=(16,))
  >>> codes = mj.generate_codes(jax.random.key(0), num_classes=4, shape=(3, 3, 1))
  >>> params = model.init(jax.random.key(1), codes)["params"]
  >>> apply_fn = mj.inference_apply_fn(model, {})
  >>> new_params, report = mj.forget(apply_fn, params, codes, [3])  # The "reassign" move.
  >>> report.move, report.classes
  ('reassign', (3,))
"""

import importlib
import importlib.util
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Public name -> the module that defines it (a module's own name: the module itself).
_EXPORTS = {
    "ApplyFn": "pytrees", "CompileClock": "timing",
    "Bundle": "bundle", "inference_apply_fn": "bundle",
    "checkpointing": "checkpointing", "load_bundle": "checkpointing",
    "save_bundle": "checkpointing",
    "generate_codes": "codes", "mix_codes": "codes",
    "class_fishers": "fisher", "cross_entropy": "fisher", "fisher_diagonal": "fisher",
    "MOVES": "forgetting", "CodeScores": "forgetting", "ForgetReport": "forgetting",
    "Rule": "forgetting", "code_scores": "forgetting", "fisher_ratio": "forgetting",
    "forget": "forgetting", "perturbation": "forgetting", "select_lambdas": "forgetting",
    "step_sizes": "forgetting",
    "forgetting_metrics": "metrics", "per_class_accuracy": "metrics",
    "available_models": "models", "create_model": "models", "register_model": "models",
    "make_mesh": "parallel",
    "FitConfig": "training", "fit": "training",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
  if name not in _EXPORTS:  # A submodule (mj.workflow, mj.fisher, ...), as eager imports gave.
    if name.startswith("__") or importlib.util.find_spec(f"mnemonic_jax.{name}") is None:
      raise AttributeError(f"module 'mnemonic_jax' has no attribute {name!r}")
    return importlib.import_module(f"mnemonic_jax.{name}")
  module = importlib.import_module(f"mnemonic_jax.{_EXPORTS[name]}")
  value = module if _EXPORTS[name] == name else getattr(module, name)
  globals()[name] = value
  return value


def __dir__() -> list[str]:
  return sorted({*globals(), *__all__})


if TYPE_CHECKING:  # What type checkers and IDEs see: the same names, imported eagerly.
  from mnemonic_jax import checkpointing  # noqa: F401
  from mnemonic_jax.bundle import Bundle, inference_apply_fn  # noqa: F401
  from mnemonic_jax.checkpointing import load_bundle, save_bundle  # noqa: F401
  from mnemonic_jax.codes import generate_codes, mix_codes  # noqa: F401
  from mnemonic_jax.fisher import class_fishers, cross_entropy, fisher_diagonal  # noqa: F401
  from mnemonic_jax.forgetting import (  # noqa: F401
      MOVES, CodeScores, ForgetReport, Rule, code_scores, fisher_ratio, forget, perturbation,
      select_lambdas, step_sizes)
  from mnemonic_jax.metrics import forgetting_metrics, per_class_accuracy  # noqa: F401
  from mnemonic_jax.models import available_models, create_model, register_model  # noqa: F401
  from mnemonic_jax.parallel import make_mesh  # noqa: F401
  from mnemonic_jax.pytrees import ApplyFn  # noqa: F401
  from mnemonic_jax.timing import CompileClock  # noqa: F401
  from mnemonic_jax.training import FitConfig, fit  # noqa: F401
