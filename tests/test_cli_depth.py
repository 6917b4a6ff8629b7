"""``mnemonic-jax evaluate --depth``, run as the real command in subprocesses.

The bundles: the tiny digits MLP of ``conftest.tiny_digits_bundle`` (the original), the
same forgotten of class 3 by the default move (``bias``), and its retrain oracle (the
``retrain`` baseline: same config, initialisation and seed, without class 3); for the bad
inputs, oracles of another width, class count and input shape, and the forgotten bundle
as a model that declares no features. The bad-input runs go a few at a time.
"""

import concurrent.futures
import json

import jax
import jax.numpy as jnp
import pytest

from cli_support import assert_refused, run_cli, run_commands, tree_digest
from mnemonic_jax import baselines, checkpointing, models, workflow
from mnemonic_jax.baselines import UnlearnData
from mnemonic_jax.evaluation import DepthConfig, figure_specs

FORGOTTEN = [3]
FEATURELESS = "featureless_depth_test"
# A model file as a user writes one: the built-in MLP under another name, declaring no
# features (the command runs it when it loads a bundle of that model).
MODEL_FILE = f"""\
from mnemonic_jax import models
from mnemonic_jax.evaluation import register_head
from mnemonic_jax.models.mlp import MLP

models.register_model({FEATURELESS!r}, MLP)
register_head({FEATURELESS!r}, None)
"""


def _other_model(bundle, num_classes=10, input_shape=(8, 8, 1), **kwargs):
  """``bundle`` as an untrained model of other attributes, classes or input shape."""
  model_kwargs = {**bundle.model_kwargs, **kwargs}
  model = models.create_model(bundle.model_name, num_classes, **model_kwargs)
  params = model.init(jax.random.key(1), jnp.zeros((1, *input_shape)))["params"]
  return bundle.replace(model_kwargs=model_kwargs, params=params, num_classes=num_classes,
                        input_shape=input_shape, codes=jnp.zeros((num_classes, *input_shape)),
                        class_names=())


@pytest.fixture(scope="module")
def bundles(tiny_digits_bundle, tmp_path_factory):
  """Paths of the original, forgotten and oracle bundles, in one folder."""
  original, train, _ = tiny_digits_bundle
  root = tmp_path_factory.mktemp("depth_bundles")
  # The bias move: output-level by construction, so the report must say so.
  forgotten, _ = workflow.forget_bundle(original, FORGOTTEN, move="bias")
  assert forgotten.history[-1]["move"] == "bias"
  retain = UnlearnData.from_training(train.images, train.labels, FORGOTTEN, forget=False)
  oracle, _ = baselines.unlearn("retrain", original, FORGOTTEN, retain)
  return {name: checkpointing.save_bundle(root / name, bundle)
          for name, bundle in (("original", original), ("forgotten", forgotten),
                               ("oracle", oracle))}


@pytest.fixture(scope="module")
def all_bundles(bundles):
  """:func:`bundles` and the bad ones (for the slow tests), in the same folder."""
  root = bundles["forgotten"].parent
  forgotten, oracle = (checkpointing.load_bundle(bundles[n]) for n in ("forgotten", "oracle"))
  paths = dict(bundles)
  for name, bundle in (("wider", _other_model(oracle, hidden=(16,))),
                       ("eleven", _other_model(oracle, num_classes=11)),
                       ("smaller", _other_model(oracle, input_shape=(4, 4, 1))),
                       ("moved", forgotten.replace(params=jax.tree.map(lambda p: 2 * p,
                                                                       forgotten.params)))):
    paths[name] = checkpointing.save_bundle(root / name, bundle)
  model_file = root / "featureless_model.py"
  model_file.write_text(MODEL_FILE)
  with pytest.MonkeyPatch.context() as patch:  # Registered here only to save them.
    patch.setitem(models._REGISTRY, FEATURELESS, models._REGISTRY["mlp"])
    for name, bundle in (("featureless", forgotten), ("featureless_oracle", oracle)):
      paths[name] = checkpointing.save_bundle(root / name, bundle.replace(
          model_name=FEATURELESS, model_source={"file": str(model_file)}))
  return paths


def test_depth_against_the_oracle_names_every_attack_and_says_output_level(bundles):
  before = tree_digest(bundles["forgotten"].parent)
  result = run_commands({"depth": dict(args=(
      "evaluate", "--checkpoint", bundles["forgotten"], "--depth", "--oracle", bundles["oracle"],
      "--original", bundles["original"], "-q"))})["depth"].result  # Forked after the imports.
  assert result.returncode == 0, result.stdout + result.stderr
  out = result.stdout
  for _, label, _ in figure_specs(DepthConfig()):
    assert label in out, label
  assert "forgotten by: 'bias' (class 3; acts on the output layer)" in out
  assert "verdict: Output-level only: suppressed in the logits" in out
  for goal in ("forgetting", "one_constant", "input_scale", "probe", "prototype",
               "relearning"):
    assert f"  {goal} " in out, goal
  assert "  FAIL  one_constant" in out  # One constant brings the class back.
  assert "  pass  forgetting" in out
  table = out[out.index("attack "):]
  assert table.splitlines()[0].split() == ["attack", "bundle", "oracle", "gap", "original"]
  assert "not measured:" not in out
  assert result.stderr == ""
  assert tree_digest(bundles["forgotten"].parent) == before


BAD = {
    "no forgotten classes": (("--checkpoint", "original", "--depth"),
                             "has no forgotten classes in its history"),
    "oracle of another width": (("--checkpoint", "forgotten", "--depth", "--oracle", "wider"),
                                "the oracle bundle has model attributes"),
    "oracle of more classes": (("--checkpoint", "forgotten", "--depth", "--oracle", "eleven"),
                               "the oracle bundle has class count 11"),
    "oracle of other inputs": (("--checkpoint", "forgotten", "--depth", "--oracle", "smaller"),
                               "the oracle bundle has input shape (4, 4, 1)"),
    "only features, none declared": (("--checkpoint", "featureless", "--depth", "features"),
                                     "nothing to measure: features: model "
                                     f"'{FEATURELESS}' declares no features"),
    "oracle is the bundle": (("--checkpoint", "forgotten", "--depth", "--oracle", "forgotten"),
                             "itself, so every gap to it is 0"),
    "oracle forgotten by a move": (("--checkpoint", "forgotten", "--depth", "--oracle", "moved"),
                                   "forgot classes with bias (its history), so it is not a "
                                   "retrain oracle"),
    "oracle without depth": (("--checkpoint", "forgotten", "--oracle", "oracle"),
                             "--oracle applies to the depth attacks only; add --depth"),
}


@pytest.mark.slow  # Eight command runs; the library's refusals are in test_depth.py.
def test_bad_depth_input_is_one_line_exit_2_and_writes_nothing(all_bundles):
  root = all_bundles["forgotten"].parent
  before = tree_digest(root)

  def run(args):
    args = [all_bundles[a] if a in all_bundles else a for a in args]
    return run_cli("evaluate", *args)

  with concurrent.futures.ThreadPoolExecutor(3) as pool:
    results = dict(zip(BAD, pool.map(run, [args for args, _ in BAD.values()])))
  for case, (_, words) in BAD.items():
    line = assert_refused(results[case], words)
    assert "Traceback" not in line, case
  assert tree_digest(root) == before


@pytest.mark.slow
def test_depth_without_oracle_and_json(bundles):
  """Without an oracle: the bundle's values only, no goals, the history's verdict; --json
  gives the same numbers."""
  result = run_cli("evaluate", "--checkpoint", bundles["forgotten"], "--depth", "--json", "-q")
  assert result.returncode == 0, result.stderr
  depth = json.loads(result.stdout)["depth"]
  assert depth["oracle"] is None and depth["original"] is None and depth["goals"] == []
  names = [f["name"] for f in depth["figures"]]
  assert "probe_recall" in names and "relearn_50" not in names
  assert not any(n.startswith(("cka_", "distance_")) for n in names)
  assert all(f["oracle"] is None and f["gap"] is None for f in depth["figures"])
  assert set(depth["skipped"]) == {"relearning", "weights", "oracle", "original"}
  assert depth["verdict"]["output_level_only"] is True
  assert depth["verdict"]["text"].startswith("Output-level only, by construction")
  text = run_cli("evaluate", "--checkpoint", bundles["forgotten"], "--depth", "-q")
  assert text.returncode == 0, text.stderr
  table = text.stdout[text.stdout.index("attack "):]
  assert table.splitlines()[0].split() == ["attack", "bundle"]
  assert "depth goals of issue #19" not in text.stdout
  assert "No measured verdict without an oracle" in " ".join(text.stdout.split())


@pytest.mark.slow
def test_depth_on_a_model_without_features_skips_them_with_a_note(all_bundles):
  result = run_cli("evaluate", "--checkpoint", all_bundles["featureless"], "--depth",
                   "--oracle", all_bundles["featureless_oracle"], "--json", "-q")
  assert result.returncode == 0, result.stderr
  depth = json.loads(result.stdout)["depth"]
  names = [f["name"] for f in depth["figures"]]
  assert "one_constant_half" in names and "distance_to_oracle" in names
  assert not any(n in names for n in ("probe_recall", "prototype", "cka_to_oracle"))
  assert "declares no features" in depth["skipped"]["features"]
  assert [g["passed"] for g in depth["goals"] if g["name"] == "prototype"] == [None]
  assert depth["verdict"]["output_level_only"] is True  # The one constant decides.


def _nesting(text):
  """The deepest nesting of parentheses in ``text``."""
  depth = deepest = 0
  for char in text:
    depth += {"(": 1, ")": -1}.get(char, 0)
    deepest = max(deepest, depth)
  return deepest


@pytest.mark.slow  # Kept out of the default run for its 5-minute budget (~3-5 s).
def test_depth_refuses_an_oracle_that_knows_the_classes_and_an_original_that_does_not(
    bundles, tmp_path):
  """The original given as the oracle met every goal; an oracle of no history as the
  original; both refused before the attacks. The verdict without --original says the probe
  was read and what it lacks, in one level of parentheses."""
  oracle = checkpointing.load_bundle(bundles["oracle"])
  unknowing = checkpointing.save_bundle(tmp_path / "no_history", oracle.replace(history=()))
  watch = [bundles["forgotten"].parent, tmp_path]
  before = [tree_digest(w) for w in watch]
  ran = run_commands({
      "original as oracle": dict(args=("evaluate", "--checkpoint", bundles["forgotten"],
                                       "--depth", "--oracle", bundles["original"])),
      "oracle as original": dict(args=("evaluate", "--checkpoint", bundles["forgotten"],
                                       "--depth", "--original", unknowing)),
      "no original": dict(args=("evaluate", "--checkpoint", bundles["forgotten"], "--depth",
                                "--oracle", bundles["oracle"], "--json", "-q"))})
  line = assert_refused(ran["original as oracle"].result,
                        f"--oracle {bundles['original']} gets ")
  assert "% of the test images of forgotten class 3 right (E_F " in line
  right = float(line.split(" gets ")[1].split("%")[0])
  assert right > 50, line
  assert "--oracle must be a model trained from scratch without class 3" in line
  line = assert_refused(ran["oracle as original"].result, f"--original {unknowing} gets 0.0%")
  assert "--original must be the bundle before forgetting" in line
  assert [tree_digest(w) for w in watch] == before

  result = ran["no original"].result
  assert result.returncode == 0, result.stderr
  depth = json.loads(result.stdout)["depth"]
  text = depth["verdict"]["text"]
  probe = next(f for f in depth["figures"] if f["name"] == "probe_recall")
  assert f"the linear probe was read, recall {probe['method']:.1f}%" in text, text
  assert "there is no --original to compare the features with" in text, text
  assert "were not read" not in text and _nesting(text) <= 1, text


def test_an_oracle_that_is_not_retrained_is_refused(bundles):
  """The forgotten bundle given as its own oracle passed every goal, every gap +0.0."""
  from mnemonic_jax.cli import depth  # pylint: disable=import-outside-toplevel
  from mnemonic_jax.cli.parser import UsageError  # pylint: disable=import-outside-toplevel
  loaded = {n: checkpointing.load_bundle(bundles[n]) for n in ("forgotten", "oracle")}
  path = bundles["forgotten"]
  with pytest.raises(UsageError, match="forgotten itself, so every gap to it is 0"):
    depth._check_retrained((path, loaded["forgotten"]), path, loaded["forgotten"])
  copy = path.parent / "copy"  # Another path, the same parameters.
  with pytest.raises(UsageError, match="copy holds the unlearned model's own parameters"):
    depth._check_retrained((copy, loaded["forgotten"]), path, loaded["forgotten"])
  moved = loaded["forgotten"].replace(
      params=jax.tree.map(lambda p: 2 * p, loaded["forgotten"].params))
  with pytest.raises(UsageError, match="forgot classes with bias"):
    depth._check_retrained((copy, moved), path, loaded["forgotten"])
  depth._check_retrained((bundles["oracle"], loaded["oracle"]), path, loaded["forgotten"])
