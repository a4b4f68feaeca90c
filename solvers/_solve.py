"""`solve`: the public entry point."""

from __future__ import annotations

import re
from typing import Any, Callable, Sequence, Union

import equinox as eqx
import jax
import jax.numpy as jnp
from jax._src import core as _jax_core
from jax.flatten_util import ravel_pytree

from . import _checks, _loop
from ._base import Status
from ._errors import SolveError, raise_if_failed, raise_on_failure
from ._event import Event, Events
from ._solution import Solution


def _under_trace() -> bool:
    # Private JAX API (no public equivalent): whether a transformation (jit, grad, vmap)
    # is tracing the caller. Only then can f close over tracers.
    try:
        return not _jax_core.trace_state_clean()
    except AttributeError:  # pragma: no cover - a JAX without it: always convert
        return True


def _closure_converted(f, t0, y0, args):
    """f with the tracers it closes over (parameters of a model the user differentiates)
    hoisted into its PyTree leaves, where the adjoints can differentiate them."""
    if not _under_trace():
        return f  # eager call: nothing to hoist, and f keeps its identity for jit's cache
    # The example time has the dtype F calls f with (the state's, see `_fields`).
    t = jnp.zeros((), ravel_pytree(y0)[0].dtype)
    converted = eqx.filter_closure_convert(f, t, y0, args)
    if not any(isinstance(x, jax.core.Tracer) for x in jax.tree_util.tree_leaves(converted)):
        return f  # closes over no tracers: keep f as it is
    return converted


_MODE_HINTS = (
    ("can't apply forward-mode autodiff (jvp) to a custom_vjp function",
     "forward mode (jax.jvp, jax.jacfwd) through solve needs "
     "adjoint=solvers.ForwardMode(); the default DiscreteAdjoint supports reverse mode (jax.grad)"),
)


def solve(
    f: Callable,
    y0: Any,
    t0,
    t1,
    args: Any = None,
    *,
    method=None,
    rtol=1e-6,
    atol=1e-6,
    controller=None,
    dt0=None,
    adaptive: bool = True,
    ts=None,
    saveat=None,
    max_steps: int = 4096,
    adjoint=None,
    event: Union[None, Event, Sequence[Event]] = None,
    throw: bool = True,
) -> Solution:
    """Solve dy/dt = f(t, y, args) from t0 to t1 (t1 < t0 integrates backwards).

    f: f(t, y, args) -> dy/dt, a function or an equinox Module; gradients flow to the
        arrays it holds or closes over.
    y0: any PyTree of float arrays; f(t, y, args) returns the same structure.
    args: any PyTree (arrays, equinox modules...); gradients flow to its float arrays
        (integer arrays are carried along, not differentiated), to y0, t0, t1 and ts.
    method: an `AbstractMethod`: explicit Runge-Kutta (Tsit5 by default), stiff (Rodas5P,
        Kvaerno5) or symplectic (Verlet, Yoshida4; fixed steps).
    rtol, atol: shorthand for controller=PIDController(rtol, atol); numbers, traced
        scalars or PyTrees like y0 (per component).
    controller: an `AbstractController` (PIDController, ConstantStepSize).
    dt0: first step (None: automatic); with adaptive=False the fixed step size.
    adaptive: False is shorthand for controller=ConstantStepSize() (steps of dt0).
    ts: shorthand for saveat=SaveAt(ts=ts): 1-D save times in [t0, t1].
    saveat: a `SaveAt`: what to return (t0, ts, every step, t1, dense output).
    max_steps: bound on attempted steps (and the size of the step record when
        differentiating or with dense output / saved steps).
    adjoint: DiscreteAdjoint() (default), CheckpointAdjoint(n), BacksolveAdjoint(),
        InterpolatingAdjoint(n), or ForwardMode() for jax.jvp / jax.jacfwd.
    event: an `Event`, terminal or not, or a list of them (`Solution.event_index` says
        which one stopped the solve).
    throw: raise an error if the solve fails (`SolveError`; under the caller's jax.jit it
        arrives as jax's JaxRuntimeError, its message naming the cause); with False,
        check `Solution.status`.

    Jit-compiled; composes with jax.jit, jax.vmap, jax.grad (jax.jvp with ForwardMode).
    """
    y0, method, controller, saveat, adjoint, max_steps = _checks.prepare(
        f, y0, t0, t1, args, method=method, rtol=rtol, atol=atol, controller=controller, dt0=dt0,
        adaptive=adaptive, ts=ts, saveat=saveat, max_steps=max_steps, adjoint=adjoint, event=event)
    f = _closure_converted(f, t0, y0, args)
    try:
        events = None if event is None else Events.of(event)
        # Called eagerly, the status is checked here on the host instead of by a callback in
        # the compiled program: JAX never stores a program with a host callback in the
        # persistent compilation cache (measured: a warm cache gave no gain with throw=True).
        eager = not _under_trace()
        sol = _solve(f, y0, t0, t1, args, method, controller, dt0, saveat, max_steps, adjoint, events,
                     throw and not eager)
        if throw and eager:
            raise_if_failed(sol.status)
        return sol
    except TypeError as e:
        for text, hint in _MODE_HINTS:
            if text in str(e):
                raise TypeError(hint) from e
        raise
    except jax.errors.JaxRuntimeError as e:
        # Called eagerly: surface our own error, not the callback's traceback around it.
        # (Under the caller's jit it arrives as JaxRuntimeError, its message ending in ours.)
        found = re.search(r"solve failed \(\w+\): [^\n]*", str(e))
        if found is None:
            raise
        raise SolveError(found.group(0)) from None


class _Model(eqx.Module):
    """f and args split into differentiable arrays, other arrays and static parts."""

    static: Any = eqx.field(static=True)

    @staticmethod
    def split(f, args):
        diff, rest = eqx.partition((f, args), eqx.is_inexact_array)
        arrays, static = eqx.partition(rest, eqx.is_array)
        return diff, arrays, _Model(static)

    def rebuild(self, p: _loop.Params):
        return eqx.combine(p.args, p.consts.arrays, self.static)


def _fields(model: _Model, unravel, dtype, events):
    """The vector field and the (K,) event conditions on the flat state in rescaled time."""

    def F(s, y, p):
        # Time rescaled to s in [0, 1]: dy/ds = (t1 - t0) f(t0 + s (t1 - t0), y).
        f, args = model.rebuild(p)
        T = p.t1 - p.t0
        dy = f(p.t0 + s * T, unravel(y), args)
        return T * ravel_pytree(dy)[0].astype(dtype)

    if events is None:
        return F, None

    def G(s, y, p):
        _, args = model.rebuild(p)
        t = p.t0 + s * (p.t1 - p.t0)
        return jnp.stack([jnp.asarray(e.cond(t, unravel(y), args), dtype) for e in events.events])

    return F, G


def _check_status(status, ss, ts_traced, controller):
    """Failures that traced inputs can only show at run time."""
    if ts_traced:
        ok = jnp.all(jnp.isfinite(ss) & (ss >= 0) & (ss <= 1))
        ok = ok & jnp.all(jnp.diff(ss) >= 0) if ss.shape[0] > 1 else ok
        status = jnp.where(ok, status, Status.BAD_TS)
    return jnp.where(controller.valid(), status, Status.BAD_TOL).astype(jnp.int32)


@eqx.filter_jit
def _solve(f, y0, t0, t1, args, method, controller, dt0, saveat, max_steps, adjoint, events, throw):
    y_flat, unravel = ravel_pytree(y0)
    dtype = y_flat.dtype
    t0, t1 = jnp.asarray(t0, dtype), jnp.asarray(t1, dtype)
    diff, arrays, model = _Model.split(f, args)
    p = _loop.Params(diff, t0, t1, _loop.Consts(arrays, controller))
    F, G = _fields(model, unravel, dtype, events)
    T = t1 - t0
    safe_T = jnp.where(T == 0, 1.0, T)
    ts = None if saveat.ts is None else jnp.asarray(saveat.ts, dtype)
    # With t0 == t1 every save time is t0 = t1, the end of the (empty) solve.
    ss = jnp.zeros((0,), dtype) if ts is None else jnp.where(T == 0, 1.0, (ts - t0) / safe_T)
    prob = _loop.Problem(F=F, method=method, max_steps=max_steps, n_save=ss.shape[0],
                         record_every=1 if saveat.dense or saveat.steps else 0, G=G, events=events, throw=throw)
    if y_flat.size == 0:
        out = _empty_out(prob, dtype)
    else:
        h0, n_f0 = controller.init_step(F, method, y_flat, p, dt0, jnp.abs(safe_T))
        out = adjoint.loop(prob, y_flat, p, ss, jnp.where(T == 0, 1.0, jnp.minimum(h0, 1.0)))
        out = out._replace(stats=out.stats.at[3].add(n_f0))
    status = _check_status(out.status, ss, ts is not None and not _checks.is_concrete(saveat.ts), controller)
    return _assemble(prob, saveat, out._replace(status=status), p, y_flat, ts, unravel, throw)


def _empty_out(prob, dtype):
    """The solve of a state with no components: nothing to integrate; one step from s = 0
    to 1 on record (dense output and saved steps read it)."""
    z = jnp.zeros((0,), dtype)
    K, E = max(prob.n_events, 1), prob.max_events
    rows = prob.max_steps if prob.record_every else 0
    s_rec, h_rec = jnp.zeros((rows,), dtype), jnp.zeros((rows,), dtype).at[:1].set(1.0)
    rec = _loop.Records(table=jnp.stack([s_rec, h_rec], axis=1), y=jnp.zeros((0, 0), dtype),
                        n=jnp.ones((), jnp.int32), event_theta=jnp.ones((), dtype),
                        event_index=-jnp.ones((), jnp.int32), save_step=jnp.zeros(prob.n_save, jnp.int32),
                        event_step=jnp.full((K, E), -1, jnp.int32))
    return _loop.Out(jnp.zeros((prob.n_save, 0), dtype), z, jnp.ones((), dtype), jnp.full((K, E), jnp.inf, dtype),
                     jnp.zeros((K, E, 0), dtype), jnp.asarray(Status.SUCCESS, jnp.int32), jnp.zeros(5, jnp.int32), rec)


def _steps_saved(out, t0, T, t_end):
    """The state and time after every accepted step, from the step records."""
    rec = out.records
    k = jnp.arange(rec.s.shape[0])
    last = (k == rec.n - 1)[:, None]
    y_next = jnp.concatenate([rec.table[1:, 2:], out.y_final[None]])
    ys = jnp.where((k < rec.n - 1)[:, None], y_next, jnp.where(last, out.y_final, jnp.nan))
    s_next = jnp.concatenate([rec.s[1:], out.s_final[None]])
    ts = jnp.where(k < rec.n - 1, t0 + s_next * T, jnp.where(last[:, 0], t_end, jnp.inf))
    return ts, ys


def _per_event(x, prob):
    """One entry per event: the arrays themselves for a single Event, else a list."""
    if prob.events is None or len(prob.events.events) == 1:
        return jax.tree_util.tree_map(lambda a: a[0], x)
    return [jax.tree_util.tree_map(lambda a, k=k: a[k], x) for k in range(prob.n_events)]


def _assemble(prob, saveat, out, p, y0, ts, unravel, throw):
    t0, t1 = p.t0, p.t1
    T = t1 - t0
    # s = 1 is t1 bit for bit (t0 + (t1 - t0) need not be).
    t_end = jnp.where(out.s_final == 1, t1, t0 + out.s_final * T)
    times, states = [], []
    if saveat.t0:
        times.append(t0[None])
        states.append(y0[None])
    if ts is not None:
        after = out.records.save_step < 0  # past a terminal event (or a failure)
        times.append(jnp.where(after, t_end, ts))
        states.append(jnp.where(after[:, None], out.y_final, out.ys))
    if saveat.steps:
        t_steps, y_steps = _steps_saved(out, t0, T, t_end)
        times.append(t_steps)
        states.append(y_steps)
    if saveat.save_t1:
        times.append(t_end[None])
        states.append(out.y_final[None])
    ts_out = jnp.concatenate(times) if times else jnp.zeros((0,), y0.dtype)
    ys_flat = jnp.concatenate(states) if states else jnp.zeros((0, y0.shape[0]), y0.dtype)
    status = out.status
    if throw:
        ys_flat = raise_on_failure(ys_flat, status)
    stats = dict(zip(("num_steps", "num_accepted", "num_rejected", "num_f_evals", "num_jac_evals"), out.stats))
    fired = status == Status.EVENT
    return Solution(
        ts=ts_out, ys=jax.vmap(unravel)(ys_flat), stats=stats, status=status,
        t_event=jnp.where(fired, t_end, jnp.inf),
        t_events=_per_event(jnp.where(jnp.isfinite(out.s_events), t0 + out.s_events * T, jnp.inf), prob),
        y_events=_per_event(jax.vmap(jax.vmap(unravel))(
            jnp.where(jnp.isfinite(out.s_events)[..., None], out.y_events, jnp.nan)), prob),
        event_index=jnp.where(fired, out.records.event_index, -1),
        _records=out.records if saveat.dense else None, _p=p, _s_final=out.s_final,
        _prob=prob, _unravel=unravel,
    )
