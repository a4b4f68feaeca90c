"""Events: location against closed forms, gradients of event times through every
adjoint, non-terminal crossings, direction filtering, and phases chained by events."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import brentq

import solvers

A = jnp.asarray


def fall(t, y, g):
    return jnp.stack([y[1], -g])


ground = solvers.Event(lambda t, y, g: y[0], direction=-1)


def landing_time(h, g, adjoint=solvers.DiscreteAdjoint()):
    sol = solvers.solve(fall, jnp.stack([h, jnp.zeros_like(h)]), 0.0, 100.0, g, event=ground,
                        adjoint=adjoint, rtol=1e-10, atol=1e-10)
    return sol.t_event


@pytest.mark.gpu
def test_falling_body_time_state_status():
    h, g = 10.0, 9.81
    sol = solvers.solve(fall, A([h, 0.0]), 0.0, 100.0, A(g), event=ground, rtol=1e-10, atol=1e-10)
    exact = np.sqrt(2 * h / g)
    print(f"falling body event time err {abs(float(sol.t_event) - exact):.2e}")
    assert abs(float(sol.t_event) - exact) < 1e-12
    assert int(sol.status) == solvers.Status.EVENT
    assert float(sol.ts[-1]) == float(sol.t_event)
    assert abs(float(sol.ys[-1, 0])) < 1e-11
    assert abs(float(sol.ys[-1, 1]) + np.sqrt(2 * g * h)) < 1e-10


ADJOINTS = [
    pytest.param(solvers.DiscreteAdjoint(), id="Discrete"),  # forward sensitivities (small problem)
    pytest.param(solvers.DiscreteAdjoint(forward_below=0), id="DiscreteBackward"),
    pytest.param(solvers.CheckpointAdjoint(checkpoints=2), id="Checkpoint", marks=pytest.mark.slow),
    pytest.param(solvers.BacksolveAdjoint(), id="Backsolve"),
]


@pytest.mark.parametrize("adjoint", ADJOINTS)
def test_falling_body_event_gradient(adjoint):
    h, g = 10.0, 9.81
    dh, dg = jax.jit(jax.grad(lambda h, g: landing_time(h, g, adjoint), argnums=(0, 1)))(A(h), A(g))
    exact_h, exact_g = 1 / np.sqrt(2 * h * g), -np.sqrt(2 * h) / (2 * g ** 1.5)
    name = type(adjoint).__name__
    print(f"{name}: dt/dh err {abs(float(dh) - exact_h):.1e}, dt/dg err {abs(float(dg) - exact_g):.1e}")
    assert abs(float(dh) - exact_h) < 1e-9
    assert abs(float(dg) - exact_g) < 1e-9


def test_falling_body_event_gradient_forward_mode():
    h, g = 10.0, 9.81
    J = jax.jit(jax.jacfwd(lambda x: landing_time(x[0], x[1], solvers.ForwardMode())))(A([h, g]))
    np.testing.assert_allclose(np.asarray(J), [1 / np.sqrt(2 * h * g), -np.sqrt(2 * h) / (2 * g ** 1.5)],
                               rtol=1e-9)


def drag_linear(t, y, p):
    k, g = p
    return jnp.stack([y[2], y[3], -k * y[2], -g - k * y[3]])


def test_projectile_linear_drag_against_closed_form():
    k, g, vx, vy, h = 0.3, 9.81, 10.0, 12.0, 2.0
    ev = solvers.Event(lambda t, y, p: y[1], direction=-1)
    sol = solvers.solve(drag_linear, A([0.0, h, vx, vy]), 0.0, 50.0, A([k, g]), event=ev, rtol=1e-12, atol=1e-12)
    height = lambda t: h + (vy + g / k) * (1 - np.exp(-k * t)) / k - g * t / k  # noqa: E731
    t_star = brentq(height, 0.5, 10.0, xtol=1e-15, rtol=1e-15)
    x_star = vx * (1 - np.exp(-k * t_star)) / k
    event_err, range_err = abs(float(sol.t_event) - t_star), abs(float(sol.ys[-1, 0]) - x_star)
    print(f"linear drag: event err {event_err:.1e}, range err {range_err:.1e}")
    assert abs(float(sol.t_event) - t_star) < 1e-10
    assert abs(float(sol.ys[-1, 0]) - x_star) < 1e-9


def drag_quad(t, y, p):
    k, g = p
    v = jnp.sqrt(y[2] ** 2 + y[3] ** 2)
    return jnp.stack([y[2], y[3], -k * v * y[2], -g - k * v * y[3]])


@pytest.mark.gpu
def test_projectile_quadratic_drag_event_gradient_vs_fd():
    ev = solvers.Event(lambda t, y, p: y[1], direction=-1)

    def flight(x):  # x = (k, g, vx, vy)
        sol = solvers.solve(drag_quad, jnp.stack([0.0, 1.0, x[2], x[3]]), 0.0, 50.0, x[:2], event=ev,
                            rtol=1e-11, atol=1e-11)
        return jnp.stack([sol.t_event, sol.ys[-1, 0]])  # flight time and range

    x0 = np.array([0.05, 9.81, 15.0, 10.0])
    J = np.asarray(jax.jit(jax.jacrev(flight))(A(x0)))
    fl = jax.jit(flight)
    eps = 1e-6
    Jfd = np.stack([(np.asarray(fl(A(x0 + eps * e))) - np.asarray(fl(A(x0 - eps * e)))) / (2 * eps)
                    for e in np.eye(4)], axis=1)
    err = np.max(np.abs(J - Jfd) / np.maximum(np.abs(Jfd), 1e-3))
    print(f"quadratic drag: event time/range jacobian vs FD rel err {err:.1e}")
    assert err < 1e-5


def rot(t, y, w):
    return jnp.stack([w * y[1], -w * y[0]])  # y = (sin wt, cos wt)


def crossings(direction, w=1.0, t1=10.0):
    ev = solvers.Event(lambda t, y, w: y[0], direction=direction, terminal=False, max_events=8)
    return solvers.solve(rot, A([0.0, 1.0]), 0.0, t1, A(w), event=ev, rtol=1e-12, atol=1e-12)


def test_nonterminal_crossings_of_sin():
    sol = crossings(None)
    te = np.asarray(sol.t_events)
    assert te.shape == (8,)
    print(f"sin crossings err {np.max(np.abs(te[:3] - np.pi * np.arange(1, 4))):.1e}")
    np.testing.assert_allclose(te[:3], np.pi * np.arange(1, 4), atol=1e-9)  # not t=0: zero at t0
    assert np.all(np.isinf(te[3:]))
    assert int(sol.status) == solvers.Status.SUCCESS
    assert float(sol.ts[-1]) == 10.0
    np.testing.assert_allclose(np.asarray(sol.ys[-1]), [np.sin(10.0), np.cos(10.0)], atol=1e-10)


@pytest.mark.parametrize("direction,ks", [(1, [2]), (-1, [1, 3])])
def test_direction_filter(direction, ks):
    te = np.asarray(crossings(direction).t_events)
    np.testing.assert_allclose(te[: len(ks)], np.pi * np.asarray(ks), atol=1e-9)
    assert np.all(np.isinf(te[len(ks):]))


def test_nonterminal_event_time_gradient():
    # t_k = k pi / w, dt_k/dw = -k pi / w^2
    w = 1.3
    J = jax.jit(jax.jacrev(lambda w: crossings(None, w).t_events[:3]))(A(w))
    np.testing.assert_allclose(np.asarray(J), -np.pi * np.arange(1, 4) / w ** 2, rtol=1e-8)


def test_zero_at_t0_is_not_an_event():
    # a ball starting on the floor going up lands at 2 v / g, not at t0
    sol = solvers.solve(fall, A([0.0, 5.0]), 1.0, 100.0, A(9.81), event=ground, rtol=1e-10, atol=1e-10)
    assert abs(float(sol.t_event) - (1.0 + 2 * 5.0 / 9.81)) < 1e-12
    sol = solvers.solve(fall, A([0.0, 5.0]), 1.0, 100.0, A(9.81),
                        event=solvers.Event(lambda t, y, g: y[0]), rtol=1e-10, atol=1e-10)
    assert abs(float(sol.t_event) - (1.0 + 2 * 5.0 / 9.81)) < 1e-12


def test_no_event_before_t1():
    ev = solvers.Event(lambda t, y, g: y[0] + 1e6, direction=-1)
    sol = solvers.solve(fall, A([10.0, 0.0]), 0.0, 1.0, A(9.81), event=ev, throw=True)
    assert int(sol.status) == solvers.Status.NO_EVENT
    assert np.isinf(float(sol.t_event))
    assert float(sol.ts[-1]) == 1.0
    np.testing.assert_allclose(np.asarray(sol.ys[-1]), [10.0 - 9.81 / 2, -9.81], atol=1e-10)


def test_terminal_event_with_ts():
    ts = A(np.linspace(0.0, 3.0, 7))
    sol = solvers.solve(fall, A([10.0, 0.0]), 0.0, 3.0, A(9.81), event=ground, ts=ts, rtol=1e-10, atol=1e-10)
    t_star = np.sqrt(20 / 9.81)
    before = np.asarray(ts) < t_star
    np.testing.assert_allclose(np.asarray(sol.ys[before, 0]), 10 - 9.81 * np.asarray(ts)[before] ** 2 / 2,
                               atol=1e-10)
    # save times after the event hold t_event and the state there
    np.testing.assert_allclose(np.asarray(sol.ts[~before]), t_star, atol=1e-12)
    np.testing.assert_allclose(np.asarray(sol.ys[~before, 0]), 0.0, atol=1e-10)


# --- bouncing ball: phases chained by terminal events ----------------------------------

G, H0, N_BOUNCES = 9.81, 1.0, 4


def bounce_total_time(e, adjoint=solvers.DiscreteAdjoint()):
    t, y = jnp.zeros(()), jnp.stack([jnp.asarray(H0), 0.0 * e])
    for _ in range(N_BOUNCES):
        sol = solvers.solve(fall, y, t, t + 10.0, A(G), event=ground, rtol=1e-10, atol=1e-10, adjoint=adjoint)
        t, y = sol.t_event, sol.ys[-1]
        y = jnp.stack([0.0 * y[0], -e * y[1]])  # lands at height 0 exactly, velocity reversed
    return t


def bounce_exact(e):
    v = np.sqrt(2 * G * H0)
    T = np.sqrt(2 * H0 / G) + sum(2 * e ** k * v / G for k in range(1, N_BOUNCES))
    dT = sum(2 * k * e ** (k - 1) * v / G for k in range(1, N_BOUNCES))
    return T, dT


@pytest.mark.parametrize("adjoint", [solvers.DiscreteAdjoint(), solvers.DiscreteAdjoint(forward_below=0)],
                         ids=["Discrete", "DiscreteBackward"])
def test_bouncing_ball_total_time_and_derivative(adjoint):
    e = 0.8
    T, dT = jax.jit(jax.value_and_grad(lambda e: bounce_total_time(e, adjoint)))(A(e))
    T_ex, dT_ex = bounce_exact(e)
    print(f"bouncing ball: total time err {abs(float(T) - T_ex):.1e}, dT/de err {abs(float(dT) - dT_ex):.1e}")
    assert abs(float(T) - T_ex) < 1e-11
    assert abs(float(dT) - dT_ex) < 1e-9


@pytest.mark.parametrize("adjoint", ADJOINTS)
def test_state_at_terminal_event_gradient_vs_fd(adjoint):
    # Impact velocity of a body falling with quadratic drag: the state at the event moves
    # with the event time, so its gradient needs the implicit-function term.
    def fall(t, y, g):
        return jnp.stack([y[1], -g - 0.1 * y[1] * jnp.abs(y[1])])

    event = solvers.Event(lambda t, y, g: y[0], direction=-1)

    def v_impact(h, adj):
        sol = solvers.solve(fall, jnp.stack([h, 0.0]), 0.0, 10.0, 9.81, event=event, adjoint=adj,
                            rtol=1e-10, atol=1e-10)
        return sol.ys[-1, 1]

    g = jax.grad(v_impact)(2.0, adjoint)
    eps = 1e-5
    fd = (v_impact(2.0 + eps, None) - v_impact(2.0 - eps, None)) / (2 * eps)
    assert abs(float(g) - float(fd)) < 1e-7 * abs(float(fd)), (float(g), float(fd))


# --- several events, states at crossings, the N-th occurrence, overflow --------------

def projectile(t, y, g):
    return jnp.stack([y[1], -g])


APEX = solvers.Event(lambda t, y, g: y[1], direction=-1, terminal=False)  # v = 0, going down
GROUND = solvers.Event(lambda t, y, g: y[0], direction=-1)


def test_several_events_with_states_at_crossings():
    v0, g = 7.0, 9.81
    sol = solvers.solve(projectile, A([0.0, v0]), 0.0, 10.0, A(g), event=[GROUND, APEX], rtol=1e-12, atol=1e-12)
    assert int(sol.status) == solvers.Status.EVENT and int(sol.event_index) == 0
    assert abs(float(sol.t_event) - 2 * v0 / g) < 1e-12
    t_apex, y_apex = sol.t_events[1], sol.y_events[1]
    assert abs(float(t_apex[0]) - v0 / g) < 1e-12 and np.all(np.isinf(np.asarray(t_apex[1:])))
    np.testing.assert_allclose(np.asarray(y_apex[0]), [v0**2 / (2 * g), 0.0], atol=1e-11)
    assert np.all(np.isnan(np.asarray(y_apex[1:])))
    # The terminal crossing is recorded too (as scipy's t_events / y_events do).
    assert abs(float(sol.t_events[0][0]) - 2 * v0 / g) < 1e-12
    np.testing.assert_allclose(np.asarray(sol.y_events[0][0]), [0.0, -v0], atol=1e-10)


def test_the_first_terminal_event_to_fire_wins():
    ceiling = solvers.Event(lambda t, y, g: y[0] - 1.0, direction=1)
    sol = solvers.solve(projectile, A([0.0, 7.0]), 0.0, 10.0, A(9.81), event=[GROUND, ceiling], rtol=1e-12,
                        atol=1e-12)
    assert int(sol.event_index) == 1
    t_up = (7.0 - np.sqrt(49.0 - 2 * 9.81)) / 9.81
    assert abs(float(sol.t_event) - t_up) < 1e-12 and abs(float(sol.ys[-1, 0]) - 1.0) < 1e-11


def test_terminal_after_the_nth_crossing():
    ev = solvers.Event(lambda t, y, w: y[0], terminal=3)
    sol = solvers.solve(rot, A([0.0, 1.0]), 0.0, 20.0, A(1.0), event=ev, rtol=1e-12, atol=1e-12)
    assert int(sol.status) == solvers.Status.EVENT
    np.testing.assert_allclose(np.asarray(sol.t_events[:3]), np.pi * np.arange(1, 4), atol=1e-9)
    assert abs(float(sol.ts[-1]) - 3 * np.pi) < 1e-9
    np.testing.assert_allclose(np.asarray(sol.y_events[:3, 1]), [-1.0, 1.0, -1.0], atol=1e-9)


def test_more_crossings_than_slots_is_a_failure_not_a_silent_drop():
    ev = solvers.Event(lambda t, y, w: y[0], terminal=False, max_events=2)
    sol = solvers.solve(rot, A([0.0, 1.0]), 0.0, 10.0, A(1.0), event=ev, throw=False)
    assert int(sol.status) == solvers.Status.MAX_EVENTS
    with pytest.raises(solvers.SolveError, match="max_events"):
        solvers.solve(rot, A([0.0, 1.0]), 0.0, 10.0, A(1.0), event=ev)


@pytest.mark.parametrize("adjoint", [solvers.DiscreteAdjoint(), solvers.DiscreteAdjoint(forward_below=0),
                                     solvers.BacksolveAdjoint()], ids=["Discrete", "DiscreteBackward", "Backsolve"])
def test_gradients_of_event_times_and_states_of_several_events(adjoint):
    # Apex: t = v0 / g, height v0^2 / (2 g); landing t = 2 v0 / g.
    def out(theta):
        v0, g = theta[0], theta[1]
        sol = solvers.solve(projectile, jnp.stack([0.0 * v0, v0]), 0.0, 10.0, g, event=[GROUND, APEX],
                            adjoint=adjoint, rtol=1e-12, atol=1e-12)
        return jnp.stack([sol.t_events[1][0], sol.y_events[1][0, 0], sol.t_event, sol.ys[-1, 1]])

    v0, g = 7.0, 9.81
    J = np.asarray(jax.jacrev(out)(A([v0, g])))
    exact = np.array([[1 / g, -v0 / g**2], [v0 / g, -(v0**2) / (2 * g**2)], [2 / g, -2 * v0 / g**2], [-1.0, 0.0]])
    np.testing.assert_allclose(J, exact, rtol=1e-7, atol=1e-9)


def test_dtmax_finds_crossings_of_a_fast_condition():
    # cond oscillates 50 times faster than the (trivial) solution: large steps step over
    # pairs of crossings; a step bound through the controller finds them all.
    ev = solvers.Event(lambda t, y, a: jnp.sin(50 * t), terminal=False, max_events=128)
    free = solvers.solve(lambda t, y, a: jnp.zeros_like(y), jnp.ones(1), 0.0, 1.0, event=ev)
    bounded = solvers.solve(lambda t, y, a: jnp.zeros_like(y), jnp.ones(1), 0.0, 1.0, event=ev,
                            controller=solvers.PIDController(dtmax=0.01))
    exact = np.pi * np.arange(1, 16) / 50  # 15 zeros in (0, 1]
    assert np.sum(np.isfinite(np.asarray(free.t_events))) < 15
    np.testing.assert_allclose(np.asarray(bounded.t_events[:15]), exact, atol=1e-9)
    assert np.all(np.isinf(np.asarray(bounded.t_events[15:])))
