"""The side-by-side benchmarks' shared pieces: rounds, ratios, provenance, no torch needed.

Nothing here times anything or needs torch; the benchmarks themselves run in
``tests/test_bench_all.py`` (slow).
"""

import json
import subprocess
import sys

import pytest

from experiments import bench_all, bench_common, torch_reference


def test_interleaved_rotates_the_order_each_round():
  order = []
  calls = {name: (lambda name=name: order.append(name) or 1.0) for name in "abc"}
  out = bench_common.interleaved(3, calls, log=lambda line: None)
  assert order == list("abc" "bca" "cab")
  assert out == {name: [1.0, 1.0, 1.0] for name in "abc"}


def test_ratios_divide_figures_of_the_same_run(tmp_path):
  ratios = bench_common.Ratios()
  ratios.add("epoch", 8.0, 2.0, "bar off")
  ratios.add("no torch", None, 3.0)
  assert [r["ratio"] for r in ratios.rows] == [0.25, None]
  table = ratios.table()
  assert table[2].startswith("| epoch | 8 | 2 | 0.25 | bar off |")
  assert table[3].startswith("| no torch | - | 3 | - |")
  ratios.write_json(str(tmp_path / "r.json"), {"benchmark": "x"})
  saved = json.loads((tmp_path / "r.json").read_text())
  assert saved["benchmark"] == "x" and saved["rows"] == ratios.rows


def test_command_line_leaves_out_the_output_files():
  line = bench_common.command_line("bench_x", ["--rounds", "2", "--out", "a.md", "--json=b",
                                               "--json", "c.json", "--tiny"])
  assert line == "python -m experiments.bench_x --rounds 2 --tiny"


def test_header_names_machine_load_and_the_pytorch_side(monkeypatch):
  """Both branches, whether or not torch is installed here (CI has no torch)."""
  monkeypatch.setattr(torch_reference, "torch_version", lambda: "2.x")  # As if installed.
  text = "\n".join(bench_common.header("T", "cmd"))
  assert "load average at the start" in text and "cores usable" in text
  assert "no code of the published reference implementation was copied" in text
  monkeypatch.setattr(torch_reference, "torch_version", lambda: None)
  line = bench_common.torch_line()
  assert line.count("\n") == 0 and "not installed" in line and "only mnemonic-jax" in line


def test_neither_the_package_nor_the_transcription_imports_torch():
  code = ("import sys, mnemonic_jax, experiments.torch_reference as t, experiments.bench_common;"
          "mnemonic_jax.forget; print('torch' in sys.modules)")
  run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       check=True, cwd=bench_common.REPO)
  assert run.stdout.strip() == "False"


def test_torch_missing_is_one_clear_error(monkeypatch):
  monkeypatch.setitem(sys.modules, "torch", None)  # ``import torch`` raises ImportError.
  with pytest.raises(ImportError, match=r"\[bench\]"):
    torch_reference.import_torch()


def test_bench_all_sizes_name_every_benchmark():
  names = [name for name, _ in bench_all.BENCHES]
  assert set(bench_all.TINY) == set(names)
  assert set(bench_all.SIDE_BY_SIDE) <= set(names)


def test_row_labels_name_the_pytorch_threads_or_nothing():
  assert bench_common.versus(None) == ""
  assert bench_common.versus(1) == " (PyTorch at 1 thread)"
  assert bench_common.versus(2, "load-forget-save") == " (PyTorch load-forget-save, at 2 threads)"


def test_bench_all_passes_the_torch_threads_to_side_by_side_benchmarks(monkeypatch, tmp_path):
  calls = []

  class Failed:
    returncode, stdout, stderr = 1, "", "not run"

  monkeypatch.setattr(bench_all.subprocess, "run", lambda a, **k: calls.append(a) or Failed())
  assert bench_all.main(["--out", str(tmp_path / "b.md"), "--only", "bench_train,bench_search",
                         "--torch-threads", "1"]) == 1
  train, search = (c[2:] for c in calls)
  assert train[0] == "experiments.bench_train" and "--json" in train
  assert train[train.index("--torch-threads") + 1] == "1"
  assert "--torch-threads" not in search and "--json" not in search
  assert "**failed (exit 1)**" in (tmp_path / "b.md").read_text()


def test_a_benchmark_report_is_a_file_written_again_on_a_rerun(tmp_path):
  """--out took the runners' folder type: the README's own bench_all command refused the
  committed experiments/results/bench.md as 'exists and is not a folder'."""
  import argparse  # pylint: disable=import-outside-toplevel

  from experiments import bench_common  # pylint: disable=import-outside-toplevel

  report = tmp_path / "bench.md"
  report.write_text("an earlier run\n")
  assert bench_common.out_path(str(report)) == str(report)
  for bad, words in (("", "is empty"), (str(tmp_path), "is a folder")):
    with pytest.raises(argparse.ArgumentTypeError, match=words):
      bench_common.out_path(bad)


def test_bench_all_refuses_an_unknown_benchmark_in_one_line(tmp_path, capsys):
  """``--only bogus`` wrote an empty report and exited 0."""
  out = tmp_path / "b.md"
  assert bench_all.main(["--only", "bogus,bench_train", "--out", str(out)]) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and "unknown benchmark bogus" in err[0], err
  assert not out.exists()


def test_reports_and_ratio_files_create_their_folder(tmp_path):
  """bench_search wrote its report with an open() that needed the folder to exist: a new
  folder as --out was a FileNotFoundError after all the work."""
  from experiments import bench_search  # pylint: disable=import-outside-toplevel

  report, rows = tmp_path / "new" / "bench.md", tmp_path / "other" / "rows.json"
  bench_common.write("# a report", str(report))
  ratios = bench_common.Ratios()
  ratios.add("a path", 1.0, 2.0)
  ratios.write_json(str(rows))
  assert report.read_text() == "# a report\n" and json.loads(rows.read_text())["rows"]
  assert not hasattr(bench_search, "emit")  # Its reports go through bench_common.write.


def test_bench_train_compiles_its_step_on_fewer_images_than_a_group():
  """``bench_all --tiny`` gives bench_train 1280 images, fewer than a group of 32 batches:
  the step's compile reshaped them into a group and failed."""
  import numpy as np  # pylint: disable=import-outside-toplevel

  from experiments import bench_train  # pylint: disable=import-outside-toplevel

  images, labels, mean, std, _ = bench_train.load("random", 2 * bench_train.BATCH)
  assert np.isfinite(bench_train.JaxSide(images, labels, mean, std).step_compile_seconds())


@pytest.mark.slow  # Compiles and runs fit twice: ~4 s.
def test_bench_train_times_the_bar_and_puts_every_method_back():
  """The bar's host code is timed by wrapping tqdm's and the metrics window's methods for
  one epoch: the time is part of the epoch, and the methods are the originals after."""
  import tqdm.auto  # pylint: disable=import-outside-toplevel
  from experiments import bench_train  # pylint: disable=import-outside-toplevel
  from mnemonic_jax import run_metrics  # pylint: disable=import-outside-toplevel

  before = (tqdm.auto.tqdm.update, run_metrics.MetricsWindow.ready_mean)
  images, labels, mean, std, _ = bench_train.load("random", 2 * bench_train.BATCH)
  side = bench_train.JaxSide(images, labels, mean, std)
  side.fit()
  side.state = side.last
  host, epoch = side.bar_host_seconds()
  assert 0.0 < host < epoch
  assert (tqdm.auto.tqdm.update, run_metrics.MetricsWindow.ready_mean) == before
