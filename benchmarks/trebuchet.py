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
    miss, target = np.abs(np.asarray(miss)), np.asarray(target)
    ok = np.isfinite(miss)
    rel = miss[ok] / target[ok]
    return (f"{np.mean(miss[ok]):.3g} m ({100 * np.mean(rel):.3g}%)",
            f"{np.max(miss[ok]):.3g} m ({100 * np.max(rel):.3g}%)", f"{ok.sum()}/{len(ok)}")


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
    n_fresh, n_direct, n_nm = (50, 3, 2) if args.quick else (2000, 50, 20)

    start = time.perf_counter()
    aimer = tb.train_aimer(jax.random.PRNGKey(0), p, **(dict(steps=5, batch=8) if args.quick else {}))
    train_s = time.perf_counter() - start
    target, wind = (np.asarray(x) for x in tb.sample_queries(jax.random.PRNGKey(1), n_fresh))
    net_miss = np.asarray(tb.misses(aimer, target, wind, p))
    q_t, q_w = target[:1000], wind[:1000]
    tb.aim(aimer, q_t, q_w)
    net_s = min(timeit.repeat(lambda: jax.block_until_ready(tb.aim(aimer, q_t, q_w)), number=1, repeat=50)) / len(q_t)

    shoot = jax.jit(lambda w, a, m: tb.shoot_with_status(w, a, m, p)[0])
    tb.aim_direct(70.0, -4.0, p)  # compile
    rows = {}
    for name, n, method in (("direct", n_direct, "newton"), ("nm", n_nm, "nm")):
        times, miss = [], []
        evals = []
        for t_, w_ in zip(target[:n], wind[:n]):
            t0 = time.perf_counter()
            if method == "newton":
                a, m = tb.aim_direct(float(t_), float(w_), p)
                jax.block_until_ready(m)
            else:
                a, m, nfev = nelder_mead(shoot, float(t_), float(w_))
                evals.append(nfev)
            times.append(time.perf_counter() - t0)
            miss.append(float(shoot(float(w_), a, m)) - t_ if np.isfinite(m) else np.nan)
        rows[name] = (np.median(times), np.array(miss), target[:n], evals)

    net = miss_stats(net_miss, target)
    calm = np.abs(wind) <= 10.0  # within two standard deviations
    net_calm = miss_stats(net_miss[calm], target[calm])
    worst = int(np.nanargmax(np.abs(net_miss) / target))
    worst_text = (f"Network's worst query: target {target[worst]:.1f} m, wind {wind[worst]:+.1f} m/s, "
                  f"miss {net_miss[worst]:+.2f} m.")
    direct = miss_stats(rows["direct"][1], rows["direct"][2])
    nm = miss_stats(rows["nm"][1], rows["nm"][2])
    table = [
        "| | network (ours) | direct Newton through `shoot` (ours) | Nelder-Mead on `shoot` (scipy) "
        "| Trebuchet.jl (published) |",
        "|---|---|---|---|---|",
        f"| setup | training {train_s:.0f} s (compile included) | none | none | training ~5 min |",
        f"| time per query | {1e6 * net_s:.2f} us (1000 at once) | {1e3 * rows['direct'][0]:.1f} ms "
        f"| {1e3 * rows['nm'][0]:.0f} ms ({np.median(rows['nm'][3]):.0f} simulations) "
        "| ~5 us network, ~100 ms direct |",
        f"| mean miss | {net[0]} | {direct[0]} | {nm[0]} | ~16 cm (0.3%) |",
        f"| max miss | {net[1]} | {direct[1]} | {nm[1]} | |",
        f"| mean / max miss, \\|wind\\| <= 10 m/s | {net_calm[0]} / {net_calm[1]} | | | |",
        f"| queries answered | {net[2]} | {direct[2]} | {nm[2]} | |",
    ]
    machine = f"{platform.machine()}, {os.cpu_count()} CPU cores, jax {jax.__version__}"
    text = "\n".join(table) + "\n\n" + worst_text
    print(text)
    if args.md:
        cmd = "python " + " ".join(sys.argv)
        with open(args.md, "w") as f:
            f.write("# Trebuchet aiming benchmark\n\n")
            f.write(f"Produced by `{cmd}` on {machine}.\n\n")
            f.write(f"Network: {n_fresh} fresh (target, wind) pairs (target uniform 20-100 m, "
                    "wind normal sd 5 m/s); direct Newton (release angle fixed at 30 degrees, "
                    f"counterweight by forward-mode Newton): {n_direct} queries; Nelder-Mead "
                    f"over (angle, log weight): {n_nm} queries. Misses are checked with `shoot` at "
                    "its default tolerance. Times are wall clock on a shared machine: medians "
                    "for the per-query methods, best of 50 for the network batch.\n\n")
            f.write(text + "\n")
        print(f"wrote {args.md}")


if __name__ == "__main__":
    main()
