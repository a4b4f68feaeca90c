"""Recover a point light's position from a rendered image (the Zygote paper's demo).

Scene (RayTracer.jl / Zygote paper): one green triangle (-1.7,1,0), (1,1,0),
(-0.5,-1,0) with reflection 0.5, eye at (0,0,-5) looking at the origin, vfov
45, 200x200.  The "photograph" is rendered with a point light of intensity
20000 at (5,5,-10); the fit starts from (1,2,-7) and minimises the mean
squared pixel difference.

Two optimisers side by side:
  * Adam (optax, lr 0.05), as in the paper: gets close in ~100 steps but then
    creeps along an ill-conditioned valley of the loss;
  * Levenberg-Marquardt on the residual image, with its Jacobian (pixels x 3)
    from forward mode (`jax.jacfwd`, three JVPs through the renderer): a few
    iterations to machine-precision agreement.

    python examples/point_light.py               # full demo, writes to out/point_light
    python examples/point_light.py --quick --out /tmp/pl
"""

from __future__ import annotations

import argparse
import os
import time

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from _fit import adam, jacobian_and_residual, levenberg_marquardt  # noqa: E402  (examples/_fit.py)

import raytrace as rt  # noqa: E402
import solvers  # noqa: E402

solvers.enable_compilation_cache()  # opt-in: reuse compiled programs across runs (~/.cache/diffsci/jax)

TARGET = np.array([5.0, 5.0, -10.0])
START = np.array([1.0, 2.0, -7.0])
INTENSITY = 20000.0


def make_problem(size):
    green = rt.Material((0.0, 1.0, 0.0), ambient=0.0, diffuse=1.0, specular=0.0, reflection=0.5)
    tri = rt.Triangle((-1.7, 1.0, 0.0), (1.0, 1.0, 0.0), (-0.5, -1.0, 0.0), green)
    cam = rt.Camera((0.0, 0.0, -5.0), (0.0, 0.0, 0.0), vfov=45.0, width=size, height=size)

    @jax.jit
    def image(pos):
        return rt.render(rt.Scene([tri], [rt.PointLight(pos, INTENSITY)]), cam)

    target = image(jnp.asarray(TARGET))

    @jax.jit
    def residual(pos):
        # Scaled so that sum(residual**2) is the mean squared pixel difference.
        return (image(pos) - target).ravel() / np.sqrt(target.size)

    return image, residual, target


def write_pictures(out, image, target, adam_path, adam_loss, lm_path, lm_loss, size):
    """target/start/final PNGs, the fit GIF (Adam left, LM right) and the loss plot.

    The triangle's radiance is 7.5-31.5 (far above white), so every picture
    is exposed alike: the exposure that maps the target's 99th percentile to
    0.9, then Reinhard tone mapping, so that brighter or darker lighting
    stays visible instead of clipping to pure green."""
    look = dict(exposure=rt.exposure_for(target), tonemap="reinhard")
    rt.save_image(os.path.join(out, "target.png"), target, **look)
    rt.save_image(os.path.join(out, "start.png"), image(jnp.asarray(START)), **look)
    rt.save_image(os.path.join(out, "final_adam.png"), image(jnp.asarray(adam_path[-1])), **look)
    rt.save_image(os.path.join(out, "final.png"), image(jnp.asarray(lm_path[-1])), **look)
    # GIF: Adam (left), LM (right), target (far right); LM holds its last frame.
    n_frames = min(len(adam_path), 50)
    frames = []
    gap = np.ones((size, 2, 3)) / look["exposure"]
    for k in np.linspace(0, len(adam_path) - 1, n_frames).astype(int):
        left = np.asarray(image(jnp.asarray(adam_path[k])))
        right = np.asarray(image(jnp.asarray(lm_path[min(k, len(lm_path) - 1)])))
        frames.append(np.concatenate([left, gap, right, gap, np.asarray(target)], axis=1))
    rt.save_gif(os.path.join(out, "fit.gif"), frames, fps=10, **look)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # Losses relative to the start, floored at 1e-16 (LM reaches exactly 0).
    floor = 1e-16
    rel = lambda l: np.maximum(np.asarray(l) / l[0], floor)  # noqa: E731
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.semilogy(rel(adam_loss), label="Adam (lr 0.05)")
    ax.semilogy(rel(lm_loss), "o-", label="Levenberg-Marquardt (jacfwd)")
    ax.set_ylim(floor / 3, 3)
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss / starting loss (floored at 1e-16)")
    ax.set_title(f"Point-light recovery (starting loss {adam_loss[0]:.3g})")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(out, "loss.png"), dpi=100)
    plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small image, few iterations (tests)")
    ap.add_argument("--out", default="out/point_light", help="directory for PNG/GIF output")
    args = ap.parse_args(argv)
    size, adam_steps, lm_iters = (48, 8, 4) if args.quick else (200, 100, 20)
    os.makedirs(args.out, exist_ok=True)

    image, residual, target = make_problem(size)
    J = np.asarray(jax.jacfwd(residual)(jnp.asarray(TARGET)))
    sv = np.linalg.svd(J, compute_uv=False)
    print(f"Jacobian of the residual image at the target light: singular values {sv}, "
          f"rank {np.sum(sv > 1e-8 * sv[0])}, condition {sv[0] / sv[-1]:.1f}")

    t0 = time.perf_counter()
    adam_path, adam_loss = adam(residual, START, adam_steps, lr=0.05)
    t1 = time.perf_counter()
    lm_path, lm_loss = levenberg_marquardt(jacobian_and_residual(residual), START, lm_iters)
    t2 = time.perf_counter()

    print("\nAdam (lr 0.05) light path:")
    for k in sorted(set(range(0, len(adam_path), max(1, len(adam_path) // 10))) | {len(adam_path) - 1}):
        print(f"  step {k:4d}: {np.round(adam_path[k], 6)}  loss {adam_loss[min(k, len(adam_loss) - 1)]:.3e}")
    print("\nLevenberg-Marquardt (jacfwd) light path:")
    for k, (p, l) in enumerate(zip(lm_path, lm_loss)):
        print(f"  iter {k:2d}: {np.round(p, 9)}  loss {l:.3e}")
    err_adam = np.linalg.norm(adam_path[-1] - TARGET)
    err_lm = np.linalg.norm(lm_path[-1] - TARGET)
    print(f"\nAdam: {len(adam_path) - 1} steps, |error| {err_adam:.3e}, {t1 - t0:.1f} s")
    print(f"LM:   {len(lm_path) - 1} iterations, |error| {err_lm:.3e}, {t2 - t1:.1f} s")

    write_pictures(args.out, image, target, adam_path, adam_loss, lm_path, lm_loss, size)
    print(f"wrote target.png start.png final.png final_adam.png fit.gif loss.png to {args.out}")
    if not args.quick and err_lm > 1e-3:
        raise SystemExit(f"light not recovered: error {err_lm:.3e} > 1e-3")
    return lm_path[-1], err_lm


if __name__ == "__main__":
    main()
