"""Whole programs kept on disk across processes (``_jit.PersistentProgram``, issue #9).

A kept program must never change a result: loaded or compiled, forgetting gives the same
bits as without the cache; a damaged or stale entry is compiled again; keys that a later
process could not reproduce (closures, meshes, users' functions) are never kept.
"""

import hashlib
import pathlib

import jax
import numpy as np
import pytest
from jax.experimental.compilation_cache import compilation_cache as jax_cache

import mnemonic_jax as mj
from mnemonic_jax import _jit, compilation_cache, lambda_search

from codes_support import mlp_fitted_to_codes

GRID = ((1e-3, 1e-2, 1e-1), (1.0, 10.0, 100.0))


@pytest.fixture(scope="module")
def model():
  return mlp_fitted_to_codes(4, 8, steps=100)


@pytest.fixture()
def program_dir(tmp_path):
  """Programs kept in ``tmp_path/programs`` for the test; none kept, none in memory after.

  JAX's own persistent cache is off meanwhile: an earlier test of this process may have
  turned it on (``cli.main`` does), and a program it already holds is used but not kept
  here (see ``PersistentProgram._compile``), which would make these tests depend on their
  order. The interplay of the two caches is the subprocess test's.
  """
  enabled = jax.config.jax_enable_compilation_cache
  jax.config.update("jax_enable_compilation_cache", False)
  jax_cache.reset_cache()
  _jit.clear_cache()
  _jit.set_program_cache(tmp_path / "programs")
  yield tmp_path / "programs"
  _jit.set_program_cache(None)
  _jit.clear_cache()
  jax.config.update("jax_enable_compilation_cache", enabled)
  jax_cache.reset_cache()


def _forget(model, lambdas):
  apply_fn, params, codes = model
  if lambdas == "auto":
    return lambda_search.forget_auto(apply_fn, params, codes, [1], grid=GRID)
  return mj.forget(apply_fn, params, codes, [1], *lambdas)


def _same_bits(a, b) -> bool:
  leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
  return len(leaves_a) == len(leaves_b) and all(
      np.asarray(x).dtype == np.asarray(y).dtype and np.array_equal(np.asarray(x), np.asarray(y))
      for x, y in zip(leaves_a, leaves_b))


def _intact(blob: bytes) -> bool:
  """Whether a kept program's header and checksum are right."""
  cut = len(_jit._FORMAT) + 32
  return (blob[:len(_jit._FORMAT)] == _jit._FORMAT
          and hashlib.sha256(blob[cut:]).digest() == blob[len(_jit._FORMAT):cut])


def _files(directory: pathlib.Path) -> dict[str, bytes]:
  return {p.name: p.read_bytes() for p in directory.glob("*.bin")} if directory.is_dir() else {}


@pytest.mark.parametrize("lambdas", [(1e-2, 10.0), "auto"])
def test_kept_and_loaded_programs_give_the_same_bits(model, program_dir, monkeypatch, lambdas):
  _jit.set_program_cache(None)
  expected, expected_report = _forget(model, lambdas)  # No cache.
  _jit.clear_cache()
  _jit.set_program_cache(program_dir)
  compiled, _ = _forget(model, lambdas)  # Compiled and written.
  written = _files(program_dir)
  assert written
  loads = []
  read = _jit._read_program
  monkeypatch.setattr(_jit, "_read_program", lambda *a: loads.append(read(*a)) or loads[-1])
  _jit.clear_cache()  # As a new process: nothing in memory, everything on disk.
  loaded, report = _forget(model, lambdas)
  assert loads and all(c is not None for c in loads)  # Every program came from disk.
  assert _files(program_dir) == written  # Nothing compiled again.
  assert _same_bits(compiled, expected) and _same_bits(loaded, expected)
  assert (report.lambda1, report.lambda2, report.sign) == (
      expected_report.lambda1, expected_report.lambda2, expected_report.sign)


def test_a_damaged_entry_is_compiled_again_and_replaced(model, program_dir):
  expected, _ = _forget(model, (1e-2, 10.0))
  written = _files(program_dir)
  for damage in ("truncated", "one bit flipped"):
    for name, blob in written.items():
      broken = blob[:len(blob) // 2] if damage == "truncated" else blob[:-1] + bytes(
          [blob[-1] ^ 1])
      (program_dir / name).write_bytes(broken)
    _jit.clear_cache()
    again, _ = _forget(model, (1e-2, 10.0))
    assert _same_bits(again, expected), damage
    rewritten = _files(program_dir)
    assert rewritten.keys() == written.keys()
    assert all(_intact(blob) for blob in rewritten.values()), damage


def test_another_fingerprint_reads_another_entry(model, program_dir, monkeypatch):
  expected, _ = _forget(model, (1e-2, 10.0))
  first = set(_files(program_dir))
  _jit.clear_cache()
  # Another version of this package, of JAX or of the devices: other file names.
  monkeypatch.setattr(_jit, "_fingerprint", "another package source")
  again, _ = _forget(model, (1e-2, 10.0))
  assert _same_bits(again, expected)
  assert first < set(_files(program_dir))


def test_without_a_cache_nothing_is_written(model, program_dir, tmp_path):
  _jit.set_program_cache(None)
  _forget(model, (1e-2, 10.0))
  assert not program_dir.exists()
  compilation_cache.configure_compilation_cache(None)  # --no-compilation-cache
  assert _jit.program_cache_dir() is None
  try:
    where = compilation_cache.configure_compilation_cache(tmp_path / "cc")
    assert _jit.program_cache_dir() == where / compilation_cache.PROGRAMS
  finally:
    compilation_cache.configure_compilation_cache(None)
    jax.config.update("jax_enable_compilation_cache", True)


def test_a_call_inside_a_trace_is_inlined_not_loaded(program_dir):
  program = _jit.cached(("apply-move",), lambda: jax.jit(lambda x: x + 1.0))
  assert isinstance(program, _jit.PersistentProgram)
  assert float(jax.jit(lambda x: program(x) * 2.0)(np.float32(1.0))) == 4.0
  assert not _files(program_dir)


def test_only_keys_every_process_can_reproduce_are_kept():
  model = mj.create_model("mlp", 4, hidden=(8,))
  static, _ = _jit.split_callable(mj.inference_apply_fn(model, {}))
  key = ("forget", static, None, "auto", None)
  same = _jit.split_callable(mj.inference_apply_fn(mj.create_model("mlp", 4, hidden=(8,)), {}))
  assert _jit.describe(key) is not None
  assert _jit.describe(key) == _jit.describe(("forget", same[0], None, "auto", None))
  other = _jit.split_callable(mj.inference_apply_fn(mj.create_model("mlp", 4, hidden=(9,)), {}))
  assert _jit.describe(key) != _jit.describe(("forget", other[0], None, "auto", None))
  mesh = jax.sharding.Mesh(np.array(jax.devices()[:1]), ("data",))
  offset = 1.0

  def closure(params, x):
    return x + offset

  def plain(params, x):  # Defined in a test module: its code is not in the key.
    return x

  for part in (mesh, closure, plain, lambda p, x: x, object()):
    assert _jit.describe(("forget", part)) is None, part
  assert not isinstance(_jit.cached(("forget", plain), lambda: jax.jit(plain)),
                        _jit.PersistentProgram)


#: One "process" of the command: JAX's cache in argv[1], kept programs on or off (argv[2]),
#: forgetting with fixed lambdas or the search (argv[3]); prints a digest of the result.
PROCESS = """
import hashlib, sys
import jax, numpy as np
from jax.experimental.compilation_cache import compilation_cache as jax_cache

import mnemonic_jax as mj
from mnemonic_jax import _jit, compilation_cache, lambda_search
compilation_cache.configure_compilation_cache(sys.argv[1])
if sys.argv[2] == "off":
  _jit.set_program_cache(None)
model = mj.create_model("mlp", 4, hidden=(8,))
codes = mj.generate_codes(jax.random.key(0), 4, (4, 4, 1))
params = model.init(jax.random.key(1), codes)["params"]
apply_fn = mj.inference_apply_fn(model, {})
if sys.argv[3] == "auto":
  new, _ = lambda_search.forget_auto(apply_fn, params, codes, [1], grid=(
      (1e-3, 1e-2, 1e-1), (1.0, 10.0, 100.0)))
else:
  new, _ = mj.forget(apply_fn, params, codes, [1], 1e-2, 10.0)
print(hashlib.sha256(b"".join(np.asarray(x).tobytes() for x in jax.tree.leaves(new))).hexdigest())
"""


@pytest.mark.slow  # Five processes (~15 s).
def test_programs_kept_after_jaxs_cache_filled_load_and_run(tmp_path):
  """JAX's cache holds the plain programs first (as after an upgrade): the kept ones,
  compiled afresh under their own names, load in a later process and give the same bits
  (an executable that JAX's cache loaded, serialized again, fails to run on the CPU)."""
  import subprocess
  import sys

  def run(kept: str, lambdas: str) -> str:
    result = subprocess.run([sys.executable, "-c", PROCESS, str(tmp_path / "cc"), kept,
                             lambdas], capture_output=True, text=True, timeout=300,
                            check=False, cwd=pathlib.Path(__file__).resolve().parents[1])
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()

  for lambdas in ("fixed", "auto"):
    plain = run("off", lambdas)  # Fills JAX's cache only.
    assert run("on", lambdas) == plain  # Compiles afresh, keeps the programs.
    assert _files(tmp_path / "cc" / compilation_cache.PROGRAMS)
    assert run("on", lambdas) == plain  # Loads them.
