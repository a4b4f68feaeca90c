"""What the trebuchet can reach: an aiming path through the (angle, weight) box and the
range envelope along it, computed through `shoot`. Used by `aim`, `aim_direct` and
`train_aimer` (physics._aim).

The path. For a wind w, s in [0, 1] walks from the shortest throw in the box to the
longest one:

    log weight(s) = log W_lo + s log(W_hi / W_lo)              (10 kg at s = 0, 300 kg at 1)
    angle(s)      = a_best(w) + (A_hi - a_best(w)) max(1 - s, 0)^4

a_best(w) is the angle of maximum range at the heaviest weight; at s = 0 the release is
the steepest lob of the range (A_hi = 1.2 rad), which throws shortest (measured: at 10 kg
every angle of the range throws under 10 m, 1.2 rad the least, at every wind in +-20 m/s).
Along the path both moves lengthen the throw, so the distance d(s) increases: every
target between d(0) and d(1) is hit by exactly one s. Measured on a grid of winds x angles
x weights, the distance increases with the weight and is unimodal in the angle, so
[d(0), d(1)] is the whole range of distances the box reaches (up to the millimetres by
which a_best misses the exact maximum). s > 1 extrapolates the weight beyond 300 kg at
a_best: how far out of the box a target is.

One scalar per query (s) instead of two (angle, weight) removes the degeneracy of the
aiming problem (a whole curve of settings hits each target), which left the old
two-output network free to drift its angle onto the 0.2 rad bound.
"""

from __future__ import annotations

import math
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

import solvers

from ._trebuchet_model import Trebuchet

ANGLE_RANGE = (0.2, 1.2)  # rad, about 11 to 69 degrees
WEIGHT_RANGE = (10.0, 300.0)  # kg
LOG_SPAN = math.log(WEIGHT_RANGE[1] / WEIGHT_RANGE[0])
S_MAX = 1.2  # the table extends the path to 591 kg, to tell how far out a target is
WIND_LIMIT = 25.0  # m/s (5 sd of the training wind): the envelope table covers |wind| <= this
# Queries per simulator call: 256 (dispatch then negligible; padding the last chunk wastes
# at most ~0.1 s) for batches of 16 or more, one at a time below: two compiled shapes.
CHUNK, SMALL = 256, 16


def settings(s, a_best, a_lob=ANGLE_RANGE[1]):
    """(angle rad, log weight) at path parameter s (any shape, broadcast), and their
    derivatives in s. Differentiable."""
    log_w = math.log(WEIGHT_RANGE[0]) + LOG_SPAN * s
    bend = jnp.maximum(1.0 - s, 0.0)
    angle = a_best + (a_lob - a_best) * bend**4
    d_angle = -4.0 * (a_lob - a_best) * bend**3
    return angle, log_w, d_angle, jnp.full_like(log_w, LOG_SPAN)


def _shoot_dir_one(wind, angle, log_w, t_angle, t_log_w, p, rtol):
    """Distance (m) at (angle, exp(log_w)) and its derivative along (t_angle, t_log_w),
    one forward-mode solve (jvp; cheaper than reverse mode: 0.32 against 1.65 ms)."""
    from .trebuchet import shoot_with_status  # late import: trebuchet imports _aim

    def f(a, lw):
        return shoot_with_status(wind, a, jnp.exp(lw), p, adjoint=solvers.ForwardMode(),
                                 rtol=rtol, atol=rtol)[0]

    return jax.jvp(f, (angle, log_w), (t_angle, t_log_w))


@eqx.filter_jit
def _shoot_dir_chunk(x, p, rtol):
    # lax.map, not vmap: under vmap the solver's event location (a lax.cond around 104
    # bisection steps) becomes a select that runs on every step of every throw. Measured
    # on 2 cores: 0.16 ms a throw sequentially against 0.9 ms vmapped (forward only).
    return jax.lax.map(lambda r: _shoot_dir_one(*r, p, rtol), x)


def chunked(fn, cols, fill):
    """Applies fn (a compiled function of a tuple of (k,) arrays returning a tuple of (k,)
    arrays) to (n,) numpy columns in chunks of CHUNK (or 1 for fewer than SMALL queries),
    padded with the values `fill`. Returns numpy arrays (n,)."""
    n = cols[0].size
    k = CHUNK if n >= SMALL else 1
    outs: list = []
    for i in range(0, n, k):
        part = [c[i:i + k] for c in cols]
        pad = k - part[0].size
        x = tuple(jnp.asarray(np.concatenate([c, np.full(pad, f)])) for c, f in zip(part, fill))
        outs.append([np.asarray(o)[:k - pad] for o in fn(x)])
    return [np.concatenate(o) for o in zip(*outs)]


def shoot_dir(wind, angle, log_w, t_angle, t_log_w, p, rtol):
    """Batched `_shoot_dir_one` over arrays (broadcast together, flattened). Returns
    (distance, derivative), two (n,) numpy arrays; NaN for a failed throw."""
    cols = np.broadcast_arrays(*(np.asarray(c, float) for c in (wind, angle, log_w, t_angle, t_log_w)))
    cols = [c.ravel() for c in cols]
    # Padding repeats a harmless throw (calm, 0.6 rad, 60 kg).
    fill = [0.0, 0.6, math.log(60.0), 0.0, 0.0]
    d, dd = chunked(lambda x: _shoot_dir_chunk(x, p, rtol), cols, fill)
    return d, dd


def simulator(p, rtol):
    """`shoot_dir` for machine p (arrays) at tolerance rtol, as a distance function
    (wind, angle, log_w, t_angle, t_log_w) -> (distance, derivative)."""
    def distance(wind, angle, log_w, t_angle, t_log_w):
        return shoot_dir(wind, angle, log_w, t_angle, t_log_w, p, rtol)

    return distance


class Envelope(eqx.Module):
    """The aiming path's table for one machine: distance along the path at a grid of winds
    and path parameters, computed through `shoot`.

    winds: (nw,) m/s. a_best: (nw,) angle of maximum range at 300 kg (rad).
    s: (ns,) path parameters in [0, S_MAX]. d, dd: (nw, ns) distance (m) and d distance/ds.
    Distances between grid points: cubic Hermite in s, linear in wind (spacing 0.5 m/s:
    the linear interpolation errs by under 3 mm, from the measured curvature of the
    range in the wind, ~0.1 m per (m/s)^2).
    """

    winds: Any
    a_best: Any
    s: Any
    d: Any
    dd: Any

    def _row(self, wind):
        """Angle a_best and the (ns,) rows d, dd interpolated at a scalar wind."""
        w = jnp.clip(wind, self.winds[0], self.winds[-1])
        step = self.winds[1] - self.winds[0]
        i = jnp.clip(jnp.floor((w - self.winds[0]) / step).astype(int), 0, self.winds.shape[0] - 2)
        t = (w - self.winds[i]) / step
        lerp = lambda x: (1 - t) * x[i] + t * x[i + 1]  # noqa: E731
        return lerp(self.a_best), lerp(self.d), lerp(self.dd)

    def best_angle(self, wind):
        """a_best (rad) at scalar wind: the path's angle for s >= 1."""
        return self._row(wind)[0]

    def limits(self, wind):
        """(shortest, longest) distance (m) within ANGLE_RANGE x WEIGHT_RANGE at scalar wind."""
        return self.distance(0.0, wind), self.distance(1.0, wind)

    def distance(self, s, wind):
        """Distance (m) the table predicts at path parameter s (scalar) and wind."""
        _, d, dd = self._row(wind)
        h = self.s[1] - self.s[0]
        j = jnp.clip(jnp.floor(s / h).astype(int), 0, self.s.shape[0] - 2)
        return _hermite(d[j], d[j + 1], h * dd[j], h * dd[j + 1], (s - self.s[j]) / h)

    def invert(self, target, wind):
        """Path parameter s in [0, S_MAX] the table predicts for hitting target (m) at wind
        (scalars; clipped at the ends when out of range). Differentiable almost everywhere."""
        _, d, dd = self._row(wind)
        h = self.s[1] - self.s[0]
        j = jnp.clip(jnp.searchsorted(d, target) - 1, 0, self.s.shape[0] - 2)
        y0, y1, m0, m1 = d[j], d[j + 1], h * dd[j], h * dd[j + 1]
        u = jnp.clip((target - y0) / (y1 - y0), 0.0, 1.0)
        for _ in range(4):  # Newton on the cubic from the secant guess
            g = _hermite(y0, y1, m0, m1, u) - target
            u = jnp.clip(u - g / _hermite_slope(y0, y1, m0, m1, u), 0.0, 1.0)
        return self.s[j] + h * u

    def reachable(self, target, wind):
        """Whether a target (m) is reachable in the wind (m/s) within the ranges: positive,
        inside the limits, wind inside the table. Broadcasts."""
        def one(t, w):
            lo, hi = self.limits(w)
            return (t > 0) & (t >= lo) & (t <= hi) & (jnp.abs(w) <= WIND_LIMIT)

        t, w = jnp.broadcast_arrays(jnp.asarray(target, float), jnp.asarray(wind, float))
        return jax.vmap(one)(t.ravel(), w.ravel()).reshape(t.shape)


def _hermite(y0, y1, m0, m1, u):
    return ((2 * u**3 - 3 * u**2 + 1) * y0 + (u**3 - 2 * u**2 + u) * m0
            + (-2 * u**3 + 3 * u**2) * y1 + (u**3 - u**2) * m1)


def _hermite_slope(y0, y1, m0, m1, u):
    return ((6 * u**2 - 6 * u) * y0 + (3 * u**2 - 4 * u + 1) * m0
            + (-6 * u**2 + 6 * u) * y1 + (3 * u**2 - 2 * u) * m1)


def _best_angles(winds, distance, n_angles=11, degree=4):
    """Angle of maximum range at 300 kg for each wind: the zero of d distance/d angle on a
    grid of angles (secant between the bracketing points), then a polynomial in the wind
    (degree 4, least squares) so that the path is smooth in the wind."""
    angles = np.linspace(*ANGLE_RANGE, n_angles)
    w, a = np.meshgrid(winds, angles, indexing="ij")
    _, slope = distance(w, a, np.full_like(w, math.log(WEIGHT_RANGE[1])), np.ones_like(w),
                        np.zeros_like(w))
    slope = slope.reshape(w.shape)
    best = np.empty(len(winds))
    for i, g in enumerate(slope):
        k = int(np.clip(np.argmax(g < 0) - 1, 0, n_angles - 2))  # last point still rising
        best[i] = angles[k] - g[k] * (angles[k + 1] - angles[k]) / (g[k + 1] - g[k])
    fit = np.polynomial.Polynomial.fit(winds, best, degree)
    return np.clip(fit(winds), *ANGLE_RANGE)


def envelope(p: Trebuchet = Trebuchet(), *, rtol: float = 1e-6, wind_step: float = 0.5,
             n_s: int = 25, distance=None) -> Envelope:
    """Computes the `Envelope` of machine p through `shoot` (forward mode, tolerance rtol):
    winds in +-WIND_LIMIT every wind_step m/s, n_s path parameters in [0, S_MAX]. About 3600
    throws: ~2 s on two cores after the simulator's compilation (~10 s).
    distance: another distance function instead of shoot (e.g. a surrogate's
    `physics._surrogate.directional`): (wind, angle, log_w, t_angle, t_log_w) arrays ->
    (distance, derivative along (t_angle, t_log_w)) numpy arrays."""
    from .trebuchet import _as_arrays

    if distance is None:
        p = _as_arrays(p)
        distance = simulator(p, rtol)
    winds = np.arange(-WIND_LIMIT, WIND_LIMIT + 0.5 * wind_step, wind_step)
    a_best = _best_angles(winds, distance)
    s = np.linspace(0.0, S_MAX, n_s)
    ww, ss = np.meshgrid(winds, s, indexing="ij")
    angle, log_w, da, dlw = settings(ss, a_best[:, None])
    d, dd = distance(ww, angle, log_w, da, dlw)
    if not np.all(np.isfinite(d)):
        raise ValueError("envelope: some throws along the aiming path failed for this "
                         "machine; check its geometry (see trebuchet.shoot's errors)")
    return Envelope(*(jnp.asarray(x) for x in (winds, a_best, s, d.reshape(ww.shape),
                                                dd.reshape(ww.shape))))
