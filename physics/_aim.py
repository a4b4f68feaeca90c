"""Aiming the trebuchet: a neural network trained through the simulator, and direct
per-query Newton aiming. Re-exported by `physics.trebuchet`.

    aimer = train_aimer(jax.random.PRNGKey(0))          # ~2.5 minutes on two CPU cores
    angle, weight = aim(aimer, 70.0, -4.0)             # hit 70 m with a 4 m/s headwind
    angle, weight = aim_direct(70.0, -4.0, Trebuchet())  # Newton on the weight through shoot
"""

from __future__ import annotations

import functools
import math
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import optax

import solvers

from ._trebuchet_model import Trebuchet

# The training distribution (DESIGN.md section 3) and the physical output ranges.
TARGET_RANGE = (20.0, 100.0)  # m, uniform
WIND_SD = 5.0  # m/s, normal
# Short targets in a tailwind need a light weight or a high lob (15 kg at 40 degrees throws
# 30 m), long ones in a headwind a heavy weight and a flat release (100 m against 10 m/s:
# about 200-250 kg at 20-30 degrees): within these ranges every target in 20-100 m is
# reachable for winds within about +-12 m/s.
ANGLE_RANGE = (0.2, 1.2)  # rad, about 11 to 69 degrees
WEIGHT_RANGE = (10.0, 300.0)  # kg
TRAIN_RTOL = 1e-5  # solver tolerance while training: ~1 mm error, far below the misses


def _shoot_with_status(*args, **kwargs):
    from .trebuchet import shoot_with_status  # late import: trebuchet imports this module

    return shoot_with_status(*args, **kwargs)


class Aimer(eqx.Module):
    """A small MLP from (target distance m, wind m/s) to (release angle rad, counterweight kg).

    Inputs are scaled to O(1); outputs pass through sigmoids into ANGLE_RANGE (linearly)
    and WEIGHT_RANGE (log-linearly: range grows roughly with log weight). Call it on
    scalars; `aim` vectorises. Differentiable in its parameters and inputs.
    """

    mlp: eqx.nn.MLP

    def __init__(self, key, width: int = 64, depth: int = 2):
        mlp = eqx.nn.MLP(2, 2, width, depth, activation=jax.nn.tanh, key=key)
        # Start from small last-layer weights: every query gets about the middle of the
        # ranges, a sensible first guess, rather than a random one.
        last = mlp.layers[-1]
        mlp = eqx.tree_at(lambda m: m.layers[-1].weight, mlp, 0.1 * last.weight)
        self.mlp = eqx.tree_at(lambda m: m.layers[-1].bias, mlp, jnp.zeros(last.out_features))

    def __call__(self, target, wind):
        lo, hi = TARGET_RANGE
        x = jnp.stack([(target - 0.5 * (lo + hi)) / (0.5 * (hi - lo)), wind / WIND_SD])
        out = jax.nn.sigmoid(self.mlp(x))
        angle = ANGLE_RANGE[0] + (ANGLE_RANGE[1] - ANGLE_RANGE[0]) * out[0]
        log_w = math.log(WEIGHT_RANGE[0]) + math.log(WEIGHT_RANGE[1] / WEIGHT_RANGE[0]) * out[1]
        return angle, jnp.exp(log_w)


def sample_queries(key, n: int):
    """n (target, wind) pairs from the training distribution: two (n,) arrays (m, m/s)."""
    k1, k2 = jax.random.split(key)
    target = jax.random.uniform(k1, (n,), minval=TARGET_RANGE[0], maxval=TARGET_RANGE[1])
    wind = WIND_SD * jax.random.normal(k2, (n,))
    return target, wind


def _misses(aimer, target, wind, p, rtol):
    """Signed misses (m), shape like target: distance reached minus target."""

    def one(t, w):
        angle, weight = aimer(t, w)
        d, _ = _shoot_with_status(w, angle, weight, p, rtol=rtol, atol=rtol)
        return d - t

    return jax.vmap(one)(target, wind)


@eqx.filter_jit
def _misses_jit(aimer, target, wind, p, rtol):
    return _misses(aimer, target, wind, p, rtol)


def misses(aimer: Aimer, target, wind, p: Trebuchet = Trebuchet(), rtol: float = 1e-8):
    """Signed misses (m) of the network's aim, checked with the simulator at tolerance rtol:
    distance reached minus target, for (n,) arrays target (m) and wind (m/s)."""
    p = jax.tree_util.tree_map(lambda x: jnp.asarray(x, float), p)
    return _misses_jit(aimer, jnp.asarray(target, float), jnp.asarray(wind, float), p, rtol)


def _loss(aimer, target, wind, p, rtol):
    miss = _misses(aimer, target, wind, p, rtol)
    # A failed throw (NaN) must not poison the batch: it contributes nothing. (With the
    # output ranges above none fails; this is a guard, not a mechanism.)
    ok = jnp.isfinite(miss)
    miss = jnp.where(ok, miss, 0.0)
    return jnp.sum(miss**2) / jnp.maximum(jnp.sum(ok), 1), jnp.abs(miss)


def train_aimer(key, p: Trebuchet = Trebuchet(), *, steps: int = 3000, batch: int = 16,
                learning_rate: float = 3e-2, width: int = 64, depth: int = 2,
                rtol: float = TRAIN_RTOL, progress: bool = True, history: list | None = None):
    """Trains an `Aimer` by Adam on the mean squared miss (m^2), gradients by jax.grad
    through `shoot`, on fresh batches of (target ~ U(20, 100) m, wind ~ N(0, 5^2) m/s).

    The training step (a vmap over the batch, the gradient, the Adam update) is compiled
    once. learning_rate decays by cosine to 1% over the run. A tqdm bar shows the running
    mean |miss|. The defaults reach a mean miss of about 0.08% of the target (4-5 cm) on
    fresh queries: 3000 steps of 16 throws, about 2.5 minutes on two CPU cores (~30 s of it
    compiling). Many small batches beat fewer large ones for the same number of throws.
    history: if a list is given, (step, mean |miss| (m), seconds) tuples are appended to
    it. Returns the trained Aimer.
    """
    init_key, key = jax.random.split(key)
    aimer = Aimer(init_key, width, depth)
    schedule = optax.cosine_decay_schedule(learning_rate, steps, alpha=0.01)
    optim = optax.adam(schedule)
    opt_state = optim.init(eqx.filter(aimer, eqx.is_inexact_array))
    p = jax.tree_util.tree_map(lambda x: jnp.asarray(x, float), p)

    @eqx.filter_jit
    def step(aimer, opt_state, key):
        target, wind = sample_queries(key, batch)
        (loss, miss), grads = eqx.filter_value_and_grad(_loss, has_aux=True)(
            aimer, target, wind, p, rtol)
        updates, opt_state = optim.update(grads, opt_state, eqx.filter(aimer, eqx.is_inexact_array))
        return eqx.apply_updates(aimer, updates), opt_state, jnp.mean(miss)

    bar = _progress(steps, progress)
    start, running = time.perf_counter(), None
    for i in range(steps):
        key, sub = jax.random.split(key)
        aimer, opt_state, miss = step(aimer, opt_state, sub)
        miss = float(miss)
        running = miss if running is None else 0.95 * running + 0.05 * miss
        bar.set_postfix_str(f"mean miss {running:.3f} m")
        bar.update()
        if history is not None:
            history.append((i, miss, time.perf_counter() - start))
    bar.close()
    return aimer


def _progress(total, enabled):
    from tqdm.auto import tqdm

    return tqdm(total=total, disable=not enabled, desc="training aimer", unit="step")


@functools.partial(jax.jit, static_argnums=0)
def _aim_batch(static, params, target, wind):
    # Inference in float32: 2-3x faster on a CPU, and its ~1e-7 relative rounding moves the
    # landing point by ~1e-5 m, nothing next to the misses.
    params = jax.tree_util.tree_map(lambda x: x.astype(jnp.float32), params)
    aimer = eqx.combine(params, static)
    target, wind = jnp.broadcast_arrays(target.astype(jnp.float32), wind.astype(jnp.float32))
    angle, weight = jax.vmap(aimer)(target.reshape(-1), wind.reshape(-1))
    out = (angle.reshape(target.shape), weight.reshape(target.shape))
    return tuple(x.astype(float) for x in out)


def aim(aimer: Aimer, target, wind):
    """Release angle (rad) and counterweight (kg) the network suggests for hitting `target`
    (m) in `wind` (m/s, positive = tailwind). Scalars or arrays (broadcast together); returns
    two arrays of the broadcast shape. Jit-compiled (plain jax.jit on the parameters, to
    keep dispatch cheap) and evaluated in float32: well under a microsecond a query in
    batches of a thousand."""
    params, static = eqx.partition(aimer, eqx.is_array)
    return _aim_batch(static, params, jnp.asarray(target, float), jnp.asarray(wind, float))


# --------------------------------------------------------------------------- direct aiming

DIRECT_ANGLE = math.radians(30.0)  # about this machine's maximum-range release angle


@eqx.filter_jit
def _newton(target, wind, p, angle, w0, tol, iterations):
    """Newton's method on u = log(weight): d(u) - target = 0, derivative by forward mode."""

    def distance_and_slope(u):
        f = lambda u_: _shoot_with_status(wind, angle, jnp.exp(u_), p,
                                          adjoint=solvers.ForwardMode())[0]
        return jax.jvp(f, (u,), (jnp.ones_like(u),))

    lo, hi = math.log(WEIGHT_RANGE[0] / 2), math.log(WEIGHT_RANGE[1] * 4)

    def body(carry):
        u, _, i = carry
        d, slope = distance_and_slope(u)
        miss = d - target
        # Clamp to a range where the throw works: Newton may overshoot on the way.
        u_new = jnp.clip(u - miss / slope, lo, hi)
        return u_new, miss, i + 1

    def cond(carry):
        _, miss, i = carry
        return (jnp.abs(miss) > tol) & (i < iterations)

    u, miss, i = jax.lax.while_loop(cond, body, (jnp.log(w0), jnp.asarray(jnp.inf), 0))
    return jnp.exp(u), miss, i


def aim_direct(target, wind, p: Trebuchet = Trebuchet(), *, angle=DIRECT_ANGLE,
               weight0=60.0, tol=1e-3, iterations=20):
    """Aims one query by Newton's method on the counterweight through `shoot`.

    Release angle fixed (`angle`, rad; default 30 degrees, about the angle of maximum
    range), counterweight solved from distance(weight) = target with d distance / d
    log(weight) by forward-mode differentiation through the simulator; stops when
    |miss| < tol (m). Returns (angle, weight) scalars; weight is NaN when the target is not
    reached within `iterations` (out of range for this angle). Compiled once.
    """
    p = jax.tree_util.tree_map(lambda x: jnp.asarray(x, float), p)
    weight, miss, _ = _newton(jnp.asarray(target, float), jnp.asarray(wind, float), p,
                              jnp.asarray(angle, float), jnp.asarray(weight0, float),
                              float(tol), int(iterations))
    weight = jnp.where(jnp.abs(miss) <= tol, weight, jnp.nan)
    return jnp.asarray(angle, float), weight
