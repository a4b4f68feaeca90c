"""A thin `scipy.integrate.solve_ivp` look-alike on `solvers.solve` (float64).

    from tests.scipy_adapter import solve_ivp
    res = solve_ivp(fun, (t0, t1), y0, method="RK45", t_eval=..., dense_output=True, events=...)

Conversions only, no numerics of its own: scipy's arguments become `solvers.solve`'s and
its `Solution` becomes a scipy-like result (t, y of shape (n, len(t)), sol, t_events,
y_events, nfev, njev, nlu, status, message, success).

Conventions bridged here (see tests/test_scipy_conventions.py for the checks):
- methods: RK45 -> Dopri5, RK23 -> Bosh3, DOP853 -> Dopri8, Radau/BDF/LSODA -> Kvaerno5
  (any `solvers.AbstractMethod` instance is passed through);
- defaults: scipy's rtol=1e-3, atol=1e-6 (ours are 1e-6, 1e-6); no step limit in scipy,
  here `max_steps` (an extra option, default 100_000);
- `fun(t, y, *args)` -> `f(t, y, args)`; it is called on JAX arrays (tracers), so it must
  be written with jax.numpy (a numpy-only fun gets a TypeError saying so);
- `vectorized=True`: fun is called on y of shape (n, 1) and its result flattened;
- without t_eval, `t` holds t0 and the end of every accepted step (SaveAt(t0, steps));
  with t_eval only the points up to a terminal event are returned (ours repeats the
  event state at later save times);
- scipy's status 0/1/-1 from ours (SUCCESS and NO_EVENT -> 0, EVENT -> 1, failures -> -1;
  solved with throw=False, as scipy returns rather than raises);
- events: callables with optional `.terminal` (bool, int or None) and `.direction`
  (0 -> None) -> `solvers.Event`; `t_events`/`y_events` are always lists, unused slots
  trimmed, an empty `y_events` entry of shape (0,) as scipy's;
- `sol(t)`: (n,) for scalar t, (n, m) for (m,) t (ours evaluates to (m, n)).
- `nlu`: not counted by solvers; both implicit methods (Kvaerno5, Rodas5P) factorise their
  Newton matrix I - h gamma J at every step attempt (the adaptive step size changes at every
  step, and Kvaerno5 may keep J across steps but not h), so nlu is reported as num_steps.
"""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np

import solvers

jax.config.update("jax_enable_x64", True)

METHODS = {
    "RK45": solvers.Dopri5,
    "RK23": solvers.Bosh3,
    "DOP853": solvers.Dopri8,
    "Radau": solvers.Kvaerno5,
    "BDF": solvers.Kvaerno5,
    "LSODA": solvers.Kvaerno5,
}
IMPLICIT = (solvers.Kvaerno5, solvers.Rodas5P)

MESSAGES = {
    0: "The solver successfully reached the end of the integration interval.",
    1: "A termination event occurred.",
}

# Options of scipy's solvers that have no counterpart here (our implicit methods take
# their Jacobian from automatic differentiation): accepted and ignored, with a warning
# like scipy's for options a chosen solver does not use.
_IGNORED = ("jac", "jac_sparsity", "lband", "uband")


class ScipyResult(dict):
    """A scipy OptimizeResult look-alike: a dict with attribute access."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


class DenseSolution:
    """scipy's OdeSolution interface on `Solution.evaluate`: sol(t) is (n,) for a scalar
    t, (n, m) for m times."""

    def __init__(self, solution: solvers.Solution, t_min, t_max):
        self._solution = solution
        self.t_min, self.t_max = t_min, t_max

    def __call__(self, t):
        t = np.asarray(t, dtype=float)
        ys = np.asarray(self._solution.evaluate(jnp.asarray(t)))
        return ys if t.ndim == 0 else ys.T


class _Untraceable(TypeError):
    pass


# Wrappers are cached per user function: solvers.solve is jit-compiled with f as a static
# argument, so a fresh wrapper per call would recompile every solve.
_FUNS: dict = {}
_CONDS: dict = {}


def _wrap_fun(fun, vectorized):
    key = (fun, bool(vectorized))
    if key not in _FUNS:
        _FUNS[key] = _make_f(fun, vectorized)
    return _FUNS[key]


def _make_f(fun, vectorized):
    def f(t, y, args):
        yy = y[:, None] if vectorized else y
        try:
            out = fun(t, yy, *args)
        except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError,
                jax.errors.TracerBoolConversionError) as e:
            raise _Untraceable(
                "fun cannot be traced by JAX (solvers.solve calls it on JAX arrays): write it with "
                f"jax.numpy instead of numpy and without Python control flow on t or y ({type(e).__name__})"
            ) from e
        # No dtype cast: a complex result must reach solvers' check, not be truncated here.
        return jnp.reshape(jnp.asarray(out), y.shape)

    return f


def _terminal(event):
    terminal = getattr(event, "terminal", False)
    return False if terminal is None else terminal


def _wrap_event(event, max_events):
    if event not in _CONDS:
        _CONDS[event] = _make_cond(event)
    direction = getattr(event, "direction", 0)
    direction = None if direction == 0 else int(np.sign(direction))
    return solvers.Event(_CONDS[event], direction=direction, terminal=_terminal(event), max_events=max_events)


def _make_cond(event):
    def cond(t, y, args):
        try:
            return jnp.asarray(event(t, y, *args))
        except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError,
                jax.errors.TracerBoolConversionError) as e:
            raise _Untraceable(
                "event cannot be traced by JAX: write it with jax.numpy instead of numpy "
                f"({type(e).__name__})"
            ) from e

    return cond


def _method(method):
    if isinstance(method, solvers.AbstractMethod):
        return method
    if method not in METHODS:
        raise ValueError(f"`method` must be one of {sorted(METHODS)} or a solvers method instance, got {method!r}")
    return METHODS[method]()


def _raise_untraceable(e: BaseException):
    """The clear message of _Untraceable, through the wrapping solvers adds."""
    cause = e
    while cause is not None:
        if isinstance(cause, _Untraceable):
            raise TypeError(str(cause)) from e
        cause = cause.__cause__ or cause.__context__
    raise e


def solve_ivp(fun, t_span, y0, method="RK45", t_eval=None, dense_output=False, events=None,
              vectorized=False, args=None, **options) -> ScipyResult:
    """scipy.integrate.solve_ivp's signature and result, computed by solvers.solve."""
    t0, t1 = map(float, t_span)
    y0 = np.asarray(y0)
    if np.issubdtype(y0.dtype, np.integer) or y0.dtype == bool:
        y0 = y0.astype(float)  # scipy converts integer states to float
    y0 = jnp.asarray(y0)  # complex states go on to solvers, which rejects them
    if args is not None:
        try:
            _ = [*args]
        except TypeError:
            raise TypeError("Supplied 'args' cannot be unpacked. Please supply `args` as a tuple "
                            "(e.g. `args=(arg,)`)") from None
        args = tuple(args)
    else:
        args = ()

    rtol = options.pop("rtol", 1e-3)
    atol = options.pop("atol", 1e-6)
    rtol, atol = jnp.asarray(rtol, float), jnp.asarray(atol, float)
    max_step = options.pop("max_step", np.inf)
    min_step = options.pop("min_step", 0.0)
    first_step = options.pop("first_step", None)
    max_steps = options.pop("max_steps", 100_000)
    max_events = options.pop("max_events", 256)
    ignored = [k for k in _IGNORED if options.pop(k, None) is not None]
    if options:
        raise TypeError(f"solve_ivp: unknown options {sorted(options)}")
    if ignored:
        warnings.warn(f"The following arguments have no effect for a chosen solver: {', '.join(ignored)}.",
                      UserWarning, stacklevel=2)
    controller = solvers.PIDController(
        rtol=rtol, atol=atol,
        dtmax=None if not np.isfinite(max_step) else float(max_step),
        dtmin=float(min_step) if min_step else None,
    )

    event_list = None
    if events is not None:
        event_list = list(events) if isinstance(events, (list, tuple)) else [events]
    ev = None if event_list is None else [_wrap_event(e, max_events) for e in event_list]

    if t_eval is not None:
        t_eval = np.asarray(t_eval, dtype=float)
        saveat = solvers.SaveAt(ts=jnp.asarray(t_eval), dense=bool(dense_output))
    else:
        saveat = solvers.SaveAt(t0=True, steps=True, t1=False, dense=bool(dense_output))

    try:
        sol = solvers.solve(
            # Times and tolerances as arrays: traced, so that a new t_span or rtol does not
            # recompile (Python floats are static arguments of the jit).
            _wrap_fun(fun, vectorized), y0, jnp.asarray(t0), jnp.asarray(t1), args, method=_method(method),
            controller=controller,
            dt0=None if first_step is None else float(first_step) * np.sign(t1 - t0 or 1.0),
            saveat=saveat, max_steps=int(max_steps), event=ev, throw=False,
        )
    except Exception as e:  # noqa: BLE001 - only to surface the untraceable-fun message
        _raise_untraceable(e)

    code = solvers.Status(int(sol.status))
    if code.failed:
        status, message = -1, code.message
    elif code == solvers.Status.EVENT:
        status, message = 1, MESSAGES[1]
    else:
        status, message = 0, MESSAGES[0]

    ts = np.asarray(sol.ts)
    ys = np.asarray(sol.ys).reshape(ts.shape[0], -1)
    t_event = float(sol.t_event)
    if t_eval is None:
        keep = np.isfinite(ts)  # the unused step slots (+inf)
    elif status == 1:
        # scipy returns the save points up to the event only.
        keep = (t_eval - t_event) * np.sign(t1 - t0) <= 0
    else:
        keep = np.ones(ts.shape, bool)
    ts, ys = ts[keep], ys[keep]

    t_events = y_events = None
    if ev is not None:
        te, ye = sol.t_events, sol.y_events
        if len(ev) == 1:
            te, ye = [te], [ye]
        t_events, y_events = [], []
        for t_k, y_k in zip(te, ye):
            t_k = np.asarray(t_k)
            used = np.isfinite(t_k)
            t_events.append(t_k[used])
            y_k = np.asarray(y_k).reshape(t_k.shape[0], -1)[used]
            y_events.append(y_k if y_k.shape[0] else np.asarray([]))

    stats = {k: int(v) for k, v in sol.stats.items()}
    njev = stats.get("num_jac_evals", 0)
    return ScipyResult(
        t=ts, y=ys.T, sol=DenseSolution(sol, min(t0, t1), max(t0, t1)) if dense_output else None,
        t_events=t_events, y_events=y_events,
        event_index=int(sol.event_index),
        nfev=stats["num_f_evals"], njev=njev,
        nlu=stats["num_steps"] if isinstance(_method(method), IMPLICIT) else 0,
        status=status, message=message, success=status >= 0,
        solution=sol,  # the solvers.Solution itself, for checks beyond scipy's
    )
