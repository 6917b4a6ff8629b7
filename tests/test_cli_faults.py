"""Faults 3 to 7 of issue #9, through the real ``mnemonic-jax`` command.

3. Integrity: array files carry SHA-256 checksums in the bundle's metadata (a flipped
   byte is refused, naming the file); metadata that disagrees with itself or with the
   arrays is refused.
4. Hostile sizes: every size read from a file (idx headers and labels, npy headers,
   bundle metadata, params files) is bounded before anything is allocated.
5. User errors are one line, not a traceback (config files that raise, return None or lack
   get_config; out-of-range config fields; corrupted metadata; a --mean longer than the
   channels), and configs are validated before anything is written.
6. Two ``train`` runs on one workdir: the second is refused while the first holds the lock.
7. Leftovers: stale staging and Orbax temporary directories are removed when safe; a refused
   or interrupted command prints one line on stderr, a successful one nothing; an
   unwritable output is refused before the work.

Every refused command must print exactly one line ``mnemonic-jax: error: ...`` on stderr,
nothing on stdout, exit with status 2 and leave every watched directory as it was. One
small bundle (digits, MLP 64-32-10) is trained in-process once per test run.
"""

import gzip
import json
import os
import pathlib
import shutil
import signal
import struct
import subprocess
import sys
import time

import flax.serialization
import jax
import numpy as np
import pytest

from mnemonic_jax import _files, checkpointing, errors, workflow
from mnemonic_jax.checkpointing import CheckpointError

from cli_support import assert_refused, run_commands, small_config as _config, tree_digest

REPO = pathlib.Path(__file__).resolve().parents[1]
CONFIG = REPO / "mnemonic_jax" / "configs" / "digits_mlp.py"
TIMEOUT_S = 300
#: Address-space limit of the subprocesses: a command that tries to allocate what a
#: hostile file declares fails with MemoryError instead of taking the machine down.
MEMORY_LIMIT = 4 << 30
_ENV: dict[str, str] = {}


@pytest.fixture(scope="module", autouse=True)
def compilation_cache(tmp_path_factory):
  """Lets the subprocesses share compiled programs (results are unchanged)."""
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
  """``mnemonic-jax ARGS`` under a shell's address-space limit (no fork of this process)."""
  return ["bash", "-c", f'ulimit -v {MEMORY_LIMIT >> 10} && exec "$@"', "mnemonic-jax",
          sys.executable, "-m", "mnemonic_jax.cli", *map(str, args)]


#: Runs ``python -m mnemonic_jax.cli ARGS`` with Ctrl-C handled as in a terminal, even when
#: the tests run with SIGINT ignored (a shell ignores it in jobs it starts in the
#: background, and children inherit that); set in the child, so that nothing forks here.
_INTERRUPTIBLE = ("import runpy, signal, sys; signal.signal(signal.SIGINT, "
                  "signal.default_int_handler); sys.argv[0] = 'mnemonic-jax'; "
                  "runpy.run_module('mnemonic_jax.cli', run_name='__main__')")


def interruptible(argv: list[str]) -> list[str]:
  """``argv`` (from :func:`command`) with its Python started by :data:`_INTERRUPTIBLE`."""
  at = argv.index("-m")
  assert argv[at + 1] == "mnemonic_jax.cli", argv
  return argv[:at] + ["-c", _INTERRUPTIBLE] + argv[at + 2:]


def run(*args, cwd=REPO) -> subprocess.CompletedProcess:
  """Runs ``mnemonic-jax ARGS`` to completion (memory-limited)."""
  return subprocess.run(command(*args), capture_output=True, text=True, env=_env(), cwd=cwd,
                        timeout=TIMEOUT_S, check=False)


def assert_ok(result: subprocess.CompletedProcess) -> None:
  assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"


@pytest.fixture(scope="module")
def trained(small_trained_copy) -> pathlib.Path:
  """A small trained bundle (saved by the code under test): this module's copy."""
  return small_trained_copy()


def meta_path(bundle: pathlib.Path) -> pathlib.Path:
  (path,) = [p for p in (bundle / "meta").iterdir() if p.name != "commit_success.txt"]
  return path


def copy_with_meta(source: pathlib.Path, dest: pathlib.Path, **changes) -> pathlib.Path:
  """A copy of a bundle whose JSON metadata has ``changes`` (a value of ... deletes)."""
  shutil.copytree(source, dest)
  path = meta_path(dest)
  meta = json.loads(path.read_text())
  for key, value in changes.items():
    if value is ...:
      meta.pop(key, None)
    else:
      meta[key] = value
  path.write_text(json.dumps(meta))
  return dest


def largest_array_file(bundle: pathlib.Path) -> pathlib.Path:
  return max((p for p in (bundle / "arrays").rglob("*") if p.is_file()),
             key=lambda p: p.stat().st_size)


def flip_low_bit(path: pathlib.Path) -> None:
  """Flips the lowest bit of a byte in the middle of a file (a float stays finite)."""
  data = bytearray(path.read_bytes())
  data[(len(data) // 2) & ~3] ^= 0x01
  path.write_bytes(bytes(data))


# --------------------------------------------------------------------------------------
# Refused commands: one line on stderr, exit 2, nothing on stdout, nothing touched.


def _write_config(path: pathlib.Path, body: str) -> pathlib.Path:
  path.write_text(body)
  return path


def _idx_bytes(array: np.ndarray, dims=None) -> bytes:
  """An idx file of ``array`` (uint8 or >i4), with ``dims`` in its header if given."""
  code = {np.dtype(np.uint8): 0x08, np.dtype(">i4"): 0x0C}[array.dtype]
  dims = array.shape if dims is None else dims
  return bytes([0, 0, code, len(dims)]) + struct.pack(f">{len(dims)}I", *dims) + array.tobytes()


def _idx_dir(directory: pathlib.Path, labels, *, split="train", images=None,
             gz=False) -> pathlib.Path:
  """A directory of idx files: 8x8 images (zeros) and the given labels."""
  directory.mkdir(parents=True, exist_ok=True)
  labels = np.asarray(labels, ">i4")
  if images is None:
    images = np.zeros((len(labels), 8, 8), np.uint8)
  prefix = {"train": "train", "test": "t10k"}[split]
  ext = ".gz" if gz else ""
  for kind, data in (("images-idx3", _idx_bytes(images)), ("labels-idx1", _idx_bytes(labels))):
    payload = gzip.compress(data) if gz else data
    (directory / f"{prefix}-{kind}-ubyte{ext}").write_bytes(payload)
  return directory


def _refused_cases(trained: pathlib.Path, root: pathlib.Path) -> dict[str, dict]:
  """name -> {args, words, watch (directories that must not change), absent (paths)}."""
  cases = {}

  def case_dir(name):
    directory = root / name
    directory.mkdir()
    return directory

  forget = ("forget", "--classes", "3", "--lambda1", "1e-3", "--lambda2", "10", "-q")

  # Fault 3: a flipped bit in an array file (the parameters stay finite).
  d = case_dir("flipped_bit")
  shutil.copytree(trained, d / "b")
  victim = largest_array_file(d / "b")
  flip_low_bit(victim)
  cases[d.name] = dict(args=(*forget, "--checkpoint", d / "b", "--output", d / "out"),
                       watch=[d], absent=[d / "out"],
                       words=f"array file {victim.relative_to(d / 'b').as_posix()} does not "
                             "match the SHA-256 checksum")

  # Fault 3: metadata that disagrees with the arrays or with itself.
  def meta_case(name, command, words, **changes):
    d = case_dir(name)
    bundle = copy_with_meta(trained, d / "b", **changes)
    if command == "forget":
      args = (*forget, "--checkpoint", bundle, "--output", d / "out", "--dataset", "digits")
    else:
      args = ("evaluate", "--checkpoint", bundle, "--dataset", "digits", "-q")
    cases[name] = dict(args=args, watch=[d], absent=[d / "out"], words=words)

  meta_case("meta_codes_dtype", "forget", "metadata (meta/metadata) does not match the SHA-256 "
            "checksum", codes_dtype="float16")  # Caught by the metadata's own checksum now.
  meta_case("meta_mean_longer_than_channels", "evaluate",
            "field 'mean' has 3 values for inputs of 1 channels", mean=[0.1, 0.2, 0.3])
  meta_case("meta_history_not_a_request", "evaluate", "field 'history' entry 0",
            history=[{"lambda1": 0.001}])
  meta_case("meta_history_class_out_of_range", "evaluate", "field 'history' entry 0",
            history=[{"classes": [12]}])
  meta_case("meta_class_names_count", "forget", "field 'class_names'",
            class_names=["a", "b", "c"])
  meta_case("meta_num_classes_string", "forget", "field 'num_classes'", num_classes="10")
  meta_case("meta_data_dir_number", "forget", "has data_dir 5",
            config={"data_dir": 5, "lambda1": 0.001, "lambda2": 10.0})

  # Fault 4: an idx label of 2^31-1 (the example: 2^31 class names, out of memory).
  d = case_dir("idx_label_2_31")
  data = _idx_dir(d / "data", [0, 1, 2 ** 31 - 1])
  _idx_dir(data, [0, 1, 2], split="test")
  cases[d.name] = dict(args=("evaluate", "--checkpoint", trained, "--dataset", f"idx:{data}",
                             "-q"), watch=[d], words="label 2147483647 would make 2147483648 "
                                                     "classes, more than the 100000")

  # Fault 4: labels making far more classes than there are examples.
  d = case_dir("idx_classes_beyond_examples")
  data = _idx_dir(d / "data", [0, 1, 99_999])
  _idx_dir(data, [0, 1, 2], split="test")
  cases[d.name] = dict(args=("evaluate", "--checkpoint", trained, "--dataset", f"idx:{data}",
                             "-q"), watch=[d], words="makes 100000 classes for only 6 labelled")

  # Fault 4: a gzip bomb behind a valid idx header (3 images, then 6 GB of zeros).
  d = case_dir("idx_gzip_bomb")
  data = _idx_dir(d / "data", [0, 1, 2], gz=True)
  _idx_dir(data, [0, 1, 2], split="test", gz=True)
  head = gzip.compress(_idx_bytes(np.zeros((3, 8, 8), np.uint8)))
  zeros = gzip.compress(bytes(1 << 20))
  (data / "t10k-images-idx3-ubyte.gz").write_bytes(head + zeros * 6000)
  cases[d.name] = dict(args=("evaluate", "--checkpoint", trained, "--dataset", f"idx:{data}",
                             "-q"), watch=[d], words="t10k-images-idx3-ubyte.gz holds more than")

  # Fault 4: an idx header declaring more than the file holds.
  d = case_dir("idx_header_beyond_file")
  data = _idx_dir(d / "data", [0, 1, 2], gz=True)
  _idx_dir(data, [0, 1, 2], split="test", gz=True)
  (data / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(
      _idx_bytes(np.zeros((3, 8, 8), np.uint8), dims=(2 ** 32 - 1, 2 ** 16, 2 ** 16))))
  cases[d.name] = dict(args=("evaluate", "--checkpoint", trained, "--dataset", f"idx:{data}",
                             "-q"), watch=[d], words="more than its")

  # Fault 4: a codes .npy file whose header declares 32 TiB.
  d = case_dir("npy_hostile_header")
  bundle = checkpointing.load_bundle(trained)
  (d / "x.msgpack").write_bytes(
      flax.serialization.to_bytes(jax.tree.map(np.asarray, bundle.params)))
  with open(d / "codes.npy", "wb") as f:
    np.lib.format.write_array_header_1_0(
        f, {"descr": "<f4", "fortran_order": False, "shape": (2 ** 20, 2 ** 20, 8, 1)})
    f.write(bytes(64))
  cases[d.name] = dict(
      args=("import", "--params", d / "x.msgpack", "--codes", d / "codes.npy", "--model",
            "mlp", "--model-kwargs", '{"hidden": [32]}', "--num-classes", "10",
            "--input-shape", "8,8,1", "--mean", "0", "--std", "1", "--output", d / "out",
            "-q"),
      watch=[d], absent=[d / "out"], words="codes have shape (1048576, 1048576, 8, 1), "
                                           "expected (10, 8, 8, 1)")

  # Fault 5: config files that raise, return None, lack get_config or take no variant.
  train = ("train", "-q")
  for name, body, spec, words in (
      ("config_raises", "raise RuntimeError('boom')\n", "", "RuntimeError: boom"),
      ("config_returns_none", "def get_config():\n  return None\n", "",
       "get_config() returned NoneType"),
      ("config_without_get_config", "CONFIG = {}\n", "", "defines no get_config()"),
      ("config_takes_no_variant", "def get_config():\n  return {}\n", ":quick",
       "get_config() takes no variant"),
      ("config_get_config_raises", "def get_config():\n  return {}['seed']\n", "",
       "get_config() raised KeyError"),
  ):
    d = case_dir(name)
    cfg = _write_config(d / "cfg.py", body)
    cases[name] = dict(args=(*train, "--config", f"{cfg}{spec}", "--workdir", d / "run"),
                       watch=[d], absent=[d / "run"], words=words)

  # Fault 5: config fields out of range, refused before the workdir is touched.
  tiny = ("--config.model_kwargs.hidden=(32,)", "--config.epochs=1")
  for name, override, words in (
      ("batch_size_0", "--config.batch_size=0", "config.batch_size=0 must be an integer"),
      ("batch_size_minus_4", "--config.batch_size=-4", "config.batch_size=-4 must be"),
      ("epochs_minus_1", "--config.epochs=-1", "config.epochs=-1 must be an integer in [1,"),
      ("seed_beyond_64_bits", f"--config.seed={2 ** 64}",
       f"config.seed={2 ** 64} must be an integer in [0, {2 ** 63 - 1}]"),
      ("learning_rate_inf", "--config.learning_rate=1e999",
       "config.learning_rate=inf must be a finite number > 0"),
      ("momentum_1", "--config.momentum=1.0", "config.momentum=1.0 must be a finite number in"),
      ("schedule_unknown", "--config.schedule=cosin", "unknown schedule 'cosin'"),
      ("batch_larger_than_data", "--config.batch_size=5000",
       "config.batch_size=5000 is larger than the 1438 training examples"),
      ("model_kwargs_unbuildable", "--config.model_kwargs.hidden=(0,)",
       "config.model 'mlp' with model_kwargs"),
  ):
    d = case_dir(name)
    field = override.split("=")[0]  # A field is given once (a repeated one is refused).
    small = tuple(given for given in tiny if given.split("=")[0] != field)
    cases[name] = dict(args=(*train, "--config", CONFIG, *small, override, "--workdir",
                             d / "run"), watch=[d], absent=[d / "run"], words=words)

  # Fault 5: a training checkpoint whose recorded config is corrupt (on resume).
  d = case_dir("train_step_config_corrupt")
  shutil.copytree(trained.parent / "train", d / "run" / "train")
  (step_meta,) = (d / "run" / "train").glob("*/meta/metadata")
  meta = json.loads(step_meta.read_text())
  meta["metadata"]["config"] = [1]
  meta["meta_sha256"] = checkpointing.meta_checksum(meta)  # Sealed again: only its config.
  step_meta.write_text(json.dumps(meta))
  # The run's own length (8 epochs of 22 steps), so that step 176 is one of its steps.
  cases[d.name] = dict(args=(*train, "--config", CONFIG, tiny[0], "--config.epochs=8",
                             "--config.batch_size=64", "--workdir", d / "run"),
                       watch=[d / "run" / "train"], absent=[d / "run" / "bundle"],
                       words="records a config of type list (corrupt)")

  # Fault 5: import with a --mean longer than the channels.
  d = case_dir("import_mean_longer_than_channels")
  (d / "x.msgpack").write_bytes(
      flax.serialization.to_bytes(jax.tree.map(np.asarray, bundle.params)))
  np.save(d / "codes.npy", np.asarray(bundle.codes))
  cases[d.name] = dict(
      args=("import", "--params", d / "x.msgpack", "--codes", d / "codes.npy", "--model",
            "mlp", "--model-kwargs", '{"hidden": [32]}', "--num-classes", "10",
            "--input-shape", "8,8,1", "--mean", "0.1,0.2,0.3", "--std", "0.3",
            "--output", d / "out", "-q"),
      watch=[d], absent=[d / "out"],
      words="normalisation mean has 3 values but the inputs have 1 channel")

  # Fault 7: an output that cannot be written is refused before any work.
  d = case_dir("forget_output_under_a_file")
  (d / "file").write_text("mine")
  cases[d.name] = dict(args=(*forget, "--checkpoint", trained, "--output", d / "file" / "out"),
                       watch=[d], words=f"cannot write {d / 'file' / 'out'}: {d / 'file'} is "
                                        "not a directory")
  d = case_dir("import_output_unwritable")
  (d / "x.msgpack").write_bytes(
      flax.serialization.to_bytes(jax.tree.map(np.asarray, bundle.params)))
  np.save(d / "codes.npy", np.asarray(bundle.codes))
  unwritable = _unwritable_dir(d)
  cases[d.name] = dict(
      args=("import", "--params", d / "x.msgpack", "--codes", d / "codes.npy", "--model",
            "mlp", "--model-kwargs", '{"hidden": [32]}', "--num-classes", "10",
            "--input-shape", "8,8,1", "--output", unwritable / "sub" / "out", "-q"),
      watch=[d], absent=[unwritable / "sub"], words=f"{unwritable} is not writable")
  d = case_dir("train_workdir_unwritable")
  unwritable = _unwritable_dir(d)
  cases[d.name] = dict(args=(*train, "--config", CONFIG, *tiny, "--workdir", unwritable / "run"),
                       watch=[d], absent=[unwritable / "run"],
                       words=f"{unwritable} is not writable")
  d = case_dir("demo_output_dir_under_a_file")
  (d / "file").write_text("mine")
  cases[d.name] = dict(args=("demo", "--output-dir", d / "file" / "demo", "--epochs", "1", "-q"),
                       watch=[d], words=f"{d / 'file'} is not a directory")
  return cases


def _unwritable_dir(parent: pathlib.Path) -> pathlib.Path:
  """A directory this process cannot create anything in (root ignores permissions: /proc)."""
  if os.geteuid() == 0:
    return pathlib.Path("/proc")
  directory = parent / "read-only"
  directory.mkdir()
  directory.chmod(0o555)
  return directory


REFUSED = [
    "flipped_bit", "meta_codes_dtype", "meta_mean_longer_than_channels",
    "meta_history_not_a_request", "meta_history_class_out_of_range",
    "meta_class_names_count", "meta_num_classes_string", "meta_data_dir_number",
    "idx_label_2_31", "idx_classes_beyond_examples", "idx_gzip_bomb", "idx_header_beyond_file",
    "npy_hostile_header",
    "config_raises", "config_returns_none", "config_without_get_config",
    "config_takes_no_variant", "config_get_config_raises", "batch_size_0", "batch_size_minus_4",
    "epochs_minus_1", "seed_beyond_64_bits", "learning_rate_inf", "momentum_1",
    "schedule_unknown", "batch_larger_than_data", "model_kwargs_unbuildable",
    "import_mean_longer_than_channels", "train_step_config_corrupt",
    "forget_output_under_a_file", "import_output_unwritable", "train_workdir_unwritable",
    "demo_output_dir_under_a_file",
]


@pytest.fixture(scope="module")
def refused_cases(trained, tmp_path_factory):
  """Every case's files, made once per worker, and its command run: name -> (case, Ran).

  The commands run in turn, each its own process forked after the imports
  (``cli_support.run_commands``, memory-limited), the trained bundle watched as well.
  """
  cases = _refused_cases(trained, tmp_path_factory.mktemp("refused"))
  assert sorted(cases) == sorted(REFUSED)
  ran = run_commands({name: dict(case, watch=[*case["watch"], trained])
                      for name, case in cases.items()}, memory_limit=MEMORY_LIMIT)
  return {name: (cases[name], ran[name]) for name in cases}


@pytest.mark.parametrize("name", REFUSED)
def test_refused_one_line_exit_2_nothing_touched(refused_cases, name):
  case, ran = refused_cases[name]
  assert_refused(ran.result, case["words"])
  assert ran.after[:-1] == ran.before[:-1], "a file was written or deleted"
  assert ran.after[-1] == ran.before[-1], "the trained bundle was modified"
  for path in case.get("absent", ()):
    assert not os.path.lexists(path), f"{path} was written"


# --------------------------------------------------------------------------------------
# Fault 3 in the library: checksums recorded, verified, old bundles still load.


def test_save_records_a_checksum_per_array_file_and_load_verifies_it(trained, tmp_path):
  meta = json.loads(meta_path(trained).read_text())
  files = sorted(p.relative_to(trained).as_posix()
                 for p in (trained / "arrays").rglob("*") if p.is_file())
  assert sorted(meta["array_sha256"]) == files
  assert checkpointing.array_checksums(trained) == meta["array_sha256"]
  checkpointing.load_bundle(trained)
  assert checkpointing.array_checksums(trained) == meta["array_sha256"]  # Loading only reads.

  damaged = {}
  for name in ("missing", "extra", "flipped"):
    damaged[name] = shutil.copytree(trained, tmp_path / name)
  victim = largest_array_file(damaged["missing"])
  victim.unlink()
  (damaged["extra"] / "arrays" / "d" / "stray").write_bytes(b"x")
  flip_low_bit(largest_array_file(damaged["flipped"]))
  for name, words in (("missing", "is missing"), ("extra", "arrays/d/stray is not among"),
                      ("flipped", "does not match the SHA-256")):
    with pytest.raises(CheckpointError, match=words) as info:
      checkpointing.load_bundle(damaged[name])
    assert str(damaged[name]) in str(info.value) and "\n" not in str(info.value)


def test_bundles_without_checksums_still_load(trained, tmp_path):
  old = copy_with_meta(trained, tmp_path / "old", array_sha256=..., meta_sha256=..., version=1)
  with pytest.warns(checkpointing.UnverifiedBundleWarning):  # Only a declared older format.
    bundle = checkpointing.load_bundle(old)
  assert bundle.num_classes == 10
  resaved = checkpointing.save_bundle(tmp_path / "resaved", bundle)
  assert "array_sha256" in json.loads(meta_path(resaved).read_text())


def test_load_bounds_the_metadata_file_before_reading_it(trained, tmp_path, monkeypatch):
  monkeypatch.setattr(checkpointing.bundle_format, "MAX_META_BYTES", 100)
  with pytest.raises(CheckpointError, match="more than the 100 a bundle's metadata may have"):
    checkpointing.load_bundle(trained)


@pytest.mark.parametrize("changes, words", [
    (dict(num_classes=True), "'num_classes' is True"),
    (dict(num_classes=10 ** 6), "'num_classes' is 1000000"),
    (dict(input_shape=[8, 8, 1, 1, 1]), "'input_shape' is [8, 8, 1, 1, 1]"),
    (dict(input_shape=[65536, 65536, 1]), "would hold 42949672960 elements"),
    (dict(mean=[True]), "'mean' holds [True]"),
    (dict(std="0.3"), "'std' is '0.3'"),
    (dict(history={"classes": [3]}), "'history' is {'classes': [3]}"),
    (dict(history=[{"classes": []}]), "'history' entry 0"),
    (dict(history=[{"classes": [True]}]), "'history' entry 0"),
    (dict(model_kwargs=[]), "'model_kwargs' is []"),
    (dict(model_name=""), "'model_name' is ''"),
    (dict(dataset=None), "'dataset' is None"),
    (dict(codes_dtype="int32"), "'codes_dtype' is 'int32'"),
    (dict(codes_dtype="no such dtype"), "'codes_dtype'"),
    (dict(class_names=[1] * 10), "'class_names'"),
    (dict(array_sha256={"../x": "0" * 64}), "'array_sha256'"),
    (dict(input_shape=...), "'input_shape' is missing"),
])
def test_load_refuses_every_corrupted_metadata_field(trained, tmp_path, changes, words):
  bundle = copy_with_meta(trained, tmp_path / "b", **changes)
  with pytest.raises(CheckpointError, match="bundle metadata field") as info:
    checkpointing.load_bundle(bundle)
  message = str(info.value)
  assert words in message and str(bundle) in message and "\n" not in message, message


def test_save_refuses_what_load_would_refuse(trained, tmp_path):
  bundle = checkpointing.load_bundle(trained)
  with pytest.raises(errors.BadRequestType, match="history entry 0 is of type int"):
    bundle.replace(history=(5,))  # Refused earlier still: when the bundle is made.
  for changes, words in (({"history": ({"classes": [10]},)}, "'history' entry 0"),
                         ({"mean": (0.1, 0.2)}, "'mean' has 2 values"),
                         ({"class_names": ("a",)}, "'class_names'")):
    with pytest.raises(CheckpointError, match=words):
      checkpointing.save_bundle(tmp_path / "b", bundle.replace(**changes))
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------------------
# Fault 4 in the library: sizes bounded before anything is allocated.


def test_import_bounds_an_orbax_params_directory_before_restoring_it(trained, tmp_path):
  import orbax.checkpoint as ocp  # pylint: disable=import-outside-toplevel

  bundle = checkpointing.load_bundle(trained)
  params = jax.tree.map(np.asarray, bundle.params)
  params["optimizer_junk"] = np.zeros(4_000_000, np.float32)  # Far beyond 16x the model.
  ckpt = ocp.StandardCheckpointer()
  ckpt.save(tmp_path / "params", {"params": params})
  ckpt.wait_until_finished()
  np.save(tmp_path / "codes.npy", np.asarray(bundle.codes))
  with pytest.raises(CheckpointError, match=r"declares arrays of 4002410 elements in all, more "
                                            r"than the \d+ a checkpoint of this model may hold"):
    checkpointing.import_params(
        tmp_path / "params", tmp_path / "codes.npy", model_name="mlp", num_classes=10,
        input_shape=(8, 8, 1), model_kwargs={"hidden": (32,)}, output=tmp_path / "out",
        mean=(0.0,), std=(1.0,))
  assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("num_classes, input_shape, words", [
    (0, (8, 8, 1), "num_classes 0 must be an integer in [1, 100000]"),
    (2 ** 31 - 1, (8, 8, 1), "num_classes 2147483647"),
    (10, (8, 8, 0), "input_shape is (8, 8, 0)"),
    (1000, (4096, 4096, 3), "would hold 50331648000 elements"),
])
def test_import_bounds_class_count_and_input_shape(tmp_path, num_classes, input_shape, words):
  with pytest.raises(CheckpointError) as info:
    checkpointing.import_params(tmp_path / "absent.msgpack", tmp_path / "absent.npy",
                                model_name="mlp", num_classes=num_classes,
                                input_shape=input_shape, output=tmp_path / "out")
  assert words in str(info.value)


# --------------------------------------------------------------------------------------
# Fault 5 in the library: one validation of every field, before anything is written.


def test_every_experiment_config_is_valid():
  import importlib  # pylint: disable=import-outside-toplevel

  from mnemonic_jax import configs  # pylint: disable=import-outside-toplevel

  modules = [f"mnemonic_jax.configs.{name}" for name in configs.available_configs()]
  for module in map(importlib.import_module, [*modules, "experiments.configs.robust_models"]):
    for variant in ("", "quick"):
      configs.validate_config(module.get_config(variant))


@pytest.mark.parametrize("field, value, words", [
    ("seed", -1, "config.seed=-1 must be an integer in [0,"),
    ("seed", 1.0, "config.seed=1.0 must be an integer"),
    ("dataset", "", "config.dataset='' must be a non-empty string"),
    ("model", "nope", "config.model='nope' is not a registered model"),
    ("model_kwargs", [32], "config.model_kwargs=[32] must be a group of fields"),
    ("epochs", 0, "config.epochs=0 must be an integer in [1,"),
    ("epochs", True, "config.epochs=True must be an integer"),
    ("batch_size", 2.0, "config.batch_size=2.0 must be an integer"),
    ("learning_rate", 0.0, "config.learning_rate=0.0 must be a finite number > 0"),
    ("learning_rate", "0.1", "config.learning_rate='0.1' must be a finite number > 0"),
    ("momentum", -0.1, "config.momentum=-0.1 must be a finite number in [0, 1)"),
    ("weight_decay", float("inf"), "config.weight_decay=inf must be a finite number >= 0"),
    ("t_mix", 1.5, "config.t_mix=1.5 must be a finite number in [0, 1]"),
    ("schedule", "linear", "unknown schedule 'linear'"),
    ("augment", 1, "config.augment=1 must be True or False"),
    ("code_distribution", "gaussian", "must be one of 'uniform', 'normal'"),
    ("checkpoint_every", 0, "config.checkpoint_every=0 must be an integer in [1,"),
    ("pad_to", 0, "config.pad_to=0 must be None or an integer"),
    ("data_dir", 5, "config.data_dir=5 must be a path"),
    ("stream", "yes", "config.stream='yes' must be True or False"),
    ("pretrained", 1, "config.pretrained=1 must be a path"),
    ("pretrained_skip", "Dense_1", "config.pretrained_skip='Dense_1' must be a tuple"),
    ("lambda1", -1.0, "config.lambda1=-1.0 must be 'auto' or a finite number > 0"),
    ("lambda2", "big", "config.lambda2='big' must be 'auto'"),
    ("forget_classes", (-1,), "config.forget_classes=(-1,) must be a tuple of class ids"),
    ("name", None, "config.name=None must be a non-empty string"),
])
def test_validate_config_checks_every_field(field, value, words):
  from mnemonic_jax import configs  # pylint: disable=import-outside-toplevel

  config = configs.paper_mlp_config("t", "digits").to_dict()
  configs.validate_config(config)
  config[field] = value
  with pytest.raises(configs.ConfigError) as info:
    configs.validate_config(config)
  assert words in str(info.value) and "\n" not in str(info.value), str(info.value)
  assert set(configs.FIELD_CHECKS) >= {"seed", "epochs", "batch_size", "learning_rate",
                                       "momentum", "weight_decay", "t_mix", "schedule",
                                       "model", "code_distribution", "checkpoint_every"}


def test_validate_config_refuses_missing_fields_and_non_configs():
  from mnemonic_jax import configs  # pylint: disable=import-outside-toplevel

  with pytest.raises(configs.ConfigError, match="the config has no field 'seed'"):
    configs.validate_config({"dataset": "digits", "model": "mlp"})
  with pytest.raises(configs.ConfigError, match="the config is NoneType"):
    configs.validate_config(None)


def test_library_train_validates_before_writing(tmp_path):
  from mnemonic_jax import configs  # pylint: disable=import-outside-toplevel

  for changes in ({"epochs": -1}, {"batch_size": 10_000}, {"model_kwargs": {"hidden": (0,)}}):
    with pytest.raises(configs.ConfigError):
      workflow.train(_config(**changes), tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def test_a_diverging_train_stops_with_one_line_and_writes_no_bundle(tmp_path):
  """A learning rate that makes the loss NaN or inf: the run stops at its next check (every
  100 steps here) with exit 2 and one line naming the fix; no bundle is written (before,
  it trained to the end, saved a NaN checkpoint and only then refused the bundle)."""
  workdir = tmp_path / "run"
  result = run_commands({"train": dict(args=(  # Forked after the imports.
      "train", "--config", CONFIG, "--config.model_kwargs.hidden=(32,)", "--config.epochs=30",
      "--config.learning_rate=1e9", "--workdir", workdir, "-q"))},
      memory_limit=MEMORY_LIMIT)["train"].result
  assert_refused(result, "training diverged: the mean loss of steps 1-100 is")
  assert "lower config.learning_rate (now 1000000000.0) and run again" in result.stderr
  assert not (workdir / "bundle").exists() and not list((workdir / "train").iterdir())


# --------------------------------------------------------------------------------------
# Fault 6: one train run per workdir.


def _wait_for_first_step(workdir: pathlib.Path, proc: subprocess.Popen,
                         timeout_s: float = 120.0, besides=frozenset()) -> None:
  """Waits until a run has saved a training checkpoint not in ``besides`` (it is mid-run)."""
  deadline = time.monotonic() + timeout_s
  while time.monotonic() < deadline:
    if (workdir / "train").is_dir() and any(
        p.name.isdigit() and p.name not in besides for p in (workdir / "train").iterdir()):
      return
    if proc.poll() is not None:
      raise AssertionError(f"the first run ended (exit {proc.returncode}) before its first "
                           f"checkpoint: {proc.stderr.read()}")
    time.sleep(0.02)
  raise AssertionError(f"the first run saved no checkpoint in {timeout_s} s")


def _wait_stopped(pid: int, timeout: float = 30.0) -> None:
  """Waits until every thread of ``pid`` is stopped (state ``T`` in /proc)."""
  deadline = time.monotonic() + timeout
  while time.monotonic() < deadline:
    states = []
    for task in pathlib.Path(f"/proc/{pid}/task").iterdir():
      try:
        states.append((task / "stat").read_text().rsplit(")", 1)[1].split()[0])
      except (OSError, IndexError):
        pass
    if states and all(s == "T" for s in states):
      return
    time.sleep(0.01)
  raise AssertionError(f"process {pid} did not stop")


@pytest.mark.slow  # Heavy (a command run or a big model); -m slow runs it.
def test_second_train_on_one_workdir_is_refused_while_the_first_runs(tmp_path):
  workdir = tmp_path / "run"
  args = ("train", "--config", CONFIG, "--config.model_kwargs.hidden=(32,)",
          "--config.epochs=10", "--config.checkpoint_every=50", "--workdir", workdir, "-q")
  first = subprocess.Popen(command(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, env=_env(), cwd=REPO)
  try:
    _wait_for_first_step(workdir, first)
    first.send_signal(signal.SIGSTOP)  # Mid-run (holding the lock) for as long as we need.
    _wait_stopped(first.pid)  # Every thread, so no background save writes during the check.
    before = tree_digest(workdir)
    second = run(*args)
    line = assert_refused(second, f"{workdir} is in use by another train run (process "
                                  f"{first.pid} holds {workdir / '.lock'})")
    assert "--workdir" in line and (workdir / ".lock").read_text() == f"{first.pid}\n"
    assert tree_digest(workdir) == before, "the refused run wrote into the workdir"
  finally:
    first.send_signal(signal.SIGCONT)
  out, err = first.communicate(timeout=TIMEOUT_S)
  assert first.returncode == 0, err
  assert err == "" and f"bundle: {workdir / 'bundle'}" in out
  bundle = checkpointing.load_bundle(workdir / "bundle")
  assert bundle.config["epochs"] == 10 and bundle.history == ()
  # The lock is released with the run: the same command now finds the run complete.
  assert_ok(run(*args))


def test_a_ctrl_c_that_orbax_swallows_still_stops_the_run(tmp_path, monkeypatch):
  """Orbax's wait_until_finished logs and drops a KeyboardInterrupt; the run must stop."""
  # pylint: disable-next=import-outside-toplevel
  from mnemonic_jax.checkpointing import train_checkpoints

  def swallowing_wait():
    try:
      os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C while Orbax waits...
      time.sleep(1.0)
    except BaseException:  # pylint: disable=broad-except
      pass  # ...caught as Orbax does.

  before = signal.signal(signal.SIGINT, signal.default_int_handler)  # As in a terminal.
  try:
    with train_checkpoints.TrainCheckpointer(tmp_path / "train") as manager:
      orbax_manager = manager._manager  # pylint: disable=protected-access
      monkeypatch.setattr(orbax_manager, "wait_until_finished", swallowing_wait)
      with pytest.raises(KeyboardInterrupt):
        manager.wait_until_finished()
      monkeypatch.undo()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # Put back.
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ignored (a background job): left ignored.
    with train_checkpoints._keep_interrupts():  # pylint: disable=protected-access
      os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
  finally:
    signal.signal(signal.SIGINT, before)


def test_workdir_lock_is_exclusive_and_released(tmp_path):
  with checkpointing.workdir_lock(tmp_path / "w") as lock:
    assert lock.read_text().strip() == str(os.getpid())
    with pytest.raises(CheckpointError, match=f"process {os.getpid()} holds"):
      with checkpointing.workdir_lock(tmp_path / "w"):
        pass
  with checkpointing.workdir_lock(tmp_path / "w"):
    pass


# --------------------------------------------------------------------------------------
# Fault 7: leftovers removed; stderr holds one line on failure and nothing on success.


@pytest.mark.slow  # Heavy (a command run or a big model); -m slow runs it.
def test_sigterm_saves_the_train_at_its_next_check_and_the_same_command_resumes(tmp_path):
  """A preemption notice (SIGTERM) to a one-process train that saves every 1000 steps and
  checks every 100: it saves the step of its next check, says so in one line, exits 143,
  and the same command resumes from that step to the end."""
  workdir = tmp_path / "run"
  args = ("train", "--config", CONFIG, "--config.model_kwargs.hidden=(32,)",
          "--config.epochs=60", "--config.checkpoint_every=1000", "--workdir", workdir, "-q")
  proc = subprocess.Popen(command(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, env=_env(), cwd=REPO)
  metrics = workdir / "metrics.jsonl"
  try:
    deadline = time.monotonic() + TIMEOUT_S
    while not (metrics.is_file() and metrics.read_text().strip()):
      assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
      time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=TIMEOUT_S)
  finally:
    proc.kill()
  steps = sorted(int(p.name) for p in (workdir / "train").iterdir() if p.name.isdigit())
  assert proc.returncode == 143 and out == "", (proc.returncode, out, err)
  assert len(steps) == 1 and steps[0] % 100 == 0, steps
  assert err == (f"mnemonic-jax: error: stopped by SIGTERM: step {steps[0]} is saved in "
                 f"{workdir / 'train'}; run the same command to resume\n"), err
  again = run(*args)
  assert_ok(again)
  lines = [json.loads(line) for line in metrics.read_text().splitlines()]
  assert lines[-1]["epoch"] == 60 and lines[-1]["step"] > steps[0], (lines[-1], steps)
  assert (workdir / "bundle").is_dir()


@pytest.mark.slow  # Heavy (a command run or a big model); -m slow runs it.
def test_interrupted_train_says_one_line_and_its_leftovers_go_on_resume(tmp_path):
  workdir = tmp_path / "run"
  args = ("train", "--config", CONFIG, "--config.model_kwargs.hidden=(32,)",
          "--config.epochs=30", "--config.checkpoint_every=1", "--workdir", workdir, "-q")
  for attempt in range(2):  # A fresh run, then a resumed one.
    steps = set(p.name for p in (workdir / "train").iterdir()) if attempt else set()
    proc = subprocess.Popen(interruptible(command(*args)), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=_env(), cwd=REPO)
    try:
      _wait_for_first_step(workdir, proc, besides=steps)
      time.sleep(0.5)  # Saving every step: an asynchronous save is in flight.
      proc.send_signal(signal.SIGINT)
      _, err = proc.communicate(timeout=TIMEOUT_S)
    finally:
      proc.kill()
    assert proc.returncode == 130 and err == "mnemonic-jax: error: interrupted\n", err

  # What killed saves leave: staging directories of the bundle (of a dead process on this
  # machine, and one of an older release, an hour old) and an unfinished Orbax step.
  dead = subprocess.Popen([sys.executable, "-c", "pass"])
  dead.wait()
  host = _files.HOST_TAG
  stale = [workdir / f".bundle.saving-{host}-{dead.pid}-0123abcd",
           workdir / f".bundle.saving-{host}-{dead.pid}-0123abcd.orbax-checkpoint-tmp-17",
           workdir / ".bundle.saving-89abcdef", workdir / "train" / "9999.orbax-checkpoint-tmp-5"]
  for path in stale:
    path.mkdir()
    (path / "data").write_bytes(b"half a save")
  old = time.time() - 7200
  os.utime(workdir / ".bundle.saving-89abcdef", (old, old))
  live = workdir / f".bundle.saving-{host}-{os.getpid()}-fedcba98"  # A save in progress.
  live.mkdir()

  # Resumed (saving rarely now: how often a run saves is not part of its config).
  again = run(*[a.replace("checkpoint_every=1", "checkpoint_every=1000") for a in map(str, args)])
  assert_ok(again)
  assert again.stderr == "", again.stderr
  for path in stale:
    assert not path.exists(), f"{path.name} was left"
  assert live.is_dir(), "a live process's staging directory was removed"
  assert not [p for p in (workdir / "train").iterdir() if "tmp" in p.name]
  assert checkpointing.load_bundle(workdir / "bundle").config["epochs"] == 30


def test_forget_removes_stale_staging_beside_its_output_and_is_quiet(trained, tmp_path):
  dead = subprocess.Popen([sys.executable, "-c", "pass"])
  dead.wait()
  host = _files.HOST_TAG
  stale = tmp_path / f".out.saving-{host}-{dead.pid}-0123abcd.orbax-checkpoint-tmp"
  stale.mkdir()
  other = tmp_path / f".other.saving-{host}-{dead.pid}-0123abcd"  # Another output's: kept.
  other.mkdir()
  result = run_commands({"forget": dict(args=(  # Forked after the imports.
      "forget", "--checkpoint", trained, "--classes", "3", "--output", tmp_path / "out",
      "--lambda1", "1e-3", "--lambda2", "10", "-q"))}, memory_limit=MEMORY_LIMIT)["forget"].result
  assert_ok(result)
  assert result.stderr == "", result.stderr
  assert sorted(p.name for p in tmp_path.iterdir()) == [other.name, "out"]


@pytest.mark.slow  # A command run for a cosmetic promise; -m slow runs it.
def test_the_command_line_silences_orbax_logging_not_the_import():
  child = (
      "import logging\n"
      "from mnemonic_jax import checkpointing\n"
      "assert not logging.getLogger('absl').filters, 'an import changed logging'\n"
      "from mnemonic_jax.cli import quiet\n"
      "quiet.quiet_libraries()\n"
      "assert logging.getLogger('absl').filters\n")
  proc = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True,
                        env=_env(), cwd=REPO, timeout=TIMEOUT_S, check=False)
  assert proc.returncode == 0, proc.stderr
