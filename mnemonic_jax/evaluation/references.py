"""Checks of the references a depth report is read against: the retrain oracle and the
original.

A gap to an oracle means something only when the oracle is a model of the same
architecture (:func:`check_comparable`) trained from scratch without the forgotten
classes: not the unlearned model itself nor one forgotten by another method
(:func:`check_retrained`), and one that gets almost none of the forgotten classes' test
images right, while the original gets them (:func:`check_references`). The command line
(``evaluate --depth``) and :func:`mnemonic_jax.evaluation.depth_report` run them before
any attack.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from mnemonic_jax import _validate, errors
from mnemonic_jax.baselines.base import Split
from mnemonic_jax.bundle import Bundle
from mnemonic_jax.checkpointing.trees import _tree_mismatch
from mnemonic_jax.evaluation import attacks
from mnemonic_jax.evaluation import features as feats


def check_comparable(unlearned: Bundle, other: Bundle, name: str) -> None:
  """Checks that ``other`` (the oracle, the original) is a model of the same architecture.

  Model attributes are compared as the built modules resolve them, defaults filled in
  (:func:`model_attributes`): ``{}`` and the model's defaults written out are the same
  model; any attribute that differs once resolved is refused. Parameters are compared by
  their leaves' paths and shapes, not their containers' types: a ``FrozenDict`` and a
  ``dict`` of the same model match.

  Raises:
    BadRequestType: ``other`` is not a Bundle.
    BadRequest: another model, other model attributes, class count or input shape; the
      message names which.
  """
  _validate.bundle(unlearned, "unlearned")
  _validate.bundle(other, name)
  for what, mine, theirs in (
      ("model", unlearned.model_name, other.model_name),
      ("model attributes", model_attributes(unlearned), model_attributes(other)),
      ("class count", unlearned.num_classes, other.num_classes),
      ("input shape", tuple(unlearned.input_shape), tuple(other.input_shape))):
    if mine != theirs:
      raise errors.BadRequest(
          f"the {name} bundle has {what} {theirs!r} but the unlearned model has {mine!r}; "
          f"the depth attacks compare one architecture: give an {name} of the same model, "
          "classes and input shape (the oracle: retrained from the original's config)")
  mismatch = _tree_mismatch(other.params, unlearned.params)
  if mismatch:
    raise errors.BadRequest(f"the {name} bundle's parameters differ in paths or shapes from "
                            f"the unlearned model's ({mismatch}): another architecture")


_RETRAINED = ("give the model retrained from scratch without the classes (docs/depth.md shows "
              "how)")


def check_retrained(unlearned: Bundle, oracle: Bundle, name: str = "oracle") -> None:
  """Refuses an oracle that is no model trained without the classes: one holding the
  unlearned model's own parameters, or one whose history records another way of
  forgetting (the gaps to either are 0 by construction, and every goal reads as met).

  Raises:
    BadRequest: naming ``name`` and what it holds.
  """
  mine, theirs = jax.tree.leaves(unlearned.params), jax.tree.leaves(oracle.params)
  if len(mine) == len(theirs) and all(np.shape(a) == np.shape(b) and np.array_equal(a, b)
                                      for a, b in zip(mine, theirs)):
    raise errors.BadRequest(f"{name} holds the unlearned model's own parameters, so every gap "
                            f"to it is 0; {_RETRAINED}")
  other_ways = sorted({e.get("method") or e.get("move") or "?" for e in oracle.history
                       if e.get("method") != "retrain"})
  if other_ways:
    raise errors.BadRequest(f"{name} forgot classes with {', '.join(other_ways)} (its "
                            f"history), so it is not a retrain oracle; {_RETRAINED}")


def model_attributes(bundle: Bundle) -> dict[str, Any]:
  """The model's attributes with its defaults filled in, lists as lists (comparable).

  Builds the (unbound, parameter-free) Flax module from the bundle's model name and
  keyword arguments and reads its dataclass fields, less ``num_classes`` (compared on its
  own), ``parent`` and ``name``. A model that cannot be built (not registered here) gives
  its keyword arguments as written.

  Raises:
    BadRequestType: ``bundle`` is not a Bundle.
  """
  _validate.bundle(bundle)
  try:
    module = bundle.model
  except (errors.MnemonicJaxError, TypeError, ValueError):
    return _plain(dict(bundle.model_kwargs))  # Unregistered: compared as written.
  if not dataclasses.is_dataclass(module):
    return _plain(dict(bundle.model_kwargs))
  skip = {"num_classes", "parent", "name"}
  return _plain({f.name: getattr(module, f.name) for f in dataclasses.fields(module)
                 if f.name not in skip})


def _plain(value: Any) -> Any:
  if isinstance(value, dict):
    return {k: _plain(v) for k, v in sorted(value.items())}
  if isinstance(value, (list, tuple)):
    return [_plain(v) for v in value]
  return value


#: The most an oracle may get right of the forgotten classes' test images (%). A model
#: retrained without them is never taught to predict them: every oracle recorded in
#: experiments/results/depth.json and the parts of deep.json (six architectures on digits
#: and Fashion-MNIST, each class forgotten alone and 0+1+2, seeds 0 to 2) gets 0.0% of them
#: right (E_F 100.0), while the original gets 23% or more (the lowest: fashion_cnn on
#: class 6, shirt). 10%, chance among ten classes, lies between: an oracle above it knows
#: the classes, and every gap read against it is meaningless (the original passed as the
#: oracle met every goal).
ORACLE_MAX_FORGOTTEN_ACCURACY = 10.0
#: The least an original must get right of them (%). The original is the model the
#: classes were forgotten from: one at chance or below never knew them (the oracle or
#: another forgotten model given by mistake), and the figures read against it (relearning
#: back to a share of its accuracy, the probe's comparison, CKA to it) would say nothing.
ORIGINAL_MIN_FORGOTTEN_ACCURACY = 10.0


def check_references(test: Split, classes: Sequence[int], *, oracles: Sequence[tuple[str,
                     Bundle]] = (), original: tuple[str, Bundle] | None = None,
                     batch_size: int = 256) -> None:
  """Refuses an oracle that knows the forgotten classes and an original that does not,
  from their accuracy on the forgotten classes' images of ``test`` (one forward pass each).

  Args:
    test: the split scored (uint8 ``images``, ``labels``).
    classes: the forgotten classes.
    oracles, original: ``(name, bundle)``; the name starts the message (e.g. ``"oracle"``,
      or ``"--oracle PATH"`` on the command line).
    batch_size: images per forward pass.

  Raises:
    BadRequestType: ``test`` without ``images`` and ``labels``, a model that is not a
      Bundle or not given as a ``(name, bundle)`` pair, class ids that are not integers.
    BadRequest: an oracle gets more than :data:`ORACLE_MAX_FORGOTTEN_ACCURACY` % of those
      images right, or the original :data:`ORIGINAL_MIN_FORGOTTEN_ACCURACY` % or less;
      labels that are not ``(N,)`` with one per image, class ids out of range; images as
      :func:`mnemonic_jax.evaluation.forward` refuses them.
  """
  pairs = [*oracles, *([original] if original is not None else [])]
  if not all(isinstance(p, tuple) and len(p) == 2 and isinstance(p[0], str) for p in pairs):
    raise errors.BadRequestType("check_references takes oracles=[(name, bundle), ...] and "
                                "original=(name, bundle) or None")
  checks = [(name, bundle, i < len(oracles)) for i, (name, bundle) in enumerate(pairs)]
  for name, bundle, _ in checks:
    _validate.bundle(bundle, name)
  if not (hasattr(test, "images") and hasattr(test, "labels")):
    raise errors.BadRequestType(f"test must have images and labels (a Split), got "
                                f"{type(test).__name__}")
  _validate.listed_bool(test.labels, "test labels")
  labels = np.asarray(test.labels)
  if checks:
    _validate.labels(labels, checks[0][1].num_classes, name="test labels")
    classes = _validate.class_ids(classes, checks[0][1].num_classes)
  if np.ndim(test.images) < 1 or len(labels) != len(test.images):
    raise errors.BadRequest(f"test has images of shape {np.shape(test.images)} and labels of "
                            f"shape {labels.shape}: give one label per image")
  mask = np.isin(labels, classes)
  if not mask.any():
    return  # The attacks refuse a split without the forgotten classes.
  images = np.asarray(test.images)[mask]
  which = f"class{'es' if len(classes) > 1 else ''} {', '.join(map(str, classes))}"
  for name, bundle, is_oracle in checks:
    logits = feats.forward(bundle, images, features=False, batch_size=batch_size).logits
    right = attacks.forgotten_accuracy(logits, labels[mask], classes)
    figure = (f"{name} gets {right:.1f}% of the test images of forgotten {which} right "
              f"(E_F {100.0 - right:.1f})")
    flag = name.split()[0]
    if is_oracle and right > ORACLE_MAX_FORGOTTEN_ACCURACY:
      raise errors.BadRequest(
          f"{figure}, but a model retrained without them gets almost none (at most "
          f"{ORACLE_MAX_FORGOTTEN_ACCURACY:g}%); {flag} must be a model trained from scratch "
          f"without {which} (e.g. the retrain baseline), not one that knows them as the "
          "original does")
    if not is_oracle and right <= ORIGINAL_MIN_FORGOTTEN_ACCURACY:
      raise errors.BadRequest(
          f"{figure}: it does not know them, so they were not forgotten from it; {flag} "
          "must be the bundle before forgetting (a model retrained without them is the "
          "oracle)")

