"""Command-line faults of a fresh engineer's walk (walk_cli_faults F3-F7, F11-F14), each
fixed as a kind, through the real commands (:func:`cli_support.run_commands`).

* The machine and the process: ``JAX_PLATFORMS=cuda`` without a GPU (an AssertionError
  traceback), a closed stdout (an AttributeError traceback, exit 120) or an unusable
  stderr (exit 1): one line and the documented status.
* The operating system named for what it refuses: a bundle this user may not read is not
  "corrupt, re-create it"; a bundle that ``--force`` could only half-delete is refused
  before the work (it left a hidden half-copy beside the output, reported as success); a
  symbolic link loop is not "does not exist".
* Messages and reports: a Python warning is one line ``warning: ...`` (not the
  ``warnings`` module's source dump), no pybind11 repr in an error, a newline in a path
  escaped wherever a path is printed, a repeated ``--config.FIELD`` and empty values
  refused like every other option.

Runs as root too: file modes are met by running the command without root's capabilities
that bypass them (``cli_under --without-file-override``).
"""

import json
import os
import pathlib
import shutil
import warnings

import flax.serialization
import jax
import numpy as np
import pytest

from cli_support import REPO, assert_refused, run_commands, write_idx
from mnemonic_jax import checkpointing, configs, errors
from mnemonic_jax.checkpointing import outputs

def _under(*setup, args):
  """A :func:`run_commands` case running ``mnemonic-jax ARGS`` after ``cli_under``'s SETUP
  (``tests/cli_under.py``: run from this folder, the first on the child's ``sys.path``)."""
  return dict(module="cli_under", args=(*setup, "--", *args), cwd=REPO / "tests")


@pytest.fixture(scope="module")
def base(tiny_digits_bundle, tmp_path_factory):
  """A bundle on disk (the tiny digits MLP), never modified."""
  return checkpointing.save_bundle(tmp_path_factory.mktemp("faults3") / "base",
                                   tiny_digits_bundle[0])


def _copy(bundle: pathlib.Path, dest: pathlib.Path) -> pathlib.Path:
  shutil.copytree(bundle, dest, symlinks=True)
  return dest


def _version_1(bundle: pathlib.Path, dest: pathlib.Path) -> pathlib.Path:
  """A copy of ``bundle`` in the older format version 1 (no checksums: loads with an
  UnverifiedBundleWarning)."""
  _copy(bundle, dest)
  meta = dest / "meta" / "metadata"
  fields = json.loads(meta.read_text())
  fields["version"] = 1
  for key in ("array_sha256", "bookkeeping_sha256", "meta_sha256"):
    fields.pop(key, None)
  meta.write_text(json.dumps(fields))
  return dest


def _biggest_array_file(bundle: pathlib.Path) -> pathlib.Path:
  files = [p for p in (bundle / "arrays").rglob("*") if p.is_file()]
  return max(files, key=lambda p: p.stat().st_size)


def _one_line(result, code: int) -> str:
  """The single stderr line of a command that ended with ``code``."""
  lines = result.stderr.splitlines()
  assert result.returncode == code, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
  assert len(lines) == 1 and result.stderr.endswith("\n"), result.stderr
  assert lines[0].startswith("mnemonic-jax: error: "), lines[0]
  return lines[0]


def _has_nvidia_gpu() -> bool:
  return os.path.exists("/dev/nvidia0") or bool(
      os.path.isdir("/proc/driver/nvidia/gpus") and os.listdir("/proc/driver/nvidia/gpus"))


# --------------------------------------------------------------------------------------
# F3, F6: the machine and the process's own streams.


@pytest.mark.skipif(_has_nvidia_gpu(), reason="JAX_PLATFORMS=cuda starts on this machine")
def test_jax_platforms_cuda_without_a_gpu_is_one_line(base, tmp_path):
  """JAX skips cuda when it sees no NVIDIA GPU and, left with no backend, failed its own
  ``assert``: a traceback, exit 1 (gpu, tpu and bogus names got the line)."""
  out = tmp_path / "out"
  ran = run_commands({
      "evaluate": dict(args=("evaluate", "-q", "--checkpoint", base), watch=[base]),
      "forget": dict(args=("forget", "-q", "--checkpoint", base, "--classes", "3", "--output",
                           out), watch=[base])}, env={"JAX_PLATFORMS": "cuda"})
  for name, case in ran.items():
    line = assert_refused(case.result, "environment: JAX cannot start its backend (no device "
                          "of the platforms asked for was found)")
    assert "JAX_PLATFORMS='cuda'" in line and "set it to one this machine has" in line, name
    assert case.before == case.after, name
  assert not out.exists()


def test_closed_or_unwritable_standard_streams_keep_their_statuses(base, tmp_path):
  """``>&-``: Python leaves ``sys.stdout`` None; writing the report raised AttributeError
  (a traceback, exit 120) after the output was saved. ``2>&-`` and ``2>/dev/full`` made a
  bad-input error exit 1 (the failed write of the error line raised)."""
  out, absent = tmp_path / "out", tmp_path / "absent"
  ran = run_commands({
      "forget, stdout closed": _under("--close-stdout", args=(
          "forget", "-q", "--checkpoint", base, "--classes", "3", "--output", out)),
      "evaluate, stdout closed": _under("--close-stdout", args=(
          "evaluate", "-q", "--checkpoint", base)),
      "bad input, stderr closed": _under("--close-stderr", args=(
          "evaluate", "-q", "--checkpoint", absent)),
      "bad input, stderr full": _under("--stderr-to", "/dev/full", args=(
          "evaluate", "-q", "--checkpoint", absent)),
  })
  line = _one_line(ran["forget, stdout closed"].result, 3)
  assert line.endswith(f"error: the report could not be written to stdout (stdout is closed), "
                       f"but {out} was written and is complete (its history records what was "
                       f"done; 'mnemonic-jax evaluate --checkpoint {out}' reads it)"), line
  assert checkpointing.load_bundle(out).history[-1]["classes"] == [3]
  line = _one_line(ran["evaluate, stdout closed"].result, 2)
  assert line.endswith("error: cannot write the report to stdout: stdout is closed"), line
  for name in ("bad input, stderr closed", "bad input, stderr full"):
    result = ran[name].result
    assert (result.returncode, result.stdout, result.stderr) == (2, "", ""), (name, result)
  assert not absent.exists() and sorted(os.listdir(tmp_path)) == ["out"]


# --------------------------------------------------------------------------------------
# F4, F5, F13: what the operating system refuses, named for what it is.


@pytest.fixture
def modes_restored(tmp_path):
  """Puts back write and read permission under ``tmp_path`` after the test (so that a
  non-root test run can remove it)."""
  yield
  for dirpath, dirnames, filenames in os.walk(tmp_path):
    for name in dirnames:
      os.chmod(os.path.join(dirpath, name), 0o755)
  for dirpath, _, filenames in os.walk(tmp_path):
    for name in filenames:
      full = os.path.join(dirpath, name)
      if not os.path.islink(full):
        os.chmod(full, 0o644)


@pytest.mark.slow  # 3-4.5 s: the default suite stays under 5 minutes.
def test_permission_denied_is_named_and_a_bundle_force_could_not_remove_is_refused(
    base, tmp_path, modes_restored):
  """As a user the files' modes apply to (root without its overrides, cli_under).

  Unreadable bundles were "corrupt; re-create the bundle" (F5). ``--force`` over a bundle
  whose folders are read-only swapped the new bundle in, then failed to delete the old
  one and left it half-deleted in a hidden ``.OUT.saving-*`` folder, with exit 0 (F4).
  """
  def denied(name, *parts, mode):
    copy = _copy(base, tmp_path / name)
    (copy.joinpath(*parts) if parts else copy).chmod(mode)
    return copy

  probe = tmp_path / "probe"
  probe.write_text("x")
  probe.chmod(0)
  cases = {"probe": _under("--without-file-override", "--check-denied", probe, args=())}
  readers = {
      "metadata file": denied("nr_meta", "meta", "metadata", mode=0),
      "meta folder": denied("nr_meta_dir", "meta", mode=0),
      "arrays folder unsearchable": denied("nr_arrays", "arrays", mode=0o600),
      "bundle folder": denied("nr_bundle", mode=0),
  }
  array_file = _copy(base, tmp_path / "nr_array_file")
  _biggest_array_file(array_file).chmod(0)
  readers["array file"] = array_file
  for name, bundle in readers.items():
    cases[name] = _under("--without-file-override", args=("evaluate", "-q", "--checkpoint",
                                                          bundle))
  params = tmp_path / "params"  # A folder of parameters to import, one folder in it closed.
  (params / "sub").mkdir(parents=True)
  (params / "sub").chmod(0)
  codes = tmp_path / "codes.npy"
  np.save(codes, np.zeros((10, 8, 8, 1), np.float32))
  cases["import params folder"] = _under("--without-file-override", args=(
      "import", "--params", params, "--codes", codes, "--model", "mlp", "--num-classes", "10",
      "--input-shape", "8,8,1", "--mean", "0", "--std", "1", "--output", tmp_path / "imported"))
  read_only = {"arrays read-only": _copy(base, tmp_path / "ro_arrays"),
               "bundle read-only": _copy(base, tmp_path / "ro_bundle")}
  os.chmod(read_only["arrays read-only"] / "arrays", 0o555)
  for sub in (read_only["bundle read-only"] / "arrays").rglob("*"):
    if sub.is_dir():
      sub.chmod(0o555)
  os.chmod(read_only["bundle read-only"], 0o555)
  for name, out in read_only.items():
    for force in ((), ("--force",)):
      cases[f"{name} {force}"] = dict(
          _under("--without-file-override", args=(
              "forget", "-q", "--checkpoint", base, "--classes", "3", "--output", out, *force)),
          watch=[tmp_path])
  ran = run_commands(cases)
  if ran["probe"].result.returncode != 0:
    pytest.skip("file modes cannot be met here (no capability to drop, or no capset)")

  for name, bundle in readers.items():
    line = assert_refused(ran[name].result, ": permission denied; check its permissions "
                          "(ls -l) and those of the folders above it, or run as a user who "
                          "may read it")
    assert f"cannot read {bundle}" in line, (name, line)
    assert "corrupt" not in line and "re-create" not in line, (name, line)
  assert_refused(ran["import params folder"].result, f"cannot read {params / 'sub'}: "
                 "permission denied; check its permissions")
  assert f"cannot read {readers['array file']}/arrays/" in ran["array file"].result.stderr
  assert f"cannot read {readers['arrays folder unsearchable']}/arrays:" in \
      ran["arrays folder unsearchable"].result.stderr

  for name, out in read_only.items():
    folder = out / "arrays" if name == "arrays read-only" else out
    for force in ((), ("--force",)):
      case = ran[f"{name} {force}"]
      line = assert_refused(case.result, f"{out} exists but its folder {folder} may not be "
                            "changed (permission denied): replacing the bundle would leave the "
                            "old one half-deleted beside the new; make it writable (chmod -R "
                            f"u+w {out}) or choose another output")
      assert "--force" not in line, line  # It would not help.
      assert case.before == case.after, f"{name} {force}: something was written or deleted"
  assert not [p for p in os.listdir(tmp_path) if p.startswith(".")]


def test_an_old_bundle_that_cannot_be_removed_is_warned_of(tmp_path, monkeypatch):
  """What the check before the work cannot foresee (an immutable file, modes changed
  meanwhile) leaves part of the old bundle behind: said, with where, never silently."""
  old, output = tmp_path / ".out.saving-x", tmp_path / "out"
  (old / "arrays").mkdir(parents=True)
  (old / "arrays" / "stuck").write_text("x")
  output.mkdir()

  def rmtree(path, onerror):
    onerror(os.unlink, os.path.join(path, "arrays", "stuck"),
            (PermissionError, PermissionError(1, "Operation not permitted"), None))

  monkeypatch.setattr(outputs.shutil, "rmtree", rmtree)
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    outputs._remove_old(old, output)
  assert [w.category for w in caught] == [checkpointing.OldBundleLeftWarning]
  assert str(caught[0].message) == (
      f"{output} was replaced, but the old bundle could not be removed entirely "
      f"({old}/arrays/stuck: operation not permitted); what is left of it is {old}: remove "
      "it yourself")


def test_symbolic_link_loops_and_dangling_links_are_named(tiny_digits_bundle, base,
                                                          tmp_path):
  """A loop was "does not exist; check the path" (``--checkpoint``) or "not a regular file
  (a FIFO, a device or a folder?)" (``--config``)."""
  (tmp_path / "l1").symlink_to("l2")
  (tmp_path / "l2").symlink_to("l1")
  (tmp_path / "dangling").symlink_to("nowhere")
  loop, dangling, out = tmp_path / "l1", tmp_path / "dangling", tmp_path / "out"
  codes, params = tmp_path / "codes.npy", tmp_path / "params.msgpack"
  np.save(codes, np.zeros((10, 8, 8, 1), np.float32))
  params.write_bytes(flax.serialization.to_bytes(
      jax.tree.map(np.asarray, tiny_digits_bundle[0].params)))
  import_args = ("import", "--codes", codes, "--model", "mlp", "--model-kwargs",
                 '{"hidden": [32]}', "--num-classes", "10", "--input-shape", "8,8,1", "--mean",
                 "0", "--std", "1", "--output", out)
  ran = run_commands({
      "checkpoint loop": dict(args=("evaluate", "--checkpoint", loop)),
      "checkpoint dangling": dict(args=("forget", "--checkpoint", dangling, "--classes", "3",
                                        "--output", out)),
      "config loop": dict(args=("train", "--config", loop, "--workdir", out)),
      "config dangling": dict(args=("train", "--config", dangling, "--workdir", out)),
      "params loop": dict(args=(*import_args, "--params", loop)),
      "codes loop": dict(args=(*import_args[:2], loop, *import_args[3:], "--params", params)),
  })
  loop_words = ": a symbolic link loop (the links lead back to themselves); fix or remove " \
               "the symbolic link"
  for name in ("checkpoint loop", "params loop"):
    assert_refused(ran[name].result, f"error: {loop}{loop_words}")
  assert_refused(ran["config loop"].result, f"error: config file {loop}{loop_words}")
  assert_refused(ran["codes loop"].result, f"error: cannot open {loop}{loop_words}")
  assert_refused(ran["checkpoint dangling"].result, f"error: {dangling} is a symbolic link to "
                 "'nowhere', which does not exist; check the path")
  assert_refused(ran["config dangling"].result, f"error: config file {dangling} is a symbolic "
                 "link to 'nowhere', which does not exist; pass a python file")
  assert not out.exists()


# --------------------------------------------------------------------------------------
# F7: warnings and the messages of other libraries.


def test_a_warning_is_one_line_of_the_report_and_no_internal_repr_is_shown(base, tmp_path):
  """A version-1 bundle's UnverifiedBundleWarning was the ``warnings`` module's dump on
  stderr (the tool's source path and line, then the line of code): a bad-input error was
  3 lines. A truncated array file's error quoted tensorstore's pybind11 repr."""
  v1 = _version_1(base, tmp_path / "v1")
  truncated = _version_1(base, tmp_path / "v1_truncated")
  big = _biggest_array_file(truncated)
  os.truncate(big, big.stat().st_size // 2)
  current_truncated = _copy(base, tmp_path / "truncated")
  big = _biggest_array_file(current_truncated)
  os.truncate(big, big.stat().st_size // 2)
  ran = run_commands({
      "evaluate": dict(args=("evaluate", "-q", "--checkpoint", v1), watch=[v1]),
      "evaluate --json": dict(args=("evaluate", "-q", "--checkpoint", v1, "--json")),
      "truncated": dict(args=("evaluate", "-q", "--checkpoint", truncated)),
      "current": dict(args=("evaluate", "-q", "--checkpoint", current_truncated)),
  })
  said = (f"warning: {v1}: a bundle of the older format version 1, loaded with its metadata, "
          "its array files and Orbax's bookkeeping files not verified by checksums")
  result = ran["evaluate"].result
  assert result.returncode == 0 and result.stderr == "", result.stderr
  assert result.stdout.splitlines()[0].startswith(said), result.stdout
  assert ran["evaluate"].before == ran["evaluate"].after
  result = ran["evaluate --json"].result
  assert result.returncode == 0 and result.stderr == "", result.stderr
  report = json.loads(result.stdout)  # Nothing else on stdout: the warning is inside.
  assert len(report["warnings"]) == 1 and said.startswith("warning: ")
  assert report["warnings"][0].startswith(said[len("warning: "):]), report["warnings"]

  result = ran["truncated"].result
  line = _one_line(result, 2)
  assert result.stdout.splitlines() == [result.stdout.splitlines()[0]]  # The warning alone.
  assert f"{truncated}: the checkpoint is truncated or corrupt (" in line, line
  for internal in ("pybind11", "bound method", "TensorStore(", "See full TensorStore"):
    assert internal not in line, line
  # A current bundle's damage is caught by its checksums first: no library text at all.
  line = _one_line(ran["current"].result, 2)
  assert "pybind11" not in line and "does not match the SHA-256 checksum" in line, line


def test_one_line_drops_tensorstore_internals_and_object_reprs():
  """In-process: the library's messages quote other libraries' errors through _one_line."""
  from mnemonic_jax.checkpointing._common import _one_line

  try:
    try:
      raise ValueError("OUT_OF_RANGE: Error reading \"params/0.0\": byte range [2328, 239659) "
                       "is not valid for value of size 1000")
    except ValueError as cause:
      raise Exception("Encountered error while reading array index: (slice(0, 64, 1),). See "
                      "full TensorStore details: <bound method pybind11_detail_function_"
                      "record_v1.spec of TensorStore({\n  'base': {}\n})>.") from cause
  except Exception as e:  # pylint: disable=broad-except
    wrapped = e
  assert _one_line(wrapped) == ("OUT_OF_RANGE: Error reading \"params/0.0\": byte range "
                                "[2328, 239659) is not valid for value of size 1000")
  assert _one_line(ValueError("cannot use <foo.Bar object at 0x7f12ab>")) == "cannot use foo.Bar"


# --------------------------------------------------------------------------------------
# F11: a path on one line wherever it is printed.


def test_a_newline_in_a_path_is_escaped_in_errors_reports_and_warnings(base, tmp_path):
  """The error line was cut at the newline (``error: /tmp/.../no``, the reason lost);
  reports printed it raw, so one item took two lines."""
  folder = tmp_path / "dir\nwith"
  folder.mkdir()
  src = _copy(base, folder / "b")
  v1 = _version_1(base, folder / "v1")
  out = tmp_path / "nl\nname"
  shown = lambda path: str(path).replace("\n", "\\n")  # noqa: E731
  ran = run_commands({
      "missing": dict(args=("evaluate", "-q", "--checkpoint", tmp_path / "no\nsuch")),
      "forget": dict(args=("forget", "-q", "--checkpoint", src, "--classes", "3", "--output",
                           out)),
      "again": dict(args=("forget", "-q", "--checkpoint", src, "--classes", "3", "--output",
                          out)),
      "warning": dict(args=("evaluate", "-q", "--checkpoint", v1)),
  })
  assert_refused(ran["missing"].result, f"error: {shown(tmp_path / 'no')}\\nsuch does not "
                 "exist; check the path")
  stdout = ran["forget"].result.stdout
  assert ran["forget"].result.returncode == 0, ran["forget"].result.stderr
  assert f"forgot class 3 from {shown(src)}\n" in stdout and f"\nwrote {shown(out)}\n" in stdout
  assert_refused(ran["again"].result, f"error: {shown(out)} already exists; pass --force")
  lines = ran["warning"].result.stdout.splitlines()
  assert lines[0].startswith(f"warning: {shown(v1)}: a bundle of the older"), lines
  assert lines[1].startswith(f"{shown(v1)} on digits test ("), lines
  for case in ran.values():
    assert "\n" not in case.result.stderr.rstrip("\n")


# --------------------------------------------------------------------------------------
# F12, F13, F14: options given twice, empty, or told about the wrong command.


def test_repeated_overrides_and_empty_configs_are_refused_in_one_line(base, tmp_path):
  """``--config.epochs=1 --config.epochs=2`` trained 2 epochs silently (every other option
  given twice is refused); ``--config ''`` was "'<cwd>' is not a regular file"."""
  work = tmp_path / "w"
  train = ("train", "-q", "--config", "digits_mlp:quick", "--workdir", work)
  empty = "is empty (an unset shell variable?)"
  cases = {
      "override twice": ((*train, "--config.epochs=1", "--config.epochs=2"),
                         "--config.epochs given 2 times; give it once"),
      "override twice, spaced": ((*train, "--config.epochs", "1", "--config.epochs=1"),
                                 "--config.epochs given 2 times; give it once"),
      "config empty": (("train", "--config", "", "--workdir", work),
                       f"argument --config: {empty}"),
      "config blank": (("train", "--config", " ", "--workdir", work),
                       f"argument --config: {empty}"),
      "config variant only": (("train", "--config", ":quick", "--workdir", work),
                              "argument --config: ':quick' names a variant but no config"),
  }
  _assert_all_refused(cases, base)
  assert not work.exists()


def test_empty_names_and_datasets_that_do_not_fit_are_refused_in_one_line(base, tmp_path):
  """``--dataset ''`` evaluated on the bundle's dataset with exit 0 (an unset ``$DS``); a
  dataset of other classes was told to "evaluate on" the right one, in ``forget`` too."""
  out = tmp_path / "out"
  codes = tmp_path / "codes.npy"
  np.save(codes, np.zeros((10, 8, 8, 1), np.float32))
  images = np.zeros((24, 8, 8), np.uint8)
  idx = tmp_path / "twelve"
  for split in ("train", "test"):
    write_idx(idx, split, images, np.arange(24) % 12)
  imp = ("import", "--params", base, "--codes", codes, "--num-classes", "10",
         "--input-shape", "8,8,1", "--mean", "0", "--std", "1", "--output", out)
  empty = "is empty (an unset shell variable?)"
  cases = {
      "evaluate dataset": (("evaluate", "--checkpoint", base, "--dataset", ""),
                           f"argument --dataset: {empty}"),
      "forget dataset": (("forget", "--checkpoint", base, "--classes", "3", "--output", out,
                          "--dataset", ""), f"argument --dataset: {empty}"),
      "attach dataset": (("attach-codes", "--checkpoint", base, "--output", out, "--dataset",
                          " "), f"argument --dataset: {empty}"),
      "import dataset": ((*imp, "--model", "mlp", "--dataset", ""),
                         f"argument --dataset: {empty}"),
      "import model": ((*imp, "--model", ""), f"argument --model: {empty}"),
      "evaluate split": (("evaluate", "--checkpoint", base, "--split", ""),
                         f"argument --split: {empty}"),
      "forget 12 classes": (("forget", "-q", "--checkpoint", base, "--classes", "3",
                             "--output", out, "--dataset", f"idx:{idx}"),
                            f"dataset idx:{idx} has 12 classes but the model has 10; name the "
                            "dataset the model was trained on"),
  }
  _assert_all_refused(cases, base)
  assert not out.exists()


def _assert_all_refused(cases, base):
  """Runs ``name -> (args, words)``: each refused in one line holding ``words``, ``base``
  unchanged."""
  ran = run_commands({name: dict(args=args, watch=[base]) for name, (args, _) in cases.items()})
  for name, (_, words) in cases.items():
    line = assert_refused(ran[name].result, words)
    assert "evaluate on" not in line, line
    assert ran[name].before == ran[name].after, name


def test_the_config_loader_refuses_repeated_and_empty_specs():
  """In-process, for the runners that share the loader (experiments.table)."""
  with pytest.raises(configs.ConfigError, match=r"^--config\.model_kwargs\.hidden given 2 "
                     "times; give it once$"):
    configs.split_overrides(["--config.model_kwargs.hidden=(3,)", "--config.model_kwargs.hidden",
                             "(4,)"])
  assert configs.split_overrides(["--config.epochs=1", "--", "--config.epochs=2"]) == (
      ["--", "--config.epochs=2"], [("epochs", "1")])
  for spec in ("", "  ", ":quick"):
    with pytest.raises(configs.ConfigError, match="names no config"):
      configs.load_config(spec)
  assert isinstance(configs.ConfigError("x"), errors.BadConfig)


def test_escape_and_shown_are_the_one_escaping():
  from mnemonic_jax import _files
  from mnemonic_jax.cli import report

  assert _files.shown(pathlib.Path("/a/no\nsuch\x1b[2J")) == "/a/no\\nsuch\\x1b[2J"
  assert _files.escape(_files.escape("a\nb")) == "a\\nb"  # Twice: nothing more.
  assert report.printable("a\nb\tc", keep="\n") == "a\nb\\tc"
