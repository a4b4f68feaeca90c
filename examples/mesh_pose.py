"""Recover the pose of a mesh from one image, through its silhouette and its shadow.

An elliptical torus mesh (generated in code) floats over a floor under a
point light.  From a single target image, fit its translation (3, scene
units) and rotation (rotation vector, 3, radians) starting from a visibly
wrong pose.  The mesh's outline and its shadow on the floor are what move;
soft visibility (`softness` about half a pixel) makes them differentiable.

Two optimisers side by side:
  * Levenberg-Marquardt on the residual image with its Jacobian (pixels x 6)
    from forward mode (`jax.jacfwd`, six JVPs through the renderer), coarse
    to fine (residuals of blurred images first, see BLURS);
  * Adam (optax) on the mean squared pixel difference.

    python examples/mesh_pose.py               # full demo, writes to out/mesh_pose
    python examples/mesh_pose.py --quick --out /tmp/mp
"""

from __future__ import annotations

import argparse
import os
import time

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp
import numpy as np
from _fit import adam, levenberg_marquardt  # examples/_fit.py

import raytrace as rt
import solvers  # noqa: E402

solvers.enable_compilation_cache()  # opt-in: reuse compiled programs across runs (~/.cache/diffsci/jax)

TRUTH = np.array([0.15, 0.55, 0.1, 0.35, -0.4, 0.2])  # translation (3), rotation vector (3)
START = np.array([0.0, 0.65, 0.22, 0.2, -0.2, 0.05])
# Levenberg-Marquardt runs coarse to fine: residuals of images blurred by a
# Gaussian of these widths (pixels), then the plain image.  From START, the
# plain residual alone stalled in a local minimum (loss 0.096 from 0.123).
BLURS = (4.0, 2.0, 1.0, 0.0)


def make_problem(size, segments):
    """The image of a pose (6,) and the target image."""
    v, f = rt.torus(0.6, 0.22, *segments)
    v = v * np.array([1.3, 1.0, 0.8])  # elliptical: no symmetry axis, every rotation shows
    mat = rt.Material((0.9, 0.55, 0.2), ambient=0.15, diffuse=0.9, specular=0.3, shininess=30.0)
    floor = rt.Plane((0, 0, 0), (0, 1, 0), rt.Material((0.75, 0.75, 0.8), ambient=0.1))
    light = rt.PointLight((1.2, 4.0, -1.5), 250.0)
    cam = rt.Camera((0.0, 2.5, -2.0), (0.05, 0.35, 0.1), vfov=42.0, width=size, height=size)
    softness = 0.5 * float(cam.pixel_size(2.7))  # half a pixel at the mesh's distance

    def image(pose):
        mesh = rt.Mesh(v, f, mat, transform=rt.Transform(pose[:3], pose[3:]))
        return rt.render(rt.Scene([mesh, floor], [light]), cam, softness=softness, max_bounces=0)

    return image, jax.jit(image)(jnp.asarray(TRUTH)), f.shape[0], softness


def blur_matrix(n, sigma):
    """(n, n) Gaussian blur of sigma pixels along one image axis (rows
    normalised at the borders); the identity for sigma 0."""
    if sigma == 0:
        return jnp.eye(n)
    i = np.arange(n)
    k = np.exp(-0.5 * ((i[:, None] - i[None, :]) / sigma) ** 2)
    return jnp.asarray(k / k.sum(axis=1, keepdims=True))


def fit_lm_coarse_to_fine(image, target, x0, iters):
    """LM on blurred residuals (BLURS), `iters` iterations per stage (the last: twice that).

    One compiled Jacobian for all stages: the blur matrices are arguments."""

    def residual(x, bh, bw):
        blur = lambda img: jnp.einsum("ij,jkc,lk->ilc", bh, img, bw)  # noqa: E731
        return (blur(image(x)) - blur(jnp.asarray(target))).ravel() / np.sqrt(target.size)

    both = jax.jit(jax.jacfwd(lambda x, bh, bw: (residual(x, bh, bw),) * 2, has_aux=True))
    path, losses = [np.asarray(x0)], []
    for k, sigma in enumerate(BLURS):
        bh, bw = blur_matrix(target.shape[0], sigma), blur_matrix(target.shape[1], sigma)
        last = k == len(BLURS) - 1
        p, l = levenberg_marquardt(lambda x: both(x, bh, bw), path[-1], 2 * iters if last else iters)  # noqa: B023
        print(f"  blur {sigma:3.1f} px: {len(p) - 1} iterations, loss {l[0]:.3e} -> {l[-1]:.3e}")
        path += list(p[1:])
        losses += list(l if last else l[:-1])
    return np.asarray(path), np.asarray(losses)


def pose_error(x):
    return np.abs(x[:3] - TRUTH[:3]).max(), np.abs(x[3:] - TRUTH[3:]).max()


def write_pictures(out, image, target, lm_path, adam_path, adam_loss):
    look = dict(exposure=rt.exposure_for(target), tonemap="reinhard")
    img = jax.jit(image)
    # LM's stages minimise blurred residuals: plot the plain loss of its iterates, like Adam's.
    lm_loss = np.array([float(jnp.mean((img(jnp.asarray(x)) - target) ** 2)) for x in lm_path])
    rt.save_image(os.path.join(out, "target.png"), target, **look)
    rt.save_image(os.path.join(out, "start.png"), img(jnp.asarray(START)), **look)
    rt.save_image(os.path.join(out, "final.png"), img(jnp.asarray(lm_path[-1])), **look)
    rt.save_image(os.path.join(out, "final_adam.png"), img(jnp.asarray(adam_path[-1])), **look)
    # GIF: LM (left), Adam (middle), target (right); LM holds its last frame.
    n = len(adam_path)
    gap = np.ones((target.shape[0], 2, 3)) / look["exposure"]
    frames = []
    for k in np.unique(np.linspace(0, n - 1, min(n, 40)).astype(int)):
        lm = np.asarray(img(jnp.asarray(lm_path[min(k, len(lm_path) - 1)])))
        frames.append(np.concatenate([lm, gap, np.asarray(img(jnp.asarray(adam_path[k]))), gap, target], axis=1))
    rt.save_gif(os.path.join(out, "fit.gif"), frames, fps=8, **look)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    floor = 1e-16
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.semilogy(np.maximum(lm_loss / lm_loss[0], floor), "o-", label="Levenberg-Marquardt (jacfwd), coarse to fine")
    ax.semilogy(np.maximum(adam_loss / adam_loss[0], floor), label="Adam (lr 0.01)")
    ax.set_ylim(floor / 3, 3)
    ax.set_xlabel("iteration")
    ax.set_ylabel("mean squared pixel difference / at start")
    ax.set_title(f"Mesh pose from silhouette and shadow (starting loss {lm_loss[0]:.3g})")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower left")
    fig.tight_layout()
    fig.savefig(os.path.join(out, "loss.png"), dpi=100)
    plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small mesh and image, few iterations (tests)")
    ap.add_argument("--out", default="out/mesh_pose", help="directory for PNG/GIF output")
    args = ap.parse_args(argv)
    size, segments, lm_iters, adam_steps = (16, (12, 6), 1, 2) if args.quick else (48, (40, 20), 6, 80)
    os.makedirs(args.out, exist_ok=True)
    image, target, n_tri, softness = make_problem(size, segments)
    print(f"torus: {n_tri} triangles, {size}x{size}, softness {softness:.4f} (half a pixel)")
    residual = lambda x: (image(x) - target).ravel() / np.sqrt(target.size)  # noqa: E731

    t0 = time.perf_counter()
    lm_path, lm_loss = fit_lm_coarse_to_fine(image, target, START, lm_iters)
    t1 = time.perf_counter()
    adam_path, adam_loss = adam(residual, START, adam_steps, lr=0.01)
    t2 = time.perf_counter()
    print("\nLevenberg-Marquardt (jacfwd) pose path (translation, rotation vector; loss of each stage's blur):")
    for k, (x, l) in enumerate(zip(lm_path, lm_loss)):
        print(f"  iter {k:2d}: {np.round(x, 6)}  loss {l:.3e}")
    print("\nAdam (lr 0.01) pose path:")
    for k in sorted(set(range(0, len(adam_path), max(1, len(adam_path) // 10))) | {len(adam_path) - 1}):
        print(f"  step {k:4d}: {np.round(adam_path[k], 6)}  loss {adam_loss[min(k, len(adam_loss) - 1)]:.3e}")
    (lt, lr_), (at, ar) = pose_error(lm_path[-1]), pose_error(adam_path[-1])
    print(f"\ntruth {TRUTH}, start {START}")
    print(f"LM:   {len(lm_path) - 1} iterations, {t1 - t0:.1f} s, max error translation {lt:.2e}, "
          f"rotation {lr_:.2e} rad")
    print(f"Adam: {len(adam_path) - 1} steps, {t2 - t1:.1f} s, max error translation {at:.2e}, rotation {ar:.2e} rad")
    write_pictures(args.out, image, np.asarray(target), lm_path, adam_path, adam_loss)
    print(f"wrote target.png start.png final.png final_adam.png fit.gif loss.png to {args.out}")
    if not args.quick and max(lt, lr_) > 1e-3:
        raise SystemExit(f"pose not recovered to 1e-3: translation {lt:.2e}, rotation {lr_:.2e}")
    return lm_path[-1]


if __name__ == "__main__":
    main()
