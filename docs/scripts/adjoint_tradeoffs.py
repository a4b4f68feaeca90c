"""Measure the time / memory trade-off of the adjoints on a 64-state problem (for docs/choosing.md).

Problem: a chain of 32 coupled damped oscillators (64 states), t in [0, 10], Tsit5,
rtol = atol = 1e-6, max_steps = 4096. For each adjoint: time of one jitted gradient
(minimum over repeats), the temporary buffer XLA allocates for it (compiled memory
analysis: temp bytes), and the gradient's agreement with DiscreteAdjoint's. The gradient
is with respect to one parameter, so the default DiscreteAdjoint() takes its forward
route; `forward_below=0` shows its backward pass.

    python docs/scripts/adjoint_tradeoffs.py
"""

from __future__ import annotations

import time

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import solvers  # noqa: E402

N = 32  # oscillators -> 64 states


def f(t, y, k):
    q, p = y[:N], y[N:]
    lap = jnp.concatenate([q[1:], q[-1:]]) - 2 * q + jnp.concatenate([q[:1], q[:-1]])
    return jnp.concatenate([p, k * lap - 0.1 * p - q])


def make(adjoint, max_steps=4096):
    y0 = jnp.concatenate([jnp.sin(jnp.linspace(0, 3, N)), jnp.zeros(N)])

    def loss(k):
        sol = solvers.solve(f, y0, 0.0, 10.0, k, adjoint=adjoint, max_steps=max_steps)
        return jnp.sum(sol.ys[-1] ** 2)

    return jax.jit(jax.grad(loss))


def main():
    k = jnp.asarray(2.0)
    rows, ref = [], None
    steps = solvers.solve(f, jnp.concatenate([jnp.sin(jnp.linspace(0, 3, N)), jnp.zeros(N)]),
                          0.0, 10.0, k).stats["num_steps"]
    for name, adj in [("DiscreteAdjoint() (1 input: forward sensitivities)", solvers.DiscreteAdjoint()),
                      ("DiscreteAdjoint(forward_below=0) (backward pass)", solvers.DiscreteAdjoint(forward_below=0)),
                      ("CheckpointAdjoint(64)", solvers.CheckpointAdjoint(64)),
                      ("CheckpointAdjoint(16)", solvers.CheckpointAdjoint(16)),
                      ("BacksolveAdjoint()", solvers.BacksolveAdjoint())]:
        g = make(adj)
        mem = g.lower(k).compile().memory_analysis()
        temp = getattr(mem, "temp_size_in_bytes", float("nan"))
        val = float(g(k))
        best = np.inf
        for _ in range(5):
            t = time.perf_counter()
            jax.block_until_ready(g(k))
            best = min(best, time.perf_counter() - t)
        ref = val if ref is None else ref
        rows.append((name, best * 1e3, temp / 2**20, abs(val - ref) / abs(ref)))
    fwd = jax.jit(lambda k: solvers.solve(f, jnp.concatenate([jnp.sin(jnp.linspace(0, 3, N)), jnp.zeros(N)]),
                                          0.0, 10.0, k).ys)
    jax.block_until_ready(fwd(k))
    tf = min((lambda t: (jax.block_until_ready(fwd(k)), time.perf_counter() - t)[1])(time.perf_counter())
             for _ in range(5))
    print(f"64-state problem, {int(steps)} accepted steps, max_steps=4096; "
          f"forward solve alone {tf * 1e3:.2f} ms")
    print()
    print("| adjoint | gradient time (ms) | x forward | XLA temp buffers (MiB) | rel. diff vs first row |")
    print("|---|---|---|---|---|")
    for name, ms, mib, d in rows:
        print(f"| {name} | {ms:.2f} | {ms / (tf * 1e3):.1f} | {mib:.2f} | {d:.1e} |")


if __name__ == "__main__":
    main()
