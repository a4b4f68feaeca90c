"""Step-size controllers: how the next step is chosen, and whether a step is accepted.

A controller works in the rescaled time s in [0, 1] of the loop (see `_base.py`); step
bounds given in units of t are divided by |t1 - t0|. Its array fields (tolerances) may
be traced: `jax.vmap` over rtol works.
"""

from __future__ import annotations

import abc
import dataclasses
from typing import Any, Callable, NamedTuple, Optional

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from ._base import AbstractMethod, StepResult, rms


class Decision(NamedTuple):
    """What a controller makes of one attempted step (all scalars)."""

    accept: Any  # bool: keep the step
    h_next: Any  # the step to try next (s units), before the cut to the end
    memory: Any  # (2,) controller memory for the next step (log error ratios of past steps)
    stuck: Any  # bool: the step was rejected and no smaller step can be tried


class AbstractController(eqx.Module):
    """Chooses step sizes. `init_step` gives the first step, `decide` judges each step."""

    @abc.abstractmethod
    def init_step(self, F: Callable, method: AbstractMethod, y0, p, dt0, span) -> tuple:
        """(first step in s units, number of f evaluations it took); dt0 (in t units, or
        None: automatic) as the user gave it, span = |t1 - t0|."""

    @abc.abstractmethod
    def decide(self, method: AbstractMethod, y, res: StepResult, s, h, memory, span) -> Decision:
        """Accept or reject the step of size h from (s, y) whose result is res."""

    def prepare(self, y0) -> "AbstractController":
        """This controller with per-component settings flattened like y0 (a PyTree)."""
        return self

    def check(self, method: AbstractMethod, dt0) -> None:
        """Raise ValueError for a method or dt0 this controller cannot work with."""

    def valid(self) -> Any:
        """Whether the (possibly traced) settings are usable: a bool scalar. A solve with
        invalid ones ends with status BAD_TOL."""
        return jnp.asarray(True)

    def error_scale(self, y0, y1):
        """The size of an acceptable error in a state between y0 and y1 (what the local
        error is divided by); with no tolerances of its own, sqrt(eps) relative."""
        return jnp.sqrt(jnp.finfo(y0.dtype).eps) * (1 + jnp.maximum(jnp.abs(y0), jnp.abs(y1)))

    def for_augmented(self) -> "AbstractController":
        """The controller for BacksolveAdjoint's augmented (state, adjoint, gradient)
        system, in the rescaled time of each backward segment."""
        return self


def _flat_tol(name, tol, y0):
    """A tolerance as a scalar or a (d,) vector matching the flattened y0."""
    if isinstance(tol, (int, float)) and not isinstance(tol, bool):
        return float(tol)
    if jax.tree_util.tree_structure(tol) == jax.tree_util.tree_structure(0.0):
        tol = jnp.asarray(tol)
        if tol.ndim == 0:
            return tol
    try:
        flat_y = ravel_pytree(y0)[0]
        flat = ravel_pytree(jax.tree_util.tree_map(lambda t, y: jnp.broadcast_to(t, jnp.shape(y)), tol, y0))[0]
    except (ValueError, TypeError) as e:
        raise ValueError(
            f"{name} must be a positive number or a PyTree like y0 (one tolerance per component): {e}"
        ) from None
    return flat.astype(flat_y.dtype)


class PIDController(AbstractController):
    """Adaptive steps from the local error estimate (Hairer, Norsett & Wanner II, IV.2;
    Soderlind's PID form, coefficients as in diffrax).

    rtol, atol: tolerances (floats, traced scalars, or PyTrees like y0: per component).
        A step is accepted when norm(err / (atol + rtol max(|y0|, |y1|))) <= 1.
    pcoeff, icoeff, dcoeff: the next step is h * safety * r_n^-(p+i+d)/k * r_{n-1}^(p+2d)/k
        * r_{n-2}^-d/k, with r the error ratios and k = error order + 1. The defaults
        (0.4, 0.3, 0) are the PI controller of Hairer & Wanner.
    dtmin, dtmax: bounds on the step in units of t (None: none). A rejected step at dtmin
        stops the solve with DT_MIN. dtmax also serves scipy's `max_step`, and bounds the
        step when an event's condition oscillates faster than the solution.
    factormin, factormax: bounds on the ratio of successive step sizes.
    norm: the norm of the scaled error (RMS by default).
    """

    rtol: Any = 1e-6
    atol: Any = 1e-6
    pcoeff: float = 0.4
    icoeff: float = 0.3
    dcoeff: float = 0.0
    dtmin: Optional[float] = None
    dtmax: Optional[float] = None
    factormin: float = 0.2
    factormax: float = 10.0
    safety: float = 0.9
    norm: Callable = eqx.field(default=rms, static=True)

    def __check_init__(self):
        for name in ("pcoeff", "icoeff", "dcoeff", "factormin", "factormax", "safety"):
            if not isinstance(getattr(self, name), (int, float)):
                raise TypeError(f"PIDController: {name} must be a number, got {getattr(self, name)!r}")
        if not 0 < self.factormin <= 1 <= self.factormax:
            raise ValueError("PIDController: need 0 < factormin <= 1 <= factormax")
        if not 0 < self.safety <= 1:
            raise ValueError("PIDController: safety must be in (0, 1]")
        for name in ("dtmin", "dtmax"):
            v = getattr(self, name)
            if v is not None and not (isinstance(v, (int, float)) and 0 < v < float("inf")):
                raise ValueError(f"PIDController: {name} must be None or a positive finite number, got {v!r}")
        if self.dtmin is not None and self.dtmax is not None and self.dtmin > self.dtmax:
            raise ValueError("PIDController: dtmin must not exceed dtmax")
        if not callable(self.norm):
            raise TypeError("PIDController: norm must be a function of an array, e.g. solvers.rms")

    def prepare(self, y0):
        return dataclasses.replace(self, rtol=_flat_tol("rtol", self.rtol, y0), atol=_flat_tol("atol", self.atol, y0))

    def check(self, method, dt0):
        if method.error_order is None:
            raise ValueError(
                f"{type(method).__name__} has no error estimate, so it cannot adapt its step: "
                "pass adaptive=False (or controller=solvers.ConstantStepSize()) and dt0, or use "
                "an adaptive method such as Tsit5()"
            )

    def valid(self):
        tols = jnp.concatenate([jnp.ravel(jnp.asarray(self.rtol)), jnp.ravel(jnp.asarray(self.atol))])
        return jnp.all((tols > 0) & jnp.isfinite(tols))

    def error_scale(self, y0, y1):
        return self.atol + self.rtol * jnp.maximum(jnp.abs(y0), jnp.abs(y1))

    def for_augmented(self):
        # One tolerance for the whole augmented state (per-component ones have the size of
        # y only); step bounds in t do not carry over to the segments' rescaled time.
        scalar = lambda x: x if isinstance(x, float) else jnp.min(jnp.asarray(x))  # noqa: E731
        return dataclasses.replace(self, rtol=scalar(self.rtol), atol=scalar(self.atol), dtmin=None, dtmax=None)

    def _bounds(self, span, dtype):
        lo = jnp.zeros((), dtype) if self.dtmin is None else self.dtmin / span
        hi = jnp.full((), jnp.inf, dtype) if self.dtmax is None else self.dtmax / span
        return lo, hi

    def init_step(self, F, method, y0, p, dt0, span):
        lo, hi = self._bounds(span, y0.dtype)
        if dt0 is not None:
            return jnp.clip(jnp.abs(jnp.asarray(dt0, y0.dtype)) / span, lo, hi), 0
        h = jax.lax.stop_gradient(hairer_first_step(F, method, self, y0, p))
        return jnp.clip(h, lo, hi), 2

    def decide(self, method, y, res, s, h, memory, span):
        scale = self.error_scale(y, res.y1)
        # 0 * y1 is NaN exactly where y1 is inf or NaN: the norm's reduction checks the
        # new state too (one kernel less to compile than a separate check).
        ratio = method.error_ratio(res.y_err + 0 * res.y1, scale, self.norm)
        ok = jnp.asarray(res.ok) & jnp.isfinite(ratio)
        ratio = jnp.where(ok, ratio, jnp.inf)
        lo, hi = self._bounds(span, y.dtype)
        at_min = h <= lo * (1 + 1e-8)
        # A step at dtmin is accepted whatever its error (as diffrax's force_dtmin), unless
        # it failed outright.
        accept = (ratio <= 1) | (ok & at_min & (self.dtmin is not None))
        k = method.error_order + 1
        log_r = jnp.log(jnp.clip(ratio, 1e-10, 1e10))
        b1 = (self.pcoeff + self.icoeff + self.dcoeff) / k
        b2 = -(self.pcoeff + 2 * self.dcoeff) / k
        b3 = self.dcoeff / k
        expo = jnp.where(accept, -b1 * log_r - b2 * memory[0] - b3 * memory[1], -log_r / k)
        factor = jnp.clip(self.safety * jnp.exp(expo), self.factormin, jnp.where(accept, self.factormax, 1.0))
        h_next = jnp.clip(h * factor, lo, hi)
        # Only the controller reads its memory: without stop_gradient, forward mode would
        # carry tangents through the whole packed clock (1.6x slower gradients).
        new_log = jnp.log(jnp.maximum(ratio, 1e-4))
        memory = jnp.where(accept, jnp.stack([new_log, memory[0]]), memory)
        stuck = ~accept & ((s + h_next <= s) | at_min)
        return Decision(accept, jax.lax.stop_gradient(h_next), jax.lax.stop_gradient(memory), stuck)


def hairer_first_step(F, method, controller, y0, p):
    """Hairer's automatic first step (Solving ODEs I, II.4), in units of s: two
    evaluations of F."""
    f0 = F(jnp.zeros((), y0.dtype), y0, p)
    scale = controller.atol + controller.rtol * jnp.abs(y0)
    norm = controller.norm
    d0, d1 = norm(y0 / scale), norm(f0 / scale)
    small = (d0 < 1e-5) | (d1 < 1e-5)
    h0 = jnp.where(small, 1e-6, 0.01 * d0 / jnp.where(small, 1.0, d1))
    h0 = jnp.minimum(h0, 1.0)
    f1 = F(h0, y0 + h0 * f0, p)
    d2 = norm((f1 - f0) / scale) / h0
    dmax = jnp.maximum(d1, d2)
    order = method.order if method.error_order is None else method.error_order + 1
    tiny = dmax <= 1e-15
    h1 = jnp.where(tiny, jnp.maximum(1e-6, h0 * 1e-3), (0.01 / jnp.where(tiny, 1.0, dmax)) ** (1.0 / order))
    h = jnp.minimum(100 * h0, h1)
    return jnp.where(jnp.isfinite(h) & (h > 0), h, 1e-6)


class ConstantStepSize(AbstractController):
    """Fixed steps of size dt0 (the last one cut to end at t1). A step that fails (inf,
    NaN, Newton) stops the solve."""

    def check(self, method, dt0):
        if dt0 is None:
            raise ValueError("fixed steps (adaptive=False or ConstantStepSize()) have size dt0: pass dt0")

    def init_step(self, F, method, y0, p, dt0, span):
        return jnp.abs(jnp.asarray(dt0, y0.dtype)) / span, 0

    def error_scale(self, y0, y1):
        # Fixed steps have no tolerance: a state is taken as good to 1e-5 relative (with
        # BacksolveAdjoint's default max_error, its reconstruction of y0 may then be 1%
        # off: the method's global error, not the exponential blow-up of an unstable
        # backwards solve).
        return 1e-5 * (1 + jnp.maximum(jnp.abs(y0), jnp.abs(y1)))

    def decide(self, method, y, res, s, h, memory, span):
        accept = jnp.asarray(res.ok) & jnp.all(jnp.isfinite(res.y1))
        return Decision(accept, h, memory, ~accept)
