"""The PyTorch transcription of Algorithms 1 and 2 against mnemonic-jax on the same weights.

Slow, and skipped without torch (the ``bench`` extra): the benchmarks' baseline must do
what the library does, to float32 rounding, or their ratios compare different work.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mnemonic_jax as mj
from experiments import torch_reference as tr
from mnemonic_jax import training

pytestmark = pytest.mark.slow
#: Imported by :func:`_torch` when a test of this module runs, not when it is collected
#: (every test here is slow: the default suite's workers need not import torch, ~2 s each).
torch = None


@pytest.fixture(scope="module", autouse=True)
def _torch():
  """Imports torch for the module's tests, or skips them without it."""
  global torch  # pylint: disable=global-statement
  torch = pytest.importorskip("torch")

SHAPE, CLASSES = (8, 8, 1), 5


def _max_diff(a: dict, b: dict) -> float:
  return max(jax.tree.leaves(jax.tree.map(
      lambda x, y: float(np.max(np.abs(np.asarray(x) - np.asarray(y)))), a, b)))


def _tiny_mlp(seed: int = 1):
  model = mj.create_model("mlp", CLASSES, hidden=(32,))
  codes = mj.generate_codes(jax.random.key(0), CLASSES, SHAPE)
  params = model.init(jax.random.key(seed), codes)["params"]
  torch_model = tr.mlp(int(np.prod(SHAPE)), (32,), CLASSES)
  tr.load_flax_params(torch_model, params)
  return mj.inference_apply_fn(model, {}), params, codes, torch_model


def test_flax_params_round_trip_and_same_logits():
  apply_fn, params, codes, model = _tiny_mlp()
  assert _max_diff(tr.flax_params(model), params) == 0.0
  with torch.no_grad():
    logits = model(torch.tensor(np.asarray(codes))).numpy()
  np.testing.assert_allclose(logits, apply_fn(params, codes), atol=1e-5)


def test_fisher_ratio_cleans_like_the_library():
  f_forget = torch.tensor([4.0, 0.0, 1.0, 0.0, 3.0])
  f_remain = torch.tensor([2.0, 0.0, 0.0, 1.0, 1.0])  # ratio, NaN, +inf, 0, ratio
  eta = tr.fisher_ratio(f_forget, f_remain).numpy()
  np.testing.assert_allclose(eta, [2.0, 1.0, 3.0, 0.0, 3.0], rtol=1e-6)
  ours = mj.fisher_ratio({"w": jnp.asarray(f_forget.numpy())}, {"w": jnp.asarray(f_remain.numpy())})
  np.testing.assert_allclose(eta, ours["w"], rtol=1e-6)


@pytest.mark.parametrize("forget", [[0], [1, 3]])
def test_forget_matches_mnemonic_jax_on_the_same_weights(forget):
  apply_fn, params, codes, model = _tiny_mlp()
  new, report = mj.forget(apply_fn, params, codes, forget, 1e-2, 1.0)
  f_forget, f_remain = mj.class_fishers(apply_fn, params, codes, forget, eps=1e-16)
  ours_ff, ours_fr = tr.code_fishers(model, torch.tensor(np.asarray(codes)), forget)
  model_ff = tr.flax_params(_load(model, ours_ff))
  model_fr = tr.flax_params(_load(model, ours_fr))
  top = max(float(jnp.max(v)) for v in jax.tree.leaves(f_forget))
  assert _max_diff(model_ff, f_forget) <= 1e-5 * top
  top = max(float(jnp.max(v)) for v in jax.tree.leaves(f_remain))
  assert _max_diff(model_fr, f_remain) <= 1e-5 * top

  tr.load_flax_params(model, params)
  info = tr.forget(model, torch.tensor(np.asarray(codes)), forget, 1e-2, 1.0,
                   keep_candidates=True)
  same_sign = _load(model, info["plus" if report.details.sign > 0 else "minus"])
  moved = _max_diff(new, params)
  assert moved > 1e-3  # Something moved, so the comparison below can fail.
  assert _max_diff(tr.flax_params(same_sign), new) <= 1e-5 * max(moved, 1.0)
  alphas = jax.tree.leaves(report.details.alpha)
  assert sorted(alphas) == pytest.approx(sorted(info["alpha"].values()), rel=1e-5)


def _load(model, tensors: dict):
  """``model`` with its parameters replaced by ``tensors`` (name -> tensor), in place."""
  model.load_state_dict({**model.state_dict(), **tensors})
  return model


def test_kept_candidate_is_the_better_one_and_a_tie_keeps_minus():
  _, params, codes, model = _tiny_mlp()
  codes_t = torch.tensor(np.asarray(codes))
  info = tr.forget(model, codes_t, [2], 1e-2, 1.0, keep_candidates=True)
  plus, minus = info["criterion"]
  assert info["sign"] == (1 if plus > minus else -1)
  kept = info["plus" if info["sign"] > 0 else "minus"]
  assert all(torch.equal(dict(model.named_parameters())[n].detach(), v)
             for n, v in kept.items())
  tr.load_flax_params(model, params)
  info = tr.forget(model, codes_t, [2], 1e-30, 1e-30)  # Nothing changes: a tie.
  assert info["criterion"][0] == info["criterion"][1] and info["sign"] == -1


def test_trained_by_algorithm_1_then_forgotten_alike():
  """Algorithm 1 in torch learns the codes; both implementations then forget alike."""
  generator = torch.Generator().manual_seed(0)
  images = torch.randint(0, 256, (512, *SHAPE), dtype=torch.uint8, generator=generator)
  labels = torch.randint(0, CLASSES, (512,), generator=generator)
  codes = tr.generate_codes(CLASSES, SHAPE, generator)
  model = tr.mlp(int(np.prod(SHAPE)), (32,), CLASSES)
  optimizer = tr.make_optimizer(model, learning_rate=0.1)
  for _ in range(15):
    tr.train_epoch(model, optimizer, images, labels, codes, t_mix=0.5, mean=(0.5,),
                   std=(0.5,), batch_size=64, generator=generator)
  assert tr.code_accuracy(model, codes, range(CLASSES)) == 1.0
  params = jax.tree.map(jnp.asarray, tr.flax_params(model))
  apply_fn = mj.inference_apply_fn(mj.create_model("mlp", CLASSES, hidden=(32,)), {})
  new, report = mj.forget(apply_fn, params, jnp.asarray(codes.numpy()), [1], 1e-3, 10.0)
  info = tr.forget(model, codes, [1], 1e-3, 10.0, keep_candidates=True)
  moved = _max_diff(new, params)
  assert moved > 1e-3
  same_sign = _load(model, info["plus" if report.details.sign > 0 else "minus"])
  assert _max_diff(tr.flax_params(same_sign), new) <= 1e-5 * max(moved, 1.0)


def test_mix_codes_replaces_all_or_nothing():
  x, labels = torch.zeros(6, *SHAPE), torch.tensor([0, 1, 2, 0, 1, 2])
  codes = torch.rand(3, *SHAPE)
  mixed, replaced = tr.mix_codes(x, labels, codes, 1.0)
  assert bool(replaced.all()) and torch.equal(mixed, codes[labels])
  mixed, replaced = tr.mix_codes(x, labels, codes, 0.0)
  assert not bool(replaced.any()) and torch.equal(mixed, x)


def test_sgd_steps_match_the_library_optimizer():
  """Two steps (momentum in play) of the paper's SGD on the same batch."""
  _, params, codes, model = _tiny_mlp()
  x = np.asarray(jax.random.uniform(jax.random.key(3), (16, *SHAPE)))
  y = np.arange(16) % CLASSES
  optimizer = tr.make_optimizer(model)
  for _ in range(2):
    tr.train_step(model, optimizer, torch.tensor(x), torch.tensor(y))
  apply_fn = mj.inference_apply_fn(mj.create_model("mlp", CLASSES, hidden=(32,)), {})
  opt = training.make_optimizer(0.01, momentum=0.9, weight_decay=5e-4)
  state = opt.init(params)
  loss = lambda p: jnp.mean(mj.cross_entropy(apply_fn(p, x), y))
  for _ in range(2):
    updates, state = opt.update(jax.grad(loss)(params), state, params)
    params = jax.tree.map(jnp.add, params, updates)
  assert _max_diff(tr.flax_params(model), params) <= 1e-6


def test_resnet_fisher_matches_on_the_same_weights():
  """A narrow ResNet-18 (BatchNorm statistics not at their initial values)."""
  model = mj.create_model("resnet18_cifar", CLASSES, width=2)
  codes = mj.generate_codes(jax.random.key(0), CLASSES, (8, 8, 3))
  variables = model.init(jax.random.key(1), codes)
  keys = iter(jax.random.split(jax.random.key(2), 200))
  stats = jax.tree.map(lambda v: v + 0.3 * jax.random.uniform(next(keys), v.shape),
                       variables["batch_stats"])
  apply_fn = mj.inference_apply_fn(model, stats)
  torch_model = tr.resnet18_cifar(CLASSES, width=2)
  tr.load_flax_params(torch_model, variables["params"], stats)
  with torch.no_grad():
    logits = torch_model.eval()(torch.tensor(np.asarray(codes))).numpy()
  np.testing.assert_allclose(logits, apply_fn(variables["params"], codes), atol=1e-4)
  labels = np.arange(CLASSES)
  ours = mj.fisher_diagonal(apply_fn, variables["params"], codes, labels)
  theirs = tr.fisher_diagonal(torch_model, torch.tensor(np.asarray(codes)), labels)
  theirs = tr.flax_params(_load(torch_model, theirs))
  top = max(float(jnp.max(v)) for v in jax.tree.leaves(ours))
  assert _max_diff(theirs, ours) <= 1e-4 * top


def test_load_forget_save_command(tmp_path):
  _, _, codes, model = _tiny_mlp()
  kwargs = {"in_features": int(np.prod(SHAPE)), "hidden": [32], "num_classes": CLASSES}
  codes_t = torch.tensor(np.asarray(codes))
  tr.save_checkpoint(str(tmp_path / "in.pt"), "mlp", kwargs, model, codes_t)
  assert tr.main(["forget", "--checkpoint", str(tmp_path / "in.pt"), "--classes", "2",
                  "--lambda1", "1e-2", "--lambda2", "1", "--output", str(tmp_path / "out.pt")]) == 0
  saved, _, _ = tr.load_checkpoint(str(tmp_path / "out.pt"))
  tr.forget(model, codes_t, [2], 1e-2, 1.0)
  for (name, a), (_, b) in zip(saved.state_dict().items(), model.state_dict().items()):
    assert torch.equal(a, b), name
