"""What the stiff methods share: the simplified Newton iteration of one implicit stage
(differentiated by the implicit function theorem). The linear algebra (J and the Newton
matrix) is in `_linear.py`."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ._base import rms


def huge(y):
    """A finite but enormous error estimate: a failed step must be rejected, not NaN."""
    return jnp.full_like(y, jnp.sqrt(jnp.finfo(y.dtype).max))


def all_finite(*xs):
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in xs]))


# A contraction rate carried over from an earlier stage is trusted down to this value.
# Smaller carried rates (a stage that happened to converge fast) saved more f evaluations
# but let BacksolveAdjoint's augmented system, linear in the adjoint and nonlinear in y,
# accept unconverged stages: its gradient was 4e-3 off instead of 1e-5 (Kvaerno5, VdP).
_RATE_FLOOR = 0.1


def _newton_iteration(solve_M, scale, max_iters, y0, rate0, min_iters):
    """The primal simplified Newton iteration, as custom_root's `solve(residual, z0)`."""

    def newton(residual, z0):
        eps = jnp.finfo(z0.dtype).eps

        def cond(c):
            k, z, nd_prev, rate, done, failed, lin_ok = c
            return (~done) & (~failed) & (k < max_iters)

        def body(c):
            k, z, nd_prev, rate, done, failed, lin_ok = c
            dz, ok = solve_M(residual(z))
            dz = -dz
            z = z + dz
            nd = rms(dz / scale)
            # (nd_prev = 0: the previous correction was exact, so is this one)
            theta = jnp.where(k == 0, jnp.maximum(rate, _RATE_FLOOR),
                              jnp.where(nd_prev > 0, nd / jnp.where(nd_prev > 0, nd_prev, 1), 0))
            # First iteration: the contraction rate of an earlier stage of this step if
            # there is one (rate0 < 1; Hairer & Wanner's RADAU5 carries it over steps),
            # else no rate yet: ask for |dz| <= 1 outright.
            est = jnp.where(theta < 1, theta / jnp.maximum(1 - theta, eps) * nd, nd)
            # Stalled at rounding level (corrections no larger than a few ulps of the
            # largest component and no longer shrinking): as converged as it will get.
            # (Per component instead, ROBER with a reused J never converged its y2 ~ 1e-13:
            # the rounding of f's cancelling terms, times h gamma, is far above y2's ulps.)
            tiny = jnp.max(jnp.abs(dz), initial=0) <= 64 * eps * jnp.max(jnp.abs(y0 + z), initial=0)  # d = 0 too
            stalled = (k > 0) & (theta > 0.5) & tiny
            done = (((est <= 1.0) & ((k == 0) | (theta < 1))) | stalled) & (k + 1 >= min_iters)
            # A linear solve that did not converge fails the iteration (its dz is not a
            # Newton correction; the caller reports it as such, not as divergence).
            failed = ~jnp.isfinite(nd) | ((k > 0) & (theta >= 1) & ~done) | ~ok
            done = done & ok
            return k + 1, z, nd, jnp.where(k > 0, theta, rate), done, failed, lin_ok & ok

        init = (0, z0, jnp.asarray(jnp.inf, z0.dtype), jnp.asarray(rate0, z0.dtype), jnp.asarray(False),
                jnp.asarray(False), jnp.asarray(True))
        k, z, _, rate, done, failed, lin_ok = jax.lax.while_loop(cond, body, init)
        # The flags and the iteration count travel as floats: custom_root gives bool/int aux
        # outputs a bool/int tangent, which JAX's custom_jvp then rejects (it wants float0).
        return z, jnp.stack([(done & ~failed).astype(z.dtype), jnp.asarray(k, z.dtype), rate,
                             lin_ok.astype(z.dtype)])

    return newton


def newton_stage(f, t, y0, psi, hg, args, Z0, solve_M, tangent_solve, scale, max_iters, rate0=1.0, min_iters=1):
    """Solve Z = psi + hg f(t, y0 + Z, args) for the stage increment Z (d,) from the guess
    Z0; returns (Z, converged, number of iterations: one f evaluation each, contraction
    rate: the last one measured, else rate0; 1 means unknown, linear_ok: False when a
    linear solve did not converge).

    Primal: simplified Newton with the step's fixed matrix (`solve_M`: r -> (W^-1 r, ok),
    see `_linear.AbstractLinearSolve.solver`). It stops when the estimated remaining error, rms(err / scale), is at
    most 1 (estimated from the contraction rate theta as theta / (1 - theta) |dz|, Hairer
    & Wanner IV.8) or when it stalls at rounding level; it fails on divergence
    (theta >= 1), inf/NaN or `max_iters` iterations.

    Derivatives (w.r.t. y0, psi, hg, t, args) by the implicit function theorem via
    `jax.lax.custom_root`: the tangent system (solved by `tangent_solve(g, b)`, the
    method's linear solve) uses the exact Jacobian at the solution,
    I - hg df/dy(y0 + Z*), so gradients are exact for the converged stage and independent
    of the iteration (of its start Z0 and of the approximate J in `solve_M`).
    """

    def residual(Z):
        return Z - psi - hg * f(t, y0 + Z, args)

    newton = _newton_iteration(solve_M, scale, max_iters, y0, jax.lax.stop_gradient(rate0), min_iters)
    Z, aux = jax.lax.custom_root(residual, jax.lax.stop_gradient(Z0), newton, tangent_solve, has_aux=True)
    aux = jax.lax.stop_gradient(aux)
    return Z, aux[0] > 0.5, aux[1].astype(jnp.int32), aux[2], aux[3] > 0.5
