"""Tests for mnemonic_jax.errors: user errors are the project's types, anything else a bug."""

import ast
import os

import pytest

from mnemonic_jax import _validate, checkpointing, cli, configs, errors
from mnemonic_jax.data import DatasetError

from cli_support import REPO, run_cli


def test_the_user_errors_are_the_projects_and_the_builtin_types():
  for error, kind, builtin in ((checkpointing.CheckpointError, errors.BadCheckpoint, ValueError),
                               (DatasetError, errors.BadDataset, ValueError),
                               (configs.ConfigError, errors.BadConfig, ValueError),
                               (cli.UsageError, errors.BadRequest, ValueError),
                               (errors.BadRequestType, errors.BadRequest, TypeError)):
    assert issubclass(error, kind) and issubclass(error, builtin)
    assert issubclass(error, errors.MnemonicJaxError)
  with pytest.raises(errors.BadRequestType):
    _validate.class_ids("3", 10)
  with pytest.raises(errors.BadRequest):
    _validate.class_ids([10], 10)


def _raised(error: BaseException) -> BaseException:
  try:
    raise error
  except BaseException as e:  # pylint: disable=broad-except
    return e


def test_the_command_line_reports_only_user_errors():
  assert cli._is_user_error(_raised(DatasetError("absent")))  # pylint: disable=protected-access
  assert cli._is_user_error(  # pylint: disable=protected-access
      _raised(FileNotFoundError(2, "No such file or directory", "/absent")))
  # A plain ValueError/TypeError, or an OSError naming no path, raised here: a bug.
  for bug in (ValueError("bug"), TypeError("bug"), OSError("bug"), KeyError("bug")):
    assert not cli._is_user_error(_raised(bug)), bug  # pylint: disable=protected-access


def test_a_bug_in_the_library_propagates_out_of_the_command(tmp_path, monkeypatch):
  def resolve_bundle_path(path):
    raise ValueError(f"an injected internal bug ({path})")

  monkeypatch.setattr(checkpointing, "resolve_bundle_path", resolve_bundle_path)
  with pytest.raises(ValueError, match="an injected internal bug"):  # Not exit status 2.
    cli.main(["evaluate", "--checkpoint", str(tmp_path / "absent"), "--dataset", "digits",
              "--no-compilation-cache"])


@pytest.mark.slow  # A subprocess importing JAX (2-4 s); the test above checks the same in-process.
def test_a_bug_in_the_library_shows_as_a_traceback_and_exit_1(tmp_path):
  # An internal bug, injected where every evaluate goes first: a plain ValueError.
  (tmp_path / "sitecustomize.py").write_text(
      "import mnemonic_jax.checkpointing as checkpointing\n"
      "def resolve_bundle_path(path):\n"
      "  raise ValueError('an injected internal bug')\n"
      "checkpointing.resolve_bundle_path = resolve_bundle_path\n")
  result = run_cli("evaluate", "--checkpoint", tmp_path / "absent", "--dataset", "digits",
                   env={"PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO)])})
  assert result.returncode == 1, result.stderr
  assert "Traceback" in result.stderr, result.stderr
  assert result.stderr.strip().endswith("ValueError: an injected internal bug"), result.stderr
  assert "mnemonic-jax: error" not in result.stderr


# Plain raises the library keeps on purpose: a json ``default`` hook must raise TypeError
# and an ``object_pairs_hook`` ValueError (bundle.json_value catches both and raises
# BadRequestType), the .npy header reader's ValueErrors are caught and re-raised as
# CheckpointError, and the command line's strict int and float readers and its JSON key
# hook raise ValueError as int() and float() do, caught in cli/values.py and re-raised as
# argparse.ArgumentTypeError (one line, exit 2).
PLAIN_RAISES_KEPT = {("bundle.py", "TypeError"): 1, ("bundle.py", "ValueError"): 1,
                     ("checkpointing/imports.py", "ValueError"): 2,
                     ("cli/values.py", "ValueError"): 3}


def test_the_library_raises_no_plain_value_or_type_errors():
  """Every user error in the library is a project type, so the command line never has
  to guess whether a plain ValueError came from the user or from a bug."""
  package = REPO / "mnemonic_jax"
  found = {}
  for path in package.rglob("*.py"):
    for node in ast.walk(ast.parse(path.read_text())):
      if (isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call)
          and isinstance(node.exc.func, ast.Name)
          and node.exc.func.id in ("ValueError", "TypeError")):
        key = (path.relative_to(package).as_posix(), node.exc.func.id)
        found[key] = found.get(key, 0) + 1
  assert found == PLAIN_RAISES_KEPT


def test_every_path_argument_refuses_a_non_path_the_same_way(tmp_path):
  """A bundle, an array or None where a path belongs: BadRequestType naming the argument,
  not os.fspath's TypeError, at every entry point that takes a path; nothing written."""
  from mnemonic_jax import plotting, run_metrics, workflow  # pylint: disable=C0415

  not_a_path = {"not": "a path"}
  calls = [
      lambda: checkpointing.save_bundle(not_a_path, None),
      lambda: checkpointing.load_bundle(not_a_path),
      lambda: workflow.train({}, not_a_path),
      lambda: workflow.finished_run({}, not_a_path),
      lambda: run_metrics.read_metrics(not_a_path),
      lambda: run_metrics.MetricsLog(not_a_path, resume_step=None),
      lambda: plotting.per_class_bars([50.0], [0.0], ["a"], [0], not_a_path),
  ]
  for call in calls:
    with pytest.raises(errors.BadRequestType, match="must be a path .* got dict"):
      call()
  assert list(tmp_path.iterdir()) == []


def test_every_bundle_argument_refuses_a_non_bundle_the_same_way(tmp_path):
  """A path where the loaded bundle belongs: BadRequestType naming load_bundle, before any
  work, at every entry point that takes a bundle."""
  from mnemonic_jax import attach, baselines, workflow  # pylint: disable=C0415
  import numpy as np  # pylint: disable=C0415

  path = str(tmp_path / "bundle")
  images, labels = np.zeros((2, 8, 8, 1), np.uint8), np.zeros(2, np.int32)
  calls = [
      lambda: checkpointing.save_bundle(tmp_path / "out", path),
      lambda: workflow.forget_bundle(path, [3]),
      lambda: workflow.predict(path, images),
      lambda: workflow.evaluate(path, images, labels),
      lambda: baselines.unlearn("mnemonic", path, [3]),
      lambda: attach.attach_codes(path, images, labels, epochs=1),
  ]
  for call in calls:
    with pytest.raises(errors.BadRequestType, match=r"must be a Bundle .*load_bundle.* got str"):
      call()
  assert list(tmp_path.iterdir()) == []
