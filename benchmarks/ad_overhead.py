"""Per-operation overhead of reverse-mode AD, the Zygote paper's measurement for our stack.

Gradient (w.r.t. all weights) of the summed output of a stacked LSTM(4, 4), written by
hand in jax.numpy, over a sequence of length 4, for 1-3 layers. The time of one gradient
is measured against batch size 1..8 and fitted with a line; the intercept at batch size 0
is the fixed cost of the program, divided by the number of primitive operations in the
gradient's jaxpr (forward + backward, counted recursively) it gives the overhead per
operation. Two modes:
  * jit: `jax.jit(jax.grad(loss))`, one compiled XLA program per call;
  * eager: the same `jax.grad` without jit: JAX dispatches every primitive on its own
    (each a cached one-op executable; the mode that corresponds to a tape-based AD
    system such as Zygote or PyTorch);
  * disable_jit: under `jax.disable_jit()`, which also inlines the library's internal
    jitted helpers (jax.nn.sigmoid...) and runs everything op by op, uncached.
Published figures (Innes et al. 2019, "A Differentiable Programming System to Bridge
Machine Learning and Scientific Computing", fig. 3): Zygote 568.8 ns per operation;
PyTorch at least 1 microsecond.

    python benchmarks/ad_overhead.py            # prints a markdown table, writes docs/bench_ad_overhead.md
    python benchmarks/ad_overhead.py --quick    # fewer repeats and batch sizes (--write none: no file)
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

import jax

jax.config.update("jax_enable_x64", False)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

HIDDEN = 4
SEQ = 4
ZYGOTE_NS = 568.8


def init_params(key, layers, n=HIDDEN):
    params = []
    for _ in range(layers):
        k1, k2, key = jax.random.split(key, 3)
        params.append({"W": 0.3 * jax.random.normal(k1, (4 * n, n)),
                       "U": 0.3 * jax.random.normal(k2, (4 * n, n)),
                       "b": jnp.zeros((4 * n,))})
    return params


def lstm_cell(p, x, h, c):
    z = x @ p["W"].T + h @ p["U"].T + p["b"]
    i, f, g, o = jnp.split(z, 4, axis=-1)
    c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
    h = jax.nn.sigmoid(o) * jnp.tanh(c)
    return h, c


def loss(params, xs):
    """xs: (SEQ, batch, HIDDEN); a Python loop over time and layers (unrolled)."""
    batch = xs.shape[1]
    hs = [jnp.zeros((batch, HIDDEN)) for _ in params]
    cs = [jnp.zeros((batch, HIDDEN)) for _ in params]
    out = 0.0
    for t in range(SEQ):
        x = xs[t]
        for li, p in enumerate(params):
            hs[li], cs[li] = lstm_cell(p, x, hs[li], cs[li])
            x = hs[li]
        out = out + jnp.sum(x)
    return out


def count_ops(jaxpr):
    """Primitive operations in a (closed) jaxpr, recursing into sub-jaxprs (pjit, custom_jvp...)."""
    n = 0
    for eqn in jaxpr.eqns:
        subs = [v for v in eqn.params.values() if hasattr(v, "eqns") or hasattr(v, "jaxpr")]
        if subs:
            for s in subs:
                n += count_ops(s.jaxpr if hasattr(s, "jaxpr") and not hasattr(s, "eqns") else s)
        else:
            n += 1
    return n


def timeit(fn, repeats):
    """Minimum over single calls: robust to other processes sharing the CPU."""
    fn()  # warm-up (compilation, caches)
    best = np.inf
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


MODES = ("jit", "eager", "disable_jit")


def measure(layers, batches, mode, repeats):
    params = init_params(jax.random.PRNGKey(0), layers)
    g = jax.grad(loss)
    times = []
    for b in batches:
        xs = jax.random.normal(jax.random.PRNGKey(b), (SEQ, b, HIDDEN))
        if mode == "jit":
            gj = jax.jit(g)
            t = timeit(lambda: jax.block_until_ready(gj(params, xs)), repeats)
        elif mode == "eager":  # JAX's default: no jit, each primitive dispatched on its own
            t = timeit(lambda: jax.block_until_ready(g(params, xs)), max(2, repeats // 10))
        else:
            def run():
                with jax.disable_jit():
                    jax.block_until_ready(g(params, xs))
            t = timeit(run, 2)
        times.append(t)
    slope, intercept = np.polyfit(np.asarray(batches, float), np.asarray(times), 1)
    jaxpr = jax.make_jaxpr(g)(params, jax.random.normal(jax.random.PRNGKey(0), (SEQ, 1, HIDDEN)))
    return count_ops(jaxpr.jaxpr), intercept, slope, times


def machine():
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repeats (for tests)")
    ap.add_argument("--write", default=None,
                    help="markdown file to write (default docs/bench_ad_overhead.md; 'none' to skip)")
    a = ap.parse_args(argv)
    repeats = 20 if a.quick else 200
    batches = [1, 2, 4, 8] if a.quick else list(range(1, 9))
    rows = []
    for layers in (1, 2, 3):
        for mode in MODES:
            nops, icpt, slope, _ = measure(layers, batches, mode, repeats)
            rows.append((layers, mode, nops, icpt, slope))
            print(f"# layers={layers} {mode}: {nops} ops, intercept {icpt * 1e6:.1f} us, "
                  f"slope {slope * 1e9:.0f} ns/batch", file=sys.stderr, flush=True)

    cmd = "python benchmarks/ad_overhead.py" + (" --quick" if a.quick else "")
    lines = [
        "### Per-operation AD overhead (stacked LSTM(4,4), sequence length 4)",
        "",
        f"Gradient of a hand-written stacked LSTM, batch sizes {batches[0]}-{batches[-1]}, "
        "time fitted linearly in the batch size; intercept at batch 0 divided by the number of "
        "primitive operations in the gradient's jaxpr. "
        f"jax {jax.__version__}, {machine()}, float32, CPU.",
        "",
        "| layers | ops in grad jaxpr | JAX jit: intercept (us) | JAX jit: ns / op "
        "| JAX eager (no jit): intercept (us) | JAX eager: ns / op "
        "| JAX disable_jit: ns / op | Zygote (published) ns / op | PyTorch (published) ns / op |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    by = {(r[0], r[1]): r for r in rows}
    for layers in (1, 2, 3):
        _, _, n, ij, _ = by[(layers, "jit")]
        ie, idj = by[(layers, "eager")][3], by[(layers, "disable_jit")][3]
        lines.append(f"| {layers} | {n} | {ij * 1e6:.1f} | {ij * 1e9 / n:.1f} | {ie * 1e6:.0f} "
                     f"| {ie * 1e9 / n:.0f} | {idj * 1e9 / n:.0f} | {ZYGOTE_NS} | >= 1000 |")

    def mean_ns(mode):
        return np.mean([by[(k, mode)][3] * 1e9 / by[(k, mode)][2] for k in (1, 2, 3)])

    lines += [
        "",
        f"Mean over 1-3 layers: **jit {mean_ns('jit'):.1f} ns per operation**, "
        f"**eager {mean_ns('eager'):.0f} ns**, disable_jit {mean_ns('disable_jit'):.0f} ns; "
        f"Zygote {ZYGOTE_NS} ns, PyTorch >= 1000 ns. Timings are minima over repeated calls "
        "(the machine was shared with other jobs); the intercept of a noisy fit can be off "
        "by tens of percent.",
        "Under jit the whole gradient is one compiled program, so the per-operation cost is "
        "the call's fixed dispatch cost spread over its operations (XLA also fuses them); eager "
        "mode pays Python dispatch for every primitive, forward and backward.",
        "",
        f"Produced by `{cmd}`.",
    ]
    text = "\n".join(lines)
    print(text)
    out = a.write if a.write else os.path.join(
        os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "bench_ad_overhead.md")
    if out == "none":
        out = None
    if out:
        with open(out, "w") as fh:
            fh.write(text + "\n")
        print(f"\nwrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
