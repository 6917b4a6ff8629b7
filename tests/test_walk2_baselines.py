"""Every config field of every registered unlearning method is checked by kind when built.

A string, None (where the field is not optional), a bool where a number belongs, a float
where a count belongs, NaN or inf where a finite number belongs: each is refused with a
``BadRequestType`` or ``BadRequest`` naming the field (and, for the baselines' own configs,
the method), never another exception and never taken (``train_mode="no"`` was truthy,
``momentum=None`` ran, ``alpha="5"`` ended in a raw TypeError inside ``unlearn``).
"""

import dataclasses
import math
import types
import typing

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mnemonic_jax as mj
from mnemonic_jax import baselines, errors
from mnemonic_jax.baselines import finetune, options, scrub, ssd, unsir
from mnemonic_jax.bundle import Bundle

#: Fields without defaults (Algorithm 2's lambdas).
REQUIRED = {"mnemonic": {"lambda1": 1e-3, "lambda2": 10.0}}


def _optional(hint) -> bool:
  return (typing.get_origin(hint) in (typing.Union, types.UnionType)
          and type(None) in typing.get_args(hint))


def _kind(hint):
  if _optional(hint):
    hint = next(a for a in typing.get_args(hint) if a is not type(None))
  if typing.get_origin(hint) is typing.Annotated:
    hint = typing.get_args(hint)[0]
  return hint


def _cases():
  """``(method, field, bad value)`` over every registered method and config field."""
  for name in baselines.available_methods():
    cls = baselines.get_method(name).config_cls
    hints = typing.get_type_hints(cls, include_extras=True)
    for field in dataclasses.fields(cls):
      hint = hints[field.name]
      kind = _kind(hint)
      values = ["5"]
      if not _optional(hint):
        values.append(None)
      if kind in (int, float):
        values += [True, np.bool_(False)]
      if kind is float:
        values += [math.nan, -math.inf]
      if kind is int:
        values += [2.5, 3.0]
      for value in values:
        yield pytest.param(name, field.name, value, id=f"{name}-{field.name}-{value!r}")


@pytest.mark.parametrize("method, field, value", list(_cases()))
def test_every_field_refuses_a_value_of_the_wrong_kind(method, field, value):
  cls = baselines.get_method(method).config_cls
  with pytest.raises(errors.BadRequest) as raised:  # BadRequestType is a BadRequest.
    cls(**{**REQUIRED.get(method, {}), field: value})
  message = str(raised.value)
  assert field in message
  if issubclass(cls, options.Checked):
    assert message.startswith(f"{method}: {field} must be "), message
    assert repr(value)[:20] in message


@pytest.mark.parametrize("method", baselines.available_methods())
def test_defaults_still_build(method):
  cls = baselines.get_method(method).config_cls
  config = cls(**REQUIRED.get(method, {}))
  if isinstance(config, options.Checked):
    options.check(config)
    assert dataclasses.replace(config) == config


def test_the_walks_cases_are_refused_when_built():
  wrong_kind = [
      (ssd.SSDConfig, {"alpha": "5"}, "ssd: alpha"),
      (finetune.FinetuneConfig, {"learning_rate": None}, "finetune: learning_rate"),
      (unsir.UnsirConfig, {"impair_lr": "5"}, "unsir: impair_lr"),
      (scrub.ScrubConfig, {"lr_decay_epochs": None}, "scrub: lr_decay_epochs"),
      (finetune.FinetuneConfig, {"train_mode": "no"}, "finetune: train_mode"),
      (unsir.UnsirConfig, {"momentum": None}, "unsir: momentum"),
      (unsir.UnsirConfig, {"noise_lr": "5"}, "unsir: noise_lr"),
      (ssd.SSDExactConfig, {"alpha": "5"}, "ssd-exact: alpha"),
      (scrub.ScrubConfig, {"lr_decay_rate": None}, "scrub: lr_decay_rate"),
      (scrub.ScrubConfig, {"lr_decay_epochs": (3, "5")}, "scrub: lr_decay_epochs"),
  ]
  for cls, change, said in wrong_kind:
    with pytest.raises(errors.BadRequestType, match=said):
      cls(**change)


def test_ranges_are_checked_when_built():
  out_of_range = [
      (finetune.FinetuneConfig, {"epochs": 0}, "finetune: epochs must be a whole number >= 1"),
      (finetune.FinetuneConfig, {"momentum": -0.1}, "momentum must be a finite number >= 0"),
      (finetune.FinetuneConfig, {"schedule": "linear"}, "one of 'constant', 'cosine'"),
      (unsir.UnsirConfig, {"retain_per_class": 0}, "retain_per_class"),
      (scrub.ScrubConfig, {"max_epochs": 4}, "max_epochs <= epochs"),
      (ssd.SSDExactConfig, {"alpha": math.inf}, "ssd-exact: alpha"),
  ]
  for cls, change, said in out_of_range:
    with pytest.raises(errors.BadRequest, match=said) as raised:
      cls(**change)
    assert not isinstance(raised.value, errors.BadRequestType)


def test_right_kinds_still_build():
  # Ints where a float belongs, NumPy scalars, None where optional, a list of epochs.
  config = finetune.FinetuneConfig(epochs=np.int64(2), learning_rate=1, momentum=np.float32(0),
                                   train_mode=np.bool_(False))
  assert config.learning_rate == 1 and config.epochs == 2
  assert ssd.SSDExactConfig(alpha=None).alpha is None
  assert unsir.UnsirConfig(retain_per_class=None, noise_steps=0).noise_steps == 0
  assert scrub.ScrubConfig(lr_decay_epochs=[1, 2]).lr_decay_epochs == [1, 2]


def test_unlearn_checks_a_config_edited_after_it_was_built():
  shape = (8, 8, 1)
  model = mj.create_model("mlp", 10, hidden=(16,))
  params = model.init(jax.random.key(1), jnp.zeros((1, *shape)))["params"]
  bundle = Bundle("mlp", {"hidden": (16,)}, params, {}, jnp.zeros((10, *shape)), 10, shape,
                  mean=(0.3,), std=(0.3,))
  images = np.random.default_rng(0).integers(0, 256, (40, *shape), dtype=np.uint8)
  data = baselines.UnlearnData.from_training(images, np.arange(40) % 10, [3])
  config = finetune.FinetuneConfig(epochs=1)
  object.__setattr__(config, "learning_rate", "0.1")  # Past the frozen dataclass.
  with pytest.raises(errors.BadRequestType, match="finetune: learning_rate"):
    baselines.unlearn("finetune", bundle, [3], data, config)


def test_the_baselines_optimisers_key_numbers_by_their_float32_values():
  """0.01, np.float32(0.01) and a 0-d array built three optimisers (each its own compiled
  steps); they compute in float32, so they are one."""
  from mnemonic_jax.baselines import steps  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  first = steps.sgd(0.01, 0.9, 5e-4)
  assert steps.sgd(np.float32(0.01), np.float64(0.9), jnp.asarray(5e-4)) is first
  assert steps.adam(np.float32(1e-3), 0) is steps.adam(1e-3, 0.0)
