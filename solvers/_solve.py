"""`solve`: the public entry point, input checks and the `Solution` it returns."""

from __future__ import annotations

import functools
import re
from typing import Any, Callable, Optional

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from equinox.internal import unvmap_any
from jax.flatten_util import ravel_pytree

from . import _adjoint, _loop
from ._base import FAILURES, MESSAGES, Status
from ._event import Event
from ._rk import Tsit5


class Solution(eqx.Module):
    """The result of `solve`.

    ts: (n,) save times (`ts` as given, or (t1,) / (t_event,) when ts is None). Save
        times after a terminal event hold t_event, and their states the state there.
    ys: PyTree like y0, each leaf with a leading axis n. Differentiable.
    stats: dict of num_steps, num_accepted, num_rejected, num_f_evals.
    status: int32, a `Status` code.
    t_event: time of the terminal event (+inf if none fired). Differentiable.
    t_events: (max_events,) times of non-terminal events in order, +inf unused.
        Differentiable.
    evaluate(t): dense output at times t in the solved interval (not differentiable
        with respect to the inputs of the solve: use `ts` for gradients).
    """

    ts: Any
    ys: Any
    stats: dict
    status: Any
    t_event: Any
    t_events: Any
    _records: Any
    _p: Any
    _t0: Any
    _t1: Any
    _prob: Any = eqx.field(static=True)
    _unravel: Any = eqx.field(static=True)

    def evaluate(self, t):
        """State at time(s) t (scalar or (m,) array) from the steps' dense output."""
        if self._prob is None or not self._prob.record or self._prob.record_every != 1:
            raise ValueError(
                "evaluate needs every step recorded: solve with adjoint=DiscreteAdjoint() "
                "(the default) or ForwardMode()"
            )
        prob, rec = self._prob, jax.lax.stop_gradient(self._records)
        p = jax.lax.stop_gradient(self._p)
        t = jnp.asarray(t, rec.s.dtype)
        T = self._t1 - self._t0
        s_all = jnp.where(T == 0, 1.0, (t - self._t0) / jnp.where(T == 0, 1.0, T))

        # Unused slots past the last accepted step hold zeros: keep them out of the search.
        starts = jnp.where(jnp.arange(rec.s.shape[0]) < rec.n, rec.s, jnp.inf)

        def one(s):
            j = jnp.clip(jnp.searchsorted(starts, s, side="right") - 1, 0, rec.n - 1)
            j = jnp.where(rec.n > 0, j, 0)
            s_j, h_j, y_j = rec.s[j], rec.h[j], _loop.recorded_state(prob, rec, j)
            m = prob.method
            res = m.step(prob.F, s_j, y_j, h_j, p, m.init(prob.F, s_j, y_j, p))
            theta = jnp.clip((s - s_j) / jnp.where(h_j == 0, 1.0, h_j), 0.0, 1.0)
            return _loop.interp(m, res.dense, res.y1, h_j, theta)

        flat = jax.vmap(one)(jnp.atleast_1d(s_all))
        ys = jax.vmap(self._unravel)(flat)
        if jnp.ndim(t) == 0:
            return jax.tree_util.tree_map(lambda x: x[0], ys)
        return ys


class SolveError(RuntimeError):
    """A solve failed at run time (status in `FAILURES`); raised when throw=True."""


def _fail(x, status):
    # Host side of the check. Under vmap it sees the whole batch: raise for the worst status.
    bad = np.isin(status, [int(s) for s in FAILURES])
    if np.any(bad):
        worst = Status(int(np.max(np.where(bad, status, -1))))
        raise SolveError(f"solve failed ({worst.name}): {MESSAGES[worst]}")
    return x


@jax.custom_jvp
def _raise_on_failure(x, failed, status):
    """Identity on x that raises (also under jit) when failed; invisible to autodiff.

    A `lax.cond` around one host callback, taken only on failure: lighter to trace and
    compile than `eqx.branched_error_if`, which the first call of every solve pays for.
    `unvmap_any` keeps the predicate unbatched under vmap, so that the cond stays a cond
    (a batched one would become a select, calling back to the host on every solve).
    """
    def bad(x, status):
        out = jax.ShapeDtypeStruct(x.shape, x.dtype)
        return jax.pure_callback(_fail, out, x, status, vmap_method="broadcast_all")

    return jax.lax.cond(unvmap_any(failed), bad, lambda x, status: x, x, status)


@_raise_on_failure.defjvp
def _raise_on_failure_jvp(primals, tangents):
    x, failed, status = primals
    return _raise_on_failure(x, failed, status), tangents[0]


def _is_concrete(x):
    return not any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree_util.tree_leaves(x))


def _check(f, y0, t0, t1, args, method, rtol, atol, dt0, adaptive, ts, max_steps):
    """Errors a user can fix, raised before anything is traced."""
    for name, tol in (("rtol", rtol), ("atol", atol)):
        if _is_concrete(tol) and not np.all(np.asarray(tol) > 0):
            raise ValueError(
                f"{name}={tol} must be positive; use a tiny value (e.g. 1e-12) to rely on the other tolerance"
            )
    if not isinstance(max_steps, int) or max_steps < 1:
        raise ValueError(f"max_steps must be a positive int, got {max_steps!r}")
    leaves = jax.tree_util.tree_leaves(y0)
    if not leaves:
        raise ValueError("y0 has no arrays: pass the initial state as an array or a PyTree of arrays")
    for leaf in leaves:
        if not jnp.issubdtype(jnp.result_type(leaf), jnp.floating):
            raise ValueError(
                f"y0 must hold floating-point arrays, got dtype {jnp.result_type(leaf)}; "
                "convert it, e.g. jnp.asarray(y0, dtype=float)"
            )
    if _is_concrete(y0) and not all(np.all(np.isfinite(np.asarray(x))) for x in leaves):
        raise ValueError("y0 contains inf or NaN: the initial state must be finite")
    if not adaptive and dt0 is None:
        raise ValueError("adaptive=False takes fixed steps of size dt0: pass dt0")
    if adaptive and method.error_order is None:
        raise ValueError(
            f"{type(method).__name__} has no error estimate, so it cannot adapt its step: "
            "pass adaptive=False and dt0, or use an adaptive method such as Tsit5()"
        )
    if dt0 is not None and _is_concrete((dt0, t0, t1)):
        span = float(t1) - float(t0)
        if float(dt0) == 0 or (span != 0 and float(dt0) * span < 0):
            raise ValueError(f"dt0={dt0} must be nonzero and point from t0={t0} towards t1={t1}")
    if ts is not None:
        ts_arr = np.asarray(ts) if _is_concrete(ts) else None
        if jnp.ndim(ts) != 1 or jnp.shape(ts)[0] == 0:
            raise ValueError("ts must be a non-empty 1-D array of save times")
        if ts_arr is not None and _is_concrete((t0, t1)):
            lo, hi = sorted((float(t0), float(t1)))
            sign = 1.0 if float(t1) >= float(t0) else -1.0
            if np.any(np.diff(ts_arr) * sign < 0):
                raise ValueError("ts must be sorted in the direction of integration (from t0 to t1)")
            if ts_arr.min() < lo or ts_arr.max() > hi:
                raise ValueError(
                    f"ts must lie in [t0, t1] = [{t0}, {t1}]; got values in [{ts_arr.min()}, {ts_arr.max()}]"
                )
    try:
        out = eqx.filter_eval_shape(f, jnp.asarray(t0, float), y0, args)
    except Exception as e:  # the user's f failing at all is also worth a clear message
        raise ValueError(f"calling f(t0, y0, args) failed: {type(e).__name__}: {e}") from e
    want = jax.tree_util.tree_structure(y0)
    got = jax.tree_util.tree_structure(out)
    if want != got:
        raise ValueError(f"f must return the same structure as y0: y0 is {want}, f returned {got}")
    for a, b in zip(leaves, jax.tree_util.tree_leaves(out)):
        if jnp.shape(a) != b.shape:
            raise ValueError(f"f returned a leaf of shape {b.shape} where y0 has shape {jnp.shape(a)}")


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
    dt0=None,
    adaptive: bool = True,
    ts=None,
    max_steps: int = 4096,
    adjoint=None,
    event: Optional[Event] = None,
    throw: bool = True,
) -> Solution:
    """Solve dy/dt = f(t, y, args) from t0 to t1 (t1 < t0 integrates backwards).

    y0: any PyTree of float arrays; f(t, y, args) returns the same structure.
    args: any PyTree (arrays, equinox modules...); gradients flow to its float arrays,
        to y0, t0, t1 and ts.
    method: an explicit Runge-Kutta method (Tsit5 by default), a stiff method
        (Rodas5P, Kvaerno5) or a symplectic one (Verlet, Yoshida4; fixed steps).
    rtol, atol: error tolerances of the adaptive step control (RMS norm).
    dt0: first step (None: automatic); with adaptive=False the fixed step size.
    ts: 1-D save times in [t0, t1]; None saves only the state at t1 (or at the event).
    max_steps: bound on attempted steps (and the size of the step record).
    adjoint: DiscreteAdjoint() (default), CheckpointAdjoint(n), BacksolveAdjoint(),
        or ForwardMode() for jax.jvp / jax.jacfwd.
    event: an `Event`, terminal or not.
    throw: raise an error if the solve fails (`SolveError`; under the caller's jax.jit it
        arrives as jax's JaxRuntimeError, its message naming the cause); with False,
        check `Solution.status`.

    Jit-compiled; composes with jax.jit, jax.vmap, jax.grad (jax.jvp with ForwardMode).
    """
    method = Tsit5() if method is None else method
    adjoint = _adjoint.DiscreteAdjoint() if adjoint is None else adjoint
    if hasattr(method, "specialize"):
        method = method.specialize(y0)
    if hasattr(method, "with_tolerances") and _is_concrete((rtol, atol)):
        method = method.with_tolerances(float(rtol), float(atol))  # e.g. Newton tolerances
    _check(f, y0, t0, t1, args, method, rtol, atol, dt0, adaptive, ts, max_steps)
    try:
        return _solve(f, y0, t0, t1, args, method, float(rtol), float(atol), dt0, adaptive, ts,
                      max_steps, adjoint, event, throw)
    except jax.errors.JaxRuntimeError as e:
        # Called eagerly: surface our own error, not the callback's traceback around it.
        # (Under the caller's jit it arrives as JaxRuntimeError, its message ending in ours.)
        found = re.search(r"solve failed \(\w+\): [^\n]*", str(e))
        if found is None:
            raise
        raise SolveError(found.group(0)) from None


@eqx.filter_jit
def _solve(f, y0, t0, t1, args, method, rtol, atol, dt0, adaptive, ts, max_steps, adjoint, event, throw):
    y_flat, unravel = ravel_pytree(y0)
    dtype = y_flat.dtype
    t0, t1 = jnp.asarray(t0, dtype), jnp.asarray(t1, dtype)
    diff_args, static_args = eqx.partition(args, eqx.is_inexact_array)
    p = (diff_args, t0, t1)

    def unflat_args(p):
        return eqx.combine(p[0], static_args)

    def F(s, y, p):
        # Time rescaled to s in [0, 1]: dy/ds = (t1 - t0) f(t0 + s (t1 - t0), y).
        _, t0, t1 = p
        T = t1 - t0
        dy = f(t0 + s * T, unravel(y), unflat_args(p))
        return T * ravel_pytree(dy)[0].astype(dtype)

    G = None
    if event is not None:
        def G(s, y, p):
            _, t0, t1 = p
            return jnp.asarray(event.cond(t0 + s * (t1 - t0), unravel(y), unflat_args(p)), dtype)

    T = t1 - t0
    safe_T = jnp.where(T == 0, 1.0, T)
    if ts is None:
        ss = jnp.zeros((0,), dtype)
    else:
        ts = jnp.asarray(ts, dtype)
        ss = jnp.where(T == 0, 1.0, (ts - t0) / safe_T)

    prob = _loop.Problem(
        F=F, method=method, rtol=rtol, atol=atol, adaptive=adaptive, max_steps=max_steps,
        n_save=0 if ts is None else ts.shape[0],
        record_every=adjoint.record_every(max_steps),
        record=not isinstance(adjoint, _adjoint.BacksolveAdjoint), G=G, event=event,
        differentiable_records=not isinstance(adjoint, _adjoint.ForwardMode),
    )
    if dt0 is not None:
        h0 = jnp.abs(jnp.asarray(dt0, dtype)) / jnp.abs(safe_T)
    else:
        f0 = F(jnp.zeros((), dtype), y_flat, p)
        h0 = jax.lax.stop_gradient(_loop.initial_step(prob, y_flat, p, f0))
    h0 = jnp.where(T == 0, 1.0, jnp.minimum(h0, 1.0))

    out = _adjoint.run(prob, adjoint, y_flat, p, ss, h0)

    t_end = t0 + out.s_final * T
    fired = out.status == Status.EVENT
    t_event = jnp.where(fired, t_end, jnp.inf)
    if ts is None:
        ts_out, ys_flat = t_end[None], out.y_final[None]
    else:
        after = out.records.save_step < 0  # past a terminal event (or a failure)
        ts_out = jnp.where(after, t_end, ts)
        ys_flat = jnp.where(after[:, None], out.y_final, out.ys)
    t_events = jnp.where(jnp.isfinite(out.s_events), t0 + out.s_events * T, jnp.inf)

    status = out.status
    if throw:
        failed = functools.reduce(jnp.logical_or, [status == s for s in FAILURES])
        ys_flat = _raise_on_failure(ys_flat, failed, status)
    stats = dict(zip(("num_steps", "num_accepted", "num_rejected", "num_f_evals", "num_jac_evals"), out.stats))
    return Solution(
        ts=ts_out,
        ys=jax.vmap(unravel)(ys_flat),
        stats=stats,
        status=status,
        t_event=t_event,
        t_events=t_events,
        _records=out.records,
        _p=p,
        _t0=t0,
        _t1=t1,
        _prob=prob,
        _unravel=unravel,
    )
