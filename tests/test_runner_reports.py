"""A runner's report is never replaced silently: by an empty one, or by another command's."""

import json
import pathlib
import shlex
import shutil
import types

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

  for seeds in ("x", "\u0663", ""):  # '٣' was seed 3; '' no seed at all.
    with pytest.raises(SystemExit) as raised:
      robust.main(["--seeds", seeds, "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert raised.value.code == 2 and len(err) == 1, err
    assert "is not a seed" in err[0] or "names no seed" in err[0], err


def test_deep_refuses_negative_relearning_steps(tmp_path, capsys):
  from experiments import deep  # pylint: disable=import-outside-toplevel

  with pytest.raises(SystemExit) as raised:
    deep.main(["--relearn-steps", "-1", "--work", str(tmp_path / "w"), "--out", str(tmp_path)])
  assert raised.value.code == 2 and "must be at least 0" in capsys.readouterr().err
  assert not (tmp_path / "w").exists()


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

  def rows(model):  # The ViTs' figures differ per model: the findings quote their span.
    v = 0.9 if model == "fashion_vit" else 0.5
    return [{"cos": v, "cos_other": -0.1, "transfer": v / 2}]

  full = [{"model": m, "seed": s, "rows": rows(m)} for m in robust.MODELS
          for s in alignment.FINDINGS_SEEDS]
  text = alignment.findings(full)
  # Fixed figures (cos 0.86-0.91, transfer 0.55-0.58) had drifted from the table's.
  assert "cos 0.50-0.90 against -0.10 for" in " ".join(text.split())
  assert "transfer 0.25-0.45;" in text and "{" not in text
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


# ----------------------------------------------------------------------------------------
# A runner that measured nothing refuses; run files of unrecorded code are not trusted.

_COMMITTED_RUNS = (pathlib.Path(__file__).resolve().parents[1] / "experiments" / "results"
                   / "runs" / "robust")


def _keyless_robust_runs(out: pathlib.Path) -> pathlib.Path:
  """``out/runs/robust`` holding one committed run file, written before runs recorded
  their key (digits_tanh, seed 0, class 3, bias)."""
  source = _COMMITTED_RUNS / "digits_tanh-seed0-c3-bias.json"
  if not source.exists():
    pytest.skip("the committed robust runs are not in this checkout")
  runs = out / "runs" / "robust"
  runs.mkdir(parents=True)
  shutil.copyfile(source, runs / source.name)
  return runs


def _refused(main, argv, capsys) -> str:
  """``main(argv)``'s one-line refusal (exit 2), returned."""
  with pytest.raises(SystemExit) as raised:
    main(argv)
  err = capsys.readouterr().err.strip().splitlines()
  assert raised.value.code == 2 and len(err) == 1, err
  return err[0]


def test_run_files_of_unrecorded_code_are_computed_again_unless_asked(tmp_path, capsys):
  """F6: a rerun of the committed command reused 99 runs computed by code that no longer
  exists and said nothing was recomputed; their code is not recorded, so by default they
  are computed again (here there is no model to compute them with: refused), and reused
  only with --report-only or --reuse-keyless, the report saying so."""
  from experiments import robust  # pylint: disable=import-outside-toplevel

  runs = _keyless_robust_runs(tmp_path)
  before = tree(tmp_path)
  base = ["--models", "digits_tanh", "--seeds", "0", "--methods", "bias", "--out",
          str(tmp_path)]
  line = _refused(robust.main, base, capsys)
  assert "1 cached runs were written before runs recorded their key (--reuse-keyless" in line
  assert tree(tmp_path) == before  # Nothing written: no report, no pins, no run file.

  for flag in ("--report-only", "--reuse-keyless"):
    robust.main(base + [flag])
    err = capsys.readouterr().err
    assert "reused 1 cached runs (1 from files written before runs recorded their key)" in err
    text = (tmp_path / "robust.md").read_text()
    assert ("1 of the reused runs come from files written before runs recorded their key: "
            "the code that computed them is not recorded") in text
    assert json.loads((tmp_path / "robust.json").read_text())["provenance"]["keyless_runs"] == 1
    # The ten other class sets of the command are neither cached nor computed: said so.
    assert "**Not every run is here**: this report holds 1 of the 11 runs" in text
  assert sorted(p.name for p in runs.iterdir()) == ["digits_tanh-seed0-c3-bias.json"]


def tree(root: pathlib.Path) -> dict[str, bytes]:
  """Every file under ``root`` and its bytes (folders as ``None``)."""
  return {str(p.relative_to(root)): None if p.is_dir() else p.read_bytes()
          for p in sorted(root.rglob("*"))}


def test_alignment_with_no_bundle_refuses_and_leaves_the_report(tmp_path, capsys):
  """F14: without cached bundles (a clone has none) it rewrote robust_alignment.md as an
  empty report and exited 0; a new --out folder is not even created."""
  from experiments import alignment  # pylint: disable=import-outside-toplevel

  (tmp_path / "robust_alignment.md").write_text("a good report\n")
  argv = ["--models", "digits_tanh", "--seeds", "0,1"]
  line = _refused(alignment.main, argv + ["--out", str(tmp_path)], capsys)
  assert line.startswith("experiments.alignment: error: nothing to measure: none of the 2 ")
  assert "not in git" in line and "--train" in line
  assert tree(tmp_path) == {"robust_alignment.md": b"a good report\n"}
  _refused(alignment.main, argv + ["--out", str(tmp_path / "new")], capsys)
  assert not (tmp_path / "new").exists()


def test_alignment_creates_its_out_folder(tmp_path, monkeypatch):
  """F15: a new --out folder ended in a FileNotFoundError after the work."""
  from experiments import alignment  # pylint: disable=import-outside-toplevel

  rows = [{"cos": 0.5, "cos_other": 0.1, "top": 3.0, "sign": 0.5, "transfer": 0.1}] * 10
  monkeypatch.setattr(alignment.robust_experiment, "load_model",
                      lambda *a, **k: types.SimpleNamespace(dataset="digits"))
  monkeypatch.setattr(alignment, "load_dataset", lambda *a, **k: None)
  monkeypatch.setattr(alignment, "measure", lambda bundle, test: {
      "head": "Dense_1", "features": 8, "logit_error": 0.0, "accuracy": 90.0, "rows": rows})
  out = tmp_path / "new" / "deeper"
  path = alignment.main(["--models", "digits_tanh", "--seeds", "0", "--out", str(out)])
  assert path == out / "robust_alignment.md" and "| digits_tanh |" in path.read_text()
  assert (out / "robust_alignment.png").exists()


def test_robust_rebuilt_without_bench_keeps_the_cost_table_marked_carried(tmp_path, capsys):
  """F13: the committed command needs a cached bundle for --bench (no clone has one);
  without --bench the cost table the docs quote vanished from the rebuilt report. It is
  now carried over from the earlier report, said to be; --bench without the bundle is
  refused in one line, nothing written; the recorded command reruns (shell-quoted)."""
  from experiments import robust  # pylint: disable=import-outside-toplevel

  _keyless_robust_runs(tmp_path)
  (tmp_path / "robust.md").write_text(
      "# old\n\nMachine: the old box. Written 2026-11-29T19:19:02. The cost table below was "
      "measured when this report was written (load average 0.9).\n\n"
      "## Cost against the fixed path\n\nForgetting class 3 from seed 0 of "
      "`fashion_sigmoid`, best of 3.\n\n| rule | seconds | ratio |\n|---|---|---|\n"
      "| paper, fixed lambdas (1e-3, 10) | 0.005 | 1.0 |\n| bias | 0.004 | 0.7 |\n\n"
      "## Plots\n")
  (tmp_path / "robust.json").write_text(json.dumps({"command": "old", "runs": []}))
  base = ["--models", "digits_tanh", "--seeds", "0", "--methods", "bias", "--choose-seeds",
          "", "--out", str(tmp_path), "--report-only"]
  before = tree(tmp_path)
  line = _refused(robust.main, base + ["--bench", "fashion_sigmoid"], capsys)
  assert "no cached bundle" in line and "not in git" in line
  assert tree(tmp_path) == before

  for _ in range(2):  # Carried over again from the JSON, with the first measurement's stamp.
    robust.main(base)
    text = (tmp_path / "robust.md").read_text()
    assert "| bias | 0.004 | 0.7 |" in text and "seed 0 of `fashion_sigmoid`" in text
    assert ("**Carried over from the earlier report** in this folder (measured "
            "2026-11-29T19:19:02, on the old box, load average 0.9), not measured by this "
            "command") in text
    assert "the cost table below was carried over from the earlier report" in text
    data = json.loads((tmp_path / "robust.json").read_text())
    assert data["bench"]["carried"] and data["bench"]["measured"] == "2026-11-29T19:19:02"
    assert shlex.split(data["command"]) == ["python", "-m", "experiments.robust", *base]
  capsys.readouterr()


def test_attach_codes_report_names_the_move_it_ran_and_forgets_real_default(tmp_path):
  """F16: every report said it forgot with "`auto`, the default of `mnemonic-jax forget`"
  while it ran the `paper` move and forget's default is `--move reassign`; and a retraining
  of 0.4 s read "0" seconds beside "24x faster"."""
  from experiments import attach_codes, common, run_cache  # pylint: disable=import-outside-toplevel
  from mnemonic_jax import forgetting  # pylint: disable=import-outside-toplevel

  config = common.load_config("digits_mlp:quick")[0]
  attach_codes.plain_edit(config)
  run = {"model": "e1", "classes": [3], "E_F": 100.0, "A_R": 90.0, "A_R_before": 90.5,
         "goal": True, "goal_vs_plain": True, "forget_seconds": 0.01, "met": True}
  attached = {1: {"epochs": 1, "seconds": 0.02, "test_accuracy_after": 90.0,
                  "codes_accuracy_after": 1.0}}
  retrain = {"classes": [3], "epochs": 3, "retain_examples": 100, "seconds": 0.4,
             "A_R": 91.0, "E_F": 100.0}
  prov = run_cache.provenance(run_cache.RunCache(tmp_path / "runs", "box"), None)
  path = attach_codes.write_report(
      tmp_path, "cmd", config, {"accuracy": 90.0, "train_seconds": 1.0, "codes_accuracy": 0.1},
      attached, [run], [retrain], [3], [str(c) for c in range(10)], 0.1, prov)
  text = " ".join(path.read_text().split())
  assert f"with the `{attach_codes.MOVE}` move (`mnemonic-jax forget --move " \
         f"{attach_codes.MOVE}`" in text
  assert forgetting.DEFAULT_MOVE != attach_codes.MOVE
  assert f"which is `--move {forgetting.DEFAULT_MOVE}`" in text
  assert "the default of `mnemonic-jax forget`)" not in text
  assert "| 3 | 3 | 100 | 0.4 | 91.00 | 100.0 |" in text


def _method_record(method):
  return {"seed": 0, "classes": [3], "method": method, "inputs": "trained-codes",
          "variant": method, "data": "none", "seconds": 0.01, "compile_seconds": 0.1,
          "steps": 1, "examples": {}, "details": {}, "A_R": 90.0, "E_F": 100.0,
          "accuracy": 80.0, "A_R_before": 90.5, "E_F_before": 0.0, "accuracy_before": 90.0,
          "per_class": [90.0] * 10, "retain_train_accuracy": 95.0,
          "forget_train_accuracy": 0.0, "shift_recovered": 50.0,
          "mia": {"entropy_mia": 0.1, "confidence_mia": 50.0, "loss_mia": 50.0},
          "relearn": None, "train_seconds": 1.0}


@pytest.mark.parametrize("methods", [["mnemonic"], ["retrain", "mnemonic"]])
def test_methods_report_speaks_of_the_oracle_only_when_it_ran(methods, tmp_path):
  """F21: a comparison without `retrain` was titled "against the retrain oracle" and said
  that `retrain` trains a new model, though every Δ column was empty."""
  from experiments import common, compare_report, run_cache  # pylint: disable=import-outside-toplevel

  config = common.load_config("digits_mlp:quick")[0]
  prov = run_cache.provenance(run_cache.RunCache(tmp_path / "runs", "box"), None)
  records = [_method_record(m) for m in ["none", *methods]]
  path = compare_report.write_report(tmp_path, "t", config, records, methods, [(3,)], [0],
                                     [str(c) for c in range(10)], "cmd", [], prov=prov)
  text = " ".join(path.read_text().split())
  oracle = "retrain" in methods
  assert text.startswith("# t: unlearning methods against the retrain oracle") == oracle
  assert ("`retrain` trains a new model without the set" in text) == oracle
  assert ("no retrain oracle was run" in text) != oracle
  assert text.startswith("# t: unlearning methods (no retrain oracle run)") != oracle


def test_table_robust_and_attach_keys_name_the_code_they_run(monkeypatch):
  """F6 as a kind: only the methods comparison's keys named code, so a table, robust or
  attach_codes run computed yesterday was reused after today's change to its move."""
  from experiments import attach_codes, robust, run_cache, run_code, table  # pylint: disable=import-outside-toplevel

  keys = lambda: [table.run_key_of({"seed": 0}, [3], "auto", {}, 10, 10),
                  table.run_key_of({"seed": 0}, [3], "paper", None, 10, 10),
                  robust.robust_key({"seed": 0}, [3], "bias"),
                  attach_codes.attach_key({}, "forget", classes=[3], move={}),
                  attach_codes.attach_key({}, "retrain", classes=[3])]
  before = keys()
  assert all(run_cache.CODE_FIELD in k for k in before)
  assert "mnemonic_jax.forgetting.moves.bias" in before[2][run_cache.CODE_FIELD]
  assert run_cache.CODE_FIELD not in table.run_key_of({"seed": 0}, [3], "none", None, 10, 10)
  monkeypatch.setattr(run_code, "source_digest", lambda module: "changed")
  cache = run_cache.RunCache(pathlib.Path("unused"), "box")
  for old, new in zip(before, keys()):
    assert run_cache.digest(old) == run_cache.digest(new)  # The same settings,
    assert cache.path("s", old) != cache.path("s", new)  # another file: computed again.
