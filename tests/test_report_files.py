"""A runner's report files are replaced together or not at all (experiments.report_files).

A Ctrl-C, a SIGTERM or an exception while a report was written left the earlier report's
files mixed with new ones (a new depth.json beside an old depth.md, a new .md whose figures
were old). Each test writes an earlier report, interrupts the new one half-way and checks
that the earlier files are byte for byte as they were and that nothing hidden is left.
"""

import json
import os
import pathlib
import signal
import subprocess
import sys
import textwrap

import pytest
from matplotlib.figure import Figure

from experiments import bench_common, report_files
from mnemonic_jax import _files

REPO = pathlib.Path(__file__).resolve().parents[1]
EARLIER = {"r.md": b"# earlier\n![f](r_fig.png)\n", "r.json": b'{"earlier": 1}',
           "r_fig.png": b"\x89PNG earlier", "parts/p.md": b"earlier part"}


def _earlier(out: pathlib.Path, files=None) -> dict[str, bytes]:
  files = EARLIER if files is None else files
  for name, data in files.items():
    (out / name).parent.mkdir(parents=True, exist_ok=True)
    (out / name).write_bytes(data)
  return _snapshot(out)


def _snapshot(out: pathlib.Path) -> dict[str, bytes]:
  """Every file under ``out`` (hidden ones included), relative path -> bytes."""
  return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*"))
          if p.is_file()}


def _hidden(out: pathlib.Path) -> list[pathlib.Path]:
  return list(out.rglob(".*"))


def test_an_interrupted_report_leaves_the_earlier_files_and_no_staging(tmp_path):
  before = _earlier(tmp_path)
  with pytest.raises(KeyboardInterrupt):
    with report_files.staged_report(tmp_path) as stage:
      assert stage.parent == tmp_path and stage.name.startswith(".")
      (stage / "r.md").write_text("# new")
      (stage / "r.json").write_text("{}")
      (stage / "parts").mkdir()
      (stage / "parts" / "p.md").write_text("new part")
      raise KeyboardInterrupt  # Before the figure.
  assert _snapshot(tmp_path) == before and not _hidden(tmp_path)


def test_a_finished_report_replaces_every_file_and_keeps_the_others(tmp_path):
  _earlier(tmp_path, {**EARLIER, "other.md": b"another report"})
  with report_files.staged_report(tmp_path) as stage:
    for name in EARLIER:
      (stage / name).parent.mkdir(parents=True, exist_ok=True)
      (stage / name).write_bytes(b"new " + name.encode())
    assert (tmp_path / "r.md").read_bytes() == EARLIER["r.md"]  # Not before the end.
  assert _snapshot(tmp_path) == {**{n: b"new " + n.encode() for n in EARLIER},
                                 "other.md": b"another report"}
  assert not _hidden(tmp_path)


def test_files_joined_to_an_open_report_move_with_it(tmp_path):
  """A nested staged report, a target() elsewhere and a remove() commit with the outer one,
  and none of them happens if it is interrupted."""
  elsewhere = tmp_path / "elsewhere"
  _earlier(tmp_path)

  def write(fail: bool) -> None:
    with report_files.staged_report(tmp_path) as stage:
      (stage / "r.md").write_text("new md")
      with report_files.staged_report(tmp_path) as inner:
        assert inner == stage
        (inner / "r.json").write_text("new json")
      report_files.target(elsewhere / "notes.md").write_text("new notes")
      report_files.remove(tmp_path / "r_fig.png")
      if fail:
        raise RuntimeError("half-way")

  with pytest.raises(RuntimeError):
    write(fail=True)
  assert _snapshot(tmp_path) == EARLIER and not _hidden(tmp_path)
  write(fail=False)
  files = _snapshot(tmp_path)
  assert (files["r.md"], files["r.json"], files["elsewhere/notes.md"]) == (
      b"new md", b"new json", b"new notes")
  assert "r_fig.png" not in files and not _hidden(tmp_path)


def test_a_ctrl_c_while_the_files_move_waits_until_every_one_is_in_place(tmp_path,
                                                                        monkeypatch):
  """The signal is held back during the moves and raised once they are done."""
  _earlier(tmp_path)
  moved = []
  real_replace = os.replace

  def replace(src, dst):
    if not moved:
      signal.raise_signal(signal.SIGINT)  # After the first file's move starts.
    real_replace(src, dst)
    moved.append(pathlib.Path(dst).name)

  previous = signal.signal(signal.SIGINT, signal.default_int_handler)
  try:
    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(KeyboardInterrupt):
      with report_files.staged_report(tmp_path) as stage:
        for name in ("r.md", "r.json", "r_fig.png"):
          (stage / name).write_text("new")
  finally:
    signal.signal(signal.SIGINT, previous)
  assert sorted(moved) == ["r.json", "r.md", "r_fig.png"] and moved[-1] == "r.md"
  files = _snapshot(tmp_path)
  assert all(files[n] == b"new" for n in ("r.md", "r.json", "r_fig.png"))
  assert not _hidden(tmp_path)


_CHILD = textwrap.dedent("""
    import os, pathlib, signal, sys, time
    from experiments import report_files
    out, when = pathlib.Path(sys.argv[1]), sys.argv[2]
    real_replace = os.replace
    def replace(src, dst):
      if when == "moving":
        os.kill(os.getpid(), signal.SIGTERM)
      real_replace(src, dst)
    os.replace = replace
    with report_files.staged_report(out) as stage:
      (stage / "r.md").write_text("new")
      if when == "writing":
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)
      (stage / "r.json").write_text("new")
    print("not reached")
""")


@pytest.mark.parametrize("when", ["writing", "moving"])
def test_sigterm_ends_the_process_with_the_earlier_or_the_new_report_whole(tmp_path, when):
  """SIGTERM while writing: the staging folder is removed and the process still ends by
  the signal; while the files move: they all move first."""
  before = _earlier(tmp_path)
  run = subprocess.run([sys.executable, "-c", _CHILD, str(tmp_path), when], cwd=REPO,
                       env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True,
                       text=True, timeout=60, check=False)
  assert run.returncode == -signal.SIGTERM and "not reached" not in run.stdout, run.stderr
  files = _snapshot(tmp_path)
  if when == "writing":
    assert files == before
  else:
    assert files["r.md"] == files["r.json"] == b"new"
  assert not _hidden(tmp_path)


def test_a_dead_process_s_staging_folder_is_removed_a_live_one_kept(tmp_path):
  dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                        capture_output=True, text=True, check=True)
  host = _files.HOST_TAG
  stale = tmp_path / f".report-staging-{host}-{int(dead.stdout)}-0123abcd"
  live = tmp_path / f".report-staging-{host}-{os.getpid()}-0123abcd"
  for folder in (stale, live):
    folder.mkdir()
    (folder / "r.md").write_text("half")
  with report_files.staged_report(tmp_path) as stage:
    (stage / "r.md").write_text("new")
  assert not stale.exists() and (live / "r.md").exists()
  assert (tmp_path / "r.md").read_text() == "new"


def _interrupting_savefig(monkeypatch):
  """Figure.savefig writes half a file, then a Ctrl-C arrives."""
  def savefig(self, path, *args, **kwargs):
    del self, args, kwargs
    pathlib.Path(path).write_bytes(b"\x89PNG half")
    raise KeyboardInterrupt
  monkeypatch.setattr(Figure, "savefig", savefig)


def test_depth_report_interrupted_at_its_figure_keeps_the_earlier_one(tmp_path, monkeypatch):
  """depth wrote depth.json and depth.csv, then the figure: a Ctrl-C there left a new
  depth.json beside the old depth.md."""
  from experiments import depth_write  # pylint: disable=import-outside-toplevel

  before = _earlier(tmp_path, {"depth.md": b"# earlier", "depth.json": b"{}",
                               "depth.csv": b"a,b\n", "depth_digits_mlp.png": b"\x89PNG old"})
  figures = [{"name": "E_F", "label": "E_F", "unit": "%", "ratio": False, "method": 100.0,
              "oracle": 100.0, "original": 0.0, "gap": 0.0}]
  run = {"classes": [3], "seed": 0, "method": "mnemonic", "data": "none",
         "goals": [{"name": g, "passed": True} for g in depth_write.GOALS],
         "report": {"figures": figures, "verdict": {"output_level_only": False},
                    "skipped": []}}
  result = {"models": [{"name": "digits_mlp", "runs": [run], "spreads": []}]}
  _interrupting_savefig(monkeypatch)
  with pytest.raises(KeyboardInterrupt):
    depth_write.write_all(result, tmp_path)
  assert _snapshot(tmp_path) == before and not _hidden(tmp_path)


def _deep_runs():
  goals = ("forgetting", "one_constant", "input_scale", "probe", "prototype", "relearning")
  return [{"part": "held-out seed", "model": "m", "seed": 0, "classes": [3], "method": m,
           "data": "none", "method_seconds": 0.1,
           "goals": [{"name": g, "passed": True} for g in goals]} for m in ("a", "b")]


def test_deep_report_interrupted_at_its_figure_keeps_the_earlier_one(tmp_path, monkeypatch):
  from experiments import deep  # pylint: disable=import-outside-toplevel

  deep.write(_deep_runs(), [], tmp_path, "python -m experiments.deep --earlier")
  before = _snapshot(tmp_path)
  assert set(before) == {"deep.md", "deep.json", "deep.csv", "deep.png"}
  _interrupting_savefig(monkeypatch)
  with pytest.raises(KeyboardInterrupt):
    deep.write(_deep_runs()[:1], [], tmp_path, "python -m experiments.deep --new")
  assert _snapshot(tmp_path) == before and not _hidden(tmp_path)


def test_notes_given_to_an_interrupted_report_are_not_kept_without_it(tmp_path):
  """prepare_report reads the earlier report in out and stages the notes file with the
  report's files (it wrote the notes file at once, before the report)."""
  from experiments import run_cache  # pylint: disable=import-outside-toplevel

  notes = tmp_path / "r_notes.md"
  notes.write_text("Earlier note.\n")
  (tmp_path / "r.json").write_text(json.dumps({"command": "earlier"}))
  cache = run_cache.RunCache(tmp_path / "runs", "test machine")
  with pytest.raises(KeyboardInterrupt):
    with report_files.staged_report(tmp_path):
      _, kept = run_cache.prepare_report(tmp_path, "r", cache, ["New note."])
      assert kept == ["Earlier note.", "New note."]
      raise KeyboardInterrupt
  assert notes.read_text() == "Earlier note.\n" and not _hidden(tmp_path)
  with report_files.staged_report(tmp_path):
    run_cache.prepare_report(tmp_path, "r", cache, ["New note."])
  assert notes.read_text() == "Earlier note.\n\nNew note.\n"


def test_stale_figures_of_an_interrupted_methods_report_stay(tmp_path):
  """The figures an earlier methods report had and the new one does not are removed with
  the new report's files, not before."""
  from experiments import compare_report  # pylint: disable=import-outside-toplevel

  before = _earlier(tmp_path, {"m.md": b"earlier", "m_depth.png": b"\x89PNG depth"})
  with pytest.raises(KeyboardInterrupt):
    with report_files.staged_report(tmp_path) as stage:
      compare_report.remove_stale_figures(tmp_path, "m", [stage / "m_ar_ef.png"])
      raise KeyboardInterrupt
  assert _snapshot(tmp_path) == before
  with report_files.staged_report(tmp_path) as stage:
    (stage / "m_ar_ef.png").write_bytes(b"\x89PNG new")
    compare_report.remove_stale_figures(tmp_path, "m", [stage / "m_ar_ef.png"])
  assert sorted(_snapshot(tmp_path)) == ["m.md", "m_ar_ef.png"]


def test_a_benchmark_s_table_and_rows_are_replaced_together(tmp_path, capsys):
  """bench_* wrote the table, then the ratio rows: a failure between left a new table
  beside the rows of an earlier run."""
  table, rows = tmp_path / "bench.md", tmp_path / "rows" / "bench.json"
  before = _earlier(tmp_path, {"bench.md": b"# earlier", "rows/bench.json": b'{"rows": []}'})
  ratios = bench_common.Ratios()
  ratios.add("path", 1.0, 2.0, note=object())  # Not JSON: the rows fail after the table.
  with pytest.raises(TypeError):
    with bench_common.staged():
      bench_common.write("# new", str(table))
      ratios.write_json(str(rows))
  assert _snapshot(tmp_path) == before and not _hidden(tmp_path)
  ratios.rows[0]["note"] = "fine"
  with bench_common.staged():
    bench_common.write("# new", str(table))
    ratios.write_json(str(rows))
  assert table.read_text() == "# new\n" and json.loads(rows.read_text())["rows"]
  assert not _hidden(tmp_path)
  capsys.readouterr()
