"""Build the gallery (docs/gallery.md and docs/gallery/*.png) from the examples' own `--out`.

Runs every example in examples/ (except private `_*.py`) as a script with `--out` set to a
temporary directory, copies one chosen picture per example into docs/gallery/ (the ray
tracing fits get a strip: target | start | fitted, made here from the example's own PNGs),
and writes docs/gallery.md with every example's picture, a caption and the command that
made it. Examples listed in PENDING that are not in examples/ yet are skipped; an example
not in EXAMPLES gets its first PNG and its docstring's first line as caption.

    python docs/scripts/gallery.py                 # every example, full runs (tens of minutes)
    python docs/scripts/gallery.py --only trebuchet --only bouncing_ball
    python docs/scripts/gallery.py --markdown-only # rewrite gallery.md from docs/gallery/

A failed example is reported and keeps its previous picture (if any).
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import os
import shutil
import subprocess
import sys
import tempfile
import time

from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLES_DIR = os.path.join(ROOT, "examples")
GALLERY_DIR = os.path.join(ROOT, "docs", "gallery")
GALLERY_MD = os.path.join(ROOT, "docs", "gallery.md")

# Examples that other work will add; skipped (with a note) while absent.
PENDING: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class Entry:
    """One gallery entry.

    Attributes:
        name: the example's file name without `.py`.
        title: section title.
        caption: what the picture shows (no run-dependent numbers; the run's time is added).
        pictures: PNG names in the example's `--out` directory; several are put side by side.
        args: extra command-line arguments for the gallery run.
    """

    name: str
    title: str
    caption: str
    pictures: tuple[str, ...]
    args: tuple[str, ...] = ()


EXAMPLES = (
    Entry("taylor_sin", "Differentiating through control flow",
          "A Taylor-series sin summed until the next term is below 1e-16 (a data-dependent "
          "loop). `jax.grad` through a Python `while` loop, through a masked `lax.fori_loop`, "
          "and `jax.jacfwd` through a `lax.while_loop` all give cos; repeated differentiation "
          "gives -sin, -cos, sin.", ("taylor_sin.png",)),
    Entry("lotka_volterra_fit", "Fitting Lotka-Volterra parameters",
          "The four Lotka-Volterra parameters recovered from 50 noisy observations by Adam "
          "through `solvers.solve` (discrete-adjoint gradients), starting 30% off: data, "
          "fitted trajectories and the loss curve.", ("lotka_volterra_fit.png",)),
    Entry("bouncing_ball", "A bouncing ball as a hybrid system",
          "`solvers.solve_phases`: one phase per flight, each ended by a terminal floor "
          "event whose reset reverses and scales the velocity by the restitution e. The "
          "trajectory is the dense output between bounces; the script also prints the total "
          "time of N bounces and its derivative in e next to the closed form.",
          ("bouncing_ball.png",)),
    Entry("neural_ode_spiral", "Neural ODE",
          "An equinox MLP as the vector field, fitted with optax Adam to a 2-D spiral by "
          "gradients through the solver (the torchdiffeq `ode_demo` classic).",
          ("neural_ode_spiral.png",)),
    Entry("pendulum_swingup", "Pendulum swing-up",
          "A neural controller with bounded torque, too weak to lift the pendulum directly, "
          "trained by backpropagating through the simulation: it learns to pump energy, "
          "swing up and balance. Judged on fresh starts it never trained on, with an "
          "adaptive reference solver over a longer horizon than training.",
          ("pendulum_swingup.png",)),
    Entry("cartpole_swingup", "Cart-pole swing-up",
          "`physics.cartpole`: an equinox MLP pushing the cart (force bounded by tanh), "
          "trained with optax through the simulation to swing the pole up and balance it "
          "with the cart on its track: angle, cart position and force against time (the "
          "script also writes `cartpole_swingup.gif`).", ("cartpole_swingup.png",)),
    Entry("heat_inverse", "A conductivity field from sparse observations",
          "A 2-D heat equation with a spatially varying conductivity on a 64 x 64 grid "
          "(4096 stiff states, Kvaerno5 with a matrix-free BiCGStab linear solve): the "
          "conductivity field recovered from sparse noisy observations by gradients "
          "through the stiff solve. Left to right: truth, observed points, recovery.",
          ("truth.png", "observations.png", "recovery.png")),
    Entry("ensemble_sharding", "Ensembles across devices",
          "A Lorenz ensemble solved with `NamedSharding` and `shard_map` over simulated "
          "devices; states and gradients agree with one device. See "
          "[scale-out](scale-out.md).", ("ensemble_sharding.png",)),
    Entry("trebuchet", "One throw of the trebuchet",
          "The trebuchet simulator (`physics.trebuchet`): the throw's trajectory with its "
          "phases marked (the script also writes an animation, `trebuchet_throw.gif`, and "
          "prints d distance / d inputs).", ("trebuchet_trajectory.png",)),
    Entry("trebuchet_aim", "Neural aiming through the simulator",
          "A network trained to aim the trebuchet (release angle, counterweight) for a "
          "target and wind by backpropagating through the simulator: its miss over target "
          "and wind on fresh queries.", ("trebuchet_aim.png",)),
    Entry("trebuchet_surrogate", "A neural surrogate of the simulator",
          "An MLP fitted to the simulator's throws, and an aimer trained through it, "
          "compared with one trained through the simulator: the surrogate's error over "
          "(angle, weight) at three winds.", ("trebuchet_surrogate.png",)),
    Entry("point_light", "Recovering a point light",
          "The Zygote paper's ray-tracing demo: a point light's position recovered from an "
          "image (Adam and Levenberg-Marquardt on the residual image). Left to right: "
          "target, start, Levenberg-Marquardt's fit. See [raytrace](raytrace.md).",
          ("target.png", "start.png", "final.png")),
    Entry("inverse_lighting", "Inverse lighting on a mesh",
          "A torus mesh (an OBJ file through a BVH) on a mirror floor: the light's position "
          "and intensity recovered together from the image. Left to right: target, start, "
          "fit. (The script's second fit recovers a hidden sphere's position from its soft "
          "shadow alone: `shadow_*.png`.)",
          ("mesh_light_target.png", "mesh_light_start.png", "mesh_light_final.png")),
    Entry("mesh_pose", "Recovering a mesh's pose",
          "A mesh's translation and rotation recovered from one image through its "
          "silhouette and its shadow, with soft visibility. Left to right: target, start, "
          "Levenberg-Marquardt's fit.", ("target.png", "start.png", "final.png")),
)


def discover() -> list[str]:
    """Public example names in examples/, sorted."""
    return sorted(f[:-3] for f in os.listdir(EXAMPLES_DIR) if f.endswith(".py") and not f.startswith("_"))


def entry_for(name: str) -> Entry:
    """The table's entry, or a default one (first PNG, docstring's first line) for a new example."""
    for e in EXAMPLES:
        if e.name == name:
            return e
    with open(os.path.join(EXAMPLES_DIR, name + ".py")) as fh:
        doc = ast.get_docstring(ast.parse(fh.read())) or name
    return Entry(name, name.replace("_", " ").capitalize(), doc.splitlines()[0], ())


def strip(paths: list[str], dest: str, gap: int = 6, min_height: int = 192) -> None:
    """Put the images side by side (same height, white gaps) and save as `dest`. Small
    renders are enlarged by a whole factor, pixels kept square and sharp (nearest)."""
    ims = [Image.open(p).convert("RGB") for p in paths]
    h = max(im.height for im in ims)
    h *= max(1, -(-min_height // h))
    ims = [im if im.height == h else im.resize((round(im.width * h / im.height), h), Image.Resampling.NEAREST)
           for im in ims]
    out = Image.new("RGB", (sum(im.width for im in ims) + gap * (len(ims) - 1), h), "white")
    x = 0
    for im in ims:
        out.paste(im, (x, 0))
        x += im.width + gap
    out.save(dest, optimize=True)


def run_example(e: Entry, quick: bool, timeout: float) -> tuple[bool, float, str]:
    """Run one example into a temporary --out; copy its picture. Returns (ok, seconds, message)."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, os.path.join(EXAMPLES_DIR, e.name + ".py"), "--out", tmp, *e.args]
        cmd += ["--quick"] if quick else []
        env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
        t0 = time.perf_counter()
        try:
            r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return False, time.perf_counter() - t0, f"timed out after {timeout:.0f} s"
        dt = time.perf_counter() - t0
        if r.returncode != 0:
            return False, dt, f"exit {r.returncode}: {r.stderr.strip().splitlines()[-1:] or ''}"
        pics = list(e.pictures) or sorted(f for f in os.listdir(tmp) if f.endswith(".png"))[:1]
        paths = [os.path.join(tmp, p) for p in pics]
        missing = [p for p in paths if not os.path.exists(p)]
        if not pics or missing:
            return False, dt, f"no picture {missing or 'PNG'} in its --out"
        os.makedirs(GALLERY_DIR, exist_ok=True)
        dest = os.path.join(GALLERY_DIR, e.name + ".png")
        if len(paths) == 1:
            shutil.copyfile(paths[0], dest)
        else:
            strip(paths, dest)
        return True, dt, "ok"


def write_markdown(names: list[str]) -> None:
    """docs/gallery.md: one section per example that has a picture in docs/gallery/."""
    lines = ["# Gallery", "",
             "Every picture here is made by the example itself: `python docs/scripts/gallery.py` runs",
             "each `examples/NAME.py --out DIR` (the full demo, not `--quick`) and copies its picture.",
             "Each example also runs with `--quick` (a few iterations; this is what the tests run).", ""]
    for name in names:
        e = entry_for(name)
        if not os.path.exists(os.path.join(GALLERY_DIR, name + ".png")):
            continue
        lines += [f"## {e.title}: `{name}.py`", "", e.caption, ""]
        lines += [f"![{name}](gallery/{name}.png)", "", "```bash",
                  f"python examples/{name}.py --out out/{name}" + "".join(" " + a for a in e.args), "```", ""]
    with open(GALLERY_MD, "w") as fh:
        fh.write("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", action="append", default=[], help="run only this example (repeatable)")
    ap.add_argument("--quick", action="store_true", help="run the examples with --quick (a smoke test)")
    ap.add_argument("--markdown-only", action="store_true", help="only rewrite docs/gallery.md")
    ap.add_argument("--timeout", type=float, default=1800.0, help="seconds per example")
    a = ap.parse_args(argv)
    present = discover()
    unknown = [n for n in a.only if n not in present and n not in PENDING]
    if unknown:
        raise SystemExit(f"--only: no example {unknown}; examples are {present}")
    for n in PENDING:
        if n not in present:
            print(f"skip {n}: not in examples/ yet")
    known = {e.name for e in EXAMPLES}
    order = [e.name for e in EXAMPLES if e.name in present] + [n for n in present if n not in known]
    failed = []
    if not a.markdown_only:
        for name in [n for n in order if not a.only or n in a.only]:
            ok, dt, msg = run_example(entry_for(name), a.quick, a.timeout)
            print(f"{name:22s} {dt:7.1f} s  {msg}", flush=True)
            failed += [] if ok else [name]
    write_markdown(order)
    print(f"wrote {os.path.relpath(GALLERY_MD, ROOT)}" + (f"; failed: {failed}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
