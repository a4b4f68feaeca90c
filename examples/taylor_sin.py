"""Differentiating through control flow: a Taylor-series sin with an early exit.

The classic of differentiable programming: sin(x) = sum_k (-1)^k x^(2k+1) / (2k+1)!,
summed term by term until the term drops below a tolerance. The number of terms
depends on x, so the program has data-dependent control flow; autodiff still gives
the exact derivative of what was computed.

Three versions:
  * `sin_python`: a plain Python `while` loop (works under `jax.grad` without jit:
    the loop runs on concrete values, like an eager tape in Zygote or PyTorch);
  * `sin_lax`: `jax.lax.while_loop` is not reverse-differentiable (unbounded
    loops have no transpose), so the jit-able version uses a bounded
    `lax.fori_loop` whose body stops adding once the term is below tolerance
    (`jnp.where`): the same early exit, differentiable to any order;
  * `sin_while`: a true `lax.while_loop` early exit, differentiated in forward
    mode (`jax.jacfwd`), which does go through unbounded loops.

The derivative at 1 matches cos(1); repeated `jax.grad` gives -sin, -cos, sin.

    python examples/taylor_sin.py                 # full demo, writes to out/taylor_sin
    python examples/taylor_sin.py --quick --out /tmp/ts
"""

from __future__ import annotations

import argparse
import os

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import solvers  # noqa: E402

solvers.enable_compilation_cache()  # opt-in: reuse compiled programs across runs (~/.cache/diffsci/jax)

TOL = 1e-16
MAX_TERMS = 40


def sin_python(x, tol=TOL):
    """Taylor series of sin with a Python while loop and an early exit."""
    term = x
    total = x
    k = 1
    while jnp.abs(term) > tol * jnp.maximum(1.0, jnp.abs(total)):
        term = -term * x * x / ((2 * k) * (2 * k + 1))
        total = total + term
        k += 1
    return total


def sin_lax(x, tol=TOL, max_terms=MAX_TERMS):
    """Jit-able, reverse-differentiable version: bounded loop, early exit via a mask."""
    x = jnp.asarray(x, float)

    def body(k, carry):
        term, total, done = carry
        new = -term * x * x / ((2 * k) * (2 * k + 1))
        done = done | (jnp.abs(term) <= tol * jnp.maximum(1.0, jnp.abs(total)))
        term = jnp.where(done, term, new)
        total = jnp.where(done, total, total + new)
        return term, total, done

    _, total, _ = jax.lax.fori_loop(1, max_terms, body, (x, x, jnp.zeros((), bool)))
    return total


def sin_while(x, tol=TOL):
    """`lax.while_loop` with a true early exit: jit-able, differentiable in forward mode
    (`jax.jvp`, `jax.jacfwd`, to any order), not in reverse mode."""
    x = jnp.asarray(x, float)

    def cond(c):
        term, total, _ = c
        return jnp.abs(term) > tol * jnp.maximum(1.0, jnp.abs(total))

    def body(c):
        term, total, k = c
        term = -term * x * x / ((2 * k) * (2 * k + 1))
        return term, total + term, k + 1

    return jax.lax.while_loop(cond, body, (x, x, jnp.asarray(1.0)))[1]


def n_terms(x, tol=TOL):
    """How many terms the early exit keeps at x (for the plot)."""
    term, total, k = float(x), float(x), 1
    while abs(term) > tol * max(1.0, abs(total)):
        term = -term * x * x / ((2 * k) * (2 * k + 1))
        total += term
        k += 1
    return k


def derivatives(fn, x, order=4, diff=jax.grad):
    """[fn, fn', fn'', ...] at x by repeated jax.grad (or jax.jacfwd)."""
    out, g = [], fn
    for _ in range(order + 1):
        out.append(float(g(x)))
        g = diff(g)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer plot points (for tests)")
    ap.add_argument("--out", default="out/taylor_sin", help="directory for the picture")
    a = ap.parse_args(argv)
    os.makedirs(a.out, exist_ok=True)

    x0 = 1.0
    exact = [np.sin(x0), np.cos(x0), -np.sin(x0), -np.cos(x0), np.sin(x0)]
    names = ["sin", "d/dx", "d2/dx2", "d3/dx3", "d4/dx4"]
    print(f"Taylor-series sin at x = {x0} (early exit at |term| < {TOL:g}); "
          f"{n_terms(x0)} terms used")
    print("| derivative | python while, grad | masked fori_loop, grad (jit) "
          "| lax.while_loop, jacfwd (jit) | exact | max abs error |")
    print("|---|---|---|---|---|---|")
    py = derivatives(sin_python, x0)
    lx = derivatives(jax.jit(sin_lax), x0)
    wl = derivatives(jax.jit(sin_while), x0, diff=jax.jacfwd)
    worst = 0.0
    for n, p, q, w, e in zip(names, py, lx, wl, exact):
        err = max(abs(p - e), abs(q - e), abs(w - e))
        worst = max(worst, err)
        print(f"| {n} | {p:.15f} | {q:.15f} | {w:.15f} | {e:.15f} | {err:.1e} |")
    print(f"max error over all derivatives: {worst:.2e}")
    print(f"grad at 1 = {py[1]:.15f}, cos(1) = {np.cos(1.0):.15f}")

    # the curve and its derivatives on a grid (vmap of the jit-able version)
    xs = jnp.linspace(-2 * np.pi, 2 * np.pi, 101 if a.quick else 401)
    fns = [sin_lax]
    for _ in range(3):
        fns.append(jax.grad(fns[-1]))
    curves = [np.asarray(jax.jit(jax.vmap(fn))(xs)) for fn in fns]
    ref = [np.sin(xs), np.cos(xs), -np.sin(xs), -np.cos(xs)]
    grid_err = max(float(np.max(np.abs(c - r))) for c, r in zip(curves, ref))
    print(f"max error on [-2pi, 2pi] grid, derivatives 0-3: {grid_err:.2e}")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.6))
    labels = ["sin (Taylor)", "grad", "grad of grad", "3rd grad"]
    for c, lab in zip(curves, labels):
        ax1.plot(xs, c, label=lab)
    for r in ref:
        ax1.plot(xs, r, "k:", lw=0.8)
    ax1.set_title("jax.grad through a loop with an early exit\n(dotted: sin, cos, -sin, -cos)")
    ax1.set_xlabel("x")
    ax1.legend(fontsize=7, loc="lower left")
    xt = np.linspace(0.05, 2 * np.pi, 60)
    ax2.plot(xt, [n_terms(float(v)) for v in xt], ".-")
    ax2.set_xlabel("x")
    ax2.set_ylabel("terms summed")
    ax2.set_title("data-dependent loop length")
    fig.tight_layout()
    path = os.path.join(a.out, "taylor_sin.png")
    fig.savefig(path, dpi=80)
    print(f"wrote {path}")
    return worst


if __name__ == "__main__":
    main()
