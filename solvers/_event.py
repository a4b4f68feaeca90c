"""Events: sign changes of a scalar condition, located on a step's dense output."""

from __future__ import annotations

import dataclasses
from typing import Callable, Optional

import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class Event:
    """A zero crossing of `cond(t, y, args) -> scalar`.

    direction: +1 counts only upward crossings (cond goes from < 0 to >= 0), -1 only
    downward ones (> 0 to <= 0), None both. A zero of cond at t0 itself is not an event.
    terminal: stop the solve at the first crossing (`Solution.t_event`); otherwise record
    up to `max_events` crossings in `Solution.t_events` and carry on.

    Crossings are found by a sign change of cond at the ends of each accepted step and
    located by bisection on the step's dense output to machine precision. Two crossings
    inside one step cancel and are missed: lower rtol or bound the step size if cond
    oscillates faster than the solution. Event times are differentiable (implicit
    function theorem), as is the state at a terminal event.
    """

    cond: Callable
    direction: Optional[int] = None
    terminal: bool = True
    max_events: int = 64

    def __post_init__(self):
        if not callable(self.cond):
            raise ValueError("Event.cond must be a function cond(t, y, args) -> scalar")
        if self.direction not in (None, 1, -1):
            raise ValueError(f"Event.direction must be None, +1 or -1, got {self.direction!r}")
        if self.max_events < 1:
            raise ValueError("Event.max_events must be at least 1")


def crossed(event: Event, g0, g1):
    """Whether cond went from g0 to g1 across zero in a direction the event counts."""
    up = (g0 < 0) & (g1 >= 0)
    down = (g0 > 0) & (g1 <= 0)
    if event.direction == 1:
        return up
    if event.direction == -1:
        return down
    return up | down


def _bisect(phi, _):
    # Root of phi on [0, 1] given a sign change; bisection is slow but cannot fail, and
    # its result is differentiated by the implicit function theorem, not unrolled.
    lo, hi = jnp.zeros(()), jnp.ones(())
    g_lo = phi(lo)
    dtype = jnp.result_type(g_lo)
    lo, hi = lo.astype(dtype), hi.astype(dtype)
    steps = 2 * jnp.finfo(dtype).nmant

    def body(i, c):
        lo, hi, g_lo = c
        mid = 0.5 * (lo + hi)
        g_mid = phi(mid)
        left = jnp.sign(g_mid) == jnp.sign(g_lo)
        return (jnp.where(left, mid, lo), jnp.where(left, hi, mid), jnp.where(left, g_mid, g_lo))

    lo, hi, _ = jax.lax.fori_loop(0, steps, body, (lo, hi, g_lo))
    # hi is the first point past the crossing: cond there has the new sign (or is 0).
    return hi


def _tangent_solve(g, y):
    # g is the linearisation of phi at the root: a scalar slope. Guard a zero slope (a
    # tangential touch) so unused branches under vmap never turn 0 * inf into NaN.
    slope = g(jnp.ones_like(y))
    safe = jnp.where(slope == 0, 1.0, slope)
    return jnp.where(slope == 0, 0.0, y / safe)


def locate(phi, dtype):
    """theta in [0, 1] where phi changes sign; differentiable through phi's closure."""
    return jax.lax.custom_root(phi, jnp.zeros((), dtype), _bisect, _tangent_solve)
