"""Helpers shared by the command-line fault tests (``test_cli_safety``, ``test_cli_faults``)."""

import hashlib
import os
import pathlib
from typing import Any


def tree_digest(root: pathlib.Path) -> dict[str, str]:
  """Every file (sha256), directory and symlink (its target) under ``root``, links unfollowed."""
  if not os.path.lexists(root):
    return {}
  if os.path.islink(root):
    return {".": "link:" + os.readlink(root)}
  out = {}
  for dirpath, dirnames, filenames in os.walk(root):
    for name in dirnames + filenames:
      full = os.path.join(dirpath, name)
      rel = os.path.relpath(full, root)
      if os.path.islink(full):
        out[rel] = "link:" + os.readlink(full)
      elif os.path.isdir(full):
        out[rel + "/"] = "dir"
      else:
        out[rel] = hashlib.sha256(pathlib.Path(full).read_bytes()).hexdigest()
  return out


def small_config(**changes: Any) -> dict[str, Any]:
  """A digits MLP (64-32-10) config that trains in seconds, with ``changes`` applied."""
  config = dict(seed=0, dataset="digits", model="mlp", model_kwargs={"hidden": (32,)},
                epochs=8, batch_size=64, learning_rate=0.1, momentum=0.9,
                weight_decay=5e-4, t_mix=0.1, checkpoint_every=1000)
  config.update(changes)
  return config
