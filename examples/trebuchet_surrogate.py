"""Neural-surrogate control training: aim the trebuchet through a network that imitates the
simulator, and compare with aiming trained through the simulator itself.

    python examples/trebuchet_surrogate.py [--quick] [--out DIR]

Fits `trebuchet.train_surrogate` (an MLP from wind, angle, weight to distance) to throws
of `shoot`, trains one aimer through the surrogate and one through the simulator, measures
both aimers' misses with the real simulator on fresh queries, and plots the surrogate's
error over the (angle, weight) range at three winds (DIR/trebuchet_surrogate.png).
"""

import argparse
import math
import os
import time

import jax

jax.config.update("jax_enable_x64", True)

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import solvers  # noqa: E402
from physics import _envelope, _surrogate  # noqa: E402
from physics import trebuchet as tb  # noqa: E402

solvers.enable_compilation_cache()  # opt-in: reuse compiled programs across runs (~/.cache/diffsci/jax)


def stats(miss, target):
    rel = 100 * np.abs(miss) / target
    return f"mean {np.mean(rel):.3f}%, 95th percentile {np.percentile(rel, 95):.3f}%, max {rel.max():.2f}%"


def surrogate_error_grid(sur, p, wind, n):
    """Surrogate minus simulator (m) on an n x n grid of (angle, log weight) at one wind."""
    angle = np.linspace(*_envelope.ANGLE_RANGE, n)
    log_w = np.linspace(*np.log(_envelope.WEIGHT_RANGE), n)
    a, lw = np.meshgrid(angle, log_w, indexing="ij")
    w = np.full_like(a, wind)
    zeros = np.zeros_like(a)
    d_true, _ = _envelope.shoot_dir(w, a, lw, zeros, zeros, tb._as_arrays(p), 1e-8)
    d_sur, _ = _surrogate.directional(sur)(w, a, lw, zeros, zeros)
    return angle, np.exp(log_w), (d_sur - d_true).reshape(a.shape)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes (for tests)")
    ap.add_argument("--out", default="out", help="directory for the pictures")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    p = tb.Trebuchet()
    key = jax.random.PRNGKey(0)
    sur_kw = dict(n=256, steps=50) if args.quick else {}
    aim_kw = dict(rounds=1, batch=256, steps=10, refit_steps=5) if args.quick else {}

    t0 = time.perf_counter()
    sur = tb.train_surrogate(key, p, **sur_kw)
    sur_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    via_sur = tb.train_aimer(key, p, surrogate=sur, **aim_kw)
    via_sur_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    via_sim = tb.train_aimer(key, p, **aim_kw)
    via_sim_s = time.perf_counter() - t0

    n = 100 if args.quick else 2000
    target, wind = (np.asarray(x) for x in tb.sample_queries(jax.random.PRNGKey(1), n))
    m_sur = np.asarray(tb.misses(via_sur, target, wind, p))
    m_sim = np.asarray(tb.misses(via_sim, target, wind, p))
    print(f"surrogate: fitted in {sur_s:.1f} s (throws and compilation included)")
    print(f"aimer through the surrogate: trained in {via_sur_s:.1f} s (+ {sur_s:.1f} s of "
          f"surrogate); misses measured by the simulator on {n} queries: {stats(m_sur, target)}")
    print(f"aimer through the simulator: trained in {via_sim_s:.1f} s; misses: {stats(m_sim, target)}")

    winds = (-10.0, 0.0, 10.0)
    grid = 12 if args.quick else 40
    fig, axes = plt.subplots(1, 4, figsize=(17, 4))
    for ax, w in zip(axes, winds):
        angle, weight, err = surrogate_error_grid(sur, p, w, grid)
        im = ax.pcolormesh(np.degrees(angle), weight, err.T, cmap="RdBu_r", shading="auto",
                           vmin=-np.abs(err).max(), vmax=np.abs(err).max())
        ax.set(yscale="log", xlabel="release angle (deg)", title=f"surrogate error (m), wind {w:+g} m/s")
        fig.colorbar(im, ax=ax)
        print(f"surrogate error at wind {w:+g} m/s: rms {math.sqrt(np.mean(err**2)):.3f} m, "
              f"max {np.abs(err).max():.3f} m")
    axes[0].set(ylabel="counterweight (kg)")
    axes[3].scatter(target, 100 * np.abs(m_sur) / target, s=3, label="trained through the surrogate")
    axes[3].scatter(target, 100 * np.abs(m_sim) / target, s=3, label="trained through the simulator")
    axes[3].set(yscale="log", xlabel="target (m)", ylabel="|miss| (% of target, simulator)")
    axes[3].legend(fontsize=8)
    fig.tight_layout()
    path = os.path.join(args.out, "trebuchet_surrogate.png")
    fig.savefig(path, dpi=90)
    plt.close(fig)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
