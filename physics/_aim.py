"""Aiming the trebuchet: a neural network trained through the simulator, and direct
per-query Newton aiming, both along the aiming path of `physics._envelope` and both
saying whether a target is reachable. Re-exported by `physics.trebuchet`.

    aimer = train_aimer(jax.random.PRNGKey(0))         # 47 s on 2 cores at load 4.5
    angle, weight = aim(aimer, 70.0, -4.0)             # hit 70 m with a 4 m/s headwind
    r = aim(aimer, 70.0, -4.0); r.reachable, r.predicted_miss
    r = aim_direct(70.0, -4.0, Trebuchet())            # Newton through shoot, arrays too
"""

from __future__ import annotations

import math
import time
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from . import _envelope as _env
from ._envelope import ANGLE_RANGE, S_MAX, WEIGHT_RANGE, Envelope, envelope, settings
from ._trebuchet_model import Trebuchet

# The training distribution (DESIGN.md section 3).
TARGET_RANGE = (20.0, 100.0)  # m, uniform
WIND_SD = 5.0  # m/s, normal
TRAIN_WIND_SD = 6.5  # m/s, see train_aimer
TRAIN_RTOL = 1e-6  # solver tolerance while training: distances within ~1e-4 m of rtol 1e-8
__all__ = ["ANGLE_RANGE", "WEIGHT_RANGE", "AimResult", "Aimer", "aim", "aim_direct",
           "misses", "sample_queries", "train_aimer"]


class AimResult(tuple):
    """(angle, weight) that also carries `reachable` and `predicted_miss`.

    Unpacks as before (``angle, weight = aim(...)``); the fields, all of the query's
    broadcast shape: angle (rad) and weight (kg), NaN where not reachable; reachable
    (bool): the target is hit within ANGLE_RANGE x WEIGHT_RANGE in that wind; predicted_miss
    (m, distance minus target): see `aim` and `aim_direct`. A PyTree (jit/vmap-able).
    """

    reachable: Any
    predicted_miss: Any

    def __new__(cls, angle, weight, reachable, predicted_miss):
        self = super().__new__(cls, (angle, weight))
        self.reachable, self.predicted_miss = reachable, predicted_miss
        return self

    angle = property(lambda self: self[0])
    weight = property(lambda self: self[1])

    def __repr__(self):
        return (f"AimResult(angle={self[0]!r}, weight={self[1]!r}, reachable={self.reachable!r}, "
                f"predicted_miss={self.predicted_miss!r})")


jax.tree_util.register_pytree_node(
    AimResult, lambda r: ((r[0], r[1], r.reachable, r.predicted_miss), None),
    lambda _, c: AimResult(*c))


class Aimer(eqx.Module):
    """A small MLP from (target m, wind m/s) to the aiming path's parameter s, with the
    machine's `Envelope` (the path's table, not trained).

    s picks the setting on the path: `aimer(target, wind)` -> (angle rad, weight kg),
    scalars in, scalars out, s clipped to [0, 1] (inside the ranges; `aim` vectorises and
    flags what is out of reach). Differentiable in the MLP's parameters and the inputs.
    """

    mlp: eqx.nn.MLP
    envelope: Envelope

    def __init__(self, key, envelope: Envelope, width: int = 16, depth: int = 2):
        self.mlp = eqx.nn.MLP(2, "scalar", width, depth, activation=jax.nn.tanh, key=key)
        self.envelope = envelope

    def s(self, target, wind):
        """Raw path parameter (scalar, unclipped) for a scalar query."""
        lo, hi = TARGET_RANGE
        x = jnp.stack([(target - 0.5 * (lo + hi)) / (0.5 * (hi - lo)), wind / WIND_SD])
        return 0.4 + 0.3 * self.mlp(x)  # s spans ~0.1-0.8 over the training queries

    def __call__(self, target, wind):
        s = jnp.clip(self.s(target, wind), 0.0, 1.0)
        angle, log_w, _, _ = settings(s, self.envelope.best_angle(wind))
        return angle, jnp.exp(log_w)


def sample_queries(key, n: int, wind_sd: float = WIND_SD):
    """n (target, wind) pairs from the query distribution (target uniform in TARGET_RANGE,
    wind normal with sd wind_sd): two (n,) arrays (m, m/s)."""
    k1, k2 = jax.random.split(key)
    target = jax.random.uniform(k1, (n,), minval=TARGET_RANGE[0], maxval=TARGET_RANGE[1])
    wind = wind_sd * jax.random.normal(k2, (n,))
    return target, wind


# --------------------------------------------------------------------------- training


@eqx.filter_jit
def _fit(mlp, static, x, y, weight, iterations):
    """Weighted least squares of the MLP's s on targets y, loss mean(weight (s - y)^2), by
    Levenberg-Marquardt on the flattened parameters (J by forward mode, a few hundred
    columns). Measured on the warm-start fit (2048 queries): 100 iterations reach an rms
    relative miss of 4e-5 (train) / 1.7e-4 (fresh queries) with a 16x16 MLP, where 1500
    Adam steps reach 2.5e-3 and 4000 reach 1e-3 with a 32x32 one.
    Returns the fitted MLP and the final loss."""
    params, mstatic = eqx.partition(mlp, eqx.is_inexact_array)
    flat, unravel = ravel_pytree(params)
    root_w = jnp.sqrt(weight)

    def residuals(theta):
        aimer = eqx.tree_at(lambda a: a.mlp, static, eqx.combine(unravel(theta), mstatic))
        return root_w * (jax.vmap(aimer.s)(x[:, 0], x[:, 1]) - y)

    def body(_, carry):
        theta, lam, loss = carry
        r, jac = residuals(theta), jax.jacfwd(residuals)(theta)
        a, g = jac.T @ jac, jac.T @ r
        damping = lam * (jnp.diag(jnp.diag(a)) + 1e-9 * jnp.eye(a.shape[0]))
        trial = theta - jnp.linalg.solve(a + damping, g)
        trial_loss = jnp.mean(residuals(trial) ** 2)
        better = trial_loss < loss  # accept and trust the model more, or reject and damp
        return (jnp.where(better, trial, theta), jnp.where(better, lam / 3, lam * 4),
                jnp.minimum(loss, trial_loss))

    init = (flat, jnp.asarray(1e-2, flat.dtype), jnp.mean(residuals(flat) ** 2))
    theta, _, loss = jax.lax.fori_loop(0, iterations, body, init)
    return eqx.combine(unravel(theta), mstatic), loss


def _newton_targets(aimer, target, wind, distance):
    """One Newton step per query along the path, through the simulator (forward mode):
    returns the improved s, the weights (slope / target)^2 that make the fit's loss the
    squared relative miss (Gauss-Newton), and the current misses (m)."""
    env = aimer.envelope
    s = np.clip(np.asarray(jax.vmap(aimer.s)(target, wind)), 0.0, S_MAX)
    a_best = np.asarray(jax.vmap(env.best_angle)(wind))
    angle, log_w, da, dlw = settings(s, a_best)
    d, slope = distance(wind, angle, log_w, da, dlw)
    miss = d - np.asarray(target)
    ok = np.isfinite(miss) & (slope > 0)
    step = np.clip(-np.where(ok, miss / np.where(ok, slope, 1.0), 0.0), -0.1, 0.1)
    s_new = np.clip(s + step, 0.0, S_MAX)
    w = np.where(ok, (slope / np.asarray(target)) ** 2, 0.0)
    return s_new, w / np.mean(w), miss


def _table_targets(env, target, wind):
    """Warm start: s from the envelope's table (no simulation), with its fit weights."""
    s = jax.vmap(env.invert)(target, wind)
    slope = jax.vmap(jax.grad(env.distance))(s, wind)
    w = np.asarray((slope / target) ** 2)
    return np.asarray(s), w / np.mean(w)


def train_aimer(key, p: Trebuchet = Trebuchet(), *, rounds: int = 2, batch: int = 2048,
                steps: int = 60, refit_steps: int = 20, width: int = 16, depth: int = 2,
                rtol: float = TRAIN_RTOL, progress: bool = True,
                history: list | None = None, envelope_: Envelope | None = None,
                surrogate=None) -> Aimer:
    """Trains an `Aimer` for machine p through `shoot` (Gauss-Newton in the path parameter).

    1. The machine's `Envelope` (the aiming path's table, ~3600 forward-mode throws).
    2. Warm start: the MLP fitted to the table's s for `batch` random queries.
    3. `rounds` times: `batch` fresh queries (target ~ U(20, 100) m, wind ~ N(0, 5^2) m/s)
       are thrown with the network's aim, one Newton step per query through the simulator
       (d distance/ds by forward mode) gives a better s, and the MLP is refitted to it
       (Levenberg-Marquardt on the squared relative miss: `steps` iterations for the
       warm start, `refit_steps` after each round). Each round cuts the simulator's share of the error; what remains
       is the MLP's fit.
    history: if a list, (stage, mean |miss| (m) of that round's throws (NaN for the warm
    start), seconds) tuples are appended. envelope_: reuse a computed Envelope of p.
    Returns the trained Aimer.
    """
    from .trebuchet import _as_arrays

    _check_positive(rounds=rounds, batch=batch, steps=steps, width=width, depth=depth)
    p = _as_arrays(p)
    start = time.perf_counter()
    if surrogate is None:
        distance = _env.simulator(p, rtol)
    else:
        from ._surrogate import directional

        distance = directional(surrogate)
    env = envelope(p, distance=distance) if envelope_ is None else envelope_
    if progress:
        print(f"training aimer: envelope {time.perf_counter() - start:.1f} s")
    init_key, key = jax.random.split(key)
    aimer = Aimer(init_key, env, width, depth)
    static = eqx.tree_at(lambda a: a.mlp, aimer, None)
    keys = jax.random.split(key, rounds + 1)
    for r in range(rounds + 1):
        # Training winds a little wider than the queries' (sd 6.5 against 5 m/s): the
        # tails, where the envelope bends, otherwise get few points and the fit wiggles
        # there (measured: worst reachable miss 2.4% at -12 m/s with sd 5).
        target, wind = sample_queries(keys[r], batch, wind_sd=TRAIN_WIND_SD)
        if r == 0:
            y, w = _table_targets(env, target, wind)
            mean_miss = math.nan
        else:
            y, w, miss = _newton_targets(aimer, target, wind, distance)
            mean_miss = float(np.nanmean(np.abs(miss)))
        x = jnp.stack([target, wind], axis=1)
        # The iteration count is traced: one compilation serves both fits.
        mlp, loss = _fit(aimer.mlp, static, x, jnp.asarray(y), jnp.asarray(w),
                         jnp.asarray(steps if r == 0 else refit_steps))
        aimer = eqx.tree_at(lambda a: a.mlp, aimer, mlp)
        if progress:
            before = "warm start from the envelope" if r == 0 else f"mean |miss| before the fit {mean_miss:.4f} m"
            print(f"training aimer: round {r}/{rounds}: {before}, fit rms relative miss "
                  f"{math.sqrt(float(loss)):.2e}, {time.perf_counter() - start:.1f} s")
        if history is not None:
            history.append((r, mean_miss, time.perf_counter() - start))
    return aimer


def _check_positive(**kwargs):
    for name, value in kwargs.items():
        if not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"train_aimer: {name} must be a positive integer, got {value!r}")


# --------------------------------------------------------------------------- evaluation


def misses(aimer: Aimer, target, wind, p: Trebuchet = Trebuchet(), rtol: float = 1e-8):
    """Signed misses (m), distance reached minus target, of the network's raw aim (s
    clipped to the ranges, so unreachable queries count with their best try), checked with
    the simulator at tolerance rtol, for (n,) arrays target (m) and wind (m/s)."""
    from .trebuchet import _as_arrays

    target, wind = (np.asarray(x, float).ravel() for x in (target, wind))
    angle, weight = jax.vmap(aimer)(jnp.asarray(target), jnp.asarray(wind))
    zeros = np.zeros_like(target)
    d, _ = _env.shoot_dir(wind, angle, np.log(np.asarray(weight)), zeros, zeros,
                          _as_arrays(p), rtol)
    return d - target


@eqx.filter_jit
def _aim_batch(aimer, target, wind):
    env = aimer.envelope
    target, wind = jnp.broadcast_arrays(target, wind)
    t, w = target.ravel(), wind.ravel()
    s = jnp.clip(jax.vmap(aimer.s)(t, w), 0.0, 1.0)
    angle, log_w, _, _ = settings(s, jax.vmap(env.best_angle)(w))
    ok = env.reachable(t, w)
    lo, hi = jax.vmap(env.limits)(w)
    predicted = jnp.where(ok, jax.vmap(env.distance)(s, w), jnp.clip(t, lo, hi)) - t
    nan = jnp.nan
    out = (jnp.where(ok, angle, nan), jnp.where(ok, jnp.exp(log_w), nan), ok, predicted)
    return AimResult(*(x.reshape(target.shape) for x in out))


def aim(aimer: Aimer, target, wind) -> AimResult:
    """The network's setting for hitting `target` (m) in `wind` (m/s, + = tailwind).

    Scalars or arrays (broadcast together). Returns an `AimResult` that unpacks as
    (angle rad, weight kg) and carries `reachable` (the machine's envelope: positive target
    between the shortest and the longest throw within ANGLE_RANGE x WEIGHT_RANGE in that
    wind, |wind| <= 25 m/s) and `predicted_miss` (m): where reachable, the envelope table's
    distance at the network's setting minus the target (the table is good to a few mm:
    this flags a network that is off); elsewhere the shortfall of the best setting (target
    beyond the longest throw: longest minus target, negative). Angle and weight are NaN
    where the target is not reachable. Compiled once; microseconds a query in batches."""
    _check_finite("aim", target=target, wind=wind)
    target, wind = (jnp.asarray(x, float) for x in (target, wind))
    return _aim_batch(aimer, target, wind)


def _check_finite(where, **arrays):
    for name, x in arrays.items():
        try:
            values = np.asarray(x, float)
        except (jax.errors.ConcretizationTypeError, jax.errors.TracerArrayConversionError):
            continue  # traced: checked by nobody, NaN in gives NaN out
        if not np.all(np.isfinite(values)):
            raise ValueError(f"{where}: {name} must be finite (m or m/s), got {x!r}")


# --------------------------------------------------------------------------- direct aiming

_ENVELOPES: dict = {}


def _cached_envelope(p):
    key = tuple(float(x) for x in jax.tree_util.tree_leaves(p))
    if key not in _ENVELOPES:
        _ENVELOPES[key] = envelope(p)
    return _ENVELOPES[key]


def _newton_one(target, wind, a_best, a_lob, s0, p, rtol, tol, iterations):
    """Newton on the path parameter s in [0, 1] for one query: distance and slope by one
    forward-mode solve per iteration. Stops at |miss| <= tol, or when pinned at an end of
    the range (out of reach), or after `iterations`. Returns (s, miss, pinned)."""
    def evaluate(s):
        angle, log_w, da, dlw = settings(s, a_best, a_lob)
        d, slope = _env._shoot_dir_one(wind, angle, log_w, da, dlw, p, rtol)
        return d - target, slope

    def cond(c):
        _, miss, _, i, pinned = c
        return (jnp.abs(miss) > tol) & (i < iterations) & ~pinned & jnp.isfinite(miss)

    def body(c):
        s, miss, slope, i, _ = c
        s_new = jnp.clip(s - miss / jnp.where(slope > 0, slope, 1.0), 0.0, 1.0)
        m, g = evaluate(s_new)
        return s_new, m, g, i + 1, s_new == s

    miss0, slope0 = evaluate(s0)
    s, miss, _, _, pinned = jax.lax.while_loop(
        cond, body, (s0, miss0, slope0, 0, jnp.asarray(False)))
    return s, miss, pinned


@eqx.filter_jit
def _newton_chunk(x, p, rtol, tol, iterations):
    # lax.map (sequential): each query stops as soon as it converges (see _envelope._shoot_dir_chunk).
    return jax.lax.map(lambda r: _newton_one(*r, p, rtol, tol, iterations), x)


def _check_direct(tol, iterations, angle):
    if not (isinstance(tol, (int, float, np.floating)) and math.isfinite(tol) and tol > 0):
        raise ValueError(f"aim_direct: tol must be a positive finite distance in m (e.g. "
                         f"1e-3), got {tol!r}; the simulator resolves distances to ~1e-9 m "
                         "at rtol 1e-8, so a tol of 0 could never be met")
    if not isinstance(iterations, (int, np.integer)) or iterations < 1:
        raise ValueError(f"aim_direct: iterations must be a positive integer, got {iterations!r}")
    if angle is not None and not ANGLE_RANGE[0] <= float(angle) <= ANGLE_RANGE[1]:
        raise ValueError(f"aim_direct: angle must lie in ANGLE_RANGE {ANGLE_RANGE} rad, got "
                         f"{angle!r}; or pass angle=None to let the angle vary")


def aim_direct(target, wind, p: Trebuchet = Trebuchet(), *, angle=None, tol: float = 1e-3,
               iterations: int = 20, rtol: float = 1e-8,
               envelope_: Envelope | None = None) -> AimResult:
    """Aims each query by Newton's method through `shoot`, along the aiming path.

    target (m), wind (m/s): scalars or arrays (broadcast together). angle=None (default):
    the setting moves along the path of `physics._envelope` (weight 10-300 kg, angle from
    the steep lob to the angle of maximum range), warm-started from the machine's envelope
    table (computed once per machine, ~2 s, then cached; or pass envelope_). A fixed angle
    (rad, in ANGLE_RANGE): Newton on the counterweight alone at that angle, from 60 kg.
    d distance / ds by forward mode, one solve per iteration; stops at |miss| < tol (m,
    positive), at an end of the range, or after `iterations`. Solves at rtol.

    Returns an `AimResult` (unpacks as (angle, weight)): reachable where a setting within
    the ranges hits within tol (and target > 0); predicted_miss: the simulated miss of the
    answer, or, where not reachable, of the best setting at the end of the range (angle
    and weight are then NaN). Queries run one after another in a compiled loop, each
    stopping when done: about 1 ms a query on two cores.
    """
    from .trebuchet import _as_arrays

    _check_direct(tol, iterations, angle)
    _check_finite("aim_direct", target=target, wind=wind)
    p = _as_arrays(p)
    t, w = np.broadcast_arrays(np.asarray(target, float), np.asarray(wind, float))
    shape, t, w = t.shape, t.ravel(), w.ravel()
    if angle is None:
        env = _cached_envelope(p) if envelope_ is None else envelope_
        a_best = np.asarray(jax.vmap(env.best_angle)(w))
        a_lob = np.full_like(t, ANGLE_RANGE[1])
        s0 = np.clip(np.asarray(jax.vmap(env.invert)(t, w)), 0.0, 1.0)
    else:
        a_best = a_lob = np.full_like(t, float(angle))
        s0 = np.full_like(t, math.log(60.0 / WEIGHT_RANGE[0]) / _env.LOG_SPAN)
    s, miss = _newton_many((t, w, a_best, a_lob, s0), p, rtol, float(tol), int(iterations))
    ok = (np.abs(miss) <= tol) & (t > 0)
    ang, log_w, _, _ = settings(s, a_best, a_lob)
    nan = np.nan
    out = (np.where(ok, ang, nan), np.where(ok, np.exp(log_w), nan), ok, miss)
    return AimResult(*(jnp.asarray(x.reshape(shape)) for x in out))


def _newton_many(cols, p, rtol, tol, iterations):
    """_newton_chunk over (n,) columns in chunks (padding with a calm 60 m query)."""
    fill = [60.0, 0.0, 0.6, 0.6, 0.5]
    s, miss, _ = _env.chunked(lambda x: _newton_chunk(x, p, rtol, tol, iterations), cols, fill)
    return s, miss
