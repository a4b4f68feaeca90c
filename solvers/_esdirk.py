"""ESDIRK methods: the engine `ESDIRK(tableau)` and its tableaus (ImplicitEuler,
Kvaerno3, Kvaerno4, Kvaerno5).

Each implicit stage is solved by simplified Newton with one Newton matrix per step
(dense LU by default; see `_linear.py` for the tridiagonal and matrix-free solves);
derivatives come from the implicit function theorem (`_newton.newton_stage`), so they
are exact for the converged stages whatever the number of Newton iterations taken.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple, Optional

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from equinox.internal import unvmap_any

from ._base import AbstractTableauMethod, Status, StepResult, named_method
from ._jacobian import JacobianPattern, to_pattern
from ._linear import AbstractLinearSolve, DenseLinearSolve, Linearisation, as_linear_solve, point_derivatives
from ._newton import all_finite, huge, newton_stage


@dataclasses.dataclass(frozen=True)
class ESDIRKTableau:
    """A stiffly accurate ESDIRK method: explicit first stage, the same gamma on the rest
    of the diagonal.

        z_1 = y0,   F_i = f(s + c_i h, z_i),
        z_i = y0 + h sum_{j<i} a_ij F_j + h gamma F_i        (i >= 2, solved by Newton)

    y1 = z_s (stiffly accurate: the weights are the last row of a, with gamma), and the
    error estimate is y_err = h sum_i e_i F_i (for an embedded stage z_k at c = 1, e is the
    last row minus row k, gamma included).

    a: (s, s) strictly lower triangular (the diagonal gamma is implied); c, e: (s,).
    `order`: order of y1; `error_order`: the estimate is O(h^(error_order + 1)).
    `hermite`: dense output by the Hermite interpolant matching this many derivatives of
    y at both ends of the step (0: linear, 1: cubic, 2: quintic, order 5).
    `predictor`: optional (s, s) strictly lower triangular w; Newton for stage i starts
    from the increment z_i - y0 = sum_j w_ij (z_j - y0) (None: from z_i = y0).
    Checked on construction (ValueError).
    """

    name: str
    gamma: float
    a: tuple
    c: tuple
    e: tuple
    order: int
    error_order: int
    hermite: int = 1
    predictor: Optional[tuple] = None

    def __post_init__(self):
        n, s = self.name, len(self.c)
        a, c, e = np.array(self.a, float), np.array(self.c, float), np.array(self.e, float)
        if not (isinstance(self.gamma, float) and self.gamma > 0):
            raise ValueError(f"{n}: gamma must be a positive float, got {self.gamma!r}")
        for field, m in (("a", a), ("predictor", self.predictor)):
            if m is not None and (np.shape(m) != (s, s) or np.any(np.triu(m) != 0)):
                raise ValueError(f"{n}: {field} must be ({s}, {s}) strictly lower triangular (one row per c)")
        if e.shape != (s,) or abs(e.sum()) > 1e-12:
            raise ValueError(f"{n}: e must have {s} entries summing to 0 (a difference of weights)")
        rows = a.sum(axis=1) + np.r_[0.0, np.full(s - 1, self.gamma)]
        if c[0] != 0 or c[-1] != 1 or np.max(np.abs(rows - c)) > 1e-12:
            raise ValueError(f"{n}: need c_1 = 0, c_s = 1 and c_i = sum_j a_ij + gamma; got c {c}, row sums {rows}")
        if self.hermite not in (0, 1, 2):
            raise ValueError(f"{n}: hermite must be 0, 1 or 2 (derivatives matched at each end)")
        if not 1 <= self.error_order <= self.order:
            raise ValueError(f"{n}: need 1 <= error_order <= order, got {self.error_order}, {self.order}")
        # Quick order conditions: sum_i b_i c_i^(q-1) = 1/q (bushy trees) and, through the
        # stability function, b A^(q-1) 1 = 1/q! (tall trees), for q up to the order; the
        # embedded weights b - e up to error_order.
        A = a + np.diag(np.r_[0.0, np.full(s - 1, self.gamma)])
        for w, p, what in ((A[-1], self.order, "order"), (A[-1] - e, self.error_order, "error_order")):
            for q in range(1, p + 1):
                bushy = w @ c ** (q - 1) - 1 / q
                tall = w @ np.linalg.matrix_power(A, q - 1) @ np.ones(s) - 1 / math.factorial(q)
                if max(abs(bushy), abs(tall)) > 1e-9:
                    raise ValueError(f"{n}: order condition q = {q} fails ({what} {p}): check a, c, e")

    def stability(self, z: float) -> float:
        """R(z) = 1 + z b (I - z A)^-1 1: one step of y' = lambda y, z = h lambda."""
        s = len(self.c)
        A = np.array(self.a, float) + np.diag(np.r_[0.0, np.full(s - 1, self.gamma)])
        return float(1 + z * A[-1] @ np.linalg.solve(np.eye(s) - z * A, np.ones(s)))


def _hermite_matrix(m: int) -> np.ndarray:
    """B (2m+1, 2m+1): y(theta) - y0 = sum_j theta^(j+1) (B @ data)_j interpolates
    data = (y1 - y0, h^k y^(k)(0) for k = 1..m, h^k y^(k)(1) for k = 1..m)."""
    n = 2 * m + 1
    rows = []
    for point, k in [(1.0, 0)] + [(0.0, k) for k in range(1, m + 1)] + [(1.0, k) for k in range(1, m + 1)]:
        # k-th derivative of theta^j at `point`, j = 1..n
        rows.append([math.perm(j, k) * point ** (j - k) if j >= k else 0.0 for j in range(1, n + 1)])
    return np.linalg.inv(np.array(rows))


_HERMITE = {m: _hermite_matrix(m) for m in (0, 1, 2)}


def _hermite_data(Z, h, lin0, lin1, m):
    """(2m+1, d) data of the Hermite interpolant (see `_hermite_matrix`): y1 - y0, then
    h^k y^(k) for k = 1..m at the start and at the end of the step, from the
    linearisations there (y' = f, y'' = J f + df/ds)."""

    def derivs(lin: Linearisation):
        return ([h * lin.f] if m >= 1 else []) + ([h * h * (lin.jf + lin.ft)] if m >= 2 else [])

    return jnp.stack([Z] + derivs(lin0) + derivs(lin1))


# `jac_reuse` (see ESDIRK) is off by default. Measured (float64, benchmarks/jac_reuse.py,
# docs/benchmarks.md) at jac_reuse=0.01: with a tanh network of 100 states in f, 1.75x
# (Kvaerno5) and 2.2x (Kvaerno3) faster, 2 Jacobians instead of 186 and 1438, same error;
# where J is cheap (ROBER, VDPOL, HIRES with 2-8 states, a 200-point heat stencil) 11-36%
# slower: the extra Newton iterations cost more than the Jacobians saved.
# Newton's tolerance, relative, with a Newton matrix from an earlier point (see ESDIRK.step).
STALE_TIGHTEN = 0.01


class _Newton(NamedTuple):
    """Newton settings of one step: tolerances, iteration cap, and the linear solve with its
    sparsity pattern (None: none)."""

    rtol: float
    atol: float
    max_iters: int
    linear: AbstractLinearSolve
    pattern: Optional[JacobianPattern]


def esdirk_stages(tab: ESDIRKTableau, f, s, y, h, args, lin: Linearisation, newton: _Newton, solve_M,
                  min_iters=1, tight=1.0):
    """The stage derivatives F_i (list of (d,)), the increment y1 - y0, ok, linear_ok (no
    linear solve failed), the number of f evaluations and the slowest contraction rate
    measured (0 if every stage converged at its first iteration) of one ESDIRK step from
    the linearisation at (s, y), with the simplified Newton iteration's solve `solve_M`
    (r -> (W^-1 r, ok)). min_iters, tight: Newton iterates at least min_iters times, to
    its tolerance times tight."""
    hg = h * tab.gamma
    ls, pattern = newton.linear, newton.pattern
    tangent_solve = ls.tangent_solver(f, s, y, args, lin, hg, pattern)
    scale = jax.lax.stop_gradient((newton.atol + newton.rtol * jnp.abs(y)) * tight)
    # Stages are solved for their increments Z_i = z_i - y0 (Hairer & Wanner IV.8): the
    # stage derivatives F_i = (Z_i - psi_i) / (h gamma) and the error estimate then
    # difference small numbers, not values of the size of y0 (this matters in float32,
    # e.g. ROBER, where y3 ~ 1 moves by 1e-8 per step).
    Fs, Zs = [lin.f], [jnp.zeros_like(y)]
    ok, lin_ok, n_f, rate = jnp.asarray(True), jnp.asarray(True), jnp.zeros((), jnp.int32), jnp.ones((), y.dtype)
    slowest = jnp.zeros((), y.dtype)
    for i in range(1, len(tab.c)):
        psi = h * _comb(tab.a[i][:i], Fs)
        Z0 = jnp.zeros_like(y) if tab.predictor is None else _comb(tab.predictor[i][:i], Zs)
        Z, conv, iters, rate, lok = newton_stage(f, s + tab.c[i] * h, y, psi, hg, args, Z0, solve_M, tangent_solve,
                                                 scale, newton.max_iters, rate, min_iters)
        ok, lin_ok, n_f = ok & conv, lin_ok & lok, n_f + iters
        slowest = jnp.maximum(slowest, jnp.where(iters >= 2, rate, 0))  # a rate is measured from 2 iterations
        # F_i from the stage equation rather than f(z_i): no extra f evaluation, and the
        # leftover Newton error is divided by h gamma instead of multiplied by a stiff J.
        Fs.append((Z - psi) / hg)
        Zs.append(Z)
    return Fs, Zs[-1], ok, lin_ok, n_f, slowest


def failure_code(linear_ok, pattern_ok):
    """The StepResult.fail code: JAC_SPARSITY, LINEAR_SOLVE_FAIL or 0."""
    return jnp.where(~pattern_ok, int(Status.JAC_SPARSITY),
                     jnp.where(~linear_ok, int(Status.LINEAR_SOLVE_FAIL), 0)).astype(jnp.int32)


def check_pattern_size(method, y0):
    """ValueError if the method's jac_sparsity does not match the flattened size of y0."""
    p = method.jac_sparsity
    d = sum(int(np.size(x)) for x in jax.tree_util.tree_leaves(y0))
    if p is not None and p.d != d:
        raise ValueError(f"{type(method).__name__}: jac_sparsity is ({p.d}, {p.d}) but the state has {d} "
                         f"components (flattened): pass a ({d}, {d}) pattern")


def _comb(w, xs):
    """sum_i w_i xs_i over a list, skipping zero weights (Python floats keep float32)."""
    terms = [float(wi) * x for wi, x in zip(w, xs) if wi != 0.0]
    return sum(terms[1:], terms[0]) if terms else jnp.zeros_like(xs[0])


class ESDIRKState(NamedTuple):
    """ESDIRK's state between steps.

    lin: f, df/ds and J f at the current point (exact: they feed the explicit first stage
    and the dense output), and in lin.jac the Jacobian Newton uses, formed here or at an
    earlier point (reused). factor: the Newton matrix I - factor_hg J prepared by the
    linear solve (`newton_factor`), reused while J and h gamma stay the same (factor_hg 0:
    none yet). current: J was formed at this point; refresh: form J here before the next
    step (the retry of a step whose Newton iteration failed)."""

    lin: Linearisation
    factor: Any
    factor_hg: Any
    current: Any
    refresh: Any


def _lazy(pred, compute, old):
    """compute() where pred, else old, computing only when some member needs it: under
    vmap the cond stays a cond (unvmap_any; a batched predicate would make it a select,
    computing for every member at every step) and each member then selects."""
    new = jax.lax.cond(unvmap_any(pred), compute, lambda: old)
    return jax.tree_util.tree_map(lambda a, b: jnp.where(pred, a, b), new, old)


class ESDIRK(AbstractTableauMethod):
    """An ESDIRK method given by an `ESDIRKTableau`: `ESDIRK(tableau)` is the engine of
    ImplicitEuler and Kvaerno3/4/5.

    State between steps (`ESDIRKState`): f, df/ds and J f at the current point (one
    linearisation along two tangents at each step's end, which also serves the dense
    output, y'' = J f + df/ds for the quintic Hermite, and the next step's explicit first
    stage), the Jacobian J that Newton uses and its factorised Newton matrix.

    Jacobian reuse, as Radau and BDF codes do: J is formed anew only at the end of a step
    whose Newton iterations contracted slower than `jac_reuse` (the measured rate
    |dz_k+1| / |dz_k|; in the same linearisation as the end point's f), and at the start
    of the retry of a step whose Newton iteration failed with a J formed elsewhere (the
    retry, at a smaller step, then has a fresh J); the Newton matrix is refactorised
    when J or h gamma changed (with a constant step
    size, one factorisation serves many steps). With a J from an earlier point Newton
    iterates at least twice per stage (its rate is measured, not assumed) and to a
    hundredth of its tolerance (STALE_TIGHTEN): linear convergence leaves errors of one
    sign that add up over steps. `jac_reuse=0` (the default) forms J at every step: reuse
    pays only where J costs far more than the Newton iterations it adds (f with a
    network in it: 1.75-2.2x faster at 100 states with `jac_reuse=0.01`; 11-36% slower on
    the Bari problems and a 200-point heat stencil, measured). J only steers Newton: the converged stages, and
    their gradients (implicit function theorem with the exact Jacobian at the
    solution), do not depend on it. The adjoints' re-runs of a step start from `init`, a
    J formed at the step's start, so they reproduce the forward step to the Newton
    tolerance. Matrix-free solves (`carries_factor` False) form no J: nothing to reuse.

    Per step: one Newton matrix I - h gamma J (`linear_solver`: dense LU by default,
    `lineax.Tridiagonal()`, or matrix-free `lineax.GMRES(...)` / `lineax.BiCGStab(...)` from
    J v products; see `_linear.py`) reused by the simplified Newton iteration of every
    implicit stage. `jac_sparsity`: optional (d, d) boolean pattern of J (as scipy's):
    J is then built from a few coloured JVPs and checked against the pattern at every
    Jacobian (Status.JAC_SPARSITY). A linear solve that does not converge ends the solve
    with Status.LINEAR_SOLVE_FAIL. If a stage's Newton iteration fails (divergence, inf/NaN, or
    `max_newton_iters` reached) the step returns ok=False and `solve` shrinks the step.
    Newton stops when its estimated error is below newton_atol + newton_rtol |y|
    (componentwise, RMS norm), or when it stalls at rounding level. Unset tolerances
    default to newton_rtol = 1e-12 in float64 (100 eps in float32) and newton_atol =
    1e-6 newton_rtol; `with_tolerances(rtol, atol)` (which `solve` calls) ties them to the
    solve's instead: a hundredth of each.

    Shapes: y (d,), s and h scalars. Differentiable (reverse and forward mode) w.r.t. y,
    h, s and args through the implicit function theorem.
    """

    tableau: ESDIRKTableau = eqx.field(static=True)
    newton_rtol: Optional[float] = eqx.field(default=None, static=True)
    newton_atol: Optional[float] = eqx.field(default=None, static=True)
    max_newton_iters: int = eqx.field(default=10, static=True)
    linear_solver: AbstractLinearSolve = eqx.field(default=DenseLinearSolve(), static=True,
                                                   converter=as_linear_solve)
    jac_sparsity: Optional[JacobianPattern] = eqx.field(default=None, static=True, converter=to_pattern)
    jac_reuse: float = eqx.field(default=0.0, static=True)

    init_evals = 1

    @property
    def init_jacs(self):  # init forms J, unless the linear solve forms none (matrix-free)
        return int(self.linear_solver.carries_factor)

    def __check_init__(self):
        name = type(self).__name__
        if not isinstance(self.tableau, ESDIRKTableau):
            raise TypeError(f"{name}(tableau) takes a solvers.ESDIRKTableau, got {type(self.tableau).__name__}")
        for field in ("newton_rtol", "newton_atol"):
            v = getattr(self, field)
            if v is not None and not (isinstance(v, (int, float)) and 0 < v < math.inf):
                raise ValueError(f"{name}: {field} must be a positive finite float or None, got {v!r}")
        r = self.jac_reuse
        if not (isinstance(r, (int, float)) and not isinstance(r, bool) and 0 <= r < 1):
            raise ValueError(f"{name}: jac_reuse must be a float in [0, 1) (a Newton contraction rate, e.g. "
                             f"0.01; 0 forms the Jacobian at every step), got {r!r}")
        if not (isinstance(self.max_newton_iters, int) and self.max_newton_iters >= 1):
            raise ValueError(f"{name}: max_newton_iters must be an int >= 1, got {self.max_newton_iters!r}")
        self.linear_solver.check(self.jac_sparsity, name)

    def specialize(self, y0):
        check_pattern_size(self, y0)
        return self

    def backsolve_method(self):
        # BacksolveAdjoint's augmented system is larger than y: no pattern applies to it.
        return dataclasses.replace(self, linear_solver=self.linear_solver.augmented(), jac_sparsity=None)

    def _tols(self, dtype):
        # Defaults when no tolerances were given (see `with_tolerances`): Newton errors
        # add up over steps, so stay well below any rtol a user is likely to ask for
        # (1e-12 in float64; a hundred ulps in float32).
        rtol = self.newton_rtol
        if rtol is None:
            rtol = max(1e-12, 100 * float(jnp.finfo(dtype).eps))
        atol = 1e-6 * rtol if self.newton_atol is None else self.newton_atol
        return rtol, atol

    def with_tolerances(self, rtol, atol) -> "ESDIRK":
        """This method with Newton tolerances tied to the step-size controller's: a
        hundredth of rtol and atol (an explicit newton_rtol/newton_atol is kept).
        Newton errors then stay well below the local error estimate."""
        return dataclasses.replace(
            self,
            newton_rtol=self.newton_rtol if self.newton_rtol is not None else 1e-2 * rtol,
            newton_atol=self.newton_atol if self.newton_atol is not None else 1e-2 * atol,
        )

    def init(self, f, s, y, args):
        lin = self.linear_solver.linearise(f, s, y, args, self.jac_sparsity)
        # No factor yet (factor_hg = 0 never matches a step's h gamma > 0).
        factor = self.linear_solver.newton_factor(lin.jac, jnp.zeros((), y.dtype))
        return ESDIRKState(lin, factor, jnp.zeros((), y.dtype), current=jnp.asarray(True), refresh=jnp.asarray(False))

    def _newton_matrix(self, f, s, y, args, hg, state: ESDIRKState):
        """The state with the Jacobian and Newton matrix this step uses (J formed here if
        asked for, the factor redone if J or h gamma changed), whether J was formed, and
        whether the Newton matrix is exact (J formed at this point, factor at this hg)."""
        ls = self.linear_solver
        if not ls.carries_factor:  # the solve works from f at this point: always exact
            return state, jnp.asarray(False), jnp.asarray(True)
        form = state.refresh & ~state.current
        jac, pattern_ok = _lazy(form, lambda: ls.jacobian(f, s, y, args, self.jac_sparsity),
                                (state.lin.jac, state.lin.pattern_ok))
        if self.jac_reuse == 0:  # J changes at every step: factorise, no cond around it
            factor = ls.newton_factor(jac, hg)
        else:
            factor = _lazy(form | (hg != state.factor_hg), lambda: ls.newton_factor(jac, hg), state.factor)
        st = state._replace(lin=state.lin._replace(jac=jac, pattern_ok=pattern_ok), factor=factor, factor_hg=hg,
                            current=state.current | form)
        return st, form, st.current

    def step(self, f, s, y, h, args, state: ESDIRKState):
        tab = self.tableau
        hg = jnp.asarray(h * tab.gamma, y.dtype)
        st, formed, exact = self._newton_matrix(f, s, y, args, hg, state)
        rtol, atol = self._tols(y.dtype)
        # A Newton matrix from an earlier point converges linearly, and its errors, of one
        # sign step after step, add up: measured on a 200-state reaction-diffusion
        # problem (Kvaerno3, rtol 1e-6), the global error grew from 0.07 to 4 tolerances
        # at the same Newton tolerance. So with it Newton goes STALE_TIGHTEN further, and
        # every stage measures its rate (two iterations at least) instead of assuming one.
        tight = jnp.where(exact, 1.0, STALE_TIGHTEN).astype(y.dtype)
        newton = _Newton(rtol, atol, self.max_newton_iters, self.linear_solver, self.jac_sparsity)
        solve_M = self.linear_solver.newton_solver(st.factor, f, s, y, args, hg, self.jac_sparsity)
        min_iters = jnp.where(exact, 1, min(2, self.max_newton_iters))
        Fs, Z, ok, lin_ok, n_f, slowest = esdirk_stages(tab, f, s, y, h, args, st.lin, newton, solve_M,
                                                        min_iters, tight)
        newton_ok, lin = ok, st.lin
        y1 = y + Z
        y_err = h * _comb(tab.e, Fs)
        reuse = self.jac_reuse
        # J at the end point after a slow step (with reuse off: after every step), unless
        # Newton failed (the step is rejected, its end point unused)
        slow = ((slowest > reuse) if reuse > 0 else jnp.asarray(True)) & newton_ok
        lin1 = self._end_point(f, s + h, y1, args, lin, slow)
        fail = failure_code(lin_ok, lin.pattern_ok & lin1.pattern_ok)
        ok = ok & all_finite(y1, y_err) & (fail == 0)
        dense = (y, _hermite_data(Z, h, lin, lin1, tab.hermite))
        # A J formed at the end invalidates the factor (factor_hg 0 matches no step).
        nxt = st._replace(lin=lin1, current=slow, refresh=jnp.asarray(False),
                          factor_hg=jnp.where(slow, 0, hg).astype(hg.dtype))
        # f evaluations: Newton's, the end point's, one per J formed at the start (its own
        # linearisation; a J formed at the end shares the end point's) and the linear
        # solve's set-up (matrix-free: its linearisation).
        setup_f, setup_jacs = self.linear_solver.setup_counts()
        # (J formed at the end: after a slow step; with reuse off after every step, see _end_point)
        end_jac = jnp.asarray(reuse == 0) | slow if self.linear_solver.carries_factor else jnp.asarray(False)
        return StepResult(y1=y1, y_err=jnp.where(ok, y_err, huge(y)), dense=dense, state=nxt, ok=ok,
                          n_f=n_f + 1 + formed + setup_f,
                          n_jac=formed.astype(jnp.int32) + end_jac.astype(jnp.int32) + setup_jacs,
                          fail=fail, state_rejected=st._replace(refresh=~newton_ok))

    def _end_point(self, f, s1, y1, args, lin: Linearisation, form):
        """The linearisation at the step's end (s1, y1): f, df/ds and J f (one f
        evaluation), with J formed there too where `form` (in the same linearisation),
        else lin's J carried over."""
        ls = self.linear_solver
        if not ls.carries_factor or self.jac_reuse == 0:  # no J, or J at every step: no cond
            return ls.linearise(f, s1, y1, args, self.jac_sparsity)

        def carried():
            f1, ft1, jf1 = point_derivatives(f, s1, y1, args)
            return Linearisation(f1, ft1, jf1, lin.jac, lin.pattern_ok)

        new = jax.lax.cond(unvmap_any(form), lambda: ls.linearise(f, s1, y1, args, self.jac_sparsity), carried)
        pick = lambda a, b: jax.tree_util.tree_map(lambda x, z: jnp.where(form, x, z), a, b)  # noqa: E731
        return new._replace(jac=pick(new.jac, lin.jac), pattern_ok=pick(new.pattern_ok, lin.pattern_ok))

    def interpolate(self, dense, h, theta):
        y0, data = dense
        B = _HERMITE[self.tableau.hermite]
        powers = theta ** jnp.arange(1, B.shape[0] + 1, dtype=data.dtype)
        weights = powers @ jnp.asarray(B, data.dtype)
        return y0 + weights @ data


# ---------------------------------------------------------------------------------------
# Tableaus. Kvaerno (2004), "Singly diagonally implicit Runge-Kutta methods with an
# explicit first stage", BIT 44: 489-502. All are L-stable and stiffly accurate, with the
# embedded solution an earlier stage at c = 1. Coefficients as functions of gamma from
# the paper (as also transcribed in diffrax's kvaerno3.py / kvaerno4.py).
# ---------------------------------------------------------------------------------------


def _root_near(coeffs, guess):
    """The real root of the polynomial `coeffs` (highest power first) nearest to guess."""
    r = np.roots(coeffs)
    return float(r[np.argmin(np.abs(r - guess))].real)


def stage_predictor(c) -> tuple:
    """Stage predictor (see ESDIRKTableau): the increment z_i - y0 extrapolated in c by the
    polynomial through (0, 0) and the two latest earlier implicit stages at distinct
    nodes; a stage at the node of an earlier one starts from that one's value.

    Stage values, unlike stage derivatives, are smooth in c for stiff components too (they
    sit near the slow manifold): extrapolating the derivatives (diffrax's predictors, or
    z_2 ~ y0 + h c_2 f(y0)) overshoots fast transients, and on ROBER in float32 sent
    Newton to a spurious root (MAX_STEPS; measured)."""
    s = len(c)
    w = np.zeros((s, s))
    for i in range(2, s):
        same = [j for j in range(1, i) if c[j] == c[i]]
        if same:
            w[i, same[-1]] = 1.0
            continue
        nodes: list = []
        for j in reversed(range(1, i)):
            if len(nodes) < 2 and all(c[j] != c[k] for k in nodes):
                nodes.append(j)
        # Lagrange weights at c_i through 0 (value 0) and the chosen nodes
        for j in nodes:
            others = [0.0] + [c[k] for k in nodes if k != j]
            w[i, j] = np.prod([(c[i] - o) / (c[j] - o) for o in others])
    return tuple(map(tuple, w.tolist()))


def _esdirk(name, g, rows, emb, order, error_order, hermite):
    """Tableau from the lower rows of a (diagonal gamma implied) and the embedded stage."""
    s = len(rows) + 1
    a = np.zeros((s, s))
    for i, r in enumerate(rows, start=1):
        a[i, : len(r)] = r
    A = a + np.diag(np.r_[0.0, np.full(s - 1, g)])
    c = A.sum(axis=1)
    c[np.abs(c - 1) < 1e-14] = 1.0  # rounding of the row sums: stages at c = 1 exactly
    # Stage predictor: on scipy's fun_rational, ROBER and VDPOL (float64) it cut Kvaerno5's
    # f evaluations by 30-40% against starting every stage from y0 (see stage_predictor).
    return ESDIRKTableau(name=name, gamma=float(g), a=tuple(map(tuple, a.tolist())), c=tuple(c.tolist()),
                         e=tuple((A[-1] - A[emb]).tolist()), order=order, error_order=error_order,
                         hermite=hermite, predictor=stage_predictor(c))


# Implicit Euler, with the trapezoidal rule as the embedded solution (the estimate is
# h (F_2 - F_1) / 2 = O(h^2), as in diffrax). Linear dense output: a Hermite interpolant
# of a first order solution oscillates (diffrax makes the same choice).
IMPLICIT_EULER_TABLEAU = ESDIRKTableau(name="ImplicitEuler", gamma=1.0, a=((0.0, 0.0), (0.0, 0.0)), c=(0.0, 1.0),
                                       e=(-0.5, 0.5), order=1, error_order=1, hermite=0)


def _kvaerno3_tableau() -> ESDIRKTableau:
    # The 4-stage 3(2) pair; gamma is the root of 6 g^3 - 18 g^2 + 9 g - 1 (L-stability),
    # 0.43586652150845...
    g = _root_near([6, -18, 9, -1], 0.4358665215)
    rows = [
        [g],
        [(-4 * g**2 + 6 * g - 1) / (4 * g), (-2 * g + 1) / (4 * g)],
        [(6 * g - 1) / (12 * g), -1 / ((24 * g - 12) * g), (-6 * g**2 + 6 * g - 1) / (6 * g - 3)],
    ]
    return _esdirk("Kvaerno3", g, rows, emb=2, order=3, error_order=2, hermite=1)


def _kvaerno4_tableau() -> ESDIRKTableau:
    # The 5-stage 4(3) pair advancing with the 4th order last stage; gamma is the root of
    # 24 g^4 - 96 g^3 + 72 g^2 - 16 g + 1 (L-stability), 0.57281606...
    g = _root_near([24, -96, 72, -16, 1], 0.5728160625)
    p = lambda *cs: np.polyval(cs, g)  # noqa: E731
    rows = [
        [g],
        [p(144, -180, 81, -15, 1) * g / p(12, -6, 1) ** 2, p(-36, 39, -15, 2) * g / p(12, -6, 1) ** 2],
        [p(-144, 396, -330, 117, -18, 1) / (12 * g**2 * p(12, -9, 2)),
         p(72, -126, 69, -15, 1) / (12 * g**2 * p(3, -1)),
         p(-6, 6, -1) * p(12, -6, 1) ** 2 / (12 * g**2 * p(12, -9, 2) * p(3, -1))],
        [p(288, -312, 120, -18, 1) / (48 * g**2 * p(12, -9, 2)),
         p(24, -12, 1) / (48 * g**2 * p(3, -1)),
         -p(12, -6, 1) ** 3 / (48 * g**2 * p(3, -1) * p(12, -9, 2) * p(6, -6, 1)),
         p(-24, 36, -12, 1) / p(24, -24, 4)],
    ]
    return _esdirk("Kvaerno4", g, rows, emb=3, order=4, error_order=3, hermite=2)


def _kvaerno5_tableau() -> ESDIRKTableau:
    # The 7-stage 5(4) pair; stage 6 (c = 1) is the embedded order-4 solution. Quintic
    # Hermite dense output (order 5): cubic Hermite (order 3) made its dense points 5x
    # less accurate than its steps at rtol 1e-10.
    rows = [
        [0.26],
        [0.13, 0.84033320996790809],
        [0.22371961478320505, 0.47675532319799699, -0.06470895363112615],
        [0.16648564323248321, 0.10450018841591720, 0.03631482272098715, -0.13090704451073998],
        [0.13855640231268224, 0.0, -0.04245337201752043, 0.02446657898003141, 0.61943039072480676],
        [0.13659751177640291, 0.0, -0.05496908796538376, -0.04118626728321046, 0.62993304899016403,
         0.06962479448202728],
    ]
    return _esdirk("Kvaerno5", 0.26, rows, emb=5, order=5, error_order=4, hermite=2)


KVAERNO3_TABLEAU = _kvaerno3_tableau()
KVAERNO4_TABLEAU = _kvaerno4_tableau()
KVAERNO5_TABLEAU = _kvaerno5_tableau()


def named(tab: ESDIRKTableau, doc: str):
    """A named method: `ESDIRK` with `tab` as its default tableau."""
    return named_method(ESDIRK, tab, doc)


_SHARED = """

Newton settings: newton_rtol, newton_atol, max_newton_iters (see `ESDIRK`). Shapes: y (d,).
Differentiable (reverse and forward mode) w.r.t. y, h, s and args."""

ImplicitEuler = named(IMPLICIT_EULER_TABLEAU, "Implicit (backward) Euler, order 1, L-stable; the "
                      "trapezoidal rule gives the error estimate. Linear dense output." + _SHARED)
Kvaerno3 = named(KVAERNO3_TABLEAU, "Kvaerno3 (Kvaerno 2004): 4-stage ESDIRK 3(2), L-stable, stiffly accurate; "
                 "cubic Hermite dense output." + _SHARED)
Kvaerno4 = named(KVAERNO4_TABLEAU, "Kvaerno4 (Kvaerno 2004): 5-stage ESDIRK 4(3), L-stable, stiffly accurate; "
                 "quintic Hermite dense output." + _SHARED)
Kvaerno5 = named(KVAERNO5_TABLEAU, "Kvaerno5 (Kvaerno 2004): 7-stage ESDIRK 5(4), L-stable, stiffly accurate; "
                 "quintic Hermite dense output (order 5) from y, y' and y'' = J f + df/ds at both ends."
                 + _SHARED)
