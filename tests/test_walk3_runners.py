"""Faults a fresh user found in the runners and the evaluation's progress bar (walk 3).

* G1: on a process other than 0 the ``evaluate`` progress bar showed (train's final
  evaluation, ``forget --dataset``, ``evaluate``), while training's did not.
* G4: ``experiments.depth --seed -1`` ended in a traceback whose hint named
  ``--config.seed``, an option that runner lacks.
* G5: ``--classes ''`` wrote an empty report and exited 0; ``--classes 10`` was refused
  only after the model trained.
* G6: ``--methods ssd@alpha=abc`` was refused with Python's AST internals.
* G10: argparse's lines named the runners ``table.py``, ``deep.py``, ``robust.py``; the
  refusals of ``experiments.common`` named every runner ``experiments.table``.
"""

import importlib
import os
import importlib.util

import jax
import numpy as np
import pytest

from mnemonic_jax import configs

#: (runner, arguments, words of its one refusal line).
REFUSALS = [
    ("depth", ["--seed", "-1"], "experiments.depth: error: argument --seed: must be at least 0"),
    ("depth", ["--seed", str(configs.MAX_SEED + 1)], "argument --seed: must be at most"),
    ("depth", ["--oracle-seeds", f"1,{configs.MAX_SEED + 1}"], "is not a seed"),
    ("depth", ["--epochs", str(configs.MAX_STEPS + 1)], "argument --epochs: must be at most"),
    ("depth", ["--relearn-steps", "-1"], "argument --relearn-steps: must be at least 0"),
    ("depth", ["--models", "digits_mlp:quick", "--classes", ""], "--classes '' names no class"),
    ("depth", ["--models", "digits_mlp:quick", "--classes", ","], "names no class set"),
    ("depth", ["--models", "digits_mlp:quick", "--classes", "3,10"],
     "--classes 10 (model digits_mlp:quick, 10 classes): "),
    ("depth", ["--models", "digits_mlp:quick", "--classes", "3+3"], "--classes 3+3 (model"),
    ("depth", ["--models", "digits_mlp:quick", "--classes", "3", "--methods", "ssd@alpha=abc"],
     "'ssd@alpha=abc': in 'alpha=abc' the value must be a Python literal (a number, a string "
     "in quotes"),
    ("depth", ["--models", "", "--classes", "3"], "--models names no model"),
    ("deep", ["--relearn-steps", str(configs.MAX_STEPS + 1)],
     "experiments.deep: error: argument --relearn-steps: must be at most"),
    ("robust", ["--seeds", "-1"], "experiments.robust: error: argument --seeds: '-1' is not a"),
    ("robust", ["--choose-seeds", str(configs.MAX_SEED + 1)], "is not a seed"),
    ("table", ["--config", "digits_mlp:quick", "--seeds", "0"],
     "experiments.table: error: argument --seeds: must be at least 1"),
    # Refused by experiments.common, which named every runner experiments.table.
    ("attach_codes", ["--t-mix", "2"], "experiments.attach_codes: error: --t-mix 2.0 must be"),
    ("attach_codes", ["--classes", "99"], "class ids 99 are not classes of this dataset"),
]


@pytest.mark.parametrize("runner, args, words", REFUSALS)
def test_a_bad_option_is_refused_up_front_in_one_line(runner, args, words, tmp_path, capsys):
  out = tmp_path / "out"
  extra = ["--work", str(tmp_path / "work")] if runner == "deep" else []
  with pytest.raises(SystemExit) as exit_:
    importlib.import_module(f"experiments.{runner}").main([*args, "--out", str(out), *extra])
  assert exit_.value.code == 2
  lines = capsys.readouterr().err.strip().splitlines()
  assert len(lines) == 1 and words in lines[0], lines
  assert lines[0].startswith(f"experiments.{runner}: error: "), lines
  assert not out.exists() and not (tmp_path / "work").exists()


@pytest.mark.slow  # About 8 s: six runner processes.
def test_the_real_runners_name_themselves_as_run_and_refuse_up_front(tmp_path):
  """``python -m experiments.NAME``: its usage and error lines say ``experiments.NAME``
  (``__name__`` is ``__main__`` there), and depth's refusals are one line, exit 2."""
  from cli_support import run_commands  # pylint: disable=import-outside-toplevel
  out = tmp_path / "out"
  cases = {
      "seed": dict(module="experiments.depth", args=("--seed", "-1", "--out", out)),
      "classes": dict(module="experiments.depth",
                      args=("--models", "digits_mlp:quick", "--classes", "", "--out", out)),
      "robust": dict(module="experiments.robust", args=("--nosuch", "--out", out)),
      **{f"{name} help": dict(module=f"experiments.{name}", args=("--help",))
         for name in ("table", "deep", "robust")}}
  ran = run_commands(cases, preload=("experiments.common", "mnemonic_jax.baselines"))
  for name in ("seed", "classes", "robust"):
    result = ran[name].result
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    prog = cases[name]["module"]
    assert lines[0].startswith(f"{prog}: error: "), lines
  assert "--config.seed" not in ran["seed"].result.stderr
  for name in ("table", "deep", "robust"):
    assert ran[f"{name} help"].result.stdout.startswith(f"usage: experiments.{name} "), name
  assert not out.exists()


def test_a_runner_run_as_a_module_is_named_by_its_module():
  """``python -m experiments.table`` runs it as ``__main__``; its spec keeps the name."""
  from experiments import runner_args  # pylint: disable=import-outside-toplevel
  spec = importlib.util.find_spec("experiments.table")
  assert runner_args.module_name({"__name__": "__main__", "__spec__": spec}) == (
      "experiments.table")
  assert runner_args.module_name({"__name__": "experiments.deep", "__spec__": None}) == (
      "experiments.deep")
  assert runner_args.module_name({"__name__": "__main__", "__spec__": None}) is None


def test_a_method_override_that_is_no_literal_names_the_item():
  from experiments import depth_args  # pylint: disable=import-outside-toplevel
  with pytest.raises(ValueError, match="'lfssd@alpha=1@lam=x': in 'lam=x' the value must be a "
                     "Python literal") as raised:
    depth_args.split_variant("lfssd@alpha=1@lam=x")
  assert "ast" not in str(raised.value)
  assert depth_args.split_variant("ssd@alpha='5'@lam=(1, 2)") == ("ssd", {"alpha": "5",
                                                                         "lam": (1, 2)})


@pytest.mark.parametrize("process, shown", [(0, True), (1, False)])
def test_the_evaluation_progress_bar_shows_on_process_0_alone(process, shown, conv_bn_bundle,
                                                             monkeypatch, capsys):
  """As training's bar: docs/many-hosts.md, 'process 0 alone prints, shows progress'."""
  from mnemonic_jax import workflow  # pylint: disable=import-outside-toplevel
  monkeypatch.setattr(jax, "process_index", lambda *a, **k: process)
  logits = workflow.predict(conv_bn_bundle, np.zeros((3, 8, 8, 1), np.uint8), progress=True)
  assert logits.shape == (3, 10)
  assert ("evaluate" in capsys.readouterr().err) == shown


@pytest.mark.parametrize("runner", ["depth", "table", "robust", "deep"])
def test_an_out_folder_that_is_not_utf8_is_refused_before_any_work(runner, tmp_path, capsys):
  """experiments.depth trained its model, then died in a traceback at the first cached
  bundle under --out (the storage library takes UTF-8 paths only)."""
  out = os.fsdecode(os.fsencode(tmp_path) + b"/caf\xe9")
  args = {"depth": ["--models", "digits_mlp:quick", "--classes", "3"],
          "table": ["--config", "digits_mlp:quick"]}.get(runner, [])
  with pytest.raises(SystemExit) as exit_:
    importlib.import_module(f"experiments.{runner}").main([*args, "--out", out])
  assert exit_.value.code == 2
  lines = capsys.readouterr().err.strip().splitlines()
  assert len(lines) == 1 and "argument --out" in lines[0] and "not valid UTF-8" in lines[0]
  assert not os.path.lexists(out)
