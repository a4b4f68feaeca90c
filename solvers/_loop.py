"""The forward integration loop, in rescaled time s in [0, 1] on a flat state.

`Problem` holds everything static about one solve; `forward` runs the loop, with the
step control of a controller, and records the steps only when asked to (the adjoints'
backward passes, dense output and `SaveAt(steps=True)` read them).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple, Optional

import equinox.internal as eqxi
import jax
import jax.numpy as jnp
import numpy as np

from ._base import Status
from ._event import Event, crossed, locate


class Params(NamedTuple):
    """The inputs of a solve that its gradient is taken with respect to (args, t0, t1),
    and the arrays it carries without differentiating them (consts)."""

    args: Any  # float arrays of (f, args)
    t0: Any
    t1: Any
    consts: Any  # `Consts`


class Consts(NamedTuple):
    arrays: Any  # non-float arrays of (f, args), e.g. integer indices
    controller: Any  # the step-size controller (its tolerances may be traced)


@dataclasses.dataclass(frozen=True, eq=False)
class Problem:
    """Static description of a solve. F(s, y, p) and G(s, y, p) act on flat y."""

    F: Callable
    method: Any
    max_steps: int
    n_save: int  # number of ts (0: none)
    # Which states the loop records: 0 none, 1 every step (one table row per step, the
    # adjoint's and dense output's record), k > 1 every k-th step (checkpoints).
    record_every: int = 0
    G: Optional[Callable] = None  # event condition on the flat state
    event: Optional[Event] = None
    # False: records carry no tangents. Pure forward mode never reads them, and would
    # otherwise push a whole table per tangent; forward-over-reverse (Hessians) does.
    differentiable_records: bool = True

    @property
    def max_events(self):
        return 1 if self.event is None or self.event.terminal else self.event.max_events

    def recording(self, every: int) -> "Problem":
        return dataclasses.replace(self, record_every=every)


class Records(NamedTuple):
    """Accepted steps of a solve: step k went from s[k] to s[k] + h[k] from state y[k]
    (y only every `record_every` steps). The last one is cut at the event if one fired.
    Without recording, s, h and y are empty."""

    s: Any  # (max_steps,)
    h: Any  # (max_steps,)
    y: Any  # (n_records, d); (max_steps, 2 + d) rows (s, h, y) when all are kept: use recorded_state
    n: Any  # number of accepted steps
    event_theta: Any  # where in its step the terminal event was found (1 if none)
    save_step: Any  # (n_save,) step index each saved point lies in (-1: after the event)
    event_step: Any  # (max_events,) step index of each event (-1 unused)


def recorded_state(prob: Problem, rec: Records, k):
    """The k-th recorded state: the state at step k when every state is recorded, else
    at step k * record_every."""
    if prob.record_every == 1:
        return jax.lax.dynamic_slice_in_dim(rec.y[k], 2, rec.y.shape[1] - 2)
    return rec.y[k]


class Out(NamedTuple):
    ys: Any  # (n_save, d)
    y_final: Any  # (d,)
    s_final: Any  # where the solve ended: 1, or the terminal event
    s_events: Any  # (max_events,) non-terminal crossings, +inf unused
    status: Any
    stats: Any  # (num_steps, num_accepted, num_rejected, num_f_evals, num_jac_evals)
    records: Records


class _Carry(NamedTuple):
    # Scalars travel packed, floats in `clock` and integers in `counts`: XLA on CPU
    # compiles one kernel per loop output (several milliseconds each on a first call),
    # and eight scalar outputs had made the loop body half again as big.
    clock: Any  # (5,) s, h proposed by the controller, h_try (the next step), controller memory (2)
    counts: Any  # (6,) int32: status, n_steps, n_acc, running (1 until the solve ends), n_f, n_jac
    y: Any
    mstate: Any
    g: Any
    ys: Any
    i_save: Any
    n_ev: Any
    s_events: Any
    rec: Records
    table: Any  # (max_steps, 2 [+ d]): s, h [, y] of each accepted step; (0, 2) unrecorded


def _unpack(x):
    """The scalars of a packed vector, each read once (every indexing is traced anew)."""
    return [x[i] for i in range(x.shape[0])]


def _clock(s, h, memory):
    """The packed float scalars of the carry, with the step to try next: h, cut to end
    exactly at s = 1 (snapping rather than leaving a sliver for rounding to create)."""
    near_end = s + h >= 1 - 64 * jnp.finfo(s.dtype).eps
    h_try = jnp.where(near_end, 1 - s, jnp.minimum(h, 1 - s))
    return jnp.concatenate([jnp.stack([s, h, h_try]), memory])


def _counts(*xs):
    return jnp.stack([jnp.asarray(x, jnp.int32) for x in xs])


def clamp01(x):
    """x clipped to [0, 1] with derivative 1 up to and at the bounds (jnp.clip's is 1/2
    there, which halved save-time gradients on step boundaries)."""
    return jnp.where(x < 0, jnp.zeros_like(x), jnp.where(x > 1, jnp.ones_like(x), x))


def interp(method, dense, y1, h, theta):
    """Dense output at theta: exactly y1 at theta >= 1 in value, with the interpolant's
    derivative in theta and in the step's inputs (a `where` alone has derivative 0 in
    theta there, which zeroed save-time gradients at step ends)."""
    y = method.interpolate(dense, h, theta)
    return y + jax.lax.stop_gradient(jnp.where(theta >= 1, y1 - y, jnp.zeros_like(y)))


def event_theta(prob: Problem, s, h, dense, y1, p):
    """Where in the step [s, s + h] the event condition crosses zero."""
    phi = lambda th: prob.G(s + th * h, interp(prob.method, dense, y1, h, th), p)  # noqa: E731
    return locate(phi, jnp.result_type(h))


def _const(prob, x):
    return x if prob.differentiable_records else jax.lax.stop_gradient(x)


def _init_carry(prob: Problem, y0, p, h0):
    method, dtype, d = prob.method, y0.dtype, y0.shape[0]
    E = prob.max_events
    mstate0 = method.init(prob.F, jnp.zeros((), dtype), y0, p)
    g0 = prob.G(jnp.zeros((), dtype), y0, p) if prob.event is not None else jnp.zeros((), dtype)
    # One row per accepted step, (s, h) and (when every state is kept) y: a single
    # dynamic-update-slice per step, which is what recording costs on CPU.
    every = prob.record_every
    rows = prob.max_steps if every else 0
    n_sparse = -(-prob.max_steps // every) + 1 if every > 1 else 0
    rec = Records(
        s=jnp.zeros(0, dtype), h=jnp.zeros(0, dtype),  # filled from `table` after the loop
        y=jnp.zeros((n_sparse, d), dtype),
        n=jnp.zeros((), jnp.int32), event_theta=jnp.ones((), dtype),
        save_step=jnp.full(prob.n_save, -1, jnp.int32), event_step=jnp.full(E, -1, jnp.int32),
    )
    return _Carry(
        clock=_clock(jnp.zeros((), dtype), jnp.asarray(h0, dtype), jnp.zeros(2, dtype)),
        counts=jnp.asarray(np.array([Status.SUCCESS, 0, 0, 1, method.init_evals, 0], np.int32)),
        y=y0, mstate=mstate0, g=g0, ys=jnp.zeros((prob.n_save, d), dtype),
        i_save=jnp.zeros((), jnp.int32), n_ev=jnp.zeros((), jnp.int32),
        s_events=jnp.full(E, jnp.inf, dtype), rec=rec,
        table=jnp.zeros((rows, 2 + (d if every == 1 else 0)), dtype),
    )


def _events(prob: Problem, c: _Carry, res, accept, s, h, s_new, n_acc, p):
    """Event detection on an attempted step. Returns (y_end, s_end, terminal_hit,
    overflow, g, n_ev, s_events, rec)."""
    rec = c.rec
    if prob.event is None:
        false = jnp.asarray(False)
        return res.y1, s_new, false, false, c.g, c.n_ev, c.s_events, rec
    g1 = prob.G(s_new, res.y1, p)
    hit = accept & crossed(prob.event, c.g, g1)
    theta = jax.lax.cond(hit, lambda: event_theta(prob, s, h, res.dense, res.y1, p),
                         lambda: jnp.ones((), h.dtype))
    s_hit = s + theta * h
    g_new = jnp.where(accept, g1, c.g)
    if prob.event.terminal:
        y_end = jnp.where(hit, interp(prob.method, res.dense, res.y1, h, theta), res.y1)
        rec = rec._replace(event_theta=jnp.where(hit, theta, rec.event_theta))
        return y_end, jnp.where(hit, s_hit, s_new), hit, jnp.asarray(False), g_new, c.n_ev, c.s_events, rec
    E = prob.max_events
    store = hit & (c.n_ev < E)
    idx = jnp.minimum(c.n_ev, E - 1)
    s_events = c.s_events.at[idx].set(jnp.where(store, s_hit, c.s_events[idx]))
    rec = rec._replace(event_step=rec.event_step.at[idx].set(jnp.where(store, n_acc, rec.event_step[idx])))
    return res.y1, s_new, jnp.asarray(False), hit & ~store, g_new, c.n_ev + store, s_events, rec


def _record(prob: Problem, c: _Carry, rec: Records, s, h, n_acc, accept):
    """Record the step at slot n_acc (a rejected step is overwritten by the next try)."""
    # The records are write-once buffers of the loop (see `forward`): each slot is written
    # by the one accepted step it belongs to, and rejected steps write nothing.
    table = c.table
    rec = rec._replace(n=n_acc + accept)
    every = prob.record_every
    if every:
        row = _const(prob, jnp.concatenate([jnp.stack([s, h])] + ([c.y] if every == 1 else [])))
        table = table.at[n_acc].set(row, pred=accept)
    if every > 1:
        rec = rec._replace(y=rec.y.at[n_acc // every].set(_const(prob, c.y), pred=accept & (n_acc % every == 0)))
    return rec, table


def _save(prob: Problem, c: _Carry, rec: Records, res, ss, s, h, s_end, n_acc, accept):
    """Save at the requested points inside the accepted part of the step."""
    if not prob.n_save:
        return c.ys, c.i_save, rec

    def save_cond(sc):
        j, _, _ = sc
        return accept & (j < prob.n_save) & (ss[jnp.minimum(j, prob.n_save - 1)] <= s_end)

    def save_body(sc):
        j, ys, steps = sc
        yj = interp(prob.method, res.dense, res.y1, h, clamp01((ss[j] - s) / h))
        return j + 1, ys.at[j].set(yj), steps.at[j].set(n_acc)

    i_save, ys, save_step = jax.lax.while_loop(save_cond, save_body, (c.i_save, c.ys, rec.save_step))
    return ys, i_save, rec._replace(save_step=save_step)


def _buffers(c: _Carry):
    return c.table, c.rec.y


def _status(prob: Problem, status, res, d, accept, last, terminal_hit, overflow, n_steps):
    """The solve's status after a step attempt, and whether the loop goes on."""
    finished = accept & (last | terminal_hit)
    status = jnp.where(terminal_hit, Status.EVENT, status)
    status = jnp.where(overflow, Status.MAX_EVENTS, status)
    if prob.event is not None and prob.event.terminal:
        status = jnp.where(finished & ~terminal_hit, Status.NO_EVENT, status)
    fail_code = jnp.where(~jnp.asarray(res.ok), Status.NEWTON_FAIL,
                          jnp.where(jnp.all(jnp.isfinite(res.y1)), Status.DT_MIN, Status.NONFINITE))
    status = jnp.where(d.stuck, fail_code, status)
    out_of_steps = ~finished & ~d.stuck & (n_steps >= prob.max_steps)
    status = jnp.where(out_of_steps, Status.MAX_STEPS, status)
    return status, ~(finished | d.stuck | out_of_steps)


def forward(prob: Problem, y0, p: Params, ss, h0):
    """Integrate from s=0 to s=1 (or a terminal event). ss: (n_save,) save points."""
    method, controller = prob.method, p.consts.controller
    span = jnp.abs(p.t1 - p.t0)
    span = jnp.where(span == 0, 1.0, span)

    def body(c: _Carry):
        s, h_prop, h, *memory = _unpack(c.clock)  # h: the step to try
        status, n_steps, n_acc, _, n_f, n_jac = _unpack(c.counts)
        res = method.step(prob.F, s, c.y, h, p, c.mstate)
        d = controller.decide(method, c.y, res, s, h, jnp.stack(memory), span)
        accept = d.accept
        h_next = jnp.where(accept & (h < h_prop), h_prop, d.h_next)  # don't let the last cut stick
        last = h >= 1 - s
        s_new = jnp.where(last, jnp.ones_like(s), s + h)
        y_end, s_end, terminal_hit, overflow, g, n_ev, s_events, rec = _events(
            prob, c, res, accept, s, h, s_new, n_acc, p)
        rec, table = _record(prob, c, rec, s, h, n_acc, accept)
        ys, i_save, rec = _save(prob, c, rec, res, ss, s, h, s_end, n_acc, accept)
        n_steps = n_steps + 1
        status, running = _status(prob, status, res, d, accept, last, terminal_hit, overflow, n_steps)
        sel = lambda a, b: jax.tree_util.tree_map(lambda x, y: jnp.where(accept, x, y), a, b)  # noqa: E731
        return _Carry(
            clock=_clock(jnp.where(accept, s_end, s), h_next, d.memory),
            counts=_counts(status, n_steps, n_acc + accept, running, n_f + res.n_f, n_jac + res.n_jac),
            y=jnp.where(accept, y_end, c.y), mstate=sel(res.state, c.mstate), g=g, ys=ys,
            i_save=i_save, n_ev=n_ev, s_events=s_events, rec=rec, table=table,
        )

    def body_same_types(c):
        # Python-float constants must not promote float32 state to float64 under x64.
        new = body(c)
        return jax.tree_util.tree_map(lambda x, old: x.astype(old.dtype), new, c)

    # Records as equinox buffers: under vmap a batched loop selects between the old and new
    # carry after every step, which for a plain (max_steps, d) table is a copy of the whole
    # table per step (a vmapped neural ODE gradient took 2.3x longer at max_steps 4096 than
    # at 64); buffer writes stay in place.
    c = eqxi.while_loop(lambda c: c.counts[3] != 0, body_same_types, _init_carry(prob, y0, p, h0),
                        buffers=_buffers, kind="lax")
    status, n_steps, n_acc, _, n_f, n_jac = _unpack(c.counts)
    stats = jnp.stack([n_steps, n_acc, n_steps - n_acc, n_f, n_jac])
    # The whole table stands in for y (see `recorded_state`): slicing its columns off
    # would copy max_steps x d numbers, which the backward pass then paid for.
    rec = c.rec._replace(s=c.table[:, 0], h=c.table[:, 1], y=c.table if prob.record_every == 1 else c.rec.y)
    return Out(ys=c.ys, y_final=c.y, s_final=c.clock[0], s_events=c.s_events, status=status,
               stats=stats, records=rec)
