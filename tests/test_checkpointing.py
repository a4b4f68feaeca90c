"""Binomial checkpointing (CheckpointAdjoint, and DiscreteAdjoint over its memory budget).

The schedule is checked against brute-force dynamic programming (it must reverse every
step from the right state, in order, with the fewest recomputed steps), and the
gradients against DiscreteAdjoint's full record, which they must equal to rounding
error (1e-12, float64) for every method family, with SaveAt ts, dense output and events.
Memory is measured on the compiled gradient (XLA's memory_analysis, nothing run).
"""

from functools import lru_cache

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import solvers
from solvers import _revolve

A = jnp.asarray
FULL = solvers.DiscreteAdjoint(forward_below=0)


@lru_cache(None)
def fewest_steps(l, s):
    """Brute force: the fewest forward steps that reverse l steps from one checkpoint
    with s free slots (advance m steps and store, or reverse the last step directly)."""
    if l == 1:
        return 0
    if s == 0:
        return l * (l - 1) // 2
    best = (l - 1) + fewest_steps(l - 1, s)
    for m in range(1, l - 1):
        best = min(best, m + fewest_steps(l - m, s - 1) + fewest_steps(m, s))
    return best


@pytest.mark.parametrize("slots", [1, 2, 4])
def test_schedule_reverses_every_step_from_its_state_with_fewest_recomputations(slots):
    def backward(j, y, carry):
        order, states, k = carry
        return order.at[k].set(j), states.at[k].set(y[0]), k + 1

    carry0 = (jnp.full(64, -1), jnp.zeros(64), 0)
    # y_j = j: advancing adds one, so the state handed to step j says where it came from.
    run = jax.jit(lambda n: _revolve.reverse(n, jnp.zeros(1), slots, 8, lambda j, y: y + 1.0, backward, carry0))
    for n in [1, 2, 3, 7, 20, 41, 64]:
        (order, states, k), advanced = run(n)
        assert int(k) == n
        np.testing.assert_array_equal(np.asarray(order[:n]), np.arange(n)[::-1])
        np.testing.assert_array_equal(np.asarray(states[:n]), np.arange(n)[::-1])
        assert int(advanced) == fewest_steps(n, slots - 1), (n, slots)


def test_recomputation_matches_the_closed_form():
    # T(l, s) = t l - C(s + t + 2, t - 1), t least with C(s + 1 + t, t) >= l (revolve).
    ls, ss = np.meshgrid(np.arange(1, 90), np.arange(0, 6))
    got = np.asarray(jax.jit(_revolve.cost)(ls.ravel(), ss.ravel()))
    want = np.array([fewest_steps(int(a), int(b)) for a, b in zip(ls.ravel(), ss.ravel())])
    np.testing.assert_array_equal(got, want)


def lv(t, y, p):
    a, b, c, d = p
    return jnp.stack([a * y[0] - b * y[0] * y[1], -c * y[1] + d * y[0] * y[1]])


def lv_loss(adjoint, method, **kw):
    def loss(theta):
        sol = solvers.solve(lv, theta[:2], 0.0, 4.0, theta[2:], method=method, ts=jnp.linspace(0.5, 4.0, 6),
                            adjoint=adjoint, rtol=1e-8, atol=1e-8, max_steps=256, **kw)
        return jnp.sum(sol.ys * jnp.arange(12.0).reshape(6, 2)) + jnp.sum(sol.ys[-1] ** 2)

    return loss


THETA = A([1.0, 1.0, 1.5, 1.0, 3.0, 1.0])


def _rel(a, b):
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b))) / np.max(np.abs(np.asarray(b))))


@pytest.mark.parametrize("method, budget", [
    (solvers.Tsit5(), True),
    pytest.param(solvers.Rodas5P(), False, marks=pytest.mark.slow),  # 40 s on a loaded 2-core machine
    pytest.param(solvers.Kvaerno5(), True, marks=pytest.mark.slow),
    pytest.param(solvers.Dopri8(), True, marks=pytest.mark.slow),
])
def test_binomial_equals_discrete(method, budget):
    ref = jax.jit(jax.grad(lv_loss(FULL, method)))(THETA)
    adjoints = [solvers.CheckpointAdjoint(checkpoints=3)]
    if budget:  # a record of 256 x 4 x 8 B over a 4000 B budget: DiscreteAdjoint goes binomial
        adjoints.append(solvers.DiscreteAdjoint(forward_below=0, memory_budget=4000))
    for adjoint in adjoints:
        g = jax.jit(jax.grad(lv_loss(adjoint, method)))(THETA)
        err = _rel(g, ref)
        print(f"{type(method).__name__} {adjoint}: rel diff {err:.1e}")
        assert err < 1e-12


def test_binomial_equals_discrete_symplectic():
    # A separable Hamiltonian (pendulum), y = (q, p), fixed steps: Verlet.
    def f(t, y, k):
        q, v = y
        return v, -k * jnp.sin(q)

    def loss(x, adjoint):
        sol = solvers.solve(f, (x[:1], x[1:2]), 0.0, 3.0, x[2], method=solvers.Verlet(), dt0=0.05,
                            adaptive=False, adjoint=adjoint, ts=A([1.0, 3.0]), max_steps=128)
        return sum(jnp.sum(y ** 2) for y in sol.ys)

    x = A([0.3, 0.1, 2.0])
    ref = jax.jit(jax.grad(lambda x: loss(x, FULL)))(x)
    g = jax.jit(jax.grad(lambda x: loss(x, solvers.CheckpointAdjoint(checkpoints=2))))(x)
    print(f"Verlet: rel diff {_rel(g, ref):.1e}")
    assert _rel(g, ref) < 1e-12


@pytest.mark.slow
def test_binomial_equals_discrete_with_events():
    ev = solvers.Event(lambda t, y, p: y[1] - 2.0, direction=1, terminal=False, max_events=4)

    def loss(theta, adjoint):
        sol = solvers.solve(lv, theta[:2], 0.0, 6.0, theta[2:], event=ev, adjoint=adjoint, rtol=1e-8,
                            atol=1e-8, max_steps=256)
        t_ev = jnp.where(jnp.isfinite(sol.t_events[0]), sol.t_events[0], 0.0)
        return jnp.sum(t_ev) + jnp.sum(sol.ys[-1] ** 2)

    ref = jax.jit(jax.grad(lambda t: loss(t, FULL)))(THETA)
    g = jax.jit(jax.grad(lambda t: loss(t, solvers.CheckpointAdjoint(checkpoints=2))))(THETA)
    assert np.all(np.isfinite(np.asarray(ref))) and _rel(g, ref) < 1e-12


def _decay_grad(adjoint, d, max_steps):
    k = jnp.linspace(0.5, 1.5, d)

    def loss(y0):
        sol = solvers.solve(lambda t, y, k: -k * y, y0, 0.0, 1.0, k, method=solvers.Tsit5(), adjoint=adjoint,
                            max_steps=max_steps)
        return jnp.sum(sol.ys[-1] ** 2)

    return jax.jit(jax.grad(loss)), jnp.ones(d)


def test_discrete_adjoint_switches_to_its_memory_budget():
    # d = 2048, max_steps = 2048: the full record is 2048 x 2050 x 8 B = 33.6 MB; with a
    # 4 MB budget DiscreteAdjoint stores at most ~250 states instead, and the compiled
    # gradient's scratch memory, the step's workspace (the RK stages) included, must stay
    # under the budget, while the full record's is above its record size.
    d, max_steps, budget = 2048, 2048, 4 * 2**20
    full, y0 = _decay_grad(FULL, d, max_steps)
    small, _ = _decay_grad(solvers.DiscreteAdjoint(forward_below=0, memory_budget=budget), d, max_steps)
    m_full = full.lower(y0).compile().memory_analysis().temp_size_in_bytes
    m_small = small.lower(y0).compile().memory_analysis().temp_size_in_bytes
    print(f"compiled temp bytes: full record {m_full / 1e6:.1f} MB, 4 MiB budget {m_small / 1e6:.2f} MB")
    assert m_full > max_steps * d * 8
    assert m_small < budget
    np.testing.assert_allclose(np.asarray(small(y0)), np.asarray(full(y0)), rtol=1e-12, atol=0)


@pytest.mark.parametrize("make", [
    lambda: solvers.CheckpointAdjoint(memory_budget=-1),
    lambda: solvers.CheckpointAdjoint(memory_budget=1.5),
    lambda: solvers.DiscreteAdjoint(memory_budget=0),
])
def test_bad_budget(make):
    with pytest.raises(ValueError, match="memory_budget"):
        make()
