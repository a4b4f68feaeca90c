"""Errors a user can fix, raised before anything is traced, and the defaults that the
shorthand arguments of `solve` (rtol, atol, adaptive, ts) stand for."""

from __future__ import annotations

import inspect
import operator
import warnings

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._adjoint import AbstractAdjoint, DiscreteAdjoint
from ._base import AbstractMethod
from ._controller import AbstractController, ConstantStepSize, PIDController
from ._event import Event
from ._rk import Tsit5
from ._saveat import SaveAt

_INT32_MAX = 2**31 - 1


def is_concrete(x):
    return not any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree_util.tree_leaves(x))


def _instance(name, value, kind, example):
    """value must be an instance of kind: name the argument and the fix otherwise."""
    if isinstance(value, kind):
        return value
    if inspect.isclass(value) and issubclass(value, kind):
        raise TypeError(f"{name}= takes an instance, not the class: pass {name}={value.__name__}()")
    raise TypeError(f"{name}= takes a {kind.__name__} such as {example}, got {value!r}")


def _scalar_time(name, value):
    if jnp.ndim(value) != 0:
        raise ValueError(f"{name} must be a scalar time, got shape {jnp.shape(value)}: pass e.g. {name}=float(...)")
    if isinstance(value, (str, bytes)) or not jnp.issubdtype(jnp.result_type(value), jnp.number):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    if jnp.issubdtype(jnp.result_type(value), jnp.complexfloating):
        raise TypeError(f"{name} must be real, got {value!r}")
    if is_concrete(value) and not np.isfinite(float(value)):
        raise ValueError(f"{name}={value} must be finite")


def _tolerance(name, tol):
    if tol is None or isinstance(tol, (str, bytes, bool)):
        raise TypeError(f"{name} must be a positive number (or a PyTree like y0), got {tol!r}")
    for leaf in jax.tree_util.tree_leaves(tol):
        if isinstance(leaf, (str, bytes)) or not jnp.issubdtype(jnp.result_type(leaf), jnp.number):
            raise TypeError(f"{name} must be a positive number (or a PyTree like y0), got {tol!r}")
        if is_concrete(leaf) and not np.all((np.asarray(leaf) > 0) & np.isfinite(np.asarray(leaf))):
            raise ValueError(
                f"{name}={tol} must be positive and finite; use a tiny value (e.g. 1e-12) to rely on the other "
                "tolerance"
            )


def _max_steps(max_steps):
    if isinstance(max_steps, bool):
        raise TypeError(f"max_steps must be a positive int, got {max_steps!r}")
    try:
        n = operator.index(max_steps)  # accepts numpy integers
    except TypeError:
        raise TypeError(f"max_steps must be a positive int, got {max_steps!r}") from None
    if not 1 <= n <= _INT32_MAX:
        raise ValueError(f"max_steps must be between 1 and 2**31 - 1, got {n}")
    return n


def _state(y0):
    if isinstance(y0, (int, float)) and not isinstance(y0, bool):
        y0 = jnp.asarray(y0, dtype=float)  # a Python float is a scalar state
    leaves = jax.tree_util.tree_leaves(y0)
    if not leaves:
        raise ValueError("y0 has no arrays: pass the initial state as an array or a PyTree of arrays")
    for leaf in leaves:
        if isinstance(leaf, (str, bytes)) or not jnp.issubdtype(jnp.result_type(leaf), jnp.floating):
            raise ValueError(
                f"y0 must hold real floating-point arrays, got {getattr(leaf, 'dtype', type(leaf).__name__)}; "
                "convert it, e.g. jnp.asarray(y0, dtype=float)"
            )
    if is_concrete(y0) and not all(np.all(np.isfinite(np.asarray(x))) for x in leaves):
        raise ValueError("y0 contains inf or NaN: the initial state must be finite")
    return y0


def _controller(controller, rtol, atol, adaptive):
    if controller is None:
        _tolerance("rtol", rtol)
        _tolerance("atol", atol)
        return PIDController(rtol=rtol, atol=atol) if adaptive else ConstantStepSize()
    controller = _instance("controller", controller, AbstractController, "solvers.PIDController(rtol, atol)")
    default = lambda x: is_concrete(x) and np.all(np.asarray(x) == 1e-6)  # noqa: E731
    shorthand = not (default(rtol) and default(atol))
    if shorthand or adaptive is not True:
        raise ValueError(
            "pass the tolerances (or fixed steps) either through controller= or through rtol/atol/adaptive, "
            "not both: e.g. controller=solvers.PIDController(rtol=1e-8, atol=1e-8)"
        )
    if isinstance(controller, PIDController):
        _tolerance("PIDController.rtol", controller.rtol)
        _tolerance("PIDController.atol", controller.atol)
    return controller


def _saveat(saveat, ts):
    if saveat is None:
        return SaveAt(ts=ts)
    saveat = _instance("saveat", saveat, SaveAt, "solvers.SaveAt(ts=...)")
    if ts is not None:
        raise ValueError("pass the save times either as ts= or as saveat=SaveAt(ts=...), not both")
    return saveat


def _check_dt0(dt0, t0, t1):
    if dt0 is None:
        return
    _scalar_time("dt0", dt0)
    if is_concrete((dt0, t0, t1)):
        span = float(t1) - float(t0)
        if float(dt0) == 0 or (span != 0 and float(dt0) * span < 0):
            raise ValueError(f"dt0={dt0} must be nonzero and point from t0={t0} towards t1={t1}")


def _check_ts(ts, t0, t1):
    if ts is None:
        return
    if jnp.ndim(ts) != 1 or jnp.shape(ts)[0] == 0:
        raise ValueError("ts must be a non-empty 1-D array of save times")
    if not is_concrete(ts):
        return  # checked at run time: status BAD_TS
    arr = np.asarray(ts, dtype=float)
    if not np.all(np.isfinite(arr)):
        raise ValueError("ts contains inf or NaN: save times must be finite")
    if is_concrete((t0, t1)):
        lo, hi = sorted((float(t0), float(t1)))
        sign = 1.0 if float(t1) >= float(t0) else -1.0
        if np.any(np.diff(arr) * sign < 0):
            raise ValueError("ts must be sorted in the direction of integration (from t0 to t1)")
        if arr.min() < lo or arr.max() > hi:
            raise ValueError(f"ts must lie in [t0, t1] = [{t0}, {t1}]; got values in [{arr.min()}, {arr.max()}]")


def _check_f(f, y0, t0, args):
    if not callable(f):
        raise TypeError(f"f must be a function f(t, y, args) -> dy/dt, got {f!r}")
    try:
        out = eqx.filter_eval_shape(f, jnp.asarray(t0, float), y0, args)
    except Exception as e:  # the user's f failing at all is also worth a clear message
        raise ValueError(f"calling f(t0, y0, args) failed: {type(e).__name__}: {e}") from e
    want, got = jax.tree_util.tree_structure(y0), jax.tree_util.tree_structure(out)
    if want != got:
        raise ValueError(f"f must return the same structure as y0: y0 is {want}, f returned {got}")
    for a, b in zip(jax.tree_util.tree_leaves(y0), jax.tree_util.tree_leaves(out)):
        if jnp.shape(a) != b.shape:
            raise ValueError(f"f returned a leaf of shape {b.shape} where y0 has shape {jnp.shape(a)}")
        if not jnp.issubdtype(b.dtype, jnp.floating):
            raise TypeError(f"f must return real floating-point arrays, got dtype {b.dtype}: complex states are "
                            "not supported; split them into real and imaginary parts")


def _check_event(event, y0, t0, args):
    if event is None:
        return
    if isinstance(event, (list, tuple)):
        if not event:
            raise ValueError("event=[] holds no events: pass None, an Event, or a list of Events")
        for e in event:
            _check_event(e, y0, t0, args)
        return
    _instance("event", event, Event, "solvers.Event(cond)")
    try:
        out = eqx.filter_eval_shape(event.cond, jnp.asarray(t0, float), y0, args)
    except Exception as e:
        raise ValueError(f"calling event.cond(t0, y0, args) failed: {type(e).__name__}: {e}") from e
    if not hasattr(out, "shape") or out.shape != ():
        shape = getattr(out, "shape", type(out).__name__)
        raise ValueError(f"Event.cond must return a scalar, got {shape}: e.g. return y[0] - height, not y")


def _tightest(tol) -> float:
    """The smallest of concrete tolerances: a number, an array, or a PyTree like y0."""
    return min(float(np.min(np.asarray(leaf))) for leaf in jax.tree_util.tree_leaves(tol))


def _warn_precision(controller, y0):
    if not isinstance(controller, PIDController) or not is_concrete(controller.rtol):
        return
    dtype = jnp.result_type(*jax.tree_util.tree_leaves(y0))
    eps = float(jnp.finfo(dtype).eps)
    # 4 eps (5e-7 in float32): the default rtol 1e-6 (8 eps) still resolves; 1e-7 does not.
    if _tightest(controller.rtol) < 4 * eps:
        warnings.warn(
            f"rtol={controller.rtol} is below 4 eps of the state's dtype {dtype} ({4 * eps:.1e}): the solve "
            "cannot reach it and will stop at rounding level; use float64 (jax.config.update("
            "'jax_enable_x64', True)) or a looser rtol",
            stacklevel=4,
        )


def prepare(f, y0, t0, t1, args, *, method, rtol, atol, controller, dt0, adaptive, ts, saveat, max_steps,
            adjoint, event):
    """Check every argument of `solve` and resolve the shorthands. Returns (y0, method,
    controller, saveat, adjoint, max_steps)."""
    y0 = _state(y0)
    _scalar_time("t0", t0)
    _scalar_time("t1", t1)
    method = Tsit5() if method is None else _instance("method", method, AbstractMethod, "solvers.Tsit5()")
    adjoint = DiscreteAdjoint() if adjoint is None else _instance(
        "adjoint", adjoint, AbstractAdjoint, "solvers.DiscreteAdjoint()")
    max_steps = _max_steps(max_steps)
    if not isinstance(adaptive, bool):
        raise TypeError(f"adaptive must be True or False, got {adaptive!r}")
    controller = _controller(controller, rtol, atol, adaptive)
    saveat = _saveat(saveat, ts)
    _check_dt0(dt0, t0, t1)
    method = method.specialize(y0)
    if isinstance(controller, PIDController) and is_concrete((controller.rtol, controller.atol)):
        method = method.with_tolerances(_tightest(controller.rtol), _tightest(controller.atol))  # e.g. Newton's
    controller.check(method, dt0)
    adjoint.check(saveat)
    _check_ts(saveat.ts, t0, t1)
    _check_f(f, y0, t0, args)
    _check_event(event, y0, t0, args)
    _warn_precision(controller, y0)
    return y0, method, controller.prepare(y0), saveat, adjoint, max_steps
