"""What forgetting checks of the model by running it on the codes, before and after a move.

Shapes alone (:func:`mnemonic_jax._validate.model_outputs`) cannot tell a model whose
outputs for one input depend on the other inputs of the batch (BatchNorm in training mode
with its updates thrown away), an ``apply_fn`` that returns probabilities instead of
logits, or parameters that are finite but give NaN (a BatchNorm variance moved below 0).
Each would make a move's margins, and its ``met``, describe a model that is not there.
These checks run the codes through the jitted forward pass every move compiles anyway
(:func:`mnemonic_jax.forgetting.moves.stepping.logits`), so they add no program.
"""

import jax
import numpy as np

from mnemonic_jax import errors
from mnemonic_jax.forgetting.moves import outputs, stepping
from mnemonic_jax.forgetting.primitives import CodeScores, Request
from mnemonic_jax.pytrees import PyTree

#: Models (by :func:`mnemonic_jax.forgetting.moves.outputs._structure`) whose outputs were
#: found not to depend on the rest of the batch: that is the model's, not its values'.
_INDEPENDENT: set = set()
_INDEPENDENT_KEPT = 64
_INFERENCE_MODE = ("pass an inference-mode apply_fn, e.g. mnemonic_jax.inference_apply_fn("
                   "model, variables['batch_stats'])")


def check_model(request: Request, params: PyTree) -> None:
  """Refuses a model whose logits on the codes a move could not trust.

  Args:
    request: the checked request (its ``apply_fn`` and ``codes``, ``(C, *input_shape)``).
    params: the parameters to be moved.

  Raises:
    ValueError (BadRequest): logits on the codes that are not finite; rows that are
      probabilities (in ``[0, 1]``, summing to 1); outputs for one code that change when
      the other codes of the batch change (examples interact: BatchNorm in training mode).
  """
  logits = np.asarray(stepping.logits(request.apply_fn, params, request.codes), np.float64)
  if not np.all(np.isfinite(logits)):
    raise errors.BadRequest(
        "the model gives non-finite logits on the codes before any change; check the "
        "parameters and apply_fn (BatchNorm statistics passed as parameters? pass "
        "variables['params'] and close over the statistics: mnemonic_jax.inference_apply_fn)")
  if np.all((logits >= 0) & (logits <= 1)) and np.allclose(logits.sum(1), 1.0, atol=1e-3):
    raise errors.BadRequest(
        "apply_fn returns probabilities (every row in [0, 1], summing to 1), not logits; "
        "return the logits, before the softmax")
  key = outputs._structure(request.apply_fn, params, request.codes)  # pylint: disable=protected-access
  if key is not None and key in _INDEPENDENT:
    return
  codes = np.asarray(request.codes)
  same_first = np.broadcast_to(codes[:1], codes.shape)  # Code 0 with itself only.
  alone = np.asarray(stepping.logits(request.apply_fn, params, same_first), np.float64)[0]
  tolerance = 1e-3 * (1.0 + np.max(np.abs(logits[0])))
  if np.max(np.abs(alone - logits[0])) > tolerance:
    raise errors.BadRequest(
        "apply_fn's logits for one input change with the other inputs of the batch "
        "(BatchNorm in training mode?): forgetting scores each code on its own; "
        f"{_INFERENCE_MODE}")
  if key is not None:
    if len(_INDEPENDENT) >= _INDEPENDENT_KEPT:
      _INDEPENDENT.pop()
    _INDEPENDENT.add(key)


def check_result(after: CodeScores) -> None:
  """Refuses a move's result whose logits on the codes are not finite.

  Args:
    after: the code scores of the moved parameters (their margins are NaN or infinite
      when some logit is).

  Raises:
    ValueError (BadRequest): a non-finite score.
  """
  if not all(np.isfinite(float(v)) for v in jax.tree.leaves(after)):
    raise errors.BadRequest(
        "the moved parameters give non-finite logits on the codes (finite parameters can: "
        "a BatchNorm variance moved below 0 when the statistics are passed as parameters); "
        "nothing is returned: pass variables['params'] and close over the rest, e.g. "
        "mnemonic_jax.inference_apply_fn(model, variables['batch_stats'])")
