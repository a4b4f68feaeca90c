"""Neural aiming: a network learns to aim a trebuchet by backpropagating through the simulator.

    python examples/trebuchet_aim.py [--quick] [--out DIR] [--rounds N] [--seed S]

Trains `trebuchet.train_aimer` (target uniform in 20-100 m, wind normal with sd 5 m/s;
26 s on 2 quiet cores, compilation included;
47-94 s when they were shared at load 4.5-8.5), reports its misses on fresh (target, wind) pairs, shows
the reachability flags, times the network against direct Newton aiming through the
simulator (batched), and plots the miss against target and wind (DIR/trebuchet_aim.png).
"""

import argparse
import math
import os
import time
import timeit

import jax

jax.config.update("jax_enable_x64", True)

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import solvers  # noqa: E402
from physics import trebuchet as tb  # noqa: E402

solvers.enable_compilation_cache()  # opt-in: reuse compiled programs across runs (~/.cache/diffsci/jax)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a few training steps (for tests)")
    ap.add_argument("--out", default="out", help="directory for the pictures")
    ap.add_argument("--rounds", type=int, default=None, help="training rounds (default: library's)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    p = tb.Trebuchet()
    key = jax.random.PRNGKey(args.seed)

    train = dict(rounds=1, batch=256, steps=20, refit_steps=5) if args.quick else {}
    if args.rounds:
        train["rounds"] = args.rounds
    start = time.perf_counter()
    aimer = tb.train_aimer(key, p, **train)
    train_s = time.perf_counter() - start
    print(f"trained in {train_s:.1f} s (compilation included)")

    n = 100 if args.quick else 5000
    target, wind = tb.sample_queries(jax.random.PRNGKey(args.seed + 1), n)
    miss = np.asarray(tb.misses(aimer, target, wind, p))
    target, wind = np.asarray(target), np.asarray(wind)
    rel = np.abs(miss) / target
    print(f"misses on {n} fresh (target, wind) pairs: mean {np.mean(np.abs(miss)):.3f} m "
          f"({100 * np.mean(rel):.3f}% of the target), median {np.median(np.abs(miss)):.3f} m, "
          f"95th percentile {100 * np.percentile(rel, 95):.3f}%, max {100 * rel.max():.2f}%")

    angle, weight = tb.aim(aimer, 70.0, -4.0)
    d = tb.shoot(-4.0, angle, weight, p)
    print(f"'hit 70 m with a 4 m/s headwind': release at {math.degrees(float(angle)):.1f} deg, "
          f"counterweight {float(weight):.1f} kg -> {float(d):.3f} m")
    for t_, w_ in ((1000.0, 0.0), (-50.0, 0.0), (100.0, -15.0)):
        r = tb.aim(aimer, t_, w_)
        print(f"target {t_:g} m, wind {w_:+g} m/s: reachable {bool(r.reachable)}, "
              f"best possible miss {float(r.predicted_miss):+.1f} m")

    # Timings: the network and direct Newton aiming, both on 1000 queries at once.
    k = 32 if args.quick else 1000
    q_t, q_w = target[:k], wind[:k]
    tb.aim(aimer, q_t, q_w)  # compile
    # Best of repeats: the run least disturbed by other load.
    run = lambda: jax.block_until_ready(tb.aim(aimer, q_t, q_w))  # noqa: E731
    net_s = min(timeit.repeat(run, number=1, repeat=5 if args.quick else 50))
    print(f"network: {len(q_t)} queries in {1e3 * net_s:.3f} ms "
          f"({1e6 * net_s / len(q_t):.3f} us a query)")
    env = aimer.envelope
    tb.aim_direct(q_t, q_w, p, envelope_=env)  # compile
    t0 = time.perf_counter()
    r = tb.aim_direct(q_t, q_w, p, envelope_=env)
    direct_s = (time.perf_counter() - t0) / k
    ok = np.asarray(r.reachable)
    print(f"direct Newton aiming: {1e3 * direct_s:.2f} ms a query ({k} at once), "
          f"max |miss| {np.max(np.abs(np.asarray(r.predicted_miss)[ok]), initial=0):.2e} m, "
          f"{ok.sum()}/{k} reachable")

    reach = np.asarray(tb.aim(aimer, target, wind).reachable)
    pct = 100 * miss / target
    span = 1.2 * np.max(np.abs(pct[reach]), initial=0.01)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, x, label in zip(axes, (target, wind), ("target (m)", "wind (m/s, + = tailwind)")):
        ax.scatter(x[reach], pct[reach], s=4, alpha=0.5, label="reachable")
        # Out of reach (flagged by aim): drawn at the edge of the plot.
        ax.scatter(x[~reach], np.clip(pct[~reach], -span, span), s=25, marker="x", color="C3",
                   label=f"out of reach ({np.sum(~reach)}, flagged)")
        ax.axhline(0, color="0.5", lw=1)
        ax.set(xlabel=label, ylim=(-span, span))
    axes[0].set(ylabel="miss (% of target)")
    axes[0].legend(fontsize=8)
    fig.suptitle(f"neural aiming through the simulator: mean |miss| {100 * np.mean(rel):.3f}% "
                 f"after {train_s:.0f} s of training")
    fig.tight_layout()
    fig.savefig(os.path.join(args.out, "trebuchet_aim.png"), dpi=100)
    plt.close(fig)
    print(f"wrote {args.out}/trebuchet_aim.png")


if __name__ == "__main__":
    main()
