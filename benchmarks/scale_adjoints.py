"""Adjoints at scale: explicit Fisher-KPP, N = 64 ... 4096, every adjoint, beside diffrax.

    python benchmarks/scale_adjoints.py            # N = 64, 256, 1024, 4096
    python benchmarks/scale_adjoints.py --quick    # N = 64, 256

u_t = D u_xx + r u (1 - u) on N cells of width 1 (no-flux ends), a front entering from
the left, t in [0, 10], Tsit5 at rtol = atol = 1e-6, float64, CPU, max_steps 4096. With
cells of width 1 the diffusion's fastest rate is 4 D = 4, whatever N: the problem stays
non-stiff for an explicit method, and the number of steps does not grow with N (the
cost per step grows as N).

For each adjoint: the forward solve, the gradient of a scalar loss with respect to the
two scalars (D, r) and with respect to the N-vector u0, the compiled gradient's scratch
memory (XLA's memory_analysis of the u0 gradient: temp bytes, nothing run), and the
gradient's error against the exact one (DiscreteAdjoint). diffrax runs in the same
process, interleaved (each measurement takes turns), with its RecursiveCheckpointAdjoint
(checkpoints=None: online treeverse; and checkpoints=16) and BacksolveAdjoint. Times are
the best of a few repeats of a jit-compiled call. f evaluations per gradient are counted
at N = 64 by a host callback in f.
"""

from __future__ import annotations

import argparse
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

jax.config.update("jax_enable_x64", True)

import diffrax  # noqa: E402

import solvers  # noqa: E402

RTOL = ATOL = 1e-6
T1 = 10.0
MAX_STEPS = 4096
CKPT = 16


def fkpp(t, u, p):
    D, r = p[0], p[1]
    padded = jnp.concatenate([u[:1], u, u[-1:]])
    return D * (padded[2:] - 2 * u + padded[:-2]) + r * u * (1 - u)


def initial(n):
    x = jnp.arange(n, dtype=jnp.float64)
    return 1.0 / (1.0 + jnp.exp((x - 0.1 * n) / 2.0))


def weights(n):
    return jnp.linspace(0.0, 1.0, n)


OURS = {
    "DiscreteAdjoint": lambda: solvers.DiscreteAdjoint(),
    f"CheckpointAdjoint({CKPT}) binomial": lambda: solvers.CheckpointAdjoint(checkpoints=CKPT),
    "BacksolveAdjoint": lambda: solvers.BacksolveAdjoint(),
    f"InterpolatingAdjoint({CKPT})": lambda: solvers.InterpolatingAdjoint(checkpoints=CKPT),
    "ForwardMode": lambda: solvers.ForwardMode(),
}
THEIRS = {
    "diffrax RecursiveCheckpoint(None)": lambda: diffrax.RecursiveCheckpointAdjoint(),
    f"diffrax RecursiveCheckpoint({CKPT})": lambda: diffrax.RecursiveCheckpointAdjoint(checkpoints=CKPT),
    "diffrax BacksolveAdjoint": lambda: diffrax.BacksolveAdjoint(),
}


def ours_final(adjoint, f=fkpp):
    def run(u0, p):
        return solvers.solve(f, u0, 0.0, T1, p, method=solvers.Tsit5(), rtol=RTOL, atol=ATOL, max_steps=MAX_STEPS,
                             adjoint=adjoint, throw=False).ys[-1]
    return run


def theirs_final(adjoint, f=fkpp):
    def run(u0, p):
        return diffrax.diffeqsolve(diffrax.ODETerm(f), diffrax.Tsit5(), 0.0, T1, None, u0, args=p, adjoint=adjoint,
                                   stepsize_controller=diffrax.PIDController(rtol=RTOL, atol=ATOL),
                                   max_steps=MAX_STEPS, throw=False).ys[-1]
    return run


def functions(final, n, forward_mode):
    w = weights(n)
    loss = lambda u0, p: jnp.sum(w * final(u0, p) ** 2)  # noqa: E731
    fwd = jax.jit(loss)
    if forward_mode:
        g_p = jax.jit(jax.jacfwd(loss, argnums=1))
        g_u = None  # N tangents: not a sensible use of forward mode
    else:
        g_p = jax.jit(jax.grad(loss, argnums=1))
        g_u = jax.jit(jax.grad(loss, argnums=0))
    return fwd, g_p, g_u


def best(fn, args, repeats):
    out = jax.block_until_ready(fn(*args))
    t_best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(fn(*args))
        t_best = min(t_best, time.perf_counter() - t)
    return t_best, out


def rel_err(g, ref):
    g, ref = np.asarray(g), np.asarray(ref)
    if not np.all(np.isfinite(g)):
        return float("nan")
    return float(np.max(np.abs(g - ref)) / np.max(np.abs(ref)))


def measure(n, repeats):
    u0, p = initial(n), jnp.array([1.0, 1.0])
    cands = {k: (ours_final(m()), k == "ForwardMode") for k, m in OURS.items()}
    cands.update({k: (theirs_final(m()), False) for k, m in THEIRS.items()})
    fns = {k: functions(final, n, fm) for k, (final, fm) in cands.items()}
    rows = {k: {} for k in fns}
    for i, kind in enumerate(["forward", "grad (D, r)", "grad u0"]):
        for k, fs in fns.items():  # interleaved: every library takes its turn per measurement
            fn = fs[i]
            if fn is None:
                rows[k][kind] = (float("nan"), None)
                continue
            rows[k][kind] = best(fn, (u0, p), repeats)
    ref_p, ref_u = rows["DiscreteAdjoint"]["grad (D, r)"][1], rows["DiscreteAdjoint"]["grad u0"][1]
    for k, fs in fns.items():
        rows[k]["err"] = max(rel_err(rows[k]["grad (D, r)"][1], ref_p),
                             rel_err(rows[k]["grad u0"][1], ref_u) if fs[2] is not None else 0.0)
        rows[k]["mem"] = (fs[2].lower(u0, p).compile().memory_analysis().temp_size_in_bytes
                          if fs[2] is not None else float("nan"))
    return rows


def count_f_evals(n=64):
    """f evaluations of one u0 gradient (forward pass + backward pass), by a callback."""
    counts = {}
    u0, p = initial(n), jnp.array([1.0, 1.0])
    for name, make, final in ([(k, m, ours_final) for k, m in OURS.items() if k != "ForwardMode"]
                              + [(k, m, theirs_final) for k, m in THEIRS.items()]):
        box = [0]

        def tick(_):
            box[0] += 1

        def f(t, u, p):
            jax.debug.callback(tick, t)
            return fkpp(t, u, p)

        fin = final(make(), f)
        g = jax.jit(jax.grad(lambda u0: jnp.sum(weights(n) * fin(u0, p) ** 2)))
        jax.block_until_ready(g(u0))
        box[0] = 0
        jax.block_until_ready(g(u0))
        counts[name] = box[0]
    stats = solvers.solve(fkpp, u0, 0.0, T1, p, method=solvers.Tsit5(), rtol=RTOL, atol=ATOL,
                          max_steps=MAX_STEPS).stats
    return counts, (int(stats["num_f_evals"]), int(stats["num_accepted"]))


def table(all_rows):
    lines = ["| N | adjoint | forward (ms) | grad (D, r) (ms) | grad u0 (ms) | grad u0 / forward | "
             "scratch memory of grad u0 (MB) | rel. diff vs our DiscreteAdjoint |", "|---|---|---|---|---|---|---|---|"]
    for n, rows in all_rows.items():
        for k, r in rows.items():
            f_t, gp, gu = r["forward"][0], r["grad (D, r)"][0], r["grad u0"][0]
            lines.append(f"| {n} | {k} | {1e3 * f_t:.1f} | {1e3 * gp:.1f} | {1e3 * gu:.1f} | {gu / f_t:.1f} | "
                         f"{r['mem'] / 1e6:.2f} | {r['err']:.1e} |")
    return "\n".join(lines)


PAIRS = [("DiscreteAdjoint", "diffrax RecursiveCheckpoint(None)"),
         (f"CheckpointAdjoint({CKPT}) binomial", f"diffrax RecursiveCheckpoint({CKPT})"),
         ("BacksolveAdjoint", "diffrax BacksolveAdjoint")]


def ratios(all_rows):
    lines = ["| N | ours / diffrax | grad (D, r) time | grad u0 time | grad u0 memory |", "|---|---|---|---|---|"]
    for n, rows in all_rows.items():
        for a, b in PAIRS:
            ra, rb = rows[a], rows[b]
            lines.append(f"| {n} | {a} / {b} | {ra['grad (D, r)'][0] / rb['grad (D, r)'][0]:.2f} | "
                         f"{ra['grad u0'][0] / rb['grad u0'][0]:.2f} | {ra['mem'] / rb['mem']:.2f} |")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="N = 64 and 256 only, fewer repeats")
    args = ap.parse_args(argv)
    sizes, repeats = ([64, 256], 3) if args.quick else ([64, 256, 1024, 4096], 5)
    t0 = time.time()
    load = os.getloadavg()[0]
    all_rows = {n: measure(n, repeats) for n in sizes}
    counts, stats = count_f_evals()
    print(f"Fisher-KPP, Tsit5, rtol = atol = {RTOL}, t1 = {T1}, max_steps {MAX_STEPS}, float64, "
          f"jax {jax.__version__}, diffrax {diffrax.__version__}; {os.cpu_count()} cores, load average "
          f"{load:.1f} at the start, {os.getloadavg()[0]:.1f} at the end\n")
    print(table(all_rows) + "\n")
    print(ratios(all_rows) + "\n")
    print(f"f evaluations for one u0 gradient at N = 64 (forward solve alone: {stats[0]} f evaluations, "
          f"{stats[1]} accepted steps):\n")
    print("| adjoint | f evaluations | / forward solve |\n|---|---|---|")
    for k, c in counts.items():
        print(f"| {k} | {c} | {c / stats[0]:.1f} |")
    print(f"\n_took {time.time() - t0:.0f} s_")


if __name__ == "__main__":
    main()
