"""Differentiable physics models built on `solvers`.

    from physics import trebuchet
    d = trebuchet.shoot(wind, angle, weight, trebuchet.Trebuchet())
"""

from . import cartpole, trebuchet
from .trebuchet import (
                        Aimer,
                        AimResult,
                        Envelope,
                        ShotStatus,
                        Surrogate,
                        Trajectory,
                        Trebuchet,
                        aim,
                        aim_direct,
                        energy,
                        envelope,
                        shoot,
                        shoot_with_status,
                        simulate,
                        train_aimer,
                        train_surrogate,
)

__all__ = ["trebuchet", "cartpole", "Trebuchet", "shoot", "shoot_with_status", "simulate", "energy",
           "Trajectory", "ShotStatus", "Aimer", "AimResult", "train_aimer", "aim", "aim_direct",
           "Envelope", "envelope", "Surrogate", "train_surrogate"]
