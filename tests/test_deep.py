"""experiments.deep: goal counts per method, held-out parts apart, and the report."""

import json

import pytest


@pytest.fixture(name="deep", scope="module")
def deep_module():
  """experiments.deep, imported when a test runs (it pulls in scikit-learn through the
  experiments' common module: ~2 s of CPU that collection in every worker would pay)."""
  from experiments import deep  # pylint: disable=import-outside-toplevel
  return deep


GOALS = ("forgetting", "one_constant", "input_scale", "probe", "prototype", "relearning")


def _run(part, method, passed, data="none", seconds=0.1):
  names = GOALS
  return {"part": part, "model": "m", "seed": 0, "classes": [3], "method": method,
          "data": data, "method_seconds": seconds,
          "goals": [{"name": n, "passed": p} for n, p in zip(names, passed)]}


def test_tally_counts_applicable_goals_and_runs_meeting_every_goal(deep):
  assert deep.GOALS == GOALS
  runs = [_run("chosen", "a", [True, True, True, None, True, True]),
          _run("chosen", "a", [True, False, True, None, True, True], seconds=0.3),
          _run("chosen", "b", [False, False, False, False, False, False])]
  counts = deep.tally(runs)
  assert counts["a"]["goals"]["probe"] == [0, 0]  # Not applicable: not counted.
  assert counts["a"]["goals"]["one_constant"] == [1, 2]
  assert (counts["a"]["met"], counts["a"]["applicable"], counts["a"]["every"]) == (9, 10, 1)
  assert counts["a"]["median_seconds"] == 0.3 and counts["b"]["every"] == 0
  assert counts["b"]["applicable"] == 6


def test_the_report_names_the_best_data_free_rule_on_held_out_runs_only(deep, tmp_path):
  runs = [_run("chosen", "tuned", [True] * 6),  # Best where it was chosen: not evidence.
          _run("held-out seed", "tuned", [False] * 6),
          _run("held-out seed", "steady", [True, True, False, None, True, True]),
          _run("held-out seed", "reads-data", [True] * 6, data="all"),
          # A part that runs fewer rules: reported apart, never in the comparison.
          _run("every class, seed 2", "steady", [True, True, True, None, True, True]),
          _run("every class, seed 0", "steady", [True, False, True, None, True, True]),
          # A_R figures [method, oracle, original, gap]: the original is 3 points under.
          {**_run("every class, seed 1", "steady", [False, True, True, None, True, True]),
           "figures": {"A_R": [94.0, 97.0, 94.0, -3.0]}},
          {**_run("every class, seed 1", "steady", [False, True, True, None, True, True]),
           "figures": {"A_R": [94.0, 97.0, 96.5, -3.0]}},
          _run("every class, seed 2", "only-here", [True] * 6)]
  summary = deep.write(runs, [], tmp_path, "python -m experiments.deep")
  assert summary["best_held_out"] == "steady" and "only-here" not in summary["held_out"]
  text = (tmp_path / "deep.md").read_text()
  assert "data-free rule meeting the most depth goals is `steady`" in text
  assert ("(the `every class` parts, seeds 2, 0, 1, 1 model): "
          "`steady` 17/20 goals, every goal in 1/4 runs; `only-here` 6/6 goals, every goal "
          "in 1/1 runs. `steady` misses forgetting in 2/4 (1 of them on models whose own A_R "
          "is already more than 1 point under the oracle's), one_constant in 1/4.") in text
  assert "It misses input_scale in 1/1 of the applicable held-out runs." in text
  assert (tmp_path / "deep.png").stat().st_size > 0
  assert json.loads((tmp_path / "deep.json").read_text())["held_out"]["steady"]["met"] == 4
  rows = (tmp_path / "deep.csv").read_text().splitlines()
  assert len(rows) == 1 + len(runs) and rows[0].startswith("part,model,seed")


def test_a_variant_names_its_method_and_config_overrides():
  from experiments import depth  # pylint: disable=import-outside-toplevel
  assert depth.split_variant("svd-projection") == ("svd-projection", {})
  assert depth.split_variant("svd-projection@samples=10@alpha_f=3.0") == (
      "svd-projection", {"samples": 10, "alpha_f": 3.0})
  with pytest.raises(ValueError, match="must be field=value"):
    depth.split_variant("svd-projection@samples")


def test_a_cached_run_is_reused_only_under_the_code_that_made_it(tmp_path):
  from experiments import depth, run_cache  # pylint: disable=import-outside-toplevel
  code = run_cache.method_code("mnemonic-reassign")
  assert {"mnemonic_jax.forgetting.moves.reassign", "mnemonic_jax.forgetting.moves.bias",
          "mnemonic_jax.baselines.mnemonic"} <= set(code)
  path = tmp_path / "run.json"
  assert depth.cached_record(path, code) is None  # Nothing recorded.
  path.write_text(json.dumps({"method": "mnemonic-reassign"}))  # Recorded before codes.
  assert depth.cached_record(path, code)["code"] == code  # Pinned to today's code ...
  assert json.loads(path.read_text())["code"] == code
  changed = {**code, "mnemonic_jax.forgetting.moves.reassign": "0" * 16}
  assert depth.cached_record(path, changed) is None  # ... and run again once it changes.
  assert depth.cached_record(path, code) is not None


#: Bad variants and sweeps: ``(runner, arguments, words of the one line)``.
BAD_RUNS = [
    ("depth", ["--methods", "svd-projection@samples"], "must be field=value"),
    ("depth", ["--methods", "svd-projection@samples=abc"], "--methods:"),
    ("depth", ["--methods", "svd-projection@nosuch=1"], "has no option nosuch"),
    ("depth", ["--methods", "nosuch@samples=1"], "unknown --methods"),
    ("depth", ["--methods", "fewshot-reasign"],  # walk7 F8: not listed, no hint.
     "did you mean 'fewshot-reassign' for 'fewshot-reasign'?"),
    ("depth", ["--methods", "ssd", "--models", "digits_mlp", "--skip", "digits_mlp=ssd"],
     "--skip leaves no method to run"),  # walk7 F8: exit 0 with an empty report.
    ("depth", ["--methods", "ssd@alpha='5'"], "alpha must be a finite number > 0, got '5'"),
    ("depth", ["--methods", "finetune@train_mode=None"], "train_mode"),
    ("table", ["--config", "digits_mlp:quick", "--methods", "lfssd", "--sweep", "scrub"],
     "--sweep 'scrub'"),
    ("table", ["--config", "digits_mlp:quick", "--sweep"], "pass --methods"),
]


@pytest.mark.parametrize("runner, args, words", BAD_RUNS)
def test_the_runners_refuse_a_bad_variant_or_sweep_in_one_line(runner, args, words, tmp_path,
                                                                 capsys):
  import importlib  # pylint: disable=import-outside-toplevel
  out = tmp_path / "out"
  with pytest.raises(SystemExit) as exit_:
    importlib.import_module(f"experiments.{runner}").main([*args, "--out", str(out)])
  assert exit_.value.code == 2
  lines = capsys.readouterr().err.strip().splitlines()
  assert len(lines) == 1 and words in lines[0], lines
  assert not out.exists()


@pytest.mark.parametrize("runner, args, words", [pytest.param(*BAD_RUNS[0], marks=pytest.mark.slow),
                                                  BAD_RUNS[6]])
def test_the_real_runner_commands_refuse_the_same_way(runner, args, words, tmp_path):
  """``python -m experiments.RUNNER``, its own process forked from the batch server the
  command-line tests share (``cli_support.run_commands``): the runner imports its own
  modules in the child (~0.6 s; a server of its own took ~4 s to start), so whatever they
  printed would be in its stderr, which must be the one line."""
  from cli_support import run_commands  # pylint: disable=import-outside-toplevel
  out = tmp_path / "out"
  cases = {runner: dict(args=(*args, "--out", out), module=f"experiments.{runner}")}
  result = run_commands(cases)[runner].result
  assert result.returncode == 2, result.stderr
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1 and words in lines[0], result.stderr
  assert not out.exists()


def test_report_only_without_runs_is_refused_and_writes_nothing(tmp_path, capsys):
  """It wrote deep.md, deep.csv and deep.png of nothing, whose prose still stated findings."""
  from experiments import deep  # pylint: disable=import-outside-toplevel
  with pytest.raises(SystemExit) as raised:
    deep.main(["--report-only", "--out", str(tmp_path / "out"), "--work", str(tmp_path / "w")])
  assert raised.value.code == 2 and "no runs under" in capsys.readouterr().err
  assert not (tmp_path / "out").exists()


def test_a_model_variant_gets_a_figure_name_a_markdown_link_can_point_to():
  """``depth_digits_mlp:quick.png``: in a Markdown link the colon reads as a URL scheme."""
  from experiments import depth_write  # pylint: disable=import-outside-toplevel

  assert depth_write.figure_name("digits_mlp:quick") == "depth_digits_mlp-quick.png"
  assert depth_write.figure_name("fashion_cnn") == "depth_fashion_cnn.png"


def test_a_report_of_unfinished_parts_says_so_and_counts_only_what_ran(deep, tmp_path):
  """After a run stopped during the every-class parts, the report spoke of seeds 2, 0, 1
  and the six models, and of 'the rule meeting the most goals' with one rule run."""
  runs = [_run("held-out seed", "steady", [True] * 6),
          _run("every class, seed 2", "steady", [True] * 6)]
  planned = deep.planned_runs("steady")
  deep.write(runs, [], tmp_path, "python -m experiments.deep", planned)
  text = (tmp_path / "deep.md").read_text()
  assert "**Incomplete:** chosen: 0 of" in text and "every class, seed 2: 1 of" in text
  assert "the only data-free rule run is `steady`" in text
  assert "(the `every class` parts, seeds 2, 1 model)" in text


def test_report_only_states_the_options_of_the_run_that_made_the_parts(deep, tmp_path, capsys):
  """Its Command line was built from the report-only call's own arguments, so a run's
  ``--relearn-steps 5`` was missing there (the report said 200)."""
  work, out = tmp_path / "w", tmp_path / "out"
  part = work / deep._folder("held-out seed")  # pylint: disable=protected-access
  part.mkdir(parents=True)
  (part / "depth.json").write_text(json.dumps({"command": "python -m experiments.depth", "models": [
      {"total_cpu_seconds": 1.0, "runs": [_run("held-out seed", "steady", [True] * 6)]}]}))
  (work / "deep_options.json").write_text(json.dumps({"methods": "steady", "relearn_steps": 5}))
  deep.main(["--report-only", "--out", str(out), "--work", str(work)])
  command = json.loads((out / "deep.json").read_text())["command"]
  assert "--methods steady --relearn-steps 5" in command and "--report-only" not in command
  with pytest.raises(SystemExit) as raised:  # The report would describe another run.
    deep.main(["--report-only", "--relearn-steps", "7", "--out", str(out), "--work", str(work)])
  assert raised.value.code == 2 and "differs from the run" in capsys.readouterr().err


@pytest.mark.slow  # Trains a digits MLP and two oracles (about 10 s on 2 cores).
def test_the_depth_runner_measures_the_oracles_spread(tmp_path):
  """With its default --oracle-seeds the runner measured the oracle as itself for the
  spread, which depth_report now refuses as an unlearned model: every default run failed
  with a traceback (the spread checks its references itself)."""
  from experiments import depth  # pylint: disable=import-outside-toplevel
  out = tmp_path / "out"
  depth.main(["--models", "digits_sigmoid", "--classes", "3", "--methods", "mnemonic-bias",
              "--oracle-seeds", "1", "--relearn-steps", "0", "--epochs", "5", "--out", str(out)])
  (record,) = json.loads((out / "depth.json").read_text())["models"]
  assert record["oracle_seeds"] == [1] and record["spreads"][0]["spread"]
