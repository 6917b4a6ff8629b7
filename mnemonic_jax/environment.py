"""The machine a run depends on, named as such when it fails: JAX's backend and the disk.

Two kinds of failure are neither the user's input nor a bug in the library:

* JAX cannot start the platform it is told to use (``JAX_PLATFORMS=gpu`` or ``=cuda`` on
  a machine without a GPU, a broken CUDA install). :func:`check_backend` starts the
  backend and raises :class:`~mnemonic_jax.errors.BadEnvironment` naming
  ``JAX_PLATFORMS``.
* The operating system refuses a write: a full disk, a quota, a read-only file system,
  an I/O error. Orbax's writes report it as tensorstore's ``ValueError("RESOURCE_EXHAUSTED:
  ... No space left on device [os_error_code='28']")``, a file's ``write`` as an
  ``OSError`` without a file name; :func:`os_error` finds the ``OSError`` behind either.

Code that turns any failure into its own error ("is not a readable checkpoint") calls
:func:`reraise` first, so that an environment that failed is not blamed on the input.

Example:
  >>> err = ValueError("RESOURCE_EXHAUSTED: ... No space left on device "
  ...                  "[os_error_code='28']")
  >>> os_error(err).strerror, is_environment_error(err)
  ('No space left on device', True)
"""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Iterator

from mnemonic_jax import errors

#: The ``errno`` values that say the machine refused, not that the input is wrong.
ENVIRONMENT_ERRNOS = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO, errno.EFBIG, errno.ENOMEM,
     errno.EMFILE, errno.ENFILE})
#: tensorstore's suffix naming the operating system's error code (tensorstore 0.1.x).
_OS_ERROR_CODE = re.compile(r"\[os_error_code='?(\d+)'?\]")
#: How JAX's errors begin when a backend cannot start (jax/_src/xla_bridge.py, 0.4 to 0.10).
_BACKEND_FAILED = "Unable to initialize backend"
#: JAX's own hint at the end of a backend error, said again by :func:`check_backend`.
_JAX_HINT = re.compile(r"\s*\(set JAX_PLATFORMS=.*\)\s*$")


def _chain(error: BaseException) -> Iterator[BaseException]:
  """``error``, then its causes and contexts (each once)."""
  seen: set[int] = set()
  while error is not None and id(error) not in seen:
    seen.add(id(error))
    yield error
    error = error.__cause__ or error.__context__


def os_error(error: BaseException) -> OSError | None:
  """The operating system's error behind ``error``, or None.

  Args:
    error: any exception. An ``OSError`` with an ``errno`` is itself; a ``MemoryError``
      stands for ``OSError(ENOMEM)``; an exception whose message ends with tensorstore's
      ``[os_error_code='N']`` stands for ``OSError(N)``; causes and contexts are searched
      too.

  Returns:
    An ``OSError`` with ``errno`` and ``strerror`` set (its ``filename`` only when the
    original had one), or None.
  """
  for item in _chain(error):
    if isinstance(item, OSError) and item.errno is not None:
      return item
    if isinstance(item, MemoryError):  # Python's allocation failed: the machine's limit.
      return OSError(errno.ENOMEM, os.strerror(errno.ENOMEM))
    found = _OS_ERROR_CODE.search(str(item))
    if found:
      code = int(found.group(1))
      return OSError(code, os.strerror(code))
  return None


def is_environment_error(error: BaseException) -> bool:
  """Whether ``error`` is the machine refusing (see :data:`ENVIRONMENT_ERRNOS`)."""
  found = os_error(error)
  return found is not None and found.errno in ENVIRONMENT_ERRNOS


def platforms_hint() -> str:
  """What ``JAX_PLATFORMS`` asks for, and how to change it (one clause)."""
  asked = os.environ.get("JAX_PLATFORMS")
  if asked is None:
    try:
      import jax  # pylint: disable=import-outside-toplevel

      asked = jax.config.jax_platforms
    except ImportError:  # pragma: no cover - jax is a dependency.
      asked = None
  if asked:
    return (f"JAX_PLATFORMS={asked!r} asks for a platform this machine cannot start: "
            "unset JAX_PLATFORMS, or set it to one this machine has (e.g. cpu)")
  return "JAX_PLATFORMS is not set: set JAX_PLATFORMS=cpu to run on the CPU"


def check_backend() -> None:
  """Starts JAX's backend (as any computation would) and says plainly if it cannot.

  Call it after :func:`mnemonic_jax.distributed.initialize` (several processes) and before
  the work; the command line does, at start-up.

  Raises:
    BadEnvironment: JAX cannot start the platforms ``JAX_PLATFORMS`` (or
      ``jax.config.jax_platforms``) asks for; the message names them and the fix.
  """
  import jax  # pylint: disable=import-outside-toplevel

  try:
    jax.devices()
  except RuntimeError as e:
    raise errors.BadEnvironment(_backend_message(e)) from e
  except AssertionError as e:
    # JAX skips a platform it finds no device for (JAX_PLATFORMS=cuda without a visible
    # NVIDIA GPU) and, left with none, fails its own assertion (jax 0.4 to 0.10).
    raise errors.BadEnvironment(_backend_message(e, _NO_DEVICE)) from e


#: What an AssertionError of jax.devices() means (JAX's own message is empty).
_NO_DEVICE = "no device of the platforms asked for was found"


def _backend_message(error: BaseException, text: str | None = None) -> str:
  """The one line for a backend that cannot start: JAX's reason (``text`` if given, else
  the first line of ``error``, its own hint dropped) and :func:`platforms_hint`."""
  if text is None:
    text = (str(error).strip().splitlines() or [type(error).__name__])[0]
  text = _JAX_HINT.sub("", text)
  return f"environment: JAX cannot start its backend ({text}); {platforms_hint()}"


def reraise(error: BaseException, path: object = None) -> None:
  """Raises :class:`~mnemonic_jax.errors.BadEnvironment` if the machine caused ``error``.

  For code that turns any exception into its own error: call it first in the ``except``
  block, so that a backend that cannot start or a disk that refuses is named as such
  instead of being blamed on the input.

  Args:
    error: the exception caught.
    path: the file or directory being read or written, for the message (optional).

  Raises:
    BadEnvironment: ``error`` (or its cause) is JAX failing to start a backend (its
      "Unable to initialize backend" error; nothing is started here), or an
      operating-system refusal of :data:`ENVIRONMENT_ERRNOS`.
  """
  for item in _chain(error):
    if _BACKEND_FAILED in str(item):
      raise errors.BadEnvironment(_backend_message(item)) from error
  found = os_error(error)
  if found is not None and found.errno in ENVIRONMENT_ERRNOS:
    where = f"{path}: " if path is not None else ""
    raise errors.BadEnvironment(f"environment: {where}{found.strerror} (the machine "
                                "refused, not the input)") from error


__all__ = ["ENVIRONMENT_ERRNOS", "check_backend", "is_environment_error", "os_error",
           "platforms_hint", "reraise"]
