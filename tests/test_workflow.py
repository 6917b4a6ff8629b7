import re

import numpy as np
import pytest

from mnemonic_jax import workflow
from mnemonic_jax.data import DatasetError, load_dataset


def tiny_config(**changes):
  config = dict(seed=0, dataset="digits", model="mlp", model_kwargs={"hidden": (8,)},
                epochs=1, batch_size=64, checkpoint_every=5)
  config.update(changes)
  return config


def test_resume_refuses_a_different_config(tmp_path):
  workflow.train(tiny_config(), tmp_path, progress=False)
  before = sorted(p.name for p in (tmp_path / "train").iterdir())
  with pytest.raises(ValueError, match="another config.*epochs"):
    workflow.train(tiny_config(epochs=2), tmp_path, progress=False)
  assert sorted(p.name for p in (tmp_path / "train").iterdir()) == before
  # The same config resumes (here: finds the run complete) and gives the same bundle.
  again = workflow.train(tiny_config(checkpoint_every=7), tmp_path, progress=False)
  assert again.config["epochs"] == 1


def test_bad_model_spec_writes_nothing(tmp_path):
  with pytest.raises(ValueError, match="activation"):
    workflow.train(tiny_config(model_kwargs={"hidden": (8,), "activation": "foo"}),
                   tmp_path / "run", progress=False)
  assert not (tmp_path / "run").exists()


def test_evaluate_checks_the_labels_and_the_image_shape(tmp_path):
  bundle = workflow.train(tiny_config(), tmp_path, progress=False)
  test = load_dataset("digits", "test")
  with pytest.raises(DatasetError, match="model has 10 classes"):
    workflow.evaluate(bundle, test.images, test.labels + 5)
  with pytest.raises(DatasetError, match="do not fit"):
    workflow.evaluate(bundle, np.zeros((2, 28, 28, 1), np.uint8), np.zeros(2, np.int32))
  result = workflow.evaluate(bundle, test.images, test.labels)
  assert result.per_class.shape == (10,) and np.isnan(result.E_F)


@pytest.mark.slow  # Kept out of the default run for its 5-minute budget (~3-5 s).
def test_fine_tuning_starts_from_pretrained_weights(tmp_path):
  base = workflow.train(tiny_config(), tmp_path / "base", progress=False)
  # epochs must be >= 1 (issue #9): a learning rate too small to move a float32 weight
  # keeps the pretrained Dense_0 exactly.
  tuned = workflow.train(
      tiny_config(epochs=1, seed=5, learning_rate=1e-30, weight_decay=0.0,
                  pretrained=str(tmp_path / "base" / "bundle"), pretrained_skip=("Dense_1",)),
      tmp_path / "tuned", progress=False)
  np.testing.assert_array_equal(tuned.params["Dense_0"]["kernel"], base.params["Dense_0"]["kernel"])
  assert not np.allclose(tuned.params["Dense_1"]["kernel"], base.params["Dense_1"]["kernel"])
  with pytest.raises(ValueError, match="shape"):
    workflow.train(tiny_config(model_kwargs={"hidden": (4,)},
                               pretrained=str(tmp_path / "base" / "bundle")),
                   tmp_path / "bad", progress=False)


def test_sharded_evaluation_equals_single_device(tmp_path):
  from mnemonic_jax import parallel
  bundle = workflow.train(tiny_config(), tmp_path, progress=False)
  test = load_dataset("digits", "test")  # 359 images: the last batch is padded to 8 devices.
  single = workflow.predict(bundle, test.images, batch_size=100)
  sharded = workflow.predict(bundle, test.images, batch_size=100, mesh=parallel.make_mesh())
  np.testing.assert_allclose(sharded, single, rtol=1e-5, atol=1e-5)
  assert sharded.shape == (359, 10)


def test_a_move_that_lost_remaining_codes_is_warned_with_what_fell():
  """Each phase met its own rule (no fallback) but the remaining codes fell: the warning
  says so, and for a move that changed the head's rows names the one that changes none."""
  request = {"met": False, "fallback": None, "move": "reassign", "classes": [3],
             "rule": {"margin": 15.0, "guard": 0.4},
             "before": {"forget_accuracy": 1.0, "remain_accuracy": 1.0},
             "after": {"forget_accuracy": 0.0, "remain_accuracy": 8 / 9}}
  (line,) = workflow.forget_warnings(request)
  assert "is not met: remaining codes classified right fell from 100.0% to 88.9%" in line
  assert "--move bias" in line
  other = workflow.forget_warnings({**request, "move": "shrink"})[0]
  assert "fell from 100.0% to 88.9%" in other and "--move bias" not in other
  fallback = workflow.forget_warnings({**request, "fallback": "guard"})[0]
  assert fallback.startswith("no step met the move's rule") and "guard gave way" in fallback


def test_given_lambdas_that_cost_the_remaining_classes_are_warned():
  """``--lambda1 1e30 --lambda2 1e30`` took A_R from 94 to 11 with exit 0 and no warning:
  with no rule to meet (met None) nothing was checked."""
  request = {"met": None, "move": "algorithm2", "classes": [3],
             "before": {"forget_accuracy": 1.0, "remain_accuracy": 1.0},
             "after": {"forget_accuracy": 0.0, "remain_accuracy": 1 / 9}}
  (line,) = workflow.forget_warnings(request)
  assert "given lambdas cost the remaining classes" in line and "100.0% to 11.1%" in line
  kept = {**request, "after": {"forget_accuracy": 0.0, "remain_accuracy": 1.0}}
  assert not workflow.forget_warnings(kept)
  assert not workflow.forget_warnings({k: v for k, v in request.items() if k != "met"})


def test_a_diverging_run_stops_at_the_check_and_keeps_its_last_good_checkpoint(tmp_path):
  """A learning rate of 1e9: the loss is finite for a few steps, then NaN or inf; with a
  check and a save every step the run stops at the first bad step, saves none of it, and
  the step before stays the last, complete and finite checkpoint. No bundle is written."""
  from mnemonic_jax import checkpointing, errors  # pylint: disable=import-outside-toplevel
  config = tiny_config(learning_rate=1e9, checkpoint_every=1, log_every=1)
  with pytest.raises(errors.TrainingDiverged) as raised:
    workflow.train(config, tmp_path, progress=False)
  found = re.search(r"loss of steps (\d+)-\1 is (nan|inf).*new workdir.*step (\d+)\)$",
                    str(raised.value))
  assert found, raised.value
  bad, last = int(found.group(1)), int(found.group(3))
  assert 1 < bad < 22 and last == bad - 1  # 22 steps an epoch: stopped at the first bad.
  with checkpointing.TrainCheckpointer(tmp_path / "train") as ckpt:
    assert ckpt.all_steps()[-1] == last
  assert not (tmp_path / "bundle").exists()
  # The kept step is whole: the same config resumes from it and stops at the same step.
  with pytest.raises(errors.TrainingDiverged, match=f"steps {bad}-{bad} .* step {last}\\)$"):
    workflow.train(config, tmp_path, progress=False)


def test_earlier_forgotten_refuses_classes_the_bundle_does_not_have(tiny_digits_bundle):
  """``earlier_forgotten([55])`` of a 10-class bundle answered as if 55 were a class."""
  bundle = tiny_digits_bundle[0]
  forgotten = bundle.replace(history=({"move": "bias", "classes": [3]},))
  assert forgotten.earlier_forgotten([5]) == (3,) and forgotten.earlier_forgotten([3]) == ()
  with pytest.raises(ValueError, match="outside|out of range"):
    forgotten.earlier_forgotten([55])
  with pytest.raises(TypeError):
    forgotten.earlier_forgotten(["3"])


def test_a_pad_to_smaller_than_the_images_is_a_config_error(tmp_path):
  """``pad_to=3`` on 8x8 digits was told to 'evaluate on the dataset the model was trained
  on'; nothing is written."""
  from mnemonic_jax import configs  # pylint: disable=import-outside-toplevel
  with pytest.raises(configs.ConfigError, match=r"config.pad_to=3 is smaller than the digits "
                     r"images \(8x8\); set it to at least 8"):
    workflow.train(tiny_config(pad_to=3), tmp_path / "w", progress=False)
  assert not (tmp_path / "w" / "bundle").exists()
