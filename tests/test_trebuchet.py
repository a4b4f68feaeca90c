"""The trebuchet simulator: physics checks, gradients, a scipy reference, bad input."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.integrate import solve_ivp

from physics import _trebuchet_model as model
from physics import trebuchet as tb

P = tb.Trebuchet()
VACUUM = tb.Trebuchet(air_density=0.0)
DEG = math.pi / 180


@pytest.fixture(scope="module")
def throw():
    """A reference throw: 4 m/s headwind, 40 degrees, 60 kg."""
    return dict(wind=-4.0, angle=40 * DEG, weight=60.0)


# --------------------------------------------------------------------------- equations


def test_closed_form_equations_match_lagrangian_autodiff():
    # The solves use hand-written M(q) and F(q, qdot); autodiff of L = T - V must agree.
    rng = np.random.default_rng(0)
    p = tb._as_arrays(P)
    for _ in range(5):
        q = jnp.asarray(rng.uniform(-4, 4, 3))
        qdot = jnp.asarray(rng.normal(0, 5, 3))
        weight = rng.uniform(10, 300)
        m1, f1 = jax.jit(model._free_dynamics)(q, qdot, p, weight)
        m2, f2 = jax.jit(model._lagrange_dynamics)(q, qdot, p, weight)
        np.testing.assert_allclose(m1, m2, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(f1, f2, rtol=1e-12, atol=1e-10)


def test_initial_configuration():
    pos = model.positions(model.initial_q(tb._as_arrays(P)), P)
    # Arm tip and projectile on the ground, sling flat along it, counterweight straight down.
    np.testing.assert_allclose(pos["tip"][1], -P.pivot_height, atol=1e-12)
    np.testing.assert_allclose(pos["projectile"][1], -P.pivot_height, atol=1e-12)
    np.testing.assert_allclose(pos["projectile"][0] - pos["tip"][0], P.sling, atol=1e-12)
    np.testing.assert_allclose(pos["weight"][0], pos["hinge"][0], atol=1e-12)


# --------------------------------------------------------------------------- physics


def test_energy_conserved_through_launch(throw):
    traj = tb.simulate(throw["wind"], throw["angle"], throw["weight"], P)
    e = np.asarray(tb.energy(traj, P))
    launch = np.asarray(traj.phase) < 2
    assert np.all(np.isfinite(e[launch])) and np.all(np.isnan(e[~launch]))
    # The counterweight's drop (about 60 kg x 9.81 x 1 m) is what gets converted; drift
    # must be tiny against it.
    drift = np.max(np.abs(e[launch] - e[0]))
    kinetic = np.asarray(jax.vmap(lambda q, qd: model.kinetic(q, qd, P, throw["weight"]))(
        traj.q[launch], traj.qdot[launch]))
    assert kinetic.max() > 100.0  # the energy really moved from potential to kinetic
    assert drift < 1e-6 * kinetic.max(), (drift, kinetic.max())


def test_projectile_leaves_ground_with_zero_normal_force(throw):
    traj = tb.simulate(throw["wind"], throw["angle"], throw["weight"], P)
    ground = np.asarray(traj.phase) == 0
    heights = np.asarray(traj.projectile[ground, 1]) + P.pivot_height
    assert np.max(np.abs(heights)) < 1e-7  # the constraint holds while sliding
    # The projectile is pulled backwards (towards the arm) along the ground.
    assert traj.projectile[ground][-1, 0] < traj.projectile[0, 0]
    q, qd = traj.q[ground][-1], traj.qdot[ground][-1]
    n = model.normal_force(0.0, (q, qd), (tb._as_arrays(P), throw["weight"]))
    assert abs(float(n)) < 1e-8 * throw["weight"] * P.gravity


def _vacuum_landing(pos, vel, p):
    # Closed form: x(t) = x0 + vx t, y(t) = y0 + vy t - g t^2 / 2 back to y = -H.
    x0, y0 = pos
    vx, vy = vel
    t = (vy + math.sqrt(vy**2 + 2 * p.gravity * (y0 + p.pivot_height))) / p.gravity
    return x0 + vx * t, t


def test_vacuum_flight_matches_closed_form(throw):
    traj = tb.simulate(0.0, throw["angle"], throw["weight"], VACUUM)
    rel = int(np.searchsorted(np.asarray(traj.phase), 2))  # first flight sample = release
    pos, vel = np.asarray(traj.projectile[rel]), np.asarray(traj.velocity[rel])
    np.testing.assert_allclose(math.atan2(vel[1], vel[0]), throw["angle"], atol=1e-10)
    x, t_flight = _vacuum_landing(pos, vel, VACUUM)
    np.testing.assert_allclose(float(traj.distance), x, rtol=0, atol=1e-6)
    np.testing.assert_allclose(float(traj.t_landing - traj.t_release), t_flight, atol=1e-8)
    # The trajectory in between is the parabola too.
    flight = np.asarray(traj.phase) == 2
    dt = np.asarray(traj.t[flight]) - float(traj.t_release)
    np.testing.assert_allclose(traj.projectile[flight, 1],
                               pos[1] + vel[1] * dt - 0.5 * VACUUM.gravity * dt**2, atol=1e-6)


def test_wind_has_no_effect_in_vacuum(throw):
    # (d distance / d wind = 0 in vacuum: tests/test_trebuchet_grad.py)
    d0 = tb.shoot(0.0, throw["angle"], throw["weight"], VACUUM)
    for wind in (-10.0, 7.0):
        np.testing.assert_allclose(tb.shoot(wind, throw["angle"], throw["weight"], VACUUM), d0,
                                   rtol=0, atol=1e-12)


def test_wind_direction_and_drag():
    # Positive wind is a tailwind: further; air costs range against vacuum.
    d = {w: float(tb.shoot(w, 40 * DEG, 60.0, P)) for w in (-4.0, 0.0, 4.0)}
    assert d[-4.0] < d[0.0] < d[4.0]
    assert float(tb.shoot(0.0, 40 * DEG, 60.0, VACUUM)) > d[0.0]


@pytest.mark.parametrize("weight,expected", [(20.0, 45.0), (44.49, 85.0), (90.0, 110.0)])
def test_reference_distances(weight, expected):
    # DESIGN.md's orientation figures ("about"), 45 degree release, real air: within 5%.
    d = float(tb.shoot(0.0, 45 * DEG, weight, P))
    assert abs(d - expected) < 0.05 * expected, d


# --------------------------------------------------------------------------- scipy reference


def _scipy_shoot(wind, angle, weight, p, tol=1e-12):
    """The same model integrated independently: scipy DOP853 with its own event location,
    equations from autodiff of the Lagrangian (not the closed form the library uses)."""
    pa = tb._as_arrays(p)

    @jax.jit
    def accel(y, weight, constrained):
        q, qd = y[:3], y[3:]
        mass, force = model._lagrange_dynamics(q, qd, pa, weight)
        # Ground: the multiplier of y_projectile(q) = -H, from autodiff too.
        height = lambda q_: model.positions(q_, pa)["projectile"][1]
        jac = jax.grad(height)(q)
        curv = qd @ jax.hessian(height)(q) @ qd
        a = jnp.linalg.solve(mass, force)
        mj = jnp.linalg.solve(mass, jac)
        lam = -(jac @ a + curv) / (jac @ mj)
        return jnp.concatenate([qd, a + constrained * lam * mj]), lam

    def rhs(constrained):
        return lambda t, y: np.asarray(accel(jnp.asarray(y), weight, constrained)[0])

    def lift(t, y):
        return float(accel(jnp.asarray(y), weight, 1.0)[1])

    def release(t, y):
        v = np.asarray(jax.jvp(lambda q: model.positions(q, pa)["projectile"],
                               (jnp.asarray(y[:3]),), (jnp.asarray(y[3:]),))[1])
        return v[0] * math.sin(angle) - v[1] * math.cos(angle)

    k = 0.5 * p.air_density * p.drag_coefficient * math.pi * p.projectile_radius**2 / p.projectile_mass

    def flight(t, y):
        rx, ry = y[2] - wind, y[3]
        s = math.hypot(rx, ry)
        return [y[2], y[3], -k * s * rx, -k * s * ry - p.gravity]

    def land(t, y):
        return y[1] + p.pivot_height

    lift.terminal, lift.direction = True, -1
    release.terminal, release.direction = True, 1
    land.terminal, land.direction = True, -1
    opts = dict(method="DOP853", rtol=tol, atol=tol)
    y0 = np.concatenate([np.asarray(model.initial_q(pa)), np.zeros(3)])
    s1 = solve_ivp(rhs(1.0), (0, 5), y0, events=lift, **opts)
    s2 = solve_ivp(rhs(0.0), (s1.t_events[0][0], 10), s1.y_events[0][0], events=release, **opts)
    y2 = s2.y_events[0][0]
    pos, vel = jax.jvp(lambda q: model.positions(q, pa)["projectile"], (jnp.asarray(y2[:3]),),
                       (jnp.asarray(y2[3:]),))
    s3 = solve_ivp(flight, (s2.t_events[0][0], 100), np.concatenate([pos, vel]), events=land,
                   **opts)
    return dict(distance=s3.y_events[0][0][0], t_liftoff=s1.t_events[0][0],
                t_release=s2.t_events[0][0], t_landing=s3.t_events[0][0])


def test_matches_independent_scipy_integration(throw):
    ref = _scipy_shoot(throw["wind"], throw["angle"], throw["weight"], P)
    traj = tb.simulate(throw["wind"], throw["angle"], throw["weight"], P)
    for name in ("t_liftoff", "t_release", "t_landing"):
        np.testing.assert_allclose(float(getattr(traj, name)), ref[name], rtol=1e-7)
    np.testing.assert_allclose(float(traj.distance), ref["distance"], rtol=1e-7)
    d = tb.shoot(throw["wind"], throw["angle"], throw["weight"], P, rtol=1e-11, atol=1e-11)
    np.testing.assert_allclose(float(d), ref["distance"], rtol=1e-9)


# --------------------------------------------------------------------------- bad input


def test_too_light_counterweight():
    with pytest.raises(ValueError, match="TOO_LIGHT"):
        tb.shoot(0.0, 45 * DEG, 5.0, P)  # cannot even turn the arm
    with pytest.raises(ValueError, match="TOO_LIGHT"):
        tb.shoot(0.0, 45 * DEG, 7.0, P)  # turns it, never lifts the projectile


def test_release_angle_never_reached():
    with pytest.raises(ValueError, match="NO_RELEASE"):
        tb.shoot(0.0, 2.0, 60.0, P)


@pytest.mark.parametrize("change,needs", [
    (dict(sling=-1.0), "sling > 0"),
    (dict(projectile_mass=0.0), "projectile_mass > 0"),
    (dict(long_arm=1.0), "long_arm > pivot_height"),
    (dict(hanger=1.2), "short_arm \\+ hanger < pivot_height"),
    (dict(air_density=-1.0), "air_density >= 0"),
])
def test_non_physical_geometry(change, needs):
    p = tb.Trebuchet(**change)
    with pytest.raises(ValueError, match=needs):
        tb.shoot(0.0, 45 * DEG, 60.0, p)


def test_negative_counterweight():
    with pytest.raises(ValueError, match="counterweight > 0"):
        tb.shoot(0.0, 45 * DEG, -3.0, P)


# One compiled batch of throws serves the two tests below.
BATCH = jax.jit(jax.vmap(lambda w, a, m: tb.shoot_with_status(w, a, m, P)))


def test_failures_are_nan_under_jit_and_vmap():
    # jit(shoot) on a bad throw is NaN too (same code path, status traced): BATCH covers it.
    winds = jnp.zeros(3)
    angles = jnp.asarray([45 * DEG, 2.0, 45 * DEG])
    weights = jnp.asarray([5.0, 60.0, -3.0])
    d, status = BATCH(winds, angles, weights)
    assert np.all(np.isnan(d))
    assert list(np.asarray(status)) == [tb.ShotStatus.TOO_LIGHT, tb.ShotStatus.NO_RELEASE,
                                        tb.ShotStatus.BAD_INPUT]


def test_vmap_matches_single_shots(throw):
    winds = jnp.asarray([-6.0, 0.0, 5.0])
    d, status = BATCH(winds, jnp.full(3, throw["angle"]), jnp.full(3, throw["weight"]))
    assert np.all(np.asarray(status) == tb.ShotStatus.OK)
    for w, dw in zip(winds, d):
        np.testing.assert_allclose(dw, tb.shoot(float(w), throw["angle"], throw["weight"], P),
                                   rtol=1e-12)
