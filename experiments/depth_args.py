"""``experiments.depth``'s arguments, checked before anything trains or is written.

* class sets (:func:`parse_sets`, :func:`check_sets`, :func:`check_classes`): an empty
  ``--classes``, a set named twice and a class id a model does not have are refused at
  once, not after the first model trained;
* methods and their variants (:func:`split_variant`, :func:`check_methods`): an unknown
  method, an override of a field the method lacks or a value that is not a Python literal
  or of the wrong kind;
* ``--skip`` (:func:`parse_skip`).

Each refusal is one line ``experiments.depth: error: ...`` on stderr and exit status 2
(:func:`experiments.common.fail`).
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import pathlib
from collections.abc import Sequence
from typing import Any

from experiments import common, depth_models, fewshot
from mnemonic_jax import baselines, configs, errors
from mnemonic_jax import fisher as fisher_lib
from mnemonic_jax.baselines import options as baseline_options
from mnemonic_jax.data import FASHION_MNIST_CLASSES, load_dataset

PROG = "experiments.depth"


def set_name(classes: Sequence[int]) -> str:
  """``(0, 1, 2)`` -> ``"0+1+2"`` (the folder and log name of a class set)."""
  return "+".join(str(c) for c in classes)


def parse_sets(text: str) -> list[tuple[int, ...]]:
  """``"3,0+1+2"`` -> ``[(3,), (0, 1, 2)]``.

  Raises:
    SystemExit: no set at all (the report would be empty), a part that is not a class id or
      a set of them, or a set named twice (one line, exit 2).
  """
  sets = []
  for part in filter(None, text.split(",")):
    if not all(c.strip().isascii() and c.strip().isdigit() for c in part.split("+")):
      common.fail(f"--classes: {part!r} is not a class id or a set such as 0+1+2", PROG)
    sets.append(tuple(sorted(int(c) for c in part.split("+"))))
  if not sets:
    common.fail(f"--classes {text!r} names no class set; give e.g. 3 or 0,6,0+1+2", PROG)
  if len(set(sets)) != len(sets):
    common.fail(f"--classes names a set twice ({text}); give each once", PROG)
  return sets


def check_sets(sets: Sequence[tuple[int, ...]], num_classes: int, model: str = "") -> None:
  """Refuses a class set the library would refuse (out of range, repeated ids, every
  class) in one line, exit 2, before any run (``model``: named in the line if given)."""
  for classes in sets:
    try:
      fisher_lib.validate_classes(classes, num_classes)
    except ValueError as e:
      where = f" (model {model}, {num_classes} classes)" if model else ""
      common.fail(f"--classes {set_name(classes)}{where}: {e}", PROG)


def num_classes(name: str, root: pathlib.Path) -> int:
  """The number of classes of model ``name``'s dataset, read without training it.

  Args:
    name: a model of :data:`experiments.depth_models.MODELS` or a config spec.
    root: the cache folder (``fashion_cnn``'s subset is not written here: its classes are
      Fashion-MNIST's).
  """
  if name == "fashion_cnn":
    return len(FASHION_MNIST_CLASSES)
  config = depth_models.model_config(name, root)
  return load_dataset(config.dataset, "test").info.num_classes


def check_classes(sets: Sequence[tuple[int, ...]], models: Sequence[str],
                  root: pathlib.Path) -> None:
  """:func:`check_sets` for every model of ``models``, before the first one trains.

  Raises:
    SystemExit: a class id out of a model's range, or a set the library refuses (exit 2).
  """
  for name in models:
    check_sets(sets, num_classes(name, root), name)


def split_variant(method: str) -> tuple[str, dict[str, Any]]:
  """``"svd-projection@samples=10@alpha_f=3"`` -> ``("svd-projection", {"samples": 10,
  "alpha_f": 3})``: a method of :mod:`mnemonic_jax.baselines` and overrides of its config
  (values as Python literals), for ``--methods``; a plain name has none.

  Raises:
    ValueError: an override that is not ``field=literal`` (the message names the item and
      what a value may be).
  """
  name, *items = method.split("@")
  overrides = {}
  for item in items:
    field, eq, value = item.partition("=")
    if not eq:
      raise ValueError(f"{method!r}: an override must be field=value, got {item!r}")
    try:
      overrides[field.strip()] = ast.literal_eval(value.strip())
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
      raise ValueError(
          f"{method!r}: in {item!r} the value must be a Python literal (a number, a string "
          f"in quotes such as {field.strip()}='{value.strip()}', True, False, None or a "
          "tuple)") from None
  return name, overrides


def check_methods(methods: Sequence[str], known: Sequence[str]) -> None:
  """Refuses ``--methods`` the runs would fail on (one line, exit 2): a malformed variant,
  an unknown method (``known``: the choices named), a method named twice, an override of a
  field its config lacks or of a value of the wrong kind."""
  try:
    variants = [split_variant(m) for m in methods]
  except ValueError as e:
    common.fail(f"--methods: {e}", PROG)
  bad = [m for m, (name, _) in zip(methods, variants)
         if name not in baselines.available_methods() or name == "retrain"]
  if bad:
    choices = [*known, *([fewshot.NAME] if fewshot.NAME not in known else [])]
    near = {m: difflib.get_close_matches(split_variant(m)[0], choices, n=1) for m in bad}
    hints = " ".join(f"did you mean {n[0]!r} for {m!r}?" for m, n in near.items() if n)
    common.fail(f"unknown --methods {bad}; {hints + ' ' if hints else ''}choose from "
                f"{', '.join(choices)}", PROG)
  if len(set(methods)) != len(methods):  # Each would be run, and counted, twice.
    common.fail(f"--methods names a method twice ({','.join(methods)}); give each once", PROG)
  for method, (name, overrides) in zip(methods, variants):
    fields = {f.name for f in dataclasses.fields(baselines.get_method(name).config_cls)}
    if set(overrides) - fields:
      common.fail(f"--methods {method}: {name} has no option "
                  f"{', '.join(sorted(set(overrides) - fields))}; its options: "
                  f"{', '.join(sorted(fields))}", PROG)
    try:  # A value of the wrong kind would stop the run at its first use, with a traceback.
      for field, value in overrides.items():
        baseline_options.check_value(baselines.get_method(name).config_cls, field, value)
    except (errors.BadRequest, errors.BadRequestType) as e:
      common.fail(f"--methods {method}: {e}", PROG)


def check_models(models: Sequence[str]) -> None:
  """Refuses a ``--models`` item that is neither a model of
  :data:`experiments.depth_models.MODELS` nor a config spec (one line, exit 2)."""
  if not models:
    common.fail("--models names no model; give e.g. digits_sigmoid or digits_mlp:quick", PROG)
  for name in models:
    if name not in depth_models.MODELS:
      try:
        configs.load_config(name)
      except configs.ConfigError as e:
        common.fail(f"--models {name}: not one of {', '.join(depth_models.MODELS)}, nor a "
                    f"config: {e}", PROG)


def parse_skip(items: Sequence[str], models: Sequence[str],
               methods: Sequence[str]) -> dict[str, list[str]]:
  """``--skip MODEL=METHOD,...`` (repeatable) -> ``{model: [method, ...]}``.

  Raises:
    SystemExit: an item without ``=``, a model not in ``--models`` or a method not in
      ``--methods`` (each would be skipped silently), or every method skipped on every
      model (the report would hold no method); exit status 2.
  """
  skip: dict[str, list[str]] = {}
  for item in items:
    model, eq, names = item.partition("=")
    chosen = [m for m in names.split(",") if m]
    if not eq or not chosen:
      common.fail(f"--skip {item!r}: write MODEL=METHOD,... e.g. digits_vit=finetune", PROG)
    if model not in models:
      common.fail(f"--skip {item}: {model} is not in --models ({','.join(models)})", PROG)
    bad = [m for m in chosen if m not in methods]
    if bad:
      common.fail(f"--skip {item}: {', '.join(bad)} not in --methods; choose from "
                  f"{', '.join(methods)}", PROG)
    skip.setdefault(model, []).extend(m for m in chosen if m not in skip.get(model, []))
  if all(set(methods) <= set(skip.get(model, [])) for model in models):  # An empty report.
    common.fail(f"--skip leaves no method to run on any model (--methods "
                f"{','.join(methods)}); skip fewer, or name other --methods", PROG)
  return skip
