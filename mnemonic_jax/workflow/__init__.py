"""The stages of the data flow, bundle in and bundle out: train, forget, evaluate.

``config -> dataset -> train with codes -> Bundle -> forget -> Bundle -> evaluate``. The
command line and the experiment runners are thin layers over these functions:

* :mod:`.training_run`: :func:`train` a bundle from a config (resumable);
  :mod:`.run_records`: :func:`finished_run` and what a run's checkpoints record;
* :mod:`.forgetting_run`: :func:`forget_bundle`, the move on a bundle, recorded in its
  history with its warnings;
* :mod:`.evaluation_run`: :func:`predict`, :func:`evaluate` (per-class accuracy, A_R, E_F).
"""

from mnemonic_jax import forgetting  # noqa: F401  (workflow.forgetting.forget is what runs)
from mnemonic_jax.workflow.evaluation_run import Evaluation, evaluate, predict
from mnemonic_jax.workflow.forgetting_run import (AUTO, check_lambdas, codes_right_before,
                                                  forget_bundle, forget_warnings,
                                                  untrained_codes_warnings,
                                                  warnings_from_images)
from mnemonic_jax.workflow.inputs import merge_pretrained, prepare_images
from mnemonic_jax.workflow.run_records import RESUMABLE_CHANGES, finished_run, to_plain
from mnemonic_jax.workflow.training_run import (DEFAULT_LOG_EVERY, TRAIN_FIELDS, RunStopped,
                                                fit_config, train)

__all__ = ["AUTO", "DEFAULT_LOG_EVERY", "Evaluation", "RESUMABLE_CHANGES", "RunStopped",
           "TRAIN_FIELDS",
           "check_lambdas", "codes_right_before", "evaluate", "finished_run", "fit_config",
           "forget_bundle", "forget_warnings", "merge_pretrained", "predict",
           "prepare_images", "to_plain", "train", "untrained_codes_warnings",
           "warnings_from_images"]
