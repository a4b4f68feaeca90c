"""A cart-pole: a cart on a frictionless horizontal track with a uniform pole hinged on it,
pushed by a horizontal force. Differentiable through `solvers.solve`.

    from physics import cartpole
    p = cartpole.CartPole()                              # SI units, a PyTree
    sol = cartpole.simulate(p, controller, y0, t1=5.0, ts=jnp.linspace(0, 5, 101))
    e = cartpole.energy(y, p)                             # J

State y = (x, theta, x_dot, theta_dot), shape (4,): cart position (m, + to the right), pole
angle (rad) from the downward vertical, counter-clockwise seen with x to the right (theta =
0 hanging, pi upright), and their rates. The force u (N) pushes the cart along +x.

Equations (Lagrangian L = T - V, h = pole_length / 2, I = pole_mass pole_length^2 / 12):
    T = (M + m) x_dot^2 / 2 + m h cos(theta) x_dot theta_dot + (m h^2 + I) theta_dot^2 / 2
    V = -m g h cos(theta)
    [[M + m, m h cos th], [m h cos th, m h^2 + I]] (x_ddot, th_ddot)
        = (u + m h sin(th) th_dot^2, -m g h sin(th))
written out in closed form in `accelerations`; `tests/test_cartpole.py` checks them against
autodiff of `lagrangian` (mass matrix = Hessian of L in the rates).
"""

from __future__ import annotations

from typing import Callable

import equinox as eqx
import jax.numpy as jnp

import solvers


class CartPole(eqx.Module):
    """Parameters (SI units; every float field differentiable).

    cart_mass (kg), pole_mass (kg, uniform rod), pole_length (m), gravity (m/s^2).
    Defaults: the classic benchmark's 1 kg cart and 0.1 kg pole, here 1 m long.
    """

    cart_mass: float = 1.0
    pole_mass: float = 0.1
    pole_length: float = 1.0
    gravity: float = 9.81

    def __check_init__(self):
        for name in ("cart_mass", "pole_mass", "pole_length", "gravity"):
            value = getattr(self, name)
            if isinstance(value, (int, float)) and not value > 0:
                raise ValueError(f"CartPole.{name} must be positive, got {value!r}")


def _inertia(p):
    return p.pole_mass * p.pole_length**2 / 12.0


def kinetic(q, qdot, p: CartPole):
    """Kinetic energy (J) at coordinates q = (x, theta) and rates qdot, both (2,)."""
    h = 0.5 * p.pole_length
    v_cm = jnp.stack([qdot[0] + h * jnp.cos(q[1]) * qdot[1], h * jnp.sin(q[1]) * qdot[1]])
    return (0.5 * p.cart_mass * qdot[0] ** 2 + 0.5 * p.pole_mass * jnp.sum(v_cm**2)
            + 0.5 * _inertia(p) * qdot[1] ** 2)


def potential(q, p: CartPole):
    """Gravitational potential energy (J), zero with the pole's centre at the track's height."""
    return -p.pole_mass * p.gravity * 0.5 * p.pole_length * jnp.cos(q[1])


def lagrangian(q, qdot, p: CartPole):
    return kinetic(q, qdot, p) - potential(q, p)


def energy(y, p: CartPole):
    """Total mechanical energy (J) of a state y (4,); for states (n, 4), use jax.vmap."""
    return kinetic(y[:2], y[2:], p) + potential(y[:2], p)


def accelerations(y, u, p: CartPole):
    """(x_ddot, theta_ddot), shape (2,), for state y (4,) and force u (N), in closed form."""
    _, th, _, th_dot = y[0], y[1], y[2], y[3]
    m, h = p.pole_mass, 0.5 * p.pole_length
    a, b, d = p.cart_mass + m, m * h * jnp.cos(th), m * h**2 + _inertia(p)
    f0 = u + m * h * jnp.sin(th) * th_dot**2
    f1 = -m * p.gravity * h * jnp.sin(th)
    det = a * d - b * b  # > 0: the mass matrix is positive definite
    return jnp.stack([(d * f0 - b * f1) / det, (a * f1 - b * f0) / det])


def rhs(t, y, args):
    """Vector field for `solvers.solve`: args = (params, controller), controller(t, y) -> u (N)."""
    p, controller = args
    u = controller(t, y)
    return jnp.concatenate([y[2:], accelerations(y, u, p)])


def simulate(p: CartPole, controller: Callable, y0, t1: float, ts=None, **solve_options):
    """Solves the cart-pole from y0 (4,) at t = 0 to t1 under controller(t, y) -> u (N),
    which may be an equinox Module (its parameters are differentiable, as are p, y0).
    ts: save times; solve_options: passed to `solvers.solve` (rtol, atol, method, adjoint...).
    Returns the `solvers.Solution`."""
    y0 = jnp.asarray(y0, float)
    if y0.shape != (4,):
        raise ValueError(f"cartpole.simulate: y0 must have shape (4,) = (x, theta, x_dot, "
                         f"theta_dot), got {y0.shape}")
    return solvers.solve(rhs, y0, 0.0, t1, (p, controller), ts=ts, **solve_options)


def free(t, y):
    """No force: the passive cart-pole (u = 0)."""
    return jnp.zeros_like(y[0])


__all__ = ["CartPole", "kinetic", "potential", "lagrangian", "energy", "accelerations", "rhs",
           "simulate", "free"]
