"""Arrays for tests that check what a function reads (``test_baselines_new``,
``test_fewshot``)."""

import numpy as np


class Counted(np.ndarray):
  """An array that logs how many rows each read by indexing takes (``log``)."""

  def __new__(cls, array, log):
    out = np.asarray(array).view(cls)
    out.log = log
    return out

  def __array_finalize__(self, obj):
    self.log = getattr(obj, "log", None)

  def __getitem__(self, index):
    out = np.asarray(super().__getitem__(index))
    if out.ndim == self.ndim:
      self.log.append(len(out))
    return out
