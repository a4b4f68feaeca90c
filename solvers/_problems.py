"""Stiff test problems from the Test Set for IVP Solvers (Bari), shared by the tests and
the benchmarks. Each right-hand side is written once for jax.numpy and numpy (`xp`)."""

import jax.numpy as jnp


def orego(t, y, args, xp=jnp):
    """Oregonator (OREGO), 3 states, integrated to t = 360."""
    return xp.stack([
        77.27 * (y[1] + y[0] * (1 - 8.375e-6 * y[0] - y[1])),
        (y[2] - (1 + y[0]) * y[1]) / 77.27,
        0.161 * (y[0] - y[2]),
    ])


def hires(t, y, args, xp=jnp):
    """High Irradiance Response (HIRES), 8 states, integrated to t = 321.8122."""
    return xp.stack([
        -1.71 * y[0] + 0.43 * y[1] + 8.32 * y[2] + 0.0007,
        1.71 * y[0] - 8.75 * y[1],
        -10.03 * y[2] + 0.43 * y[3] + 0.035 * y[4],
        8.32 * y[1] + 1.71 * y[2] - 1.12 * y[3],
        -1.745 * y[4] + 0.43 * y[5] + 0.43 * y[6],
        -280.0 * y[5] * y[7] + 0.69 * y[3] + 1.71 * y[4] - 0.43 * y[5] + 0.69 * y[6],
        280.0 * y[5] * y[7] - 1.81 * y[6],
        -280.0 * y[5] * y[7] + 1.81 * y[6],
    ])
