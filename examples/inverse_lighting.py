"""Inverse lighting on meshes and through shadows.

1. A torus mesh (loaded from an OBJ file, rendered through a BVH) on a mirror
   floor: recover a point light's position and intensity together from the
   image.
2. A sphere hovering above a floor, outside the camera's view: recover its
   position from its shadow alone.  Shadow edges only have useful gradients
   with soft visibility, so this fit renders with softness > 0.

Both fits are Levenberg-Marquardt on the residual image with the Jacobian
from forward mode (jax.jacfwd).

    python examples/inverse_lighting.py                 # writes to out/inverse_lighting
    python examples/inverse_lighting.py --quick --out /tmp/il
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from _fit import jacobian_and_residual, levenberg_marquardt  # noqa: E402  (examples/_fit.py)

import raytrace as rt  # noqa: E402
import solvers  # noqa: E402

solvers.enable_compilation_cache()  # opt-in: reuse compiled programs across runs (~/.cache/diffsci/jax)


def fit_image(image, truth, start, iters, label):
    """Render the target at `truth`, then fit the parameters from `start` by LM on the
    pixel residuals. Returns the target image, the iterates and their losses."""
    target = jax.jit(image)(jnp.asarray(truth))
    residual = lambda x: (image(x) - target).ravel() / np.sqrt(target.size)  # noqa: E731
    t0 = time.perf_counter()
    xs, losses = levenberg_marquardt(jacobian_and_residual(residual), start, iters)
    print(f"{label}: {len(xs) - 1} LM iterations in {time.perf_counter() - t0:.1f} s")
    return target, xs, losses


def mesh_light_fit(out, quick):
    size, (nu, nv), iters = (24, (12, 8), 2) if quick else (96, (48, 24), 20)
    path = os.path.join(tempfile.mkdtemp(), "torus.obj")
    rt.write_obj(path, *rt.torus(1.0, 0.4, nu, nv))
    mesh = rt.Mesh.from_obj(path, rt.Material((0.9, 0.6, 0.2), ambient=0.05, specular=0.4, shininess=30.0))
    floor = rt.Plane((0, -0.4, 0), (0, 1, 0), rt.Material((0.5, 0.5, 0.6), reflection=0.3))
    cam = rt.Camera((0.0, 2.5, -3.5), (0.0, 0.0, 0.0), width=size, height=size)
    print(f"mesh: {mesh.faces.shape[0]} triangles, BVH depth {mesh.bvh.depth}")

    # Parameters: light position and log-intensity (intensity > 0, and
    # comparable step sizes for the solver).
    def image(x):
        return rt.render(rt.Scene([mesh, floor], [rt.PointLight(x[:3], jnp.exp(x[3]))]), cam, max_bounces=1)

    truth = np.array([1.5, 3.0, -2.0, np.log(400.0)])
    start = np.array([-1.0, 2.0, -1.0, np.log(100.0)])
    target, xs, losses = fit_image(image, truth, start, iters, "light fit")
    for k, (x, l) in enumerate(zip(xs, losses)):
        print(f"  iter {k:2d}: position {np.round(x[:3], 6)} intensity {np.exp(x[3]):10.4f} loss {l:.3e}")
    err = np.abs(xs[-1] - truth)
    print(f"  error: position {np.linalg.norm(err[:3]):.2e}, relative intensity {err[3]:.2e}")
    write_fit(out, "mesh_light", jax.jit(image), target, xs)
    return xs[-1], truth


def shadow_fit(out, quick):
    size, iters, softness = (16, 2, 0.1) if quick else (64, 20, 0.05)
    floor = rt.Plane((0, 0, 0), (0, 1, 0), rt.Material((0.8, 0.8, 0.8), ambient=0.1))
    ball = rt.Material((0.2, 0.4, 0.9))
    light = rt.PointLight((0.0, 6.0, 0.0), 600.0)
    # The camera hangs below the ball, looking down: only the shadow is seen.
    cam = rt.Camera((0.0, 0.8, 0.0), (0.0, 0.0, 0.0), vup=(0, 0, 1), vfov=100.0, width=size, height=size)

    def image(xz):
        centre = jnp.stack([xz[0], jnp.asarray(2.0, xz.dtype), xz[1]])
        scene = rt.Scene([floor, rt.Sphere(centre, 0.5, ball)], [light])
        return rt.render(scene, cam, softness=softness, spp=4, max_bounces=0)

    truth = np.array([0.3, -0.2])
    start = np.array([-0.2, 0.25])
    target, xs, losses = fit_image(image, truth, start, iters, f"shadow fit (softness {softness})")
    for k, (x, l) in enumerate(zip(xs, losses)):
        print(f"  iter {k:2d}: sphere (x, z) {np.round(x, 6)} loss {l:.3e}")
    print(f"  error: {np.linalg.norm(xs[-1] - truth):.2e}")
    write_fit(out, "shadow", jax.jit(image), target, xs)
    return xs[-1], truth


def write_fit(out, name, image, target, xs):
    """PNGs and a GIF (fit left, target right), all with the target's exposure."""
    look = dict(exposure=rt.exposure_for(target), tonemap="reinhard")
    rt.save_image(os.path.join(out, f"{name}_target.png"), target, **look)
    rt.save_image(os.path.join(out, f"{name}_start.png"), image(jnp.asarray(xs[0])), **look)
    rt.save_image(os.path.join(out, f"{name}_final.png"), image(jnp.asarray(xs[-1])), **look)
    frames = [np.concatenate([np.asarray(image(jnp.asarray(x))), np.asarray(target)], axis=1) for x in xs]
    rt.save_gif(os.path.join(out, f"{name}_fit.gif"), frames, fps=2, **look)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small mesh and image, few iterations (tests)")
    ap.add_argument("--out", default="out/inverse_lighting", help="directory for PNG/GIF output")
    args = ap.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    x1, t1 = mesh_light_fit(args.out, args.quick)
    x2, t2 = shadow_fit(args.out, args.quick)
    print(f"wrote mesh_light_* and shadow_* PNG/GIF files to {args.out}")
    if not args.quick:
        assert np.allclose(x1, t1, atol=1e-4) and np.allclose(x2, t2, atol=1e-4), "fit did not converge"


if __name__ == "__main__":
    main()
