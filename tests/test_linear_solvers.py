"""Linear solves and Jacobians of the implicit methods (issue 15): tridiagonal and
matrix-free Krylov solves against the dense LU, coloured Jacobians against jacfwd,
gradients through each solve against float64 central differences, and bad input."""

import functools

import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
import pytest
from helpers import central_fd

import solvers
from solvers._jacobian import JacobianPattern
from solvers._linear import decompress_dense, linearise_coloured

N = 40
slow = pytest.mark.slow


def cases(pairs, default):
    """pytest params for (engine, name) pairs, those not in `default` marked slow (each
    configuration compiles anew: 10-70 s each on a loaded 2-core machine)."""
    return [pytest.param(*p, marks=() if p in default else slow) for p in pairs]



def fisher_kpp(t, y, args):
    """1-D Fisher-KPP, Dirichlet 0 ends: stiff (|lambda| ~ 4 D (N+1)^2 = 6.7e3)."""
    D, r = args
    yp = jnp.pad(y, 1)
    return D * (yp[2:] - 2 * y + yp[:-2]) * (N + 1) ** 2 + r * y * (1 - y)


Y0 = jnp.exp(-40 * (jnp.linspace(0, 1, N) - 0.4) ** 2)
ARGS = (jnp.asarray(1.0), jnp.asarray(2.0))
TRI = np.abs(np.subtract.outer(np.arange(N), np.arange(N))) <= 1

GMRES = lx.GMRES(rtol=1e-12, atol=1e-14)
BICG = lx.BiCGStab(rtol=1e-12, atol=1e-14)
SOLVES = {
    "coloured-LU": dict(jac_sparsity=TRI),
    "tridiagonal": dict(linear_solver=lx.Tridiagonal()),
    "GMRES": dict(linear_solver=GMRES),
    "BiCGStab": dict(linear_solver=BICG),
    "GMRES+precond": dict(linear_solver=solvers.MatrixFreeLinearSolve(lx.GMRES(rtol=1e-12, atol=1e-14),
                                                                      solvers.TridiagonalPreconditioner()),
                          jac_sparsity=TRI),
}


def final(method, y0=Y0, args=ARGS, rtol=1e-7, **kw):
    return solvers.solve(fisher_kpp, y0, 0.0, 0.05, args, method=method, rtol=rtol, atol=1e-9, **kw)


ENGINES = [solvers.Kvaerno5, solvers.Rodas5P]


@pytest.mark.parametrize("engine, name", cases([(e, n) for e in ENGINES for n in SOLVES],
                                               [(solvers.Kvaerno5, "tridiagonal"), (solvers.Kvaerno5, "GMRES"),
                                                (solvers.Rodas5P, "GMRES+precond")]))
def test_solves_agree_with_dense(engine, name):
    ref = final(engine())
    sol = final(engine(**SOLVES[name]))
    assert int(sol.status) == 0
    # Same steps: the linear solves agree to their tolerance (1e-12), far below rtol.
    np.testing.assert_allclose(sol.ys[-1], ref.ys[-1], rtol=1e-9, atol=1e-12)
    assert int(sol.stats["num_steps"]) == int(ref.stats["num_steps"])
    # and the dense solution is right: against scipy's Radau at tight tolerance
    np.testing.assert_allclose(ref.ys[-1], radau_reference(), rtol=1e-5, atol=1e-8)


@functools.lru_cache(maxsize=None)
def radau_reference():
    from scipy.integrate import solve_ivp

    D, r = (float(a) for a in ARGS)
    dx2 = (N + 1) ** 2

    def f(t, y):  # fisher_kpp in numpy (a jax f called per step by scipy was 100x slower)
        yp = np.pad(y, 1)
        return D * (yp[2:] - 2 * y + yp[:-2]) * dx2 + r * y * (1 - y)

    main = dx2 * D * (-2.0 * np.ones(N))
    jac = np.diag(main) + np.diag(dx2 * D * np.ones(N - 1), 1) + np.diag(dx2 * D * np.ones(N - 1), -1)
    return solve_ivp(f, (0, 0.05), np.asarray(Y0), method="Radau", rtol=1e-11, atol=1e-13,
                     jac=lambda t, y: jac + np.diag(r * (1 - 2 * y))).y[:, -1]


@slow
@pytest.mark.parametrize("engine", [solvers.ImplicitEuler, solvers.Kvaerno3, solvers.Kvaerno4, solvers.Rosenbrock23])
def test_every_implicit_method_takes_a_linear_solver(engine):
    ref = final(engine(), rtol=1e-4)
    for kw in (dict(linear_solver=lx.Tridiagonal()), dict(linear_solver=GMRES)):
        sol = final(engine(**kw), rtol=1e-4)
        assert int(sol.status) == 0
        np.testing.assert_allclose(sol.ys[-1], ref.ys[-1], rtol=1e-8, atol=1e-11)


def laplacian_2d_pattern(n):
    i = np.arange(n * n)
    x, y = i % n, i // n
    near = (np.abs(np.subtract.outer(x, x)) + np.abs(np.subtract.outer(y, y))) <= 1
    return near


def gray_scott_like(t, u, args):
    n = 6
    g = u.reshape(n, n)
    gp = jnp.pad(g, 1, mode="edge")
    lap = gp[2:, 1:-1] + gp[:-2, 1:-1] + gp[1:-1, 2:] + gp[1:-1, :-2] - 4 * g
    return (args * lap + jnp.sin(g) * g**2).reshape(-1)


def test_coloured_jacobian_equals_dense():
    n = 6
    pat = JacobianPattern(laplacian_2d_pattern(n))
    assert pat.n_colours <= 7  # 5-point stencil: far fewer JVPs than 36
    u = jnp.asarray(np.random.default_rng(0).uniform(0.1, 1.0, n * n))
    a = jnp.asarray(np.random.default_rng(1).uniform(0.5, 2.0, (n, n)))
    J = jax.jit(lambda u, a: decompress_dense(linearise_coloured(gray_scott_like, 0.0, u, a, pat)[2], pat))(u, a)
    J_ref = jax.jit(jax.jacfwd(lambda v: gray_scott_like(0.0, v, a)))(u)
    np.testing.assert_allclose(J, J_ref, rtol=1e-15, atol=1e-15)
    # the tridiagonal colouring needs 3 JVPs whatever d is
    assert JacobianPattern.tridiagonal(1000).n_colours == 3


@pytest.mark.parametrize("engine, name", cases([(e, n) for e in ENGINES
                                                for n in ("dense", "tridiagonal", "GMRES", "GMRES+precond")],
                                               [(solvers.Kvaerno5, "tridiagonal"), (solvers.Rodas5P, "GMRES")]))
def test_gradients_vs_central_differences(engine, name):
    method = engine(**SOLVES.get(name, {}))

    def loss(theta):
        D, r, amp = theta
        y = final(method, y0=amp * Y0, args=(D, r), rtol=1e-10).ys[-1]
        return jnp.sum(y**2 * jnp.linspace(0.5, 1.5, N))

    theta = jnp.asarray([1.0, 2.0, 0.9])
    g = jax.grad(loss)(theta)
    fd = central_fd(loss, theta, eps=1e-5)
    np.testing.assert_allclose(g, fd, rtol=2e-6)


def test_jac_sparsity_wrong_shape():
    with pytest.raises(ValueError, match="jac_sparsity"):
        solvers.Kvaerno5(jac_sparsity=np.ones((3, 4), bool))
    with pytest.raises(ValueError, match="jac_sparsity"):
        final(solvers.Kvaerno5(jac_sparsity=np.eye(N + 1, dtype=bool)))
    with pytest.raises(ValueError, match="jac_sparsity"):
        solvers.Kvaerno5(linear_solver=lx.Tridiagonal(), jac_sparsity=np.ones((N, N), bool))
    with pytest.raises(TypeError, match="linear_solver"):
        solvers.Rodas5P(linear_solver=lx.Cholesky())
    with pytest.raises(ValueError, match="jac_sparsity"):
        solvers.Kvaerno5(linear_solver=GMRES, jac_sparsity=TRI)  # unused: said so
    with pytest.raises(ValueError, match="jac_sparsity"):
        solvers.Kvaerno5(linear_solver=solvers.MatrixFreeLinearSolve(GMRES, solvers.TridiagonalPreconditioner()))


@pytest.mark.parametrize("engine", [solvers.Kvaerno5, pytest.param(solvers.Rodas5P, marks=slow)])
def test_pattern_not_covering_jacobian(engine):
    diag_only = np.eye(N, dtype=bool)  # misses the diffusion couplings
    sol = final(engine(jac_sparsity=diag_only), throw=False)
    assert int(sol.status) == solvers.Status.JAC_SPARSITY
    with pytest.raises(solvers.SolveError, match="jac_sparsity"):
        final(engine(jac_sparsity=diag_only))



@slow
@pytest.mark.parametrize("engine", [solvers.Kvaerno5, solvers.Rodas5P])
def test_tridiagonal_checks_its_assumed_pattern(engine):
    # Tridiagonal without a pattern assumes one, and checks it: a periodic (wrap-around)
    # coupling is outside it.
    def periodic(t, y, args):
        return jnp.roll(y, 1) - 2 * y + jnp.roll(y, -1)

    sol = solvers.solve(periodic, Y0, 0.0, 1.0, method=engine(linear_solver=lx.Tridiagonal()), throw=False)
    assert int(sol.status) == solvers.Status.JAC_SPARSITY


@pytest.mark.parametrize("engine", [pytest.param(solvers.Kvaerno5, marks=slow), solvers.Rodas5P])
def test_nonconverging_krylov_reports_failure(engine):
    tiny = engine(linear_solver=lx.GMRES(rtol=1e-12, atol=1e-14, max_steps=2, restart=2))
    sol = final(tiny, throw=False)
    assert int(sol.status) == solvers.Status.LINEAR_SOLVE_FAIL
    assert solvers.Status.LINEAR_SOLVE_FAIL.failed
    with pytest.raises(solvers.SolveError, match="linear solver did not converge"):
        final(tiny)


@slow  # compiles a 2-D Kvaerno5 + GMRES gradient: about 3 minutes on a loaded 2-core machine
def test_heat_inverse_example_recovers(tmp_path):
    import os
    import sys

    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "examples"))
    import heat_inverse

    out = heat_inverse.main(["--quick", "--no-progress", "--out", str(tmp_path)])
    # the fit moves k towards the truth (independent of the loss it minimises)
    assert out["history"][-1] < 0.6 * out["history"][0]
    assert out["err"] < 0.8 * out["err0"]
    for name in ("truth", "observations", "recovery"):
        assert (tmp_path / f"{name}.png").stat().st_size > 1000
