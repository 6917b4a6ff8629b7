"""``python -m mnemonic_jax.cli``: the ``mnemonic-jax`` program."""

import sys

from mnemonic_jax.cli import entry_point

if __name__ == "__main__":
  sys.exit(entry_point())
