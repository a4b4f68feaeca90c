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


# ---- Inputs users bring from diffrax and scipy, and those nobody planned for ----------

@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        (dict(method=solvers.Tsit5), TypeError, r"method=Tsit5\(\)"),
        (dict(adjoint=solvers.DiscreteAdjoint), TypeError, r"adjoint=DiscreteAdjoint\(\)"),
        (dict(method="tsit5"), TypeError, "method="),
        (dict(event=lambda t, y, a: y[0] - 0.5), TypeError, "Event"),
        (dict(event=solvers.Event(lambda t, y, a: y - 0.5)), ValueError, "scalar"),
        (dict(rtol=None), TypeError, "rtol"),
        (dict(atol="1e-6"), TypeError, "atol"),
        (dict(rtol=np.inf), ValueError, "rtol"),
        (dict(rtol=A([1e-6, -1.0])), ValueError, "rtol"),
        (dict(max_steps=2**40), ValueError, "max_steps"),
        (dict(max_steps=10.5), TypeError, "max_steps"),
        (dict(dt0=A([0.1])), ValueError, "dt0"),
        (dict(dt0=np.inf), ValueError, "dt0"),
        (dict(ts=A([0.1, np.nan])), ValueError, "finite"),
        (dict(controller=solvers.PIDController(1e-8, 1e-8), rtol=1e-3), ValueError, "controller"),
        (dict(saveat=solvers.SaveAt(dense=True), adjoint=solvers.BacksolveAdjoint()), ValueError, "Backsolve"),
        (dict(controller=solvers.ConstantStepSize()), ValueError, "dt0"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, error, match):
    with pytest.raises(error, match=match):
        solvers.solve(rhs, Y0, 0.0, 1.0, **kwargs)


@pytest.mark.parametrize("t0,t1,match", [(np.nan, 1.0, "t0"), (0.0, np.inf, "t1"), (0.0, A([1.0]), "t1")])
def test_bad_times(t0, t1, match):
    with pytest.raises(ValueError, match=match):
        solvers.solve(rhs, Y0, t0, t1)


def test_bad_adjoint_settings():
    with pytest.raises(TypeError, match="checkpoints"):
        solvers.CheckpointAdjoint(2.5)
    with pytest.raises(ValueError, match="checkpoints"):
        solvers.CheckpointAdjoint(0)
    with pytest.raises(ValueError, match="dtmin"):
        solvers.PIDController(dtmin=1.0, dtmax=0.1)


def test_complex_f_is_refused():
    with pytest.raises(TypeError, match="complex"):
        solvers.solve(lambda t, y, a: -1j * y, Y0, 0.0, 1.0)


def test_python_float_state_and_numpy_max_steps_work():
    sol = solvers.solve(rhs, 1.0, 0.0, 1.0, max_steps=np.int64(100), rtol=1e-10, atol=1e-10)
    assert sol.ys.shape == (1,) and abs(float(sol.ys[0]) - np.exp(-1)) < 1e-9


@pytest.mark.parametrize("ts,t0,t1", [([0.5, 0.1], 0.0, 1.0), ([0.5, 1.5], 0.0, 1.0), ([0.1, 0.5], 1.0, 0.0),
                                      ([0.1, np.nan], 0.0, 1.0)])
def test_traced_bad_save_times_fail_at_run_time(ts, t0, t1):
    run = jax.jit(lambda ts: solvers.solve(rhs, Y0, t0, t1, ts=ts, throw=False).status)
    assert int(run(A(ts))) == solvers.Status.BAD_TS
    with pytest.raises(Exception, match="BAD_TS"):
        jax.jit(lambda ts: solvers.solve(rhs, Y0, t0, t1, ts=ts).ys)(A(ts)).block_until_ready()
    assert int(run(A(sorted(ts, reverse=t1 < t0)[:1] * 2))) != solvers.Status.BAD_TS or np.isnan(ts).any()


def test_traced_bad_tolerance_fails_at_run_time():
    run = jax.jit(lambda r: solvers.solve(rhs, Y0, 0.0, 1.0, rtol=r, throw=False).status)
    assert int(run(A(-1.0))) == solvers.Status.BAD_TOL
    assert int(run(A(1e-6))) == solvers.Status.SUCCESS


def test_float32_unreachable_tolerance_warns():
    with pytest.warns(UserWarning, match="rtol"):
        solvers.solve(rhs, jnp.ones(1, jnp.float32), 0.0, 1.0, rtol=1e-8)


def test_evaluate_outside_the_interval_and_without_dense_output():
    sol = solvers.solve(rhs, Y0, 0.0, 1.0, saveat=solvers.SaveAt(dense=True))
    with pytest.raises(ValueError, match="solved interval"):
        sol.evaluate(1.5)
    assert np.all(np.isnan(np.asarray(jax.jit(lambda t: sol.evaluate(t))(A(-0.5)))))
    with pytest.raises(ValueError, match="dense=True"):
        solvers.solve(rhs, Y0, 0.0, 1.0).evaluate(0.5)


def test_evaluate_on_a_vmapped_solution():
    sols = jax.vmap(lambda k: solvers.solve(lambda t, y, k: -k * y, Y0, 0.0, 1.0, k, rtol=1e-10, atol=1e-10,
                                            saveat=solvers.SaveAt(dense=True)))(A([1.0, 2.0]))
    np.testing.assert_allclose(np.asarray(sols.evaluate(0.5)), np.exp(-0.5 * np.array([[1.0], [2.0]])) * [1, 2],
                               rtol=1e-8)


def test_wrong_differentiation_mode_names_the_adjoint():
    def fwd(adjoint):
        return lambda k: solvers.solve(lambda t, y, k: -k * y, Y0, 0.0, 1.0, k, adjoint=adjoint).ys[-1, 0]

    with pytest.raises(TypeError, match="ForwardMode"):
        jax.jacfwd(fwd(None))(1.0)
    with pytest.raises(Exception, match="DiscreteAdjoint"):
        jax.grad(fwd(solvers.ForwardMode()))(1.0)


@pytest.mark.parametrize("method", [solvers.Tsit5(), solvers.Dopri5(), solvers.Rodas5P(), solvers.Kvaerno5()],
                         ids=lambda m: type(m).__name__)
def test_empty_state(method):
    sol = solvers.solve(lambda t, y, a: -y, jnp.zeros(0), 0.0, 1.0, method=method, ts=A([0.5, 1.0]))
    assert sol.ys.shape == (2, 0) and int(sol.status) == solvers.Status.SUCCESS


def test_end_time_is_t1_bit_for_bit():
    t1 = 1.8951213247291925
    for ts in (None, A([0.3, t1])):
        sol = solvers.solve(rhs, Y0, 0.0, t1, ts=ts)
        assert float(sol.ts[-1]) == t1


def test_forward_solve_allocates_no_step_record():
    # max_steps = 1e9 would ask for gigabytes of record; a forward solve keeps none.
    sol = solvers.solve(rhs, Y0, 0.0, 1.0, max_steps=10**9)
    assert abs(float(sol.ys[-1, 0]) - np.exp(-1)) < 1e-5
    hlo = jax.jit(lambda y: solvers.solve(rhs, y, 0.0, 1.0, max_steps=10**6).ys).lower(Y0).as_text()
    assert "1000000x" not in hlo  # no (max_steps, ...) buffer
