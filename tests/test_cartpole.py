"""The cart-pole model: equations against autodiff of the Lagrangian, energy conservation,
the work of a constant force, gradients against central differences, bad input."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from physics import cartpole as cp

P = cp.CartPole()
TOL = dict(rtol=1e-11, atol=1e-11)


def _lagrange_accelerations(y, u, p):
    """M qddot = dL/dq - (d2L/dqdot dq) qdot + (u, 0), every term by autodiff of L."""
    q, qdot = y[:2], y[2:]
    dl_dqdot = jax.grad(cp.lagrangian, argnums=1)
    mass = jax.jacfwd(dl_dqdot, argnums=1)(q, qdot, p)
    _, mixed = jax.jvp(lambda q_: dl_dqdot(q_, qdot, p), (q,), (qdot,))
    force = jax.grad(cp.lagrangian, argnums=0)(q, qdot, p) - mixed + jnp.stack([u, 0.0])
    return jnp.linalg.solve(mass, force)


def test_equations_match_lagrangian_autodiff():
    rng = np.random.default_rng(0)
    p = cp.CartPole(cart_mass=1.3, pole_mass=0.4, pole_length=0.8)
    for _ in range(6):
        y = jnp.asarray(rng.normal(0, 2, 4))
        u = float(rng.normal(0, 5))
        np.testing.assert_allclose(cp.accelerations(y, u, p), _lagrange_accelerations(y, u, p),
                                   rtol=1e-12, atol=1e-12)


def test_energy_conserved_without_force():
    y0 = jnp.asarray([0.0, 2.5, 0.3, -1.0])
    ts = jnp.linspace(0.0, 5.0, 51)
    sol = cp.simulate(P, cp.free, y0, 5.0, ts=ts, **TOL)
    e = np.asarray(jax.vmap(lambda y: cp.energy(y, P))(sol.ys))
    assert np.ptp(np.asarray(sol.ys[:, 1])) > 1.0  # it really swings
    np.testing.assert_allclose(e, e[0], atol=1e-9)
    # No horizontal force: the total horizontal momentum dL/dx_dot is conserved too.
    mom = jax.vmap(lambda y: jax.grad(cp.lagrangian, argnums=1)(y[:2], y[2:], P)[0])(sol.ys)
    np.testing.assert_allclose(mom, mom[0], atol=1e-9)


def test_work_of_a_constant_force():
    # E(t) - E(0) = u (x(t) - x(0)) exactly for a constant push u.
    u = 1.7
    sol = cp.simulate(P, lambda t, y: jnp.asarray(u), jnp.asarray([0.0, 0.2, 0.0, 0.0]), 3.0, **TOL)
    y1 = sol.ys[-1]
    gained = float(cp.energy(y1, P) - cp.energy(jnp.asarray([0.0, 0.2, 0.0, 0.0]), P))
    np.testing.assert_allclose(gained, u * float(y1[0]), rtol=1e-9)
    assert float(y1[0]) > 1.0


def test_gradients_match_central_differences():
    ctrl = lambda t, y: -2.0 * y[0] + 0.5 * jnp.sin(3 * t)  # noqa: E731

    def final_x(mass, theta0):
        p = eqx.tree_at(lambda q: q.pole_mass, P, mass)
        return cp.simulate(p, ctrl, jnp.stack([0.0, theta0, 0.0, 0.0]), 2.0, **TOL).ys[-1, 0]

    x0 = (0.1, 0.4)
    grads = jax.grad(final_x, argnums=(0, 1))(*x0)
    f = jax.jit(final_x)
    for i, g in enumerate(grads):
        h = 1e-5
        up, down = list(x0), list(x0)
        up[i] += h
        down[i] -= h
        fd = (float(f(*up)) - float(f(*down))) / (2 * h)
        assert abs(fd) > 1e-3
        np.testing.assert_allclose(float(g), fd, rtol=1e-6)


def test_bad_input():
    with pytest.raises(ValueError, match="pole_mass"):
        cp.CartPole(pole_mass=-0.1)
    with pytest.raises(ValueError, match="y0"):
        cp.simulate(P, cp.free, jnp.zeros(3), 1.0)
