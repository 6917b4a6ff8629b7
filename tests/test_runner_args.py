"""The runners' and benchmarks' command lines: help with defaults, recorded commands that
rerun, reports whose words match what ran."""

import argparse
import importlib
import pathlib
import re
import shlex

import pytest

#: Every runner and benchmark with a command line of its own.
RUNNERS = ("table", "robust", "alignment", "attach_codes", "depth", "deep", "bench_all",
           "bench_cli", "bench_fisher", "bench_forget", "bench_search", "bench_train")


def _help(runner: str, capsys) -> str:
  module = importlib.import_module(f"experiments.{runner}")
  with pytest.raises(SystemExit) as raised:
    module.main(["--help"])
  assert raised.value.code == 0
  return " ".join(capsys.readouterr().out.split())  # Unwrapped.


@pytest.mark.parametrize("runner", RUNNERS)
def test_help_shows_the_defaults_that_decide_how_much_runs(runner, capsys):
  """F24: table's --help hid --multi's default 0,1,2 (a 'small run' silently added the
  set {0,1,2}) and --seeds 3; every runner's help now shows its defaults."""
  text = _help(runner, capsys)
  expected = {"table": ["--multi MULTI one multi-class set ('' for none) (default: 0,1,2)",
                        "(default: 3)", "(default: paper,auto)", "(default: all)"],
              "robust": ["(default: 0,1,2)"], "alignment": ["(default: 0,1,2)"],
              "attach_codes": ["(default: 1,2,5,10)", "(default: fashion_mnist_mlp:e100)"],
              "depth": ["(default: 1,2)", "(default: all)", "(default: 200)"],
              "bench_forget": ["(default: 20)", "(default: 1,2)"]}
  for part in expected.get(runner, ["(default: "]):
    assert part in text, (runner, part)


def test_depth_help_counts_the_models_and_methods_it_runs(capsys):
  """F24: its help said 'five models' while its default ran six."""
  from experiments import depth, depth_models  # pylint: disable=import-outside-toplevel

  text = _help("depth", capsys)
  assert "five" not in text and f"the {len(depth_models.MODELS)} models" in text
  assert f"{len(depth.all_methods())} methods" in text
  assert ", ".join(depth_models.MODELS) in text


def test_help_formatter_shows_defaults_only_where_they_say_something():
  from experiments import runner_args  # pylint: disable=import-outside-toplevel

  parser = argparse.ArgumentParser(formatter_class=runner_args.HelpFormatter)
  parser.add_argument("--bare", default="a,b")
  parser.add_argument("--empty", default="", help="a set")
  parser.add_argument("--told", default=None, help="x (default: every model)")
  parser.add_argument("--flag", action="store_true", help="a flag")
  text = " ".join(parser.format_help().split())
  assert "--bare BARE default: a,b" in text and "--empty EMPTY a set (default: '')" in text
  assert "(default: every model)" in text and "(default: None)" not in text
  assert "(default: False)" not in text


@pytest.mark.parametrize("runner", ["table", "robust", "attach_codes"])
def test_runners_reading_keyless_run_files_take_reuse_keyless(runner, capsys):
  """F6: the runners that read run files written before keys reuse them only with
  --reuse-keyless (robust also with --report-only)."""
  assert "--reuse-keyless reuse cached run files written before runs recorded their key" \
      in _help(runner, capsys)


def test_recorded_commands_are_shell_quoted_so_they_rerun():
  """F17: bench_forget wrote '--models  --torch-threads 1' (an empty value bare), which
  pasted back made --torch-threads the value of --models."""
  from experiments import bench_common, runner_args  # pylint: disable=import-outside-toplevel

  argv = ["--repeats", "2", "--models", "", "--torch-threads", "1", "--note", "it's a note"]
  line = bench_common.command_line("bench_forget", argv + ["--out", "r.md"])
  assert "--models '' --torch-threads 1" in line
  assert shlex.split(line) == ["python", "-m", "experiments.bench_forget", *argv]
  line = runner_args.command_line("experiments.table", ["--multi", "", "--classes", "3"])
  assert line == "python -m experiments.table --multi '' --classes 3"


def test_no_runner_builds_its_command_line_by_hand():
  """F17 as a kind: every recorded command goes through runner_args.command_line
  (bench_search wrote its own, with values unquoted)."""
  root = pathlib.Path(__file__).resolve().parents[1] / "experiments"
  for runner in RUNNERS:
    source = (root / f"{runner}.py").read_text()
    by_hand = re.findall(r'(?<!prog=)"python -m experiments\.\w+ ?"|Command: `python -m|'
                         r"shlex\.quote", source)
    assert not by_hand, (runner, by_hand)


def test_bench_fisher_with_nothing_to_measure_refuses(tmp_path, capsys):
  """A report of a header alone replaced the earlier one."""
  from experiments import bench_fisher  # pylint: disable=import-outside-toplevel

  report = tmp_path / "bench.md"
  report.write_text("a good report\n")
  with pytest.raises(SystemExit) as raised:
    bench_fisher.main(["--models", "", "--skip-224", "--no-side-by-side", "--out",
                       str(report)])
  err = capsys.readouterr().err.strip().splitlines()
  assert raised.value.code == 2 and len(err) == 1 and "nothing to measure" in err[0]
  assert report.read_text() == "a good report\n"


@pytest.mark.parametrize("classes", ["", "1", "x"])
def test_bench_search_refuses_class_counts_it_cannot_run(classes, capsys, tmp_path):
  """'' and 'x' ended in a ValueError traceback; '1' cannot forget a class and keep one."""
  from experiments import bench_search  # pylint: disable=import-outside-toplevel

  with pytest.raises(SystemExit) as raised:
    bench_search.main(["--classes", classes, "--out", str(tmp_path / "b.md")])
  err = capsys.readouterr().err.strip().splitlines()
  assert raised.value.code == 2 and len(err) == 1 and "--classes" in err[0]
  assert list(tmp_path.iterdir()) == []
