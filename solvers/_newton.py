"""What the stiff methods share: the linearisation of f, the Newton matrix, and the
simplified Newton iteration of one implicit stage (differentiated by the implicit
function theorem)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.scipy.linalg import lu_factor, lu_solve

from ._base import rms


def f_jac(f, s, y, args, with_time: bool):
    """f(s, y) (d,), its Jacobian J = df/dy (d, d) and, if `with_time`, df/ds (d,) (else
    None).

    One linearisation of f, pushed along d (+1) unit tangents with vmap: cheaper than
    separate jacfwd calls and it also returns f(s, y) itself. Differentiable (this is
    forward mode; derivatives of J are second derivatives of f)."""
    d = y.shape[0]
    s = jnp.asarray(s, y.dtype)
    if with_time:
        f0, lin = jax.linearize(lambda s_, y_: f(s_, y_, args), s, y)
        ds = jnp.concatenate([jnp.ones((1,), s.dtype), jnp.zeros((d,), s.dtype)])
        dy = jnp.concatenate([jnp.zeros((1, d), y.dtype), jnp.eye(d, dtype=y.dtype)])
        cols = jax.vmap(lin)(ds, dy)  # (d + 1, d): row 0 is df/ds, rows 1.. are df/dy_j
        return f0, cols[1:].T, cols[0]
    f0, lin = jax.linearize(lambda y_: f(s, y_, args), y)
    return f0, jax.vmap(lin)(jnp.eye(d, dtype=y.dtype)).T, None


def huge(y):
    """A finite but enormous error estimate: a failed step must be rejected, not NaN."""
    return jnp.full_like(y, jnp.sqrt(jnp.finfo(y.dtype).max))


def all_finite(*xs):
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in xs]))


_INVERSE_MAX_DIM = 64  # up to this state size, Newton applies (I - h gamma J)^-1 as a matrix


def newton_matrix(J, hg):
    """`solve_M(r) = (I - hg J)^-1 r` for the simplified Newton iteration, J (d, d).

    One LU per step, reused by every Newton iteration of every stage. It only steers the
    iteration (not the converged result), so it carries no gradient. Small systems apply
    it as an explicit inverse built once from the LU: inside XLA's while loop on CPU, two
    triangular-solve calls per Newton iteration cost several times more than one small
    matvec (measured 7x on ROBER). Accuracy is unaffected: the residual is exact, the
    matrix only sets the contraction rate."""
    d = J.shape[0]
    lu = jax.lax.stop_gradient(lu_factor(jnp.eye(d, dtype=J.dtype) - hg * J))
    if d <= _INVERSE_MAX_DIM:
        M_inv = lu_solve(lu, jnp.eye(d, dtype=J.dtype))
        return lambda r: M_inv @ r
    return lambda r: lu_solve(lu, r)


# A contraction rate carried over from an earlier stage is trusted down to this value.
# Smaller carried rates (a stage that happened to converge fast) saved more f evaluations
# but let BacksolveAdjoint's augmented system, linear in the adjoint and nonlinear in y,
# accept unconverged stages: its gradient was 4e-3 off instead of 1e-5 (Kvaerno5, VdP).
_RATE_FLOOR = 0.1


def _newton_iteration(solve_M, scale, max_iters, y0, rate0):
    """The primal simplified Newton iteration, as custom_root's `solve(residual, z0)`."""

    def newton(residual, z0):
        eps = jnp.finfo(z0.dtype).eps

        def cond(c):
            k, z, nd_prev, rate, done, failed = c
            return (~done) & (~failed) & (k < max_iters)

        def body(c):
            k, z, nd_prev, rate, done, failed = c
            dz = -solve_M(residual(z))
            z = z + dz
            nd = rms(dz / scale)
            theta = jnp.where(k == 0, jnp.maximum(rate, _RATE_FLOOR), nd / nd_prev)
            # First iteration: the contraction rate of an earlier stage of this step if
            # there is one (rate0 < 1; Hairer & Wanner's RADAU5 carries it over steps),
            # else no rate yet: ask for |dz| <= 1 outright.
            est = jnp.where(theta < 1, theta / jnp.maximum(1 - theta, eps) * nd, nd)
            # Stalled at rounding level (corrections no larger than a few ulps of the
            # largest component and no longer shrinking): as converged as it will get.
            tiny = jnp.max(jnp.abs(dz)) <= 64 * eps * jnp.max(jnp.abs(y0 + z))
            stalled = (k > 0) & (theta > 0.5) & tiny
            done = ((est <= 1.0) & ((k == 0) | (theta < 1))) | stalled
            failed = ~jnp.isfinite(nd) | ((k > 0) & (theta >= 1) & ~done)
            return k + 1, z, nd, jnp.where(k > 0, theta, rate), done, failed

        init = (0, z0, jnp.asarray(jnp.inf, z0.dtype), jnp.asarray(rate0, z0.dtype), jnp.asarray(False),
                jnp.asarray(False))
        k, z, _, rate, done, failed = jax.lax.while_loop(cond, body, init)
        # The flag and the iteration count travel as floats: custom_root gives bool/int aux
        # outputs a bool/int tangent, which JAX's custom_jvp then rejects (it wants float0).
        return z, jnp.stack([(done & ~failed).astype(z.dtype), jnp.asarray(k, z.dtype), rate])

    return newton


def _tangent_solve(g, b):
    # g is the residual linearised at z*: g(v) = v - hg J(z*) v. Materialise and solve.
    A = jax.jacfwd(g)(b)
    return jnp.linalg.solve(A, b)


def newton_stage(f, t, y0, psi, hg, args, Z0, solve_M, scale, max_iters, rate0=1.0):
    """Solve Z = psi + hg f(t, y0 + Z, args) for the stage increment Z (d,) from the guess
    Z0; returns (Z, converged, number of iterations: one f evaluation each, contraction
    rate: the last one measured, else rate0; 1 means unknown).

    Primal: simplified Newton with the step's fixed matrix (`solve_M`, see
    `newton_matrix`). It stops when the estimated remaining error, rms(err / scale), is at
    most 1 (estimated from the contraction rate theta as theta / (1 - theta) |dz|, Hairer
    & Wanner IV.8) or when it stalls at rounding level; it fails on divergence
    (theta >= 1), inf/NaN or `max_iters` iterations.

    Derivatives (w.r.t. y0, psi, hg, t, args) by the implicit function theorem via
    `jax.lax.custom_root`: the tangent system uses the exact Jacobian at the solution,
    I - hg df/dy(y0 + Z*), so gradients are exact for the converged stage and independent
    of the iteration (of its start Z0 and of the approximate J in `solve_M`).
    """

    def residual(Z):
        return Z - psi - hg * f(t, y0 + Z, args)

    newton = _newton_iteration(solve_M, scale, max_iters, y0, jax.lax.stop_gradient(rate0))
    Z, aux = jax.lax.custom_root(residual, jax.lax.stop_gradient(Z0), newton, _tangent_solve, has_aux=True)
    aux = jax.lax.stop_gradient(aux)
    return Z, aux[0] > 0.5, aux[1].astype(jnp.int32), aux[2]
