"""Experiment configs load and are sane; the table runner runs end to end on tiny settings."""

import argparse
import dataclasses
import importlib
import json
import os
import pathlib
import platform
import re
import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest

from mnemonic_jax import workflow
from mnemonic_jax.configs import available_configs
from mnemonic_jax.models import available_models, create_model
from mnemonic_jax.training import FitConfig

REPO = pathlib.Path(__file__).resolve().parents[1]
#: The packaged configs, and the experiment-only ones of experiments/configs/.
CONFIGS = [*available_configs(), "robust_models"]
# Image shape each config's dataset delivers (the test does not load the data).
INPUT_SHAPES = {
    "digits": (8, 8, 1), "fashion_mnist": (28, 28, 1), "tfds:mnist": (28, 28, 1),
    "tfds:cifar10": (32, 32, 3),
}
REQUIRED = (
    "name", "seed", "dataset", "data_dir", "pad_to", "model", "model_kwargs",
    "code_distribution", "t_mix", "epochs", "batch_size", "learning_rate", "momentum",
    "weight_decay", "schedule", "augment", "checkpoint_every", "lambda1", "lambda2",
    "forget_classes")
NUM_CLASSES = {"cub_resnet18": 40, "stn_resnet18": 49, "imagenet_finetune": 1000}


def load(name, variant=""):
  package = "experiments.configs" if name == "robust_models" else "mnemonic_jax.configs"
  return importlib.import_module(f"{package}.{name}").get_config(variant)


def test_every_setting_of_the_paper_has_a_config():
  want = {"digits_mlp", "mnist_mlp", "fashion_mnist_mlp", "cifar10_resnet18", "cub_resnet18",
          "stn_resnet18", "imagenet_finetune"}
  assert want <= set(CONFIGS)


@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize("variant", ["", "quick"])
def test_config_loads_with_every_field(name, variant):
  config = load(name, variant)
  for field in REQUIRED:
    assert field in config, f"{name}:{variant} lacks {field}"
  assert isinstance(config.seed, int)
  assert config.model in available_models()
  assert config.schedule in ("constant", "cosine")
  assert config.code_distribution in ("uniform", "normal")
  assert 0.0 <= config.t_mix <= 1.0
  assert config.epochs >= 1 and config.batch_size >= 1 and config.learning_rate > 0
  for lam in (config.lambda1, config.lambda2):
    assert lam == "auto" or (isinstance(lam, float) and lam > 0)
  assert len(config.forget_classes) >= 1
  fit = workflow.fit_config(config)  # Every FitConfig field the config holds is accepted.
  assert isinstance(fit, FitConfig) and fit.epochs == config.epochs
  json.dumps(workflow.to_plain(config))  # Recorded in the bundle: must be JSON-able.


@pytest.mark.parametrize("name", CONFIGS)
def test_quick_variant_is_small_and_builds_its_model(name):
  full, quick = load(name), load(name, "quick")
  assert quick.epochs <= min(30, full.epochs)
  assert quick.epochs < full.epochs or quick.model_kwargs != full.model_kwargs
  for field in ("t_mix", "lambda1", "lambda2", "dataset", "model", "seed"):
    assert quick[field] == full[field], field  # Quick changes the cost, not the method.
  shape = INPUT_SHAPES.get(quick.dataset, (224, 224, 3))
  model = create_model(quick.model, NUM_CLASSES.get(name, 10),
                       **workflow.to_plain(quick.model_kwargs))
  variables = jax.eval_shape(
      lambda: model.init(jax.random.key(0), jnp.zeros((1, *shape)), train=False))
  size = sum(x.size for x in jax.tree.leaves(variables["params"]))
  assert size < 2_000_000, f"{name}:quick has {size} parameters: not a CPU run"


@pytest.mark.parametrize("name", CONFIGS)
def test_unknown_variant_is_rejected(name):
  with pytest.raises(ValueError, match="variant"):
    load(name, "no-such-variant")


def test_paper_settings_are_kept():
  cifar = load("cifar10_resnet18")
  assert (cifar.model, cifar.t_mix, cifar.schedule, cifar.augment) == (
      "resnet18_cifar", 0.3, "cosine", True)
  assert (cifar.lambda1, cifar.lambda2) == (1e-5, 1e4)
  for name in ("mnist_mlp", "fashion_mnist_mlp"):
    c = load(name)
    assert (c.t_mix, c.epochs, c.batch_size, c.learning_rate, c.schedule) == (
        0.1, 200, 128, 0.01, "constant")
    assert (c.lambda1, c.lambda2) == (1e-3, 10.0)
    assert workflow.to_plain(c.model_kwargs) == {"hidden": [1000], "activation": "sigmoid"}
  for name, lambdas in (("cub_resnet18", (1e-4, 1.0)), ("stn_resnet18", (1e-5, 100.0))):
    c = load(name)
    assert (c.model, c.batch_size, c.schedule, c.t_mix) == ("resnet18", 32, "cosine", 0.1)
    assert (c.lambda1, c.lambda2) == lambdas
    assert "pretrained" in c
  vit = load("imagenet_finetune", "vit_tiny")
  assert vit.model == "vit_tiny" and vit.t_mix == 0.3 and "pretrained" in vit
  assert load("fashion_mnist_mlp", "e120").epochs == 120


@pytest.mark.slow  # 17 s; the runner's shared path runs end to end in test_compare.py.
def test_table_runner_end_to_end_and_rerun_skips(tmp_path, monkeypatch):
  """The real runner, without --out: everything goes to the scratch folder."""
  from experiments import common, table

  repo = REPO
  results = sorted(p.name for p in (repo / "experiments" / "results").iterdir())
  config = "digits_mlp:quick"
  argv = ["--config", config, "--classes", "3", "--seeds", "1", "--multi", "0,1",
          "--no-progress", "--mia-cap", "200"]
  path = os.pathsep.join(filter(None, [str(repo), os.environ.get("PYTHONPATH")]))
  env = {**os.environ, "PYTHONPATH": path}
  result = subprocess.run([sys.executable, "-m", "experiments.table", *argv], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=600, check=False)
  assert result.returncode == 0, result.stderr
  assert "writing to the scratch folder runs/experiments" in result.stderr
  tmp_path = tmp_path / table.SCRATCH  # What the checks below read.
  report = tmp_path / "digits_mlp-quick.md"
  assert result.stdout.strip() == str(pathlib.Path(table.SCRATCH) / "digits_mlp-quick.md")
  assert sorted(p.name for p in (repo / "experiments" / "results").iterdir()) == results
  runs = sorted((tmp_path / "runs" / "digits_mlp-quick").glob("*.json"))
  # (class 3, set {0,1}) x (none, paper, auto), each file named by the digest of its key
  # (and, for paper and auto, of the code they run).
  assert [re.sub(r"-[0-9a-f]{12}(-[0-9a-f]{8})?$", "", p.stem) for p in runs] == [
      "seed0-c0_1-auto", "seed0-c0_1-none", "seed0-c0_1-paper",
      "seed0-c3-auto", "seed0-c3-none", "seed0-c3-paper"]
  [auto] = (tmp_path / "runs" / "digits_mlp-quick").glob("seed0-c3-auto-*.json")
  record = json.loads(auto.read_text())
  for key in ("A_R", "E_F", "accuracy", "retain_train_accuracy", "forget_train_accuracy",
              "forget_seconds", "forget_compile_seconds", "train_seconds", "lambda1", "lambda2"):
    assert record[key] is not None, key
  assert set(record["mia"]) == {"entropy_mia", "confidence_mia", "loss_mia"}
  assert record["search"]["candidates"] > 100 and record["lambda1"] == record["search"]["lambda1"]
  assert 0 <= record["E_F"] <= 100 and record["forget_train_accuracy"] < 50
  text = report.read_text()
  assert "python -m experiments.table" in text and "| 3 |" in text and "{0,1}" in text
  for suffix in (".csv", ".json", "_per_class.png", "_ar_ef.png", "_seconds.png"):
    assert (tmp_path / f"digits_mlp-quick{suffix}").exists(), suffix

  # A rerun trains and forgets nothing: every run comes from its JSON.
  mtimes = [p.stat().st_mtime_ns for p in runs]
  monkeypatch.setattr(table, "forget_run", lambda *a, **k: pytest.fail("rerun forgot again"))
  monkeypatch.setattr(common, "train_or_load", lambda *a, **k: pytest.fail("rerun trained"))
  monkeypatch.chdir(tmp_path.parents[1])
  table.main(argv)
  assert [p.stat().st_mtime_ns for p in runs] == mtimes


def _table(argv, cwd):
  """The real command, ``python -m experiments.table ARGV``, in a fresh process."""
  path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
  return subprocess.run([sys.executable, "-m", "experiments.table", *argv], cwd=cwd,
                        env={**os.environ, "PYTHONPATH": path, "JAX_PLATFORMS": "cpu"},
                        capture_output=True, text=True, timeout=600, check=False)


def _paper_run(out):
  """The one ``paper`` run of the digits_mlp-quick table in ``out`` (its only file)."""
  [path] = (out / "runs" / "digits_mlp-quick").glob("seed0-c3-paper*.json")
  return json.loads(path.read_text())


@pytest.mark.slow  # Four real commands: ~40 s of CPU (2-3 min on the shared 2 cores).
def test_table_cache_is_keyed_on_the_config(tmp_path):
  """#22: a rerun into the same folder with other lambdas or epochs computes again.

  Before the fix, the second command reused the first one's runs (same file names) and
  printed their numbers under the new lambdas, and an epochs change did the same.
  """
  out = tmp_path / "out"
  argv = ["--config", "digits_mlp:quick", "--config.epochs=3", "--classes", "3", "--seeds",
          "1", "--multi", "", "--lambdas", "paper", "--no-progress", "--mia-cap", "200",
          "--train-cap", "500", "--out", str(out)]
  first = _table(argv, tmp_path)
  assert first.returncode == 0, first.stderr
  assert "reused 0 cached runs, computed 2" in first.stderr
  before = _paper_run(out)
  assert before["lambda1"] == 1e-3 and before["cache_key"]["config"]["lambda1"] == 1e-3

  changed = argv + ["--config.lambda1=0.1", "--config.lambda2=100"]
  second = _table(changed, tmp_path)
  assert second.returncode == 0, second.stderr
  assert "reused 0 cached runs, computed 2" in second.stderr  # Not the old numbers.
  runs = sorted(p.name for p in (out / "runs" / "digits_mlp-quick").glob("*.json"))
  assert len(runs) == 4  # Both settings' runs kept side by side, none overwritten.
  [path] = [p for p in (out / "runs" / "digits_mlp-quick").glob("seed0-c3-paper*.json")
            if json.loads(p.read_text())["lambda1"] == 0.1]
  after = json.loads(path.read_text())
  assert after["lambda2"] == 100.0 and after["A_R"] != before["A_R"]
  # The trained model was reused (the lambdas do not change training), not retrained.
  assert sorted(p.name for p in (out / "cache" / "digits_mlp-quick").iterdir()) == ["seed0"]
  # The report of the overridden config is its own; the first one's is kept.
  report = json.loads((out / "digits_mlp-quick+epochs=3+lambda1=0.1+lambda2=100.json")
                      .read_text())
  assert [r["lambda1"] for r in report["runs"] if r["mode"] == "paper"] == [0.1]
  first_report = json.loads((out / "digits_mlp-quick+epochs=3.json").read_text())
  assert [r["lambda1"] for r in first_report["runs"] if r["mode"] == "paper"] == [1e-3]

  third = _table(changed, tmp_path)
  assert third.returncode == 0, third.stderr
  assert "reused 2 cached runs, computed 0" in third.stderr

  epochs = _table([a.replace("epochs=3", "epochs=4") for a in argv], tmp_path)
  assert epochs.returncode == 0, epochs.stderr
  assert "reused 0 cached runs, computed 2" in epochs.stderr
  models = sorted(p.name for p in (out / "cache" / "digits_mlp-quick").iterdir())
  assert models[0] == "seed0" and len(models) == 2 and models[1].startswith("seed0-")


def test_run_cache_reuses_only_an_equal_key(tmp_path):
  from experiments import run_cache

  cache = run_cache.RunCache(tmp_path, "machine A")
  key = {"config": {"lambda1": 1e-3, "epochs": 30}, "classes": [3], "mode": "paper"}
  assert cache.get("seed0-c3-paper", key) is None
  cache.put("seed0-c3-paper", key, {"A_R": 94.1})
  other = {**key, "config": {"lambda1": 0.1, "epochs": 30}}
  assert cache.get("seed0-c3-paper", other) is None  # Another lambda: compute again.
  assert cache.get("seed0-c3-paper", {**key, "config": {"lambda1": 1e-3, "epochs": 5}}) is None
  record = cache.get("seed0-c3-paper", json.loads(json.dumps(key)))
  assert record["A_R"] == 94.1 and record["provenance"]["machine"] == "machine A"
  cache.put("seed0-c3-paper", other, {"A_R": 55.9})  # Beside the first, not over it.
  assert len(list(tmp_path.glob("seed0-c3-paper-*.json"))) == 2
  assert cache.get("seed0-c3-paper", other)["A_R"] == 55.9
  assert (cache.reused, cache.computed) == (2, 2)
  # A file edited by hand under a digest name is not believed.
  path = cache.path("seed0-c3-paper", key)
  path.write_text(json.dumps({**json.loads(path.read_text()), "cache_key": other}))
  assert cache.get("seed0-c3-paper", key) is None

  # A file written before keys: its code is not recorded, so by default it is computed
  # again (F6: a rerun of the committed command reused 99 runs of code that no longer
  # exists, and said that today's code gave them) ...
  (tmp_path / "seed0-c3-auto.json").write_text(json.dumps({"A_R": 90.0}))
  legacy = lambda record: {**key, "mode": "auto"}
  assert cache.get("seed0-c3-auto", {**key, "mode": "auto"}, legacy) is None
  assert cache.keyless_not_reused == 1 and "--reuse-keyless reuses them" in cache.summary()
  # ... and reused on request, only where its rebuilt key is equal.
  cache = run_cache.RunCache(tmp_path, "machine A", reuse_keyless=True)
  assert cache.get("seed0-c3-paper", other)["A_R"] == 55.9
  assert cache.get("seed0-c3-auto", {**key, "mode": "auto"}, legacy)["A_R"] == 90.0
  assert cache.reused_legacy == 1
  assert cache.get("seed0-c3-auto", {**key, "mode": "auto"}) is None  # No rule to read it.
  assert cache.get("seed0-c3-auto", {**key, "mode": "auto"}, lambda r: None) is None
  assert cache.get("seed0-c3-auto", {**other, "mode": "auto"}, legacy) is None
  assert "reused 2 cached runs (1 from files written before" in cache.summary()
  prov = run_cache.provenance(cache, None)
  assert prov["keyless_runs"] == 1
  assert "1 of the reused runs come from files written before runs recorded their key" \
      in run_cache.runs_paragraph(prov)


def _committed(folder, pattern):
  runs = sorted((REPO / "experiments" / "results" / "runs" / folder).glob(pattern))
  if not runs:
    pytest.skip(f"no committed runs in {folder}")
  return [json.loads(p.read_text()) for p in runs[:: max(len(runs) // 12, 1)]]


def test_committed_runs_keep_being_reused_and_only_with_their_config():
  """The run files of experiments/results, written before keys, match the key of the
  committed commands' config (no override) and of no other."""
  from experiments import common, compare, robust, run_cache, table
  from mnemonic_jax.forgetting import DEFAULT_RULE

  out = REPO / "experiments" / "results"
  config, _ = common.load_config("digits_mlp")
  records = _committed("digits_mlp", "seed*.json")
  rule = dataclasses.asdict(DEFAULT_RULE)
  for r in records:
    want = table.run_key_of(run_cache.config_key(config, r["seed"]), r["classes"], r["mode"],
                            rule, common.TRAIN_CAP, common.MIA_CAP)
    assert run_cache.canonical(table.legacy_key("digits_mlp", out, "digits_mlp", r)) == want
  config.lambda1 = 0.1
  r = records[0]
  changed = table.run_key_of(run_cache.config_key(config, r["seed"]), r["classes"], r["mode"],
                             rule, common.TRAIN_CAP, common.MIA_CAP)
  assert run_cache.canonical(table.legacy_key("digits_mlp", out, "digits_mlp", r)) != changed

  config.lambda1 = 1e-3
  for r in _committed("digits_mlp/methods", "seed*.json"):
    want = compare.method_key(run_cache.config_key(config, r["seed"]), r["classes"],
                              r["method"], r["inputs"], "all", True, common.TRAIN_CAP,
                              common.MIA_CAP)
    got = compare.legacy_method_key("digits_mlp", out, "digits_mlp", r, common.TRAIN_CAP,
                                    common.MIA_CAP)
    assert run_cache.canonical(got) == want, r["variant"]

  for r in _committed("robust", "digits_tanh-*.json"):
    plain = run_cache.config_key(robust.model_config("digits_tanh", r["seed"]),
                                 training_only=True)
    want = robust.robust_key(plain, r["classes"], r["method"])
    assert run_cache.canonical(robust.legacy_robust_key(out, "digits_tanh", r)) == want


TINY = """
from mnemonic_jax.configs import paper_mlp_config

def get_config(variant=""):
  config = paper_mlp_config("tiny", "digits", epochs=5, checkpoint_every=10_000)
  config.model_kwargs.hidden = (32,)
  config.learning_rate = 0.1
  return config
"""


@pytest.mark.slow  # Three real commands and one in-process: ~30 s of CPU.
def test_table_report_says_what_was_recomputed_and_keeps_notes(tmp_path):
  """#22: a rerun that recomputes nothing says so (and where and when the runs it shows
  were computed) instead of stamping the report with this machine and today; a
  hand-written note survives a rerun without ``--note``."""
  from experiments import table

  (tmp_path / "tiny.py").write_text(TINY)
  out = tmp_path / "out"
  # The default caps: a run file written before keys was computed with them.
  argv = ["--config", str(tmp_path / "tiny.py"), "--classes", "3", "--seeds", "1", "--multi",
          "", "--lambdas", "paper", "--no-progress", "--out", str(out)]
  first = _table(argv + ["--note", "Hand-written: read me."], tmp_path)
  assert first.returncode == 0, first.stderr
  text = (out / "tiny.md").read_text()
  here = platform.platform()  # The start of the machine line (the test process has 8 devices).
  assert "All 2 runs were computed by this command on " + here in text
  assert "Hand-written: read me." in text
  assert (out / "tiny_notes.md").read_text().strip() == "Hand-written: read me."

  second = _table(argv, tmp_path)  # No --note, nothing to compute.
  assert second.returncode == 0, second.stderr
  assert "reused 2 cached runs, computed 0" in second.stderr
  text = (out / "tiny.md").read_text()
  assert "**Nothing was recomputed for this report**: all 2 runs were reused" in text
  assert f"2 computed on {here}" in text
  assert "Hand-written: read me." in text  # Kept.

  # Run files and a report as written before runs carried a key and provenance.
  runs = out / "runs" / "tiny"
  for path in runs.glob("*.json"):
    record = json.loads(path.read_text())
    del record["cache_key"], record["provenance"]
    stem = f"seed{record['seed']}-c{'_'.join(map(str, record['classes']))}-{record['mode']}"
    (runs / f"{stem}.json").write_text(json.dumps(record))
    path.unlink()
  (out / "tiny_notes.md").unlink()
  (out / "tiny.json").write_text(json.dumps({
      "command": "python -m experiments.table --config tiny.py --note 'An old note.'",
      "machine": "an older box", "runs": []}))
  (out / "tiny.md").write_text("# tiny\n\nWritten 2020-01-02T03:04:05. Seeds: 0.\n")
  third = _table(argv + ["--reuse-keyless"], tmp_path)  # Reused only on request (F6).
  assert third.returncode == 0, third.stderr
  assert "reused 2 cached runs (2 from files written before" in third.stderr
  text = (out / "tiny.md").read_text()
  assert ("2 written before run files recorded where and when they were computed (the "
          "report that showed them was written 2020-01-02T03:04:05, on an older box)") in text
  assert "2 of the reused runs come from files written before runs recorded their key" in text
  assert "An old note." in text and "An old note." in (out / "tiny_notes.md").read_text()
  assert here not in text.split("Report written")[0]

  table.main(argv + ["--reuse-keyless"])  # The stamp of the unrecorded runs is carried on.
  assert "2020-01-02T03:04:05, on an older box" in (out / "tiny.md").read_text()

  fourth = _table(argv, tmp_path)  # By default their code is not trusted: computed again.
  assert fourth.returncode == 0, fourth.stderr
  assert "reused 0 cached runs, computed 2; 2 files written before runs recorded their key " \
      "not reused" in fourth.stderr
  assert "All 2 runs were computed by this command" in (out / "tiny.md").read_text()


@pytest.mark.slow  # Trains, attaches and forgets a tiny model: ~20 s of CPU.
def test_attach_codes_writes_to_the_scratch_folder_by_default(tmp_path):
  """#22: without --out, experiments.attach_codes writes under runs/experiments, never into
  the committed experiments/results; a rerun says it recomputed nothing."""
  results = REPO / "experiments" / "results"  # Others may write there meanwhile: the
  committed = {p: p.stat().st_mtime_ns for p in results.glob("attach_codes*")}  # runner's own.
  (tmp_path / "tiny.py").write_text(TINY)
  path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
  argv = [sys.executable, "-m", "experiments.attach_codes", "--config",
          str(tmp_path / "tiny.py"), "--epochs", "1", "--classes", "3", "--retrain", "",
          "--no-progress"]
  env = {**os.environ, "PYTHONPATH": path, "JAX_PLATFORMS": "cpu"}
  for expect in ("computed 3", "reused 3 cached runs, computed 0"):
    result = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=600, check=False)
    assert result.returncode == 0, result.stderr
    assert "writing to the scratch folder runs/experiments" in result.stderr
    assert expect in result.stderr
  report = tmp_path / "runs" / "experiments" / "attach_codes.md"
  assert "**Nothing was recomputed for this report**: all 3 steps" in report.read_text()
  assert {p: p.stat().st_mtime_ns for p in results.glob("attach_codes*")} == committed
  assert not (results / "runs" / "tiny_plain").exists()
  assert not (results / "cache" / "tiny_plain").exists()


def test_report_notes_are_kept_and_recovered(tmp_path):
  from experiments import run_cache

  notes = tmp_path / "r_notes.md"
  previous = tmp_path / "r.json"
  previous.write_text(json.dumps({"command": "python -m experiments.table --note 'First, "
                                              "old.' --out x --note=Second"}))
  assert run_cache.report_notes(notes, [], previous) == ["First, old.", "Second"]
  assert notes.read_text() == "First, old.\n\nSecond\n"
  previous.unlink()
  assert run_cache.report_notes(notes, ["Third"]) == ["First, old.", "Second", "Third"]
  assert run_cache.report_notes(notes, ["Third"]) == ["First, old.", "Second", "Third"]
  notes.write_text("Edited by hand.\n")
  assert run_cache.report_notes(notes, []) == ["Edited by hand."]
  assert run_cache.report_notes(tmp_path / "none.md", []) == []
  assert not (tmp_path / "none.md").exists()


def test_table_runner_rejects_a_cache_from_another_config(tmp_path, capsys):
  from experiments import common

  config = common.load_config("digits_mlp:quick")[0]
  config.epochs = 1
  common.train_or_load(config, tmp_path / "seed0", progress=False)
  config.epochs = 2
  with pytest.raises(SystemExit) as exit_info:
    common.train_or_load(config, tmp_path / "seed0", progress=False)
  assert exit_info.value.code == 2
  assert "another config" in capsys.readouterr().err
  config.epochs = 1
  config.log_every += 1  # Bookkeeping only: the cached bundle is reused, not retrained.
  start = (tmp_path / "seed0" / "bundle").stat().st_mtime_ns
  bundle, _ = common.train_or_load(config, tmp_path / "seed0", progress=False)
  assert bundle.config["log_every"] == config.log_every - 1
  assert (tmp_path / "seed0" / "bundle").stat().st_mtime_ns == start


def test_rule_from_config_and_cached_rules_read_tolerantly():
  import ml_collections

  from experiments import common
  from mnemonic_jax.forgetting import DEFAULT_RULE, Rule

  config = ml_collections.ConfigDict({"name": "x"})
  assert common.rule_from_config(config) == DEFAULT_RULE
  config.auto = {"margin": 10.0, "fallback": "target"}
  assert common.rule_from_config(config) == Rule(margin=10.0, fallback="target")
  # A run cached before Rule had a field is read with that field's default.
  old = {"margin": 15.0, "guard": 0.4, "order": "size"}
  assert common.same_rule(old, DEFAULT_RULE)
  assert not common.same_rule(old, Rule(fallback="target"))
  assert not common.same_rule({**old, "margin": 10.0}, DEFAULT_RULE)
  assert not common.same_rule(None, DEFAULT_RULE)


def test_methods_of_the_comparison_get_move_objects():
  import types

  import ml_collections

  from experiments import compare
  from mnemonic_jax.forgetting import moves

  config = ml_collections.ConfigDict({"name": "x", "auto": {"margin": 9.0}})
  assert compare.method_config("mnemonic", config) is None  # The bundle's lambdas.
  auto = compare.method_config("mnemonic-auto", config)
  assert isinstance(auto, moves.Paper) and auto.rule.margin == 9.0
  assert compare.method_config("mnemonic-bias", config) == moves.Bias()
  config.baselines = {"mnemonic": {"lambda1": 0.5}}
  bundle = types.SimpleNamespace(config={"lambda1": 1e-3, "lambda2": 10.0})
  assert compare.method_config("mnemonic", config, bundle) == moves.Algorithm2(
      lambda1=0.5, lambda2=10.0)


def test_robust_methods_keep_their_names_and_record_shape():
  """``paper-auto`` is the ``paper`` move; records keep the shape of the cached runs."""
  import numpy as np

  from experiments import robust
  from mnemonic_jax import forgetting

  assert robust.METHODS["paper-auto"] == "paper"
  assert set(robust.METHODS.values()) <= set(forgetting.MOVES) - {"algorithm2"}
  apply_fn = lambda p, x: x.reshape(x.shape[0], -1) @ p["w"] + p["b"]
  params = {"w": 5.0 * jnp.eye(3), "b": jnp.zeros(3)}
  codes = jnp.eye(3)
  new, summary = robust.forget_with("bias", apply_fn, params, codes, [1])
  assert summary["met"] is True and summary["after"]["forget_margin"] <= -15
  assert [set(s) for s in summary["steps"]] == [
      {"phase", "t", "met", "fallback", "target", "forget_margin", "remain_margin"}]
  np.testing.assert_array_equal(new["w"], params["w"])  # The bias move: the bias only.
  _, summary = robust.forget_with("paper-auto", apply_fn, params, codes, [1])
  assert summary["move"] == "paper" and isinstance(summary["met"], bool)
  assert summary["steps"] == [{k: summary[k] for k in ("lambda1", "lambda2", "sign")}]


@pytest.mark.parametrize("runner", ["table", "depth", "robust", "alignment", "attach_codes",
                                    "bench_cli", "bench_train", "bench_all", "bench_forget",
                                    "bench_search"])
def test_every_runner_refuses_an_empty_out(runner, capsys, tmp_path, monkeypatch):
  """``--out ""`` (an unset shell variable) never means the current directory."""
  import importlib
  monkeypatch.chdir(tmp_path)
  with pytest.raises(SystemExit) as exit_info:
    importlib.import_module(f"experiments.{runner}").main(["--out", ""])
  assert exit_info.value.code == 2 and "--out: is empty" in capsys.readouterr().err
  assert list(tmp_path.iterdir()) == []


def test_run_cache_recomputes_a_run_whose_code_changed(tmp_path, monkeypatch):
  from experiments import common, compare, run_cache

  code = lambda text: {"mnemonic_jax.baselines.salun": text}
  key = {"config": {"epochs": 30}, "classes": [3], "method": "salun"}
  cache = run_cache.RunCache(tmp_path, "machine A")
  # A record written before keys named code: trusted under the first code it is read with,
  # and pinned to it.
  cache.put("seed0-c3-salun", key, {"A_R": 90.0})
  with_a = {**key, run_cache.CODE_FIELD: code("aaaa")}
  with_b = {**key, run_cache.CODE_FIELD: code("bbbb")}
  assert run_cache.digest(with_a) == run_cache.digest(key)  # The settings' digest.
  assert cache.path("seed0-c3-salun", with_a) != cache.path("seed0-c3-salun", with_b)
  assert cache.get("seed0-c3-salun", with_a)["A_R"] == 90.0 and cache.pinned == 1
  assert cache.get("seed0-c3-salun", with_a)["A_R"] == 90.0 and cache.pinned == 1
  assert cache.get("seed0-c3-salun", with_b) is None  # The code changed: compute again,
  cache.put("seed0-c3-salun", with_b, {"A_R": 80.0})  # beside the old file.
  assert len(list(tmp_path.glob("seed0-c3-salun-*.json"))) == 2
  assert cache.get("seed0-c3-salun", with_b)["A_R"] == 80.0
  # A new cache on the folder reads the pins: the old record stays pinned to "aaaa".
  again = run_cache.RunCache(tmp_path, "machine B")
  assert again.get("seed0-c3-salun", with_a)["A_R"] == 90.0
  assert again.get("seed0-c3-salun", {**key, run_cache.CODE_FIELD: code("cccc")}) is None
  assert again.pinned == 0 and "pinned" not in again.summary()
  # Code nested in a key (a depth record keys on the method run's key) counts the same.
  nested = {"depth": 1, "method_run": with_a}
  again.put("seed0-c3-salun-depth", nested, {"ok": True})
  assert again.get("seed0-c3-salun-depth", {"depth": 1, "method_run": with_b}) is None
  assert again.get("seed0-c3-salun-depth", nested)["ok"]

  # What code is: the source without docstrings and comments.
  same = run_cache.code_text('def f(x):\n  """Doc."""\n  return x + 1  # one\n')
  assert same == run_cache.code_text("def f(x):\n  return x + 1\n")
  assert same != run_cache.code_text("def f(x):\n  return x + 2\n")
  # A method's key names its own module and every library module it imports, through
  # others too (a shared helper's change is a change of the method), and nothing else.
  salun = set(run_cache.method_code("salun"))
  assert {"mnemonic_jax.baselines.salun", "mnemonic_jax.baselines.base",
          "mnemonic_jax.training"} <= salun
  assert all(m.split(".")[0] == "mnemonic_jax" for m in salun)
  assert not any(m.startswith("mnemonic_jax.cli") for m in salun)
  # A move's key names its base moves' modules (reassign is bias's subclass) and the
  # primitives of Algorithm 2 they compute with.
  assert {"mnemonic_jax.baselines.mnemonic", "mnemonic_jax.forgetting.moves.bias",
          "mnemonic_jax.forgetting.moves.base", "mnemonic_jax.forgetting.primitives",
          "mnemonic_jax.fisher"} <= set(run_cache.method_code("mnemonic-bias"))
  assert "mnemonic_jax.forgetting.moves.bias" in run_cache.method_code("mnemonic-reassign")
  # The comparison's key names the method's code: a changed source, another file.
  plain = run_cache.config_key(common.load_config("digits_mlp")[0], 0)
  args = (plain, [3], "salun", "trained-codes", "all", True, 100, 100)
  before = compare.method_key(*args)
  assert before[run_cache.CODE_FIELD] == run_cache.method_code("salun")
  assert compare.method_key(plain, [3], "none", "trained-codes", "all", True, 100,
                            100).get(run_cache.CODE_FIELD) is None
  from experiments import run_code  # pylint: disable=import-outside-toplevel
  monkeypatch.setattr(run_code, "source_digest", lambda module: "changed")
  after = compare.method_key(*args)
  assert run_cache.digest(after) == run_cache.digest(before)
  assert cache.path("seed0-c3-salun", after) != cache.path("seed0-c3-salun", before)


def test_runners_refuse_repeated_or_bad_classes_and_methods_in_one_line(capsys):
  """A class or method given twice was run twice and averaged as two runs; a bad class
  set in experiments.depth ended in a traceback after its model was loaded."""
  from experiments import common, compare, depth  # pylint: disable=import-outside-toplevel

  cases = [(lambda: common.parse_classes("3,3", 10), "class ids repeated"),
           (lambda: depth.parse_sets("3,0+1,3"), "names a set twice"),
           (lambda: depth.parse_sets("3,x"), "'x' is not a class id"),
           (lambda: depth.check_sets([(12,)], 10), "--classes 12: .*out of range"),
           (lambda: depth.check_sets([(3, 3)], 10), "--classes 3\\+3: .*duplicated"),
           (lambda: common.forget_sets_of(argparse.Namespace(classes="", multi=""), 10),
            "no class to forget"),
           (lambda: depth.main(["--models", "digits_mlp:quick", "--methods",
                                "mnemonic,mnemonic"]), "names a method twice")]
  for call, words in cases:
    with pytest.raises(SystemExit) as raised:
      call()
    assert raised.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and re.search(words, err[0]), err
  assert depth.parse_sets("3,0+1+2") == [(3,), (0, 1, 2)]
  with pytest.raises(compare.UsageError, match="names a method twice"):
    compare.parse_methods("mnemonic,mnemonic", "trained-codes", "all")


@pytest.mark.parametrize("args, words", [
    (["--out", "FILE"], "exists and is not a folder"),
    (["--report", "sub/name"], "is not a plain name"),
    (["--report", "../escaped"], "is not a plain name"),
    (["--mia-cap", "0"], "must be at least 2"),
    (["--train-cap", "0"], "must be at least 1"),
    (["--seeds", "0"], "must be at least 1")])
def test_table_refuses_options_that_ended_in_a_traceback_or_an_empty_report(
    args, words, tmp_path, capsys):
  """Each was a traceback after the runs (a file as --out, a report name with a folder),
  a report written outside --out (../), or an empty report with exit 0 (--seeds 0)."""
  from experiments import table  # pylint: disable=import-outside-toplevel

  (tmp_path / "FILE").write_text("")
  args = [str(tmp_path / a) if a == "FILE" else a for a in args]
  with pytest.raises(SystemExit) as raised:
    table.build_parser().parse_args(["--config", "digits_mlp:quick", *args])
  assert raised.value.code == 2 and words in capsys.readouterr().err


def test_an_interrupted_runner_says_one_line_and_exits_130():
  """Ctrl-C in a runner printed a long KeyboardInterrupt traceback (and once crashed in
  JAX's shutdown after a compile cut short); now one line, status 130."""
  code = ("from experiments import common\n"
          "def main():\n  raise KeyboardInterrupt\n"
          "common.run_command(main, 'experiments.table')\n")
  done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                        check=False, timeout=120, cwd=pathlib.Path(__file__).parents[1])
  assert done.returncode == 130, done
  assert done.stderr.startswith("experiments.table: interrupted; the runs finished before")
  assert len(done.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("args, words", [
    (["--inputs", "zeros"], "--inputs only applies to the methods comparison"),
    (["--report", "x", "--no-relearn"], "--no-relearn, --report only apply to"),
    (["--methods", "mnemonic", "--lambdas", "auto"], "--lambdas chooses"),
    (["--methods", "retrain,mnemonic", "--depth-relearn-steps", "5"], "only applies with --depth")])
def test_table_refuses_options_the_run_would_ignore(args, words, capsys):
  """Each was dropped without a word: the run did something else than was asked."""
  from experiments import table  # pylint: disable=import-outside-toplevel

  with pytest.raises(SystemExit) as raised:
    table.main(["--config", "digits_mlp:quick", *args])
  err = capsys.readouterr().err.strip().splitlines()
  assert raised.value.code == 2 and len(err) == 1 and words in err[0], err


def test_a_run_with_config_overrides_gets_its_own_report_name():
  """``--config.epochs=3`` wrote over the plain config's report (same name)."""
  import ml_collections  # pylint: disable=import-outside-toplevel
  from experiments import common  # pylint: disable=import-outside-toplevel

  config = ml_collections.ConfigDict({"name": "digits_mlp"})
  assert common.run_name(config, "quick") == "digits_mlp-quick"
  assert common.run_name(config, "", [("epochs", "3"), ("model_kwargs.hidden", "(32,)")]) == (
      "digits_mlp+epochs=3+model_kwargs.hidden=_32__")


@pytest.mark.parametrize("args, words", [
    (["--methods", "retrain,mnemonic", "--out", "FILE/sub"], "is a file, so"),
    (["--methods", "retrain,mnemonic", "--depth", "--depth-relearn-steps", "-3"],
     "must be at least 0, got -3")])
def test_table_refuses_an_out_under_a_file_and_negative_relearning(args, words, tmp_path,
                                                                    capsys):
  """An --out under a file was a NotADirectoryError traceback after the runs; a negative
  --depth-relearn-steps dropped the relearning attack without a word (exit 0)."""
  from experiments import table  # pylint: disable=import-outside-toplevel

  (tmp_path / "FILE").write_text("")
  args = [str(tmp_path / a) if a.startswith("FILE") else a for a in args]
  with pytest.raises(SystemExit) as raised:
    table.build_parser().parse_args(["--config", "digits_mlp:quick", *args])
  assert raised.value.code == 2 and words in capsys.readouterr().err
  assert table.build_parser().parse_args(
      ["--config", "digits_mlp:quick", "--depth-relearn-steps", "0"]).depth_relearn_steps == 0


@pytest.mark.parametrize("args, words", [
    (["--epochs", "0"], "--epochs: must be at least 1"),
    (["--relearn-steps", "-1"], "--relearn-steps: must be at least 0"),
    (["--oracle-seeds", "x"], "'x' is not a seed"),
    (["--skip", "digits_sigmoid=bogus"], "bogus not in --methods"),
    (["--skip", "digits_vit=finetune"], "digits_vit is not in --models"),
    (["--skip", "digits_sigmoid"], "write MODEL=METHOD"),
    (["--spread-models", "digits_vit"], "name models of --models")])
def test_depth_refuses_bad_numbers_and_skips_naming_nothing_in_one_line(args, words, capsys):
  """Each was a traceback (--epochs 0, --relearn-steps -1, --oracle-seeds x) or was taken
  without a word and did nothing (a --skip or --spread-models naming no run)."""
  from experiments import depth  # pylint: disable=import-outside-toplevel

  with pytest.raises(SystemExit) as raised:
    depth.main(["--models", "digits_sigmoid", "--methods", "mnemonic,finetune", *args])
  err = capsys.readouterr().err.strip().splitlines()
  assert raised.value.code == 2 and words in err[-1], err


def test_depth_left_out_names_only_what_was_left_out_with_the_true_reason(tmp_path,
                                                                          monkeypatch):
  """Methods not in --methods were listed with the reason 'left out on the ViT to keep the
  run within the shared CPU budget' though no ViT ran."""
  from experiments import depth  # pylint: disable=import-outside-toplevel

  written = []
  monkeypatch.setattr(depth, "run_model", lambda name, *a: {"name": name})
  monkeypatch.setattr(depth.depth_write, "write_all", lambda result, out: written.append(result))
  depth.main(["--models", "digits_sigmoid", "--classes", "3", "--oracle-seeds", "",
              "--methods", "mnemonic,mnemonic-reassign,finetune", "--out", str(tmp_path)])
  left = written[-1]["left_out"]
  assert "finetune" not in left and left["fisher"] == "not in --methods"
  assert not any("ViT" in why for why in left.values())
  assert depth.skip_reasons("digits_sigmoid", ["finetune"]) == {"finetune": "--skip"}
  assert "ViT" in depth.skip_reasons(depth.VIT, ["finetune"])["finetune"]


def test_a_multi_set_equal_to_a_classes_set_is_refused(capsys):
  """--classes 3 --multi 3 ran and counted every run of class 3 twice ('Forgotten: 3, 3')."""
  from experiments import common  # pylint: disable=import-outside-toplevel

  with pytest.raises(SystemExit) as raised:
    common.forget_sets_of(argparse.Namespace(classes="3", multi="3"), 10)
  err = capsys.readouterr().err.strip().splitlines()
  assert raised.value.code == 2 and len(err) == 1 and "already forgotten" in err[0], err
  assert common.forget_sets_of(argparse.Namespace(classes="3", multi="4"), 10) == [(3,), (4,)]
