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


@pytest.fixture()
def conv_bn_bundle(monkeypatch):
  """A fresh bundle of a tiny Conv -> BatchNorm -> ReLU -> mean -> Dense model on 8x8x1.

  The model is registered as ``conv_bn_test`` for the test; its BatchNorm statistics are
  shifted from the identity so that "kept" and "updated" differ.
  """
  import flax.linen as nn
  import jax.numpy as jnp

  from mnemonic_jax import models
  from mnemonic_jax.bundle import Bundle

  class ConvBN(nn.Module):
    num_classes: int

    @nn.compact
    def __call__(self, x, train: bool = False):
      x = nn.Conv(4, (3, 3))(x)
      x = nn.relu(nn.BatchNorm(use_running_average=not train, momentum=0.9)(x))
      return nn.Dense(self.num_classes)(jnp.mean(x, axis=(1, 2)))

  monkeypatch.setitem(models._REGISTRY, "conv_bn_test", ConvBN)
  model = models.create_model("conv_bn_test", 10)
  variables = jax.jit(lambda k: model.init(k, jnp.zeros((1, 8, 8, 1)), train=False))(
      jax.random.key(0))
  stats = jax.tree.map(lambda s: s + 0.5, variables["batch_stats"])
  return Bundle("conv_bn_test", {}, variables["params"], stats, jnp.zeros((10, 8, 8, 1)), 10,
                (8, 8, 1), mean=(0.5,), std=(0.25,))
