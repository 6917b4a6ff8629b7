"""The model as a pytree: :data:`ApplyFn`, :func:`as_pytree`, :class:`Static`.

Every jitted program of this package is a module-level ``jax.jit`` that takes the
caller's ``apply_fn`` as an ordinary pytree argument. Its array leaves (the BatchNorm
statistics of :class:`mnemonic_jax.bundle.InferenceApply`, or the arrays a
``jax.tree_util.Partial`` carries) are traced, and its static part (the model, the
function) is in the tree structure, which ``jax.jit`` hashes into its own cache: equal
models share one compiled program, new statistics do not recompile.
"""

from typing import Any, Callable

import jax

PyTree = Any
#: ``apply_fn(params, x) -> logits``: ``params`` a pytree of float arrays, ``x`` a batch
#: ``(N, *input_shape)``, logits ``(N, C)``. Nothing updated (BatchNorm in inference mode).
ApplyFn = Callable[[PyTree, jax.Array], jax.Array]


def as_pytree(apply_fn: ApplyFn) -> ApplyFn:
  """``apply_fn`` as a pytree that ``jax.jit`` can take as an argument.

  A callable that already is a registered pytree (``InferenceApply``, a
  ``jax.tree_util.Partial``) is returned as it is: its leaves must be arrays. Anything
  else (a plain function, a bound method) is wrapped in ``jax.tree_util.Partial``, so the
  function itself is part of the tree structure (compared by equality, i.e. identity for
  functions).

  Example:
    >>> f = as_pytree(lambda params, x: x @ params["w"])
    >>> jax.tree.leaves(f)
    []
  """
  if not jax.tree_util.treedef_is_leaf(jax.tree.structure(apply_fn)):
    return apply_fn
  return jax.tree_util.Partial(apply_fn)


class Static:
  """A static value in a pytree's structure, hashed by value where it can be and by
  identity otherwise (a Flax module with a list attribute cannot be hashed)."""

  __slots__ = ("value", "_key")

  def __init__(self, value: Any):
    self.value = value
    try:
      hash(value)
      self._key = (True, value)
    except TypeError:
      self._key = (False, id(value))

  def __hash__(self) -> int:
    return hash(self._key)

  def __eq__(self, other: Any) -> bool:
    if not isinstance(other, Static) or self._key[0] != other._key[0]:
      return False
    return self._key[1] == other._key[1] if self._key[0] else self.value is other.value
