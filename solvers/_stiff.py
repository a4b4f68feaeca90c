"""The stiff methods, gathered: Rosenbrock (`_rosenbrock.py`: Rodas5P, Rosenbrock23) and
ESDIRK (`_esdirk.py`: ImplicitEuler, Kvaerno3, Kvaerno4, Kvaerno5) engines and their
named instances, sharing `_newton.py`. Also the explicit `Ralston` method added with them
(its tableau is in `_tableau.py`)."""

from __future__ import annotations

from . import _tableau as T
from ._esdirk import (
    ESDIRK,
    IMPLICIT_EULER_TABLEAU,
    KVAERNO3_TABLEAU,
    KVAERNO4_TABLEAU,
    KVAERNO5_TABLEAU,
    ESDIRKTableau,
    ImplicitEuler,
    Kvaerno3,
    Kvaerno4,
    Kvaerno5,
)
from ._rk import _named
from ._rosenbrock import RODAS5P_TABLEAU, ROSENBROCK23_TABLEAU, Rodas5P, Rosenbrock, Rosenbrock23, RosenbrockTableau

__all__ = [
    "Rosenbrock", "RosenbrockTableau", "ESDIRK", "ESDIRKTableau", "Rodas5P", "Rosenbrock23",
    "ImplicitEuler", "Kvaerno3", "Kvaerno4", "Kvaerno5", "Ralston",
    "RODAS5P_TABLEAU", "ROSENBROCK23_TABLEAU", "IMPLICIT_EULER_TABLEAU", "KVAERNO3_TABLEAU",
    "KVAERNO4_TABLEAU", "KVAERNO5_TABLEAU",
]

# Defined here, beside the other methods of issue 14, because _rk.py is outside this
# change; it belongs next to Heun and Midpoint there.
Ralston = _named(T.RALSTON, "Ralston's 2nd order method (minimum error bound among 2-stage 2nd order RK), "
                 "with an embedded Euler estimate so it adapts (error order 1); cubic Hermite dense output.")
