"""InterpolatingAdjoint: the continuous adjoint against checkpointed dense output.

On the diffusive problem where BacksolveAdjoint's backwards solve of y fails (see
tests/test_adjoints.py::test_backsolve_refuses_a_gradient_it_cannot_trust, the same
heat equation), it must agree with float64 central differences of the computed
solution. Being a continuous adjoint it is the gradient of the exact solution, so it
matches the computed solution's gradient only to O(tolerance): the tolerance below is
20 x rtol (measured: 4e-9 to 1.4e-8 at rtol = atol = 1e-8); an error of the method (a wrong
state read from the dense output, a missed save-point cotangent) shows up at 1e-3 or more.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import central_fd

import solvers

A = jnp.asarray
TOL = 1e-8
N = 32
U0 = jnp.exp(-((jnp.linspace(0, 1, N) - 0.5) ** 2) / 0.01)


def heat(t, u, D):
    up = jnp.concatenate([u[:1], u, u[-1:]])
    return D * (up[2:] - 2 * u + up[:-2]) * (N - 1) ** 2


def heat_loss(adjoint, max_steps=400):
    # 4 checkpoints for the ~40 steps: the binomial schedule recomputes start states.
    def loss(x):
        sol = solvers.solve(heat, x["u0"], 0.0, x["t1"], x["D"], adjoint=adjoint, max_steps=max_steps,
                            rtol=TOL, atol=TOL, ts=A([0.1, 0.3]) * x["t1"] / 0.5)
        return jnp.sum(sol.ys ** 2 * A([1.0, 2.0])[:, None]) + jnp.sum(sol.ys[-1] * jnp.linspace(0, 1, N))

    return loss


X = {"u0": U0, "D": A(0.05), "t1": A(0.5)}


@pytest.fixture(scope="module")
def interp_grad():
    return jax.jit(jax.grad(heat_loss(solvers.InterpolatingAdjoint(checkpoints=4))))(X)


def test_agrees_with_central_differences_on_the_heat_equation(interp_grad):
    f = jax.jit(heat_loss(None))
    for key in ["D", "t1", "u0"]:
        fd = central_fd(lambda v: f({**X, key: v}), X[key], 1e-6).ravel()
        g = np.asarray(interp_grad[key]).ravel()
        err = np.max(np.abs(g - fd)) / np.max(np.abs(fd))
        print(f"InterpolatingAdjoint d/d{key} vs FD: rel err {err:.1e}")
        assert err < 20 * TOL


def test_nonlinear_pytree_args_vs_discrete():
    # Lotka-Volterra with a dict of parameters: the exact (discrete) gradient to O(tol).
    def f(t, y, p):
        return jnp.stack([p["a"] * y[0] - p["b"] * y[0] * y[1], -p["c"][0] * y[1] + p["c"][1] * y[0] * y[1]])

    def loss(x, adjoint):
        sol = solvers.solve(f, x["y0"], 0.0, 5.0, x["p"], adjoint=adjoint, rtol=TOL, atol=TOL, max_steps=512,
                            ts=A([1.0, 2.5, 5.0]))
        return jnp.sum(sol.ys ** 2)

    x = {"y0": A([1.0, 1.0]), "p": {"a": A(1.5), "b": A(1.0), "c": A([3.0, 1.0])}}
    g = jax.jit(jax.grad(lambda x: loss(x, solvers.InterpolatingAdjoint(checkpoints=4))))(x)
    ref = jax.jit(jax.grad(lambda x: loss(x, solvers.DiscreteAdjoint(forward_below=0))))(x)
    gf, rf = jax.flatten_util.ravel_pytree(g)[0], jax.flatten_util.ravel_pytree(ref)[0]
    err = float(jnp.max(jnp.abs(gf - rf)) / jnp.max(jnp.abs(rf)))
    print(f"InterpolatingAdjoint vs DiscreteAdjoint (LV, tol {TOL}): {err:.1e}")
    assert err < 100 * TOL  # LV is not dissipative: the adjoint's error grows a little along the orbit


def test_refuses_what_it_cannot_do():
    with pytest.raises(ValueError, match="checkpoints"):
        solvers.InterpolatingAdjoint(checkpoints=0)
    with pytest.raises(ValueError, match="dense"):
        solvers.solve(heat, U0, 0.0, 0.5, 0.05, saveat=solvers.SaveAt(dense=True),
                      adjoint=solvers.InterpolatingAdjoint())
    with pytest.raises(ValueError, match="events"):
        solvers.solve(heat, U0, 0.0, 0.5, 0.05, event=solvers.Event(lambda t, y, D: y[0] - 0.5),
                      adjoint=solvers.InterpolatingAdjoint())
