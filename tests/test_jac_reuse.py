"""ESDIRK's Jacobian reuse (`jac_reuse`): fewer Jacobians for the same accuracy, a fresh
one after a Newton failure, gradients independent of it (central differences), vmapped
batches whose members reuse differently, the automatic default, bad values.

The test problem: d = 24 states, stiff linear decay (rates 1 to 1e4) plus a small tanh
network coupling them, so that J changes slowly along the solution and forming it costs
d JVPs (the case reuse is for)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import central_fd

import solvers

D = 24
_K1, _K2 = jax.random.split(jax.random.PRNGKey(0))
W1 = jax.random.normal(_K1, (2 * D, D)) / np.sqrt(D)
W2 = jax.random.normal(_K2, (D, 2 * D)) / np.sqrt(2 * D)
RATES = jnp.logspace(0, 4, D)
Y0 = jnp.ones(D)
T1, RTOL, ATOL = 2.0, 1e-6, 1e-8


def net(t, y, c):
    return -RATES * y + c * (W2 @ jnp.tanh(W1 @ y)) + jnp.sin(t)


@pytest.fixture(scope="module")
def reference():
    return solvers.solve(net, Y0, 0.0, T1, 1.0, method=solvers.Kvaerno5(jac_reuse=0.0), rtol=1e-12, atol=1e-14,
                         max_steps=20000).ys[-1]


def _solve(method, c=1.0, **kw):
    return solvers.solve(net, Y0, 0.0, T1, c, method=method, rtol=RTOL, atol=ATOL, **kw)


def _err(sol, ref):
    return float(jnp.max(jnp.abs(sol.ys[-1] - ref) / (ATOL + RTOL * jnp.abs(ref))))


@pytest.mark.parametrize("method", [solvers.Kvaerno5, solvers.Kvaerno3], ids=["Kvaerno5", "Kvaerno3"])
def test_reuse_forms_fewer_jacobians_at_the_same_accuracy(method, reference):
    fresh, reused = _solve(method(jac_reuse=0.0)), _solve(method(jac_reuse=0.01))
    st_f, st_r = ({k: int(v) for k, v in s.stats.items()} for s in (fresh, reused))
    # (without the stricter Newton iteration on a reused J, STALE_TIGHTEN, the error grew
    # 4-60x on a 200-state heat problem)
    assert st_f["num_jac_evals"] >= st_f["num_accepted"]  # one per step (and init)
    assert st_r["num_jac_evals"] <= max(3, st_f["num_jac_evals"] // 10), (st_f, st_r)
    assert st_r["num_steps"] <= 1.05 * st_f["num_steps"] + 2
    e_f, e_r = _err(fresh, reference), _err(reused, reference)
    assert e_r < 1.0 and e_r < 2 * e_f + 0.05, (e_f, e_r)


def test_default_forms_the_jacobian_at_every_step():
    # Off by default: where J is cheap, reuse only adds Newton iterations (measured 11-36%
    # slower on the Bari problems and a 200-point heat stencil, benchmarks/jac_reuse.py).
    assert solvers.Kvaerno5().jac_reuse == 0.0
    sol = _solve(solvers.Kvaerno5())
    assert int(sol.stats["num_jac_evals"]) == int(sol.stats["num_steps"]) + 1


def test_newton_failure_with_a_reused_jacobian_retries_with_a_fresh_one():
    # A step from a state whose J is wrong (zero: W = I, plain fixed-point iteration on a
    # stiff problem) and not formed here: Newton diverges, the step fails, and the state for
    # its retry asks for a fresh J, which the retry forms and converges with.
    m = solvers.Kvaerno5(jac_reuse=0.01).with_tolerances(RTOL, ATOL)
    f = lambda s, y, a: net(s, y, 1.0)  # noqa: E731
    s0, h = jnp.asarray(0.0), jnp.asarray(1e-2)
    st = m.init(f, s0, Y0, None)
    wrong = st._replace(lin=st.lin._replace(jac=jnp.zeros((D, D))), current=jnp.asarray(False),
                        refresh=jnp.asarray(False))
    bad = m.step(f, s0, Y0, h, None, wrong)
    assert not bool(bad.ok) and int(bad.n_jac) == 0
    assert bool(bad.state_rejected.refresh)
    retry = m.step(f, s0, Y0, h, None, bad.state_rejected)
    good = m.step(f, s0, Y0, h, None, st)
    assert bool(retry.ok) and int(retry.n_jac) == 1
    np.testing.assert_allclose(np.asarray(retry.y1), np.asarray(good.y1), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("adjoint", [solvers.DiscreteAdjoint(), solvers.CheckpointAdjoint(checkpoints=16),
                                     solvers.ForwardMode()], ids=["discrete", "checkpoint", "forward"])
def test_gradient_with_reuse_matches_central_differences(adjoint):
    m = solvers.Kvaerno5(jac_reuse=0.01)

    def loss(c):
        return jnp.sum(solvers.solve(net, Y0, 0.0, T1, c, method=m, rtol=1e-9, atol=1e-11,
                                     adjoint=adjoint).ys[-1] ** 2)

    grad = jax.jacfwd(loss) if isinstance(adjoint, solvers.ForwardMode) else jax.grad(loss)
    g = float(jax.jit(grad)(1.0))
    fd = float(central_fd(jax.jit(loss), jnp.asarray(1.0), eps=1e-5).ravel()[0])
    np.testing.assert_allclose(g, fd, rtol=1e-6)


def test_vmap_members_reuse_independently():
    # c scales the coupling: member 0 is linear (J constant, reused throughout), member 2
    # strongly nonlinear. Each member of the batch equals its own unbatched solve.
    cs = jnp.array([0.0, 1.0, 8.0])
    m = solvers.Kvaerno5(jac_reuse=0.01)
    batched = jax.jit(jax.vmap(lambda c: _solve(m, c).ys[-1]))(cs)
    for i, c in enumerate(cs):
        single = _solve(m, c)
        np.testing.assert_allclose(np.asarray(batched[i]), np.asarray(single.ys[-1]), rtol=1e-8, atol=1e-12)


def test_constant_step_size_reuses_the_factorisation():
    # Fixed steps: h gamma never changes, so with J kept the Newton matrix is factorised
    # once; the solution still matches the one forming J at every step to Newton accuracy.
    kw = dict(adaptive=False, dt0=T1 / 200)
    a, b = _solve(solvers.Kvaerno5(jac_reuse=0.0), **kw), _solve(solvers.Kvaerno5(jac_reuse=0.01), **kw)
    assert int(b.stats["num_jac_evals"]) <= 3 < int(a.stats["num_jac_evals"])
    np.testing.assert_allclose(np.asarray(b.ys[-1]), np.asarray(a.ys[-1]), rtol=1e-7, atol=1e-10)


@pytest.mark.parametrize("bad", [-0.1, 1.0, 2, "0.1", True])
def test_bad_jac_reuse(bad):
    with pytest.raises(ValueError, match="jac_reuse"):
        solvers.Kvaerno5(jac_reuse=bad)
