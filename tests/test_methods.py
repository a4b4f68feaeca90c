"""The methods added with the public engines: Ralston (explicit), Rosenbrock23 (ode23s),
ImplicitEuler, Kvaerno3 and Kvaerno4 (ESDIRK). Each gets an order fit, a check against an
independent implementation of the same method (diffrax, or ode23s written out in numpy),
DETEST A3 against its closed form, the Bari ROBER / VDPOL reference values (stiff
methods), and gradients against central differences. Also: the tableau checks (bad
tableaus raise ValueError) and Dopri8's dense output at a step's end.
"""

import diffrax as dfx
import jax
import jax.numpy as jnp
import numpy as np
import optimistix as optx
import pytest
from helpers import central_fd

import solvers
from solvers._esdirk import KVAERNO5_TABLEAU
from solvers._rosenbrock import ROSENBROCK23_TABLEAU

A = jnp.asarray
TIGHT = dict(newton_rtol=1e-13, newton_atol=1e-15)  # Newton far below the truncation error


def a3(t, y, args):
    """DETEST A3: y' = y cos t, y(0) = 1, y = exp(sin t)."""
    return y * jnp.cos(t)


def vdp(t, y, mu):
    return jnp.stack([y[1], mu * ((1 - y[0] ** 2) * y[1] - y[0])])


def vdpol(t, y, eps):
    return jnp.stack([y[1], ((1 - y[0] ** 2) * y[1] - y[0]) / eps])


def rober(t, y, k):
    return jnp.stack([
        -k[0] * y[0] + k[2] * y[1] * y[2],
        k[0] * y[0] - k[2] * y[1] * y[2] - k[1] * y[1] ** 2,
        k[1] * y[1] ** 2,
    ])


ROBER_K = A([0.04, 3e7, 1e4])
ROBER_REF = np.array([0.2083340149701255e-7, 0.8333360770334713e-13, 0.9999999791665050])
VDPOL_REF = np.array([0.1706167732170483e1, -0.8928097010247975e0])

# (method, order, numbers of fixed steps over [0, 2] for the order fit)
NEW = [
    (solvers.Ralston(), 2, [16, 32, 64, 128]),
    (solvers.Rosenbrock23(), 2, [16, 32, 64, 128]),
    (solvers.ImplicitEuler(**TIGHT), 1, [32, 64, 128, 256]),
    (solvers.Kvaerno3(**TIGHT), 3, [8, 16, 32, 64]),
    (solvers.Kvaerno4(**TIGHT), 4, [8, 16, 32, 64]),
]


def _q(method):
    """Global error ~ tol^q under error-per-step control: the estimate sets
    h ~ tol^(1 / (error_order + 1)), and the propagated solution is of order `order`."""
    return method.order / (method.error_order + 1)

IDS = [type(m[0]).__name__ for m in NEW]
STIFF, STIFF_IDS = NEW[1:], IDS[1:]  # all but Ralston


def _fixed(method, f, y0, t1, args, h):
    return solvers.solve(f, y0, A(0.0), A(t1), args, method=method, adaptive=False, dt0=h,
                         max_steps=1000).ys[-1]


@pytest.mark.parametrize("method, order, Ns", NEW, ids=IDS)
def test_order_fit(method, order, Ns):
    hs = 2.0 / np.asarray(Ns, float)
    run = jax.jit(jax.vmap(lambda h: _fixed(method, a3, A([1.0]), 2.0, None, h)[0]))
    err = np.abs(np.asarray(run(A(hs))) - np.exp(np.sin(2.0)))
    assert np.all(err > 1e-13), err
    slope = np.polyfit(np.log(hs), np.log(err), 1)[0]
    assert abs(slope - order) < 0.2, (slope, err)


def _diffrax_twin(method):
    newton = optx.Newton(rtol=1e-12, atol=1e-14)
    return {
        "Ralston": lambda: dfx.Ralston(),
        "ImplicitEuler": lambda: dfx.ImplicitEuler(root_finder=newton),
        "Kvaerno3": lambda: dfx.Kvaerno3(root_finder=newton),
        "Kvaerno4": lambda: dfx.Kvaerno4(root_finder=newton),
        "Kvaerno5": lambda: dfx.Kvaerno5(root_finder=newton),
    }[type(method).__name__]()


@pytest.mark.parametrize("method", [
    solvers.Ralston(), solvers.ImplicitEuler(**TIGHT), solvers.Kvaerno3(**TIGHT), solvers.Kvaerno4(**TIGHT),
    pytest.param(solvers.Kvaerno5(**TIGHT), marks=pytest.mark.slow),  # its own tests are in test_stiff.py
], ids=["Ralston", "ImplicitEuler", "Kvaerno3", "Kvaerno4", "Kvaerno5"])
def test_same_as_diffrax(method):
    """20 fixed steps of Van der Pol (mu = 1): the same method in diffrax (Newton to 1e-12)
    gives the same numbers, up to Newton's tolerance: the tableaus agree."""
    y0, h = A([2.0, 0.0]), 0.05
    ours = _fixed(method, vdp, y0, 1.0, 1.0, h)
    theirs = dfx.diffeqsolve(dfx.ODETerm(vdp), _diffrax_twin(method), 0.0, 1.0, h, y0, 1.0,
                             stepsize_controller=dfx.ConstantStepSize()).ys[-1]
    np.testing.assert_allclose(ours, theirs, rtol=1e-11)


def _ode23s_numpy(f, jac, dfdt, y, t0, t1, n):
    """ode23s (Shampine & Reichelt 1997) as published, in slope form, fixed steps."""
    d = 1 / (2 + np.sqrt(2))
    e32 = 6 + np.sqrt(2)
    h = (t1 - t0) / n
    t = t0
    for _ in range(n):
        W = np.eye(len(y)) - h * d * jac(t, y)
        T = dfdt(t, y)
        F0 = f(t, y)
        k1 = np.linalg.solve(W, F0 + h * d * T)
        F1 = f(t + 0.5 * h, y + 0.5 * h * k1)
        k2 = np.linalg.solve(W, F1 - k1) + k1
        ynew = y + h * k2
        F2 = f(t + h, ynew)
        k3 = np.linalg.solve(W, F2 - e32 * (k2 - F1) - 2 * (k1 - F0) + h * d * T)
        err = h / 6 * (k1 - 2 * k2 + k3)
        last = (y, h, k1, k2)
        y, t = ynew, t + h
    return y, err, last


def test_rosenbrock23_is_ode23s():
    """Rosenbrock23 in the transformed tableau form against ode23s written out in numpy,
    on a non-autonomous problem (so the df/dt terms count): the same steps and the same
    error estimate."""
    def f(t, y, a):
        return jnp.stack([y[1], (1 - y[0] ** 2) * y[1] - y[0] + jnp.sin(3 * t)])

    f_j = jax.jit(f)
    fn = lambda t, y: np.asarray(f_j(A(t), A(y), None))  # noqa: E731
    jac_j, dfdt_j = jax.jit(jax.jacfwd(f, 1)), jax.jit(jax.jacfwd(f, 0))
    jac = lambda t, y: np.asarray(jac_j(t, A(y), None))  # noqa: E731
    dfdt = lambda t, y: np.asarray(dfdt_j(A(t), A(y), None))  # noqa: E731
    want, want_err, (y_prev, h, k1, k2) = _ode23s_numpy(fn, jac, dfdt, np.array([2.0, 0.0]), 0.0, 1.0, 20)
    got = _fixed(solvers.Rosenbrock23(), f, A([2.0, 0.0]), 1.0, None, A(0.05))
    np.testing.assert_allclose(got, want, rtol=1e-13)
    m = solvers.Rosenbrock23()
    r = jax.jit(lambda y: m.step(f, 0.95, y, h, None, ()))(A(y_prev))
    np.testing.assert_allclose(r.y1, want, rtol=1e-13)
    np.testing.assert_allclose(r.y_err, want_err, rtol=1e-9, atol=1e-17)
    # ode23s's interpolant (MATLAB's ntrp23s) from its slopes, inside the step and at its end
    d = 1 / (2 + np.sqrt(2))
    for th in (0.3, 0.5, 1.0):
        ntrp = y_prev + h * (th * (1 - th) / (1 - 2 * d) * k1 + th * (th - 2 * d) / (1 - 2 * d) * k2)
        np.testing.assert_allclose(jax.jit(m.interpolate)(r.dense, h, th), ntrp, rtol=1e-13)


@pytest.mark.parametrize("method, order, Ns", NEW, ids=IDS)
def test_a3_adaptive(method, order, Ns):
    """DETEST A3 on [0, 20] against exp(sin t), at two tolerances. With error-per-step
    control the global error scales as tol^q (see `_q`)."""
    q, method = _q(method), type(method)()  # default Newton settings, tied to rtol/atol
    tols = [1e-3, 1e-5] if method.error_order <= 1 else [1e-4, 1e-7]
    errs = []
    for tol in tols:
        sol = solvers.solve(a3, A([1.0]), 0.0, 20.0, method=method, rtol=tol, atol=tol, max_steps=50000)
        errs.append(abs(float(sol.ys[-1, 0]) - np.exp(np.sin(20.0))))
        assert errs[-1] < 50 * tol**q, (tol, errs)
    # tolerance proportionality: the observed exponent near q
    exponent = np.log(errs[0] / errs[1]) / np.log(tols[0] / tols[1])
    assert abs(exponent - q) < 0.3, (exponent, errs)


def _stiff_tol(method):
    # A sensible tolerance for the method's order: loose for the low-order ones.
    return {1: 1e-4, 2: 1e-4, 3: 1e-6, 4: 1e-6}[method.order]


@pytest.mark.parametrize("method, order, Ns", STIFF, ids=STIFF_IDS)
def test_rober(method, order, Ns):
    tol, method = _stiff_tol(method), type(method)()
    sol = solvers.solve(rober, A([1.0, 0.0, 0.0]), 0.0, 1e11, ROBER_K, method=method, rtol=tol,
                        atol=1e-11 * tol, max_steps=20000)
    err = np.max(np.abs(np.asarray(sol.ys[-1]) - ROBER_REF) / ROBER_REF)
    assert err < 5 * tol ** _q(method), err


@pytest.mark.parametrize("method, order, Ns", STIFF, ids=STIFF_IDS)
def test_vdpol(method, order, Ns):
    tol, method = _stiff_tol(method), type(method)()
    sol = solvers.solve(vdpol, A([2.0, 0.0]), 0.0, 2.0, 1e-6, method=method, rtol=tol, atol=tol,
                        max_steps=20000)
    err = np.max(np.abs(np.asarray(sol.ys[-1]) - VDPOL_REF) / np.abs(VDPOL_REF))
    assert err < 5 * tol ** _q(method), err
    assert sol.stats["num_steps"] < 10000


def _loss(method, adaptive, tol=None):
    """sum of y(1) weighted, for Van der Pol with mu = 5, as a function of (y0, mu)."""
    def loss(params):
        y0, mu = params
        kw = dict(rtol=tol, atol=tol) if adaptive else dict(adaptive=False, dt0=A(0.02))
        sol = solvers.solve(vdp, y0, 0.0, 1.0, mu, method=method, max_steps=20000, **kw)
        return jnp.dot(sol.ys[-1], A([1.0, 0.3]))
    return loss


@pytest.mark.parametrize("method, order, Ns", NEW, ids=IDS)
def test_gradient_fixed_steps(method, order, Ns):
    """jax.grad through solve (discrete adjoint, fixed steps) w.r.t. y0 and an argument,
    against central differences: the same discrete solution, so to 1e-7."""
    loss = _loss(method, adaptive=False)
    params = (A([2.0, 0.0]), A(5.0))
    g = jax.grad(loss)(params)
    fd = central_fd(jax.jit(loss), params, eps=1e-5)
    np.testing.assert_allclose(np.r_[g[0], g[1]], fd, rtol=1e-6, atol=1e-9)


# Adaptive gradients of Ralston and Kvaerno3 run with -m slow (the fixed-step test covers
# their step VJPs by default).
ADAPTIVE = [pytest.param(*m, marks=pytest.mark.slow) if i in ("Ralston", "Kvaerno3") else m
            for m, i in zip(NEW, IDS)]


@pytest.mark.parametrize("method, order, Ns", ADAPTIVE, ids=IDS)
def test_gradient_adaptive(method, order, Ns):
    """The same with adaptive steps. Step sizes are constants of the gradient, while
    central differences see them move: the two agree to about the solution's accuracy,
    10 tol^q relative (see `_q`)."""
    tol = 1e-7 if method.order >= 3 else 1e-6
    loss = _loss(type(method)(), adaptive=True, tol=tol)
    params = (A([2.0, 0.0]), A(5.0))
    g = np.r_[jax.grad(loss)(params)]
    fd = central_fd(jax.jit(loss), params, eps=1e-4)
    assert np.max(np.abs(g - fd)) < 10 * tol ** _q(method) * np.max(np.abs(fd)), (g, fd)


# --- tableau checks ---------------------------------------------------------------------


def _esdirk_fields(tab, **change):
    fields = dict(name="T", gamma=tab.gamma, a=tab.a, c=tab.c, e=tab.e, order=tab.order,
                  error_order=tab.error_order, hermite=tab.hermite)
    fields.update(change)
    return fields


def test_esdirk_tableau_checks():
    tab = KVAERNO5_TABLEAU
    assert solvers.ESDIRK(solvers.ESDIRKTableau(**_esdirk_fields(tab))).order == 5
    a = [list(r) for r in tab.a]
    a[4][2] += 1e-3  # a typo in one coefficient: the row sum no longer gives c
    bad = [
        (dict(a=tuple(map(tuple, a))), "c_i = sum_j a_ij"),
        (dict(gamma=0.27), "c_i = sum_j a_ij"),
        (dict(gamma=-0.1), "gamma must be a positive"),
        (dict(order=6), "order condition"),
        (dict(e=tab.e[:-1]), "e must have 7 entries"),
        (dict(hermite=3), "hermite must be"),
        (dict(error_order=6), "error_order"),
        (dict(a=tab.a[:-1]), "strictly lower triangular"),
    ]
    for change, msg in bad:
        with pytest.raises(ValueError, match=msg):
            solvers.ESDIRKTableau(**_esdirk_fields(tab, **change))
    with pytest.raises(TypeError, match="ESDIRKTableau"):
        solvers.ESDIRK(solvers.Tsit5().tableau)
    with pytest.raises(ValueError, match="max_newton_iters"):
        solvers.Kvaerno3(max_newton_iters=0)
    with pytest.raises(ValueError, match="newton_rtol"):
        solvers.Kvaerno4(newton_rtol=float("nan"))


def test_rosenbrock_tableau_checks():
    tab = ROSENBROCK23_TABLEAU
    fields = dict(name="T", gamma=tab.gamma, a=tab.a, C=tab.C, b=tab.b, e=tab.e, c=tab.c, d=tab.d, H=tab.H,
                  order=2, error_order=2)
    assert solvers.Rosenbrock(solvers.RosenbrockTableau(**fields)).order == 2
    C = [list(r) for r in tab.C]
    C[2][1] *= 1.01
    for change, msg in [(dict(C=tuple(map(tuple, C))), "not of error_order 2"), (dict(order=3), "not of order 3"),
                        (dict(d=tab.d[:2]), "d must have 3 entries"), (dict(gamma=0.0), "gamma"),
                        (dict(error_order=3), "error_order")]:
        with pytest.raises(ValueError, match=msg):
            solvers.RosenbrockTableau(**{**fields, **change})
    with pytest.raises(TypeError, match="RosenbrockTableau"):
        solvers.Rosenbrock(KVAERNO5_TABLEAU)


def test_l_stable():
    """R(z) -> 0 as z -> -inf for every stiff method; |R| <= 1 on the negative axis."""
    tabs = [m.tableau for m in (solvers.Rosenbrock23(), solvers.Rodas5P(), solvers.ImplicitEuler(),
                                solvers.Kvaerno3(), solvers.Kvaerno4(), solvers.Kvaerno5())]
    for tab in tabs:
        # R(z) ~ C / z (|C| <= 13 for these); at larger |z| cancellation in float64 takes over
        assert abs(tab.stability(-1e6)) < 2e-5, tab.name
        assert all(abs(tab.stability(z)) <= 1 for z in -np.logspace(-3, 6, 50)), tab.name


# --- Dopri8 dense output at a step's end ------------------------------------------------


def _dopri8_end():
    m = solvers.Dopri8()
    f = lambda t, y, a: jnp.stack([y[1], -jnp.sin(y[0]) * (1 + 0.1 * t)])  # noqa: E731
    y = A([1.3, -0.4])
    r = m.step(f, 0.1, y, 0.37, None, m.init(f, 0.1, y, None))
    return np.asarray(m.interpolate(r.dense, 0.37, 1.0)), np.asarray(r.y1)


def test_dopri8_dense_weights_sum_to_b():
    """The dense output's weights at theta = 1 are b, to the rounding of the sum of their
    large coefficients (|D_ik| up to 527): the residual was 2.5e-14 before the fix."""
    tab = solvers.Dopri8().tableau
    b = np.pad(tab.b, (0, tab.stages - len(tab.b)))
    assert np.max(np.abs(tab.dense.sum(1) - b)) <= 64 * np.finfo(float).eps * np.max(np.abs(tab.dense))
    end, y1 = _dopri8_end()
    assert np.max(np.abs(end - y1) / np.abs(y1)) < 1e-14  # 1.2e-14 before, 2.9e-15 after


def test_dopri8_dense_end_is_step():
    # ExplicitRK.interpolate writes b_i(theta) = b_i theta + sum_k D_ik (theta^(k+1) - theta).
    end, y1 = _dopri8_end()
    np.testing.assert_allclose(end, y1, rtol=2 * np.finfo(float).eps, atol=0)


@pytest.mark.parametrize("method", [solvers.Kvaerno3(**TIGHT), solvers.Kvaerno4(**TIGHT)], ids=["Kvaerno3", "Kvaerno4"])
def test_dense_mid_step_as_accurate_as_steps(method):
    """Kvaerno3 (cubic Hermite, order 3) and Kvaerno4 (quintic, order 5 > 4) dense output:
    errors at mid-step points no worse than at the step points (measured ratios 1.02 and
    1.00), 40 fixed steps of Van der Pol (mu = 1) against scipy DOP853 at rtol 1e-13."""
    from scipy.integrate import solve_ivp

    h, n = 0.05, 40
    steps, mids = np.arange(1, n + 1) * h, (np.arange(n) + 0.5) * h
    ts = np.sort(np.r_[steps, mids])
    ref = solve_ivp(lambda t, y: np.asarray(vdp(t, y, 1.0)), (0, 2), [2.0, 0.0], method="DOP853", rtol=1e-13,
                    atol=1e-13, t_eval=ts).y.T
    sol = solvers.solve(vdp, A([2.0, 0.0]), 0.0, 2.0, 1.0, method=method, adaptive=False, dt0=h, ts=A(ts))
    err = np.max(np.abs(np.asarray(sol.ys) - ref), axis=1)
    on_step = np.isin(ts, steps)
    assert err[~on_step].max() < 1.2 * err[on_step].max(), (err[on_step].max(), err[~on_step].max())
