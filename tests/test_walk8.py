"""walk8 F3-F7: a workdir of another config's run is refused without advice to move or
delete what that run wrote; workdir_lock never has two holders; class names that print alike
or break a line are refused."""

import os
import shutil
import types

import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cli_support import assert_refused, config_file, run_commands, small_config
from mnemonic_jax import checkpointing, errors
from mnemonic_jax.checkpointing import imports, train_checkpoints
from mnemonic_jax.models import create_model

#: small_config(): 176 steps (22 an epoch, 8 epochs); epochs=6 ends at step 132.
CONFIG = small_config()


def test_another_config_on_a_finished_workdir_is_never_told_to_move_or_delete_it(
    small_trained_copy, tmp_path):
  """F3: rerun with another config, a finished workdir said to move its bundle away ('the
  same command then writes the run's own bundle'); done so, the same command said to delete
  the run's final checkpoint (step 176, past this run's 132). Both now name the config
  change and advise a new workdir or the run's own config, exit 2, nothing modified. A step
  of another run copied in after this run's own steps is still named, to take away."""
  workdir = small_trained_copy().parent
  moved = tmp_path / "moved"
  shutil.copytree(workdir, moved, symlinks=True)
  shutil.move(moved / "bundle", tmp_path / "kept_bundle")  # What the old advice said.
  other = config_file(tmp_path, small_config(epochs=6))
  ran = run_commands({name: dict(args=("train", "-q", "--config", other, "--workdir", w),
                                 watch=[w]) for name, w in (("finished", workdir),
                                                            ("moved", moved))})
  for name, w in (("finished", workdir), ("moved", moved)):
    line = assert_refused(ran[name].result, f"{w} holds a run with another config (epochs: 8 "
                                            "-> 6); use a new workdir to train this config, "
                                            "or the workdir's own config")
    advice = line.split(" holds a run ", 1)[1]
    assert "delete" not in advice and "move" not in advice, line
    assert ran[name].before == ran[name].after, name


@pytest.mark.parametrize("meanwhile", ["removed", "replaced"])
def test_workdir_lock_never_holds_a_lock_file_removed_before_it_locked(tmp_path, monkeypatch,
                                                                       meanwhile):
  """F7: a refused run removes the lock file it created while holding it. A process that
  opened that file before and locked it after held a file no one else sees, and the next
  run created a new one and locked that too: two runs in one workdir. Simulated here: the
  file at .lock removed (or replaced by the next run's) between this call's open and its
  flock. The lock now taken is the one at .lock: a second run is refused as in use."""
  path = tmp_path / "run" / checkpointing.LOCK_FILE
  real = train_checkpoints.fcntl
  calls = []

  def flock(fd, operation):
    if not calls:  # Between the first open and its lock, another run puts its workdir back.
      path.unlink()
      if meanwhile == "replaced":
        path.write_text("4242\n")
    calls.append(fd)
    return real.flock(fd, operation)

  monkeypatch.setattr(train_checkpoints, "fcntl", types.SimpleNamespace(
      flock=flock, LOCK_EX=real.LOCK_EX, LOCK_NB=real.LOCK_NB))
  with checkpointing.workdir_lock(tmp_path / "run"):
    assert len(calls) == 2  # The orphaned file let go, the one at .lock locked.
    assert path.read_text() == f"{os.getpid()}\n"
    with pytest.raises(checkpointing.CheckpointError, match="is in use by another train run"):
      with checkpointing.workdir_lock(tmp_path / "run"):
        pass


def _import(tmp_path, class_names):
  """import_params of a 3-class MLP on 2x2 images into ``tmp_path/out``."""
  params = create_model("mlp", 3, hidden=(4,)).init(jax.random.key(0), jnp.zeros((1, 2, 2, 1)))
  path = tmp_path / "p.msgpack"
  path.write_bytes(flax.serialization.to_bytes(params))
  return checkpointing.import_params(
      path, np.zeros((3, 2, 2, 1), np.float32), model_name="mlp", model_kwargs={"hidden": (4,)},
      num_classes=3, input_shape=(2, 2, 1), output=tmp_path / "out", mean=(0.0,), std=(1.0,),
      class_names=class_names)


def test_a_0d_array_of_class_names_is_refused_as_other_non_sequences(tmp_path):
  """F5: np.array('abc') passed the 'sequence or array' test, then list() raised a bare
  TypeError ('iteration over a 0-d array')."""
  with pytest.raises(errors.BadRequestType, match="a sequence of str.*got ndarray"):
    _import(tmp_path, np.array("abc"))
  assert not (tmp_path / "out").exists()


@pytest.mark.filterwarnings("ignore::mnemonic_jax.checkpointing.CodesNotLearnedWarning")
def test_class_names_that_print_alike_or_break_a_line_are_refused(tmp_path):
  """F4: only space around a name and control characters were refused. Names with a
  zero-width space ('a' beside 'a\\u200b'), NFC beside NFD, a lone combining mark, a line
  separator, a bidi override or 10,000 characters passed. Case-distinct names stay allowed."""
  refused = {
      ("a", "a\u200b", "b"): "class 1, 'a\\\\u200b', holds an invisible format character "
                             r"\(U\+200B\)",
      ("\u200b", "a", "b"): "class 0, '\\\\u200b', holds an invisible",
      ("\u00e9", "e\u0301", "b"): r"classes 0 and 1, '\\xe9' and 'e\\u0301', print alike",
      ("a b", "a\u00a0b", "c"): "classes 0 and 1, 'a b' and 'a\\\\xa0b', print alike",
      ("\u0301", "a", "b"): r"class 0, '\\u0301', starts with a combining mark \(U\+0301\)",
      ("a\u2028b", "a", "b"): r"class 0, 'a\\u2028b', holds a line separator \(U\+2028\)",
      ("ab\u202ec", "a", "b"): r"holds an invisible format character \(U\+202E\)",
      ("x" * 10_000, "a", "b"): r"class 0, 'x+\.\.\., has 10000 characters, more than 200",
  }
  for names, words in refused.items():
    with pytest.raises(checkpointing.CheckpointError, match=words):
      _import(tmp_path, names)
    assert not (tmp_path / "out").exists()
  out = _import(tmp_path, ("A", "a", "x" * imports.MAX_CLASS_NAME_CHARS))
  assert checkpointing.load_bundle(out).class_names[:2] == ("A", "a")


def test_the_import_command_refuses_such_class_names_too(tmp_path):
  """F4 through the real command: --class-names goes through import_params' check; one
  line, exit 2, nothing written."""
  params = create_model("mlp", 3).init(jax.random.key(0), jnp.zeros((1, 2, 2, 1)))
  (tmp_path / "p.msgpack").write_bytes(flax.serialization.to_bytes(params))
  np.save(tmp_path / "codes.npy", np.zeros((3, 2, 2, 1), np.float32))
  command = ("import", "--model", "mlp", "--params", tmp_path / "p.msgpack", "--codes",
             tmp_path / "codes.npy", "--num-classes", "3", "--input-shape", "2,2,1", "--mean",
             "0", "--std", "1", "--output", tmp_path / "out", "--class-names")
  words = {"a,a\u200b,b": "holds an invisible format character (U+200B)",
           "\u00e9,e\u0301,b": "print alike",
           "a\u2028b,c,d": "holds a line separator (U+2028)"}
  ran = run_commands({value: dict(args=(*command, value), cwd=tmp_path, watch=[tmp_path])
                      for value in words})
  for value, said in words.items():
    assert_refused(ran[value].result, said)
    assert ran[value].before == ran[value].after, value


def test_a_lock_file_that_is_a_directory_is_named_so(tmp_path):
  """F6: a .lock directory got 'cannot open the lock file ... (Is a directory); remove it if
  it is a link'; a link still gets the link advice."""
  (tmp_path / "run" / checkpointing.LOCK_FILE).mkdir(parents=True)
  with pytest.raises(checkpointing.CheckpointError,
                     match=r"\.lock is a directory, not a lock file; remove it, or use"):
    with checkpointing.workdir_lock(tmp_path / "run"):
      pass
  (tmp_path / "other").mkdir()
  (tmp_path / "other" / checkpointing.LOCK_FILE).symlink_to(tmp_path / "target")
  with pytest.raises(checkpointing.CheckpointError, match="remove it if it is a link"):
    with checkpointing.workdir_lock(tmp_path / "other"):
      pass
  assert not (tmp_path / "target").exists()
