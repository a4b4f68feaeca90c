"""`SaveAt`: which states a solve returns."""

from __future__ import annotations

from typing import Any, Optional

import equinox as eqx


class SaveAt(eqx.Module):
    """What `solve` saves, in this order along `Solution.ts`:

    t0: the initial state.
    ts: a 1-D array of times in [t0, t1], sorted from t0 towards t1.
    steps: the state after every accepted step: max_steps entries, those past the last
        step with time +inf and state NaN (`sol.stats["num_accepted"]` says how many are
        used). Not combined with ts.
    t1: the final state (at t1, or at a terminal event). None (the default): saved when
        neither ts nor steps is given.
    dense: keep every step so that `Solution.evaluate(t)` gives the dense output anywhere
        in the solved interval, differentiably (memory max_steps x state size).

    Everything saved is differentiable with respect to y0, args, t0, t1, what f closes
    over and ts (under every adjoint but BacksolveAdjoint for dense output).
    """

    t0: bool = False
    t1: Optional[bool] = None
    ts: Any = None
    steps: bool = False
    dense: bool = False

    def __check_init__(self):
        for name in ("t0", "steps", "dense"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"SaveAt: {name} must be True or False, got {getattr(self, name)!r}")
        if self.t1 is not None and not isinstance(self.t1, bool):
            raise TypeError(f"SaveAt: t1 must be True, False or None, got {self.t1!r}")
        if self.steps and self.ts is not None:
            raise ValueError("SaveAt: give either ts or steps=True, not both (the step times are not known in advance)")

    @property
    def save_t1(self) -> bool:
        return (self.ts is None and not self.steps) if self.t1 is None else self.t1
