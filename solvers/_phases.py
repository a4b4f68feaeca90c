"""Hybrid systems: phases of (vector field, terminal event, reset map) chained end to end.

    phases = [solvers.Phase(fall, floor, bounce)] * 5            # a ball bouncing 5 times
    sol = solvers.solve_phases(phases, y0, 0.0, 10.0, args)
    sol.t_events      # (5,) the bounce times; sol.ys: (1, ...) the state after the last reset

Each phase is one `solve` with a terminal event, from where the previous phase ended; when
its event fires, `reset(t, y, args)` maps the state at the event to the next phase's
initial state (which may have another structure). Differentiable end to end (event times
by the implicit function theorem, inside `solve`) and vmap-able: it is plain composition.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp

from ._base import Status
from ._event import Event
from ._solve import Solution, solve


class Phase(eqx.Module):
    """One phase of a hybrid system.

    f(t, y, args) -> dy/dt: the phase's vector field. event: a terminal `Event` that ends
    the phase. reset(t, y, args) -> y: maps the state at the event to the next phase's
    initial state (None: the identity); not applied if the event did not fire, unless it
    changes the state's structure. duration: optional bound on the phase's length
    (s): the phase's solve runs from its start t_k to min(t_k + duration, t1); None: to t1.
    """

    f: Callable = eqx.field(static=True)
    event: Event = eqx.field(static=True)
    reset: Optional[Callable] = eqx.field(static=True, default=None)
    duration: Optional[float] = eqx.field(static=True, default=None)

    def __check_init__(self):
        if not callable(self.f):
            raise TypeError("Phase.f must be a function f(t, y, args) -> dy/dt")
        if not isinstance(self.event, Event) or not self.event.terminal:
            raise TypeError("Phase.event must be a terminal solvers.Event (it ends the phase)")
        if self.reset is not None and not callable(self.reset):
            raise TypeError("Phase.reset must be a function reset(t, y, args) -> y, or None")
        if self.duration is not None and not self.duration > 0:
            raise ValueError(f"Phase.duration must be positive (s) or None, got {self.duration!r}")


class PhasesSolution(eqx.Module):
    """The result of `solve_phases` (n phases).

    t_events: (n,) end time of each phase, in order: its event time, +inf where the event
        did not fire (that phase then ran to its end bound, and the later ones have zero
        length). Differentiable.
    ts, ys: the save times and states: with ts=None, (1,) and the final state (after the
        last phase's reset when its event fired); with ts, each save time takes the state
        of the phase running at that time (leaves with a leading axis len(ts)).
    status: int32 `Status`: EVENT when every phase's event fired, else the status of the
        first phase whose event did not fire. phase_status: (n,) each phase's status.
    stats: the per-phase stats summed. phases: tuple of each phase's `Solution` (dense
        output through `Solution.evaluate`, per-phase states at the events).
    """

    ts: Any
    ys: Any
    t_events: Any
    status: Any
    phase_status: Any
    stats: dict
    phases: tuple


def _check(phases):
    if isinstance(phases, Phase):
        raise TypeError("solve_phases: phases must be a list of solvers.Phase, got one Phase; "
                        "wrap it in a list: [phase]")
    phases = tuple(phases)
    if not phases or not all(isinstance(ph, Phase) for ph in phases):
        raise TypeError("solve_phases: phases must be a non-empty list of solvers.Phase(f, event, reset)")
    return phases


def _save(ts, sols, ends):
    """States at the save times: each from the phase whose [start, end) holds it."""
    ts = jnp.asarray(ts)
    out = jax.tree_util.tree_map(lambda x: x, sols[-1].ys)
    for k in range(len(sols) - 2, -1, -1):
        inside = ts < ends[k]
        out = jax.tree_util.tree_map(
            lambda a, b: jnp.where(inside.reshape((-1,) + (1,) * (a.ndim - 1)), a, b),
            sols[k].ys, out)
    return out


def solve_phases(phases: Sequence[Phase], y0, t0, t1, args=None, *, ts=None,
                 **solve_options) -> PhasesSolution:
    """Solves the phases one after another from (t0, y0) up to at most t1.

    phases: list of `Phase`. y0: initial state of the first phase (any PyTree). args: passed
    to every f, event condition and reset. ts: optional save times in [t0, t1], which then
    must have a state structure shared by the phases that run through them. solve_options:
    passed to each `solve` (method, rtol, atol, dt0, max_steps, adjoint, throw...).
    Returns a `PhasesSolution`. Differentiable in y0, t0, args (and the times at which
    phases end) in reverse mode, forward mode with adjoint=ForwardMode(); vmap-able.
    """
    phases = _check(phases)
    if "event" in solve_options:
        raise TypeError("solve_phases: events belong to the phases (Phase.event), not to solve_options")
    t_start, y = jnp.asarray(t0, float), y0
    t1 = jnp.asarray(t1, float)
    sols, ends = [], []
    for ph in phases:
        t_end = t1 if ph.duration is None else jnp.minimum(t_start + ph.duration, t1)
        phase_ts = None if ts is None else jnp.clip(jnp.asarray(ts, float), t_start, t_end)
        sol = solve(ph.f, y, t_start, t_end, args, event=ph.event, ts=phase_ts, **solve_options)
        sols.append(sol)
        fired = sol.status == Status.EVENT
        # A phase that did not fire ends at its bound; the next phase starts there.
        t_stop = jnp.where(fired, sol.t_event, t_end)
        ends.append(jnp.where(fired, sol.t_event, jnp.inf))
        y_stop = jax.tree_util.tree_map(lambda x: x[-1], sol.ys)
        y = y_stop if ph.reset is None else _reset(ph.reset, fired, t_stop, y_stop, args)
        t_start = t_stop
    return _assemble(sols, ends, y, ts)


def _reset(reset, fired, t, y, args):
    """reset(t, y, args) where the event fired, y where it did not. A reset that changes
    the state's structure (a sling's angles to a projectile's position) is applied either
    way: the next phase needs that structure (its status then says what went wrong)."""
    new = reset(t, y, args)
    same = jax.tree_util.tree_structure(new) == jax.tree_util.tree_structure(y) and all(
        jnp.shape(a) == jnp.shape(b) for a, b in zip(jax.tree_util.tree_leaves(new),
                                                     jax.tree_util.tree_leaves(y)))
    if not same:
        return new
    return jax.tree_util.tree_map(lambda a, b: jnp.where(fired, a, b), new, y)


def _assemble(sols: list[Solution], ends, y_final, ts):
    phase_status = jnp.stack([jnp.asarray(s.status, jnp.int32) for s in sols])
    fired = phase_status == int(Status.EVENT)
    first_bad = jnp.argmin(fired)  # first phase whose event did not fire (0 if all fired)
    status = jnp.where(jnp.all(fired), jnp.int32(Status.EVENT), phase_status[first_bad])
    stats = {k: sum(s.stats[k] for s in sols) for k in sols[0].stats}
    if ts is None:
        out_ts = jnp.where(fired[-1], ends[-1], sols[-1].ts[-1])[None]
        ys = jax.tree_util.tree_map(lambda x: jnp.asarray(x)[None], y_final)
    else:
        out_ts = jnp.asarray(ts, float)
        ys = _save(out_ts, sols, ends)
    return PhasesSolution(ts=out_ts, ys=ys, t_events=jnp.stack(ends), status=status,
                          phase_status=phase_status, stats=stats, phases=tuple(sols))
