"""`InterpolatingAdjoint`: the continuous adjoint solved backwards against the forward
solution's dense output, re-created step by step from checkpoints.

BacksolveAdjoint integrates y backwards together with the adjoint, which is unstable
for dissipative systems (a heat equation run backwards amplifies every error). Here y
is never integrated backwards: the backward pass gets each recorded step's start state,
last step first, from checkpoints placed by the binomial schedule (`_revolve`), re-runs
that step forwards for its dense output, and integrates a' = -a^T dF/dy and
g' = -a^T dF/dp backwards across the step, reading y(s) from that dense output. The
adjoint ODE run backwards is as stable as the forward problem is forwards.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from . import _loop, _revolve
from ._adjoint import AbstractReverseAdjoint, check_checkpoints, refuse_records, sparse_recording
from ._base import Status
from ._discrete import advance_step
from ._errors import raise_if

_ADJOINT_FAILED = (
    "InterpolatingAdjoint: the backwards solve of the adjoint ODE did not reach the start of an "
    "interval (max_steps or a step-size failure): raise max_steps, or loosen rtol/atol"
)


class _Step(NamedTuple):
    """One forward step, [s, s + h], as dense output."""

    s: Any
    h: Any
    dense: Any


def _one_step(prob, p, rec, j, y_j) -> _Step:
    """Step j re-run forwards from its start state, with its dense output."""
    method = prob.method
    res = method.step(prob.F, rec.s[j], y_j, rec.h[j], p, method.init(prob.F, rec.s[j], y_j, p))
    return _Step(rec.s[j], rec.h[j], res.dense)


def _y_at(method, st: _Step, s):
    """The forward solution at s inside the step."""
    theta = _loop.clamp01((s - st.s) / jnp.where(st.h == 0, 1.0, st.h))
    return method.interpolate(st.dense, st.h, theta)


class _Adjoint(NamedTuple):
    prob: Any
    p: Any
    unravel_p: Any
    d: int

    def F_p(self, s, y, pf):
        return self.prob.F(s, y, _loop.Params(*self.unravel_p(pf), self.p.consts))

    def field(self, sigma, z, pp):
        """d(a, g)/dsigma, s = s_hi - sigma (s_hi - s_lo) run backwards as sigma goes 0 -> 1."""
        s_hi, s_lo, pf, st = pp.args
        s = s_hi - sigma * (s_hi - s_lo)
        y = _y_at(self.prob.method, st, s)
        _, vjp = jax.vjp(lambda y, pf: self.F_p(s, y, pf), y, pf)
        ay, ap = vjp(z[: self.d])
        return (s_hi - s_lo) * jnp.concatenate([ay, ap])

    def back(self, z, s_hi, s_lo, pf, st):
        """(a, g) carried from s_hi back to s_lo, and whether that solve succeeded."""
        dtype = z.dtype
        method = self.prob.method.backsolve_method()
        controller = self.p.consts.controller.for_augmented()
        aug = _loop.Problem(F=self.field, method=method, max_steps=self.prob.max_steps, n_save=0)
        pp = _loop.Params((s_hi, s_lo, pf, st), jnp.zeros((), dtype), jnp.ones((), dtype),
                          _loop.Consts((), controller))
        go = s_hi > s_lo
        length = jnp.where(go, s_hi - s_lo, 1.0)
        # The forward step itself is the first try (the adjoint varies on the scale of y).
        h, _ = controller.init_step(self.field, method, z, pp, st.h / length, jnp.ones((), dtype))
        # Clipped away from 0: an empty span (go False) runs once with a dummy first step.
        res = _loop.forward(aug, z, pp, jnp.zeros((0,), dtype), jnp.clip(h, 1e-12, 1.0))
        return jnp.where(go, res.y_final, z), ~go | (res.status == Status.SUCCESS)


def interpolating_backward(prob, y0, p, ss, out, ct, slots: int):
    """Cotangents (y0, args, t0, t1, ss) by the interpolating continuous adjoint; NaN
    (or, with throw, an error) when a backwards adjoint solve failed. The steps' start
    states come from `slots` checkpoints by the binomial schedule (as CheckpointAdjoint);
    each step, last first, is re-run for its dense output and the adjoint ODE solved
    backwards across it, stopping at the save points inside it."""
    pf, unravel_p = ravel_pytree((p.args, p.t0, p.t1))
    adj = _Adjoint(prob, p, unravel_p, y0.shape[0])
    rec, d, n_save = out.records, y0.shape[0], ss.shape[0]

    def step_back(j, y_j, carry):
        z, s_cur, i_save, ct_ss, ok = carry
        st = _one_step(prob, p, rec, j, y_j)
        s_lo = rec.s[j]

        def save_cond(c):
            return (c[2] >= 0) & (ss[jnp.maximum(c[2], 0)] >= s_lo)

        def save_body(c):
            # Down to save point i, where its cotangent enters the adjoint.
            z, s_cur, i, ct_ss, ok = c
            s_i = jnp.minimum(ss[i], s_cur)
            z, ok_i = adj.back(z, s_cur, s_i, pf, st)
            y_i = _y_at(prob.method, st, s_i)
            ct_ss = ct_ss.at[i].add(ct.ys[i] @ adj.F_p(s_i, y_i, pf))
            z = z.at[:d].add(ct.ys[i])
            return z, s_i, i - 1, ct_ss, ok & ok_i

        if n_save:
            z, s_cur, i_save, ct_ss, ok = jax.lax.while_loop(save_cond, save_body, (z, s_cur, i_save, ct_ss, ok))
        z, ok_j = adj.back(z, s_cur, s_lo, pf, st)
        return z, s_lo, i_save, ct_ss, ok & ok_j

    z0 = jnp.concatenate([ct.y_final, jnp.zeros_like(pf)])
    init = (z0, out.s_final, jnp.asarray(n_save - 1, jnp.int32), jnp.zeros_like(ss), jnp.asarray(True))
    bits = max(prob.max_steps, 2).bit_length() + 1
    (z, _, _, ct_ss, ok), _ = _revolve.reverse(rec.n, y0, slots, bits, advance_step(prob, p, rec), step_back, init)
    grads = (z[:d], *unravel_p(z[d:]), ct_ss)
    if prob.throw:
        grads = jax.tree_util.tree_map(lambda g: raise_if(g, ~ok, _ADJOINT_FAILED), grads)
    return jax.tree_util.tree_map(lambda g: jnp.where(ok, g, jnp.nan), grads)


class InterpolatingAdjoint(AbstractReverseAdjoint):
    """Continuous adjoint against the checkpointed dense output of the forward solve
    (as SciMLSensitivity's InterpolatingAdjoint with checkpointing).

    The forward pass records the time and size of each step. The backward pass visits
    the steps last first, getting each one's start state from at most `checkpoints`
    stored states (the binomial schedule of `CheckpointAdjoint`), re-runs the step
    forwards for its dense output, and solves the adjoint ODE a' = -a^T df/dy with the
    parameter quadrature g' = -a^T df/dp backwards across it (adaptively, at the solve's
    tolerances), reading y(t) from that dense output. y itself is never solved
    backwards, so unlike `BacksolveAdjoint` it is stable on dissipative problems
    (diffusion, damping). Memory: checkpoints x state size, one step's dense output and
    2 x max_steps numbers.

    It is a continuous adjoint: the gradient of the exact solution, which matches the
    gradient of the computed one (and finite differences of it) only to about the solve
    tolerance; use DiscreteAdjoint or CheckpointAdjoint for the exact one. Gradients
    flow to y0, args (any PyTree), t0, t1 and SaveAt ts. Events, dense output and
    SaveAt(steps=True) are not supported. If a backwards adjoint solve fails
    (max_steps), the gradient is refused: `SolveError` with throw=True, NaN otherwise.

    checkpoints: how many states may be stored at once (int >= 1).
    """

    checkpoints: int = 64

    def __check_init__(self):
        check_checkpoints("InterpolatingAdjoint", self.checkpoints)

    def check(self, saveat):
        refuse_records(saveat, "InterpolatingAdjoint", "keeps only checkpointed states, not the steps")

    def loop(self, prob, y0, p, ss, h0):
        if prob.events is not None:
            raise ValueError("InterpolatingAdjoint does not support events: use DiscreteAdjoint() or "
                             "CheckpointAdjoint()")
        return super().loop(prob, y0, p, ss, h0)

    def record_every(self, max_steps):
        return sparse_recording(max_steps)

    def backward(self, prob, y0, p, ss, residual, ct, needs):
        return interpolating_backward(prob, y0, p, ss, residual[0], ct, int(self.checkpoints))
