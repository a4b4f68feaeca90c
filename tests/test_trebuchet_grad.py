"""Gradients of the landing distance, reverse and forward mode, against central finite
differences in float64."""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import solvers
from physics import trebuchet as tb

# Tight tolerances: the finite differences then see the true derivative and the step-size
# choices of the adaptive solver (constants in the adjoint) barely move with the inputs.
TOL = dict(rtol=1e-12, atol=1e-12)
WIND, ANGLE, WEIGHT = -4.0, 40 * math.pi / 180, 60.0
FIELDS = ["pivot_height", "long_arm", "short_arm", "hanger", "sling", "arm_mass",
          "projectile_mass", "projectile_radius", "air_density", "drag_coefficient", "gravity",
          "weight_inertia"]


def _distance(wind, angle, weight, p, adjoint=None):
    return tb.shoot_with_status(wind, angle, weight, p, adjoint=adjoint, **TOL)[0]


@pytest.fixture(scope="module")
def p():
    return tb._as_arrays(tb.Trebuchet())


GRAD = jax.jit(jax.grad(_distance, argnums=(0, 1, 2, 3)))  # compiled once, for any Trebuchet


@pytest.fixture(scope="module")
def reverse(p):
    return GRAD(WIND, ANGLE, WEIGHT, p)


def _central(f, x, h):
    return (f(x + h) - f(x - h)) / (2 * h)


@pytest.fixture(scope="module")
def finite_differences(p):
    shoot = jax.jit(_distance)
    fd = {
        "wind": _central(lambda x: shoot(x, ANGLE, WEIGHT, p), WIND, 1e-4),
        "angle": _central(lambda x: shoot(WIND, x, WEIGHT, p), ANGLE, 1e-5),
        "weight": _central(lambda x: shoot(WIND, ANGLE, x, p), WEIGHT, 1e-3),
    }
    for name in FIELDS:
        x0 = getattr(p, name)
        h = 1e-5 * float(x0)
        with_x = lambda x, name=name: eqx.tree_at(lambda q: getattr(q, name), p, x)
        fd[name] = _central(lambda x: shoot(WIND, ANGLE, WEIGHT, with_x(x)), x0, h)
    return {k: float(v) for k, v in fd.items()}


def test_reverse_mode_matches_finite_differences(reverse, finite_differences):
    g_wind, g_angle, g_weight, g_p = reverse
    got = {"wind": g_wind, "angle": g_angle, "weight": g_weight}
    got.update({name: getattr(g_p, name) for name in FIELDS})
    for name, fd in finite_differences.items():
        # Every derivative is O(1)-O(100) m per unit; 1e-6 relative (or 1e-6 m per unit
        # for the few near zero) is far beyond what a wrong term could hide in.
        np.testing.assert_allclose(float(got[name]), fd, rtol=1e-6, atol=1e-6, err_msg=name)


def test_forward_mode_matches_reverse(p, reverse):
    g_wind, g_angle, g_weight, g_p = reverse
    fwd = solvers.ForwardMode()
    jvp = jax.jit(lambda tangents: jax.jvp(
        lambda w, a, m, p_: _distance(w, a, m, p_, adjoint=fwd), (WIND, ANGLE, WEIGHT, p),
        tangents)[1])
    zero_p = jax.tree_util.tree_map(jnp.zeros_like, p)
    for i, expected in enumerate([g_wind, g_angle, g_weight]):
        t = [0.0, 0.0, 0.0]
        t[i] = 1.0
        np.testing.assert_allclose(jvp((*t, zero_p)), expected, rtol=1e-9)
    # One direction through every geometry field at once: the directional derivative.
    direction = jax.tree_util.tree_map(lambda x: 0.1 * x, p)
    expected = sum(0.1 * float(getattr(p, n)) * float(getattr(g_p, n)) for n in FIELDS)
    np.testing.assert_allclose(jvp((0.0, 0.0, 0.0, direction)), expected, rtol=1e-9)


def test_gradient_wind_sign(reverse):
    # A tailwind carries the projectile further; a heavier weight throws further.
    g_wind, _, g_weight, _ = reverse
    assert float(g_wind) > 0 and float(g_weight) > 0


# ~14 s; the vacuum gradient test beside it covers the vacuum flight
@pytest.mark.slow
def test_wind_gradient_is_zero_in_vacuum():
    vacuum = tb._as_arrays(tb.Trebuchet(air_density=0.0))
    g_wind, _, g_weight, g_p = GRAD(3.0, ANGLE, WEIGHT, vacuum)
    assert float(g_wind) == 0.0
    assert float(g_p.drag_coefficient) == 0.0 and float(g_p.projectile_radius) == 0.0
    assert float(g_weight) > 0


def _vacuum_distance(rho, p, adjoint=None):
    q = eqx.tree_at(lambda x: x.air_density, p, rho)
    return tb.shoot_with_status(3.0, 0.6, 44.49, q, adjoint=adjoint)[0]


# Compiled once for both air densities below.
VAC_F = jax.jit(_vacuum_distance)
VAC_REV = jax.jit(jax.grad(_vacuum_distance))
VAC_FWD = jax.jit(lambda r, p: jax.jvp(lambda x: _vacuum_distance(x, p, solvers.ForwardMode()),
                                       (r,), (jnp.ones_like(r),))[1])


@pytest.mark.parametrize("air_density", [0.0, 1e-3])
def test_air_density_gradient_in_and_near_vacuum(p, air_density):
    # The drag-free flight is an exact quadratic: without the flight's step-control term
    # (physics.trebuchet._flight_rhs) it took 3 steps and this derivative was 0.15%
    # (reverse) and 0.35% (forward) off at the default tolerance. Checked at shoot's
    # default tolerance (wind 3 m/s, 0.6 rad, 44.49 kg) against second-order one-sided
    # differences (rho >= 0).
    rho = jnp.asarray(air_density)
    h = 1e-5
    d0, d1, d2 = (float(VAC_F(rho + k * h, p)) for k in range(3))
    fd = (-3 * d0 + 4 * d1 - d2) / (2 * h)
    rev, fwd = float(VAC_REV(rho, p)), float(VAC_FWD(rho, p))
    assert fd < -100  # about -122 m per kg/m^3
    np.testing.assert_allclose(rev, fd, rtol=1e-6)
    np.testing.assert_allclose(fwd, fd, rtol=1e-6)
    np.testing.assert_allclose(fwd, rev, rtol=1e-9)
