"""Events: sign changes of scalar conditions, located on a step's dense output."""

from __future__ import annotations

import dataclasses
import operator
from typing import Callable, Optional, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np


@dataclasses.dataclass(frozen=True)
class Event:
    """A zero crossing of `cond(t, y, args) -> scalar`.

    direction: +1 counts only upward crossings (cond goes from < 0 to >= 0), -1 only
    downward ones (> 0 to <= 0), None both. A zero of cond at t0 itself is not an event.
    terminal: True stops the solve at the first crossing (`Solution.t_event`); an int N
    stops it at the N-th (as scipy's `terminal=N`); False never stops it. Every crossing
    up to and including the one that stops the solve is recorded in `Solution.t_events`
    and `Solution.y_events` (the state there), at most `max_events` of them: more end the
    solve with status MAX_EVENTS rather than being dropped silently.

    Crossings are found by a sign change of cond at the ends of each accepted step and
    located by bisection on the step's dense output to machine precision. Two crossings
    inside one step cancel and are missed: bound the step size (PIDController(dtmax=...))
    if cond oscillates faster than the solution. Event times are differentiable
    (implicit function theorem), as are the states at them.
    """

    cond: Callable
    direction: Optional[int] = None
    terminal: Union[bool, int] = True
    max_events: int = 64

    def __post_init__(self):
        if not callable(self.cond):
            raise TypeError("Event.cond must be a function cond(t, y, args) -> scalar")
        if self.direction not in (None, 1, -1):
            raise ValueError(f"Event.direction must be None, +1 or -1, got {self.direction!r}")
        try:
            count = operator.index(self.terminal)
        except TypeError:
            raise TypeError(f"Event.terminal must be True, False or a count N >= 1, got {self.terminal!r}") from None
        if count < 0:
            raise ValueError(f"Event.terminal must be True, False or a count N >= 1, got {self.terminal!r}")
        if isinstance(self.max_events, bool) or operator.index(self.max_events) < 1:
            raise ValueError("Event.max_events must be an int of at least 1")

    @property
    def stop_after(self) -> int:
        """The crossing that stops the solve (0: none)."""
        return int(self.terminal)


@dataclasses.dataclass(frozen=True)
class Events:
    """The events of one solve, as the loop sees them: K conditions at once. Compared by
    value (its Events are frozen), so a solve called again with the same events reuses
    its compilation (by identity, every call had recompiled)."""

    events: tuple

    @staticmethod
    def of(event: Union[Event, Sequence[Event]]) -> "Events":
        return Events(tuple(event) if isinstance(event, (list, tuple)) else (event,))

    @property
    def size(self) -> int:
        return len(self.events)

    @property
    def max_events(self) -> int:
        return max(int(e.max_events) for e in self.events)

    @property
    def any_terminal(self) -> bool:
        return any(e.stop_after for e in self.events)

    def stop_after(self):
        return np.array([e.stop_after for e in self.events], np.int32)

    def capacity(self):
        return np.array([int(e.max_events) for e in self.events], np.int32)

    def crossed(self, g0, g1):
        """(K,) whether each condition went from g0 to g1 across zero in a counted direction."""
        up = (g0 < 0) & (g1 >= 0)
        down = (g0 > 0) & (g1 <= 0)
        d = np.array([0 if e.direction is None else e.direction for e in self.events])
        return jnp.where(d == 1, up, jnp.where(d == -1, down, up | down))


def _bisect(phi, x0):
    # Roots of phi (elementwise: component k depends on x[k] only) on [0, 1] given sign
    # changes; bisection is slow but cannot fail, and its result is differentiated by the
    # implicit function theorem, not unrolled.
    lo, hi = jnp.zeros_like(x0), jnp.ones_like(x0)
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
    # g is the linearisation of phi at the root: diagonal, so g(ones) holds the slopes.
    # Guard a zero slope (a tangential touch, or a condition that did not cross) so that
    # unused entries never turn 0 * inf into NaN.
    slope = g(jnp.ones_like(y))
    safe = jnp.where(slope == 0, 1.0, slope)
    return jnp.where(slope == 0, 0.0, y / safe)


def locate(phi, dtype, n):
    """(n,) thetas in [0, 1] where the components of phi change sign; differentiable
    through phi's closure."""
    return jax.lax.custom_root(phi, jnp.zeros((n,), dtype), _bisect, _tangent_solve)
