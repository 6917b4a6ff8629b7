"""Path safety of the commands: an input is never modified, an output never clobbered.

Every command names what it writes and what it reads before any work. An output that is,
contains or lies inside an input (symlinks resolved, and one directory reached two ways
caught by its device and inode) is refused; an existing output is replaced only with
``--force``, and then only if it is a bundle that may be replaced
(:func:`mnemonic_jax.checkpointing.check_output`). Refusals are user errors: one line,
exit status 2, nothing written.

Before all of that, every path a command is given must be one the storage library can
take (:func:`check_storable`, on :func:`given_paths`): a name that is not UTF-8 is
refused before any work, never met half-way (a training run that trained, then failed
at its save) or mistaken for a damaged bundle.
"""

from __future__ import annotations

import argparse
import os
import pathlib
from collections.abc import Sequence
from typing import Any

from mnemonic_jax import _files, checkpointing, configs, run_metrics
from mnemonic_jax.cli.parser import DEMO_FILES, UsageError

#: ``(what, path)``: what a command reads or writes, named as the user knows it.
Named = tuple[str, pathlib.Path]


def _absolute(path: os.PathLike | str) -> pathlib.Path:
  """``path`` made absolute (as given if the current directory is gone: the command meets
  that itself, later)."""
  path = pathlib.Path(path).expanduser()
  try:
    return path.absolute()
  except OSError:
    return path


def given_paths(args: argparse.Namespace) -> list[Named]:
  """Every path a command's arguments name, absolute: what it reads and what it writes.

  Every option parsed as a path (``--checkpoint``, ``--output``, ``--workdir``,
  ``--output-dir``, ``--oracle``, ``--original``, ``--params``, ``--codes``,
  ``--data-dir``, ``--compilation-cache``, and any added later: the parser makes them
  :class:`pathlib.Path`), ``--config``'s file and ``--dataset idx:DIR``'s folder. What a
  train config names (``config.data_dir``, ``config.pretrained``) is checked once it is
  loaded (:func:`check_train_inputs`).

  Args:
    args: the parsed arguments.

  Returns:
    ``(option, absolute path)`` of each.
  """
  found = [(f"--{name.replace('_', '-')}", _absolute(value))
           for name, value in vars(args).items() if isinstance(value, pathlib.PurePath)]
  spec = getattr(args, "config", None)
  if isinstance(spec, str):
    try:
      found.append(("--config", configs.split_spec(spec)[0]))
    except OSError:  # The current directory is gone: load_config says so.
      pass
  dataset = getattr(args, "dataset", None)
  found += dataset_inputs(dataset if isinstance(dataset, str) else None)
  return found


def check_storable(named: Sequence[Named]) -> None:
  """Refuses a path the storage library cannot take (:func:`mnemonic_jax._files.unstorable`:
  not UTF-8), before any work.

  TensorStore, which reads and writes every array of a bundle and of a training
  checkpoint, refused such a path only when it met it: a traceback from every command
  that writes (``train`` after training all its steps), and an intact bundle called
  "truncated or corrupt". Every path a command is given is checked, read or written, so
  that the kind is refused as one, whatever reaches TensorStore later.

  Args:
    named: ``(what, path)`` pairs (:func:`given_paths`).

  Raises:
    UsageError: a path is not UTF-8 (named as :func:`mnemonic_jax._files.shown` does:
      each byte that is not UTF-8 as ``\\xNN``).
  """
  for what, path in named:
    why = _files.unstorable(path)
    if why is not None:
      raise UsageError(f"{what} {_files.shown(path)}: {why}")


def inside(inner: str, outer: str) -> bool:
  """Whether ``inner`` is ``outer`` or lies under it, both resolved (symlinks followed).

  Compares the resolved paths, then, for ancestors that exist, their device and inode
  numbers (which also catches one directory reached through a bind mount or a
  case-insensitive file system).

  Args:
    inner: a path.
    outer: a path.

  Returns:
    Whether ``inner`` is ``outer`` or lies under it.
  """
  inner, outer = os.path.realpath(inner), os.path.realpath(outer)
  if os.path.commonpath([inner, outer]) == outer:
    return True
  try:
    target = os.stat(outer)
  except OSError:
    return False
  path = inner
  while True:
    try:
      st = os.stat(path)
      if (st.st_dev, st.st_ino) == (target.st_dev, target.st_ino):
        return True
    except OSError:
      pass
    parent = os.path.dirname(path)
    if parent == path:
      return False
    path = parent


def check_no_overlap(outputs: Sequence[Named], inputs: Sequence[Named]) -> None:
  """Refuses any output that is, contains or lies inside an input (symlinks resolved).

  Args:
    outputs: ``(what, path)`` of everything the command writes or replaces.
    inputs: ``(what, path)`` of everything it reads, which is never modified.

  Raises:
    UsageError: an output and an input overlap, either way round.
  """
  def shown(path):
    real = os.path.realpath(path)
    return f"{path}" + (f" (resolved: {real})" if real != os.fspath(path) else "")

  for out_what, out in outputs:
    for in_what, src in inputs:
      if inside(os.fspath(src), os.fspath(out)) and inside(os.fspath(out), os.fspath(src)):
        raise UsageError(
            f"{out_what} {shown(out)} is the input {in_what}, which is never modified; "
            "choose an output outside every input")
      if inside(os.fspath(src), os.fspath(out)):
        raise UsageError(
            f"{out_what} {shown(out)} contains the input {in_what} {shown(src)}, which is "
            "never modified (replacing the output would delete it); choose an output "
            "outside every input")
      if inside(os.fspath(out), os.fspath(src)):
        raise UsageError(
            f"{out_what} {shown(out)} would write into the input {in_what} {shown(src)}, "
            "which is never modified; choose an output outside every input")


def check_folder_reachable(flag: str, folder: pathlib.Path, fix: str) -> None:
  """Refuses a folder option that is a symbolic link leading nowhere (a loop, or to nothing),
  named as such (it was called "not a directory" or "already exists").

  Raises:
    UsageError: ``folder`` is such a link.
  """
  if os.path.islink(folder) and not os.path.exists(folder):
    raise UsageError(f"{flag} {_files.missing_line(folder, fix)}")


def check_cache_apart(cache: pathlib.Path | str | None, source: str,
                      named: Sequence[Named]) -> None:
  """Refuses a compilation cache folder that is, or lies inside, a path the command reads
  or writes (symlinks resolved, :func:`inside`).

  JAX writes a file into the cache for every program it compiles: inside an input bundle
  that made the bundle unreadable (a file its record does not know), inside an output or a
  training workdir it made the command refuse its own leftover as a damaged checkpoint.
  Checked before the folder is created.

  Args:
    cache: the folder (:func:`mnemonic_jax.cli.compilation_cache.compilation_cache_dir`;
      ``"jax"`` for ``$JAX_COMPILATION_CACHE_DIR``, None for no cache).
    source: where the folder was named (``--compilation-cache``, a variable).
    named: ``(option, path)`` of everything the command reads or writes
      (:func:`given_paths`; the ``--compilation-cache`` entry itself is skipped).

  Raises:
    UsageError: the cache folder is or lies inside one of them.
  """
  if cache == "jax":
    cache = os.environ.get("JAX_COMPILATION_CACHE_DIR", "")
    if "://" in cache or not cache:
      return
  if cache is None:
    return
  for what, path in named:
    if what != "--compilation-cache" and inside(os.fspath(_absolute(cache)), os.fspath(path)):
      raise UsageError(
          f"the compilation cache {cache} ({source}) lies inside {what} {path}: JAX writes a "
          f"file there for every program it compiles, which would change {what}; choose a "
          "cache folder outside every path the command reads or writes, or pass "
          "--no-compilation-cache")


def check_output(output: pathlib.Path, inputs: Sequence[Named], force: bool) -> None:
  """Refuses an output that overlaps an input, exists (without force) or may not be replaced.

  Args:
    output: the bundle to write.
    inputs: ``(flag, path)`` of every input the command reads.
    force: whether an existing bundle at ``output`` may be replaced.

  Raises:
    UsageError: ``output`` and an input overlap (see :func:`check_no_overlap`).
    mnemonic_jax.checkpointing.CheckpointError: ``output`` exists without ``force``, or is
      not a bundle that may be replaced.
  """
  check_no_overlap([("--output", output)], inputs)
  checkpointing.check_output(output, force=force, inputs=[path for _, path in inputs])


def dataset_inputs(name: str | None, data_dir: Any = None) -> list[Named]:
  """The user's directories a dataset is read from (``idx:DIR``, a tfds data_dir).

  Args:
    name: the dataset's name (``digits``, ``idx:DIR``, ``tfds:mnist``, ...), or None.
    data_dir: the tfds data directory, or None.

  Returns:
    ``(what, absolute path)`` of each directory read.
  """
  found = []
  if name and name.startswith("idx:") and name[len("idx:"):]:
    found.append((f"dataset {name}", pathlib.Path(name[len("idx:"):]).absolute()))
  if data_dir:
    found.append(("data_dir", pathlib.Path(os.fspath(data_dir)).expanduser().absolute()))
  return found


def check_train_paths(spec: str, config: Any, workdir: pathlib.Path) -> None:
  """Refuses a train run whose outputs overlap what it reads, before any work.

  ``train`` writes ``WORKDIR/train`` (checkpoints, old steps deleted) and
  ``WORKDIR/bundle`` (:func:`check_train_inputs`); a bundle already there is checked by
  :func:`mnemonic_jax.workflow.finished_run` first.

  Args:
    spec: the ``--config`` argument (``NAME[:VARIANT]`` or ``FILE[:VARIANT]``).
    config: the loaded config.
    workdir: the absolute run directory.

  Raises:
    UsageError: an output and an input overlap.
    mnemonic_jax.checkpointing.CheckpointError: ``WORKDIR/bundle`` exists and is not a
      bundle that may be replaced.
  """
  check_train_inputs(spec, config, workdir)
  checkpointing.check_output(workdir / "bundle", force=True)


def check_train_inputs(spec: str, config: Any, workdir: pathlib.Path) -> None:
  """Refuses a train run whose outputs overlap what it reads (first, even on a finished run).

  ``train`` writes ``WORKDIR/train``, ``WORKDIR/bundle``, the lock, ``metrics.jsonl`` and
  ``tensorboard/``; it reads the config file,
  ``config.pretrained`` and the dataset's directories. A config file elsewhere in WORKDIR
  is fine.

  Args:
    spec: the ``--config`` argument (``NAME[:VARIANT]`` or ``FILE[:VARIANT]``).
    config: the loaded config.
    workdir: the absolute run directory.

  Raises:
    UsageError: an output and an input overlap, a path it reads is not UTF-8
      (:func:`check_storable`), the workdir is a file, or the compilation cache folder
      lies inside a path the config names (:func:`check_cache_apart`).
  """
  check_folder_reachable("--workdir", workdir, "fix or remove the link, or choose another "
                         "--workdir")
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise UsageError(f"--workdir {workdir} is a file; pass a directory (it holds the run's "
                     "checkpoints, its metrics and its bundle)")
  get = config.get if hasattr(config, "get") else (lambda key, default=None: default)
  inputs = [("config file", configs.split_spec(spec)[0])]
  if get("pretrained"):
    inputs.append(("config.pretrained",
                   pathlib.Path(os.fspath(get("pretrained"))).expanduser().absolute()))
  dataset = get("dataset")
  inputs += dataset_inputs(dataset if isinstance(dataset, str) else None, get("data_dir"))
  check_storable(inputs)  # config.data_dir and config.pretrained too (overrides included).
  check_no_overlap([("train's bundle", workdir / "bundle"),
                    ("train's checkpoints", workdir / "train"),
                    ("train's lock", workdir / checkpointing.LOCK_FILE),
                    ("train's metrics", workdir / run_metrics.METRICS_FILE),
                    ("train's TensorBoard files", workdir / run_metrics.TENSORBOARD_DIR)],
                   inputs)
  # What the config names is known only now: the cache (opened, not yet written) apart too.
  check_cache_apart(_open_cache(), "the compilation cache", inputs)


def _open_cache() -> str | None:
  """The folder of JAX's persistent compilation cache now in use (None: none)."""
  import jax  # pylint: disable=import-outside-toplevel  # The parser imports no JAX.

  if not jax.config.jax_enable_compilation_cache:
    return None
  folder = jax.config.jax_compilation_cache_dir
  return folder if folder and "://" not in folder else None


def check_demo_outputs(out: pathlib.Path, force: bool) -> None:
  """Refuses a demo whose outputs exist (without ``force``) or are not its own.

  ``demo`` writes ``OUTPUT_DIR/trained`` and ``OUTPUT_DIR/forgotten`` and the chart
  ``OUTPUT_DIR/per_class_accuracy.png``. Without ``force`` none of them may exist; with
  it they are replaced (a bundle path only if it is empty or a bundle holding nothing
  else; the chart if it is a file, or a symlink, which is replaced itself and never
  written through). Nothing else in OUTPUT_DIR is touched. OUTPUT_DIR may not be a bundle
  or lie inside one, nor be a ``train`` workdir (with or without ``force``): the demo's
  files would change them, and ``--checkpoint`` on the folder would still read its old
  model.

  Args:
    out: the absolute ``--output-dir``.
    force: ``--force``.

  Raises:
    mnemonic_jax.checkpointing.CheckpointError: a bundle path holds something that is not
      a replaceable bundle.
    UsageError: OUTPUT_DIR is a bundle, lies inside one or is a train workdir, an output
      exists without ``force``, or the chart's path is a directory.
  """
  check_folder_reachable("--output-dir", out, "fix or remove the link, or choose another "
                         "--output-dir")
  around = checkpointing.enclosing_bundle(out)
  if around is not None:
    where = "is a bundle" if around == pathlib.Path(os.path.realpath(out)) else (
        f"lies inside the bundle {around}")
    raise UsageError(f"--output-dir {out} {where}; the demo would write its bundles and "
                     "chart into it, changing that bundle; choose another --output-dir")
  if os.path.lexists(out / checkpointing.LOCK_FILE):  # Every train run takes it.
    raise UsageError(f"--output-dir {out} is a train workdir; the demo would write its "
                     "bundles and chart among that run's files; choose another --output-dir")
  existing = [name for name in DEMO_FILES if os.path.lexists(out / name)]
  for name in DEMO_FILES[:2]:  # First: where --force would not help, it is not advised.
    checkpointing.check_output(out / name, force=True)
  chart = out / DEMO_FILES[2]
  if chart.is_dir() and not chart.is_symlink():
    raise UsageError(f"{chart} is a directory; the demo writes its chart there; move it "
                     "away or choose another --output-dir")
  if existing and not force:
    raise UsageError(
        f"{out} already holds {', '.join(existing)} of an earlier demo; pass --force to "
        "replace them, or choose another --output-dir")
