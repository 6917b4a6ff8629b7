"""Checkpoint faults of issue #22, each kind through the real command or the public function.

1. A bundle read while another process replaces it: one snapshot or an error, never a mix.
2. Integrity that one edit turned off: the metadata is covered by a checksum too; a
   current-format bundle without its checksum record is refused; only a bundle of a
   declared older format version loads unverified, with a warning saying so.
3. Special files where a regular file is expected (a symlink to ``/dev/zero``, a FIFO):
   refused after opening, without blocking, and every read has a size cap.
4. Empty paths: bad input; ``--output ""`` (an unset shell variable) no longer means the
   current directory, which is never replaced.

One small untrained bundle (digits-shaped MLP, 10 classes) is saved once per module; each
test damages its own copy.
"""

import json
import os
import pathlib
import shutil
import signal
import subprocess
import warnings

import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from mnemonic_jax import _validate, checkpointing, errors
from mnemonic_jax.bundle import Bundle
from mnemonic_jax.checkpointing import CheckpointError, load_bundle, save_bundle
from mnemonic_jax.data import DatasetError, read_idx
from mnemonic_jax.models import create_model

from cli_support import REPO, assert_refused, run_commands, tree_digest

SHAPE = (8, 8, 1)
MEMORY_LIMIT_KB = 4 << 20  # 4 GiB of address space for the commands run here.
IMPORT_ARGS = ("--model", "mlp", "--model-kwargs", '{"hidden": [16]}', "--num-classes", "10",
               "--input-shape", "8,8,1", "--mean", "0.5", "--std", "0.25", "-q")


def _bundle(seed: int = 0) -> Bundle:
  model = create_model("mlp", 10, hidden=[16])
  params = model.init(jax.random.key(seed), jnp.zeros((1, *SHAPE)))["params"]
  codes = np.random.default_rng(seed).normal(size=(10, *SHAPE)).astype(np.float32)
  return Bundle(model_name="mlp", model_kwargs={"hidden": [16]}, params=params,
                batch_stats={}, codes=codes, num_classes=10, input_shape=SHAPE,
                mean=(0.5,), std=(0.25,), dataset="digits")


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> pathlib.Path:
  return save_bundle(tmp_path_factory.mktemp("saved") / "bundle", _bundle())


@pytest.fixture()
def copy(saved, tmp_path) -> pathlib.Path:
  return pathlib.Path(shutil.copytree(saved, tmp_path / "b", symlinks=True))


@pytest.fixture()
def no_hang():
  """Fails the test (instead of hanging the suite) if it runs for more than 30 s."""

  def expired(signum, frame):
    raise TimeoutError("the test ran for 30 s: something blocks or reads without end")

  previous = signal.signal(signal.SIGALRM, expired)
  signal.alarm(30)
  yield
  signal.alarm(0)
  signal.signal(signal.SIGALRM, previous)


def run_cli(*args, cwd=REPO) -> subprocess.CompletedProcess:
  """``mnemonic-jax ARGS`` under a 4 GiB address-space limit, killed at 120 s: its own
  process, forked after the imports (``cli_support.run_commands``)."""
  return run_commands({"command": dict(args=args, cwd=cwd)}, memory_limit=MEMORY_LIMIT_KB << 10,
                      timeout=120)["command"].result


def meta_file(bundle: pathlib.Path) -> pathlib.Path:
  return bundle / "meta" / "metadata"


def edit_meta(bundle: pathlib.Path, edit) -> None:
  """Rewrites a bundle's JSON metadata by hand: ``edit(meta)`` changes the dict in place."""
  meta = json.loads(meta_file(bundle).read_text())
  edit(meta)
  meta_file(bundle).write_text(json.dumps(meta))


def drop_checksums(meta: dict) -> None:
  for key in [k for k in meta if "sha256" in k]:
    del meta[key]


def largest_array_file(bundle: pathlib.Path) -> pathlib.Path:
  return max((p for p in (bundle / "arrays").rglob("*") if p.is_file()),
             key=lambda p: p.stat().st_size)


def flip_low_bit(path: pathlib.Path) -> None:
  data = bytearray(path.read_bytes())
  data[(len(data) // 2) & ~3] ^= 0x01
  path.write_bytes(bytes(data))


def same_tree(a, b) -> bool:
  return all(np.array_equal(np.asarray(x), np.asarray(y))
             for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


# --------------------------------------------------------------------------------------
# 1. A bundle replaced while it is read.


def _swap_before_array_restore(monkeypatch, path, bundles, times):
  """Makes Orbax's array restore first save (force) the next of ``bundles`` at ``path``."""
  original = ocp.Checkpointer.restore
  swaps = []

  def restore(self, directory, *args, **kwargs):
    items = kwargs.get("args", args[0] if args else None)
    if len(swaps) < times and "arrays" in dict(items or {}):
      save_bundle(path, bundles[len(swaps) % len(bundles)], force=True)
      swaps.append(1)
    return original(self, directory, *args, **kwargs)

  monkeypatch.setattr(ocp.Checkpointer, "restore", restore)
  return swaps


def test_a_bundle_replaced_while_read_comes_back_whole(saved, copy, monkeypatch):
  old = load_bundle(saved)
  new = old.replace(params=jax.tree.map(lambda x: x + 1, old.params),
                    history=({"classes": [3]},))
  swaps = _swap_before_array_restore(monkeypatch, copy, [new], times=1)
  got = load_bundle(copy)
  assert swaps == [1]
  assert same_tree(got.params, new.params) and got.history == new.history, (
      "a mix of two saves: params of one, history of the other")


def test_a_bundle_replaced_at_every_read_is_an_error_not_a_mix(saved, copy, monkeypatch):
  old = load_bundle(saved)
  new = old.replace(params=jax.tree.map(lambda x: x + 1, old.params),
                    history=({"classes": [3]},))
  _swap_before_array_restore(monkeypatch, copy, [new, old], times=100)
  with pytest.raises(CheckpointError, match="replaced") as info:
    load_bundle(copy)
  assert str(copy) in str(info.value) and "\n" not in str(info.value)


# --------------------------------------------------------------------------------------
# 2. Integrity: the metadata is covered; a missing checksum record is refused.


def test_deleting_the_checksums_no_longer_lets_a_flipped_byte_through(copy):
  edit_meta(copy, drop_checksums)
  flip_low_bit(largest_array_file(copy))
  assert_refused(run_cli("evaluate", "--checkpoint", copy, "--dataset", "digits", "-q"),
                 "checksum")


def test_a_history_entry_added_by_hand_is_refused(copy):
  edit_meta(copy, lambda meta: meta["history"].append({"classes": [5]}))
  with pytest.raises(CheckpointError, match="checksum") as info:
    load_bundle(copy)
  assert str(copy) in str(info.value) and "\n" not in str(info.value)


def test_only_a_declared_older_format_loads_unverified_and_says_so(copy):
  edit_meta(copy, lambda meta: (drop_checksums(meta), meta.update(version=1)))
  with pytest.warns(checkpointing.UnverifiedBundleWarning, match="format version 1"):
    bundle = load_bundle(copy)
  assert bundle.num_classes == 10
  edit_meta(copy, lambda meta: meta.update(version=checkpointing.BUNDLE_VERSION))
  with pytest.raises(CheckpointError, match="no checksum"):
    load_bundle(copy)


# --------------------------------------------------------------------------------------
# 3. Special files: refused after opening, never blocking, reads capped.


def test_metadata_linked_to_dev_zero_is_refused(copy, no_hang):
  meta_file(copy).unlink()
  meta_file(copy).symlink_to("/dev/zero")
  with pytest.raises(CheckpointError, match="not a regular file"):
    load_bundle(copy)
  with pytest.raises(CheckpointError, match="not a regular file"):
    save_bundle(copy, _bundle(), force=True)  # Reads the metadata to decide replacing.


def test_metadata_that_is_a_fifo_is_refused_without_blocking(copy, no_hang):
  meta_file(copy).unlink()
  os.mkfifo(meta_file(copy))
  with pytest.raises(CheckpointError, match="not a regular file"):
    load_bundle(copy)


@pytest.mark.parametrize("victim", ["chunk", "_CHECKPOINT_METADATA"])
def test_a_bundle_file_linked_to_a_special_file_is_refused(copy, no_hang, victim):
  target = largest_array_file(copy) if victim == "chunk" else copy / victim
  target.unlink()
  if victim == "chunk":
    target.symlink_to("/dev/zero")
  else:
    os.mkfifo(target)
  with pytest.raises(CheckpointError, match="not a regular file") as info:
    load_bundle(copy)
  assert target.name in str(info.value)


def test_import_of_dev_zero_and_of_a_fifo_is_refused(saved, tmp_path, no_hang):
  codes = tmp_path / "codes.npy"
  np.save(codes, np.zeros((10, *SHAPE), np.float32))
  assert_refused(run_cli("import", "--params", "/dev/zero", "--codes", codes,
                         "--output", tmp_path / "out", *IMPORT_ARGS), "not a regular file")
  fifo = tmp_path / "fifo"
  os.mkfifo(fifo)
  params = tmp_path / "params.msgpack"
  params.write_bytes(flax.serialization.to_bytes(load_bundle(saved).params))
  kwargs = dict(model_name="mlp", model_kwargs={"hidden": [16]}, num_classes=10,
                input_shape=SHAPE, mean=(0.5,), std=(0.25,))
  for params_path, codes_path in ((fifo, codes), (params, fifo)):
    with pytest.raises(CheckpointError, match="not a regular file"):
      checkpointing.import_params(params_path, codes_path, output=tmp_path / "out", **kwargs)
  assert not (tmp_path / "out").exists()


def test_a_params_file_beyond_its_cap_is_refused_before_it_is_read(tmp_path):
  big = tmp_path / "big.msgpack"
  with open(big, "wb") as f:
    f.truncate(1 << 40)  # Sparse: a terabyte that takes no room.
  with pytest.raises(CheckpointError, match="more than"):
    checkpointing.import_params(big, np.zeros((10, *SHAPE), np.float32), model_name="mlp",
                                model_kwargs={"hidden": [16]}, num_classes=10,
                                input_shape=SHAPE, mean=(0.5,), std=(0.25,),
                                output=tmp_path / "out")


def test_a_training_checkpoint_file_that_is_a_fifo_is_refused(tmp_path, no_hang):
  state = {"w": np.zeros(3, np.float32)}
  with checkpointing.TrainCheckpointer(tmp_path / "run", async_save=False) as ckpt:
    ckpt.save(1, state, force=True)
  (victim,) = (tmp_path / "run").glob("1/meta/metadata")
  victim.unlink()
  os.mkfifo(victim)
  with pytest.raises(CheckpointError, match="not a regular file"):
    checkpointing.TrainCheckpointer(tmp_path / "run").restore(None, state)


def test_a_lock_file_that_is_a_fifo_or_a_link_is_refused(tmp_path, no_hang):
  lock = tmp_path / "run" / checkpointing.LOCK_FILE
  lock.parent.mkdir()
  os.mkfifo(lock)
  with pytest.raises(CheckpointError, match="not a regular file"):
    with checkpointing.workdir_lock(tmp_path / "run"):
      pass
  lock.unlink()
  mine = tmp_path / "mine.txt"
  mine.write_text("mine")
  lock.symlink_to(mine)  # The process id must not be written into what it points to.
  with pytest.raises(CheckpointError, match="lock file"):
    with checkpointing.workdir_lock(tmp_path / "run"):
      pass
  assert mine.read_text() == "mine"


def test_an_idx_file_that_is_a_fifo_is_refused_without_blocking(tmp_path, no_hang):
  fifo = tmp_path / "train-labels-idx1-ubyte"
  os.mkfifo(fifo)
  with pytest.raises(DatasetError, match="not a regular file"):
    read_idx(fifo)


# --------------------------------------------------------------------------------------
# 4. Empty paths.


def test_an_empty_path_is_bad_input(saved, tmp_path):
  for call in (lambda: _validate.path(""), lambda: load_bundle(""),
               lambda: save_bundle("", _bundle()), lambda: checkpointing.check_output("")):
    with pytest.raises(errors.BadRequest, match="empty"):
      call()


def test_output_empty_never_replaces_the_current_directory(saved, tmp_path):
  victim = pathlib.Path(shutil.copytree(saved, tmp_path / "victim"))  # A replaceable bundle.
  before = tree_digest(victim)
  params = tmp_path / "params.msgpack"
  params.write_bytes(flax.serialization.to_bytes(load_bundle(saved).params))
  codes = tmp_path / "codes.npy"
  np.save(codes, np.zeros((10, *SHAPE), np.float32))
  assert_refused(run_cli("import", "--params", params, "--codes", codes, "--output", "",
                         "--force", *IMPORT_ARGS, cwd=victim), "current directory")
  assert tree_digest(victim) == before
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    old = os.getcwd()
    try:
      os.chdir(victim / "arrays")
      for output in (".", victim):  # The current directory, or one holding it.
        with pytest.raises(CheckpointError, match="current directory"):
          save_bundle(output, _bundle(), force=True)
    finally:
      os.chdir(old)
  assert tree_digest(victim) == before


EMPTY_PATHS = {
    "forget": ["forget", "--checkpoint", "IN", "--classes", "3", "--output", ""],
    "train": ["train", "--config", "digits_mlp:quick", "--workdir", ""],
    "evaluate": ["evaluate", "--checkpoint", ""],
    "demo": ["demo", "--output-dir", ""]}


@pytest.fixture(scope="module")
def empty_path_runs(tmp_path_factory):
  """Each command of :data:`EMPTY_PATHS` run in an empty folder of its own (its cwd).

  In turn, each its own process forked after the imports (``cli_support.run_commands``).
  """
  cwds = {name: tmp_path_factory.mktemp(f"empty-{name}") for name in EMPTY_PATHS}
  return run_commands({name: dict(args=argv, cwd=cwds[name], watch=[cwds[name]])
                       for name, argv in EMPTY_PATHS.items()}, timeout=300)


@pytest.mark.parametrize("name", EMPTY_PATHS)
def test_an_empty_path_argument_is_refused_by_the_command_line(empty_path_runs, name):
  """An unset shell variable never means the current directory, for any path option."""
  ran = empty_path_runs[name]
  assert ran.result.returncode == 2 and "is empty" in ran.result.stderr, ran.result.stderr
  assert len(ran.result.stderr.strip().splitlines()) == 1 and ran.after == ran.before


def test_a_metrics_log_that_is_not_a_regular_file_is_refused_not_read(tmp_path):
  from mnemonic_jax import run_metrics
  assert run_metrics.read_metrics(tmp_path) == []
  (tmp_path / run_metrics.METRICS_FILE).symlink_to("/dev/zero")
  with pytest.raises(errors.BadCheckpoint, match="not a regular file"):
    run_metrics.read_metrics(tmp_path)


# --------------------------------------------------------------------------------------
# helper-37, fault 9: every file a save writes is covered, Orbax's bookkeeping too; a
# file added at the top of a bundle is not part of it; a truncated metadata file is a
# damaged bundle. Fault 10: the advice about --force is the same with and without it.

BOOKKEEPING = ["_CHECKPOINT_METADATA", "commit_success.txt", "meta/commit_success.txt"]


def _damage(bundle: pathlib.Path, rel: str, how: str) -> None:
  target = bundle / rel
  if how == "deleted":
    target.unlink()
  else:
    target.write_bytes(target.read_bytes()[:len(target.read_bytes()) // 2])


@pytest.fixture(scope="module")
def bookkeeping_runs(saved, tmp_path_factory):
  """``forget`` of damaged copies and into outputs ``--force`` would or would not replace."""
  root = tmp_path_factory.mktemp("bookkeeping")
  cases = {}

  def forget(name, source, output, *extra):
    cases[name] = dict(args=["forget", "--checkpoint", source, "--classes", "3",
                             "--output", output, "-q", *extra], watch=[source, output])

  for rel in BOOKKEEPING:
    for how in ("deleted", "truncated"):
      name = f"{rel}-{how}"
      source = pathlib.Path(shutil.copytree(saved, root / name.replace("/", "_")))
      _damage(source, rel, how)
      forget(name, source, root / f"out-{name.replace('/', '_')}")
  source = pathlib.Path(shutil.copytree(saved, root / "truncated-metadata"))
  _damage(source, "meta/metadata", "truncated")
  forget("metadata-truncated", source, root / "out-metadata")
  (root / "dangling").symlink_to(root / "nowhere")
  forget("dangling", saved, root / "dangling")
  (root / "a-file").write_text("not a bundle")
  for extra in ((), ("--force",)):
    forget(f"file{''.join(extra)}", saved, root / "a-file", *extra)
  (root / "demo" / "trained").mkdir(parents=True)  # Not a bundle: --force would not help.
  (root / "demo" / "trained" / "thesis.tex").write_text("mine")
  cases["demo"] = dict(args=["demo", "--output-dir", root / "demo", "-q"], watch=[root / "demo"])
  return run_commands(cases, memory_limit=MEMORY_LIMIT_KB << 10, timeout=300)


@pytest.mark.parametrize("how", ["deleted", "truncated"])
@pytest.mark.parametrize("rel", BOOKKEEPING)
def test_a_damaged_orbax_bookkeeping_file_is_refused_by_forget(bookkeeping_runs, rel, how):
  ran = bookkeeping_runs[f"{rel}-{how}"]
  words = "is missing" if how == "deleted" else "does not match the SHA-256"
  line = assert_refused(ran.result, words)
  assert rel in line and "truncated or corrupt" in line
  assert ran.after == ran.before  # Input unchanged, no output.


def test_a_truncated_metadata_file_is_a_damaged_bundle_not_a_foreign_one(bookkeeping_runs,
                                                                         tmp_path):
  ran = bookkeeping_runs["metadata-truncated"]
  line = assert_refused(ran.result, "truncated or corrupt")
  assert "meta/metadata" in line and "not a mnemonic-jax bundle" not in line
  assert ran.after == ran.before
  never = tmp_path / "never"  # Garbage metadata without arrays/: never was a bundle.
  (never / "meta").mkdir(parents=True)
  (never / "meta" / "metadata").write_text('{"format": "mnemonic-jax-bun')
  with pytest.raises(CheckpointError, match="is not a mnemonic-jax bundle"):
    load_bundle(never)


def test_force_advice_is_the_same_with_and_without_it(bookkeeping_runs):
  ran = bookkeeping_runs["dangling"]  # Replaceable: the advice to pass --force is right.
  line = assert_refused(ran.result, "pass --force")
  assert "symbolic link" in line and "does not exist" in line and "even with" not in line
  assert ran.after == ran.before
  for name in ("file", "file--force", "demo"):  # Not replaceable: not told to pass --force.
    ran = bookkeeping_runs[name]
    line = assert_refused(ran.result, "refusing to replace it, even with --force")
    assert "pass --force" not in line and ran.after == ran.before


def test_force_replaces_a_dangling_symlink_itself_never_what_it_names(saved, tmp_path):
  link, target = tmp_path / "out", tmp_path / "nowhere"
  link.symlink_to(target)
  save_bundle(link, load_bundle(saved), force=True)
  assert not link.is_symlink() and not os.path.lexists(target)
  assert load_bundle(link).num_classes == 10


def test_an_extra_file_in_meta_is_refused_one_at_the_top_is_ignored(copy):
  (copy / "README").write_text("my notes")  # The user's: not part of the bundle.
  (copy / "notes").mkdir()
  assert load_bundle(copy).num_classes == 10
  with pytest.raises(CheckpointError, match="also holds 'README'"):
    save_bundle(copy, _bundle(), force=True)  # Which would delete them.
  (copy / "meta" / "stray").write_text("x")
  with pytest.raises(CheckpointError, match="meta/stray is not among the files recorded"):
    load_bundle(copy)


def test_a_version_2_bundle_loads_quietly_without_bookkeeping_checksums(copy):
  """Its metadata and arrays are verified; warning on every load of every existing bundle
  about files that change nothing that loads would be noise."""
  def as_version_2(meta):
    del meta["bookkeeping_sha256"]
    meta.update(version=2)
    meta["meta_sha256"] = checkpointing.integrity.meta_checksum(meta)

  edit_meta(copy, as_version_2)
  (copy / "_CHECKPOINT_METADATA").unlink()  # Harmless to what loads; unverifiable here.
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    assert load_bundle(copy).num_classes == 10
  def as_current(meta):  # Declared current, its record without the bookkeeping checksums.
    meta.update(version=checkpointing.BUNDLE_VERSION)
    meta["meta_sha256"] = checkpointing.integrity.meta_checksum(meta)

  edit_meta(copy, as_current)
  with pytest.raises(CheckpointError, match="bookkeeping_sha256 missing"):
    load_bundle(copy)
