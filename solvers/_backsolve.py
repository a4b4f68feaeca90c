"""The backward pass of `BacksolveAdjoint`: the adjoint ODE integrated backwards in
time together with y (the continuous adjoint)."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from . import _loop
from ._base import Status, rms
from ._errors import raise_if

_BACKSOLVE_LOST = (
    "BacksolveAdjoint: the backwards solve of y did not return to y0 (the backwards problem is "
    "unstable, e.g. dissipative or stiff), so its gradient would be wrong: use DiscreteAdjoint() or "
    "CheckpointAdjoint(), or BacksolveAdjoint(max_error=...) to accept a larger mismatch"
)


class _Augmented(NamedTuple):
    """The adjoint system of one solve: the state y, its adjoint a and the gradient
    g = dL/dp integrated together backwards in time, on the flat z = (y, a, g)."""

    prob: Any
    p: Any
    unravel_p: Any
    d: int

    def full(self, pf):
        return _loop.Params(*self.unravel_p(pf), self.p.consts)

    def F_p(self, s, y, pf):
        return self.prob.F(s, y, self.full(pf))

    def field(self, sigma, z, pp):
        """dz/dsigma on a segment s in [s_lo, s_hi] run backwards as sigma goes 0 -> 1."""
        s_hi, s_lo, pf = pp.args
        d = self.d
        y, a = z[:d], z[d : 2 * d]
        s = s_hi - sigma * (s_hi - s_lo)
        f, vjp = jax.vjp(self.F_p, s, y, pf)
        _, ay, ap = vjp(a)
        # d/dsigma = -(s_hi - s_lo) d/ds, with da/ds = -a dF/dy and dg/ds = -a dF/dp.
        return -(s_hi - s_lo) * jnp.concatenate([f, -ay, -ap])

    def jump(self, y, s, ct_y, ct_s, k, is_event, pf):
        """What an output at (s, y) with cotangents (ct_y, ct_s) adds to (a, g). At a
        crossing of event k, s moves with y and p (G_k(s, y, p) = 0), which moves y too:
        implicit function theorem."""
        G = self.prob.G
        if G is None:
            return ct_y, jnp.zeros_like(pf)
        f = self.F_p(s, y, pf)
        g_s, gy, gp = jax.grad(lambda s, y, pf: G(s, y, self.full(pf))[k], argnums=(0, 1, 2))(s, y, pf)
        denom = g_s + gy @ f
        ratio = jnp.where(is_event & (denom != 0), (ct_y @ f + ct_s) / jnp.where(denom == 0, 1.0, denom), 0.0)
        return ct_y - ratio * gy, -ratio * gp

    def segment(self, z, s_hi, s_lo, pf, h0):
        """z carried back from s_hi to s_lo (unchanged when s_hi <= s_lo)."""
        dtype = z.dtype
        method = self.prob.method.backsolve_method()
        controller = self.p.consts.controller.for_augmented()
        aug = _loop.Problem(F=self.field, method=method, max_steps=self.prob.max_steps, n_save=0)
        pp = _loop.Params((s_hi, s_lo, pf), jnp.zeros((), dtype), jnp.ones((), dtype), _loop.Consts((), controller))
        length = jnp.where(s_hi > s_lo, s_hi - s_lo, 1.0)
        # The forward solve's first step, in units of this segment, starts the backward one.
        h, _ = controller.init_step(self.field, method, z, pp, h0 / length, jnp.ones((), dtype))
        res = _loop.forward(aug, z, pp, jnp.zeros((0,), dtype), jnp.minimum(h, 1.0))
        return jnp.where(s_hi > s_lo, res.y_final, z)


def _entry_points(ss, out, ct):
    """Where cotangents enter, processed from the end backwards: save points, then event
    crossings (each with its time's and its state's cotangent). -1 marks unused slots."""
    K, E = out.s_events.shape
    s_ev = out.s_events.ravel()
    pts = jnp.concatenate([ss, jnp.where(jnp.isfinite(s_ev), s_ev, -1.0)])
    ct_y = jnp.concatenate([ct.ys, ct.y_events.reshape(K * E, -1)])
    ct_s = jnp.concatenate([jnp.zeros_like(ss), ct.s_events.ravel()])
    event_of = jnp.concatenate([jnp.zeros(ss.shape[0], jnp.int32), jnp.repeat(jnp.arange(K), E)])
    return pts, ct_y, ct_s, event_of


def backsolve(prob, y0, p, ss, out, ct, h0, max_error):
    """Integrate (y, a, dL/dp) backwards from the end to s = 0, stopping at each saved
    point and event to add its cotangent. Returns the cotangents (y0, args, t0, t1, ss),
    or raises / returns NaN if the backwards solve of y did not return to y0."""
    pf, unravel_p = ravel_pytree((p.args, p.t0, p.t1))
    d, n_save = out.y_final.shape[0], ss.shape[0]
    aug = _Augmented(prob, p, unravel_p, d)
    pts, ct_y, ct_s, event_of = _entry_points(ss, out, ct)
    order = jnp.argsort(-pts)

    k_stop = jnp.maximum(out.records.event_index, 0)
    a0, g0 = aug.jump(out.y_final, out.s_final, ct.y_final, ct.s_final, k_stop, out.status == Status.EVENT, pf)

    def body(i, carry):
        z, s_cur, ct_ss = carry
        k = order[i]
        valid = pts[k] >= 0
        s_tgt = jnp.where(valid, jnp.minimum(pts[k], s_cur), s_cur)
        z = aug.segment(z, s_cur, s_tgt, pf, h0)
        a_add, g_add = aug.jump(z[:d], s_tgt, ct_y[k], ct_s[k], event_of[k], k >= n_save, pf)
        z = z + jnp.where(valid, jnp.concatenate([jnp.zeros(d, z.dtype), a_add, g_add]), 0.0)
        dss = jnp.where(valid & (k < n_save), ct_y[k] @ aug.F_p(s_tgt, z[:d], pf), 0.0)
        ct_ss = ct_ss.at[jnp.minimum(k, n_save - 1)].add(dss) if n_save else ct_ss
        return z, s_tgt, ct_ss

    z0 = jnp.concatenate([out.y_final, a0, g0])
    z, s_cur, ct_ss = jax.lax.fori_loop(0, pts.shape[0], body, (z0, out.s_final, jnp.zeros_like(ss)))
    z = aug.segment(z, s_cur, jnp.zeros((), z.dtype), pf, h0)
    grads = (z[d : 2 * d], *unravel_p(z[2 * d :]), ct_ss)
    return _refuse_if_lost(grads, z[:d], y0, p.consts.controller, max_error, prob.throw)


def _refuse_if_lost(grads, y_back, y0, controller, max_error, throw):
    """The backwards solve must bring y back to y0: if it lands further away than
    max_error times the solve's tolerance, its gradient cannot be trusted (an unstable
    backwards problem, e.g. a diffusive PDE): raise with throw=True, else NaN."""
    ratio = rms((y_back - y0) / controller.error_scale(y0, y_back))
    lost = ~(ratio <= max_error)
    if throw:
        grads = jax.tree_util.tree_map(lambda g: raise_if(g, lost, _BACKSOLVE_LOST), grads)
    return jax.tree_util.tree_map(lambda g: jnp.where(lost, jnp.nan, g), grads)
