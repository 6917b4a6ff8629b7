"""Tests for mnemonic_jax.checkpointing: bundles, training checkpoints, imports."""

import hashlib
import json
import os
import pathlib
import signal
import subprocess
import sys
import textwrap

import chex
import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest

from mnemonic_jax import checkpointing, errors
from mnemonic_jax.bundle import IMPORT_EVENT, Bundle
from mnemonic_jax.checkpointing import (CheckpointError, TrainCheckpointer, abstract_variables,
                                        import_params, load_bundle, save_bundle)
from mnemonic_jax.models import create_model
from mnemonic_jax.timing import CompileClock

REPO = pathlib.Path(__file__).resolve().parents[1]
MLP_KWARGS = {"hidden": [8]}
MLP_SHAPE = (4, 4, 1)


def _random_like(abstract, seed):
  """Random arrays shaped like an abstract tree (fast: no model.init compilation)."""
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda a: rng.normal(size=a.shape).astype(a.dtype), abstract)


def _mlp_bundle(seed=0, **changes):
  model = create_model("mlp", 3, **MLP_KWARGS)
  params = model.init(jax.random.key(seed), jnp.zeros((1, *MLP_SHAPE)))["params"]
  codes = np.random.default_rng(seed).normal(size=(3, *MLP_SHAPE)).astype(np.float32)
  bundle = Bundle(
      model_name="mlp", model_kwargs=dict(MLP_KWARGS), params=params, batch_stats={},
      codes=codes, num_classes=3, input_shape=MLP_SHAPE, mean=(0.5,), std=(0.25,),
      class_names=("zero", "one", "two"), dataset="digits",
      config={"lr": 0.1, "epochs": 2, "nested": {"a": [1, 2]}},
      history=({"classes": [1], "method": "mnemonic", "lambda": 0.5},))
  return bundle.replace(**changes)


@pytest.fixture(scope="module")
def resnet_bundle():
  kwargs = {"width": 4}
  abstract = abstract_variables("resnet18_cifar", 3, (8, 8, 3), kwargs)
  variables = _random_like(abstract, seed=1)
  # Running variances must be positive to be meaningful.
  variables["batch_stats"] = jax.tree_util.tree_map_with_path(
      lambda p, x: np.abs(x) if "var" in jax.tree_util.keystr(p) else x,
      variables["batch_stats"])
  codes = np.random.default_rng(2).normal(size=(3, 8, 8, 3)).astype(np.float32)
  return Bundle(model_name="resnet18_cifar", model_kwargs=kwargs, params=variables["params"],
                batch_stats=variables["batch_stats"], codes=codes, num_classes=3,
                input_shape=(8, 8, 3), mean=(0.49, 0.48, 0.45), std=(0.25, 0.24, 0.26))


def _assert_same_bundle(actual: Bundle, expected: Bundle):
  for field in ("model_name", "model_kwargs", "num_classes", "input_shape", "mean", "std",
                "class_names", "dataset", "config", "history"):
    assert getattr(actual, field) == getattr(expected, field), field
  assert isinstance(actual.input_shape, tuple) and isinstance(actual.history, tuple)
  assert isinstance(actual.mean, tuple) and isinstance(actual.class_names, tuple)
  for field in ("params", "batch_stats", "codes"):
    a, e = getattr(actual, field), getattr(expected, field)
    assert jax.tree.structure(a) == jax.tree.structure(e), field
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(e)):
      assert np.asarray(x).dtype == np.asarray(y).dtype
      np.testing.assert_array_equal(np.asarray(x), np.asarray(y))  # Bitwise (no tolerance).


def _digest(root: pathlib.Path) -> dict[str, str]:
  """Relative path -> sha256 of every file (and every directory name) under root."""
  out = {}
  for dirpath, dirnames, filenames in os.walk(root):
    for name in dirnames:
      out[os.path.relpath(os.path.join(dirpath, name), root) + "/"] = "dir"
    for name in filenames:
      full = os.path.join(dirpath, name)
      out[os.path.relpath(full, root)] = hashlib.sha256(pathlib.Path(full).read_bytes()).hexdigest()
  return out


def _meta_file(bundle_dir: pathlib.Path) -> pathlib.Path:
  (path,) = [p for p in (bundle_dir / "meta").iterdir() if p.name != "commit_success.txt"]
  return path


# ------------------------------------------------------------------------------ bundles


def test_round_trip_mlp(tmp_path):
  bundle = _mlp_bundle()
  out = save_bundle(tmp_path / "sub" / "mlp", bundle)
  assert out == tmp_path / "sub" / "mlp" and out.is_absolute()
  assert {p.name for p in out.iterdir()} >= {"arrays", "meta"}
  assert sorted(p.name for p in out.parent.iterdir()) == ["mlp"]  # No staging leftovers.
  meta = json.loads(_meta_file(out).read_text())
  assert meta["format"] == "mnemonic-jax-bundle" and meta["version"] == 3
  assert meta["meta_sha256"] == checkpointing.meta_checksum(meta)
  assert meta["array_sha256"] == checkpointing.array_checksums(out)
  hook = sys.unraisablehook
  loaded = load_bundle(out)
  assert sys.unraisablehook is hook  # What reaches stderr is the command line's choice.
  _assert_same_bundle(loaded, bundle)
  # The loaded bundle is usable.
  logits = loaded.apply_fn()(loaded.params, jnp.asarray(loaded.codes))
  chex.assert_trees_all_close(logits, bundle.apply_fn()(bundle.params, bundle.codes), atol=0)


def test_a_loaded_bundle_runs_the_programs_compiled_for_a_fresh_one(tmp_path):
  from mnemonic_jax.timing import CompileClock  # pylint: disable=import-outside-toplevel

  bundle = _mlp_bundle()
  loaded = load_bundle(save_bundle(tmp_path / "b", bundle))
  forward = jax.jit(bundle.apply_fn())
  forward(bundle.params, bundle.codes)
  with CompileClock() as clock:
    forward(loaded.params, loaded.codes)
  assert clock.programs == 0  # Orbax's committed arrays would compile it again.


def test_arguments_in_the_wrong_order_are_named_not_fspath_errors(tmp_path):
  bundle = _mlp_bundle()
  with pytest.raises(errors.BadRequestType, match=r"path first, as save_bundle\(path, bundle\)"):
    save_bundle(bundle, tmp_path / "b")
  with pytest.raises(errors.BadRequestType, match="bundle must be a Bundle .* got dict"):
    save_bundle(tmp_path / "b", {"params": bundle.params})
  with pytest.raises(errors.BadRequestType,
                     match=r"must be a path \(str or os.PathLike\), got Bundle"):
    load_bundle(bundle)
  assert list(tmp_path.iterdir()) == []


def test_round_trip_resnet_with_batch_stats(tmp_path, resnet_bundle):
  out = save_bundle(str(tmp_path / "resnet"), resnet_bundle)
  loaded = load_bundle(str(out))
  assert loaded.batch_stats  # BatchNorm statistics survive.
  _assert_same_bundle(loaded, resnet_bundle)


def test_existing_output_is_refused_and_untouched(tmp_path):
  out = save_bundle(tmp_path / "b", _mlp_bundle(seed=0))
  before = _digest(tmp_path)
  with pytest.raises(CheckpointError, match=r"already exists.*--force") as info:
    save_bundle(out, _mlp_bundle(seed=1))
  assert str(out) in str(info.value) and "\n" not in str(info.value)
  assert _digest(tmp_path) == before  # Nothing written, no staging directory either.


def test_force_replaces_existing_bundle(tmp_path):
  out = save_bundle(tmp_path / "b", _mlp_bundle(seed=0))
  new = _mlp_bundle(seed=1, dataset="fashion_mnist")
  save_bundle(out, new, force=True)
  _assert_same_bundle(load_bundle(out), new)
  assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]


def test_force_without_atomic_exchange_still_replaces(tmp_path, monkeypatch):
  monkeypatch.setattr(checkpointing.outputs, "_exchange", lambda a, b: False)
  out = save_bundle(tmp_path / "b", _mlp_bundle(seed=0))
  new = _mlp_bundle(seed=2)
  save_bundle(out, new, force=True)
  _assert_same_bundle(load_bundle(out), new)
  assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]


def test_force_refuses_to_delete_a_non_bundle(tmp_path):
  precious = tmp_path / "precious"
  precious.mkdir()
  (precious / "thesis.tex").write_text("do not delete")
  with pytest.raises(CheckpointError, match="not a mnemonic-jax bundle"):
    save_bundle(precious, _mlp_bundle(), force=True)
  assert (precious / "thesis.tex").read_text() == "do not delete"


def test_save_rejects_inconsistent_bundle_and_writes_nothing(tmp_path):
  wrong_params = create_model("mlp", 3, hidden=[6]).init(
      jax.random.key(0), jnp.zeros((1, *MLP_SHAPE)))["params"]
  with pytest.raises(CheckpointError, match=r"params do not fit.*Dense_0/kernel"):
    save_bundle(tmp_path / "b", _mlp_bundle(params=wrong_params))
  with pytest.raises(CheckpointError, match=r"codes have shape \(2, 4, 4, 1\)"):
    save_bundle(tmp_path / "b", _mlp_bundle(codes=np.zeros((2, *MLP_SHAPE), np.float32)))
  with pytest.raises(CheckpointError, match="config is not JSON-serialisable"):
    save_bundle(tmp_path / "b", _mlp_bundle(config={"fn": print}))
  assert list(tmp_path.iterdir()) == []


def test_load_missing_path(tmp_path):
  with pytest.raises(CheckpointError, match="does not exist") as info:
    load_bundle(tmp_path / "nope")
  assert str(tmp_path / "nope") in str(info.value)


def test_load_not_a_bundle_is_refused_and_untouched(tmp_path):
  (tmp_path / "stuff").mkdir()
  (tmp_path / "stuff" / "notes.txt").write_text("hello")
  before = _digest(tmp_path)
  with pytest.raises(CheckpointError, match="is not a mnemonic-jax bundle") as info:
    load_bundle(tmp_path / "stuff")
  assert str(tmp_path / "stuff") in str(info.value)
  assert _digest(tmp_path) == before
  (tmp_path / "file").write_text("x")
  with pytest.raises(CheckpointError, match="is a file"):
    load_bundle(tmp_path / "file")


@pytest.mark.parametrize("damage", ["truncate", "delete"])
def test_load_truncated_array_file(tmp_path, damage):
  out = save_bundle(tmp_path / "b", _mlp_bundle())
  # After Orbax's finalize, the arrays' data lives in the OCDBT files under arrays/d/
  # (the per-process copies under arrays/ocdbt.process_0/ are no longer read).
  victim = max((out / "arrays" / "d").iterdir(), key=lambda p: p.stat().st_size)
  if damage == "truncate":
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
  else:
    victim.unlink()
  with pytest.raises(CheckpointError, match="truncated or corrupt.*re-create") as info:
    load_bundle(out)
  assert str(out) in str(info.value) and "\n" not in str(info.value)


def test_load_missing_array_metadata(tmp_path):
  out = save_bundle(tmp_path / "b", _mlp_bundle())
  (out / "arrays" / "_METADATA").unlink()
  with pytest.raises(CheckpointError, match=str(out)):
    load_bundle(out)


def test_load_foreign_version(tmp_path):
  out = save_bundle(tmp_path / "b", _mlp_bundle())
  meta_file = _meta_file(out)
  meta = json.loads(meta_file.read_text())
  meta["version"] = 99
  meta_file.write_text(json.dumps(meta))
  with pytest.raises(CheckpointError, match=r"format version 99.*reads version 3 \(and the "
                     r"older 1 and 2\)"):
    load_bundle(out)
  meta["format"] = "someone-else"
  meta_file.write_text(json.dumps(meta))
  with pytest.raises(CheckpointError, match="not a mnemonic-jax bundle"):
    load_bundle(out)


def test_load_spec_mismatch_fails_clearly(tmp_path):
  out = save_bundle(tmp_path / "b", _mlp_bundle())
  meta_file = _meta_file(out)
  meta = json.loads(meta_file.read_text())
  meta["model_kwargs"] = {"hidden": [6]}
  meta_file.write_text(json.dumps(meta))
  with pytest.raises(CheckpointError, match="does not match the SHA-256 checksum"):
    load_bundle(out)  # An edit by hand.
  # Metadata that fits its checksum but not its arrays (a faulty writer): still refused.
  checkpointing.integrity.seal(out, meta)
  with pytest.raises(CheckpointError, match=r"do not fit model 'mlp'.*Dense_0/kernel has shape"):
    load_bundle(out)
  meta["model_name"] = "no_such_model"
  checkpointing.integrity.seal(out, meta)
  with pytest.raises(CheckpointError, match="unknown model.*register_model"):
    load_bundle(out)


def test_load_never_modifies_input(tmp_path, resnet_bundle):
  out = save_bundle(tmp_path / "b", resnet_bundle)
  before = _digest(tmp_path)
  mtimes = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")}
  load_bundle(out)
  load_bundle(out)
  assert _digest(tmp_path) == before
  assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")} == mtimes


# ----------------------------------------------------------------- training checkpoints


def _train_state(seed):
  params = _mlp_bundle(seed=seed).params
  opt = optax.sgd(0.1, momentum=0.9)
  opt_state = opt.init(params)
  grads = jax.tree.map(jnp.ones_like, params)
  for _ in range(2):  # Non-zero momentum.
    updates, opt_state = opt.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
  return {"params": params, "opt_state": opt_state, "step": jnp.asarray(seed, jnp.int32),
          "key": jax.random.fold_in(jax.random.key(0), seed)}


def test_a_resumed_state_runs_the_programs_compiled_for_a_fresh_one(tmp_path):
  """Orbax restores arrays committed to a device, and jit compiles a program again for
  them; a restored state comes back uncommitted like a fresh one (its key typed)."""
  state = _train_state(1)
  program = jax.jit(lambda s: jax.tree.map(
      lambda x: x if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key) else x + 1, s))
  jax.block_until_ready(program(state))
  with TrainCheckpointer(tmp_path / "run") as ckpt:
    ckpt.save(1, state)
    ckpt.wait_until_finished()
    restored = ckpt.restore(None, jax.eval_shape(lambda: state)).state
  _assert_same_state(restored, state)
  with CompileClock() as clock:
    jax.block_until_ready(program(restored))
  assert clock.programs == 0


def _assert_same_state(actual, expected):
  keys = lambda t: jax.tree.map(lambda x: jax.random.key_data(x) if (  # noqa: E731
      jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)) else x, t)
  assert jax.tree.structure(actual) == jax.tree.structure(expected)
  assert jax.dtypes.issubdtype(actual["key"].dtype, jax.dtypes.prng_key)  # Still typed.
  chex.assert_trees_all_equal(keys(actual), keys(expected))


def test_train_checkpointer_round_trip(tmp_path):
  states = {step: _train_state(step) for step in (1, 2, 3)}
  abstract = jax.eval_shape(lambda: _train_state(0))
  with TrainCheckpointer(tmp_path / "run", max_to_keep=2) as ckpt:
    assert ckpt.latest_step() is None
    for step, state in states.items():
      assert ckpt.save(step, state, {"loss": 1.0 / step, "epoch": np.int64(step)})
    ckpt.wait_until_finished()
    assert ckpt.latest_step() == 3 and ckpt.all_steps() == [2, 3]  # max_to_keep=2.
  # A fresh process would do exactly this to resume.
  with TrainCheckpointer(tmp_path / "run") as ckpt:
    restored = ckpt.restore(None, abstract)
    assert restored.step == 3 and restored.metadata == {"loss": 1 / 3, "epoch": 3}
    _assert_same_state(restored.state, states[3])
    assert isinstance(restored.state["params"]["Dense_0"]["kernel"], jax.Array)
    older = ckpt.restore(2, states[1])  # Concrete arrays work as the target too.
    _assert_same_state(older.state, states[2])
    with pytest.raises(CheckpointError, match="no checkpoint for step 1"):
      ckpt.restore(1, abstract)
    with pytest.raises(CheckpointError, match="already saved"):
      ckpt.save(3, states[3])


def test_train_checkpointer_save_every_and_errors(tmp_path):
  with TrainCheckpointer(tmp_path / "run", save_every=2, async_save=False) as ckpt:
    with pytest.raises(CheckpointError, match="no complete training checkpoint"):
      ckpt.restore(None, {"w": jax.ShapeDtypeStruct((3,), jnp.float32)})
    assert not ckpt.save(1, {"w": np.ones(3, np.float32)})
    assert ckpt.save(2, {"w": np.ones(3, np.float32)})
    assert ckpt.save(3, {"w": np.full(3, 3.0, np.float32)}, force=True)
    assert ckpt.all_steps() == [2, 3]
    assert ckpt.save(4, {"w": np.zeros(3, np.float32), "epoch": 7, "lr": 0.5})  # Scalars.
    restored = ckpt.restore(4, {"w": np.zeros(3, np.float32), "epoch": 0, "lr": 0.0})
    assert (restored.state["epoch"], restored.state["lr"]) == (7, 0.5)
    with pytest.raises(CheckpointError, match=r"does not match the train state.*w has shape"):
      ckpt.restore(3, {"w": jax.ShapeDtypeStruct((4,), jnp.float32)})
    with pytest.raises(CheckpointError, match="missing b"):
      ckpt.restore(3, {"w": jax.ShapeDtypeStruct((3,), jnp.float32),
                       "b": jax.ShapeDtypeStruct((3,), jnp.float32)})
    with pytest.raises(CheckpointError, match="metadata is not JSON-serialisable"):
      ckpt.save(6, {"w": np.ones(3, np.float32)}, {"f": object()})


def test_train_checkpointer_asks_the_preemption_service_with_consecutive_ids(tmp_path,
                                                                            monkeypatch):
  """Save checks 100 steps apart reach JAX's preemption sync as ids 1, 2, 3 (it only
  matches the id after the largest reported); a step asked twice keeps its id. The
  preemption sync itself, over 2 processes: tests/test_multihost.py (slow)."""
  asked = []

  def reached(self, step):  # The service: preemption noticed after id 2, sync point 3.
    asked.append(step)
    return step == 3

  monkeypatch.setattr(ocp.CheckpointManager, "reached_preemption", reached)
  with TrainCheckpointer(tmp_path / "run", save_every=1000, async_save=False) as ckpt:
    state = {"w": np.ones(3, np.float32)}
    assert not ckpt.should_save(100) and not ckpt.should_save(200)
    assert ckpt.should_save(300) and ckpt.save(300, state)  # The same step: the same id.
    assert not ckpt.should_save(400)
    assert ckpt.all_steps() == [300]
  assert set(asked) == {1, 2, 3, 4} and asked == sorted(asked), asked


def test_killed_run_leaves_last_complete_checkpoint(tmp_path):
  run = tmp_path / "run"
  child = textwrap.dedent(f"""
      import os, signal, sys
      import numpy as np
      sys.path.insert(0, {str(REPO)!r})
      from mnemonic_jax.checkpointing import TrainCheckpointer
      ckpt = TrainCheckpointer({str(run)!r})
      big = np.random.default_rng(0).normal(size=(2_000_000,)).astype(np.float32)
      ckpt.save(1, {{"w": big}})
      ckpt.wait_until_finished()
      ckpt.save(2, {{"w": big + 1}})  # Asynchronous: still being written when we die.
      os.kill(os.getpid(), signal.SIGKILL)
  """)
  proc = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True,
                        env={**os.environ, "JAX_PLATFORMS": "cpu"}, timeout=120)
  assert proc.returncode == -signal.SIGKILL, proc.stderr
  left = _listing(run)
  with TrainCheckpointer(run) as ckpt:
    # Leftovers are removed before the constructor returns.
    assert not [p for p in run.iterdir() if "tmp" in p.name], (left, _listing(run))
    step = ckpt.latest_step()
    assert step in (1, 2), left  # 2 only if the write happened to finish before the kill.
    restored = ckpt.restore(None, {"w": jax.ShapeDtypeStruct((2_000_000,), jnp.float32)})
    expected = np.random.default_rng(0).normal(size=(2_000_000,)).astype(np.float32)
    np.testing.assert_array_equal(np.asarray(restored.state["w"]), expected + (step - 1))
  assert not [p for p in run.iterdir() if "tmp" in p.name], (left, _listing(run))


def _listing(directory):
  """Every path under ``directory``, relative, for assertion messages."""
  return sorted(str(p.relative_to(directory)) for p in directory.rglob("*"))


def test_open_removes_what_a_killed_save_left_before_returning(tmp_path, monkeypatch):
  # The folders SIGKILL left during step 2's asynchronous save in the test above (seen on
  # disk): a complete step 1 and Orbax's unfinished step 2, in part.
  run = tmp_path / "run"
  with TrainCheckpointer(run, async_save=False) as ckpt:
    ckpt.save(1, {"w": jnp.arange(4.0)})
  tmp = run / "2.orbax-checkpoint-tmp"
  for name in ("_CHECKPOINT_METADATA", "meta.orbax-checkpoint-tmp/metadata",
               "state.orbax-checkpoint-tmp/ocdbt.process_0/d/0123456789abcdef"):
    (tmp / name).parent.mkdir(parents=True, exist_ok=True)
    (tmp / name).write_bytes(b"{}")
  # Orbax's own cleanup (cleanup_tmp_directories) runs in a background thread that only the
  # next save waits for; here it never gets there, as on a loaded machine. Orbax 0.12's
  # CheckpointManager calls it through this module.
  from orbax.checkpoint._src.path import temporary_paths

  async def lagging(*args, **kwargs):
    del args, kwargs

  monkeypatch.setattr(temporary_paths, "cleanup_temporary_paths", lagging)
  with TrainCheckpointer(run) as ckpt:
    assert not [p for p in run.iterdir() if "tmp" in p.name], _listing(run)
    assert ckpt.all_steps() == [1]
    restored = ckpt.restore(None, {"w": jax.ShapeDtypeStruct((4,), jnp.float32)})
    np.testing.assert_array_equal(restored.state["w"], np.arange(4.0, dtype=np.float32))
  assert [p.name for p in run.iterdir()] == ["1"], _listing(run)


# ----------------------------------------------------------------------------- imports


def _import_kwargs(tmp_path, **changes):
  kwargs = dict(model_name="mlp", model_kwargs=MLP_KWARGS, num_classes=3,
                input_shape=MLP_SHAPE, output=tmp_path / "imported", mean=(0.5,),
                std=(0.25,), class_names=("zero", "one", "two"), dataset="digits")
  kwargs.update(changes)
  return kwargs


def _without_import_entry(imported: Bundle) -> Bundle:
  """The bundle without its one history entry, the import's (checked, then dropped)."""
  (entry,) = imported.history
  assert entry["event"] == IMPORT_EVENT and entry["classes"] == [], entry
  assert entry["codes_accuracy"] == entry["codes_right"] / imported.num_classes
  return imported.replace(history=())


def test_import_from_msgpack_and_npy(tmp_path):
  bundle = _mlp_bundle()
  params_file = tmp_path / "params.msgpack"
  params_file.write_bytes(flax.serialization.to_bytes(jax.device_get(bundle.params)))
  np.save(tmp_path / "codes.npy", bundle.codes)
  out = import_params(params_file, tmp_path / "codes.npy", **_import_kwargs(tmp_path))
  _assert_same_bundle(_without_import_entry(load_bundle(out)),
                      bundle.replace(config={}, history=()))


@pytest.mark.parametrize("writer", ["standard", "pytree"])
def test_import_from_orbax_dir(tmp_path, writer):
  bundle = _mlp_bundle()
  params_dir = tmp_path / "orbax_params"
  if writer == "standard":
    with ocp.StandardCheckpointer() as ckptr:
      ckptr.save(params_dir, bundle.params)
  else:
    ocp.PyTreeCheckpointer().save(params_dir, bundle.params)
  out = import_params(params_dir, np.asarray(bundle.codes), **_import_kwargs(tmp_path))
  _assert_same_bundle(_without_import_entry(load_bundle(out)),
                      bundle.replace(config={}, history=()))
  # Fine-tuning reads it as host arrays, as from a msgpack file: no committed arrays that
  # would compile every program a second time (see the loaded-bundle test above).
  params, _ = checkpointing.read_pretrained(params_dir)
  assert all(isinstance(leaf, np.ndarray) for leaf in jax.tree.leaves(params))


def test_import_variables_with_batch_stats(tmp_path, resnet_bundle):
  b = resnet_bundle
  params_file = tmp_path / "variables.msgpack"
  params_file.write_bytes(flax.serialization.to_bytes(
      {"params": b.params, "batch_stats": b.batch_stats, "opt_state": {"ignored": 1}}))
  kwargs = dict(model_name=b.model_name, model_kwargs=b.model_kwargs, num_classes=3,
                input_shape=b.input_shape, mean=b.mean, std=b.std, output=tmp_path / "out")
  out = import_params(params_file, b.codes, **kwargs)
  _assert_same_bundle(_without_import_entry(load_bundle(out)), b)
  only_params = tmp_path / "params.msgpack"
  only_params.write_bytes(flax.serialization.to_bytes(b.params))
  with pytest.raises(CheckpointError, match="has BatchNorm statistics"):
    import_params(only_params, b.codes, **{**kwargs, "output": tmp_path / "out2"})
  assert not (tmp_path / "out2").exists()


def test_import_rejects_mismatched_params(tmp_path):
  bundle = _mlp_bundle()
  params_file = tmp_path / "params.msgpack"
  params_file.write_bytes(flax.serialization.to_bytes(bundle.params))
  with pytest.raises(CheckpointError, match=r"params do not fit model 'mlp'.*Dense_0/kernel"):
    import_params(params_file, bundle.codes,
                  **_import_kwargs(tmp_path, model_kwargs={"hidden": [6]}))
  with pytest.raises(CheckpointError, match=r"missing Dense_2"):
    import_params(params_file, bundle.codes,
                  **_import_kwargs(tmp_path, model_kwargs={"hidden": [8, 8]}))
  with pytest.raises(CheckpointError, match="codes have shape"):
    import_params(params_file, bundle.codes[:2], **_import_kwargs(tmp_path))
  (tmp_path / "junk.bin").write_bytes(b"\x00\x01not msgpack")
  with pytest.raises(CheckpointError, match="not a flax msgpack file"):
    import_params(tmp_path / "junk.bin", bundle.codes, **_import_kwargs(tmp_path))
  with pytest.raises(CheckpointError, match="does not exist"):
    import_params(tmp_path / "nope", bundle.codes, **_import_kwargs(tmp_path))
  assert not (tmp_path / "imported").exists()


def test_load_refuses_a_codes_dtype_the_arrays_do_not_have(tmp_path):
  out = save_bundle(tmp_path / "b", _mlp_bundle())
  meta = json.loads(_meta_file(out).read_text())
  meta["codes_dtype"] = "float16"
  checkpointing.integrity.seal(out, meta)  # Consistent with its checksum, not its arrays.
  with pytest.raises(CheckpointError, match="codes are stored as float32 but the metadata "
                                            "says float16"):
    load_bundle(out)


def test_the_file_check_skips_a_file_removed_while_it_walks_and_refuses_a_dangling_link(
    tmp_path, monkeypatch):
  from mnemonic_jax import _files  # pylint: disable=import-outside-toplevel

  (tmp_path / "kept").write_bytes(b"x")
  check = lambda: _files.check_tree(tmp_path, max_bytes=1 << 20, max_files=10,
                                    error=CheckpointError, fix="remove it")
  real_walk = os.walk
  # Orbax removing an old step between the listing and the check: nothing left to read.
  monkeypatch.setattr(_files.os, "walk", lambda root: (
      (d, n, [*f, "removed-meanwhile"]) for d, n, f in real_walk(root)))
  check()
  monkeypatch.setattr(_files.os, "walk", real_walk)
  (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
  with pytest.raises(CheckpointError, match="dangling.*link to nothing; remove it"):
    check()
