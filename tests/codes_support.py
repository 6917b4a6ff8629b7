"""A tiny MLP fitted to its codes alone, shared by the search and robust-rule tests."""

import jax
import jax.numpy as jnp
import optax

import mnemonic_jax as mj


def mlp_fitted_to_codes(num_classes: int, hidden: int, activation: str = "sigmoid",
                        steps: int = 300):
  """``(apply_fn, params, codes)`` of an MLP trained (Adam 1e-2, full batch) on its
  ``(num_classes, 4, 4, 1)`` codes only, so that every code is classified right."""
  model = mj.create_model("mlp", num_classes, hidden=(hidden,), activation=activation)
  codes = mj.generate_codes(jax.random.key(0), num_classes, (4, 4, 1))
  params = model.init(jax.random.key(1), codes)["params"]
  apply_fn = mj.inference_apply_fn(model, {})
  labels = jnp.arange(num_classes)
  opt = optax.adam(1e-2)

  @jax.jit
  def step(params, state):
    loss = lambda p: jnp.mean(mj.cross_entropy(apply_fn(p, codes), labels))
    updates, state = opt.update(jax.grad(loss)(params), state)
    return optax.apply_updates(params, updates), state

  state = opt.init(params)
  for _ in range(steps):
    params, state = step(params, state)
  assert (jnp.argmax(apply_fn(params, codes), -1) == labels).all()
  return apply_fn, params, codes
