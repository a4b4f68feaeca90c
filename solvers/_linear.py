"""The linear algebra of the implicit methods, in one place: how J = df/dy is formed
(dense by d JVPs, from a few coloured JVPs given `jac_sparsity`, or not at all) and how
the Newton matrix W = I - hg J is solved (dense LU, tridiagonal, or matrix-free Krylov
through lineax).

An `AbstractLinearSolve` serves both engines: ESDIRK (simplified Newton with W at the
step start, and the implicit-function-theorem tangent solve at the converged stage)
and Rosenbrock (differentiable solves with W). `as_linear_solve` turns the lineax solver
a user passes as `linear_solver=` into one of them.
"""

from __future__ import annotations

import abc
from typing import Any, Callable, ClassVar, NamedTuple, Optional

import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
from jax.scipy.linalg import lu_factor, lu_solve

from ._jacobian import JacobianPattern


class Linearisation(NamedTuple):
    """f and its derivatives at one point (s, y), as the implicit methods carry them.

    f, ft, jf: (d,) f(s, y), df/ds and J f (y'' = J f + df/ds feeds the dense output).
    jac: the solve's representation of J: (d, d) dense, `Bands`, or () (matrix-free).
    pattern_ok: bool scalar, False when J disagrees with `jac_sparsity` at this point
    (J v by one JVP against the coloured J times v; True without a pattern)."""

    f: Any
    ft: Any
    jf: Any
    jac: Any
    pattern_ok: Any


class Bands(NamedTuple):
    """A tridiagonal matrix: diag (d,), lower (d-1,) (entries (i+1, i)), upper (d-1,)."""

    diag: Any
    lower: Any
    upper: Any


Solve = Callable[[Any], Any]  # r (d,) -> (x (d,), ok: bool scalar)


def _check_vector(d, dtype):
    # A fixed, dense, non-constant vector: J v = J_pattern v only if the pattern covers J.
    return 1 + 0.5 * jnp.sin(1.7 * jnp.arange(d, dtype=dtype) + 0.3)


def _stop(tree):
    return jax.tree_util.tree_map(lambda x: jax.lax.stop_gradient(x) if eqx.is_array(x) else x, tree)


def linearise_dense(f, s, y, args):
    """(f, J (d, d), df/ds) by one linearisation pushed along d + 1 unit tangents."""
    d = y.shape[0]
    s = jnp.asarray(s, y.dtype)
    f0, lin = jax.linearize(lambda s_, y_: f(s_, y_, args), s, y)
    ds = jnp.concatenate([jnp.ones((1,), s.dtype), jnp.zeros((d,), s.dtype)])
    dy = jnp.concatenate([jnp.zeros((1, d), y.dtype), jnp.eye(d, dtype=y.dtype)])
    cols = jax.vmap(lin)(ds, dy)  # (d + 1, d): row 0 is df/ds, rows 1.. are df/dy_j
    return f0, cols[1:].T, cols[0]


def point_derivatives(f, s, y, args):
    """(f, df/ds, J f) at (s, y) from one linearisation pushed along two tangents, without
    forming J: what the dense output and the next step need where J itself is reused."""
    s = jnp.asarray(s, y.dtype)
    f0, lin = jax.linearize(lambda s_, y_: f(s_, y_, args), s, y)
    out = jax.vmap(lin)(jnp.asarray([1, 0], s.dtype), jnp.stack([jnp.zeros_like(y), f0]))
    return f0, out[0], out[1]


def linearise_coloured(f, s, y, args, pattern: JacobianPattern):
    """(f, df/ds, compressed J S (d, n_colours), J v_check) from n_colours + 2 JVPs."""
    d = y.shape[0]
    s = jnp.asarray(s, y.dtype)
    f0, lin = jax.linearize(lambda s_, y_: f(s_, y_, args), s, y)
    k = pattern.n_colours
    ds = jnp.zeros((k + 2,), s.dtype).at[0].set(1)
    dy = jnp.concatenate([jnp.zeros((1, d), y.dtype), jnp.asarray(pattern.seeds(np.float64), y.dtype),
                          _check_vector(d, y.dtype)[None]])
    out = jax.vmap(lin)(ds, dy)
    return f0, out[0], out[1:-1].T, out[-1]


def decompress_dense(B, pattern: JacobianPattern):
    """The dense J (d, d) from the compressed J S (d, n_colours)."""
    r, c = pattern.rows, pattern.cols
    return jnp.zeros((pattern.d, pattern.d), B.dtype).at[r, c].set(B[r, pattern.colour[c]])


def decompress_bands(B, pattern: JacobianPattern) -> Bands:
    """The tridiagonal J from the compressed J S, for a pattern of bandwidth <= 1."""
    i, col = np.arange(pattern.d), pattern.colour
    return Bands(diag=B[i, col], lower=B[i[1:], col[:-1]], upper=B[i[:-1], col[1:]])


def _pattern_ok(jv, jv_pattern, jac_abs_v):
    # Equal up to rounding if the pattern covers J (sqrt(eps) of the size of the terms: the
    # JVP and the coloured product sum the same entries in a different order; a missing
    # entry shows at its own size).
    eps = jnp.finfo(jv.dtype).eps
    tiny = jnp.finfo(jv.dtype).tiny
    return jnp.all(jnp.abs(jv - jv_pattern) <= jnp.sqrt(eps) * (jac_abs_v + jnp.max(jac_abs_v)) + tiny)


def bands_mv(b: Bands, v):
    out = b.diag * v
    return out.at[1:].add(b.lower * v[:-1]).at[:-1].add(b.upper * v[1:])


def _w_bands(b: Bands, hg) -> Bands:
    return Bands(1 - hg * b.diag, -hg * b.lower, -hg * b.upper)


def _tridiagonal_solve(b: Bands, r, throw: bool = False):
    op = lx.TridiagonalLinearOperator(b.diag, b.lower, b.upper)
    sol = lx.linear_solve(op, r, lx.Tridiagonal(), throw=throw)
    return sol.value, (sol.result == lx.RESULTS.successful) & jnp.all(jnp.isfinite(sol.value))


def _compressed_linear(g, b, pattern: JacobianPattern):
    """The compressed matrix of the linear function g (a Newton matrix or its transpose)."""
    seeds = jnp.asarray(pattern.seeds(np.float64), b.dtype)
    return jax.vmap(g)(seeds).T


class AbstractLinearSolve(eqx.Module):
    """How an implicit method forms J and solves with W = I - hg J.

    `linearise` gives the `Linearisation` at (s, y); `solver` the differentiable solve
    with W at the point of `lin` (Rosenbrock stages); `newton_factor` and `newton_solver`
    the solve that only steers ESDIRK's simplified Newton iteration (no gradient), from a
    factorisation ESDIRK may carry over several steps (`carries_factor`);
    `tangent_solver` the solve of the implicit function theorem, g(x) = b for the linear
    g (W at a converged stage, or its transpose). `pattern` is the method's
    `JacobianPattern` or None."""

    #: Whether J and the factorised Newton matrix are data ESDIRK can keep from step to
    #: step (False: the solve works from f at each step's own point, e.g. matrix-free).
    carries_factor: ClassVar[bool] = True

    @abc.abstractmethod
    def linearise(self, f, s, y, args, pattern: Optional[JacobianPattern]) -> Linearisation:
        """f, df/ds, J f and the solve's representation of J at (s, y)."""

    def jacobian(self, f, s, y, args, pattern: Optional[JacobianPattern]):
        """(jac, pattern_ok): the solve's representation of J at (s, y) and its pattern
        check, alone (ESDIRK forms it only when it does not reuse an earlier one)."""
        lin = self.linearise(f, s, y, args, pattern)
        return lin.jac, lin.pattern_ok

    @abc.abstractmethod
    def solver(self, f, s, y, args, lin: Linearisation, hg, pattern) -> Solve:
        """r -> ((I - hg J(s, y))^-1 r, ok), differentiable."""

    @abc.abstractmethod
    def newton_factor(self, jac, hg) -> Any:
        """W = I - hg J (J: `jac`, the solve's representation) prepared for repeated
        solves: a PyTree of arrays without gradient."""

    @abc.abstractmethod
    def newton_solver(self, factor, f, s, y, args, hg, pattern) -> Solve:
        """r -> (W^-1 r, ok) from `newton_factor`'s output (f, s, y, args, hg: the step's
        own, for a solve that does not carry a factor)."""

    @abc.abstractmethod
    def tangent_solver(self, f, s, y, args, lin: Linearisation, hg, pattern) -> Callable:
        """(g, b) -> x with g(x) = b, for `jax.lax.custom_root` (g ~ I - hg J)."""

    def check(self, pattern: Optional[JacobianPattern], name: str) -> None:
        """Construction-time checks of the pattern against this solve (ValueError)."""

    def setup_counts(self) -> tuple:
        """(f evaluations, Jacobians) that setting up `solver` or `newton_solver` at a
        step's point makes, for the solve's statistics (matrix-free: its linearisation of
        f, and the preconditioner's)."""
        return 0, 0

    def augmented(self) -> "AbstractLinearSolve":
        """The solve for BacksolveAdjoint's augmented system (no pattern applies to it)."""
        return self


class DenseLinearSolve(AbstractLinearSolve):
    """Dense J and LU of W (the default; `lineax.LU()` maps here). J from d JVPs, or from
    n_colours JVPs with `jac_sparsity`. Memory d^2, time d^3 / 3 per factorisation."""

    def linearise(self, f, s, y, args, pattern):
        if pattern is None:
            f0, J, ft = linearise_dense(f, s, y, args)
            return Linearisation(f0, ft, J @ f0, J, jnp.asarray(True))
        f0, ft, B, jv = linearise_coloured(f, s, y, args, pattern)
        J = decompress_dense(B, pattern)
        v = _check_vector(y.shape[0], y.dtype)
        return Linearisation(f0, ft, J @ f0, J, _pattern_ok(jv, J @ v, jnp.abs(J) @ v))

    def solver(self, f, s, y, args, lin, hg, pattern):
        J = lin.jac
        lu = lu_factor(jnp.eye(J.shape[0], dtype=J.dtype) - hg * J)
        return lambda r: (lu_solve(lu, r), jnp.asarray(True))

    def newton_factor(self, jac, hg):
        return newton_matrix(jac, hg)

    def newton_solver(self, factor, f, s, y, args, hg, pattern):
        ok = jnp.asarray(True)
        if y.shape[0] <= _INVERSE_MAX_DIM:  # the inverse (see newton_matrix)
            return lambda r: (factor @ r, ok)
        return lambda r: (lu_solve(factor, r), ok)

    def tangent_solver(self, f, s, y, args, lin, hg, pattern):
        def solve(g, b):
            # g is the residual linearised at z*: g(v) = v - hg J(z*) v. Materialise, solve.
            A = jax.jacfwd(g)(b) if pattern is None else decompress_dense(_compressed_linear(g, b, pattern), pattern)
            return jnp.linalg.solve(A, b)

        return solve


_INVERSE_MAX_DIM = 64  # up to this state size, Newton applies (I - h gamma J)^-1 as a matrix


def newton_matrix(J, hg):
    """The factorised W = I - hg J for the simplified Newton iteration, J (d, d): the LU
    (lu, pivots), or for small systems the inverse (d, d) built once from it.

    Reused by every Newton iteration of every stage (and by later steps, see ESDIRK's
    jac_reuse). It only steers the iteration (not the converged result), so it carries
    no gradient. The explicit inverse: inside XLA's while loop on CPU, two
    triangular-solve calls per Newton iteration cost several times more than one small
    matvec (measured 7x on ROBER). Accuracy is unaffected: the residual is exact, the
    matrix only sets the contraction rate. (A singular W gives inf/NaN, which Newton
    reports as a failure.)"""
    d = J.shape[0]
    lu = jax.lax.stop_gradient(lu_factor(jnp.eye(d, dtype=J.dtype) - hg * J))
    if d <= _INVERSE_MAX_DIM:
        return lu_solve(lu, jnp.eye(d, dtype=J.dtype))
    return lu


class TridiagonalLinearSolve(AbstractLinearSolve):
    """Tridiagonal J (from 3 coloured JVPs) and W solved by `lineax.Tridiagonal`
    (LAPACK gtsv): memory and time O(d). `jac_sparsity` may narrow the pattern; without
    one J is taken to be tridiagonal, and checked at every Jacobian (Status.JAC_SPARSITY
    when it is not). `lineax.Tridiagonal()` maps here."""

    def check(self, pattern, name):
        if pattern is not None and pattern.bandwidth > 1:
            raise ValueError(f"{name}: linear_solver=lineax.Tridiagonal() needs a tridiagonal jac_sparsity, got one "
                             f"of bandwidth {pattern.bandwidth}: use the default dense LU or a matrix-free "
                             f"lineax.GMRES for wider patterns")

    def _pattern(self, pattern, d):
        return pattern if pattern is not None else JacobianPattern.tridiagonal(d)

    def linearise(self, f, s, y, args, pattern):
        pattern = self._pattern(pattern, y.shape[0])
        f0, ft, B, jv = linearise_coloured(f, s, y, args, pattern)
        b = decompress_bands(B, pattern)
        v = _check_vector(y.shape[0], y.dtype)
        b_abs = Bands(*(jnp.abs(x) for x in b))
        return Linearisation(f0, ft, bands_mv(b, f0), b, _pattern_ok(jv, bands_mv(b, v), bands_mv(b_abs, v)))

    def solver(self, f, s, y, args, lin, hg, pattern):
        w = _w_bands(lin.jac, hg)
        return lambda r: _tridiagonal_solve(w, r)

    def newton_factor(self, jac, hg):
        return _stop(_w_bands(jac, hg))  # gtsv factorises as it solves: O(d) per solve

    def newton_solver(self, factor, f, s, y, args, hg, pattern):
        return lambda r: _tridiagonal_solve(factor, r)

    def tangent_solver(self, f, s, y, args, lin, hg, pattern):
        def solve(g, b):
            p = self._pattern(pattern, b.shape[0])
            # lineax raises (throw=True) if the solve failed: there is no status to carry here
            return _tridiagonal_solve(decompress_bands(_compressed_linear(g, b, p), p), b, throw=True)[0]

        return solve

    def augmented(self):
        return DenseLinearSolve()


class AbstractPreconditioner(eqx.Module):
    """An approximate inverse of W = I - hg J(s, y) for the Krylov solves of
    `MatrixFreeLinearSolve`, formed once per step."""

    @abc.abstractmethod
    def operator(self, f, s, y, args, hg, pattern) -> lx.AbstractLinearOperator:
        """A lineax operator P ~ W^-1 on (d,) vectors."""

    def check(self, pattern: Optional[JacobianPattern], name: str) -> None:
        """Construction-time checks (ValueError)."""

    def setup_counts(self) -> tuple:
        """(f evaluations, Jacobians) that forming the operator makes."""
        return 0, 0


class TridiagonalPreconditioner(AbstractPreconditioner):
    """P = (tridiagonal part of W)^-1, with J's tridiagonal part from its coloured JVPs
    (needs `jac_sparsity`): for 1-D problems the exact inverse, for 2-D ones on a
    row-major grid the line relaxation along rows."""

    def check(self, pattern, name):
        if pattern is None:
            raise ValueError(f"{name}: TridiagonalPreconditioner needs jac_sparsity= on the method (it builds "
                             f"the tridiagonal part of J from the coloured Jacobian)")

    def setup_counts(self):
        return 1, 1  # one coloured linearisation: f and the tridiagonal part of J

    def operator(self, f, s, y, args, hg, pattern):
        self.check(pattern, "TridiagonalPreconditioner")
        _, _, B, _ = linearise_coloured(f, s, y, args, pattern)
        b = decompress_bands(B, pattern)
        # Entries (i + 1, i) outside the (symmetrised) pattern hold other columns' sums: 0.
        sub = np.zeros(pattern.d - 1, bool)
        on = pattern.rows == pattern.cols + 1
        sub[pattern.cols[on]] = True
        b = Bands(b.diag, jnp.where(sub, b.lower, 0), jnp.where(sub, b.upper, 0))
        w = _stop(_w_bands(b, hg))
        struct = jax.ShapeDtypeStruct(y.shape, y.dtype)
        return lx.FunctionLinearOperator(lambda v: _tridiagonal_solve(w, v)[0], struct)


def _w_operator(f, s, y, args, hg):
    """W = I - hg J(s, y) as a lineax operator, J v by the linearisation of f at (s, y)."""
    _, lin = jax.linearize(lambda y_: f(s, y_, args), y)
    return lx.FunctionLinearOperator(lambda v: v - hg * lin(v), jax.ShapeDtypeStruct(y.shape, y.dtype))


class MatrixFreeLinearSolve(AbstractLinearSolve):
    """W solved by a lineax Krylov solver (GMRES, BiCGStab) from J v products only (one
    JVP each): no J is formed or stored. `lineax.GMRES(...)` and `lineax.BiCGStab(...)`
    map here; pass this class directly to add a `preconditioner`.

    A Krylov solve that does not converge (lineax's result code) stops the solve with
    Status.LINEAR_SOLVE_FAIL; in the gradient's tangent solve it raises (lineax, throw).
    """

    solver_: lx.AbstractLinearSolver
    preconditioner: Optional[AbstractPreconditioner] = None

    carries_factor: ClassVar[bool] = False  # W v is a JVP at each step's own point

    def check(self, pattern, name):
        if self.preconditioner is not None:
            self.preconditioner.check(pattern, name)
        elif pattern is not None:
            raise ValueError(f"{name}: jac_sparsity is not used by a matrix-free linear_solver without a "
                             f"preconditioner (it needs only J v products): drop it, or pass "
                             f"solvers.MatrixFreeLinearSolve(solver, solvers.TridiagonalPreconditioner())")

    def setup_counts(self):
        f_evals, jacs = (0, 0) if self.preconditioner is None else self.preconditioner.setup_counts()
        return 1 + f_evals, jacs  # the linearisation of f behind W v

    def _options(self, f, s, y, args, hg, pattern):
        if self.preconditioner is None:
            return {}
        return {"preconditioner": self.preconditioner.operator(f, s, y, args, hg, pattern)}

    def linearise(self, f, s, y, args, pattern):
        f0, ft, jf = point_derivatives(f, s, y, args)
        return Linearisation(f0, ft, jf, (), jnp.asarray(True))

    def jacobian(self, f, s, y, args, pattern):
        return (), jnp.asarray(True)  # nothing to form (carries_factor is False)

    def newton_factor(self, jac, hg):
        return ()

    def newton_solver(self, factor, f, s, y, args, hg, pattern):
        s, y, args, hg = _stop((s, y, args, hg))
        return self.solver(f, s, y, args, None, hg, pattern)

    def solver(self, f, s, y, args, lin, hg, pattern):
        op = _w_operator(f, s, y, args, hg)
        options = self._options(f, s, y, args, hg, pattern)

        def solve(r):
            sol = lx.linear_solve(op, r, self.solver_, options=options, throw=False)
            return sol.value, (sol.result == lx.RESULTS.successful) & jnp.all(jnp.isfinite(sol.value))

        return solve

    def tangent_solver(self, f, s, y, args, lin, hg, pattern):
        def solve(g, b):
            # The preconditioner is formed here, only when a derivative is taken.
            options = self._options(*_stop((f, s, y, args, hg)), pattern)
            op = lx.FunctionLinearOperator(g, jax.ShapeDtypeStruct(b.shape, b.dtype))
            # g may be W at the stage or its transpose (custom_root transposes it for
            # reverse mode); the step's preconditioner serves both (it only steers GMRES).
            return lx.linear_solve(op, b, self.solver_, options=options, throw=True).value

        return solve


def as_linear_solve(x) -> AbstractLinearSolve:
    """The converter of `linear_solver=`: an AbstractLinearSolve as it is; lineax.LU ->
    dense; lineax.Tridiagonal -> tridiagonal; lineax.GMRES / BiCGStab -> matrix-free."""
    if isinstance(x, AbstractLinearSolve):
        return x
    if isinstance(x, lx.LU):
        return DenseLinearSolve()
    if isinstance(x, lx.Tridiagonal):
        return TridiagonalLinearSolve()
    if isinstance(x, (lx.GMRES, lx.BiCGStab)):
        return MatrixFreeLinearSolve(x)
    raise TypeError(f"linear_solver must be lineax.LU(), lineax.Tridiagonal(), lineax.GMRES(...), "
                    f"lineax.BiCGStab(...) or a solvers.AbstractLinearSolve, got {type(x).__name__}")
