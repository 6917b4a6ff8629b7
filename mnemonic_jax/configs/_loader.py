"""The one config loader: ``NAME[:VARIANT]`` or ``FILE[:VARIANT]``, plus ``--config.FIELD=VALUE``.

Built on ``ml_collections.config_flags`` (as the flax examples load their configs), each
call with a private absl ``FlagValues`` so that no global flag is defined or parsed:

1. The spec names a packaged config (``digits_mlp:quick``: a module of
   :mod:`mnemonic_jax.configs`, usable from any folder after ``pip install``) or a Python
   file (``path/to/cfg.py:quick``). ``config_flags.DEFINE_config_file(...,
   lock_config=True)`` runs its ``get_config(VARIANT)`` (``get_config()`` when no variant
   is named) and locks the result.
2. ``config_flags.DEFINE_config_dict`` applies the overrides: each value is parsed as the
   type of the field it sets (an int field takes ``5``, not ``five``; a tuple field
   ``(64, 32)``), and, the config being locked, a misspelt field fails (ml_collections
   names a close match: did you mean 'epochs'?).
3. :func:`mnemonic_jax.configs.validate_config` checks the fields; the config stays locked.

Whatever goes wrong is a :class:`~mnemonic_jax.configs.ConfigError` (a
:class:`mnemonic_jax.errors.BadConfig`): one line naming the file or field and the fix.
A config file is the user's code, so whatever it raises is reported that way too.
"""

import collections
import contextlib
import difflib
import inspect
import logging
import os
import pathlib
import re
import sys
import warnings
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import ml_collections
from absl import flags
from ml_collections import config_flags

from mnemonic_jax import _files, environment, errors
from mnemonic_jax.configs._fields import FIELD_TYPES, ConfigError, validate_config

#: What starts a config override on a command line.
OVERRIDE_PREFIX = "--config."

_FLAG = "config"  # The flag's name: its overrides are --config.FIELD, as on the command line.
_MODULE = f"{_FLAG}_config"  # Where config_flags puts the config file's module (sys.modules).
_PROG = "mnemonic-jax"
_PACKAGE_DIR = pathlib.Path(__file__).resolve().parent
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# How config_flags re-raises get_config's error, and its deferred failure to load.
_WRAPPED = ("Error whilst parsing config file", "Configuration is not available because")
_NONE_TYPE = type(None)


def available_configs() -> tuple[str, ...]:
  """The packaged configs, by the names ``--config`` takes (``digits_mlp``, ...).

  Returns:
    The names of the public modules of :mod:`mnemonic_jax.configs`, sorted.
  """
  return tuple(sorted(p.stem for p in _PACKAGE_DIR.glob("*.py") if not p.stem.startswith("_")))


def _parts(spec: Any) -> tuple[str, pathlib.Path, str | None]:
  """``(what names the config, its file, variant or None)``."""
  spec = os.fspath(spec)
  name, colon, variant = spec.partition(":")  # As config_flags splits: at the first colon.
  packaged = bool(_NAME.fullmatch(name)) and name in available_configs()
  if packaged and os.path.isfile(name):  # Two configs for one name: neither silently.
    raise ConfigError(
        f"{name} is both a packaged config and a file in {os.getcwd()}; write "
        f"./{spec} for the file, or rename the file to use the packaged config")
  if os.path.isfile(spec):
    return spec, pathlib.Path(spec).expanduser().absolute(), None
  variant = variant if colon else None
  if packaged:
    return name, _PACKAGE_DIR / f"{name}.py", variant
  return name, pathlib.Path(name).expanduser().absolute(), variant


def split_spec(spec: str) -> tuple[pathlib.Path, str | None]:
  """``NAME[:VARIANT]`` or ``FILE[:VARIANT]`` as ``(absolute file, variant or None)``.

  A path that exists as a file is taken whole; otherwise the text after the first colon
  is the variant (as ``ml_collections.config_flags`` reads it). A name without a folder
  or suffix is a packaged config (:func:`available_configs`): its file is the module
  inside the installed package; a file of that name here as well is refused (write
  ``./NAME`` for the file).

  Args:
    spec: e.g. ``"digits_mlp:quick"`` or ``"path/to/cfg.py:quick"``.

  Returns:
    The file (made absolute, not checked) and the variant (None when none is named).

  Example:
    >>> path, variant = split_spec("digits_mlp:quick")
    >>> path.name, path.parent.name, variant
    ('digits_mlp.py', 'configs', 'quick')
  """
  _, path, variant = _parts(spec)
  return path, variant


def split_overrides(argv: Sequence[str]) -> tuple[list[str], list[tuple[str, str]]]:
  """Separates ``--config.FIELD=VALUE`` (or ``--config.FIELD VALUE``) from other arguments.

  Arguments after ``--`` are left alone.

  Args:
    argv: command-line arguments.

  Returns:
    ``(other_arguments, [(dotted_field, raw_value), ...])`` in command-line order.

  Raises:
    ConfigError: an override has no value or names no field, or one field is given
      twice (the last one would win without a word, as ``--classes 3 --classes 5`` would:
      every option that takes a value is given once).
  """
  rest, overrides = [], []
  argv = list(argv)
  i = 0
  while i < len(argv):
    arg = argv[i]
    if arg == "--":
      rest.extend(argv[i:])
      break
    if arg.startswith(OVERRIDE_PREFIX):
      name, eq, value = arg[len(OVERRIDE_PREFIX):].partition("=")
      if not eq:
        if i + 1 >= len(argv):
          raise ConfigError(f"{arg} needs a value: write {arg}=VALUE")
        value = argv[i + 1]
        i += 1
      if not name or not all(name.split(".")):
        raise ConfigError(f"{arg!r} names no config field: write --config.FIELD=VALUE")
      overrides.append((name, value))
    else:
      rest.append(arg)
    i += 1
  counts = collections.Counter(name for name, _ in overrides)
  repeated = [name for name, count in counts.items() if count > 1]
  if repeated:
    name = repeated[0]
    raise ConfigError(f"{OVERRIDE_PREFIX}{name} given {counts[name]} times; give it once")
  return rest, overrides


def _one_line(error: BaseException) -> str:
  text = str(error).strip()
  return text.splitlines()[0] if text else type(error).__name__


def _chain(error: BaseException) -> Iterator[BaseException]:
  seen = set()
  while error is not None and id(error) not in seen:
    seen.add(id(error))
    yield error
    error = error.__cause__ or error.__context__


def _users_error(error: BaseException, path: pathlib.Path) -> BaseException:
  """The exception the config file raised, under config_flags' and absl's wrappers."""
  chain = list(_chain(error))
  for e in chain:  # The first one raised inside the file (the last its code raised).
    tb = e.__traceback__
    while tb is not None:
      if tb.tb_frame.f_code.co_filename == str(path):
        return e
      tb = tb.tb_next
  for e in chain:  # E.g. a SyntaxError: no frame of the file.
    if not isinstance(e, flags.Error) and not str(e).startswith(_WRAPPED):
      return e
  return error


def _load_error(path: pathlib.Path, variant: str | None, error: BaseException,
                module: Any) -> ConfigError:
  """One line for a config file that could not be run, from what it left behind."""
  e = _users_error(error, path)
  what = f"{type(e).__name__}: {_one_line(e)}"
  if isinstance(e, OSError) and str(e).startswith("Failed loading config file"):
    # config_flags read a FileNotFoundError of the file's import as "not found".
    what = "FileNotFoundError: " + str(e).strip().splitlines()[-1].strip()
  if module is None:  # The module did not import: the file raised while it ran.
    return ConfigError(f"cannot import config file {path}: {what}; fix the config file")
  get_config = getattr(module, "get_config", None)
  if not callable(get_config):
    return ConfigError(f"config file {path} defines no get_config(); add "
                       "'def get_config(variant=\"\"): ...' returning an "
                       "ml_collections.ConfigDict")
  args = () if variant is None else (variant,)
  try:
    inspect.signature(get_config).bind(*args)
  except TypeError:
    if args:
      return ConfigError(
          f"config file {path}: get_config() takes no variant, but ':{variant}' names one; "
          f"drop ':{variant}' or give get_config a variant argument")
    return ConfigError(f"config file {path}: get_config() needs a variant; name one as "
                       f"{path.name}:VARIANT")
  except ValueError:  # No signature to inspect: the message says enough.
    pass
  shown = f"get_config({variant!r})" if args else "get_config()"
  if isinstance(e, errors.BadConfig):  # The file's own one-line message (an unknown variant).
    return ConfigError(f"config file {path}: {shown}: {_one_line(e)}")
  return ConfigError(f"config file {path}: {shown} raised {what}")


@contextlib.contextmanager
def _quiet_config_flags() -> Iterator[None]:
  """Drops config_flags' log line for a get_config() returning None (a ConfigError says it)
  and the DeprecationWarning of the importlib call it loads a file with (Python 3.11)."""
  logger = logging.getLogger("absl")
  drop = lambda record: "did you forget a return statement" not in record.getMessage()
  logger.addFilter(drop)
  try:
    with warnings.catch_warnings():
      warnings.filterwarnings("ignore", r"the load_module\(\) method is deprecated",
                              DeprecationWarning)
      yield
  finally:
    logger.removeFilter(drop)


def load_config_file(spec: str) -> Any:
  """Runs ``get_config(VARIANT)`` of the config that ``NAME[:VARIANT]``/``FILE[:VARIANT]`` names.

  Through ``ml_collections.config_flags.DEFINE_config_file(lock_config=True)``. The config
  file is the user's code: whatever it raises while being imported or while
  ``get_config`` runs is reported as a :class:`ConfigError` (one line naming the file and
  the exception), as is a ``get_config`` that is missing, cannot take the variant, or
  returns something other than a group of fields (e.g. None).

  Args:
    spec: ``NAME[:VARIANT]`` (a packaged config, :func:`available_configs`) or
      ``FILE[:VARIANT]`` (see :func:`split_spec`).

  Returns:
    What ``get_config`` returned: a locked ml_collections ConfigDict, or a mapping.

  Raises:
    ConfigError: no such config, a path holding ':', or the file raises, has no usable
      ``get_config``, or its ``get_config`` raises or returns no config.
  """
  if not os.fspath(spec).strip() or os.fspath(spec).startswith(":"):
    raise ConfigError(f"the config {os.fspath(spec)!r} names no config (an unset shell "
                      "variable?); give a packaged config such as digits_mlp:quick, or a "
                      "python file defining get_config()")
  name, path, variant = _parts(spec)
  fix = "pass a python file defining get_config()"
  if os.path.lexists(path) and not path.is_file():
    try:
      os.stat(path)
    except OSError:  # A symbolic link loop or to nothing, a folder that may not be searched.
      raise ConfigError(f"config file {_files.missing_line(path, fix)}") from None
    raise ConfigError(f"config file '{_files.shown(path)}' is not a regular file (a FIFO, a "
                      f"device or a folder?); {fix}")
  if path.is_file():
    try:
      with open(path, "rb"):
        pass
    except OSError as e:
      raise ConfigError(_files.os_error_line("read config file", path, e, fix)) from None
  if not path.is_file():
    names = available_configs()
    if _NAME.fullmatch(name):
      close = difflib.get_close_matches(name, names, n=1)
      raise ConfigError(
          f"config {name!r} does not exist: it is neither a file nor a packaged config "
          f"({', '.join(names)}){'; did you mean ' + repr(close[0]) + '?' if close else ''}")
    raise ConfigError(f"config file {str(path)!r} does not exist; pass a python file "
                      "defining get_config(), or a packaged config such as "
                      f"digits_mlp[:quick] ({', '.join(names)})")
  if ":" in str(path):
    raise ConfigError(f"config file {str(path)!r}: its path holds ':', where ml_collections "
                      "starts the variant; rename it or link to it from a path without ':'")
  argv = [_PROG, f"--{_FLAG}={path}" + ("" if variant is None else f":{variant}")]
  flag_values = flags.FlagValues()
  sys.modules.pop(_MODULE, None)  # Else config_flags would run the file into an old module.
  try:
    holder = config_flags.DEFINE_config_file(
        _FLAG, None, "the config file", flag_values=flag_values, lock_config=True,
        sys_argv=argv)
    try:
      with _quiet_config_flags():
        flag_values(argv)
      config = holder.value
      if not isinstance(config, (Mapping, ml_collections.ConfigDict)):
        getattr(config, "keys", None)  # config_flags defers a failed load (OSError) to here.
    except Exception as e:  # pylint: disable=broad-except
      environment.reraise(e)  # JAX that cannot start is not the config file's fault.
      raise _load_error(path, variant, e, sys.modules.get(_MODULE)) from None
  finally:
    sys.modules.pop(_MODULE, None)
  if not isinstance(config, (Mapping, ml_collections.ConfigDict)):
    shown = "get_config()" if variant is None else f"get_config({variant!r})"
    raise ConfigError(f"config file {path}: {shown} returned {type(config).__name__}, not a "
                      "config; return an ml_collections.ConfigDict")
  return config


def _as_config_dict(config: Any) -> ml_collections.ConfigDict:
  if isinstance(config, ml_collections.ConfigDict):
    return config
  try:
    return ml_collections.ConfigDict(dict(config))
  except (TypeError, ValueError) as e:
    raise ConfigError(f"the config cannot be an ml_collections.ConfigDict ({_one_line(e)}); "
                      "return one from get_config()") from None


def _type_known_fields(config: ml_collections.ConfigDict,
                       overrides: Sequence[tuple[str, str]]) -> None:
  """Gives an overridden top-level field that the config leaves out or None its type.

  ml_collections types an override by the field's value, and refuses fields of a locked
  config that it does not hold; the fields :func:`mnemonic_jax.workflow.train` reads
  (:data:`~mnemonic_jax.configs.FIELD_TYPES`: ``data_dir``, ``stream``, ...) may be set
  all the same.
  """
  with config.unlocked():
    for name, _ in overrides:
      want = FIELD_TYPES.get(name)
      if want is None:
        continue
      if name not in config or config.get_type(name) is _NONE_TYPE:
        config[name] = ml_collections.FieldReference(None, field_type=want)


def _walk(config: ml_collections.ConfigDict, name: str) -> tuple[Any, str, str | None]:
  """``(holder, leaf, missing)`` of a dotted field: ``missing`` is the first part of
  ``name`` that the config does not hold (its dotted path), or None."""
  parts = name.split(".")
  node = config
  for i, part in enumerate(parts[:-1]):
    if not hasattr(node, "keys") or part not in node:
      return node, part, ".".join(parts[:i + 1])
    node = node[part]
  if not hasattr(node, "keys") or parts[-1] not in node:
    return node, parts[-1], name
  return node, parts[-1], None


def _override_error(config: ml_collections.ConfigDict, overrides: Sequence[tuple[str, str]],
                    error: BaseException) -> ConfigError:
  """One line for an override that ml_collections refused."""
  text = error.args[0] if error.args and isinstance(error.args[0], str) else str(error)
  for name, _ in overrides:
    holder, leaf, missing = _walk(config, name)
    if missing is None:
      continue
    where = "" if missing == name else f" in --config.{name}"
    if not hasattr(holder, "keys"):
      return ConfigError(f"config field {missing.rpartition('.')[0]!r} is not a group of "
                         f"fields; cannot set --config.{name}")
    parent = missing.rpartition(".")[0]
    close = re.search(r'Did you mean "([^"]+)" instead of "([^"]+)"', text)
    if close and close.group(2) == leaf and close.group(1) in holder:
      hint = f"did you mean {'.'.join(filter(None, (parent, close.group(1))))!r}?"
    else:
      hint = (f"known fields{' of ' + parent if parent else ''}: "
              f"{', '.join(sorted(str(k) for k in holder))}")
    return ConfigError(f"unknown config field {missing!r}{where or f' (--config.{name})'}; "
                       f"{hint}")
  for name, raw in overrides:
    prefix = f"flag {OVERRIDE_PREFIX}{name}={raw}: "
    if text.startswith(prefix):
      holder, leaf, _ = _walk(config, name)
      want = (holder.get_type(leaf) if isinstance(holder, ml_collections.ConfigDict)
              else type(holder[leaf]))
      detail = text[len(prefix):].strip()
      return ConfigError(f"--config.{name}={raw}: expected a value of type "
                         f"{getattr(want, '__name__', want)} "
                         f"({detail.splitlines()[0] if detail else 'refused'})")
  none = re.search(r"Type <class 'NoneType'> of field config\.(\S+) is not supported", text)
  if none:
    return ConfigError(
        f"--config.{none.group(1)}: the config sets {none.group(1)} to None, so ml_collections "
        "cannot tell what type a value of it has; give it a value in the config file or "
        "declare it as ml_collections.FieldReference(None, field_type=...)")
  return ConfigError(f"cannot apply --config overrides: {type(error).__name__}: "
                     f"{_one_line(error)}")


def apply_overrides(config: Any, overrides: Sequence[tuple[str, str]]
                    ) -> ml_collections.ConfigDict:
  """Sets dotted fields of a config from ``(field, raw_value)`` pairs, in order.

  Through ``ml_collections.config_flags.DEFINE_config_dict(lock_config=True)``: each value
  is parsed as the type of the field it sets (ints, floats, booleans ``True``/``False``,
  tuples ``(64, 32)`` or ``64``, strings as written), and only existing fields can be
  set, besides the top-level fields :func:`mnemonic_jax.workflow.train` reads
  (:data:`~mnemonic_jax.configs.FIELD_TYPES`, e.g. ``download``, ``data_dir``) where the
  config leaves them out or None.

  Args:
    config: an ml_collections ConfigDict, changed in place and locked (a mapping is
      first converted).
    overrides: ``[("model_kwargs.hidden", "(64, 32)"), ...]``.

  Returns:
    The ConfigDict.

  Raises:
    ConfigError: an unknown field (naming ml_collections' close match, if any), a value
      that is not of the field's type, or a field set to None whose type is unknown.

  Example:
    >>> config = apply_overrides({"epochs": 200, "t_mix": 0.1}, [("epochs", "3")])
    >>> config.epochs, config.is_locked
    (3, True)
    >>> apply_overrides(config, [("epoch", "3")])
    Traceback (most recent call last):
    ConfigError: unknown config field 'epoch' (--config.epoch); did you mean 'epochs'?
  """
  config = _as_config_dict(config)
  overrides = list(overrides)
  if not overrides:
    return config
  _type_known_fields(config, overrides)
  argv = [_PROG] + [f"{OVERRIDE_PREFIX}{name}={raw}" for name, raw in overrides]
  flag_values = flags.FlagValues()
  try:
    config_flags.DEFINE_config_dict(_FLAG, config, "the config", flag_values=flag_values,
                                    lock_config=True, sys_argv=argv)
    flag_values(argv)
  except (flags.Error, KeyError, AttributeError, IndexError, TypeError, ValueError) as e:
    raise _override_error(config, overrides, e) from None
  return config


def load_config(spec: str, overrides: Sequence[tuple[str, str]] = (), *,
                validate: bool = True) -> ml_collections.ConfigDict:
  """Loads, overrides, validates and locks a config: the one loader of every entry point.

  Args:
    spec: ``NAME[:VARIANT]`` (a packaged config such as ``digits_mlp:quick``) or
      ``FILE[:VARIANT]`` (see :func:`load_config_file`).
    overrides: ``(dotted field, raw value)`` pairs, as ``--config.FIELD=VALUE`` gives them
      (see :func:`apply_overrides`).
    validate: check the fields :func:`mnemonic_jax.workflow.train` reads
      (:func:`~mnemonic_jax.configs.validate_config`); a runner that only reads some
      fields may skip it.

  Returns:
    A locked ConfigDict (a mapping returned by ``get_config`` is converted): existing
    fields may be changed (keeping their types), new ones not; use
    ``with config.unlocked():`` to add or delete fields.

  Raises:
    ConfigError: as :func:`load_config_file`, :func:`apply_overrides` and
      :func:`~mnemonic_jax.configs.validate_config`; nothing is written by any of them.

  Example:
    >>> config = load_config("digits_mlp:quick", [("epochs", "3")])
    >>> config.name, config.epochs
    ('digits_mlp', 3)
  """
  config = apply_overrides(load_config_file(spec), overrides)
  if validate:
    validate_config(config)
  config.lock()
  return config
