"""Gradients at the edges: dense output, save times on step boundaries and at t0/t1,
parameters f closes over, an equinox Module as f, integer leaves in args, saved steps,
and BacksolveAdjoint with symplectic methods. Every gradient is checked against central
finite differences in float64 (fixed steps: the exact gradient of the computed solution,
so they agree to ~1e-8) or against a closed form."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import central_fd

import solvers

A = jnp.asarray
REVERSE = {
    "discrete-forward-route": solvers.DiscreteAdjoint(),
    "discrete-backward": solvers.DiscreteAdjoint(forward_below=0),
    "checkpoint": solvers.CheckpointAdjoint(checkpoints=3),
}
ALL_EXACT = dict(REVERSE, forward_mode=solvers.ForwardMode())
N = 16  # fixed steps over [t0, t1]


def gradient(fun, adjoint, x):
    """jax.grad, or jax.jacfwd for ForwardMode."""
    if isinstance(adjoint, solvers.ForwardMode):
        return jax.jacfwd(fun)(x)
    return jax.grad(fun)(x)


def decay(t, y, k):
    return -k * y * (1 + 0.5 * jnp.sin(t))


def fixed_solve(theta, adjoint, saveat, method=None):
    """theta = (y0, k, t0, t1): fixed steps dt0 = (t1 - t0) / N, so the step boundaries
    in rescaled time stay put when t0 or t1 move (finite differences see one solution)."""
    y0, k, t0, t1 = theta[0], theta[1], theta[2], theta[3]
    return solvers.solve(decay, A([y0, 2 * y0]), t0, t1, k, method=method or solvers.RK4(), adaptive=False,
                         dt0=(t1 - t0) / N, saveat=saveat, adjoint=adjoint)


THETA = np.array([1.0, 0.7, 0.2, 2.2])


@pytest.mark.parametrize("name", list(ALL_EXACT))
def test_evaluate_gradient_against_central_differences(name):
    adjoint = ALL_EXACT[name]
    # At t0, on a step boundary (t0 + 4 dt), inside a step and at t1, as fractions of
    # [t0, t1] so that they move with t0 and t1.
    frac = np.array([0.0, 4 / N, 0.3568, 1.0])

    def loss(theta):
        sol = fixed_solve(theta, adjoint, solvers.SaveAt(dense=True))
        return jnp.sum(sol.evaluate(theta[2] + A(frac) * (theta[3] - theta[2])) ** 2)

    g = np.asarray(gradient(loss, adjoint, A(THETA)))
    fd = central_fd(lambda th: loss(th), A(THETA), 1e-6)
    np.testing.assert_allclose(g, fd, rtol=1e-7, atol=1e-9)

    # ... and with respect to t itself (off the boundaries: dense output is continuous
    # but only piecewise smooth in t).
    t_in = np.array([0.6, 1.7])
    gt = np.asarray(jax.jacfwd(lambda t: jnp.sum(fixed_solve(A(THETA), adjoint, solvers.SaveAt(dense=True))
                                                 .evaluate(t) ** 2, axis=1))(A(t_in)))
    fdt = central_fd(lambda t: jnp.sum(fixed_solve(A(THETA), adjoint, solvers.SaveAt(dense=True))
                                       .evaluate(t) ** 2, axis=1), A(t_in), 1e-6)
    np.testing.assert_allclose(np.diag(gt), np.diag(fdt), rtol=1e-7)


def test_evaluate_gradient_the_issue_example():
    # The example from the issue: 0.0 before; the same point via ts gives -0.3033.
    def via_evaluate(k):
        return solvers.solve(lambda t, y, k: -k * y, jnp.ones(1), 0.0, 1.0, k, rtol=1e-10, atol=1e-10,
                             saveat=solvers.SaveAt(dense=True)).evaluate(0.5)[0]

    assert abs(float(jax.grad(via_evaluate)(1.0)) + 0.5 * np.exp(-0.5)) < 1e-8


@pytest.mark.parametrize("name", list(ALL_EXACT) + ["backsolve"])
def test_save_time_gradient_on_step_boundaries_and_ends(name):
    adjoint = ALL_EXACT.get(name, solvers.BacksolveAdjoint())

    def loss(ts):
        sol = solvers.solve(lambda t, y, a: -y, jnp.ones(1), 0.0, 1.0, ts=ts, adjoint=adjoint,
                            rtol=1e-10, atol=1e-10)
        return sol.ys.sum()

    ts = A([0.0, 0.3, 1.0])  # t0, inside, t1
    np.testing.assert_allclose(np.asarray(gradient(loss, adjoint, ts)), -np.exp(-np.asarray(ts)), rtol=1e-7)

    def loss_fixed(ts):
        sol = solvers.solve(lambda t, y, a: -y, jnp.ones(1), 0.0, 1.0, ts=ts, method=solvers.RK4(),
                            adaptive=False, dt0=0.25, adjoint=adjoint)
        return sol.ys.sum()

    ts = A([0.25, 0.5, 0.6])  # two step boundaries, one inside
    g = np.asarray(gradient(loss_fixed, adjoint, ts))
    # The dense output's slope at a step's end, computed from the step itself.
    np.testing.assert_allclose(g, -np.exp(-np.asarray(ts)), rtol=2e-4)
    if name != "backsolve":  # one-sided differences of the computed solution bracket it
        left = central_fd(loss_fixed, ts - 1e-4, 1e-5)
        assert np.all(np.abs(left - g) < 2e-4), (left, g)


@pytest.mark.parametrize("name", list(ALL_EXACT) + ["backsolve"])
def test_closed_over_parameters(name):
    adjoint = ALL_EXACT.get(name, solvers.BacksolveAdjoint())

    def loss(k):
        f = lambda t, y, args: -k[0] * y + k[1] * jnp.sin(t)  # noqa: E731  closes over k
        sol = solvers.solve(f, jnp.ones(2), 0.0, 1.5, method=solvers.RK4(), adaptive=False, dt0=1.5 / N,
                            adjoint=adjoint)
        return jnp.sum(sol.ys[-1] ** 2)

    k = A([0.8, 0.3])
    g = np.asarray(gradient(loss, adjoint, k))
    rtol = 1e-4 if name == "backsolve" else 1e-8  # backsolve: the exact solution's gradient
    np.testing.assert_allclose(g, central_fd(loss, k, 1e-6), rtol=rtol)
    assert np.all(g != 0)


class Field(eqx.Module):
    mlp: eqx.nn.MLP

    def __call__(self, t, y, args):
        return self.mlp(y)


@pytest.mark.parametrize("name", list(REVERSE) + ["backsolve"])
def test_module_as_f(name):
    adjoint = REVERSE.get(name, solvers.BacksolveAdjoint())
    model = Field(eqx.nn.MLP(2, 2, 8, 1, activation=jnp.tanh, key=jax.random.PRNGKey(0)))
    params, static = eqx.partition(model, eqx.is_inexact_array)

    def loss(params):
        sol = solvers.solve(eqx.combine(params, static), A([0.5, -0.3]), 0.0, 1.0, method=solvers.RK4(),
                            adaptive=False, dt0=1.0 / N, adjoint=adjoint)
        return jnp.sum(sol.ys[-1] ** 2)

    g = jax.grad(loss)(params)
    g_w = np.asarray(g.mlp.layers[0].weight).ravel()
    w0 = params.mlp.layers[0].weight

    def loss_w(w):
        return loss(eqx.tree_at(lambda p: p.mlp.layers[0].weight, params, w.reshape(w0.shape)))

    rtol = 1e-4 if name == "backsolve" else 1e-7
    np.testing.assert_allclose(g_w, central_fd(loss_w, w0.ravel(), 1e-6), rtol=rtol, atol=1e-10)


@pytest.mark.parametrize("name", list(REVERSE) + ["backsolve"])
def test_integer_leaves_in_args(name):
    adjoint = REVERSE.get(name, solvers.BacksolveAdjoint())

    def loss(k):
        args = {"k": k, "power": jnp.array(2), "index": jnp.array([1, 0])}
        f = lambda t, y, a: -a["k"] * y[a["index"]] ** a["power"]  # noqa: E731
        return solvers.solve(f, A([1.0, 0.5]), 0.0, 1.0, args, rtol=1e-10, atol=1e-10, adjoint=adjoint).ys[-1, 0]

    g = float(jax.grad(loss)(0.9))
    fd = float(central_fd(loss, A(0.9), 1e-6)[0])
    assert abs(g - fd) < 1e-6 * abs(fd)


def test_saved_steps_and_their_gradient():
    def sol_of(k):
        return solvers.solve(decay, A([1.0, 2.0]), 0.0, 1.0, k, method=solvers.RK4(), adaptive=False, dt0=0.125,
                             saveat=solvers.SaveAt(steps=True, t0=True), max_steps=12)

    sol = sol_of(0.7)
    n = int(sol.stats["num_accepted"])
    assert n == 8
    np.testing.assert_allclose(np.asarray(sol.ts[: n + 1]), np.linspace(0, 1, 9), rtol=1e-15)
    assert np.all(np.isinf(np.asarray(sol.ts[n + 1:]))) and np.all(np.isnan(np.asarray(sol.ys[n + 1:])))
    ref = solvers.solve(decay, A([1.0, 2.0]), 0.0, 1.0, 0.7, method=solvers.RK4(), adaptive=False, dt0=0.125,
                        ts=A(np.linspace(0, 1, 9)))
    np.testing.assert_allclose(np.asarray(sol.ys[: n + 1]), np.asarray(ref.ys), rtol=1e-14)
    loss = lambda k: jnp.sum(sol_of(k).ys[: n + 1] ** 2)  # noqa: E731
    assert abs(float(jax.grad(loss)(0.7)) - float(central_fd(loss, A(0.7), 1e-6)[0])) < 1e-8


def harmonic(t, y, args):
    q, p = y
    return p, -args * q


@pytest.mark.parametrize("method", [solvers.Verlet(), solvers.Yoshida4()], ids=["Verlet", "Yoshida4"])
def test_backsolve_with_symplectic_methods_keeps_their_order(method):
    # d q(T) / d q0 = cos(w T) for q'' = -w^2 q. The augmented system is integrated with a
    # method of at least the symplectic method's order (it is not separable).
    def grad_at(dt):
        f = lambda q0: solvers.solve(harmonic, (q0, jnp.zeros(1)), 0.0, 1.0, A(4.0), method=method,  # noqa: E731
                                     adaptive=False, dt0=dt, adjoint=solvers.BacksolveAdjoint()).ys[0][-1, 0]
        return float(jax.grad(f)(jnp.ones(1))[0])

    errs = [abs(grad_at(dt) - np.cos(2.0)) for dt in (0.02, 0.01)]
    slope = np.log2(errs[0] / errs[1])
    assert slope > method.order - 0.3, (errs, slope)
