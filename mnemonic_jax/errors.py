"""The project's user errors: what the command line turns into one line and exit status 2.

Every error a user can cause (a bad argument, a checkpoint that is missing or corrupt, a
dataset that is absent or malformed, a config that does not load or validate) raises a
subclass of :class:`MnemonicJaxError`, with a one-line message naming the problem and the
fix. Anything else is a bug and shows as one (a traceback, exit status 1).

Each class also subclasses the built-in exception a Python user would expect
(``ValueError``, or ``TypeError`` for a value of the wrong kind), so
``except ValueError`` in user code and ``pytest.raises(ValueError)`` keep working.

Example:
  >>> from mnemonic_jax import errors
  >>> try:
  ...   mj.load_bundle(tmp / "absent")
  ... except errors.MnemonicJaxError as e:
  ...   print(type(e).__name__, isinstance(e, errors.BadCheckpoint), isinstance(e, ValueError))
  CheckpointError True True
"""


class MnemonicJaxError(Exception):
  """The base of the project's user errors; its message is one line with the fix."""


class BadRequest(MnemonicJaxError, ValueError):
  """An argument of the right kind but a wrong value (a class id out of range, lambda <= 0,
  overlapping input and output paths, ...)."""


class BadRequestType(BadRequest, TypeError):
  """An argument of the wrong kind (a string where class ids are expected, ...)."""


class BadCheckpoint(MnemonicJaxError, ValueError):
  """A checkpoint or bundle that is missing, foreign, corrupt, or may not be written."""


class BadDataset(MnemonicJaxError, ValueError):
  """A dataset that is unknown, not installed or prepared, or whose files are malformed."""


class BadConfig(MnemonicJaxError, ValueError):
  """A config file that does not load, or a field that is unknown, missing or invalid."""


class TrainingDiverged(BadConfig):
  """Training whose loss became NaN or inf (a learning rate too large, most often): the
  config, not the code, is at fault."""


class BadEnvironment(MnemonicJaxError, RuntimeError):
  """The machine, not the input: JAX cannot start the platform it is told to use, or the
  operating system refuses a write (a full disk, a quota, a read-only file system).
  See :mod:`mnemonic_jax.environment`."""


class RuleNotMetWarning(UserWarning):
  """A forgetting move returned parameters without meeting its rule on the codes
  (``report.met`` is False): the forgotten classes may still be recognised. Like
  scikit-learn's ``ConvergenceWarning``, a warning, so that sweeps can go on; silence it
  with ``warnings.simplefilter("ignore", errors.RuleNotMetWarning)``."""


class RemainingCodesLostWarning(RuleNotMetWarning):
  """A move with given lambdas (no rule to meet, ``report.met`` None) left fewer of the
  remaining classes' codes classified right than before: the step is too large for this
  model. A subclass of :class:`RuleNotMetWarning`, so one filter silences both."""


class NothingMovedWarning(RuleNotMetWarning):
  """A move returned the parameters unchanged, every entry equal to the input's: its step
  rounds to 0 in the parameters' dtype (lambdas too small for float16, say), so nothing
  was forgotten (``report.changed`` is False). A subclass of :class:`RuleNotMetWarning`."""


class ForgottenAgainWarning(RuleNotMetWarning):
  """A forgetting request names a class an earlier request of the bundle already forgot
  (``workflow.forget_bundle``): its code is misclassified on purpose, so the rule on the
  codes says nothing, and the move takes the parameters further from the trained model.
  ``baselines.unlearn`` refuses such a request; start from the bundle before the earlier
  one to forget it once. A subclass of :class:`RuleNotMetWarning`, so one filter silences
  every warning about what a move did (the command line says it in its report)."""


class ModelSourceChangedWarning(UserWarning):
  """A bundle's model is built by a file of the user's (a config or module that called
  :func:`mnemonic_jax.register_model`) whose contents changed since the bundle recorded
  it: the model built now may not be the one trained, and what is computed with the
  bundle's weights may describe another model."""


__all__ = ["BadCheckpoint", "BadConfig", "BadDataset", "BadEnvironment", "BadRequest",
           "BadRequestType", "ForgottenAgainWarning", "MnemonicJaxError",
           "ModelSourceChangedWarning", "NothingMovedWarning", "RemainingCodesLostWarning",
           "RuleNotMetWarning", "TrainingDiverged"]
