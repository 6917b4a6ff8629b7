"""Several processes on localhost: the multi-host path (issue #10) tested on one machine.

Each multi-process test starts 2 processes x 4 virtual CPU devices, connected by
``jax.distributed`` (gloo CPU collectives), and compares them with 1 process x 8 devices
and with 1 device. The worker is this file run as a script (``python test_multihost.py
MODE ...``); it writes what it computed to ``.npz`` files the test compares.

The default suite keeps the fast single-process checks (the per-process data split, the
launcher detection); every test that starts processes is ``slow`` (10-60 s each here).
"""

import json
import os
import pathlib
import re
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

HERE = pathlib.Path(__file__).resolve()
REPO = HERE.parents[1]

# --------------------------------------------------------------------------------------
# The worker (this file as a script).

EPOCHS, BATCH, FORGET = 2, 64, (3,)


#: gloo's own connection line, whole or with its start printed apart.
_GLOO_LINE = re.compile(r"^(\[Gloo\].*|\d+ is connected to \d+ peer ranks\. Expected number "
                        r"of connected peer ranks is : \d+)\n?", re.MULTILINE)


def _tiny_config(epochs=EPOCHS, checkpoint_every=10_000):
  from mnemonic_jax.configs import paper_mlp_config
  config = paper_mlp_config("multihost", "digits", epochs=epochs,
                            checkpoint_every=checkpoint_every)
  config.model_kwargs.hidden = (32,)
  config.learning_rate = 0.1
  config.batch_size = BATCH
  return config


def _flat(prefix, tree):
  import jax
  return {prefix + "/" + jax.tree_util.keystr(k): np.asarray(v)
          for k, v in jax.tree_util.tree_flatten_with_path(tree)[0]}


def worker(argv):
  """``MODE NPROC PID PORT DEVICES OUT [WORKDIR]``: one process of a run."""
  mode, nproc, pid, port, devices, out = argv[:6]
  nproc, pid, devices = int(nproc), int(pid), int(devices)
  if os.environ.get("MULTIHOST_DEBUG"):
    import faulthandler
    faulthandler.dump_traceback_later(int(os.environ["MULTIHOST_DEBUG"]), exit=True)
  import jax
  jax.config.update("jax_num_cpu_devices", devices)
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  from mnemonic_jax import distributed
  if nproc > 1:
    assert distributed.initialize(f"localhost:{port}", nproc, pid)
  from mnemonic_jax import fisher, parallel, training, workflow
  from mnemonic_jax.bundle import Bundle
  from mnemonic_jax.data import load_dataset
  from mnemonic_jax.models import create_model
  from mnemonic_jax import codes as codes_lib

  mesh = parallel.make_mesh() if jax.device_count() > 1 else None
  result = {}
  if mode == "fit":
    train = load_dataset("digits", "train")
    model = create_model("mlp", 10, hidden=(32,))
    key = jax.random.key(0)
    codes = codes_lib.generate_codes(jax.random.fold_in(key, 0), 10, (8, 8, 1))
    config = training.FitConfig(epochs=EPOCHS, batch_size=BATCH, learning_rate=0.1)
    state, _ = training.fit(model, (train.images, train.labels), codes, config,
                            jax.random.fold_in(key, 1), mean=train.info.mean,
                            std=train.info.std, mesh=mesh, progress=False)
    state = parallel.to_local(state)
    bundle = Bundle(model_name="mlp", model_kwargs={"hidden": (32,)}, params=state.params,
                    batch_stats=state.batch_stats, codes=np.asarray(codes), num_classes=10,
                    input_shape=(8, 8, 1), mean=tuple(train.info.mean),
                    std=tuple(train.info.std))
  elif mode == "preempt":  # The workflow alone, no periodic save: see the test.
    try:
      workflow.train(_tiny_config(int(os.environ["MULTIHOST_EPOCHS"]), checkpoint_every=10**6),
                     argv[6], progress=False, mesh=mesh)
      stopped = -1
    except workflow.RunStopped as e:
      stopped = e.step
    np.savez(f"{out}.{pid}.npz", stopped=np.asarray(stopped))
    return
  else:  # "train": the workflow (collective checkpoints, files written by process 0).
    start = {}
    fit = training.fit

    def counting_fit(*args, **kwargs):
      state = kwargs.get("state")
      start["step"] = 0 if state is None else int(parallel.to_host(state.step))
      return fit(*args, **kwargs)

    training.fit = counting_fit
    epochs = int(os.environ.get("MULTIHOST_EPOCHS", EPOCHS))
    bundle = workflow.train(_tiny_config(epochs, checkpoint_every=5), argv[6], progress=False,
                            mesh=mesh)
    result["start_step"] = np.asarray(start.get("step", -1))
  f_forget, f_remain = fisher.class_fishers(
      bundle.apply_fn(), bundle.params, np.asarray(bundle.codes), FORGET, mesh=mesh)
  forgotten, _ = workflow.forget_bundle(bundle, FORGET, 1e-3, 10.0)
  test = load_dataset("digits", "test")
  evaluation = workflow.evaluate(forgotten, test.images, test.labels, mesh=mesh)
  result.update(_flat("params", bundle.params))
  result.update(_flat("f_forget", f_forget))
  result.update(_flat("f_remain", f_remain))
  result.update(_flat("forgotten", forgotten.params))
  result["logits"] = evaluation.logits
  np.savez(f"{out}.{pid}.npz", **result)


if __name__ == "__main__":
  sys.path.insert(0, str(REPO))
  worker(sys.argv[1:])
  sys.exit(0)

# --------------------------------------------------------------------------------------
# The tests.

from mnemonic_jax import distributed, parallel  # noqa: E402
from mnemonic_jax.data import pipeline  # noqa: E402


def _free_port():
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def _start(mode, nproc, devices, out, *extra, env=None):
  port = _free_port()
  env = dict(os.environ if env is None else env)
  env.pop("XLA_FLAGS", None)
  env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
  return [subprocess.Popen(
      [sys.executable, str(HERE), mode, str(nproc), str(pid), str(port), str(devices),
       str(out), *map(str, extra)],
      env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
      for pid in range(nproc)]


def _wait(procs, timeout=600):
  try:
    outputs = [p.communicate(timeout=timeout)[0] for p in procs]
  finally:
    for p in procs:  # A process left waiting for a failed one is not left behind.
      if p.poll() is None:
        p.kill()
        p.wait()
  for p, text in zip(procs, outputs):
    assert p.returncode == 0, text[-3000:]


def _run(mode, nproc, devices, out, *extra, env=None):
  _wait(_start(mode, nproc, devices, out, *extra, env=env))
  return [dict(np.load(f"{out}.{pid}.npz")) for pid in range(nproc)]


def _compare(got, want, *, exact_keys=(), rtol=2e-5, atol=2e-6):
  assert sorted(got) == sorted(want)
  for k in want:
    if k in exact_keys:
      np.testing.assert_array_equal(got[k], want[k], err_msg=k)
    else:
      np.testing.assert_allclose(got[k], want[k], rtol=rtol, atol=atol, err_msg=k)


def _same_on_every_process(results):
  for other in results[1:]:
    for k in results[0]:
      np.testing.assert_array_equal(other[k], results[0][k], err_msg=k)


# Fast, single process: what the multi-process path is built from.


def test_array_epochs_rows_are_the_rows_of_the_global_batch():
  images = np.arange(40, dtype=np.uint8).reshape(40, 1, 1, 1)
  source = pipeline.ArrayEpochs(images, np.arange(40) % 4)
  key = __import__("jax").random.key(0)
  whole = list(source.epoch(key, 8, skip=1))
  halves = [list(source.epoch(key, 8, skip=1, rows=slice(4 * p, 4 * p + 4)))
            for p in range(2)]
  assert len(whole) == len(halves[0]) == 4
  for b, (x, y) in enumerate(whole):
    np.testing.assert_array_equal(np.concatenate([h[b][0] for h in halves]), x)
    np.testing.assert_array_equal(np.concatenate([h[b][1] for h in halves]), y)


def test_one_process_reads_every_row_and_gathers_nothing():
  import jax
  mesh = parallel.make_mesh()
  assert mesh.size == jax.device_count() == 8  # conftest: 8 CPU devices, all global.
  assert not parallel.multiprocess(mesh)
  assert parallel.process_rows(mesh, 16) == slice(0, 16)
  x = np.arange(16.0)
  assert parallel.local_rows(mesh, x) is x
  np.testing.assert_array_equal(parallel.to_host(parallel.shard_batch(mesh, x)), x)
  with pytest.raises(ValueError, match="divisible by 8"):
    parallel.shard_batch(mesh, np.arange(12.0))


@pytest.mark.parametrize("env, launcher", [
    ({}, None),
    ({"SLURM_JOB_ID": "1", "SLURM_STEP_NODELIST": "n[1-2]", "SLURM_NTASKS": "2",
      "SLURM_PROCID": "0", "SLURM_LOCALID": "0"}, "slurm"),
    ({"SLURM_JOB_ID": "1", "SLURM_STEP_NODELIST": "n1", "SLURM_NTASKS": "1",
      "SLURM_PROCID": "0", "SLURM_LOCALID": "0"}, None),  # One task: nothing to connect.
    ({"SLURM_JOB_ID": "1", "SLURM_NTASKS": "4"}, None),  # An sbatch script outside srun.
    ({"OMPI_MCA_orte_hnp_uri": "x", "OMPI_COMM_WORLD_SIZE": "2"}, "openmpi"),
    ({"TPU_WORKER_HOSTNAMES": "h0,h1"}, "tpu"),
    ({"TPU_WORKER_HOSTNAMES": "h0"}, None),
    ({"JAX_COORDINATOR_ADDRESS": "h:1", "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "1"},
     "env"),
])
def test_detect_launcher(env, launcher):
  launch = distributed.detect(env)
  assert launch.launcher == launcher
  if launcher == "env":
    assert (launch.coordinator, launch.num_processes, launch.process_id) == ("h:1", 2, 1)


def test_explicit_initialize_checks_its_arguments():
  for args, match in [(("h:1",), "number of processes"), (("h:1", 2, 2), "outside"),
                      (("h", 2, 0), "HOST:PORT"), ((None, 2, 0), "need --coordinator")]:
    with pytest.raises(ValueError, match=match):
      distributed.initialize(*args)
  assert distributed.initialize(env={}) is False  # No launcher: nothing starts.


@pytest.mark.parametrize("flags, message", [
    (["--coordinator", "host"], "is not HOST:PORT"),
    (["--coordinator", "h:1", "--num-processes", "2"], "needs the number of processes"),
    (["--coordinator", "h:1", "--num-processes", "2", "--process-id", "2"], "outside"),
    (["--process-id", "0"], "need --coordinator"),
])
def test_command_line_refuses_bad_process_flags(flags, message, tmp_path, capsys):
  from mnemonic_jax import cli
  assert cli.main(["evaluate", "--checkpoint", str(tmp_path), *flags]) == 2
  err = capsys.readouterr().err
  assert err.startswith("mnemonic-jax: error: ") and message in err
  assert len(err.strip().splitlines()) == 1


# Slow: processes on localhost.


@pytest.fixture(scope="module")
def references(tmp_path_factory):
  """The fit run on 1 device and on 1 process x 8 devices."""
  tmp = tmp_path_factory.mktemp("multihost")
  one = _run("fit", 1, 1, tmp / "one")[0]
  eight = _run("fit", 1, 8, tmp / "eight")[0]
  return one, eight


@pytest.mark.slow
def test_two_processes_train_fisher_forget_and_evaluate_as_one(references, tmp_path):
  """2 processes x 4 devices = 1 process x 8 devices = 1 device, to float tolerance.

  Against 1 x 8 the parameters agree to float tolerance, not bitwise: the mean gradient's
  reduction over the 8 devices runs as one in-process all-reduce on one side and as gloo
  collectives between processes on the other, which may sum in another order (measured:
  see the README's "Many hosts"). Against 1 device the batch mean itself is summed in
  another order. Every process of a run holds the same values (bitwise).
  """
  one, eight = references
  two = _run("fit", 2, 4, tmp_path / "two")
  _same_on_every_process(two)
  _compare(two[0], eight)
  _compare(two[0], one, rtol=1e-4, atol=1e-5)
  _compare(eight, one, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_two_processes_workflow_train_writes_once_and_resumes_after_a_kill(references,
                                                                            tmp_path):
  """workflow.train on 2 processes; one SIGKILLed mid-run; both restarted: it resumes."""
  one, _ = references
  env = dict(os.environ, MULTIHOST_EPOCHS="6")  # 6 x 22 = 132 steps, a save every 5.
  workdir = tmp_path / "run"
  procs = _start("train", 2, 4, tmp_path / "killed", workdir, env=env)
  train_dir = workdir / "train"
  try:
    deadline = time.time() + 300
    while time.time() < deadline:  # Until a step past the first few is complete.
      steps = ([int(p.name) for p in train_dir.iterdir() if p.name.isdigit()]
               if train_dir.is_dir() else [])
      if steps and max(steps) >= 20:
        break
      assert all(p.poll() is None for p in procs), [p.communicate()[0][-2000:] for p in procs]
      time.sleep(0.2)
  finally:
    procs[1].send_signal(signal.SIGKILL)
    procs[1].wait()
    procs[0].send_signal(signal.SIGKILL)  # As a launcher tears down the rest of the job.
    procs[0].wait()
    for p in procs:
      p.stdout.close()
  assert max(steps) >= 20
  assert not (workdir / "bundle").exists()
  restarted = _run("train", 2, 4, tmp_path / "resumed", workdir, env=env)
  _same_on_every_process(restarted)
  assert int(restarted[0]["start_step"]) >= 20
  uninterrupted = _run("train", 1, 1, tmp_path / "whole", tmp_path / "whole_run", env=env)[0]
  assert int(uninterrupted["start_step"]) == 0
  drop = ("start_step",)
  _compare({k: v for k, v in restarted[0].items() if k not in drop},
           {k: v for k, v in uninterrupted.items() if k not in drop}, rtol=1e-4, atol=1e-5)
  # Files were written once, by process 0: one metrics line per logged step.
  lines = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  steps = [line["step"] for line in lines]
  assert steps == sorted(set(steps)), steps
  assert (workdir / "bundle").is_dir()


@pytest.mark.slow
def test_two_processes_save_when_one_is_told_of_preemption(tmp_path):
  """SIGTERM to one process (a scheduler's preemption notice) mid-run: both save the same
  step at their next save check, though they check every 100 steps (log_every 100, no
  periodic save), and stop there (RunStopped); run again, they resume to the end. JAX's
  preemption sync matches consecutive query ids, which Orbax's step numbers are not when
  checks are 100 steps apart."""
  env = dict(os.environ, MULTIHOST_EPOCHS="60")  # 60 x 22 = 1320 steps.
  workdir = tmp_path / "run"
  procs = _start("preempt", 2, 1, tmp_path / "preempt", workdir, env=env)
  metrics = workdir / "metrics.jsonl"
  deadline = time.time() + 300
  while time.time() < deadline and not (metrics.is_file() and metrics.read_text().strip()):
    assert all(p.poll() is None for p in procs), [p.communicate()[0][-2000:] for p in procs]
    time.sleep(0.05)
  procs[1].send_signal(signal.SIGTERM)
  _wait(procs)
  stopped = [int(np.load(f"{tmp_path / 'preempt'}.{pid}.npz")["stopped"]) for pid in range(2)]
  steps = sorted(int(p.name) for p in (workdir / "train").iterdir() if p.name.isdigit())
  assert stopped[0] == stopped[1] and steps == [stopped[0]], (stopped, steps)  # Saved, ended.
  assert steps[0] % 100 == 0 and 100 <= steps[0] < 1320, steps
  resumed = _run("preempt", 2, 1, tmp_path / "resumed", workdir, env=env)  # Then resumed.
  assert [int(r["stopped"]) for r in resumed] == [-1, -1]
  steps = sorted(int(p.name) for p in (workdir / "train").iterdir() if p.name.isdigit())
  assert steps == [stopped[0], 1320], steps


@pytest.mark.slow
def test_command_line_on_two_processes(tmp_path):
  """`train` then `evaluate` with --coordinator/--num-processes/--process-id: process 0
  prints, process 1 prints nothing, one bundle is written."""
  port = _free_port()
  env = dict(os.environ, JAX_NUM_CPU_DEVICES="4")
  env.pop("XLA_FLAGS", None)
  workdir = tmp_path / "run"

  def command(*args):
    procs = [subprocess.Popen(
        [sys.executable, "-m", "mnemonic_jax.cli", *args, "--coordinator",
         f"localhost:{port}", "--num-processes", "2", "--process-id", str(pid)],
        env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for pid in range(2)]
    outs = []
    try:
      for p in procs:
        outs.append(p.communicate(timeout=600))
    finally:
      for p in procs:
        if p.poll() is None:
          p.kill()
          p.wait()
    for p, (out, err) in zip(procs, outs):
      assert p.returncode == 0, err[-3000:]
    # gloo (the CPU collectives' C++ library) prints its connection lines itself, in
    # pieces: once in four runs the rank's line came without its "[Gloo] Rank " start.
    return [_GLOO_LINE.sub("", out) for out, _ in outs]

  train = command("train", "--config", "digits_mlp:quick",
                  "--config.epochs=2", "--workdir", str(workdir))
  assert "test accuracy" in train[0] and train[1] == ""
  assert (workdir / "bundle").is_dir()
  port = _free_port()
  evaluate = command("evaluate", "--checkpoint", str(workdir), "--json")
  assert json.loads(evaluate[0])["accuracy"] > 0 and evaluate[1] == ""
