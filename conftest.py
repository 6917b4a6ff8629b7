"""The names docstring examples use, so that ``pytest`` runs every example in the package.

``setup.cfg`` collects the doctests of ``mnemonic_jax/`` (``--doctest-modules``). Each
example sees, besides its module's own globals:

* ``jax``, ``jnp``, ``np``, ``mj`` (``mnemonic_jax``), ``load_dataset``, ``tmp`` (a
  fresh directory);
* a tiny model: ``model`` (MLP 9-16-4), ``codes`` ``(4, 3, 3, 1)``, ``params``,
  ``apply_fn``;
* a small trained bundle: ``bundle`` (the digits MLP of ``tests/conftest.py``, 64-32-10,
  trained with codes), ``images``, ``labels`` (the digits training split) and ``key``.
"""

import functools
import tempfile

import pytest


@functools.cache
def _namespace() -> dict:
  import jax
  import jax.numpy as jnp
  import numpy as np

  import mnemonic_jax as mj
  from mnemonic_jax import workflow
  from mnemonic_jax.configs import paper_mlp_config
  from mnemonic_jax.data import load_dataset

  model = mj.create_model("mlp", 4, hidden=(16,))
  codes = mj.generate_codes(jax.random.key(0), 4, (3, 3, 1))
  params = model.init(jax.random.key(1), codes)["params"]
  config = paper_mlp_config("doctest_digits", "digits", epochs=40, checkpoint_every=10_000)
  config.model_kwargs.hidden = (32,)
  config.learning_rate = 0.1
  bundle = workflow.train(config, tempfile.mkdtemp(prefix="doctest-bundle-"), progress=False)
  train = load_dataset("digits", "train")
  return dict(jax=jax, jnp=jnp, np=np, mj=mj, load_dataset=load_dataset, model=model, codes=codes,
              params=params, apply_fn=mj.inference_apply_fn(model, {}), bundle=bundle,
              images=train.images, labels=train.labels, key=jax.random.key(0))


@pytest.fixture(autouse=True)
def _doctest_names(request, tmp_path):
  if type(request.node).__name__ != "DoctestItem":
    return
  namespace = request.getfixturevalue("doctest_namespace")
  namespace.update(_namespace(), tmp=tmp_path)
