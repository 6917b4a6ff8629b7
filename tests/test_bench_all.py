"""``python -m experiments.bench_all --tiny`` runs and writes its report (slow).

Figures at tiny sizes mean nothing; this checks the wiring: every section, the table of
ratios, the provenance line, the check of the transcription against the library.
"""

import pathlib
import subprocess
import sys

import pytest

from experiments import bench_common

pytestmark = pytest.mark.slow


def test_bench_all_tiny_forget_writes_the_report(tmp_path):
  out = tmp_path / "bench.md"
  run = subprocess.run([sys.executable, "-m", "experiments.bench_all", "--tiny", "--only",
                        "bench_forget", "--out", str(out)], cwd=bench_common.REPO,
                       capture_output=True, text=True, check=False)
  assert run.returncode == 0, run.stderr[-3000:]
  text = pathlib.Path(out).read_text()
  assert "## Every ratio" in text and "## bench_forget" in text
  assert "Machine:" in text and "Load average at the start" in text
  assert "## What a kernel costs to compile" in text and "fused kernels" in text
  if bench_common.torch_available():
    assert "no code of the published reference implementation was copied" in text
    assert "| bench_forget | mj.forget, fixed lambdas, later calls" in text
    assert "Check on the same weights" in text
  else:
    assert "PyTorch is not installed" in text
