"""The library on an accelerator, checked and measured in one run (under 8 minutes on a GPU).

On a GPU machine (jax with CUDA: `pip install -e ".[cuda,examples]"`, plus diffrax, scipy,
pytest and optionally mitsuba), from the repository root, one line:

    PYTHONUNBUFFERED=1 python benchmarks/device_check.py --write --out "$OUT/device_check.md"

On CPU (the same parts, CPU-sized; CI runs `--cpu --quick`, about 30-60 s on 2 cores):

    python benchmarks/device_check.py --cpu [--quick] [--out FILE] [--write]

Parts, each in its own try/except (a failure is recorded and the next part runs), each
started only while the time budget (--budget, default 450 s) lasts:

1. device: jax.devices(), the default backend, and a matrix product placed on the device
   (its result's device and value checked); without --cpu a CPU-only jax is a failure.
2. tests: `pytest -m gpu` (the `gpu`-marked subset: solver accuracy and gradients in
   float32 and float64, stiff solves, events, the trebuchet's shoot and its gradient,
   renders, and tests/test_gpu_subset.py's device-versus-CPU comparisons) in a
   subprocess on the same device; with --quick only collected (the suite runs it anyway).
3. benchmarks, each against its peer on the same device, timed interleaved (min of rounds):
   vmap of 10^3, 10^4, 10^5 Lotka-Volterra solves and their per-member gradients vs
   diffrax (benchmarks/ode.py's problem and settings); the neural ODE training step
   (benchmarks/neural_ode.py's `measure`); a 512x512 render and its gradient of the
   analytic scene and of a 100k-triangle torus (benchmarks/raytrace.py's scenes) vs
   Mitsuba 3 (`cuda_ad_rgb` on a GPU, `llvm_ad_rgb` on CPU) if it imports; then
   benchmarks/accelerator_audit.py's measurements on this device (the error check's cost,
   float64 / float32, a vmapped batch with a spread of stiffness).
4. report: a summary table on stdout; the markdown block to --out (after every part, so
   a run cut short still leaves what it measured) and, with --write, into
   docs/benchmarks.md between `<!-- device_check:begin -->` and `<!-- device_check:end -->`.

Exit status 1 if any part failed (skipped parts do not count).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import traceback

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BEGIN, END = "<!-- device_check:begin -->", "<!-- device_check:end -->"
SIZES = {"full": dict(vmap=(1_000, 10_000, 100_000), render=512, mesh=100_000, nbatch=64, rounds=3,
                     dtypes=("float32", "float64"), audit=dict(n=1000, size=512, members=256, dtype=True)),
         "quick": dict(vmap=(10,), render=24, mesh=200, nbatch=4, rounds=1, dtypes=("float32",),
                       audit=dict(n=16, size=16, members=0, dtype=False))}
# Expected cost of each part on the GPU (s), from the CPU runs scaled: a part starts only
# if this much of the budget is left, so that the whole run ends inside one device call.
NEEDS = {"device": 5, "tests": 60, "lotka_volterra": 60, "neural_ode": 40, "render": 60, "audit": 40}


def parse(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cpu", action="store_true", help="run on the CPU (JAX_PLATFORMS=cpu)")
    ap.add_argument("--quick", action="store_true", help="tiny sizes, tests only collected (CI smoke run)")
    ap.add_argument("--write", action="store_true", help="replace the device_check block of docs/benchmarks.md")
    ap.add_argument("--out", default=None, help="also write the markdown block to this file")
    ap.add_argument("--budget", type=float, default=450.0, help="total seconds (parts start only within it)")
    ap.add_argument("--only", default=None, help="comma-separated parts: " + ",".join(NEEDS))
    a = ap.parse_args(argv)
    if a.write and a.quick:
        ap.error("--write records the full sizes; with --quick write to --out instead")
    return a


# The platform must be chosen before jax is imported (by this module or its imports).
ARGS = parse(sys.argv[1:] if __name__ == "__main__" else [])
if ARGS.cpu:
    os.environ["JAX_PLATFORMS"] = "cpu"

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)  # float64 available; every benchmark picks its dtype

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, ROOT)


def bench(name, as_name=None):
    """benchmarks/NAME.py as a module (loaded once, inside the part that needs it: they
    import diffrax or Mitsuba, which a device machine may lack; then only that part fails).
    By file path, since benchmarks/raytrace.py takes its own folder off sys.path."""
    import importlib.util

    as_name = as_name or name
    if as_name not in sys.modules:
        spec = importlib.util.spec_from_file_location(as_name, os.path.join(ROOT, "benchmarks", f"{name}.py"))
        mod = importlib.util.module_from_spec(spec)
        sys.modules[as_name] = mod
        try:
            spec.loader.exec_module(mod)
        except BaseException:
            del sys.modules[as_name]
            raise
    return sys.modules[as_name]


class Budget:
    """Wall-clock budget for the whole run; each part may also raise on an alarm."""

    def __init__(self, seconds):
        self.t0, self.seconds = time.perf_counter(), seconds

    def left(self):
        return self.seconds - (time.perf_counter() - self.t0)


class PartTimeout(Exception):
    pass


@contextlib.contextmanager
def alarm(seconds):
    """Raise PartTimeout in Python code after `seconds` (best effort: a long XLA compile
    is interrupted only when it returns)."""
    def handler(signum, frame):
        raise PartTimeout(f"part ran past {seconds:.0f} s")

    old = signal.signal(signal.SIGALRM, handler)
    signal.alarm(max(1, int(seconds)))
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def interleaved(fns, rounds, min_time=0.05):
    """Best time per call of each fn (no arguments, blocking), the fns taking turns: the one
    timing helper, accelerator_audit.best_of."""
    return bench("accelerator_audit").best_of(fns, rounds, min_time)


def first_call(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def ms(x):
    return f"{x * 1e3:.3g} ms" if x < 10 else f"{x:.1f} s"


# --- 1. the device -------------------------------------------------------------------


def part_device(size, want_gpu):
    devs = jax.devices()
    dev = devs[0]
    x = jax.device_put(jnp.full((256, 256), 0.5, jnp.float32), dev)
    y = jax.jit(lambda a: a @ a)(x).block_until_ready()
    on = y.devices() == {dev}
    ok_value = bool(np.allclose(np.asarray(y), 64.0))
    lines = [f"| devices | {', '.join(f'{d.platform}:{d.id} ({d.device_kind})' for d in devs)} |",
             f"| default backend | {jax.default_backend()} |",
             f"| 256x256 matmul placed on {dev} | result on {sorted(map(str, y.devices()))}, value "
             f"{'correct' if ok_value else 'WRONG'} |",
             f"| jax | {jax.__version__} |"]
    problems = [] if on and ok_value else ["the matmul's result is not on the device or is wrong"]
    if want_gpu and jax.default_backend() == "cpu":
        problems.append("no accelerator: jax's default backend is cpu (install jax with CUDA, or pass --cpu)")
    if problems:
        raise RuntimeError("; ".join(problems) + "\n" + "\n".join(lines))
    return ["| check | result |", "|---|---|", *lines], f"{jax.default_backend()}: {dev.device_kind}"


# --- 2. the gpu-marked tests ----------------------------------------------------------


def part_tests(size, timeout, quick):
    # Only the files that hold gpu-marked tests (collecting the whole suite imports it all).
    files = sorted(os.path.join("tests", f) for f in os.listdir(os.path.join(ROOT, "tests"))
                   if f.startswith("test_") and f.endswith(".py")
                   and "mark.gpu" in open(os.path.join(ROOT, "tests", f)).read())
    cmd = [sys.executable, "-m", "pytest", "-m", "gpu", "-n", "0", "-q", "-p", "no:cacheprovider", "-rfE", *files]
    cmd += ["--collect-only"] if quick else ["--durations=5"]
    # This process holds jax's preallocated share of the GPU's memory (75%); the child
    # allocates as it goes, within the rest.
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
               XLA_PYTHON_CLIENT_PREALLOCATE="false")
    t = time.perf_counter()
    try:
        r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        raise RuntimeError(f"pytest -m gpu ran past {timeout:.0f} s; its output so far:\n{out[-2000:]}") from None
    wall = time.perf_counter() - t
    tail = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else r.stderr.strip()[-300:]
    if quick:
        m = re.search(r"(\d+)(?:/\d+)? tests? collected", r.stdout)
        n = int(m.group(1)) if m else 0
        if r.returncode != 0 or n == 0:
            raise RuntimeError(f"pytest -m gpu --collect-only: exit {r.returncode}, {tail}")
        return [f"`pytest -m gpu`: {n} tests collected (--quick: not run)."], f"{n} collected"
    failed = [ln for ln in r.stdout.splitlines() if ln.startswith(("FAILED", "ERROR"))]
    lines = [f"`pytest -m gpu` on {jax.default_backend()}: {tail} (wall {wall:.0f} s, exit {r.returncode})."]
    lines += [f"- {ln}" for ln in failed[:20]]
    if r.returncode != 0:
        raise RuntimeError("\n".join(lines))
    return lines, tail


# --- 3a. vmapped Lotka-Volterra -------------------------------------------------------


def lv_functions(n):
    """Forward and per-member gradient of n Lotka-Volterra solves, diffsci and diffrax:
    benchmarks/ode.py's problem, method (Tsit5) and tolerances (1e-8), float64."""
    ob = bench("ode")
    f, y0, t1, p = ob.problem("Lotka")
    ps = p * (1 + 0.2 * jax.random.uniform(jax.random.PRNGKey(0), (n, 4), p.dtype))
    out = {}
    for lib, make in (("diffsci", ob.ours), ("diffrax", ob.theirs)):
        solve = make(f, y0, t1)
        fwd = jax.jit(jax.vmap(solve))
        grad = jax.jit(jax.vmap(jax.grad(lambda p, solve=solve: jnp.sum(solve(p) ** 2))))
        out[lib] = fwd, grad
    return ps, out


def part_lotka_volterra(size, budget, rows):
    rows += ["| members | diffsci forward | diffrax forward | diffrax / diffsci | diffsci gradient "
            "| diffrax gradient | diffrax / diffsci | first call diffsci (fwd, grad) | max rel. diff. |",
            "|---|---|---|---|---|---|---|---|---|"]
    summary = []
    for n in size["vmap"]:
        if budget.left() < 20:
            rows.append(f"| {n} | skipped: time budget | | | | | | | |")
            continue
        ps, fns = lv_functions(n)
        firsts, ys = {}, {}
        for lib, (fwd, grad) in fns.items():
            ys[lib], tf = first_call(lambda fwd=fwd: jax.block_until_ready(fwd(ps)))
            _, tg = first_call(lambda grad=grad: jax.block_until_ready(grad(ps)))
            firsts[lib] = tf, tg
        rel = float(jnp.max(jnp.abs(ys["diffsci"] - ys["diffrax"]) / jnp.abs(ys["diffrax"])))
        calls = [lambda f=f: jax.block_until_ready(f(ps)) for lib in fns for f in fns[lib]]
        (of, og, tf_, tg_) = interleaved(calls, size["rounds"])
        rows.append(f"| {n} | {ms(of)} | {ms(tf_)} | {tf_ / of:.2f} | {ms(og)} | {ms(tg_)} | {tg_ / og:.2f} "
                    f"| {firsts['diffsci'][0]:.1f} s, {firsts['diffsci'][1]:.1f} s | {rel:.1e} |")
        summary.append(f"{n}: fwd {tf_ / of:.2f}x, grad {tg_ / og:.2f}x")
    note = ("Tsit5, rtol = atol = 1e-8, float64, t in [0, 10], parameters varied by up to 20%; "
            "gradient = `vmap(grad)` of each member's |y(10)|^2; ratios > 1: diffsci faster; "
            "max rel. diff.: y(10) of diffsci against diffrax.")
    return [note, "", *rows], "; ".join(summary)


# --- 3b. the neural ODE training step -------------------------------------------------


def part_neural_ode(size, budget, rows):
    nb = bench("neural_ode")
    nb.BATCH = size["nbatch"]  # measure() reads the module's batch size
    rows += ["| dtype | diffsci step | diffrax step | diffrax / diffsci | first call diffsci | first call diffrax "
            "| loss diffsci | loss diffrax |", "|---|---|---|---|---|---|---|---|"]
    summary = []
    for dtype in map(jnp.dtype, size["dtypes"]):
        if budget.left() < 15:
            rows.append(f"| {jnp.dtype(dtype).name} | skipped: time budget | | | | | | |")
            continue
        best, first, losses = nb.measure(dtype)
        r = best["diffrax"] / best["diffsci"]
        rows.append(f"| {jnp.dtype(dtype).name} | {ms(best['diffsci'])} | {ms(best['diffrax'])} | {r:.2f} "
                    f"| {first['diffsci']:.1f} s | {first['diffrax']:.1f} s | {losses['diffsci']:.6f} "
                    f"| {losses['diffrax']:.6f} |")
        summary.append(f"{jnp.dtype(dtype).name} {r:.2f}x")
    note = (f"benchmarks/neural_ode.py's step: MLP 2 -> {nb.WIDTH} x {nb.DEPTH} -> 2, {nb.BATCH} trajectories "
            f"vmapped, Tsit5, rtol = atol = {nb.TOL:g}, loss + gradient + Adam update.")
    return [note, "", *rows], "; ".join(summary)


# --- 3c. renders ----------------------------------------------------------------------


def mitsuba_variants():
    return ("cuda_ad_rgb", "llvm_ad_rgb") if jax.default_backend() == "gpu" else ("llvm_ad_rgb", "scalar_rgb")


def render_spheres(rb, size, rounds):
    rb.SIZE = size  # ours() and mitsuba() read the module's image size
    (img, run, grad), t_first = first_call(lambda: rb.ours(jnp.float32))
    row = [f"| spheres {size}x{size} | ", None, None, None, f"{t_first:.1f} s (render + gradient) |"]
    try:
        mimg, run_mi, variant, note, _ = rb.mitsuba(mitsuba_variants())
        t, tg, tm = interleaved([run, grad, run_mi], rounds)
        peer = f"{ms(tm)} (`{variant}`) | {t / tm:.2f}x |"
    except Exception as e:  # noqa: BLE001 (Mitsuba absent or its variant fails: ours alone)
        t, tg = interleaved([run, grad], rounds)
        peer = f"n/a ({type(e).__name__}: {str(e)[:80]}) | |"
    row[1:4] = [f"{ms(t)} | ", f"{ms(tg)} | {tg / t:.2f}x | ", peer]
    return "".join(row), f"spheres {ms(t)}, grad {tg / t:.1f}x"


def render_mesh(rb, size, n_tri, rounds):
    folder = os.path.join(tempfile.gettempdir(), "diffsci_device_check")
    os.makedirs(folder, exist_ok=True)
    rb.TORUS_SEGMENTS.setdefault(n_tri, (max(2, int((n_tri / 10) ** 0.5)), max(2, int((n_tri / 10) ** 0.5 / 2))))
    path = rb.torus_obj(n_tri, folder)
    img, t_first, run, grad = rb.ours_mesh(path, size)
    label = f"{n_tri // 1000}k" if n_tri >= 1000 else str(n_tri)
    try:
        _, _, run_mi = rb.mitsuba_mesh(path, size, mitsuba_variants()[0])
        t, tg, tm = interleaved([run, grad, run_mi], rounds)
        peer = f"{ms(tm)} (`{mitsuba_variants()[0]}`) | {t / tm:.2f}x |"
    except Exception as e:  # noqa: BLE001
        t, tg = interleaved([run, grad], rounds)
        peer = f"n/a ({type(e).__name__}: {str(e)[:80]}) | |"
    return (f"| torus, {label} triangles, {size}x{size} | {ms(t)} | {ms(tg)} | {tg / t:.2f}x | {peer} "
            f"{t_first:.1f} s (render) |"), f"mesh {ms(t)}, grad {tg / t:.1f}x"


def part_render(size, budget, rows):
    rb = bench("raytrace", "raytrace_bench")
    rows += ["| scene | diffsci render | diffsci gradient | gradient / render | Mitsuba 3 render "
            "| diffsci / Mitsuba | first call |", "|---|---|---|---|---|---|---|"]
    summary = []
    for job in (lambda: render_spheres(rb, size["render"], size["rounds"]),
                lambda: render_mesh(rb, size["render"], size["mesh"], size["rounds"])):
        if budget.left() < 20:
            rows.append("| skipped: time budget | | | | | | |")
            continue
        row, s = job()
        rows.append(row)
        summary.append(s)
    note = ("benchmarks/raytrace.py's scenes (direct light, hard shadows, 1 sample per pixel, float32); "
            "gradient of an image loss w.r.t. the light (and, for the mesh, every vertex).")
    return [note, "", *rows], "; ".join(summary)


# --- 3d. the accelerator audit on this device ------------------------------------------


def part_audit(size, budget, lines):
    """benchmarks/accelerator_audit.py's measurements (docs/accelerators.md) on this device:
    the error check's cost, float64 / float32, and a vmapped batch with a spread of stiffness
    (--quick: the first only)."""
    aa = bench("accelerator_audit")
    cfg, rounds = size["audit"], max(3, size["rounds"])
    summary = []
    jobs = [("Error check: throw=True against throw=False", lambda: aa.error_cost_rows(cfg["n"], rounds))]
    if cfg["dtype"]:
        jobs.append(("float64 against float32", lambda: aa.dtype_rows(cfg["n"], cfg["size"], rounds)))
    if cfg["members"]:
        jobs.append(("A vmapped batch with a spread of stiffness", lambda: aa.vmap_rows(cfg["members"], rounds)))
    for title, job in jobs:
        if budget.left() < 15:
            lines += [f"{title}: skipped (time budget).", ""]
            continue
        rows = job()
        lines += [f"{title}:", "", *rows, ""]
        last = [r for r in rows if r.startswith("| ") and not r.startswith("| work")][-1]
        summary.append(f"{title.split(':')[0]}: {last.split('|')[-2].strip()}")
    return lines, "; ".join(summary)


# --- 4. the report --------------------------------------------------------------------


TITLES = {"device": "Device", "tests": "The `gpu` test subset", "lotka_volterra": "vmap of Lotka-Volterra solves",
          "neural_ode": "Neural ODE training step", "render": "Renders and their gradients",
          "audit": "Accelerator audit (docs/accelerators.md)"}


def run_parts(a, budget, on_part):
    size = SIZES["quick" if a.quick else "full"]
    parts = {
        "device": lambda: part_device(size, not a.cpu),
        # `limit` and `progress` are this loop's (below), read when the part is called.
        "tests": lambda: part_tests(size, max(10.0, limit - 5), a.quick),
        "lotka_volterra": lambda: part_lotka_volterra(size, budget, progress),
        "neural_ode": lambda: part_neural_ode(size, budget, progress),
        "render": lambda: part_render(size, budget, progress),
        "audit": lambda: part_audit(size, budget, progress),
    }
    chosen = list(parts) if a.only is None else [p.strip() for p in a.only.split(",")]
    unknown = [n for n in chosen if n not in parts]
    if unknown:
        raise SystemExit(f"--only: unknown parts {unknown}; the parts are {list(parts)}")
    results = {}
    for i, name in enumerate(chosen):
        t = time.perf_counter()
        progress: list[str] = []  # rows a part has measured so far: kept if it fails later
        # Each part may use the budget less what the parts after it need at least.
        limit = budget.left() - (0 if a.quick else sum(NEEDS[n] for n in chosen[i + 1:]))
        if limit < (2 if a.quick else NEEDS[name]):
            results[name] = ("skipped", f"time budget: {budget.left():.0f} s left", [], 0.0)
        else:
            try:
                with alarm(limit):
                    lines, summary = parts[name]()
                results[name] = ("ok", summary, lines, time.perf_counter() - t)
            except Exception as e:  # noqa: BLE001 (record the failure, run the next part)
                traceback.print_exc()
                msg = f"{type(e).__name__}: {e}"
                results[name] = ("FAILED", msg.splitlines()[0][:200],
                                 [*progress, "", "```", msg[:3000], "```"], time.perf_counter() - t)
        print(f"[{budget.seconds - budget.left():6.1f} s] {name}: {results[name][0]} {results[name][1]}", flush=True)
        on_part(results)
    return results


def markdown(a, results, total):
    dev = jax.devices()[0]
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    cmd = "python benchmarks/device_check.py" + "".join(" " + x for x in sys.argv[1:])
    out = [BEGIN, "", "## GPU" if not a.cpu else "## Device check (CPU run)", "",
           f"Produced by `{cmd}` on {dev.platform} ({dev.device_kind}), {now}, in {total:.0f} s; "
           f"jax {jax.__version__}. Timings: best of interleaved rounds after compilation.", "",
           "| part | status | summary | seconds |", "|---|---|---|---|"]
    out += [f"| {TITLES[n]} | {st} | {summ} | {dt:.0f} |" for n, (st, summ, _, dt) in results.items()]
    for name, (_, _, lines, _) in results.items():
        if lines:
            out += ["", f"### {TITLES[name]}", "", *lines]
    return "\n".join([*out, "", END, ""])


def replace_block(path, block):
    """Put block between the markers in path (appended if the markers are absent)."""
    with open(path) as fh:
        text = fh.read()
    i, j = text.find(BEGIN), text.find(END)
    if i >= 0 and j > i:
        text = text[:i] + block.rstrip("\n") + text[j + len(END):]
    else:
        text = text.rstrip("\n") + "\n\n" + block
    with open(path, "w") as fh:
        fh.write(text)


def main():
    a = ARGS
    budget = Budget(a.budget)

    def save(results):
        if a.out:
            with open(a.out, "w") as fh:
                fh.write(markdown(a, results, budget.seconds - budget.left()))

    results = run_parts(a, budget, save)
    total = budget.seconds - budget.left()
    block = markdown(a, results, total)
    print("\n" + "\n".join(f"{n:15s} {st:8s} {dt:6.1f} s  {s}" for n, (st, s, _, dt) in results.items()))
    print(f"total {total:.1f} s")
    if a.write:
        replace_block(os.path.join(ROOT, "docs", "benchmarks.md"), block)
        print("wrote the device_check block of docs/benchmarks.md")
    return 1 if any(st == "FAILED" for st, *_ in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
