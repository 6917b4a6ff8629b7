"""mnemonic-jax: one-shot class unlearning with mnemonic codes, in JAX.

A reimplementation of Yamashita, Yamada and Shibata, "One-Shot Machine Unlearning with
Mnemonic Code" (ACML 2024). Train with class-specific random inputs mixed into the data;
later forget whole classes by moving the parameters whose Fisher information on the
forgotten classes' codes is high relative to the remaining classes' codes.

Example:
  >>> import jax, mnemonic_jax as mj
  >>> model = mj.create_model("mlp", num_classes=4, hidden=(16,))
  >>> codes = mj.generate_codes(jax.random.key(0), num_classes=4, shape=(3, 3, 1))
  >>> params = model.init(jax.random.key(1), codes)["params"]
  >>> apply_fn = mj.inference_apply_fn(model, {})
  >>> new_params, report = mj.forget(apply_fn, params, codes, [3])  # lambdas: "auto"
  >>> report.classes
  (3,)
"""

from mnemonic_jax import checkpointing, lambda_search
from mnemonic_jax._jit import CompileClock, clear_cache
from mnemonic_jax.bundle import Bundle, InferenceApply, inference_apply_fn
from mnemonic_jax.checkpointing import load_bundle, save_bundle
from mnemonic_jax.codes import generate_codes, mix_codes
from mnemonic_jax.fisher import class_fishers, cross_entropy, fisher_diagonal
from mnemonic_jax.forgetting import (
    CodeScores, ForgetReport, code_scores, fisher_ratio, forget, perturbation, step_sizes)
from mnemonic_jax.lambda_search import Rule, SearchResult, select_lambdas
from mnemonic_jax.metrics import forgetting_metrics, per_class_accuracy
from mnemonic_jax.models import available_models, create_model, register_model
from mnemonic_jax.parallel import make_mesh
from mnemonic_jax.training import (
    FitConfig, TrainState, create_train_state, fit, make_optimizer, make_predict_fn,
    make_train_step)

__version__ = "0.1.0"

__all__ = [
    "Bundle", "CodeScores", "CompileClock", "FitConfig", "ForgetReport", "InferenceApply",
    "Rule", "SearchResult", "TrainState", "available_models", "checkpointing",
    "class_fishers", "clear_cache", "code_scores", "create_model", "create_train_state",
    "cross_entropy", "fisher_diagonal", "fisher_ratio", "fit", "forget",
    "forgetting_metrics", "generate_codes", "inference_apply_fn", "lambda_search",
    "load_bundle", "make_mesh", "make_optimizer", "make_predict_fn", "make_train_step",
    "mix_codes", "per_class_accuracy", "perturbation", "register_model", "save_bundle",
    "select_lambdas", "step_sizes",
]
