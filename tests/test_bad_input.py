"""Bad input: ValueError before tracing; run-time failures: status codes and errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import solvers

A = jnp.asarray


def rhs(t, y, args):
    return -y


Y0 = A([1.0, 2.0])


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(rtol=0.0), "rtol"),
        (dict(rtol=-1e-6), "rtol"),
        (dict(atol=0.0), "atol"),
        (dict(ts=A([0.5, 0.2, 0.9])), "sorted"),
        (dict(ts=A([0.5, 1.5])), r"\[t0, t1\]"),
        (dict(ts=A([-0.1, 0.5])), r"\[t0, t1\]"),
        (dict(adaptive=False), "dt0"),
        (dict(adaptive=True, method=solvers.RK4()), "error estimate"),
        (dict(adaptive=True, method=solvers.Euler()), "error estimate"),
        (dict(max_steps=0), "max_steps"),
    ],
)
def test_bad_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        solvers.solve(rhs, Y0, 0.0, 1.0, **kwargs)


def test_bad_ts_backwards():
    with pytest.raises(ValueError, match="sorted"):
        solvers.solve(rhs, Y0, 1.0, 0.0, ts=A([0.2, 0.5]))


def test_int_y0():
    with pytest.raises(ValueError, match="float"):
        solvers.solve(rhs, jnp.array([1, 2]), 0.0, 1.0)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nonfinite_y0(bad):
    with pytest.raises(ValueError, match="finite"):
        solvers.solve(rhs, A([1.0, bad]), 0.0, 1.0)


def test_f_wrong_structure():
    with pytest.raises(ValueError, match="structure"):
        solvers.solve(lambda t, y, a: (y, y), Y0, 0.0, 1.0)
    with pytest.raises(ValueError, match="structure"):
        solvers.solve(lambda t, y, a: {"a": y["a"]}, {"a": Y0, "b": Y0}, 0.0, 1.0)


def test_f_wrong_shape():
    with pytest.raises(ValueError, match="shape"):
        solvers.solve(lambda t, y, a: y[:1], Y0, 0.0, 1.0)


def test_errors_come_before_tracing():
    calls = []

    def f(t, y, a):
        calls.append(1)
        return -y

    with pytest.raises(ValueError):
        solvers.solve(f, Y0, 0.0, 1.0, rtol=-1.0)
    assert calls == []


# --- run-time failures -------------------------------------------------------------------

def osc(t, y, args):
    return jnp.stack([y[1], -y[0]])


def test_max_steps_status_and_throw():
    sol = solvers.solve(osc, Y0, 0.0, 100.0, rtol=1e-10, atol=1e-10, max_steps=20, throw=False)
    assert int(sol.status) == solvers.Status.MAX_STEPS
    assert int(sol.stats["num_steps"]) == 20
    with pytest.raises(solvers.SolveError, match="max_steps"):
        s = solvers.solve(osc, Y0, 0.0, 100.0, rtol=1e-10, atol=1e-10, max_steps=20, throw=True)
        jax.block_until_ready(s.ys)


def blowup(t, y, args):
    return y ** 2  # y(0) = 1: y = 1 / (1 - t), singular at t = 1


def test_dt_underflow_on_blowup():
    sol = solvers.solve(blowup, A([1.0]), 0.0, 2.0, throw=False, max_steps=100000)
    assert int(sol.status) in (solvers.Status.DT_MIN, solvers.Status.NONFINITE), int(sol.status)
    with pytest.raises(solvers.SolveError, match="underflow|inf or NaN"):
        s = solvers.solve(blowup, A([1.0]), 0.0, 2.0, throw=True, max_steps=100000)
        jax.block_until_ready(s.ys)


def test_nan_from_f():
    f = lambda t, y, a: jnp.where(t > 0.5, jnp.nan, -y)  # noqa: E731
    sol = solvers.solve(f, Y0, 0.0, 1.0, throw=False)
    assert int(sol.status) in (solvers.Status.NONFINITE, solvers.Status.DT_MIN), int(sol.status)
    sol = solvers.solve(f, Y0, 0.0, 1.0, method=solvers.RK4(), adaptive=False, dt0=0.1, throw=False)
    assert int(sol.status) == solvers.Status.NONFINITE
    with pytest.raises(solvers.SolveError, match="inf or NaN"):
        s = solvers.solve(f, Y0, 0.0, 1.0, method=solvers.RK4(), adaptive=False, dt0=0.1, throw=True)
        jax.block_until_ready(s.ys)


def test_throw_under_jit_and_vmap():
    """Under the caller's jit the error arrives as jax's runtime error, carrying ours; under
    vmap one failing element is enough, and a batch that succeeds raises nothing."""
    decay = lambda t, y, a: -a * y  # noqa: E731
    run = jax.jit(jax.vmap(lambda a: solvers.solve(decay, Y0, 0.0, 10.0, a, max_steps=60).ys))
    assert np.all(np.isfinite(run(jnp.array([0.1, 0.2]))))
    with pytest.raises(Exception, match=r"solve failed \(MAX_STEPS\)"):
        jax.block_until_ready(run(jnp.array([0.1, 1e4])))


def test_success_status():
    sol = solvers.solve(osc, Y0, 0.0, 1.0)
    assert int(sol.status) == solvers.Status.SUCCESS
