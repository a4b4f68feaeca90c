"""Symplectic integrators for separable Hamiltonian systems (fixed steps).

The state is y = (q, p) and f(t, (q, p), args) -> (dq/dt, dp/dt) with dq/dt depending
only on p and dp/dt only on q. Energy errors stay bounded over very long runs instead
of drifting as with Runge-Kutta methods.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar, Optional

import jax
from jax.flatten_util import ravel_pytree

from ._base import AbstractMethod, StepResult
from ._rk import RK4, hermite


def _kdk(f, s, q, p, h, n_q, args, force):
    """One kick-drift-kick (velocity Verlet) step; `force` is dp/ds at (s, q)."""
    p_half = p + 0.5 * h * force
    q1 = q + h * f(s + 0.5 * h, _join(q, p_half), args)[:n_q]
    force1 = f(s + h, _join(q1, p_half), args)[n_q:]
    return q1, p_half + 0.5 * h * force1, force1


def _join(q, p):
    return jax.numpy.concatenate([q, p])


class _Symplectic(AbstractMethod):
    n_q: int = -1  # size of q in the flat state, filled in by `specialize`
    order: ClassVar[int] = 2
    error_order: ClassVar[Optional[int]] = None
    weights: ClassVar[tuple] = (1.0,)
    init_evals = 1

    def specialize(self, y0):
        if not (isinstance(y0, (tuple, list)) and len(y0) == 2):
            raise ValueError(
                f"{type(self).__name__} needs y0 = (q, p) and f returning (dq/dt, dp/dt) for a "
                "separable Hamiltonian system"
            )
        n_q = ravel_pytree(y0[0])[0].size
        if n_q != ravel_pytree(y0[1])[0].size:
            raise ValueError(f"{type(self).__name__}: q and p must have the same size")
        return dataclasses.replace(self, n_q=n_q)

    def backsolve_method(self):
        # The augmented (y, adjoint) system is not separable: a splitting applied to it
        # is only first order. RK4 on the same fixed steps keeps the method's order.
        return RK4()

    def init(self, f, s, y, args):
        return f(s, y, args)

    def step(self, f, s, y, h, args, f0):
        n = self.n_q
        q, p, force = y[:n], y[n:], f0[n:]
        t = s
        for w in self.weights:
            q, p, force = _kdk(f, t, q, p, w * h, n, args, force)
            t = t + w * h
        y1 = _join(q, p)
        f1 = f(s + h, y1, args)
        return StepResult(y1, jax.numpy.zeros_like(y), (y, y1, f0, f1), f1, n_f=2 * len(self.weights) + 1)

    def interpolate(self, dense, h, theta):
        return hermite(*dense, h, theta)


class Verlet(_Symplectic):
    """Velocity Verlet (Stormer-Verlet, kick-drift-kick), order 2, symplectic."""

    order: ClassVar[int] = 2


_CBRT2 = 2.0 ** (1.0 / 3.0)
_W1 = 1.0 / (2.0 - _CBRT2)


class Yoshida4(_Symplectic):
    """Yoshida's 4th order composition of three Verlet steps, symplectic."""

    order: ClassVar[int] = 4
    weights: ClassVar[tuple] = (_W1, -_CBRT2 * _W1, _W1)

