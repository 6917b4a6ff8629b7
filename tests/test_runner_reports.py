"""A runner's report is never replaced silently: by an empty one, or by another command's."""

import json

import pytest


def test_robust_without_runs_refuses_instead_of_an_empty_report(tmp_path, capsys):
  """Without --train and with nothing cached it wrote a report of 0 runs over a good one,
  and exited 0."""
  from experiments import robust  # pylint: disable=import-outside-toplevel

  (tmp_path / "robust.md").write_text("a good report\n")
  with pytest.raises(SystemExit) as raised:
    robust.main(["--models", "digits_tanh", "--seeds", "0", "--methods", "bias", "--out",
                 str(tmp_path)])
  err = capsys.readouterr().err.strip().splitlines()
  assert raised.value.code == 2 and err[-1].startswith("experiments.robust: error: no run to "
                                                       "report"), err
  assert (tmp_path / "robust.md").read_text() == "a good report\n"
  assert not (tmp_path / "robust.json").exists()


def test_robust_refuses_seeds_that_are_not_integers(tmp_path, capsys):
  from experiments import robust  # pylint: disable=import-outside-toplevel

  with pytest.raises(SystemExit) as raised:
    robust.main(["--seeds", "x", "--out", str(tmp_path)])
  err = capsys.readouterr().err.strip().splitlines()
  assert raised.value.code == 2 and len(err) == 1 and "comma-separated integers" in err[0]


def test_replacing_another_commands_report_is_said(tmp_path, capsys):
  """A rerun with another class set replaced the report, figures included, without a word."""
  from experiments import run_cache  # pylint: disable=import-outside-toplevel

  report = tmp_path / "r.json"
  report.write_text(json.dumps({"command": "python -m experiments.table --classes 3"}))
  run_cache.say_if_replacing(report, "python -m experiments.table --classes 3", "x")
  assert capsys.readouterr().err == ""
  run_cache.say_if_replacing(report, "python -m experiments.table --classes 3,6", "x")
  err = capsys.readouterr().err
  assert err.startswith(f"x: replacing {tmp_path / 'r.md'}, made by another command "
                        "(python -m experiments.table --classes 3)") and err.count("\n") == 1
  run_cache.say_if_replacing(tmp_path / "absent.json", "anything", "x")  # First report.
  assert capsys.readouterr().err == ""


def test_the_alignment_findings_appear_only_for_the_run_they_describe():
  """Fixed text about every model (tanh 'cos 0.06-0.20') sat under a one-model table that
  showed cos 0.22."""
  from experiments import alignment, robust  # pylint: disable=import-outside-toplevel

  full = [{"model": m, "seed": s} for m in robust.MODELS for s in alignment.FINDINGS_SEEDS]
  assert alignment.findings(full) == alignment.FINDINGS
  assert alignment.findings([{"model": "digits_tanh", "seed": 0}]).startswith(
      "**Findings** are written for the committed run")


def test_the_codes_ablation_figure_is_drawn_only_for_an_ablation(tmp_path):
  """With several mnemonic methods and no --inputs, an 'ablation' figure repeated the
  A_R/E_F plot under the title of Fishers from other inputs."""
  from experiments import plots  # pylint: disable=import-outside-toplevel

  record = lambda variant: {"variant": variant, "A_R": 90.0, "E_F": 100.0, "seed": 0,
                            "seconds": 1.0, "classes": [3], "relearn_steps_90": None}
  plain = ["retrain", "mnemonic", "mnemonic-auto", "mnemonic-bias"]
  names = [p.name for p in plots.methods_figures(tmp_path, "r", [record(v) for v in plain],
                                                 plain)]
  assert "r_ablation.png" not in names and "r_ar_ef.png" in names
  ablated = plain + ["mnemonic@zeros"]
  names = [p.name for p in plots.methods_figures(tmp_path, "s", [record(v) for v in ablated],
                                                 ablated)]
  assert "s_ablation.png" in names


@pytest.mark.parametrize("runner, args", [
    ("table", ["--config", "digits_mlp:quick", "--classes", "3", "--classes", "5"]),
    ("depth", ["--models", "digits_tanh", "--seed", "0", "--seed", "1"]),
    ("robust", ["--seeds", "0", "--seeds", "1"])])
def test_a_runner_refuses_an_option_given_twice(runner, args, capsys):
  """argparse kept the last value, as the command line did before (--classes 3 --classes 5
  ran class 5 alone)."""
  import importlib  # pylint: disable=import-outside-toplevel

  with pytest.raises(SystemExit) as raised:
    importlib.import_module(f"experiments.{runner}").main(args)
  err = capsys.readouterr().err
  assert raised.value.code == 2 and "given 2 times; give it once" in err, err


def test_runner_class_ids_are_ascii_digits(capsys):
  """``int`` takes '٣' as 3; the command line refuses it, the runners must too."""
  from experiments import common, depth  # pylint: disable=import-outside-toplevel

  for call in (lambda: common.parse_classes("\u0663", 10), lambda: depth.parse_sets("\u0663")):
    with pytest.raises(SystemExit) as raised:
      call()
    assert raised.value.code == 2
  capsys.readouterr()
