"""Stiff solvers side by side: diffsci Rodas5P / Kvaerno5, diffrax Kvaerno5, scipy Radau / BDF;
then the same methods in diffsci and diffrax (ImplicitEuler, Kvaerno3, Kvaerno4, Kvaerno5),
timed interleaved in this process, as ratios (plus diffsci's Rosenbrock23, which diffrax
does not have).

    python benchmarks/stiff.py                 # both tables, written to docs/bench_stiff.md
    python benchmarks/stiff.py --quick         # looser tolerances, smaller caps
    python benchmarks/stiff.py --problems rober,hires --no-write
    python benchmarks/stiff.py --only same     # just the same-method table

Problems (Test Set for IVP Solvers, Bari): ROBER to t=1e11, VDPOL with eps=1e-6 to t=2,
OREGO to t=360, HIRES to t=321.8122. All solvers get the same rtol/atol per problem.
Reported: status, steps (accepted + rejected), wall time of one solve after compilation
(best of a few runs; scipy is run once or twice), and the maximum relative error over the
components against the reference (Bari's published values for ROBER and VDPOL, scipy
Radau at rtol=1e-12 for OREGO and HIRES). diffrax gets a step cap so the benchmark ends;
"max_steps" in its row means it did not finish within the cap.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import jax

jax.config.update("jax_enable_x64", True)

import diffrax  # noqa: E402
import equinox as eqx  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from scipy.integrate import solve_ivp  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import solvers  # noqa: E402
from solvers._problems import hires, orego  # noqa: E402
from solvers._stiff import ImplicitEuler, Kvaerno3, Kvaerno4, Kvaerno5, Rodas5P, Rosenbrock23  # noqa: E402

# --- problems: f written once for jax.numpy and numpy (xp) ----------------------------


def rober(t, y, args, xp=jnp):
    return xp.stack([
        -0.04 * y[0] + 1e4 * y[1] * y[2],
        0.04 * y[0] - 1e4 * y[1] * y[2] - 3e7 * y[1] ** 2,
        3e7 * y[1] ** 2,
    ])


def vdpol(t, y, args, xp=jnp):
    return xp.stack([y[1], ((1 - y[0] ** 2) * y[1] - y[0]) / 1e-6])


# name: (f, y0, t1, rtol, atol, reference or None (-> Radau at rtol=1e-12))
PROBLEMS = {
    "rober": (rober, [1.0, 0.0, 0.0], 1e11, 1e-9, 1e-20,
              [0.2083340149701255e-7, 0.8333360770334713e-13, 0.9999999791665050]),
    "vdpol": (vdpol, [2.0, 0.0], 2.0, 1e-9, 1e-9, [0.1706167732170483e1, -0.8928097010247975e0]),
    "orego": (orego, [1.0, 2.0, 3.0], 360.0, 1e-9, 1e-9, None),
    "hires": (hires, [1.0, 0, 0, 0, 0, 0, 0, 0.0057], 321.8122, 1e-9, 1e-13, None),
}


def best_time(fn, repeats):
    best = np.inf
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        jax.block_until_ready(out)
        best = min(best, time.perf_counter() - t)
    return best, out


def run_ours(method, f, y0, t1, rtol, atol, max_steps, repeats):
    @jax.jit
    def go(y0):
        sol = solvers.solve(f, y0, 0.0, t1, method=method, rtol=rtol, atol=atol,
                            max_steps=max_steps, throw=False)
        return sol.ys[-1], sol.status, sol.stats

    y0 = jnp.asarray(y0)
    jax.block_until_ready(go(y0))  # compile
    dt, (y, status, stats) = best_time(lambda: go(y0), repeats)
    return dict(y=np.asarray(y), ok=int(status) == 0, status=solvers.Status(int(status)).name,
                steps=int(stats["num_steps"]), rejected=int(stats["num_rejected"]), time=dt)


def run_diffrax(f, y0, t1, rtol, atol, max_steps, repeats):
    term = diffrax.ODETerm(lambda t, y, args: f(t, y, args))

    @eqx.filter_jit
    def go(y0):
        sol = diffrax.diffeqsolve(
            term, diffrax.Kvaerno5(), 0.0, t1, None, y0,
            stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol),
            max_steps=max_steps, throw=False,
        )
        return sol.ys[-1], sol.result == diffrax.RESULTS.successful, sol.stats

    y0 = jnp.asarray(y0)
    jax.block_until_ready(go(y0))
    dt, (y, ok, stats) = best_time(lambda: go(y0), repeats)
    steps = int(stats["num_steps"])
    return dict(y=np.asarray(y), ok=bool(ok), status="SUCCESS" if ok else "max_steps",
                steps=steps, rejected=int(stats["num_rejected_steps"]), time=dt)


def run_scipy(name, f, y0, t1, rtol, atol, repeats):
    jac_j = jax.jit(jax.jacfwd(lambda y: f(0.0, y, None)))
    fun = lambda t, y: f(t, y, None, xp=np)  # noqa: E731
    jac = lambda t, y: np.asarray(jac_j(jnp.asarray(y)))  # noqa: E731
    jac(0.0, np.asarray(y0, float))
    best, sol = np.inf, None
    for _ in range(repeats):
        t = time.perf_counter()
        sol = solve_ivp(fun, (0.0, t1), y0, method=name, rtol=rtol, atol=atol, jac=jac)
        best = min(best, time.perf_counter() - t)
    return dict(y=sol.y[:, -1], ok=sol.status == 0, status="SUCCESS" if sol.status == 0 else sol.message,
                steps=sol.t.size - 1, rejected=None, time=best)


def reference(f, y0, t1):
    sol = solve_ivp(lambda t, y: f(t, y, None, xp=np), (0.0, t1), y0, method="Radau",
                    rtol=1e-12, atol=1e-14)
    return sol.y[:, -1]


def _compiled_ours(method, f, t1, rtol, atol, max_steps):
    @jax.jit
    def go(y0):
        sol = solvers.solve(f, y0, 0.0, t1, method=method, rtol=rtol, atol=atol, max_steps=max_steps,
                            throw=False)
        return sol.ys[-1], sol.status == 0, sol.stats["num_steps"], sol.stats["num_f_evals"]

    return go


def _compiled_diffrax(solver, f, t1, rtol, atol, max_steps):
    term = diffrax.ODETerm(lambda t, y, args: f(t, y, args))

    @eqx.filter_jit
    def go(y0):
        sol = diffrax.diffeqsolve(term, solver, 0.0, t1, None, y0,
                                  stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol),
                                  max_steps=max_steps, throw=False)
        return sol.ys[-1], sol.result == diffrax.RESULTS.successful, sol.stats["num_steps"], None

    return go


def run_interleaved(fns, y0, repeats):
    """Each compiled solve once to compile, then `repeats` rounds of one run of each in
    turn (so that load on the shared machine hits all alike); best time of each."""
    y0 = jnp.asarray(y0)
    outs = [jax.block_until_ready(fn(y0)) for fn in fns]
    best = [np.inf] * len(fns)
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            t = time.perf_counter()
            jax.block_until_ready(fn(y0))
            best[i] = min(best[i], time.perf_counter() - t)
    return outs, best


# method name: (diffsci method, diffrax solver or None, rtol); atol = rtol * the problem's atol / rtol.
SAME = {
    "ImplicitEuler": (ImplicitEuler(), diffrax.ImplicitEuler(), 1e-4),
    "Rosenbrock23": (Rosenbrock23(), None, 1e-4),
    "Kvaerno3": (Kvaerno3(), diffrax.Kvaerno3(), 1e-6),
    "Kvaerno4": (Kvaerno4(), diffrax.Kvaerno4(), 1e-7),
    "Kvaerno5": (Kvaerno5(), diffrax.Kvaerno5(), 1e-9),
}


def same_method_rows(name, f, y0, t1, rtol0, atol0, ref, cap, repeats):
    rows = []
    for mname, (ours, theirs, rtol) in SAME.items():
        atol = atol0 * rtol / rtol0
        fns = [_compiled_ours(ours, f, t1, rtol, atol, 200_000)]
        if theirs is not None:
            fns.append(_compiled_diffrax(theirs, f, t1, rtol, atol, cap))
        outs, best = run_interleaved(fns, y0, repeats)
        cells = []
        for (y, ok, steps, nf), t in zip(outs, best):
            err = np.max(np.abs(np.asarray(y) - ref) / np.abs(ref)) if bool(ok) else np.nan
            status = "" if bool(ok) else " (failed/cap)"
            nf = "" if nf is None else f", {int(nf)} f"
            cells.append(f"{int(steps)} steps{nf}{status}, {1e3 * t:.1f} ms, err {err:.1e}")
        ratio = f"{best[1] / best[0]:.1f}x" if len(best) > 1 else "n/a"
        cells += ["n/a"] * (2 - len(cells))
        rows.append(f"| {name} | {mname} (rtol {rtol:g}, atol {atol:g}) | {cells[0]} | {cells[1]} | {ratio} |")
        print(rows[-1], file=sys.stderr, flush=True)
    return rows


def peer_rows(name, f, y0, t1, rtol, atol, ref, cap, repeats):
    runs = [
        ("diffsci Rodas5P", lambda: run_ours(Rodas5P(), f, y0, t1, rtol, atol, 50_000, repeats)),
        ("diffsci Kvaerno5", lambda: run_ours(Kvaerno5().with_tolerances(rtol, atol), f, y0, t1,
                                              rtol, atol, 50_000, repeats)),
        (f"diffrax Kvaerno5 (cap {cap})", lambda: run_diffrax(f, y0, t1, rtol, atol, cap, repeats)),
        ("scipy Radau", lambda: run_scipy("Radau", f, y0, t1, rtol, atol, min(repeats, 2))),
        ("scipy BDF", lambda: run_scipy("BDF", f, y0, t1, rtol, atol, min(repeats, 2))),
    ]
    rows = []
    for solver, run in runs:
        r = run()
        err = np.max(np.abs(r["y"] - ref) / np.abs(ref)) if r["ok"] else np.nan
        rej = "" if r["rejected"] is None else f" ({r['rejected']} rej.)"
        rows.append(f"| {name} (rtol {rtol:g}, atol {atol:g}) | {solver} | {r['status']} | "
                    f"{r['steps']}{rej} | {1e3 * r['time']:.1f} | {err:.1e} |")
        print(rows[-1], file=sys.stderr, flush=True)  # progress; the tables go to stdout
    return rows


PEER_HEADER = ("| problem | solver | status | steps | time (ms) | max rel. error |\n"
               "|---|---|---|---|---|---|")
SAME_HEADER = ("| problem | method (tolerances) | diffsci | diffrax | diffrax time / diffsci time |\n"
               "|---|---|---|---|---|")
PEER_NOTE = (
    "Time: one solve after compilation (best of runs). Steps: attempted steps "
    "(rejected in brackets; scipy reports accepted steps only). Error: max over "
    "components of |y - ref| / |ref| at the final time; references are the Bari "
    "Test Set values (ROBER, VDPOL) and scipy Radau at rtol=1e-12 (OREGO, HIRES). "
    "scipy gets the Jacobian from jax (jitted jacfwd). diffsci Kvaerno5 is "
    "`Kvaerno5().with_tolerances(rtol, atol)` (Newton tolerance a hundredth of the "
    "step tolerances); diffrax Kvaerno5 uses `PIDController(rtol, atol)` with its "
    "default coefficients.")
SAME_NOTE = (
    "## The same methods in diffsci and diffrax\n\n"
    "Each method at a tolerance suited to its order (atol scaled like the problem's above), "
    "both with `PIDController`-style control at their defaults (diffsci ties its Newton "
    "tolerance to rtol/atol; diffrax's root finders use the controller's). Each cell: "
    "attempted steps, (diffsci) f evaluations, best time of interleaved runs after "
    "compilation, error as above. Ratio > 1: diffsci faster.")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--problems", default=",".join(PROBLEMS))
    ap.add_argument("--quick", action="store_true", help="rtol 1e-6, small caps (smoke run)")
    ap.add_argument("--only", choices=["peers", "same"], default=None, help="one of the two tables")
    ap.add_argument("--diffrax-max-steps", type=int, default=100_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-write", action="store_true", help="don't write docs/bench_stiff.md")
    a = ap.parse_args()

    peers, same = [], []
    for name in a.problems.split(","):
        f, y0, t1, rtol, atol, ref = PROBLEMS[name]
        rtol0, atol0 = rtol, atol
        if a.quick:
            rtol, atol = 1e-6, max(atol, 1e-6 * atol / 1e-9)
        ref = np.asarray(ref) if ref is not None else reference(f, y0, t1)
        cap = 5000 if a.quick else a.diffrax_max_steps
        if a.only != "same":
            peers += peer_rows(name, f, y0, t1, rtol, atol, ref, cap, a.repeats)
        if a.only != "peers":
            same += same_method_rows(name, f, y0, t1, rtol0, atol0, ref, cap, a.repeats)

    tables = []
    if peers:
        tables.append(PEER_NOTE + "\n\n" + PEER_HEADER + "\n" + "\n".join(peers))
    if same:
        tables.append(SAME_NOTE + "\n\n" + SAME_HEADER + "\n" + "\n".join(same))
    text = "\n\n".join(tables)
    print("\n" + text)
    if not a.no_write:
        cmd = "python benchmarks/stiff.py " + " ".join(sys.argv[1:])
        head = (f"# Stiff solvers benchmark\n\nProduced by `{cmd.strip()}` on {jax.devices()[0].platform.upper()} "
                f"({os.cpu_count()} cores), jax {jax.__version__}, diffrax {diffrax.__version__}.\n\n")
        path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "docs", "bench_stiff.md")
        with open(path, "w") as fh:
            fh.write(head + text + "\n")
        print(f"written to {os.path.normpath(path)}", file=sys.stderr)


if __name__ == "__main__":
    main()
