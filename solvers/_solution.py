"""`Solution`: what `solve` returns, and its dense output."""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from . import _loop


class Solution(eqx.Module):
    """The result of `solve`.

    ts: (n,) save times, in the order t0, ts, steps, t1 of the `SaveAt`. Save times after
        a terminal event hold t_event, and their states the state there.
    ys: PyTree like y0, each leaf with a leading axis n. Differentiable.
    stats: dict of num_steps, num_accepted, num_rejected, num_f_evals, num_jac_evals.
    status: int32, a `Status` code.
    t_event: time at which a terminal event stopped the solve (+inf if none did).
        Differentiable.
    t_events: (max_events,) times of the event's crossings in order (the one that
        stopped the solve included), +inf unused; a list of them for a list of events.
        Differentiable.
    y_events: the states at those crossings: a PyTree like y0 with a leading axis
        max_events (NaN unused), or a list of them. Differentiable.
    event_index: which event of a list stopped the solve (-1: none).
    evaluate(t): dense output (with SaveAt(dense=True)).
    """

    ts: Any
    ys: Any
    stats: dict
    status: Any
    t_event: Any
    t_events: Any
    y_events: Any
    event_index: Any
    _records: Any
    _p: Any
    _s_final: Any
    _prob: Any = eqx.field(static=True)
    _unravel: Any = eqx.field(static=True)

    def evaluate(self, t):
        """State at time(s) t (scalar or (m,) array) inside the solved interval, from the
        steps' dense output. Differentiable with respect to t and every input of the
        solve. Needs `saveat=solvers.SaveAt(dense=True)`. Outside the interval: a
        ValueError, or NaN under jit."""
        if self._records is None:
            raise ValueError(
                "evaluate needs the dense output: solve with saveat=solvers.SaveAt(dense=True) "
                "(add ts=... inside the SaveAt to save points as well)"
            )
        if jnp.ndim(self._s_final) > 0:  # a vmapped solve: evaluate each member
            return jax.vmap(lambda sol: sol.evaluate(t))(self)
        p = self._p
        rec = self._records
        t = jnp.asarray(t, rec.s.dtype)
        T = p.t1 - p.t0
        s_all = jnp.atleast_1d(jnp.where(T == 0, 0.0, (t - p.t0) / jnp.where(T == 0, 1.0, T)))
        _check_inside(t, s_all, self._s_final, p)
        flat = jax.vmap(lambda s: _dense_at(self._prob, rec, p, s, self._s_final))(s_all)
        ys = jax.vmap(self._unravel)(flat)
        if jnp.ndim(t) == 0:
            return jax.tree_util.tree_map(lambda x: x[0], ys)
        return ys


def _check_inside(t, s, s_final, p):
    if isinstance(s, jax.core.Tracer) or isinstance(s_final, jax.core.Tracer):
        return
    s, s_final = np.asarray(s), float(s_final)
    tol = 8 * np.finfo(s.dtype).eps
    if np.any(~np.isfinite(s)) or np.any(s < -tol) or np.any(s > s_final + tol):
        t_end = float(p.t0 + s_final * (p.t1 - p.t0))
        raise ValueError(f"evaluate(t): t must lie in the solved interval [{float(p.t0)}, {t_end}], got {t}")


def _dense_at(prob, rec, p, s, s_final):
    """Dense output at rescaled time s (NaN outside [0, s_final])."""
    n = rec.n
    # Unused slots past the last accepted step hold zeros: keep them out of the search.
    starts = jnp.where(jnp.arange(rec.s.shape[0]) < n, rec.s, jnp.inf)
    j = jnp.clip(jnp.searchsorted(starts, s, side="right") - 1, 0, jnp.maximum(n - 1, 0))
    s_j, h_j, y_j = rec.s[j], rec.h[j], _loop.recorded_state(prob, rec, j)
    m = prob.method
    res = m.step(prob.F, s_j, y_j, h_j, p, m.init(prob.F, s_j, y_j, p))
    theta = _loop.clamp01((s - s_j) / jnp.where(h_j == 0, 1.0, h_j))
    y = jnp.where(n > 0, _loop.interp(m, res.dense, res.y1, h_j, theta), y_j)
    tol = 8 * jnp.finfo(s.dtype).eps
    inside = (s >= -tol) & (s <= s_final + tol)
    return jnp.where(inside, y, jnp.nan)
