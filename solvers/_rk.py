"""One generic explicit Runge-Kutta step, and the named methods built on it."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from . import _tableau as T
from ._base import AbstractTableauMethod, StepResult, named_method, rms


def hermite(y0, y1, f0, f1, h, theta):
    """Cubic Hermite interpolant through (y0, f0) at theta=0 and (y1, f1) at theta=1."""
    t2, t3 = theta * theta, theta * theta * theta
    return (
        (2 * t3 - 3 * t2 + 1) * y0
        + (t3 - 2 * t2 + theta) * h * f0
        + (-2 * t3 + 3 * t2) * y1
        + (t3 - t2) * h * f1
    )


# From this state size on, stage values are materialised (see `materialize`).
MATERIALIZE_FROM = 16


def materialize(x, true, other):
    """x, computed once into a buffer when the state is big enough to be worth it.

    XLA fuses elementwise chains and, to do so, recomputes a producer inside each of
    its consumers. Through the stages of a step (or its VJP) that recomputation
    compounds, and for a 64-state problem made steps 2x (forward) to 5x (backward)
    slower. A conditional's result is a buffer XLA cannot fuse through; `true` must be
    a traced predicate that holds, and `other` (of x's structure) is the branch never
    taken: an existing buffer, so that branch costs no kernel to compile. For tiny
    states the conditional costs more than the recomputation."""
    if sum(leaf.size for leaf in jax.tree_util.tree_leaves(x)) < MATERIALIZE_FROM:
        return x
    return jax.lax.cond(true, lambda x, o: x, lambda x, o: o, x, other)


def _sparse_combine(weights, ks):
    """sum_i weights[i] ks[i] over a list, skipping zero weights (numpy constants)."""
    # float(w): a Python float is weakly typed, so float32 states stay float32 under x64.
    terms = [float(w) * k for w, k in zip(weights, ks) if w != 0]
    return sum(terms[1:], terms[0]) if terms else jnp.zeros_like(ks[0])


def _combine(weights, ks):
    """sum_i weights[i] ks[i]: a fused multiply-reduce (a `dot` would be a library call,
    slow for the tiny sizes of a stage combination)."""
    w = jnp.asarray(weights, ks.dtype)
    return jnp.sum(w.reshape((-1,) + (1,) * (ks.ndim - 1)) * ks, axis=0)


class ExplicitRK(AbstractTableauMethod):
    """Explicit Runge-Kutta method given by a `ButcherTableau` (see `_tableau.py`):
    `ExplicitRK(tableau)` is the engine every named explicit method is built on.

    State between steps: f at the current point (first same as last).
    Dense output: the tableau's interpolant, or cubic Hermite when it has none.
    """

    tableau: T.ButcherTableau = eqx.field(default=T.TSIT5, static=True, repr=False)
    init_evals = 1
    tangents_as_states = True  # every stage is linear in the earlier ones

    def __check_init__(self):
        if not isinstance(self.tableau, T.ButcherTableau):
            raise TypeError(f"ExplicitRK(tableau) takes a solvers.ButcherTableau, got {type(self.tableau).__name__}")

    @property
    def evals_per_step(self):
        return self.tableau.stages - 1

    def init(self, f, s, y, args):
        return f(s, y, args)

    def stages(self, f, s, y, h, args, k0):
        """Stage points Y_i (Y_0 = y) and derivatives k_i = f(s + c_i h, Y_i, args), k_0 = k0.

        Unrolled in Python with the tableau's zeros skipped: a rolled stage loop compiles
        faster but writes a (stages, d) buffer per stage, which under vmap was five times
        slower (benchmarks/ode.py)."""
        return self._stage_chain(lambda c, Y: f(s + c * h, Y, args), y, h, k0)

    def _stage_chain(self, f_at, y, h, k0):
        """`stages` with f_at(c_i, Y_i) -> k_i."""
        tab = self.tableau
        Ys, ks = [y], [k0]
        for i in range(1, tab.stages):
            Ys.append(y + h * _sparse_combine(tab.a[i, :i], ks))
            ks.append(materialize(f_at(float(tab.c[i]), Ys[i]), h == h, y))
        return Ys, ks

    def linearized_stages(self, f, s, y, h, args):
        """`stages` from y (k_0 = f(s, y, args) included), with the VJP of each k_i in
        (Y_i, args): one evaluation of f per stage serves the step and its reverse sweep.
        (Linearising each stage again in the sweep evaluated f twice per stage, 13 times
        per Tsit5 step where diffrax's VJP of the step evaluates it 6 times.)"""
        vjps = []

        def f_at(c, Y):
            k, vjp = jax.vjp(lambda Y, a: f(s + c * h, Y, a), Y, args)
            vjps.append(vjp)
            return k

        Ys, ks = self._stage_chain(f_at, y, h, f_at(0.0, y))
        return Ys, ks, vjps

    def finish(self, y, h, ks):
        """The step's result from its stage derivatives ks (a list)."""
        tab = self.tableau
        y1 = y + h * _sparse_combine(tab.b, ks)
        ks = jnp.stack(ks)
        if tab.b_err is None:
            y_err = jnp.zeros_like(y)
        elif tab.b_err3 is None:
            y_err = h * _combine(tab.b_err, ks)
        else:
            y_err = h * jnp.stack([_combine(tab.b_err, ks), _combine(tab.b_err3, ks)])
        if tab.dense is None:
            dense = (y, y1, ks[0], ks[tab.fsal])
        else:
            dense = (y, ks)
        return StepResult(y1, y_err, dense, ks[tab.fsal], n_f=tab.stages - 1)

    def step(self, f, s, y, h, args, k0):
        return self.finish(y, h, self.stages(f, s, y, h, args, k0)[1])

    def used_stages(self, dense):
        """Which k_i the step's y1 (and, with dense=True, its dense output) depend on."""
        tab = self.tableau
        used = np.pad(tab.b, (0, tab.stages - len(tab.b))) != 0
        if dense and tab.dense is not None:
            used |= np.any(tab.dense != 0, axis=1)
        elif dense:
            used[[0, tab.fsal]] = True  # cubic Hermite: f at both ends
        return [bool(u) for u in used]

    def stages_vjp(self, vjps, y, h, k_bar):
        """Reverse sweep through the stages: cotangents of (y, args) given cotangents
        k_bar of the k_i, with k_0 = f(s, y, args) included; vjps from `linearized_stages`.

        One VJP of f per stage at its given point, each result materialised: differentiating
        the whole step at once let XLA fuse the stage chain into every kernel of the
        backward pass and recompute it there, 4x slower for a 64-state problem."""
        tab = self.tableau
        k_bar = list(k_bar)
        y_bar, args_bar = None, None
        for i in reversed(range(tab.stages)):
            if k_bar[i] is None:
                continue
            Y_bar, a_bar = vjps[i](k_bar[i])
            Y_bar = materialize(Y_bar, h == h, y)
            y_bar = Y_bar if y_bar is None else y_bar + Y_bar
            args_bar = a_bar if args_bar is None else jax.tree_util.tree_map(jnp.add, args_bar, a_bar)
            for j in range(i):
                if tab.a[i, j] != 0:
                    term = (h * float(tab.a[i, j])) * Y_bar
                    k_bar[j] = term if k_bar[j] is None else k_bar[j] + term
        return y_bar, args_bar

    def step_vjp(self, f, s, y, h, args, outputs, ct, uses_dense=True):
        """The outputs' VJP given the stages, then the reverse sweep through the stages
        (`stages_vjp`), skipping stages the outputs do not read."""
        _, ks, vjps = self.linearized_stages(f, s, y, h, args)
        _, vjp = jax.vjp(lambda y, ks, a: outputs(y, a, self.finish(y, h, ks)), y, ks, args)
        y_bar, k_bar, a_bar = vjp(ct)
        k_bar = [kb if u else None for kb, u in zip(k_bar, self.used_stages(dense=uses_dense))]
        y_st, a_st = self.stages_vjp(vjps, y, h, k_bar)
        return y_bar + y_st, jax.tree_util.tree_map(jnp.add, a_bar, a_st)

    def interpolate(self, dense, h, theta):
        if self.tableau.dense is None:
            y0, y1, f0, f1 = dense
            return hermite(y0, y1, f0, f1, h, theta)
        y0, ks = dense
        # b_i(theta) = b_i theta + sum_k D_ik (theta^(k+1) - theta): the same polynomial (the
        # rows of D sum to b), written so that it is b_i exactly at theta = 1 whatever the
        # rounding of the published coefficients (Dopri8's end of step: 2.9e-15 -> 0).
        powers = theta ** jnp.arange(1, self.tableau.dense.shape[1] + 1, dtype=ks.dtype) - theta
        b = np.pad(self.tableau.b, (0, self.tableau.stages - len(self.tableau.b)))
        weights = jnp.asarray(b, ks.dtype) * theta + jnp.sum(jnp.asarray(self.tableau.dense, ks.dtype) * powers, axis=1)
        return y0 + h * _combine(weights, ks)

    def error_ratio(self, y_err, scale, norm=rms):
        """Norm of the error relative to scale = atol + rtol |y|; <= 1 accepts."""
        if self.tableau.b_err3 is None:
            return norm(y_err / scale)
        # DOP853: blend the 5th and 3rd order estimates (Hairer, Norsett & Wanner).
        e5, e3 = norm(y_err[0] / scale) ** 2, norm(y_err[1] / scale) ** 2
        denom = e5 + 0.01 * e3
        safe = jnp.where(denom > 0, denom, 1.0)
        return jnp.where(denom > 0, e5 / jnp.sqrt(safe), 0.0)


def _named(tab, doc):
    return named_method(ExplicitRK, tab, doc)


Euler = _named(T.EULER, "Forward Euler, order 1, fixed steps only.")
Heun = _named(T.HEUN, "Heun's method (explicit trapezoid), order 2, fixed steps only.")
Midpoint = _named(T.MIDPOINT, "Explicit midpoint method, order 2, fixed steps only.")
Ralston = _named(T.RALSTON, "Ralston's 2nd order method (minimum error bound among 2-stage 2nd order RK), "
                 "with an embedded Euler estimate so it adapts (error order 1); cubic Hermite dense output.")
RK4 = _named(T.RK4, "The classical 4th order Runge-Kutta method, fixed steps only.")
Bosh3 = _named(T.BOSH3, "Bogacki-Shampine 3(2) pair, FSAL, cubic Hermite dense output.")
Tsit5 = _named(T.TSIT5, "Tsitouras 5(4) pair, FSAL, 4th order dense output. The default.")
Dopri5 = _named(T.DOPRI5, "Dormand-Prince 5(4) pair, FSAL, 4th order dense output.")
Dopri8 = _named(
    T.DOPRI8,
    "Dormand-Prince 8(5,3) pair (DOP853) with 7th order dense output. For tight tolerances.\n\n"
    "Each step costs 15 evaluations of f: 11 new stages, and 3 more for the dense output that\n"
    "events, `ts` and `evaluate` use (the 13th is reused as the next step's first).",
)
