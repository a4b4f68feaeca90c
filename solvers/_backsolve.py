"""The backward pass of `BacksolveAdjoint`: the adjoint ODE integrated backwards in
time together with y (the continuous adjoint)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from . import _loop
from ._base import Status


def backsolve(prob, p, ss, out, ct, h0):
    """Integrate (y, a, dL/dp) backwards from the end to s = 0, stopping at each saved
    point and event to add its cotangent. Returns the cotangents (y0, args, t0, t1, ss)."""
    p_flat, unravel_p = ravel_pytree((p.args, p.t0, p.t1))
    d = out.y_final.shape[0]
    dtype = out.y_final.dtype
    F, G = prob.F, prob.G

    def full(pf):
        return _loop.Params(*unravel_p(pf), p.consts)

    def F_p(s, y, pf):
        return F(s, y, full(pf))

    def jump(y, s, ct_y, ct_s, k, is_event):
        # An output at (s, y) with cotangents (ct_y, ct_s). At a crossing of event k, s
        # moves with y and p (G_k(s, y, p) = 0), which moves y too: implicit function theorem.
        a_add, g_add = ct_y, jnp.zeros_like(p_flat)
        if G is not None:
            f = F_p(s, y, p_flat)
            g_k = lambda s, y, pf: G(s, y, full(pf))[k]  # noqa: E731
            g_s, gy, gp = jax.grad(g_k, argnums=(0, 1, 2))(s, y, p_flat)
            denom = g_s + gy @ f
            c = ct_y @ f + ct_s
            ratio = jnp.where(is_event & (denom != 0), c / jnp.where(denom == 0, 1.0, denom), 0.0)
            a_add = ct_y - ratio * gy
            g_add = -ratio * gp
        return a_add, g_add

    def aug_field(sigma, z, pp):
        s_hi, s_lo = pp.args
        y, a = z[:d], z[d : 2 * d]
        s = s_hi - sigma * (s_hi - s_lo)
        f, vjp = jax.vjp(F_p, s, y, p_flat)
        _, ay, ap = vjp(a)
        # d/dsigma = -(s_hi - s_lo) d/ds, with da/ds = -a dF/dy and dg/ds = -a dF/dp.
        return -(s_hi - s_lo) * jnp.concatenate([f, -ay, -ap])

    method = prob.method.backsolve_method()
    aug = _loop.Problem(F=aug_field, method=method, max_steps=prob.max_steps, n_save=0)
    controller = p.consts.controller.for_augmented()

    def segment(z, s_hi, s_lo):
        length = jnp.where(s_hi > s_lo, s_hi - s_lo, 1.0)
        pp = _loop.Params((s_hi, s_lo), jnp.zeros((), dtype), jnp.ones((), dtype), _loop.Consts((), controller))
        # The forward solve's first step, in units of this segment, starts the backward one.
        h, _ = controller.init_step(aug_field, method, z, pp, h0 / length, jnp.ones((), dtype))
        res = _loop.forward(aug, z, pp, jnp.zeros((0,), dtype), jnp.minimum(h, 1.0))
        return jnp.where(s_hi > s_lo, res.y_final, z)

    # Points where cotangents enter, processed from the end backwards: save points, then
    # event crossings (each with its time's and its state's cotangent).
    K, E = out.s_events.shape
    s_ev = out.s_events.ravel()
    pts = jnp.concatenate([ss, jnp.where(jnp.isfinite(s_ev), s_ev, -1.0)])
    ct_pts_y = jnp.concatenate([ct.ys, ct.y_events.reshape(K * E, d)])
    ct_pts_s = jnp.concatenate([jnp.zeros_like(ss), ct.s_events.ravel()])
    event_of = jnp.concatenate([jnp.zeros(ss.shape[0], jnp.int32), jnp.repeat(jnp.arange(K), E)])
    order = jnp.argsort(-pts)

    stopped_by = jnp.maximum(out.records.event_index, 0)
    a0, g0 = jump(out.y_final, out.s_final, ct.y_final, ct.s_final, stopped_by, out.status == Status.EVENT)
    z = jnp.concatenate([out.y_final, a0, g0])

    def body(i, carry):
        z, s_cur, ct_ss = carry
        k = order[i]
        s_k = pts[k]
        valid = s_k >= 0
        s_tgt = jnp.where(valid, jnp.minimum(s_k, s_cur), s_cur)
        z = segment(z, s_cur, s_tgt)
        y = z[:d]
        a_add, g_add = jump(y, s_tgt, ct_pts_y[k], ct_pts_s[k], event_of[k], k >= ss.shape[0])
        z = z + jnp.where(valid, jnp.concatenate([jnp.zeros(d, dtype), a_add, g_add]), 0.0)
        dss = jnp.where(valid & (k < ss.shape[0]), ct_pts_y[k] @ F_p(s_tgt, y, p_flat), 0.0)
        ct_ss = ct_ss.at[jnp.minimum(k, ss.shape[0] - 1)].add(dss) if ss.shape[0] else ct_ss
        return z, s_tgt, ct_ss

    z, s_cur, ct_ss = jax.lax.fori_loop(0, pts.shape[0], body, (z, out.s_final, jnp.zeros_like(ss)))
    z = segment(z, s_cur, jnp.zeros((), dtype))
    ct_args, ct_t0, ct_t1 = unravel_p(z[2 * d :])
    return z[d : 2 * d], ct_args, ct_t0, ct_t1, ct_ss
