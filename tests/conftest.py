"""Eight virtual CPU devices, so sharded code is tested on a CPU-only machine."""

import os

os.environ.setdefault("XLA_FLAGS", "")
import jax  # noqa: E402

jax.config.update("jax_num_cpu_devices", 8)

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def tiny_digits_bundle(tmp_path_factory):
  """A small MLP (64-32-10, sigmoid) trained with codes on the bundled digits (~5 s).

  Returns ``(bundle, train, test)`` with the digits ``Dataset`` splits. Shared by the
  baselines' tests: treat it as read-only (methods never modify their input bundle).
  """
  from mnemonic_jax import workflow
  from mnemonic_jax.configs import paper_mlp_config
  from mnemonic_jax.data import load_dataset

  config = paper_mlp_config("tiny_digits", "digits", epochs=40, checkpoint_every=10_000)
  config.model_kwargs.hidden = (32,)
  config.learning_rate = 0.1
  bundle = workflow.train(config, tmp_path_factory.mktemp("tiny_digits"), progress=False)
  return bundle, load_dataset("digits", "train"), load_dataset("digits", "test")
