"""Attaching codes to a model trained without them (issue 12), in-process and through the
real ``mnemonic-jax attach-codes`` command.

One small plain model (digits, MLP 64-32-10, 4 epochs, ``t_mix = 0``) is trained once per
worker; the refused commands run against small bundles built directly.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mnemonic_jax import attach, checkpointing, workflow
from mnemonic_jax.bundle import ATTACH_CODES_EVENT, Bundle
from mnemonic_jax.checkpointing import CheckpointError
from mnemonic_jax.data import load_dataset
from mnemonic_jax.models import create_model

from cli_support import assert_refused, run_cli, run_commands, small_config, tree_digest
from random_support import init_variables

EPOCHS = 5  # Enough for every code of the small model to be learned (lr 0.1, t_mix 0.1).


@pytest.fixture(scope="module")
def cli_env(tmp_path_factory):
  """Lets the subprocesses share compiled programs (results are unchanged)."""
  return {"JAX_COMPILATION_CACHE_DIR": str(tmp_path_factory.mktemp("jax-cache")),
          "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
  """A bundle trained without codes (t_mix 0), saved; its path."""
  workdir = tmp_path_factory.mktemp("plain")
  workflow.train(small_config(t_mix=0.0, epochs=4), workdir, progress=False)
  return workdir / "bundle"


@pytest.fixture(scope="module")
def digits():
  return load_dataset("digits", "train"), load_dataset("digits", "test")


def _host(tree):
  return jax.tree.map(lambda x: np.array(x, copy=True), tree)


def test_attaching_changes_the_parameters_and_the_codes_are_learned(plain, digits):
  train, test = digits
  bundle = checkpointing.load_bundle(plain)
  kept = _host(bundle.params)
  assert attach.codes_accuracy(bundle) < 1.0  # Its codes were never seen.

  new, report = attach.attach_codes(bundle, train.images, train.labels, epochs=EPOCHS,
                                    test=(test.images, test.labels), dataset="digits")

  changed = jax.tree.map(lambda a, b: not np.array_equal(a, np.asarray(b)), kept, new.params)
  assert all(jax.tree.leaves(changed))
  assert not np.allclose(np.asarray(new.codes), np.asarray(bundle.codes))  # Fresh codes.
  logits = new.apply_fn()(new.params, jnp.asarray(new.codes))
  assert (np.argmax(logits, -1) == np.arange(10)).all()
  assert report.codes_accuracy_before < 1.0 and report.codes_accuracy_after == 1.0
  assert abs(report.test_after.accuracy - report.test_before.accuracy) < 3.0
  assert report.steps == EPOCHS * (len(train) // 64) and report.warnings == ()
  entry = new.history[-1]
  assert entry["event"] == ATTACH_CODES_EVENT and entry["classes"] == []
  assert entry["epochs"] == EPOCHS and entry["t_mix"] == attach.DEFAULT_T_MIX
  assert entry["dataset"] == "digits" and new.forgotten_classes == ()
  # The input bundle is untouched (the train step donates its state: it got copies).
  jax.tree.map(np.testing.assert_array_equal, kept, _host(bundle.params))
  # Attaching again replaces codes the model has learned: said, as the input could forget.
  _, again = attach.attach_codes(new, train.images, train.labels, epochs=1)
  assert again.replaced_codes_accuracy == 1.0
  assert any("own codes were learned (10 of 10" in w for w in again.warnings), again.warnings


def test_attach_checks_its_settings_and_refuses_a_forgotten_model(plain, digits):
  bundle = checkpointing.load_bundle(plain)
  train, _ = digits
  for kwargs, words in ((dict(epochs=0), "epochs"), (dict(epochs=1, t_mix=0.0), "t_mix"),
                        (dict(epochs=1, learning_rate=-1.0), "learning_rate"),
                        (dict(epochs=1, seed=-1), "seed")):
    with pytest.raises(ValueError, match=words):
      attach.attach_codes(bundle, train.images, train.labels, **kwargs)
  forgotten = bundle.replace(history=({"classes": [3]},))
  with pytest.raises(ValueError, match="forgotten class"):
    attach.attach_codes(forgotten, train.images, train.labels, epochs=1)


def test_an_attach_entry_saves_and_loads_only_with_no_classes(plain, tmp_path):
  bundle = checkpointing.load_bundle(plain)
  entry = {"event": ATTACH_CODES_EVENT, "classes": [], "epochs": 2}
  back = checkpointing.load_bundle(
      checkpointing.save_bundle(tmp_path / "ok", bundle.replace(history=(entry,))))
  assert back.history == (entry,) and back.forgotten_classes == ()
  for bad in ({**entry, "classes": [1]}, {"event": ATTACH_CODES_EVENT}, {"classes": []}):
    with pytest.raises(CheckpointError, match="'history' entry 0"):
      checkpointing.save_bundle(tmp_path / "bad", bundle.replace(history=(bad,)))


def test_forgetting_from_a_model_that_never_saw_its_codes_warns(plain):
  bundle = checkpointing.load_bundle(plain)
  new, _ = workflow.forget_bundle(bundle, [3], 1e-3, 10.0)
  assert any("attach-codes" in w for w in new.history[-1]["warnings"])
  attached = bundle.replace(history=({"event": ATTACH_CODES_EVENT, "classes": []},))
  assert workflow.untrained_codes_warnings(attached) == []
  assert workflow.untrained_codes_warnings(bundle.replace(config={})) == []  # Imported.
  assert workflow.untrained_codes_warnings(bundle.replace(config={"t_mix": 0.1})) == []


@pytest.mark.slow  # Heavy (a command run or a big model); -m slow runs it.
def test_the_command_attaches_codes_and_never_modifies_its_input(plain, tmp_path, cli_env):
  before = tree_digest(plain)
  out = tmp_path / "coded"
  result = run_cli("attach-codes", "--checkpoint", plain, "--output", out, "--epochs", EPOCHS,
                   "-q", env=cli_env)
  assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
  assert result.stderr == ""
  assert tree_digest(plain) == before
  assert "codes classified as their class: " in result.stdout
  assert "10 of 10 after" in result.stdout and "accuracy: " in result.stdout
  assert f"wrote {out}" in result.stdout
  coded = checkpointing.load_bundle(out)
  entry = coded.history[-1]
  assert entry["event"] == ATTACH_CODES_EVENT and entry["epochs"] == EPOCHS
  assert entry["codes_accuracy_after"] == 1.0 and entry["test_accuracy_after"] > 80.0
  assert attach.codes_accuracy(coded) == 1.0


def _bundle(num_classes: int, input_shape, **changes) -> Bundle:
  model = create_model("mlp", num_classes, hidden=(8,))
  # Drawn with NumPy (random_support): these run at collection, in every worker.
  variables = init_variables(model, np.zeros((1, *input_shape), np.float32), train=False)
  bundle = Bundle("mlp", {"hidden": [8]}, variables["params"], {},
                  np.zeros((num_classes, *input_shape), np.float32), num_classes,
                  tuple(input_shape), dataset="digits", config={"t_mix": 0.0})
  return bundle.replace(**changes)


@pytest.mark.parametrize("bundle, words", [
    (_bundle(5, (8, 8, 1)), "digits has 10 classes but the model has 5"),
    pytest.param(_bundle(10, (6, 6, 1)), "digits has images of shape (8, 8, 1) but the "
                 "model takes inputs of shape (6, 6, 1)", marks=pytest.mark.slow),
    pytest.param(_bundle(10, (8, 8, 1), history=({"classes": [3]},)),
                 "has forgotten class(es) 3", marks=pytest.mark.slow),
], ids=["classes", "input_shape", "forgotten"])
def test_a_checkpoint_that_does_not_fit_gets_one_line_and_nothing_written(
    bundle, words, tmp_path):
  source = checkpointing.save_bundle(tmp_path / "in", bundle)
  before = tree_digest(tmp_path)
  result = run_commands({"attach": dict(args=(  # Forked after the imports.
      "attach-codes", "--checkpoint", source, "--output", tmp_path / "out", "--epochs", 1))}
                        )["attach"].result
  assert_refused(result, words)
  assert tree_digest(tmp_path) == before  # Input unchanged, no output, nothing beside.


def test_the_command_has_help_with_an_example(capsys):
  from mnemonic_jax import cli  # pylint: disable=import-outside-toplevel

  with pytest.raises(SystemExit) as exit_info:
    cli.main(["attach-codes", "--help"])
  text = capsys.readouterr().out
  assert exit_info.value.code == 0
  assert text.startswith("usage: mnemonic-jax attach-codes")
  assert "examples:\n  mnemonic-jax attach-codes" in text


def test_attach_names_the_actual_fault_of_its_data_and_t_mix():
  """Faults a fresh researcher met (helper-40 item 16): each refused with its own reason,
  before anything is trained."""
  bundle = _bundle(10, (8, 8, 1))
  images = np.zeros((300, 8, 8, 1), np.uint8)
  labels = np.arange(300) % 10
  with pytest.raises(ValueError, match="300 images but 100 labels"):
    attach.attach_codes(bundle, images, labels[:100], epochs=1)
  with pytest.raises(ValueError, match="test data have 300 images but 20 labels"):
    attach.attach_codes(bundle, images, labels, epochs=1, test=(images, labels[:20]))
  for t_mix in (1.5, -0.1):
    with pytest.raises(ValueError, match=r"in \(0, 1\]") as info:
      attach.attach_codes(bundle, images, labels, epochs=1, t_mix=t_mix)
    assert "t_mix 0" not in str(info.value) and "must be a finite number" in str(info.value)
  with pytest.raises(ValueError, match="with t_mix 0 the model never sees its codes"):
    attach.attach_codes(bundle, images, labels, epochs=1, t_mix=0.0)
  no_3_or_7 = np.where(np.isin(labels, (3, 7)), 0, labels)
  with pytest.raises(ValueError, match=r"no example of class\(es\) 3, 7 \(of 10\)"):
    attach.attach_codes(bundle, images, no_3_or_7, epochs=1)
