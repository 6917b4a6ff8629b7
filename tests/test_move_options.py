"""The moves' options and Rule's fields are checked by kind and range when given, naming the
option; lambdas beside a move object mean what they mean beside its name (or say what to
pass)."""

import dataclasses
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mnemonic_jax as mj
from mnemonic_jax.forgetting import Rule, moves
from mnemonic_jax.forgetting.moves import paper_search

#: Every move built from its options alone (Algorithm 2 also needs its lambdas).
RULED = sorted(name for name in moves.MOVES if name != "algorithm2")
#: The moves whose ``grid`` is a step grid (the paper's is a pair of lambda grids).
STEPPED = sorted(name for name in RULED if name != "paper")


@pytest.mark.parametrize("fields, error, phrase", [
    ({"margin": "15"}, TypeError, "Rule margin must be a finite number >= 0, got '15'"),
    ({"margin": None}, TypeError, "Rule margin must be a finite number >= 0, got None"),
    ({"margin": True}, TypeError, "Rule margin must be"),
    ({"margin": [10.0]}, TypeError, "Rule margin must be"),
    ({"margin": jnp.ones(2)}, TypeError, r"Rule margin must be .*shape \(2,\)"),
    ({"margin": -1.0}, ValueError, "Rule margin must be a finite number >= 0, got -1"),
    ({"margin": float("nan")}, ValueError, "Rule margin"),
    ({"margin": float("inf")}, ValueError, "Rule margin"),
    ({"guard": "0.4"}, TypeError, r"Rule guard must be a finite number in \[0, 1\]"),
    ({"guard": 1.5}, ValueError, r"Rule guard must be a finite number in \[0, 1\], got 1.5"),
    ({"order": 3}, TypeError, "Rule order must be a string"),
    ({"order": ["size"]}, TypeError, "Rule order must be a string"),
    ({"order": "biggest"}, ValueError, "unknown order 'biggest'"),
    ({"fallback": None}, TypeError, "Rule fallback must be a string"),
    ({"fallback": "none"}, ValueError, "unknown fallback 'none'"),
])
def test_rule_refuses_fields_of_the_wrong_kind_or_range(fields, error, phrase):
  with pytest.raises(error, match=phrase) as raised:
    Rule(**fields)
  assert isinstance(raised.value, mj.errors.MnemonicJaxError)


def test_rule_takes_numpy_and_jax_numbers_and_keeps_them_as_given():
  rule = Rule(margin=np.float32(10.0), guard=jnp.asarray(0.5), order="max")
  assert rule.margin == 10.0 and isinstance(rule.margin, np.float32)
  assert Rule(margin=10).margin == 10 and isinstance(Rule(margin=10).margin, int)


@pytest.mark.parametrize("name", RULED)
@pytest.mark.parametrize("rule, phrase", [
    ({"margin": 10}, r"rule must be a Rule .*got dict; write rule=Rule\(\*\*\{'margin': 10\}\)"),
    (None, "rule must be a Rule .*got NoneType; leave it out"),
    (15.0, "rule must be a Rule .*got float"),
])
def test_every_move_refuses_a_rule_that_is_not_a_rule(name, rule, phrase):
  cls = moves.MOVES[name]
  with pytest.raises(mj.errors.BadRequestType, match=f"^{cls.__name__}.{phrase}"):
    cls(rule=rule)
  with pytest.raises(mj.errors.BadRequestType, match=phrase):  # By name, the same.
    moves.get(name, {"rule": rule})


@pytest.mark.parametrize("name", STEPPED)
@pytest.mark.parametrize("grid, error, phrase", [
    ("1", TypeError, "must be a sequence of positive numbers .*got str"),
    (5.0, TypeError, "must be a sequence of positive numbers .*got float"),
    (None, TypeError, "must be a sequence of positive numbers"),
    (["a", 1.0], TypeError, "got entries \\['a'\\]"),
    ([[1.0, 2.0]], TypeError, "got entries"),
    ([True], TypeError, "got entries"),
    (np.ones((2, 2)), TypeError, r"shape \(2, 2\)"),
    ((), ValueError, "step grid must hold finite positive numbers"),
    ((0.0, 1.0), ValueError, "step grid must hold finite positive numbers"),
    ((float("nan"),), ValueError, "step grid"),
    ((1e39,), ValueError, "step grid"),  # inf in float32.
])
def test_every_step_grid_move_refuses_a_bad_grid_naming_it(name, grid, error, phrase):
  cls = moves.MOVES[name]
  with pytest.raises(error, match=rf"^{cls.__name__}\.grid.* {phrase}"):
    cls(grid=grid)


@pytest.mark.parametrize("name", RULED)
def test_every_move_takes_its_defaults_and_numpy_options(name):
  cls = moves.MOVES[name]
  assert cls().rule == Rule()
  if name in STEPPED:
    # Ordered from the weakest move: increasing steps, dampen's decreasing thresholds.
    order = (lambda values: values[::-1]) if name == "dampen" else (lambda values: values)
    grid = order(np.geomspace(1e-2, 10.0, 5))
    assert cls(grid=grid).grid is grid  # Checked, kept as given.
    listed = order([1, 2.5, np.float32(4.0)])
    assert cls(grid=listed).grid == listed


@pytest.mark.parametrize("options, error, phrase", [
    ({"chunk": "a"}, TypeError, "Paper.chunk must be a positive int or None, got 'a'"),
    ({"chunk": 3.5}, TypeError, "Paper.chunk must be a positive int or None, got 3.5"),
    ({"chunk": True}, TypeError, "Paper.chunk must be a positive int or None, got True"),
    ({"chunk": 0}, ValueError, "Paper.chunk must be a positive int or None, got 0"),
    ({"chunk": -5}, ValueError, "Paper.chunk must be a positive int or None, got -5"),
    ({"strategy": 1}, TypeError, "Paper.strategy must be a string"),
    ({"strategy": "greedy"}, ValueError, "Paper.strategy: unknown search strategy"),
    ({"grid": "x"}, TypeError, r"Paper.grid must be a pair \(lambda1 values, lambda2 values\)"),
    ({"grid": ((1e-3,),)}, TypeError, "Paper.grid must be a pair"),
    ({"grid": (1e-3, 10.0)}, TypeError, r"Paper.grid\[0\] \(lambda1 values\) must be a sequence"),
    ({"grid": ((1e-3,), ("10",))}, TypeError, r"Paper.grid\[1\] \(lambda2 values\)"),
    ({"grid": ((), (10.0,))}, ValueError, "Paper.grid: the lambda grids must not be empty"),
    ({"grid": ((-1e-3,), (10.0,))}, ValueError, "Paper.grid: every lambda on the grid must"),
    ({"microbatch_size": 0}, ValueError, "Paper.microbatch_size must be a positive int or None"),
    ({"microbatch_size": 2.0}, TypeError, "Paper.microbatch_size must be a positive int"),
    ({"method": None}, TypeError, "Paper.method must be a string"),
    ({"method": "exact"}, ValueError, "Paper.method: unknown Fisher method 'exact'"),
    ({"mesh": "data"}, TypeError,
     "Paper.mesh must be a jax.sharding.Mesh with a 'data' axis, or None, got str"),
])
def test_paper_refuses_options_of_the_wrong_kind_or_range(options, error, phrase):
  """Paper(chunk=0), -5 and 3.5 were clamped or truncated; 'a' failed in int() at forget."""
  with pytest.raises(error, match=f"^{phrase}") as raised:
    moves.Paper(**options)
  assert isinstance(raised.value, mj.errors.MnemonicJaxError)


def test_paper_takes_numpy_ints_and_keeps_its_options():
  move = moves.Paper(chunk=np.int64(4), microbatch_size=np.int32(2), method="vmap",
                     grid=(np.array([1e-3, 1e-2]), [10.0]))
  assert move.chunk == 4 and move.microbatch_size == 2


@pytest.mark.parametrize("options, error, phrase", [
    ({"microbatch_size": "a"}, TypeError, "Algorithm2.microbatch_size must be"),
    ({"microbatch_size": -1}, ValueError, "Algorithm2.microbatch_size must be"),
    ({"method": "x"}, ValueError, "Algorithm2.method: unknown Fisher method"),
    ({"mesh": 1}, TypeError, "Algorithm2.mesh must be"),
])
def test_algorithm2_refuses_fisher_options_of_the_wrong_kind_or_range(options, error, phrase):
  with pytest.raises(error, match=f"^{phrase}"):
    moves.Algorithm2(lambda1=1e-3, lambda2=10.0, **options)


def test_get_refuses_options_that_are_not_a_mapping():
  with pytest.raises(mj.errors.BadRequestType, match="options of move 'bias' must be a dict"):
    moves.get("bias", "grid")


def _tiny():
  """A linear model of 3 classes on inputs (4,): apply_fn, params, codes."""
  params = {"w": jax.random.normal(jax.random.key(0), (4, 3)), "b": jnp.zeros(3)}
  apply_fn = lambda p, x: x @ p["w"] + p["b"]
  return apply_fn, params, mj.generate_codes(jax.random.key(1), 3, 4)


@pytest.mark.parametrize("options, error, phrase", [
    ({"chunk": 0}, ValueError, "^chunk must be a positive int or None, got 0"),
    ({"chunk": 2.5}, TypeError, "^chunk must be a positive int or None, got 2.5"),
    ({"rule": {"margin": 1.0}}, TypeError, "^rule must be a Rule"),
    ({"grid": ((1e-3,), 10.0)}, TypeError, r"^grid\[1\] \(lambda2 values\) must be"),
    ({"microbatch_size": "2"}, TypeError, "^microbatch_size must be"),
])
def test_select_lambdas_checks_the_same_options(options, error, phrase):
  apply_fn, params, codes = _tiny()
  with pytest.raises(error, match=phrase):
    mj.select_lambdas(apply_fn, params, codes, [1], **options)


def test_paper_search_check_options_returns_the_grid():
  l1, l2 = paper_search.check_options(grid=([1e-3, 1e-2], (10,)), rule=Rule(), chunk=None,
                                      strategy="full", microbatch_size=None, method="auto",
                                      mesh=None)
  np.testing.assert_array_equal(l1, [1e-3, 1e-2])
  np.testing.assert_array_equal(l2, [10.0])


# Lambdas beside a move: what forget's resolve_move asks the move (Move.with_lambdas).

def test_numbers_beside_paper_run_algorithm2_with_its_fisher_options():
  """``moves.Paper()`` beside numbers is what ``move="paper"`` by name is: Algorithm 2."""
  assert moves.Paper().with_lambdas(1e-3, 10.0) == moves.Algorithm2(lambda1=1e-3, lambda2=10.0)
  got = moves.Paper(microbatch_size=2, method="vmap").with_lambdas(1e-3, 10.0)
  assert got == moves.Algorithm2(lambda1=1e-3, lambda2=10.0, microbatch_size=2, method="vmap")
  with pytest.raises(ValueError, match="lambda1 must be a positive finite number"):
    moves.Paper().with_lambdas(-1.0, 10.0)


def test_numbers_beside_a_paper_search_say_what_to_pass():
  with pytest.raises(mj.errors.BadRequest,
                     match=r"moves.Paper\(rule=\.\.\., chunk=\.\.\.\) says how to search the "
                           r"lambdas, but lambda1=0.001 and lambda2=10.0 are given.*pass "
                           r"moves.Algorithm2\(lambda1=\.\.\., lambda2=\.\.\.\)"):
    moves.Paper(rule=Rule(margin=10), chunk=4).with_lambdas(1e-3, 10.0)


def test_numbers_beside_an_algorithm2_object_say_not_both():
  """It said "give lambdas only for the paper's Algorithm 2 (move='algorithm2' or none)"
  to a user who had passed move=moves.Algorithm2(...)."""
  move = moves.Algorithm2(lambda1=1e-3, lambda2=10.0)
  with pytest.raises(mj.errors.BadRequest,
                     match=r"lambdas given twice: moves.Algorithm2\(lambda1=0.001, "
                           r"lambda2=10.0\) holds its own.*either in the Algorithm2 object "
                           r"or as arguments .*not both"):
    move.with_lambdas(1e-3, 10.0)


@pytest.mark.parametrize("name", sorted(set(RULED) - {"paper"}))
def test_numbers_beside_a_move_that_chooses_its_step_are_refused(name):
  with pytest.raises(mj.errors.BadRequest,
                     match=f"move='{re.escape(name)}' chooses its own step on the codes, so "
                           "it takes no lambdas; .*move='algorithm2' \\(or no move\\), or "
                           "drop them"):
    moves.MOVES[name]().with_lambdas(1e-3, 10.0)
  assert {f.name for f in dataclasses.fields(moves.MOVES[name])} >= {"rule", "grid"}


def _tiny():
  params = {"w": jax.random.normal(jax.random.key(0), (4, 3)), "b": jnp.zeros(3)}
  return (lambda p, x: x @ p["w"] + p["b"]), params, mj.generate_codes(jax.random.key(1), 3, 4)


def test_lambdas_beside_a_paper_object_run_algorithm2_as_beside_its_name():
  apply_fn, params, codes = _tiny()
  by_name = mj.forget(apply_fn, params, codes, [1], 1e-3, 10.0, move="paper")
  by_object = mj.forget(apply_fn, params, codes, [1], 1e-3, 10.0, move=moves.Paper())
  assert by_name[1].move == by_object[1].move == "algorithm2"
  jax.tree.map(lambda a, b: (a == b).all() or pytest.fail("differ"), by_name[0], by_object[0])


@pytest.mark.parametrize("move, phrase", [
    (moves.Algorithm2(lambda1=1e-3, lambda2=10.0), "not both"),
    (moves.Paper(rule=Rule(margin=10)), r"moves.Paper\(rule=\.\.\.\) says how to search"),
    (moves.Bias(), "move='bias' chooses its own step"),
    ("bias", "move='bias' chooses its own step"),
])
def test_lambdas_beside_a_move_that_does_not_take_them_say_what_to_pass(move, phrase):
  apply_fn, params, codes = _tiny()
  with pytest.raises(mj.errors.BadRequest, match=phrase):
    mj.forget(apply_fn, params, codes, [1], 1e-3, 10.0, move=move)
