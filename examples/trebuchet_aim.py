"""Neural aiming: a network learns to aim a trebuchet by backpropagating through the simulator.

    python examples/trebuchet_aim.py [--quick] [--out DIR] [--steps N] [--seed S]

Trains `trebuchet.train_aimer` (target uniform in 20-100 m, wind normal with sd 5 m/s),
reports its misses on fresh (target, wind) pairs, times the network against direct
Newton aiming through the simulator, and plots the miss against target and wind
(DIR/trebuchet_aim.png).
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

from physics import trebuchet as tb  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a few training steps (for tests)")
    ap.add_argument("--out", default="out", help="directory for the pictures")
    ap.add_argument("--steps", type=int, default=None, help="training steps (default: library's)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    p = tb.Trebuchet()
    key = jax.random.PRNGKey(args.seed)

    train = dict(steps=args.steps or 10, batch=8) if args.quick else {}
    if args.steps:
        train["steps"] = args.steps
    start = time.perf_counter()
    aimer = tb.train_aimer(key, p, **train)
    train_s = time.perf_counter() - start
    print(f"trained in {train_s:.1f} s (compilation included)")

    n = 100 if args.quick else 2000
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

    # Timings: the network on 1000 queries at once; direct Newton aiming one query at a time.
    q_t, q_w = target[:1000], wind[:1000]
    tb.aim(aimer, q_t, q_w)  # compile
    # Best of repeats: the run least disturbed by other load.
    run = lambda: jax.block_until_ready(tb.aim(aimer, q_t, q_w))  # noqa: E731
    net_s = min(timeit.repeat(run, number=1, repeat=5 if args.quick else 50))
    print(f"network: {len(q_t)} queries in {1e3 * net_s:.3f} ms "
          f"({1e6 * net_s / len(q_t):.3f} us a query)")
    tb.aim_direct(70.0, -4.0, p)  # compile
    k = 3 if args.quick else 30
    direct_s, direct_miss = [], []
    for t_, w_ in zip(target[:k], wind[:k]):
        t0 = time.perf_counter()
        a, m = tb.aim_direct(float(t_), float(w_), p)
        jax.block_until_ready(m)
        direct_s.append(time.perf_counter() - t0)
        if np.isfinite(m):
            direct_miss.append(abs(float(tb.shoot(float(w_), a, m, p)) - t_))
    print(f"direct Newton aiming: median {1e3 * np.median(direct_s):.2f} ms a query, "
          f"max |miss| {max(direct_miss, default=math.nan):.2e} m "
          f"({len(direct_miss)}/{k} reachable at its fixed angle)")

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, x, label in zip(axes, (target, wind), ("target (m)", "wind (m/s, + = tailwind)")):
        ax.scatter(x, 100 * miss / target, s=4, alpha=0.5)
        ax.axhline(0, color="0.5", lw=1)
        ax.set(xlabel=label)
    axes[0].set(ylabel="miss (% of target)")
    fig.suptitle(f"neural aiming through the simulator: mean |miss| {100 * np.mean(rel):.3f}% "
                 f"after {train_s:.0f} s of training")
    fig.tight_layout()
    fig.savefig(os.path.join(args.out, "trebuchet_aim.png"), dpi=100)
    plt.close(fig)
    print(f"wrote {args.out}/trebuchet_aim.png")


if __name__ == "__main__":
    main()
