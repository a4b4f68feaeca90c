"""What costs on an accelerator, measured on the machine at hand (for docs/accelerators.md).

    python benchmarks/accelerator_audit.py [--quick] [--only errors,dtype,vmap]

1. errors: the run-time error check (solvers/_errors.py: a `lax.cond` around a
   `jax.pure_callback`, taken only on failure). Where it sits in the compiled program (the
   jaxpr: inside or outside the solver's while loop, a cond or a select under vmap), and
   what it costs when no error occurs: throw=True against throw=False, interleaved, for
   one small solve, 1000 small solves under vmap, and 1000 under lax.map (the check runs
   1000 times).
2. dtype: float64 / float32 time for the same work: a vmapped fixed-step solve (same
   steps in both dtypes) and a render with its gradient.
3. vmap: a batch of adaptive solves steps until its slowest member finishes. Forced
   linear decay y' = -k (y - cos t) with k spread log-uniformly over 1..1000 (explicit
   Tsit5: steps grow with k): steps per member against the batch's, the wasted fraction,
   and the time of the batch against the members' sum and against the remedies (sorted
   buckets, lax.map per member, a stiff method).

Prints markdown. Timings: best of interleaved rounds after compilation.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT]
import raytrace as rt  # noqa: E402
import solvers  # noqa: E402


def best_of(fns, rounds=7, min_time=0.05):
    """Best time per call of each fn (blocking, no arguments), the fns taking turns."""
    number = []
    for fn in fns:
        fn()
        t = time.perf_counter()
        fn()
        number.append(max(1, int(min_time / max(time.perf_counter() - t, 1e-7))))
    best = [float("inf")] * len(fns)
    for _ in range(rounds):
        for i, fn in enumerate(fns):
            t = time.perf_counter()
            for _ in range(number[i]):
                fn()
            best[i] = min(best[i], (time.perf_counter() - t) / number[i])
    return best


def fmt(s):
    return f"{s * 1e6:.1f} us" if s < 1e-3 else f"{s * 1e3:.2f} ms" if s < 1 else f"{s:.2f} s"


# --- 1. the error check ----------------------------------------------------------------


def decay(t, y, k):
    return -k * y


def walk(jaxpr, in_loop=False, in_cond=False, found=None):
    """(primitive name, inside a loop body (while or scan)?, inside a cond branch?) of
    every host callback in jaxpr and its sub-jaxprs."""
    found = [] if found is None else found
    for eqn in jaxpr.eqns:
        name = eqn.primitive.name
        if "callback" in name:
            found.append((name, in_loop, in_cond))
        for v in eqn.params.values():
            subs = v if isinstance(v, (tuple, list)) else [v]
            for sub in subs:
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns"):
                    walk(inner, in_loop or name in ("while", "scan"), in_cond or name == "cond", found)
    return found


def one_solve(throw, k):
    return solvers.solve(decay, jnp.ones(2), 0.0, 1.0, k, rtol=1e-6, atol=1e-6, throw=throw).ys[-1]


def placement_rows():
    k = jnp.array(1.0)
    ks = jnp.linspace(0.5, 2.0, 8)
    cases = {
        "solve": jax.make_jaxpr(lambda k: one_solve(True, k))(k),
        "vmap(solve)": jax.make_jaxpr(jax.vmap(lambda k: one_solve(True, k)))(ks),
        "grad(solve)": jax.make_jaxpr(jax.grad(lambda k: jnp.sum(one_solve(True, k))))(k),
        "grad(BacksolveAdjoint)": jax.make_jaxpr(jax.grad(lambda k: jnp.sum(solvers.solve(
            decay, jnp.ones(2), 0.0, 1.0, k, adjoint=solvers.BacksolveAdjoint()).ys[-1])))(k),
    }
    rows = ["| program | host callbacks | inside a loop body (while, scan) | inside a cond branch |",
            "|---|---|---|---|"]
    for name, jx in cases.items():
        found = walk(jx.jaxpr)
        rows.append(f"| `{name}` | {len(found)} | {sum(f[1] for f in found)} | {sum(f[2] for f in found)} |")
    return rows


def error_cost_rows(n, rounds):
    ks = jnp.linspace(0.5, 2.0, n)
    rows = ["| workload | throw=True | throw=False | True / False |", "|---|---|---|---|"]
    shapes = {
        "1 solve": lambda throw: jax.jit(lambda k: one_solve(throw, k)),
        f"vmap of {n} solves": lambda throw: jax.jit(jax.vmap(lambda k: one_solve(throw, k))),
        f"lax.map of {n} solves (the check runs {n} times)": lambda throw: jax.jit(
            lambda ks: jax.lax.map(lambda k: one_solve(throw, k), ks)),
    }
    for name, make in shapes.items():
        arg = jnp.array(1.0) if name == "1 solve" else ks
        on, off = make(True), make(False)
        run_on, run_off = (lambda: on(arg).block_until_ready()), (lambda: off(arg).block_until_ready())
        # A-B-B-A in every round, so that neither gains from going first.
        a1, b1, b2, a2 = best_of([run_on, run_off, run_off, run_on], rounds)
        t_on, t_off = min(a1, a2), min(b1, b2)
        rows.append(f"| {name} | {fmt(t_on)} | {fmt(t_off)} | {t_on / t_off:.3f} |")
    return rows


# --- 2. float64 against float32 --------------------------------------------------------


def lotka_volterra(t, y, p):
    return jnp.stack([p[0] * y[0] - p[1] * y[0] * y[1], -p[2] * y[1] + p[3] * y[0] * y[1]])


def dtype_rows(n, size, rounds):
    rows = ["| work | float32 | float64 | float64 / float32 |", "|---|---|---|---|"]
    fns = {}
    for dt in (jnp.float32, jnp.float64):
        ps = (jnp.array([1.5, 1.0, 3.0, 1.0], dt) * (1 + 0.2 * jax.random.uniform(jax.random.PRNGKey(0), (n, 4)))
              ).astype(dt)
        solve = jax.jit(jax.vmap(lambda p, dt=dt: solvers.solve(
            lotka_volterra, jnp.ones(2, dt), 0.0, 10.0, p, method=solvers.Tsit5(), dt0=0.01,
            controller=solvers.ConstantStepSize()).ys[-1]))
        fns.setdefault("solve", []).append(lambda solve=solve, ps=ps: solve(ps).block_until_ready())
        f = lambda x, dt=dt: jnp.asarray(x, dt)  # noqa: E731
        mat = rt.Material(f([0.8, 0.3, 0.2]), ambient=f(0.05), diffuse=f(0.8), specular=f(0.3), shininess=f(20.0))
        cam = rt.Camera(f([0, 1.0, -5]), f([0, 0, 0]), vfov=f(40.0), width=size, height=size)

        def render(light, f=f, mat=mat, cam=cam):
            scene = rt.Scene([rt.Sphere(f([0, 0, 0]), f(1.0), mat), rt.Plane(f([0, -1, 0]), f([0, 1, 0]), mat)],
                             [rt.PointLight(light, f(300.0))])
            return rt.render(scene, cam, max_bounces=0)

        light = f([2.0, 3.0, -3.0])
        r = jax.jit(render)
        g = jax.jit(jax.grad(lambda p, render=render: jnp.mean(render(p) ** 2)))
        fns.setdefault("render", []).append(lambda r=r, light=light: r(light).block_until_ready())
        fns.setdefault("render gradient", []).append(lambda g=g, light=light: g(light).block_until_ready())
    labels = {"solve": f"vmap of {n} Lotka-Volterra solves, Tsit5, 1000 fixed steps",
              "render": f"render {size}x{size} (sphere, floor, point light, hard shadow)",
              "render gradient": f"gradient of a {size}x{size} image loss w.r.t. the light"}
    for key, (f32, f64) in fns.items():
        t32, t64 = best_of([f32, f64], rounds)
        rows.append(f"| {labels[key]} | {fmt(t32)} | {fmt(t64)} | {t64 / t32:.2f} |")
    return rows


# --- 3. vmapped adaptive solves with a spread of stiffness -----------------------------


def forced(t, y, k):
    return -k * (y - jnp.cos(t))


def spread_solve(k, method=None):
    method = solvers.Tsit5() if method is None else method
    sol = solvers.solve(forced, jnp.zeros(1), 0.0, 10.0, k, method=method, rtol=1e-6, atol=1e-6,
                        max_steps=20_000)
    return sol.ys[-1, 0], sol.stats["num_steps"]


def vmap_rows(n, rounds):
    ks = jnp.logspace(0.0, 3.0, n)
    perm = jax.random.permutation(jax.random.PRNGKey(0), n)
    ks = ks[perm]  # an unsorted batch, as it would come
    batch = jax.jit(jax.vmap(spread_solve))
    y, steps = batch(ks)
    steps = np.asarray(steps)
    useful = steps.sum()
    done = n * steps.max()
    per = jax.jit(lambda ks: jax.lax.map(spread_solve, ks))
    order = jnp.argsort(ks)
    buckets = 4

    def bucketed(ks):
        s = ks[order].reshape(buckets, -1)
        return [batch(b) for b in s]

    stiff = jax.jit(jax.vmap(lambda k: spread_solve(k, solvers.Kvaerno5())))
    ys_stiff, steps_stiff = stiff(ks)
    kk = np.asarray(ks)  # y(t) = k (k cos t + sin t) / (k^2 + 1) - k^2 exp(-k t) / (k^2 + 1)
    exact = (kk * (kk * np.cos(10.0) + np.sin(10.0)) - kk ** 2 * np.exp(-10.0 * kk)) / (kk ** 2 + 1)
    err = float(np.max(np.abs(np.asarray(y) - exact)))
    err_stiff = float(np.max(np.abs(np.asarray(ys_stiff) - exact)))
    single = jax.jit(spread_solve)
    times = best_of([
        lambda: jax.block_until_ready(batch(ks)),
        lambda: jax.block_until_ready(per(ks)),
        lambda: jax.block_until_ready(bucketed(ks)),
        lambda: jax.block_until_ready(stiff(ks)),
        lambda: [jax.block_until_ready(single(k)) for k in ks],
    ], rounds)
    b_steps = np.asarray(steps)[np.asarray(perm).argsort()]  # by increasing k
    bucket_work = sum(len(b) * b.max() for b in np.split(np.sort(steps), buckets))
    rows = [
        f"{n} members, k log-spaced over 1..1000 (shuffled), y' = -k (y - cos t), y(0) = 0, t in [0, 10], "
        f"rtol = atol = 1e-6. Steps per member (Tsit5): min {steps.min()}, median {int(np.median(steps))}, "
        f"max {steps.max()} (k = 1: {b_steps[0]}, k = 1000: {b_steps[-1]}). The batch takes {steps.max()} steps "
        f"for all: {done} member-steps computed for {useful} useful, **{1 - useful / done:.0%} wasted**; "
        f"in {buckets} buckets sorted by k: {bucket_work} member-steps, {1 - useful / bucket_work:.0%} wasted. "
        f"Kvaerno5 (stiff): {int(np.min(steps_stiff))}-{int(np.max(steps_stiff))} steps per member. Max error "
        f"against the closed form: Tsit5 {err:.1e}, Kvaerno5 {err_stiff:.1e}.",
        "",
        "| way to run the batch | time | vs vmap |",
        "|---|---|---|",
    ]
    names = ["`jit(vmap(solve))`, one batch", "`jit(lax.map(solve))`, one member at a time",
             f"sorted by k, {buckets} vmapped buckets", "`jit(vmap(solve))` with Kvaerno5 (stiff method)",
             f"{n} separate calls of `jit(solve)` (sum)"]
    rows += [f"| {name} | {fmt(t)} | {t / times[0]:.2f} |" for name, t in zip(names, times)]
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes")
    ap.add_argument("--only", default="errors,dtype,vmap")
    a = ap.parse_args(argv)
    parts = a.only.split(",")
    n, size, rounds = (64, 32, 3) if a.quick else (1000, 200, 7)
    dev = jax.devices()[0]
    print(f"{dev.platform} ({dev.device_kind}), {os.cpu_count()} cores, jax {jax.__version__}, "
          f"load {os.getloadavg()[0]:.1f}\n")
    if "errors" in parts:
        print("### Where the error check sits\n", *placement_rows(), "", sep="\n")
        print("### Its cost when no error occurs\n", *error_cost_rows(n, rounds), "", sep="\n")
    if "dtype" in parts:
        print("### float64 against float32\n", *dtype_rows(n, size, rounds), "", sep="\n")
    if "vmap" in parts:
        print("### A vmapped batch with a spread of stiffness\n", *vmap_rows(64 if a.quick else 256, rounds), "",
              sep="\n")
    print(f"(load at the end {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
