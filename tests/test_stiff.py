"""Stiff methods Rodas5P and Kvaerno5: order, dense output, reference problems from the
Bari Test Set for IVP Solvers, scipy Radau comparisons, gradients, vmap, float32, failures.

Tolerances used for ROBER: rtol=1e-9, atol=1e-20 (= 1e-11 rtol). y2 of ROBER falls to
8e-14 by t=1e11; a relative accuracy of 1e-5 on it needs an absolute error below 1e-18,
so atol must be far below the size of y2.
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.integrate import solve_ivp
from scipy.linalg import expm

import solvers
from solvers._base import FAILURES, Status
from solvers._problems import hires, orego
from solvers._stiff import KVAERNO5_TABLEAU, RODAS5P_TABLEAU, Kvaerno5, Rodas5P

METHODS = [Rodas5P(), Kvaerno5()]
IDS = ["Rodas5P", "Kvaerno5"]


# --- problems ---------------------------------------------------------------------------


def rober(t, y, k):
    k1, k2, k3 = k[0], k[1], k[2]
    return jnp.stack([
        -k1 * y[0] + k3 * y[1] * y[2],
        k1 * y[0] - k3 * y[1] * y[2] - k2 * y[1] ** 2,
        k2 * y[1] ** 2,
    ])


ROBER_K = jnp.array([0.04, 3e7, 1e4])
ROBER_REF = np.array([0.2083340149701255e-7, 0.8333360770334713e-13, 0.9999999791665050])


def vdpol(t, y, eps):
    return jnp.stack([y[1], ((1 - y[0] ** 2) * y[1] - y[0]) / eps])


VDPOL_REF = np.array([0.1706167732170483e1, -0.8928097010247975e0])


HIRES_Y0 = np.array([1.0, 0, 0, 0, 0, 0, 0, 0.0057])
HIRES_T1 = 321.8122


def _stiff_linear_matrix():
    # Eigenvalues -1, -1e3, -1e6 mixed by a fixed well-conditioned basis.
    Q = np.array([[1.0, 0.3, -0.2], [0.1, 1.0, 0.4], [-0.3, 0.2, 1.0]])
    return Q @ np.diag([-1.0, -1e3, -1e6]) @ np.linalg.inv(Q)


def linear(t, y, A):
    return A @ y


@functools.lru_cache(maxsize=None)
def radau_reference(name, ts=None):
    """scipy Radau at rtol=1e-12 (numpy f; cached across tests)."""
    f = {"orego": orego, "hires": hires}[name]
    y0, t1 = {"orego": ([1.0, 2.0, 3.0], 360.0), "hires": (HIRES_Y0, HIRES_T1)}[name]
    sol = solve_ivp(lambda t, y: f(t, y, None, xp=np), (0.0, t1), y0, method="Radau",
                    rtol=1e-12, atol=1e-14, t_eval=ts)
    return sol.y.T  # (n, d)


def rel_err(y, ref):
    return np.max(np.abs(np.asarray(y) - ref) / np.abs(ref))


def fixed_step(method, f, y0, t0, t1, n, args=None):
    """n equal steps with the method alone (no solve): checks the step in isolation."""
    h = (t1 - t0) / n

    def body(i, y):
        s = t0 + i * h
        return method.step(f, s, y, h, args, method.init(f, s, y, args)).y1

    return jax.lax.fori_loop(0, n, body, y0)


# --- tableaus, order, dense output ------------------------------------------------------


def test_tableaus():
    # L-stability: R(z) -> 0 as z -> -inf (both stiffly accurate).
    assert abs(RODAS5P_TABLEAU.stability(-1e8)) < 1e-6
    assert abs(RODAS5P_TABLEAU.stability(-0.5) - np.exp(-0.5)) < 1e-5
    assert np.isclose(sum(KVAERNO5_TABLEAU.a[-1]) + KVAERNO5_TABLEAU.gamma, 1.0)
    assert Rodas5P().order == 5 and Rodas5P().error_order == 4
    assert Kvaerno5().order == 5 and Kvaerno5().error_order == 4
    hash(Rodas5P()), hash(Kvaerno5())  # static, hashable methods


def _vdp1(t, y, args):
    return jnp.stack([y[1], (1 - y[0] ** 2) * y[1] - y[0]])


@functools.lru_cache(maxsize=None)
def _vdp1_dense():
    fn = lambda t, y: np.array([y[1], (1 - y[0] ** 2) * y[1] - y[0]])  # noqa: E731
    return solve_ivp(fn, (0.0, 2.0), [2.0, 0.0], method="DOP853", rtol=1e-13, atol=1e-13,
                     dense_output=True).sol


@pytest.mark.parametrize("method", METHODS, ids=IDS)
def test_fixed_step_order(method):
    ref = _vdp1_dense()(2.0)
    run = jax.jit(lambda n: fixed_step(method, _vdp1, jnp.array([2.0, 0.0]), 0.0, 2.0, n))
    ns = np.array([10, 20, 40, 80])
    errs = [float(jnp.max(jnp.abs(run(n) - ref))) for n in ns]
    order = -np.polyfit(np.log(ns), np.log(errs), 1)[0]
    assert 4.7 < order < 5.5, (order, errs)


@pytest.mark.parametrize("method, want", [(Rodas5P(), 5), (Kvaerno5(), 5)], ids=IDS)
def test_dense_output_order(method, want):
    """Local error of the interpolant inside one step: O(h^5) for Rodas5P's 4th-order
    continuous extension; Kvaerno5's quintic Hermite reaches 5.6 here, pre-asymptotic
    against a reference good to ~1e-12 (see the next test for its full order)."""
    ref = _vdp1_dense()
    y0 = jnp.asarray(ref(0.3))
    thetas = jnp.linspace(0.0, 1.0, 11)

    @jax.jit
    def dense(h):
        r = method.step(_vdp1, 0.3, y0, h, None, method.init(_vdp1, 0.3, y0, None))
        return jax.vmap(lambda th: method.interpolate(r.dense, h, th))(thetas), r.y1

    hs = np.array([0.2, 0.1, 0.05, 0.025])
    errs = []
    for h in hs:
        ys, y1 = dense(h)
        exact = ref(0.3 + np.asarray(thetas) * h).T
        assert np.allclose(ys[0], y0, atol=1e-14) and np.allclose(ys[-1], y1, atol=1e-14)
        errs.append(np.max(np.abs(np.asarray(ys) - exact)))
    order = np.polyfit(np.log(hs), np.log(errs), 1)[0]
    assert order > want - 0.3, (order, errs)


def test_kvaerno5_dense_order_closed_form():
    """Kvaerno5's dense output inside one step of DETEST A3 (y = exp(sin t), exact): local
    error O(h^6), a 5th order interpolant (the cubic Hermite it replaces: O(h^4))."""
    m = Kvaerno5(newton_rtol=1e-14, newton_atol=1e-16)
    f = lambda t, y, a: y * jnp.cos(t)  # noqa: E731
    thetas = jnp.linspace(0.05, 0.95, 10)
    s0 = 0.3
    y0 = jnp.array([np.exp(np.sin(s0))])

    @jax.jit
    def dense(h):
        r = m.step(f, s0, y0, h, None, m.init(f, s0, y0, None))
        return jax.vmap(lambda th: m.interpolate(r.dense, h, th))(thetas)[:, 0]

    hs = np.array([0.4, 0.2, 0.1, 0.05])
    errs = [np.max(np.abs(np.asarray(dense(h)) - np.exp(np.sin(s0 + np.asarray(thetas) * h)))) for h in hs]
    order = np.polyfit(np.log(hs), np.log(errs), 1)[0]
    assert abs(order - 6) < 0.3, (order, errs)


def _vdp1_step_and_mid_errors(method, h):
    """Max error at the step points and at the mid-step points of a fixed-step solve of
    Van der Pol (mu = 1) on [0, 2], against scipy DOP853 at rtol 1e-13."""
    n = int(round(2 / h))
    steps, mids = np.arange(1, n + 1) * h, (np.arange(n) + 0.5) * h
    ts = np.sort(np.r_[steps, mids])
    sol = solvers.solve(_vdp1, jnp.array([2.0, 0.0]), 0.0, 2.0, method=method, adaptive=False, dt0=h,
                        ts=jnp.asarray(ts), rtol=1e-12, atol=1e-12)
    err = np.max(np.abs(np.asarray(sol.ys) - _vdp1_dense()(ts).T), axis=1)
    on_step = np.isin(ts, steps)
    return err[on_step].max(), err[~on_step].max()


def test_kvaerno5_dense_as_accurate_as_steps():
    """Kvaerno5's quintic Hermite dense output is as accurate mid-step as the steps
    themselves (measured ratio 0.93); the cubic Hermite it replaces was several times
    worse (ratio > 3 here, 5x at rtol 1e-10 adaptive), which this test would catch."""
    at_steps, at_mids = _vdp1_step_and_mid_errors(Kvaerno5(newton_rtol=1e-13), 0.05)
    assert 1e-10 < at_steps < 1e-7 and at_mids < 1.5 * at_steps, (at_steps, at_mids)
    cubic = solvers.ESDIRK(dataclasses.replace(KVAERNO5_TABLEAU, hermite=1), newton_rtol=1e-13)
    at_steps3, at_mids3 = _vdp1_step_and_mid_errors(cubic, 0.05)
    assert at_mids3 > 3 * at_steps3, (at_steps3, at_mids3)
    # adaptive at rtol 1e-10: dense points inside steps vs the step point t1
    ts = jnp.linspace(0.01, 2.0, 200)
    sol = solvers.solve(_vdp1, jnp.array([2.0, 0.0]), 0.0, 2.0, method=Kvaerno5(), rtol=1e-10, atol=1e-10, ts=ts)
    err = np.max(np.abs(np.asarray(sol.ys) - _vdp1_dense()(np.asarray(ts)).T), axis=1)
    assert err.max() < 2 * err[-1], (err.max(), err[-1])


# --- reference problems through solve ---------------------------------------------------


@pytest.mark.gpu
@pytest.mark.parametrize("method", METHODS, ids=IDS)
def test_rober(method):
    sol = solvers.solve(rober, jnp.array([1.0, 0.0, 0.0]), 0.0, 1e11, ROBER_K, method=method,
                        rtol=1e-9, atol=1e-20, max_steps=20000)
    assert rel_err(sol.ys[-1], ROBER_REF) < 1e-5
    assert sol.stats["num_steps"] < 5000  # ~1000-1900 in practice


@pytest.mark.parametrize("method", METHODS, ids=IDS)
def test_vdpol(method):
    sol = solvers.solve(vdpol, jnp.array([2.0, 0.0]), 0.0, 2.0, 1e-6, method=method,
                        rtol=1e-9, atol=1e-9, max_steps=20000)
    assert rel_err(sol.ys[-1], VDPOL_REF) < 1e-5
    assert sol.stats["num_steps"] < 10000  # ~2600 (Kvaerno5) and ~5000 (Rodas5P)


@pytest.mark.parametrize("method", METHODS, ids=IDS)
def test_hires_dense_vs_radau(method):
    """HIRES against scipy Radau (rtol=1e-12), also at save times inside steps."""
    ts = (1.0, 5.0, 10.0, 100.0, HIRES_T1)
    ref = radau_reference("hires", ts)
    sol = solvers.solve(hires, jnp.asarray(HIRES_Y0), 0.0, HIRES_T1, method=method,
                        rtol=1e-10, atol=1e-14, ts=jnp.array(ts), max_steps=5000)
    assert rel_err(sol.ys, ref) < 1e-6


@pytest.mark.parametrize("method", METHODS, ids=IDS)
def test_stiff_linear_exact(method):
    A = _stiff_linear_matrix()
    y0 = np.array([1.0, -2.0, 0.5])
    exact = expm(A * 2.0) @ y0
    sol = solvers.solve(linear, jnp.asarray(y0), 0.0, 2.0, jnp.asarray(A), method=method,
                        rtol=1e-10, atol=1e-12, max_steps=2000)
    assert rel_err(sol.ys[-1], exact) < 1e-7
    assert sol.stats["num_steps"] < 1000  # an explicit method would need ~1e6 steps


@pytest.mark.slow
@pytest.mark.parametrize("method", METHODS, ids=IDS)
def test_orego_vs_radau(method):
    ref = radau_reference("orego")[-1]
    sol = solvers.solve(orego, jnp.array([1.0, 2.0, 3.0]), 0.0, 360.0, method=method,
                        rtol=1e-10, atol=1e-10, max_steps=20000)
    assert rel_err(sol.ys[-1], ref) < 1e-6


# --- gradients --------------------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS, ids=IDS)
def test_step_derivatives_match_fd(method):
    """vjp and jvp of one step (w.r.t. y and args) against central differences, at a
    stiff point of ROBER where Kvaerno5 needs several Newton iterations per stage."""
    y = jnp.array([0.9, 2e-5, 0.1])
    s, h = 0.0, 1e-2

    @jax.jit
    def step(y, k):
        r = method.step(rober, s, y, h, k, method.init(rober, s, y, k))
        return r.y1

    vy, vk = jnp.array([0.3, 1e-6, -0.2]), jnp.array([0.01, 1e6, -2e3])
    eps = 1e-6
    fd = (step(y + eps * vy, ROBER_K + eps * vk) - step(y - eps * vy, ROBER_K - eps * vk)) / (2 * eps)
    jvp = jax.jit(lambda y, k: jax.jvp(step, (y, k), (vy, vk))[1])(y, ROBER_K)
    np.testing.assert_allclose(jvp, fd, rtol=1e-5, atol=1e-12)
    w = jnp.array([1.0, 1e4, -0.5])
    gy, gk = jax.jit(lambda y, k: jax.vjp(step, y, k)[1](w))(y, ROBER_K)
    np.testing.assert_allclose(gy @ vy + gk @ vk, w @ jvp, rtol=1e-10)


@pytest.mark.gpu
@pytest.mark.parametrize("method", METHODS, ids=IDS)
def test_rober_gradient_vs_fd(method):
    """d y(40) / d log(k1, k2, k3) by the discrete adjoint against central differences."""

    def final(logk):
        return solvers.solve(rober, jnp.array([1.0, 0.0, 0.0]), 0.0, 40.0, jnp.exp(logk),
                             method=method, rtol=1e-10, atol=1e-14).ys[-1]

    logk = jnp.log(ROBER_K)
    J = jax.jacrev(final)(logk)
    e = 1e-4
    fd = np.stack([(final(logk + e * v) - final(logk - e * v)) / (2 * e) for v in jnp.eye(3)], 1)
    # Row-wise relative error (y2 is 1e5 times smaller than y1, y3); FD of an adaptive
    # solve is itself only good to ~rtol / e.
    row = np.abs(np.asarray(J) - fd).max(axis=1) / np.abs(fd).max(axis=1)
    assert np.all(row < 1e-4), row


def test_kvaerno5_backsolve_gradient():
    """BacksolveAdjoint integrates an augmented system (linear in the adjoint, nonlinear in
    y) with Kvaerno5: Newton must converge there too. d y1(1) / d mu of Van der Pol at
    fixed steps against central differences (4e-3 off when stages were accepted on a
    contraction rate carried from an earlier stage without a floor; 1.3e-5 now, the
    continuous adjoint's own discretisation error)."""

    def loss(mu):
        return solvers.solve(_vdp_mu, jnp.array([2.0, 0.0]), 0.0, 1.0, mu, method=Kvaerno5(), adaptive=False,
                             dt0=0.01, adjoint=solvers.BacksolveAdjoint(), max_steps=200).ys[-1, 0]

    g = jax.grad(loss)(5.0)
    fd = (loss(5.0 + 1e-5) - loss(5.0 - 1e-5)) / 2e-5
    assert abs(g - fd) < 1e-4 * abs(fd), (g, fd)


def _vdp_mu(t, y, mu):
    return jnp.stack([y[1], mu * ((1 - y[0] ** 2) * y[1] - y[0])])


@pytest.mark.slow
@pytest.mark.parametrize("method", METHODS, ids=IDS)
def test_rober_forward_mode(method):
    def final(logk, adjoint):
        return solvers.solve(rober, jnp.array([1.0, 0.0, 0.0]), 0.0, 40.0, jnp.exp(logk),
                             method=method, rtol=1e-10, atol=1e-14, adjoint=adjoint).ys[-1]

    logk = jnp.log(ROBER_K)
    Jf = jax.jacfwd(lambda x: final(x, solvers.ForwardMode()))(logk)
    Jr = jax.jacrev(lambda x: final(x, None))(logk)
    np.testing.assert_allclose(Jf, Jr, rtol=1e-8, atol=1e-14)


# --- vmap, float32, failures ------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS, ids=IDS)
def test_vmap(method):
    eps = jnp.array([1e-2, 1e-3])
    run = lambda e: solvers.solve(vdpol, jnp.array([2.0, 0.0]), 0.0, 1.0, e,  # noqa: E731
                                  method=method, rtol=1e-8, atol=1e-8)
    batched = jax.vmap(run)(eps)
    for i in range(2):
        one = run(eps[i])
        np.testing.assert_allclose(batched.ys[i, -1], one.ys[-1], rtol=1e-8)
        assert batched.stats["num_steps"][i] == one.stats["num_steps"]
    assert batched.stats["num_steps"][0] != batched.stats["num_steps"][1]


@pytest.mark.gpu
@pytest.mark.parametrize("method", METHODS, ids=IDS)
def test_float32(method):
    """Van der Pol with eps = 1e-3 in float32. Not eps = 1e-6 (VDPOL_REF): its relaxation
    jump at t = 1.614 takes steps of 1.0e-7 in float64, below float32's spacing of time
    there (1.2e-7), so a float32 solve through it ends in DT_MIN or not by rounding luck."""
    ref = solve_ivp(lambda t, y: np.array([y[1], ((1 - y[0] ** 2) * y[1] - y[0]) / 1e-3]),
                    (0.0, 2.0), [2.0, 0.0], method="Radau", rtol=1e-12, atol=1e-12).y[:, -1]
    sol = solvers.solve(vdpol, jnp.array([2.0, 0.0], jnp.float32), 0.0, 2.0, jnp.float32(1e-3),
                        method=method, rtol=1e-5, atol=1e-5, max_steps=5000)
    assert sol.ys.dtype == jnp.float32
    assert rel_err(sol.ys[-1], ref) < 1e-3


@pytest.mark.slow
@pytest.mark.parametrize("method, tol", [(Rodas5P(), 1e-2), (Kvaerno5(), 0.5)], ids=IDS)
def test_float32_rober(method, tol):
    """ROBER to 1e11 in float32. y1 ~ 2e-8 sits below float32's resolution of y3 ~ 1, so
    its accuracy is limited (Rodas5P ~1e-3, Kvaerno5 ~1e-1 relative); y3 is good to
    ~10 ulps. dt0 is given because the automatic first step overflows in float32 here."""
    sol = solvers.solve(rober, jnp.array([1.0, 0.0, 0.0], jnp.float32), 0.0, 1e11,
                        ROBER_K.astype(jnp.float32), method=method, rtol=1e-5, atol=1e-12,
                        dt0=1e-6, max_steps=5000)
    err = np.abs(np.asarray(sol.ys[-1], float) - ROBER_REF) / ROBER_REF
    assert err[2] < 1e-5 and err[0] < tol, err


@pytest.mark.slow
@pytest.mark.parametrize("method", METHODS, ids=IDS)
def test_hessian(method):
    """Second order (forward over reverse through the discrete adjoint) against FD."""

    def g(a):
        return jnp.sum(solvers.solve(vdpol, jnp.array([2.0, 0.0]), 0.0, 0.5, a[0], method=method,
                                     rtol=1e-10, atol=1e-10).ys[-1])

    a = jnp.array([0.1])
    H = jax.hessian(g)(a)
    e = 1e-4
    fd = (jax.grad(g)(a + e) - jax.grad(g)(a - e)) / (2 * e)
    np.testing.assert_allclose(H[0], fd, rtol=1e-5)


def test_newton_failure_reported():
    """A step far too long for the Newton iteration: ok is False, y_err finite and huge."""
    m = Kvaerno5(max_newton_iters=2)
    y = jnp.array([2.0, 0.0])
    step = jax.jit(lambda h: m.step(vdpol, 0.0, y, h, 1e-6, m.init(vdpol, 0.0, y, 1e-6)))
    r = step(0.5)
    assert not bool(r.ok)
    assert np.all(np.isfinite(r.y_err)) and np.all(np.asarray(r.y_err) > 1e100)
    # A successful step on the same problem for contrast.
    assert bool(step(1e-8).ok)


def test_rodas_nonfinite_step_not_ok():
    f = lambda t, y, a: jnp.log(y)  # noqa: E731  (NaN for y < 0)
    r = jax.jit(lambda y: Rodas5P().step(f, 0.0, y, 0.1, None, ()))(jnp.array([-1.0]))
    assert not bool(r.ok) and np.all(np.isfinite(r.y_err))


@pytest.mark.parametrize("method", METHODS, ids=IDS)
def test_blowup_status(method):
    """y' = y^2 blows up at t = 1: the solve must fail cleanly, not hang or return junk."""
    f = lambda t, y, a: y ** 2  # noqa: E731
    sol = solvers.solve(f, jnp.array([1.0]), 0.0, 2.0, method=method, max_steps=500, throw=False)
    assert int(sol.status) in [int(s) for s in FAILURES]
    with pytest.raises(Exception):
        solvers.solve(f, jnp.array([1.0]), 0.0, 2.0, method=method, max_steps=500)


def test_bad_arguments():
    with pytest.raises(ValueError):
        Kvaerno5(newton_rtol=-1.0)
    with pytest.raises(ValueError):
        Kvaerno5(max_newton_iters=0)
    m = Kvaerno5().with_tolerances(1e-8, 1e-10)
    assert m.newton_rtol == pytest.approx(1e-10) and m.newton_atol == pytest.approx(1e-12)
    assert Kvaerno5(newton_rtol=1e-9).with_tolerances(1e-3, 1e-3).newton_rtol == 1e-9


def test_status_codes_exist():
    assert Status.NEWTON_FAIL in FAILURES
