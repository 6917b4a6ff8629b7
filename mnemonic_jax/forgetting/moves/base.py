"""What every forgetting move is: a typed, frozen object in one registry.

A move is a frozen dataclass whose fields are its options (so no move accepts an option
it ignores), with class-level facts: its registry ``name``, what it ``acts_on``
(:data:`ACTS_ON`), the name it has among the unlearning methods of
:mod:`mnemonic_jax.baselines` (``baseline``) and whether it lowers the model's output
bias (``needs_output_bias``: refused for a model without one). Calling it on a checked request
(:class:`mnemonic_jax.forgetting.primitives.Request`) returns :class:`Moved`.

The command line's ``--move`` choices, the ``mnemonic-*`` methods of the baselines and
the experiment runners all read :data:`MOVES`.

Example:
  >>> sorted(MOVES)[:3]
  ['algorithm2', 'bias', 'dampen']
  >>> get("bias").acts_on
  'output layer'
"""

import abc
import dataclasses
import difflib
from typing import Any, ClassVar, Mapping

from mnemonic_jax import errors
from mnemonic_jax.forgetting.primitives import CodeScores, Request
from mnemonic_jax.pytrees import PyTree

#: What a move changes: the output layer only (a logit-level change), the layers where
#: the codes' Fisher ratio concentrates, or every parameter tensor.
ACTS_ON = ("output layer", "concentrated layers", "all layers")


@dataclasses.dataclass(frozen=True)
class Moved:
  """What a move returns.

  Attributes:
    params: the new parameters (same structure and dtypes as the input).
    before: the code scores of the input parameters.
    after: the code scores of ``params``.
    met: whether the move's rule was met on the codes (None: the move has no rule).
    details: the move's own typed record (a dataclass with ``to_dict()``).
  """

  params: PyTree
  before: CodeScores
  after: CodeScores
  met: bool | None
  details: Any


@dataclasses.dataclass(frozen=True)
class Move(abc.ABC):
  """A forgetting move (subclasses are frozen dataclasses; their fields are options)."""

  name: ClassVar[str]
  acts_on: ClassVar[str]
  baseline: ClassVar[str]
  #: One line for the command line's help.
  summary: ClassVar[str]
  #: Whether the move lowers the output bias (a model without one is refused, the refusal
  #: naming every move that has this set: :func:`needing_output_bias`).
  needs_output_bias: ClassVar[bool] = False

  @abc.abstractmethod
  def __call__(self, params: PyTree, request: Request) -> Moved:
    """Moves ``params`` for a checked ``request`` (on the host, running jitted programs)."""

  def with_lambdas(self, lambda1: Any, lambda2: Any) -> "Move":
    """The move that numbers for ``lambda1`` and ``lambda2``, given beside this one, make
    (:func:`mnemonic_jax.forgetting.resolve_move`): the paper's Algorithm 2 for the
    paper's moves (``Paper`` overrides this); every other move chooses its own step.

    Raises:
      BadRequest: this move takes no lambdas; the message says what to pass instead.
    """
    del lambda1, lambda2
    raise errors.BadRequest(
        f"move={self.name!r} chooses its own step on the codes, so it takes no lambdas; "
        "numbers for lambda1 and lambda2 run the paper's Algorithm 2: give them with "
        "move='algorithm2' (or no move), or drop them")

  def options(self) -> dict[str, Any]:
    """The move's options as JSON-able values (for reports and history)."""
    out = {}
    for field in dataclasses.fields(self):
      value = getattr(self, field.name)
      if dataclasses.is_dataclass(value):
        value = dataclasses.asdict(value)
      elif isinstance(value, tuple) and len(value) > 8:
        value = f"{len(value)} values"
      elif value is not None and not isinstance(value, (int, float, str, bool, tuple, dict)):
        value = repr(value)
      out[field.name] = value
    return out


#: Every registered move, by name.
MOVES: dict[str, type[Move]] = {}


def register(cls: type[Move]) -> type[Move]:
  """Class decorator: adds a move to :data:`MOVES`.

  Raises:
    ValueError: a name already taken, or ``acts_on`` not one of :data:`ACTS_ON`.
  """
  if cls.name in MOVES:
    raise errors.BadRequest(f"a move named {cls.name!r} is already registered")
  if cls.acts_on not in ACTS_ON:
    raise errors.BadRequest(f"{cls.__name__}.acts_on must be one of {ACTS_ON}")
  MOVES[cls.name] = cls
  return cls


def needing_output_bias() -> list[str]:
  """The registered moves that lower the output bias (``needs_output_bias``), sorted."""
  return sorted(name for name, cls in MOVES.items() if cls.needs_output_bias)


def check_move(move: Any) -> None:
  """Checks a move given by name or as a :class:`Move` object (None passes).

  Raises:
    BadRequestType: neither a name nor a move object: a move class rather than an instance
      (the message says which instance to pass), or another type.
    BadRequest: a name that is no move's.
  """
  if move is None or isinstance(move, Move):
    return
  if isinstance(move, type) and issubclass(move, Move):
    names = [n for n, cls in MOVES.items() if cls is move]
    raise errors.BadRequestType(
        f"move is the class {move.__name__}, not a move: pass an instance, e.g. "
        f"moves.{move.__name__}()" + (f" (or its name {names[0]!r})" if names else ""))
  if not isinstance(move, str):
    raise errors.BadRequestType(f"move must be a move's name or a Move object (e.g. "
                                f"moves.Bias()), got {type(move).__name__} {move!r}")
  if move not in MOVES:
    near = [n for n in MOVES if n == move.strip().lower()] or difflib.get_close_matches(
        move, list(MOVES), n=1)
    hint = f"did you mean {near[0]!r}? " if near else ""
    raise errors.BadRequest(f"unknown move {move!r}; {hint}use one of "
                            f"{', '.join(sorted(MOVES))} (names are lower case)")


def get(name: "str | Move", options: Mapping[str, Any] | None = None) -> Move:
  """The move named ``name`` with ``options`` (a :class:`Move` passes through).

  Raises:
    ValueError: an unknown name, or options given with a move object; an option's value
      out of range (checked by the move, naming the option).
    TypeError: ``name`` neither a name nor a move object (:func:`check_move`), ``options``
      not a mapping, an option the move does not have, one it needs
      missing, or an option's value of the wrong kind (a ``rule`` that is not a Rule).
  """
  if isinstance(name, Move):
    if options:
      raise errors.BadRequest("give options on the move object itself, not beside it")
    return name
  if name is None:  # check_move lets None pass: forget's "the default move".
    raise errors.BadRequestType("moves.get needs a move's name or a Move object, got None "
                                "(mj.forget's move=None is its default move)")
  check_move(name)
  if options is not None and not isinstance(options, Mapping):
    raise errors.BadRequestType(f"the options of move {name!r} must be a dict of option names "
                                f"and values, got {type(options).__name__}")
  options = dict(options or {})
  fields = dataclasses.fields(MOVES[name])
  unknown = sorted(set(options) - {f.name for f in fields})
  missing = [f.name for f in fields if f.name not in options
             and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
  if unknown or missing:
    said = (f"has no option {', '.join(unknown)}" if unknown
            else f"needs {' and '.join(missing)}")
    raise errors.BadRequestType(f"move {name!r} {said}; its options: "
                                f"{', '.join(f.name for f in fields) or 'none'}")
  return MOVES[name](**options)
