"""Faults of the fifth round left open then (walk5 G8, ...), fixed since."""

import pathlib

import jax
import pytest

from mnemonic_jax import checkpointing, models, workflow


@pytest.fixture(scope="module")
def bundle(small_trained_copy) -> pathlib.Path:
  return small_trained_copy()


def test_an_under_trained_model_is_called_so_not_foreign_codes(bundle):
  """G8: a bundle that train made with these codes, trained too briefly, was told it was
  'probably not trained with these codes' and sent to attach-codes."""
  trained = checkpointing.load_bundle(bundle)
  model = models.create_model(trained.model_name, trained.num_classes, **trained.model_kwargs)
  fresh = model.init(jax.random.key(7), trained.codes[:1])["params"]
  brief = trained.replace(params=fresh, config={**trained.config, "epochs": 1})
  imported = trained.replace(params=fresh, history=({"event": "import", "classes": []},))
  said = {name: " ".join(workflow.forget_bundle(b, [3])[0].history[-1]["warnings"])
          for name, b in (("brief", brief), ("imported", imported))}
  assert "under-trained (1 epoch with t_mix" in said["brief"]
  assert "train it for more epochs" in said["brief"]
  assert "probably not trained with these codes" not in said["brief"]
  assert "probably not trained with these codes" in said["imported"]
