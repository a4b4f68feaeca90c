"""Forward sensitivities as extra components of the state (explicit Runge-Kutta methods).

DiscreteAdjoint differentiates few inputs in forward mode: one tangent per input carried
along the loop. `jax.jacfwd` through the loop does that, but XLA then compiles the
tangents' stages as kernels of their own beside the primal ones: the Lotka-Volterra
gradient (4 parameters, 249 steps) took 0.142-0.148 ms against 0.065 ms for the solve.

For an explicit Runge-Kutta method, differentiating a step with h held fixed (the step
sizes are not differentiated: the controller stops their gradient) is the same step
applied to the state extended by its tangents S, with f extended by its JVPs,

    d/ds (y, S_j) = (F(s, y, p), dF/dy S_j + dF/dp e_j),

because every stage is linear in the earlier stages. One solve of that extended state,
its steps judged on y alone, gives the same Jacobian to rounding error in one kernel
per stage (the Lotka-Volterra gradient: 0.094-0.101 ms). Small states only: see
EXTEND_BELOW.
"""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from . import _loop
from ._controller import AbstractController

# The route is taken for states of fewer components, where a step is a few tiny kernels
# and their number is the cost. Measured (Fisher-KPP, 2 parameters, Tsit5 at 1e-8, with
# jacfwd through the loop = 1): 0.39 at d = 4, 0.36 at 8, 0.30 at 12, but 0.95 at 16,
# 1.24 at 24, 1.22 at 32 and 1.12 at 64, where the stages are materialised anyway.
EXTEND_BELOW = 16


def applies(prob: _loop.Problem, y0, needs) -> bool:
    """Whether the extended-state route gives the loop's exact derivative (a method that
    declares it, no events, whose located times are not stages, and save points that are
    not differentiated, whose interpolation points would move), and is the faster one."""
    exact = prob.method.tangents_as_states and prob.events is None and not needs.ss
    return exact and y0.size < EXTEND_BELOW


class _OnPrimal(AbstractController):
    """The controller of the extended state (y, S): it judges steps by y alone, so that
    the steps are those of the solve itself."""

    inner: AbstractController
    d: int = eqx.field(static=True)

    def init_step(self, F, method, y0, p, dt0, span):
        return self.inner.init_step(F, method, y0[: self.d], p, dt0, span)

    def decide(self, method, y, res, s, h, memory, span):
        d = self.d
        res = res._replace(y1=res.y1[:d], y_err=res.y_err[..., :d])
        return self.inner.decide(method, y[:d], res, s, h, memory, span)

    def valid(self):
        return self.inner.valid()


def _extended_field(F, d: int, m: int, diff_needs, directions):
    """F of the extended state (d + m d,): F itself, then its JVP along each S_j and the
    j-th direction of the differentiated (args, t0, t1), which `directions` holds stacked."""

    def F_ext(s, Y, p):
        given = (p.args, p.t0, p.t1)
        primals = tuple(x for x, n in zip(given, diff_needs) if n)

        def g(y, primals):
            it = iter(primals)
            args, t0, t1 = (next(it) if n else x for x, n in zip(given, diff_needs))
            return F(s, y, p._replace(args=args, t0=t0, t1=t1))

        y, S = Y[:d], Y[d:].reshape(d, m)
        tangent = lambda S_j, e_j: jax.jvp(g, (y, primals), (S_j, e_j))  # noqa: E731
        fy, fS = jax.vmap(tangent, in_axes=(1, 0), out_axes=(None, 1))(S, directions)
        return jnp.concatenate([fy, fS.reshape(-1).astype(fy.dtype)])

    return F_ext


def _split(x, d: int, m: int):
    """(..., d + m d) extended states -> the states (..., d) and their Jacobians (..., d, m)."""
    return x[..., :d], x[..., d:].reshape(x.shape[:-1] + (d, m))


def forward_jacobian(prob: _loop.Problem, y0, p: _loop.Params, ss, h0, needs) -> Any:
    """(the loop's Out, an Out whose differentiable fields (ys, y_final, s_final, s_events,
    y_events) hold their Jacobians with respect to the differentiated inputs flattened
    into one vector of m: each of shape field.shape + (m,))."""
    need = needs.as_tuple()[:4]  # y0, args, t0, t1 (save points: see `applies`)
    x, unravel = ravel_pytree(tuple(part for part, n in zip((y0, p.args, p.t0, p.t1), need) if n))
    d, m = y0.shape[0], x.shape[0]
    basis = jax.vmap(unravel)(jnp.eye(m, dtype=x.dtype))  # each differentiated part, stacked m times
    it = iter(basis)
    dy0, *directions = (next(it) if n else None for n in need)
    S0 = jnp.zeros((m, d), y0.dtype) if dy0 is None else dy0.astype(y0.dtype)
    F_ext = _extended_field(prob.F, d, m, need[1:], tuple(e for e in directions if e is not None))
    ext = _loop.Problem(F=F_ext, method=prob.method, max_steps=prob.max_steps, n_save=prob.n_save,
                        differentiable_records=False, throw=prob.throw)
    controller = _OnPrimal(p.consts.controller, d)
    p_ext = p._replace(consts=p.consts._replace(controller=controller))
    out = _loop.forward(ext, jnp.concatenate([y0, S0.T.reshape(-1)]), p_ext, ss, h0)
    (ys, J_ys), (y_final, J_final) = _split(out.ys, d, m), _split(out.y_final, d, m)
    y_events = out.y_events[..., :d]  # no events: placeholders
    out = out._replace(ys=ys, y_final=y_final, y_events=y_events,
                       records=out.records._replace(y=out.records.y[:, :d]))
    zeros = lambda a: jnp.zeros(a.shape + (m,), a.dtype)  # noqa: E731
    jac = out._replace(ys=J_ys, y_final=J_final, s_final=zeros(out.s_final), s_events=zeros(out.s_events),
                       y_events=zeros(y_events))
    return out, jac
