"""The ``mnemonic-jax`` command line, run as the real command in subprocesses.

One small bundle is trained once per module (digits, MLP 64-32-10, 8 epochs = 88 steps)
by the ``train`` command itself; the other tests forget from it, evaluate it, kill the same
training at a known step (a training checkpoint every 5 steps) and resume it, and run the
demo. Commands run as their own processes forked after the imports
(``cli_support.run_commands``), but for the killed training.
"""

import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import flax.serialization
import jax
import numpy as np
import pytest

from mnemonic_jax import checkpointing, cli, configs
from mnemonic_jax.cli import demo

from cli_support import run_commands

REPO = pathlib.Path(__file__).resolve().parents[1]
CONFIG = REPO / "mnemonic_jax" / "configs" / "digits_mlp.py"  # By path (by name: test_configs)
TINY = ("--config.epochs=8", "--config.model_kwargs.hidden=(32,)", "--config.log_every=7")
#: A training checkpoint every 5 steps, for the killed training to resume from (how often a
#: run saves changes nothing it computes: the uninterrupted run saves at its end only).
SAVES = ("--config.checkpoint_every=5",)
FASHION_MNIST = pathlib.Path("/usr/share/datasets/fashion-mnist")
TIMEOUT_S = 300


_ENV: dict[str, str] = {}


@pytest.fixture(scope="module", autouse=True)
def compilation_cache(tmp_path_factory):
  """Lets the killed training's two runs share compiled programs (the same steps).

  The persistent cache hands back the very executable a first compilation produced, so
  results are unchanged; it only roughly halves the CPU time of the repeated runs.
  """
  _ENV["JAX_COMPILATION_CACHE_DIR"] = str(tmp_path_factory.mktemp("jax-cache"))
  _ENV["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
  yield
  _ENV.clear()


def _env() -> dict[str, str]:
  env = dict(os.environ)
  env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
  env.update(_ENV)
  return env


def command(*args) -> list[str]:
  return [sys.executable, "-m", "mnemonic_jax.cli", *map(str, args)]


def run(*args) -> subprocess.CompletedProcess:
  """Runs ``mnemonic-jax ARGS`` to completion and returns its result (text output)."""
  return subprocess.run(command(*args), capture_output=True, text=True, env=_env(), cwd=REPO,
                        timeout=TIMEOUT_S, check=False)


def train_args(workdir: pathlib.Path, *extra: str) -> tuple:
  return ("train", "--config", CONFIG, *TINY, *extra, "--workdir", workdir, "-q")


def assert_ok(result: subprocess.CompletedProcess) -> None:
  assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"


def run_one(*args) -> subprocess.CompletedProcess:
  """``mnemonic-jax ARGS`` in its own process forked after the imports; its result."""
  return run_commands({"command": dict(args=args)})["command"].result


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> pathlib.Path:
  """A bundle trained by an uninterrupted ``mnemonic-jax train`` run."""
  workdir = tmp_path_factory.mktemp("uninterrupted")
  result = run_one(*train_args(workdir, "--config.checkpoint_every=1000"))
  assert_ok(result)
  bundle = workdir / "bundle"
  assert f"bundle: {bundle}" in result.stdout
  assert "test accuracy:" in result.stdout
  return bundle


# --------------------------------------------------------------------------------------
# Bad input: one line on stderr, exit status 2, nothing written, input untouched.


def _bad_cases(trained: pathlib.Path, root: pathlib.Path) -> dict[str, tuple]:
  """name -> (arguments, directory that must stay as it is)."""
  truncated = root / "truncated"
  shutil.copytree(trained, truncated)
  victim = max((truncated / "arrays" / "d").iterdir(), key=lambda f: f.stat().st_size)
  with open(victim, "r+b") as f:
    f.truncate(victim.stat().st_size // 2)
  existing = root / "existing"
  existing.mkdir()
  (existing / "keep.txt").write_text("mine")

  def forget(name, *args, checkpoint=trained):
    out_dir = root / name
    out_dir.mkdir()
    return (("forget", "--checkpoint", checkpoint, "--output", out_dir / "out", *args), out_dir)

  cases = {
      "unknown_class": forget("unknown_class", "--classes", "10"),
      "every_class": forget("every_class", "--classes", ",".join(map(str, range(10)))),
      "class_not_a_number": forget("class_not_a_number", "--classes", "3,x"),
      "missing_checkpoint": forget("missing_checkpoint", "--classes", "3",
                                   checkpoint=root / "no-such-bundle"),
      "not_a_bundle": forget("not_a_bundle", "--classes", "3", checkpoint=trained.parent / "train"),
      "truncated_checkpoint": forget("truncated_checkpoint", "--classes", "3",
                                     checkpoint=truncated),
      "lambda1_zero": forget("lambda1_zero", "--classes", "3", "--lambda1", "0"),
      "lambda2_negative": forget("lambda2_negative", "--classes", "3", "--lambda2", "-10"),
      "move_with_lambdas": forget("move_with_lambdas", "--classes", "3", "--move", "bias",
                                  "--lambda1", "1e-3"),
      "move_with_auto_lambdas": forget("move_with_auto_lambdas", "--classes", "3", "--move",
                                       "bias", "--lambda1", "auto"),
      "algorithm2_without_lambdas": forget("algorithm2_without_lambdas", "--classes", "3",
                                           "--move", "algorithm2"),
      "algorithm2_auto": forget("algorithm2_auto", "--classes", "3", "--move", "algorithm2",
                                "--lambda2", "auto"),
      "microbatch_shrink": forget("microbatch_shrink", "--classes", "3", "--move", "shrink",
                                  "--microbatch-size", "2"),
      "existing_output": (("forget", "--checkpoint", trained, "--classes", "3",
                           "--output", existing), existing),
      "output_is_input": (("forget", "--checkpoint", trained, "--classes", "3",
                           "--output", trained, "--force"), trained),
      "unknown_config_field": (("train", "--config", CONFIG, "--config.epoch=3",
                                "--workdir", root / "train-workdir" / "w"), root / "train-workdir"),
  }
  (root / "train-workdir").mkdir()
  if FASHION_MNIST.is_dir():
    cases["shape_mismatch_evaluate"] = (
        ("evaluate", "--checkpoint", trained, "--dataset", "fashion_mnist"), root / "existing")
    cases["shape_mismatch_forget"] = forget(
        "shape_mismatch_forget", "--classes", "3", "--dataset", "fashion_mnist")
  return cases


@pytest.fixture(scope="module")
def bad_runs(trained, tmp_path_factory):
  """Runs every bad-input case; name -> (result, before, after, dir).

  Each command runs in turn in its own process forked after the imports
  (``cli_support.run_commands``), its directory and the trained bundle watched.
  """
  root = tmp_path_factory.mktemp("bad")
  cases = _bad_cases(trained, root)
  ran = run_commands({name: dict(args=args, watch=[directory, trained])
                      for name, (args, directory) in cases.items()})
  for name, done in ran.items():
    assert done.after[1] == done.before[1], f"{name}: an input bundle was modified"
  return {name: (ran[name].result, ran[name].before[0], ran[name].after[0], directory)
          for name, (_, directory) in cases.items()}


BAD_CASES = ["unknown_class", "every_class", "class_not_a_number", "missing_checkpoint",
             "not_a_bundle", "truncated_checkpoint", "lambda1_zero", "lambda2_negative",
             "move_with_lambdas", "move_with_auto_lambdas", "algorithm2_without_lambdas",
             "algorithm2_auto", "microbatch_shrink", "existing_output", "output_is_input",
             "unknown_config_field",
             "shape_mismatch_evaluate", "shape_mismatch_forget"]
EXPECTED_WORDS = {
    "unknown_class": "out of range",
    "every_class": "every class",
    "class_not_a_number": "'3,x'",
    "missing_checkpoint": "does not exist",
    "not_a_bundle": "not a mnemonic-jax bundle",
    "truncated_checkpoint": "truncated or corrupt",
    "lambda1_zero": "--lambda1",
    "lambda2_negative": "--lambda2",
    "move_with_lambdas": "--move bias chooses its own step on the codes",
    "move_with_auto_lambdas": "--move bias chooses its own step on the codes",
    "algorithm2_without_lambdas": "--move algorithm2 takes numbers for --lambda1 and --lambda2",
    "algorithm2_auto": "--move algorithm2 takes numbers for --lambda1 and --lambda2",
    "microbatch_shrink": "--move shrink takes no --microbatch-size (it computes no Fisher, or "
                         "the codes' in one batch); only algorithm2, paper do",
    "existing_output": "--force",
    "output_is_input": "never modified",
    "unknown_config_field": "unknown config field 'epoch'",
    "shape_mismatch_evaluate": "do not fit",
    "shape_mismatch_forget": "do not fit",
}


@pytest.mark.parametrize("name", BAD_CASES)
def test_bad_input_is_one_line_exit_2_nothing_written(bad_runs, name):
  if name not in bad_runs:
    pytest.skip(f"Fashion-MNIST is not installed at {FASHION_MNIST}")
  result, before, after, directory = bad_runs[name]
  lines = result.stderr.strip().splitlines()
  assert result.returncode == 2, result.stderr
  assert len(lines) == 1, result.stderr
  assert lines[0].startswith("mnemonic-jax: error: "), lines[0]
  assert EXPECTED_WORDS[name] in lines[0], lines[0]
  assert "Traceback" not in result.stderr
  assert result.stdout == ""
  assert after == before, f"{directory} changed"
  assert not any(p.name.startswith(".") for p in directory.iterdir()), "leftover staging dir"


# --------------------------------------------------------------------------------------
# Round trips through the real commands.


def test_forget_then_evaluate_round_trip(trained, tmp_path):
  """Four commands in turn, each in its own process forked after the imports."""
  output = tmp_path / "no3"
  forget = ("forget", "--checkpoint", trained, "--classes", "3", "--output")
  ran = run_commands({
      "forget": dict(args=(*forget, output, "--dataset", "digits", "-q"), watch=[trained]),
      "fixed": dict(args=(*forget, tmp_path / "fixed", "--lambda1", "1e-3", "-q")),
      "mixed": dict(args=(*forget, tmp_path / "mixed", "--lambda1", "auto", "--lambda2", "10",
                          "-q")),
      "auto": dict(args=(*forget, tmp_path / "auto", "--lambda1", "auto", "-q")),
      "evaluate": dict(args=("evaluate", "--checkpoint", output, "--json", "-q")),
  })
  result = ran["forget"].result
  assert_ok(result)
  for words in ("move = reassign, step t = ", "of each one's evidence handed to the "
                "remaining classes nearest it; output bias lowered by ",
                "accuracy on the mnemonic codes", "compiling",
                "A_R", "E_F", "   3*  3", f"wrote {output}"):
    assert words in result.stdout, result.stdout
  assert ran["forget"].after == ran["forget"].before, "forget modified its input bundle"

  fixed = ran["fixed"].result
  assert_ok(fixed)
  assert "lambda1 = 0.001, lambda2 = 10 (given; lambda2 from the bundle's config)" in fixed.stdout
  assert "sign kept" in fixed.stdout  # The paper's move (--move paper: test_cli_safety).
  auto = ran["auto"].result  # Lambdas asked for by name: the paper's move and its search.
  assert_ok(auto)
  assert "move = paper" in auto.stdout and "chosen from the codes" in auto.stdout, auto.stdout
  mixed = ran["mixed"].result
  assert mixed.returncode == 2 and "both numbers or both auto" in mixed.stderr
  assert not (tmp_path / "mixed").exists()

  result = ran["evaluate"].result
  assert_ok(result)
  report = json.loads(result.stdout)
  assert report["dataset"] == "digits" and report["forgotten"] == [3]
  assert report["E_F"] is not None and report["E_F"] > 50.0
  assert report["per_class"][3]["forgotten"] and report["per_class"][3]["accuracy"] < 50.0
  assert 0.0 <= report["A_R"] <= 100.0


# The training killed at a known point: ``train`` run as ``python -c PAUSED_TRAIN MARKER
# PAUSE_AT WAIT_FOR ARGS...`` stops before step PAUSE_AT + 1, once the step directory
# WAIT_FOR (the last checkpoint before the pause) is complete, writes MARKER and waits to
# be killed. Everything else is the real command.
PAUSE_AT, LAST_SAVE = 43, 40  # Mid-epoch (11 steps per epoch), 3 steps after a save.
PAUSED_TRAIN = """
import pathlib, sys, time
from mnemonic_jax import cli, training

marker, pause_at, wait_for = pathlib.Path(sys.argv[1]), int(sys.argv[2]), pathlib.Path(sys.argv[3])
make_train_step = training.make_train_step

def make_paused_train_step(*args, **kwargs):
  step = make_train_step(*args, **kwargs)

  def paused(state, *batch):
    if int(state.step) == pause_at:
      deadline = time.monotonic() + 120
      while not wait_for.is_dir():  # Orbax renames a step directory once it is complete.
        if time.monotonic() > deadline:
          sys.exit(f"{wait_for} did not appear")
        time.sleep(0.01)
      marker.write_text(str(pause_at))
      while True:
        time.sleep(60)
    return step(state, *batch)

  return paused

training.make_train_step = make_paused_train_step
sys.exit(cli.main(sys.argv[4:]))
"""


@pytest.mark.slow  # Heavy; resuming bitwise: test_training, interrupted train: test_cli_faults.
def test_train_killed_and_resumed_equals_uninterrupted(trained, tmp_path):
  """Killed after 43 of 88 steps, ``train`` run again ends bitwise where one run does.

  The kill lands at a known point, not after a random delay: step 40's checkpoint is
  complete, steps 41-43 are lost, and the final forced save and the bundle are not yet
  written. The rerun resumes from step 40 in the middle of an epoch.
  """
  workdir = tmp_path / "resumed"
  marker = tmp_path / "paused"
  args = (marker, PAUSE_AT, workdir / "train" / str(LAST_SAVE), *train_args(workdir, *SAVES))
  proc = subprocess.Popen([sys.executable, "-c", PAUSED_TRAIN, *map(str, args)],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=_env(),
                          cwd=REPO)
  try:
    deadline = time.monotonic() + TIMEOUT_S
    while not marker.exists():
      assert proc.poll() is None, f"train ended before step {PAUSE_AT}: {proc.stderr.read()}"
      assert time.monotonic() < deadline, f"train did not reach step {PAUSE_AT}"
      time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
  finally:
    if proc.poll() is None:
      proc.kill()
      proc.wait()
  assert proc.returncode == -signal.SIGKILL, proc.stderr.read()
  assert not (workdir / "bundle").exists()
  steps = sorted(int(p.name) for p in (workdir / "train").iterdir() if p.name.isdigit())
  assert steps[-1] == LAST_SAVE, steps

  logged = [json.loads(line)["step"] for line in (workdir / "metrics.jsonl").open()]
  assert logged == list(range(7, PAUSE_AT, 7)), logged  # Step 42 was logged, not saved.

  assert_ok(run(*train_args(workdir, *SAVES)))
  logged = [json.loads(line)["step"] for line in (workdir / "metrics.jsonl").open()]
  assert logged == [*range(7, 88, 7), 88], logged  # Each step once: 42 again, from the resume.
  resumed = checkpointing.load_bundle(workdir / "bundle")
  uninterrupted = checkpointing.load_bundle(trained)
  leaves = jax.tree_util.tree_leaves_with_path(resumed.params)
  expected = jax.tree.leaves(uninterrupted.params)
  assert len(leaves) == len(expected)
  for (path, got), want in zip(leaves, expected):
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want),
                                  err_msg=f"{jax.tree_util.keystr(path)} (steps {steps})")


def test_import_round_trip(trained, tmp_path):
  bundle = checkpointing.load_bundle(trained)
  params_file = tmp_path / "params.msgpack"
  params_file.write_bytes(flax.serialization.to_bytes(jax.tree.map(np.asarray, bundle.params)))
  np.save(tmp_path / "codes.npy", np.asarray(bundle.codes))
  output = tmp_path / "imported"
  result = run_one("import", "--params", params_file, "--codes", tmp_path / "codes.npy",
               "--model", "mlp", "--model-kwargs", json.dumps(bundle.model_kwargs),
               "--num-classes", "10", "--input-shape", "8,8,1",
               "--mean", ",".join(map(str, bundle.mean)), "--std", ",".join(map(str, bundle.std)),
               "--dataset", "digits", "--output", output)
  assert_ok(result)
  imported = checkpointing.load_bundle(output)
  assert imported.dataset == "digits" and imported.input_shape == (8, 8, 1)
  for got, want in zip(jax.tree.leaves(imported.params), jax.tree.leaves(bundle.params)):
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
  np.testing.assert_array_equal(np.asarray(imported.codes), np.asarray(bundle.codes))


def test_demo_writes_bundles_and_chart(tmp_path):
  out = tmp_path / "demo"
  out.mkdir()
  (out / "notes.txt").write_text("not the demo's")
  result = run_one("demo", "--output-dir", out, "--epochs", "3", "--class", "5", "-q")
  assert_ok(result)
  for words in ("before", "after", "A_R", "E_F", "forgetting took", "demo took"):
    assert words in result.stdout, result.stdout
  assert (out / "per_class_accuracy.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  assert checkpointing.load_bundle(out / "forgotten").forgotten_classes == (5,)
  assert checkpointing.load_bundle(out / "trained").history == ()
  assert (out / "notes.txt").read_text() == "not the demo's"


# --------------------------------------------------------------------------------------
# In-process checks of the parser (cheap).


@pytest.mark.parametrize("subcommand", ["train", "forget", "evaluate", "import", "demo"])
def test_every_subcommand_has_help_with_an_example(subcommand, capsys):
  with pytest.raises(SystemExit) as exit_info:
    cli.main([subcommand, "--help"])
  assert exit_info.value.code == 0
  text = capsys.readouterr().out
  assert text.startswith(f"usage: mnemonic-jax {subcommand}")
  assert f"examples:\n  mnemonic-jax {subcommand}" in text


def test_version(capsys):
  with pytest.raises(SystemExit) as exit_info:
    cli.main(["--version"])
  assert exit_info.value.code == 0
  assert capsys.readouterr().out.strip() == "mnemonic-jax 0.1.0"


def test_config_overrides():
  rest, overrides = configs.split_overrides(
      ["train", "--config.epochs=5", "--config.model_kwargs.hidden", "(64, 32)",
       "--config.schedule=cosine", "--config.data_dir=/data", "--workdir", "w"])
  assert rest == ["train", "--workdir", "w"]
  config = configs.load_config(f"{CONFIG}:quick", overrides)
  assert (config.epochs, config.model_kwargs.hidden) == (5, (64, 32))
  assert (config.schedule, config.data_dir) == ("cosine", "/data")
  with pytest.raises(configs.ConfigError, match="unknown config field 'model_kwargs.width'"):
    configs.apply_overrides(config, [("model_kwargs.width", "3")])
  with pytest.raises(configs.ConfigError, match="expected a value of type int"):
    configs.apply_overrides(config, [("epochs", "five")])


def test_the_loaded_config_is_locked_and_validated():
  config = configs.load_config(str(CONFIG))
  with pytest.raises(AttributeError):
    config.epoch = 3  # A misspelt field.
  config.epochs = 3  # An existing one keeps working.
  with pytest.raises(configs.ConfigError, match="unknown config field 'epoch'"):
    configs.load_config(str(CONFIG), [("epoch", "3")])
  with pytest.raises(configs.ConfigError, match="config.epochs=-1"):
    configs.load_config(str(CONFIG), [("epochs", "-1")])
  with pytest.raises(configs.ConfigError, match="does not exist"):
    configs.load_config(str(CONFIG) + "x:quick")


def test_demo_config_follows_digits_mlp():
  expected = configs.load_config(str(CONFIG)).to_dict()
  got = demo.demo_config(epochs=expected["epochs"]).to_dict()
  for key in ("name", "forget_classes"):
    expected.pop(key), got.pop(key)
  expected.pop("baselines")  # How the baselines run, not how the model trains.
  assert got == expected
