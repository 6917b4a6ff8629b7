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
  >>> new_params, report = mj.forget(apply_fn, params, codes, [3])  # The "bias" move.
  >>> report.classes
  (3,)
"""

import importlib
import importlib.util
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Public name -> the module that defines it (a module's own name: the module itself).
_EXPORTS = {
    "CompileClock": "timing", "clear_cache": "_jit",
    "Bundle": "bundle", "InferenceApply": "bundle", "inference_apply_fn": "bundle",
    "checkpointing": "checkpointing", "load_bundle": "checkpointing",
    "save_bundle": "checkpointing",
    "generate_codes": "codes", "mix_codes": "codes",
    "class_fishers": "fisher", "cross_entropy": "fisher", "fisher_diagonal": "fisher",
    "CodeScores": "forgetting", "ForgetReport": "forgetting", "code_scores": "forgetting",
    "fisher_ratio": "forgetting", "forget": "forgetting", "perturbation": "forgetting",
    "step_sizes": "forgetting",
    "lambda_search": "lambda_search", "Rule": "lambda_search",
    "SearchResult": "lambda_search", "select_lambdas": "lambda_search",
    "forgetting_metrics": "metrics", "per_class_accuracy": "metrics",
    "available_models": "models", "create_model": "models", "register_model": "models",
    "make_mesh": "parallel",
    "FitConfig": "training", "TrainState": "training", "create_train_state": "training",
    "fit": "training", "make_optimizer": "training", "make_predict_fn": "training",
    "make_train_step": "training",
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
  from mnemonic_jax import checkpointing, lambda_search  # noqa: F401
  from mnemonic_jax._jit import clear_cache  # noqa: F401
  from mnemonic_jax.timing import CompileClock  # noqa: F401
  from mnemonic_jax.bundle import Bundle, InferenceApply, inference_apply_fn  # noqa: F401
  from mnemonic_jax.checkpointing import load_bundle, save_bundle  # noqa: F401
  from mnemonic_jax.codes import generate_codes, mix_codes  # noqa: F401
  from mnemonic_jax.fisher import class_fishers, cross_entropy, fisher_diagonal  # noqa: F401
  from mnemonic_jax.forgetting import (  # noqa: F401
      CodeScores, ForgetReport, code_scores, fisher_ratio, forget, perturbation, step_sizes)
  from mnemonic_jax.lambda_search import Rule, SearchResult, select_lambdas  # noqa: F401
  from mnemonic_jax.metrics import forgetting_metrics, per_class_accuracy  # noqa: F401
  from mnemonic_jax.models import available_models, create_model, register_model  # noqa: F401
  from mnemonic_jax.parallel import make_mesh  # noqa: F401
  from mnemonic_jax.training import (  # noqa: F401
      FitConfig, TrainState, create_train_state, fit, make_optimizer, make_predict_fn,
      make_train_step)
