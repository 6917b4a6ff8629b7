"""The names docstring examples use, so that ``pytest`` runs every example in the package.

``setup.cfg`` collects the doctests of ``mnemonic_jax/`` (``--doctest-modules``). Each
example sees, besides its module's own globals:

* ``jax``, ``jnp``, ``np``, ``mj`` (``mnemonic_jax``), ``load_dataset``, ``tmp`` (a
  fresh directory);
* a tiny model: ``model`` (MLP 9-16-4), ``codes`` ``(4, 3, 3, 1)``, ``params``,
  ``apply_fn``;
* a small trained bundle: ``bundle`` (:func:`tiny_digits_bundle`, the digits MLP
  64-32-10 trained with codes, the same bundle the tests share), ``images``, ``labels``
  (the digits training split) and ``key``.

:func:`tiny_digits_bundle` lives here, not in ``tests/conftest.py``, so that the doctests
and the tests of one pytest worker train it once between them, and
:func:`built_once` lets the pytest-xdist workers of one run train it once between them.
"""

import functools
import os
import shutil
import subprocess
import sys

import pytest

#: The suite compiles with LLVM at optimisation level 0: its programs are tiny, and the
#: default run took 214 s instead of 291 s on this 2-core box (2026-12-07), within its
#: 5 minutes. Set before JAX starts; an ``XLA_FLAGS`` of your own is kept as it is. Tests
#: marked ``default_compilation`` compare bits with JAX's default compilation (recorded
#: digests, eager ops): :func:`pytest_pyfunc_call` runs them in a child pytest at the
#: default level.
FAST_COMPILE = "--xla_backend_optimization_level=0"
os.environ.setdefault("XLA_FLAGS", FAST_COMPILE)


def pytest_configure(config):
  config.addinivalue_line(
      "markers", "default_compilation: compares bits with JAX's default compilation (run in "
      "a child process at the default optimisation level when the suite's is lowered)")


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem):
  """Runs a ``default_compilation`` test in a child pytest without the suite's
  ``XLA_FLAGS`` (its result is the child's), other tests as usual."""
  if (pyfuncitem.get_closest_marker("default_compilation") is None
      or FAST_COMPILE not in os.environ.get("XLA_FLAGS", "")):
    return None
  env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
  env["XLA_FLAGS"] = ""
  child = subprocess.run(
      [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "0",
       pyfuncitem.nodeid], cwd=pyfuncitem.config.rootpath, env=env, capture_output=True,
      text=True, timeout=600, check=False)
  if child.returncode != 0:
    pytest.fail(f"at JAX's default compilation, in a child pytest (exit {child.returncode}):"
                f"\n{child.stdout[-6000:]}\n{child.stderr[-2000:]}", pytrace=False)
  return True


@pytest.fixture(scope="session")
def built_once(tmp_path_factory):
  """``built_once(name, build)``: a folder ``build(folder)`` fills once per test run.

  pytest-xdist's documented pattern for session fixtures: each worker's temporary folder
  sits in the run's own (``getbasetemp().parent``), so the first worker to ask builds the
  folder there under a file lock, and the others wait for it and reuse it. Without xdist
  the folder is built in the session's temporary folder. A build that raised is not
  marked done: the next worker to ask builds it again. Treat the folder as read-only.
  ``build`` gets a path that does not exist yet; ``name`` must be unique among callers.
  """
  def build_once(name, build):
    if "PYTEST_XDIST_WORKER" not in os.environ:
      folder = tmp_path_factory.mktemp(name) / name
      build(folder)
      return folder
    import fcntl  # pylint: disable=import-outside-toplevel  (POSIX, as the tests' forks)

    root = tmp_path_factory.getbasetemp().parent
    folder, done = root / name, root / f"{name}.done"
    with open(root / f"{name}.lock", "w", encoding="utf-8") as lock:
      fcntl.flock(lock, fcntl.LOCK_EX)  # Released when the file closes.
      if not done.exists():
        if folder.exists():  # Left by a build that raised.
          shutil.rmtree(folder)
        build(folder)
        done.touch()
    return folder

  return build_once


@pytest.fixture(scope="session")
def tiny_digits_bundle(built_once):
  """A small MLP (64-32-10, sigmoid) trained with codes on the bundled digits (~5 s).

  Returns ``(bundle, train, test)`` with the digits ``Dataset`` splits. Shared by the
  baselines' tests and the doctests (``bundle``): treat it as read-only (methods never
  modify their input bundle). Trained once per run (:func:`built_once`); every worker's
  bundle is the one saved (``workflow.train`` on the finished run loads it).
  """
  from mnemonic_jax import workflow
  from mnemonic_jax.configs import paper_mlp_config
  from mnemonic_jax.data import load_dataset

  config = paper_mlp_config("tiny_digits", "digits", epochs=40, checkpoint_every=10_000)
  config.model_kwargs.hidden = (32,)
  config.learning_rate = 0.1
  workdir = built_once("tiny_digits",
                       lambda folder: workflow.train(config, folder, progress=False))
  bundle = workflow.train(config, workdir, progress=False)
  return bundle, load_dataset("digits", "train"), load_dataset("digits", "test")


@functools.cache
def _namespace() -> dict:
  import jax
  import jax.numpy as jnp
  import numpy as np

  import mnemonic_jax as mj
  from mnemonic_jax.data import load_dataset

  model = mj.create_model("mlp", 4, hidden=(16,))
  codes = mj.generate_codes(jax.random.key(0), 4, (3, 3, 1))
  params = model.init(jax.random.key(1), codes)["params"]
  return dict(jax=jax, jnp=jnp, np=np, mj=mj, load_dataset=load_dataset, model=model, codes=codes,
              params=params, apply_fn=mj.inference_apply_fn(model, {}), key=jax.random.key(0))


@pytest.fixture(autouse=True)
def _doctest_names(request, tmp_path):
  if type(request.node).__name__ != "DoctestItem":
    return
  namespace = request.getfixturevalue("doctest_namespace")
  bundle, train, test = request.getfixturevalue("tiny_digits_bundle")
  namespace.update(_namespace(), tmp=tmp_path, bundle=bundle, images=train.images,
                   labels=train.labels, train=train, test=test)
