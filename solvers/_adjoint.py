"""How gradients flow through a solve.

Every adjoint runs the same forward loop (`_loop.forward`); they differ in what they
record and how the backward pass gets the states it needs.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from jax.custom_derivatives import CustomVJPPrimal, SymbolicZero
from jax.flatten_util import ravel_pytree

from . import _loop
from ._base import Status


@dataclasses.dataclass(frozen=True)
class DiscreteAdjoint:
    """Exact reverse-mode gradient of the computed solution (the default).

    The forward loop records every accepted step (s, h, y); the backward pass runs the
    steps in reverse applying each step's VJP. Memory grows as max_steps x state size
    (a (max_steps, d) buffer), so lower max_steps or use `CheckpointAdjoint` for large
    states. Forward mode (`jax.jvp`): use `ForwardMode`.

    forward_below: when at most this many scalar inputs are differentiated (say a few
        parameters), the same derivative is computed in forward mode instead: one
        tangent per input carried along the forward solve, no step record and no
        backward pass, several times cheaper for few inputs. 0: always run the
        backward pass. The two agree to rounding error.
    """

    forward_below: int = 8

    def record_every(self, max_steps):
        return 1


@dataclasses.dataclass(frozen=True)
class CheckpointAdjoint:
    """The `DiscreteAdjoint` gradient with bounded memory.

    Stores the state at `checkpoints` evenly spaced steps (ceil(max_steps / checkpoints)
    apart) and recomputes the steps between two checkpoints during the backward pass:
    memory (checkpoints + max_steps / checkpoints) x state size, at the price of about
    one more forward solve. Gradients are identical to DiscreteAdjoint's.
    """

    checkpoints: int = 64

    def __post_init__(self):
        if self.checkpoints < 1:
            raise ValueError("CheckpointAdjoint(checkpoints=N) needs N >= 1")

    def record_every(self, max_steps):
        return max(1, -(-max_steps // self.checkpoints))


@dataclasses.dataclass(frozen=True)
class BacksolveAdjoint:
    """Continuous adjoint: solve the adjoint ODE backwards in time alongside y.

    O(1) memory in the number of steps, but approximate: the gradient of the exact
    solution, not of the computed one, so it agrees with finite differences only to
    about the solver tolerance. Unreliable when the backwards solve of y itself is
    unstable (dissipative or chaotic systems run backwards, stiff problems) or when
    the forward solution is inaccurate. `Solution.evaluate` is not available with it.
    """

    def record_every(self, max_steps):
        return max_steps


@dataclasses.dataclass(frozen=True)
class ForwardMode:
    """Forward-mode differentiation (`jax.jvp`, `jax.jacfwd`) straight through the loop.

    Cheapest when there are few inputs and many outputs. Reverse mode (`jax.grad`) does
    not work with it: use DiscreteAdjoint for that.
    """

    def record_every(self, max_steps):
        return 1


def run(prob: _loop.Problem, adjoint, y0, p, ss, h0) -> _loop.Out:
    """Run the forward loop with the gradient rule of `adjoint`."""
    if isinstance(adjoint, ForwardMode):
        return _loop.forward(prob, y0, p, ss, h0)

    # h0 is an argument, not a closure: custom_vjp must not close over traced values.
    @jax.custom_vjp
    def solve(y0, p, ss, h0):
        return _loop.forward(prob, y0, p, ss, h0)

    needs = {}

    def fwd(y0, p, ss, h0):
        # Note which of y0, (args, t0, t1) and ss are being differentiated, so the
        # backward pass skips the cotangents nobody asked for.
        is_p = lambda x: isinstance(x, CustomVJPPrimal)  # noqa: E731
        needs["p"] = tuple(
            any(leaf.perturbed for leaf in jax.tree_util.tree_leaves(part, is_leaf=is_p)) for part in p
        )
        needs["y0"], needs["ss"] = y0.perturbed, ss.perturbed
        y0, p, ss, h0 = jax.tree_util.tree_map(lambda x: x.value, (y0, p, ss, h0), is_leaf=is_p)
        n_in = sum(ravel_pytree(x)[0].size for x, need in zip(_parts(y0, p, ss), _need(needs)) if need)
        needs["forward"] = n_in <= getattr(adjoint, "forward_below", 0)
        if needs["forward"]:
            out, jac = _forward_jacobian(prob, y0, p, ss, h0, _need(needs))
            return out, (y0, p, ss, h0, jac)
        out = _loop.forward(prob, y0, p, ss, h0)
        return out, (y0, p, ss, h0, out)

    def bwd(res, ct):
        y0, p, ss, h0, out = res
        ct = jax.tree_util.tree_map(_instantiate, ct, is_leaf=lambda x: isinstance(x, SymbolicZero))
        if needs["forward"]:
            grads = _contract(out, ct, y0, p, ss, _need(needs))
        elif isinstance(adjoint, BacksolveAdjoint):
            grads = _backsolve(prob, p, ss, out, ct)
        else:
            grads = _discrete(prob, y0, p, ss, out, ct, needs["p"], needs["ss"])
        return grads + (jnp.zeros_like(h0),)  # step sizes are constants

    solve.defvjp(fwd, bwd, symbolic_zeros=True)
    return solve(y0, p, ss, h0)


def _parts(y0, p, ss):
    return (y0, p[0], p[1], p[2], ss)


def _need(needs):
    return (needs["y0"],) + needs["p"] + (needs["ss"],)


def _outputs(out):
    # The differentiable outputs of the loop.
    return out.ys, out.y_final, out.s_final, out.s_events


def _forward_jacobian(prob, y0, p, ss, h0, need):
    """The loop's outputs and their Jacobian with respect to the differentiated inputs
    (flattened into one vector), by forward mode: one tangent per input, carried along."""
    parts = _parts(y0, p, ss)
    x, unravel = ravel_pytree(tuple(part for part, n in zip(parts, need) if n))
    prob = dataclasses.replace(prob, differentiable_records=False)

    def run(x):
        given = iter(unravel(x))
        y0, args, t0, t1, ss = (next(given) if n else part for part, n in zip(parts, need))
        out = _loop.forward(prob, y0, (args, t0, t1), ss, h0)
        return _outputs(out), out

    jac, out = jax.jacfwd(run, has_aux=True)(x)
    return out, jac


def _contract(jac, ct, y0, p, ss, need):
    """Cotangents of (y0, p, ss) from the outputs' cotangents and their Jacobian."""
    parts = _parts(y0, p, ss)
    _, unravel = ravel_pytree(tuple(part for part, n in zip(parts, need) if n))
    g = sum(jnp.tensordot(c, J, axes=c.ndim) for c, J in zip(_outputs(ct), jac))
    given = iter(unravel(g))
    y0, args, t0, t1, ss = (next(given) if n else _zeros_like(part) for part, n in zip(parts, need))
    return y0, (args, t0, t1), ss


def _instantiate(x):
    if isinstance(x, SymbolicZero):
        return jnp.zeros(x.shape, x.dtype) if x.dtype != jax.dtypes.float0 else np.zeros(x.shape, x.dtype)
    return x


def _zeros_like(tree):
    return jax.tree_util.tree_map(jnp.zeros_like, tree)


def _add(a, b):
    return jax.tree_util.tree_map(jnp.add, a, b)


def _step_outputs(prob, out, j, y_j, p, ss, ks=None):
    """What step j contributes to the solve's outputs, as a function of (y_j, p, ss):
    the state it ends in, the saved points inside it, the end time if a terminal event
    cut it, and the time of a non-terminal event inside it. With ks (explicit RK), the
    step's stage derivatives are given rather than computed."""
    rec, method = out.records, prob.method
    s_j, h_j = rec.s[j], rec.h[j]
    if ks is None:
        res = method.step(prob.F, s_j, y_j, h_j, p, method.init(prob.F, s_j, y_j, p))
    else:
        res = method.finish(y_j, h_j, ks)
    zero = jnp.zeros((), y_j.dtype)
    y_out, s_end, s_ev = res.y1, zero, zero
    if prob.event is not None:
        has_event = (out.status == Status.EVENT) & (j == rec.n - 1)
        if not prob.event.terminal:
            has_event = jnp.any(rec.event_step == j)

        def located():
            theta = _loop.event_theta(prob, s_j, h_j, res.dense, res.y1, p)
            return _loop.interp(method, res.dense, res.y1, h_j, theta), s_j + theta * h_j

        y_ev, s_hit = jax.lax.cond(has_event, located, lambda: (res.y1, zero))
        if prob.event.terminal:
            y_out, s_end = y_ev, s_hit
        else:
            s_ev = s_hit
    saves = jnp.zeros((prob.n_save, y_j.shape[0]), y_j.dtype)
    if prob.n_save:
        theta = jnp.clip((ss - s_j) / h_j, 0.0, 1.0)
        vals = jax.vmap(lambda th: _loop.interp(method, res.dense, res.y1, h_j, th))(theta)
        saves = jnp.where((rec.save_step == j)[:, None], vals, 0.0)
    return y_out, saves, s_end, s_ev


def _discrete(prob, y0, p, ss, out, ct, need_p=(True, True, True), need_ss=True):
    """Backward pass over the recorded steps, recomputing between checkpoints.

    need_p: which of p = (args, t0, t1) get cotangents; need_ss: whether ss does."""
    rec = out.records
    n, every = rec.n, prob.record_every
    ct_ys, ct_y_final = ct.ys, ct.y_final
    ct_s_final, ct_s_events = ct.s_final, ct.s_events
    # Saves after a terminal event are the final state (see solve): their cotangents
    # were already routed there by `where`, so nothing is lost by masking them here.
    method = prob.method

    def replay(seg):
        # States of the steps of one segment, recomputed from its checkpoint.
        j0 = seg * every
        buf = jnp.zeros((every,) + y0.shape, y0.dtype).at[0].set(_loop.recorded_state(prob, rec, seg))

        def body(i, buf):
            j = j0 + i - 1
            y = buf[i - 1]
            y1 = method.step(prob.F, rec.s[j], y, rec.h[j], p, method.init(prob.F, rec.s[j], y, p)).y1
            return buf.at[i].set(y1)

        return jax.lax.fori_loop(1, every, body, buf)

    def one_step(j, y_j, carry):
        a, ct_p, ct_ss = carry
        is_last = j == n - 1
        ct_step = (
            a,
            jnp.where((rec.save_step == j)[:, None], ct_ys, 0.0),
            jnp.where(is_last, ct_s_final, 0.0),
            jnp.sum(jnp.where(rec.event_step == j, ct_s_events, 0.0)),
        )
        # Differentiate only with respect to what is needed: fewer operations per step.
        p_var = tuple(x if need else None for x, need in zip(p, need_p))
        full = lambda pv: tuple(v if need else x for v, x, need in zip(pv, p, need_p))  # noqa: E731
        if hasattr(method, "stages_vjp"):
            a, dp, dss = _rk_step_vjp(prob, out, j, y_j, p_var, full, ss, need_ss, ct_step)
        elif need_ss:
            _, vjp = jax.vjp(lambda y, pv, ss: _step_outputs(prob, out, j, y, full(pv), ss), y_j, p_var, ss)
            a, dp, dss = vjp(ct_step)
        else:
            _, vjp = jax.vjp(lambda y, pv: _step_outputs(prob, out, j, y, full(pv), ss), y_j, p_var)
            (a, dp), dss = vjp(ct_step), jnp.zeros_like(ss)
        dp = tuple(d if need else _zeros_like(x) for d, x, need in zip(dp, p, need_p))
        return a, _add(ct_p, dp), ct_ss + dss

    carry = (ct_y_final, _zeros_like(p), jnp.zeros_like(ss))
    if every == 1:
        # Every state recorded: one plain loop from the last step to the first.
        def body(i, carry):
            j = n - 1 - i
            return one_step(j, _loop.recorded_state(prob, rec, j), carry)

        a, ct_p, ct_ss = jax.lax.fori_loop(0, n, body, carry)
        return a, ct_p, ct_ss

    def segment(k, carry):
        seg = n_seg - 1 - k
        buf = replay(seg)

        def inner(i, carry):
            j = seg * every + every - 1 - i
            return jax.lax.cond(j < n, lambda: one_step(j, buf[every - 1 - i], carry), lambda: carry)

        return jax.lax.fori_loop(0, every, inner, carry)

    n_seg = (n + every - 1) // every
    a, ct_p, ct_ss = jax.lax.fori_loop(0, n_seg, segment, carry)
    return a, ct_p, ct_ss


def _rk_step_vjp(prob, out, j, y_j, p_var, full, ss, need_ss, ct_step):
    """VJP of `_step_outputs` for explicit RK: the outputs given the stages, then the
    method's own reverse sweep through the stages (see ExplicitRK.stages_vjp)."""
    method, rec = prob.method, out.records
    s_j, h_j = rec.s[j], rec.h[j]
    F = lambda s, y, pv: prob.F(s, y, full(pv))  # noqa: E731
    Ys, ks = method.stages(F, s_j, y_j, h_j, p_var, F(s_j, y_j, p_var))
    _, vjp = jax.vjp(lambda y, ks, pv, ss: _step_outputs(prob, out, j, y, full(pv), ss, ks), y_j, ks, p_var, ss)
    a, k_bar, dp, dss = vjp(ct_step)
    used = method.used_stages(dense=prob.n_save > 0 or prob.event is not None)
    k_bar = [kb if u else None for kb, u in zip(k_bar, used)]
    a_st, dp_st = method.stages_vjp(F, s_j, h_j, p_var, Ys, k_bar)
    dss = dss if need_ss else jnp.zeros_like(ss)
    return a + a_st, _add(dp, dp_st), dss


def _backsolve(prob, p, ss, out, ct):
    """Continuous adjoint: integrate (y, a, dL/dp) backwards from the end to s = 0,
    stopping at each saved point and event to add its cotangent."""
    p_flat, unravel_p = ravel_pytree(p)
    d = out.y_final.shape[0]
    dtype = out.y_final.dtype
    F, G = prob.F, prob.G

    def F_p(s, y, pf):
        return F(s, y, unravel_p(pf))

    def jump(y, s, ct_y, ct_s, is_event):
        # An output at (s, y) with cotangents (ct_y, ct_s). At an event time s moves with
        # y and p (G(s, y, p) = 0), which moves y too: implicit function theorem.
        a_add, g_add = ct_y, jnp.zeros_like(p_flat)
        if G is not None:
            f = F_p(s, y, p_flat)
            g_s, gy, gp = jax.grad(lambda s, y, pf: G(s, y, unravel_p(pf)), argnums=(0, 1, 2))(
                s, y, p_flat
            )
            denom = g_s + gy @ f
            c = ct_y @ f + ct_s
            ratio = jnp.where(is_event & (denom != 0), c / jnp.where(denom == 0, 1.0, denom), 0.0)
            a_add = ct_y - ratio * gy
            g_add = -ratio * gp
        return a_add, g_add

    def aug_field(sigma, z, args):
        s_hi, s_lo = args
        y, a = z[:d], z[d : 2 * d]
        s = s_hi - sigma * (s_hi - s_lo)
        f, vjp = jax.vjp(F_p, s, y, p_flat)
        _, ay, ap = vjp(a)
        # d/dsigma = -(s_hi - s_lo) d/ds, with da/ds = -a dF/dy and dg/ds = -a dF/dp.
        return -(s_hi - s_lo) * jnp.concatenate([f, -ay, -ap])

    aug = _loop.Problem(
        F=aug_field, method=prob.method, rtol=prob.rtol, atol=prob.atol, adaptive=prob.adaptive,
        max_steps=prob.max_steps, n_save=0, record_every=prob.max_steps, record=False,
    )

    def segment(z, s_hi, s_lo):
        h0 = jnp.ones((), dtype) if not prob.adaptive else None
        args = (s_hi, s_lo)
        f0 = aug_field(jnp.zeros((), dtype), z, args)
        if prob.adaptive:
            h0 = _loop.initial_step(aug, z, args, f0)
        else:
            h0 = jnp.minimum(1.0, out.records.h[0] / jnp.maximum(s_hi - s_lo, 1e-300))
        res = _loop.forward(aug, z, args, jnp.zeros((0,), dtype), h0)
        return jnp.where(s_hi > s_lo, res.y_final, z)

    # Points where cotangents enter, processed from the end backwards: save points, then
    # non-terminal events (each with its time's cotangent).
    E = out.s_events.shape[0]
    pts = jnp.concatenate([ss, jnp.where(jnp.isfinite(out.s_events), out.s_events, -1.0)])
    ct_pts_y = jnp.concatenate([ct.ys, jnp.zeros((E, d), dtype)])
    ct_pts_s = jnp.concatenate([jnp.zeros_like(ss), ct.s_events])
    order = jnp.argsort(-pts)

    a0, g0 = jump(out.y_final, out.s_final, ct.y_final, ct.s_final, out.status == Status.EVENT)
    z = jnp.concatenate([out.y_final, a0, g0])

    def body(i, carry):
        z, s_cur, ct_ss = carry
        k = order[i]
        s_k = pts[k]
        valid = s_k >= 0
        s_tgt = jnp.where(valid, jnp.minimum(s_k, s_cur), s_cur)
        z = segment(z, s_cur, s_tgt)
        y = z[:d]
        a_add, g_add = jump(y, s_tgt, ct_pts_y[k], ct_pts_s[k], k >= ss.shape[0])
        z = z + jnp.where(valid, jnp.concatenate([jnp.zeros(d, dtype), a_add, g_add]), 0.0)
        dss = jnp.where(valid & (k < ss.shape[0]), ct_pts_y[k] @ F_p(s_tgt, y, p_flat), 0.0)
        ct_ss = ct_ss.at[jnp.minimum(k, ss.shape[0] - 1)].add(dss) if ss.shape[0] else ct_ss
        return z, s_tgt, ct_ss

    z, s_cur, ct_ss = jax.lax.fori_loop(0, pts.shape[0], body, (z, out.s_final, jnp.zeros_like(ss)))
    z = segment(z, s_cur, jnp.zeros((), dtype))
    return z[d : 2 * d], unravel_p(z[2 * d :]), ct_ss

