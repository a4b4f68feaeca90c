"""Recover a spatially varying conductivity from sparse noisy measurements of a 2-D heat
equation, by gradients through a stiff solve.

    u_t = div(k(x, y) grad u) + s(x, y)   on (0, 1)^2, u = 0 on the boundary,

on an m x m grid (default 64 x 64: 4096 states, stiff: |lambda| up to ~8 k (m+1)^2 ~ 1e5).
The truth k is two smooth blobs; u is observed at 5% of the grid points at 4 times, with
1% noise. k = exp(theta) is fitted with Adam on the misfit plus a smoothness penalty;
every gradient (w.r.t. all m^2 values of theta) goes through a Kvaerno5 solve whose
Newton systems are solved matrix-free (lineax BiCGStab from J v products only: no
4096 x 4096 Jacobian is formed).

    python examples/heat_inverse.py --out out/heat       # 64 x 64 (a few minutes)
    python examples/heat_inverse.py --size 16 --iters 10 # seconds
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import lineax as lx  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
import scipy.sparse as sp  # noqa: E402
from tqdm import tqdm  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import solvers  # noqa: E402

T_OBS = (0.005, 0.01, 0.02, 0.04)


def grid(m):
    x = (np.arange(m) + 1) / (m + 1)
    return np.meshgrid(x, x, indexing="ij")


def true_log_k(m):
    X, Y = grid(m)
    blob = lambda cx, cy, r: np.exp(-((X - cx) ** 2 + (Y - cy) ** 2) / (2 * r**2))  # noqa: E731
    return np.log(0.5 + 1.5 * blob(0.3, 0.35, 0.12) + 1.0 * blob(0.7, 0.65, 0.15))


def rhs(m):
    """f(t, u, theta) for the m x m grid (u, theta flat (m^2,)); k on faces by averaging."""
    h2 = float((m + 1) ** 2)
    X, Y = grid(m)
    source = jnp.asarray(10 * np.sin(np.pi * X) * np.sin(np.pi * Y))

    def f(t, u, theta):
        k = jnp.pad(jnp.exp(theta).reshape(m, m), 1, mode="edge")
        g = jnp.pad(u.reshape(m, m), 1)
        kx = 0.5 * (k[1:, 1:-1] + k[:-1, 1:-1])  # (m+1, m) faces between rows
        ky = 0.5 * (k[1:-1, 1:] + k[1:-1, :-1])  # (m, m+1)
        fx = kx * (g[1:, 1:-1] - g[:-1, 1:-1])
        fy = ky * (g[1:-1, 1:] - g[1:-1, :-1])
        return ((fx[1:] - fx[:-1] + fy[:, 1:] - fy[:, :-1]) * h2 + source).reshape(-1)

    return f


def pattern(m):
    """5-point stencil pattern of the row-major m x m grid, as a scipy.sparse matrix."""
    n = m * m
    i = np.arange(n)
    right = i[(i % m) < m - 1]
    down = i[i < n - m]
    rows = np.r_[i, right, right + 1, down, down + m]
    cols = np.r_[i, right + 1, right, down + m, down]
    return sp.coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n))


def method(m):
    # BiCGStab: on the 64 x 64 heat equation of benchmarks/scale.py it was 15x faster than
    # lineax.GMRES(restart=30) (0.066 s against 0.99 s, same steps); the tridiagonal
    # preconditioner made GMRES 2-3x slower (measured).
    return solvers.Kvaerno5(linear_solver=lx.BiCGStab(rtol=1e-8, atol=1e-10, max_steps=600))


def observations(m, frac, noise, seed):
    """(indices of the observed points, observed u (n_times, n_obs), the true u0)."""
    rng = np.random.default_rng(seed)
    X, Y = grid(m)
    u0 = jnp.asarray((np.exp(-40 * ((X - 0.5) ** 2 + (Y - 0.5) ** 2))).reshape(-1))
    idx = np.sort(rng.choice(m * m, size=max(4, int(frac * m * m)), replace=False))
    ys = simulate(m, jnp.asarray(true_log_k(m).reshape(-1)), u0)
    obs = np.asarray(ys)[:, idx]
    return idx, obs + noise * np.abs(obs).max() * rng.standard_normal(obs.shape), u0


def simulate(m, theta, u0):
    return solvers.solve(rhs(m), u0, 0.0, T_OBS[-1], theta, method=method(m), ts=jnp.asarray(T_OBS),
                         rtol=1e-5, atol=1e-7, max_steps=1000).ys


def smoothness(theta, m):
    g = theta.reshape(m, m)
    return jnp.sum(jnp.diff(g, axis=0) ** 2) + jnp.sum(jnp.diff(g, axis=1) ** 2)


def fit(m=64, iters=80, lr=0.1, reg=5e-4, frac=0.05, noise=0.01, seed=0, progress=True):
    """Returns (truth, recovered log k (m, m), observed indices, observations, loss history)."""
    idx, obs, u0 = observations(m, frac, noise, seed)
    scale = float(np.mean(obs**2))

    def loss(theta):
        ys = simulate(m, theta, u0)
        return jnp.mean((ys[:, idx] - obs) ** 2) / scale + reg * smoothness(theta, m)

    value_and_grad = jax.jit(jax.value_and_grad(loss))
    theta = jnp.zeros(m * m)  # k = 1 everywhere
    opt = optax.adam(lr)
    state = opt.init(theta)
    history = []
    bar = tqdm(range(iters), disable=not progress, desc=f"fit {m}x{m}")
    for _ in bar:
        value, g = value_and_grad(theta)
        updates, state = opt.update(g, state)
        theta = optax.apply_updates(theta, updates)
        history.append(float(value))
        bar.set_postfix(loss=f"{float(value):.3e}")
    return true_log_k(m), np.asarray(theta).reshape(m, m), idx, obs, history


def save_pictures(out, truth, recovered, idx, m):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(out, exist_ok=True)
    lo, hi = np.exp(truth).min(), np.exp(truth).max()
    for name, field in (("truth", np.exp(truth)), ("recovery", np.exp(recovered))):
        fig, ax = plt.subplots(figsize=(4, 3.4))
        im = ax.imshow(field.T, origin="lower", extent=(0, 1, 0, 1), vmin=lo, vmax=hi, cmap="viridis")
        fig.colorbar(im, ax=ax, label="k")
        ax.set_title(f"conductivity: {name}")
        fig.savefig(os.path.join(out, f"{name}.png"), dpi=120, bbox_inches="tight")
        plt.close(fig)
    X, Y = grid(m)
    fig, ax = plt.subplots(figsize=(4, 3.4))
    ax.imshow(np.exp(truth).T, origin="lower", extent=(0, 1, 0, 1), cmap="Greys", alpha=0.4)
    ax.scatter(X.reshape(-1)[idx], Y.reshape(-1)[idx], s=6, c="crimson")
    ax.set_title(f"observed points ({len(idx)}, {len(T_OBS)} times)")
    fig.savefig(os.path.join(out, "observations.png"), dpi=120, bbox_inches="tight")
    plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=64, help="grid size m (m x m states)")
    ap.add_argument("--iters", type=int, default=80)
    ap.add_argument("--quick", action="store_true", help="16 x 16 grid, 15 iterations")
    ap.add_argument("--out", default=None, help="directory for truth/observations/recovery PNGs")
    ap.add_argument("--no-progress", action="store_true")
    a = ap.parse_args(argv)
    m, iters = (16, 15) if a.quick else (a.size, a.iters)
    t = time.perf_counter()
    truth, rec, idx, obs, history = fit(m, iters, progress=not a.no_progress)
    err0 = np.linalg.norm(np.exp(truth) - 1) / np.linalg.norm(np.exp(truth))
    err = np.linalg.norm(np.exp(truth) - np.exp(rec)) / np.linalg.norm(np.exp(truth))
    print(f"{m}x{m}, {iters} iterations in {time.perf_counter() - t:.1f} s: loss {history[0]:.3e} -> "
          f"{history[-1]:.3e}; relative error of k {err0:.3f} (k = 1) -> {err:.3f}")
    if a.out:
        save_pictures(a.out, truth, rec, idx, m)
        print(f"pictures in {a.out}")
    return dict(history=history, err0=err0, err=err)


if __name__ == "__main__":
    main()
