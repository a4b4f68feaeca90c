"""A neural surrogate of `shoot`: an MLP from (wind, angle, weight) to the landing distance,
fitted to throws of the simulator over the operating range; the aimer can be trained
through it instead of the simulator (``train_aimer(key, p, surrogate=...)``).

    sur = train_surrogate(jax.random.PRNGKey(0))      # throws + fit
    d = sur(wind, angle, weight)                        # scalars (m), differentiable
"""

from __future__ import annotations

import math
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from . import _envelope as _env
from ._envelope import ANGLE_RANGE, LOG_SPAN, WEIGHT_RANGE
from ._trebuchet_model import Trebuchet

SURROGATE_WIND_SD = 6.5  # m/s: the training queries' spread, a little wider than 5 m/s
_LOG_MID = math.log(WEIGHT_RANGE[0]) + 0.5 * LOG_SPAN


class Surrogate(eqx.Module):
    """MLP surrogate of `shoot` on ANGLE_RANGE x WEIGHT_RANGE and winds of a few sd.

    `sur(wind m/s, angle rad, weight kg)` -> distance (m), scalars; differentiable in the
    inputs and the parameters; vmap for batches. Outside the range it extrapolates
    (untrustworthy)."""

    mlp: eqx.nn.MLP

    def __init__(self, key, width: int = 32, depth: int = 2):
        self.mlp = eqx.nn.MLP(3, "scalar", width, depth, activation=jax.nn.tanh, key=key)

    def __call__(self, wind, angle, weight):
        return self.of_log_weight(wind, angle, jnp.log(weight))

    def of_log_weight(self, wind, angle, log_w):
        mid_a = 0.5 * (ANGLE_RANGE[0] + ANGLE_RANGE[1])
        x = jnp.stack([wind / SURROGATE_WIND_SD, (angle - mid_a) / 0.5,
                       (log_w - _LOG_MID) / (0.5 * LOG_SPAN)])
        return 100.0 * self.mlp(x)  # distances are O(100 m)


@eqx.filter_jit
def _directional(sur, wind, angle, log_w, t_angle, t_log_w):
    def one(w, a, lw, ta, tl):
        return jax.jvp(lambda a_, lw_: sur.of_log_weight(w, a_, lw_), (a, lw), (ta, tl))

    return jax.vmap(one)(wind, angle, log_w, t_angle, t_log_w)


def directional(sur: Surrogate):
    """The surrogate as a distance function for `envelope(..., distance=)` and training:
    (wind, angle, log_w, t_angle, t_log_w) arrays -> (distance, derivative along the
    tangent) numpy arrays."""
    def f(*cols):
        cols = [jnp.asarray(c, float).ravel() for c in np.broadcast_arrays(*cols)]
        d, dd = _directional(sur, *cols)
        return np.asarray(d), np.asarray(dd)

    return f


def sample_settings(key, n: int):
    """n throws over the operating range: wind ~ N(0, 6.5^2) m/s, angle uniform in
    ANGLE_RANGE, weight log-uniform in WEIGHT_RANGE. Three (n,) numpy arrays."""
    k1, k2, k3 = jax.random.split(key, 3)
    wind = SURROGATE_WIND_SD * jax.random.normal(k1, (n,))
    angle = jax.random.uniform(k2, (n,), minval=ANGLE_RANGE[0], maxval=ANGLE_RANGE[1])
    log_w = math.log(WEIGHT_RANGE[0]) + LOG_SPAN * jax.random.uniform(k3, (n,))
    return np.asarray(wind), np.asarray(angle), np.asarray(log_w)


@eqx.filter_jit
def _fit(sur, x, y, learning_rate, steps):
    params, static = eqx.partition(sur, eqx.is_inexact_array)
    optim = optax.adam(optax.cosine_decay_schedule(learning_rate, steps, alpha=0.01))

    def loss(params):
        s = eqx.combine(params, static)
        d = jax.vmap(s.of_log_weight)(x[:, 0], x[:, 1], x[:, 2])
        return jnp.mean(((d - y) / 100.0) ** 2)

    def step(carry, _):
        params, state = carry
        value, grads = jax.value_and_grad(loss)(params)
        updates, state = optim.update(grads, state, params)
        return (optax.apply_updates(params, updates), state), value

    (params, _), values = jax.lax.scan(step, (params, optim.init(params)), None, length=steps)
    return eqx.combine(params, static), values[-1]


def train_surrogate(key, p: Trebuchet = Trebuchet(), *, n: int = 4096, steps: int = 3000,
                    learning_rate: float = 1e-2, width: int = 32, depth: int = 2,
                    rtol: float = 1e-6, progress: bool = True) -> Surrogate:
    """Fits a `Surrogate` to n throws of `shoot` (machine p, tolerance rtol) sampled by
    `sample_settings`: full-batch Adam (`steps`, cosine decay from learning_rate) on the
    mean squared error in units of 100 m. Returns the Surrogate."""
    from .trebuchet import _as_arrays

    for name, v in dict(n=n, steps=steps, width=width, depth=depth).items():
        if not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"train_surrogate: {name} must be a positive integer, got {v!r}")
    start = time.perf_counter()
    k_data, k_init = jax.random.split(key)
    wind, angle, log_w = sample_settings(k_data, n)
    zeros = np.zeros_like(wind)
    d, _ = _env.shoot_dir(wind, angle, log_w, zeros, zeros, _as_arrays(p), rtol)
    ok = np.isfinite(d)
    x = jnp.asarray(np.stack([wind, angle, log_w], axis=1)[ok])
    thrown = time.perf_counter() - start
    sur, loss = _fit(Surrogate(k_init, width, depth), x, jnp.asarray(d[ok]), learning_rate, steps)
    if progress:
        print(f"surrogate: {ok.sum()} throws in {thrown:.1f} s, fit rms error "
              f"{100 * math.sqrt(float(loss)):.3f} m, {time.perf_counter() - start:.1f} s")
    return sur
