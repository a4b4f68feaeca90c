"""One throw of the trebuchet: an animation (GIF) and a plot of the trajectory, phases marked.

    python examples/trebuchet.py [--quick] [--out DIR] [--wind W] [--angle DEG] [--weight KG]

Writes DIR/trebuchet_throw.gif and DIR/trebuchet_trajectory.png, and prints the phase
times, the distance, the energy drift through the launch and d distance / d inputs.
"""

import argparse
import math
import os

import jax

jax.config.update("jax_enable_x64", True)

import imageio.v2 as imageio  # noqa: E402
import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import solvers  # noqa: E402
from physics import trebuchet as tb  # noqa: E402

solvers.enable_compilation_cache()  # opt-in: reuse compiled programs across runs (~/.cache/diffsci/jax)

PHASES = ["on the ground", "in the sling", "in flight"]
COLORS = ["tab:brown", "tab:orange", "tab:blue"]


def plot_trajectory(traj, p, path):
    fig, (ax, ax_e) = plt.subplots(2, 1, figsize=(9, 7), gridspec_kw=dict(height_ratios=[2, 1]))
    xy, phase = np.asarray(traj.projectile), np.asarray(traj.phase)
    for k, (name, color) in enumerate(zip(PHASES, COLORS)):
        sel = phase == k
        ax.plot(xy[sel, 0], xy[sel, 1] + p.pivot_height, color=color, label=name)
    rel = int(np.searchsorted(phase, 2))
    ax.plot(*(xy[rel] + [0, p.pivot_height]), "o", color="k", label="release")
    ax.axhline(0, color="0.5", lw=1)
    ax.set(xlabel="x (m)", ylabel="height (m)", aspect="equal",
           title=f"distance {float(traj.distance):.2f} m")
    ax.legend()
    e = np.asarray(tb.energy(traj, p))
    launch = phase < 2
    ax_e.plot(np.asarray(traj.t)[launch], e[launch] - e[0])
    for t in (traj.t_liftoff, traj.t_release):
        ax_e.axvline(float(t), color="0.5", ls="--")
    ax_e.set(xlabel="t (s)", ylabel="E(t) - E(0) (J)", title="energy drift during the launch")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def animate(traj, p, path, frames):
    pts = {k: np.asarray(v) for k, v in traj.machine(p).items()}
    xy = np.asarray(traj.projectile)
    t = np.asarray(traj.t)
    # Frames evenly spaced in time over the launch, then the flight faster.
    launch_end = float(traj.t_release)
    times = np.concatenate([np.linspace(0, launch_end, frames // 2),
                            np.linspace(launch_end, float(traj.t_landing), frames - frames // 2)])
    H = p.pivot_height
    # Left: the machine up close; right: the whole flight.
    fig, (ax_m, ax_f) = plt.subplots(1, 2, figsize=(10, 3.6), gridspec_kw=dict(width_ratios=[1, 2]))
    images = []
    for tf in times:
        i = min(int(np.searchsorted(t, tf)), len(t) - 1)
        tip, hinge, w = pts["tip"][i] + [0, H], pts["hinge"][i] + [0, H], pts["weight"][i] + [0, H]
        proj = xy[i] + [0, H]
        for ax in (ax_m, ax_f):
            ax.clear()
            ax.axhline(0, color="0.5")
            ax.plot([0, 0], [0, H], color="k", lw=3)  # the frame
            ax.plot([hinge[0], tip[0]], [hinge[1], tip[1]], color="saddlebrown", lw=4)
            ax.plot([hinge[0], w[0]], [hinge[1], w[1]], color="k", lw=1)
            ax.plot(*w, "s", color="0.3", ms=10)
            if traj.phase[i] < 2:
                ax.plot([tip[0], proj[0]], [tip[1], proj[1]], color="k", lw=1)
            ax.plot(xy[: i + 1, 0], xy[: i + 1, 1] + H, color="tab:blue", lw=0.8, alpha=0.6)
            ax.plot(*proj, "o", color="tab:red", ms=5)
        ax_m.set(xlim=(-4.5, 3.5), ylim=(-0.3, 6), aspect="equal", title=f"t = {tf:.2f} s")
        ax_f.set(xlim=(-5, max(10.0, float(traj.distance) + 5)), ylim=(-0.5, 40), aspect="equal",
                 title=PHASES[int(traj.phase[i])])
        fig.tight_layout()
        fig.canvas.draw()
        images.append(np.asarray(fig.canvas.buffer_rgba())[..., :3].copy())
    plt.close(fig)
    imageio.mimsave(path, images, duration=0.05, loop=0)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="few frames (for tests)")
    ap.add_argument("--out", default="out", help="directory for the pictures")
    ap.add_argument("--wind", type=float, default=-4.0, help="m/s, positive = tailwind")
    ap.add_argument("--angle", type=float, default=40.0, help="release angle, degrees")
    ap.add_argument("--weight", type=float, default=60.0, help="counterweight, kg")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)

    p = tb.Trebuchet()
    angle = math.radians(args.angle)
    traj = tb.simulate(args.wind, angle, args.weight, p)
    e = np.asarray(tb.energy(traj, p))
    launch = np.asarray(traj.phase) < 2
    print(f"wind {args.wind} m/s, release at {args.angle} deg, counterweight {args.weight} kg")
    print(f"lift-off {float(traj.t_liftoff):.4f} s, release {float(traj.t_release):.4f} s, "
          f"landing {float(traj.t_landing):.4f} s, distance {float(traj.distance):.3f} m")
    # Scale for the drift: the potential energy the counterweight gives up in its fall.
    h = np.asarray(traj.machine(p)["weight"][launch, 1])
    drop = args.weight * p.gravity * (h[0] - h.min())
    print(f"energy drift through the launch: {np.max(np.abs(e[launch] - e[0])):.2e} J "
          f"(the counterweight's fall releases {drop:.1f} J)")
    grads = jax.grad(tb.shoot, argnums=(0, 1, 2))(args.wind, angle, args.weight, p)
    print("d distance / d (wind, angle, weight) = "
          + ", ".join(f"{float(g):.4f}" for g in grads) + " (m per m/s, m per rad, m per kg)")

    plot_trajectory(traj, p, os.path.join(args.out, "trebuchet_trajectory.png"))
    animate(traj, p, os.path.join(args.out, "trebuchet_throw.gif"), 8 if args.quick else 90)
    print(f"wrote {args.out}/trebuchet_trajectory.png and {args.out}/trebuchet_throw.gif")


if __name__ == "__main__":
    main()
