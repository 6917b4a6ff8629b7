"""The two data faults of issue #9, through the real ``mnemonic-jax`` command.

1. An input inside the output is deleted: any overlap between what a command reads and
   what it writes (either way round, through symlinks too) is refused with one line,
   exit 2, and nothing touched; ``save_bundle(force=True)`` never deletes anything but a
   bundle.
2. A forget that did nothing is recorded as done: non-finite codes, parameters and
   normalisation are refused at import and load, no bundle with non-finite parameters is
   written, lambdas the parameters' dtype cannot carry are refused up front, and a search
   that missed its rule (or codes still classified right) is said on stdout and recorded.

One small bundle (digits, MLP 64-32-10, 8 epochs; every code classified right), trained
in-process once per test run (``conftest.small_trained_copy``: this module's copy); each
command runs as its own process, forked after the imports (``cli_support.run_commands``).
"""

import argparse
import dataclasses
import json
import os
import pathlib
import shutil
import subprocess

import flax.serialization
import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from mnemonic_jax import checkpointing, forgetting, workflow
from mnemonic_jax.cli import parser as cli_parser
from mnemonic_jax.checkpointing import CheckpointError

from cli_support import run_commands, tree_digest

def assert_ok(result: subprocess.CompletedProcess) -> None:
  assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"


@pytest.fixture(scope="module")
def trained(small_trained_copy) -> pathlib.Path:
  """A bundle whose model classifies every one of its codes right (this module's copy)."""
  path = small_trained_copy()
  bundle = checkpointing.load_bundle(path)
  logits = bundle.apply_fn()(bundle.params, bundle.codes)
  assert (np.argmax(logits, -1) == np.arange(10)).all()
  return path


def write_raw_bundle(path: pathlib.Path, source: pathlib.Path, *, arrays=None, **meta_changes):
  """Writes a bundle the way save_bundle lays it out, but without any of its checks.

  The metadata is ``source``'s (read from its JSON file) with ``meta_changes``; the
  arrays are ``source``'s with ``arrays`` (a function of the loaded bundle) applied.
  """
  (meta_file,) = [p for p in (source / "meta").iterdir() if p.name != "commit_success.txt"]
  meta = dict(json.loads(meta_file.read_text()), **meta_changes)
  bundle = checkpointing.load_bundle(source)
  tree = {"params": jax.tree.map(np.asarray, bundle.params), "batch_stats": {},
          "codes": np.asarray(bundle.codes)}
  if arrays is not None:
    tree = arrays(tree)
  handler = ocp.CompositeCheckpointHandler(
      arrays=ocp.StandardCheckpointHandler(), meta=ocp.JsonCheckpointHandler())
  ocp.Checkpointer(handler).save(path, args=ocp.args.Composite(
      arrays=ocp.args.StandardSave(tree), meta=ocp.args.JsonSave(meta)))
  checkpointing.integrity.seal(path)  # Checksums of what was written (a faulty writer's).
  return path


def _with_nan(tree, field):
  tree = jax.tree.map(np.copy, tree)
  leaf = tree["codes"] if field == "codes" else tree["params"]["Dense_0"]["kernel"]
  leaf.reshape(-1)[5] = np.nan
  return tree


# --------------------------------------------------------------------------------------
# Refused commands: one line on stderr, exit 2, nothing on stdout, nothing touched.


def _refused_cases(trained: pathlib.Path, root: pathlib.Path) -> dict[str, dict]:
  """name -> {args, watch (directories that must not change), words, absent (paths)}."""
  cases = {}

  def case_dir(name):
    directory = root / name
    directory.mkdir()
    return directory

  def bundle_with(directory, *inside):
    """A copy of the trained bundle at directory/out holding copies of it at ``inside``."""
    out = directory / "out"
    shutil.copytree(trained, out)
    for rel in inside:
      shutil.copytree(trained, out / rel)
    return out

  forget = ("forget", "--classes", "3", "--lambda1", "1e-3", "--lambda2", "10", "-q")

  # Fault 1, forget: the input inside the output (the example).
  d = case_dir("forget_input_inside_output")
  out = bundle_with(d, "nested")
  cases[d.name] = dict(args=(*forget, "--checkpoint", out / "nested", "--output", out,
                             "--force"), watch=[d], words="contains the input --checkpoint")

  d = case_dir("forget_output_is_input")
  out = bundle_with(d)
  cases[d.name] = dict(args=(*forget, "--checkpoint", out, "--output", out, "--force"),
                       watch=[d], words="is the input --checkpoint")

  d = case_dir("forget_output_inside_input")
  out = bundle_with(d)
  cases[d.name] = dict(args=(*forget, "--checkpoint", out, "--output", out / "sub"),
                       watch=[d], words="would write into the input")

  # Symlinks: an input reached through a link into the output; an output whose parent
  # is a link to the input (the output does not exist yet); an output that is a link to
  # a directory holding the input.
  d = case_dir("forget_input_symlink_inside_output")
  out = bundle_with(d, "nested")
  (d / "link").symlink_to(out / "nested")
  cases[d.name] = dict(args=(*forget, "--checkpoint", d / "link", "--output", out, "--force"),
                       watch=[d], words="contains the input --checkpoint")

  d = case_dir("forget_output_under_symlinked_parent")
  out = bundle_with(d)
  (d / "alias").symlink_to(out)
  cases[d.name] = dict(args=(*forget, "--checkpoint", out, "--output", d / "alias" / "new"),
                       watch=[d], words="would write into the input", absent=[out / "new"])

  d = case_dir("forget_output_symlink_to_input_parent")
  out = bundle_with(d, "nested")
  (d / "outlink").symlink_to(out)
  cases[d.name] = dict(args=(*forget, "--checkpoint", out / "nested", "--output",
                             d / "outlink", "--force"),
                       watch=[d], words="contains the input --checkpoint")

  d = case_dir("forget_dataset_inside_output")
  out = bundle_with(d)
  (out / "data").mkdir()
  cases[d.name] = dict(args=(*forget, "--checkpoint", trained, "--output", out, "--force",
                             "--dataset", f"idx:{out / 'data'}"),
                       watch=[d], words="contains the input dataset")

  # Fault 1, import: the params file or the codes file inside the output.
  bundle = checkpointing.load_bundle(trained)
  params_bytes = flax.serialization.to_bytes(jax.tree.map(np.asarray, bundle.params))
  codes = np.asarray(bundle.codes)

  def import_args(params, codes_path, output, *extra):
    return ("import", "--params", params, "--codes", codes_path, "--model", "mlp",
            "--model-kwargs", '{"hidden": [32]}', "--num-classes", "10",
            "--input-shape", "8,8,1", "--output", output, *extra)

  for what in ("params", "codes"):
    d = case_dir(f"import_{what}_inside_output")
    out = bundle_with(d)
    inside = {"params": out / "x.msgpack", "codes": out / "codes.npy"}
    outside = {"params": d / "x.msgpack", "codes": d / "codes.npy"}
    paths = {k: inside[k] if k == what else outside[k] for k in inside}
    paths["params"].write_bytes(params_bytes)
    np.save(paths["codes"], codes)
    cases[d.name] = dict(args=import_args(paths["params"], paths["codes"], out, "--force"),
                         watch=[d], words=f"contains the input --{what}")

  # Fault 1, train: the pretrained weights or the config file inside what train writes
  # (WORKDIR/bundle is replaced, WORKDIR/train holds checkpoints), or the workdir inside
  # the pretrained bundle.
  def config_file(path, pretrained):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "from mnemonic_jax.configs import paper_mlp_config\n\n\n"
        "def get_config():\n"
        f"  return paper_mlp_config('t', 'digits', epochs=1, pretrained={str(pretrained)!r})\n")
    return path

  train = ("train", "--config.model_kwargs.hidden=(32,)", "-q")
  d = case_dir("train_pretrained_is_workdir_bundle")
  workdir = d / "run"
  shutil.copytree(trained, workdir / "bundle")
  cfg = config_file(d / "cfg.py", workdir / "bundle")
  cases[d.name] = dict(args=(*train, "--config", cfg, "--workdir", workdir), watch=[d],
                       words="is the input config.pretrained")

  d = case_dir("train_config_inside_checkpoints")
  workdir = d / "run"
  cfg = config_file(workdir / "train" / "cfg.py", trained)
  cases[d.name] = dict(args=(*train, "--config", cfg, "--workdir", workdir), watch=[d],
                       words="contains the input config file")

  d = case_dir("train_workdir_inside_pretrained")
  out = bundle_with(d)
  cfg = config_file(d / "cfg.py", out)
  cases[d.name] = dict(args=(*train, "--config", cfg, "--workdir", out / "run"), watch=[d],
                       words="would write into the input config.pretrained",
                       absent=[out / "run"])

  # Fault 1, demo: it replaces OUTPUT_DIR/trained, which holds something of the user's.
  d = case_dir("demo_bundle_holding_user_files")
  shutil.copytree(trained, d / "trained")
  (d / "trained" / "notes.txt").write_text("mine")
  cases[d.name] = dict(args=("demo", "--output-dir", d, "--epochs", "1", "--force", "-q"),
                       watch=[d], words="also holds 'notes.txt'")

  # Fault 2, load: non-finite arrays or normalisation in a bundle on disk.
  d = case_dir("load_nan_code")
  raw = write_raw_bundle(d / "raw", trained, arrays=lambda t: _with_nan(t, "codes"))
  cases[d.name] = dict(args=(*forget, "--checkpoint", raw, "--output", d / "out"),
                       watch=[d], words="codes holds 1 non-finite", absent=[d / "out"])

  d = case_dir("load_nan_param")
  raw = write_raw_bundle(d / "raw", trained, arrays=lambda t: _with_nan(t, "params"))
  cases[d.name] = dict(args=(*forget, "--checkpoint", raw, "--output", d / "out"),
                       watch=[d], words="params/Dense_0/kernel holds 1 non-finite",
                       absent=[d / "out"])

  d = case_dir("load_nan_mean")
  raw = write_raw_bundle(d / "raw", trained, mean=["nan"])
  cases[d.name] = dict(args=("evaluate", "--checkpoint", raw, "-q"), watch=[d],
                       words="mean [nan] must hold finite numbers")

  d = case_dir("load_zero_std")
  raw = write_raw_bundle(d / "raw", trained, std=[0.0])
  cases[d.name] = dict(args=(*forget, "--checkpoint", raw, "--output", d / "out"),
                       watch=[d], words="std [0.0] must be positive", absent=[d / "out"])

  # Fault 2, import: non-finite normalisation, codes or parameters.
  def import_case(name, *extra, params=None, codes_array=None, words):
    d = case_dir(name)
    (d / "x.msgpack").write_bytes(params or params_bytes)
    np.save(d / "codes.npy", codes if codes_array is None else codes_array)
    cases[name] = dict(args=import_args(d / "x.msgpack", d / "codes.npy", d / "out", *extra),
                       watch=[d], words=words, absent=[d / "out"])

  import_case("import_std_zero", "--mean", "0", "--std", "0",
              words="std [0.0] must be positive")
  nan_codes = codes.copy()
  nan_codes[3, 0, 0, 0] = np.nan
  import_case("import_nan_codes", "--mean", "0", "--std", "1", codes_array=nan_codes,
              words="codes holds 1 non-finite")
  bad = jax.tree.map(np.array, bundle.params)
  bad["Dense_1"]["bias"][2] = np.inf
  import_case("import_inf_params", "--mean", "0", "--std", "1",
              params=flax.serialization.to_bytes(bad),
              words="params/Dense_1/bias holds 1 non-finite")
  huge = jax.tree.map(lambda x: np.asarray(x, np.float64), bundle.params)
  huge["Dense_0"]["kernel"][0, 0] = 1e39  # Finite in float64, inf in the model's float32.
  import_case("import_params_overflowing_float32", "--mean", "0", "--std", "1",
              params=flax.serialization.to_bytes(huge),
              words="params/Dense_0/kernel holds 1 non-finite")

  # Fault 2, forget: lambdas the float32 parameters cannot carry, or that round to 0.
  d = case_dir("lambdas_1e308")
  cases[d.name] = dict(args=("forget", "--classes", "3", "--lambda1", "1e308", "--lambda2",
                             "1e308", "--checkpoint", trained, "--output", d / "out"),
                       watch=[d], words="lambda1=1e+308 is beyond the largest float32",
                       absent=[d / "out"])
  d = case_dir("lambda_rounds_to_zero")
  cases[d.name] = dict(args=("forget", "--classes", "3", "--lambda1", "1e-50", "--lambda2",
                             "10", "--checkpoint", trained, "--output", d / "out"),
                       watch=[d], words="rounds to 0 in float32", absent=[d / "out"])
  return cases


REFUSED = [
    "forget_input_inside_output", "forget_output_is_input", "forget_output_inside_input",
    "forget_input_symlink_inside_output", "forget_output_under_symlinked_parent",
    "forget_output_symlink_to_input_parent", "forget_dataset_inside_output",
    "import_params_inside_output", "import_codes_inside_output",
    "train_pretrained_is_workdir_bundle", "train_config_inside_checkpoints",
    "train_workdir_inside_pretrained", "demo_bundle_holding_user_files",
    "load_nan_code", "load_nan_param", "load_nan_mean", "load_zero_std",
    "import_std_zero", "import_nan_codes", "import_inf_params",
    "import_params_overflowing_float32", "lambdas_1e308", "lambda_rounds_to_zero",
]


@pytest.fixture(scope="module")
def refused_cases(trained, tmp_path_factory):
  """Every case's files, made once per worker, and its command run: name -> (case, Ran).

  The commands run in turn, each its own process forked after the imports
  (``cli_support.run_commands``), the trained bundle watched as well.
  """
  cases = _refused_cases(trained, tmp_path_factory.mktemp("refused"))
  assert sorted(cases) == sorted(REFUSED)
  ran = run_commands({name: dict(case, watch=[*case["watch"], trained])
                      for name, case in cases.items()})
  return {name: (cases[name], ran[name]) for name in cases}


@pytest.mark.parametrize("name", REFUSED)
def test_refused_one_line_exit_2_nothing_touched(refused_cases, name):
  case, ran = refused_cases[name]
  result = ran.result
  lines = result.stderr.strip().splitlines()
  assert result.returncode == 2, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
  assert len(lines) == 1, result.stderr
  assert lines[0].startswith("mnemonic-jax: error: "), lines[0]
  assert case["words"] in lines[0], lines[0]
  assert result.stdout == ""
  assert ran.after[:-1] == ran.before[:-1], "a file was written or deleted"
  assert ran.after[-1] == ran.before[-1], "the trained bundle was modified"
  for path in case.get("absent", ()):
    assert not os.path.lexists(path), f"{path} was written"


# --------------------------------------------------------------------------------------
# Fault 2: what a forget did (or did not) is said on stdout and recorded in the history.


@pytest.fixture(scope="module")
def forget_runs(trained, tmp_path_factory):
  """The two ``forget`` commands below, in turn, each its own process forked after the
  imports (``cli_support.run_commands``); name -> (output, result)."""
  root = tmp_path_factory.mktemp("forget_runs")
  forget = ("forget", "--checkpoint", trained, "--classes", "3", "-q", "--output")
  ran = run_commands({
      "auto": dict(args=(*forget, root / "auto", "--move", "paper")),
      "timid": dict(args=(*forget, root / "timid", "--lambda1", "1e-7", "--lambda2", "1e-7")),
  })
  return {name: (root / name, done.result) for name, done in ran.items()}


def test_forget_reports_and_records_whether_the_search_met_its_rule(forget_runs):
  """The data-free search misses its rule on this tiny model (recorded, warned about)."""
  out, result = forget_runs["auto"]
  assert_ok(result)
  entry = checkpointing.load_bundle(out).history[-1]
  assert entry["lambdas"] == "auto" and isinstance(entry["met"], bool)
  warned = "warning: no step met the move's rule" in result.stdout
  assert warned == (not entry["met"]), result.stdout
  assert entry["met"] is False, "this tiny model was expected to miss the rule"
  assert entry["fallback"] in ("guard", "target", "criterion")
  assert f"the fallback '{entry['fallback']}'" in result.stdout
  assert entry["rule"]["margin"] == forgetting.DEFAULT_RULE.margin
  assert any(w.startswith("no step met") for w in entry["warnings"])


def test_forget_says_when_the_codes_are_still_classified_right(forget_runs):
  """Lambdas too small to move anything: exit 0, but said and recorded, not claimed done."""
  out, result = forget_runs["timid"]
  assert_ok(result)
  assert "warning: 1 of 1 forgotten class code(s) are still classified" in result.stdout
  entry = checkpointing.load_bundle(out).history[-1]
  assert entry["codes_forgotten"] is False and entry["after"]["forget_accuracy"] == 1.0
  assert entry["warnings"] and "still classified" in entry["warnings"][0]
  assert entry["met"] is None  # Given lambdas: there was no search rule to meet.


def test_demo_replaces_a_chart_symlink_without_writing_through_it(trained, tmp_path,
                                                                   monkeypatch, capsys):
  """In-process, with the tiny bundle standing in for the demo's training (the slow part)."""
  from mnemonic_jax import cli  # pylint: disable=import-outside-toplevel

  bundle = checkpointing.load_bundle(trained)
  monkeypatch.setattr(workflow, "train", lambda *args, **kwargs: bundle)
  out = tmp_path / "demo"
  out.mkdir()
  elsewhere = tmp_path / "precious.png"
  elsewhere.write_bytes(b"not a chart")
  (out / "per_class_accuracy.png").symlink_to(elsewhere)
  assert cli.main(["demo", "--output-dir", str(out), "--epochs", "1", "--force", "-q"]) == 0
  assert "wrote" in capsys.readouterr().out
  assert elsewhere.read_bytes() == b"not a chart"
  chart = out / "per_class_accuracy.png"
  assert not chart.is_symlink() and chart.read_bytes()[:4] == b"\x89PNG"
  assert sorted(p.name for p in out.iterdir()) == ["forgotten", "per_class_accuracy.png",
                                                   "trained"]


# --------------------------------------------------------------------------------------
# The library under the command line (in-process, cheap).


def test_library_forget_records_a_missed_rule(trained, tmp_path):
  bundle = checkpointing.load_bundle(trained)
  impossible = forgetting.Rule(margin=1e9)
  forgotten, _ = workflow.forget_bundle(bundle, [3], move=forgetting.moves.Paper(rule=impossible))
  entry = forgotten.history[-1]
  assert entry["met"] is False and entry["fallback"] in ("guard", "target", "criterion")
  assert entry["rule"]["margin"] == 1e9 and entry["search"]["met"] is False
  assert entry["warnings"][0].startswith("no step met the move's rule")
  saved = checkpointing.save_bundle(tmp_path / "b", forgotten)
  assert checkpointing.load_bundle(saved).history[-1]["met"] is False

  met, _ = workflow.forget_bundle(
      bundle, [3], move=forgetting.moves.Paper(rule=forgetting.Rule(margin=0.0, guard=0.0)))
  assert met.history[-1]["met"] is True and met.history[-1]["fallback"] is None
  missed, _ = workflow.forget_bundle(bundle, [3], move=forgetting.moves.Bias(rule=impossible))
  entry = missed.history[-1]
  assert entry["move"] == "bias" and entry["met"] is False and entry["rule"]["margin"] == 1e9
  assert entry["fallback"] in ("guard", "target", "margin")
  assert entry["warnings"][0].startswith("no step met the move's rule")


def test_library_forget_with_a_robust_move_records_it(trained, tmp_path):
  bundle = checkpointing.load_bundle(trained)
  forgotten, report = workflow.forget_bundle(bundle, [3], move="bias")
  entry = forgotten.history[-1]
  assert entry["move"] == "bias"
  assert entry["rule"] == dataclasses.asdict(forgetting.DEFAULT_RULE)
  assert entry["met"] is report.met is True and entry["codes_forgotten"] is True
  assert entry["forget_margin"] <= -forgetting.DEFAULT_RULE.margin
  assert forgotten.forgotten_classes == (3,) and entry["warnings"] == []
  saved = checkpointing.save_bundle(tmp_path / "b", forgotten)
  assert checkpointing.load_bundle(saved).history[-1]["move"] == "bias"
  with pytest.raises(ValueError, match="chooses its own step on the codes"):
    workflow.forget_bundle(bundle, [3], 1e-3, 10.0, move="bias")
  missed = {"classes": [3], "after": {"forget_accuracy": 1.0}, "lambdas": "auto",
            "move": "paper"}
  assert ("fewer classes at a time, or the default 'reassign' move"
          in workflow.forget_warnings(missed)[0])
  given = {**missed, "lambdas": "given", "move": "algorithm2"}
  assert "larger lambdas" in workflow.forget_warnings(given)[0]
  assert "the default 'reassign' move" in workflow.forget_warnings({**missed, "move": "shrink"})[0]
  for move in ("reassign", "erase", "bias"):
    assert "'reassign' move" not in workflow.forget_warnings({**missed, "move": move})[0]


def test_the_command_line_offers_every_move_of_the_registry():
  """One source: --move reads the registry, so a registered move is a choice at once."""
  assert list(cli_parser.MOVES) == sorted(forgetting.MOVES)

  @forgetting.moves.register
  class Probe(forgetting.moves.Bias):
    name, baseline = "probe-move", "mnemonic-probe-move"

  try:
    assert "probe-move" in cli_parser.MOVES
  finally:
    del forgetting.MOVES["probe-move"]
  assert "probe-move" not in cli_parser.MOVES


def test_library_forget_refuses_non_finite_results_and_inputs(trained, monkeypatch):
  bundle = checkpointing.load_bundle(trained)
  with pytest.raises(ValueError, match="beyond the largest float32"):
    workflow.forget_bundle(bundle, [3], 1e39, 10.0)
  with pytest.raises(ValueError, match=r"codes holds 1 non-finite"):
    workflow.forget_bundle(bundle.replace(codes=_with_nan({"codes": np.asarray(bundle.codes)},
                                                   "codes")["codes"]), [3], 1e-3, 10.0)
  real = workflow.forgetting.forget

  def poisoned(*args, **kwargs):
    params, report = real(*args, **kwargs)
    params = jax.tree.map(lambda p: p.at[(0,) * p.ndim].set(np.nan), params)
    return params, report

  monkeypatch.setattr(workflow.forgetting, "forget", poisoned)
  with pytest.raises(ValueError, match=r"lambda1=0.001, lambda2=10 made 4 parameters "
                                       r"non-finite .*use smaller lambdas"):
    workflow.forget_bundle(bundle, [3], 1e-3, 10.0)


def test_save_bundle_refuses_non_finite_and_writes_nothing(trained, tmp_path):
  bundle = checkpointing.load_bundle(trained)
  nan_params = jax.tree.map(np.array, bundle.params)
  nan_params["Dense_1"]["kernel"][0, 0] = np.nan
  for changes, words in (({"params": nan_params}, "params/Dense_1/kernel holds 1"),
                         ({"std": (0.0,)}, "std [0.0] must be positive"),
                         ({"mean": (float("inf"),)}, "mean [inf] must hold finite")):
    with pytest.raises(CheckpointError, match=words.replace("[", r"\[").replace("]", r"\]")):
      checkpointing.save_bundle(tmp_path / "b", bundle.replace(**changes))
    assert list(tmp_path.iterdir()) == []


def test_save_bundle_force_never_deletes_anything_but_a_bundle(trained, tmp_path):
  bundle = checkpointing.load_bundle(trained)
  # A bundle holding something else (here a nested bundle: an input) is not replaced.
  holder = tmp_path / "holder"
  shutil.copytree(trained, holder)
  shutil.copytree(trained, holder / "nested")
  before = tree_digest(tmp_path)
  with pytest.raises(CheckpointError, match="also holds 'nested'"):
    checkpointing.save_bundle(holder, bundle, force=True)
  assert tree_digest(tmp_path) == before
  # Nor is a directory that is not a bundle, or a file.
  (tmp_path / "plain").mkdir()
  (tmp_path / "plain" / "a.txt").write_text("mine")
  (tmp_path / "file").write_text("mine")
  before = tree_digest(tmp_path)
  for victim in ("plain", "file"):
    with pytest.raises(CheckpointError, match="not a mnemonic-jax bundle"):
      checkpointing.save_bundle(tmp_path / victim, bundle, force=True)
  assert tree_digest(tmp_path) == before
  # A symlink to a bundle is replaced itself; the bundle it pointed to is left alone.
  target = tmp_path / "target"
  shutil.copytree(trained, target)
  (tmp_path / "link").symlink_to(target)
  target_before = tree_digest(target)
  checkpointing.save_bundle(tmp_path / "link", bundle, force=True)
  assert not (tmp_path / "link").is_symlink() and tree_digest(target) == target_before
  # A plain bundle and an empty directory are replaced.
  shutil.rmtree(holder / "nested")
  checkpointing.save_bundle(holder, bundle, force=True)
  (tmp_path / "empty").mkdir()
  checkpointing.save_bundle(tmp_path / "empty", bundle, force=True)
  assert checkpointing.load_bundle(tmp_path / "empty").num_classes == 10


def test_load_bundle_names_the_non_finite_field(trained, tmp_path):
  cases = {
      "codes holds 1 non-finite": dict(arrays=lambda t: _with_nan(t, "codes")),
      "params/Dense_0/kernel holds 1 non-finite": dict(arrays=lambda t: _with_nan(t, "params")),
      "mean [nan] must hold finite": dict(mean=["nan"]),
      "std [0.0] must be positive": dict(std=[0.0]),
      "std [-1.0] must be positive": dict(std=[-1.0]),
  }
  for i, (words, changes) in enumerate(cases.items()):
    raw = write_raw_bundle(tmp_path / f"raw{i}", trained, **changes)
    with pytest.raises(CheckpointError) as info:
      checkpointing.load_bundle(raw)
    message = str(info.value)
    assert words in message and str(raw) in message and "\n" not in message, message


@pytest.mark.parametrize("text, words", [
    ("-1", "class ids are 0 or more, got -1"), ("3,-2", "class ids are 0 or more, got -2"),
    ("3,x", "'3,x' is not a comma-separated list"), ("", "is not a comma-separated list")])
def test_class_lists_are_refused_with_what_is_wrong(text, words):
  with pytest.raises(argparse.ArgumentTypeError, match=words):
    cli_parser.class_list(text)
  assert cli_parser.class_list("3, 7") == [3, 7]
