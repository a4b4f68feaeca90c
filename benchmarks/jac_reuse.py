"""Jacobian reuse in the ESDIRK methods: `jac_reuse=0` (J formed at every step) against
`jac_reuse=0.01` (J kept while Newton contracts at least 100x), same process, interleaved,
best of `--repeats`. Steps, f evaluations, Jacobians, the final error in tolerances
(max |y - ref| / (atol + rtol |ref|), ref: scipy Radau at rtol 1e-12, or a published
value) and the time ratio. Markdown on stdout.

    python benchmarks/jac_reuse.py [--repeats 5] [--quick]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

jax.config.update("jax_enable_x64", True)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from stiff import PROBLEMS, reference  # noqa: E402

import solvers  # noqa: E402


def heat(n):
    """1-D heat equation with a cubic reaction on n interior points (dense J, cheap f)."""
    def f(t, y, args, xp=jnp):
        yp = xp.concatenate([xp.zeros(1), y, xp.zeros(1)])
        return (yp[2:] - 2 * yp[1:-1] + yp[:-2]) * (n + 1) ** 2 + 50 * y * (1 - y) * (y - 0.2)

    x = np.linspace(0, 1, n + 2)[1:-1]
    return f, list(np.exp(-50 * (x - 0.5) ** 2)), 0.1, 1e-6, 1e-8


def network(d):
    """d states: stiff linear decay (rates 1 to 1e4) plus a tanh network (4d hidden) in
    f, so that forming J (d JVPs through the network) costs far more than f."""
    k1, k2 = jax.random.split(jax.random.PRNGKey(0))
    w1 = np.asarray(jax.random.normal(k1, (4 * d, d))) / np.sqrt(d)
    w2 = np.asarray(jax.random.normal(k2, (d, 4 * d))) / np.sqrt(4 * d)
    rates = np.logspace(0, 4, d)

    def f(t, y, args, xp=jnp):
        return -rates * y + w2 @ xp.tanh(w1 @ y) + xp.sin(t)

    return f, [1.0] * d, 5.0, 1e-6, 1e-8


def compiled(method, f, t1, rtol, atol):
    @jax.jit
    def go(y0):
        sol = solvers.solve(f, y0, 0.0, t1, method=method, rtol=rtol, atol=atol, max_steps=100_000, throw=False)
        return sol.ys[-1], sol.status, sol.stats

    return go


def rows(name, f, y0, t1, rtol, atol, ref, repeats):
    out = []
    for mname, M in (("Kvaerno5", solvers.Kvaerno5), ("Kvaerno3", solvers.Kvaerno3)):
        fns = [compiled(M(jac_reuse=r), f, t1, rtol, atol) for r in (0.0, 0.01)]
        y = jnp.asarray(y0, jnp.float64)
        res = [jax.block_until_ready(fn(y)) for fn in fns]
        best = [np.inf, np.inf]
        for _ in range(repeats):
            for i, fn in enumerate(fns):
                t = time.perf_counter()
                jax.block_until_ready(fn(y))
                best[i] = min(best[i], time.perf_counter() - t)
        cells = []
        for (yf, status, st), tm in zip(res, best):
            err = float(np.max(np.abs(np.asarray(yf) - ref) / (atol + rtol * np.abs(ref))))
            ok = "" if int(status) == 0 else f" (status {int(status)})"
            cells.append(f"{int(st['num_steps'])} / {int(st['num_f_evals'])} / {int(st['num_jac_evals'])} / "
                         f"{err:.2f}{ok} / {tm * 1e3:.1f} ms")
        out.append(f"| {name} ({len(y0)}) | {mname} | {cells[0]} | {cells[1]} | {best[1] / best[0]:.2f} |")
        print(out[-1], file=sys.stderr, flush=True)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="small problems only (smoke run)")
    a = ap.parse_args()
    probs = {k: PROBLEMS[k] for k in ("rober", "vdpol", "hires")}
    probs = {k: (f, y0, t1, rtol, atol, np.asarray(ref) if ref is not None else reference(f, y0, t1))
             for k, (f, y0, t1, rtol, atol, ref) in probs.items()}
    sizes = (20, 24) if a.quick else (200, 100)
    for name, (f, y0, t1, rtol, atol) in (("heat", heat(sizes[0])), ("network", network(sizes[1]))):
        probs[name] = (f, y0, t1, rtol, atol, reference(f, y0, t1))
    lines = []
    for name, (f, y0, t1, rtol, atol, ref) in probs.items():
        lines += rows(name, f, y0, t1, rtol, atol, ref, a.repeats)
    print("### Jacobian reuse (ESDIRK `jac_reuse`)\n")
    print("Each cell: steps / f evaluations / Jacobians / final error in tolerances / best time. "
          "Ratio: time with reuse over time without (below 1: reuse is faster). The default is "
          "`jac_reuse=0` (J at every step).\n")
    print("| problem (states) | method | jac_reuse=0 | jac_reuse=0.01 | time ratio |")
    print("|---|---|---|---|---|")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
