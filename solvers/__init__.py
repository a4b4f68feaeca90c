"""Pure-functional ODE solvers with exact, cheap gradients.

    sol = solvers.solve(f, y0, t0, t1, args, method=solvers.Tsit5(), ts=..., event=...)

See `solve` for the arguments and `Solution` for what comes back.
"""

from ._adjoint import (
                       AbstractAdjoint,
                       AbstractReverseAdjoint,
                       BacksolveAdjoint,
                       CheckpointAdjoint,
                       DiscreteAdjoint,
                       ForwardMode,
)
from ._base import AbstractMethod, AbstractTableauMethod, Status, StepResult, rms
from ._cache import enable_compilation_cache
from ._controller import AbstractController, ConstantStepSize, Decision, PIDController
from ._errors import SolveError
from ._event import Event
from ._interpolating import InterpolatingAdjoint
from ._jacobian import JacobianPattern
from ._linear import (
                       AbstractLinearSolve,
                       AbstractPreconditioner,
                       DenseLinearSolve,
                       MatrixFreeLinearSolve,
                       TridiagonalLinearSolve,
                       TridiagonalPreconditioner,
)
from ._loop import forward as run_loop
from ._phases import Phase, solve_phases
from ._rk import RK4, Bosh3, Dopri5, Dopri8, Euler, ExplicitRK, Heun, Midpoint, Ralston, Tsit5
from ._saveat import SaveAt
from ._solution import Solution
from ._solve import solve
from ._stiff import (
                       ESDIRK,
                       ESDIRKTableau,
                       ImplicitEuler,
                       Kvaerno3,
                       Kvaerno4,
                       Kvaerno5,
                       Rodas5P,
                       Rosenbrock,
                       Rosenbrock23,
                       RosenbrockTableau,
)
from ._symplectic import Verlet, Yoshida4
from ._tableau import ButcherTableau

__all__ = [
    "solve", "Solution", "SolveError", "Status", "Event", "AbstractMethod", "StepResult",
    "ButcherTableau", "ExplicitRK",
    "Euler", "Heun", "Midpoint", "Ralston", "RK4", "Bosh3", "Tsit5", "Dopri5", "Dopri8",
    "Verlet", "Yoshida4", "Rodas5P", "Rosenbrock23", "ImplicitEuler", "Kvaerno3", "Kvaerno4",
    "Kvaerno5", "Rosenbrock", "RosenbrockTableau", "ESDIRK", "ESDIRKTableau",
    "DiscreteAdjoint", "CheckpointAdjoint", "BacksolveAdjoint", "ForwardMode", "AbstractAdjoint",
    "AbstractReverseAdjoint", "AbstractController", "PIDController", "ConstantStepSize", "SaveAt", "rms",
    "Decision", "run_loop", "Phase", "solve_phases", "AbstractTableauMethod",
    "enable_compilation_cache",
    "AbstractLinearSolve", "DenseLinearSolve", "TridiagonalLinearSolve", "MatrixFreeLinearSolve",
    "AbstractPreconditioner", "TridiagonalPreconditioner", "JacobianPattern",
    "InterpolatingAdjoint",
]
