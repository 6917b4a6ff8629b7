"""Faults a fifth round of fresh users found on the command line, through the real command.

* G1 (data lost): ``train --config.pretrained=B --compilation-cache B/...`` wrote JAX's
  programs into the pretrained bundle B, which then no longer loaded: the check of walk4
  F1 saw the command's path options, not the paths its config names.
"""

import pathlib

import pytest

from cli_support import assert_refused, run_commands


@pytest.fixture(scope="module")
def bundle(small_trained_copy) -> pathlib.Path:
  return small_trained_copy()


def test_a_cache_folder_inside_what_the_train_config_reads_is_refused(bundle, tmp_path):
  work = tmp_path / "work"
  ran = run_commands({"train": {
      "args": ["train", "--config", "digits_mlp:quick", f"--config.pretrained={bundle}",
               "--workdir", work, "--compilation-cache", bundle / "meta" / "cache", "-q"],
      "watch": [bundle]}})["train"]
  assert_refused(ran.result, f"(the compilation cache) lies inside config.pretrained {bundle}")
  assert ran.before == ran.after and not work.exists()
