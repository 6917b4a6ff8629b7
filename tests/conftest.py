"""Eight virtual CPU devices, so sharded code is tested on a CPU-only machine."""

import os

os.environ.setdefault("XLA_FLAGS", "")
import jax  # noqa: E402

jax.config.update("jax_num_cpu_devices", 8)
