"""Small optimisers the ray-tracing examples share: Levenberg-Marquardt on a residual's
forward-mode Jacobian, and Adam on its squared norm. Each returns the path of the
parameters and the losses (sum of squared residuals) along it."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax


def jacobian_and_residual(residual):
    """One compiled function x -> (Jacobian, residual), from forward mode (trial steps
    reuse it: a second compiled function for the residual alone would double the compile)."""
    return jax.jit(jax.jacfwd(lambda x: (residual(x),) * 2, has_aux=True))


def levenberg_marquardt(both, x0, iters, lam=1e-3, tol=1e-12):
    """Minimise sum(residual**2) by Levenberg-Marquardt with Marquardt's diagonal
    scaling; both(x) -> (Jacobian, residual), e.g. `jacobian_and_residual(residual)`."""
    x = jnp.asarray(x0)
    J, r = both(x)
    path, losses = [np.asarray(x)], [float(r @ r)]
    for _ in range(iters):
        J, rn = np.asarray(J), np.asarray(r)
        JtJ, Jtr = J.T @ J, J.T @ rn
        while lam < 1e12:
            step = np.linalg.solve(JtJ + lam * np.diag(np.diag(JtJ)), -Jtr)
            J_new, r_new = both(x + step)
            if float(r_new @ r_new) <= losses[-1]:
                x, r, J, lam = x + step, r_new, J_new, max(lam / 10, 1e-12)
                break
            lam *= 10
        path.append(np.asarray(x))
        losses.append(float(r @ r))
        if np.linalg.norm(step) < tol * (1 + np.linalg.norm(x)) or losses[-1] == 0.0:
            break
    return np.asarray(path), np.asarray(losses)


def adam(residual, x0, steps, lr):
    """Adam on sum(residual(x)**2) for a fixed number of steps."""
    val_grad = jax.jit(jax.value_and_grad(lambda x: jnp.sum(residual(x) ** 2)))
    opt = optax.adam(lr)
    x = jnp.asarray(x0)
    state = opt.init(x)
    path, losses = [np.asarray(x)], []
    for _ in range(steps):
        val, g = val_grad(x)
        losses.append(float(val))
        upd, state = opt.update(g, state)
        x = optax.apply_updates(x, upd)
        path.append(np.asarray(x))
    losses.append(float(val_grad(x)[0]))
    return np.asarray(path), np.asarray(losses)
