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

import pytest


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
