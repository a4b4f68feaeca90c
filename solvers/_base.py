"""The contract between `solve` and a method, and the status codes.

`solve` flattens the state PyTree into one 1-D array and rescales time to s in [0, 1]
(t = t0 + s (t1 - t0)), so a method only ever sees

    f(s, y, args) -> dy/ds      y: (d,) flat float array, s: scalar

and integrates forwards in s. Rescaling makes backwards integration free and makes
gradients with respect to t0 and t1 exact for the discrete solution.

A method is a frozen dataclass (static, hashable) with:

    order: int                  order of the propagated solution
    error_order: int | None     order of the embedded solution (None: no error
                                estimate; only fixed steps are possible)
    init(f, s, y, args) -> state
        Method state carried between steps (e.g. the FSAL stage). A PyTree of arrays
        with a fixed structure. Must depend only on (s, y, args): the discrete adjoint
        recomputes it from the recorded y of each step.
    step(f, s, y, h, args, state) -> StepResult
        One step from s to s + h.
    interpolate(dense, h, theta) -> y
        Dense output inside the step, theta in [0, 1]; `dense` is StepResult.dense.
        Must be smooth in theta (events differentiate it).
"""

from __future__ import annotations

import enum
from typing import Any, NamedTuple

import jax.numpy as jnp


class Status(enum.IntEnum):
    """Outcome of a solve, stored as an integer in `Solution.status`."""

    SUCCESS = 0  # reached t1
    MAX_STEPS = 1  # max_steps steps taken before t1
    DT_MIN = 2  # step size underflow: the problem is probably stiff or singular
    NONFINITE = 3  # the state became inf or NaN
    EVENT = 4  # a terminal event stopped the solve
    NO_EVENT = 5  # reached t1 without the terminal event firing (not an error)
    NEWTON_FAIL = 6  # implicit method: Newton iteration failed even at the smallest step


FAILURES = (Status.MAX_STEPS, Status.DT_MIN, Status.NONFINITE, Status.NEWTON_FAIL)

MESSAGES = {
    Status.MAX_STEPS: "solve reached max_steps before t1: raise max_steps, loosen rtol/atol, "
    "or use a stiff method (Rodas5P, Kvaerno5) if the problem is stiff.",
    Status.DT_MIN: "step size underflow: the solution is probably singular (blows up in finite "
    "time) or the problem is stiff; try a stiff method or check f.",
    Status.NONFINITE: "the state became inf or NaN: check f for division by zero or blow-up, "
    "or tighten rtol/atol.",
    Status.NEWTON_FAIL: "Newton iteration of the implicit method did not converge even at tiny "
    "steps: check the Jacobian of f, or tighten tolerances.",
}


class StepResult(NamedTuple):
    y1: Any  # (d,) solution at s + h
    y_err: Any  # (d,) local error estimate (zeros for methods without one)
    dense: Any  # PyTree consumed by interpolate
    state: Any  # method state for the next step
    ok: Any = jnp.asarray(True)  # False: the step failed (e.g. Newton); solve shrinks h
