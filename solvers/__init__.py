"""Pure-functional ODE solvers with exact, cheap gradients.

    sol = solvers.solve(f, y0, t0, t1, args, method=solvers.Tsit5(), ts=..., event=...)

See `solve` for the arguments and `Solution` for what comes back.
"""

from ._adjoint import BacksolveAdjoint, CheckpointAdjoint, DiscreteAdjoint, ForwardMode
from ._base import Status, StepResult
from ._event import Event
from ._phases import Phase, solve_phases
from ._rk import RK4, Bosh3, Dopri5, Dopri8, Euler, ExplicitRK, Heun, Midpoint, Tsit5
from ._solve import Solution, SolveError, solve
from ._stiff import Kvaerno5, Rodas5P
from ._symplectic import Verlet, Yoshida4
from ._tableau import ButcherTableau

__all__ = [
    "solve", "Solution", "SolveError", "Status", "Event", "StepResult", "ButcherTableau", "ExplicitRK",
    "Euler", "Heun", "Midpoint", "RK4", "Bosh3", "Tsit5", "Dopri5", "Dopri8",
    "Verlet", "Yoshida4", "Rodas5P", "Kvaerno5",
    "DiscreteAdjoint", "CheckpointAdjoint", "BacksolveAdjoint", "ForwardMode",
    "Phase", "solve_phases",
]
