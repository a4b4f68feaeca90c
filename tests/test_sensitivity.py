"""DiscreteAdjoint's forward sensitivities as extra state components (explicit RK methods):
the same gradient as its backward pass and as central finite differences, and the route
taken exactly where it applies (solvers/_sensitivity.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import solvers
from solvers import _sensitivity
from tests.helpers import assert_tree_allclose, central_fd

FORWARD = solvers.DiscreteAdjoint(forward_below=16)  # 9 scalars: forward sensitivities
REVERSE = solvers.DiscreteAdjoint(forward_below=0)


def field(t, y, a):
    # A PyTree state, a time-dependent f, an integer leaf in args.
    x, v = y["x"], y["v"]
    return {"x": -a["k"] * x * jnp.sin(t) + v * a["w"][:2], "v": -jnp.sum(x) * a["w"][a["i"]]}


Y0 = {"x": jnp.array([1.0, 0.5]), "v": jnp.array(0.3)}
ARGS = {"k": jnp.array(0.7), "w": jnp.array([1.0, 0.6, 1.3]), "i": jnp.array(2)}


def loss(method, adjoint, ts=None, f=field, **kw):
    def L(y0, k, t0, t1):
        args = dict(ARGS, k=k)
        sol = solvers.solve(f, y0, t0, t1, args, method=method, ts=ts, adjoint=adjoint, max_steps=20000, **kw)
        return jnp.sum(sol.ys["x"] ** 2) + jnp.sum(jnp.cos(sol.ys["v"]))

    return L


ADAPTIVE = [pytest.param(m, tol, id=type(m).__name__) for m, tol in [
    (solvers.Tsit5(), 1e-9), (solvers.Dopri5(), 1e-9), (solvers.Dopri8(), 1e-9), (solvers.Bosh3(), 1e-8),
    (solvers.Ralston(), 1e-6)]]


@pytest.mark.parametrize("method, tol", ADAPTIVE)
def test_equals_backward_pass_y0_args_t0_t1(method, tol):
    # No ts: save points do not move with t0 and t1, so every input takes the route.
    kw = dict(rtol=tol, atol=tol)
    fwd = jax.grad(loss(method, FORWARD, **kw), argnums=(0, 1, 2, 3))(Y0, ARGS["k"], 0.1, 2.5)
    rev = jax.grad(loss(method, REVERSE, **kw), argnums=(0, 1, 2, 3))(Y0, ARGS["k"], 0.1, 2.5)
    assert_tree_allclose(fwd, rev, rtol=1e-11, atol=1e-13)


@pytest.mark.parametrize("method", [solvers.Tsit5(), solvers.Dopri8()], ids=lambda m: type(m).__name__)
def test_with_save_times_per_component_tolerances_and_fd(method):
    ts = jnp.array([0.4, 1.0, 2.0, 2.5])
    rtol = {"x": jnp.array([1e-10, 1e-8]), "v": jnp.array(1e-9)}  # per component: judged on y alone
    L = loss(method, FORWARD, ts=ts, rtol=rtol, atol=1e-10)
    fwd = jax.grad(L, argnums=(0, 1))(Y0, ARGS["k"], 0.1, 2.5)
    rev = jax.grad(loss(method, REVERSE, ts=ts, rtol=rtol, atol=1e-10), argnums=(0, 1))(Y0, ARGS["k"], 0.1, 2.5)
    assert_tree_allclose(fwd, rev, rtol=1e-11, atol=1e-13)
    fd = central_fd(lambda k: L(Y0, k, 0.1, 2.5), jnp.asarray(ARGS["k"]))
    np.testing.assert_allclose(float(fwd[1]), fd[0], rtol=1e-6)


def test_fixed_steps_and_vmap():
    def L(p, y0):
        sol = solvers.solve(lambda t, y, p: jnp.stack([p[0] * y[1], -p[1] * jnp.sin(y[0])]), y0, 0.0, 3.0, p,
                            method=solvers.RK4(), adaptive=False, dt0=0.01, adjoint=FORWARD)
        return jnp.sum(sol.ys ** 2)

    ps = jnp.array([[1.0, 2.0], [1.5, 0.5], [0.7, 3.0]])
    y0 = jnp.array([1.0, 0.0])
    got = jax.vmap(jax.grad(L), in_axes=(0, None))(ps, y0)
    for p, g in zip(ps, got):
        np.testing.assert_allclose(g, central_fd(lambda p: L(p, y0), p, eps=1e-6), rtol=1e-7)


def test_float32_state():
    f = lambda t, y, p: -p * y  # noqa: E731
    L = lambda adj: lambda p: solvers.solve(f, jnp.ones(2, jnp.float32), 0.0, 1.0, p, rtol=1e-5, atol=1e-5,  # noqa: E731
                                            adjoint=adj).ys[-1].sum()
    p = jnp.array([0.5, 2.0], jnp.float32)
    g = jax.grad(L(FORWARD))(p)
    assert g.dtype == jnp.float32
    np.testing.assert_allclose(g, jax.grad(L(REVERSE))(p), rtol=1e-5)
    np.testing.assert_allclose(g, -np.exp(-np.asarray(p)), rtol=1e-4)  # d/dp e^-p


def _route_taken(monkeypatch, method, **kw):
    calls = []
    real = _sensitivity.forward_jacobian
    monkeypatch.setattr(_sensitivity, "forward_jacobian", lambda *a: calls.append(1) or real(*a))
    f = lambda t, y, a: field(t, y, a)  # noqa: E731  (a new f: traced anew, not a compiled solve reused)
    # The route is chosen while tracing: eval_shape traces the gradient without compiling it.
    jax.eval_shape(jax.grad(loss(method, FORWARD, f=f, **kw), argnums=(0, 1, 2, 3)), Y0, ARGS["k"], 0.1, 2.5)
    return bool(calls)


def test_route_taken_where_it_applies(monkeypatch):
    assert _route_taken(monkeypatch, solvers.Tsit5())
    assert not _route_taken(monkeypatch, solvers.Kvaerno5())  # implicit: Newton would see the tangents
    assert not _route_taken(monkeypatch, solvers.Tsit5(), ts=jnp.array([0.5, 2.5]))  # ts move with t0, t1
    event = solvers.Event(lambda t, y, a: y["v"] + 10.0)
    assert not _route_taken(monkeypatch, solvers.Tsit5(), event=event)
