"""The methods comparison (``experiments.table --methods``): bad input, end to end, rerun."""

import json
import re
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
TINY_CONFIG = '''
from mnemonic_jax.configs import paper_mlp_config

def get_config(variant=""):
  config = paper_mlp_config("tiny", "digits", epochs=25, checkpoint_every=10_000)
  config.model_kwargs.hidden = (32,)
  config.learning_rate = 0.1
  return config
'''


@pytest.fixture()
def tiny_config(tmp_path):
  path = tmp_path / "tiny.py"
  path.write_text(TINY_CONFIG)
  return path


def run_table(*args, cwd):
  return subprocess.run([sys.executable, "-m", "experiments.table", *args], cwd=cwd,
                        capture_output=True, text=True, timeout=300,
                        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin",
                             "JAX_PLATFORMS": "cpu"})


BAD = [
    ("nosuch,ssd", [], "unknown --methods nosuch"),
    ("", [], "--methods is empty"),
    (",", [], "--methods is empty"),
    ("finetune", ["--data", "none"], "finetune needs the retain"),
    ("neggrad", ["--data", "retain"], "neggrad needs the forget"),
    ("mnemonic", ["--inputs", "zeros,bogus"], "unknown --inputs bogus"),
    ("ssd", ["--inputs", "zeros"], "add one of mnemonic,mnemonic-bias,"),
    ("mnemonic", ["--data", "none", "--inputs", "one-image"], "pass --data all"),
]


@pytest.mark.parametrize("methods, extra, message", BAD)
def test_bad_methods_are_refused_before_anything_runs(methods, extra, message):
  from experiments import compare

  options = dict(zip(extra[::2], extra[1::2]))
  with pytest.raises(compare.UsageError, match=message.replace("+", "\\+")) as error:
    compare.parse_methods(methods, options.get("--inputs", "trained-codes"),
                          options.get("--data", "all"))
  if "unknown --methods" in message or "empty" in message:  # The valid choices are named.
    assert "retrain" in str(error.value) and "mnemonic-auto" in str(error.value)


def _refusal(argv, real, tmp_path, capsys) -> tuple[int, str]:
  """``(exit status, stderr)`` of ``experiments.table`` refusing ``argv``: the real
  command (``real``) or ``table.main`` in this process."""
  from experiments import table

  if real:
    result = run_table(*argv, cwd=tmp_path)
    return result.returncode, result.stderr
  with pytest.raises(SystemExit) as exit_info:
    table.main(argv)
  return exit_info.value.code, capsys.readouterr().err


@pytest.mark.parametrize("classes, multi, real", [
    ("3.7", "", False), pytest.param("3.7", "", True, marks=pytest.mark.slow),
    ("10", "", False), ("x", "", False),
    pytest.param("3", "0,0", True, marks=pytest.mark.slow),
    ("3", "0,1,2,3,4,5,6,7,8,9", False)])
def test_bad_classes_exit_2_before_anything_is_written(tmp_path, tiny_config, capsys, classes,
                                                       multi, real):
  """In-process; through the real command too for one of each kind (a bad id, a bad set),
  slow: the real command's one-line refusal stays in the default suite with test_deep's
  test_the_real_runner_commands_refuse_the_same_way."""
  out = tmp_path / "out"
  argv = ["--config", str(tiny_config), "--methods", "mnemonic", "--classes", classes,
          "--multi", multi, "--out", str(out)]
  status, stderr = _refusal(argv, real, tmp_path, capsys)
  assert status == 2, stderr
  assert len(stderr.strip().splitlines()) == 1 and "error" in stderr
  assert not out.exists()


# In-process; through the real command too for one of each kind (the rest share the code
# path above), slow: the real python -m experiments.table's one-line refusal stays in the
# default suite with test_deep's test_the_real_runner_commands_refuse_the_same_way.
@pytest.mark.parametrize("methods, extra, message, real", [
    (*BAD[0], False), pytest.param(*BAD[0], True, marks=pytest.mark.slow),
    pytest.param(*BAD[3], True, marks=pytest.mark.slow)])
def test_bad_methods_get_one_line_exit_2_and_nothing_written(tmp_path, tiny_config, capsys,
                                                             methods, extra, message, real):
  out = tmp_path / "out"
  argv = ["--config", str(tiny_config), "--methods", methods, "--out", str(out), *extra]
  status, stderr = _refusal(argv, real, tmp_path, capsys)
  assert status == 2, stderr
  lines = stderr.strip().splitlines()
  assert len(lines) == 1 and message in lines[0], stderr
  if "unknown --methods" in message or "empty" in message:  # The valid choices are named.
    assert "retrain" in lines[0] and "mnemonic-auto" in lines[0]
  assert not out.exists()


@pytest.mark.slow  # Heavy (a command run or a big model); -m slow runs it.
def test_methods_table_end_to_end_with_oracle_and_rerun_skips(tmp_path, tiny_config,
                                                              monkeypatch, capsys):
  from experiments import common, compare, table

  argv = ["--config", str(tiny_config), "--classes", "3", "--seeds", "1", "--multi", "",
          "--methods", "retrain,finetune,mnemonic,mnemonic-auto", "--inputs",
          "trained-codes,zeros", "--out", str(tmp_path), "--no-progress", "--mia-cap", "200"]
  report = table.main(argv)
  assert report == tmp_path / "tiny_baselines.md"
  assert "reused 0 cached runs, computed 7" in capsys.readouterr().err
  # <stem>-<settings digest>[-<code digest>].json (run_cache: a method's run names its code).
  runs = sorted(re.sub(r"(-[0-9a-f]{8,16}){1,2}$", "", p.stem)
                for p in (tmp_path / "runs" / "tiny" / "methods").glob("*.json"))
  assert runs == sorted(f"seed0-c3-{v}" for v in (
      "none", "retrain", "finetune", "mnemonic", "mnemonic-auto", "mnemonic@zeros",
      "mnemonic-auto@zeros"))
  records = json.loads((tmp_path / "tiny_baselines.json").read_text())["runs"]
  by = {r["variant"]: r for r in records}
  oracle = by["retrain"]
  assert oracle["data"] == "retain" and oracle["examples"]["forget"] == 0
  assert oracle["E_F"] == 100.0  # The oracle never saw class 3.
  assert oracle["steps"] > 0 and oracle["relearn"]["curve"][0] == [0, 0.0]  # Never knew it.
  assert by["none"]["relearn"] is None and by["finetune"]["relearn"]["steps"] >= 0
  assert by["mnemonic-auto"]["data"] == "none" and by["mnemonic-auto"]["steps"] == 0
  d = by["finetune"]["oracle"]
  assert d["A_R"] == pytest.approx(by["finetune"]["A_R"] - oracle["A_R"])
  assert by["mnemonic@zeros"]["inputs"] == "zeros"
  text = report.read_text()
  assert "Goal: mnemonic-auto against the oracle" in text and "| retrain | retain |" in text
  for suffix in ("_baselines.csv", "_baselines_ar_ef.png", "_baselines_relearn.png"):
    assert (tmp_path / f"tiny{suffix}").exists(), suffix

  monkeypatch.setattr(compare, "run_method", lambda *a, **k: pytest.fail("rerun ran again"))
  monkeypatch.setattr(common, "train_or_load", lambda *a, **k: pytest.fail("rerun trained"))
  table.main(argv)
  assert "reused 7 cached runs, computed 0" in capsys.readouterr().err
  # Another setting of one method (its epochs) computes that method's runs again, only.
  monkeypatch.undo()
  tiny_config.write_text(TINY_CONFIG.replace("  return config", "  config.baselines = "
                                             "{'finetune': {'epochs': 1}}\n  return config"))
  table.main(argv)
  assert "reused 6 cached runs, computed 1" in capsys.readouterr().err


def test_depth_is_refused_without_the_oracle(tmp_path, tiny_config, capsys):
  from experiments import compare, table

  with pytest.raises(compare.UsageError, match="add retrain to --methods"):
    compare.parse_methods("mnemonic-bias", "trained-codes", "all", depth=True)
  assert compare.parse_methods("retrain,mnemonic-bias", "trained-codes", "all", depth=True)
  out = tmp_path / "out"
  for extra in (["--methods", "mnemonic-bias"], []):  # No oracle; not the comparison.
    with pytest.raises(SystemExit) as exit_info:
      table.main(["--config", str(tiny_config), "--depth", "--out", str(out), *extra])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "retrain" in err[0], err
  assert not out.exists()


def _depth_record(variant, one_constant, oracle_one_constant, passed):
  from mnemonic_jax.evaluation import DepthConfig, figure_specs

  figures = []
  for name, label, unit in figure_specs(DepthConfig()):
    method, oracle = (one_constant, oracle_one_constant) if name.startswith("one_constant") \
        else (50.0, 50.0)
    if name.startswith("relearn"):
      method, oracle = "inf", 30.0
    gap = "inf" if method == "inf" else method - oracle
    figures.append({"name": name, "label": label, "unit": unit, "method": method,
                    "oracle": oracle, "original": 90.0, "gap": gap, "spread": None,
                    "ratio": name.startswith("relearn")})
  goals = [{"name": g, "passed": passed if g == "one_constant" else True, "detail": ""}
           for g in ("forgetting", "one_constant", "input_scale", "probe", "prototype",
                     "relearning")]
  return {"seed": 0, "classes": [3], "variant": variant, "method": variant,
          "inputs": "trained-codes", "goals": goals,
          "report": {"figures": figures, "verdict": {"output_level_only": not passed}}}


def test_depth_section_reads_each_method_against_the_oracle(tmp_path):
  from experiments import compare_depth

  records = [_depth_record("mnemonic-bias", 90.0, 2.0, False),
             _depth_record("ssd", 5.0, 2.0, True)]
  lines, [figure] = compare_depth.section(
      records, ["retrain", "mnemonic-bias", "ssd", "mnemonic@zeros"], tmp_path, "t")
  text = "\n".join(lines)
  assert "| mnemonic-bias | 1 | 1 | 90.0 (+88.0) | 90.0 (+88.0) |" in text
  assert "| ssd | 1 | 0 | 5.0 (+3.0) |" in text and "| never |" in text
  assert "| mnemonic-bias | 1/1 | 0/1 | 1/1 |" in text and "| ssd | 1/1 | 1/1 |" in text
  assert "retrain |" not in text and "mnemonic@zeros" not in text  # Oracle, ablation: not.
  assert figure == tmp_path / "t_depth.png" and figure.stat().st_size > 0
  assert "**Methods meeting every depth goal in every run (1 runs each):** ssd." in text
  assert "one_constant: ssd;" in text and "forgetting: mnemonic-bias, ssd;" in text
  _, figures = compare_depth.section(records, ["retrain", "mnemonic-bias", "ssd"], tmp_path,
                                     "t", seconds={"mnemonic-bias": 0.01, "ssd": 2.0},
                                     data={"mnemonic-bias": "none", "ssd": "all"})
  assert figures[1] == tmp_path / "t_depth_seconds.png" and figures[1].stat().st_size > 0
  runs = [{"seed": 0, "classes": [3], "variant": v} for v in ("mnemonic-bias", "retrain")]
  compare_depth.attach(runs, records)
  assert runs[0]["depth"]["gaps"]["one_constant_half"] == 88.0
  assert runs[0]["depth"]["goals"]["one_constant"] is False and "depth" not in runs[1]


@pytest.mark.slow  # The depth suite on three tiny models, twice: ~25 s of CPU.
def test_depth_columns_through_the_real_command(tmp_path, tiny_config, capsys):
  """--depth on runs cached without it: the methods are reused, the oracle is trained again
  (and kept), the bias shift is found by the one-constant attack and not in the oracle."""
  import csv

  from experiments import table

  out = tmp_path / "out"
  argv = ["--config", str(tiny_config), "--classes", "3", "--seeds", "1", "--multi", "",
          "--methods", "retrain,mnemonic-bias", "--no-relearn", "--out", str(out),
          "--no-progress", "--mia-cap", "200"]
  table.main(argv)
  assert "reused 0 cached runs, computed 3" in capsys.readouterr().err
  assert "## Depth" not in (out / "tiny_baselines.md").read_text()

  depth = argv + ["--depth", "--depth-relearn-steps", "10"]
  result = run_table(*depth, cwd=tmp_path)
  assert result.returncode == 0, result.stderr
  assert "reused 3 cached runs, computed 0" in result.stderr
  assert "depth: reused 0 cached runs, computed 1" in result.stderr
  text = (out / "tiny_baselines.md").read_text()
  assert "## Depth against the retrain oracle" in text and "![tiny_baselines_depth]" in text
  with open(out / "tiny_baselines.csv") as f:
    rows = {r["variant"]: r for r in csv.DictReader(f)}
  assert float(rows["mnemonic-bias"]["depth_gap_one_constant_half"]) > 50
  assert rows["mnemonic-bias"]["depth_goal_one_constant"] == "False"
  assert rows["retrain"]["depth_gap_one_constant_half"] == ""
  assert len(list((out / "cache" / "tiny" / "oracles").iterdir())) == 1

  table.main(depth)
  err = capsys.readouterr().err
  assert "reused 3 cached runs, computed 0" in err and "depth: reused 1 cached runs" in err


def test_swept_variants_are_planned_keyed_and_reported():
  """--sweep: <method>:sweep after each method with a ladder; its own key; its section."""
  from experiments import compare, compare_depth, compare_report

  pairs = compare.plan_variants(["retrain", "lfssd", "mnemonic"], ["trained-codes", "zeros"],
                                sweep=True)
  assert pairs == [("retrain", "trained-codes"), ("lfssd", "trained-codes"), ("lfssd", "sweep"),
                   ("mnemonic", "trained-codes"), ("mnemonic", "zeros")]
  assert compare.plan_variants(["lfssd", "scrub"], [], sweep=["scrub"]) == [
      ("lfssd", "trained-codes"), ("scrub", "trained-codes"), ("scrub", "sweep")]
  assert compare.parse_sweep(None, ["lfssd"]) is False
  assert compare.parse_sweep("all", ["lfssd"]) is True
  assert compare.parse_sweep("lfssd", ["lfssd", "scrub"]) == ["lfssd"]
  for wrong in ("scrub", "retrain", ","):  # Not in --methods; no ladder; none named.
    with pytest.raises(compare.UsageError, match="--sweep"):
      compare.parse_sweep(wrong, ["lfssd", "retrain"])
  with pytest.raises(compare.UsageError, match="no method of --methods registers a ladder"):
    compare.parse_sweep("all", ["retrain", "mnemonic"])  # Bare: it swept nothing, silently.
  assert compare.variant("lfssd", "sweep") == "lfssd:sweep"
  assert compare_depth.split_variant("lfssd:sweep") == ("lfssd", "sweep")
  assert compare_depth.attacked(["retrain", "lfssd:sweep", "mnemonic@zeros"]) == ["lfssd:sweep"]
  key = lambda inputs: compare.method_key({"seed": 0}, [3], "lfssd", inputs, "all", True, 1, 1)
  assert "sweep" not in key("trained-codes") and key("sweep")["sweep"]["ladder"][0] == {}
  trials = [{"overrides": {}, "held_out_accuracy": 99.0, "ok": True},
            {"overrides": {"alpha": 2.0}, "held_out_accuracy": 98.5, "ok": True}]
  runs = [{"variant": "lfssd:sweep", "details": {"chosen": {"alpha": 2.0}, "sweep": trials,
                                                 "chosen_seconds": 0.5}}]
  text = "\n".join(compare_report.sweep_section(runs))
  assert "| lfssd:sweep | 1 | alpha=2.0 (1) | defaults: 99.0; alpha=2.0: 98.5 |" in text


def test_depth_config_caps_the_probe_and_relearning(tmp_path, tiny_config, capsys):
  from experiments import compare_depth, table

  config = compare_depth.depth_config(0, 100)
  assert config.probe_per_class == 100 and config.relearn is None
  assert compare_depth.depth_config(None).probe_per_class == 500
  with pytest.raises(SystemExit) as caught:
    table.main(["--config", str(tiny_config), "--methods", "retrain", "--depth",
                "--depth-probe-per-class", "0", "--out", str(tmp_path / "out")])
  assert caught.value.code == 2 and "at least 1" in capsys.readouterr().err
  assert not (tmp_path / "out").exists()


def test_a_rerun_removes_the_figures_of_its_report_it_did_not_draw(tmp_path):
  """A rerun without --depth left the earlier run's depth plots beside the new report,
  which neither made nor linked them; other files stay."""
  from experiments import compare_report  # pylint: disable=import-outside-toplevel

  for name in ("m_ar_ef.png", "m_depth.png", "m_relearn.png", "other_depth.png", "m.md"):
    (tmp_path / name).write_text("")
  removed = compare_report.remove_stale_figures(tmp_path, "m", [tmp_path / "m_ar_ef.png"])
  assert sorted(p.name for p in removed) == ["m_depth.png", "m_relearn.png"]
  assert sorted(p.name for p in tmp_path.iterdir()) == ["m.md", "m_ar_ef.png",
                                                        "other_depth.png"]
