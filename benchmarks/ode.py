"""diffsci vs diffrax on small and medium ODEs: forward, gradient and first-call times.

    python benchmarks/ode.py            # prints a markdown table

Same process, same method (Tsit5), same tolerances, float64, CPU. Each time is the
best of several repeats of a jit-compiled call. "First call" is trace + compile + run of
a fresh jitted function, each measured in its own new process after a warm-up jit of
something unrelated (in one process, whichever library went first paid JAX's one-time
costs and later ones reused cached pieces); best of 5, the libraries taking turns.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

import jax
import jax.numpy as jnp

jax.config.update("jax_enable_x64", True)

import diffrax  # noqa: E402

import solvers  # noqa: E402

RTOL = ATOL = 1e-8


def lotka_volterra(t, y, p):
    a, b, c, d = p
    x, z = y[0], y[1]
    return jnp.stack([a * x - b * x * z, -c * z + d * x * z])


def reaction_diffusion(t, u, p):
    # 1-D Fisher-KPP on 64 cells: u_t = D u_xx + r u (1 - u), no-flux ends.
    D, r = p[0], p[1]
    dx = 1.0 / u.shape[0]
    padded = jnp.concatenate([u[:1], u, u[-1:]])
    lap = (padded[2:] - 2 * u + padded[:-2]) / dx**2
    return D * lap + r * u * (1 - u)


def ours(f, y0, t1, adjoint=None):
    return lambda p: solvers.solve(f, y0, 0.0, t1, p, rtol=RTOL, atol=ATOL, max_steps=4096, adjoint=adjoint).ys[-1]


def ours_backward(f, y0, t1):
    # The default adjoint's backward pass, which it skips for small problems in favour
    # of forward sensitivities: shown so that both routes are on record.
    return ours(f, y0, t1, solvers.DiscreteAdjoint(forward_below=0))


def theirs(f, y0, t1):
    term = diffrax.ODETerm(f)
    ctrl = diffrax.PIDController(rtol=RTOL, atol=ATOL)

    def run(p):
        return diffrax.diffeqsolve(term, diffrax.Tsit5(), 0.0, t1, None, y0, args=p,
                                   stepsize_controller=ctrl, max_steps=4096).ys[-1]
    return run


def best_time(fn, *args, repeats=7, number=None):
    jax.block_until_ready(fn(*args))
    if number is None:
        t = time.perf_counter()
        jax.block_until_ready(fn(*args))
        number = max(1, int(0.05 / max(time.perf_counter() - t, 1e-6)))
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(number):
            jax.block_until_ready(fn(*args))
        best = min(best, (time.perf_counter() - t) / number)
    return best


LIBS = {"diffsci": ours, "diffrax": theirs, "diffsci, backward pass": ours_backward}


def problem(name):
    if name.startswith("Lotka"):
        return lotka_volterra, jnp.ones(2), 10.0, jnp.array([1.5, 1.0, 3.0, 1.0])
    u0 = jnp.exp(-((jnp.linspace(0, 1, 64) - 0.5) ** 2) / 0.01)
    return reaction_diffusion, u0, 2.0, jnp.array([1e-2, 1.0])


def functions(name, lib):
    f, y0, t1, p = problem(name)
    solve = LIBS[lib](f, y0, t1)
    return jax.jit(solve), jax.jit(jax.grad(lambda p: jnp.sum(solve(p) ** 2))), p


def first_call_here(name, lib, kind):
    """Runs in a fresh process (see first_call): time of the first call, printed."""
    jax.block_until_ready(jax.jit(lambda x: jnp.sin(x) + 1)(jnp.ones(3)))
    fwd, grad, p = functions(name, lib)
    fn = fwd if kind == "fwd" else grad
    t = time.perf_counter()
    jax.block_until_ready(fn(p))
    print(time.perf_counter() - t)


def first_call(name, lib, kind):
    cmd = [sys.executable, __file__, "--first-call", name, lib, kind]
    return float(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.split()[-1])


def first_calls(name, repeats=5):
    """Best first-call time of each (library, kind). Round by round, every library runs
    once, so that a machine that speeds up or slows down meanwhile favours none of them."""
    best = {}
    for _ in range(repeats):
        for kind in ("fwd", "grad"):
            for lib in LIBS:
                t = first_call(name, lib, kind)
                best[lib, kind] = min(best.get((lib, kind), float("inf")), t)
    return best


def measure(name):
    rows = []
    first = first_calls(name)
    for lib in LIBS:
        fwd, grad, p = functions(name, lib)
        rows.append((lib, best_time(fwd, p), best_time(grad, p), first[lib, "fwd"], first[lib, "grad"]))
    return name, rows


def measure_vmap(n=1000):
    key = jax.random.PRNGKey(0)
    ps = jnp.array([1.5, 1.0, 3.0, 1.0]) * (1 + 0.2 * jax.random.uniform(key, (n, 4)))
    y0 = jnp.ones(2)
    rows = []
    for lib, make in (("diffsci", ours), ("diffrax", theirs)):
        fwd = jax.jit(jax.vmap(make(lotka_volterra, y0, 10.0)))
        t = time.perf_counter()
        jax.block_until_ready(fwd(ps))
        c = time.perf_counter() - t  # in this process (after the others): indicative only
        rows.append((lib, best_time(fwd, ps, repeats=3), c))
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--first-call", nargs=3, metavar=("PROBLEM", "LIB", "KIND"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.first_call:
        return first_call_here(*args.first_call)
    problems = [measure("Lotka-Volterra (2 states)"), measure("Fisher-KPP (64 states)")]
    print(f"Tsit5, rtol = atol = {RTOL:g}, float64, {jax.devices()[0].platform.upper()}, "
          f"jax {jax.__version__}, diffrax {diffrax.__version__}\n")
    print("| problem | library | forward | gradient | gradient / forward | first call fwd | first call grad |")
    print("|---|---|---|---|---|---|---|")
    for name, rows in problems:
        for lib, fwd, grad, cf, cg in rows:
            print(f"| {name} | {lib} | {fwd * 1e3:.3f} ms | {grad * 1e3:.3f} ms | {grad / fwd:.1f}x "
                  f"| {cf:.2f} s | {cg:.2f} s |")
    print("\n| problem | diffrax / diffsci forward | diffrax / diffsci gradient "
          "| diffrax / diffsci first call (fwd, grad) |")
    print("|---|---|---|---|")
    for name, ((_, f1, g1, cf1, cg1), (_, f2, g2, cf2, cg2), _) in problems:
        print(f"| {name} | {f2 / f1:.2f} | {g2 / g1:.2f} | {cf2 / cf1:.2f}, {cg2 / cg1:.2f} |")
    print("\nGradients use the default `DiscreteAdjoint()`. With at most 8 differentiated scalars "
          "(here 4 and 2 parameters) it computes the gradient by forward sensitivities; otherwise "
          "by its backward pass over the recorded steps. The \"backward pass\" rows force the "
          "latter (`DiscreteAdjoint(forward_below=0)`).")
    vm = measure_vmap()
    print("\n| vmap of 1000 Lotka-Volterra solves (varied parameters) | time | first call |")
    print("|---|---|---|")
    for lib, t, c in vm:
        print(f"| {lib} | {t * 1e3:.1f} ms | {c:.2f} s |")
    print(f"\ndiffrax / diffsci (vmap): {vm[1][1] / vm[0][1]:.2f}")


if __name__ == "__main__":
    main()
