"""JAX settings for every test, and shared fixtures.

* Eight virtual CPU devices (``jax_num_cpu_devices``, as equinox's tests do), so sharded
  code is tested on a CPU-only machine.
* Transfer guards (big_vision disallows every implicit transfer in its training loop).
  Host-device transfers stay allowed suite-wide, because the tests feed numpy arrays and
  read floats on purpose; code that must be transfer-free once its inputs are placed
  (the jitted train step, single-device and sharded) runs under
  ``jax.transfer_guard("disallow")`` in its test. Hidden copies between devices are
  logged (``jax_transfer_guard_device_to_device="log"``; the line goes to the captured
  stderr of the test). They are not yet refused: ``workflow.predict(..., mesh=...)``
  copies the device-0 params to every device on every batch, and the sharded-Fisher
  test passes unplaced params to a sharded jit. Once both place their params with
  ``parallel.replicate``, make it ``"disallow"``.

``tiny_digits_bundle`` is in the repository's root ``conftest.py`` (the doctests use it
too); ``small_trained_copy`` hands out copies of the command-line tests' trained workdir.
Both are trained once per test run, not once per pytest-xdist worker (the root
``conftest.py``'s ``built_once``).
"""

import functools
import pathlib
import shutil

# XLA_FLAGS: set by the root conftest.py (the suite compiles at LLVM level 0).
import jax  # noqa: E402

jax.config.update("jax_num_cpu_devices", 8)
jax.config.update("jax_transfer_guard_device_to_device", "log")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def _small_trained_workdir(built_once):
  """The workdir of ``cli_support.small_config()`` trained in-process, once per run.

  Never handed out: :func:`small_trained_copy` gives each module its own copy.
  """
  from cli_support import small_config
  from mnemonic_jax import workflow

  return built_once("small_trained",
                    lambda workdir: workflow.train(small_config(), workdir, progress=False))


@pytest.fixture(scope="session")
def small_trained_copy(_small_trained_workdir, tmp_path_factory):
  """A function returning a fresh copy of a trained workdir's bundle (its path).

  The workdir is ``cli_support.small_config()`` (digits, MLP 64-32-10, 8 epochs, with
  codes) trained once per run (``built_once``); each call copies the whole workdir
  (its ``train/`` checkpoints and ``bundle/``, ~100 KiB) to a new folder, so a module may
  check that a command left its copy untouched, or damage it, without training its own.
  """
  def copy() -> pathlib.Path:
    dest = tmp_path_factory.mktemp("trained") / "workdir"
    shutil.copytree(_small_trained_workdir, dest, symlinks=True)
    return dest / "bundle"

  return copy


@functools.cache
def _conv_bn_class() -> type:
  """The model class of :func:`conv_bn_model`, made once per process.

  One class for every test: equal models then hash equal, so the programs one test
  compiled for it (JAX's caches key them by the model) serve the next.
  """
  import flax.linen as nn
  import jax.numpy as jnp

  class ConvBN(nn.Module):
    num_classes: int

    @nn.compact
    def __call__(self, x, train: bool = False):
      x = nn.Conv(4, (3, 3))(x)
      x = nn.relu(nn.BatchNorm(use_running_average=not train, momentum=0.9)(x))
      return nn.Dense(self.num_classes)(jnp.mean(x, axis=(1, 2)))

  return ConvBN


@pytest.fixture()
def conv_bn_model(monkeypatch) -> str:
  """Registers a tiny Conv -> BatchNorm -> ReLU -> mean -> Dense model for the test.

  Returns its registry name, ``conv_bn_test``: ``models.create_model("conv_bn_test", C)``
  builds it for any input shape ``(H, W, channels)``. It compiles in well under a
  second, so tests of BatchNorm handling (sharded statistics, kept statistics) need no
  ResNet.
  """
  from mnemonic_jax import models

  monkeypatch.setitem(models._REGISTRY, "conv_bn_test", _conv_bn_class())
  return "conv_bn_test"


@functools.partial(jax.jit, static_argnums=0)
def _conv_bn_init(model, key):
  """``model.init`` on 8x8x1 inputs (inference mode), compiled once per equal model."""
  import jax.numpy as jnp

  return model.init(key, jnp.zeros((1, 8, 8, 1)), train=False)


@pytest.fixture()
def conv_bn_bundle(conv_bn_model):
  """A fresh bundle of the :func:`conv_bn_model` on 8x8x1 inputs, 10 classes.

  Its BatchNorm statistics are shifted from the identity so that "kept" and "updated"
  differ.
  """
  import jax.numpy as jnp

  from mnemonic_jax import models
  from mnemonic_jax.bundle import Bundle

  model = models.create_model(conv_bn_model, 10)
  variables = _conv_bn_init(model, jax.random.key(0))
  stats = jax.tree.map(lambda s: s + 0.5, variables["batch_stats"])
  return Bundle(conv_bn_model, {}, variables["params"], stats, jnp.zeros((10, 8, 8, 1)), 10,
                (8, 8, 1), mean=(0.5,), std=(0.25,))
