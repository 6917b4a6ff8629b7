"""JAX's persistent compilation cache, as the command line uses it.

Compiled programs are kept in ``~/.cache/mnemonic-jax/compilation`` by default (the
platform's user cache directory), so that a second run of a command skips XLA's
compilation. :func:`compilation_cache_dir` says where (a flag, ``$MNEMONIC_JAX_CACHE_DIR``,
``$JAX_COMPILATION_CACHE_DIR``, or the default; any of them can turn it off) and
:func:`configure_compilation_cache` turns it on. Nothing here imports JAX until the cache
is configured.

The same folder also keeps, in :data:`PROGRAMS`, the forgetting and search programs whole
(compiled executables, loaded without tracing them again; see
:class:`mnemonic_jax._jit.PersistentProgram`): JAX's cache skips only XLA's compilation.
"""

from __future__ import annotations

import os
import pathlib
import sys
from typing import Mapping

#: The folder of this application under the user's cache directory.
APP = "mnemonic-jax"

#: Where compiled programs are kept: a directory, or one of :data:`_OFF` to keep none.
CACHE_ENV = "MNEMONIC_JAX_CACHE_DIR"
_OFF = frozenset({"", "0", "off", "no", "none", "false"})
_JAX_CACHE_ENV = "JAX_COMPILATION_CACHE_DIR"
_JAX_MIN_TIME_ENV = "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"
#: The subfolder of the cache directory that keeps whole programs.
PROGRAMS = "mnemonic-jax-programs"


def user_cache_dir(environ: Mapping[str, str] | None = None) -> pathlib.Path:
  """The user's cache directory, as the platform names it (nothing is created).

  ``$XDG_CACHE_HOME`` or ``~/.cache`` on Linux and other POSIX systems,
  ``~/Library/Caches`` on macOS, ``%LOCALAPPDATA%`` on Windows.

  Args:
    environ: the environment (``os.environ`` when None).

  Returns:
    The directory.
  """
  environ = os.environ if environ is None else environ
  if sys.platform == "win32" and environ.get("LOCALAPPDATA"):
    return pathlib.Path(environ["LOCALAPPDATA"])
  if sys.platform == "darwin":
    return pathlib.Path("~/Library/Caches").expanduser()
  if environ.get("XDG_CACHE_HOME"):
    return pathlib.Path(environ["XDG_CACHE_HOME"])
  return pathlib.Path("~/.cache").expanduser()


def _default_cache_hint() -> str:
  """The default cache directory as the help shows it (``~`` for the home directory)."""
  path = user_cache_dir() / APP / "compilation"
  try:
    return "~/" + path.relative_to(pathlib.Path.home()).as_posix()
  except ValueError:
    return str(path)


def compilation_cache_dir(flag: pathlib.Path | None = None, disabled: bool = False,
                          environ: Mapping[str, str] | None = None
                          ) -> pathlib.Path | str | None:
  """Which persistent compilation cache a command uses.

  In order: ``--no-compilation-cache``; ``--compilation-cache DIR``; ``$MNEMONIC_JAX_CACHE_DIR``
  (a directory, or ``off``/``0``/``none``/empty to keep none); JAX's own
  ``$JAX_COMPILATION_CACHE_DIR``, left to JAX; else ``<user cache dir>/mnemonic-jax/compilation``.

  Args:
    flag: the ``--compilation-cache`` directory, if given.
    disabled: ``--no-compilation-cache`` was given.
    environ: the environment (``os.environ`` when None).

  Returns:
    The directory; ``"jax"`` when JAX's own setting applies; None for no cache.
  """
  environ = os.environ if environ is None else environ
  if disabled:
    return None
  if flag is not None:
    return pathlib.Path(flag).expanduser().absolute()
  if CACHE_ENV in environ:
    value = environ[CACHE_ENV].strip()
    return None if value.lower() in _OFF else pathlib.Path(value).expanduser().absolute()
  if environ.get(_JAX_CACHE_ENV):
    return "jax"
  return user_cache_dir(environ) / APP / "compilation"


def configure_compilation_cache(where: pathlib.Path | str | None) -> pathlib.Path | None:
  """Points JAX's persistent compilation cache at ``where`` (see :func:`compilation_cache_dir`).

  Every program is kept, however quickly it compiled (JAX keeps only those that took a
  second or more by default; the programs of an MLP take less), unless
  ``$JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS`` says otherwise. The forgetting and
  search programs are also kept whole in its :data:`PROGRAMS` subfolder
  (:func:`mnemonic_jax._jit.set_program_cache`), and not kept when the cache is off. A
  cache directory that cannot be created is skipped silently: the cache only saves time.
  Call it before the first compilation.

  Args:
    where: a directory, ``"jax"`` (JAX's own ``$JAX_COMPILATION_CACHE_DIR``), or None (no
      persistent cache).

  Returns:
    The directory used, or None.
  """
  import jax  # pylint: disable=import-outside-toplevel

  from mnemonic_jax import _jit  # pylint: disable=import-outside-toplevel

  _jit.set_program_cache(None)
  if where is None:
    jax.config.update("jax_enable_compilation_cache", False)
    return None
  if where == "jax":
    directory = pathlib.Path(os.environ[_JAX_CACHE_ENV])
  else:
    directory = pathlib.Path(where)
    try:
      directory.mkdir(parents=True, exist_ok=True)
    except OSError:
      jax.config.update("jax_enable_compilation_cache", False)
      return None
    jax.config.update("jax_compilation_cache_dir", os.fspath(directory))
  _jit.set_program_cache(directory / PROGRAMS)
  if _JAX_MIN_TIME_ENV not in os.environ:
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  return directory
