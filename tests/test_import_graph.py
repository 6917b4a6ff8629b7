"""The import-graph check (``python -m experiments.import_graph``): on the repository, and on
tiny packages with and without a planted cycle."""

import pathlib
import subprocess
import sys
import textwrap

import pytest

from experiments import import_graph

REPO = pathlib.Path(__file__).resolve().parents[1]


def test_the_repository_has_no_import_cycle_and_no_module_over_600_lines():
  """The check anyone can rerun, through its command line: exit 0, else the findings."""
  result = subprocess.run([sys.executable, "-m", "experiments.import_graph", "--quiet"],
                          cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
  assert result.returncode == 0, result.stdout + result.stderr
  assert "OK: no import cycle" in result.stdout


def write_package(root: pathlib.Path, files: dict[str, str]) -> pathlib.Path:
  for name, text in files.items():
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
  return root


# pkg.a imports pkg.b at module level; pkg.b imports pkg.a back inside a function (a cycle
# all the same); pkg.c only imports pkg.a.
CYCLE = {
    "pkg/__init__.py": "VERSION = 1\n",
    "pkg/a.py": "import os\nfrom pkg import b\n",
    "pkg/b.py": """\
        def later():
          from . import a
          return a
        """,
    "pkg/c.py": "import pkg.a\n",
}


def test_a_planted_cycle_fails_with_its_imports_named(tmp_path, capsys):
  root = write_package(tmp_path, CYCLE)
  result = import_graph.check(root, ["pkg"])
  assert not result.ok and result.cycles == [["pkg.a", "pkg.b"]]
  assert import_graph.main(["--root", str(root), "--packages", "pkg"]) == 1
  out = capsys.readouterr().out
  assert "CYCLE among 2 modules: pkg.a, pkg.b" in out
  assert "pkg.a -> pkg.b  (pkg/a.py:2)" in out
  assert "pkg.b -> pkg.a  (pkg/b.py:2, in a function)" in out
  assert "pkg.c -> pkg.a\n" in out and "FAILED: 1 import cycle(s)" in out


def test_without_the_cycle_it_passes(tmp_path, capsys):
  """The same package with the import back only for type checkers: no cycle."""
  files = dict(CYCLE)
  files["pkg/b.py"] = """\
      from typing import TYPE_CHECKING
      import typing

      from pkg import VERSION  # A name of pkg/__init__.py: an edge to pkg.

      if TYPE_CHECKING:
        from pkg import a
      if typing.TYPE_CHECKING:
        import pkg.a
      """
  root = write_package(tmp_path, files)
  result = import_graph.check(root, ["pkg"])
  assert result.ok and result.cycles == []
  assert list(result.graph.edges["pkg.b"]) == ["pkg"]
  assert import_graph.main(["--root", str(root), "--packages", "pkg"]) == 0
  assert "OK: no import cycle" in capsys.readouterr().out


def test_a_longer_cycle_through_a_subpackage_and_relative_imports(tmp_path):
  root = write_package(tmp_path, {
      "pkg/__init__.py": "",
      "pkg/sub/__init__.py": "from .deep import thing\n",  # -> pkg.sub.deep
      "pkg/sub/deep.py": "from ..top import x\nthing = 1\n",  # -> pkg.top
      "pkg/top.py": "try:\n  from pkg import sub\nexcept ImportError:\n  sub = None\nx = 1\n",
  })
  result = import_graph.check(root, ["pkg"])
  assert result.cycles == [["pkg.sub", "pkg.sub.deep", "pkg.top"]]
  assert import_graph.shortest_cycle(result.graph, result.cycles[0]) == [
      "pkg.sub", "pkg.sub.deep", "pkg.top", "pkg.sub"]


@pytest.mark.parametrize("lines, ok", [(600, True), (601, False)])
def test_a_module_over_the_line_limit_fails(tmp_path, lines, ok):
  root = write_package(tmp_path, {"pkg/__init__.py": "", "pkg/long.py": "x = 1\n" * lines})
  result = import_graph.check(root, ["pkg"], max_lines=600)
  assert result.ok == ok
  assert result.long_modules == ([] if ok else [("pkg.long", lines)])
  assert import_graph.main(["--root", str(root), "--packages", "pkg", "--quiet"]) == (
      0 if ok else 1)


def test_a_missing_package_is_a_usage_error(tmp_path, capsys):
  assert import_graph.main(["--root", str(tmp_path), "--packages", "nosuch"]) == 2
  assert "no package directory" in capsys.readouterr().err
