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
from equinox.internal import unvmap_any

from ._base import Status
from ._event import Events, locate


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
    G: Optional[Callable] = None  # event conditions on the flat state: (K,)
    events: Optional[Events] = None
    # False: records carry no tangents. Pure forward mode never reads them, and would
    # otherwise push a whole table per tangent; forward-over-reverse (Hessians) does.
    differentiable_records: bool = True
    throw: bool = True  # failures (also of a gradient) raise rather than only report

    @property
    def n_events(self):
        return 0 if self.events is None else self.events.size

    @property
    def max_events(self):
        """Slots per event for recorded crossings (a terminal event's stop included)."""
        if self.events is None:
            return 1
        return max(min(int(e.max_events), e.stop_after or int(e.max_events)) for e in self.events.events)

    def recording(self, every: int) -> "Problem":
        return dataclasses.replace(self, record_every=every)


class Records(NamedTuple):
    """Accepted steps of a solve: step k went from s[k] to s[k] + h[k] from state y[k]
    (y only every `record_every` steps: use `recorded_state`). The last one is cut at the
    event if one fired. Without recording, the table and y are empty."""

    # (max_steps, 2 [+ d]) rows (s, h [, y]) of the accepted steps, y when every state is
    # kept; (0, 2) unrecorded. One table, never sliced into columns by the loop: under vmap
    # the two (batch, max_steps) column copies cost 0.28 ms of a 3 ms neural ODE gradient.
    table: Any
    y: Any  # (n_records, d) the states of every record_every-th step when record_every > 1
    n: Any  # number of accepted steps
    event_theta: Any  # where in its step the terminal event was found (1 if none)
    event_index: Any  # which event stopped the solve (-1 if none)
    save_step: Any  # (n_save,) step index each saved point lies in (-1: after the event)
    event_step: Any  # (K, max_events) step index of each recorded crossing (-1 unused)

    @property
    def s(self):
        """(max_steps,) where each step starts (index it, rather than keep the column)."""
        return self.table[:, 0]

    @property
    def h(self):
        """(max_steps,) each step's size."""
        return self.table[:, 1]


def recorded_state(prob: Problem, rec: Records, k):
    """The k-th recorded state: the state at step k when every state is recorded, else
    at step k * record_every."""
    if prob.record_every == 1:
        return jax.lax.dynamic_slice_in_dim(rec.table[k], 2, rec.table.shape[1] - 2)
    return rec.y[k]


class Out(NamedTuple):
    ys: Any  # (n_save, d)
    y_final: Any  # (d,)
    s_final: Any  # where the solve ended: 1, or the terminal event
    s_events: Any  # (K, max_events) times of the crossings of each event, +inf unused
    y_events: Any  # (K, max_events, d) states there (unused slots: 0)
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
    y_events: Any
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


def event_thetas(prob: Problem, s, h, dense, y1, p):
    """(K,) where in the step [s, s + h] each event condition crosses zero (meaningful for
    the conditions that changed sign), located together: condition k is read at its own
    theta_k, so the root-finding problem is diagonal."""
    def phi(thetas):
        at = lambda th: prob.G(s + th * h, interp(prob.method, dense, y1, h, th), p)  # noqa: E731
        return jnp.diagonal(jax.vmap(at)(thetas))

    return locate(phi, jnp.result_type(h), prob.n_events)


def _const(prob, x):
    return x if prob.differentiable_records else jax.lax.stop_gradient(x)


def _init_carry(prob: Problem, y0, p, h0):
    method, dtype, d = prob.method, y0.dtype, y0.shape[0]
    E, K = prob.max_events, max(prob.n_events, 1)
    mstate0 = method.init(prob.F, jnp.zeros((), dtype), y0, p)
    g0 = prob.G(jnp.zeros((), dtype), y0, p) if prob.events is not None else jnp.zeros((1,), dtype)
    # One row per accepted step, (s, h) and (when every state is kept) y: a single
    # dynamic-update-slice per step, which is what recording costs on CPU.
    every = prob.record_every
    rows = prob.max_steps if every else 0
    n_sparse = -(-prob.max_steps // every) + 1 if every > 1 else 0
    rec = Records(
        table=jnp.zeros((0, 2), dtype),  # the carry's `table` after the loop
        y=jnp.zeros((n_sparse, d), dtype),
        n=jnp.zeros((), jnp.int32), event_theta=jnp.ones((), dtype), event_index=-jnp.ones((), jnp.int32),
        save_step=jnp.full(prob.n_save, -1, jnp.int32), event_step=jnp.full((K, E), -1, jnp.int32),
    )
    return _Carry(
        clock=_clock(jnp.zeros((), dtype), jnp.asarray(h0, dtype), jnp.zeros(2, dtype)),
        counts=jnp.asarray(np.array([Status.SUCCESS, 0, 0, 1, method.init_evals, method.init_jacs], np.int32)),
        y=y0, mstate=mstate0, g=g0, ys=jnp.zeros((prob.n_save, d), dtype),
        i_save=jnp.zeros((), jnp.int32), n_ev=jnp.zeros(K, jnp.int32),
        s_events=jnp.full((K, E), jnp.inf, dtype), y_events=jnp.zeros((K, E, d), dtype), rec=rec,
        table=jnp.zeros((rows, 2 + (d if every == 1 else 0)), dtype),
    )


class _EventStep(NamedTuple):
    y_end: Any
    s_end: Any
    stopped: Any  # a terminal event ended the solve in this step
    overflow: Any  # a crossing found no free slot
    g: Any
    n_ev: Any
    s_events: Any
    y_events: Any
    rec: Records


def _events(prob: Problem, c: _Carry, res, accept, s, h, s_new, n_acc, p) -> _EventStep:
    """Event detection on an attempted step: crossings recorded, the step cut at the
    first crossing that stops the solve."""
    false = jnp.asarray(False)
    if prob.events is None:
        return _EventStep(res.y1, s_new, false, false, c.g, c.n_ev, c.s_events, c.y_events, c.rec)
    ev, K, E = prob.events, prob.n_events, prob.max_events
    g1 = prob.G(s_new, res.y1, p)
    hit = accept & ev.crossed(c.g, g1)
    # unvmap_any: under vmap the cond stays a cond, taken when any member crossed (a
    # batched predicate would make it a select, bisecting on every step of every member:
    # a vmapped trebuchet shot was 6x slower than the shots one after another).
    thetas = jax.lax.cond(unvmap_any(jnp.any(hit)), lambda: event_thetas(prob, s, h, res.dense, res.y1, p),
                          lambda: jnp.ones(K, h.dtype))
    stop_after = ev.stop_after()
    stops = hit & (stop_after > 0) & (c.n_ev + 1 >= stop_after)
    first = jnp.argmin(jnp.where(stops, thetas, jnp.inf))
    stopped = jnp.any(stops)
    theta_stop = jnp.where(stopped, thetas[first], 1.0)
    counted = hit & (thetas <= theta_stop)  # crossings inside the part of the step that is kept
    store = counted & (c.n_ev < jnp.minimum(ev.capacity(), E))
    y_at = jax.vmap(lambda th: interp(prob.method, res.dense, res.y1, h, th))(thetas)  # (K, d)
    k, slot = jnp.arange(K), jnp.minimum(c.n_ev, E - 1)
    s_events = c.s_events.at[k, slot].set(jnp.where(store, s + thetas * h, c.s_events[k, slot]))
    y_events = c.y_events.at[k, slot].set(jnp.where(store[:, None], y_at, c.y_events[k, slot]))
    rec = c.rec._replace(
        event_step=c.rec.event_step.at[k, slot].set(jnp.where(store, n_acc, c.rec.event_step[k, slot])),
        event_theta=jnp.where(stopped, theta_stop, c.rec.event_theta),
        event_index=jnp.where(stopped, first, c.rec.event_index).astype(jnp.int32),
    )
    return _EventStep(
        y_end=jnp.where(stopped, y_at[first], res.y1), s_end=jnp.where(stopped, s + theta_stop * h, s_new),
        stopped=stopped, overflow=jnp.any(counted & ~store), g=jnp.where(accept, g1, c.g),
        n_ev=c.n_ev + store, s_events=s_events, y_events=y_events, rec=rec,
    )


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
    if prob.events is not None and prob.events.any_terminal:
        status = jnp.where(finished & ~terminal_hit, Status.NO_EVENT, status)
    fail_code = jnp.where(~jnp.asarray(res.ok), Status.NEWTON_FAIL,
                          jnp.where(jnp.all(jnp.isfinite(res.y1)), Status.DT_MIN, Status.NONFINITE))
    hard = jnp.asarray(res.fail) != 0  # a failure the method reports as final (see StepResult.fail)
    fail_code = jnp.where(hard, res.fail, fail_code)
    stuck = d.stuck | hard
    status = jnp.where(stuck, fail_code, status)
    out_of_steps = ~finished & ~stuck & (n_steps >= prob.max_steps)
    status = jnp.where(out_of_steps, Status.MAX_STEPS, status)
    return status, ~(finished | stuck | out_of_steps)


def _retry_state(res, mstate):
    """The method state after a rejected step (see StepResult.state_rejected)."""
    return mstate if res.state_rejected is None else res.state_rejected


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
        e = _events(prob, c, res, accept, s, h, s_new, n_acc, p)
        rec, table = _record(prob, c, e.rec, s, h, n_acc, accept)
        ys, i_save, rec = _save(prob, c, rec, res, ss, s, h, e.s_end, n_acc, accept)
        n_steps = n_steps + 1
        status, running = _status(prob, status, res, d, accept, last, e.stopped, e.overflow, n_steps)
        sel = lambda a, b: jax.tree_util.tree_map(lambda x, y: jnp.where(accept, x, y), a, b)  # noqa: E731
        return _Carry(
            clock=_clock(jnp.where(accept, e.s_end, s), h_next, d.memory),
            counts=_counts(status, n_steps, n_acc + accept, running, n_f + res.n_f, n_jac + res.n_jac),
            y=jnp.where(accept, e.y_end, c.y), mstate=sel(res.state, _retry_state(res, c.mstate)), g=e.g, ys=ys,
            i_save=i_save, n_ev=e.n_ev, s_events=e.s_events, y_events=e.y_events, rec=rec, table=table,
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
    # The whole table is the record (see `recorded_state`): slicing its columns off would
    # copy max_steps x d numbers, which the backward pass then paid for.
    rec = c.rec._replace(table=c.table)
    return Out(ys=c.ys, y_final=c.y, s_final=c.clock[0], s_events=c.s_events, y_events=c.y_events, status=status,
               stats=stats, records=rec)
