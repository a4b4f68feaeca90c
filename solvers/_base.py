"""The contract between `solve` and a method, and the status codes.

`solve` flattens the state PyTree into one 1-D array and rescales time to s in [0, 1]
(t = t0 + s (t1 - t0)), so a method only ever sees

    f(s, y, args) -> dy/ds      y: (d,) flat float array, s: scalar

and integrates forwards in s. Rescaling makes backwards integration free and makes
gradients with respect to t0 and t1 exact for the discrete solution.

A method is an `AbstractMethod`: an equinox Module whose fields are static settings
(floats, ints, tableaus), never arrays, so that it is hashable and compiles once.
"""

from __future__ import annotations

import abc
import enum
from typing import Any, Callable, NamedTuple, Optional

import equinox as eqx
import jax
import jax.numpy as jnp


class Status(enum.IntEnum):
    """Outcome of a solve, stored as an integer in `Solution.status`.

    Each member carries its message (`Status.MAX_STEPS.message`) and whether it is a
    failure (`Status.MAX_STEPS.failed`).
    """

    SUCCESS = 0
    MAX_STEPS = 1
    DT_MIN = 2
    NONFINITE = 3
    EVENT = 4
    NO_EVENT = 5
    NEWTON_FAIL = 6
    BAD_TS = 7
    MAX_EVENTS = 8
    BAD_TOL = 9
    LINEAR_SOLVE_FAIL = 10
    JAC_SPARSITY = 11

    @property
    def message(self) -> str:
        return _MESSAGES[self]

    @property
    def failed(self) -> bool:
        return self in FAILURES


_MESSAGES = {
    Status.SUCCESS: "reached t1.",
    Status.MAX_STEPS: "solve reached max_steps before t1: raise max_steps, loosen rtol/atol, "
    "or use a stiff method (Rodas5P, Kvaerno5) if the problem is stiff.",
    Status.DT_MIN: "step size underflow: the solution is probably singular (blows up in finite "
    "time) or the problem is stiff; try a stiff method or check f.",
    Status.NONFINITE: "the state became inf or NaN: check f for division by zero or blow-up, "
    "or tighten rtol/atol.",
    Status.EVENT: "a terminal event stopped the solve.",
    Status.NO_EVENT: "reached t1 without the terminal event firing (not an error).",
    Status.NEWTON_FAIL: "Newton iteration of the implicit method did not converge even at tiny "
    "steps: check the Jacobian of f, or tighten tolerances.",
    Status.BAD_TS: "the save times are not all finite, sorted from t0 towards t1 and inside "
    "[t0, t1]: pass sorted, finite save times between t0 and t1.",
    Status.MAX_EVENTS: "more event crossings occurred than Event.max_events can hold: raise "
    "max_events (the crossings past it were not recorded).",
    Status.BAD_TOL: "the tolerances are not all positive and finite: pass rtol, atol > 0.",
    Status.LINEAR_SOLVE_FAIL: "the implicit method's linear solver did not converge (e.g. lineax.GMRES reached "
    "its max_steps or stagnated): raise its max_steps or restart, add a preconditioner "
    "(solvers.MatrixFreeLinearSolve(..., preconditioner=...)), or use a direct solve (lineax.LU(), "
    "lineax.Tridiagonal()).",
    Status.JAC_SPARSITY: "the Jacobian of f has nonzeros outside jac_sparsity (checked at every Jacobian: J v "
    "by a JVP against the coloured Jacobian times v): pass a pattern covering every df_i/dy_j that can be "
    "nonzero (or no jac_sparsity).",
}

FAILURES = (Status.MAX_STEPS, Status.DT_MIN, Status.NONFINITE, Status.NEWTON_FAIL, Status.BAD_TS,
            Status.MAX_EVENTS, Status.BAD_TOL, Status.LINEAR_SOLVE_FAIL, Status.JAC_SPARSITY)
MESSAGES = {s: s.message for s in FAILURES}


class StepResult(NamedTuple):
    """One step from s to s + h, as a method returns it.

    y1: (d,) solution at s + h. y_err: local error estimate, (d,) (zeros for methods
    without one; a method with its own `error_ratio` may use another shape). dense: a
    PyTree that `interpolate` reads. state: the method state for the next step.
    n_f: number of evaluations of f this step made (an int or an int32 scalar: Newton
    iterations vary). ok: False when the step failed (e.g. Newton); solve shrinks h.
    n_jac: number of Jacobians of f formed (implicit methods).
    fail: a Status code (int or int32 scalar) that ends the solve now, e.g.
    Status.LINEAR_SOLVE_FAIL; 0: none (a failure a smaller step can cure is ok=False).
    state_rejected: the method state for the retry if the step is rejected (None: the
    state it started from), e.g. ESDIRK's Jacobian formed in the rejected step.
    """

    y1: Any
    y_err: Any
    dense: Any
    state: Any
    n_f: Any
    ok: Any = True
    n_jac: Any = 0
    fail: Any = 0
    state_rejected: Any = None


def rms(x):
    """Root-mean-square norm of an array: the one norm of the error control."""
    return jnp.sqrt(jnp.mean(x * x))


class AbstractMethod(eqx.Module):
    """A one-step integration method on the flat state (see the module docstring).

    Subclasses define the class attributes `order` (of the propagated solution) and
    `error_order` (of the embedded estimate; None when there is none: fixed steps only),
    and the methods `init`, `step` and `interpolate`. The rest have defaults.
    """

    #: f evaluations and Jacobians `init` makes (counted once per solve in the stats).
    init_evals = 0
    init_jacs = 0
    #: Whether a step applied to the state extended by tangent components (f extended by
    #: its JVPs) gives those tangents as differentiating the step with h held fixed does,
    #: with an error estimate whose last axis is the state's, so that [..., :d] judges y
    #: alone. Then DiscreteAdjoint's forward sensitivities are one solve of the extended
    #: state (`_sensitivity.py`); otherwise jax.jacfwd through the loop.
    tangents_as_states = False

    @property
    @abc.abstractmethod
    def order(self) -> int:
        """Order of the propagated solution."""

    @property
    @abc.abstractmethod
    def error_order(self) -> Optional[int]:
        """Order of the embedded solution (None: no error estimate, fixed steps only)."""

    @abc.abstractmethod
    def init(self, f: Callable, s, y, args) -> Any:
        """Method state carried between steps (e.g. the FSAL stage): a PyTree of arrays of
        fixed structure, depending only on (s, y, args): the discrete adjoint recomputes
        it from the recorded state of each step."""

    @abc.abstractmethod
    def step(self, f: Callable, s, y, h, args, state) -> StepResult:
        """One step from s to s + h (h > 0) from state y (d,)."""

    @abc.abstractmethod
    def interpolate(self, dense, h, theta):
        """Dense output at theta in [0, 1] inside the step; equal to y1 at theta = 1 (up to
        rounding) and smooth in theta (events and save-time gradients differentiate it)."""

    def error_ratio(self, y_err, scale, norm: Callable = rms):
        """The step's error relative to scale = atol + rtol |y|; <= 1 accepts."""
        return norm(y_err / scale)

    def specialize(self, y0) -> "AbstractMethod":
        """This method adapted to the structure of y0 (a PyTree), before flattening."""
        return self

    def with_tolerances(self, rtol: float, atol: float) -> "AbstractMethod":
        """This method with inner tolerances (e.g. Newton's) tied to the solve's."""
        return self

    def backsolve_method(self) -> "AbstractMethod":
        """The method that integrates the augmented (state, adjoint) system backwards for
        `BacksolveAdjoint`. That system is not of this method's special form for
        structure-preserving methods (e.g. not separable for symplectic ones)."""
        return self

    def step_vjp(self, f: Callable, s, y, h, args, outputs: Callable, ct, uses_dense: bool = True):
        """Cotangents of (y, args) for `outputs(y, args, step_result)` given its cotangent
        ct: the backward pass of one step. uses_dense: whether outputs reads the dense
        output. The default differentiates straight through `step`; a method may
        override it with a cheaper reverse sweep."""

        def g(y, args):
            return outputs(y, args, self.step(f, s, y, h, args, self.init(f, s, y, args)))

        _, vjp = jax.vjp(g, y, args)
        return vjp(ct)


class AbstractTableauMethod(AbstractMethod):
    """A method that is an engine and a checked tableau: its `order` and `error_order`
    are the tableau's. Subclasses declare the (static) field `tableau`."""

    tableau: eqx.AbstractVar[Any]

    @property
    def order(self):
        return self.tableau.order

    @property
    def error_order(self):
        return self.tableau.error_order


def named_method(engine: type, tab, doc: str) -> type:
    """A named method: a subclass of the engine (ExplicitRK, Rosenbrock, ESDIRK) whose
    default tableau is `tab` (so `Tsit5()` needs no arguments and prints its name)."""

    class Method(engine):  # type: ignore[valid-type, misc]
        __doc__ = doc
        tableau: Any = eqx.field(default=tab, static=True, repr=False)

    Method.__name__ = Method.__qualname__ = tab.name
    Method.__module__ = "solvers"
    return Method
