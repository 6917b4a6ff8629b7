"""experiments.table faults a fresh user found (walk 3, G2, G3, G8, G11): the ``baselines``
section's keys and values, the ``--inputs`` refusal, the ``--sweep`` sample size."""

import ml_collections
import pytest

from experiments import compare, compare_report, table
from mnemonic_jax import baselines, configs

#: ``experiments.table`` with one method and one class, refused before any training.
RUN = ["--config", "digits_mlp:quick", "--classes", "3", "--multi", "", "--seeds", "1",
       "--no-relearn", "--no-progress"]

BAD_SECTIONS = [
    # G2: a misspelt method was ignored (exit 0, ssd at its defaults).
    ("{'sdd': {'alpha': 5}}", "ssd", "key 'sdd' that is no method; did you mean 'ssd'?"),
    # G2: the registered name was ignored (the code read ssd_exact); now read, so refused.
    ("{'ssd-exact': {'alpha': 50.0}}", "ssd-exact", "alpha=50 would dampen nothing"),
    # G3: a traceback (uncaught BadRequest) after training.
    ("{'ssd_exact': {'alpha': 50.0}}", "ssd-exact", "choose alpha < 9.849"),
    # G3: a TypeError traceback after training.
    ("{'ssd': {'alpah': 5}}", "ssd", "sets 'alpah', which ssd does not have; did you mean "
                                     "'alpha'?"),
    ("{'ssd': {'alpha': -1.0}}", "ssd", "ssd: alpha must be a finite number > 0, got -1.0"),
    ("{'ssd-exact': {'lam': 2.0}, 'ssd_exact': {'lam': 3.0}}", "ssd", "sets ssd-exact twice"),
    ("{'ssd': 5}", "ssd", "must map ssd's fields to values"),
    # A method not run is checked too: its setting is a mistake all the same.
    ("{'finetune': {'epochs': 0}}", "ssd", "finetune: epochs must be a whole number >= 1"),
]


@pytest.mark.parametrize("section, methods, words", BAD_SECTIONS)
def test_a_bad_baselines_section_is_refused_in_one_line_before_training(
    section, methods, words, tmp_path, capsys):
  out = tmp_path / "out"
  with pytest.raises(SystemExit) as exit_:
    table.main([*RUN, f"--config.baselines={section}", "--methods", methods, "--out", str(out)])
  lines = capsys.readouterr().err.strip().splitlines()
  assert exit_.value.code == 2
  assert len(lines) == 1 and words in lines[0], lines
  assert not out.exists()


@pytest.mark.slow
def test_the_real_command_refuses_the_registered_name_with_a_bad_alpha(tmp_path):
  """``python -m experiments.table``: the hyphenated key is read and its value refused."""
  from cli_support import run_commands  # pylint: disable=import-outside-toplevel
  out = tmp_path / "out"
  args = (*RUN, "--config.baselines={'ssd-exact': {'alpha': 50.0}}", "--methods", "ssd-exact",
          "--out", out)
  result = run_commands({"t": dict(args=args, module="experiments.table")},
                        preload=("experiments.compare", "mnemonic_jax.baselines"))["t"].result
  assert result.returncode == 2, result.stderr
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1 and "would dampen nothing" in lines[0], result.stderr
  assert not out.exists()


def test_both_spellings_of_a_method_set_its_config():
  """The registered name (``ssd-exact``, ``neggrad+``) and ``-``->``_``, ``+``->``_plus``."""
  for key in ("ssd-exact", "ssd_exact"):
    config = ml_collections.ConfigDict({"baselines": {key: {"alpha": 5.0}}})
    assert compare.method_config("ssd-exact", config).alpha == 5.0
  for key in ("neggrad+", "neggrad_plus"):
    config = ml_collections.ConfigDict({"baselines": {key: {"epochs": 7}}})
    assert compare.method_config("neggrad+", config).epochs == 7
    assert compare.method_settings("neggrad+", config.to_dict())["epochs"] == 7


@pytest.mark.parametrize("name", configs.available_configs())
def test_every_packaged_config_has_a_valid_baselines_section(name):
  config = configs.load_config(name)
  compare.check_settings(config, [])
  assert set(compare.baselines_section(config)) <= set(baselines.available_methods())


def test_the_inputs_refusal_names_every_method_that_takes_the_ablation():
  """G11: it named only mnemonic and mnemonic-auto; every mnemonic-* move takes it."""
  with pytest.raises(compare.UsageError) as error:
    compare.parse_methods("ssd", "zeros", "all")
  takes = [m for m in baselines.available_methods() if m.startswith("mnemonic")]
  assert "mnemonic-reassign" in takes and all(m in str(error.value) for m in takes)
  assert compare.parse_methods("mnemonic-reassign", "zeros", "all")[0] == ["mnemonic-reassign"]


def _swept(held_out: int) -> dict:
  return {"variant": "lfssd:sweep", "examples": {"retain": held_out, "held_out": held_out},
          "details": {"chosen": {}, "sweep": [], "chosen_seconds": 0.1}}


def test_the_sweep_section_states_the_examples_the_runs_read():
  """G8: it said '2000 drawn at random' where the digits runs read 1,008 to 1,299."""
  text = "\n".join(compare_report.sweep_section([_swept(1292), _swept(1008)]))
  assert "here 1,008 to 1,292, by run" in text and "up to 2,000" in text
  assert "(2000 drawn" not in text
  assert "here 1,299)" in "\n".join(compare_report.sweep_section([_swept(1299)]))


@pytest.mark.slow
def test_the_registered_name_sets_the_run(tmp_path):
  """G2: ``{'ssd-exact': {'alpha': 5.0}}`` ran ssd-exact at its defaults (alpha None); the
  run now records alpha 5 (and the training labels read for the bound serve the run)."""
  import json  # pylint: disable=import-outside-toplevel
  out = tmp_path / "out"
  table.main([*RUN, "--config.baselines={'ssd-exact': {'alpha': 5.0}}", "--methods",
              "ssd-exact", "--out", str(out)])
  runs = [json.loads(p.read_text()) for p in out.glob("runs/*/methods/*ssd-exact*.json")]
  assert len(runs) == 1 and runs[0]["details"]["alpha"] == 5.0, runs
