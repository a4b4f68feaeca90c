"""The forward integration loop, in rescaled time s in [0, 1] on a flat state.

`Problem` holds everything static about one solve; `forward` runs the adaptive (or
fixed-step) loop and records what the adjoints and dense output need.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from ._base import Status
from ._event import Event, crossed, locate

# PI step-size controller (Hairer, Norsett & Wanner II, IV.2); the exponents are divided
# by k = error order + 1.
SAFETY, BETA1, BETA2 = 0.9, 0.7, 0.4
FACTOR_MIN, FACTOR_MAX = 0.2, 10.0


@dataclasses.dataclass(frozen=True, eq=False)
class Problem:
    """Static description of a solve. F(s, y, p) and G(s, y, p) act on flat y."""

    F: Callable
    method: Any
    rtol: float
    atol: float
    adaptive: bool
    max_steps: int
    n_save: int  # number of ts (0: only the final state is returned)
    record_every: int  # store y every this many accepted steps (1 = every step)
    record: bool  # False: store no y (BacksolveAdjoint)
    G: Optional[Callable] = None  # event condition on the flat state
    event: Optional[Event] = None
    # False: records carry no tangents. Pure forward mode never reads them, and would
    # otherwise push a whole table per tangent; forward-over-reverse (Hessians) does.
    differentiable_records: bool = True

    @property
    def n_records(self):
        if not self.record:
            return 1
        return -(-self.max_steps // self.record_every) + 1

    @property
    def max_events(self):
        return 1 if self.event is None or self.event.terminal else self.event.max_events


class Records(NamedTuple):
    """Accepted steps of a solve: step k went from s[k] to s[k] + h[k] from state y[k]
    (y only every `record_every` steps). The last one is cut at the event if one fired."""

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
    if prob.record and prob.record_every == 1:
        return jax.lax.dynamic_slice_in_dim(rec.y[k], 2, rec.y.shape[1] - 2)
    return rec.y[k]


class Out(NamedTuple):
    ys: Any  # (n_save, d)
    y_final: Any  # (d,)
    s_final: Any  # where the solve ended: 1, or the terminal event
    s_events: Any  # (max_events,) non-terminal crossings, +inf unused
    status: Any
    stats: Any  # (num_steps, num_accepted, num_rejected, num_f_evals)
    records: Records


class _Carry(NamedTuple):
    # Scalars travel packed, floats in `clock` and integers in `counts`: XLA on CPU
    # compiles one kernel per loop output (several milliseconds each on a first call),
    # and eight scalar outputs had made the loop body half again as big.
    clock: Any  # (4,) s, h proposed by the controller, h_try (the next step), log error ratio
    counts: Any  # (6,) int32: status, n_steps, n_acc, running (1 until the solve ends), n_f, n_jac
    y: Any
    mstate: Any
    g: Any
    ys: Any
    i_save: Any
    n_ev: Any
    s_events: Any
    rec: Records
    table: Any  # (max_steps, 2 [+ d]): s, h [, y] of each accepted step


def _unpack(x):
    """The scalars of a packed vector, each read once (every indexing is traced anew)."""
    return [x[i] for i in range(x.shape[0])]


def _clock(s, h, log_err):
    """The packed float scalars of the carry, with the step to try next: h, cut to end
    exactly at s = 1 (snapping rather than leaving a sliver for rounding to create)."""
    near_end = s + h >= 1 - 64 * jnp.finfo(s.dtype).eps
    h_try = jnp.where(near_end, 1 - s, jnp.minimum(h, 1 - s))
    return jnp.stack([s, h, h_try, log_err])


def _counts(status, n_steps, n_acc, running, n_f, n_jac):
    return jnp.stack([jnp.asarray(x, jnp.int32) for x in (status, n_steps, n_acc, running, n_f, n_jac)])


def _norms(x):
    """RMS norm of each row of x (n, d), in one reduction. In float32, x * x overflows
    from |x| ~ 2e19 (a tiny atol gets there), so rows are scaled by their max first."""
    if jnp.finfo(x.dtype).bits > 32:
        return jnp.sqrt(jnp.mean(x * x, axis=1))
    m = jnp.max(jnp.abs(x), axis=1, keepdims=True)
    m_safe = jnp.where((m > 0) & jnp.isfinite(m), m, 1.0)
    return jnp.where(m[:, 0] > 0, m[:, 0] * jnp.sqrt(jnp.mean((x / m_safe) ** 2, axis=1)), 0.0)


def interp(method, dense, y1, h, theta):
    """Dense output at theta, exactly y1 at theta = 1."""
    return jnp.where(theta >= 1, y1, method.interpolate(dense, h, theta))


def initial_step(prob: Problem, y0, p, f0):
    """Hairer's automatic first step (Solving ODEs I, II.4), in units of s."""
    scale = prob.atol + prob.rtol * jnp.abs(y0)
    d0, d1 = _norms(jnp.stack([y0, f0]) / scale)
    small = (d0 < 1e-5) | (d1 < 1e-5)
    h0 = jnp.where(small, 1e-6, 0.01 * d0 / jnp.where(small, 1.0, d1))
    h0 = jnp.minimum(h0, 1.0)
    f1 = prob.F(h0, y0 + h0 * f0, p)
    d2 = _norms(((f1 - f0) / scale)[None])[0] / h0
    dmax = jnp.maximum(d1, d2)
    order = prob.method.order if prob.method.error_order is None else prob.method.error_order + 1
    tiny = dmax <= 1e-15
    h1 = jnp.where(tiny, jnp.maximum(1e-6, h0 * 1e-3), (0.01 / jnp.where(tiny, 1.0, dmax)) ** (1.0 / order))
    h = jnp.minimum(100 * h0, h1)
    return jnp.where(jnp.isfinite(h) & (h > 0), h, 1e-6)


def _next_h(prob: Problem, h, ratio, log_err_prev, accept):
    """Next step size from the error ratio (<= 1 accepted); log_err_prev is the log of
    the previous accepted step's ratio. One log and one exp: pow is slow on CPU."""
    k = prob.method.error_order + 1
    log_r = jnp.log(jnp.clip(ratio, 1e-10, 1e10))
    exponent = jnp.where(accept, -BETA1 / k * log_r + BETA2 / k * log_err_prev, -log_r / k)
    lo = FACTOR_MIN
    hi = jnp.where(accept, FACTOR_MAX, 1.0)
    return h * jnp.clip(SAFETY * jnp.exp(exponent), lo, hi)


def event_theta(prob: Problem, s, h, dense, y1, p):
    """Where in the step [s, s + h] the event condition crosses zero."""
    phi = lambda th: prob.G(s + th * h, interp(prob.method, dense, y1, h, th), p)  # noqa: E731
    return locate(phi, jnp.result_type(h))


def _const(prob, x):
    return x if prob.differentiable_records else jax.lax.stop_gradient(x)


def forward(prob: Problem, y0, p, ss, h0):
    """Integrate from s=0 to s=1 (or a terminal event). ss: (n_save,) save points."""
    method = prob.method
    dtype = y0.dtype
    d = y0.shape[0]
    E = prob.max_events
    mstate0 = method.init(prob.F, jnp.zeros((), dtype), y0, p)
    g0 = prob.G(jnp.zeros((), dtype), y0, p) if prob.event is not None else jnp.zeros((), dtype)
    # One row per accepted step, (s, h) and (when every state is kept) y: a single
    # dynamic-update-slice per step, which is what recording costs on CPU.
    inline_y = prob.record and prob.record_every == 1
    table = jnp.zeros((prob.max_steps, 2 + (d if inline_y else 0)), dtype)
    rec = Records(
        s=jnp.zeros(0, dtype),  # filled from `table` after the loop
        h=jnp.zeros(0, dtype),
        y=jnp.zeros((0 if inline_y else prob.n_records, d), dtype),
        n=jnp.zeros((), jnp.int32),
        event_theta=jnp.ones((), dtype),
        save_step=jnp.full(prob.n_save, -1, jnp.int32),
        event_step=jnp.full(E, -1, jnp.int32),
    )
    carry = _Carry(
        clock=_clock(jnp.zeros((), dtype), jnp.asarray(h0, dtype), jnp.zeros((), dtype)),
        counts=jnp.asarray(np.array([Status.SUCCESS, 0, 0, 1, method.init_evals, 0], np.int32)),
        y=y0, mstate=mstate0, g=g0, ys=jnp.zeros((prob.n_save, d), dtype),
        i_save=jnp.zeros((), jnp.int32), n_ev=jnp.zeros((), jnp.int32),
        s_events=jnp.full(E, jnp.inf, dtype), rec=rec, table=table,
    )

    def body(c: _Carry):
        s, h_prop, h, log_err = _unpack(c.clock)  # h: the step to try
        status, n_steps, n_acc, _, n_f, n_jac = _unpack(c.counts)
        res = method.step(prob.F, s, c.y, h, p, c.mstate)
        if prob.adaptive:
            scale = prob.atol + prob.rtol * jnp.maximum(jnp.abs(c.y), jnp.abs(res.y1))
            # 0 * y1 is NaN exactly where y1 is inf or NaN: the error norm's reduction
            # checks the new state too (one kernel less to compile than a separate check).
            ratio = method.error_ratio(res.y_err + 0 * res.y1, scale)
            finite = jnp.isfinite(ratio)
            ok = jnp.asarray(res.ok) & finite
            ratio = jnp.where(ok, ratio, jnp.inf)
            accept = ratio <= 1
            h_next = jax.lax.stop_gradient(_next_h(prob, h, ratio, log_err, accept))
            h_next = jnp.where(accept & (h < h_prop), h_prop, h_next)  # don't let the last cut stick
            # Only the controller reads it: without stop_gradient, forward mode would give
            # the whole packed clock (s and h too) tangents to carry (1.6x slower gradients).
            log_err_new = jax.lax.stop_gradient(jnp.where(accept, jnp.log(jnp.maximum(ratio, 1e-4)), log_err))
        else:
            finite = jnp.all(jnp.isfinite(res.y1))
            ok = jnp.asarray(res.ok) & finite
            accept = ok
            h_next, log_err_new = h_prop, log_err
        last = h >= 1 - s
        s_new = jnp.where(last, jnp.ones_like(s), s + h)

        # Events on the accepted step.
        rec = c.rec
        y_end, s_end, terminal_hit = res.y1, s_new, jnp.asarray(False)
        g_new, n_ev, s_events = c.g, c.n_ev, c.s_events
        if prob.event is not None:
            g1 = prob.G(s_new, res.y1, p)
            hit = accept & crossed(prob.event, c.g, g1)
            theta = jax.lax.cond(
                hit,
                lambda: event_theta(prob, s, h, res.dense, res.y1, p),
                lambda: jnp.ones((), dtype),
            )
            s_hit = s + theta * h
            if prob.event.terminal:
                terminal_hit = hit
                y_end = jnp.where(hit, interp(method, res.dense, res.y1, h, theta), res.y1)
                s_end = jnp.where(hit, s_hit, s_new)
                rec = rec._replace(event_theta=jnp.where(hit, theta, rec.event_theta))
            else:
                store = hit & (c.n_ev < E)
                idx = jnp.minimum(c.n_ev, E - 1)
                s_events = s_events.at[idx].set(jnp.where(store, s_hit, s_events[idx]))
                rec = rec._replace(
                    event_step=rec.event_step.at[idx].set(jnp.where(store, n_acc, rec.event_step[idx]))
                )
                n_ev = c.n_ev + store
            g_new = jnp.where(accept, g1, c.g)

        # Record the step at slot n_acc; a rejected step is overwritten by the next try.
        i = jnp.minimum(n_acc, prob.max_steps - 1)
        row = _const(prob, jnp.concatenate([jnp.stack([s, h])] + ([c.y] if inline_y else [])))
        table = c.table.at[i].set(row)
        rec = rec._replace(n=n_acc + accept)
        if prob.record and not inline_y:
            k = n_acc // prob.record_every
            store_y = n_acc % prob.record_every == 0
            y_k = jnp.where(store_y, _const(prob, c.y), rec.y[k])
            rec = rec._replace(y=rec.y.at[k].set(y_k))

        # Save at the requested points inside the accepted part of the step.
        ys, i_save = c.ys, c.i_save
        if prob.n_save:
            def save_cond(sc):
                j, _, _ = sc
                return accept & (j < prob.n_save) & (ss[jnp.minimum(j, prob.n_save - 1)] <= s_end)

            def save_body(sc):
                j, ys, steps = sc
                theta = jnp.clip((ss[j] - s) / h, 0.0, 1.0)
                yj = interp(method, res.dense, res.y1, h, theta)
                return j + 1, ys.at[j].set(yj), steps.at[j].set(n_acc)

            i_save, ys, save_step = jax.lax.while_loop(
                save_cond, save_body, (c.i_save, c.ys, rec.save_step)
            )
            rec = rec._replace(save_step=save_step)

        n_steps = n_steps + 1
        finished = accept & (last | terminal_hit)
        status = jnp.where(terminal_hit, Status.EVENT, status)
        if prob.event is not None and prob.event.terminal:
            status = jnp.where(finished & ~terminal_hit, Status.NO_EVENT, status)
        if prob.adaptive:
            underflow = ~accept & (s + h_next <= s)
            fail_code = jnp.where(
                ~jnp.asarray(res.ok), Status.NEWTON_FAIL, jnp.where(finite, Status.DT_MIN, Status.NONFINITE)
            )
        else:
            underflow = ~accept
            fail_code = jnp.where(finite, Status.NEWTON_FAIL, Status.NONFINITE)
        status = jnp.where(underflow, fail_code, status)
        out_of_steps = ~finished & ~underflow & (n_steps >= prob.max_steps)
        status = jnp.where(out_of_steps, Status.MAX_STEPS, status).astype(jnp.int32)

        sel = lambda a, b: jax.tree_util.tree_map(lambda x, y: jnp.where(accept, x, y), a, b)  # noqa: E731
        return _Carry(
            clock=_clock(jnp.where(accept, s_end, s), h_next, log_err_new),
            counts=_counts(status, n_steps, n_acc + accept, ~(finished | underflow | out_of_steps),
                           n_f + res.n_f, n_jac + res.n_jac),
            y=jnp.where(accept, y_end, c.y),
            mstate=sel(res.state, c.mstate),
            g=g_new,
            ys=ys,
            i_save=i_save,
            n_ev=n_ev,
            s_events=s_events,
            rec=rec,
            table=table,
        )

    def body_same_types(c):
        # Python-float constants must not promote float32 state to float64 under x64.
        new = body(c)
        return jax.tree_util.tree_map(lambda x, old: x.astype(old.dtype), new, c)

    c = jax.lax.while_loop(lambda c: c.counts[3] != 0, body_same_types, carry)
    s_final = c.clock[0]
    status, n_steps, n_acc, _, n_f, n_jac = _unpack(c.counts)
    stats = jnp.stack([n_steps, n_acc, n_steps - n_acc, n_f, n_jac])
    # The whole table stands in for y (see `recorded_state`): slicing its columns off
    # would copy max_steps x d numbers, which the backward pass then paid for.
    rec = c.rec._replace(s=c.table[:, 0], h=c.table[:, 1], y=c.table if inline_y else c.rec.y)
    return Out(
        ys=c.ys, y_final=c.y, s_final=s_final, s_events=c.s_events,
        status=status, stats=stats, records=rec,
    )
