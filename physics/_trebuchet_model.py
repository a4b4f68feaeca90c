"""Equations of motion of the hinged-counterweight trebuchet with a sling.

Frame: the pivot is the origin, x points downrange (the direction of the throw), y up;
the ground is the line y = -pivot_height. Generalised coordinates q = (theta, psi, phi):

    theta  angle of the long arm from +x (counter-clockwise). At rest the long arm
           points backwards and down, its tip on the ground: theta0 = pi + asin(H / L).
           The throw turns the arm clockwise (theta decreases).
    psi    angle of the counterweight hanger from the downward vertical (absolute).
    phi    angle of the sling from +x (absolute); 0 at rest (the sling lies flat on the
           ground, from the arm's tip forwards to the projectile).

The equations of motion come from the Lagrangian L(q, qdot) = T - V by autodiff:
mass matrix M = d2L/dqdot2, and M qddot = dL/dq - (d2L/dqdot dq) qdot. While the
projectile slides on the ground, the constraint y_projectile(q) = -H is enforced by a
Lagrange multiplier, which is the normal force of the ground on the projectile.

Every function here is pure JAX and plugs into `solvers.solve`:
``f(t, y, args) -> dy/dt`` with ``args = (params, weight, angle)`` for the launch phases
and ``args = (params, wind)`` for the flight, and event conditions
``cond(t, y, args) -> scalar``.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp


class Trebuchet(eqx.Module):
    """Geometry and environment of a trebuchet. SI units; a PyTree whose float fields
    are all differentiable (pass it to `jax.grad` like any array).

    Defaults: Trebuchet.jl's machine (converted from feet and pounds), real air
    (density 1.225 kg/m^3) and a smooth sphere's drag coefficient 0.47.
    ``Trebuchet(air_density=0.0)`` is the same machine in vacuum.
    """

    pivot_height: float = 1.524  # m, pivot above the ground
    long_arm: float = 2.0702  # m, pivot to the sling's end of the arm
    short_arm: float = 0.5334  # m, pivot to the counterweight's hinge
    hanger: float = 0.6096  # m, hinge to the counterweight's centre
    sling: float = 2.0827  # m, arm tip to projectile
    arm_mass: float = 4.831  # kg, uniform rod spanning both arms
    projectile_mass: float = 0.1488  # kg
    projectile_radius: float = 0.0379  # m (drag area pi r^2)
    air_density: float = 1.225  # kg/m^3; 0 = vacuum
    drag_coefficient: float = 0.47  # sphere
    gravity: float = 9.81  # m/s^2
    weight_inertia: float = 0.0421  # kg m^2, counterweight about its own centre (1 lb ft^2)


# --------------------------------------------------------------------------- geometry


def _unit(a):
    return jnp.stack([jnp.cos(a), jnp.sin(a)])


def positions(q, p: Trebuchet):
    """Points of the machine for coordinates q (3,). Returns a dict of (2,) arrays (m):
    arm tip, counterweight hinge, counterweight centre, projectile, arm centre of mass."""
    theta, psi, phi = q[0], q[1], q[2]
    tip = p.long_arm * _unit(theta)
    hinge = -p.short_arm * _unit(theta)
    weight = hinge + p.hanger * jnp.stack([jnp.sin(psi), -jnp.cos(psi)])
    projectile = tip + p.sling * _unit(phi)
    arm_cm = 0.5 * (p.long_arm - p.short_arm) * _unit(theta)
    return dict(tip=tip, hinge=hinge, weight=weight, projectile=projectile, arm_cm=arm_cm)


def _arm_inertia(p: Trebuchet):
    """Arm's moment of inertia about the pivot (uniform rod, parallel-axis theorem)."""
    length = p.long_arm + p.short_arm
    offset = 0.5 * (p.long_arm - p.short_arm)
    return p.arm_mass * (length**2 / 12.0 + offset**2)


def initial_q(p: Trebuchet):
    """Cocked configuration (3,): long arm's tip on the ground, sling flat forwards,
    counterweight hanging straight down."""
    theta0 = jnp.pi + jnp.arcsin(p.pivot_height / p.long_arm)
    return jnp.stack([theta0, jnp.zeros_like(theta0), jnp.zeros_like(theta0)])


def initial_state(p: Trebuchet):
    """Launch-phase state (q, qdot) at rest: two (3,) arrays."""
    q0 = initial_q(p)
    return (q0, jnp.zeros_like(q0))


# --------------------------------------------------------------------------- energy


def kinetic(q, qdot, p: Trebuchet, weight):
    """Kinetic energy (J) of arm, counterweight and projectile."""
    _, vel = jax.jvp(lambda q_: positions(q_, p), (q,), (qdot,))
    arm = 0.5 * _arm_inertia(p) * qdot[0] ** 2
    cw = 0.5 * weight * jnp.sum(vel["weight"] ** 2) + 0.5 * p.weight_inertia * qdot[1] ** 2
    proj = 0.5 * p.projectile_mass * jnp.sum(vel["projectile"] ** 2)
    return arm + cw + proj


def potential(q, p: Trebuchet, weight):
    """Gravitational potential energy (J), zero at the pivot's height."""
    pos = positions(q, p)
    heights = p.arm_mass * pos["arm_cm"][1] + weight * pos["weight"][1]
    heights = heights + p.projectile_mass * pos["projectile"][1]
    return p.gravity * heights


def lagrangian(q, qdot, p: Trebuchet, weight):
    return kinetic(q, qdot, p, weight) - potential(q, p, weight)


# --------------------------------------------------------------------------- launch phases
#
# Two derivations of the same equations. `_lagrange_dynamics` differentiates the
# Lagrangian above (mass matrix = Hessian of L in qdot): short and obviously right, but
# its nested autodiff makes a large XLA graph, slow to compile inside a solver and its
# adjoint. `_free_dynamics` writes the same terms out in closed form and is what the
# solves use; the tests check the two agree to rounding.


def _lagrange_dynamics(q, qdot, p, weight):
    """Mass matrix M (3, 3) and generalised force F (3,), M qddot = F, by autodiff of L."""
    dL_dqdot = jax.grad(lagrangian, argnums=1)
    mass = jax.jacfwd(dL_dqdot, argnums=1)(q, qdot, p, weight)
    # d/dt dL/dqdot = M qddot + (d2L / dqdot dq) qdot: the second term is a JVP.
    _, mixed = jax.jvp(lambda q_: dL_dqdot(q_, qdot, p, weight), (q,), (qdot,))
    force = jax.grad(lagrangian, argnums=0)(q, qdot, p, weight) - mixed
    return mass, force


def _free_dynamics(q, qdot, p, weight):
    """Mass matrix M (3, 3) and generalised force F (3,), M qddot = F, in closed form.

    Each point mass sits at a sum of terms r_i u(alpha_i), u(a) = (cos a, sin a), with
    alpha_i = q_i + const (counterweight: short arm at theta + pi, hanger at psi - pi/2;
    projectile: long arm at theta, sling at phi). Then M_ij = m r_i r_j cos(alpha_i -
    alpha_j), and the centripetal terms give F_i = m sum_j r_i r_j qdot_j^2 sin(alpha_j -
    alpha_i); gravity adds -dV/dq.
    """
    theta, psi, phi = q[0], q[1], q[2]
    w_th, w_ps, w_ph = qdot[0], qdot[1], qdot[2]
    m, g = p.projectile_mass, p.gravity
    cw = weight * p.short_arm * p.hanger  # counterweight coupling of theta and psi
    pr = m * p.long_arm * p.sling  # projectile coupling of theta and phi
    m00 = _arm_inertia(p) + weight * p.short_arm**2 + m * p.long_arm**2
    m11 = p.weight_inertia + weight * p.hanger**2
    m22 = m * p.sling**2
    m01 = cw * jnp.sin(theta - psi)
    m02 = pr * jnp.cos(theta - phi)
    zero = jnp.zeros_like(m01)
    mass = jnp.stack([jnp.stack([m00, m01, m02]), jnp.stack([m01, m11, zero]),
                      jnp.stack([m02, zero, m22])])
    arm_moment = p.arm_mass * 0.5 * (p.long_arm - p.short_arm)
    lever = arm_moment - weight * p.short_arm + m * p.long_arm  # net moment of the masses
    force = jnp.stack([
        cw * w_ps**2 * jnp.cos(theta - psi) + pr * w_ph**2 * jnp.sin(phi - theta)
        - g * lever * jnp.cos(theta),
        -cw * w_th**2 * jnp.cos(theta - psi) - g * weight * p.hanger * jnp.sin(psi),
        pr * w_th**2 * jnp.sin(theta - phi) - g * m * p.sling * jnp.cos(phi),
    ])
    return mass, force


def _solve3(mass, b):
    """x with mass @ x = b for a 3x3 matrix, by Cramer's rule (adjugate): a few dozen
    multiplications, cheap to compile and to differentiate, unlike an LU custom call."""
    r0, r1, r2 = mass[0], mass[1], mass[2]
    c0, c1, c2 = jnp.cross(r1, r2), jnp.cross(r2, r0), jnp.cross(r0, r1)
    det = r0 @ c0
    return (c0 * b[0] + c1 * b[1] + c2 * b[2]) / det


def _ground_dynamics(q, qdot, p, weight):
    """Accelerations (3,) and normal force (N, scalar) with the projectile held on the ground.

    Constraint c(q) = L sin(theta) + S sin(phi) + H = 0 (projectile at ground level), at the
    acceleration level: J qddot + qdot^T c'' qdot = 0 with J = dc/dq. With
    M qddot = F + J^T lam, lam = -(J M^-1 F + qdot^T c'' qdot) / (J M^-1 J^T); lam is the
    vertical push of the ground on the projectile (J^T lam is that force's generalised force).
    """
    mass, force = _free_dynamics(q, qdot, p, weight)
    theta, phi = q[0], q[2]
    jac = jnp.stack([p.long_arm * jnp.cos(theta), jnp.zeros_like(theta), p.sling * jnp.cos(phi)])
    curv = -p.long_arm * jnp.sin(theta) * qdot[0] ** 2 - p.sling * jnp.sin(phi) * qdot[2] ** 2
    a_free = _solve3(mass, force)
    m_inv_j = _solve3(mass, jac)
    # J M^-1 J^T > 0 unless J = 0 (never on the ground); guarded so that evaluating this
    # for an arbitrary state (a branch the caller discards) never gives inf or NaN.
    denom = jac @ m_inv_j
    normal = -(jac @ a_free + curv) / jnp.where(denom > 0, denom, 1.0)
    return a_free + normal * m_inv_j, normal


def ground_rhs(t, y, args):
    """Projectile sliding on the ground. y = (q, qdot), args = (params, weight, ...)."""
    q, qdot = y
    p, weight = args[:2]
    qddot, _ = _ground_dynamics(q, qdot, p, weight)
    return (qdot, qddot)


def normal_force(t, y, args):
    """Event of the ground phase: the ground's push on the projectile (N); lift-off at 0."""
    q, qdot = y
    p, weight = args[:2]
    return _ground_dynamics(q, qdot, p, weight)[1]


def sling_rhs(t, y, args):
    """Projectile swinging in the sling. y = (q, qdot), args = (params, weight, ...)."""
    q, qdot = y
    p, weight = args[:2]
    mass, force = _free_dynamics(q, qdot, p, weight)
    return (qdot, _solve3(mass, force))


def projectile_state(y, p):
    """Projectile position and velocity (two (2,) arrays) from a launch state (q, qdot)."""
    q, qdot = y
    pos, vel = jax.jvp(lambda q_: positions(q_, p)["projectile"], (q,), (qdot,))
    return pos, vel


def release_condition(t, y, args):
    """Event of the sling phase: args = (params, weight, angle), angle the release angle
    (rad above horizontal).

    |v| sin(angle - beta) where beta is the direction of the projectile's velocity:
    the projectile swings clockwise (beta decreases), so release is the upward crossing
    of zero (use direction=+1; the downward one is beta = angle + pi, moving backwards).
    Written as a cross product: smooth, no angle wrap-around.
    """
    p, _, angle = args
    _, vel = projectile_state(y, p)
    return vel[0] * jnp.sin(angle) - vel[1] * jnp.cos(angle)


# --------------------------------------------------------------------------- flight


def flight_rhs(t, y, args):
    """Free flight with quadratic drag relative to the air. y = (position (2,), velocity (2,)),
    args = (params, wind); wind is the air's horizontal velocity in m/s (positive = tailwind)."""
    pos, vel = y
    p, wind = args
    rel = vel - jnp.stack([wind, jnp.zeros_like(wind)])
    area = jnp.pi * p.projectile_radius**2
    # |rel| with a safe gradient at rel = 0 (a projectile at rest in the wind's frame).
    speed = jnp.sqrt(jnp.sum(rel**2) + 1e-30)
    drag = -0.5 * p.air_density * p.drag_coefficient * area * speed * rel / p.projectile_mass
    acc = drag + jnp.stack([0.0, -p.gravity])
    return (vel, acc)


def height_above_ground(t, y, args):
    """Event of the flight: the projectile's height above the ground (m); landing at 0."""
    pos, _ = y
    p, _ = args
    return pos[1] + p.pivot_height
