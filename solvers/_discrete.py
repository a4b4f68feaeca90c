"""The backward pass of the discrete adjoints: the recorded steps run in reverse, each
applying its step's VJP (the exact gradient of the computed solution)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from equinox.internal import unvmap_any

from . import _loop, _revolve
from ._base import Status


def step_outputs(prob, out, j, y_j, p, ss, res):
    """What step j contributes to the solve's outputs given its result res: the state
    it ends in, the saved points inside it, the end time if a terminal event cut it, and
    the times (K, E) and states (K, E, d) of the event crossings recorded in it."""
    rec, method = out.records, prob.method
    s_j, h_j = rec.s[j], rec.h[j]
    d = y_j.shape[0]
    y_out, s_end = res.y1, jnp.zeros((), y_j.dtype)
    s_ev = jnp.zeros(out.s_events.shape, y_j.dtype)
    y_ev = jnp.zeros(out.y_events.shape, y_j.dtype)
    if prob.events is not None:
        in_step = rec.event_step == j  # (K, E)
        stopped = (out.status == Status.EVENT) & (j == rec.n - 1)
        thetas = jax.lax.cond(unvmap_any(jnp.any(in_step) | stopped),  # see `_loop._events`
                              lambda: _loop.event_thetas(prob, s_j, h_j, res.dense, res.y1, p),
                              lambda: jnp.ones(prob.n_events, y_j.dtype))
        y_at = jax.vmap(lambda th: _loop.interp(method, res.dense, res.y1, h_j, th))(thetas)
        s_at = s_j + thetas * h_j
        s_ev = jnp.where(in_step, s_at[:, None], 0.0)
        y_ev = jnp.where(in_step[..., None], y_at[:, None, :], 0.0)
        if prob.events.any_terminal:
            k = jnp.maximum(rec.event_index, 0)
            y_out = jnp.where(stopped, y_at[k], res.y1)
            s_end = jnp.where(stopped, s_at[k], 0.0)
    saves = jnp.zeros((prob.n_save, d), y_j.dtype)
    if prob.n_save:
        theta = _loop.clamp01((ss - s_j) / h_j)
        vals = jax.vmap(lambda th: _loop.interp(method, res.dense, res.y1, h_j, th))(theta)
        saves = jnp.where((rec.save_step == j)[:, None], vals, 0.0)
    return y_out, saves, s_end, s_ev, y_ev


def _step_backward(prob, out, p, ss, ct, needs, j, y_j, carry):
    """Cotangents through step j: of its start state y_j, and added to those of (args,
    t0, t1) and ss."""
    a, ct_p, ct_ss = carry
    rec = out.records
    in_step = rec.event_step == j
    ct_step = (
        a,
        jnp.where((rec.save_step == j)[:, None], ct.ys, 0.0),
        jnp.where(j == rec.n - 1, ct.s_final, 0.0),
        jnp.where(in_step, ct.s_events, 0.0),
        jnp.where(in_step[..., None], ct.y_events, 0.0),
    )
    # Differentiate only with respect to what is needed: fewer operations per step.
    want = (needs.args, needs.t0, needs.t1)
    p_var = tuple(x if w else None for x, w in zip((p.args, p.t0, p.t1), want))

    def full(pv):
        args, t0, t1 = (v if w else x for v, x, w in zip(pv, (p.args, p.t0, p.t1), want))
        return _loop.Params(args, t0, t1, p.consts)

    F = lambda s, y, a: prob.F(s, y, full(a[0]))  # noqa: E731
    outputs = lambda y, a, res: step_outputs(prob, out, j, y, full(a[0]), ss if a[1] is None else a[1], res)  # noqa: E731
    uses_dense = prob.n_save > 0 or prob.events is not None
    a, (dp, dss) = prob.method.step_vjp(F, rec.s[j], y_j, rec.h[j], (p_var, ss if needs.ss else None),
                                        outputs, ct_step, uses_dense=uses_dense)
    if needs.records:  # the recorded state itself is an output (dense output, saved steps)
        a = a + jax.lax.dynamic_slice_in_dim(ct.records.table[j], 2, y_j.shape[0])
    ct_p = tuple(_add(c, d) if w else c for c, d, w in zip(ct_p, dp, want))
    return a, ct_p, ct_ss + dss if needs.ss else ct_ss


def _add(a, b):
    return jax.tree_util.tree_map(jnp.add, a, b)


def advance_step(prob, p, rec):
    """The recorded step j recomputed from its start state y (the forward loop's step)."""
    method = prob.method

    def step(j, y):
        return method.step(prob.F, rec.s[j], y, rec.h[j], p, method.init(prob.F, rec.s[j], y, p)).y1

    return step


def _start(prob, p, ss, ct, needs):
    """The backward pass's carry at the end of the solve: (a, (args, t0, t1), ss)."""
    zeros = lambda x: jax.tree_util.tree_map(jnp.zeros_like, x)  # noqa: E731
    return ct.y_final, (zeros(p.args), zeros(p.t0), zeros(p.t1)), jnp.zeros_like(ss)


def discrete_backward(prob, y0, p, ss, out, ct, needs):
    """Backward pass over the recorded steps, recomputing between checkpoints. Returns
    the cotangents (y0, args, t0, t1, ss)."""
    rec = out.records
    n, every = rec.n, prob.record_every
    carry = _start(prob, p, ss, ct, needs)
    one_step = lambda j, y_j, carry: _step_backward(prob, out, p, ss, ct, needs, j, y_j, carry)  # noqa: E731

    if every == 1:
        # Every state recorded: one plain loop from the last step to the first.
        def body(i, carry):
            j = n - 1 - i
            return one_step(j, _loop.recorded_state(prob, rec, j), carry)

        a, (ct_args, ct_t0, ct_t1), ct_ss = jax.lax.fori_loop(0, n, body, carry)
        return a, ct_args, ct_t0, ct_t1, ct_ss

    advance = advance_step(prob, p, rec)

    def replay(seg):
        # States of the steps of one segment, recomputed from its checkpoint.
        j0 = seg * every
        buf = jnp.zeros((every,) + y0.shape, y0.dtype).at[0].set(_loop.recorded_state(prob, rec, seg))
        return jax.lax.fori_loop(1, every, lambda i, buf: buf.at[i].set(advance(j0 + i - 1, buf[i - 1])), buf)

    def segment(k, carry):
        seg = n_seg - 1 - k
        buf = replay(seg)

        def inner(i, carry):
            j = seg * every + every - 1 - i
            return jax.lax.cond(j < n, lambda: one_step(j, buf[every - 1 - i], carry), lambda: carry)

        return jax.lax.fori_loop(0, every, inner, carry)

    n_seg = (n + every - 1) // every
    a, (ct_args, ct_t0, ct_t1), ct_ss = jax.lax.fori_loop(0, n_seg, segment, carry)
    return a, ct_args, ct_t0, ct_t1, ct_ss


def binomial_backward(prob, y0, p, ss, out, ct, needs, slots: int):
    """The same backward pass holding at most `slots` states (y0 included): the steps'
    start states are recomputed from checkpoints placed by the optimal binomial
    (revolve) schedule; only (s, h) of every step was recorded. Returns the cotangents
    (y0, args, t0, t1, ss)."""
    rec = out.records
    one_step = lambda j, y_j, carry: _step_backward(prob, out, p, ss, ct, needs, j, y_j, carry)  # noqa: E731
    bits = max(prob.max_steps, 2).bit_length() + 1
    start = _start(prob, p, ss, ct, needs)
    carry, _ = _revolve.reverse(rec.n, y0, slots, bits, advance_step(prob, p, rec), one_step, start)
    a, (ct_args, ct_t0, ct_t1), ct_ss = carry
    return a, ct_args, ct_t0, ct_t1, ct_ss
