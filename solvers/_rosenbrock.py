"""Rosenbrock methods: the engine `Rosenbrock(tableau)` and its tableaus (Rodas5P,
Rosenbrock23).

A Rosenbrock step is linearly implicit: a fixed sequence of f evaluations, one
factorisation of I - h gamma J (dense LU by default; tridiagonal or matrix-free Krylov
solves through `_linear.py`) and one solve per stage, all differentiable by JAX directly
(w.r.t. y, h, s and args, reverse and forward mode; J brings in second derivatives of f,
which JAX provides). No Newton iteration, so no convergence failures (a Krylov solve
that does not converge is reported: Status.LINEAR_SOLVE_FAIL).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Optional

import equinox as eqx
import jax.numpy as jnp
import numpy as np

from ._base import AbstractTableauMethod, StepResult, named_method
from ._esdirk import check_pattern_size, failure_code
from ._jacobian import JacobianPattern, to_pattern
from ._linear import AbstractLinearSolve, DenseLinearSolve, as_linear_solve
from ._newton import all_finite, huge


def _lower(name, field, m, shape):
    if m.shape != shape or np.any(np.triu(m) != 0):
        raise ValueError(f"{name}: {field} must be {shape} strictly lower triangular, got shape {m.shape}")


@dataclasses.dataclass(frozen=True)
class RosenbrockTableau:
    """A Rosenbrock method in the transformed form of Hairer & Wanner (IV.7.25).

    With W = I - h gamma J (J = df/dy at the step start), the stages are

        W k_i = h gamma f(s + c_i h, y0 + sum_j a_ij k_j)
                + h^2 gamma d_i df/ds + gamma sum_j C_ij k_j          (j < i)

    and y1 = y0 + sum_i b_i k_i, the embedded error y_err = sum_i e_i k_i.
    (This is the usual form multiplied through by h gamma, so that no 1/h appears.)
    Dense output, theta in [0, 1], with K_r = sum_i H_ri k_i (r = 1..R):

        y(theta) = (1 - theta) y0 + theta (y1 + (1 - theta) (K_1 + theta (K_2 + ... theta K_R)))

    Fields are tuples (hashable, so methods stay static): a, C (s, s) strictly lower
    triangular; b, e, c, d (s,); H (R, s), R >= 0 (R = 0: linear interpolation).
    `order` is the order of y1, `error_order` that of the estimate's leading term minus
    one (the estimate is O(h^(error_order + 1))). Checked on construction (ValueError).
    """

    name: str
    gamma: float
    a: tuple
    C: tuple
    b: tuple
    e: tuple
    c: tuple
    d: tuple
    H: tuple
    order: int
    error_order: int

    def __post_init__(self):
        n = self.name
        if not (isinstance(self.gamma, float) and self.gamma > 0):
            raise ValueError(f"{n}: gamma must be a positive float, got {self.gamma!r}")
        a, C = np.array(self.a, float), np.array(self.C, float)
        s = len(self.b)
        _lower(n, "a", a, (s, s))
        _lower(n, "C", C, (s, s))
        for field in ("e", "c", "d"):
            if len(getattr(self, field)) != s:
                raise ValueError(f"{n}: {field} must have {s} entries (one per stage), like b")
        H = np.array(self.H, float).reshape(-1, s) if len(self.H) else np.zeros((0, s))
        if H.shape[1] != s:
            raise ValueError(f"{n}: H must be (R, {s})")
        if not 1 <= self.error_order <= self.order:
            raise ValueError(f"{n}: need 1 <= error_order <= order, got {self.error_order}, {self.order}")
        # On y' = lambda y (z = h lambda) a step gives y1 = R(z) y0 and the estimate
        # E(z) y0: R(z) - exp(z) must be O(z^(order + 1)) and E(z) O(z^(error_order + 1)),
        # seen as the drop between z = 1e-2 and 1e-3 (or values at rounding level). A cheap
        # check of every coefficient that enters a linear autonomous problem.
        for sign in (1.0, -1.0):
            (R1, E1), (R2, E2) = self._scalar_step(sign * 1e-2), self._scalar_step(sign * 1e-3)
            for what, p, e1, e2 in (("order", self.order, R1 - math.exp(sign * 1e-2), R2 - math.exp(sign * 1e-3)),
                                    ("error_order", self.error_order, E1, E2)):
                if abs(e2) > 1e-15 and not abs(e1) > 10 ** (p + 0.5) * abs(e2):
                    raise ValueError(f"{n}: the coefficients are not of {what} {p} (on y' = lambda y, "
                                     f"{e1:.1e} at z = {sign * 1e-2}, {e2:.1e} at z = {sign * 1e-3})")

    def _scalar_step(self, z: float):
        """(R(z), E(z)): y1 and the error estimate of one step of y' = lambda y from y0 = 1,
        z = h lambda, in plain floats (for checks)."""
        a, C = np.array(self.a), np.array(self.C)
        k = np.zeros(len(self.b))
        for i in range(len(k)):
            rhs = self.gamma * z * (1 + a[i, :i] @ k[:i]) + self.gamma * (C[i, :i] @ k[:i])
            k[i] = rhs / (1 - self.gamma * z)
        return 1 + float(np.array(self.b) @ k), float(np.array(self.e) @ k)

    def stability(self, z: float) -> float:
        """R(z): one step of y' = lambda y from y0 = 1 (z = h lambda)."""
        return self._scalar_step(z)[0]


def _comb(w, ks):
    """sum_i w_i ks_i, skipping zero weights (Python floats keep float32 states float32)."""
    terms = [float(wi) * k for wi, k in zip(w, ks) if wi != 0.0]
    return sum(terms[1:], terms[0]) if terms else jnp.zeros_like(ks[0])


def rosenbrock_step(tab: RosenbrockTableau, f, s, y, h, args, linear: AbstractLinearSolve,
                    pattern: Optional[JacobianPattern]):
    """One Rosenbrock step (see RosenbrockTableau). Returns (y1, y_err, dense, ok, fail)
    (fail: a StepResult.fail code)."""
    lin = linear.linearise(f, s, y, args, pattern)
    f0, ft = lin.f, lin.ft
    hg = h * tab.gamma
    solve_w = linear.solver(f, s, y, args, lin, hg, pattern)
    lin_ok = jnp.asarray(True)
    ks: list = []
    for i in range(len(tab.b)):
        fi = f0 if i == 0 else f(s + tab.c[i] * h, y + _comb(tab.a[i][:i], ks), args)
        rhs = hg * fi
        if tab.d[i] != 0.0:
            rhs = rhs + (hg * h * tab.d[i]) * ft
        if i > 0 and any(tab.C[i][:i]):
            rhs = rhs + tab.gamma * _comb(tab.C[i][:i], ks)
        k, ok = solve_w(rhs)
        ks.append(k)
        lin_ok = lin_ok & ok
    y1 = y + _comb(tab.b, ks)
    y_err = _comb(tab.e, ks)
    dense = (y, y1) + tuple(_comb(row, ks) for row in tab.H)
    fail = failure_code(lin_ok, lin.pattern_ok)
    return y1, y_err, dense, all_finite(y1, y_err) & (fail == 0), fail


class Rosenbrock(AbstractTableauMethod):
    """A Rosenbrock method given by a `RosenbrockTableau`: `Rosenbrock(tableau)` is the
    engine Rodas5P and Rosenbrock23 are built on.

    Per step: one f linearisation (f, df/dy and df/ds by forward-mode autodiff), one
    factorisation of I - h gamma J, s - 1 further f evaluations and s solves. `ok` is
    False only if the step produced inf/NaN. No state between steps.

    `linear_solver`: dense LU (default), `lineax.Tridiagonal()`, or matrix-free
    `lineax.GMRES(...)` / `lineax.BiCGStab(...)` (J v products only; a Krylov solve that
    does not converge ends the solve with Status.LINEAR_SOLVE_FAIL). `jac_sparsity`:
    optional (d, d) boolean pattern of J, built from coloured JVPs and checked at every
    Jacobian (Status.JAC_SPARSITY).

    Shapes: y (d,), s and h scalars. Differentiable (reverse and forward mode) w.r.t.
    y, h, s and args.
    """

    tableau: RosenbrockTableau = eqx.field(static=True)
    linear_solver: AbstractLinearSolve = eqx.field(default=DenseLinearSolve(), static=True,
                                                   converter=as_linear_solve)
    jac_sparsity: Optional[JacobianPattern] = eqx.field(default=None, static=True, converter=to_pattern)

    def __check_init__(self):
        if not isinstance(self.tableau, RosenbrockTableau):
            raise TypeError(f"Rosenbrock(tableau) takes a solvers.RosenbrockTableau, got "
                            f"{type(self.tableau).__name__}")
        self.linear_solver.check(self.jac_sparsity, type(self).__name__)

    def specialize(self, y0):
        check_pattern_size(self, y0)
        return self

    def backsolve_method(self):
        # BacksolveAdjoint's augmented system is larger than y: no pattern applies to it.
        return dataclasses.replace(self, linear_solver=self.linear_solver.augmented(), jac_sparsity=None)

    def init(self, f, s, y, args):
        return ()  # no state carried between steps (no FSAL)

    def step(self, f, s, y, h, args, state):
        y1, y_err, dense, ok, fail = rosenbrock_step(self.tableau, f, s, y, h, args, self.linear_solver,
                                                     self.jac_sparsity)
        y_err = jnp.where(ok, y_err, huge(y))
        # f evaluations: one per stage and the linear solve's set-up (matrix-free: its
        # linearisation of f); Jacobians: one, unless the solve forms none.
        ls = self.linear_solver
        setup_f, setup_jacs = ls.setup_counts()
        return StepResult(y1=y1, y_err=y_err, dense=dense, state=(), ok=ok,
                          n_f=len(self.tableau.b) + setup_f, n_jac=int(ls.carries_factor) + setup_jacs, fail=fail)

    def interpolate(self, dense, h, theta):
        y0, y1, *K = dense
        inner = jnp.zeros_like(y0)
        for k in reversed(K):  # Horner: K_1 + theta (K_2 + theta (...))
            inner = k + theta * inner
        return (1 - theta) * y0 + theta * (y1 + (1 - theta) * inner)


def _tup(m):
    return tuple(tuple(float(x) for x in r) for r in m)


def _rodas5p_tableau() -> RosenbrockTableau:
    # Rodas5P, Steinebach (2023), "Construction of Rosenbrock-Wanner method Rodas5P and
    # numerical benchmarks within the Julia Differential Equations package", BIT 63:27.
    # Coefficients in the transformed variables as published with OrdinaryDiffEq.jl
    # (A = alpha Gamma^-1, C = diag(1/gamma) - Gamma^-1). The last three stages all sit at
    # c = 1 and each adds one stage to the previous one (a_8j = a_6j + a_76 + a_87 ...), so
    # y1 = y0 + sum_j a_6j k_j + k_6 + k_7 + k_8 and the order-4 embedded solution
    # drops k_8: the error estimate is k_8.
    g = 0.21193756319429014
    a6 = [-7.502846399306121, 2.561846144803919, -11.627539656261098,
          -0.18268767659942256, 0.030198172008377946]
    a = [
        [0.0] * 8,
        [3.0] + [0.0] * 7,
        [2.849394379747939, 0.45842242204463923] + [0.0] * 6,
        [-6.954028509809101, 2.489845061869568, -10.358996098473584] + [0.0] * 5,
        [2.8029986275628964, 0.5072464736228206, -0.3988312541770524,
         -0.04721187230404641] + [0.0] * 4,
        a6 + [0.0] * 3,
        a6 + [1.0, 0.0, 0.0],
        a6 + [1.0, 1.0, 0.0],
    ]
    C = [
        [0.0] * 8,
        [-14.155112264123755] + [0.0] * 7,
        [-17.97296035885952, -2.859693295451294] + [0.0] * 6,
        [147.12150275711716, -1.41221402718213, 71.68940251302358] + [0.0] * 5,
        [165.43517024871676, -0.4592823456491126, 42.90938336958603,
         -5.961986721573306] + [0.0] * 4,
        [24.854864614690072, -3.0009227002832186, 47.4931110020768,
         5.5814197821558125, -0.6610691825249471] + [0.0] * 3,
        [30.91273214028599, -3.1208243349937974, 77.79954646070892,
         34.28646028294783, -19.097331116725623, -28.087943162872662, 0.0, 0.0],
        [37.80277123390563, -3.2571969029072276, 112.26918849496327,
         66.9347231244047, -40.06618937091002, -54.66780262877968,
         -9.48861652309627, 0.0],
    ]
    c = [0.0, 0.6358126895828704, 0.4095798393397535, 0.9769306725060716,
         0.4288403609558664, 1.0, 1.0, 1.0]
    d = [0.21193756319429014, -0.42387512638858027, -0.3384627126235924,
         1.8046452872882734, 2.325825639765069, 0.0, 0.0, 0.0]
    H = [
        [25.948786856663858, -2.5579724845846235, 10.433815404888879,
         -2.3679251022685204, 0.524948541321073, 1.1241088310450404,
         0.4272876194431874, -0.17202221070155493],
        [-9.91568850695171, -0.9689944594115154, 3.0438037242978453,
         -24.495224566215796, 20.176138334709044, 15.98066361424651,
         -6.789040303419874, -6.710236069923372],
        [11.419903575922262, 2.8879645146136994, 72.92137995996029,
         80.12511834622643, -52.072871366152654, -59.78993625266729,
         -0.15582684282751913, 4.883087185713722],
    ]
    b = a6 + [1.0, 1.0, 1.0]
    e = [0.0] * 7 + [1.0]
    return RosenbrockTableau(name="Rodas5P", gamma=g, a=_tup(a), C=_tup(C), b=tuple(b), e=tuple(e),
                             c=tuple(c), d=tuple(d), H=_tup(H), order=5, error_order=4)


def _rosenbrock23_tableau() -> RosenbrockTableau:
    # Shampine & Reichelt (1997), "The MATLAB ODE suite", SIAM J. Sci. Comput. 18: ode23s,
    # the L-stable modified Rosenbrock (W-) pair of order 2 with a 3rd order error
    # estimate, d = 1 / (2 + sqrt 2), e32 = 6 + sqrt 2 (also Julia's Rosenbrock23). In
    # slopes, with W = I - h d J and T = df/dt:
    #     k1 = W^-1 (F0 + h d T),  F1 = f(t + h/2, y + h k1 / 2),
    #     k2 = W^-1 (F1 - k1) + k1,  y1 = y + h k2,  F2 = f(t + h, y1),
    #     k3 = W^-1 (F2 - e32 (k2 - F1) - 2 (k1 - F0) + h d T),  err = h (k1 - 2 k2 + k3) / 6,
    #     y(t + theta h) = y + h (theta (1 - theta) k1 + theta (theta - 2 d) k2) / (1 - 2 d).
    # Rewritten here (our own derivation) in the transformed variables of the tableau:
    # K1 = d h k1, K2 = d h (k2 - k1), K3 = d h (k3 - e32 (k2 - k1) - 2 k1) (F0 and F1 are
    # eliminated with the stage equations), which gives the coefficients below.
    g = 1.0 / (2.0 + math.sqrt(2.0))
    e32 = 6.0 + math.sqrt(2.0)
    a = [[0, 0, 0], [0.5 / g, 0, 0], [1 / g, 1 / g, 0]]
    C = [[0, 0, 0], [-1 / g, 0, 0], [-2 / g, -e32 / g, 0]]
    b = (1 / g, 1 / g, 0.0)
    e = (1 / (6 * g), (e32 - 2) / (6 * g), 1 / (6 * g))
    H = [[0.0, -1 / (g * (1 - 2 * g)), 0.0]]
    return RosenbrockTableau(name="Rosenbrock23", gamma=g, a=_tup(a), C=_tup(C), b=b, e=e,
                             c=(0.0, 0.5, 1.0), d=(g, 0.0, -g), H=_tup(H), order=2, error_order=2)


RODAS5P_TABLEAU = _rodas5p_tableau()
ROSENBROCK23_TABLEAU = _rosenbrock23_tableau()


def named(tab: RosenbrockTableau, doc: str):
    """A named method: `Rosenbrock` with `tab` as its default tableau."""
    return named_method(Rosenbrock, tab, doc)


Rodas5P = named(RODAS5P_TABLEAU, """Rodas5P (Steinebach 2023): 8-stage stiffly accurate Rosenbrock method, order 5,
embedded order 4, L-stable, with a 4th-order continuous extension.

Per step: one f linearisation, one LU of I - h gamma J (d x d), 7 further f evaluations
and 8 solves. Suited to stiff problems of small to moderate dimension d (the Jacobian
is dense). Differentiable (reverse and forward mode) w.r.t. y, h, s and args.""")

Rosenbrock23 = named(ROSENBROCK23_TABLEAU, """Rosenbrock23: Shampine & Reichelt's ode23s pair (MATLAB ode23s,
Julia's Rosenbrock23): order 2 with a 3rd order error estimate, L-stable, quadratic
dense output. 3 f evaluations, one Jacobian and one LU per step: for stiff problems at
loose tolerances (rtol ~1e-2..1e-5). Differentiable like Rodas5P.""")
