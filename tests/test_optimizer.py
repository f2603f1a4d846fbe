"""Tests of the optimizer built by `jaxppo.update`: global-norm clip then Adam, and the
learning rate of each update."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxppo
from jaxppo import update

B1, B2 = 0.9, 0.999  # optax.adam defaults, which make_optimizer keeps

# A small config: batch 4 x 8 = 32, 320 steps = 10 updates, x 2 epochs x 2 minibatches = 40
# gradient steps.
SMALL = {"num_envs": 4, "num_steps": 8, "total_timesteps": 320, "update_epochs": 2,
         "num_minibatches": 2}


def _params():
    return {"a": jnp.float32([0.5, -1.0]), "b": jnp.float32([[1.0, 2.0], [3.0, -4.0]])}


def _grads(scale, seed=0, steps=3):
    """``steps`` gradient trees of varying norm (the step-to-step ratio matters under clipping)."""
    rng = np.random.default_rng(seed)
    return [
        {
            "a": (scale * (k + 1) * rng.normal(size=2)).astype(np.float32),
            "b": (scale * (k + 1) * rng.normal(size=(2, 2))).astype(np.float32),
        }
        for k in range(steps)
    ]


def _run_optimizer(config, grads, rates=None):
    """Params after applying make_optimizer(config) to each gradient tree in turn, each step
    of its rate in ``rates`` (default: config.learning_rate)."""
    optimizer = update.make_optimizer(config)
    params = _params()
    state = optimizer.init(params)
    for k, g in enumerate(grads):
        rate = config.learning_rate if rates is None else rates[k]
        direction, state = optimizer.update(jax.tree.map(jnp.asarray, g), state, params)
        params = update.apply_step(params, direction, rate)
    return params


def _reference(grads, learning_rates, max_grad_norm, eps, clip=True, norm_type="l2"):
    """Global-norm clip (L2, or the largest |entry| with norm_type "max") then
    bias-corrected Adam, by hand in float64 numpy."""
    params = {k: np.float64(v) for k, v in _params().items()}
    m = {k: np.zeros_like(v) for k, v in params.items()}
    v = {k: np.zeros_like(p) for k, p in params.items()}
    for t, (g, lr) in enumerate(zip(grads, learning_rates, strict=True), start=1):
        g = {k: np.float64(x) for k, x in g.items()}
        if norm_type == "max":
            norm = max(np.max(np.abs(x)) for x in g.values())
        else:
            norm = np.sqrt(sum(np.sum(x**2) for x in g.values()))
        if clip and norm >= max_grad_norm:
            g = {k: x / norm * max_grad_norm for k, x in g.items()}
        for k in params:
            m[k] = B1 * m[k] + (1 - B1) * g[k]
            v[k] = B2 * v[k] + (1 - B2) * g[k] ** 2
            m_hat = m[k] / (1 - B1**t)
            v_hat = v[k] / (1 - B2**t)
            params[k] = params[k] - lr * m_hat / (np.sqrt(v_hat) + eps)
    return params


def _global_norms(grads):
    return [np.sqrt(sum(np.sum(np.float64(x) ** 2) for x in g.values())) for g in grads]


@pytest.mark.parametrize(("scale", "clipped"), [(3.0, True), (0.02, False)])
def test_make_optimizer_is_global_norm_clip_then_adam(scale, clipped):
    grads = _grads(scale)
    # Norms are about 3 * sqrt(6) * k for scale 3 and 0.02 * sqrt(6) * k for scale 0.02.
    assert all((n > 0.5) == clipped for n in _global_norms(grads))
    config = jaxppo.Config(anneal_lr=False, learning_rate=0.1, max_grad_norm=0.5, adam_eps=1e-5)
    params = _run_optimizer(config, grads)
    expected = _reference(grads, [0.1] * 3, max_grad_norm=0.5, eps=1e-5)
    chex.assert_trees_all_close(params, expected, rtol=1e-5, atol=1e-6)
    # The clip changes the result exactly when some norm exceeds max_grad_norm.
    unclipped = _reference(grads, [0.1] * 3, max_grad_norm=0.5, eps=1e-5, clip=False)
    differs = not all(np.allclose(expected[k], unclipped[k], rtol=1e-5) for k in expected)
    assert differs == clipped


@pytest.mark.parametrize(("scale", "clipped"), [(3.0, True), (0.02, False)])
def test_make_optimizer_with_max_norm_clips_the_largest_entry_then_adam(scale, clipped):
    grads = _grads(scale)
    # Largest |entries| are about 2 * 3 * k for scale 3 and 2 * 0.02 * k for scale 0.02;
    # each clipped step is scaled by 0.5 / its own largest |entry|.
    largest = [max(np.max(np.abs(x)) for x in g.values()) for g in grads]
    assert all((n > 0.5) == clipped for n in largest)
    config = jaxppo.Config(anneal_lr=False, learning_rate=0.1, max_grad_norm=0.5,
                           adam_eps=1e-5, grad_norm_type="max")
    params = _run_optimizer(config, grads)
    expected = _reference(grads, [0.1] * 3, 0.5, 1e-5, norm_type="max")
    chex.assert_trees_all_close(params, expected, rtol=1e-5, atol=1e-6)
    # Not the L2 clip: with the same gradients it ends elsewhere exactly when clipping.
    l2 = _reference(grads, [0.1] * 3, 0.5, 1e-5)
    differs = not all(np.allclose(expected[k], l2[k], rtol=1e-5) for k in expected)
    assert differs == clipped


def test_max_norm_clip_takes_the_largest_entry_over_every_leaf():
    # The largest |entry| of the whole tree is |-4| in the second leaf: scale 2 / 4 = 0.5 for
    # every entry (the first leaf's own largest, 0.3, would leave the tree as it is).
    clip = update.clip_by_global_max_norm(2.0)
    grads = {"w": jnp.float32([[0.3, -0.1]]), "b": jnp.float32([-4.0, 1.0])}
    out, _ = clip.update(grads, clip.init(grads))
    chex.assert_trees_all_close(out, {"w": jnp.float32([[0.15, -0.05]]),
                                      "b": jnp.float32([-2.0, 0.5])}, rtol=1e-6)
    # At or under the bound nothing changes: scale min(1, 2 / 2) = 1.
    within = {"w": jnp.float32([[2.0, -0.1]]), "b": jnp.float32([-1.0, 1.0])}
    chex.assert_trees_all_equal(clip.update(within, clip.init(within))[0], within)


def test_adam_eps_is_taken_from_config():
    # Gradients ~1e-6: the first Adam step is -lr * g / (|g| + eps), about -0.09 lr with
    # eps = 1e-5 and about -0.99 lr with eps = 1e-8.
    grads = _grads(1e-6, seed=1, steps=2)
    for eps in (1e-5, 1e-8):
        config = jaxppo.Config(anneal_lr=False, learning_rate=0.1, adam_eps=eps)
        params = _run_optimizer(config, grads)
        chex.assert_trees_all_close(
            params, _reference(grads, [0.1] * 2, 0.5, eps), rtol=1e-5, atol=1e-6
        )
    default = _run_optimizer(jaxppo.Config(anneal_lr=False, learning_rate=0.1), grads)
    optax_eps = _reference(grads, [0.1] * 2, 0.5, 1e-8)
    assert not np.allclose(default["a"], optax_eps["a"], rtol=1e-3)
    assert jaxppo.Config().adam_eps == 1e-5


def test_learning_rate_anneals_linearly_over_updates():
    config = jaxppo.Config(anneal_lr=True, learning_rate=0.1, **SMALL)
    assert config.num_updates == 10  # 320 // 32
    rates = [update.learning_rate_at(config, k) for k in (0, 1, 5, 9)]
    assert all(rate.dtype == jnp.float32 for rate in rates)  # the metric's dtype
    # 0.1 * (1 - k / 10): the first update's rate is the config's, the last one's 0.1 / 10.
    np.testing.assert_allclose(np.float64(rates), [0.1, 0.09, 0.05, 0.01], rtol=1e-6)


def test_learning_rate_constant_without_annealing():
    config = jaxppo.Config(anneal_lr=False, learning_rate=0.1, **SMALL)
    for k in (0, 5, 9):
        rate = update.learning_rate_at(config, k)
        assert rate.dtype == jnp.float32  # an array like the annealed rate, not a Python float
        np.testing.assert_allclose(rate, 0.1, rtol=1e-6)


def test_optimizer_steps_by_the_rate_it_is_given():
    # Adam's direction does not depend on the rate: three steps at 0.1, 0.075, 0.05 equal the
    # reference Adam with those step sizes.
    config = jaxppo.Config(anneal_lr=True, learning_rate=0.1, **SMALL)
    grads = _grads(3.0)
    expected = _reference(grads, [0.1, 0.075, 0.05], max_grad_norm=0.5, eps=1e-5)
    chex.assert_trees_all_close(_run_optimizer(config, grads, [0.1, 0.075, 0.05]), expected,
                                rtol=1e-5, atol=1e-6)


def test_traced_learning_rate_under_jit_matches_python_float():
    grads = _grads(3.0, steps=2)

    @jax.jit
    def run(config, grads):
        optimizer = update.make_optimizer(config)
        params = _params()
        state = optimizer.init(params)
        for g in grads:
            direction, state = optimizer.update(g, state, params)
            params = update.apply_step(params, direction, config.learning_rate)
        return params

    for anneal_lr in (False, True):
        python_float = jaxppo.Config(anneal_lr=anneal_lr, learning_rate=0.1, **SMALL)
        traced = python_float.replace(learning_rate=jnp.float32(0.1))
        jitted = run(traced, jax.tree.map(jnp.asarray, grads))
        chex.assert_trees_all_close(
            jitted, _run_optimizer(python_float, grads), rtol=1e-6, atol=1e-7
        )
        # The leaf is traced: another rate gives another result from the same program.
        other = run(traced.replace(learning_rate=jnp.float32(0.2)), grads)
        assert not np.allclose(other["a"], jitted["a"])
