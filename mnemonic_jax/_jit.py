"""Compile once: cached jitted programs, callables split into code and arrays, timing.

The public entry points (:func:`mnemonic_jax.forget`, the Fishers, the data-free search)
build their programs around the caller's ``apply_fn``. A program is built and jitted
once per *static* configuration (the ``apply_fn``'s code, microbatch size, Fisher method,
mesh) and kept in a small LRU cache; ``jax.jit`` then compiles it once per argument
signature (shapes, dtypes, shardings). Everything that changes between calls without
changing the program (parameters, codes, class masks, lambdas, and the arrays an
``apply_fn`` closes over when it is a pytree such as
:class:`mnemonic_jax.bundle.InferenceApply`) is a traced argument, never a constant.

Across processes, JAX's persistent compilation cache skips XLA's compilation but not
JAX's tracing and lowering, which dominate a second ``mnemonic-jax forget``. The programs
named in :data:`PERSISTENT_PROGRAMS` can also be kept whole, as compiled executables, in
a folder of that cache (:func:`set_program_cache`, which the command line calls): see
:class:`PersistentProgram`.
"""

import collections
import contextlib
import dataclasses
import hashlib
import importlib.metadata
import os
import pathlib
import pickle
import sys
import threading
import time
import types
from typing import Any, Callable, Hashable

import jax
import numpy as np

PyTree = Any

# ----------------------------------------------------------------------------------------
# A callable as (static part, array leaves).


def split_callable(fn: Callable) -> tuple[Hashable, list[Any]]:
  """Splits a callable pytree into a hashable static part and its array leaves.

  A plain function is all static (it is hashed by identity); a registered pytree, such as
  :class:`mnemonic_jax.bundle.InferenceApply`, keeps its arrays apart so that they can be
  traced arguments of a jitted program instead of constants baked into it.

  Returns:
    ``(static, arrays)``; :func:`merge_callable` puts them back together.
  """
  leaves, treedef = jax.tree.flatten(fn)
  is_array = [isinstance(x, (jax.Array, np.ndarray)) for x in leaves]
  static = (treedef, tuple(Static(x) if not a else None for x, a in zip(leaves, is_array)))
  return static, [x for x, a in zip(leaves, is_array) if a]


def merge_callable(static: Hashable, arrays: list[Any]) -> Callable:
  """The inverse of :func:`split_callable` (``arrays`` may be tracers)."""
  treedef, leaves = static
  arrays = iter(arrays)
  return treedef.unflatten([next(arrays) if x is None else x.value for x in leaves])


class Static:
  """A static value, hashed by value where it can be and by identity otherwise.

  (A Flax module with a list attribute, for instance, cannot be hashed.)
  """

  __slots__ = ("value", "_key")

  def __init__(self, value):
    self.value = value
    try:
      hash(value)
      self._key = (True, value)
    except TypeError:
      self._key = (False, id(value))

  def __hash__(self):
    return hash(self._key)

  def __eq__(self, other):
    if not isinstance(other, Static) or self._key[0] != other._key[0]:
      return False
    return self._key[1] == other._key[1] if self._key[0] else self.value is other.value


def signature(tree: PyTree) -> Hashable:
  """Structure, shapes and dtypes of a pytree of arrays (the key of shape-only checks)."""
  leaves, treedef = jax.tree.flatten(tree)
  return treedef, tuple((np.shape(x), str(getattr(x, "dtype", type(x)))) for x in leaves)


# ----------------------------------------------------------------------------------------
# A small LRU cache of programs and of shape-only checks.

_MAXSIZE = 64
_cache: collections.OrderedDict = collections.OrderedDict()
_lock = threading.Lock()


def cached(key: Hashable, make: Callable[[], Any]) -> Any:
  """``make()`` the first time ``key`` is seen, the kept value afterwards (LRU, 64 kept).

  A jitted program whose key names one of :data:`PERSISTENT_PROGRAMS` and describes it
  across processes (:func:`describe`) comes back as a :class:`PersistentProgram`.
  """
  with _lock:
    if key in _cache:
      _cache.move_to_end(key)
      return _cache[key]
  value = make()
  if (isinstance(key, tuple) and key and key[0] in PERSISTENT_PROGRAMS
      and hasattr(value, "lower")):
    description = describe(key)
    if description is not None:
      value = PersistentProgram(value, description)
  with _lock:
    _cache[key] = value
    while len(_cache) > _MAXSIZE:
      _cache.popitem(last=False)
  return value


def clear_cache() -> None:
  """Forgets every cached program and check (tests; or to release closed-over arrays)."""
  with _lock:
    _cache.clear()


# ----------------------------------------------------------------------------------------
# Compiled programs kept on disk across processes.

#: The cached programs (by the first entry of their :func:`cached` key) kept on disk when
#: a program cache is set: the forgetting program, the data-free search's and the robust
#: moves' (:mod:`mnemonic_jax.robust`, the default move among them). Each is a pure
#: function of its key and its arguments' types; its code lives in this package.
PERSISTENT_PROGRAMS = frozenset({"forget", "search-prepare", "search-score", "apply-move",
                                 "robust", "robust-move", "robust-direction", "robust-scores"})

#: Modules whose functions, classes and Flax modules may be named in a kept program's key:
#: their code is covered by the key (this package's source, the others' versions).
_TRUSTED = ("mnemonic_jax", "flax", "jax", "jaxlib", "numpy", "optax", "chex", "builtins")
_VERSIONED = ("jax", "jaxlib", "flax", "numpy", "optax", "chex")
_FORMAT = b"mnemonic-jax program v1\n"
_program_dir: pathlib.Path | None = None
_fingerprint: str | None = None


def set_program_cache(directory: "os.PathLike | str | None") -> None:
  """Keeps the compiled programs of :data:`PERSISTENT_PROGRAMS` in ``directory`` (None: not).

  The command line points it at a folder of the persistent compilation cache
  (:func:`mnemonic_jax.compilation_cache.configure_compilation_cache`), so that the flag
  and environment that move or disable that cache do the same to this one. Like JAX's
  cache, the folder holds executables that are loaded and run: it must be the user's own.
  """
  global _program_dir
  _program_dir = None if directory is None else pathlib.Path(directory)


def program_cache_dir() -> pathlib.Path | None:
  """The folder set by :func:`set_program_cache`, or None."""
  return _program_dir


def describe(value: Any) -> str | None:
  """A description of a program key that is the same in every process, or None.

  Numbers, strings, tuples, pytree structures, :class:`Static` values, dataclasses and
  Flax modules (their fields) are described by value; functions and classes by their
  qualified names, and only those of :data:`_TRUSTED` modules that are not closures. Any
  other part (a mesh, an object hashed by identity, a user's function or model, whose
  code the key would not cover) makes the whole key undescribable: its program is then
  not kept on disk.
  """
  try:
    return _describe(value)
  except _Undescribable:
    return None


class _Undescribable(Exception):
  pass


def _trusted_name(obj: Any) -> str:
  module, name = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
  if (not isinstance(module, str) or not isinstance(name, str) or "<" in name
      or module.split(".")[0] not in _TRUSTED):
    raise _Undescribable(obj)
  return f"{module}.{name}"


def _describe(value: Any) -> str:
  if value is None or isinstance(value, (bool, int, float, complex, str, bytes)):
    return f"{type(value).__name__}:{value!r}"
  if isinstance(value, (tuple, list)):
    return f"{type(value).__name__}({','.join(_describe(v) for v in value)})"
  if isinstance(value, jax.tree_util.PyTreeDef):
    node = value.node_data()
    if node is None:
      return "leaf" if value.num_leaves == 1 else "none"
    kind, aux = node
    children = ",".join(_describe(c) for c in value.children())
    return f"tree[{_trusted_name(kind)}|{_describe(aux)}]({children})"
  if isinstance(value, Static):
    return _describe(value.value)
  if isinstance(value, (np.dtype, np.generic)):
    return f"np:{value!r}"
  if isinstance(value, type):
    return _trusted_name(value)
  if isinstance(value, (types.FunctionType, types.BuiltinFunctionType)):
    if getattr(value, "__closure__", None):
      raise _Undescribable(value)
    return _trusted_name(value)
  if dataclasses.is_dataclass(value):  # Flax modules included.
    fields = []
    for field in dataclasses.fields(value):
      if field.name == "parent":  # A bound or nested module: not described.
        if getattr(value, "parent", None) is not None:
          raise _Undescribable(value)
        continue
      fields.append(f"{field.name}={_describe(getattr(value, field.name))}")
    return f"{_trusted_name(type(value))}({','.join(fields)})"
  wrapped = getattr(value, "__wrapped__", None)  # A jitted function of a trusted module.
  if callable(value) and isinstance(wrapped, types.FunctionType):
    return f"wrapped:{_trusted_name(type(value))}:{_describe(wrapped)}"
  raise _Undescribable(value)


def _arguments(args: tuple) -> str | None:
  """Types, shapes, dtypes and placements of a call's arguments; None if not describable."""
  leaves, treedef = jax.tree.flatten(args)
  parts = []
  for x in leaves:
    if isinstance(x, jax.core.Tracer):
      return None  # Called inside another trace: inlined there, not loaded.
    if isinstance(x, jax.Array):
      if not x.is_fully_addressable:
        return None
      parts.append(f"A{x.shape}{x.dtype}w{int(x.weak_type)}c{int(x.committed)}{x.sharding!r}")
    elif isinstance(x, (np.ndarray, np.generic)):
      parts.append(f"N{np.shape(x)}{x.dtype}")
    elif type(x) in (bool, int, float, complex):
      parts.append(f"P{type(x).__name__}")
    else:
      return None
  try:
    return f"{_describe(treedef)}|{';'.join(parts)}"
  except _Undescribable:
    return None


def fingerprint() -> str:
  """What every kept program depends on besides its key and arguments (once a process).

  The versions of Python, JAX, jaxlib and the libraries whose code is traced, a hash of
  this package's source files, the devices and processes, JAX's configuration and the
  ``XLA_*`` environment variables.
  """
  global _fingerprint
  if _fingerprint is None:
    digest = hashlib.sha256(_FORMAT)
    package = pathlib.Path(__file__).resolve().parent
    for path in sorted(package.rglob("*.py")):
      digest.update(path.relative_to(package).as_posix().encode() + b"\0")
      digest.update(path.read_bytes() + b"\0")
    versions = [sys.version, jax.__version__]
    for name in _VERSIONED[1:]:
      try:
        versions.append(f"{name}={importlib.metadata.version(name)}")
      except importlib.metadata.PackageNotFoundError:
        versions.append(f"{name}=none")
    devices = [(d.platform, d.device_kind, d.id, d.process_index) for d in jax.devices()]
    backend = jax.devices()[0].client
    environ = sorted((k, v) for k, v in os.environ.items() if k.startswith(("XLA_", "LIBTPU")))
    config = sorted((k, repr(v)) for k, v in jax.config.values.items())
    digest.update(repr((versions, devices, backend.platform_version, jax.process_count(),
                        environ, config)).encode())
    _fingerprint = digest.hexdigest()
  return _fingerprint


class PersistentProgram:
  """A jitted program whose compiled executables are also kept on disk.

  Called with concrete arrays while a program cache is set (:func:`set_program_cache`),
  it runs the executable compiled for these argument types: from memory, else from the
  folder (no tracing, lowering or compiling), else compiled (the program ``jax.jit``
  compiles, under another name: see :meth:`_compile`) and written there. Its file is
  named by a hash of :func:`fingerprint`, the program's key and the arguments' types,
  shapes, dtypes and placements, so a change to any of them (this package's code
  included) reads another file. A file that cannot be read, is truncated, fails its
  checksum, does not load or fails its first run (which is waited for) is ignored and
  replaced; the results are those of the jitted function, bit for bit
  (``tests/test_program_cache.py``). Anything else (no cache, traced
  arguments, arguments not described) calls the jitted function itself.

  Args:
    fn: the jitted function.
    description: its key, as :func:`describe` gives it.
  """

  def __init__(self, fn: Callable, description: str):
    self.fn = fn
    self.description = description
    self._compiled: dict[str, Any] = {}

  def lower(self, *args, **kwargs):
    return self.fn.lower(*args, **kwargs)

  def __call__(self, *args):
    directory = _program_dir
    if directory is not None and jax.process_count() > 1:
      directory = None  # Every process must run the program the others run: compiled.
    signature = None if directory is None else _arguments(args)
    if signature is None or not callable(getattr(self.fn, "__wrapped__", None)):
      return self.fn(*args)
    compiled = self._compiled.get(signature)
    if compiled is not None:
      return compiled(*args)
    path = directory / f"{self._file_name(signature)}.bin"
    start = time.perf_counter()
    compiled = _read_program(path, args)
    if compiled is not None:
      try:  # A loaded executable runs once, checked, before it is trusted.
        out = jax.block_until_ready(compiled(*args))
      except jax.errors.JaxRuntimeError:
        compiled = None
        with contextlib.suppress(OSError):
          path.unlink()
    if compiled is not None:
      for clock in getattr(_clocks, "active", ()):  # Loading stands for compiling.
        clock.seconds += time.perf_counter() - start
    else:
      compiled = self._compile(path, args)
      out = compiled(*args)
    self._compiled[signature] = compiled
    return out

  def _file_name(self, signature: str) -> str:
    return hashlib.sha256(
        f"{fingerprint()}\n{self.description}\n{signature}".encode()).hexdigest()

  def _compile(self, path: pathlib.Path, args: tuple):
    """Compiles the program afresh for ``args`` and keeps it at ``path``.

    Compiled under a name of its own (``jit_mnemonic_jax_<file name>``), so that JAX's
    persistent cache, which holds the plain program, does not hand back an executable
    it loaded: on the CPU, such an executable serialized again does not run (jaxlib
    0.10.2: "Function ... not found"). Should the cache hold this name anyway (this
    folder's file was removed), the executable is used but not kept.
    """
    function = self.fn.__wrapped__

    def program(*arguments):
      return function(*arguments)

    program.__name__ = program.__qualname__ = f"mnemonic_jax_{path.stem[:16]}"
    hits = _cache_hits()
    compiled = jax.jit(program).lower(*args).compile()
    if _cache_hits() == hits:
      _write_program(path, compiled)
    return compiled


_hits = threading.local()
_counting_hits = False


def _count_hit(event: str, **_) -> None:
  if event == "/jax/compilation_cache/cache_hits":
    _hits.count = getattr(_hits, "count", 0) + 1


def _cache_hits() -> int:
  """Hits of JAX's persistent cache in this thread so far."""
  global _counting_hits
  if not _counting_hits:
    jax.monitoring.register_event_listener(_count_hit)
    _counting_hits = True
  return getattr(_hits, "count", 0)


def _read_program(path: pathlib.Path, args: tuple):
  """The executable kept at ``path`` for ``args``, or None (missing, damaged, not loaded)."""
  # pylint: disable-next=import-outside-toplevel
  from jax.experimental import serialize_executable
  try:
    blob = path.read_bytes()
  except OSError:
    return None
  cut = len(_FORMAT) + 32
  head, checksum, payload = blob[:len(_FORMAT)], blob[len(_FORMAT):cut], blob[cut:]
  if head != _FORMAT or hashlib.sha256(payload).digest() != checksum:
    return None
  try:
    device_id, serialized, in_tree, out_tree = pickle.loads(payload)
    device = {d.id: d for d in jax.local_devices()}[device_id]
    compiled = serialize_executable.deserialize_and_load(
        serialized, in_tree, out_tree, backend=device.client, execution_devices=[device])
    expected = jax.tree.flatten((args, {}))
    found = jax.tree.flatten(compiled.args_info)
    if found[1] != expected[1] or any(
        (info.shape, info.dtype) != (np.shape(x), _argument_dtype(x))
        for info, x in zip(found[0], expected[0])):
      return None
    return compiled
  except Exception:  # pylint: disable=broad-except
    return None  # A stale or damaged entry: compiled again and replaced.


def _argument_dtype(x: Any) -> np.dtype:
  """The dtype JAX gives ``x`` as an argument (Python scalars: the default types)."""
  return jax.dtypes.canonicalize_dtype(jax.dtypes.result_type(x))


def _write_program(path: pathlib.Path, compiled) -> None:
  """Writes ``compiled`` to ``path`` atomically; does nothing if it cannot."""
  # pylint: disable-next=import-outside-toplevel
  from jax.experimental import serialize_executable
  try:
    devices = set()
    for sharding in jax.tree.leaves((compiled.input_shardings, compiled.output_shardings)):
      devices |= sharding.device_set
    if len(devices) != 1:
      return  # Only single-device programs are kept (the device is part of the key).
    payload = pickle.dumps((devices.pop().id, *serialize_executable.serialize(compiled)))
  except Exception:  # pylint: disable=broad-except
    return  # This program cannot be serialized (e.g. constants): it is compiled each time.
  tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
  try:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp.write_bytes(_FORMAT + hashlib.sha256(payload).digest() + payload)
    os.replace(tmp, path)
  except OSError:
    with contextlib.suppress(OSError):
      tmp.unlink()

from mnemonic_jax.timing import CompileClock, timed  # noqa: E402,F401  (moved)
