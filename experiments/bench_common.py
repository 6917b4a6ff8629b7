"""What the benchmarks share: timing after compilation and writing their table."""

import statistics
import time
from typing import Any, Callable, Sequence

import jax


def median_seconds(make_call: Callable[[int], Callable[[], Any]], repeats: int) -> float:
  """Median wall seconds of ``make_call(i)()`` for ``i = 1..repeats``, results awaited."""
  times = []
  for i in range(1, repeats + 1):
    call = make_call(i)
    start = time.perf_counter()
    jax.block_until_ready(call())
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def emit(lines: Sequence[str], out: str | None) -> None:
  """Prints a markdown table and, with ``out``, writes it there too."""
  text = "\n".join(lines)
  print(text)
  if out:
    with open(out, "w") as f:
      f.write(text + "\n")
