"""Gradients through `solvers.solve`: every adjoint against central finite differences
in float64, against each other, forward mode, MLP weights, Hessians, vmap(grad).

With fixed steps (adaptive=False) the discrete adjoints give the exact gradient of the
computed solution, which is what finite differences see: they must agree to ~1e-8.
The step size is passed as dt0 = (t1 - t0) / N so that the steps in rescaled time stay
the same when t0 or t1 move.
"""

import equinox as eqx
import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import pytest

import solvers

A = jnp.asarray


def lv(t, y, p):
    a, b, c, d = p
    return jnp.stack([a * y[0] - b * y[0] * y[1], -c * y[1] + d * y[0] * y[1]])


# theta = (y0[2], params[4], t0, t1, ts[5])
THETA0 = np.array([1.0, 1.0, 1.5, 1.0, 3.0, 1.0, 0.0, 2.0, 0.3, 0.7, 1.1, 1.6, 1.9])
W = np.random.default_rng(0).normal(size=(5, 2))
# DiscreteAdjoint computes gradients with respect to at most `forward_below` (8) inputs
# by forward sensitivities, else by its backward pass: test both routes explicitly.
REVERSE = solvers.DiscreteAdjoint(forward_below=0)
FORWARD = solvers.DiscreteAdjoint(forward_below=THETA0.size)
N_FIXED = 40


def unpack(theta):
    return theta[:2], theta[2:6], theta[6], theta[7], theta[8:13]


def make_loss(adjoint, adaptive, tol=1e-10, method=None):
    method = method or (solvers.RK4() if not adaptive else solvers.Tsit5())

    def loss(theta):
        y0, p, t0, t1, ts = unpack(theta)
        kw = dict(dt0=(t1 - t0) / N_FIXED) if not adaptive else {}
        sol = solvers.solve(lv, y0, t0, t1, p, method=method, adaptive=adaptive, ts=ts, adjoint=adjoint,
                            rtol=tol, atol=tol, max_steps=512, **kw)
        return jnp.sum(A(W) * sol.ys) + 0.5 * jnp.sum(sol.ys[-1] ** 2)

    return loss


def central_fd(fun, theta, eps):
    fun = jax.jit(fun)
    g = np.zeros_like(theta)
    for i in range(theta.size):
        e = np.zeros_like(theta)
        e[i] = eps
        g[i] = (float(fun(A(theta + e))) - float(fun(A(theta - e)))) / (2 * eps)
    return g


def rel_err(a, b):
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b))) / np.max(np.abs(np.asarray(b))))


@pytest.fixture(scope="module")
def fd_fixed():
    return central_fd(make_loss(solvers.DiscreteAdjoint(), False), THETA0, 1e-6)


@pytest.fixture(scope="module")
def grad_discrete_fixed():
    return np.asarray(jax.jit(jax.grad(make_loss(REVERSE, False)))(A(THETA0)))


def test_discrete_fixed_vs_fd(grad_discrete_fixed, fd_fixed):
    err = rel_err(grad_discrete_fixed, fd_fixed)
    print(f"Discrete (fixed RK4) vs FD: rel err {err:.2e}")
    assert err < 1e-7
    # every input gets a gradient (y0, params, t0, t1, ts)
    assert np.all(np.abs(fd_fixed) > 1e-4)


def test_checkpoint_fixed_vs_fd_and_discrete(grad_discrete_fixed, fd_fixed):
    g = np.asarray(jax.jit(jax.grad(make_loss(solvers.CheckpointAdjoint(checkpoints=3), False)))(A(THETA0)))
    print(f"Checkpoint(3) vs FD: {rel_err(g, fd_fixed):.2e}, vs Discrete {rel_err(g, grad_discrete_fixed):.2e}")
    assert rel_err(g, fd_fixed) < 1e-7
    assert rel_err(g, grad_discrete_fixed) < 1e-12


@pytest.fixture(scope="module")
def grad_discrete_adaptive():
    return np.asarray(jax.jit(jax.grad(make_loss(REVERSE, True)))(A(THETA0)))


@pytest.mark.parametrize("adaptive", [False, True])
def test_forward_sensitivities_equal_backward_pass(adaptive, grad_discrete_fixed, grad_discrete_adaptive):
    g = np.asarray(jax.jit(jax.grad(make_loss(FORWARD, adaptive)))(A(THETA0)))
    ref = grad_discrete_adaptive if adaptive else grad_discrete_fixed
    err = rel_err(g, ref)
    print(f"DiscreteAdjoint forward sensitivities vs backward pass (adaptive={adaptive}): {err:.2e}")
    assert err < 1e-12


@pytest.mark.parametrize("n", [pytest.param(1, marks=pytest.mark.slow), 7, pytest.param(64, marks=pytest.mark.slow)])
def test_checkpoint_equals_discrete_adaptive(grad_discrete_adaptive, n):
    g = np.asarray(jax.jit(jax.grad(make_loss(solvers.CheckpointAdjoint(checkpoints=n), True)))(A(THETA0)))
    err = rel_err(g, grad_discrete_adaptive)
    print(f"Checkpoint({n}) vs Discrete, adaptive: {err:.2e}")
    assert err < 1e-12


def test_adaptive_discrete_and_backsolve_vs_fd(grad_discrete_adaptive):
    # At tol 1e-10 the adaptive step sequence moves with theta, so FD sees the solution's
    # exact derivative up to ~tol/eps.
    fd = central_fd(make_loss(solvers.DiscreteAdjoint(), True), THETA0, 1e-5)
    gb = np.asarray(jax.jit(jax.grad(make_loss(solvers.BacksolveAdjoint(), True)))(A(THETA0)))
    e_d, e_b, e_bd = rel_err(grad_discrete_adaptive, fd), rel_err(gb, fd), rel_err(gb, grad_discrete_adaptive)
    print(f"adaptive tol 1e-10: Discrete vs FD {e_d:.2e}; Backsolve vs FD {e_b:.2e}; Backsolve vs Discrete {e_bd:.2e}")
    assert e_d < 1e-5
    assert e_b < 1e-5
    assert e_bd < 1e-6


def test_forward_mode_equals_discrete_reverse():
    def ys_of(adjoint):
        def fun(theta):
            y0, p, t0, t1, ts = unpack(theta)
            return solvers.solve(lv, y0, t0, t1, p, ts=ts, adjoint=adjoint, rtol=1e-8, atol=1e-8).ys
        return fun

    jf = jax.jit(jax.jacfwd(ys_of(solvers.ForwardMode())))(A(THETA0))
    jr = jax.jit(jax.jacrev(ys_of(REVERSE)))(A(THETA0))
    assert jf.shape == jr.shape == (5, 2, 13)
    err = rel_err(jf, jr)
    print(f"ForwardMode jacfwd vs Discrete jacrev: {err:.2e}")
    assert err < 1e-10
    # and jvp along one direction
    v = A(np.random.default_rng(1).normal(size=13))
    _, tangent = jax.jvp(ys_of(solvers.ForwardMode()), (A(THETA0),), (v,))
    assert rel_err(tangent, jr @ v) < 1e-10


def test_closed_form_gradients_a3():
    # y' = y cos t: y(t1) = y0 exp(sin t1 - sin t0).
    def y1(y0, t0, t1):
        return solvers.solve(lambda t, y, a: y * jnp.cos(t), y0[None], t0, t1, rtol=1e-11, atol=1e-11).ys[-1, 0]

    y0, t0, t1 = A(1.3), A(0.4), A(3.0)
    g = jax.grad(y1, argnums=(0, 1, 2))(y0, t0, t1)
    exact = np.exp(np.sin(3.0) - np.sin(0.4))
    np.testing.assert_allclose(float(g[0]), exact, rtol=1e-8)
    np.testing.assert_allclose(float(g[1]), -1.3 * exact * np.cos(0.4), rtol=1e-8)
    np.testing.assert_allclose(float(g[2]), 1.3 * exact * np.cos(3.0), rtol=1e-8)


def test_mlp_module_as_args():
    """An equinox module passed whole as args (DESIGN: args may be any PyTree, "equinox
    modules..."). Library bug: solve's input check calls jax.eval_shape(f, t0, y0, args),
    which rejects the MLP's non-array leaf (its activation function) with a ValueError."""
    mlp = eqx.nn.MLP(2, 2, 8, 1, activation=jnp.tanh, key=jax.random.PRNGKey(0))
    sol = solvers.solve(lambda t, y, m: m(y), A([0.5, -0.3]), 0.0, 1.0, mlp)
    assert int(sol.status) == solvers.Status.SUCCESS


def test_mlp_weights_as_args():
    """Gradient w.r.t. an MLP's weights passed as args (array leaves only, the module's
    static part closed over: works around the bug above)."""
    mlp = eqx.nn.MLP(2, 2, 8, 1, activation=jnp.tanh, key=jax.random.PRNGKey(0))
    params, static = eqx.partition(mlp, eqx.is_inexact_array)

    def f(t, y, p):
        return eqx.combine(p, static)(y)

    def loss(p):
        sol = solvers.solve(f, A([0.5, -0.3]), 0.0, 1.0, p, method=solvers.RK4(), adaptive=False, dt0=0.05,
                            ts=A([0.25, 0.5, 1.0]))
        return jnp.sum(sol.ys ** 2)

    g = jax.jit(jax.grad(loss))(params)
    gflat, _ = jax.flatten_util.ravel_pytree(g)
    pflat, unravel = jax.flatten_util.ravel_pytree(params)
    lossf = jax.jit(lambda pf: loss(unravel(pf)))
    rng = np.random.default_rng(2)
    for _ in range(3):
        v = A(rng.normal(size=pflat.shape))
        eps = 1e-6
        fd = (float(lossf(pflat + eps * v)) - float(lossf(pflat - eps * v))) / (2 * eps)
        an = float(gflat @ v)
        assert abs(an - fd) < 1e-7 * max(1.0, abs(fd)), (an, fd)


@pytest.mark.parametrize("adjoint", [FORWARD, REVERSE], ids=["forward-sens", "backward-pass"])
def test_hessian_vs_fd_of_gradient(adjoint):
    def loss(p):
        sol = solvers.solve(lv, A([1.0, 1.0]), 0.0, 2.0, p, method=solvers.RK4(), adaptive=False, dt0=0.05,
                            ts=A([0.5, 1.0, 2.0]), adjoint=adjoint)
        return jnp.sum(A(W[:3]) * sol.ys)

    p0 = A([1.5, 1.0, 3.0, 1.0])
    H = np.asarray(jax.jit(jax.hessian(loss))(p0))
    grad = jax.jit(jax.grad(loss))
    eps = 1e-5
    Hfd = np.stack([(np.asarray(grad(p0 + eps * e)) - np.asarray(grad(p0 - eps * e))) / (2 * eps)
                    for e in np.eye(4)])
    err = rel_err(H, Hfd)
    print(f"Hessian vs FD of gradient: {err:.2e}")
    assert err < 1e-7
    np.testing.assert_allclose(H, H.T, rtol=1e-10, atol=1e-12)


def fisher_kpp(t, u, p):
    D, r = p[0], p[1]
    padded = jnp.concatenate([u[:1], u, u[-1:]])
    return D * (padded[2:] - 2 * u + padded[:-2]) * u.shape[0] ** 2 + r * u * (1 - u)


@pytest.mark.parametrize("adjoint", [solvers.DiscreteAdjoint(), REVERSE], ids=["forward-sens", "backward-pass"])
def test_big_state_gradient_vs_fd(adjoint):
    # 32 states: big enough that the stages are materialised (solvers._rk.materialize).
    assert 32 >= solvers._rk.MATERIALIZE_FROM
    u0 = jnp.exp(-((jnp.linspace(0, 1, 32) - 0.4) ** 2) / 0.02)
    w = A(np.random.default_rng(2).normal(size=(3, 32)))

    def loss(p):  # p = (D, r, scale of u0)
        sol = solvers.solve(fisher_kpp, u0 * p[2], 0.0, 0.5, p[:2], ts=A([0.1, 0.3, 0.5]),
                            method=solvers.Dopri5(), adaptive=False, dt0=0.005, adjoint=adjoint)
        return jnp.sum(w * sol.ys)

    p0 = np.array([0.01, 1.0, 0.9])
    g = np.asarray(jax.jit(jax.grad(loss))(A(p0)))
    fd = central_fd(loss, p0, 1e-6)
    err = rel_err(g, fd)
    print(f"32-state Fisher-KPP gradient vs FD: {err:.2e}")
    assert err < 1e-7


@pytest.mark.slow
def test_vmap_grad():
    def loss(p):
        sol = solvers.solve(lv, A([1.0, 1.0]), 0.0, 2.0, p, rtol=1e-8, atol=1e-8)
        return jnp.sum(sol.ys[-1] ** 2)

    ps = A([[1.5, 1.0, 3.0, 1.0], [1.2, 0.8, 2.5, 1.1], [2.0, 1.2, 3.5, 0.9]])
    gb = jax.jit(jax.vmap(jax.grad(loss)))(ps)
    g1 = jax.jit(jax.grad(loss))
    for i in range(3):
        np.testing.assert_allclose(np.asarray(gb[i]), np.asarray(g1(ps[i])), rtol=1e-9, atol=1e-12)


def test_backsolve_refuses_a_gradient_it_cannot_trust():
    # A diffusive PDE solved backwards amplifies every error: BacksolveAdjoint's
    # reconstruction of y0 fails, and it must say so (it returned gradients off by 1e4
    # with status SUCCESS before). The discrete adjoint is exact there.
    n = 32
    u0 = jnp.exp(-((jnp.linspace(0, 1, n) - 0.5) ** 2) / 0.01)

    def heat(t, u, D):
        up = jnp.concatenate([u[:1], u, u[-1:]])
        return D * (up[2:] - 2 * u + up[:-2]) * (n - 1) ** 2

    def loss(D, adjoint, throw=True):
        sol = solvers.solve(heat, u0, 0.0, 0.5, D, adjoint=adjoint, throw=throw, max_steps=100_000)
        return jnp.sum(sol.ys[-1] ** 2)

    g = float(jax.grad(loss)(0.05, solvers.DiscreteAdjoint(forward_below=0)))
    fd = (float(loss(0.05 + 1e-6, None)) - float(loss(0.05 - 1e-6, None))) / 2e-6
    assert abs(g - fd) < 1e-6 * abs(fd)
    assert np.isnan(float(jax.grad(lambda D: loss(D, solvers.BacksolveAdjoint(), throw=False))(0.05)))
    with pytest.raises(Exception, match="did not return to y0"):
        jax.block_until_ready(jax.grad(lambda D: loss(D, solvers.BacksolveAdjoint()))(0.05))
