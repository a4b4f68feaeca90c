"""A differentiable trebuchet: launch, sling, flight, chained by located events.

    from physics import trebuchet
    p = trebuchet.Trebuchet()                            # default machine, real air
    d = trebuchet.shoot(wind, angle, weight, p)          # landing distance (m)
    traj = trebuchet.simulate(wind, angle, weight, p)    # whole throw, for plots
    e = trebuchet.energy(traj, p)                        # mechanical energy (J), launch phases

Conventions (SI units throughout):
    wind    horizontal air velocity in m/s along the throw: positive = tailwind (pushes the
            projectile further), negative = headwind. "4 m/s headwind" is wind = -4.
    angle   release angle in rad: the projectile leaves the sling when the direction of its
            velocity, measured above the horizontal, falls to `angle`. In (-pi/2, pi/2).
    weight  counterweight mass in kg.
    distance is measured along the ground from the foot of the pivot to where the projectile's
            centre comes back to ground level; negative when a feeble throw (a counterweight
            of 7.5-9 kg on the default machine) lands behind the pivot.

Phases (equations in `physics._trebuchet_model`):
    1. ground: the projectile slides (frictionless) on the ground, dragged by the sling, until
       the ground's normal force on it falls to zero (lift-off);
    2. sling: arm, counterweight and sling swing freely until release;
    3. flight: point projectile with gravity and quadratic drag relative to the wind, until it
       is back at ground level.
The phases are chained by `solvers.solve_phases` (each one `solvers.solve` with a terminal
event, the sling's end mapped to the flight's state); event times are differentiable, so
`shoot` is differentiable in reverse mode (default) and forward mode
(``adjoint=solvers.ForwardMode()``) with respect to wind, angle, weight and every float field
of `Trebuchet`.

Failures (a counterweight too light to throw, a release angle never reached, non-physical
geometry) raise ValueError when the inputs are concrete, and give NaN under jit/vmap, where
`shoot_with_status` also returns a `ShotStatus` code.
"""

from __future__ import annotations

import enum
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

import solvers

from . import _trebuchet_model as _m
from ._trebuchet_model import Trebuchet, kinetic, positions, potential

# Time limits of the phases (s). A throw that works takes well under a second to lift and
# release; a phase that runs out of time has failed (see ShotStatus).
GROUND_TIME = 5.0
SLING_TIME = 5.0
FLIGHT_TIME = 120.0
RTOL = 1e-8
ATOL = 1e-8


class ShotStatus(enum.IntEnum):
    """Outcome of a throw."""

    OK = 0
    BAD_INPUT = 1  # non-physical geometry or counterweight (see the message)
    TOO_LIGHT = 2  # the counterweight cannot lift the projectile off the ground
    NO_RELEASE = 3  # the release angle is never reached during the swing
    BELOW_GROUND = 4  # the projectile would be released below ground level
    NO_LANDING = 5  # the flight did not end within FLIGHT_TIME
    SOLVER_FAILED = 6  # an ODE solve failed (max steps, step size underflow, NaN)


MESSAGES = {
    ShotStatus.BAD_INPUT: "non-physical input",
    ShotStatus.TOO_LIGHT: "the counterweight is too light to lift the projectile: the arm does "
    "not turn or the sling never lifts the projectile off the ground; use a heavier weight",
    ShotStatus.NO_RELEASE: "the release angle is never reached while the projectile swings "
    "forwards; use a release angle in (-pi/2, pi/2) (typically 0.3 to 0.8 rad)",
    ShotStatus.BELOW_GROUND: "the projectile reaches the release angle below ground level; use "
    "a larger release angle",
    ShotStatus.NO_LANDING: f"the projectile did not land within {FLIGHT_TIME} s",
    ShotStatus.SOLVER_FAILED: "an ODE solve failed (max steps, step size underflow or NaN); "
    "check the inputs or loosen rtol/atol",
}


# --------------------------------------------------------------------------- checks


def _input_checks(angle, weight, p: Trebuchet):
    """(boolean scalar, what it requires) pairs: the inputs are physical."""
    positive = ["pivot_height", "long_arm", "short_arm", "hanger", "sling", "arm_mass",
                "projectile_mass", "gravity"]
    non_negative = ["projectile_radius", "air_density", "drag_coefficient", "weight_inertia"]
    checks = [(jnp.asarray(getattr(p, n)) > 0, f"{n} > 0") for n in positive]
    checks += [(jnp.asarray(getattr(p, n)) >= 0, f"{n} >= 0") for n in non_negative]
    checks += [
        (jnp.asarray(weight) > 0, "counterweight > 0"),
        (jnp.asarray(p.long_arm > p.pivot_height), "long_arm > pivot_height (the arm's tip rests on the ground)"),
        (jnp.asarray(p.short_arm + p.hanger < p.pivot_height),
         "short_arm + hanger < pivot_height (the counterweight clears the ground)"),
    ]
    return checks


def _input_ok(angle, weight, p: Trebuchet):
    return jnp.all(jnp.stack([ok for ok, _ in _input_checks(angle, weight, p)]))


def _as_arrays(tree):
    # Python floats would be static (compile-time constants) under equinox's filter_jit:
    # turn every float leaf into an array so that one compilation serves all values.
    return jax.tree_util.tree_map(lambda x: jnp.asarray(x, dtype=float), tree)


def _raise_if_failed(status, angle, weight, p):
    """ValueError for a failed throw when the status is concrete; nothing under jit/vmap."""
    try:
        codes = np.asarray(status)
    except (jax.errors.ConcretizationTypeError, jax.errors.TracerArrayConversionError):
        return
    bad = codes[codes != ShotStatus.OK]
    if not bad.size:
        return
    code = ShotStatus(int(bad.flat[0]))
    message = MESSAGES[code]
    if code == ShotStatus.BAD_INPUT:
        unmet = [text for ok, text in _input_checks(angle, weight, p) if not np.all(ok)]
        message += ": needs " + "; ".join(unmet)
    raise ValueError(f"trebuchet: {code.name}: {message}")


# --------------------------------------------------------------------------- phases


# The three phases are `solvers.solve_phases`: three solves with terminal events, the end
# state of one (through a reset map) the start of the next. (One solve inside a lax.scan
# over the phase index compiles a little faster, but under vmap its phase switch evaluates
# every phase's equations at every step: three times slower training.)
GROUND, SLING, FLIGHT = 0, 1, 2


class _Phase(NamedTuple):
    sol: Any  # solvers.Solution
    t_end: Any  # event time, or the end of the solve if the event did not fire (finite)
    y_end: Any  # state there


# solve_phases passes one args to every phase: (params, weight, angle, wind).
def _release(t, y, args):
    return _m.release_condition(t, y, args[:3])


# The flight carries a third component, w' = -|v_rel| v_rel, that feeds back into nothing:
# it is there for the step control. In vacuum the flight is an exact quadratic in t, Tsit5's
# error estimate vanishes and the solve takes 3 steps, whose derivative with respect to the
# drag constant k (through air_density, drag_coefficient, projectile_radius and mass) is
# not the true one: measured at wind 3 m/s, 0.6 rad, 44.49 kg, rtol 1e-8, d distance /
# d air_density -121.966 (reverse) and -122.215 (forward) against -121.786 by one-sided
# differences. w is exactly the velocity's sensitivity to k in vacuum (dv/dk solves
# (dv/dk)' = w' there), so controlling its error controls the gradient's; in air the drag
# already makes the steps resolve it. Cost: two more components in the flight's state.
def _flight_rhs(t, y, args):
    pos, vel, _ = y
    dpos, dvel = _m.flight_rhs(t, (pos, vel), (args[0], args[3]))
    rel = vel - jnp.stack([args[3], jnp.zeros_like(args[3])])
    return (dpos, dvel, -jnp.sqrt(jnp.sum(rel**2) + 1e-30) * rel)


def _landing(t, y, args):
    return _m.height_above_ground(t, y[:2], (args[0], args[3]))


def _to_flight(t, y, args):
    pos, vel = _m.projectile_state(y, args[0])
    return (pos, vel, jnp.zeros_like(vel))


PHASES = (
    solvers.Phase(_m.ground_rhs, solvers.Event(_m.normal_force, direction=-1), None, GROUND_TIME),
    solvers.Phase(_m.sling_rhs, solvers.Event(_release, direction=+1), _to_flight, SLING_TIME),
    solvers.Phase(_flight_rhs, solvers.Event(_landing, direction=-1), None, FLIGHT_TIME),
)


def _phases(wind, angle, weight, p, adjoint, rtol, atol, dense=False):
    """Runs ground, sling and flight: returns the three _Phase results and a ShotStatus.
    dense: keep each phase's dense output (for sampling the trajectory)."""
    y0 = _m.initial_state(p)
    sol = solvers.solve_phases(PHASES, y0, 0.0, GROUND_TIME + SLING_TIME + FLIGHT_TIME,
                               (p, weight, angle, wind), method=solvers.Tsit5(), rtol=rtol,
                               atol=atol, adjoint=adjoint, throw=False, saveat=solvers.SaveAt(dense=dense))
    # ts[-1] is the event time when the event fired and the phase's end otherwise: finite
    # either way, so a failed phase does not poison the next one with inf.
    ground, sling, flight = (_Phase(s, s.ts[-1], jax.tree_util.tree_map(lambda x: x[-1], s.ys))
                             for s in sol.phases)
    status = _status(angle, weight, p, y0, (p, weight, angle), (ground, sling, flight))
    return (ground, sling, flight), status


def _status(angle, weight, p, y0, launch, phases):
    """The first failure along the chain of phases, as a ShotStatus code (int32 scalar)."""
    s = ShotStatus
    # A solve that neither finished nor stopped at its event failed (max steps, NaN, ...).
    fine = jnp.asarray([int(solvers.Status.SUCCESS), int(solvers.Status.EVENT),
                        int(solvers.Status.NO_EVENT)])
    failed = [~jnp.isin(ph.sol.status, fine) for ph in phases]
    fired = [ph.sol.status == solvers.Status.EVENT for ph in phases]
    ground, sling, _ = phases
    # The arm must start turning the right way (clockwise, theta decreasing), and still be
    # turning that way at lift-off; otherwise the counterweight cannot throw.
    turns = _m.ground_rhs(0.0, y0, launch)[1][0] < 0
    lifted = fired[GROUND] & turns & (ground.y_end[1][0] < 0)
    release_height = _m.projectile_state(sling.y_end, p)[0][1]
    checks = [
        (_input_ok(angle, weight, p), s.BAD_INPUT),
        (~failed[GROUND], s.SOLVER_FAILED),
        (lifted, s.TOO_LIGHT),
        (~failed[SLING], s.SOLVER_FAILED),
        # Released moving forwards: the angle lies in (-pi/2, pi/2).
        (fired[SLING] & (jnp.abs(angle) < 0.5 * jnp.pi), s.NO_RELEASE),
        (release_height + p.pivot_height > 0, s.BELOW_GROUND),
        (~failed[FLIGHT], s.SOLVER_FAILED),
        (fired[FLIGHT], s.NO_LANDING),
    ]
    status = jnp.asarray(s.OK, jnp.int32)
    for ok, code in reversed(checks):
        status = jnp.where(ok, status, jnp.int32(code))
    return status


@eqx.filter_jit
def _shoot(wind, angle, weight, p, adjoint, rtol, atol):
    (_, _, flight), status = _phases(wind, angle, weight, p, adjoint, rtol, atol)
    distance = flight.y_end[0][0]
    return jnp.where(status == ShotStatus.OK, distance, jnp.nan), status


def shoot_with_status(wind, angle, weight, p: Trebuchet = Trebuchet(), *, adjoint=None,
                      rtol=RTOL, atol=ATOL):
    """Like `shoot`, but never raises: returns (distance, status), distance NaN unless
    status == ShotStatus.OK. Jit-, vmap- and grad-compatible."""
    wind, angle, weight, p = _as_arrays((wind, angle, weight, p))
    return _shoot(wind, angle, weight, p, adjoint, rtol, atol)


def shoot(wind, angle, weight, p: Trebuchet = Trebuchet(), *, adjoint=None, rtol=RTOL, atol=ATOL):
    """Landing distance (m, scalar) of one throw.

    wind: m/s, positive = tailwind, negative = headwind. angle: release angle (rad above the
    horizontal). weight: counterweight (kg). p: the machine (a `Trebuchet` PyTree).
    adjoint: None (default, `solvers.DiscreteAdjoint()`, for jax.grad/vjp) or
    `solvers.ForwardMode()` for jax.jvp/jacfwd. rtol, atol: tolerances of the solves.

    Differentiable with respect to wind, angle, weight and every float field of p. Scalars in,
    scalar out; use jax.vmap for batches. Raises ValueError for an impossible throw when the
    inputs are concrete; under jit/vmap an impossible throw returns NaN instead (see
    `shoot_with_status` for the reason).
    """
    distance, status = shoot_with_status(wind, angle, weight, p, adjoint=adjoint, rtol=rtol,
                                         atol=atol)
    _raise_if_failed(status, angle, weight, p)
    return distance


# --------------------------------------------------------------------------- trajectories


class Trajectory(eqx.Module):
    """A whole throw, sampled for plots. n = 3 * samples_per_phase samples.

    t: (n,) times (s). phase: (n,) int, 0 ground, 1 sling, 2 flight.
    q, qdot: (n, 3) arm angle, hanger angle, sling angle (rad) and their rates (rad/s) during
        the launch phases; during flight the arm is drawn frozen at release (NaN rates).
    projectile: (n, 2) projectile centre (m); velocity: (n, 2) its velocity (m/s).
    t_liftoff, t_release, t_landing: phase boundaries (s); distance (m); weight (kg);
    status: ShotStatus code.
    Sampling uses the solver's dense output (not differentiable); use `shoot` for gradients.
    """

    t: Any
    phase: Any
    q: Any
    qdot: Any
    projectile: Any
    velocity: Any
    t_liftoff: Any
    t_release: Any
    t_landing: Any
    distance: Any
    weight: Any
    status: Any

    def machine(self, p: Trebuchet):
        """Points of the machine at every sample: dict of (n, 2) arrays (see `positions`)."""
        return jax.vmap(lambda q: positions(q, p))(self.q)


def _sample(phase: _Phase, t_start, n):
    ts = jnp.linspace(t_start, phase.t_end, n)
    return ts, phase.sol.evaluate(ts)


@eqx.filter_jit
def _simulate(wind, angle, weight, p, n):
    (ground, sling, flight), status = _phases(wind, angle, weight, p, None, RTOL, ATOL, dense=True)
    t_g, (q_g, qd_g) = _sample(ground, jnp.zeros_like(weight), n)
    t_s, (q_s, qd_s) = _sample(sling, ground.t_end, n)
    t_f, (x_f, v_f, _) = _sample(flight, sling.t_end, n)
    launch_xv = jax.vmap(lambda q, qd: _m.projectile_state((q, qd), p))
    x_g, v_g = launch_xv(q_g, qd_g)
    x_s, v_s = launch_xv(q_s, qd_s)
    cat = jnp.concatenate
    return Trajectory(
        t=cat([t_g, t_s, t_f]), phase=jnp.repeat(jnp.arange(3), n),
        # During flight the arm is drawn frozen at its release pose.
        q=cat([q_g, q_s, jnp.broadcast_to(q_s[-1], (n, 3))]),
        qdot=cat([qd_g, qd_s, jnp.full((n, 3), jnp.nan)]),
        projectile=cat([x_g, x_s, x_f]), velocity=cat([v_g, v_s, v_f]),
        t_liftoff=ground.t_end, t_release=sling.t_end, t_landing=flight.t_end,
        distance=jnp.where(status == ShotStatus.OK, flight.y_end[0][0], jnp.nan),
        weight=weight, status=status)


def simulate(wind, angle, weight, p: Trebuchet = Trebuchet(), samples_per_phase: int = 200):
    """The whole throw as a `Trajectory` (same arguments and errors as `shoot`)."""
    wind, angle, weight, p = _as_arrays((wind, angle, weight, p))
    traj = _simulate(wind, angle, weight, p, samples_per_phase)
    _raise_if_failed(traj.status, angle, weight, p)
    return traj


def energy(traj: Trajectory, p: Trebuchet = Trebuchet()):
    """Total mechanical energy (J), shape (n,), at each sample of the launch phases
    (kinetic + gravitational potential of arm, counterweight and projectile; zero potential
    at the pivot's height); NaN during flight. Conserved: the model has no friction."""
    p = _as_arrays(p)
    e = jax.vmap(lambda q, qd: kinetic(q, qd, p, traj.weight) + potential(q, p, traj.weight))(
        traj.q, traj.qdot)
    return jnp.where(traj.phase < 2, e, jnp.nan)


from ._aim import Aimer, AimResult, aim, aim_direct, misses, sample_queries, train_aimer  # noqa: E402
from ._envelope import Envelope, envelope  # noqa: E402
from ._surrogate import Surrogate, train_surrogate  # noqa: E402

__all__ = ["Trebuchet", "shoot", "shoot_with_status", "simulate", "energy", "Trajectory",
           "ShotStatus", "Aimer", "AimResult", "train_aimer", "aim", "aim_direct", "misses",
           "sample_queries", "Envelope", "envelope", "Surrogate", "train_surrogate"]
