"""Symplectic methods: convergence order and bounded energy on a Kepler orbit."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import solvers

E = 0.5  # eccentricity
Q0 = jnp.array([1 - E, 0.0])
P0 = jnp.array([0.0, np.sqrt((1 + E) / (1 - E))])
PERIOD = 2 * np.pi


def kepler(t, y, args):
    q, p = y
    return p, -q / jnp.linalg.norm(q) ** 3


def energy(q, p):
    return 0.5 * jnp.sum(p**2, -1) - 1 / jnp.linalg.norm(q, axis=-1)


@pytest.mark.parametrize("method, order", [(solvers.Verlet(), 2), (solvers.Yoshida4(), 4)])
def test_order_on_one_orbit(method, order):
    # After one period the exact orbit is back at its start.
    errs = []
    for n in (400, 800, 1600):
        sol = solvers.solve(kepler, (Q0, P0), 0.0, PERIOD, method=method, adaptive=False,
                            dt0=PERIOD / n, max_steps=2000)
        errs.append(float(jnp.linalg.norm(sol.ys[0][-1] - Q0)))
    slope = np.polyfit(np.log([400, 800, 1600]), np.log(errs), 1)[0]
    assert abs(-slope - order) < 0.15, (errs, slope)


def test_energy_bounded_where_rk4_drifts():
    # 300 orbits at 100 steps per orbit (3 force evaluations a step for Yoshida4, 4 for RK4).
    n_orbits = 300
    ts = jnp.linspace(0, n_orbits * PERIOD, 301)
    errors = {}
    for m, per_orbit in ((solvers.Verlet(), 100), (solvers.Yoshida4(), 100), (solvers.RK4(), 100)):
        kw = dict(ts=ts, adaptive=False, dt0=PERIOD / per_orbit, max_steps=n_orbits * per_orbit + 10)
        ys = jax.jit(lambda q, p, m=m, kw=kw: solvers.solve(kepler, (q, p), 0.0, ts[-1], method=m, **kw).ys)(Q0, P0)
        errors[type(m).__name__] = np.asarray(energy(*ys) - energy(Q0, P0))
    # Verlet: the energy error after 300 orbits is no larger than within the first 30.
    e = np.abs(errors["Verlet"])
    assert e[-30:].max() < 1.2 * e[:31].max(), (e[:31].max(), e[-30:].max())
    # RK4 loses energy steadily, linearly in time: ten times as much after 300 orbits as after 30.
    e = errors["RK4"]
    assert np.all(np.diff(e[1:]) < 0), "RK4 energy should decrease monotonically"
    assert 8 < e[-1] / e[30] < 12, (e[30], e[-1])
    # Yoshida4 at no more cost stays far below RK4 over the whole run.
    assert np.abs(errors["Yoshida4"]).max() < 0.1 * abs(e[-1]), (np.abs(errors["Yoshida4"]).max(), e[-1])


def test_symplectic_needs_pair():
    with pytest.raises(ValueError, match="q, p"):
        solvers.solve(lambda t, y, a: -y, jnp.ones(2), 0.0, 1.0, method=solvers.Verlet(),
                      adaptive=False, dt0=0.1)


def test_symplectic_gradient_matches_finite_differences():
    # d q(T) / d p0 through the fixed-step Verlet solve.
    def final_q(v):
        sol = solvers.solve(kepler, (Q0, jnp.array([0.0, v])), 0.0, 2.0, method=solvers.Verlet(),
                            adaptive=False, dt0=0.01)
        return sol.ys[0][-1, 0]

    v = float(P0[1])
    g = jax.grad(final_q)(v)
    h = 1e-6
    fd = (final_q(v + h) - final_q(v - h)) / (2 * h)
    assert abs(g - fd) < 1e-7 * max(1, abs(fd))
