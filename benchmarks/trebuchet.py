"""Aiming a trebuchet three ways, side by side: the trained network, direct Newton aiming
through the differentiable simulator, and derivative-free Nelder-Mead on the simulator.

    python benchmarks/trebuchet.py [--quick] [--md docs/bench_trebuchet.md]

Prints a markdown table (and writes it, with the command that produced it, to --md).
Published figures of Trebuchet.jl (Julia, explicit Euler at 60 Hz, forward mode) for
reference: about 5 minutes of training on one laptop core to misses of about 16 cm (0.3%),
about 100 ms a query by direct optimisation, about 5 us by the network.
"""

import argparse
import math
import os
import platform
import sys
import time
import timeit

import jax

jax.config.update("jax_enable_x64", True)

import numpy as np  # noqa: E402
from scipy.optimize import minimize  # noqa: E402

from physics import trebuchet as tb  # noqa: E402


def miss_stats(miss, target):
    """mean, 95th percentile and max of |miss| (m and % of the target), and the count."""
    miss, target = np.abs(np.asarray(miss)), np.asarray(target)
    ok = np.isfinite(miss)
    rel = 100 * miss[ok] / target[ok]
    f = lambda m, r: f"{m:.3g} m ({r:.3g}%)"  # noqa: E731
    return (f(np.mean(miss[ok]), np.mean(rel)), f(np.percentile(miss[ok], 95), np.percentile(rel, 95)),
            f(np.max(miss[ok]), np.max(rel)), f"{ok.sum()}/{len(ok)}")


def nelder_mead(shoot, target, wind):
    """Derivative-free baseline: minimise (distance - target)^2 over (angle, log weight)."""
    def loss(x):
        d = float(shoot(wind, x[0], math.exp(x[1])))
        return (d - target) ** 2 if math.isfinite(d) else 1e6

    res = minimize(loss, x0=[math.radians(30), math.log(60.0)], method="Nelder-Mead",
                   options=dict(xatol=1e-7, fatol=1e-6, maxfev=400))
    return res.x[0], math.exp(res.x[1]), res.nfev


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    ap.add_argument("--md", default=None, help="also write the table to this markdown file")
    args = ap.parse_args()
    p = tb.Trebuchet()
    n_fresh, n_direct, n_nm = (50, 16, 2) if args.quick else (5000, 1000, 20)

    quick = dict(rounds=1, batch=256, steps=10, refit_steps=5) if args.quick else {}
    # Trained twice in one process: the second run reuses every compiled function, so the
    # difference is the compilation.
    times = []
    for _ in range(2):
        start = time.perf_counter()
        aimer = tb.train_aimer(jax.random.PRNGKey(0), p, progress=False, **quick)
        times.append(time.perf_counter() - start)
    train_s, run_s = times
    target, wind = (np.asarray(x) for x in tb.sample_queries(jax.random.PRNGKey(1), n_fresh))
    net_miss = np.asarray(tb.misses(aimer, target, wind, p))
    reach = np.asarray(tb.aim(aimer, target, wind).reachable)
    q_t, q_w = target[:1000], wind[:1000]
    tb.aim(aimer, q_t, q_w)
    net_s = min(timeit.repeat(lambda: jax.block_until_ready(tb.aim(aimer, q_t, q_w)), number=1, repeat=50)) / len(q_t)

    d_t, d_w = target[:n_direct], wind[:n_direct]
    tb.aim_direct(d_t, d_w, p, envelope_=aimer.envelope)  # compile
    start = time.perf_counter()
    r = tb.aim_direct(d_t, d_w, p, envelope_=aimer.envelope)
    direct_s = (time.perf_counter() - start) / n_direct
    direct_miss = np.where(np.asarray(r.reachable), np.asarray(r.predicted_miss), np.nan)

    shoot = jax.jit(lambda w, a, m: tb.shoot_with_status(w, a, m, p)[0])
    nm_times, nm_miss, evals = [], [], []
    for t_, w_ in zip(target[:n_nm], wind[:n_nm]):
        t0 = time.perf_counter()
        a, m, nfev = nelder_mead(shoot, float(t_), float(w_))
        nm_times.append(time.perf_counter() - t0)
        evals.append(nfev)
        nm_miss.append(float(shoot(float(w_), a, m)) - t_)

    net = miss_stats(net_miss, target)
    net_ok = miss_stats(net_miss[reach], target[reach])
    rel = np.abs(net_miss) / target
    worst = int(np.nanargmax(rel))
    worst_ok = int(np.nanargmax(np.where(reach, rel, -1)))
    worst_text = (f"Network's worst query: target {target[worst]:.1f} m, wind {wind[worst]:+.1f} m/s, "
                  f"miss {net_miss[worst]:+.2f} m (reachable: {bool(reach[worst])}); worst reachable: "
                  f"target {target[worst_ok]:.1f} m, wind {wind[worst_ok]:+.1f} m/s, miss "
                  f"{net_miss[worst_ok]:+.3f} m. {np.sum(~reach)} of {n_fresh} queries are out of reach "
                  "(flagged by `aim`).")
    direct = miss_stats(direct_miss, d_t)
    nm = miss_stats(nm_miss, target[:n_nm])
    table = [
        "| | network (ours) | direct Newton through `shoot` (ours) | Nelder-Mead on `shoot` (scipy) "
        "| Trebuchet.jl (published) |",
        "|---|---|---|---|---|",
        f"| setup | training {train_s:.0f} s ({train_s - run_s:.0f} s compiling, {run_s:.0f} s running) "
        "| envelope table (part of the training) | none | training ~5 min |",
        f"| time per query | {1e6 * net_s:.2f} us (1000 at once) | {1e3 * direct_s:.2f} ms ({n_direct} at once) "
        f"| {1e3 * np.median(nm_times):.0f} ms ({np.median(evals):.0f} simulations) "
        "| ~5 us network, ~100 ms direct |",
        f"| mean miss | {net[0]} | {direct[0]} | {nm[0]} | ~16 cm (0.3%) |",
        f"| 95th percentile miss | {net[1]} | {direct[1]} | {nm[1]} | |",
        f"| max miss | {net[2]} | {direct[2]} | {nm[2]} | |",
        f"| mean / 95th / max miss, reachable queries | {net_ok[0]} / {net_ok[1]} / {net_ok[2]} | | | |",
        f"| queries answered | {net[3]} | {direct[3]} | {nm[3]} | |",
    ]
    machine = f"{platform.machine()}, {os.cpu_count()} CPU cores, jax {jax.__version__}"
    text = "\n".join(table) + "\n\n" + worst_text
    print(text)
    if args.md:
        cmd = "python " + " ".join(sys.argv)
        with open(args.md, "w") as f:
            f.write("# Trebuchet aiming benchmark\n\n")
            f.write(f"Produced by `{cmd}` on {machine}.\n\n")
            load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
            f.write(f"Network: {n_fresh} fresh (target, wind) pairs (target uniform 20-100 m, "
                    "wind normal sd 5 m/s), misses of its raw aim (unreachable queries included, "
                    "with their best try) checked with `shoot` at rtol 1e-8; direct Newton along "
                    f"the aiming path (`aim_direct`, batched): {n_direct} queries, misses of the "
                    f"reachable ones; Nelder-Mead over (angle, log weight): {n_nm} queries. Times "
                    "are wall clock on a shared machine (1-minute load average at the end: "
                    f"{load:.1f}): best of 50 for the network batch, median for Nelder-Mead.\n\n")
            f.write(text + "\n")
        print(f"wrote {args.md}")


if __name__ == "__main__":
    main()
