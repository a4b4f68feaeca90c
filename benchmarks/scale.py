"""Solvers at scale, stiff part: large method-of-lines heat equations.

diffsci Kvaerno5 with a tridiagonal (1-D) or matrix-free GMRES (2-D; "diffsci-pc": with
solvers.TridiagonalPreconditioner and jac_sparsity; "diffsci-bicgstab": lineax.BiCGStab) linear solve, side
by side with diffrax Kvaerno5 (dense Jacobian and LU, its only option) and scipy BDF with
jac_sparsity: forward time (best of a few runs after compilation), steps, peak memory
(max RSS of a fresh subprocess per case: XLA's allocations are invisible to tracemalloc)
and, for diffsci, the time of the exact gradient of a loss w.r.t. the N-vector y0.

    python benchmarks/scale.py              # every size
    python benchmarks/scale.py --quick      # small sizes only (a minute)
    python benchmarks/scale.py --case heat1d:diffsci:1000   # one case, prints JSON

Each part is a function (`stiff_part`); an adjoints-at-scale part can be added beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

T1, RTOL, ATOL = 0.05, 1e-6, 1e-8


# --- problems ---------------------------------------------------------------------------

def heat1d(n, xp=jnp):
    """u_t = u_xx + u (1 - u) on (0, 1), Dirichlet 0, n interior points: |lambda| up to 4 (n+1)^2."""
    dx2 = (n + 1) ** 2

    def f(t, u, args=None):
        up = xp.concatenate([xp.zeros(1), u, xp.zeros(1)])
        return (up[2:] - 2 * u + up[:-2]) * dx2 + u * (1 - u)

    x = np.linspace(0, 1, n + 2)[1:-1]
    return f, np.exp(-50 * (x - 0.4) ** 2), _band_pattern(n, [1]), [1]


def heat2d(m, xp=jnp):
    """u_t = div(k grad u) + u (1 - u) on an m x m grid (row-major), k = 1 + x y, Dirichlet 0."""
    h2 = (m + 1) ** 2
    x = np.linspace(0, 1, m + 2)[1:-1]
    X, Y = np.meshgrid(x, x, indexing="ij")
    k = 1 + X * Y

    def f(t, u, args=None):
        g = u.reshape(m, m)
        gp = xp.pad(g, 1) if xp is jnp else np.pad(g, 1)
        lap = (gp[2:, 1:-1] + gp[:-2, 1:-1] + gp[1:-1, 2:] + gp[1:-1, :-2] - 4 * g) * h2
        return (k * lap + g * (1 - g)).reshape(-1)

    u0 = np.exp(-30 * ((X - 0.4) ** 2 + (Y - 0.6) ** 2)).reshape(-1)
    return f, u0, None, [1, m]


def _band_pattern(n, offsets):
    import scipy.sparse as sp

    diags = [np.ones(n)] + [np.ones(n - o) for o in offsets for _ in (0, 1)]
    offs = [0] + [s * o for o in offsets for s in (1, -1)]
    return sp.diags(diags, offs, shape=(n, n), format="csr")


def _sparse_pattern(n, offsets):
    p = _band_pattern(n, offsets).tolil()
    return p.tocsr()


# --- one case, in its own process ---------------------------------------------------------

def _best(fn, repeats):
    fn()  # compile / warm up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def _diffsci(problem, size, grad, repeats, precond=False, krylov="gmres"):
    import lineax as lx

    import solvers

    f, u0, _, offsets = (heat1d if problem == "heat1d" else heat2d)(size)
    if problem == "heat1d":
        method = solvers.Kvaerno5(linear_solver=lx.Tridiagonal())
    elif precond:
        method = solvers.Kvaerno5(linear_solver=solvers.MatrixFreeLinearSolve(
            lx.GMRES(rtol=1e-8, atol=1e-10, restart=30, max_steps=600), solvers.TridiagonalPreconditioner()),
            jac_sparsity=_sparse_pattern(size * size, offsets))
    elif krylov == "bicgstab":
        method = solvers.Kvaerno5(linear_solver=lx.BiCGStab(rtol=1e-8, atol=1e-10, max_steps=600))
    else:
        method = solvers.Kvaerno5(linear_solver=lx.GMRES(rtol=1e-8, atol=1e-10, restart=30, max_steps=600))
    y0 = jnp.asarray(u0)
    run = jax.jit(lambda y: solvers.solve(f, y, 0.0, T1, method=method, rtol=RTOL, atol=ATOL, max_steps=2000))
    t, sol = _best(lambda: jax.block_until_ready(run(y0)), repeats)
    out = dict(status=int(sol.status), steps=int(sol.stats["num_steps"]), forward_s=t,
               u_mid=float(sol.ys[-1][len(u0) // 2]))
    if grad:
        w = jnp.linspace(0.5, 1.5, len(u0))
        g = jax.jit(jax.grad(lambda y: jnp.sum(w * run(y).ys[-1] ** 2)))
        out["grad_s"], gv = _best(lambda: jax.block_until_ready(g(y0)), repeats)
        out["grad_norm"] = float(jnp.linalg.norm(gv))
    return out


def _diffrax(problem, size, repeats):
    import diffrax

    f, u0, _, _ = (heat1d if problem == "heat1d" else heat2d)(size)
    term = diffrax.ODETerm(lambda t, y, a: f(t, y))
    run = jax.jit(lambda y: diffrax.diffeqsolve(
        term, diffrax.Kvaerno5(), 0.0, T1, None, y, saveat=diffrax.SaveAt(t1=True),
        stepsize_controller=diffrax.PIDController(rtol=RTOL, atol=ATOL), max_steps=2000, throw=False))
    t, sol = _best(lambda: jax.block_until_ready(run(jnp.asarray(u0))), repeats)
    return dict(status=str(sol.result), steps=int(sol.stats["num_steps"]), forward_s=t,
                u_mid=float(sol.ys[-1][len(u0) // 2]))


def _scipy(problem, size, repeats):
    from scipy.integrate import solve_ivp

    f, u0, pat, offsets = (heat1d if problem == "heat1d" else heat2d)(size, xp=np)
    if pat is None:
        pat = _sparse_pattern(len(u0), offsets)
    best, sol = None, None
    for _ in range(max(1, repeats - 1)):
        t = time.perf_counter()
        sol = solve_ivp(f, (0, T1), u0, method="BDF", rtol=RTOL, atol=ATOL, jac_sparsity=pat)
        t = time.perf_counter() - t
        best = t if best is None else min(best, t)
    return dict(status=int(sol.status), steps=int(sol.t.size - 1), forward_s=best, nfev=int(sol.nfev),
                njev=int(sol.njev), u_mid=float(sol.y[len(u0) // 2, -1]))


def run_case(spec: str, repeats: int):
    problem, who, size = spec.split(":")
    size = int(size)
    if who.startswith("diffsci"):
        out = _diffsci(problem, size, grad=True, repeats=repeats, precond=who == "diffsci-pc",
                       krylov="bicgstab" if who == "diffsci-bicgstab" else "gmres")
    elif who == "diffrax":
        out = _diffrax(problem, size, repeats)
    else:
        out = _scipy(problem, size, repeats)
    out["max_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def _subprocess(spec, repeats, timeout):
    cmd = [sys.executable, os.path.abspath(__file__), "--case", spec, "--repeats", str(repeats)]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return dict(error=f"over {timeout} s")
    if p.returncode != 0:
        return dict(error=(p.stderr.strip().splitlines() or ["?"])[-1][:120])
    return json.loads(p.stdout.strip().splitlines()[-1])


# --- the stiff part -------------------------------------------------------------------------

# diffrax's dense Kvaerno5 took 66 s at N = 1000 (measured); at N = 4096 and up it would hold an
# N x N Jacobian (134 MB at 4096, 800 MB at 10^4) and factor it every step: not run.
DENSE_MAX = 1000


def stiff_part(quick: bool, repeats: int, timeout: float, only=None):
    sizes = [("heat1d", 100), ("heat1d", 1000)] + ([] if quick else [("heat1d", 10000)])
    sizes += [("heat2d", 32 if quick else 64)] + ([] if quick else [("heat2d", 128)])
    rows = []
    for problem, size in sizes:
        if only and problem not in only:
            continue
        n = size if problem == "heat1d" else size * size
        whos = ("diffsci", "scipy", "diffrax") if problem == "heat1d" else \
            ("diffsci-bicgstab", "diffsci", "diffsci-pc", "scipy", "diffrax")
        for who in whos:  # interleaved per size
            if who == "diffrax" and n > DENSE_MAX:
                res = dict(error=f"not run: dense {n} x {n} Jacobian ({8 * n * n / 1e9:.1f} GB) and LU every step")
            else:
                res = _subprocess(f"{problem}:{who}:{size}", repeats, timeout)
            rows.append((problem, n, who, res))
            print(problem, n, who, res, flush=True)
    return rows


def table(rows):
    lines = ["| problem | N | solver | status | steps | forward (s) | gradient (s) | grad / fwd | peak RSS (MB) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for problem, n, who, r in rows:
        if "error" in r:
            lines.append(f"| {problem} | {n} | {who} | {r['error']} | | | | | |")
            continue
        g = r.get("grad_s")
        ratio = f"{g / r['forward_s']:.1f}" if g else ""
        lines.append(f"| {problem} | {n} | {who} | {r['status']} | {r['steps']} | {r['forward_s']:.3f} | "
                     f"{'' if g is None else f'{g:.3f}'} | {ratio} | {r['max_rss_mb']:.0f} |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--case", help="problem:solver:size, run in this process, JSON out")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--timeout", type=float, default=900)
    ap.add_argument("--only", default=None, help="comma-separated problems (heat1d, heat2d)")
    a = ap.parse_args()
    if a.case:
        print(json.dumps(run_case(a.case, a.repeats)))
        return
    print(f"load: {os.getloadavg()}")
    print(table(stiff_part(a.quick, a.repeats, a.timeout, a.only and a.only.split(","))))


if __name__ == "__main__":
    main()
