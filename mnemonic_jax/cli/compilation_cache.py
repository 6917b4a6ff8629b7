"""JAX's persistent compilation cache, as the command line uses it.

Compiled programs are kept in ``~/.cache/mnemonic-jax/compilation`` by default (the
platform's user cache directory), so that a second run of a command skips XLA's
compilation. :func:`compilation_cache_dir` says where (a flag, ``$MNEMONIC_JAX_CACHE_DIR``,
``$JAX_COMPILATION_CACHE_DIR``, or the default; any of them can turn it off) and
:func:`configure_compilation_cache` turns it on; :func:`current_settings` and
:func:`restore_settings` put JAX's settings back afterwards. Nothing here imports JAX at
import time (the parser reads :data:`CACHE_ENV` and :func:`default_cache_hint`).

A cache entry is a compiled program that JAX loads and runs, so the folder must be the
user's own: :func:`private_folder` creates it (and any missing parent) with mode 0700
whatever the umask, and refuses, as a user error, a folder that belongs to someone else,
that group or others may write to, or that holds an entry another user wrote. This guards
against a shared or world-writable cache; it cannot guard against root, nor against a
folder swapped between the check and JAX's reads by someone who may rename its parent.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import stat
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from mnemonic_jax import errors

#: The folder of this application under the user's cache directory.
APP = "mnemonic-jax"

#: Where compiled programs are kept: a directory, or one of :data:`_OFF` to keep none.
CACHE_ENV = "MNEMONIC_JAX_CACHE_DIR"
_OFF = frozenset({"", "0", "off", "no", "none", "false"})
_JAX_CACHE_ENV = "JAX_COMPILATION_CACHE_DIR"
_JAX_MIN_TIME_ENV = "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"

#: The JAX options :func:`configure_compilation_cache` sets, or JAX sets when it opens the
#: cache (``min_entry_size_bytes``); :func:`restore_settings` puts them back.
_JAX_OPTIONS = ("jax_enable_compilation_cache", "jax_compilation_cache_dir",
                "jax_persistent_cache_min_compile_time_secs",
                "jax_persistent_cache_min_entry_size_bytes")
#: The globals of ``jax._src.compilation_cache`` that remember an opened cache (JAX 0.4.35
#: to 0.10): without putting them back, the cache a command opened stays in use.
_JAX_CACHE_GLOBALS = ("_cache", "_cache_initialized", "_cache_checked", "_cache_used")
_MISSING = object()


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


def default_cache_hint() -> str:
  """The default cache directory as the help shows it (``~`` for the home directory).

  Returns:
    The path, ``~/``-relative when it lies in the home directory.
  """
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
  ``$JAX_COMPILATION_CACHE_DIR``; else ``<user cache dir>/mnemonic-jax/compilation``.

  Args:
    flag: the ``--compilation-cache`` directory, if given.
    disabled: ``--no-compilation-cache`` was given.
    environ: the environment (``os.environ`` when None).

  Returns:
    The directory; ``"jax"`` when JAX's own variable applies; None for no cache.
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


def source(flag: pathlib.Path | None = None, environ: Mapping[str, str] | None = None) -> str:
  """Where :func:`compilation_cache_dir` found its folder, in words (for refusals)."""
  environ = os.environ if environ is None else environ
  if flag is not None:
    return "--compilation-cache"
  if CACHE_ENV in environ:
    return f"${CACHE_ENV}"
  return f"${_JAX_CACHE_ENV}" if environ.get(_JAX_CACHE_ENV) else "the default"


def _refusal(folder: pathlib.Path, problem: str, fix: str) -> errors.BadRequest:
  return errors.BadRequest(
      f"compilation cache {folder} {problem}: a program planted there would run as you; "
      f"{fix}, or pass --compilation-cache DIR (a folder of your own) or "
      "--no-compilation-cache")


def check_private(folder: pathlib.Path) -> None:
  """Refuses a cache folder that is not the current user's alone.

  The folder must belong to the effective user, group and others may not write to it,
  and every entry directly in it must belong to the user (JAX keeps its entries there
  as plain files). Nothing is checked where the platform has no user ids (Windows).

  Args:
    folder: an existing directory.

  Raises:
    mnemonic_jax.errors.BadRequest: the folder, or an entry in it, belongs to another
      user, or the folder is writable by group or others.
    OSError: the folder cannot be read.
  """
  if not hasattr(os, "geteuid"):
    return
  me, st = os.geteuid(), os.stat(folder)
  if st.st_uid != me:
    raise _refusal(folder, f"belongs to another user (uid {st.st_uid})",
                   "use a folder of your own")
  if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
    raise _refusal(folder, f"is writable by others (mode {stat.S_IMODE(st.st_mode):o})",
                   f"make it private (chmod 700 {folder})")
  with os.scandir(folder) as entries:
    for entry in entries:
      owner = entry.stat(follow_symlinks=False).st_uid
      if owner != me:
        raise _refusal(folder, f"holds {entry.name}, written by another user (uid {owner})",
                       "remove that entry")


def private_folder(folder: pathlib.Path) -> list[pathlib.Path]:
  """Creates ``folder`` (and its missing parents) with mode 0700, then checks it.

  A directory created here has mode 0700 whatever the umask (``mkdir`` with 0700 can
  only lose bits to the umask, and ``chmod`` restores the owner's); an existing one is
  left as it is and checked by :func:`check_private`.

  Args:
    folder: the cache folder.

  Returns:
    The directories created, outermost first (for :func:`remove_if_empty`).

  Raises:
    mnemonic_jax.errors.BadRequest: as :func:`check_private`.
    OSError: the folder cannot be created (a parent is a file or may not be written).
  """
  missing = []
  path = folder
  while not os.path.lexists(path) and path != path.parent:
    missing.append(path)
    path = path.parent
  created = []
  try:
    for path in reversed(missing):
      try:
        os.mkdir(path, 0o700)
      except FileExistsError:  # Created meanwhile (another run): checked below if ours.
        continue
      os.chmod(path, 0o700)
      created.append(path)
  except OSError:  # A name too long, a parent not writable: what was made goes again.
    remove_if_empty(created)
    raise
  if not folder.is_dir():
    raise NotADirectoryError(20, "Not a directory", os.fspath(folder))
  check_private(folder)
  return created


def remove_if_empty(created: Sequence[pathlib.Path]) -> None:
  """Removes the folders :func:`private_folder` created that are still empty, innermost
  first: a command that compiled nothing (refused after the cache was opened) leaves no
  folder behind. One that another run filled meanwhile stays."""
  for path in reversed(created):
    try:
      os.rmdir(path)
    except OSError:  # Not empty (programs were kept), or gone: nothing more to remove.
      return


@dataclasses.dataclass(frozen=True)
class Settings:
  """JAX's persistent-cache settings at one moment, as :func:`restore_settings` takes them.

  Attributes:
    options: the values of :data:`_JAX_OPTIONS`.
    opened: the globals of ``jax._src.compilation_cache`` that hold the opened cache
      (None if this JAX has other names: it is then only reset).
  """
  options: Mapping[str, Any]
  opened: tuple[Any, ...] | None


def _jax_cache_module():
  # pylint: disable-next=import-outside-toplevel,protected-access
  from jax._src import compilation_cache as module

  return module


def current_settings() -> Settings:
  """JAX's persistent-cache settings now (imports JAX).

  Returns:
    What :func:`restore_settings` needs to put them back.
  """
  import jax  # pylint: disable=import-outside-toplevel

  module = _jax_cache_module()
  opened = tuple(getattr(module, name, _MISSING) for name in _JAX_CACHE_GLOBALS)
  return Settings(options={name: getattr(jax.config, name) for name in _JAX_OPTIONS},
                  opened=None if _MISSING in opened else opened)


def restore_settings(saved: Settings) -> None:
  """Puts back the settings :func:`current_settings` read, the opened cache included.

  Args:
    saved: what :func:`current_settings` returned.
  """
  import jax  # pylint: disable=import-outside-toplevel

  for name, value in saved.options.items():
    if getattr(jax.config, name) != value:
      jax.config.update(name, value)
  module = _jax_cache_module()
  if saved.opened is None:
    module.reset_cache()
    return
  with module._cache_initialized_mutex:  # pylint: disable=protected-access
    for name, value in zip(_JAX_CACHE_GLOBALS, saved.opened):
      setattr(module, name, value)


def configure_compilation_cache(where: pathlib.Path | str | None, named: str | None = None
                                ) -> tuple[str | None, list[pathlib.Path]]:
  """Points JAX's persistent compilation cache at ``where`` (see :func:`compilation_cache_dir`).

  Every program is kept, however quickly it compiled (JAX keeps only those that took a
  second or more by default; the programs of an MLP take less), unless
  ``$JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS`` says otherwise. A local folder is
  created private and checked (:func:`private_folder`). One that cannot be created is
  refused where the user named it (``named``: ``--compilation-cache`` or a variable; they
  asked for it, and a silent skip compiles every program afresh each time) and skipped
  silently where it is the default (the cache only saves time: a read-only home
  must not stop a command). A cache JAX opened before in this process
  is closed, so that this one applies; :func:`restore_settings` puts it back. Call it
  before the command compiles.

  Args:
    where: a directory, ``"jax"`` (JAX's own ``$JAX_COMPILATION_CACHE_DIR``: a local folder
      is checked as well, a URL such as ``gs://...`` is left to JAX), or None (no
      persistent cache).
    named: where the user named ``where`` (:func:`source`, e.g. ``"--compilation-cache"``),
      or None for the default folder.

  Returns:
    ``(folder, created)``: the folder JAX now uses, or None, and the directories created
    for it (:func:`remove_if_empty` takes them away again if nothing was kept).

  Raises:
    mnemonic_jax.errors.BadRequest: the folder is not the user's alone (see
      :func:`check_private`), or a folder the user named cannot be created or is not a
      directory (nothing is left of the attempt).
  """
  import jax  # pylint: disable=import-outside-toplevel

  _jax_cache_module().reset_cache()
  folder = None if where is None else (
      os.environ[_JAX_CACHE_ENV] if where == "jax" else os.fspath(where))
  created = []
  if folder is not None and "://" not in folder:
    try:
      created = private_folder(pathlib.Path(folder))
    except errors.MnemonicJaxError:
      raise
    except OSError as e:
      if named is not None:
        raise errors.BadRequest(
            f"{named} {folder} cannot be used as the compilation cache: "
            f"{e.strerror or e}; give a folder you may create, or --no-compilation-cache"
        ) from None
      folder = None
  if folder is None:
    jax.config.update("jax_enable_compilation_cache", False)
    return None, []
  jax.config.update("jax_enable_compilation_cache", True)
  jax.config.update("jax_compilation_cache_dir", folder)
  if _JAX_MIN_TIME_ENV not in os.environ:
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  return folder, created
