"""Ray tracer benchmark: diffsci.raytrace vs Mitsuba 3 on the same scene.

Scene: two diffuse spheres over a floor, one point light, hard shadows,
200x200, 1 sample per pixel, direct lighting only (our max_bounces=0,
Mitsuba's `direct` integrator).  Prints a markdown table; with --write also
writes it to docs/bench_raytrace.md.

    python benchmarks/raytrace.py [--write] [--repeats 10]

Also times a 10,000-triangle mesh (torus) at 200x200 through the BVH.
Timings are medians over repeats after compilation/warm-up.  Our render, our
gradient and Mitsuba's render are timed in interleaved rounds, so that a
change in machine load affects all three alike and their ratios stay fair.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

# This file is itself named raytrace.py: take its folder off the path so that
# the package, not this script, is imported.
_here = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _here]
sys.path.insert(0, os.path.join(_here, ".."))
import raytrace as rt  # noqa: E402

SIZE = 200
LIGHT = np.array([2.0, 5.0, -3.0])
POWER = 800.0  # our intensity; falloff intensity / (4 pi d^2)
SPHERES = [((-0.8, 0.6, 0.0), 0.6, (0.8, 0.2, 0.2)), ((0.7, 0.45, 0.5), 0.45, (0.2, 0.3, 0.8))]
EYE, AT = (0.0, 1.5, -4.5), (0.0, 0.4, 0.0)


def median_time(fn, repeats):
    return median_times([fn], repeats)[0]


def median_times(fns, repeats):
    """Median time of each fn, timed round-robin (one call each per round)."""
    for fn in fns:
        fn()
    ts = [[] for _ in fns]
    for _ in range(repeats):
        for fn, t_fn in zip(fns, ts):
            t = time.perf_counter()
            fn()
            t_fn.append(time.perf_counter() - t)
    return [float(np.median(t)) for t in ts]


def ours(dtype):
    """Our image and (after compilation) the render and gradient calls to time."""
    f = lambda x: jnp.asarray(x, dtype)  # noqa: E731
    # Mitsuba's diffuse BRDF is albedo/pi; ours is diffuse*albedo, so diffuse=1/pi matches.
    mats = [rt.Material(f(c), ambient=f(0.0), diffuse=f(1 / np.pi), specular=f(0.0)) for _, _, c in SPHERES]
    floor = rt.Material(f((0.7, 0.7, 0.7)), ambient=f(0.0), diffuse=f(1 / np.pi), specular=f(0.0))

    def scene(light):
        objs = [rt.Sphere(f(c), f(r), m) for (c, r, _), m in zip(SPHERES, mats)]
        objs.append(rt.Plane(f((0, 0, 0)), f((0, 1, 0)), floor))
        return rt.Scene(objs, [rt.PointLight(light, f(POWER))])

    cam = rt.Camera(f(EYE), f(AT), vfov=f(45.0), width=SIZE, height=SIZE)
    light = f(LIGHT)
    render = jax.jit(lambda p: rt.render(scene(p), cam, max_bounces=0))
    img = render(light)
    target = render(light + 0.3)
    grad = jax.jit(jax.grad(lambda p: jnp.mean((rt.render(scene(p), cam, max_bounces=0) - target) ** 2)))
    g = grad(light)
    assert np.all(np.isfinite(g))
    return np.asarray(img), lambda: render(light).block_until_ready(), lambda: grad(light).block_until_ready()


def mitsuba():
    """Mitsuba's image, the render call to time, and variant information."""
    import mitsuba as mi

    variant, note = None, ""
    for v in ("llvm_ad_rgb", "scalar_rgb"):
        try:
            mi.set_variant(v)
            variant = v
            break
        except Exception as e:  # noqa: BLE001 (variant unavailable: no LLVM)
            note = f"llvm_ad_rgb unavailable ({type(e).__name__}: {e}); fell back to scalar_rgb"
    if variant == "llvm_ad_rgb":
        note = ""
    T = mi.ScalarTransform4f
    spheres = {
        f"s{k}": {"type": "sphere", "center": list(c), "radius": r,
                  "bsdf": {"type": "diffuse", "reflectance": {"type": "rgb", "value": list(col)}}}
        for k, (c, r, col) in enumerate(SPHERES)
    }
    scene = mi.load_dict({
        "type": "scene",
        "integrator": {"type": "direct"},
        "sensor": {
            "type": "perspective", "fov": 45.0, "fov_axis": "y",
            "to_world": T().look_at(origin=list(EYE), target=list(AT), up=[0, 1, 0]),
            "sampler": {"type": "independent", "sample_count": 1},
            "film": {"type": "hdrfilm", "width": SIZE, "height": SIZE, "rfilter": {"type": "box"},
                     "pixel_format": "rgb"},
        },
        "floor": {"type": "rectangle", "to_world": T().rotate([1, 0, 0], -90).scale(100.0),
                  "bsdf": {"type": "diffuse", "reflectance": {"type": "rgb", "value": [0.7, 0.7, 0.7]}}},
        # Mitsuba's point light intensity I gives irradiance I/d^2.
        "light": {"type": "point", "position": list(LIGHT),
                  "intensity": {"type": "rgb", "value": [POWER / (4 * np.pi)] * 3}},
        **spheres,
    })

    def run():
        return np.asarray(mi.render(scene, spp=1))

    img = run()
    return img, run, variant, note, mi.__version__


def bvh_timing(repeats):
    v, faces = rt.torus(1.0, 0.4, 100, 50)
    mat = rt.Material((0.7, 0.6, 0.3), ambient=0.1, specular=0.3, shininess=20.0)
    t = time.perf_counter()
    scene = rt.Scene([rt.Mesh(v.astype(np.float32), faces, mat),
                      rt.Plane(np.float32([0, -0.45, 0]), np.float32([0, 1, 0]))],
                     [rt.PointLight(np.float32([2, 4, -3]), np.float32(300.0))])
    t_build = time.perf_counter() - t
    cam = rt.Camera(np.float32([0, 2.5, -4]), np.float32([0, 0, 0]), width=SIZE, height=SIZE)
    out = {}
    for mb in (0, 2):
        out[mb] = median_time(lambda: rt.render(scene, cam, max_bounces=mb).block_until_ready(), repeats)
    return faces.shape[0], t_build, out


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--write", action="store_true", help="write docs/bench_raytrace.md")
    args = ap.parse_args(argv)

    img, run_ours, run_grad = ours(jnp.float32)
    mimg, run_mi, variant, note, version = mitsuba()
    t_ours, t_grad, t_mi = median_times([run_ours, run_grad, run_mi], args.repeats)
    n_tri, t_build, t_bvh = bvh_timing(max(3, args.repeats // 3))
    mean_ours, mean_mi = img.mean(), mimg[..., :3].mean()

    lines = [
        f"Scene: two diffuse spheres over a floor, one point light, hard shadows, {SIZE}x{SIZE}, "
        "1 sample per pixel, direct lighting only. float32, median of "
        f"{args.repeats} interleaved runs after compilation. "
        f"CPU: {os.cpu_count()} cores ({platform.processor() or platform.machine()}), "
        f"jax {jax.__version__} ({jax.default_backend()}), Mitsuba {version} variant `{variant}`.",
        "",
        "| measurement | time (ms) | ratio |",
        "|---|---:|---:|",
        f"| diffsci render (jit) | {t_ours * 1e3:.1f} | {t_ours / t_mi:.2f}x Mitsuba |",
        f"| Mitsuba 3 render (`{variant}`, `direct`, 1 spp) | {t_mi * 1e3:.1f} | 1 |",
        f"| diffsci gradient of image loss w.r.t. light position | {t_grad * 1e3:.1f} "
        f"| {t_grad / t_ours:.2f}x our render |",
        f"| diffsci render, {n_tri}-triangle mesh + floor, BVH, no reflections | {t_bvh[0] * 1e3:.0f} | |",
        f"| diffsci render, {n_tri}-triangle mesh + floor, BVH, 2 reflection bounces | {t_bvh[2] * 1e3:.0f} | |",
        f"| BVH build on host (numpy), {n_tri} triangles | {t_build * 1e3:.0f} | |",
        "",
        f"Mean pixel value: diffsci {mean_ours:.4f}, Mitsuba {mean_mi:.4f} (same radiometry; "
        "Mitsuba's 1-spp image is jittered within pixels, ours samples pixel centres).",
        "Targets: render within 2x of Mitsuba, gradient within 3x of our render.",
    ]
    if note:
        lines.append(f"Note: {note}.")
    table = "\n".join(lines)
    print(table)
    if args.write:
        path = os.path.join(os.path.dirname(__file__), "..", "docs", "bench_raytrace.md")
        with open(path, "w") as fh:
            fh.write("# Ray tracer benchmark\n\nProduced by:\n\n```\npython benchmarks/raytrace.py --write\n```\n\n")
            fh.write(table + "\n")


if __name__ == "__main__":
    main()
