"""The stiff methods, gathered: Rosenbrock (`_rosenbrock.py`: Rodas5P, Rosenbrock23) and
ESDIRK (`_esdirk.py`: ImplicitEuler, Kvaerno3, Kvaerno4, Kvaerno5) engines and their
named instances, sharing `_newton.py`."""

from __future__ import annotations

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
from ._rosenbrock import RODAS5P_TABLEAU, ROSENBROCK23_TABLEAU, Rodas5P, Rosenbrock, Rosenbrock23, RosenbrockTableau

__all__ = [
    "Rosenbrock", "RosenbrockTableau", "ESDIRK", "ESDIRKTableau", "Rodas5P", "Rosenbrock23",
    "ImplicitEuler", "Kvaerno3", "Kvaerno4", "Kvaerno5",
    "RODAS5P_TABLEAU", "ROSENBROCK23_TABLEAU", "IMPLICIT_EULER_TABLEAU", "KVAERNO3_TABLEAU",
    "KVAERNO4_TABLEAU", "KVAERNO5_TABLEAU",
]


