"""The runners' cached runs, keyed on everything that changes a result, and their provenance.

A runner caches each finished run (one class set forgotten by one method from one trained
model, measured) as one JSON file, so that a rerun only rebuilds the report. A cached run
may be reused only when it was computed from the same inputs: its **key** is a dict of
everything that changes its result (the config fields that can change training or
forgetting, the method and its settings with their defaults, the rule, the measurement's
caps, the library version). The key is stored in the record (``cache_key``) and its digest
names the file, ``<stem>-<digest>.json``: runs of different settings live side by side and
none overwrites another.

Records written before keys were recorded (``<stem>.json``, no ``cache_key``: *keyless*)
were computed by code that is not recorded and may no longer exist, so by default they are
**not reused**: the run is computed again under today's code (its new file goes beside the
old one, which is kept). They are reused only on request (``reuse_keyless``: a runner's
``--reuse-keyless``, :data:`experiments.runner_args.REUSE_KEYLESS`, or its
``--report-only``, which rebuilds a report from the files as they are), and then only where
their key can be rebuilt: each runner gives a function that rebuilds the key such a record
was computed with from what it holds, reading every missing field as the default it was
run with (the config of the runner's spec with no override, unless a bundle cached beside
says otherwise; the library's defaults of version :data:`LEGACY_VERSION`); where that
cannot be told it returns ``None`` and the run is computed again, never reused on a guess.
A report says how many of its runs came from such files (:func:`runs_paragraph`).

**Code.** A key may also name the source its result depends on: a field
:data:`CODE_FIELD` (at any depth; :func:`~experiments.run_code.method_code` gives a
registered method's, the SHA-256 of its implementing modules and of every library module
they import, with docstrings and comments left out), so a run of a method whose code
changed since, its shared helpers' included, is computed again instead of silently reused.
The code is not part of the settings' digest: a record keyed with code goes in
``<stem>-<settings digest>-<code digest>.json``, beside the record of the same settings
written before keys named code (``<stem>-<settings digest>.json``, never overwritten). Such
an older record, whose code nobody recorded, is trusted as the settings' result under the
code present when it is first read with a code-bearing key, and **pinned** to that code
(``code_pins.json`` in the folder, file name to code digest): it is reused only while the
code is unchanged; the first change computes the run again. (Recomputing every cached run
once, to record its code, would take hours; pinning costs none and still catches every
later change.)

Every record written here carries ``provenance``: the machine and the time it was computed.
:func:`runs_paragraph` says, in a report's header, how many runs the command computed and
how many it reused from which earlier files. :func:`report_notes` keeps a report's
hand-written notes in ``<report>_notes.md`` beside it, so that a rerun never drops one.

Imports nothing of ``experiments`` but :mod:`experiments.run_code` (its code part, whose
functions it re-exports) and :mod:`experiments.report_files` (the notes file goes with the
report's files): the layer below :mod:`experiments.common`.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import pathlib
import re
import shlex
import sys
from typing import Any, Callable, Mapping, Sequence

import numpy as np

import mnemonic_jax
from experiments import report_files
from experiments.runner_args import REUSE_KEYLESS
from experiments.run_code import (  # noqa: F401  (the cache's code part)
    code_text, library_imports, method_code, source_digest)

#: The library version of every record written before records carried their key: the
#: package has been 0.1.0 since its first commit.
LEGACY_VERSION = "0.1.0"
VERSION = mnemonic_jax.__version__

#: Config fields that do not change a result (logging, where the data is read from, how
#: often a resumable checkpoint is written): never part of a key.
NEUTRAL_FIELDS = frozenset({"log_every", "download", "data_dir", "checkpoint_every"})
#: Config fields that change the forgetting but not the trained parameters: part of a run's
#: key, not of the trained model's.
FORGET_FIELDS = frozenset({"lambda1", "lambda2", "forget_classes", "auto", "baselines"})


def canonical(obj: Any) -> Any:
  """``obj`` as plain JSON values: mappings with string keys, lists, floats to 12 digits.

  Dataclasses become dicts, tuples lists, numpy scalars and arrays Python values. Floats
  are rounded to 12 significant digits, so that a grid computed on another machine (whose
  last bit may differ) gives the same key.

  Raises:
    TypeError: a value with no JSON form (a function, an arbitrary object).
  """
  if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
    return canonical(dataclasses.asdict(obj))
  if hasattr(obj, "to_dict") and callable(obj.to_dict):  # An ml_collections ConfigDict.
    return canonical(obj.to_dict())
  if isinstance(obj, Mapping):
    return {str(k): canonical(v) for k, v in sorted(obj.items(), key=lambda kv: str(kv[0]))}
  if isinstance(obj, (list, tuple)):
    return [canonical(v) for v in obj]
  if isinstance(obj, np.ndarray):
    return canonical(obj.tolist())
  if isinstance(obj, (bool, np.bool_)):
    return bool(obj)
  if isinstance(obj, (int, np.integer)):
    return int(obj)
  if isinstance(obj, (float, np.floating)):
    value = float(obj)
    return value if not np.isfinite(value) else float(f"{value:.12g}")
  if obj is None or isinstance(obj, str):
    return obj
  raise TypeError(f"no JSON form for a key value of type {type(obj).__name__}: {obj!r}")


#: Fields of a method's or move's settings that describe it or how it shows progress, and
#: change no result: left out of :func:`settings`.
DESCRIPTIVE_FIELDS = frozenset({"summary", "acts_on", "baseline", "progress"})


def settings(obj: Any) -> Any:
  """A method's or move's settings object as key: :func:`canonical`, without the
  :data:`DESCRIPTIVE_FIELDS` (a reworded summary is the same move)."""
  plain = canonical(obj)
  if isinstance(plain, dict):
    plain = {k: v for k, v in plain.items() if k not in DESCRIPTIVE_FIELDS}
  return plain


def digest(key: Mapping[str, Any]) -> str:
  """The first 12 hex digits of the SHA-256 of ``key``'s canonical JSON, its
  :data:`CODE_FIELD` entries left out (the settings' digest: :func:`split_code`)."""
  text = json.dumps(split_code(key)[0], sort_keys=True, separators=(",", ":"))
  return hashlib.sha256(text.encode()).hexdigest()[:12]


# ----------------------------------------------------------------------------------------
# The code a result depends on.

#: The key field naming the source a run's result depends on (``{module: digest}``).
CODE_FIELD = "code_sha256"
#: Where a folder's pins of code-less records live (see the module docstring).
PINS_FILE = "code_pins.json"


def split_code(key: Any) -> tuple[Any, dict[str, Any]]:
  """``(settings, code)``: :func:`canonical` ``key`` without its :data:`CODE_FIELD`
  entries at any depth, and those entries by the dotted path of the dict holding them
  (``""`` for the top)."""
  code: dict[str, Any] = {}

  def strip(value, path):
    if isinstance(value, dict):
      if CODE_FIELD in value:
        code[path] = value[CODE_FIELD]
      return {k: strip(v, f"{path}.{k}" if path else k) for k, v in value.items()
              if k != CODE_FIELD}
    if isinstance(value, list):
      return [strip(v, f"{path}[{i}]") for i, v in enumerate(value)]
    return value

  return strip(canonical(key), ""), code


def config_key(config: Any, seed: int | None = None, *, training_only: bool = False
               ) -> dict[str, Any]:
  """A config as key: every field but :data:`NEUTRAL_FIELDS`, ``seed`` set if given.

  Args:
    config: a ``ConfigDict`` or a plain mapping.
    seed: the seed of the run (replaces ``config.seed``).
    training_only: also leave out :data:`FORGET_FIELDS` (the key of a trained model).

  Returns:
    The canonical dict.
  """
  plain = canonical(config)
  drop = NEUTRAL_FIELDS | (FORGET_FIELDS if training_only else frozenset())
  plain = {k: v for k, v in plain.items() if k not in drop}
  if seed is not None:
    plain["seed"] = int(seed)
  return plain


def now() -> str:
  """The local time, to the second, ISO 8601."""
  return datetime.datetime.now().isoformat(timespec="seconds")


# ----------------------------------------------------------------------------------------
# The cache.


class RunCache:
  """The run files of one runner in one folder: reuse only on an equal key.

  Args:
    directory: the folder of the run files (created on the first write).
    machine: the line naming this machine, written into each computed record's
      ``provenance``.
    reuse_keyless: reuse records written before runs recorded their key (see the module
      docstring); by default they are computed again.
  """

  def __init__(self, directory: pathlib.Path, machine: str, reuse_keyless: bool = False):
    self.directory = pathlib.Path(directory)
    self.machine = machine
    self.reuse_keyless = reuse_keyless
    self.reused = 0
    self.reused_legacy = 0
    self.keyless_not_reused = 0  # Keyless records of the right settings, computed again.
    self.computed = 0
    self.stale: list[str] = []  # Files found but not reused (another key, unreadable).
    self.reused_records: list[dict[str, Any]] = []
    self.pinned = 0  # Code-less records pinned to the code they were first read with.
    self._pins: dict[str, str] | None = None

  def path(self, stem: str, key: Mapping[str, Any]) -> pathlib.Path:
    """The file of the run ``stem`` with ``key``: ``<stem>-<digest>.json``, or
    ``<stem>-<digest>-<code digest>.json`` for a key naming code (:data:`CODE_FIELD`)."""
    _, code = split_code(key)
    tail = f"-{_code_digest(code)}" if code else ""
    return self.directory / f"{stem}-{digest(key)}{tail}.json"

  def _pinned(self, name: str, code: dict[str, Any]) -> bool:
    """Whether the code-less record ``name`` may stand for ``code``: it is pinned to the
    first code it was read with (pinned now if it never was)."""
    if self._pins is None:
      try:
        pins = json.loads((self.directory / PINS_FILE).read_text())
      except (OSError, ValueError):
        pins = {}
      self._pins = pins if isinstance(pins, dict) else {}
    want = _code_digest(code)
    if name not in self._pins:
      self._pins[name] = want
      path = self.directory / PINS_FILE
      tmp = path.with_suffix(".tmp")
      tmp.write_text(json.dumps(self._pins, indent=0, sort_keys=True) + "\n")
      tmp.replace(path)
      self.pinned += 1
    return self._pins[name] == want

  def _read(self, path: pathlib.Path) -> dict[str, Any] | None:
    try:
      record = json.loads(path.read_text())
    except (OSError, ValueError):
      self.stale.append(path.name)
      return None
    if not isinstance(record, dict):
      self.stale.append(path.name)
      return None
    return record

  def get(self, stem: str, key: Mapping[str, Any],
          legacy: Callable[[dict[str, Any]], Mapping[str, Any] | None] | None = None,
          usable: Callable[[dict[str, Any]], bool] | None = None) -> dict[str, Any] | None:
    """The cached record of ``stem`` computed with ``key``, or ``None`` (compute it).

    Args:
      stem: the run's name (seed, classes, method...), without the digest.
      key: everything that changes the run's result; with a :data:`CODE_FIELD`, the
        record of the same settings written before keys named code is reused only while
        it is pinned to this code (see the module docstring).
      legacy: rebuilds the key of a record written before keys were recorded
        (``<stem>.json``), or returns ``None`` where that cannot be told; without it such
        records are never reused, and with it only if the cache was made with
        ``reuse_keyless`` (else such a record of the right settings is counted in
        ``keyless_not_reused`` and computed again). Compared on the settings only: reused
        on request, it is taken as it is, whatever code ``key`` names (never pinned).
      usable: whether a record with the right key can be used (e.g. the bundle it
        describes is still there); by default every one.

    Returns:
      The record (counted as reused) or ``None``.
    """
    want = canonical(key)
    settings_only, code = split_code(want)
    path = self.path(stem, want)
    if path.exists():
      record = self._read(path)
      if record is not None and canonical(record.get("cache_key")) == want:
        if usable is None or usable(record):
          return self._reuse(record)
        return None
      if record is not None:
        self.stale.append(path.name)
    if code:  # The same settings' record from before keys named code: pinned to one code.
      before = self.path(stem, settings_only)
      if before.exists():
        record = self._read(before)
        if record is not None and canonical(record.get("cache_key")) == settings_only \
           and self._pinned(before.name, code):
          if usable is None or usable(record):
            return self._reuse(record)
          return None
        if record is not None:
          self.stale.append(before.name)
    old = self.directory / f"{stem}.json"
    if old.exists():
      record = self._read(old)
      if record is None:
        return None
      if "cache_key" not in record and legacy is not None:
        rebuilt = legacy(record)
        if rebuilt is not None and split_code(rebuilt)[0] == settings_only:
          if not self.reuse_keyless:  # Its code is not recorded: computed again.
            self.keyless_not_reused += 1
            return None
          if usable is not None and not usable(record):
            return None
          self.reused_legacy += 1
          return self._reuse(record)
      self.stale.append(old.name)
    return None

  def _reuse(self, record: dict[str, Any]) -> dict[str, Any]:
    self.reused += 1
    self.reused_records.append(record)
    return record

  def put(self, stem: str, key: Mapping[str, Any], record: dict[str, Any]) -> dict[str, Any]:
    """Writes ``record`` (with its key and provenance) atomically; returns it."""
    record["cache_key"] = canonical(key)
    record["provenance"] = {"machine": self.machine, "computed": now()}
    self.directory.mkdir(parents=True, exist_ok=True)
    path = self.path(stem, record["cache_key"])
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=1, default=json_default))
    tmp.replace(path)
    self.computed += 1
    return record

  def summary(self) -> str:
    """``"reused R cached runs (L written before keys), computed C"``."""
    text = f"reused {self.reused} cached runs"
    if self.reused_legacy:
      text += f" ({self.reused_legacy} from files written before runs recorded their key)"
    text += f", computed {self.computed}"
    if self.keyless_not_reused:
      text += (f"; {self.keyless_not_reused} files written before runs recorded their key "
               "not reused: the code that computed them is not recorded "
               f"({REUSE_KEYLESS} reuses them)")
    if self.pinned:
      text += (f"; {self.pinned} files written before runs recorded their code pinned to "
               f"today's code ({PINS_FILE})")
    if self.stale:
      text += (f"; {len(self.stale)} cached files of other settings left as they are "
               f"(e.g. {self.stale[0]})")
    return text


def _code_digest(code: Mapping[str, Any]) -> str:
  """The first 8 hex digits of the SHA-256 of ``code`` (:func:`split_code`'s second part)."""
  text = json.dumps(canonical(code), sort_keys=True, separators=(",", ":"))
  return hashlib.sha256(text.encode()).hexdigest()[:8]


def json_default(obj: Any) -> Any:
  """``json.dumps``'s ``default``: numpy values as Python ones, dataclasses as dicts, the
  rest as ``str``."""
  if isinstance(obj, (np.floating, np.integer)):
    return obj.item()
  if isinstance(obj, np.ndarray):
    return obj.tolist()
  if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
    return dataclasses.asdict(obj)
  return str(obj)


# ----------------------------------------------------------------------------------------
# Reports: where the runs come from, and the hand-written notes.


def earlier_stamp(json_path: pathlib.Path, md_path: pathlib.Path) -> dict[str, str] | None:
  """Where and when the report about to be replaced says its unrecorded runs were made.

  For records that carry no provenance (written before records did), the best evidence
  is the report that showed them: its ``machine`` (JSON, or its ``Machine:`` line) and the
  date of its ``Written ...`` line, or, for a report written since, the stamp it carried
  forward.

  Returns:
    ``{"machine": ..., "written": ...}`` (either may be ``""``), or ``None``.
  """
  try:
    data = json.loads(json_path.read_text())
  except (OSError, ValueError):
    return None
  if not isinstance(data, dict):
    return None
  if "provenance" in data:  # Written since runs carry their provenance.
    return (data["provenance"] or {}).get("unrecorded")
  try:
    text = md_path.read_text()
  except OSError:
    text = ""
  found = re.search(r"Written (\d{4}-\d\d-\d\dT[\d:]+)", text)
  written = found.group(1) if found else ""
  found = re.search(r"^Machine: (.+?)(?:\. |\.?$)", text, re.MULTILINE)
  machine = data.get("machine") or (found.group(1) if found else "")
  return {"machine": machine, "written": written} if machine or written else None


def provenance(cache: RunCache, earlier: dict[str, str] | None) -> dict[str, Any]:
  """The report's account of its runs, for its JSON and :func:`runs_paragraph`.

  Args:
    cache: the cache the report's runs came through (what it computed, what it reused).
    earlier: :func:`earlier_stamp` of the report being replaced.

  Returns:
    ``{"written", "machine", "computed", "reused", "reused_by_machine": {machine: [first,
    last, count]}, "unrecorded_runs", "unrecorded": {"machine", "written"} or None,
    "keyless_runs"}``: ``keyless_runs`` of the reused runs came from files written before
    runs recorded their key (reused on request).
  """
  by_machine: dict[str, list[Any]] = {}
  unrecorded = 0
  for r in cache.reused_records:
    p = r.get("provenance")
    if not isinstance(p, dict):
      unrecorded += 1
      continue
    when = str(p.get("computed", ""))
    entry = by_machine.setdefault(str(p.get("machine", "?")), [when, when, 0])
    entry[0], entry[1], entry[2] = min(entry[0], when), max(entry[1], when), entry[2] + 1
  return {"written": now(), "machine": cache.machine, "computed": cache.computed,
          "reused": cache.reused, "reused_by_machine": by_machine,
          "unrecorded_runs": unrecorded,
          "unrecorded": (earlier or {"machine": "", "written": ""}) if unrecorded else None,
          "keyless_runs": cache.reused_legacy}


def runs_paragraph(prov: Mapping[str, Any], what: str = "runs") -> str:
  """One paragraph for a report's header: what was computed here, what was reused.

  Args:
    prov: :func:`provenance`'s dict.
    what: the plural noun of a run in this report.
  """
  computed, reused = prov["computed"], prov["reused"]
  here = f"on {prov['machine']}" if prov["machine"] else "on this machine"
  if computed and not reused:
    text = f"All {computed} {what} were computed by this command {here} ({prov['written']})."
  elif computed:
    text = (f"{computed} {what} were computed by this command {here} ({prov['written']}); "
            f"{reused} were reused from earlier run files, not recomputed")
  else:
    text = (f"**Nothing was recomputed for this report**: all {reused} {what} were reused "
            "from earlier run files")
  if reused:
    parts = [f"{n} computed on {m} ({first[:10]}" + (f" to {last[:10]})" if last[:10] != first[:10]
                                                     else ")")
             for m, (first, last, n) in prov["reused_by_machine"].items()]
    if prov["unrecorded_runs"]:
      source = prov.get("unrecorded") or {}
      told = ", ".join(x for x in (
          f"the report that showed them was written {source['written']}"
          if source.get("written") else "",
          f"on {source['machine']}" if source.get("machine") else "") if x)
      parts.append(f"{prov['unrecorded_runs']} written before run files recorded where and "
                   "when they were computed" + (f" ({told})" if told else ""))
    text += ": " + "; ".join(parts) + "."
  if prov.get("keyless_runs"):
    text += (f" {prov['keyless_runs']} of the reused {what} come from files written before "
             "runs recorded their key: the code that computed them is not recorded and may "
             "not be today's, and they were reused only because this command asked for it "
             f"({REUSE_KEYLESS} or --report-only); without that, they are computed again.")
  return text + f" Report written {prov['written']}."


NOTE_OPTION = "--note"


def _paragraphs(text: str) -> list[str]:
  return [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]


def _notes_of_command(command: str) -> list[str]:
  """The ``--note`` arguments of a recorded command line."""
  try:
    words = shlex.split(command)
  except ValueError:
    return []
  notes = []
  for i, word in enumerate(words):
    if word == NOTE_OPTION and i + 1 < len(words):
      notes.append(words[i + 1])
    elif word.startswith(NOTE_OPTION + "="):
      notes.append(word[len(NOTE_OPTION) + 1:])
  return notes


def report_notes(notes_file: pathlib.Path, new: Sequence[str],
                 previous_json: pathlib.Path | None = None) -> list[str]:
  """The hand-written notes of a report, kept in ``notes_file`` so no rerun drops one.

  The file holds the notes as paragraphs separated by blank lines; edit it to change or
  remove a note. Notes given on this command (``new``) that the file does not hold yet are
  added to it. Without the file, it starts with the notes of the report being replaced
  (its JSON's ``notes``, or the ``--note`` arguments of its recorded command).

  Args:
    notes_file: ``<out>/<report>_notes.md``.
    new: the ``--note`` paragraphs of this command.
    previous_json: the JSON of the report being replaced, if any.

  Returns:
    Every note, in order. The file is written with the report's files when the caller has
    opened a staged report (:func:`experiments.report_files.staged_report`), else at once.
  """
  if notes_file.exists():
    notes = _paragraphs(notes_file.read_text())
  else:
    notes = []
    if previous_json is not None:
      try:
        data = json.loads(previous_json.read_text())
      except (OSError, ValueError):
        data = {}
      if isinstance(data, dict):
        notes = list(data.get("notes") or _notes_of_command(str(data.get("command", ""))))
  before = list(notes)
  for note in new:
    if note.strip() and note.strip() not in notes:
      notes.append(note.strip())
  if notes != before or (notes and not notes_file.exists()):
    # With the report's files when a staged report is open (experiments.report_files).
    report_files.write_text(notes_file, "\n\n".join(notes) + "\n")
  return notes


def prepare_report(out: pathlib.Path, base: str, cache: RunCache, new_notes: Sequence[str],
                   notes_file: pathlib.Path | None = None, command: str | None = None,
                   prog: str = "experiments") -> tuple[dict[str, Any], list[str]]:
  """What a report's header needs, read before the report ``<out>/<base>.*`` is replaced.

  Called inside the staged report that then writes the report, it reads the earlier
  report's files in ``out`` and stages the notes file with the new report's files.

  Args:
    out: the report's folder.
    base: the report's base name.
    cache: the cache its runs came through.
    new_notes: the ``--note`` paragraphs of this command.
    notes_file: the notes file (default ``<out>/<base>_notes.md``).
    command: this command; when the report about to be replaced was made by another, a
      line on stderr says so (the runs stay cached, the report is replaced).
    prog: the runner, at the start of that line.

  Returns:
    ``(provenance, notes)``: :func:`provenance` (with ``notes_file``, the file's name) and
    :func:`report_notes`.
  """
  json_path = out / f"{base}.json"
  if command is not None:
    say_if_replacing(json_path, command, prog)
  prov = provenance(cache, earlier_stamp(json_path, out / f"{base}.md"))
  notes_file = notes_file or out / f"{base}_notes.md"
  notes = report_notes(notes_file, new_notes, json_path)
  prov["notes_file"] = notes_file.name
  return prov, notes


def say_if_replacing(json_path: pathlib.Path, command: str, prog: str) -> None:
  """A line on stderr when the report at ``json_path`` was made by a command other than
  ``command`` (another class set, other methods): replaced without a word, its figures
  were lost to whoever had not kept them."""
  try:
    earlier = json.loads(json_path.read_text()).get("command")
  except (OSError, ValueError, AttributeError):
    return
  if isinstance(earlier, str) and earlier.strip() != command.strip():
    print(f"{prog}: replacing {json_path.with_suffix('.md')}, made by another command "
          f"({earlier}); its runs stay cached. Pass --report NAME (where the runner takes "
          "it) or another --out to keep both", file=sys.stderr)


def notes_lines(notes: Sequence[str], prov: Mapping[str, Any]) -> list[str]:
  """The notes as report lines, saying where they are kept."""
  if not notes:
    return []
  lines = [f"Notes (kept in `{prov.get('notes_file', 'the notes file')}` beside this report; "
           "edit that file to change them, a rerun keeps them):", ""]
  for note in notes:
    lines += [note, ""]
  return lines
